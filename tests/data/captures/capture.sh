#!/bin/bash
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-/tmp/wcap/out}  # raw pcapng here; then: editcap -F pcap IN.pcap OUT.pcap
mkdir -p $OUT
cleanup() {
  for p in ${PIDS:-}; do kill $p 2>/dev/null; done
  sleep 0.5
  ip netns del wcap-i 2>/dev/null
  ip netns del wcap-t 2>/dev/null
  ip link del wci 2>/dev/null
}
trap cleanup EXIT
ip netns add wcap-i || exit 1
ip netns add wcap-t || exit 1
ip link add wci type veth peer name wct || exit 1
ip link set wci netns wcap-i; ip link set wct netns wcap-t
ip -n wcap-i link set wci address 02:00:00:00:0a:01 mtu 1500
ip -n wcap-t link set wct address 02:00:00:00:0b:01 mtu 1500
for ns in wcap-i:wci wcap-t:wct; do n=${ns%%:*}; i=${ns##*:}
  ip netns exec $n sysctl -qw net.ipv6.conf.all.disable_ipv6=1
  ip -n $n link set lo up; ip -n $n link set $i up; done
truncate -s 1M $OUT/disk.img
dd if=/dev/zero of=$OUT/disk.img bs=1M count=1 conv=notrunc 2>/dev/null
sleep 1
run() { # name vblade-args mode
  PIDS=""
  ip netns exec wcap-i tshark -q -i wci -f "ether proto 0x88a2" -w $OUT/$1.pcap 2>$OUT/$1.tshark.err &
  PIDS="$!"; sleep 3
  ip netns exec wcap-t vblade $2 0 1 wct $OUT/disk.img >$OUT/$1.vblade.log 2>&1 &
  PIDS="$PIDS $!"; sleep 1
  ip netns exec wcap-i timeout 60 python3 $HERE/send.py $3 > $OUT/$1.send.log 2>&1
  echo "send rc=$?"
  sleep 1
  for p in $PIDS; do kill $p; done; sleep 1; PIDS=""
}
run vblade-b16 "" main
run vblade-b4 "-b 4" cfg
