import socket, struct, sys, time, select

IFACE = "wci"
ETH = 0x88A2
SRC = bytes.fromhex("020000000a01")
BCAST = b"\xff" * 6

def pattern(n):
    return bytes(((i * 7 + 3) & 0xFF) for i in range(n))

def hdr(dst, shelf, slot, cmd, tag, flags=0, err=0):
    return dst + SRC + struct.pack(">HBBHBBI", ETH, 0x10 | flags, err, shelf, slot, cmd, tag)

def ata(dst, tag, aflags, count, cmd, lba, data=b"", feature=0, shelf=0, slot=1):
    l = lba.to_bytes(6, "little")
    return hdr(dst, shelf, slot, 0, tag) + bytes([aflags, feature, count, cmd]) + l + b"\0\0" + data

def cfg(dst, tag, ccmd=0, s=b"", shelf=0xFFFF, slot=0xFF):
    return hdr(dst, shelf, slot, 1, tag) + struct.pack(">HHBBH", 0, 0, 0, ccmd, len(s)) + s

s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH))
s.bind((IFACE, ETH))

def xchg(frame, name, wait=0.5):
    s.send(frame)
    print("sent", name, len(frame), flush=True)
    end = time.time() + wait
    target = None
    while time.time() < end:
        r, _, _ = select.select([s], [], [], max(0, end - time.time()))
        if not r:
            break
        p = s.recv(4096)
        if p[6:12] == SRC:
            continue
        print("  got", len(p), p[:40].hex(), flush=True)
        target = p[6:12]
    return target

mode = sys.argv[1]
time.sleep(0.5)
T = 0x80000000
tgt = xchg(cfg(BCAST, T | 1), "bcast qc")
if tgt is None:
    print("no target!"); sys.exit(1)
if mode == "main":
    xchg(ata(tgt, T | 2, 0x00, 1, 0xEC, 0), "identify")
    xchg(ata(tgt, T | 3, 0x40, 2, 0x24, 4), "read48 2 (zeros)")
    xchg(ata(tgt, T | 4, 0x41, 2, 0x34, 4, pattern(1024)), "write48 2 pattern")
    xchg(ata(tgt, T | 5, 0x40, 2, 0x24, 4), "read48 2 (pattern)")
    xchg(ata(tgt, T | 6, 0x00, 0, 0xE7, 0), "flush")
    xchg(ata(tgt, T | 7, 0x40, 0, 0xEA, 0), "flush ext")
    xchg(ata(tgt, T | 8, 0x40, 1, 0x24, 2048), "read past end")
    xchg(hdr(tgt, 0, 1, 2, T | 9) + bytes([0, 0, 0, 0]), "mac mask read")
    xchg(hdr(tgt, 0, 1, 3, T | 10) + bytes([0, 0]), "reserve read")
    xchg(ata(tgt, T | 11, 0x40, 3, 0x24, 0), "too many sectors")
    xchg(ata(tgt, T | 12, 0xE0 & 0, 1, 0x20, 0xE0000004), "read28 1")
    xchg(hdr(tgt, 0, 1, 9, T | 13) + bytes(8), "unknown aoe cmd 9")
else:
    xchg(cfg(tgt, T | 0x21, 0, shelf=0, slot=1), "unicast qc read")
    xchg(cfg(tgt, T | 0x22, 3, b"aoefs capture config string v1", shelf=0, slot=1), "qc set")
    xchg(cfg(tgt, T | 0x23, 0, shelf=0, slot=1), "qc read after set")
    xchg(cfg(tgt, T | 0x24, 3, b"other", shelf=0, slot=1), "qc set other (expect err 4)")
    xchg(cfg(BCAST, T | 0x25, 2, b"aoefs", shelf=0xFFFF, slot=0xFF), "qc test prefix")
    xchg(ata(tgt, T | 0x26, 0x00, 1, 0xEC, 0), "identify")
