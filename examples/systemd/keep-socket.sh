#!/bin/sh
# keep-socket.sh: what systemd does for a socket unit, for trying restarts
# without installing anything. Run it as the child of systemd-socket-activate:
#
#   systemd-socket-activate -l SOCK --fdname=NAME keep-socket.sh SERVER ARGS...
#
# It holds the listening socket(s) it inherited (LISTEN_FDS, from fd 3 on)
# for as long as it runs, and runs SERVER ARGS... again each time it exits,
# with LISTEN_PID set to the new process (sd_listen_fds(3) checks it). While
# one server drains and the next starts, the socket stays open here, so
# connections made in between wait in its backlog instead of being refused.
#
# Restart the server: SIGHUP to this script (it sends SIGTERM to the server,
# which drains and exits), or SIGTERM to the server itself.
# Stop everything: SIGTERM or SIGINT to this script; it stops the server
# (SIGTERM: the server drains) and exits with the server's status.
# A server that fails (non-zero status) within a second of its start, twice
# running, is not started again (exit 1), so a broken command does not spin.
set -u
[ $# -ge 1 ] || { echo "usage: keep-socket.sh SERVER [ARGS...]" >&2; exit 2; }
[ -n "${LISTEN_FDS:-}" ] || { echo "keep-socket.sh: no LISTEN_FDS (run it under systemd-socket-activate)" >&2; exit 2; }

child=""
stopping=0
stop() {
  stopping=1
  [ -n "$child" ] && kill -TERM "$child" 2>/dev/null
}
restart() {
  [ -n "$child" ] && kill -TERM "$child" 2>/dev/null
}
trap stop TERM INT
trap restart HUP

quick=0
while :; do
  started=$(date +%s)
  # The inner shell's $$ is the pid the server will have after exec.
  sh -c 'LISTEN_PID=$$; export LISTEN_PID; exec "$@"' keep-socket.sh "$@" &
  child=$!
  # wait returns early when a trapped signal arrives: wait again for the exit.
  status=0
  while :; do
    wait "$child"
    status=$?
    kill -0 "$child" 2>/dev/null || break
  done
  child=""
  [ "$stopping" = 1 ] && exit "$status"
  if [ "$status" != 0 ] && [ $(($(date +%s) - started)) -le 1 ]; then
    quick=$((quick + 1))
    if [ "$quick" -ge 2 ]; then
      echo "keep-socket.sh: $1 failed ($status) twice within a second of starting: not restarting" >&2
      exit 1
    fi
  else
    quick=0
  fi
done
