#!/usr/bin/env python3
"""Plots sequential-read throughput against request size (QD1, O_DIRECT for
aoefs and nbdfuse; one request at a time for the raw client) from
tests/bench/run.sh's sweep.csv (mtu,system,bs,MBps).

Writes an SVG by hand (no matplotlib needed): one panel per MTU, log2 x axis.

    python3 tests/bench/plot.py sweep.csv Documentation/perf-plot.svg
"""
import csv
import math
import statistics
import sys

COLORS = {"raw": "#1f77b4", "aoefs": "#d62728", "nbdfuse": "#2ca02c"}
LABELS = {"raw": "raw AoE client (aoe-rawbench)", "aoefs": "aoefs (fio psync)", "nbdfuse": "nbdfuse/nbdkit (fio psync)"}


def size_label(b):
    if b >= 1 << 20:
        return "%dM" % (b >> 20)
    return "%dk" % (b >> 10)


def nice_max(v):
    if v <= 0:
        return 1
    e = 10 ** math.floor(math.log10(v))
    for m in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if m * e >= v:
            return m * e
    return 10 * e


def main():
    src, dst = sys.argv[1], sys.argv[2]
    data = {}
    rounds = {}
    with open(src) as f:
        for r in csv.DictReader(f):
            try:
                v = float(r["MBps"])
            except ValueError:
                continue
            if math.isnan(v):
                continue
            rounds.setdefault((int(r["mtu"]), r["system"], int(r["bs"])), []).append(v)
    # Several rounds per point: the median counts, as in the table.
    for (m, name, bs), vs in rounds.items():
        data.setdefault(m, {}).setdefault(name, []).append((bs, statistics.median(vs)))
    mtus = sorted(data)
    if not mtus:
        print("plot.py: no data", file=sys.stderr)
        return 1
    pw, ph = 430, 300  # panel plot area
    ml, mr, mt, mb = 70, 20, 50, 55
    W = len(mtus) * (ml + pw + mr) + 10
    H = mt + ph + mb + 60
    s = []
    s.append('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">' % (W, H))
    s.append('<rect width="100%" height="100%" fill="white"/>')
    s.append('<text x="%d" y="20" font-size="15" text-anchor="middle">Sequential read, QD1, throughput vs request size (vblade over veth)</text>' % (W / 2))
    for i, m in enumerate(mtus):
        ox = 10 + i * (ml + pw + mr) + ml
        oy = mt
        sysd = data[m]
        xs = sorted({b for pts in sysd.values() for b, _ in pts})
        ymax = nice_max(max(v for pts in sysd.values() for _, v in pts) * 1.05)
        lx0, lx1 = math.log2(xs[0]), math.log2(xs[-1])
        span = (lx1 - lx0) or 1

        def X(b):
            return ox + (math.log2(b) - lx0) / span * pw

        def Y(v):
            return oy + ph - v / ymax * ph

        s.append('<text x="%d" y="%d" font-size="13" text-anchor="middle">MTU %d</text>' % (ox + pw / 2, oy - 10, m))
        # grid + y ticks
        for k in range(6):
            v = ymax * k / 5
            y = Y(v)
            s.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>' % (ox, y, ox + pw, y))
            s.append('<text x="%d" y="%.1f" text-anchor="end">%g</text>' % (ox - 6, y + 4, round(v, 1)))
        for b in xs:
            x = X(b)
            s.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#eee"/>' % (x, oy, x, oy + ph))
            s.append('<text x="%.1f" y="%d" text-anchor="middle">%s</text>' % (x, oy + ph + 18, size_label(b)))
        s.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="black"/>' % (ox, oy, pw, ph))
        s.append('<text x="%d" y="%d" text-anchor="middle">request size (bytes, log scale)</text>' % (ox + pw / 2, oy + ph + 38))
        s.append('<text transform="translate(%d,%d) rotate(-90)" text-anchor="middle">MB/s</text>' % (ox - 50, oy + ph / 2))
        for name in ("raw", "aoefs", "nbdfuse"):
            pts = sorted(sysd.get(name, []))
            if not pts:
                continue
            c = COLORS[name]
            path = " ".join("%s%.1f,%.1f" % ("M" if j == 0 else "L", X(b), Y(v)) for j, (b, v) in enumerate(pts))
            s.append('<path d="%s" fill="none" stroke="%s" stroke-width="2"/>' % (path, c))
            for b, v in pts:
                s.append('<circle cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%s %s: %.1f MB/s</title></circle>' % (X(b), Y(v), c, name, size_label(b), v))
    # legend
    lx, ly = 10 + ml, H - 20
    for name in ("raw", "aoefs", "nbdfuse"):
        s.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"/>' % (lx, ly - 4, lx + 24, ly - 4, COLORS[name]))
        s.append('<text x="%d" y="%d">%s</text>' % (lx + 30, ly, LABELS[name]))
        lx += 60 + 7 * len(LABELS[name])
    s.append("</svg>")
    with open(dst, "w") as f:
        f.write("\n".join(s) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
