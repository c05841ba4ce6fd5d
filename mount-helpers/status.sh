#!/bin/sh
# status.sh (installed as aoefs-status) -- one line per AoE target of an
# aoefs mount: device, network interface(s) and state, sorted by name.
#
#   status.sh [MOUNTPOINT]
#
# The mount point is the argument, else $sysfs_dir (the variable aoe-stat
# uses: the mount point or its sys/ directory), else /mnt/etherd. The table
# has the layout of the kernel's Documentation/aoe/status.sh, read from
# MOUNTPOINT/block/eX.Y/{netif,state} (or MOUNTPOINT/sys/block/etherd!eX.Y,
# the names /sys/block gives them) instead of /sys/block/etherd!eX.Y.
# Partitions (names with a "p") are left out, as there. For sizes and
# payloads use "aoefs stat" or aoe-stat.

me=${0##*/}
mnt=${1:-${sysfs_dir:-/mnt/etherd}}

if [ ! -d "$mnt/block" ]; then
    echo "$me: $mnt/block: no such directory (is an aoefs mount at $mnt?)" >&2
    exit 1
fi

format='%8s\t%8s\t%8s\n'

# Sort the names first (byte order: e10.0 before e4.0, as in the kernel's
# example), so the table does not depend on the locale or the padding.
ls -1 "$mnt/block" 2>/dev/null | sed 's/^etherd!//' | LC_ALL=C sort | while IFS= read -r dev; do
    case $dev in
        e[0-9]*.[0-9]*) ;;
        *) continue ;;
    esac
    case $dev in *p*) continue ;; esac
    d=$mnt/block/$dev
    [ -d "$d" ] || d=$mnt/block/etherd!$dev
    # a target flushed meanwhile: leave it out
    [ -d "$d" ] || continue
    netif=$(cat "$d/netif" 2>/dev/null)
    state=$(cat "$d/state" 2>/dev/null)
    printf "$format" "$dev" "$netif" "$state"
done
