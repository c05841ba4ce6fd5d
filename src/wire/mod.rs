//! AoE r11 wire format: the byte ranges of the header fields, checked views
//! over byte buffers that read and write them, and plain `Repr` values. No
//! I/O, no clock. Lengths always come from header fields, never from the
//! frame length (vblade sends frames shorter than 60 bytes and the link may
//! pad frames).

mod aoe;
pub mod field;
mod identify;

pub use aoe::*;
pub use identify::Identify;

use std::fmt;

/// Ethernet type of ATA over Ethernet.
pub const ETHERTYPE_AOE: u16 = 0x88A2;
/// Ethernet header length.
pub const ETH_HDR_LEN: usize = field::ETHERTYPE.end;
/// Ethernet + AoE common header.
pub const AOE_HDR_LEN: usize = field::TAG.end;
/// Ethernet + AoE + ATA header: data starts here.
pub const ATA_HDR_LEN: usize = field::ATA_DATA;
/// Ethernet + AoE + query-config header: config string starts here.
pub const CFG_HDR_LEN: usize = field::CONFIG_LEN.end;
/// Ethernet + AoE + MAC mask list header: directives start here.
pub const MASK_HDR_LEN: usize = field::DIRECTIVES(0).start;
/// Ethernet + AoE + reserve/release header: MACs start here.
pub const RESERVE_HDR_LEN: usize = field::MACS(0).start;
/// Largest config string the protocol allows.
pub const MAX_CONFIG_LEN: usize = 1024;
/// AoE protocol version we speak.
pub const AOE_VERSION: u8 = 1;
/// Sector size of every AoE target.
pub const SECTOR: usize = 512;
/// Broadcast shelf and slot.
pub const SHELF_ALL: u16 = 0xFFFF;
pub const SLOT_ALL: u8 = 0xFF;
/// Tags with bit 31 set belong to the userland tools (aoeping, aoecfg, a
/// raw client): the kernel driver sends only tags with it clear and
/// ignores every reply with it set, so the tools can run beside it. aoefs
/// takes the driver's side of that split.
pub const TAG_USER_TOOLS: u32 = 1 << 31;
/// Whether a tag belongs to the userland tools' space.
pub fn is_user_tool_tag(tag: u32) -> bool {
    tag & TAG_USER_TOOLS != 0
}

/// An Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    pub const BROADCAST: Mac = Mac([0xff; 6]);
    pub const ZERO: Mac = Mac([0; 6]);

    pub fn from_slice(b: &[u8]) -> Mac {
        let mut m = [0u8; 6];
        m.copy_from_slice(&b[..6]);
        Mac(m)
    }
    pub fn is_broadcast(&self) -> bool {
        *self == Mac::BROADCAST
    }
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
    /// Twelve lower-case hex digits, as the kernel's `mac` attribute prints.
    pub fn hex12(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
    /// Parses `aa:bb:cc:dd:ee:ff`, `aa-bb-..` or twelve hex digits.
    pub fn parse(s: &str) -> Option<Mac> {
        let hex: String = s.trim().chars().filter(|c| *c != ':' && *c != '-').collect();
        if hex.len() != 12 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        let mut m = [0u8; 6];
        for (i, b) in m.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Mac(m))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
    }
}
impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a frame was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Shorter than its headers or than its length fields say.
    #[error("truncated frame")]
    Truncated,
    /// Not ethertype 0x88A2.
    #[error("not an AoE frame")]
    NotAoe,
    /// AoE version other than 1.
    #[error("unsupported AoE version {0}")]
    BadVersion(u8),
    /// A field holds a value the protocol forbids (e.g. config length > 1024).
    #[error("bad {0} field")]
    BadField(&'static str),
    /// Command we do not know.
    #[error("unknown AoE command {0}")]
    UnknownCommand(u8),
    /// Output buffer too small for `emit`.
    #[error("buffer too small")]
    BufferTooSmall,
}

pub type Result<T> = std::result::Result<T, WireError>;
