//! Byte ranges and offsets of the AoE r11 header fields, from the start of
//! the Ethernet frame. Single bytes are plain offsets; lists whose length a
//! count field gives are functions of that count.

#![allow(non_snake_case)]

pub type Field = std::ops::Range<usize>;

// Ethernet header.
pub const DST: Field = 0..6;
pub const SRC: Field = 6..12;
pub const ETHERTYPE: Field = 12..14;

// AoE common header.
/// Version in the high nibble, flags in the low one.
pub const VER_FLAGS: usize = 14;
pub const ERROR: usize = 15;
pub const SHELF: Field = 16..18;
pub const SLOT: usize = 18;
pub const COMMAND: usize = 19;
pub const TAG: Field = 20..24;

// ATA header (command 0).
pub const AFLAGS: usize = 24;
pub const ERR_FEATURE: usize = 25;
pub const SECTOR_COUNT: usize = 26;
pub const CMD_STATUS: usize = 27;
/// lba0 (least significant) .. lba5.
pub const LBA: Field = 28..34;
pub const ATA_RESERVED: Field = 34..36;
/// Start of the ATA data.
pub const ATA_DATA: usize = ATA_RESERVED.end;

// Query-config header (command 1).
pub const BUFFER_COUNT: Field = 24..26;
pub const FIRMWARE: Field = 26..28;
pub const MAX_SECTORS: usize = 28;
/// AoE version in the high nibble, ccmd in the low one.
pub const VER_CCMD: usize = 29;
pub const CONFIG_LEN: Field = 30..32;
pub const fn CONFIG(len: usize) -> Field {
    CONFIG_LEN.end..CONFIG_LEN.end + len
}

// MAC mask list header (command 2).
pub const MASK_RESERVED: usize = 24;
pub const MCMD: usize = 25;
pub const MERROR: usize = 26;
pub const DIR_COUNT: usize = 27;
/// Length of one directive; the three offsets after it are within one.
pub const DIR_LEN: usize = 8;
pub const DIR_RESERVED: usize = 0;
pub const DIR_DCMD: usize = 1;
pub const DIR_MAC: Field = 2..8;
pub const fn DIRECTIVES(count: usize) -> Field {
    DIR_COUNT + 1..DIR_COUNT + 1 + DIR_LEN * count
}

// Reserve/release header (command 3).
pub const RCMD: usize = 24;
pub const NMACS: usize = 25;
pub const MAC_LEN: usize = 6;
pub const fn MACS(count: usize) -> Field {
    NMACS + 1..NMACS + 1 + MAC_LEN * count
}
