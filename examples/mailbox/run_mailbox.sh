#!/usr/bin/env bash
# Runs the mailbox end to end (ctest "mailbox"):
#   1. starts mailbox_receiver on a socket in a temporary directory with a
#      temporary database, the ack of letter 2 delayed past the sender's
#      deadline (--slow-ack), and waits (bounded) until it serves;
#   2. runs mailbox_sender for N letters through its durable outbox: every
#      letter must be acked, letter 2 after a "delivered, no ack" retry WITH
#      THE SAME CALL ID, which the receiver's server must answer from its
#      first call (the original receipt, the handler not run again: the
#      reply store's count of repeats), nothing stored twice; the sender's Count call must
#      see exactly N letters from it, and its outbox must end empty;
#   3. stops the receiver with SIGTERM: exit 0, socket and SOCKET.lock gone,
#      exactly N "stored letter" lines, and `mailbox_receiver --count DB` = N;
#   4. restarts the receiver on the same database: the letters are still
#      there, and letter 1 sent again under a new call id (a new outbox) is
#      refused (ALREADY_EXISTS: dead-lettered, the sender exits 1 naming the
#      status);
#   5. a sender with no receiver dead-letters its letter after its bounded
#      attempts, reporting E_CONNECT, exit 1;
#   6. a sender with the default name delivers 3 letters; restarted on the
#      same outbox while the receiver is down, it keeps its name and retries
#      its final Count until the receiver is back: exit 0.
#
# usage: examples/mailbox/run_mailbox.sh BUILD_DIR [N]
#   BUILD_DIR  the CMake build directory (holding examples/mailbox/*)
#   N          letters to deliver (default 5)
# Environment: MAILBOX_WRAPPER="valgrind --leak-check=full --error-exitcode=99"
#   runs both programs under that command; MAILBOX_TIMEOUT_MS (default 2000)
#   is the sender's deadline per call (raise it under valgrind).
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 BUILD_DIR [N]" >&2
  exit 2
fi
BIN=$1/examples/mailbox
N=${2:-5}
if ! [[ "$N" =~ ^[1-9][0-9]{0,5}$ ]]; then
  echo "run_mailbox: N must be 1 to 999999, got '$N'" >&2
  exit 2
fi
TIMEOUT_MS=${MAILBOX_TIMEOUT_MS:-2000}
SLOW_MS=$((TIMEOUT_MS * 3 / 2))
SLOW_SEQ=$((N >= 2 ? 2 : 1))
read -r -a WRAP <<<"${MAILBOX_WRAPPER:-}"
for prog in mailbox_receiver mailbox_sender; do
  if [ ! -x "$BIN/$prog" ]; then
    echo "run_mailbox: $BIN/$prog not found; build the project first" >&2
    exit 2
  fi
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/ackrpc-mailbox.XXXXXX")
SOCK=$TMP/mailbox.sock
DB=$TMP/mailbox.db
RPID=""
RLOG=""
cleanup() {
  if [ -n "$RPID" ] && kill -0 "$RPID" 2>/dev/null; then
    kill -KILL "$RPID" 2>/dev/null || true
    wait "$RPID" 2>/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT
fail() {
  echo "run_mailbox: FAIL: $*" >&2
  for f in "$TMP"/*.log; do
    [ -f "$f" ] || continue
    echo "--- $(basename "$f"):" >&2
    cat "$f" >&2
  done
  exit 1
}

# start_receiver LOG [ARGS...]: starts it and waits (bounded) until it serves.
start_receiver() {
  RLOG=$TMP/$1
  shift
  "${WRAP[@]}" "$BIN/mailbox_receiver" "$@" "$SOCK" "$DB" >"$RLOG" 2>&1 &
  RPID=$!
  # It prints "receiving ..." once it listens; allow 15 s (valgrind).
  for _ in $(seq 300); do
    grep -q '^receiving ' "$RLOG" && break
    kill -0 "$RPID" 2>/dev/null || fail "the receiver exited before serving"
    sleep 0.05
  done
  grep -q '^receiving ' "$RLOG" || fail "the receiver did not start within 15 s"
  [ -S "$SOCK" ] || fail "the receiver is serving but $SOCK is not a socket"
}

# stop_receiver: SIGTERM, bounded wait, exit 0, socket and lock file gone.
stop_receiver() {
  kill -TERM "$RPID"
  # 20 s: the drain time, a delayed ack in progress, a slow valgrind exit.
  for _ in $(seq 400); do
    kill -0 "$RPID" 2>/dev/null || break
    sleep 0.05
  done
  kill -0 "$RPID" 2>/dev/null && fail "the receiver did not exit within 20 s of SIGTERM"
  local rc=0
  wait "$RPID" || rc=$?
  RPID=""
  [ "$rc" = 0 ] || fail "mailbox_receiver exited with status $rc after SIGTERM"
  [ ! -e "$SOCK" ] || fail "the receiver left its socket file behind"
  [ ! -e "$SOCK.lock" ] || fail "the receiver left its lock file $SOCK.lock behind"
  grep -q '^stopped: ' "$RLOG" || fail "the receiver did not report a clean stop"
}

count_db() {
  local out
  out=$("${WRAP[@]}" "$BIN/mailbox_receiver" --count "$DB" 2>"$TMP/count.err") \
    || fail "mailbox_receiver --count failed: $(cat "$TMP/count.err")"
  echo "$out"
}

echo "== 1. receiver on $SOCK (ack of seq=$SLOW_SEQ delayed ${SLOW_MS} ms)"
start_receiver receiver.log --slow-ack "$SLOW_SEQ" --slow-ack-ms "$SLOW_MS"

echo "== 2. sender: $N letters, deadline ${TIMEOUT_MS} ms per call"
SENDER=run_mailbox-$$
rc=0
timeout -k 2 120 "${WRAP[@]}" "$BIN/mailbox_sender" --timeout "$TIMEOUT_MS" \
  --attempts 5 --sender "$SENDER" --outbox "$TMP/outbox1.db" "$SOCK" "$N" \
  >"$TMP/sender.log" 2>&1 || rc=$?
cat "$TMP/sender.log"
[ "$rc" = 0 ] || fail "mailbox_sender exited with status $rc"
acks=$(grep -c '^ack seq=' "$TMP/sender.log" || true)
[ "$acks" = "$N" ] || fail "the sender printed $acks acks for $N letters"
retry=$(sed -n "s/^letter seq=$SLOW_SEQ attempt 1: .*retrying with the same call id \([0-9a-f]*\)$/\1/p" \
  "$TMP/sender.log")
[ -n "$retry" ] || fail "letter $SLOW_SEQ was not retried with the same call id"
grep -q "^ack seq=$SLOW_SEQ .* call_id=$retry\$" "$TMP/sender.log" \
  || fail "letter $SLOW_SEQ was not acked under its first call id $retry"
grep -q "^the mailbox holds $N letters, $N from $SENDER\$" "$TMP/sender.log" \
  || fail "the Count RPC did not report $N letters"
grep -q "^$N of $N letters acknowledged (outbox: 0 pending, 0 dead)\$" "$TMP/sender.log" \
  || fail "the sender's outbox did not end empty"

echo "== 3. SIGTERM"
stop_receiver
cat "$RLOG"
stored=$(grep -c '^stored letter ' "$RLOG" || true)
[ "$stored" = "$N" ] || fail "the receiver stored $stored letters for $N"
grep -Eq '^repeats answered without the handler: [1-9]' "$RLOG" \
  || fail "the retry of letter $SLOW_SEQ was not answered from its first call"
n=$(count_db)
[ "$n" = "$N" ] || fail "the database holds $n letters, expected $N"

echo "== 4. restart on the same database; letter 1 again under a new call id"
start_receiver receiver2.log
rc=0
timeout -k 2 60 "${WRAP[@]}" "$BIN/mailbox_sender" --timeout "$TIMEOUT_MS" \
  --sender "$SENDER" --outbox "$TMP/outbox2.db" "$SOCK" 1 >"$TMP/sender2.log" 2>&1 \
  || rc=$?
cat "$TMP/sender2.log"
[ "$rc" = 1 ] || fail "resending letter 1 exited with $rc, expected 1"
grep -q '^letter seq=1 failed after 1 attempt(s): ALREADY_EXISTS: ' "$TMP/sender2.log" \
  || fail "resending letter 1 did not fail with ALREADY_EXISTS"
stop_receiver
grep -q '^stored letter ' "$RLOG" && fail "the restarted receiver stored a letter"
n=$(count_db)
[ "$n" = "$N" ] || fail "after the restart the database holds $n letters, expected $N"

echo "== 5. no receiver: bounded attempts, then E_CONNECT"
rc=0
timeout -k 2 60 "${WRAP[@]}" "$BIN/mailbox_sender" --attempts 3 \
  --outbox "$TMP/outbox3.db" "$SOCK" 1 >"$TMP/sender3.log" 2>&1 || rc=$?
cat "$TMP/sender3.log"
[ "$rc" = 1 ] || fail "a sender without a receiver exited with $rc, expected 1"
grep -q '^letter seq=1 failed after 3 attempt(s): E_CONNECT: ' "$TMP/sender3.log" \
  || fail "a sender without a receiver did not report E_CONNECT after 3 attempts"

echo "== 6. default sender name; restarted while the receiver is down"
start_receiver receiver3.log
rc=0
timeout -k 2 60 "${WRAP[@]}" "$BIN/mailbox_sender" --timeout "$TIMEOUT_MS" \
  --outbox "$TMP/outbox4.db" "$SOCK" 3 >"$TMP/sender4.log" 2>&1 || rc=$?
cat "$TMP/sender4.log"
[ "$rc" = 0 ] || fail "a sender with the default name exited with $rc"
name4=$(sed -n 's/^the mailbox holds [0-9]* letters, 3 from \(.*\)$/\1/p' "$TMP/sender4.log")
[ -n "$name4" ] || fail "the sender did not count its letters"
rc=0
timeout -k 2 60 "${WRAP[@]}" "$BIN/mailbox_sender" --timeout "$TIMEOUT_MS" \
  --outbox "$TMP/outbox4.db" "$SOCK" 3 >"$TMP/sender4b.log" 2>&1 || rc=$?
cat "$TMP/sender4b.log"
[ "$rc" = 0 ] || fail "the sender restarted on its outbox exited with $rc"
grep -q "^the mailbox holds [0-9]* letters, 3 from $name4\$" "$TMP/sender4b.log" \
  || fail "the restarted sender did not keep its default name $name4"
stop_receiver
timeout -k 2 60 "${WRAP[@]}" "$BIN/mailbox_sender" --timeout "$TIMEOUT_MS" \
  --outbox "$TMP/outbox4.db" "$SOCK" 3 >"$TMP/sender5.log" 2>&1 &
SPID=$!
sleep 1
start_receiver receiver4.log
rc=0
wait "$SPID" || rc=$?
cat "$TMP/sender5.log"
[ "$rc" = 0 ] || fail "the restarted sender exited with $rc"
grep -q '^resuming after letter 3$' "$TMP/sender5.log" \
  || fail "the restarted sender did not resume"
grep -q '^count attempt 1 failed: .*: retrying$' "$TMP/sender5.log" \
  || fail "the Count call was not retried while the receiver was down"
grep -q "^the mailbox holds [0-9]* letters, 3 from $name4\$" "$TMP/sender5.log" \
  || fail "the restarted sender's Count did not see its 3 letters"
stop_receiver

echo "run_mailbox: ok ($N letters stored once and acked, letter $SLOW_SEQ after a retry" \
  "with the same call id; clean stops; $n letters in the database)"
