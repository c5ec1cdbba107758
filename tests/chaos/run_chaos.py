#!/usr/bin/env python3
"""Chaos test of acknowledged delivery (ctest chaos_outbox; docs/DELIVERY.md).

A mailbox_sender enqueues N letters into its durable outbox and delivers them
to a mailbox_receiver (--reply-cache), which stores each one with its call id
under a UNIQUE key and acks after commit. While that runs, the receiver is
killed with SIGKILL and restarted 5 times and the sender twice, each at a
point chosen by progress (letters stored), after a random pause. Then the
last sender must finish on its own, and:

  - the receiver's database holds exactly N letters from the sender, seq
    1..N, each once, stored in seq order (row ids increase with seq);
  - the sender's outbox is empty: no pending message, no dead letter;
  - the sender's own check (Count RPC) passed: it exits 0.

Everything is bounded in time (150 s overall); every process started is
killed and the temporary directory removed on the way out.

usage: run_chaos.py --sender PATH --receiver PATH [--letters N] [--seed S]
"""
import argparse
import random
import signal
import subprocess
import sys
import time

from mailcheck import check_letters, check_outbox, finish_sender, letters, wait_stored
from procs import Fail, Run

OVERALL_S = 150
SENDER_NAME = "chaos"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sender", required=True)
    ap.add_argument("--receiver", required=True)
    ap.add_argument("--letters", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else int(time.time() * 1000) % 100000
    rnd = random.Random(seed)
    n = args.letters
    run = Run("ackrpc-chaos.", OVERALL_S, keep=args.keep)
    print(f"chaos: {n} letters, seed {seed}, in {run.tmp}", flush=True)

    sock = run.path("mailbox.sock")
    rdb = run.path("mailbox.db")
    odb = run.path("outbox.db")

    def start_receiver():
        p, log = run.start("receiver", [args.receiver, "--reply-cache", sock, rdb])
        run.wait_text(p, log, "receiving ")
        return p

    def start_sender():
        wait_ms = max(int(run.left() * 1000) - 5000, 1000)
        return run.start("sender", [args.sender, "--attempts", "0", "--timeout", "2000",
                                    "--wait", str(wait_ms), "--sender", SENDER_NAME,
                                    "--outbox", odb, sock, str(n)])

    def stored():
        return len(letters(rdb, SENDER_NAME)[0])

    # Kill points, by letters stored: the sender's are early, while it is
    # still enqueueing (it enqueues ahead of delivery) - its restarts must
    # resume both enqueueing and delivery.
    plan = sorted([(int(n * f), who) for f, who in
                   [(0.05, "sender"), (0.15, "receiver"), (0.30, "receiver"),
                    (0.40, "sender"), (0.50, "receiver"), (0.70, "receiver"),
                    (0.90, "receiver")]])
    failed = True
    try:
        receiver = start_receiver()
        sender, slog = start_sender()
        kills = {"receiver": 0, "sender": 0}
        for at, who in plan:
            wait_stored(run, rdb, SENDER_NAME, at, sender, f"kill the {who}")
            time.sleep(rnd.uniform(0, 0.05))  # land anywhere in a transaction
            if who == "receiver":
                run.kill(receiver)
                time.sleep(rnd.uniform(0, 0.3))
                receiver = start_receiver()
            else:
                run.kill(sender)
                time.sleep(rnd.uniform(0, 0.1))
                sender, slog = start_sender()
            kills[who] += 1
            print(f"chaos: SIGKILL {who} at {stored()} letters stored "
                  f"({run.elapsed():.1f} s)", flush=True)
        finish_sender(run, sender, slog, n)
        resumed = []
        for i in range(2, run.runs["sender"] + 1):
            with open(run.log("sender", i)) as f:
                for line in f:
                    if line.startswith("resuming after letter "):
                        resumed.append(int(line.split()[-1]))
        if run.kill(receiver, signal.SIGTERM) != 0:
            raise Fail(f"the receiver exited with {receiver.returncode} after SIGTERM")

        # The receiver: exactly n letters, each once, in order; the outbox
        # empty.
        check_letters(rdb, SENDER_NAME, 1, n, only=True)
        check_outbox(odb)
        if kills != {"receiver": 5, "sender": 2}:
            raise Fail(f"kills done: {kills}")
        failed = False
        print(f"chaos: ok: {n} letters stored once, in order; outbox empty; receiver "
              f"killed 5 times, sender twice (restarts resumed after letters "
              f"{resumed}); {run.elapsed():.1f} s", flush=True)
        return 0
    except (Fail, subprocess.TimeoutExpired, OSError) as e:
        print(f"chaos: FAIL (seed {seed}): {e}", file=sys.stderr)
        return 1
    finally:
        run.cleanup(failed)


if __name__ == "__main__":
    sys.exit(main())
