#!/usr/bin/python3
"""run_cli_tests.py: drives the real `ackrpc` binary against a real server
(cli_test_server, see proto/clitest.proto) and checks its output, its
standard error and its exit status. One group of checks per ctest:

    run_cli_tests.py --group NAME --ackrpc BIN --server BIN
                     --descriptor-set clitest.pb --build-dir DIR --proto-dir DIR
                     [--reflection]

With --reflection, calls that would pass clitest.pb (the descriptors of the
services the server runs) pass none: the tool asks the server (reflection).

Exit status 0 when every check of the group passed, 1 otherwise (each
failure is printed with the command, its output and what was expected).
"""
import argparse
import base64
import json
import math
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

EXIT = {"usage": 64, "dataerr": 65, "noinput": 66, "not_delivered": 69,
        "no_ack": 75, "bad_reply": 76, "noperm": 77, "unsupported": 78}
STATUS_NAMES = ["OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
                "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
                "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
                "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"]
ECHO = "ackrpc.clitest.Test/Echo"


class Env:
    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="ackrpc-cli-")
        self.socket = os.path.join(self.tmp, "test.sock")
        self.server = None
        self.failures = 0
        self.checks = 0

    def start_server(self, *extra, argv=None):
        self.stop_server()
        self.server = subprocess.Popen(argv or [self.args.server, self.socket, *extra])
        for _ in range(500):
            if os.path.exists(self.socket):
                return
            if self.server.poll() is not None:
                break
            time.sleep(0.01)
        raise RuntimeError("cli_test_server did not start")

    def stop_server(self):
        if self.server and self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            try:
                self.server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
        self.server = None

    def close(self):
        self.stop_server()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def run(self, *argv, stdin=None):
        """Runs ackrpc; returns (exit status, stdout bytes, stderr text)."""
        r = subprocess.run([self.args.ackrpc, *argv], input=stdin, capture_output=True,
                           timeout=60)
        return r.returncode, r.stdout, r.stderr.decode(errors="replace")

    def desc(self, name="clitest.pb"):
        if self.args.reflection and name == "clitest.pb":
            return []
        return ["--descriptor-set", os.path.join(self.args.build_dir, name)]

    def desc_file(self, name):
        return ["--descriptor-set", os.path.join(self.args.build_dir, name)]

    def call(self, method, request=None, *opts, desc="clitest.pb", stdin=None):
        argv = ["call", *self.desc(desc), *opts, self.socket, method]
        if request is not None:
            argv.append(request if isinstance(request, str) else json.dumps(request))
        return self.run(*argv, stdin=stdin)

    def check(self, ok, what, detail=""):
        self.checks += 1
        if not ok:
            self.failures += 1
            print(f"FAIL: {what}\n{detail}", flush=True)

    def expect(self, argv_desc, got, rc=0, out_json=None, err_has=(), out_has=()):
        code, out, err = got
        detail = (f"  command: {argv_desc}\n  exit {code} (want {rc})\n"
                  f"  stdout: {out[:2000]!r}\n  stderr: {err[:2000]!r}")
        self.check(code == rc, f"{argv_desc}: exit status", detail)
        if out_json is not None:
            try:
                doc = json.loads(out)
            except ValueError as e:
                self.check(False, f"{argv_desc}: stdout is not JSON ({e})", detail)
                return
            self.check(same(doc, out_json), f"{argv_desc}: output",
                       detail + f"\n  want: {json.dumps(out_json)}")
        for s in err_has:
            self.check(s in err, f"{argv_desc}: stderr lacks {s!r}", detail)
        for s in out_has:
            self.check(s in out.decode(errors="replace"), f"{argv_desc}: stdout lacks {s!r}",
                       detail)

    def echo(self, request, want=None, *opts, desc="clitest.pb"):
        """Echo round trip: JSON in, the same (or `want`) out."""
        want = request if want is None else want
        self.expect(f"echo {json.dumps(request)[:200]}", self.call(ECHO, request, *opts,
                                                                  desc=desc),
                    out_json=want)


def same(a, b):
    """Semantic JSON equality (numbers compared as numbers, floats exactly
    after a round trip through float32 where needed)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


# --- Groups ---

def g_scalars(e):
    e.start_server()
    e.echo({"fDouble": 1.5, "fFloat": 0.1, "fInt32": -5, "fInt64": "-42", "fUint32": 7,
            "fUint64": "42", "fSint32": -3, "fSint64": "-4", "fFixed32": 9,
            "fFixed64": "10", "fSfixed32": -11, "fSfixed64": "-12", "fBool": True,
            "fString": "plain", "fBytes": "AAEC/w=="})
    # Edge values of every integer type.
    e.echo({"fInt32": -2147483648, "fUint32": 4294967295, "fSint32": -2147483648,
            "fFixed32": 4294967295, "fSfixed32": -2147483648,
            "fInt64": "-9223372036854775808", "fUint64": "18446744073709551615",
            "fSint64": "-9223372036854775808", "fFixed64": "18446744073709551615",
            "fSfixed64": "-9223372036854775808"})
    e.echo({"fInt32": 2147483647, "fSint32": 2147483647, "fSfixed32": 2147483647,
            "fInt64": "9223372036854775807", "fSint64": "9223372036854775807",
            "fSfixed64": "9223372036854775807"})
    # 64-bit integers: numbers accepted, strings printed; 32-bit ones: strings
    # and integral reals accepted.
    e.echo({"fInt64": 5, "fUint64": 6, "fInt32": "7", "fUint32": 1e3},
           {"fInt64": "5", "fUint64": "6", "fInt32": 7, "fUint32": 1000})
    # Floating point: special values, exponents, float32 rounding.
    e.echo({"fDouble": "NaN", "fFloat": "Infinity", "rDouble": ["-Infinity", 1e308, 5e-324,
                                                               -0.0, 0.1]},
           {"fDouble": "NaN", "fFloat": "Infinity",
            "rDouble": ["-Infinity", 1e308, 5e-324, -0.0, 0.1]})
    e.echo({"fFloat": 3.4028234663852886e38, "rFloat": [1.5, -2.25, "NaN", 1e-45]},
           {"fFloat": 3.4028235e38, "rFloat": [1.5, -2.25, "NaN", 1e-45]})
    e.echo({"fDouble": "1.25"}, {"fDouble": 1.25})
    # Strings: unicode and escapes; bytes: empty, binary, URL-safe and
    # unpadded input, standard base64 output.
    e.echo({"fString": "h\u00e9llo \u4e16\u754c \U0001F600 \"q\" \\ \n\t\u0001"})
    e.echo({"rBytes": ["", "AA==", base64.b64encode(bytes(range(256))).decode()]})
    e.echo({"fBytes": "-_8"}, {"fBytes": "+/8="})
    e.echo({"fBytes": "AQ"}, {"fBytes": "AQ=="})
    # Enums: by name, by number (known: name out; unknown: number out).
    e.echo({"fEnum": "INFRARED", "rEnum": ["RED", 2, 99, -3]},
           {"fEnum": "INFRARED", "rEnum": ["RED", "GREEN", 99, "INFRARED"]})
    # Defaults are left out (proto3), and printed with --emit-defaults.
    e.echo({"fInt32": 0, "fString": "", "fBool": False, "fEnum": "COLOR_UNSPECIFIED",
            "fBytes": "", "fInt64": "0", "fDouble": 0}, {})
    code, out, err = e.call(ECHO, {"fInt32": 0}, "--emit-defaults")
    doc = json.loads(out) if code == 0 else {}
    e.check(code == 0 and doc.get("fInt32") == 0 and doc.get("fInt64") == "0" and
            doc.get("fString") == "" and doc.get("fEnum") == "COLOR_UNSPECIFIED" and
            doc.get("rInt32") == [] and doc.get("mStringInt32") == {} and
            "fInner" not in doc and "oString" not in doc and doc.get("fBool") is False,
            "--emit-defaults prints the defaults", f"{code} {out!r} {err}")


def g_composite(e):
    e.start_server()
    # Nested messages, deep.
    deep = {"name": "leaf"}
    for i in range(20):
        deep = {"id": i + 1, "children": [deep, {"name": f"s{i}"}]}
    e.echo({"fInner": deep})
    e.echo({"fInner": {"name": "n", "color": "GREEN", "children": [{}, {"id": 1}]}},
           {"fInner": {"name": "n", "color": "GREEN", "children": [{}, {"id": 1}]}})
    # Repeated fields, packed and unpacked.
    e.echo({"rInt32": [1, -2, 2147483647, -2147483648], "rInt32Unpacked": [4, 0, -5],
            "rString": ["a", "", "c"], "rSint64": ["-1", "0", "9223372036854775807"],
            "rBool": [True, False, True], "rFixed32": [0, 4294967295],
            "rUint64": ["0", "18446744073709551615"],
            "rInner": [{"name": "x"}, {}, {"id": 2}]})
    e.echo({"rInt32": []}, {})
    # Maps: string, integer and bool keys; scalar, enum and message values.
    e.echo({"mStringInt32": {"a": 1, "": 0, "\u00fc": -1},
            "mInt32String": {"-1": "neg", "0": "", "2147483647": "max"},
            "mInt64Inner": {"-9223372036854775808": {"name": "min"}, "5": {}},
            "mBoolBytes": {"true": "AA==", "false": ""},
            "mUint32Enum": {"4294967295": "RED", "1": 7}})
    # Oneofs: each member; two members are an error.
    e.echo({"oString": "s"})
    e.echo({"oString": ""})
    e.echo({"oInner": {"name": "in"}})
    e.echo({"oInt64": "-1"})
    e.echo({"oEmpty": {}})
    e.expect("two oneof members", e.call(ECHO, {"oString": "a", "oInt64": "1"}),
             rc=EXIT["dataerr"], err_has=["oneof choice", "oString", "oInt64"])
    # JSON names and .proto names both accepted on input; json_name option.
    e.echo({"f_int32": 3, "r_string": ["x"], "customName": "c"},
           {"fInt32": 3, "rString": ["x"], "customName": "c"})
    e.echo({"with_json_name": "w"}, {"customName": "w"})
    e.expect("a field twice", e.call(ECHO, {"fInt32": 1, "f_int32": 2}),
             rc=EXIT["dataerr"], err_has=["given twice"])
    # null means "not set".
    e.echo({"fInt32": None, "fInner": None, "rInt32": None}, {})
    # Packed on the wire where the descriptors say unpacked, and the reverse.
    e.echo({"a": [1, 2, 3], "b": [4, 5]}, desc="clitest_packing.pb")


def g_wkt(e):
    e.start_server()
    e.echo({"fEmpty": {}})
    e.echo({"fTimestamp": "1970-01-01T00:00:00Z"})
    e.echo({"fTimestamp": "2024-02-29T23:59:59.123456789Z"})
    e.echo({"fTimestamp": "0001-01-01T00:00:00Z"})
    e.echo({"fTimestamp": "9999-12-31T23:59:59.999Z"})
    e.echo({"fTimestamp": "2024-03-01T01:30:00.5+02:30"},
           {"fTimestamp": "2024-02-29T23:00:00.500Z"})
    e.echo({"fDuration": "0s"})
    e.echo({"fDuration": "-1.5s"}, {"fDuration": "-1.500s"})
    e.echo({"fDuration": "315576000000.000001s"})
    e.echo({"wInt64": "-7", "wString": "", "wBool": False},
           {"wInt64": "-7", "wString": "", "wBool": False})
    e.echo({"fStruct": {"a": [1, None, "x", {"b": True}], "n": 2.5, "e": {}}})
    e.echo({"fValue": None})
    e.echo({"fValue": [1, "two", {"three": [False]}]})
    e.echo({"fList": []})
    e.echo({"fMask": "fooBar,x.yZ"})
    e.expect("bad timestamp", e.call(ECHO, {"fTimestamp": "2023-02-29T00:00:00Z"}),
             rc=EXIT["dataerr"], err_has=["fTimestamp", "not a valid timestamp"])
    e.expect("bad duration", e.call(ECHO, {"fDuration": "5"}), rc=EXIT["dataerr"],
             err_has=["fDuration"])


def g_proto2(e):
    e.start_server()
    m = "ackrpc.clitest2.Legacy2/Echo"
    e.expect("proto2 echo", e.call(m, {"id": "x", "count": 0, "packedVals": [1, 2],
                                       "vals": [3], "kind": "BETA", "note": ""}),
             out_json={"id": "x", "count": 0, "packedVals": [1, 2], "vals": [3],
                       "kind": "BETA", "note": ""})
    e.expect("proto2 presence", e.call(m, {"id": ""}), out_json={"id": ""})
    e.expect("proto2 required", e.call(m, {"count": 1}), rc=EXIT["dataerr"],
             err_has=["missing required field id"])
    e.expect("closed enum by name", e.call(m, {"id": "a", "kind": "GAMMA"}),
             rc=EXIT["dataerr"], err_has=["GAMMA", "not a value of enum"])
    # proto3 optional: explicit presence keeps zero values.
    e.echo({"pInt32": 0, "pString": "", "plainInt32": 0}, {"pInt32": 0, "pString": ""},
           desc="clitest_optional.pb")
    e.echo({}, {}, desc="clitest_optional.pb")


def g_roundtrip(e):
    e.start_server()
    full = {
        "fDouble": -2.5e-10, "fFloat": 1.1754944e-38, "fInt32": 123456, "fInt64": "-1",
        "fUint32": 1, "fUint64": "1", "fSint32": 1, "fSint64": "1", "fFixed32": 1,
        "fFixed64": "1", "fSfixed32": -1, "fSfixed64": "1", "fBool": True,
        "fString": "\u2603", "fBytes": "/w==", "fEnum": "RED",
        "fInner": {"name": "a", "id": -1, "children": [{"color": "INFRARED"}]},
        "rInt32": [1], "rInt32Unpacked": [1], "rDouble": [1.5], "rString": ["s"],
        "rBytes": ["AA=="], "rInner": [{"id": 1}], "rEnum": ["GREEN"], "rSint64": ["-5"],
        "rBool": [False], "rFixed32": [5], "rFloat": [0.5], "rUint64": ["5"],
        "mStringInt32": {"k": 1}, "mInt32String": {"1": "v"},
        "mInt64Inner": {"1": {"name": "v"}}, "mBoolBytes": {"false": "AA=="},
        "mUint32Enum": {"1": "GREEN"}, "oInner": {"id": 5}, "fEmpty": {},
        "fTimestamp": "2000-01-01T00:00:00Z", "fDuration": "1s", "wInt64": "1",
        "wString": "w", "wBool": True, "fStruct": {"k": "v"}, "fValue": 1,
        "fList": ["x"], "fMask": "a.b", "customName": "c",
    }
    e.echo(full)
    # The same from standard input ("-" and no argument), pretty-printed.
    for extra in (["-"], []):
        argv = ["call", *e.desc(), "--pretty", e.socket, ECHO, *extra]
        got = e.run(*argv, stdin=json.dumps(full).encode())
        e.expect(f"stdin {extra}", got, out_json=full)
        e.check(b"\n  \"fDouble\"" in got[1], "--pretty indents", repr(got[1][:200]))
    # Output is the input's canonical form, byte for byte, for a canonical input.
    code, out, _ = e.call(ECHO, full)
    code2, out2, _ = e.call(ECHO, out.decode())
    e.check(code == 0 and code2 == 0 and out == out2, "output is a fixed point",
            f"{out!r}\n{out2!r}")


def g_errors(e):
    e.start_server()
    m = "ackrpc.clitest.Test/Fail"
    for code in range(0, 17):
        got = e.call(m, {"code": code, "message": f"msg {code}"})
        want = [] if code == 0 else [f"{STATUS_NAMES[code]} ({code}): msg {code}"]
        e.expect(f"status {code}", got, rc=code, err_has=want)
    e.expect("status without message", e.call(m, {"code": 5}), rc=5,
             err_has=["NOT_FOUND (5)"])
    e.expect("unknown method", e.call("ackrpc.clitest.Test/Nope", {}),
             rc=12, err_has=["no such method ackrpc.clitest.Test/Nope"])
    e.expect("unknown field", e.call(ECHO, {"nope": 1}), rc=EXIT["dataerr"],
             err_has=["unknown field \"nope\""])
    e.expect("nested unknown field", e.call(ECHO, {"fInner": {"children": [{}, {"x": 1}]}}),
             rc=EXIT["dataerr"], err_has=["at fInner.children[1]", "unknown field \"x\""])
    e.expect("bad JSON", e.call(ECHO, '{"fInt32": }'), rc=EXIT["dataerr"],
             err_has=["bad JSON", "line 1 column"])
    e.expect("bad JSON on stdin", e.call(ECHO, stdin=b"{,"), rc=EXIT["dataerr"],
             err_has=["bad JSON in standard input"])
    e.expect("duplicate key", e.call(ECHO, '{"fInt32": 1, "fInt32": 2}'),
             rc=EXIT["dataerr"], err_has=["duplicate"])
    for req, msg in [({"fInt32": 2147483648}, "out of range"),
                     ({"fUint32": -1}, "out of range"),
                     ({"fInt64": "9223372036854775808"}, "out of range"),
                     ({"fUint64": "-1"}, "out of range"),
                     ({"fInt32": 1.5}, "not an integer"),
                     ({"fInt32": "x"}, "not an integer"),
                     ({"fFloat": 1e39}, "out of range for a float"),
                     ({"fBool": "true"}, "expected true or false"),
                     ({"fString": 5}, "expected a string"),
                     ({"fBytes": "!!"}, "not valid base64"),
                     ({"fEnum": "PURPLE"}, "not a value of enum"),
                     ({"rInt32": 5}, "expected an array"),
                     ({"rInt32": [None]}, "at rInt32[0]: expected an integer, got null"),
                     ({"rInner": [None]}, "null is not allowed"),
                     ({"mStringInt32": []}, "expected an object"),
                     ({"mInt32String": {"x": "y"}}, "not an integer"),
                     ({"mBoolBytes": {"yes": ""}}, "not true or false"),
                     ({"fInner": 5}, "expected an object"),
                     ([], "expected an object")]:
        e.expect(f"bad value {req}", e.call(ECHO, req), rc=EXIT["dataerr"], err_has=[msg])


def g_transport(e):
    # Not delivered: nobody serves the socket.
    e.expect("no server", e.call(ECHO, {}), rc=EXIT["not_delivered"],
             err_has=["ackrpc call: E_CONNECT: "])
    code, out, err = e.call(ECHO, {})
    e.check("(100)" not in err and "ackrpc: " not in err,
            "no internal status number, one prefix", err)
    e.expect("bad address", e.run("call", *e.desc(), "/" + "x" * 200, ECHO, "{}"),
             rc=EXIT["usage"])
    # Delivered, no ack: the server exits inside the handler.
    e.start_server()
    code, out, err = e.call("ackrpc.clitest.Test/Crash", {}, "--call-id", "c0ffee")
    e.expect("no ack", (code, out, err), rc=EXIT["no_ack"],
             err_has=["ackrpc call: E_NO_ACK: ", "ackrpc call: ackrpc.clitest.Test/Crash may or "
                      "may not have run; to retry, pass --call-id c0ffee"])
    e.server.wait(timeout=10)
    e.server = None


def g_binary(e):
    e.start_server()
    # AllTypes{f_int32: 150, f_string: "hi", r_int32: [1, 2]}, hand-encoded.
    req = bytes([0x18, 0x96, 0x01, 0x72, 0x02, ord("h"), ord("i"), 0xa2, 0x01, 0x02, 1, 2])
    code, out, err = e.run("call", "--binary", e.socket, ECHO, stdin=req)
    e.check(code == 0 and out == req, "--binary echo", f"{code} {out!r} {err}")
    # Descriptors are not needed; bytes that are not a message are refused by
    # the server (INVALID_ARGUMENT).
    code, out, err = e.run("call", "--binary", e.socket, ECHO, stdin=b"\xff\xff")
    e.check(code == 3 and "INVALID_ARGUMENT (3)" in err, "--binary bad request",
            f"{code} {out!r} {err}")
    code, out, err = e.run("call", "--binary", e.socket, ECHO, "{}")
    e.check(code == EXIT["usage"], "--binary takes no JSON argument", f"{code} {err}")
    # Empty request: empty reply.
    code, out, err = e.run("call", "--binary", e.socket, ECHO, stdin=b"")
    e.check(code == 0 and out == b"", "--binary empty", f"{code} {out!r} {err}")


def g_options(e):
    e.start_server()
    m = "ackrpc.clitest.Test/Inspect"
    got = e.call(m, {}, "--metadata", "trace-id=abc", "-m", "k.2_x=v=w", "-m", "empty=",
                 "--call-id", "00ff10", "--timeout", "5000")
    e.expect("metadata and call id", got,
             out_json={"method": m, "callIdHex": "00ff10",
                       "metadata": {"trace-id": "abc", "k.2_x": "v=w", "empty": ""}})
    code, out, err = e.call(m, {}, "--verbose")
    e.check(code == 0 and "call id " in err and "OK" in err, "--verbose", err)
    doc = json.loads(out) if code == 0 else {}
    e.check(len(doc.get("callIdHex", "")) == 32, "default call id is 16 bytes", out)
    for bad in (["--metadata", "Upper=x"], ["--metadata", "novalue"], ["--metadata", "=x"],
                ["--call-id", "abc"], ["--call-id", "zz"], ["--call-id", "00" * 65],
                ["--timeout", "0"], ["--timeout", "x"], ["--bogus"]):
        e.expect(f"bad option {bad}", e.call(m, {}, *bad), rc=EXIT["usage"])
    e.expect("too few arguments", e.run("call", *e.desc(), e.socket), rc=EXIT["usage"])
    # --proto runs protoc; -I is the import path.
    proto = os.path.join(e.args.proto_dir, "clitest.proto")
    got = e.run("call", "--proto", proto, e.socket, ECHO, '{"fInt32": 1}')
    e.expect("--proto", got, out_json={"fInt32": 1})
    got = e.run("call", "--proto", "clitest.proto", "-I", e.args.proto_dir, e.socket, ECHO,
                '{"fInt32": 2}')
    e.expect("--proto -I", got, out_json={"fInt32": 2})
    got = e.run("call", "--proto", os.path.join(e.tmp, "missing.proto"), e.socket, ECHO, "{}")
    e.expect("--proto missing file", got, rc=EXIT["noinput"], err_has=["protoc failed"])
    got = e.run("call", "--descriptor-set", os.path.join(e.tmp, "missing.pb"), e.socket,
                ECHO, "{}")
    e.expect("missing descriptor set", got, rc=EXIT["noinput"], err_has=["cannot read"])
    junk = os.path.join(e.tmp, "junk.pb")
    with open(junk, "wb") as f:
        f.write(b"\xff\xff\xff")
    e.expect("bad descriptor set", e.run("call", "-D", junk, e.socket, ECHO, "{}"),
             rc=EXIT["noinput"], err_has=["not a serialized"])
    # No descriptors: the server's reflection gives them.
    e.expect("no descriptors", e.run("call", e.socket, ECHO, '{"fInt32": 3}'),
             out_json={"fInt32": 3})


def g_help(e):
    for cmd in ("call", "list", "describe", "health", "stats"):
        code, out, err = e.run(cmd, "--help")
        e.check(code == 0 and f"usage: ackrpc {cmd}".encode() in out and
                b"Exit status" in out, f"{cmd} --help", f"{code} {out[:300]!r} {err}")
        code, out2, err = e.run("help", cmd)
        e.check(code == 0 and out2 == out, f"ackrpc help {cmd}", f"{code} {err}")
    code, out, err = e.run("--help")
    e.check(code == 0 and b"usage: ackrpc COMMAND" in out, "ackrpc --help", err)
    code, out, err = e.run("--version")
    e.check(code == 0 and out.startswith(b"ackrpc "), "--version", err)
    e.expect("no command", e.run(), rc=EXIT["usage"], err_has=["usage: ackrpc"])
    e.expect("unknown command", e.run("frobnicate"), rc=EXIT["usage"],
             err_has=["unknown command"])
    e.start_server()
    for cmd in ("health", "stats"):
        e.expect(cmd, e.run(cmd, e.socket), out_has=["SERVING" if cmd == "health" else "CALLS"])
        e.expect(f"{cmd} without socket", e.run(cmd), rc=EXIT["usage"])
        e.expect(f"{cmd} bad option", e.run(cmd, "--bogus", e.socket), rc=EXIT["usage"])


def g_list(e):
    want = ("ackrpc.clitest.Test\n"
            "  ackrpc.clitest.Test/Echo(ackrpc.clitest.AllTypes) returns "
            "(ackrpc.clitest.AllTypes)\n"
            "  ackrpc.clitest.Test/Fail(ackrpc.clitest.FailRequest) returns "
            "(google.protobuf.Empty)\n"
            "  ackrpc.clitest.Test/Inspect(google.protobuf.Empty) returns "
            "(ackrpc.clitest.CallInfo)\n"
            "  ackrpc.clitest.Test/Crash(google.protobuf.Empty) returns "
            "(google.protobuf.Empty)\n"
            "ackrpc.clitest2.Legacy2\n"
            "  ackrpc.clitest2.Legacy2/Echo(ackrpc.clitest2.Legacy) returns "
            "(ackrpc.clitest2.Legacy)\n")
    code, out, err = e.run("list", *e.desc())
    e.check(code == 0 and out.decode() == want, "list offline", f"{code}\n{out.decode()}\n{err}")
    e.start_server()
    code, out, err = e.run("list", *e.desc(), e.socket)
    e.check(code == 0 and out.decode() == want, "list SOCKET with descriptors", err)
    code, out, err = e.run("list", "-1", *e.desc())
    e.check(code == 0 and out.decode().split() == [
        "ackrpc.clitest.Test/Echo", "ackrpc.clitest.Test/Fail", "ackrpc.clitest.Test/Inspect",
        "ackrpc.clitest.Test/Crash", "ackrpc.clitest2.Legacy2/Echo"], "list -1", out)
    p = e.args.proto_dir
    code, out, err = e.run("list", "-P", os.path.join(p, "clitest.proto"), "-P",
                           os.path.join(p, "clitest2.proto"))
    e.check(code == 0 and out.decode() == want, "list --proto", f"{out.decode()}\n{err}")
    e.expect("list nothing", e.run("list"), rc=EXIT["usage"])


def g_describe(e):
    def desc(name, *want, desc_file="clitest.pb"):
        code, out, err = e.run("describe", *e.desc(desc_file), name)
        text = out.decode()
        for w in want:
            e.check(code == 0 and w in text, f"describe {name}: lacks {w!r}",
                    f"{code}\n{text}\n{err}")
        return text
    text = desc("ackrpc.clitest.AllTypes", "message AllTypes {\n", "  double f_double = 1;\n",
                "  sfixed64 f_sfixed64 = 12;\n", "  .ackrpc.clitest.Color f_enum = 16;\n",
                "  repeated int32 r_int32_unpacked = 21 [packed = false];\n",
                "  map<int64, .ackrpc.clitest.Inner> m_int64_inner = 32;\n",
                "  oneof choice {\n    string o_string = 40;\n",
                "    .google.protobuf.Empty o_empty = 43;\n  }\n",
                "  .google.protobuf.Timestamp f_timestamp = 51;\n",
                "  string with_json_name = 60 [json_name = \"customName\"];\n")
    e.check("MStringInt32Entry" not in text, "map entries are not printed as messages", text)
    desc(".ackrpc.clitest.Inner", "message Inner {", "repeated .ackrpc.clitest.Inner children = 3;")
    desc("ackrpc.clitest.Color", "enum Color {\n  COLOR_UNSPECIFIED = 0;\n", "INFRARED = -3;")
    desc("ackrpc.clitest.Test", "service Test {\n",
         "  rpc Echo(.ackrpc.clitest.AllTypes) returns (.ackrpc.clitest.AllTypes);\n")
    desc("ackrpc.clitest.Test/Fail",
         "rpc Fail(.ackrpc.clitest.FailRequest) returns (.google.protobuf.Empty);\n",
         "message FailRequest {\n  int32 code = 1;\n", "message Empty {\n}")
    desc("ackrpc.clitest.Test.Inspect", "map<string, string> metadata = 3;")
    desc("ackrpc.clitest2.Legacy", "(clitest2.proto, proto2)", "required string id = 1;",
         "optional int32 count = 2 [default = 7];",
         "repeated int32 packed_vals = 3 [packed = true];",
         "optional string note = 6 [default = \"none\"];", "  enum Kind {\n",
         "optional .ackrpc.clitest2.Legacy.Kind kind = 5;")
    desc("ackrpc.clitest.OptionalFields", "optional int32 p_int32 = 70;",
         "  int32 plain_int32 = 72;", desc_file="clitest_optional.pb")
    e.expect("describe unknown", e.run("describe", *e.desc(), "nope.Nope"),
             rc=EXIT["dataerr"], err_has=["is not a service, method, message or enum"])
    e.start_server()
    code, out, err = e.run("describe", *e.desc(), e.socket, "ackrpc.clitest.Color")
    e.check(code == 0 and b"enum Color" in out, "describe SOCKET NAME", err)
    e.expect("describe SOCKET unknown", e.run("describe", e.socket, "x.Y"),
             rc=EXIT["dataerr"], err_has=["is not a service, method, message or enum"])


BUILTIN_LIST = (
    "ackrpc.reflection.Reflection\n"
    "  ackrpc.reflection.Reflection/ListServices(ackrpc.reflection.ListServicesRequest) "
    "returns (ackrpc.reflection.ListServicesReply)\n"
    "  ackrpc.reflection.Reflection/FileContainingSymbol(ackrpc.reflection.FileRequest) "
    "returns (ackrpc.reflection.FileReply)\n"
    "ackrpc.reflection.Health\n"
    "  ackrpc.reflection.Health/Check(ackrpc.reflection.HealthRequest) "
    "returns (ackrpc.reflection.HealthReply)\n"
    "ackrpc.reflection.Stats\n"
    "  ackrpc.reflection.Stats/Get(ackrpc.reflection.StatsRequest) "
    "returns (ackrpc.reflection.StatsReply)\n"
    "ackrpc.reflection.Capture\n"
    "  ackrpc.reflection.Capture/Watch(ackrpc.reflection.CaptureRequest) "
    "returns (ackrpc.reflection.CaptureReply)\n")


def g_reflection(e):
    """list, describe and call with nothing but the socket: the server's
    built-in reflection service."""
    e.start_server()
    code, out, err = e.run("list", e.socket)
    text = out.decode()
    want_user = ("ackrpc.clitest.Test\n"
                 "  ackrpc.clitest.Test/Echo(ackrpc.clitest.AllTypes) returns "
                 "(ackrpc.clitest.AllTypes)\n"
                 "  ackrpc.clitest.Test/Fail(ackrpc.clitest.FailRequest) returns "
                 "(google.protobuf.Empty)\n"
                 "  ackrpc.clitest.Test/Inspect(google.protobuf.Empty) returns "
                 "(ackrpc.clitest.CallInfo)\n"
                 "  ackrpc.clitest.Test/Crash(google.protobuf.Empty) returns "
                 "(google.protobuf.Empty)\n"
                 "ackrpc.clitest2.Legacy2\n"
                 "  ackrpc.clitest2.Legacy2/Echo(ackrpc.clitest2.Legacy) returns "
                 "(ackrpc.clitest2.Legacy)\n"
                 "ackrpc.clitest.Plain\n"
                 "  ackrpc.clitest.Plain/Echo(ackrpc.clitest.AllTypes) returns "
                 "(ackrpc.clitest.AllTypes)\n")
    e.check(code == 0 and text == want_user + BUILTIN_LIST, "list by reflection",
            f"{code}\n{text}\n{err}")
    code, out, err = e.run("list", "-1", e.socket)
    e.check(code == 0 and out.decode().split()[:2] == ["ackrpc.clitest.Test/Echo",
                                                      "ackrpc.clitest.Test/Fail"] and
            "ackrpc.reflection.Stats/Get" in out.decode().split(), "list -1 by reflection",
            f"{code} {out!r} {err}")
    # describe: services, methods, messages, nested types, enums, imports.
    for name, want in [
            ("ackrpc.clitest.Test", "service Test {\n"),
            ("ackrpc.clitest.Test/Fail", "message FailRequest {\n  int32 code = 1;\n"),
            ("ackrpc.clitest.AllTypes", "map<int64, .ackrpc.clitest.Inner> m_int64_inner = 32;"),
            ("ackrpc.clitest.Color", "INFRARED = -3;"),
            ("ackrpc.clitest2.Legacy", "optional int32 count = 2 [default = 7];"),
            ("google.protobuf.Timestamp", "int64 seconds = 1;"),
            ("ackrpc.reflection.HealthReply", "enum ServingStatus {")]:
        code, out, err = e.run("describe", e.socket, name)
        e.check(code == 0 and want in out.decode(), f"describe {name} by reflection",
                f"{code}\n{out.decode()}\n{err}")
    # The same text as from the descriptor set.
    code, out, _ = e.run("describe", e.socket, "ackrpc.clitest.AllTypes")
    code2, out2, _ = e.run("describe", *e.desc_file("clitest.pb"), "ackrpc.clitest.AllTypes")
    e.check(code == 0 and out == out2, "describe: reflection == descriptor set",
            f"{out.decode()}\n---\n{out2.decode()}")
    # call: a plain call, a built-in method, a method without descriptors.
    e.expect("call by reflection", e.run("call", e.socket, ECHO, '{"rString": ["a"]}'),
             out_json={"rString": ["a"]})
    e.expect("call a built-in method", e.run("call", e.socket,
                                             "ackrpc.reflection.Health/Check", "{}"),
             out_json={"status": "SERVING"})
    # A method registered without a service record: described by descriptors
    # the server makes from protobuf-c's (ackrpc-synth/ackrpc.clitest.proto,
    # importing the real files for the types they define).
    e.expect("call a method without a record",
             e.run("call", e.socket, "ackrpc.clitest.Plain/Echo",
                   '{"fInt32": 4, "rString": ["a"]}'),
             out_json={"fInt32": 4, "rString": ["a"]})
    code, out, err = e.run("describe", e.socket, "ackrpc.clitest.Plain")
    e.check(code == 0 and "ackrpc-synth/ackrpc.clitest.proto" in out.decode() and
            "rpc Echo(.ackrpc.clitest.AllTypes) returns (.ackrpc.clitest.AllTypes);"
            in out.decode(), "describe a service without a record", f"{code}\n{out}\n{err}")
    code, out, err = e.run("call", "--binary", e.socket, "ackrpc.clitest.Plain/Echo",
                           stdin=b"\x18\x05")
    e.check(code == 0 and out == b"\x18\x05", "call --binary without descriptors",
            f"{code} {out!r} {err}")
    e.expect("call unknown method", e.run("call", e.socket, "ackrpc.clitest.Test/Nope", "{}"),
             rc=12, err_has=["no such method ackrpc.clitest.Test/Nope"])
    # A server without the built-in services: 78, and descriptors still work.
    e.start_server("--no-builtins")
    for argv in (["list", e.socket], ["describe", e.socket, "ackrpc.clitest.Color"],
                 ["call", e.socket, ECHO, "{}"]):
        e.expect(f"{argv[0]} without built-ins", e.run(*argv), rc=EXIT["unsupported"],
                 err_has=["does not offer ackrpc.reflection.Reflection/",
                          "--descriptor-set"])
    for cmd in ("health", "stats"):
        e.expect(f"{cmd} without built-ins", e.run(cmd, e.socket), rc=EXIT["unsupported"],
                 err_has=["does not offer ackrpc.reflection."])
    e.expect("call -D without built-ins", e.run("call", *e.desc_file("clitest.pb"), e.socket,
                                                ECHO, '{"fInt32": 4}'),
             out_json={"fInt32": 4})
    # Nobody there: not delivered.
    e.stop_server()
    for argv in (["list", e.socket], ["health", e.socket], ["stats", e.socket],
                 ["describe", e.socket, "x.Y"], ["call", e.socket, ECHO, "{}"]):
        e.expect(f"{argv[0]} with no server", e.run(*argv), rc=EXIT["not_delivered"],
                 err_has=["E_CONNECT"])


def g_generic(e):
    """ackrpc-bench serve registers its method with ackrpc_server_add_method()
    alone: reflection still describes it (ackrpc-synth/ackrpc.bench.proto),
    so call, describe and list work with nothing but the socket."""
    if not e.args.bench:
        e.check(False, "--bench not given")
        return
    e.start_server(argv=[e.args.bench, "serve", "--socket", e.socket])
    e.expect("call ackrpc.bench.Bench/Call",
             e.run("call", e.socket, "ackrpc.bench.Bench/Call", '{"id": "7", "body": "aGVsbG8="}'),
             out_json={"id": "7", "bodyLen": 5})
    code, out, err = e.run("describe", e.socket, "ackrpc.bench.Bench")
    e.check(code == 0 and "// ackrpc.bench.Bench (ackrpc-synth/ackrpc.bench.proto" in out.decode()
            and "rpc Call(.ackrpc.bench.Request) returns (.ackrpc.bench.Ack);" in out.decode(),
            "describe the bench service", f"{code}\n{out.decode()}\n{err}")
    code, out, err = e.run("describe", e.socket, "ackrpc.bench.Request")
    e.check(code == 0 and "uint64 id = 1;" in out.decode() and "bytes body = 2;" in out.decode(),
            "describe the bench request", f"{code}\n{out.decode()}\n{err}")
    code, out, err = e.run("list", e.socket)
    e.check(code == 0 and out.decode().startswith(
        "ackrpc.bench.Bench\n  ackrpc.bench.Bench/Call(ackrpc.bench.Request) returns "
        "(ackrpc.bench.Ack)\n"), "list the bench service with descriptors",
        f"{code}\n{out.decode()}\n{err}")
    e.stop_server()


def g_health(e):
    e.start_server()
    e.expect("health", e.run("health", e.socket), out_has=["SERVING\n"])
    code, out, err = e.run("health", "-q", e.socket)
    e.check(code == 0 and out == b"", "health -q", f"{code} {out!r} {err}")
    e.expect("health bad address", e.run("health", "/" + "x" * 200), rc=EXIT["usage"])


def g_stats(e):
    e.start_server()
    fail = "ackrpc.clitest.Test/Fail"
    for code in (0, 0, 5, 3, 5):
        e.call(fail, {"code": code})
    for _ in range(3):
        e.call(ECHO, {"fString": "x" * 100})
    code, out, err = e.run("stats", "--json", e.socket)
    try:
        doc = json.loads(out)
    except ValueError:
        doc = {}
    e.check(code == 0 and doc.get("connections", 0) >= 1 and "uptimeMs" in doc,
            "stats --json", f"{code} {out!r} {err}")
    by = {m["method"]: m for m in doc.get("methods", [])}
    f = by.get(fail, {})
    e.check(f.get("calls") == 5 and f.get("errors") == 3 and
            f.get("statuses") == {"OK": 2, "NOT_FOUND": 2, "INVALID_ARGUMENT": 1},
            "stats: calls and errors by status", json.dumps(f))
    ec = by.get(ECHO, {})
    e.check(ec.get("calls") == 3 and ec.get("errors") == 0 and ec.get("bytesIn", 0) > 300 and
            ec.get("bytesOut", 0) > 300 and 0 < ec.get("p50Us", 0) <= ec.get("p99Us", 0) <=
            ec.get("maxUs", 0) and ec.get("maxUs", 0) < 10_000_000, "stats: bytes and latency",
            json.dumps(ec))
    e.check(by.get("ackrpc.clitest.Test/Crash", {}).get("calls") == 0 and
            "ackrpc.reflection.Stats/Get" in by, "stats lists every method", json.dumps(by))
    code, out, err = e.run("stats", "--json", "--active", e.socket)
    doc = json.loads(out) if code == 0 else {}
    e.check(all(m["calls"] > 0 for m in doc.get("methods", [])) and
            fail in [m["method"] for m in doc.get("methods", [])], "stats --active",
            f"{code} {out!r}")
    code, out, err = e.run("stats", e.socket)
    text = out.decode()
    line = next((ln for ln in text.splitlines() if ln.startswith(fail + " ")), "")
    e.check(code == 0 and text.startswith("uptime ") and "METHOD" in text and
            line.split()[1:3] == ["5", "3"] and "NOT_FOUND=2" in line and "OK=2" in line,
            "stats table", text)


def g_edges(e):
    """Issue 15's rough edges: each check failed before its fix."""
    # -t covers the reflection lookup; a lookup that gets no answer is
    # "not delivered" (the method was never sent): no --call-id advice.
    e.start_server()
    os.kill(e.server.pid, signal.SIGSTOP)
    try:
        for argv in (["call", "-t", "500", e.socket, ECHO, "{}"],
                     ["health", "-t", "500", e.socket],
                     ["stats", "--timeout-ms", "500", e.socket],
                     ["list", "-t", "500", e.socket],
                     ["describe", "-t", "500", e.socket, "ackrpc.clitest.Test"]):
            t0 = time.monotonic()
            code, out, err = e.run(*argv)
            spent = time.monotonic() - t0
            e.expect(f"{argv[0]} -t 500, server stopped", (code, out, err),
                     rc=EXIT["not_delivered"])
            e.check(spent < 3, f"{argv[0]} -t 500 took {spent:.1f} s")
            e.check("--call-id" not in err, f"{argv[0]}: no --call-id advice", err)
    finally:
        os.kill(e.server.pid, signal.SIGCONT)
    e.expect("call --timeout-ms 0", e.run("call", "--timeout-ms", "0", e.socket, ECHO),
             rc=EXIT["usage"])
    # @FILE and @- for the JSON request.
    req = os.path.join(e.tmp, "req.json")
    with open(req, "w") as f:
        f.write('{"fInt32": 7, "fString": "from a file"}')
    e.expect("call @FILE", e.call(ECHO, "@" + req),
             out_json={"fInt32": 7, "fString": "from a file"})
    e.expect("call @-", e.call(ECHO, "@-", stdin=b'{"fInt32": 8}'), out_json={"fInt32": 8})
    e.expect("call @missing", e.call(ECHO, "@" + req + ".nope"), rc=EXIT["noinput"],
             err_has=[req + ".nope", "No such file"])
    # An unknown method: one answer and one exit status, whatever the
    # descriptors' source.
    for how, opts, stdin in (("reflection", [], None),
                             ("-D", e.desc_file("clitest.pb"), None),
                             ("-b", ["-b"], b"")):
        for m in ("ackrpc.clitest.Test/Nope", "nope.Nope/X"):
            argv = ["call", *opts, e.socket, m] + ([] if stdin is not None else ["{}"])
            e.expect(f"unknown method {m} ({how})", e.run(*argv, stdin=stdin), rc=12,
                     err_has=[f"ackrpc call: no such method {m}\n"])
    # unix: addresses; an empty address says so.
    e.expect("call unix:/path", e.run("call", *e.desc(), "unix:" + e.socket, ECHO, '{"fInt32": 3}'),
             out_json={"fInt32": 3})
    e.expect("health unix:/path", e.run("health", "unix:" + e.socket), out_has=["SERVING"])
    e.expect("health with an empty address", e.run("health", ""), rc=EXIT["usage"],
             err_has=["ackrpc health: the socket address is empty"])
    code, out, err = e.run("health", "")
    e.check(": invalid socket address" not in err, "no ': invalid socket address'", err)
    # An integer too large says "out of range", not "is not an integer".
    for big in ('"99999999999999999999999"', '1e30'):
        e.expect(f"int64 {big}", e.call(ECHO, '{"fInt64": %s}' % big), rc=EXIT["dataerr"],
                 err_has=["out of range"])
        code, out, err = e.call(ECHO, '{"fInt64": %s}' % big)
        e.check("not an integer" not in err, f"int64 {big}: not 'not an integer'", err)
    e.expect("int64 \"12x\"", e.call(ECHO, '{"fInt64": "12x"}'), rc=EXIT["dataerr"],
             err_has=["is not an integer"])
    # An abstract address nobody serves: the error names it.
    name = f"@ackrpc-cli-nobody-{os.getpid()}"
    for argv in (["health", name], ["call", *e.desc_file("clitest.pb"), name, ECHO, "{}"]):
        e.expect(f"{argv[0]} {name}", e.run(*argv), rc=EXIT["not_delivered"],
                 err_has=[name])
    # describe SOCKET with no NAME: every service.
    code, out, err = e.run("describe", e.socket)
    text = out.decode()
    e.check(code == 0 and "service Test {\n" in text and "service Legacy2 {\n" in text
            and "service Health {\n" in text, "describe SOCKET: every service",
            f"{code} {text!r} {err}")
    code, out, err = e.run("describe", *e.desc_file("clitest.pb"))
    e.check(code == 0 and "service Test {\n" in out.decode(),
            "describe -D FILE: every service", f"{code} {out!r} {err}")
    # describe --help no longer says servers have no reflection.
    code, out, err = e.run("describe", "--help")
    e.check(code == 0 and "do not offer reflection" not in out.decode() and
            "reflection" in out.decode(), "describe --help: reflection", out.decode())
    e.stop_server()


# --- A hostile server (docs/PROTOCOL.md by hand): replies and descriptors
# from a server are untrusted input too.

def pb_varint(n):
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def pb_ld(num, data):
    return pb_varint(num << 3 | 2) + pb_varint(len(data)) + data


def pb_int(num, n):
    return pb_varint(num << 3) + pb_varint(n)


def nested_chain(levels, tag=b"\x0a"):
    """`levels` messages each holding the next in field 1 (the top one is
    level 1), built from the inside out in linear time."""
    heads, inner = [], 0
    for _ in range(levels - 1):
        h = tag + pb_varint(inner)
        heads.append(h)
        inner += len(h)
    return b"".join(reversed(heads))


def evil_service(method, in_type, out_type):
    rpc = pb_ld(1, method.encode()) + pb_ld(2, in_type.encode()) + pb_ld(3, out_type.encode())
    return pb_ld(6, pb_ld(1, b"Evil") + pb_ld(2, rpc))


def deep_file_descriptor(levels):
    """evil.proto: message M nests a message M `levels` deep (nested_type,
    field 3 of DescriptorProto), and service Evil { rpc Call(M) returns (M) }."""
    m = pb_ld(1, b"M")
    for _ in range(levels - 1):
        m = pb_ld(1, b"M") + pb_ld(3, m)
    return (pb_ld(1, b"evil.proto") + pb_ld(2, b"evil") + pb_ld(4, m) +
            evil_service("Call", ".evil.M", ".evil.M") + pb_ld(12, b"proto3"))


def node_file_descriptor():
    """evil.proto: message Node { Node child = 1; }, service Evil { rpc
    Get(Node) returns (Node); }: a valid, recursive schema."""
    field = (pb_ld(1, b"child") + pb_int(3, 1) + pb_int(4, 1) + pb_int(5, 11) +
             pb_ld(6, b".evil.Node") + pb_ld(10, b"child"))
    node = pb_ld(1, b"Node") + pb_ld(2, field)
    return (pb_ld(1, b"evil.proto") + pb_ld(2, b"evil") + pb_ld(4, node) +
            evil_service("Get", ".evil.Node", ".evil.Node") + pb_ld(12, b"proto3"))


REFLECT_FILES = "ackrpc.reflection.Reflection/FileContainingSymbol"


class Hostile:
    """Serves `replies` (method name -> reply body, status OK; others get
    UNIMPLEMENTED) at `path`, one request per connection, from a thread;
    records the bytes each connection sent. With `as_uid`, listen() is called
    by a child process running as that user, so that SO_PEERCRED says so.
    Every wait is bounded; close() stops it and removes the socket."""

    def __init__(self, path, replies, as_uid=None):
        self.path, self.replies, self.received = path, replies, []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        if as_uid is None:
            self.sock.listen(16)
        else:
            pid = os.fork()
            if pid == 0:
                try:
                    os.setgroups([])
                    os.setresgid(as_uid, as_uid, as_uid)
                    os.setresuid(as_uid, as_uid, as_uid)
                    self.sock.listen(16)
                    os._exit(0)
                except BaseException:
                    os._exit(1)
            _, status = os.waitpid(pid, 0)
            if status != 0:
                self.sock.close()
                os.unlink(path)
                raise RuntimeError("could not listen as uid %d" % as_uid)
        self.sock.settimeout(0.05)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def wait_received(self, n, seconds=5.0):
        """Waits (bounded) until `n` connections were served: a client that
        refuses the server closes at once, and the serving thread may not
        have taken that connection yet when the client exits."""
        end = time.monotonic() + seconds
        while len(self.received) < n and time.monotonic() < end:
            time.sleep(0.01)
        return self.received

    def serve(self):
        end = time.monotonic() + 100
        while not self.stop.is_set() and time.monotonic() < end:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with conn:
                try:
                    self.handle(conn)
                except OSError:
                    pass

    def handle(self, conn):
        conn.settimeout(5)
        data = b""
        while True:
            if len(data) >= 12:
                h, b = struct.unpack("<II", data[4:12])
                if len(data) >= 12 + h + b:
                    break
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        self.received.append(len(data))
        if len(data) < 12:
            return
        h = struct.unpack("<I", data[4:8])[0]
        method = request_method(data[12:12 + h])
        body = self.replies.get(method)
        head = b"" if body is not None else pb_int(1, 12) + pb_ld(2, b"not here")
        body = body or b""
        conn.sendall(b"AK\x01\x02" + struct.pack("<II", len(head), len(body)) + head + body)

    def close(self):
        self.stop.set()
        self.thread.join(10)
        self.sock.close()
        if os.path.exists(self.path):
            os.unlink(self.path)


def request_method(head):
    """RequestHead.method (field 1) of a request head."""
    i = 0
    while i < len(head):
        key, i = read_varint(head, i)
        wt = key & 7
        if wt == 0:
            _, i = read_varint(head, i)
        elif wt == 2:
            n, i = read_varint(head, i)
            if key >> 3 == 1:
                return head[i:i + n].decode(errors="replace")
            i += n
        else:
            return ""
    return ""


def read_varint(b, i):
    v = shift = 0
    while i < len(b):
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            break
    return v, i


def g_hostile(e):
    sock = os.path.join(e.tmp, "hostile.sock")
    crashed = lambda code: code < 0  # killed by a signal (SIGSEGV: -11)

    # 10,000 nested message types (~70 KB) by reflection: describe and call
    # used to die in protobuf-c's recursion.
    files = pb_ld(1, deep_file_descriptor(10000))
    srv = Hostile(sock, {REFLECT_FILES: files})
    try:
        for argv in (["describe", sock, "evil.M"], ["call", sock, "evil.Evil/Call", "{}"]):
            got = e.run(*argv)
            e.check(not crashed(got[0]), f"{argv[0]} survives deep descriptors",
                    f"exit {got[0]}: {got[2][:500]}")
            e.expect(f"{argv[0]} refuses deep descriptors", got, rc=EXIT["bad_reply"],
                     err_has=["nested deeper than 100 levels"])
    finally:
        srv.close()

    # 1,500,000 empty message types (3 MB, under the client's 4 MiB reply
    # limit) would decode into ~270 MB: over the decoding budget.
    wide = pb_ld(1, b"wide.proto") + b"\x22\x00" * 1_500_000
    srv = Hostile(sock, {REFLECT_FILES: pb_ld(1, wide)})
    try:
        e.expect("describe refuses descriptors that decode too large",
                 e.run("describe", sock, "x.Y"), rc=EXIT["bad_reply"],
                 err_has=["too much memory"])
    finally:
        srv.close()

    # A valid recursive schema, and a reply nested 100,000 deep: the JSON
    # decoder's own depth limit, not a crash.
    files = pb_ld(1, node_file_descriptor())
    srv = Hostile(sock, {REFLECT_FILES: files, "evil.Evil/Get": nested_chain(100000)})
    try:
        got = e.run("call", sock, "evil.Evil/Get", "{}")
        e.check(not crashed(got[0]), "call survives a deep reply", f"exit {got[0]}")
        # An OK reply that does not decode is not well-formed: delivered, no
        # ack (PROTOCOL.md §7), with the call id to retry with.
        e.expect("call refuses a deep reply", got, rc=EXIT["no_ack"],
                 err_has=["nested deeper than", "--call-id "])
        srv.replies["evil.Evil/Get"] = b"\xff"
        e.expect("an OK reply that does not decode: no ack",
                 e.run("call", sock, "evil.Evil/Get", "{}"), rc=EXIT["no_ack"],
                 err_has=["does not decode", "--call-id "])
        ok = pb_ld(1, pb_ld(1, b""))  # {"child": {"child": {}}}
        srv.replies["evil.Evil/Get"] = ok
        e.expect("a shallow reply of the same type", e.run("call", sock, "evil.Evil/Get", "{}"),
                 out_json={"child": {"child": {}}})
    finally:
        srv.close()

    # --server-uid: who the server must run as, checked before anything is
    # sent. This server runs as us.
    me = os.geteuid()
    other = 4243 if me == 4242 else 4242
    srv = Hostile(sock, {"ackrpc.reflection.Health/Check": pb_int(1, 1)})
    try:
        for cmd in (["health"], ["stats"], ["list"], ["describe"], ["call"]):
            extra = {"describe": ["x.Y"], "call": [ECHO, "{}"]}.get(cmd[0], [])
            argv = [cmd[0], "--server-uid", str(other), sock, *extra]
            if cmd[0] == "call":
                argv[1:1] = e.desc_file("clitest.pb")
            e.expect(f"{cmd[0]} --server-uid another", e.run(*argv), rc=EXIT["noperm"],
                     err_has=[f"ackrpc {cmd[0]}: E_SERVER_IDENTITY: ", f"uid {me}"])
        got = srv.wait_received(5)
        e.check(got == [0] * 5, "an untrusted server receives nothing", repr(got))
        name = __import__("pwd").getpwuid(me).pw_name
        for uid in (str(me), name, "any"):
            e.expect(f"health --server-uid {uid}", e.run("health", "--server-uid", uid, sock),
                     out_has=["SERVING"])
        e.expect("health (the default trusts our own uid)", e.run("health", sock),
                 out_has=["SERVING"])
        e.expect("--server-uid unknown user",
                 e.run("health", "--server-uid", "no-such-user-ackrpc", sock),
                 rc=EXIT["usage"], err_has=["--server-uid wants"])
    finally:
        srv.close()

    # The default, against a server of another user in our own directory
    # (root only: listen() as nobody).
    if me != 0:
        print("cli_hostile: not root: the default check against another user is skipped")
        return
    nobody = __import__("pwd").getpwnam("nobody").pw_uid
    srv = Hostile(sock, {"ackrpc.reflection.Health/Check": pb_int(1, 1)}, as_uid=nobody)
    try:
        e.expect("health: an impostor of another user", e.run("health", sock),
                 rc=EXIT["noperm"], err_has=["E_SERVER_IDENTITY", f"uid {nobody}"])
        got = srv.wait_received(1)
        e.check(got == [0], "the impostor receives nothing", repr(got))
        e.expect("health --server-uid nobody", e.run("health", "--server-uid", "nobody", sock),
                 out_has=["SERVING"])
    finally:
        srv.close()


# --- Operations (issue 15): stats as OpenMetrics, p99.9, the tool's own
# lookups apart, list/describe --json, bash completion.

OM_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
OM_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
OM_NUMBER = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?\Z|"
                       r"[-+]?Inf\Z|NaN\Z")
OM_SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",), "unknown": ("",),
               "info": ("_info",), "stateset": ("",),
               "summary": ("", "_count", "_sum", "_created"),
               "histogram": ("_bucket", "_count", "_sum", "_created"),
               "gaugehistogram": ("_bucket", "_gcount", "_gsum")}


def om_unescape(s, what):
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            if i + 1 >= len(s) or s[i + 1] not in '\\"n':
                raise ValueError(f"bad escape in {what}: {s!r}")
            out.append({"\\": "\\", '"': '"', "n": "\n"}[s[i + 1]])
            i += 2
        elif c == "\n":
            raise ValueError(f"line feed in {what}")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def om_sample(line):
    """name{l="v",...} value [timestamp] -> (name, {label: value}, float)."""
    i = 0
    while i < len(line) and line[i] not in "{ ":
        i += 1
    name = line[:i]
    if not OM_NAME.match(name):
        raise ValueError(f"bad metric name {name!r}")
    labels = {}
    if i < len(line) and line[i] == "{":
        i += 1
        while line[i] != "}":
            j = line.index("=", i)
            ln = line[i:j]
            if not OM_LABEL.match(ln) or ln in labels:
                raise ValueError(f"bad or repeated label name {ln!r}")
            if line[j + 1] != '"':
                raise ValueError("label value not quoted")
            k = j + 2
            while line[k] != '"':
                k += 2 if line[k] == "\\" else 1
            labels[ln] = om_unescape(line[j + 2:k], "label value")
            i = k + 1
            if line[i] == ",":
                i += 1
                if line[i] == "}":
                    raise ValueError("trailing comma")
            elif line[i] != "}":
                raise ValueError(f"junk after a label value: {line[i:]!r}")
        i += 1
    if line[i:i + 1] != " ":
        raise ValueError("no space before the value")
    parts = line[i + 1:].split(" ")
    if len(parts) not in (1, 2) or not all(OM_NUMBER.match(p) for p in parts):
        raise ValueError(f"bad value {line[i + 1:]!r}")
    return name, labels, float(parts[0])


def parse_openmetrics(text):
    """A strict reader of the OpenMetrics text format (what this test needs
    of it): every family announced by TYPE and HELP before its samples, its
    samples together, sample names the type allows, label values escaped, no
    sample twice, counters not negative, "# EOF" last. Returns {family:
    {"type", "help", "unit", "samples": [(name, labels, value)]}}; raises
    ValueError."""
    if not text.endswith("# EOF\n"):
        raise ValueError("does not end with '# EOF\\n'")
    lines = text[:-len("\n")].split("\n")
    families, cur, seen = {}, None, set()
    for line in lines[:-1]:
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) != 4 or parts[0] != "#" or parts[1] not in ("TYPE", "HELP", "UNIT"):
                raise ValueError(f"bad metadata line {line!r}")
            _, kind, name, rest = parts
            if not OM_NAME.match(name):
                raise ValueError(f"bad family name {name!r}")
            if name != cur:
                if name in families:
                    raise ValueError(f"family {name} is split")
                families[name] = {"type": None, "help": None, "unit": None, "samples": []}
                cur = name
            f = families[name]
            if f["samples"] or f[kind.lower()] is not None:
                raise ValueError(f"{kind} of {name} repeated or after its samples")
            if kind == "TYPE" and rest not in OM_SUFFIXES:
                raise ValueError(f"unknown type {rest!r}")
            if kind == "UNIT" and not name.endswith("_" + rest):
                raise ValueError(f"family {name} does not end with its unit {rest}")
            f[kind.lower()] = om_unescape(rest, "HELP") if kind == "HELP" else rest
            continue
        if not line:
            raise ValueError("empty line")
        name, labels, value = om_sample(line)
        f = families.get(cur)
        if f is None or f["type"] is None or f["help"] is None:
            raise ValueError(f"sample {name} before its family's TYPE and HELP")
        if not any(name == cur + sfx for sfx in OM_SUFFIXES[f["type"]]):
            raise ValueError(f"sample {name} does not belong to family {cur} ({f['type']})")
        key = (name, tuple(sorted(labels.items())))
        if key in seen:
            raise ValueError(f"sample {key} twice")
        seen.add(key)
        if f["type"] == "counter" and (value < 0 or math.isnan(value)):
            raise ValueError(f"counter {name} = {value}")
        f["samples"].append((name, labels, value))
    if lines[-1] != "# EOF":
        raise ValueError("no '# EOF'")
    return families


def om_samples(fams, family, **labels):
    """The samples of `family` whose labels include `labels`."""
    return [s for s in fams.get(family, {}).get("samples", [])
            if all(s[1].get(k) == v for k, v in labels.items())]


def om_value(fams, family, **labels):
    got = om_samples(fams, family, **labels)
    return got[0][2] if len(got) == 1 else None


def stats_reply(methods, uptime_ms=1500, connections=2):
    """A StatsReply (proto/ackrpc/reflection.proto) by hand: methods are
    dicts of MethodStats fields (statuses: {code: count})."""
    out = pb_int(1, uptime_ms) + pb_int(2, connections)
    for m in methods:
        b = pb_ld(1, m["method"].encode())
        for num, key in ((2, "calls"), (3, "errors"), (5, "bytes_in"), (6, "bytes_out"),
                         (7, "p50_us"), (8, "p90_us"), (9, "p99_us"), (10, "max_us"),
                         (11, "p999_us"), (12, "builtin")):
            if m.get(key):
                b += pb_int(num, int(m[key]))
        for code, count in m.get("statuses", {}).items():
            b += pb_ld(4, pb_int(1, code) + pb_int(2, count))
        out += pb_ld(3, b)
    return out + pb_ld(4, pb_int(2, 3) + pb_int(12, 4096))


def g_ops_stats(e):
    """stats: --openmetrics read by a strict parser and compared with
    --json and with the calls made; p99.9; the server's built-in methods
    (the tool's own reflection lookups) apart from the application's."""
    e.start_server()
    fail = "ackrpc.clitest.Test/Fail"
    for code in (0, 0, 5, 3, 5):
        e.run("call", *e.desc_file("clitest.pb"), e.socket, fail, json.dumps({"code": code}))
    for _ in range(3):
        e.run("call", *e.desc_file("clitest.pb"), e.socket, ECHO, '{"fString": "xx"}')
    # Two calls by reflection: one FileContainingSymbol lookup each.
    for _ in range(2):
        e.expect("call by reflection", e.run("call", e.socket, ECHO, '{"fInt32": 1}'),
                 out_json={"fInt32": 1})
    code, out, err = e.run("stats", "--json", e.socket)
    doc = json.loads(out) if code == 0 else {}
    by = {m["method"]: m for m in doc.get("methods", [])}
    ec, fc = by.get(ECHO, {}), by.get(fail, {})
    lookups = by.get(REFLECT_FILES, {})
    # p99.9 in the reply and the JSON.
    e.check(ec.get("calls") == 5 and 0 < ec.get("p99Us", 0) <= ec.get("p999Us", 0) <=
            ec.get("maxUs", 0), "stats --json: p999Us", json.dumps(ec))
    # Built-in methods apart: marked, and totalled apart from the application.
    e.check(ec.get("builtin") is False and fc.get("builtin") is False and
            lookups.get("builtin") is True and lookups.get("calls") == 2 and
            by.get("ackrpc.reflection.Stats/Get", {}).get("builtin") is True,
            "stats --json: builtin flags", json.dumps(by)[:3000])
    e.check(doc.get("application") == {"calls": 10, "errors": 3} and
            doc.get("builtin", {}).get("calls") == sum(m["calls"] for m in by.values()
                                                      if m["builtin"]),
            "stats --json: application total leaves the tool's lookups out",
            json.dumps({k: doc.get(k) for k in ("application", "builtin")}))
    # The table: the P999_US column, the totals, the built-in methods last.
    code, out, err = e.run("stats", e.socket)
    text = out.decode()
    rows = text.splitlines()
    head = next((r for r in rows if r.startswith("METHOD")), "").split()
    line = next((r for r in rows if r.startswith(ECHO + " ")), "").split()
    col = head.index("P999_US") if "P999_US" in head else None
    e.check(code == 0 and col is not None and len(line) > col and
            int(line[col]) == ec.get("p999Us"), "stats table: P999_US column", text)
    e.check("application: 10 call(s), 3 error(s);" in text, "stats table: application total",
            text)
    heading = "built-in (reflection, health, stats):"
    idx = {r.split()[0]: n for n, r in enumerate(rows) if r and not r.startswith(" ")}
    e.check(heading in rows and idx.get(ECHO, 1e9) < rows.index(heading) if heading in rows
            else False, "stats table: the application's methods first", text)
    e.check(heading in rows and idx.get(REFLECT_FILES, -1) > rows.index(heading),
            "stats table: the built-in methods under their heading", text)

    # OpenMetrics: strict syntax, and the values of --json.
    code, out, err = e.run("stats", "--openmetrics", e.socket)
    try:
        fams = parse_openmetrics(out.decode())
    except (ValueError, IndexError, UnicodeDecodeError) as ex:
        e.check(False, f"stats --openmetrics does not parse: {ex}", out.decode()[:3000])
        fams = {}
    e.check(code == 0 and fams.get("ackrpc_calls", {}).get("type") == "counter",
            "stats --openmetrics: families", f"{code} {err}")
    for name, m in by.items():
        if m["builtin"]:
            continue  # Stats/Get itself moves between the two runs
        lab = {"method": name, "builtin": "false"}
        got = {s[1]["status"]: s[2] for s in om_samples(fams, "ackrpc_calls", **lab)}
        want = {k: float(v) for k, v in m["statuses"].items()} or {"OK": 0.0}
        e.check(got == want, f"openmetrics: ackrpc_calls_total of {name}", f"{got} {want}")
        for fam, key in (("ackrpc_call_errors", "errors"), ("ackrpc_request_bytes", "bytesIn"),
                         ("ackrpc_reply_bytes", "bytesOut")):
            e.check(om_value(fams, fam, **lab) == m[key], f"openmetrics: {fam} of {name}",
                    f"{om_value(fams, fam, **lab)} {m[key]}")
        for q, key in (("0.5", "p50Us"), ("0.9", "p90Us"), ("0.99", "p99Us"),
                       ("0.999", "p999Us")):
            v = om_value(fams, "ackrpc_call_latency_seconds", quantile=q, **lab)
            e.check(v is not None and round(v * 1e6) == m[key],
                    f"openmetrics: quantile {q} of {name}", f"{v} {m[key]}")
        v = om_value(fams, "ackrpc_call_latency_max_seconds", **lab)
        e.check(v is not None and round(v * 1e6) == m["maxUs"], f"openmetrics: max of {name}")
    e.check(om_value(fams, "ackrpc_calls", method=fail, status="NOT_FOUND") == 2 and
            om_value(fams, "ackrpc_calls", method=fail, status="INVALID_ARGUMENT") == 1 and
            om_value(fams, "ackrpc_calls", method=REFLECT_FILES, builtin="true") == 2,
            "openmetrics: the calls made", out.decode()[:3000])
    for k, v in doc.get("counters", {}).items():
        fam = fams.get("ackrpc_" + k, {})
        e.check(fam.get("type") in ("counter", "gauge") and len(fam.get("samples", [])) == 1,
                f"openmetrics: server counter {k}", json.dumps(fam))
        if k not in ("memory_bytes", "calls_in_progress") and fam.get("samples"):
            e.check(fam["samples"][0][2] == v, f"openmetrics: {k} = {v}")
    e.check(om_value(fams, "ackrpc_connections") is not None and
            (om_value(fams, "ackrpc_uptime_seconds") or 0) > 0, "openmetrics: uptime, conns")
    e.expect("stats --json --openmetrics", e.run("stats", "-j", "-m", e.socket),
             rc=EXIT["usage"], err_has=["not both"])
    e.stop_server()

    # A server's method names are untrusted: label values escaped. A p99.9
    # unlike p99 shows that the right field is printed.
    sock = os.path.join(e.tmp, "stats.sock")
    odd = 'x.Y/a"b\\c\nd'
    srv = Hostile(sock, {"ackrpc.reflection.Stats/Get": stats_reply([
        {"method": odd, "calls": 3, "errors": 1, "statuses": {0: 2, 5: 1}, "p50_us": 10,
         "p90_us": 20, "p99_us": 30, "p999_us": 777, "max_us": 900},
        {"method": "ackrpc.reflection.Health/Check", "calls": 4, "statuses": {0: 4},
         "builtin": 1}])})
    try:
        code, out, err = e.run("stats", "--openmetrics", sock)
        try:
            fams = parse_openmetrics(out.decode())
        except (ValueError, IndexError, UnicodeDecodeError) as ex:
            e.check(False, f"openmetrics of odd names does not parse: {ex}", out.decode())
            fams = {}
        e.check(code == 0 and om_value(fams, "ackrpc_calls", method=odd, status="NOT_FOUND")
                == 1, "openmetrics: an escaped label value reads back", out.decode())
        e.check(om_value(fams, "ackrpc_call_latency_seconds", method=odd,
                         quantile="0.999") == 0.000777, "openmetrics: p99.9", out.decode())
        e.check(om_value(fams, "ackrpc_calls", method="ackrpc.reflection.Health/Check",
                         builtin="true") == 4, "openmetrics: builtin label from the reply")
        code, out, err = e.run("stats", "--json", sock)
        doc = json.loads(out) if code == 0 else {}
        e.check([m.get("p999Us") for m in doc.get("methods", [])] == [777, 0] and
                doc.get("application") == {"calls": 3, "errors": 1} and
                doc.get("builtin") == {"calls": 4, "errors": 0}, "stats --json: p999Us, totals",
                out.decode())
    finally:
        srv.close()


def g_ops_cli(e):
    """list/describe --json, the --call-id help, message prefixes."""
    e.start_server()
    # list --json says what the text says, by reflection and from files.
    for how, opts in (("reflection", [e.socket]), ("-D", e.desc_file("clitest.pb"))):
        code, out, err = e.run("list", *opts)
        code2, out2, err2 = e.run("list", "--json", *opts)
        try:
            doc = json.loads(out2)
        except ValueError:
            doc = {}
        text = ""
        for s in doc.get("services", []):
            text += s["name"] + ("" if s["hasDescriptors"] else "  (no descriptors)") + "\n"
            for m in s["methods"]:
                text += f"  {m['name']}({m['requestType']}) returns ({m['replyType']})\n"
        e.check(code == 0 and code2 == 0 and text == out.decode() and
                set(doc) == {"services"}, f"list --json ({how}) == list",
                f"{out.decode()}\n---\n{out2.decode()}\n{err2}")
    code, out, err = e.run("list", "-j", e.socket)
    doc = json.loads(out) if code == 0 else {}
    e.check(doc.get("services", [{}])[0] == {
        "name": "ackrpc.clitest.Test", "hasDescriptors": True, "methods": [
            {"name": "ackrpc.clitest.Test/Echo", "requestType": "ackrpc.clitest.AllTypes",
             "replyType": "ackrpc.clitest.AllTypes"},
            {"name": "ackrpc.clitest.Test/Fail", "requestType": "ackrpc.clitest.FailRequest",
             "replyType": "google.protobuf.Empty"},
            {"name": "ackrpc.clitest.Test/Inspect", "requestType": "google.protobuf.Empty",
             "replyType": "ackrpc.clitest.CallInfo"},
            {"name": "ackrpc.clitest.Test/Crash", "requestType": "google.protobuf.Empty",
             "replyType": "google.protobuf.Empty"}]}, "list --json: shape", out.decode())
    e.expect("list -1 --json", e.run("list", "-1", "--json", e.socket), rc=EXIT["usage"])

    # describe --json.
    def dj(*argv):
        code, out, err = e.run("describe", "--json", *argv)
        try:
            return json.loads(out) if code == 0 else {"exit": code, "err": err}
        except ValueError:
            return {"not json": out.decode()}
    doc = dj(e.socket, "ackrpc.clitest.Color")
    e.check(doc == {"kind": "enum", "name": "ackrpc.clitest.Color", "file": "clitest.proto",
                    "values": [{"name": "COLOR_UNSPECIFIED", "number": 0},
                               {"name": "RED", "number": 1}, {"name": "GREEN", "number": 2},
                               {"name": "INFRARED", "number": -3}]},
            "describe --json an enum", json.dumps(doc))
    doc = dj(e.socket, "ackrpc.clitest.Test/Fail")
    e.check(doc.get("kind") == "method" and doc.get("name") == "ackrpc.clitest.Test/Fail" and
            doc.get("requestType") == "ackrpc.clitest.FailRequest" and
            doc.get("request", {}).get("fields", [{}])[0] == {
                "name": "code", "number": 1, "jsonName": "code", "label": "optional",
                "type": "int32", "presence": False} and
            doc.get("reply", {}).get("name") == "google.protobuf.Empty" and
            doc.get("reply", {}).get("fields") == [], "describe --json a method",
            json.dumps(doc))
    doc = dj(*e.desc_file("clitest.pb"), "ackrpc.clitest.AllTypes")
    f = {x["name"]: x for x in doc.get("fields", [])}
    e.check(doc.get("kind") == "message" and doc.get("syntax") == "proto3" and
            f.get("f_enum") == {"name": "f_enum", "number": 16, "jsonName": "fEnum",
                                "label": "optional", "type": "enum",
                                "typeName": "ackrpc.clitest.Color", "presence": False} and
            f.get("m_int64_inner", {}).get("key") == {"type": "int64"} and
            f.get("m_int64_inner", {}).get("value") == {
                "type": "message", "typeName": "ackrpc.clitest.Inner"} and
            f.get("o_string", {}).get("oneof") == "choice" and
            f.get("with_json_name", {}).get("jsonName") == "customName" and
            f.get("r_int32_unpacked", {}).get("label") == "repeated",
            "describe --json a message", json.dumps(doc)[:3000])
    doc = dj(*e.desc_file("clitest.pb"), "ackrpc.clitest2.Legacy")
    f = {x["name"]: x for x in doc.get("fields", [])}
    e.check(doc.get("syntax") == "proto2" and f.get("id", {}).get("label") == "required",
            "describe --json a proto2 message", json.dumps(doc)[:2000])
    doc = dj(e.socket, "ackrpc.clitest.Test")
    e.check(doc.get("kind") == "service" and len(doc.get("methods", [])) == 4 and
            doc["methods"][3] == {"name": "ackrpc.clitest.Test/Crash",
                                  "requestType": "google.protobuf.Empty",
                                  "replyType": "google.protobuf.Empty"},
            "describe --json a service", json.dumps(doc))
    doc = dj(e.socket)
    code, out, err = e.run("list", "-j", e.socket)
    want = sorted(s["name"] for s in json.loads(out)["services"]) if code == 0 else None
    e.check(sorted(s.get("name") for s in doc.get("services", [])) == want and
            all(s.get("kind") == "service" for s in doc.get("services", [])),
            "describe --json SOCKET: every service", json.dumps(doc)[:2000])
    e.expect("describe --json unknown", e.run("describe", "--json", e.socket, "x.Y"),
             rc=EXIT["dataerr"])
    # --call-id: what the server must do.
    code, out, err = e.run("call", "--help")
    help_text = " ".join(out.decode().split())
    e.check("reply cache" in help_text and "runs again" in help_text,
            "call --help: --call-id needs the reply cache", out.decode())
    # Every message of a subcommand starts "ackrpc COMMAND:".
    for cmd, tail in (("call", [e.socket, ECHO, "{}"]), ("list", []),
                      ("describe", ["x.Y"])):
        argv = [cmd] + ["-D", "x.pb"] * 33 + tail
        e.expect(f"{cmd}: too many -D", e.run(*argv), rc=EXIT["usage"],
                 err_has=[f"ackrpc {cmd}: too many -D options"])
    # Every command has a man page naming each of its options, and ackrpc(1)'s
    # SYNOPSIS names each command's options.
    man = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "man")
    with open(os.path.join(man, "ackrpc.1.scd")) as f:
        top = f.read()
    synopsis = top[top.index("# SYNOPSIS"):top.index("# DESCRIPTION")]
    for cmd in ("call", "list", "describe", "health", "stats", "capture", "replay"):
        code, out, err = e.run(cmd, "--help")
        help_text = out.decode()
        page = os.path.join(man, f"ackrpc-{cmd}.1.scd")
        text = open(page).read() if os.path.exists(page) else ""
        e.check(text.startswith(f"ackrpc-{cmd}(1)"), f"man page ackrpc-{cmd}(1)", page)
        for opt in sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", help_text))):
            e.check(opt in text or opt in top, f"ackrpc-{cmd}(1) or ackrpc(1) names {opt}")
        for opt in sorted(set(re.findall(r"^  (-[a-zA-Z0-9]),", help_text, re.M)) - {"-h"}):
            line = next((ln for ln in synopsis.splitlines()
                         if ln.startswith(f"*ackrpc {cmd}*")), "")
            e.check(f"*{opt}*" in line or (opt in ("-D", "-P", "-I") and "_DESCRIPTORS_" in line),
                    f"ackrpc(1) SYNOPSIS: {cmd} {opt}", line)
    e.check(os.path.exists(os.path.join(man, "protoc-gen-ackrpc.1.scd")),
            "man page protoc-gen-ackrpc(1)")
    e.stop_server()


COMPLETION = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools",
                          "ackrpc", "ackrpc.bash-completion")


def complete(e, line, cwd=None):
    """What bash offers for the command line `line` (completed at its end)
    with ackrpc.bash-completion sourced: the words bash would list."""
    words = line.split(" ")
    words[0] = e.args.ackrpc
    script = ('source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); '
              'COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; '
              'complete -p ackrpc >/dev/null || exit 3; _ackrpc; printf "%s\\n" "${COMPREPLY[@]}"')
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", script, "bash", COMPLETION,
                        *words], capture_output=True, timeout=30, cwd=cwd)
    return r.returncode, sorted(w for w in r.stdout.decode().split("\n") if w), r.stderr.decode()


def g_ops_completion(e):
    """The bash completion script: sourced in bash, completing commands,
    options, socket paths and method names."""
    def check(line, want, exact=True, cwd=None):
        code, got, err = complete(e, line, cwd)
        ok = code == 0 and (got == sorted(want) if exact else set(want) <= set(got))
        e.check(ok, f"complete {line!r}", f"exit {code}, got {got}, want {sorted(want)}\n{err}")
        return got
    check("ackrpc ", ["call", "list", "describe", "health", "stats", "capture", "replay",
                      "help", "--help", "--version"])
    check("ackrpc capture -", ["-D", "--descriptor-set", "-P", "--proto", "-I",
                               "--import-path", "-w", "--write", "-j", "--json", "-c",
                               "--count", "-h", "--help"])
    check("ackrpc st", ["stats"])
    check("ackrpc stats --o", ["--openmetrics"])
    check("ackrpc stats -", ["-j", "--json", "-m", "--openmetrics", "-a", "--active", "-t",
                             "--timeout-ms", "--timeout", "--server-uid", "-h", "--help"])
    check("ackrpc call --ca", ["--call-id"])
    check("ackrpc list --j", ["--json"])
    check("ackrpc describe --js", ["--json"])
    check("ackrpc health --q", ["--quiet"])
    check("ackrpc help de", ["describe"])
    # Socket paths: sockets and directories, not other files.
    d = os.path.join(e.tmp, "comp")
    os.makedirs(os.path.join(d, "run.d"))
    open(os.path.join(d, "run.txt"), "w").close()
    e.socket = os.path.join(d, "run.sock")
    e.start_server()
    check(f"ackrpc health {d}/ru", [f"{d}/run.sock", f"{d}/run.d/"])
    check("ackrpc stats -j ru", ["run.sock", "run.d/"], cwd=d)
    check(f"ackrpc call -t 500 {d}/run.s", [f"{d}/run.sock"])
    # After `call SOCKET`: the server's methods.
    check(f"ackrpc call {e.socket} ackrpc.clitest.Test/", [
        "ackrpc.clitest.Test/Echo", "ackrpc.clitest.Test/Fail", "ackrpc.clitest.Test/Inspect",
        "ackrpc.clitest.Test/Crash"])
    check(f"ackrpc call -c 00ff {e.socket} ackrpc.reflection.H",
          ["ackrpc.reflection.Health/Check"])
    # Option arguments are not completed as sockets or methods.
    check(f"ackrpc call -t {d}/ru", [])
    check(f"ackrpc call {e.socket} {ECHO} ", [])
    # --fd N=PATH: the next number, then files after the "=".
    check("ackrpc call --f", ["--fd"])
    check("ackrpc call --fd ", ["0="])
    check("ackrpc call --fd 0=a -f ", ["1="])
    check("ackrpc call --fd 0=run.t", ["0=run.txt"], cwd=d)
    # The PATH of --fd is not a socket.
    check(f"ackrpc call --fd 0=x {d}/run.s", [f"{d}/run.sock"])
    e.stop_server()


GROUPS = {name[2:]: fn for name, fn in globals().items() if name.startswith("g_")}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--group", required=True, choices=sorted(GROUPS))
    ap.add_argument("--ackrpc", required=True)
    ap.add_argument("--server", required=True)
    ap.add_argument("--descriptor-set", required=True)
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--proto-dir", required=True)
    ap.add_argument("--reflection", action="store_true")
    ap.add_argument("--bench", help="ackrpc-bench, for the group generic")
    args = ap.parse_args()
    e = Env(args)
    try:
        GROUPS[args.group](e)
    finally:
        e.close()
    mode = " (reflection)" if args.reflection else ""
    print(f"cli_{args.group}{mode}: {e.checks - e.failures}/{e.checks} checks passed")
    return 1 if e.failures or e.checks == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
