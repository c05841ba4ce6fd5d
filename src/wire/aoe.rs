//! The AoE header view (`Frame`) and message representations (`Repr`).

use super::*;

/// AoE flag bits (low nibble of byte 14).
pub const FLAG_RESPONSE: u8 = 0x08;
pub const FLAG_ERROR: u8 = 0x04;

/// ATA aflags bits.
pub const AFLAG_EXT: u8 = 0x40;
pub const AFLAG_DEV: u8 = 0x10;
pub const AFLAG_ASYNC: u8 = 0x02;
pub const AFLAG_WRITE: u8 = 0x01;

/// ATA commands we use.
pub const ATA_READ: u8 = 0x20;
pub const ATA_READ_EXT: u8 = 0x24;
pub const ATA_WRITE: u8 = 0x30;
pub const ATA_WRITE_EXT: u8 = 0x34;
pub const ATA_IDENTIFY: u8 = 0xEC;
pub const ATA_FLUSH: u8 = 0xE7;
pub const ATA_FLUSH_EXT: u8 = 0xEA;
/// ATA status bits that mean failure: BSY, DF, DRQ, ERR.
pub const ATA_STATUS_FAIL: u8 = 0xA9;
pub const ATA_STATUS_DRDY: u8 = 0x40;
/// ATA error register bits.
pub const ATA_ERR_ABRT: u8 = 0x04;
pub const ATA_ERR_IDNF: u8 = 0x10;

/// AoE commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Ata,
    QueryConfig,
    MacMask,
    Reserve,
}

impl Command {
    pub fn from_u8(v: u8) -> Result<Command> {
        Ok(match v {
            0 => Command::Ata,
            1 => Command::QueryConfig,
            2 => Command::MacMask,
            3 => Command::Reserve,
            c => return Err(WireError::UnknownCommand(c)),
        })
    }
    pub fn to_u8(self) -> u8 {
        match self {
            Command::Ata => 0,
            Command::QueryConfig => 1,
            Command::MacMask => 2,
            Command::Reserve => 3,
        }
    }
}

/// AoE error codes (byte 15 when the error flag is set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AoeError {
    BadCommand,
    BadArgument,
    DeviceUnavailable,
    ConfigStringPresent,
    UnsupportedVersion,
    TargetReserved,
    Other(u8),
}

impl AoeError {
    pub fn from_u8(v: u8) -> AoeError {
        match v {
            1 => AoeError::BadCommand,
            2 => AoeError::BadArgument,
            3 => AoeError::DeviceUnavailable,
            4 => AoeError::ConfigStringPresent,
            5 => AoeError::UnsupportedVersion,
            6 => AoeError::TargetReserved,
            o => AoeError::Other(o),
        }
    }
    pub fn to_u8(self) -> u8 {
        match self {
            AoeError::BadCommand => 1,
            AoeError::BadArgument => 2,
            AoeError::DeviceUnavailable => 3,
            AoeError::ConfigStringPresent => 4,
            AoeError::UnsupportedVersion => 5,
            AoeError::TargetReserved => 6,
            AoeError::Other(o) => o,
        }
    }
    pub fn describe(self) -> &'static str {
        match self {
            AoeError::BadCommand => "unrecognized command code",
            AoeError::BadArgument => "bad argument parameter",
            AoeError::DeviceUnavailable => "device unavailable",
            AoeError::ConfigStringPresent => "config string present",
            AoeError::UnsupportedVersion => "unsupported version",
            AoeError::TargetReserved => "target is reserved",
            AoeError::Other(_) => "unknown error",
        }
    }
}

/// A checked read (and, with a mutable buffer, write) view of an AoE frame,
/// starting at the Ethernet header.
#[derive(Debug, Clone, Copy)]
pub struct Frame<T: AsRef<[u8]>> {
    buf: T,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps a buffer without checks. Accessors may panic on short buffers.
    pub fn new_unchecked(buf: T) -> Frame<T> {
        Frame { buf }
    }
    /// Wraps a buffer after checking it holds the common header and is AoE.
    pub fn new_checked(buf: T) -> Result<Frame<T>> {
        let f = Frame { buf };
        f.check()?;
        Ok(f)
    }
    pub fn check(&self) -> Result<()> {
        let b = self.buf.as_ref();
        if b.len() < AOE_HDR_LEN {
            return Err(WireError::Truncated);
        }
        if be16(b, 12) != ETHERTYPE_AOE {
            return Err(WireError::NotAoe);
        }
        Ok(())
    }
    pub fn into_inner(self) -> T {
        self.buf
    }
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.as_ref()
    }
    pub fn dst(&self) -> Mac {
        Mac::from_slice(&self.buf.as_ref()[0..6])
    }
    pub fn src(&self) -> Mac {
        Mac::from_slice(&self.buf.as_ref()[6..12])
    }
    pub fn ethertype(&self) -> u16 {
        be16(self.buf.as_ref(), 12)
    }
    pub fn version(&self) -> u8 {
        self.buf.as_ref()[14] >> 4
    }
    pub fn flags(&self) -> u8 {
        self.buf.as_ref()[14] & 0x0f
    }
    pub fn is_response(&self) -> bool {
        self.flags() & FLAG_RESPONSE != 0
    }
    pub fn is_error(&self) -> bool {
        self.flags() & FLAG_ERROR != 0
    }
    pub fn error_code(&self) -> u8 {
        self.buf.as_ref()[15]
    }
    pub fn shelf(&self) -> u16 {
        be16(self.buf.as_ref(), 16)
    }
    pub fn slot(&self) -> u8 {
        self.buf.as_ref()[18]
    }
    pub fn command(&self) -> u8 {
        self.buf.as_ref()[19]
    }
    pub fn tag(&self) -> u32 {
        be32(self.buf.as_ref(), 20)
    }
    /// Everything after the common header (may include link padding).
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[AOE_HDR_LEN..]
    }
}

/// The common AoE header as plain values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub dst: Mac,
    pub src: Mac,
    pub response: bool,
    /// Set when the error flag is set.
    pub error: Option<AoeError>,
    pub shelf: u16,
    pub slot: u8,
    pub tag: u32,
}

/// ATA command/response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtaRepr<'a> {
    pub aflags: u8,
    /// Error register in responses, feature register in requests.
    pub err_feature: u8,
    pub sector_count: u8,
    /// Command in requests, status in responses.
    pub cmd_status: u8,
    /// 48-bit LBA (for LBA28 commands, byte 3 carries the device/head bits as sent).
    pub lba: u64,
    /// Bytes after the ATA header. In a parsed frame this may include link
    /// padding: the consumer takes `sector_count * 512` (or what it expects).
    pub data: &'a [u8],
}

impl<'a> AtaRepr<'a> {
    pub fn is_write(&self) -> bool {
        self.aflags & AFLAG_WRITE != 0
    }
    /// The first `n` data bytes, or `Truncated` if the frame is shorter.
    pub fn data_exact(&self, n: usize) -> Result<&'a [u8]> {
        self.data.get(..n).ok_or(WireError::Truncated)
    }
    /// True when the ATA status reports failure.
    pub fn failed(&self) -> bool {
        self.cmd_status & ATA_STATUS_FAIL != 0
    }
}

/// Query-config command/response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigRepr<'a> {
    pub buffer_count: u16,
    pub firmware: u16,
    /// Maximum sectors per ATA command (0 on the wire means 2).
    pub max_sectors: u8,
    /// AoE version the target speaks (high nibble of byte 29).
    pub aoe_version: u8,
    /// Config command (low nibble of byte 29): 0 read, 1 test, 2 test prefix, 3 set, 4 force set.
    pub ccmd: u8,
    pub config: &'a [u8],
}

impl ConfigRepr<'_> {
    /// Sectors per command with the "0 means 2" rule applied.
    pub fn effective_max_sectors(&self) -> u8 {
        if self.max_sectors == 0 {
            2
        } else {
            self.max_sectors
        }
    }
}

pub const CCMD_READ: u8 = 0;
pub const CCMD_TEST: u8 = 1;
pub const CCMD_TEST_PREFIX: u8 = 2;
pub const CCMD_SET: u8 = 3;
pub const CCMD_FORCE_SET: u8 = 4;

/// One MAC mask directive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Directive {
    /// 0 none, 1 add, 2 delete.
    pub dcmd: u8,
    pub mac: Mac,
}

/// MAC mask list command/response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacMaskRepr {
    /// 0 read, 1 edit.
    pub mcmd: u8,
    /// 0 ok, 1 unspecified, 2 bad dcmd, 3 list full.
    pub merror: u8,
    pub directives: Vec<Directive>,
}

/// Reserve/release command/response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveRepr {
    /// 0 read, 1 set, 2 force set.
    pub rcmd: u8,
    pub macs: Vec<Mac>,
}

/// The body of an AoE message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body<'a> {
    Ata(AtaRepr<'a>),
    Config(ConfigRepr<'a>),
    MacMask(MacMaskRepr),
    Reserve(ReserveRepr),
    /// An error response: the body is not interpreted.
    Error(Command),
}

/// A whole AoE message as plain values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repr<'a> {
    pub header: Header,
    pub body: Body<'a>,
}

impl<'a> Repr<'a> {
    /// Parses a whole frame. Never panics, whatever the input.
    pub fn parse(bytes: &'a [u8]) -> Result<Repr<'a>> {
        let f = Frame::new_checked(bytes)?;
        // vblade announces itself with version nibble 0 in the header of its
        // unsolicited config response; accept that one quirk only.
        let announce = f.version() == 0 && f.command() == 1 && f.is_response();
        if f.version() != AOE_VERSION && !announce {
            return Err(WireError::BadVersion(f.version()));
        }
        let cmd = Command::from_u8(f.command())?;
        let header = Header {
            dst: f.dst(),
            src: f.src(),
            response: f.is_response(),
            error: if f.is_error() { Some(AoeError::from_u8(f.error_code())) } else { None },
            shelf: f.shelf(),
            slot: f.slot(),
            tag: f.tag(),
        };
        let p = &bytes[AOE_HDR_LEN..];
        if header.error.is_some() {
            return Ok(Repr { header, body: Body::Error(cmd) });
        }
        let body = match cmd {
            Command::Ata => {
                if p.len() < ATA_HDR_LEN - AOE_HDR_LEN {
                    return Err(WireError::Truncated);
                }
                let mut lba = 0u64;
                for i in 0..6 {
                    lba |= (p[4 + i] as u64) << (8 * i);
                }
                Body::Ata(AtaRepr {
                    aflags: p[0],
                    err_feature: p[1],
                    sector_count: p[2],
                    cmd_status: p[3],
                    lba,
                    data: &p[12..],
                })
            }
            Command::QueryConfig => {
                if p.len() < CFG_HDR_LEN - AOE_HDR_LEN {
                    return Err(WireError::Truncated);
                }
                let len = be16(p, 6) as usize;
                if len > MAX_CONFIG_LEN {
                    return Err(WireError::BadField("config string length"));
                }
                let config = p.get(8..8 + len).ok_or(WireError::Truncated)?;
                Body::Config(ConfigRepr {
                    buffer_count: be16(p, 0),
                    firmware: be16(p, 2),
                    max_sectors: p[4],
                    aoe_version: p[5] >> 4,
                    ccmd: p[5] & 0x0f,
                    config,
                })
            }
            Command::MacMask => {
                if p.len() < 4 {
                    return Err(WireError::Truncated);
                }
                let n = p[3] as usize;
                let list = p.get(4..4 + 8 * n).ok_or(WireError::Truncated)?;
                let directives =
                    list.chunks_exact(8).map(|d| Directive { dcmd: d[1], mac: Mac::from_slice(&d[2..8]) }).collect();
                Body::MacMask(MacMaskRepr { mcmd: p[1], merror: p[2], directives })
            }
            Command::Reserve => {
                if p.len() < 2 {
                    return Err(WireError::Truncated);
                }
                let n = p[1] as usize;
                let list = p.get(2..2 + 6 * n).ok_or(WireError::Truncated)?;
                let macs = list.chunks_exact(6).map(Mac::from_slice).collect();
                Body::Reserve(ReserveRepr { rcmd: p[0], macs })
            }
        };
        Ok(Repr { header, body })
    }

    pub fn command(&self) -> Command {
        match &self.body {
            Body::Ata(_) => Command::Ata,
            Body::Config(_) => Command::QueryConfig,
            Body::MacMask(_) => Command::MacMask,
            Body::Reserve(_) => Command::Reserve,
            Body::Error(c) => *c,
        }
    }

    /// Bytes `emit` writes.
    pub fn buffer_len(&self) -> usize {
        AOE_HDR_LEN
            + match &self.body {
                Body::Ata(a) => 12 + a.data.len(),
                Body::Config(c) => 8 + c.config.len(),
                Body::MacMask(m) => 4 + 8 * m.directives.len(),
                Body::Reserve(r) => 2 + 6 * r.macs.len(),
                Body::Error(_) => 0,
            }
    }

    /// Writes the frame into `buf` and returns its length (no padding added).
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let len = self.buffer_len();
        if buf.len() < len {
            return Err(WireError::BufferTooSmall);
        }
        let h = &self.header;
        buf[0..6].copy_from_slice(&h.dst.0);
        buf[6..12].copy_from_slice(&h.src.0);
        buf[12..14].copy_from_slice(&ETHERTYPE_AOE.to_be_bytes());
        let mut flags = 0;
        if h.response {
            flags |= FLAG_RESPONSE;
        }
        if h.error.is_some() {
            flags |= FLAG_ERROR;
        }
        buf[14] = (AOE_VERSION << 4) | flags;
        buf[15] = h.error.map(|e| e.to_u8()).unwrap_or(0);
        buf[16..18].copy_from_slice(&h.shelf.to_be_bytes());
        buf[18] = h.slot;
        buf[19] = self.command().to_u8();
        buf[20..24].copy_from_slice(&h.tag.to_be_bytes());
        let p = &mut buf[AOE_HDR_LEN..len];
        match &self.body {
            Body::Ata(a) => {
                p[0] = a.aflags;
                p[1] = a.err_feature;
                p[2] = a.sector_count;
                p[3] = a.cmd_status;
                for i in 0..6 {
                    p[4 + i] = (a.lba >> (8 * i)) as u8;
                }
                p[10] = 0;
                p[11] = 0;
                p[12..].copy_from_slice(a.data);
            }
            Body::Config(c) => {
                if c.config.len() > MAX_CONFIG_LEN {
                    return Err(WireError::BadField("config string length"));
                }
                p[0..2].copy_from_slice(&c.buffer_count.to_be_bytes());
                p[2..4].copy_from_slice(&c.firmware.to_be_bytes());
                p[4] = c.max_sectors;
                p[5] = (c.aoe_version << 4) | (c.ccmd & 0x0f);
                p[6..8].copy_from_slice(&(c.config.len() as u16).to_be_bytes());
                p[8..].copy_from_slice(c.config);
            }
            Body::MacMask(m) => {
                if m.directives.len() > 255 {
                    return Err(WireError::BadField("directive count"));
                }
                p[0] = 0;
                p[1] = m.mcmd;
                p[2] = m.merror;
                p[3] = m.directives.len() as u8;
                for (i, d) in m.directives.iter().enumerate() {
                    let o = 4 + 8 * i;
                    p[o] = 0;
                    p[o + 1] = d.dcmd;
                    p[o + 2..o + 8].copy_from_slice(&d.mac.0);
                }
            }
            Body::Reserve(r) => {
                if r.macs.len() > 255 {
                    return Err(WireError::BadField("MAC count"));
                }
                p[0] = r.rcmd;
                p[1] = r.macs.len() as u8;
                for (i, m) in r.macs.iter().enumerate() {
                    p[2 + 6 * i..8 + 6 * i].copy_from_slice(&m.0);
                }
            }
            Body::Error(_) => {}
        }
        Ok(len)
    }
}

/// Writes just an ATA request header into `buf[..ATA_HDR_LEN]` (hot path: the
/// caller fills the data area itself, with no intermediate copy).
#[allow(clippy::too_many_arguments)]
pub fn emit_ata_header(
    buf: &mut [u8],
    dst: Mac,
    src: Mac,
    shelf: u16,
    slot: u8,
    tag: u32,
    aflags: u8,
    sector_count: u8,
    cmd: u8,
    lba: u64,
) {
    buf[0..6].copy_from_slice(&dst.0);
    buf[6..12].copy_from_slice(&src.0);
    buf[12..14].copy_from_slice(&ETHERTYPE_AOE.to_be_bytes());
    buf[14] = AOE_VERSION << 4;
    buf[15] = 0;
    buf[16..18].copy_from_slice(&shelf.to_be_bytes());
    buf[18] = slot;
    buf[19] = 0;
    buf[20..24].copy_from_slice(&tag.to_be_bytes());
    buf[24] = aflags;
    buf[25] = 0;
    buf[26] = sector_count;
    buf[27] = cmd;
    for i in 0..6 {
        buf[28 + i] = (lba >> (8 * i)) as u8;
    }
    buf[34] = 0;
    buf[35] = 0;
}

/// LBA and aflags for an ATA read/write/flush command of a target with or
/// without LBA48, following the Linux driver: LBA28 commands carry the device
/// bits 0xE0 in byte 3 of the LBA.
pub fn ata_lba_fields(lba48: bool, lba: u64) -> (u8, u64) {
    if lba48 {
        (AFLAG_EXT, lba & 0xFFFF_FFFF_FFFF)
    } else {
        let l = lba & 0x0FFF_FFFF;
        (0, l | (0xE0u64 << 24))
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
