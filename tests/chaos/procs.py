"""The child processes of a chaos script (run_chaos.py, run_nats_js.py).

A Run owns one temporary directory and one time budget. Each process it
starts writes its output to NAME<n>.log there (n counts the starts of NAME).
cleanup() kills every process still running, prints the tail of each log when
the run failed, and removes the directory (unless kept).

The scripts import this module from their own directory, which Python puts
first on sys.path when ctest runs `python3 .../tests/chaos/run_*.py`.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time


class Fail(Exception):
    """A check failed; the message says which and what was found."""


class Run:
    def __init__(self, prefix, budget_s, keep=False):
        self.tmp = tempfile.mkdtemp(prefix=prefix)
        self.procs = []
        self.started = time.monotonic()
        self.budget = budget_s
        self.keep = keep
        self.runs = {}

    def elapsed(self):
        return time.monotonic() - self.started

    def left(self):
        return self.budget - self.elapsed()

    def check_time(self, what):
        if self.left() <= 0:
            raise Fail(f"out of time ({self.budget} s) while {what}")

    def path(self, name):
        return os.path.join(self.tmp, name)

    def log(self, name, n=None):
        """The log of start number N of NAME (default: the latest)."""
        return self.path(f"{name}{n if n is not None else self.runs[name]}.log")

    def start(self, name, argv):
        """Starts argv with its output to NAME<n>.log; returns (proc, log)."""
        self.runs[name] = self.runs.get(name, 0) + 1
        log = self.log(name)
        with open(log, "w") as f:
            p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p, log

    def wait_for(self, cond, what, within=15, every=0.02):
        """Polls cond() every EVERY seconds until it is true (returns True) or
        WITHIN seconds (None: no limit of its own) have passed (returns
        False). Fail, saying the run was waiting for WHAT, when the run's
        time is up first. cond may raise Fail itself."""
        end = None if within is None else time.monotonic() + within
        while not cond():
            self.check_time(f"waiting for {what}")
            if end is not None and time.monotonic() > end:
                return False
            time.sleep(every)
        return True

    def wait_text(self, p, log, text, within=15):
        """Waits until TEXT is in P's LOG; Fail when P exits first or after
        WITHIN seconds."""
        def written():
            with open(log, errors="replace") as f:
                if text in f.read():
                    return True
            if p.poll() is not None:
                raise Fail(f"{log} exited with {p.returncode} before '{text}'")
            return False

        if not self.wait_for(written, f"'{text}' in {log}", within):
            raise Fail(f"no '{text}' in {log} within {within} s")

    def kill(self, p, sig=signal.SIGKILL):
        """Sends SIG to P and returns its exit status."""
        p.send_signal(sig)
        return p.wait(timeout=20)

    def cleanup(self, failed):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if failed:
            for name in sorted(os.listdir(self.tmp)):
                if name.endswith(".log"):
                    with open(self.path(name), errors="replace") as f:
                        tail = f.read()[-2000:]
                    print(f"--- {name} (tail):\n{tail}", file=sys.stderr)
        if self.keep:
            print(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
