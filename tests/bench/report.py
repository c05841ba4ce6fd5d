#!/usr/bin/env python3
"""Turns tests/bench/run.sh's results.csv into one table (Markdown) with the
ratios and the targets, PASS/FAIL per row, decided on the median of the
rounds (the range of the rounds is printed beside it).

results.csv columns: mtu,system,row,value,unit, one line per round, with
system in raw, aoefs, aoefs-bp, aoefs-base, nbdfuse, floor (aoefs
--bench-sim-target: aoefs and FUSE with a simulated target in its process,
no network), null (aoe-nullfuse: FUSE alone) and row in seqread, seqwrite,
lat1, iops32, bufread, rss, and the machine's CPU time per unit of work in
seqread_cpu, seqwrite_cpu (us per MB) and iops32_cpu (us per IO).

Targets (issue 23). The small-I/O rows are judged against the composed
limit: what the raw client needs plus what the floor (FUSE and aoefs's core
alone) needs, measured in the same run: latency floor + raw, IOPS
1 / (1/raw + 1/floor), CPU per IO floor + raw.
- 4 KiB QD1 mean latency <= 1.10 composed
- 4 KiB QD32 IOPS >= 0.85 composed, and ahead of nbdfuse
- 4 KiB QD32 CPU per IO <= 1.15 composed
- seq read 1M >= 0.90 raw, seq write 1M >= 0.85 raw (both MTUs)
- CPU per MB (seq read, seq write) <= 1.15 raw
- buffered read >= 0.90 of aoefs's O_DIRECT read; peak RSS <= cache + 64 MiB
- against nbdfuse: ahead on every row on which the raw client is ahead of
  nbdfuse in the same run; on the other rows (TCP with segmentation offload
  beats even the raw AoE client) nbdfuse is reported, not a target
Without floor rows (an older run), the small-I/O rows have no target.
"""
import argparse
import csv
import math
import statistics
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
    # key, label, unit, most aoefs/raw (None: judged against the composed limit)
    ("seqread_cpu", "seq read 1M", "CPU us per MB", 1.15),
    ("seqwrite_cpu", "seq write 1M", "CPU us per MB", 1.15),
    ("iops32_cpu", "rand read 4k QD32", "CPU us per IO", None),
]


def composed(key, raw, floor):
    """The composed limit of a small-I/O row: raw plus the floor."""
    if raw is None or floor is None:
        return None
    if key == "iops32":
        return 1.0 / (1.0 / raw + 1.0 / floor) if raw > 0 and floor > 0 else None
    return raw + floor


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


# The ratios the targets name: a ratio that rounds to one of them at two
# decimals is printed with three, so that 0.849 FAIL does not read "0.85".
THRESHOLDS = (0.6, 0.85, 0.9, 1.0, 1.1, 1.15, 1.3, 2.0)


def rfmt(r):
    if r is None:
        return "n/a"
    if any(abs(r - t) < 0.005 for t in THRESHOLDS):
        return "%.3f" % r
    return "%.2f" % r


class Rounds:
    """The rounds of one (mtu, system, row)."""

    def __init__(self, values):
        self.values = [v for v in values if v is not None]

    def median(self):
        return statistics.median(self.values) if self.values else None

    def cell(self, unit):
        """median (min-max)"""
        if not self.values:
            return "n/a"
        m = fmt(self.median(), unit)
        if len(self.values) == 1:
            return m
        return "%s (%s-%s)" % (m, fmt(min(self.values), unit), fmt(max(self.values), unit))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--cache-mb", type=float, default=64)
    ap.add_argument("--machine")
    ap.add_argument("--busy-poll-us", type=int, default=0)
    ap.add_argument("--busy-poll", default="on")
    a = ap.parse_args()

    raw_data = {}
    mtus = []
    with open(a.results) as f:
        for r in csv.DictReader(f):
            m = int(r["mtu"])
            if m not in mtus:
                mtus.append(m)
            raw_data.setdefault((m, r["system"], r["row"]), []).append(num(r["value"]))
    rounds = {k: Rounds(v) for k, v in raw_data.items()}

    def med(m, s, k):
        r = rounds.get((m, s, k))
        return r.median() if r else None

    def cell(m, s, k, unit):
        r = rounds.get((m, s, k))
        return r.cell(unit) if r else "-"

    out = []
    if a.machine:
        try:
            out += ["    " + l.rstrip() for l in open(a.machine)]
            out.append("")
        except OSError:
            pass
    out.append("Medians of the rounds, the range in brackets; PASS or FAIL on the medians.")
    out.append("")
    out.append("| MTU | row | unit | raw | aoefs | nbdfuse | aoefs/raw | aoefs/nbdfuse | target | result |")
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    npass = nfail = 0
    for m in mtus:
        for key, label, unit, higher in ROWS:
            raw, ao, nb = (med(m, s, key) for s in ("raw", "aoefs", "nbdfuse"))
            r_raw, r_nb = ratio(ao, raw), ratio(ao, nb)

            def ahead(x, y):
                return x is not None and y is not None and (x > y if higher else x < y)

            # nbdfuse is a target only where the raw client beats it.
            nb_check = []
            nb_note = ""
            if key in ("seqread", "seqwrite", "lat1", "iops32", "bufread") and nb is not None:
                if key == "bufread" or ahead(raw, nb):
                    nb_check = [ahead(ao, nb)]
                    nb_note = ", %s nbdfuse" % (">" if higher else "<")
                else:
                    nb_note = ", nbdfuse: no target (ahead of raw)"
            checks = []
            if key == "seqread":
                tgt = ">=0.90 raw" + nb_note
                checks = [r_raw is not None and r_raw >= 0.90] + nb_check
            elif key == "seqwrite":
                tgt = ">=0.85 raw" + nb_note
                checks = [r_raw is not None and r_raw >= 0.85] + nb_check
            elif key == "lat1":
                c = ratio(ao, composed(key, raw, med(m, "floor", key)))
                tgt = "<=1.10 composed (%s)%s" % (rfmt(c), nb_note)
                checks = [c is not None and c <= 1.10] + nb_check
            elif key == "iops32":
                c = ratio(ao, composed(key, raw, med(m, "floor", key)))
                tgt = ">=0.85 composed (%s), > nbdfuse" % rfmt(c)
                checks = [c is not None and c >= 0.85, r_nb is not None and r_nb > 1.0]
            elif key == "bufread":
                direct = med(m, "aoefs", "seqread")
                rd = ratio(ao, direct)
                tgt = ">=0.9 aoefs O_DIRECT (%s)%s" % (rfmt(rd), nb_note)
                checks = [rd is not None and rd >= 0.9] + nb_check
            elif key == "rss":
                lim = a.cache_mb + 64
                tgt = "<= cache %g + 64 = %g MiB" % (a.cache_mb, lim)
                checks = [ao is not None and ao <= lim]
            res = "PASS" if checks and all(checks) else "FAIL"
            if res == "PASS":
                npass += 1
            else:
                nfail += 1
            out.append(
                "| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |"
                % (m, label, unit, cell(m, "raw", key, unit), cell(m, "aoefs", key, unit),
                   cell(m, "nbdfuse", key, unit), rfmt(r_raw), rfmt(r_nb), tgt, res)
            )
    # Where the time goes: busy CPU time of the whole machine (target
    # included) per unit of work. On a machine where initiator and target
    # share the CPUs, this is what bounds throughput.
    cpu_rows = [c for c in CPU_ROWS if any(rounds.get((m, s, c[0])) for m in mtus for s in ("raw", "aoefs"))]
    if cpu_rows:
        out.append("")
        out.append("Machine CPU time (all CPUs, target included) per unit of work, medians (range):")
        out.append("")
        out.append("| MTU | row | unit | raw | aoefs | nbdfuse | aoefs/raw | target | result |")
        out.append("|---|---|---|---|---|---|---|---|---|")
        for m in mtus:
            for key, label, unit, most in cpu_rows:
                r = ratio(med(m, "aoefs", key), med(m, "raw", key))
                if most is None:
                    c = ratio(med(m, "aoefs", key), composed(key, med(m, "raw", key), med(m, "floor", key)))
                    ok, tgt = c is not None and c <= 1.15, "<=1.15 composed (%s)" % rfmt(c)
                else:
                    ok, tgt = r is not None and r <= most, "<=%g raw" % most
                res = "PASS" if ok else "FAIL"
                if res == "PASS":
                    npass += 1
                else:
                    nfail += 1
                out.append("| %d | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    m, label, unit, cell(m, "raw", key, unit), cell(m, "aoefs", key, unit),
                    cell(m, "nbdfuse", key, unit), rfmt(r), tgt, res))
    out.append("")
    out.append("%d rows PASS, %d rows FAIL" % (npass, nfail))
    # The floor: FUSE and aoefs's core without a network or a target
    # (aoefs --bench-sim-target), FUSE alone (aoe-nullfuse), and the
    # composed limits the small-I/O rows are judged against.
    small = [("lat1", "rand read 4k QD1 mean latency", "us"), ("iops32", "rand read 4k QD32", "IOPS"),
             ("iops32_cpu", "rand read 4k QD32 CPU", "us per IO")]
    if any(rounds.get((m, "floor", k)) for m in mtus for k, _, _ in small):
        out.append("")
        out.append("The FUSE floor and the composed limits, medians (range): floor = aoefs with a simulated target "
                   "in its process (no network, no vblade), null = a FUSE file answered at once (FUSE alone), "
                   "composed = raw + floor (IOPS: 1 / (1/raw + 1/floor)):")
        out.append("")
        out.append("| MTU | row | unit | raw | null | floor | composed | aoefs | aoefs/composed | floor/null |")
        out.append("|---|---|---|---|---|---|---|---|---|---|")
        for m in mtus:
            for key, label, unit in small:
                comp = composed(key, med(m, "raw", key), med(m, "floor", key))
                out.append("| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    m, label, unit, cell(m, "raw", key, unit), cell(m, "null", key, unit),
                    cell(m, "floor", key, unit), fmt(comp, unit), cell(m, "aoefs", key, unit),
                    rfmt(ratio(med(m, "aoefs", key), comp)), rfmt(ratio(med(m, "floor", key), med(m, "null", key)))))
    # Extra aoefs systems measured in the same rounds, if any: aoefs with
    # another --busy-poll mode (off: what the default auto changes) and
    # another aoefs build (--baseline).
    extra_rows = [(k, l, u) for k, l, u, _ in ROWS[:4]] + [(k, l, u) for k, l, u, _ in CPU_ROWS]
    for system, title, col in (
        ("aoefs-bp", "aoefs mounted with --busy-poll %s --busy-poll-us %d" % (a.busy_poll, a.busy_poll_us),
         "poll-%s" % a.busy_poll),
        ("aoefs-base", "the baseline aoefs build (--baseline)", "baseline"),
    ):
        if not any(rounds.get((m, system, k)) for m in mtus for k, _, _ in extra_rows):
            continue
        out.append("")
        out.append("%s, same run, medians (range):" % title)
        out.append("")
        out.append("| MTU | row | unit | raw | aoefs | %s | %s/raw | aoefs/%s |" % (col, col, col))
        out.append("|---|---|---|---|---|---|---|---|")
        for m in mtus:
            for key, label, unit in extra_rows:
                if not rounds.get((m, system, key)):
                    continue
                raw, ao, ex = (med(m, s, key) for s in ("raw", "aoefs", system))
                out.append("| %d | %s | %s | %s | %s | %s | %s | %s |" % (
                    m, label, unit, cell(m, "raw", key, unit), cell(m, "aoefs", key, unit),
                    cell(m, system, key, unit), rfmt(ratio(ex, raw)), rfmt(ratio(ao, ex))))
    print("\n".join(out))


if __name__ == "__main__":
    sys.exit(main())
