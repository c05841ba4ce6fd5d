#!/usr/bin/env bash
# CPU crossings per request: how many times a small read makes one CPU
# interrupt the other (a cross-CPU wake-up of a halted vCPU is a
# rescheduling or function-call IPI), and how many context switches it
# costs, for the raw AoE client and one or more aoefs builds, at QD1 and
# QD32 (4 KiB random reads), unpinned and pinned (target on CPU 1, the rest
# on CPU 0). Counts come from /proc/interrupts (RES + CAL) and /proc/stat
# (ctxt) around each run, divided by the requests completed; the whole
# machine is counted, so run it on an otherwise idle machine. For aoefs it
# also counts the switches of aoefs's own threads (/proc/PID/task/*/status),
# and it prints the time per request (mean latency at QD1, 1/IOPS at QD32).
# The binaries are copied first, so a build meanwhile cannot swap them.
# aoefs is mounted with its defaults over a 1 GiB image (vblade on tmpfs).
#
#   tests/bench/crossings.sh [--mtu 1500] [--seconds 4] [--reps 3] [AOEFS_BIN ...]
#
# Default binary: target/release/aoefs. Prints one Markdown table of medians
# (range). Needs root, vblade, fio, fuse3; cleans up on exit.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
MTU=1500
SECS=4
REPS=3
BINS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --mtu) MTU=$2; shift 2 ;;
        --seconds) SECS=$2; shift 2 ;;
        --reps) REPS=$2; shift 2 ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        -*) echo "crossings.sh: unknown option $1" >&2; exit 2 ;;
        *) BINS+=("$1"); shift ;;
    esac
done
[ ${#BINS[@]} -gt 0 ] || BINS=("$ROOT/target/release/aoefs")
RAW=$ROOT/target/release/aoe-rawbench
[ "$(id -u)" = 0 ] || { echo "crossings.sh: needs root" >&2; exit 2; }
[ -x "$RAW" ] || { echo "crossings.sh: build $RAW first (cargo build --release --bins)" >&2; exit 2; }
for b in "${BINS[@]}"; do [ -x "$b" ] || { echo "crossings.sh: $b is not an executable" >&2; exit 2; }; done
NAMES=("${BINS[@]}")
BINDIR=$(mktemp -d /tmp/crossings-bin.XXXXXX) || exit 1
cp "$RAW" "$BINDIR/aoe-rawbench" && RAW=$BINDIR/aoe-rawbench || exit 1
for i in "${!BINS[@]}"; do cp "${BINS[$i]}" "$BINDIR/aoefs$i" && BINS[$i]=$BINDIR/aoefs$i || exit 1; done

T=aoex$$; INS=$T-i; TNS=$T-t; IV=${T}i; TV=${T}t
IMG=/dev/shm/$T.img; MNT=/tmp/$T-mnt
VB=; AP=
cleanup() {
    mountpoint -q "$MNT" 2>/dev/null && { fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT"; }
    [ -n "$AP" ] && kill "$AP" 2>/dev/null
    [ -n "$VB" ] && kill "$VB" 2>/dev/null
    ip netns del "$INS" 2>/dev/null; ip netns del "$TNS" 2>/dev/null
    rm -f "$IMG"; rmdir "$MNT" 2>/dev/null
    [ -n "${BINDIR:-}" ] && rm -rf "$BINDIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ipis() { awk '/^ *(RES|CAL):/ {for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) s += $i} END {print s}' /proc/interrupts; }
ctxt() { awk '/^ctxt/ {print $2}' /proc/stat; }
# Context switches of one process's threads, voluntary and not (0 without a PID).
proc_ctxt() { [ -n "$1" ] && cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {s += $2} END {print s + 0}' || echo 0; }

start_target() {    # start_target "TASKSET PREFIX"
    [ -n "$VB" ] && { kill "$VB" 2>/dev/null; wait "$VB" 2>/dev/null; }
    $1 ip netns exec "$TNS" vblade 0 1 "$TV" "$IMG" >/dev/null 2>&1 &
    VB=$!
    sleep 0.5
}

ip netns add "$INS" && ip netns add "$TNS" || exit 1
ip link add "$IV" type veth peer name "$TV" && ip link set "$IV" netns "$INS" && ip link set "$TV" netns "$TNS" || exit 1
ip -n "$INS" link set "$IV" mtu "$MTU" up && ip -n "$TNS" link set "$TV" mtu "$MTU" up || exit 1
truncate -s 1G "$IMG" && mkdir -p "$MNT" || exit 1

declare -A V   # V[placement,system,qd,metric] = " v1 v2 ..."
add() { V["$1"]="${V["$1"]:-} $2"; }

# measure PLACEMENT SYSTEM QD PID CMD...: runs CMD (prints "requests
# time-per-request-us"), records per-request counts; PID (or "") is the
# aoefs process whose threads are counted too.
measure() {
    local pl=$1 sys=$2 qd=$3 pid=$4; shift 4
    local i0 c0 p0 i1 c1 p1 out n us
    i0=$(ipis); c0=$(ctxt); p0=$(proc_ctxt "$pid")
    out=$("$@")
    i1=$(ipis); c1=$(ctxt); p1=$(proc_ctxt "$pid")
    read -r n us <<<"$out"
    if [ -z "$n" ] || [ "$n" = 0 ]; then echo "crossings.sh: $sys qd$qd ($pl) completed nothing" >&2; return; fi
    add "$pl,$sys,$qd,ipi" "$(python3 -c "print('%.2f' % (($i1 - $i0) / $n))")"
    add "$pl,$sys,$qd,ctxt" "$(python3 -c "print('%.2f' % (($c1 - $c0) / $n))")"
    [ -n "$pid" ] && add "$pl,$sys,$qd,own" "$(python3 -c "print('%.2f' % (($p1 - $p0) / $n))")"
    add "$pl,$sys,$qd,us" "$us"
}

raw_run() {     # raw_run PREFIX QD -> requests
    $1 nsenter --net=/run/netns/"$INS" "$RAW" -i "$IV" -m randread --qd "$2" --seconds "$SECS" 2>/dev/null |
        tr ' ' '\n' | awk -F= -v qd="$2" '$1 == "iops" {i = $2} $1 == "secs" {s = $2} $1 == "lat_us_mean" {l = $2}
            END {if (i > 0) printf "%d %.1f\n", i * s, (qd == 1 ? l : 1e6 / i)}'
}

fio_run() {     # fio_run PREFIX QD -> requests
    local eng=psync; [ "$2" = 1 ] || eng=libaio
    $1 fio --name=x --filename="$MNT/e0.1" --rw=randread --bs=4k --direct=1 --ioengine=$eng --iodepth="$2" \
        --time_based --runtime="$SECS" --size=1G --output-format=json 2>/dev/null |
        python3 -c 'import json,sys
r = json.load(sys.stdin)["jobs"][0]["read"]
print(r["total_ios"], "%.1f" % (r["lat_ns"]["mean"] / 1000 if sys.argv[1] == "1" else 1e6 / r["iops"]))' "$2" 2>/dev/null
}

SYSTEMS=(raw)
for pl in unpinned pinned; do
    if [ $pl = pinned ]; then ON_T="taskset -c 1"; ON_I="taskset -c 0"; else ON_T=""; ON_I=""; fi
    start_target "$ON_T"
    for rep in $(seq "$REPS"); do
        for qd in 1 32; do measure $pl raw $qd "" raw_run "$ON_I" $qd; done
        k=0
        for b in "${BINS[@]}"; do
            k=$((k + 1)); sys="aoefs#$k"
            [ $rep = 1 ] && [ $pl = unpinned ] && SYSTEMS+=("$sys")
            $ON_I nsenter --net=/run/netns/"$INS" "$b" "$MNT" -f --iflist "$IV" >/dev/null 2>&1 &
            AP=$!
            for i in $(seq 100); do [ -e "$MNT/e0.1" ] && break; sleep 0.1; done
            if [ -e "$MNT/e0.1" ]; then
                fio_run "$ON_I" 1 >/dev/null   # warm up: the first reads find the target
                for qd in 1 32; do measure $pl "$sys" $qd "$AP" fio_run "$ON_I" $qd; done
            else
                echo "crossings.sh: $b did not mount" >&2
            fi
            fusermount3 -u "$MNT" 2>/dev/null; wait "$AP" 2>/dev/null; AP=
        done
    done
done

echo "MTU $MTU, 4 KiB random reads, $SECS s per run, $REPS rounds, medians (range), per request:"
for i in "${!NAMES[@]}"; do echo "  aoefs#$((i + 1)) = ${NAMES[$i]}"; done
echo
echo "| placement | system | QD | us per request | IPIs (RES+CAL) | context switches, machine | of them aoefs's threads |"
echo "|---|---|---|---|---|---|---|"
for pl in unpinned pinned; do
    for sys in "${SYSTEMS[@]}"; do
        for qd in 1 32; do
            python3 - "$pl" "$sys" "$qd" "${V["$pl,$sys,$qd,us"]:-}" "${V["$pl,$sys,$qd,ipi"]:-}" \
                "${V["$pl,$sys,$qd,ctxt"]:-}" "${V["$pl,$sys,$qd,own"]:-}" <<'EOF'
import statistics, sys
pl, s, qd, us, ipi, ctx, own = sys.argv[1:8]
def cell(v, fmt):
    v = [float(x) for x in v.split()]
    if not v:
        return "-"
    return (fmt + " (" + fmt + "-" + fmt + ")") % (statistics.median(v), min(v), max(v))
print("| %s | %s | %s | %s | %s | %s | %s |" % (pl, s, qd, cell(us, "%.1f"), cell(ipi, "%.2f"), cell(ctx, "%.2f"), cell(own, "%.2f")))
EOF
        done
    done
done
