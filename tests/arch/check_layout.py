#!/usr/bin/env python3
"""Checks that src/ keeps the shape docs/ARCHITECTURE.md describes.

  - no .c or .h file under src/ is over --max-file-lines (700) lines;
  - no function under src/ is over --max-function-lines (80) lines, counted
    from the first line of its signature to its closing brace;
  - the library's files call each other only downward: from the object
    files (nm), file A calls file B when A uses a symbol B defines; the
    graph of those calls has no cycle (no two files call each other,
    directly or around a loop), and every call goes to a layer that
    LAYERS allows (a lower layer never calls a higher one).

With --report it prints the measures (line counts per folder, the longest
functions) and checks nothing; --self-test checks the checker on a made-up
tree (a cycle, a call upward, a long function). Exit status 1 on any
failure, with every failure listed.
"""
import argparse
import collections
import pathlib
import re
import subprocess
import sys

# Which layers (folders of src/) each layer may call. `gen` is protoc-c's
# output in the build tree (wire.proto, reflection.proto).
LAYERS = {
    "core": {"core"},
    "mem": {"core", "mem"},
    "wire": {"core", "mem", "wire", "gen"},
    "platform": {"core", "platform"},
    "client": {"core", "mem", "wire", "platform", "client", "gen"},
    "server": {"core", "mem", "wire", "platform", "server", "gen"},
    "outbox": {"core", "wire", "client", "server", "outbox"},
    "gen": {"gen"},
}

FUNC_START = re.compile(r"^[A-Za-z_][^;=]*\(")


def functions(path):
    """(name, first line, length) of each function defined in a C file:
    clang-formatted code puts a definition's signature at column 0 and its
    closing brace alone at column 0."""
    lines = path.read_text(errors="replace").splitlines()
    out = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if FUNC_START.match(line) and not line.startswith(("typedef", "struct ", "enum ")):
            # The signature may span lines; its body opens with "{" at the end.
            j = i
            while j < len(lines) and not lines[j].rstrip().endswith(("{", ";", "}")):
                j += 1
            if j < len(lines) and lines[j].rstrip().endswith("{") and "=" not in lines[j]:
                k = j + 1
                while k < len(lines) and lines[k] != "}":
                    k += 1
                name = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(", " ".join(lines[i:j + 1]))
                out.append((name[0] if name else "?", i + 1, k - i + 1))
                i = k + 1
                continue
        i += 1
    return out


def layer_of(src_root, source):
    try:
        rel = pathlib.Path(source).resolve().relative_to(src_root)
    except ValueError:
        return "gen"
    return rel.parts[0] if len(rel.parts) > 1 else "src"


def object_graph(nm, objects, src_root):
    """Edges source -> source from the objects' defined and used symbols."""
    defined, used = {}, collections.defaultdict(set)
    names = {}
    for obj in objects:
        # CMake names an object after its source: .../src/dir/file.c.o
        m = re.search(r"/ackrpc_[a-z_]*objects\.dir/(.*)\.o$", obj)
        source = m.group(1) if m else obj
        if source.startswith("__/"):  # generated files outside src/
            source = "gen/" + pathlib.Path(source).name
        names[obj] = source
        out = subprocess.run([nm, "--defined-only", obj], check=True,
                             capture_output=True, text=True).stdout
        for line in out.splitlines():
            f = line.split()
            if len(f) == 3 and f[1] in "TDRBC":
                defined.setdefault(f[2], source)
        out = subprocess.run([nm, "--undefined-only", obj], check=True,
                             capture_output=True, text=True).stdout
        for line in out.splitlines():
            f = line.split()
            if f:
                used[source].add(f[-1])
    edges = collections.defaultdict(set)
    for src, syms in used.items():
        for sym in syms:
            dst = defined.get(sym)
            if dst and dst != src:
                edges[src].add(dst)
    return edges


def cycles(edges):
    """Strongly connected components with more than one file (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(set(edges) | {w for ws in edges.values() for w in ws}):
        if v not in index:
            visit(v)
    return out


def self_test():
    """The checks must catch what they are for."""
    import tempfile
    bad = 0
    if cycles({"a.c": {"b.c"}, "b.c": {"c.c"}, "c.c": {"a.c"}}) != [["a.c", "b.c", "c.c"]]:
        print("self-test: a cycle of three files was not found")
        bad += 1
    if cycles({"a.c": {"b.c"}, "b.c": {"c.c"}}):
        print("self-test: a chain was taken for a cycle")
        bad += 1
    with tempfile.TemporaryDirectory() as d:
        f = pathlib.Path(d) / "x.c"
        f.write_text("static int long_one(int a,\n                    int b) {\n" +
                     "  a++;\n" * 90 + "}\n\nint short_one(void) {\n  return 0;\n}\n")
        got = {name: length for name, _, length in functions(f)}
        if got != {"long_one": 93, "short_one": 3}:
            print(f"self-test: function lengths {got}")
            bad += 1
    if "client" in LAYERS["server"] or "server" in LAYERS["client"]:
        print("self-test: the client and the server may not call each other")
        bad += 1
    print("check_layout: self-test", "FAILED" if bad else "OK")
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", required=True, help="the src/ folder")
    ap.add_argument("--objects", default="", help="object files, ';'-separated")
    ap.add_argument("--nm", default="nm")
    ap.add_argument("--max-file-lines", type=int, default=700)
    ap.add_argument("--max-function-lines", type=int, default=80)
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--self-test", action="store_true")
    args = ap.parse_args()
    if args.self_test:
        return self_test()
    src = pathlib.Path(args.src).resolve()
    files = sorted(p for p in src.rglob("*") if p.suffix in (".c", ".h"))
    failures = []

    per_folder = collections.Counter()
    funcs = []
    for f in files:
        n = len(f.read_text(errors="replace").splitlines())
        per_folder[f.relative_to(src).parts[0]] += n
        if n > args.max_file_lines:
            failures.append(f"{f.relative_to(src)}: {n} lines (max {args.max_file_lines})")
        for name, line, length in functions(f):
            funcs.append((length, f"{f.relative_to(src)}:{line}", name))
            if length > args.max_function_lines:
                failures.append(f"{f.relative_to(src)}:{line}: {name}() is {length} lines "
                                f"(max {args.max_function_lines})")

    if args.report:
        print("lines per folder:")
        for folder, n in sorted(per_folder.items()):
            print(f"  {folder:10} {n:6}")
        print(f"  {'total':10} {sum(per_folder.values()):6}")
        print("longest functions:")
        for length, where, name in sorted(funcs, reverse=True)[:10]:
            print(f"  {length:4}  {name}  ({where})")
        return 0

    objects = [o for o in args.objects.split(";") if o]
    if objects:
        edges = object_graph(args.nm, objects, src)
        for comp in cycles(edges):
            failures.append("files that call each other (a cycle): " + " -> ".join(comp))
        for a, bs in sorted(edges.items()):
            la = a.split("/")[0]
            for b in sorted(bs):
                lb = b.split("/")[0]
                if la in LAYERS and lb not in LAYERS[la]:
                    failures.append(f"{a} calls {b}: layer '{la}' may not call '{lb}'")
        print(f"check_layout: {len(objects)} objects, "
              f"{sum(len(v) for v in edges.values())} calls between files")

    for f in failures:
        print("FAIL:", f)
    if failures:
        return 1
    print(f"check_layout: OK: {len(files)} files, {len(funcs)} functions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
