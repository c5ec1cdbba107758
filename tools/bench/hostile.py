#!/usr/bin/python3
"""hostile.py: the attacks of issue 11, as a local peer would make them, for
measuring a server under them (docs/SECURITY.md; figures in
docs/PERFORMANCE.md). Standard library only; frames as docs/PROTOCOL.md says.

    hostile.py idle SOCK N SECONDS
        holds N idle connections (reopening those the server drops)
    hostile.py churn SOCK SECONDS
        connects and closes as fast as it can (refusals and evictions)
    hostile.py pinned SOCK N PAD_BYTES
        N connections, each a kvstore Get{missing key, wait_ms=20000} padded
        with PAD_BYTES of an unknown field; holds them 5 s
    hostile.py behind SOCK SECONDS PAD_BYTES
        one session looping the padded Get with timeout_us=1: each call is
        answered DEADLINE_EXCEEDED and left with its handler

Each prints one line of counts. With --pid PID it also prints the peak RSS
(VmHWM) of that process after the attack.
"""

import argparse
import socket
import struct
import sys
import time

GET = "ackrpc.kvstore.KvStore/Get"


def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def field(num, wire, payload):
    key = varint(num << 3 | wire)
    if wire == 2:
        return key + varint(len(payload)) + payload
    return key + varint(payload)


def request(method, body, timeout_us=0, call_id=b"hostile-0001"):
    head = field(1, 2, method.encode()) + field(3, 2, call_id)
    if timeout_us:
        head += field(2, 0, timeout_us)
    return b"AK" + bytes([1, 1]) + struct.pack("<II", len(head), len(body)) + head + body


def padded_get(pad):
    body = field(1, 2, b"no-such-key") + field(2, 0, 20000)
    if pad:
        body += field(1000, 2, b"p" * pad)
    return body


def read_reply(s):
    """One reply frame: its status, or None if the connection ended."""
    buf = b""
    while True:
        if len(buf) >= 12:
            hl, bl = struct.unpack("<II", buf[4:12])
            if len(buf) >= 12 + hl + bl:
                head = buf[12:12 + hl]
                status = 0
                if head[:1] == b"\x08":
                    status, i = 0, 1
                    shift = 0
                    while True:
                        b = head[i]
                        status |= (b & 0x7F) << shift
                        i += 1
                        shift += 7
                        if b < 0x80:
                            break
                return status
        chunk = s.recv(65536)
        if not chunk:
            return None
        buf += chunk


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s


def idle(a):
    conns = []
    opened = 0
    end = time.monotonic() + a.seconds
    while time.monotonic() < end:
        conns = [c for c in conns if not closed(c)]
        while len(conns) < a.n:
            try:
                conns.append(connect(a.sock))
                opened += 1
            except OSError:
                break
        time.sleep(0.05)
    print(f"idle: held {len(conns)}, opened {opened} in {a.seconds} s")


def closed(c):
    """True (and closes it) once the server has answered or ended `c`: a
    refusal or EOF, either way the connection is done."""
    c.setblocking(False)
    try:
        c.recv(4096)
    except BlockingIOError:
        return False
    except OSError:
        pass
    c.close()
    return True


def churn(a):
    n = 0
    end = time.monotonic() + a.seconds
    while time.monotonic() < end:
        try:
            c = connect(a.sock)
            c.close()
            n += 1
        except OSError:
            pass
    print(f"churn: {n} connections in {a.seconds} s")


def pinned(a):
    frame = request(GET, padded_get(a.pad))
    conns = []
    failed = 0
    for _ in range(a.n):
        try:
            c = connect(a.sock)
            c.sendall(frame)
            conns.append(c)
        except OSError:
            failed += 1  # refused while sending (the server closed)
    time.sleep(5)
    refused = 0
    for c in conns:
        c.setblocking(False)
        try:
            if c.recv(65536):
                refused += 1
        except BlockingIOError:
            pass
        except OSError:
            refused += 1
        c.close()
    print(f"pinned: {len(conns)} sent, {failed} cut off while sending, "
          f"{refused} answered early (refused)")


def behind(a):
    frame = request(GET, padded_get(a.pad), timeout_us=1)
    counts = {}
    s = connect(a.sock)
    end = time.monotonic() + a.seconds
    while time.monotonic() < end:
        try:
            s.sendall(frame)
            st = read_reply(s)
        except OSError:
            st = None
        counts[st] = counts.get(st, 0) + 1
        if st is None:
            s.close()
            s = connect(a.sock)
    s.close()
    print("behind: replies by status " + ", ".join(f"{k}={v}" for k, v in sorted(
        counts.items(), key=lambda kv: str(kv[0]))))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--pid", type=int)
    sub = p.add_subparsers(dest="cmd", required=True)
    commands = {"idle": (idle, [("n", int), ("seconds", float)]),
                "churn": (churn, [("seconds", float)]),
                "pinned": (pinned, [("n", int), ("pad", int)]),
                "behind": (behind, [("seconds", float), ("pad", int)])}
    for name, (_, params) in commands.items():
        q = sub.add_parser(name)
        q.add_argument("sock")
        for param, kind in params:
            q.add_argument(param, type=kind)
    a = p.parse_args()
    commands[a.cmd][0](a)
    if a.pid:
        with open(f"/proc/{a.pid}/status") as f:
            for line in f:
                if line.startswith(("VmHWM", "VmRSS")):
                    print(line.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
