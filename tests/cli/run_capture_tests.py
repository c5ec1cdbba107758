#!/usr/bin/python3
"""run_capture_tests.py: `ackrpc capture` and `ackrpc replay` against a real
server (cli_test_server), checked by a pcapng reader written here (not the
tool's), and by tshark with the shipped dissector (tools/wireshark/ackrpc.lua).

    run_capture_tests.py --group NAME --ackrpc BIN --server BIN
                         [--tshark BIN --dissector FILE]

Groups: pcapng, json, replay, lossy, tshark. Exit 0 when every check
passed, 1 otherwise, 77 (skipped) for the tshark group without tshark.
"""
import argparse
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run_cli_tests  # noqa: E402  (its server fixture)

ECHO = "ackrpc.clitest.Test/Echo"
FAIL = "ackrpc.clitest.Test/Fail"
WATCH = "ackrpc.reflection.Capture/Watch"


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field_bytes(num, data):
    return varint(num << 3 | 2) + varint(len(data)) + data


def field_varint(num, v):
    return varint(num << 3) + varint(v)


def request_frame(method, call_id, body=b""):
    head = field_bytes(1, method.encode()) + field_bytes(3, call_id)
    return b"AK\x01\x01" + struct.pack("<II", len(head), len(body)) + head + body


def read_frame(sock):
    """Reads one reply frame: (status, message, body)."""
    def exactly(n):
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise EOFError("the server closed the connection")
            buf += chunk
        return buf
    prefix = exactly(12)
    assert prefix[:4] == b"AK\x01\x02", prefix
    hl, bl = struct.unpack("<II", prefix[4:])
    head, body = exactly(hl), exactly(bl)
    status, message, i = 0, b"", 0
    while i < len(head):
        tag = head[i]
        i += 1
        v, shift = 0, 0
        while True:
            b = head[i]
            i += 1
            v |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        if tag == 0x08:
            status = v
        elif tag == 0x12:
            message = head[i:i + v]
            i += v
    return status, message.decode(), body


def call(path, method, call_id, body=b""):
    """One call on its own connection, as the protocol's default."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(request_frame(method, call_id, body))
        s.shutdown(socket.SHUT_WR)
        return read_frame(s)


def parse_pcapng(data):
    """Records of an ackrpc capture, read independently of the tool."""
    recs, off, linktypes = [], 0, []
    while off + 12 <= len(data):
        btype, blen = struct.unpack_from("<II", data, off)
        assert blen >= 12 and off + blen <= len(data), "block length"
        assert struct.unpack_from("<I", data, off + blen - 4)[0] == blen, "trailing length"
        if btype == 0x0A0D0D0A:
            assert struct.unpack_from("<I", data, off + 8)[0] == 0x1A2B3C4D
        elif btype == 1:
            linktypes.append(struct.unpack_from("<H", data, off + 8)[0])
        elif btype == 6:
            iface, hi, lo, caplen, origlen = struct.unpack_from("<IIIII", data, off + 8)
            assert linktypes[iface] == 147
            d = data[off + 28:off + 28 + caplen]
            ver, kind, flags, uid, gid, pid, status, lost, ml, cl, tl = struct.unpack_from(
                ">BBHIIIIIHBxHxx", d, 0)
            p = 32
            method = d[p:p + ml].decode()
            call_id = d[p + ml:p + ml + cl]
            message = d[p + ml + cl:p + ml + cl + tl].decode()
            body = d[p + ml + cl + tl:]
            recs.append(dict(kind=kind, flags=flags, uid=uid, gid=gid, pid=pid,
                             status=status, lost=lost, method=method, call_id=call_id,
                             message=message, body=body, time=(hi << 32) | lo))
        off += blen
    assert off == len(data), "trailing bytes"
    return recs


def all_types(f_int32=0, f_bytes=b""):
    """An ackrpc.clitest.AllTypes body: f_int32 = 3, f_bytes = 15."""
    body = b""
    if f_int32:
        body += field_varint(3, f_int32)
    if f_bytes:
        body += field_bytes(15, f_bytes)
    return body


def fail_request(code, message):
    return field_varint(1, code) + field_bytes(2, message.encode())


class Env(run_cli_tests.Env):
    """run_cli_tests.py's server fixture (start_server, stop_server, check),
    plus the capture processes to clean up."""

    def __init__(self, args):
        super().__init__(args)
        self.procs = []

    def capture(self, *argv):
        """Starts `ackrpc capture` and waits for its "listening on" line."""
        p = subprocess.Popen([self.args.ackrpc, "capture", *argv, self.socket],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.procs.append(p)
        r, _, _ = select.select([p.stderr], [], [], 10)
        line = p.stderr.readline().decode() if r else ""
        self.check("listening on" in line, "capture says it is listening", line)
        return p

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        super().close()


def finish(env, p, timeout=10):
    """Waits for a capture given -c; returns (rc, stdout, stderr)."""
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        env.check(False, "capture did not end")
    return p.returncode, out, err.decode(errors="replace")


def some_calls(env):
    """Echo, Echo, Fail: returns the call ids."""
    ids = [os.urandom(16) for _ in range(3)]
    env.check(call(env.socket, ECHO, ids[0], all_types(7)) == (0, "", all_types(7)), "echo")
    call(env.socket, ECHO, ids[1], all_types(8, b"xyz"))
    st = call(env.socket, FAIL, ids[2], fail_request(5, "nothing here"))
    env.check(st[0] == 5, "fail answers NOT_FOUND", st)
    return ids


def g_pcapng(env):
    env.start_server()
    path = os.path.join(env.tmp, "cap.pcapng")
    p = env.capture("-w", path, "-c", "6")
    ids = some_calls(env)
    rc, out, err = finish(env, p)
    env.check(rc == 0, "capture -c 6 exits 0", err)
    recs = parse_pcapng(open(path, "rb").read())
    env.check(len(recs) == 6, "six records", recs)
    want = [(1, ECHO, ids[0]), (2, ECHO, ids[0]), (1, ECHO, ids[1]), (2, ECHO, ids[1]),
            (1, FAIL, ids[2]), (2, FAIL, ids[2])]
    got = [(r["kind"], r["method"], r["call_id"]) for r in recs]
    env.check(got == want, "requests and replies in order, with their call ids",
              f"{got}\n{want}")
    for r in recs:
        env.check(r["uid"] == os.getuid() and r["gid"] == os.getgid() and
                  r["pid"] == os.getpid(), "the peer's uid, gid and pid", r)
    env.check(recs[0]["body"] == all_types(7) and recs[1]["body"] == all_types(7),
              "request and reply bodies", recs[:2])
    env.check(recs[5]["status"] == 5 and recs[5]["message"] == "nothing here",
              "the reply's status and message", recs[5])
    env.check(recs[3]["status"] == 0, "OK status", recs[3])
    # The server stopping ends a capture that has no -c.
    p = env.capture("-w", os.path.join(env.tmp, "two.pcapng"))
    env.stop_server()
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    env.check(p.returncode == 0, "capture ends, 0, when the server stops", p.returncode)


def g_json(env):
    env.start_server()
    p = env.capture("--json", "-c", "4")
    ids = some_calls(env)
    rc, out, err = finish(env, p)
    env.check(rc == 0, "capture --json exits 0", err)
    lines = [json.loads(x) for x in out.decode().splitlines()]
    env.check(len(lines) == 4, "one line per record", out)
    if len(lines) == 4:
        q, a = lines[0], lines[1]
        env.check(q["kind"] == "request" and q["method"] == ECHO and
                  q["call_id"] == ids[0].hex() and q["uid"] == os.getuid() and
                  q["pid"] == os.getpid() and q["body"] == {"fInt32": 7},
                  "a request line, its body decoded", q)
        env.check(a["kind"] == "reply" and a["status"] == "OK" and a["code"] == 0 and
                  a["body"] == {"fInt32": 7}, "a reply line", a)
        env.check(lines[3]["body"] == {"fInt32": 8, "fBytes": "eHl6"}, "bytes in JSON",
                  lines[3])


def g_replay(env):
    env.start_server()
    path = os.path.join(env.tmp, "cap.pcapng")
    p = env.capture("-w", path, "-c", "6")
    some_calls(env)
    rc, _, err = finish(env, p)
    env.check(rc == 0, "capture", err)
    r = subprocess.run([env.args.ackrpc, "replay", path, env.socket], capture_output=True,
                       timeout=60)
    out = r.stdout.decode()
    env.check(r.returncode == 0 and "3 calls replayed, 0 differ" in out,
              "replay against the same server: 0", out + r.stderr.decode())
    env.start_server("--changed")
    r = subprocess.run([env.args.ackrpc, "replay", path, env.socket], capture_output=True,
                       timeout=60)
    out = r.stdout.decode()
    env.check(r.returncode == 1, "replay against a changed server: 1",
              out + r.stderr.decode())
    env.check("DIFFERS ackrpc.clitest.Test/Echo" in out and
              '- body {"fInt32":7}' in out and '+ body {"fInt32":8}' in out and
              "3 calls replayed, 2 differ" in out, "the diff names the call and bodies", out)
    junk = os.path.join(env.tmp, "junk")
    open(junk, "wb").write(b"not a capture at all")
    r = subprocess.run([env.args.ackrpc, "replay", junk, env.socket], capture_output=True,
                       timeout=60)
    env.check(r.returncode == 65, "replay of a file that is no capture: 65", r)


def g_lossy(env):
    """A listener that reads nothing loses records; the server goes on."""
    env.start_server()
    watcher = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    watcher.settimeout(10)
    watcher.connect(env.socket)
    watcher.sendall(request_frame(WATCH, os.urandom(16)))
    status, message, _ = read_frame(watcher)
    env.check(status == 0, "Watch answers OK", message)
    big = all_types(1, b"x" * (200 << 10))
    t0 = time.monotonic()
    for i in range(60):
        st = call(env.socket, ECHO, os.urandom(16), big)
        if st[0] != 0:
            env.check(False, "calls go on while the listener reads nothing", st[:2])
            break
    # Not a timing assertion: the calls finished at all (each has a 10 s
    # bound) while 24 MB of records were produced for a reader of none.
    print(f"60 calls of 200 KiB with a stalled listener: {time.monotonic() - t0:.2f} s")
    last_id = os.urandom(16)
    done = {"lost": None}

    def reader():
        buf = b""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r, _, _ = select.select([watcher], [], [], 0.5)
            if r:
                chunk = watcher.recv(1 << 20)
                if not chunk:
                    return
                buf += chunk
            # Scan the whole blocks received so far.
            off = 0
            while off + 8 <= len(buf):
                btype, blen = struct.unpack_from("<II", buf, off)
                if off + blen > len(buf):
                    break
                if btype == 6:
                    d = buf[off + 28:]
                    ml, cl = struct.unpack_from(">H", d, 24)[0], d[26]
                    if d[32 + ml:32 + ml + cl] == last_id:
                        done["lost"] = struct.unpack_from(">I", d, 20)[0]
                        return
                off += blen
            buf = buf[off:]

    t = threading.Thread(target=reader)
    t.start()
    time.sleep(0.5)  # the reader drains what was kept
    call(env.socket, ECHO, last_id, all_types(2))
    t.join(40)
    env.check(done["lost"] is not None and done["lost"] > 0,
              "a later record counts the records lost", done)
    watcher.close()


def g_redact(env):
    """Fields marked (ackrpc.sensitive) never reach a capture."""
    env.start_server("--vault")
    path = os.path.join(env.tmp, "cap.pcapng")
    # The JSON capture first: its descriptor lookup (a call) comes before
    # the pcapng capture listens, so each sees the Open call alone.
    pj = env.capture("--json", "-c", "2")
    p = env.capture("-w", path, "-c", "2")
    # ackrpc.clitest.vault.OpenRequest, by hand (clitest_vault.proto).
    def creds(user, password):
        return field_bytes(1, user.encode()) + field_bytes(2, password.encode())
    body = (field_bytes(1, creds("alice", "hunter2-SECRET")) + field_bytes(2, b"front") +
            field_bytes(3, creds("bob", "bobs-SECRET")) +
            field_bytes(4, field_bytes(1, b"carol") +
                        field_bytes(2, creds("carol", "carols-SECRET"))) +
            field_bytes(5, b"PIN-SECRET-4242"))
    st, msg, reply = call(env.socket, "ackrpc.clitest.vault.Vault/Open", os.urandom(16), body)
    env.check(st == 0 and b"token-of-hunter2-SECRET" in reply, "the call itself", (st, msg))
    rc, _, err = finish(env, p)
    rcj, out, errj = finish(env, pj)
    data = open(path, "rb").read()
    for secret in (b"SECRET", b"token-of-"):
        env.check(secret not in data, f"{secret!r} is not in the pcapng capture")
        env.check(secret not in out, f"{secret!r} is not in the JSON capture", out)
    recs = [x for x in parse_pcapng(data) if x["method"].endswith("Vault/Open")]
    env.check(len(recs) == 2 and all(x["flags"] & 1 for x in recs),
              "both records say they were redacted", recs)
    env.check(all(x in data for x in (b"alice", b"bob", b"carol", b"front")),
              "the other fields are kept", data)
    lines = [json.loads(x) for x in out.decode().splitlines()]
    opened = [x for x in lines if x["method"].endswith("Vault/Open")]
    want = {"creds": {"user": "alice"}, "door": "front", "more": [{"user": "bob"}],
            "byName": {"carol": {"user": "carol"}}}
    env.check(len(opened) == 2 and opened[0].get("body") == want and
              opened[0].get("redacted") is True and opened[1].get("body") == {"door": "front"},
              "the JSON shows the bodies without their secrets", out)


def g_usage(env):
    """--help, bad command lines, and servers that cannot be captured."""
    def run(*argv):
        r = subprocess.run([env.args.ackrpc, *argv], capture_output=True, timeout=60)
        return r.returncode, r.stdout.decode(), r.stderr.decode()
    for cmd in ("capture", "replay"):
        rc, out, err = run(cmd, "--help")
        env.check(rc == 0 and f"usage: ackrpc {cmd}" in out and "Exit status" in out,
                  f"{cmd} --help", out + err)
        rc, out, err = run(cmd)
        env.check(rc == 64, f"{cmd} without arguments: 64", err)
    rc, _, err = run("capture", "-c", "0", env.socket)
    env.check(rc == 64, "capture -c 0: 64", err)
    rc, _, err = run("capture", env.socket)
    env.check(rc == 69 and "cannot connect" in err, "capture of no server: 69", err)
    if os.getuid() == 0:
        # Another user who may call the server may not capture its calls.
        env.start_server()
        os.chmod(env.tmp, 0o755)
        os.chmod(env.socket, 0o666)

        def nobody():
            os.setgid(65534)
            os.setgroups([])
            os.setuid(65534)
        p = subprocess.Popen([env.args.ackrpc, "capture", "-w", "-", env.socket],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             preexec_fn=nobody)
        env.procs.append(p)
        try:
            _, err = p.communicate(timeout=10)  # a capture that started runs on
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
        err = err.decode()
        env.check(p.returncode == 7 and "only root or the socket's owner" in err,
                  "capture by another user: 7, PERMISSION_DENIED", err)
        r = subprocess.run([env.args.ackrpc, "health", env.socket],
                           capture_output=True, timeout=60, preexec_fn=nobody)
        env.check(r.returncode == 0, "that user may call the server", r.stderr)
    env.start_server("--no-builtins")
    rc, _, err = run("capture", "-w", os.path.join(env.tmp, "x"), env.socket)
    env.check(rc == 78 and "does not offer" in err,
              "capture of a server without built-ins: 78", err)


def g_tshark(env):
    if not env.args.tshark:
        print("tshark not found: skipped")
        return 77
    env.start_server()
    path = os.path.join(env.tmp, "cap.pcapng")
    p = env.capture("-w", path, "-c", "6")
    ids = some_calls(env)
    rc, _, err = finish(env, p)
    env.check(rc == 0, "capture", err)
    r = subprocess.run([env.args.tshark, "-n", "-X", f"lua_script:{env.args.dissector}",
                        "-r", path, "-T", "fields", "-E", "separator=|",
                        "-e", "ackrpc.kind", "-e", "ackrpc.method", "-e", "ackrpc.call_id",
                        "-e", "ackrpc.uid", "-e", "ackrpc.pid", "-e", "ackrpc.status",
                        "-e", "ackrpc.message"],
                       capture_output=True, timeout=120,
                       env={**os.environ, "HOME": env.tmp})
    rows = [line.split("|") for line in r.stdout.decode().splitlines()]
    uid, pid = str(os.getuid()), str(os.getpid())
    want = [["1", ECHO, ids[0].hex(), uid, pid, "", ""],
            ["2", ECHO, ids[0].hex(), uid, pid, "0", ""],
            ["1", ECHO, ids[1].hex(), uid, pid, "", ""],
            ["2", ECHO, ids[1].hex(), uid, pid, "0", ""],
            ["1", FAIL, ids[2].hex(), uid, pid, "", ""],
            ["2", FAIL, ids[2].hex(), uid, pid, "5", "nothing here"]]
    env.check(r.returncode == 0 and rows == want, "tshark reads method, call id, uid, status",
              f"{rows}\n{want}\n{r.stderr.decode()}")
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--group", required=True)
    ap.add_argument("--ackrpc", required=True)
    ap.add_argument("--server", required=True)
    ap.add_argument("--tshark")
    ap.add_argument("--dissector")
    args = ap.parse_args()
    env = Env(args)
    try:
        rc = globals()["g_" + args.group](env)
    finally:
        env.close()
    if rc == 77:
        return 77
    print(f"{args.group}: {'FAILED' if env.failures else 'passed'}")
    return 1 if env.failures else 0


if __name__ == "__main__":
    sys.exit(main())
