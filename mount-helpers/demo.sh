#!/usr/bin/env bash
# aoefs demo: start a real vblade AoE target in a network namespace, mount it
# with aoefs, show the mount, use it, and tear everything down again.
#
#   ./mount-helpers/demo.sh            # the default demo (as root)
#   KEEP=1 ./mount-helpers/demo.sh     # leave it mounted; Enter tears down
#
# Traffic stays on a veth pair between two network namespaces that this
# script creates (aoefs-demo-i, aoefs-demo-t); no real interface is used.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
ns_i=aoefs-demo-i ns_t=aoefs-demo-t
if_i=aoedemo0 if_t=aoedemo1
work=$(mktemp -d /tmp/aoefs-demo.XXXXXX)
# aoe-stat skips any path containing the letter "p", so not under /tmp.
mnt=/mnt/etherd-demo.$$
size=${SIZE:-256M}

need_root() { [ "$(id -u)" = 0 ] || { echo "demo.sh: run as root (network namespaces, FUSE mount)" >&2; exit 1; }; }
need_root

install_deps() {
    local missing=()
    for c in vblade:vblade aoe-stat:aoetools fusermount3:fuse3 mkfs.ext4:e2fsprogs ip:iproute2 nsenter:util-linux; do
        command -v "${c%%:*}" >/dev/null || missing+=("${c##*:}")
    done
    [ -e /usr/include/pcap.h ] || missing+=(libpcap-dev)
    command -v pkg-config >/dev/null || missing+=(pkg-config)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "== installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

cleanup() {
    set +e
    [ -n "${aoefs_pid:-}" ] && kill "$aoefs_pid" 2>/dev/null
    mountpoint -q "$work/ext4" 2>/dev/null && umount "$work/ext4"
    [ -n "${loopdev:-}" ] && losetup -d "$loopdev" 2>/dev/null
    mountpoint -q "$mnt" && { fusermount3 -u -z "$mnt" 2>/dev/null || umount -l "$mnt"; }
    ip netns pids "$ns_t" 2>/dev/null | xargs -r kill 2>/dev/null
    sleep 0.2
    ip netns del "$ns_i" 2>/dev/null
    ip netns del "$ns_t" 2>/dev/null
    rmdir "$mnt" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

install_deps
echo "== building aoefs"
(cd "$here" && cargo build --release -q)
aoefs=$here/target/release/aoefs

echo "== a target: vblade serving a $size file as shelf 0, slot 1, in namespace $ns_t"
ip netns del "$ns_i" 2>/dev/null || true
ip netns del "$ns_t" 2>/dev/null || true
ip netns add "$ns_i"
ip netns add "$ns_t"
ip link add "$if_i" netns "$ns_i" type veth peer name "$if_t" netns "$ns_t"
ip -n "$ns_i" link set "$if_i" mtu 9000 up
ip -n "$ns_t" link set "$if_t" mtu 9000 up
truncate -s "$size" "$work/disk.img"
ip netns exec "$ns_t" vblade 0 1 "$if_t" "$work/disk.img" >"$work/vblade.log" 2>&1 &
sleep 0.3

echo "== aoefs $mnt --iflist $if_i   (in namespace $ns_i)"
mkdir -p "$mnt"
nsenter --net=/run/netns/"$ns_i" "$aoefs" "$mnt" --iflist "$if_i"
aoefs_pid=$(pgrep -n -f "aoefs $mnt") || true

run() { echo "\$ $*"; "$@"; }
run ls -l "$mnt"
run cat "$mnt/block/e0.1/state" "$mnt/block/e0.1/mac" "$mnt/block/e0.1/netif" "$mnt/block/e0.1/payload"
run "$aoefs" stat "$mnt"
echo "\$ sysfs_dir=$mnt/sys aoe-stat"; sysfs_dir="$mnt/sys" aoe-stat
run dd if=/dev/urandom of="$work/data" bs=1M count=16 status=none
run dd if="$work/data" of="$mnt/e0.1" bs=1M oflag=direct conv=notrunc,fsync status=none
echo "\$ cmp <(dd if=$work/disk.img bs=1M count=16) $work/data"
cmp <(dd if="$work/disk.img" bs=1M count=16 status=none) "$work/data" && echo "the target's backing file holds what was written"
loopdev=$(losetup --find --show --direct-io=on "$mnt/e0.1")
echo "\$ losetup --find --show --direct-io=on $mnt/e0.1   -> $loopdev"
run mkfs.ext4 -q -F "$loopdev"
mkdir -p "$work/ext4"
run mount "$loopdev" "$work/ext4"
run cp -r "$here/src" "$work/ext4/"
run df -h "$work/ext4"
run umount "$work/ext4"
run fsck.ext4 -n -f "$loopdev"
losetup -d "$loopdev"; loopdev=
if [ -n "${KEEP:-}" ]; then
    echo "== mounted at $mnt; press Enter to unmount and clean up"
    read -r _
fi
echo "== unmounting"
run umount "$mnt"
echo "demo done"
