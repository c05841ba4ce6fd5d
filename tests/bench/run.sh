#!/usr/bin/env bash
# aoefs performance bench: raw AoE client vs aoefs vs nbdfuse over the same
# vblade image, across a veth pair between two private network namespaces,
# at MTU 1500 and 9000. Every system gets the same rounds (at least 3),
# interleaved; each row is judged on the median of its rounds, with the
# range beside it. Prints one table with ratios and targets, and leaves
# results.csv (every round), sweep.csv, table.md and raw logs in --out.
#
#   tests/bench/run.sh [--size 4G] [--bufcnt 16] [--mtus "1500 9000"]
#                      [--runtime 5] [--reps 3] [--sweep-runtime 2]
#                      [--cache-mb 64] [--dir /dev/shm] [--out DIR]
#                      [--no-nbd] [--no-sweep] [--no-build] [--no-offload]
#                      [--quiet-wait 20] [--busy-poll-us 50] [--busy-poll off] [--pin]
#                      [--baseline BIN]
#
# --busy-poll MODE [off] --busy-poll-us N [50] also runs the four fio rows
# against aoefs mounted with those options (system "aoefs-bp", a table of
# its own): by default busy-polling off, beside aoefs's default (auto);
# --busy-poll-us 0 skips it.
# --baseline BIN also runs the four fio rows against another aoefs binary
# (an older build, say), mounted the same way, in the same rounds (system
# "aoefs-base", a table of its own): before and after side by side.
# Every round also mounts the FUSE floor (system "floor": aoefs
# --bench-sim-target, a simulated target in the aoefs process, no network,
# no vblade) and a FUSE file answered at once (system "null":
# aoe-nullfuse), for the 4 KiB rows: the small-I/O rows are judged against
# raw + floor (report.py).
# --pin runs the target (vblade, nbdkit) on CPU 1 and every initiator (raw
# client, aoefs, nbdfuse) and fio on CPU 0, as if the target were another
# machine; without it the scheduler places everything.
# The raw client keeps as many requests in flight as fio on every row: one
# 1 MiB request on the sequential rows (--qd 1), 1 or 32 4 KiB reads.
#
# Needs root, vblade, fio, fuse3, nbdkit + nbdfuse (libnbd-bin), python3.
# Everything it starts (netns, vblade, aoefs, nbdkit, nbdfuse, mounts, the
# image file) is removed on exit, Ctrl-C included.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

SIZE=4G
BUFCNT=16
MTUS="1500 9000"
RT=5            # seconds per fio job / raw run
REPS=3          # rounds per row, interleaved over the systems; the median counts
SWEEP_RT=2      # seconds per point of the request-size sweep
CACHE_MB=64
DIR=/dev/shm    # where the sparse image lives (tmpfs: no disk in the path)
OUT="$ROOT/target/bench"
DO_NBD=1
DO_SWEEP=1
DO_BUILD=1
NO_OFFLOAD=0
SWEEP_SIZES="4k 16k 64k 256k 1m"
QUIET_WAIT=20   # seconds to wait at most for the machine to go idle before a phase
BUSY_POLL=50    # aoefs --busy-poll-us for the extra aoefs-bp rows (0: none)
BP_MODE=off     # aoefs --busy-poll for them (aoefs's own default is auto)
PIN=0           # 1: target on CPU 1, initiators and fio on CPU 0
BASELINE=       # another aoefs binary to compare with (system aoefs-base)

while [ $# -gt 0 ]; do
    case "$1" in
        --size) SIZE=$2; shift 2 ;;
        --bufcnt) BUFCNT=$2; shift 2 ;;
        --mtus) MTUS=$2; shift 2 ;;
        --runtime) RT=$2; shift 2 ;;
        --reps) REPS=$2; shift 2 ;;
        --sweep-runtime) SWEEP_RT=$2; shift 2 ;;
        --cache-mb) CACHE_MB=$2; shift 2 ;;
        --dir) DIR=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --no-nbd) DO_NBD=0; shift ;;
        --no-sweep) DO_SWEEP=0; shift ;;
        --no-build) DO_BUILD=0; shift ;;
        --no-offload) NO_OFFLOAD=1; shift ;;   # veth gso_max_segs 1: TCP segments at the MTU too
        --quiet-wait) QUIET_WAIT=$2; shift 2 ;;
        --busy-poll-us) BUSY_POLL=$2; shift 2 ;;
        --busy-poll) BP_MODE=$2; shift 2 ;;
        --pin) PIN=1; shift ;;
        --baseline) BASELINE=$2; shift 2 ;;
        -h|--help) sed -n '2,36p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

[ "$(id -u)" = 0 ] || { echo "run.sh: needs root (netns, AF_PACKET, FUSE)" >&2; exit 2; }
[ "$REPS" -ge 3 ] 2>/dev/null || { echo "run.sh: --reps must be at least 3 (medians of rounds)" >&2; exit 2; }
# CPU placement: target side and initiator side (empty: unpinned).
if [ $PIN = 1 ]; then
    [ "$(nproc)" -ge 2 ] || { echo "run.sh: --pin needs 2 CPUs" >&2; exit 2; }
    ON_T="taskset -c 1"; ON_I="taskset -c 0"
else
    ON_T=""; ON_I=""
fi
for c in vblade fio python3 ip nsenter fusermount3; do
    command -v "$c" >/dev/null || { echo "run.sh: missing $c" >&2; exit 2; }
done
if [ $DO_NBD = 1 ]; then
    for c in nbdkit nbdfuse; do
        command -v "$c" >/dev/null || { echo "run.sh: missing $c (apt-get install nbdkit libnbd-bin, or --no-nbd)" >&2; exit 2; }
    done
fi

size_bytes() {
    local s=${1,,}
    case "$s" in
        *k) echo $(( ${s%k} << 10 )) ;;
        *m) echo $(( ${s%m} << 20 )) ;;
        *g) echo $(( ${s%g} << 30 )) ;;
        *) echo "$s" ;;
    esac
}
SIZE_B=$(size_bytes "$SIZE")

# ------------------------------------------------------------------ state
TAG=ab$$
INS=$TAG-i              # initiator netns
TNS=$TAG-t              # target netns
IV=${TAG}i              # veth ends (<= 15 chars)
TV=${TAG}t
IP_I=192.168.237.1
IP_T=192.168.237.2
WORK=$(mktemp -d /tmp/aoebench.XXXXXX)
IMG="$DIR/aoebench-$$.img"
MNT_A=$WORK/mnt-aoefs
MNT_N=$WORK/mnt-nbd
mkdir -p "$MNT_A" "$MNT_N" "$OUT"
LOG=$OUT/run.log
: > "$LOG"
: > "$OUT/aoefs-stats.txt"
RES=$OUT/results.csv
SWEEP=$OUT/sweep.csv
echo "mtu,system,row,value,unit" > "$RES"
echo "mtu,system,bs,MBps" > "$SWEEP"

VBLADE_PID=; AOEFS_PID=; NBDKIT_PID=; NBDFUSE_PID=; RSS_PID=; NULL_PID=

log() { echo "[$(date +%T)] $*" | tee -a "$LOG" >&2; }

stop_pid() {   # stop_pid PID [signal]: only processes we started, by id
    local p=$1
    [ -n "$p" ] || return 0
    kill -"${2:-TERM}" "$p" 2>/dev/null || { wait "$p" 2>/dev/null; return 0; }
    local st
    for _ in $(seq 50); do
        st=$(awk '{print $3}' /proc/"$p"/stat 2>/dev/null)
        if [ -z "$st" ] || [ "$st" = Z ]; then wait "$p" 2>/dev/null; return 0; fi
        sleep 0.1
    done
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
    return 0
}

is_mounted() { grep -q " $1 " /proc/self/mounts; }

unmount() {
    local m=$1
    is_mounted "$m" || return 0
    umount "$m" 2>/dev/null || fusermount3 -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
}

stop_aoefs() {
    if [ -n "$AOEFS_PID" ]; then
        unmount "$MNT_A"
        stop_pid "$AOEFS_PID"
        AOEFS_PID=
    fi
    unmount "$MNT_A"
}

stop_null() {
    if [ -n "$NULL_PID" ]; then
        unmount "$MNT_A"
        stop_pid "$NULL_PID"
        NULL_PID=
    fi
    unmount "$MNT_A"
}

stop_nbd() {
    if [ -n "$NBDFUSE_PID" ]; then
        unmount "$MNT_N"
        stop_pid "$NBDFUSE_PID"
        NBDFUSE_PID=
    fi
    unmount "$MNT_N"
    stop_pid "$NBDKIT_PID"; NBDKIT_PID=
}

teardown_net() {
    stop_aoefs
    stop_null
    stop_nbd
    stop_pid "$VBLADE_PID"; VBLADE_PID=
    ip netns del "$INS" 2>/dev/null
    ip netns del "$TNS" 2>/dev/null
    return 0
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pid "$RSS_PID"
    teardown_net
    rm -f "$IMG"
    rmdir "$MNT_A" "$MNT_N" 2>/dev/null
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# ------------------------------------------------------------------ build
if [ $DO_BUILD = 1 ]; then
    log "cargo build --release"
    (cd "$ROOT" && cargo build --release --bins) >>"$LOG" 2>&1 || { echo "run.sh: cargo build failed (see $LOG)" >&2; exit 1; }
fi
AOEFS=$ROOT/target/release/aoefs
RAW=$ROOT/target/release/aoe-rawbench
NULLFUSE=$ROOT/target/release/aoe-nullfuse
[ -x "$AOEFS" ] && [ -x "$RAW" ] && [ -x "$NULLFUSE" ] || { echo "run.sh: build $AOEFS, $RAW and $NULLFUSE first" >&2; exit 1; }
# Private copies: a concurrent cargo build must not swap binaries mid-run.
cp "$AOEFS" "$WORK/aoefs" && cp "$RAW" "$WORK/aoe-rawbench" && cp "$NULLFUSE" "$WORK/aoe-nullfuse" || exit 1
AOEFS=$WORK/aoefs
RAW=$WORK/aoe-rawbench
NULLFUSE=$WORK/aoe-nullfuse
if [ -n "$BASELINE" ]; then
    [ -x "$BASELINE" ] || { echo "run.sh: --baseline $BASELINE is not an executable" >&2; exit 2; }
    cp "$BASELINE" "$WORK/aoefs-base" || exit 1
fi

# ------------------------------------------------------------------ testbed
setup_net() {   # setup_net MTU
    local mtu=$1
    ip netns add "$INS" && ip netns add "$TNS" || return 1
    ip link add "$IV" type veth peer name "$TV" || return 1
    ip link set "$IV" netns "$INS" && ip link set "$TV" netns "$TNS" || return 1
    # MTU before vblade starts: it sizes its buffers from it once.
    ip -n "$INS" link set "$IV" mtu "$mtu" up && ip -n "$TNS" link set "$TV" mtu "$mtu" up || return 1
    ip -n "$INS" link set lo up; ip -n "$TNS" link set lo up
    ip -n "$INS" addr add $IP_I/24 dev "$IV" && ip -n "$TNS" addr add $IP_T/24 dev "$TV" || return 1
    if [ $NO_OFFLOAD = 1 ]; then
        # No ethtool needed: one segment per GSO packet = no TSO/GSO.
        ip -n "$INS" link set "$IV" gso_max_segs 1 gso_max_size "$mtu" >>"$LOG" 2>&1
        ip -n "$TNS" link set "$TV" gso_max_segs 1 gso_max_size "$mtu" >>"$LOG" 2>&1
    fi
    $ON_T ip netns exec "$TNS" vblade -b "$BUFCNT" 0 1 "$TV" "$IMG" >>"$LOG" 2>&1 &
    VBLADE_PID=$!
    sleep 0.5
    kill -0 "$VBLADE_PID" 2>/dev/null || { log "vblade did not start"; return 1; }
}

# ------------------------------------------------------------------ measurement helpers
record() { echo "$1,$2,$3,$4,$5" >> "$RES"; }   # mtu system row value unit

kv() { tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; }   # kv KEY < line

# Busy jiffies of the whole machine (all CPUs: user+nice+system+irq+softirq).
busy_jiffies() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
HZ=$(getconf CLK_TCK)

raw() {         # raw ARGS... -> one result line (also logged), plus cpu_us_per_MB= cpu_us_per_io=
    local line b0 b1
    b0=$(busy_jiffies)
    line=$(timeout 120 $ON_I nsenter --net=/run/netns/"$INS" "$RAW" -i "$IV" "$@" 2>>"$LOG")
    b1=$(busy_jiffies)
    line="$line $(python3 -c '
import sys
kv = dict(x.split("=", 1) for x in sys.argv[1].split() if "=" in x)
us = (int(sys.argv[2]) - int(sys.argv[3])) * 1e6 / int(sys.argv[4])
b, n = float(kv.get("bytes", 0)), float(kv.get("iops", 0)) * float(kv.get("secs", 0))
print("cpu_us_per_MB=%.1f cpu_us_per_io=%.2f" % (us / (b / 1e6) if b else float("nan"), us / n if n else float("nan")))' "$line" "$b1" "$b0" "$HZ")"
    echo "raw $*: $line" >> "$LOG"
    echo "$line"
}

# fio_run NAME FILE RW BS ENGINE QD RUNTIME
#   -> "MBps iops lat_mean_us p50_us p99_us cpu_us_per_io cpu_us_per_MB"
# (cpu: busy time of the whole machine, target included, over the fio run)
fio_run() {
    local name=$1 file=$2 rw=$3 bs=$4 eng=$5 qd=$6 rt=$7
    local js=$WORK/fio-$name.json
    local b0 b1
    b0=$(busy_jiffies)
    timeout $((rt + 60)) $ON_I fio --name="$name" --filename="$file" --direct=1 --rw="$rw" --bs="$bs" \
        --ioengine="$eng" --iodepth="$qd" --size="$SIZE_B" --runtime="$rt" --time_based \
        --allow_file_create=0 --fallocate=none --randrepeat=0 --norandommap \
        --output-format=json --output="$js" >>"$LOG" 2>&1
    local rc=$?
    b1=$(busy_jiffies)
    python3 - "$js" "$rw" "$rc" "$(( (b1 - b0) * 1000000 / HZ ))" <<'EOF'
import json, sys
js, rw, rc, cpu_us = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
try:
    j = json.load(open(js))
    d = j["jobs"][0]["write" if "write" in rw else "read"]
    p = d["clat_ns"].get("percentile", {})
    err = j["jobs"][0].get("error", 0)
    if err or d["io_bytes"] == 0:
        raise ValueError("fio error %s" % err)
    print("%.1f %.0f %.1f %.1f %.1f %.2f %.1f" % (d["bw_bytes"] / 1e6, d["iops"], d["lat_ns"]["mean"] / 1e3,
          p.get("50.000000", 0) / 1e3, p.get("99.000000", 0) / 1e3,
          cpu_us / d["total_ios"], cpu_us / (d["io_bytes"] / 1e6)))
except Exception as e:
    sys.stderr.write("fio %s failed (rc %s): %s\n" % (js, rc, e))
    print("nan nan nan nan nan nan nan")
EOF
    cp "$js" "$OUT/" 2>/dev/null
}

# rss_sampler PID FILE: writes the peak VmRSS (KiB) to FILE until killed
rss_sampler() {
    local pid=$1 f=$2 peak=0 r
    while kill -0 "$pid" 2>/dev/null; do
        r=$(awk '/^VmRSS:/ {print $2}' /proc/"$pid"/status 2>/dev/null)
        if [ -n "$r" ] && [ "$r" -gt "$peak" ]; then peak=$r; echo "$peak" > "$f"; fi
        sleep 0.1
    done
}

# buffered_read SYSTEM MTU FILE PID BYTES: dd bs=1M (no O_DIRECT), RSS of PID sampled
buffered_read() {
    local sys=$1 mtu=$2 file=$3 pid=$4 bytes=$5
    local rf=$WORK/rss-$sys-$mtu
    echo 0 > "$rf"
    rss_sampler "$pid" "$rf" & RSS_PID=$!
    local t0 t1
    t0=$(date +%s.%N)
    timeout 300 $ON_I dd if="$file" of=/dev/null bs=1M count=$((bytes >> 20)) status=none 2>>"$LOG"
    local rc=$?
    t1=$(date +%s.%N)
    stop_pid "$RSS_PID"; RSS_PID=
    local mbps
    if [ $rc = 0 ]; then
        mbps=$(python3 -c "print('%.1f' % ($bytes / ($t1 - $t0) / 1e6))")
    else
        mbps=nan; log "dd on $sys failed (rc $rc)"
    fi
    local peak; peak=$(cat "$rf")
    add "$sys" bufread "$mbps"
    add "$sys" rss "$(python3 -c "print('%.1f' % ($peak / 1024))")"
    log "$sys mtu $mtu: buffered dd $((bytes >> 20)) MiB: $mbps MB/s, peak RSS $((peak / 1024)) MiB"
}

# Values of every round: VALS[system,row] = " v1 v2 ..."; all go to results.csv.
declare -A VALS
add() { VALS["$1,$2"]="${VALS["$1,$2"]:-} $3"; }

# CPU busy % of the whole machine over 1 s (others may be using it too).
cpu_busy() {
    local a b
    a=($(head -1 /proc/stat)); sleep 1; b=($(head -1 /proc/stat))
    python3 -c 'import sys
a=list(map(int,sys.argv[1].split())); b=list(map(int,sys.argv[2].split()))
d=[y-x for x,y in zip(a,b)]; t=sum(d) or 1
print("%.0f" % (100.0*(t-d[3]-d[4])/t))' "${a[*]:1}" "${b[*]:1}"
}

# Before each phase: wait (at most QUIET_WAIT s) for other work on the
# machine to calm down, and log how busy it was.
note_load() {
    local b t=0
    b=$(cpu_busy)
    while [ "$b" -gt 25 ] && [ $t -lt "$QUIET_WAIT" ]; do b=$(cpu_busy); t=$((t + 1)); done
    log "before $1: machine CPU busy ${b}% with the bench idle (waited ${t}s), loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
}

# fio_rows SYSTEM MTU FILE REP: the four O_DIRECT rows, once
fio_rows() {
    local sys=$1 mtu=$2 file=$3 i=$4 out
    out=$(fio_run "$sys-$mtu-seqread-$i" "$file" read 1M psync 1 "$RT"); add $sys seqread "$(echo $out | cut -d' ' -f1)"
    add $sys seqread_cpu "$(echo $out | cut -d' ' -f7)"
    echo "$sys mtu $mtu seqread #$i: $out" >> "$LOG"
    out=$(fio_run "$sys-$mtu-seqwrite-$i" "$file" write 1M psync 1 "$RT"); add $sys seqwrite "$(echo $out | cut -d' ' -f1)"
    add $sys seqwrite_cpu "$(echo $out | cut -d' ' -f7)"
    echo "$sys mtu $mtu seqwrite #$i: $out" >> "$LOG"
    out=$(fio_run "$sys-$mtu-rand1-$i" "$file" randread 4k psync 1 "$RT"); add $sys lat1 "$(echo $out | cut -d' ' -f3)"
    echo "$sys mtu $mtu randread qd1 #$i: $out" >> "$LOG"
    out=$(fio_run "$sys-$mtu-rand32-$i" "$file" randread 4k libaio 32 "$RT"); add $sys iops32 "$(echo $out | cut -d' ' -f2)"
    add $sys iops32_cpu "$(echo $out | cut -d' ' -f6)"
    echo "$sys mtu $mtu randread qd32 #$i: $out" >> "$LOG"
}

# fio_small_rows SYSTEM MTU FILE REP: the two 4 KiB random read rows, once
fio_small_rows() {
    local sys=$1 mtu=$2 file=$3 i=$4 out
    out=$(fio_run "$sys-$mtu-rand1-$i" "$file" randread 4k psync 1 "$RT"); add $sys lat1 "$(echo $out | cut -d' ' -f3)"
    echo "$sys mtu $mtu randread qd1 #$i: $out" >> "$LOG"
    out=$(fio_run "$sys-$mtu-rand32-$i" "$file" randread 4k libaio 32 "$RT"); add $sys iops32 "$(echo $out | cut -d' ' -f2)"
    add $sys iops32_cpu "$(echo $out | cut -d' ' -f6)"
    echo "$sys mtu $mtu randread qd32 #$i: $out" >> "$LOG"
}

raw_rows() {    # raw_rows MTU
    local l
    # One 1 MiB request in flight at a time, as fio's psync rows keep.
    l=$(raw -m seqread --qd 1 --seconds "$RT" -v); add raw seqread "$(echo "$l" | kv MBps)"; add raw seqread_cpu "$(echo "$l" | kv cpu_us_per_MB)"
    l=$(raw -m seqwrite --qd 1 --seconds "$RT"); add raw seqwrite "$(echo "$l" | kv MBps)"; add raw seqwrite_cpu "$(echo "$l" | kv cpu_us_per_MB)"
    l=$(raw -m randread --qd 1 --seconds "$RT"); add raw lat1 "$(echo "$l" | kv lat_us_mean)"
    l=$(raw -m randread --qd 32 --seconds "$RT"); add raw iops32 "$(echo "$l" | kv iops)"; add raw iops32_cpu "$(echo "$l" | kv cpu_us_per_io)"
}

record_rounds() { # record_rounds MTU: every round's value, one line each
    local sys row v
    for sys in raw aoefs aoefs-bp aoefs-base nbdfuse floor null; do
        for row in seqread seqwrite lat1 iops32 bufread rss seqread_cpu seqwrite_cpu iops32_cpu; do
            [ -n "${VALS["$sys,$row"]:-}" ] || continue
            case $row in seqread|seqwrite|bufread) u=MBps ;; lat1) u=us ;; iops32) u=IOPS ;; rss) u=MiB ;; *_cpu) u=cpu_us ;; esac
            for v in ${VALS["$sys,$row"]}; do record "$1" "$sys" "$row" "$v" "$u"; done
            log "$sys mtu $1 $row:${VALS["$sys,$row"]} $u"
        done
    done
}

start_aoefs() {  # start_aoefs [EXTRA AOEFS ARGS...] (AOEFS_BIN: which binary, default $AOEFS)
    $ON_I nsenter --net=/run/netns/"$INS" "${AOEFS_BIN:-$AOEFS}" "$MNT_A" -f --iflist "$IV" --cache-mb "$CACHE_MB" "$@" >>"$LOG" 2>&1 &
    AOEFS_PID=$!
    wait_file "$MNT_A/e0.1" "$AOEFS_PID" 20 || { log "aoefs did not mount (see $LOG)"; stop_aoefs; return 1; }
    # Sanity read: a device that does not answer would turn every row into EIO.
    if ! timeout 20 dd if="$MNT_A/e0.1" of=/dev/null bs=1M count=1 iflag=direct status=none 2>>"$LOG"; then
        log "aoefs: first read failed; state $(cat "$MNT_A/block/e0.1/state" 2>&1)"
        { echo "--- aoefs, MTU $MTU, first read failed"; cat "$MNT_A/block/e0.1/stats" 2>&1; } >> "$OUT/aoefs-stats.txt"
        stop_aoefs
        return 1
    fi
}

start_floor() {  # start_floor MTU: aoefs with a simulated target in its process
    $ON_I "$AOEFS" "$MNT_A" -f --bench-sim-target "$1" --cache-mb "$CACHE_MB" >>"$LOG" 2>&1 &
    AOEFS_PID=$!
    wait_file "$MNT_A/e0.1" "$AOEFS_PID" 20 || { log "floor: aoefs did not mount (see $LOG)"; stop_aoefs; return 1; }
}

start_null() {   # a FUSE file answered at once
    $ON_I "$NULLFUSE" "$MNT_A" --size "$SIZE_B" >>"$LOG" 2>&1 &
    NULL_PID=$!
    wait_file "$MNT_A/null" "$NULL_PID" 20 || { log "aoe-nullfuse did not mount (see $LOG)"; stop_null; return 1; }
}

start_nbd() {
    $ON_T ip netns exec "$TNS" nbdkit -f -i "$IP_T" -p 10809 file "$IMG" >>"$LOG" 2>&1 &
    NBDKIT_PID=$!
    sleep 0.5
    $ON_I nsenter --net=/run/netns/"$INS" nbdfuse "$MNT_N/nbd" "nbd://$IP_T:10809" >>"$LOG" 2>&1 &
    NBDFUSE_PID=$!
    wait_file "$MNT_N/nbd" "$NBDFUSE_PID" 20 || { log "nbdfuse did not mount (see $LOG)"; stop_nbd; return 1; }
}

fio_sweep() {   # fio_sweep SYSTEM MTU FILE
    [ $DO_SWEEP = 1 ] || return 0
    local sys=$1 mtu=$2 file=$3 bs out
    for bs in $SWEEP_SIZES; do
        out=$(fio_run "$sys-$mtu-sweep-$bs" "$file" read "$bs" psync 1 "$SWEEP_RT")
        echo "$mtu,$sys,$(size_bytes "$bs"),$(echo $out | cut -d' ' -f1)" >> "$SWEEP"
    done
}

wait_file() {   # wait_file PATH PID SECS
    local i
    for i in $(seq $(( $3 * 10 ))); do
        [ -e "$1" ] && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# ------------------------------------------------------------------ main
{
    echo "machine: $(nproc) CPUs, $(uname -sr), $(awk '/MemTotal/ {print int($2/1024) " MiB RAM"}' /proc/meminfo)"
    echo "model: $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
    echo "veth offloads: $([ $NO_OFFLOAD = 1 ] && echo 'gso_max_segs 1 (no TSO/GSO)' || echo 'default (on)')"
    echo "vblade -b $BUFCNT, image $SIZE ($IMG, sparse), aoefs --cache-mb $CACHE_MB, fio runtime ${RT}s, $REPS rounds (median counts)"
    echo "placement: $([ $PIN = 1 ] && echo 'pinned: target on CPU 1, initiators and fio on CPU 0' || echo 'unpinned')"
    echo "aoefs $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null)$(cd "$ROOT" && git diff --quiet HEAD -- src 2>/dev/null || echo '+dirty')"
    [ -z "$BASELINE" ] || echo "baseline (aoefs-base): $BASELINE"
    echo "fio $(fio --version), $(nbdfuse --version 2>/dev/null | head -1), $(nbdkit --version 2>/dev/null | head -1)"
} > "$OUT/machine.txt"
cat "$OUT/machine.txt" >> "$LOG"

truncate -s "$SIZE_B" "$IMG" || exit 1

for MTU in $MTUS; do
    log "=== MTU $MTU: testbed"
    setup_net "$MTU" || { log "testbed setup failed"; exit 1; }
    VALS=()
    # Rounds go round all three systems, so that load from elsewhere on the
    # machine hits them alike; each row's median counts.
    for rep in $(seq "$REPS"); do
        note_load "raw rows #$rep (mtu $MTU)"
        raw_rows "$MTU"
        if [ $DO_SWEEP = 1 ]; then
            for bs in $SWEEP_SIZES; do
                l=$(raw -m seqread --bs "$bs" --qd 1 --seconds "$SWEEP_RT")
                echo "$MTU,raw,$(size_bytes "$bs"),$(echo "$l" | kv MBps)" >> "$SWEEP"
            done
        fi

        note_load "aoefs rows #$rep (mtu $MTU)"
        if start_aoefs || { log "aoefs: mounting again"; start_aoefs; }; then
            fio_rows aoefs "$MTU" "$MNT_A/e0.1" "$rep"
            fio_sweep aoefs "$MTU" "$MNT_A/e0.1"
            buffered_read aoefs "$MTU" "$MNT_A/e0.1" "$AOEFS_PID" "$SIZE_B"
            if [ $rep = "$REPS" ]; then
                { echo "--- aoefs, MTU $MTU, after all rows"
                  for a in state payload stats; do echo "$a: $(cat "$MNT_A/block/e0.1/$a" 2>&1)"; done; } >> "$OUT/aoefs-stats.txt"
            fi
            { echo "--- aoefs, MTU $MTU, after rep $rep"; cat "$MNT_A/block/e0.1/stats" 2>&1 | head -6; } >> "$OUT/aoefs-stats.txt"
            stop_aoefs
        fi

        note_load "floor rows #$rep (mtu $MTU)"
        if start_floor "$MTU"; then
            fio_small_rows floor "$MTU" "$MNT_A/e0.1" "$rep"
            stop_aoefs
        fi
        note_load "null rows #$rep (mtu $MTU)"
        if start_null; then
            fio_small_rows null "$MTU" "$MNT_A/null" "$rep"
            stop_null
        fi

        if [ "$BUSY_POLL" != 0 ]; then
            note_load "aoefs --busy-poll $BP_MODE --busy-poll-us $BUSY_POLL rows #$rep (mtu $MTU)"
            if start_aoefs --busy-poll "$BP_MODE" --busy-poll-us "$BUSY_POLL" || { log "aoefs-bp: mounting again"; start_aoefs --busy-poll "$BP_MODE" --busy-poll-us "$BUSY_POLL"; }; then
                fio_rows aoefs-bp "$MTU" "$MNT_A/e0.1" "$rep"
                stop_aoefs
            fi
        fi

        if [ -n "$BASELINE" ]; then
            note_load "baseline aoefs rows #$rep (mtu $MTU)"
            if AOEFS_BIN=$WORK/aoefs-base start_aoefs || { log "aoefs-base: mounting again"; AOEFS_BIN=$WORK/aoefs-base start_aoefs; }; then
                fio_rows aoefs-base "$MTU" "$MNT_A/e0.1" "$rep"
                stop_aoefs
            fi
        fi

        if [ $DO_NBD = 1 ]; then
            note_load "nbdfuse rows #$rep (mtu $MTU)"
            if start_nbd; then
                fio_rows nbdfuse "$MTU" "$MNT_N/nbd" "$rep"
                fio_sweep nbdfuse "$MTU" "$MNT_N/nbd"
                # A bounded buffered read for the rate (RSS for reference).
                nb=$(( SIZE_B < (2 << 30) ? SIZE_B : (2 << 30) ))
                buffered_read nbdfuse "$MTU" "$MNT_N/nbd" "$NBDFUSE_PID" "$nb"
                stop_nbd
            fi
        fi
    done
    record_rounds "$MTU"
    teardown_net
done

python3 "$HERE/report.py" --results "$RES" --cache-mb "$CACHE_MB" --busy-poll-us "$BUSY_POLL" --busy-poll "$BP_MODE" --machine "$OUT/machine.txt" | tee "$OUT/table.md"
if [ $DO_SWEEP = 1 ]; then
    python3 "$HERE/plot.py" "$SWEEP" "$OUT/perf-plot.svg" && log "plot: $OUT/perf-plot.svg"
fi
log "results in $OUT"
