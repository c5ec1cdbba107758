#!/usr/bin/env python3
"""Checks the performance targets of docs/PERFORMANCE.md against outputs of
../shared/peers/run.sh (with the ackrpc peers added by --extra: ackrpc,
ackrpc_session, ackrpc_pipeline) and prints Markdown tables.

usage: tools/bench/targets.py RUN.txt... [--ref REF.txt...] [--big BIG.txt...]

  RUN.txt  run.sh outputs of the default matrix (S = 64, 4096; C = 1, 32)
  --ref    outputs holding peers this machine's run did not have, such as
           protobuf_c_rpc from ../shared/peers/results/default-run*.txt
           (another day's run: ratios against it are indicative only)
  --big    run.sh outputs with large bodies (raw_halfclose_big and ackrpc)

Each value shown is the median over the files given (with two runs, their
mean). Each ratio is paired: computed within every file that has both peers
for the cell (so both sides ran minutes apart at most, under the same load),
then the median of those ratios is taken; "n" is how many files paired. On a
shared machine whose load comes and goes, that is far steadier than a ratio
of medians. A measuring aid: nothing here is a test.
"""
import re
import statistics
import sys
from collections import defaultdict

LINE = re.compile(r"^peer=(\S+) size=(\d+) conc=(\d+) calls_per_s=(\d+) "
                  r"p50_us=([\d.]+) p99_us=([\d.]+) errors=(-?\d+)")
RES = re.compile(r"^# res peer=(\S+) size=(\d+) conc=(\d+) .*srv_cpu_us_per_call=([\d.]+) "
                 r"cli_cpu_us_per_call=([\d.]+) srv_peak_rss_kb=(\d+)")


def load(paths):
    cells = defaultdict(lambda: defaultdict(list))
    for path in paths:
        load_into(cells, [path])
    return cells


def load_each(paths):
    return [load([p]) for p in paths]


def load_into(cells, paths):
    for path in paths:
        with open(path) as f:
            for line in f:
                m = LINE.match(line)
                if m and int(m.group(7)) == 0:
                    key = (m.group(1), int(m.group(2)), int(m.group(3)))
                    cells[key]["calls"].append(float(m.group(4)))
                    cells[key]["p50"].append(float(m.group(5)))
                    cells[key]["p99"].append(float(m.group(6)))
                    continue
                m = RES.match(line)
                if m:
                    key = (m.group(1), int(m.group(2)), int(m.group(3)))
                    cells[key]["srv_cpu"].append(float(m.group(4)))
                    cells[key]["cli_cpu"].append(float(m.group(5)))
                    cells[key]["rss"].append(float(m.group(6)))


def med(cells, peer, size, conc, what):
    v = cells.get((peer, size, conc), {}).get(what)
    return statistics.median(v) if v else None


def ratio(a, b):
    return a / b if a is not None and b else None


def paired(each, pa, pb, size, conc, what, ref=None):
    """Median over files of the ratio pa/pb within the file; pb may come
    from `ref` (another run set: then the ratio is of medians)."""
    rs = []
    for c in each:
        a = med(c, pa, size, conc, what)
        b = med(c, pb, size, conc, what)
        if a is not None and b:
            rs.append(a / b)
    if rs:
        return statistics.median(rs), len(rs)
    if ref is not None:
        a = statistics.median([v for c in each for v in c.get((pa, size, conc), {}).get(what, [])] or [0])
        b = med(ref, pb, size, conc, what)
        if a and b:
            return a / b, 0
    return None, 0


def fmt(x, digits=2):
    return "n/a" if x is None else f"{x:.{digits}f}"


def verdict(r, lo=None, hi=None):
    if r is None:
        return "not measured"
    if lo is None and hi is None:
        return "-"
    ok = (lo is None or r >= lo) and (hi is None or r <= hi)
    return "met" if ok else "**not met**"


def main(argv):
    runs, refs, bigs, dest = [], [], [], None
    for a in argv:
        if a in ("--ref", "--big"):
            dest = refs if a == "--ref" else bigs
        elif a in ("-h", "--help"):
            print(__doc__)
            return 0
        else:
            (dest if dest is not None else runs).append(a)
    if not runs:
        print(__doc__, file=sys.stderr)
        return 2
    c = load(runs)
    each = load_each(runs)
    ref = load(refs)
    print(f"Values: medians over the {len(runs)} file(s) given; ratios: paired "
          "medians (n = files with both peers).\n")
    print("| target | S | C | ackrpc | reference | ratio (n) | goal | verdict |")
    print("|---|---:|---:|---:|---:|---:|---|---|")
    specs = [
        ("one-shot calls/s vs raw_halfclose", "ackrpc", "raw_halfclose", "calls", ">= 0.85", 0.85, None),
        ("one-shot p99 vs raw_halfclose", "ackrpc", "raw_halfclose", "p99", "<= 1.3", None, 1.3),
        ("one-shot calls/s vs grpc_uds", "ackrpc", "grpc_uds", "calls", ">= 3", 3.0, None),
        ("one-shot server CPU µs/call vs raw_halfclose", "ackrpc", "raw_halfclose", "srv_cpu", "<= 1.2", None, 1.2),
        ("session calls/s vs raw_persistent", "ackrpc_session", "raw_persistent", "calls", ">= 0.85", 0.85, None),
        ("session calls/s vs protobuf_c_rpc (RESULTS.md's run)", "ackrpc_session", "protobuf_c_rpc", "calls", ">= 1.15", 1.15, None),
        ("pipeline (16) calls/s vs raw_persistent", "ackrpc_pipeline", "raw_persistent", "calls", ">= 2", 2.0, None),
        # For context, no target: the ceiling of one-shot calls against gRPC,
        # and the modes that, like gRPC, keep their connection.
        ("(context) raw_halfclose calls/s vs grpc_uds", "raw_halfclose", "grpc_uds", "calls", "-", None, None),
        ("(context) session calls/s vs grpc_uds", "ackrpc_session", "grpc_uds", "calls", "-", None, None),
        ("(context) pipeline calls/s vs grpc_uds", "ackrpc_pipeline", "grpc_uds", "calls", "-", None, None),
        ("(context) session server CPU µs/call vs raw_persistent", "ackrpc_session", "raw_persistent", "srv_cpu", "-", None, None),
        ("(context) pipeline server CPU µs/call vs raw_persistent", "ackrpc_pipeline", "raw_persistent", "srv_cpu", "-", None, None),
    ]
    for name, pa, pb, what, goal, lo, hi in specs:
        for s in (64, 4096):
            for n in (1, 32):
                a = med(c, pa, s, n, what)
                r = med(c, pb, s, n, what) or med(ref, pb, s, n, what)
                q, k = paired(each, pa, pb, s, n, what, ref)
                print(f"| {name} | {s} | {n} | {fmt(a, 1)} | {fmt(r, 1)} | {fmt(q)} ({k}) | {goal} | {verdict(q, lo, hi)} |")
    if bigs:
        b = load(bigs)
        beach = load_each(bigs)
        print(f"\nLarge bodies, C = 1, over {len(bigs)} run(s): MiB/s = calls/s x S.\n")
        print("| S | ackrpc MiB/s | raw_halfclose_big MiB/s | ratio (n) | ackrpc session MiB/s | goal | verdict |")
        print("|---:|---:|---:|---:|---:|---|---|")
        for s in sorted({k[1] for k in b}):
            a = med(b, "ackrpc", s, 1, "calls")
            r = med(b, "raw_halfclose_big", s, 1, "calls")
            ss = med(b, "ackrpc_session", s, 1, "calls")
            mib = lambda x: None if x is None else x * s / 1048576
            q, k = paired(beach, "ackrpc", "raw_halfclose_big", s, 1, "calls")
            print(f"| {s} | {fmt(mib(a), 1)} | {fmt(mib(r), 1)} | {fmt(q)} ({k}) | {fmt(mib(ss), 1)} | >= 0.8 | {verdict(q, 0.8)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
