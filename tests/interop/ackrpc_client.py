#!/usr/bin/python3
"""ackrpc_client.py: an independent ackrpc client, written from docs/PROTOCOL.md
alone, and an interoperability test that runs it against the C server.

It uses only the Python standard library and the protobuf classes that the
build generates from proto/ackrpc/wire.proto and proto/ackrpc/bench.proto
(`protoc --python_out`, into the build directory; never committed). It shares
no code with libackrpc: where it and the C server disagree, one of them, or
the spec, is wrong.

Usage (ctest runs this as `interop_python`):

    /usr/bin/python3 ackrpc_client.py --pb2-dir DIR --server ACKRPC_BENCH
        [--frames ACKRPC_INTEROP_FRAMES] [--spec docs/PROTOCOL.md]

Prints one line per check and, last, "N passed, M failed"; exits non-zero if
any check failed. Every wait is bounded; the server is always killed and the
temporary directory removed.
"""

import argparse
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback

# --- the protocol (docs/PROTOCOL.md) ---------------------------------------

MAGIC = b"AK"
VERSION = 1
TYPE_REQUEST = 1
TYPE_REPLY = 2
PREFIX_LEN = 12
MAX_HEAD = 65536
DEFAULT_MAX_REPLY = 4 * 1024 * 1024
MAX_REQUEST = 4 * 1024 * 1024  # the server's limit on head + body (default)

STATUS_NAMES = [
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
    "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
]
OK, INVALID_ARGUMENT, DEADLINE_EXCEEDED = 0, 3, 4
RESOURCE_EXHAUSTED, UNIMPLEMENTED = 8, 12

# The three outcomes of a call (PROTOCOL.md §7).
NOT_DELIVERED = "not delivered"
NO_ACK = "delivered, no ack"
ACKED = "acked"

BENCH_CALL = "ackrpc.bench.Bench/Call"

wire_pb2 = None  # set by load_pb2()
bench_pb2 = None


def load_pb2(pb2_dir):
    global wire_pb2, bench_pb2
    sys.path.insert(0, pb2_dir)
    from ackrpc import wire_pb2 as w, bench_pb2 as b  # noqa: E402
    wire_pb2, bench_pb2 = w, b


def status_name(code):
    if code < len(STATUS_NAMES):
        return STATUS_NAMES[code]
    return "unknown status %d" % code  # 17..99: acked, status unknown here


def prefix(ftype, head_len, body_len, version=VERSION, magic=MAGIC):
    return magic + bytes([version, ftype]) + struct.pack("<II", head_len, body_len)


def frame(ftype, head, body, **kw):
    return prefix(ftype, len(head), len(body), **kw) + head + body


def request_head(method, call_id, timeout_us=0, metadata=()):
    h = wire_pb2.RequestHead(method=method, timeout_us=timeout_us, call_id=call_id)
    for key, value in metadata:
        h.metadata.add(key=key, value=value)
    return h.SerializeToString()


def request_frame(method, call_id, body, timeout_us=0, metadata=()):
    return frame(TYPE_REQUEST, request_head(method, call_id, timeout_us, metadata), body)


class Reply:
    """One reply frame, checked as PROTOCOL.md §7 says."""

    def __init__(self, status, message, body):
        self.status, self.message, self.body = status, message, body

    def __repr__(self):
        return "Reply(%s %r, body %s)" % (status_name(self.status), self.message,
                                         self.body.hex(" ") if len(self.body) < 32
                                         else "%d bytes" % len(self.body))


class Malformed(Exception):
    pass


class Conn:
    """One connection: write frames, half-close, read reply frames."""

    def __init__(self, address, timeout=10.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.eof = False
        self.reset = False
        # "@name" is Linux's abstract namespace: a leading NUL, the name, no
        # trailing NUL. Python passes a str starting with "\0" with exactly
        # that length (offsetof(sun_path) + 1 + len(name)).
        try:
            self.sock.connect("\0" + address[1:] if address.startswith("@") else address)
        except OSError:
            self.sock.close()
            raise

    def close(self):
        self.sock.close()

    def send(self, data):
        """Returns True if send() accepted every byte, False if a write failed."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def half_close(self):
        try:
            self.sock.shutdown(socket.SHUT_WR)
            return True
        except OSError:
            return False

    def _fill(self, n):
        """Reads until the buffer holds n bytes; False on EOF/reset first."""
        while len(self.buf) < n and not self.eof:
            try:
                chunk = self.sock.recv(max(65536, n - len(self.buf)))
            except ConnectionResetError:
                # The server closed with our bytes unread: EOF for our purpose.
                chunk, self.reset = b"", True
            if not chunk:
                self.eof = True
            self.buf += chunk
        return len(self.buf) >= n

    def read_reply(self, max_reply=DEFAULT_MAX_REPLY):
        """Returns a Reply, None on a clean EOF at a frame boundary; raises
        Malformed for a bad or cut-short frame."""
        if not self._fill(1):
            return None
        if not self._fill(PREFIX_LEN):
            raise Malformed("stream ended inside a reply prefix: %s" % self.buf.hex(" "))
        p = self.buf[:PREFIX_LEN]
        if p[:2] != MAGIC:
            raise Malformed("bad magic %s" % p[:2].hex(" "))
        if p[2] != VERSION:
            raise Malformed("reply version %d" % p[2])
        if p[3] != TYPE_REPLY:
            raise Malformed("reply frame type %d" % p[3])
        head_len, body_len = struct.unpack("<II", p[4:12])
        if head_len > MAX_HEAD:
            raise Malformed("reply head length %d" % head_len)
        if head_len + body_len > max_reply:
            raise Malformed("reply of %d bytes over the limit" % (head_len + body_len))
        total = PREFIX_LEN + head_len + body_len
        if not self._fill(total):
            raise Malformed("stream ended inside a reply frame (%d of %d bytes)"
                            % (len(self.buf), total))
        head = self.buf[PREFIX_LEN:PREFIX_LEN + head_len]
        body = self.buf[PREFIX_LEN + head_len:total]
        self.buf = self.buf[total:]
        rh = wire_pb2.ReplyHead()
        try:
            rh.ParseFromString(head)
        except Exception as e:  # protobuf's DecodeError and friends
            raise Malformed("reply head does not decode: %s" % e)
        if rh.status >= 100:
            raise Malformed("reply status %d (local codes never travel)" % rh.status)
        return Reply(rh.status, rh.message, body)

    def at_eof(self):
        """True if the server closed with nothing more after what was read."""
        return not self._fill(len(self.buf) + 1) and not self.buf


def exchange(address, data, half_close=True, timeout=10.0):
    """Sends raw bytes, half-closes, reads one reply. Returns
    (outcome, reply or None, detail). The outcome follows PROTOCOL.md §7 for a
    frame that was whole in `data`."""
    conn = Conn(address, timeout)
    try:
        sent_all = conn.send(data)
        if half_close and sent_all:
            conn.half_close()
        try:
            reply = conn.read_reply()
        except Malformed as e:
            return (NO_ACK if sent_all else NOT_DELIVERED), None, str(e)
        except socket.timeout:
            return (NO_ACK if sent_all else NOT_DELIVERED), None, "timed out"
        if reply is None:
            return (NO_ACK if sent_all else NOT_DELIVERED), None, "EOF, no reply"
        return ACKED, reply, "write failed" if not sent_all else ""
    finally:
        conn.close()


def bench_call(address, req_id, body, call_id=None, timeout_us=1000000, metadata=()):
    req = bench_pb2.Request(id=req_id, body=body).SerializeToString()
    cid = call_id if call_id is not None else os.urandom(16)
    return exchange(address, request_frame(BENCH_CALL, cid, req, timeout_us, metadata))


def decode_ack(reply):
    ack = bench_pb2.Ack()
    ack.ParseFromString(reply.body)
    return ack


# --- the test harness --------------------------------------------------------

class Failed(Exception):
    pass


def expect(cond, what):
    if not cond:
        raise Failed(what)


class Runner:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, fn, *args):
        try:
            fn(*args)
        except Failed as e:
            self.failed += 1
            print("FAIL %s: %s" % (name, e), flush=True)
        except Exception:
            self.failed += 1
            print("FAIL %s: exception\n%s" % (name, traceback.format_exc()), flush=True)
        else:
            self.passed += 1
            print("ok   %s" % name, flush=True)

    def skip(self, name, why):
        print("SKIP %s: %s" % (name, why), flush=True)


def expect_status(result, status):
    outcome, reply, detail = result
    expect(outcome == ACKED, "expected an ack with %s, got %s (%s)"
           % (status_name(status), outcome, detail))
    expect(reply.status == status, "expected %s, got %r" % (status_name(status), reply))
    return reply


def expect_ack(result, req_id, body_len):
    reply = expect_status(result, OK)
    ack = decode_ack(reply)
    expect(ack.id == req_id and ack.body_len == body_len,
           "expected Ack{id=%d, body_len=%d}, got Ack{id=%d, body_len=%d}"
           % (req_id, body_len, ack.id, ack.body_len))


class Server:
    """ackrpc-bench serve on one address, started and always stopped."""

    def __init__(self, binary, address, log_path):
        self.address = address
        self.log = open(log_path, "wb")
        # The library's default limit (4 MiB), stated: ackrpc-bench's own
        # default is larger, for benchmarks with big bodies.
        self.proc = subprocess.Popen([binary, "serve", "--socket", address,
                                      "--max-request-size", str(MAX_REQUEST)],
                                     stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.log_path = log_path

    def wait_ready(self, limit=10.0):
        """True once the socket accepts; False if the server exited first."""
        end = time.monotonic() + limit
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                return False
            try:
                c = Conn(self.address, timeout=1.0)
                c.close()
                return True
            except OSError:
                time.sleep(0.05)
        raise Failed("%s did not accept within %.0f s" % (self.address, limit))

    def output(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace").strip()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()


# --- checks ---------------------------------------------------------------

def hex_block(text, marker):
    m = re.search(r"<!-- %s[^>]*-->\s*```\n(.*?)```" % re.escape(marker), text, re.S)
    if not m:
        raise Failed("no hex block marked %r in the spec" % marker)
    return bytes.fromhex(m.group(1).replace("\n", " "))


def check_worked_example(spec_path, frames_bin):
    """PROTOCOL.md §9: this client's bytes, the spec's and the C encoder's."""
    req = request_frame(BENCH_CALL, bytes(range(16)),
                        bench_pb2.Request(id=1, body=b"hi").SerializeToString(),
                        timeout_us=1000000)
    rep = frame(TYPE_REPLY, wire_pb2.ReplyHead(status=0).SerializeToString(),
                bench_pb2.Ack(id=1, body_len=2).SerializeToString())
    if spec_path:
        with open(spec_path, encoding="utf-8") as f:
            text = f.read()
        expect(hex_block(text, "interop:request-frame") == req,
               "spec's request frame differs from this client's: %s" % req.hex(" "))
        expect(hex_block(text, "interop:reply-frame") == rep,
               "spec's reply frame differs from this client's: %s" % rep.hex(" "))
    if frames_bin:
        out = subprocess.run([frames_bin], capture_output=True, timeout=10, check=True)
        lines = dict(l.split(" ", 1) for l in out.stdout.decode().splitlines())
        expect(bytes.fromhex(lines["request"]) == req,
               "C encoder's request frame %s, this client's %s" % (lines["request"], req.hex()))
        expect(bytes.fromhex(lines["reply"]) == rep,
               "C encoder's reply frame %s, this client's %s" % (lines["reply"], rep.hex()))


def check_calls(addr):
    for req_id, size in [(1, 0), (2, 1), (3, 4096), (0xFFFFFFFFFFFF, 1 << 20)]:
        expect_ack(bench_call(addr, req_id, os.urandom(size)), req_id, size)


def check_metadata_call(addr):
    md = [("trace-id", b"abc"), ("a.b_c-9", b"\x00\xff" * 2048), ("trace-id", b"")]
    expect_ack(bench_call(addr, 9, b"x" * 10, call_id=b"\x01" * 64, metadata=md), 9, 10)


def check_session(addr):
    """Several frames on one connection, answered in order (§3.1)."""
    conn = Conn(addr)
    try:
        bodies = [b"", b"a" * 100, b"b" * 70000]
        data = b"".join(request_frame(BENCH_CALL, bytes([i + 1]),
                                      bench_pb2.Request(id=100 + i, body=b).SerializeToString())
                        for i, b in enumerate(bodies))
        expect(conn.send(data), "write failed")
        expect(conn.half_close(), "shutdown failed")
        for i, b in enumerate(bodies):
            reply = conn.read_reply()
            expect(reply is not None, "EOF before reply %d of %d" % (i + 1, len(bodies)))
            expect(reply.status == OK, "reply %d: %r" % (i + 1, reply))
            ack = decode_ack(reply)
            expect((ack.id, ack.body_len) == (100 + i, len(b)),
                   "reply %d: Ack{id=%d, body_len=%d}" % (i + 1, ack.id, ack.body_len))
        expect(conn.at_eof(), "server did not close after the last reply")
    finally:
        conn.close()


def check_session_continues_after_bad_head(addr):
    """A bad head keeps the frame boundary: that frame is answered
    INVALID_ARGUMENT, the next one is served (§3.1, §5)."""
    conn = Conn(addr)
    try:
        body = bench_pb2.Request(id=5, body=b"xyz").SerializeToString()
        bad = request_frame(BENCH_CALL, b"", body)  # call id missing
        good = request_frame(BENCH_CALL, b"id", body)
        expect(conn.send(bad + good), "write failed")
        conn.half_close()
        r1 = conn.read_reply()
        expect(r1 is not None and r1.status == INVALID_ARGUMENT,
               "frame 1 (no call id): %r" % r1)
        r2 = conn.read_reply()
        expect(r2 is not None and r2.status == OK, "frame 2 (valid): %r" % r2)
        ack = decode_ack(r2)
        expect((ack.id, ack.body_len) == (5, 3), "frame 2: Ack{%d, %d}" % (ack.id, ack.body_len))
    finally:
        conn.close()


def pb_varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def pb_group(field, inner):
    """An unknown field encoded as a group (wire types 3 and 4), by hand:
    generated proto3 classes cannot write one."""
    return pb_varint(field << 3 | 3) + inner + pb_varint(field << 3 | 4)


def check_unknown_groups_ignored(addr):
    """Unknown fields MUST be ignored (§2.3), groups too: google.protobuf
    parses such a head, and the server serves the call."""
    inner = (pb_varint(1 << 3) + pb_varint(300) + pb_varint(2 << 3 | 2) + b"\x02in"
             + pb_group(3, pb_varint(1 << 3) + b"\x07"))
    cid = os.urandom(8)
    head = (pb_group(100, inner) + request_head(BENCH_CALL, cid, 1000000, [("k", b"v")])
            + pb_group(101, b""))
    parsed = wire_pb2.RequestHead.FromString(head)
    expect((parsed.method, parsed.call_id, len(parsed.metadata)) == (BENCH_CALL, cid, 1),
           "google.protobuf reads the head as %r" % parsed)
    body = bench_pb2.Request(id=77, body=b"grp").SerializeToString()
    expect_ack(exchange(addr, frame(TYPE_REQUEST, head, body)), 77, 3)
    # The same group left open: google.protobuf refuses the head, so must
    # the server.
    bad = request_head(BENCH_CALL, cid) + pb_varint(100 << 3 | 3) + pb_varint(1 << 3) + b"\x01"
    try:
        wire_pb2.RequestHead.FromString(bad)
        expect(False, "google.protobuf parsed a head with an unclosed group")
    except Exception as e:  # google.protobuf.message.DecodeError
        expect("DecodeError" in type(e).__name__, "unexpected %r" % e)
    expect_status(exchange(addr, frame(TYPE_REQUEST, bad, body)), INVALID_ARGUMENT)


def check_empty_connection(addr):
    """Connect and half-close at once: a session of zero frames, closed
    without a reply (EOF at a frame boundary is not a truncated frame)."""
    conn = Conn(addr)
    try:
        conn.half_close()
        reply = conn.read_reply()
        expect(reply is None, "expected a plain close, got %r" % reply)
    finally:
        conn.close()


def check_unknown_method(addr):
    body = bench_pb2.Request(id=1).SerializeToString()
    expect_status(exchange(addr, request_frame("ackrpc.bench.Bench/Nope", b"c", body)),
                  UNIMPLEMENTED)
    # With a large body the server may answer from the head alone and close
    # without reading the body (§5): the client's write may fail, yet the
    # reply is there to read.
    body = bench_pb2.Request(id=1, body=b"q" * (2 << 20)).SerializeToString()
    expect_status(exchange(addr, request_frame("ackrpc.bench.Bench/Nope", b"c", body)),
                  UNIMPLEMENTED)


def expect_not_dispatched(result, what):
    outcome, reply, detail = result
    expect(reply is None or reply.status != OK,
           "%s was dispatched: %r" % (what, reply))


def check_truncated(addr):
    full = request_frame(BENCH_CALL, b"cut",
                         bench_pb2.Request(id=7, body=b"z" * 5000).SerializeToString())
    expect_not_dispatched(exchange(addr, full[:len(full) // 2]), "half a frame")
    # Cut right after the body's first field: the bytes present decode as a
    # valid Request{id=7}, so only the prefix's length can tell.
    body = bench_pb2.Request(id=7, body=b"tail").SerializeToString()
    full = request_frame(BENCH_CALL, b"cut", body)
    expect(body[:2] == b"\x08\x07", "unexpected encoding %s" % body.hex())
    expect_not_dispatched(exchange(addr, full[:len(full) - len(body) + 2]),
                          "a frame cut at a field boundary")
    # Only part of the prefix.
    expect_not_dispatched(exchange(addr, full[:7]), "a frame cut inside its prefix")


def check_oversized(addr):
    """Refused from the prefix alone: the body is never sent."""
    head = request_head(BENCH_CALL, b"big")
    data = prefix(TYPE_REQUEST, len(head), MAX_REQUEST - len(head) + 1) + head
    outcome, reply, detail = exchange(addr, data, half_close=False)
    expect(reply is not None and reply.status == RESOURCE_EXHAUSTED,
           "announced 4 MiB + 1: %s %r %s" % (outcome, reply, detail))
    # A head over 65536 bytes, whatever the total.
    data = prefix(TYPE_REQUEST, MAX_HEAD + 1, 0) + head
    outcome, reply, detail = exchange(addr, data, half_close=False)
    expect(reply is not None and reply.status == RESOURCE_EXHAUSTED,
           "announced head of 65537 bytes: %s %r %s" % (outcome, reply, detail))
    # Exactly at the limit is accepted from the prefix: the server waits for
    # the rest (here it gets EOF instead, so: truncated, not RESOURCE_EXHAUSTED).
    data = prefix(TYPE_REQUEST, len(head), MAX_REQUEST - len(head)) + head
    outcome, reply, detail = exchange(addr, data)
    expect(reply is None or reply.status not in (OK, RESOURCE_EXHAUSTED),
           "announced exactly 4 MiB then EOF: %r" % reply)


def check_bad_body(addr):
    expect_status(exchange(addr, request_frame(BENCH_CALL, b"c", b"\xff\xff")),
                  INVALID_ARGUMENT)


def check_bad_prefix(addr):
    good = request_frame(BENCH_CALL, b"c", bench_pb2.Request(id=1).SerializeToString())
    expect_status(exchange(addr, b"XK" + good[2:]), INVALID_ARGUMENT)
    expect_status(exchange(addr, b"AX" + good[2:]), INVALID_ARGUMENT)
    # A wrong frame type (a reply sent to the server).
    expect_status(exchange(addr, good[:3] + bytes([TYPE_REPLY]) + good[4:]), INVALID_ARGUMENT)
    expect_status(exchange(addr, good[:3] + bytes([9]) + good[4:]), INVALID_ARGUMENT)


def check_bad_version(addr):
    """§8: a version-2 frame gets UNIMPLEMENTED in a version-1 reply frame
    (read_reply() refuses any other version)."""
    good = request_frame(BENCH_CALL, b"c", bench_pb2.Request(id=1).SerializeToString())
    reply = expect_status(exchange(addr, good[:2] + bytes([2]) + good[3:]), UNIMPLEMENTED)
    expect("speaks 1" in reply.message, "message %r does not name version 1" % reply.message)


def check_bad_heads(addr):
    body = bench_pb2.Request(id=1).SerializeToString()
    cases = [
        ("head does not decode", frame(TYPE_REQUEST, b"\x0a\x05ab", body)),
        ("no method", request_frame("", b"c", body)),
        ("leading slash", request_frame("/" + BENCH_CALL, b"c", body)),
        ("empty segment", request_frame("ackrpc..Bench/Call", b"c", body)),
        ("two slashes", request_frame("a/b/c", b"c", body)),
        ("method of 257 bytes", request_frame("a" * 253 + ".B/C", b"c", body)),
        ("NUL inside the method", request_frame(BENCH_CALL + "\0x", b"c", body)),
        ("no call id", request_frame(BENCH_CALL, b"", body)),
        ("call id of 65 bytes", request_frame(BENCH_CALL, b"i" * 65, body)),
        ("metadata key upper case", request_frame(BENCH_CALL, b"c", body, metadata=[("Key", b"")])),
        ("metadata key empty", request_frame(BENCH_CALL, b"c", body, metadata=[("", b"v")])),
        ("metadata key of 65 bytes", request_frame(BENCH_CALL, b"c", body, metadata=[("k" * 65, b"")])),
        ("metadata key with NUL", request_frame(BENCH_CALL, b"c", body, metadata=[("k\0x", b"")])),
        ("metadata value of 4097 bytes", request_frame(BENCH_CALL, b"c", body, metadata=[("k", b"v" * 4097)])),
        ("65 metadata entries", request_frame(BENCH_CALL, b"c", body, metadata=[("k", b"")] * 65)),
    ]
    bad = []
    for what, data in cases:
        outcome, reply, detail = exchange(addr, data)
        if reply is None or reply.status != INVALID_ARGUMENT:
            bad.append("%s: %s %r %s" % (what, outcome, reply, detail))
    expect(not bad, "; ".join(bad))
    # The limits themselves are fine: 256-byte method (unknown, so
    # UNIMPLEMENTED, not INVALID_ARGUMENT), 64 entries, unknown head fields.
    expect_status(exchange(addr, request_frame("a" * 252 + ".B/C", b"c", body)), UNIMPLEMENTED)
    md = [("k" * 64, b"v" * 4096)] + [("k%d" % i, b"") for i in range(63)]
    expect_ack(exchange(addr, request_frame(BENCH_CALL, b"c", body, metadata=md)), 1, 0)
    head = request_head(BENCH_CALL, b"c") + b"\xa8\x06\x01" + b"\xb2\x06\x02hi"  # fields 101, 102
    expect_ack(exchange(addr, frame(TYPE_REQUEST, head, body)), 1, 0)


def check_stop(server, path):
    server.proc.send_signal(signal.SIGTERM)
    try:
        rc = server.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        raise Failed("server still running 15 s after SIGTERM")
    expect(rc == 0, "server exited %d after SIGTERM; output:\n%s" % (rc, server.output()))
    if path is not None:
        expect(not os.path.lexists(path), "socket file %s still there" % path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pb2-dir", required=True, help="where protoc --python_out wrote ackrpc/*_pb2.py")
    ap.add_argument("--server", required=True, help="the ackrpc-bench executable")
    ap.add_argument("--frames", help="ackrpc-interop-frames (the C encoder's worked example)")
    ap.add_argument("--spec", help="docs/PROTOCOL.md, to check its worked example")
    args = ap.parse_args()
    load_pb2(args.pb2_dir)

    run = Runner()
    tmp = tempfile.mkdtemp(prefix="ackrpc-interop-")
    servers = []
    try:
        run.check("worked example: spec, C encoder and this client agree",
                  check_worked_example, args.spec, args.frames)

        path = os.path.join(tmp, "bench.sock")
        srv = Server(args.server, path, os.path.join(tmp, "server.log"))
        servers.append(srv)
        if not srv.wait_ready():
            raise Failed("server exited %s before accepting:\n%s"
                         % (srv.proc.returncode, srv.output()))
        for name, fn in [
            ("calls with bodies of 0, 1, 4096 and 1 MiB bytes", check_calls),
            ("a call with metadata and a 64-byte call id", check_metadata_call),
            ("session: three frames, three replies in order", check_session),
            ("session goes on after a bad head", check_session_continues_after_bad_head),
            ("unknown fields encoded as groups are ignored", check_unknown_groups_ignored),
            ("connect and half-close: closed without a reply", check_empty_connection),
            ("unknown method: UNIMPLEMENTED", check_unknown_method),
            ("truncated frames are never dispatched", check_truncated),
            ("oversized frames: RESOURCE_EXHAUSTED from the prefix", check_oversized),
            ("undecodable body: INVALID_ARGUMENT", check_bad_body),
            ("bad magic or type: INVALID_ARGUMENT", check_bad_prefix),
            ("version 2: UNIMPLEMENTED in a version-1 reply", check_bad_version),
            ("bad heads: INVALID_ARGUMENT; limits themselves accepted", check_bad_heads),
            ("server still serves after all that", check_calls),
        ]:
            run.check(name, fn, path)
        run.check("SIGTERM: exit 0, socket file removed", check_stop, srv, path)

        abstract = "@ackrpc-interop-%d-%d" % (os.getpid(), time.monotonic_ns())
        asrv = Server(args.server, abstract, os.path.join(tmp, "abstract.log"))
        servers.append(asrv)
        if not asrv.wait_ready():
            run.skip("abstract address", "server exited %s on --socket %s:\n%s"
                     % (asrv.proc.returncode, abstract, asrv.output()))
        else:
            run.check("abstract address: calls", check_calls, abstract)
            run.check("abstract address: SIGTERM, exit 0", check_stop, asrv, None)
    except Exception as e:
        run.failed += 1
        print("FAIL setup: %s" % (e if isinstance(e, Failed) else traceback.format_exc()),
              flush=True)
    finally:
        for s in servers:
            try:
                s.kill()
            except Exception:
                pass
        if run.failed:
            for s in servers:
                try:
                    print("--- server output (%s):\n%s" % (s.address, s.output()))
                except Exception:
                    pass
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed" % (run.passed, run.failed))
    return 1 if run.failed else 0


if __name__ == "__main__":
    sys.exit(main())
