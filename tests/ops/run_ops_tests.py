#!/usr/bin/python3
"""run_ops_tests.py: operations features with real processes, one group per
ctest (tests/ops/CMakeLists.txt):

  activation  the mailbox receiver started by systemd-socket-activate (socket
              activation: LISTEN_FDS, address "systemd:NAME"), called through
              the `ackrpc` tool (health, list, call by reflection, stats);
              the receiver neither locks nor removes systemd's socket; bad
              LISTEN_* variables are refused.
  restart     the OPERATIONS.md recipe for restarts under socket activation
              (examples/systemd/keep-socket.sh under systemd-socket-activate):
              calls made while the receiver is restarted four times (SIGHUP
              to keep-socket.sh, SIGTERM to the receiver) are all served,
              each exactly once, by five different processes.
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
import threading
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


def wait_for(probe, seconds=10):
    """probe()'s first true value, polled every 10 ms; None after seconds."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        got = probe()
        if got:
            return got
        time.sleep(0.01)
    return None


def wait_path(path, proc, seconds=10):
    """Whether path exists before proc exits (and within seconds)."""
    return wait_for(lambda: "gone" if proc.poll() is not None else os.path.exists(path),
                    seconds) is True


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


def children(pid):
    """Pids whose parent is pid (from /proc/N/stat)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command may hold spaces and parentheses: fields after the last ')'.
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(name))
    return out


def exe_of(pid):
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def wait_child(pid, exe, not_in, seconds=10):
    """A child of pid running the program exe (once it has exec'ed; the
    parent also runs helpers such as date) that is not in not_in, or None
    after seconds."""
    exe = os.path.realpath(exe)
    found = wait_for(lambda: [c for c in children(pid)
                              if c not in not_in and exe_of(c) == exe], seconds)
    return found[0] if found else None


def g_restart(e):
    if not shutil.which("systemd-socket-activate"):
        print("SKIP: systemd-socket-activate not found (Debian: systemd)")
        e.check(True, "skipped")
        return
    src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    keep = os.path.join(src, "examples", "systemd", "keep-socket.sh")
    sock = os.path.join(e.tmp, "mailbox.sock")
    db = os.path.join(e.tmp, "mail.db")
    env = dict(os.environ)
    env.pop("ACKRPC_LOG_LEVEL", None)
    # As docs/OPERATIONS.md gives it. systemd-socket-activate execs into
    # keep-socket.sh, so p.pid holds the socket and the receiver is its child.
    p = e.spawn(["systemd-socket-activate", "-l", sock, "--fdname=mailbox",
                 keep, e.receiver, "systemd:mailbox", db], env=env)
    e.check(wait_path(sock, p), "systemd-socket-activate made the socket")
    code, out, err = e.cli("health", sock)
    e.check(code == 0 and out == "SERVING\n", "health through the kept socket",
            f"{code} {out!r} {err}")
    first = wait_child(p.pid, e.receiver, [])
    e.check(first is not None, "keep-socket.sh started the receiver")
    if first is None:
        return
    pids = [first]
    try:
        restart_calls(e, p, sock, pids)
    finally:
        # Whatever failed above, no receiver outlives the test (killing
        # keep-socket.sh alone would orphan it).
        for q in pids:
            if exe_of(q) == os.path.realpath(e.receiver):
                os.kill(q, signal.SIGKILL)
    os.unlink(sock)


def restart_calls(e, p, sock, pids):

    # One caller, one call at a time, no retries: any refused or failed call
    # shows. Bounded by count and by the stop flag.
    done, failed, stop = [], [], threading.Event()

    def caller():
        for seq in range(1, 3001):
            if stop.is_set():
                return
            code, out, err = e.cli("call", sock, "ackrpc.mailbox.Mailbox/Deliver",
                                   json.dumps({"sender": "restart", "seq": str(seq)}))
            (done if code == 0 else failed).append((seq, code, err.strip()))

    t = threading.Thread(target=caller)
    t.start()
    try:
        for n in range(4):
            # Some calls on the current process, then restart it mid-stream:
            # by SIGHUP to keep-socket.sh (the recipe's way), or SIGTERM to
            # the receiver itself.
            mark = len(done) + len(failed)
            end = time.monotonic() + 20
            while len(done) + len(failed) < mark + 15 and time.monotonic() < end:
                time.sleep(0.01)
            if n % 2 == 0:
                os.kill(p.pid, signal.SIGHUP)
            else:
                os.kill(pids[-1], signal.SIGTERM)
            nxt = wait_child(p.pid, e.receiver, pids)
            e.check(nxt is not None, "keep-socket.sh started the receiver again")
            if nxt is None:
                break
            pids.append(nxt)
        mark = len(done) + len(failed)
        end = time.monotonic() + 20
        while len(done) + len(failed) < mark + 15 and time.monotonic() < end:
            time.sleep(0.01)
    finally:
        stop.set()
        t.join(timeout=60)
    e.check(not t.is_alive(), "the caller finished")
    print(f"restart: {len(done)} calls served, {len(failed)} failed, receivers {pids}")
    e.check(len(pids) == 5 and len(set(pids)) == 5, "five receivers served in turn", str(pids))
    e.check(not failed, "no call refused or failed across four restarts",
            f"{len(failed)} failed of {len(done) + len(failed)}: {failed[:5]}")
    e.check(len(done) >= 75, "calls were made on every receiver", str(len(done)))
    code, out, err = e.cli("call", sock, "ackrpc.mailbox.Mailbox/Count", '{"sender": "restart"}')
    stored = json.loads(out or "{}").get("fromSender") if code == 0 else None
    e.check(stored == str(len(done)), "each served call stored exactly once",
            f"stored {stored}, served {len(done)}: {code} {err}")
    # SIGTERM to keep-socket.sh stops the receiver (it drains) and itself.
    code, out, err = e.stop(p, timeout=20)
    e.check(code == 0, "keep-socket.sh stops with the receiver's status 0", f"{code} {err[-2000:]}")
    e.check(not children(p.pid) and all(not os.path.exists(f"/proc/{q}") or
                                         open(f"/proc/{q}/stat").read().split(") ")[1][0] == "Z"
                                         for q in pids),
            "no receiver left running", str(pids))


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
