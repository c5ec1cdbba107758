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
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

OVERALL_S = 150
SENDER_NAME = "chaos"


class Fail(Exception):
    pass


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
    tmp = tempfile.mkdtemp(prefix="ackrpc-chaos.")
    procs = []
    started = time.monotonic()
    print(f"chaos: {n} letters, seed {seed}, in {tmp}", flush=True)

    sock = os.path.join(tmp, "mailbox.sock")
    rdb = os.path.join(tmp, "mailbox.db")
    odb = os.path.join(tmp, "outbox.db")

    def left():
        return OVERALL_S - (time.monotonic() - started)

    def check_time(what):
        if left() <= 0:
            raise Fail(f"out of time ({OVERALL_S} s) while {what}")

    runs = {"receiver": 0, "sender": 0}

    def start_receiver():
        runs["receiver"] += 1
        log = open(os.path.join(tmp, f"receiver{runs['receiver']}.log"), "w")
        p = subprocess.Popen([args.receiver, "--reply-cache", sock, rdb],
                             stdout=log, stderr=subprocess.STDOUT)
        procs.append(p)
        end = time.monotonic() + 15
        while time.monotonic() < end:
            with open(log.name) as f:
                if any(line.startswith("receiving ") for line in f):
                    return p
            if p.poll() is not None:
                raise Fail(f"receiver run {runs['receiver']} exited with {p.returncode}")
            time.sleep(0.02)
        raise Fail("the receiver did not start within 15 s")

    def start_sender():
        runs["sender"] += 1
        log = open(os.path.join(tmp, f"sender{runs['sender']}.log"), "w")
        wait_ms = max(int(left() * 1000) - 5000, 1000)
        p = subprocess.Popen([args.sender, "--attempts", "0", "--timeout", "2000",
                              "--wait", str(wait_ms), "--sender", SENDER_NAME,
                              "--outbox", odb, sock, str(n)],
                             stdout=log, stderr=subprocess.STDOUT)
        procs.append(p)
        return p

    def kill(p):
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=10)

    def stored():
        """Letters stored so far (the receiver's database, read-only)."""
        if not os.path.exists(rdb):
            return 0
        try:
            con = sqlite3.connect(f"file:{rdb}?mode=ro", uri=True, timeout=5)
            try:
                return con.execute("SELECT count(*) FROM letters").fetchone()[0]
            finally:
                con.close()
        except sqlite3.Error:
            return -1  # e.g. not created yet

    # Kill points, by letters stored: the sender's are early, while it is
    # still enqueueing (it enqueues ahead of delivery) - its restarts must
    # resume both enqueueing and delivery.
    plan = sorted([(int(n * f), who) for f, who in
                   [(0.05, "sender"), (0.15, "receiver"), (0.30, "receiver"),
                    (0.40, "sender"), (0.50, "receiver"), (0.70, "receiver"),
                    (0.90, "receiver")]])
    try:
        receiver = start_receiver()
        sender = start_sender()
        kills = {"receiver": 0, "sender": 0}
        for at, who in plan:
            while True:
                check_time(f"waiting for {at} letters to kill the {who}")
                if sender.poll() is not None:
                    raise Fail(f"the sender exited ({sender.returncode}) before the "
                               f"planned kills were done ({kills})")
                if stored() >= at:
                    break
                time.sleep(0.01)
            time.sleep(rnd.uniform(0, 0.05))  # land anywhere in a transaction
            if who == "receiver":
                kill(receiver)
                time.sleep(rnd.uniform(0, 0.3))
                receiver = start_receiver()
            else:
                kill(sender)
                time.sleep(rnd.uniform(0, 0.1))
                sender = start_sender()
            kills[who] += 1
            print(f"chaos: SIGKILL {who} at {stored()} letters stored "
                  f"({time.monotonic() - started:.1f} s)", flush=True)
        try:
            rc = sender.wait(timeout=max(left(), 1))
        except subprocess.TimeoutExpired:
            raise Fail(f"the last sender did not finish within {OVERALL_S} s overall")
        with open(os.path.join(tmp, f"sender{runs['sender']}.log")) as f:
            last_log = f.read()
        if rc != 0:
            raise Fail(f"the last sender exited with {rc}:\n{last_log[-3000:]}")
        if f"{n} of {n} letters acknowledged (outbox: 0 pending, 0 dead)" not in last_log:
            raise Fail("the last sender did not report an empty outbox")
        resumed = []
        for i in range(2, runs["sender"] + 1):
            with open(os.path.join(tmp, f"sender{i}.log")) as f:
                for line in f:
                    if line.startswith("resuming after letter "):
                        resumed.append(int(line.split()[-1]))
        receiver.send_signal(signal.SIGTERM)
        if receiver.wait(timeout=20) != 0:
            raise Fail(f"the receiver exited with {receiver.returncode} after SIGTERM")

        # The receiver: exactly n letters, each once, in order.
        con = sqlite3.connect(rdb)
        seqs = [r[0] for r in con.execute(
            "SELECT seq FROM letters WHERE sender = ? ORDER BY id", (SENDER_NAME,))]
        total = con.execute("SELECT count(*) FROM letters").fetchone()[0]
        con.close()
        if total != n or seqs != list(range(1, n + 1)):
            dup = len(seqs) - len(set(seqs))
            missing = n - len(set(seqs))
            out_of_order = sum(1 for a, b in zip(seqs, seqs[1:]) if b <= a)
            raise Fail(f"the receiver holds {total} letters ({len(seqs)} from "
                       f"{SENDER_NAME}): {dup} duplicate(s), {missing} missing, "
                       f"{out_of_order} out of order")
        # The outbox: empty.
        con = sqlite3.connect(odb)
        pending = con.execute("SELECT count(*) FROM outbox").fetchone()[0]
        dead = con.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
        con.close()
        if pending or dead:
            raise Fail(f"the outbox still holds {pending} pending, {dead} dead")
        if kills != {"receiver": 5, "sender": 2}:
            raise Fail(f"kills done: {kills}")
        print(f"chaos: ok: {n} letters stored once, in order; outbox empty; receiver "
              f"killed 5 times, sender twice (restarts resumed after letters "
              f"{resumed}); {time.monotonic() - started:.1f} s", flush=True)
        return 0
    except Fail as e:
        print(f"chaos: FAIL (seed {seed}): {e}", file=sys.stderr)
        for name in sorted(os.listdir(tmp)):
            if name.endswith(".log"):
                with open(os.path.join(tmp, name)) as f:
                    tail = f.read()[-1500:]
                print(f"--- {name} (tail):\n{tail}", file=sys.stderr)
        return 1
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if args.keep:
            print(f"chaos: kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
