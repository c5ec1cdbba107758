#!/usr/bin/env python3
"""Writes the seed corpora of fuzz_frame (tests/fuzz/corpus/frame/),
fuzz_dispatch (tests/fuzz/corpus/dispatch/) and fuzz_utf8
(tests/fuzz/corpus/utf8/).

Seeds named accept-* are frames (or streams of frames) that scan and decode;
reject-* are inputs the framing module must refuse; regress-* reproduce bugs
found by fuzzing or review. Bytes are written by hand (no protobuf library
needed), following the layout in src/frame.h and proto/ackrpc/wire.proto.
The output is deterministic: rerunning rewrites the same files.

Usage: python3 tests/fuzz/make_corpus.py
"""
import os
import random
import struct
import sys

REQUEST, REPLY = 1, 2


def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def field_len(num, data):
    if isinstance(data, str):
        data = data.encode()
    return varint(num << 3 | 2) + varint(len(data)) + data


def field_varint(num, v):
    return varint(num << 3) + varint(v)


def group(num, inner):
    return varint(num << 3 | 3) + inner + varint(num << 3 | 4)


def nested_groups(depth, first=10):
    if depth == 0:
        return b""
    return group(first, nested_groups(depth - 1, first + 1))


def metadata(key, value=b""):
    inner = field_len(1, key)
    if value:
        inner += field_len(2, value)
    return field_len(4, inner)


def request_head(method="a.B/C", call_id=b"id", timeout_us=0, md=()):
    h = field_len(1, method)
    if timeout_us:
        h += field_varint(2, timeout_us)
    h += field_len(3, call_id)
    for k, v in md:
        h += metadata(k, v)
    return h


def reply_head(status=0, message=""):
    h = b""
    if status:
        h += field_varint(1, status)
    if message:
        h += field_len(2, message)
    return h


def frame(ftype, head, body=b"", magic=b"AK", version=1, head_len=None, body_len=None):
    head_len = len(head) if head_len is None else head_len
    body_len = len(body) if body_len is None else body_len
    return magic + bytes([version, ftype]) + struct.pack("<II", head_len, body_len) + head + body


def bench_request(ident, body):
    # ackrpc.bench.Request {uint64 id = 1; bytes body = 2;}
    return field_varint(1, ident) + field_len(2, body)


def seeds():
    rnd = random.Random(20240601)
    s = {}
    # --- accept: requests
    s["accept-req-minimal"] = frame(REQUEST, request_head("S/m", b"1"))
    s["accept-req-full"] = frame(
        REQUEST,
        request_head("pkg.sub.Svc/Method_1", bytes(range(16)), 1500000,
                     [("x-trace.id_1", b"abc"), ("empty", b""), ("bin", b"\x00\xff\x00v")]),
        bench_request(42, b"hello\x00world"))
    s["accept-req-metadata-64"] = frame(
        REQUEST, request_head(md=[("k%02d" % i, bytes([i]) * i) for i in range(64)]))
    s["accept-req-method-256"] = frame(REQUEST, request_head("a.B/" + "m" * 252))
    s["accept-req-call-id-64"] = frame(REQUEST, request_head(call_id=b"\xaa" * 64))
    s["accept-req-timeout-max"] = frame(REQUEST, request_head(timeout_us=2**64 - 1))
    s["accept-req-unknown-fields"] = frame(
        REQUEST, request_head() + field_len(15, "future") + field_varint(16, 7))
    s["accept-req-metadata-body"] = frame(
        REQUEST, request_head(), field_len(1, "key") + field_len(2, b"value"))
    s["accept-req-big-value"] = frame(
        REQUEST, request_head(md=[("blob", bytes(rnd.randrange(256) for _ in range(4096)))]))
    two = frame(REQUEST, request_head(call_id=b"first")) + frame(
        REQUEST, request_head(call_id=b"second", timeout_us=250000), b"\x08\x01")
    s["accept-req-session-two"] = two
    s["accept-req-session-three-cut"] = two + frame(REQUEST, request_head(call_id=b"third"))[:-3]
    # --- accept: replies
    s["accept-rep-empty"] = frame(REPLY, b"")
    s["accept-rep-not-found"] = frame(REPLY, reply_head(5, "no such key: \u00fc"),
                                      field_varint(1, 7) + field_varint(2, 300))
    s["accept-rep-status-99"] = frame(REPLY, reply_head(99, "from the future"))
    s["accept-rep-message-only"] = frame(REPLY, reply_head(0, "fine"))
    s["accept-rep-session-two"] = frame(REPLY, reply_head(0), b"\x08\x01") + frame(
        REPLY, reply_head(14, "draining"))
    # --- reject: scanning
    s["reject-empty"] = b""
    s["reject-http"] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    s["reject-bad-magic-1"] = frame(REQUEST, request_head(), magic=b"AX")
    s["reject-bad-version"] = frame(REQUEST, request_head(), version=2)
    s["reject-bad-version-0"] = frame(REPLY, b"", version=0)
    s["reject-bad-type-3"] = frame(3, request_head())
    s["reject-trunc-prefix"] = frame(REQUEST, request_head())[:7]
    s["reject-trunc-head"] = frame(REQUEST, request_head())[:15]
    s["reject-trunc-body"] = frame(REQUEST, request_head(), b"\x08\x01\x12\x03abc")[:-1]
    s["reject-oversize-body"] = frame(REQUEST, b"", body_len=0xFFFFFFFF)
    s["reject-oversize-sum"] = frame(REPLY, b"", head_len=10000, body_len=10000)
    s["reject-head-too-large"] = frame(REQUEST, b"", head_len=65537)
    s["reject-head-max-u32"] = frame(REPLY, b"", head_len=0xFFFFFFFF)
    # --- reject: heads
    s["reject-head-garbage-req"] = frame(REQUEST, bytes(rnd.randrange(256) for _ in range(64)))
    s["reject-head-garbage-rep"] = frame(REPLY, bytes(rnd.randrange(256) for _ in range(64)))
    s["reject-head-endless-varint"] = frame(REQUEST, b"\xff" * 11)
    s["reject-head-field-past-end"] = frame(REQUEST, b"\x0a\x32a.B/C")
    s["reject-head-cut-by-prefix"] = frame(REQUEST, request_head()[:-1])
    s["reject-head-empty-req"] = frame(REQUEST, b"")
    # Unknown groups (wire types 3/4) are skipped like any unknown field
    # (PROTOCOL.md §2.3): protobuf-c refuses them, libackrpc strips them.
    s["accept-req-unknown-group"] = frame(
        REQUEST, group(20, field_varint(1, 300) + b"\x11" + b"8" * 8 + field_len(3, "in")
                       + b"\x1d" + b"4" * 4 + group(5, field_varint(1, 7)))
        + request_head() + group(21, b""))
    s["accept-req-group-in-metadata"] = frame(
        REQUEST, request_head("a.B/C", b"id", 0, [])
        + field_len(4, field_len(1, "k") + group(9, field_len(1, "x")) + field_len(2, b"v")))
    s["accept-req-groups-100-deep"] = frame(REQUEST, request_head() + nested_groups(100))
    s["accept-rep-unknown-group"] = frame(
        REPLY, reply_head(5, "msg") + group(7, field_varint(1, 1) + group(8, b"")))
    s["reject-head-groups-101-deep"] = frame(REQUEST, request_head() + nested_groups(101))
    s["reject-head-group-unclosed"] = frame(
        REQUEST, request_head() + varint(20 << 3 | 3) + field_varint(1, 1))
    s["reject-head-group-wrong-end"] = frame(
        REQUEST, request_head() + varint(20 << 3 | 3) + varint(21 << 3 | 4))
    s["reject-head-stray-end-group"] = frame(REQUEST, request_head() + varint(20 << 3 | 4))
    s["reject-rep-group-unclosed"] = frame(REPLY, reply_head(5) + varint(7 << 3 | 3))
    # A NUL check that stopped at a group must not matter
    s["reject-head-group-then-nul"] = frame(
        REQUEST, b"\x2b\x2c" + field_len(1, b"a.B/C\x00junk") + field_len(3, b"id"))
    s["reject-method-empty"] = frame(REQUEST, request_head(""))
    s["reject-method-no-slash"] = frame(REQUEST, request_head("a.b"))
    s["reject-method-two-slashes"] = frame(REQUEST, request_head("a/b/c"))
    s["reject-method-space"] = frame(REQUEST, request_head("a B/c"))
    s["reject-method-257"] = frame(REQUEST, request_head("a/" + "b" * 255))
    s["reject-call-id-missing"] = frame(REQUEST, field_len(1, "a.B/C"))
    s["reject-call-id-65"] = frame(REQUEST, request_head(call_id=b"i" * 65))
    s["reject-metadata-65"] = frame(REQUEST, request_head(md=[("k", b"v")] * 65))
    s["reject-metadata-uppercase"] = frame(REQUEST, request_head(md=[("Key", b"v")]))
    s["reject-metadata-bad-char"] = frame(REQUEST, request_head(md=[("a:b", b"v")]))
    s["reject-metadata-value-4097"] = frame(REQUEST, request_head(md=[("k", b"v" * 4097)]))
    s["reject-metadata-no-key"] = frame(REQUEST, request_head() + field_len(4, field_len(2, "v")))
    s["reject-metadata-many-empty"] = frame(REQUEST, request_head() + b"\x22\x00" * 3000)
    s["reject-rep-status-100"] = frame(REPLY, reply_head(100))
    s["reject-rep-status-max"] = frame(REPLY, reply_head(2**32 - 1))
    # --- regressions: strings with a NUL inside passed as their prefix
    s["regress-method-embedded-nul"] = frame(
        REQUEST, field_len(1, b"a.B/C\x00junk") + field_len(3, b"id"))
    s["regress-metadata-key-embedded-nul"] = frame(
        REQUEST, request_head(md=[(b"a\x00B", b"v")]))
    # A body protobuf-c decodes (an overlong field number 0 as an unknown
    # field) but, once re-packed, refuses: the harness must not blame ours.
    s["regress-body-field-zero"] = frame(
        REQUEST, request_head("a.B/C", b"II"),
        bytes.fromhex("490849495d4901006180000a"))
    return s


def dispatch_seeds():
    """Client byte streams for fuzz_dispatch: its methods fuzz.Fuzz/Echo,
    /Defer and /Fail take an ackrpc.wire.RequestHead as their request body
    (a message with nested Metadata messages)."""
    s = {}
    body = request_head("x.Y/Z", b"inner", 5, [(b"k", b"v"), (b"k2", b"")])
    echo = frame(REQUEST, request_head("fuzz.Fuzz/Echo", b"c1", 1000000), body)
    defer = frame(REQUEST, request_head("fuzz.Fuzz/Defer", b"c2"), body)
    fail = frame(REQUEST, request_head("fuzz.Fuzz/Fail", b"c3"), b"")
    s["accept-echo"] = echo
    s["accept-defer"] = defer
    s["accept-fail"] = fail
    s["accept-session"] = echo + defer + fail + echo
    s["accept-metadata"] = frame(
        REQUEST, request_head("fuzz.Fuzz/Echo", b"c4", 0, [(b"trace-id", b"abc")]), body)
    s["reject-unknown-method"] = frame(REQUEST, request_head("fuzz.Fuzz/Nope", b"c5"), body)
    s["reject-bad-body"] = frame(REQUEST, request_head("fuzz.Fuzz/Echo", b"c6"), b"\xff\xff")
    # Nested deeper than the target's max_depth (4): Metadata inside a head
    # is depth 2; deeper nesting is only reachable through unknown groups.
    s["reject-deep-groups"] = frame(
        REQUEST, request_head("fuzz.Fuzz/Echo", b"c7"), b"\x0b" * 8 + b"\x0c" * 8)
    s["reject-truncated"] = echo[: len(echo) - 3]
    s["reject-oversize"] = frame(REQUEST, request_head("fuzz.Fuzz/Echo", b"c8"),
                                 body_len=1 << 20)
    # Strings that are not UTF-8, at the top and in a nested Metadata:
    # INVALID_ARGUMENT, the handler never runs (it aborts if it does).
    s["reject-bad-utf8-top"] = frame(
        REQUEST, request_head("fuzz.Fuzz/Echo", b"c9"), request_head(b"x\xc0\xaf", b"i"))
    s["reject-bad-utf8-nested"] = frame(
        REQUEST, request_head("fuzz.Fuzz/Echo", b"ca"),
        request_head("x.Y/Z", b"i", 0, [(b"k", b"v"), (b"\xed\xa0\x80", b"")]))
    s["accept-utf8"] = frame(
        REQUEST, request_head("fuzz.Fuzz/Echo", b"cb"),
        request_head(b"caf\xc3\xa9 \xf0\x9f\x98\x80", b"i", 0, [(b"\xe2\x9c\x93", b"\xff")]))
    s["reject-bad-magic"] = b"GET / HTTP/1.0\r\n\r\n"
    s["reject-good-then-garbage"] = echo + b"\x00" * 20
    return s


def utf8_seeds():
    """Inputs for fuzz_utf8: byte strings at the edges of UTF-8, and
    RequestHead bodies with good and bad strings at both depths."""
    s = {}
    s["accept-ascii"] = b"plain ASCII, longer than one word"
    s["accept-edges"] = ("\u0080\u07ff\u0800\ud7ff\ue000\uffff"
                         "\U00010000\U0010ffff").encode()
    s["reject-overlong"] = b"abc\xc0\xaf"
    s["reject-overlong-3"] = b"\xe0\x9f\xbf"
    s["reject-surrogate"] = b"\xed\xa0\x80"
    s["reject-above-max"] = b"\xf4\x90\x80\x80"
    s["reject-truncated"] = b"abcdefgh\xf0\x90\x80"
    s["accept-head"] = request_head(b"caf\xc3\xa9", b"i", 0, [(b"\xe2\x9c\x93", b"\xff")])
    s["reject-head-method"] = request_head(b"x\xff", b"i")
    s["reject-head-key"] = request_head("x", b"i", 0, [(b"k", b""), (b"\xc1\x81", b"")])
    return s


def write_all(out, corpus):
    os.makedirs(out, exist_ok=True)
    for name, data in sorted(corpus.items()):
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print("wrote %d seeds to %s" % (len(corpus), out))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    write_all(os.path.join(here, "corpus", "frame"), seeds())
    write_all(os.path.join(here, "corpus", "dispatch"), dispatch_seeds())
    write_all(os.path.join(here, "corpus", "utf8"), utf8_seeds())


if __name__ == "__main__":
    main()
