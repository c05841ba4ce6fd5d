import struct, sys
def frames(path):
    d = open(path, 'rb').read()
    magic = struct.unpack('<I', d[:4])[0]
    assert magic in (0xa1b2c3d4, 0xa1b23c4d), hex(magic)
    off = 24; out = []
    while off < len(d):
        ts, tu, incl, orig = struct.unpack('<IIII', d[off:off+16]); off += 16
        out.append(d[off:off+incl]); off += incl
    return out
if __name__ == '__main__':
    for i, f in enumerate(frames(sys.argv[1]), 1):
        print(i, len(f), f.hex())
