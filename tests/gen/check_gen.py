#!/usr/bin/env python3
"""check_gen.py: the file-level tests of protoc-gen-ackrpc, run by ctest.

  check_gen.py golden --protoc P --plugin G --proto-dir D
      Regenerates every tests/gen/fixtures/**/*.proto (with the "fuzz"
      parameter), and two of them with "tables" (expected/tables/), into a
      scratch directory and diffs it with tests/gen/expected.
      With --update (or ACKRPC_UPDATE_GOLDEN=1 in the environment) it rewrites
      tests/gen/expected instead: review the diff, then commit it.
  check_gen.py bad --protoc P --plugin G --proto-dir D
      Runs each tests/gen/bad/*.proto through the plugin: protoc must fail,
      and its stderr must contain every "// expect: TEXT" line of the file.
      "// param: X" gives the plugin parameter.
  check_gen.py robust --plugin G --protoc P --proto-dir D
      Feeds the plugin random bytes and mutated real requests: it must answer
      (exit 0 with a response, or 1 with a message), never crash or hang.
"""
import argparse
import difflib
import os
import pathlib
import random
import shutil
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
EXPECTED = HERE / "expected"
BAD = HERE / "bad"


def protoc_cmd(args, include_dirs, out_arg, files):
    cmd = [args.protoc, f"--plugin=protoc-gen-ackrpc={args.plugin}"]
    cmd += [f"-I{d}" for d in include_dirs]
    cmd += [out_arg] + [str(f) for f in files]
    return cmd


def golden(args):
    protos = sorted(FIXTURES.rglob("*.proto"))
    update = args.update or os.environ.get("ACKRPC_UPDATE_GOLDEN") == "1"
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "out"
        out.mkdir()
        cmd = protoc_cmd(args, [FIXTURES, args.proto_dir], f"--ackrpc_out=fuzz:{out}", protos)
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            print(f"golden: protoc failed:\n{r.stderr}", file=sys.stderr)
            return 1
        # Deterministic: a second run gives the same bytes.
        out2 = pathlib.Path(tmp) / "out2"
        out2.mkdir()
        cmd2 = protoc_cmd(args, [FIXTURES, args.proto_dir], f"--ackrpc_out=fuzz:{out2}", protos)
        subprocess.run(cmd2, check=True)
        got = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
        again = {p.relative_to(out2): p.read_bytes() for p in sorted(out2.rglob("*")) if p.is_file()}
        if got != again:
            print("golden: two runs gave different output", file=sys.stderr)
            return 1
        # The "tables" parameter (tables only, no functions: what libackrpc's
        # built-in services use), on a plain and a policy fixture.
        tables = pathlib.Path(tmp) / "tables"
        tables.mkdir()
        subprocess.run(protoc_cmd(args, [FIXTURES, args.proto_dir], f"--ackrpc_out=tables:{tables}",
                                  [FIXTURES / "demo/store.proto", FIXTURES / "policy/guarded.proto"]),
                       check=True)
        got.update({pathlib.Path("tables") / p.relative_to(tables): p.read_bytes()
                    for p in sorted(tables.rglob("*")) if p.is_file()})
        if update:
            if EXPECTED.exists():
                shutil.rmtree(EXPECTED)
            for rel, data in got.items():
                (EXPECTED / rel).parent.mkdir(parents=True, exist_ok=True)
                (EXPECTED / rel).write_bytes(data)
            print(f"golden: rewrote {len(got)} files in {EXPECTED}")
            return 0
        want = {p.relative_to(EXPECTED): p.read_bytes()
                for p in sorted(EXPECTED.rglob("*")) if p.is_file()}
        failed = 0
        for rel in sorted(set(got) | set(want)):
            if rel not in want:
                print(f"golden: {rel}: generated but not in expected/")
                failed += 1
            elif rel not in got:
                print(f"golden: {rel}: in expected/ but not generated")
                failed += 1
            elif got[rel] != want[rel]:
                failed += 1
                diff = difflib.unified_diff(
                    want[rel].decode(errors="replace").splitlines(True),
                    got[rel].decode(errors="replace").splitlines(True),
                    f"expected/{rel}", f"generated/{rel}")
                sys.stdout.writelines(diff)
        if failed:
            print(f"golden: {failed} file(s) differ. If the change is intended, refresh with\n"
                  f"  ACKRPC_UPDATE_GOLDEN=1 ctest -R gen_golden   (then review and commit)")
            return 1
        print(f"golden: {len(got)} files match")
        return 0


def bad(args):
    failed = 0
    files = sorted(BAD.glob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        for f in files:
            text = f.read_text()
            expects = [l.split("// expect:", 1)[1].strip()
                       for l in text.splitlines() if l.startswith("// expect:")]
            params = [l.split("// param:", 1)[1].strip()
                      for l in text.splitlines() if l.startswith("// param:")]
            param = (params[0] + ":") if params else ""
            if not expects:
                print(f"bad: {f.name}: no '// expect:' line")
                failed += 1
                continue
            cmd = protoc_cmd(args, [BAD, args.proto_dir], f"--ackrpc_out={param}{tmp}", [f])
            r = subprocess.run(cmd, capture_output=True, text=True)
            missing = [e for e in expects if e not in r.stderr]
            if r.returncode == 0 or missing:
                failed += 1
                print(f"bad: {f.name}: FAIL (exit {r.returncode})")
                for e in missing:
                    print(f"  missing: {e}")
                print("  stderr:\n    " + r.stderr.replace("\n", "\n    "))
            else:
                print(f"bad: {f.name}: ok")
    return 1 if failed else 0


def run_plugin(plugin, data):
    try:
        r = subprocess.run([plugin], input=data, capture_output=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "hang"
    if r.returncode < 0 or r.returncode > 1:
        return f"exit {r.returncode}: {r.stderr[:200]!r}"
    return None


def robust(args):
    # A real request: a wrapper plugin that saves its stdin.
    rng = random.Random(1234)
    with tempfile.TemporaryDirectory() as tmp:
        saved = pathlib.Path(tmp) / "request.bin"
        wrapper = pathlib.Path(tmp) / "save-request"
        wrapper.write_text(f"#!/bin/sh\ncat > '{saved}'\nexec '{args.plugin}' < '{saved}'\n")
        wrapper.chmod(0o755)
        protos = sorted(FIXTURES.rglob("*.proto"))
        cmd = [args.protoc, f"--plugin=protoc-gen-ackrpc={wrapper}", f"-I{FIXTURES}",
               f"-I{args.proto_dir}", f"--ackrpc_out={tmp}"] + [str(p) for p in protos]
        subprocess.run(cmd, check=True)
        request = saved.read_bytes()
    inputs = [b"", b"\x00", b"\xff" * 64, bytes(range(256))]
    inputs += [rng.randbytes(rng.randint(1, 4096)) for _ in range(100)]
    for _ in range(300):
        data = bytearray(request)
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(data))
            data[i] = rng.randrange(256)
        if rng.random() < 0.2:
            data = data[:rng.randrange(len(data))]
        inputs.append(bytes(data))
    failed = 0
    for i, data in enumerate(inputs):
        why = run_plugin(args.plugin, data)
        if why:
            failed += 1
            path = pathlib.Path(tempfile.gettempdir()) / f"protoc-gen-ackrpc-crash-{i}.bin"
            path.write_bytes(data)
            print(f"robust: input {i} ({len(data)} bytes, saved to {path}): {why}")
    print(f"robust: {len(inputs)} inputs, {failed} failures")
    return 1 if failed else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["golden", "bad", "robust"])
    ap.add_argument("--protoc", required=True)
    ap.add_argument("--plugin", required=True)
    ap.add_argument("--proto-dir", required=True, help="the directory holding ackrpc/options.proto")
    ap.add_argument("--update", action="store_true", help="golden: rewrite expected/")
    args = ap.parse_args()
    return {"golden": golden, "bad": bad, "robust": robust}[args.mode](args)


if __name__ == "__main__":
    sys.exit(main())
