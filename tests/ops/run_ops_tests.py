#!/usr/bin/python3
"""run_ops_tests.py: operations features with real processes, one group per
ctest (tests/ops/CMakeLists.txt):

  activation  the mailbox receiver started by systemd-socket-activate (socket
              activation: LISTEN_FDS, address "systemd:NAME"), called through
              the `ackrpc` tool (health, list, call by reflection, stats);
              the receiver neither locks nor removes systemd's socket; bad
              LISTEN_* variables are refused.
  logging     the shipped receiver with ACKRPC_LOG_LEVEL=debug writes one
              key=value line per call; at the default level, none.

    run_ops_tests.py --group NAME --build-dir DIR

Every wait is bounded; temporary files, sockets and processes are cleaned up.
Exit status 0 when every check passed.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time


class Env:
    def __init__(self, args):
        self.b = args.build_dir
        self.ackrpc = os.path.join(self.b, "tools", "ackrpc", "ackrpc")
        self.receiver = os.path.join(self.b, "examples", "mailbox", "mailbox_receiver")
        self.tmp = tempfile.mkdtemp(prefix="ackrpc-ops-")
        self.procs = []
        self.checks = self.failures = 0

    def check(self, ok, what, detail=""):
        self.checks += 1
        if not ok:
            self.failures += 1
            print(f"FAIL: {what}\n{detail}", flush=True)

    def run(self, *argv, env=None, timeout=30):
        r = subprocess.run(list(argv), capture_output=True, timeout=timeout, env=env)
        return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")

    def cli(self, *argv):
        return self.run(self.ackrpc, *argv)

    def spawn(self, argv, env=None):
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self.procs.append(p)
        return p

    def stop(self, p, timeout=10):
        """SIGTERM, bounded wait; returns (exit status, stdout, stderr)."""
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        return p.returncode, out.decode(errors="replace"), err.decode(errors="replace")

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


def wait_path(path, proc, seconds=10):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if os.path.exists(path):
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    return False


def g_activation(e):
    if not shutil.which("systemd-socket-activate"):
        print("SKIP: systemd-socket-activate not found (Debian: systemd)")
        e.check(True, "skipped")
        return
    sock = os.path.join(e.tmp, "mailbox.sock")
    db = os.path.join(e.tmp, "mail.db")
    env = dict(os.environ)
    env.pop("ACKRPC_LOG_LEVEL", None)
    p = e.spawn(["systemd-socket-activate", "-l", sock, "--fdname=mailbox",
                 "-E", "ACKRPC_LOG_LEVEL=debug", e.receiver, "systemd:mailbox", db], env=env)
    e.check(wait_path(sock, p), "systemd-socket-activate made the socket")
    # The first connection starts the receiver; it is served, not refused.
    code, out, err = e.cli("health", sock)
    e.check(code == 0 and out == "SERVING\n", "health through the activated socket",
            f"{code} {out!r} {err}")
    code, out, err = e.cli("list", sock)
    e.check(code == 0 and "ackrpc.mailbox.Mailbox/Deliver(ackrpc.mailbox.Letter)" in out,
            "list by reflection", f"{code} {out} {err}")
    for seq in (1, 2, 3):
        code, out, err = e.cli("call", sock, "ackrpc.mailbox.Mailbox/Deliver",
                               json.dumps({"sender": "ops", "seq": str(seq), "body": "hi"}))
        doc = json.loads(out) if code == 0 else {}
        e.check(code == 0 and doc.get("sender") == "ops" and doc.get("seq") == str(seq),
                f"call {seq} by reflection", f"{code} {out} {err}")
    code, out, err = e.cli("call", sock, "ackrpc.mailbox.Mailbox/Count", '{"sender": "ops"}')
    e.check(code == 0 and json.loads(out or "{}").get("fromSender") == "3", "count",
            f"{code} {out} {err}")
    code, out, err = e.cli("stats", "--json", sock)
    by = {m["method"]: m for m in json.loads(out or "{}").get("methods", [])}
    e.check(code == 0 and by.get("ackrpc.mailbox.Mailbox/Deliver", {}).get("calls") == 3,
            "stats counts the calls", f"{code} {out} {err}")
    e.check(not os.path.exists(sock + ".lock"), "no lock file for an inherited socket",
            str(os.listdir(e.tmp)))
    code, out, err = e.stop(p)
    e.check(code == 0, "the receiver stops cleanly", f"{code} {out} {err}")
    e.check(os.path.exists(sock), "the socket file is left to its owner (systemd)",
            str(os.listdir(e.tmp)))
    e.check("call method=ackrpc.mailbox.Mailbox/Deliver status=OK us=" in err,
            "per-call debug lines (ACKRPC_LOG_LEVEL=debug)", err[-2000:])
    os.unlink(sock)

    # Bad or missing LISTEN_* variables: refused, nothing served.
    bad = [({}, "E_NOT_FOUND"),
           ({"LISTEN_PID": "1", "LISTEN_FDS": "1"}, "E_NOT_FOUND"),
           ({"LISTEN_PID": "$$", "LISTEN_FDS": "x1"}, "E_ADDRESS"),
           ({"LISTEN_PID": "$$", "LISTEN_FDS": "99999"}, "E_ADDRESS"),
           ({"LISTEN_PID": "$$", "LISTEN_FDS": "1", "FD3": "file"}, "E_ADDRESS"),
           ({"LISTEN_PID": "$$", "LISTEN_FDS": "2"}, "E_NOT_FOUND")]
    for vars_, want in bad:
        setup = "exec 3</dev/null; " if vars_.get("FD3") else ""
        assigns = " ".join(f"{k}={v}" for k, v in vars_.items() if k != "FD3")
        script = f'{setup}{assigns} exec "$0" systemd: "$1"'
        code, out, err = e.run("sh", "-c", script, e.receiver, db, env=env, timeout=20)
        e.check(code == 1 and "cannot serve on systemd:" in err and want in err,
                f"refused: {vars_}", f"{code} {out} {err}")


def g_logging(e):
    sock = os.path.join(e.tmp, "r.sock")
    db = os.path.join(e.tmp, "mail.db")
    for seq, level, want_lines in ((1, "debug", True), (2, None, False)):
        env = dict(os.environ)
        env.pop("ACKRPC_LOG_LEVEL", None)
        if level:
            env["ACKRPC_LOG_LEVEL"] = level
        p = e.spawn([e.receiver, sock, db], env=env)
        e.check(wait_path(sock, p), "receiver started")
        code, out, err = e.cli("call", sock, "ackrpc.mailbox.Mailbox/Deliver",
                               json.dumps({"sender": "log", "seq": str(seq)}))
        e.check(code == 0, "call", f"{code} {out} {err}")
        e.cli("call", sock, "ackrpc.mailbox.Mailbox/Nope", "{}")
        code, out, err = e.stop(p)
        lines = [ln for ln in err.splitlines() if "call method=" in ln]
        if want_lines:
            ok = any(ln.startswith("ackrpc: debug: call method=ackrpc.mailbox.Mailbox/Deliver "
                                   "status=OK us=") and f"peer_uid={os.getuid()}" in ln and
                     "peer_pid=" in ln and "bytes_in=" in ln and "bytes_out=" in ln
                     for ln in lines)
            e.check(ok, "one key=value line per call at debug", err[-2000:])
        else:
            e.check(not lines, "no per-call lines at the default level", err[-2000:])
    env = dict(os.environ, ACKRPC_LOG_LEVEL="loud")
    p = e.spawn([e.receiver, sock, db], env=env)
    wait_path(sock, p)
    code, out, err = e.stop(p)
    e.check('ACKRPC_LOG_LEVEL="loud" is not a log level' in err, "a bad level is reported", err)


GROUPS = {name[2:]: fn for name, fn in globals().items() if name.startswith("g_")}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--group", required=True, choices=sorted(GROUPS))
    ap.add_argument("--build-dir", required=True)
    args = ap.parse_args()
    e = Env(args)
    try:
        GROUPS[args.group](e)
    finally:
        e.close()
    print(f"ops_{args.group}: {e.checks - e.failures}/{e.checks} checks passed")
    return 1 if e.failures or e.checks == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
