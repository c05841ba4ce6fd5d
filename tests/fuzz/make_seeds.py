#!/usr/bin/env python3
"""Writes the fuzz seed corpus under tests/fuzz/seeds/TARGET/ from the vblade
captures (tests/data/captures/*.hex: `index length hex` per frame) plus a few
hand-written strings. Deterministic; rerun after adding captures.

    python3 tests/fuzz/make_seeds.py
"""
import glob
import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
CAPS = os.path.join(HERE, "..", "data", "captures")
SEEDS = os.path.join(HERE, "seeds")


def put(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    shutil.rmtree(SEEDS, ignore_errors=True)
    n = 0
    for hexfile in sorted(glob.glob(os.path.join(CAPS, "*.hex"))):
        base = os.path.splitext(os.path.basename(hexfile))[0]
        for line in open(hexfile):
            parts = line.split()
            if len(parts) != 3:
                continue
            idx, length, hx = parts
            frame = bytes.fromhex(hx)
            assert len(frame) == int(length), (hexfile, idx)
            put("repr_parse", "%s-%03d" % (base, int(idx)), frame)
            n += 1
            # ATA responses carrying data: the data area seeds IDENTIFY parsing
            if len(frame) >= 36 + 512 and frame[19] == 0 and frame[14] & 0x08:
                put("identify_parse", "%s-%03d" % (base, int(idx)), frame[36:36 + 512])
    for i, s in enumerate(["e0.1", "e65534.254", " e10.3\n", "e1.2.3", "e.1", "e99999999999.1",
                           "e0.0\x00", "E0.1", "e+1.2", "e٣.1"]):
        put("parse_dev_name", "s%02d" % i, s.encode())
    for i, s in enumerate(["eth0", "eth1 eth3", "aoei0,aoei1", " a ,, b\t\nc a ", "", ",,,", "x" * 20,
                           "e\u00e9th0 eth0"]):
        put("split_iflist", "s%02d" % i, s.encode())
    print("wrote %d frames from the captures into %s" % (n, SEEDS))


if __name__ == "__main__":
    main()
