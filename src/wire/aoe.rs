//! The view that reads and writes the AoE header fields (`Frame`, over the
//! byte ranges of `field`), message representations (`Repr`) and the
//! hot-path ATA request header (`AtaHeader`).

use super::*;
use field::Field;

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
/// ATA status bit ERR: the error register says why the command failed.
pub const ATA_STATUS_ERR: u8 = 0x01;
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

/// A view of an AoE frame, starting at the Ethernet header: accessors read
/// its fields and, over a mutable buffer, setters write them. Accessors of a
/// command's header assume the buffer holds it (`Repr::parse` checks).
#[derive(Debug, Clone, Copy)]
pub struct Frame<T: AsRef<[u8]>> {
    buf: T,
}

fn be16(b: &[u8], at: Field) -> u16 {
    u16::from_be_bytes([b[at.start], b[at.start + 1]])
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
        if self.buf.as_ref().len() < AOE_HDR_LEN {
            return Err(WireError::Truncated);
        }
        if self.ethertype() != ETHERTYPE_AOE {
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
    fn byte(&self, at: usize) -> u8 {
        self.buf.as_ref()[at]
    }

    pub fn dst(&self) -> Mac {
        Mac::from_slice(&self.buf.as_ref()[field::DST])
    }
    pub fn src(&self) -> Mac {
        Mac::from_slice(&self.buf.as_ref()[field::SRC])
    }
    pub fn ethertype(&self) -> u16 {
        be16(self.buf.as_ref(), field::ETHERTYPE)
    }
    pub fn version(&self) -> u8 {
        self.byte(field::VER_FLAGS) >> 4
    }
    pub fn flags(&self) -> u8 {
        self.byte(field::VER_FLAGS) & 0x0f
    }
    pub fn is_response(&self) -> bool {
        self.flags() & FLAG_RESPONSE != 0
    }
    pub fn is_error(&self) -> bool {
        self.flags() & FLAG_ERROR != 0
    }
    pub fn error_code(&self) -> u8 {
        self.byte(field::ERROR)
    }
    pub fn shelf(&self) -> u16 {
        be16(self.buf.as_ref(), field::SHELF)
    }
    pub fn slot(&self) -> u8 {
        self.byte(field::SLOT)
    }
    pub fn command(&self) -> u8 {
        self.byte(field::COMMAND)
    }
    pub fn tag(&self) -> u32 {
        let b = &self.buf.as_ref()[field::TAG];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }
    /// Everything after the common header (may include link padding).
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[AOE_HDR_LEN..]
    }

    // ATA header.
    pub fn aflags(&self) -> u8 {
        self.byte(field::AFLAGS)
    }
    pub fn err_feature(&self) -> u8 {
        self.byte(field::ERR_FEATURE)
    }
    pub fn sector_count(&self) -> u8 {
        self.byte(field::SECTOR_COUNT)
    }
    pub fn cmd_status(&self) -> u8 {
        self.byte(field::CMD_STATUS)
    }
    /// The 48-bit LBA (six bytes, least significant first).
    pub fn lba(&self) -> u64 {
        let mut b = [0u8; 8];
        b[..6].copy_from_slice(&self.buf.as_ref()[field::LBA]);
        u64::from_le_bytes(b)
    }

    // Query-config header.
    pub fn buffer_count(&self) -> u16 {
        be16(self.buf.as_ref(), field::BUFFER_COUNT)
    }
    pub fn firmware(&self) -> u16 {
        be16(self.buf.as_ref(), field::FIRMWARE)
    }
    pub fn max_sectors(&self) -> u8 {
        self.byte(field::MAX_SECTORS)
    }
    /// The AoE version the config body states (not the header's).
    pub fn config_version(&self) -> u8 {
        self.byte(field::VER_CCMD) >> 4
    }
    pub fn ccmd(&self) -> u8 {
        self.byte(field::VER_CCMD) & 0x0f
    }
    pub fn config_len(&self) -> u16 {
        be16(self.buf.as_ref(), field::CONFIG_LEN)
    }

    // MAC mask list header.
    pub fn mcmd(&self) -> u8 {
        self.byte(field::MCMD)
    }
    pub fn merror(&self) -> u8 {
        self.byte(field::MERROR)
    }
    pub fn dir_count(&self) -> u8 {
        self.byte(field::DIR_COUNT)
    }

    // Reserve/release header.
    pub fn rcmd(&self) -> u8 {
        self.byte(field::RCMD)
    }
    pub fn nmacs(&self) -> u8 {
        self.byte(field::NMACS)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        self.buf.as_mut()
    }
    fn set_byte(&mut self, at: usize, v: u8) {
        self.buf.as_mut()[at] = v;
    }
    fn set_bytes(&mut self, at: Field, v: &[u8]) {
        self.buf.as_mut()[at].copy_from_slice(v);
    }

    pub fn set_dst(&mut self, m: Mac) {
        self.set_bytes(field::DST, &m.0);
    }
    pub fn set_src(&mut self, m: Mac) {
        self.set_bytes(field::SRC, &m.0);
    }
    pub fn set_ethertype(&mut self, v: u16) {
        self.set_bytes(field::ETHERTYPE, &v.to_be_bytes());
    }
    /// Sets the version nibble, keeping the flags.
    pub fn set_version(&mut self, v: u8) {
        let b = self.byte(field::VER_FLAGS);
        self.set_byte(field::VER_FLAGS, (v << 4) | (b & 0x0f));
    }
    /// Sets the flags nibble, keeping the version.
    pub fn set_flags(&mut self, v: u8) {
        let b = self.byte(field::VER_FLAGS);
        self.set_byte(field::VER_FLAGS, (b & 0xf0) | (v & 0x0f));
    }
    pub fn set_error_code(&mut self, v: u8) {
        self.set_byte(field::ERROR, v);
    }
    pub fn set_shelf(&mut self, v: u16) {
        self.set_bytes(field::SHELF, &v.to_be_bytes());
    }
    pub fn set_slot(&mut self, v: u8) {
        self.set_byte(field::SLOT, v);
    }
    pub fn set_command(&mut self, v: u8) {
        self.set_byte(field::COMMAND, v);
    }
    pub fn set_tag(&mut self, v: u32) {
        self.set_bytes(field::TAG, &v.to_be_bytes());
    }

    // ATA header.
    pub fn set_aflags(&mut self, v: u8) {
        self.set_byte(field::AFLAGS, v);
    }
    pub fn set_err_feature(&mut self, v: u8) {
        self.set_byte(field::ERR_FEATURE, v);
    }
    pub fn set_sector_count(&mut self, v: u8) {
        self.set_byte(field::SECTOR_COUNT, v);
    }
    pub fn set_cmd_status(&mut self, v: u8) {
        self.set_byte(field::CMD_STATUS, v);
    }
    /// Writes the low 48 bits of `lba`, least significant byte first.
    pub fn set_lba(&mut self, lba: u64) {
        self.set_bytes(field::LBA, &lba.to_le_bytes()[..6]);
    }

    // Query-config header.
    pub fn set_buffer_count(&mut self, v: u16) {
        self.set_bytes(field::BUFFER_COUNT, &v.to_be_bytes());
    }
    pub fn set_firmware(&mut self, v: u16) {
        self.set_bytes(field::FIRMWARE, &v.to_be_bytes());
    }
    pub fn set_max_sectors(&mut self, v: u8) {
        self.set_byte(field::MAX_SECTORS, v);
    }
    /// Sets the config body's version nibble, keeping ccmd.
    pub fn set_config_version(&mut self, v: u8) {
        let b = self.byte(field::VER_CCMD);
        self.set_byte(field::VER_CCMD, (v << 4) | (b & 0x0f));
    }
    /// Sets ccmd, keeping the config body's version nibble.
    pub fn set_ccmd(&mut self, v: u8) {
        let b = self.byte(field::VER_CCMD);
        self.set_byte(field::VER_CCMD, (b & 0xf0) | (v & 0x0f));
    }
    pub fn set_config_len(&mut self, v: u16) {
        self.set_bytes(field::CONFIG_LEN, &v.to_be_bytes());
    }

    // MAC mask list header.
    pub fn set_mcmd(&mut self, v: u8) {
        self.set_byte(field::MCMD, v);
    }
    pub fn set_merror(&mut self, v: u8) {
        self.set_byte(field::MERROR, v);
    }
    pub fn set_dir_count(&mut self, v: u8) {
        self.set_byte(field::DIR_COUNT, v);
    }

    // Reserve/release header.
    pub fn set_rcmd(&mut self, v: u8) {
        self.set_byte(field::RCMD, v);
    }
    pub fn set_nmacs(&mut self, v: u8) {
        self.set_byte(field::NMACS, v);
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

impl<'a> ConfigRepr<'a> {
    /// A query-config command (an initiator's request) with config command
    /// `ccmd` and string `config`; the fields a target fills in are zero.
    pub fn query(ccmd: u8, config: &'a [u8]) -> ConfigRepr<'a> {
        ConfigRepr { buffer_count: 0, firmware: 0, max_sectors: 0, aoe_version: 0, ccmd, config }
    }

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
        if header.error.is_some() {
            return Ok(Repr { header, body: Body::Error(cmd) });
        }
        let body = match cmd {
            Command::Ata => {
                if bytes.len() < ATA_HDR_LEN {
                    return Err(WireError::Truncated);
                }
                Body::Ata(AtaRepr {
                    aflags: f.aflags(),
                    err_feature: f.err_feature(),
                    sector_count: f.sector_count(),
                    cmd_status: f.cmd_status(),
                    lba: f.lba(),
                    data: &bytes[field::ATA_DATA..],
                })
            }
            Command::QueryConfig => {
                if bytes.len() < CFG_HDR_LEN {
                    return Err(WireError::Truncated);
                }
                let len = f.config_len() as usize;
                if len > MAX_CONFIG_LEN {
                    return Err(WireError::BadField("config string length"));
                }
                let config = bytes.get(field::CONFIG(len)).ok_or(WireError::Truncated)?;
                Body::Config(ConfigRepr {
                    buffer_count: f.buffer_count(),
                    firmware: f.firmware(),
                    max_sectors: f.max_sectors(),
                    aoe_version: f.config_version(),
                    ccmd: f.ccmd(),
                    config,
                })
            }
            Command::MacMask => {
                if bytes.len() < MASK_HDR_LEN {
                    return Err(WireError::Truncated);
                }
                let list = bytes.get(field::DIRECTIVES(f.dir_count() as usize)).ok_or(WireError::Truncated)?;
                let directives = list
                    .chunks_exact(field::DIR_LEN)
                    .map(|d| Directive { dcmd: d[field::DIR_DCMD], mac: Mac::from_slice(&d[field::DIR_MAC]) })
                    .collect();
                Body::MacMask(MacMaskRepr { mcmd: f.mcmd(), merror: f.merror(), directives })
            }
            Command::Reserve => {
                if bytes.len() < RESERVE_HDR_LEN {
                    return Err(WireError::Truncated);
                }
                let list = bytes.get(field::MACS(f.nmacs() as usize)).ok_or(WireError::Truncated)?;
                let macs = list.chunks_exact(field::MAC_LEN).map(Mac::from_slice).collect();
                Body::Reserve(ReserveRepr { rcmd: f.rcmd(), macs })
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
        match &self.body {
            Body::Ata(a) => ATA_HDR_LEN + a.data.len(),
            Body::Config(c) => field::CONFIG(c.config.len()).end,
            Body::MacMask(m) => field::DIRECTIVES(m.directives.len()).end,
            Body::Reserve(r) => field::MACS(r.macs.len()).end,
            Body::Error(_) => AOE_HDR_LEN,
        }
    }

    /// Writes the frame into `buf` and returns its length (no padding added).
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let len = self.buffer_len();
        if buf.len() < len {
            return Err(WireError::BufferTooSmall);
        }
        let mut f = Frame::new_unchecked(&mut buf[..len]);
        self.header.emit(&mut f, self.command());
        match &self.body {
            Body::Ata(a) => {
                a.emit_header(&mut f);
                f.as_bytes_mut()[field::ATA_DATA..].copy_from_slice(a.data);
            }
            Body::Config(c) => {
                if c.config.len() > MAX_CONFIG_LEN {
                    return Err(WireError::BadField("config string length"));
                }
                f.set_buffer_count(c.buffer_count);
                f.set_firmware(c.firmware);
                f.set_max_sectors(c.max_sectors);
                f.set_config_version(c.aoe_version);
                f.set_ccmd(c.ccmd);
                f.set_config_len(c.config.len() as u16);
                f.set_bytes(field::CONFIG(c.config.len()), c.config);
            }
            Body::MacMask(m) => {
                let n = m.directives.len();
                if n > 255 {
                    return Err(WireError::BadField("directive count"));
                }
                f.set_byte(field::MASK_RESERVED, 0);
                f.set_mcmd(m.mcmd);
                f.set_merror(m.merror);
                f.set_dir_count(n as u8);
                let list = &mut f.as_bytes_mut()[field::DIRECTIVES(n)];
                for (d, out) in m.directives.iter().zip(list.chunks_exact_mut(field::DIR_LEN)) {
                    out[field::DIR_RESERVED] = 0;
                    out[field::DIR_DCMD] = d.dcmd;
                    out[field::DIR_MAC].copy_from_slice(&d.mac.0);
                }
            }
            Body::Reserve(r) => {
                let n = r.macs.len();
                if n > 255 {
                    return Err(WireError::BadField("MAC count"));
                }
                f.set_rcmd(r.rcmd);
                f.set_nmacs(n as u8);
                let list = &mut f.as_bytes_mut()[field::MACS(n)];
                for (m, out) in r.macs.iter().zip(list.chunks_exact_mut(field::MAC_LEN)) {
                    out.copy_from_slice(&m.0);
                }
            }
            Body::Error(_) => {}
        }
        Ok(len)
    }
}

impl Header {
    /// Writes the common header of a `command` frame, AoE version 1.
    /// Inlined so that in `AtaHeader::emit` (once per frame) the setters fold
    /// into one length check and straight stores.
    #[inline(always)]
    fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, f: &mut Frame<T>, command: Command) {
        let mut flags = 0;
        if self.response {
            flags |= FLAG_RESPONSE;
        }
        if self.error.is_some() {
            flags |= FLAG_ERROR;
        }
        f.set_dst(self.dst);
        f.set_src(self.src);
        f.set_ethertype(ETHERTYPE_AOE);
        f.set_version(AOE_VERSION);
        f.set_flags(flags);
        f.set_error_code(self.error.map_or(0, AoeError::to_u8));
        f.set_shelf(self.shelf);
        f.set_slot(self.slot);
        f.set_command(command.to_u8());
        f.set_tag(self.tag);
    }
}

impl AtaRepr<'_> {
    /// Writes the ATA header (not the data), reserved bytes zero.
    #[inline(always)]
    fn emit_header<T: AsRef<[u8]> + AsMut<[u8]>>(&self, f: &mut Frame<T>) {
        f.set_aflags(self.aflags);
        f.set_err_feature(self.err_feature);
        f.set_sector_count(self.sector_count);
        f.set_cmd_status(self.cmd_status);
        f.set_lba(self.lba);
        f.set_bytes(field::ATA_RESERVED, &[0, 0]);
    }
}

/// An ATA request header as plain values, for the hot path: `emit` writes
/// just the header and the caller fills the data area itself, with no
/// intermediate copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtaHeader {
    pub dst: Mac,
    pub src: Mac,
    pub shelf: u16,
    pub slot: u8,
    pub tag: u32,
    pub aflags: u8,
    pub sector_count: u8,
    pub cmd: u8,
    /// As in `AtaRepr` (see `ata_lba_fields`).
    pub lba: u64,
}

impl AtaHeader {
    /// Writes every byte of `buf[..ATA_HDR_LEN]`: a version 1 request with
    /// no error, feature register and reserved bytes zero. Panics if `buf` is
    /// shorter.
    #[inline]
    pub fn emit(&self, buf: &mut [u8]) {
        let mut f = Frame::new_unchecked(&mut buf[..ATA_HDR_LEN]);
        let header = Header {
            dst: self.dst,
            src: self.src,
            response: false,
            error: None,
            shelf: self.shelf,
            slot: self.slot,
            tag: self.tag,
        };
        header.emit(&mut f, Command::Ata);
        let ata = AtaRepr {
            aflags: self.aflags,
            err_feature: 0,
            sector_count: self.sector_count,
            cmd_status: self.cmd,
            lba: self.lba,
            data: &[],
        };
        ata.emit_header(&mut f);
    }
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
