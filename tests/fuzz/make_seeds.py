#!/usr/bin/env python3
"""Writes the fuzz seed corpus under tests/fuzz/seeds/TARGET/ from the vblade
captures (tests/data/captures/*.pcap) plus a few hand-written strings. Deterministic; rerun after adding captures.

    python3 tests/fuzz/make_seeds.py
"""
import glob
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CAPS = os.path.join(HERE, "..", "data", "captures")
SEEDS = os.path.join(HERE, "seeds")
sys.path.insert(0, CAPS)
sys.dont_write_bytecode = True  # no __pycache__ beside the captures
from pcap_dump import frames  # noqa: E402


def put(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    shutil.rmtree(SEEDS, ignore_errors=True)
    n = 0
    for pcap in sorted(glob.glob(os.path.join(CAPS, "*.pcap"))):
        base = os.path.splitext(os.path.basename(pcap))[0]
        for idx, frame in enumerate(frames(pcap), 1):
            put("repr_parse", "%s-%03d" % (base, idx), frame)
            n += 1
            # ATA responses carrying data: the data area seeds IDENTIFY parsing
            if len(frame) >= 36 + 512 and frame[19] == 0 and frame[14] & 0x08:
                put("identify_parse", "%s-%03d" % (base, idx), frame[36:36 + 512])
    for i, s in enumerate(["e0.1", "e65534.254", " e10.3\n", "e1.2.3", "e.1", "e99999999999.1",
                           "e0.0\x00", "E0.1", "e+1.2", "e٣.1"]):
        put("parse_dev_name", "s%02d" % i, s.encode())
    for i, s in enumerate(["eth0", "eth1 eth3", "aoei0,aoei1", " a ,, b\t\nc a ", "", ",,,", "x" * 20,
                           "e\u00e9th0 eth0"]):
        put("split_iflist", "s%02d" % i, s.encode())
    print("wrote %d frames from the captures into %s" % (n, SEEDS))


if __name__ == "__main__":
    main()
