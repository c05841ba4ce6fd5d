#!/usr/bin/env python3
"""Turns tests/bench/run.sh's results.csv into one table (Markdown) with the
ratios and the issue-3 targets, PASS/FAIL per row.

results.csv columns: mtu,system,row,value,unit with system in raw, aoefs,
nbdfuse and row in seqread, seqwrite, lat1, iops32, bufread, rss, and the
machine's CPU time per unit of work in seqread_cpu, seqwrite_cpu (us per MB)
and iops32_cpu (us per IO).
"""
import argparse
import csv
import math
import sys

ROWS = [
    # key, label, unit, higher is better
    ("seqread", "seq read 1M O_DIRECT", "MB/s", True),
    ("seqwrite", "seq write 1M O_DIRECT", "MB/s", True),
    ("lat1", "rand read 4k QD1 mean latency", "us", False),
    ("iops32", "rand read 4k QD32", "IOPS", True),
    ("bufread", "buffered read dd bs=1M", "MB/s", True),
    ("rss", "peak RSS during 4 GiB dd", "MiB", False),
]


CPU_ROWS = [
    ("seqread_cpu", "seq read 1M", "CPU us per MB"),
    ("seqwrite_cpu", "seq write 1M", "CPU us per MB"),
    ("iops32_cpu", "rand read 4k QD32", "CPU us per IO"),
]


def num(v):
    try:
        f = float(v)
        return None if math.isnan(f) else f
    except (TypeError, ValueError):
        return None


def fmt(v, unit):
    if v is None:
        return "n/a"
    if unit in ("IOPS",):
        return "%.0f" % v
    if v >= 100:
        return "%.0f" % v
    return "%.1f" % v


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def rfmt(r):
    return "n/a" if r is None else "%.2f" % r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--cache-mb", type=float, default=64)
    ap.add_argument("--machine")
    ap.add_argument("--busy-poll-us", type=int, default=0)
    a = ap.parse_args()

    data = {}
    mtus = []
    with open(a.results) as f:
        for r in csv.DictReader(f):
            m = int(r["mtu"])
            if m not in mtus:
                mtus.append(m)
            data[(m, r["system"], r["row"])] = num(r["value"])

    out = []
    if a.machine:
        try:
            out += ["    " + l.rstrip() for l in open(a.machine)]
            out.append("")
        except OSError:
            pass
    out.append("| MTU | row | unit | raw | aoefs | nbdfuse | aoefs/raw | aoefs/nbdfuse | target | result |")
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    npass = nfail = 0
    for m in mtus:
        for key, label, unit, higher in ROWS:
            raw = data.get((m, "raw", key))
            ao = data.get((m, "aoefs", key))
            nb = data.get((m, "nbdfuse", key))
            r_raw = ratio(ao, raw)
            r_nb = ratio(ao, nb)
            checks = []
            if key == "seqread":
                tgt = ">=0.90 raw, > nbdfuse"
                checks = [r_raw is not None and r_raw >= 0.90, ao is not None and nb is not None and ao > nb]
            elif key == "seqwrite":
                tgt = ">=0.85 raw, > nbdfuse"
                checks = [r_raw is not None and r_raw >= 0.85, ao is not None and nb is not None and ao > nb]
            elif key == "lat1":
                tgt = "<=1.3 raw, < nbdfuse"
                checks = [r_raw is not None and r_raw <= 1.3, ao is not None and nb is not None and ao < nb]
            elif key == "iops32":
                tgt = ">=0.80 raw, > nbdfuse"
                checks = [r_raw is not None and r_raw >= 0.80, ao is not None and nb is not None and ao > nb]
            elif key == "bufread":
                direct = data.get((m, "aoefs", "seqread"))
                rd = ratio(ao, direct)
                tgt = ">=0.70 aoefs O_DIRECT (%s), > nbdfuse" % rfmt(rd)
                checks = [rd is not None and rd >= 0.70, ao is not None and nb is not None and ao > nb]
            elif key == "rss":
                lim = a.cache_mb + 64
                tgt = "< cache %g + 64 = %g MiB" % (a.cache_mb, lim)
                checks = [ao is not None and ao < lim]
            res = "PASS" if checks and all(checks) else "FAIL"
            if res == "PASS":
                npass += 1
            else:
                nfail += 1
            out.append(
                "| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |"
                % (m, label, unit, fmt(raw, unit) if raw is not None else "-", fmt(ao, unit), fmt(nb, unit),
                   rfmt(r_raw), rfmt(r_nb), tgt, res)
            )
    out.append("")
    out.append("%d rows PASS, %d rows FAIL" % (npass, nfail))
    # Where the time goes: busy CPU time of the whole machine (target
    # included) per unit of work, lowest of the rounds. On a machine where
    # initiator and target share the CPUs, this is what bounds throughput.
    cpu_rows = [(k, l, u) for k, l, u in CPU_ROWS if any(data.get((m, s, k)) is not None
                                                        for m in mtus for s in ("raw", "aoefs", "nbdfuse"))]
    if cpu_rows:
        out.append("")
        out.append("Machine CPU time (all CPUs, target included) per unit of work, lowest round:")
        out.append("")
        out.append("| MTU | row | unit | raw | aoefs | nbdfuse | aoefs/raw |")
        out.append("|---|---|---|---|---|---|---|")
        for m in mtus:
            for key, label, unit in cpu_rows:
                raw, ao, nb = (data.get((m, s, key)) for s in ("raw", "aoefs", "nbdfuse"))
                out.append("| %d | %s | %s | %s | %s | %s | %s |" % (
                    m, label, unit, fmt(raw, unit), fmt(ao, unit), fmt(nb, unit), rfmt(ratio(ao, raw))))
    # aoefs with --busy-poll-us (opt-in), if the run measured it.
    bp_rows = [(k, l, u, h) for k, l, u, h in ROWS[:4]] + [(k, l, u, False) for k, l, u in CPU_ROWS]
    if any(data.get((m, "aoefs-bp", k)) is not None for m in mtus for k, _, _, _ in bp_rows):
        out.append("")
        out.append("aoefs mounted with --busy-poll-us %d (off by default), same run:" % a.busy_poll_us)
        out.append("")
        out.append("| MTU | row | unit | raw | aoefs | aoefs --busy-poll-us | busy-poll/raw | busy-poll/aoefs |")
        out.append("|---|---|---|---|---|---|---|---|")
        for m in mtus:
            for key, label, unit, _ in bp_rows:
                raw, ao, bp = (data.get((m, s, key)) for s in ("raw", "aoefs", "aoefs-bp"))
                if bp is None:
                    continue
                out.append("| %d | %s | %s | %s | %s | %s | %s | %s |" % (
                    m, label, unit, fmt(raw, unit) if raw is not None else "-", fmt(ao, unit), fmt(bp, unit),
                    rfmt(ratio(bp, raw)), rfmt(ratio(bp, ao))))
    print("\n".join(out))


if __name__ == "__main__":
    sys.exit(main())
