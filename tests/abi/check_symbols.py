#!/usr/bin/env python3
"""Checks libackrpc's exported symbols against the public headers.

Three lists must agree:
  - the ACKRPC_EXPORT functions declared in include/ackrpc/*.h,
  - tests/abi/symbols.txt (committed, sorted, one name a line),
  - the dynamic symbols the shared library defines (nm -D --defined-only).
So a header change without an updated list fails, and so does a symbol that
leaks out of the library (an internal akr_ function, protoc-c's
ackrpc__wire__* code, a missing `static`) or a declared one that is missing.
The SONAME is checked too when --soname is given.

--update rewrites symbols.txt from the headers (and checks nothing else).
--only / --skip choose the headers of one library (libackrpc-outbox has
outbox.h, libackrpc the others); --no-needed REGEX fails if the library has a
NEEDED entry matching it (libackrpc must not need SQLite).
"""
import argparse
import difflib
import pathlib
import re
import subprocess
import sys

# Symbols the toolchain itself puts in a shared library's dynamic table.
TOOLCHAIN_SYMBOLS = {"_init", "_fini", "__bss_start", "_edata", "_end"}
TOOLCHAIN_PREFIXES = ("__odr_asan_gen_", "__asan_", "__ubsan_", "__sancov_",
                      "__gcov_", "__llvm_")

COMMENT_RE = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
DECL_NAME_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(")
DATA_NAME_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(\[[^\]]*\]\s*)*$")


def header_exports(include_dir, only=(), skip=()):
    """Names of the functions declared with ACKRPC_EXPORT in the headers."""
    names = {}
    headers = sorted(h for h in pathlib.Path(include_dir).glob("*.h")
                     if (not only or h.name in only) and h.name not in skip)
    if not headers:
        sys.exit(f"check_symbols: no headers in {include_dir}")
    for header in headers:
        text = COMMENT_RE.sub(" ", header.read_text())
        text = text.replace("\\\n", " ")  # join continued lines
        # Drop preprocessor lines (the macro's own #define among them).
        text = "\n".join(l for l in text.splitlines()
                         if not l.lstrip().startswith("#"))
        for stmt in re.split(r"[;{}]", text):
            if "ACKRPC_EXPORT" not in stmt:
                continue
            decl = stmt.split("ACKRPC_EXPORT", 1)[1]
            m = DECL_NAME_RE.search(decl)
            if not m:  # a data declaration: its last identifier
                m = DATA_NAME_RE.search(decl)
            if not m:
                sys.exit(f"check_symbols: {header.name}: cannot find the "
                         f"function name in: {' '.join(decl.split())}")
            names.setdefault(m.group(1), header.name)
    return names


def library_exports(nm, library):
    out = subprocess.run([nm, "-D", "--defined-only", library], check=True,
                         capture_output=True, text=True).stdout
    names = set()
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 2:
            continue
        name = fields[-1].split("@", 1)[0]
        if name in TOOLCHAIN_SYMBOLS or name.startswith(TOOLCHAIN_PREFIXES):
            continue
        names.add(name)
    return names


def soname_of(readelf, library):
    out = subprocess.run([readelf, "-d", library], check=True,
                         capture_output=True, text=True).stdout
    m = re.search(r"\(SONAME\)\s+Library soname: \[([^\]]+)\]", out)
    return m.group(1) if m else None


def needed_of(readelf, library):
    out = subprocess.run([readelf, "-d", library], check=True,
                         capture_output=True, text=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def diff(a_name, a, b_name, b):
    return "".join(difflib.unified_diff(
        [s + "\n" for s in sorted(a)], [s + "\n" for s in sorted(b)],
        fromfile=a_name, tofile=b_name, n=0))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--headers", required=True, help="include/ackrpc")
    ap.add_argument("--expected", required=True, help="symbols.txt")
    ap.add_argument("--library", help="libackrpc.so to inspect")
    ap.add_argument("--soname", help="expected SONAME, e.g. libackrpc.so.0")
    ap.add_argument("--nm", default="nm")
    ap.add_argument("--readelf", default="readelf")
    ap.add_argument("--only", action="append", default=[],
                    help="read only this header (repeatable)")
    ap.add_argument("--skip", action="append", default=[],
                    help="leave this header out (repeatable)")
    ap.add_argument("--no-needed", help="regex no NEEDED entry may match")
    ap.add_argument("--update", action="store_true",
                    help="rewrite --expected from the headers")
    args = ap.parse_args()

    declared = header_exports(args.headers, args.only, args.skip)
    expected_path = pathlib.Path(args.expected)
    if args.update:
        expected_path.write_text("".join(n + "\n" for n in sorted(declared)))
        print(f"check_symbols: wrote {len(declared)} names to {expected_path}")
        return 0
    if not args.library:
        ap.error("--library is required unless --update")

    committed_lines = [l.strip() for l in expected_path.read_text().splitlines()]
    committed = {l for l in committed_lines if l and not l.startswith("#")}
    exported = library_exports(args.nm, args.library)
    failures = 0

    if committed != set(declared):
        failures += 1
        print(f"FAIL: the ACKRPC_EXPORT declarations in {args.headers} and "
              f"{expected_path} differ. If the API change is intended, run\n"
              f"  python3 {sys.argv[0]} --update --headers {args.headers} "
              f"--expected {args.expected}"
              + "".join(f" --only {h}" for h in args.only)
              + "".join(f" --skip {h}" for h in args.skip) + "\n"
              f"and commit the list.\n"
              + diff("symbols.txt", committed, "headers", set(declared)))
    if [l for l in committed_lines if l] != sorted(committed):
        failures += 1
        print(f"FAIL: {expected_path} is not sorted, or has duplicates "
              "(run --update)")

    if exported != committed:
        failures += 1
        leaked = exported - committed
        missing = committed - exported
        print(f"FAIL: {args.library} exports a different set of symbols "
              "than symbols.txt lists.")
        if leaked:
            print("  exported but not declared (an internal symbol leaked: "
                  "make it static or drop ACKRPC_EXPORT / default visibility):")
            for n in sorted(leaked):
                print(f"    + {n}")
        if missing:
            print("  declared but not exported (not defined, or defined "
                  "without ACKRPC_EXPORT):")
            for n in sorted(missing):
                print(f"    - {n}")

    if args.soname:
        soname = soname_of(args.readelf, args.library)
        if soname != args.soname:
            failures += 1
            print(f"FAIL: SONAME is {soname!r}, expected {args.soname!r}")

    if args.no_needed:
        bad = [n for n in needed_of(args.readelf, args.library)
               if re.search(args.no_needed, n)]
        if bad:
            failures += 1
            print(f"FAIL: {args.library} needs {', '.join(bad)} "
                  f"(matches {args.no_needed!r})")

    if failures:
        return 1
    print(f"check_symbols: OK: {len(exported)} symbols exported, all declared "
          f"with ACKRPC_EXPORT and listed in symbols.txt"
          + (f"; SONAME {args.soname}" if args.soname else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
