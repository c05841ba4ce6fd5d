//! Decoder for the 512-byte ATA IDENTIFY DEVICE block.

use super::{Result, WireError};

/// What we use from ATA IDENTIFY.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identify {
    /// Capacity in 512-byte sectors.
    pub sectors: u64,
    pub lba48: bool,
    /// FLUSH CACHE (0xE7) supported.
    pub flush: bool,
    /// FLUSH CACHE EXT (0xEA) supported.
    pub flush_ext: bool,
    pub model: String,
    pub serial: String,
    pub firmware: String,
}

fn word(b: &[u8], w: usize) -> u16 {
    u16::from_le_bytes([b[2 * w], b[2 * w + 1]])
}

/// ATA strings store two characters per word, high byte first.
fn ata_string(b: &[u8], first: usize, words: usize) -> String {
    let mut s = Vec::with_capacity(words * 2);
    for w in first..first + words {
        let v = word(b, w);
        s.push((v >> 8) as u8);
        s.push(v as u8);
    }
    let s: String = s.into_iter().map(|c| if (0x20..0x7f).contains(&c) { c as char } else { ' ' }).collect();
    s.trim().to_string()
}

impl Identify {
    /// Decodes an IDENTIFY block. Needs at least 512 bytes; never panics.
    pub fn parse(b: &[u8]) -> Result<Identify> {
        if b.len() < 512 {
            return Err(WireError::Truncated);
        }
        let w83 = word(b, 83);
        // Bits 15:14 == 01 mean words 82-84 are valid.
        let valid83 = w83 & 0xC000 == 0x4000;
        let lba48 = valid83 && w83 & (1 << 10) != 0;
        let sectors = if lba48 {
            (word(b, 100) as u64)
                | (word(b, 101) as u64) << 16
                | (word(b, 102) as u64) << 32
                | (word(b, 103) as u64) << 48
        } else {
            (word(b, 60) as u64) | (word(b, 61) as u64) << 16
        };
        Ok(Identify {
            sectors,
            lba48,
            flush: valid83 && w83 & (1 << 12) != 0,
            flush_ext: valid83 && w83 & (1 << 13) != 0,
            model: ata_string(b, 27, 20),
            serial: ata_string(b, 10, 10),
            firmware: ata_string(b, 23, 4),
        })
    }

    /// Encodes an IDENTIFY block (used by the in-memory test target).
    pub fn emit(&self) -> [u8; 512] {
        let mut b = [0u8; 512];
        let mut put = |w: usize, v: u16| b[2 * w..2 * w + 2].copy_from_slice(&v.to_le_bytes());
        let mut w83: u16 = 0x4000;
        if self.lba48 {
            w83 |= 1 << 10;
        }
        if self.flush {
            w83 |= 1 << 12;
        }
        if self.flush_ext {
            w83 |= 1 << 13;
        }
        put(83, w83);
        put(86, w83 & 0x3fff);
        put(49, 1 << 9); // LBA supported
        let s28 = self.sectors.min(0x0FFF_FFFF);
        put(60, s28 as u16);
        put(61, (s28 >> 16) as u16);
        if self.lba48 {
            for i in 0..4 {
                put(100 + i, (self.sectors >> (16 * i)) as u16);
            }
        }
        let mut put_str = |first: usize, words: usize, s: &str| {
            let mut bytes = s.as_bytes().to_vec();
            bytes.resize(words * 2, b' ');
            for i in 0..words {
                let v = (bytes[2 * i] as u16) << 8 | bytes[2 * i + 1] as u16;
                b[2 * (first + i)..2 * (first + i) + 2].copy_from_slice(&v.to_le_bytes());
            }
        };
        put_str(10, 10, &self.serial);
        put_str(23, 4, &self.firmware);
        put_str(27, 20, &self.model);
        b
    }
}
