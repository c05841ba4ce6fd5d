//! A simulated AoE target for tests: pure logic, no I/O and no clock. It
//! answers request frames the way vblade 25 does (query config, LBA48 and
//! LBA28 reads and writes, IDENTIFY, FLUSH CACHE; a read or write past the
//! end fails with IDNF, other commands with ABRT; a failed command leaves
//! its whole sector count, as vblade's does), and can misbehave on demand
//! (silent, AoE errors, read-only). Every test responder answers through
//! it: the engine's simulation tests (which add time, loss and buffer limits
//! around it), the in-memory hub's `SimTarget`, and `aoe-inject`'s responder
//! on a real interface.

use crate::wire::{self, AoeError, AtaRepr, Body, Command, ConfigRepr, Header, Identify, Mac, Repr, SECTOR};

/// What the target says about itself.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub shelf: u16,
    pub slot: u8,
    pub mac: Mac,
    pub buffer_count: u16,
    /// Most sectors per ATA command (the config response's field).
    pub max_sectors: u8,
    pub firmware: u16,
    /// IDENTIFY: LBA48 supported (else LBA28 only).
    pub lba48: bool,
    /// IDENTIFY word 83: FLUSH CACHE and FLUSH CACHE EXT supported.
    pub flush: bool,
    pub flush_ext: bool,
    pub model: String,
    pub serial: String,
    /// The config string its config responses carry.
    pub config: Vec<u8>,
}

impl SimConfig {
    /// A vblade-like target: LBA48, FLUSH CACHE but not FLUSH CACHE EXT.
    pub fn new(shelf: u16, slot: u8, mac: Mac) -> SimConfig {
        SimConfig {
            shelf,
            slot,
            mac,
            buffer_count: 16,
            max_sectors: 17,
            firmware: 0x4019,
            lba48: true,
            flush: true,
            flush_ext: false,
            model: "aoefs SimTarget".into(),
            serial: format!("sim{shelf}.{slot}"),
            config: Vec::new(),
        }
    }
}

/// Where the data lives.
#[derive(Debug, Clone)]
pub enum Backing {
    /// A disk held in memory.
    Mem(Vec<u8>),
    /// A disk of `sectors` sectors that reads as `byte` everywhere and
    /// forgets what is written (a hostile responder's junk).
    Junk { sectors: u64, byte: u8 },
}

impl Backing {
    fn sectors(&self) -> u64 {
        match self {
            Backing::Mem(d) => (d.len() / SECTOR) as u64,
            Backing::Junk { sectors, .. } => *sectors,
        }
    }
}

/// How the target misbehaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimBehaviour {
    /// Answer nothing at all (a dead target).
    pub silent: bool,
    /// Answer ATA commands with this AoE error code instead.
    pub aoe_error: Option<u8>,
    /// Answer the next this many ATA commands with AoE error 3 (device
    /// unavailable), as a target still starting does.
    pub unavailable_for: u32,
    /// Answer the next this many config queries with AoE error 3.
    pub config_unavailable_for: u32,
    /// Refuse writes as `vblade -r` does: ATA status DRDY|ERR, error ABRT,
    /// nothing written.
    pub read_only: bool,
}

/// What the target received, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimCounters {
    pub requests: u64,
    pub config_queries: u64,
    pub reads: u64,
    pub writes: u64,
    pub identifies: u64,
    /// FLUSH CACHE (0xE7).
    pub flushes: u64,
    /// FLUSH CACHE EXT (0xEA).
    pub flushes_ext: u64,
    /// Bytes of write data received.
    pub bytes_written: u64,
}

/// The simulated target.
#[derive(Debug, Clone)]
pub struct SimModel {
    pub cfg: SimConfig,
    pub backing: Backing,
    pub behaviour: SimBehaviour,
    pub counters: SimCounters,
}

fn emit(r: &Repr<'_>) -> Vec<u8> {
    let mut b = vec![0u8; r.buffer_len()];
    r.emit(&mut b).expect("a reply fits its own length");
    b
}

impl SimModel {
    pub fn new(cfg: SimConfig, backing: Backing) -> SimModel {
        SimModel { cfg, backing, behaviour: SimBehaviour::default(), counters: SimCounters::default() }
    }

    /// A vblade-like target with an in-memory disk of `sectors` zeroed sectors.
    pub fn with_disk(cfg: SimConfig, sectors: u64) -> SimModel {
        SimModel::new(cfg, Backing::Mem(vec![0u8; sectors as usize * SECTOR]))
    }

    /// The in-memory disk (empty for a junk backing).
    pub fn disk(&self) -> &[u8] {
        match &self.backing {
            Backing::Mem(d) => d,
            Backing::Junk { .. } => &[],
        }
    }

    pub fn disk_mut(&mut self) -> &mut [u8] {
        match &mut self.backing {
            Backing::Mem(d) => d,
            Backing::Junk { .. } => &mut [],
        }
    }

    /// A config response to `dst` with `tag` (tag 0 to broadcast: an announcement).
    pub fn config_reply(&self, dst: Mac, tag: u32) -> Vec<u8> {
        let c = &self.cfg;
        emit(&Repr {
            header: Header { dst, src: c.mac, response: true, error: None, shelf: c.shelf, slot: c.slot, tag },
            body: Body::Config(ConfigRepr {
                buffer_count: c.buffer_count,
                firmware: c.firmware,
                max_sectors: c.max_sectors,
                aoe_version: wire::AOE_VERSION,
                ccmd: 0,
                config: &c.config,
            }),
        })
    }

    /// The unsolicited config response a target sends when it starts.
    pub fn announcement(&self) -> Vec<u8> {
        self.config_reply(Mac::BROADCAST, 0)
    }

    /// The IDENTIFY block this target answers with.
    pub fn identify(&self) -> Identify {
        let c = &self.cfg;
        Identify {
            sectors: self.backing.sectors(),
            lba48: c.lba48,
            flush: c.flush,
            flush_ext: c.flush_ext,
            model: c.model.clone(),
            serial: c.serial.clone(),
            firmware: "V1".into(),
        }
    }

    /// Whether a request for `shelf.slot` is for this target (broadcasts included).
    fn for_me(&self, h: &Header) -> bool {
        (h.shelf == self.cfg.shelf || h.shelf == wire::SHELF_ALL)
            && (h.slot == self.cfg.slot || h.slot == wire::SLOT_ALL)
    }

    /// Answers one frame: the reply to send, or nothing (not a request for
    /// this target, malformed, or the target is silent).
    pub fn handle(&mut self, frame: &[u8]) -> Option<Vec<u8>> {
        let r = Repr::parse(frame).ok()?;
        let h = r.header;
        if h.response || !self.for_me(&h) || self.behaviour.silent {
            return None;
        }
        self.counters.requests += 1;
        match r.body {
            Body::Config(_) => {
                self.counters.config_queries += 1;
                if self.behaviour.config_unavailable_for > 0 {
                    self.behaviour.config_unavailable_for -= 1;
                    return Some(self.error_reply(&h, Command::QueryConfig, AoeError::DeviceUnavailable));
                }
                Some(self.config_reply(h.src, h.tag))
            }
            Body::Ata(a) => Some(self.ata(&h, &a)),
            _ => None,
        }
    }

    fn error_reply(&self, h: &Header, cmd: Command, e: AoeError) -> Vec<u8> {
        let c = &self.cfg;
        emit(&Repr {
            header: Header {
                dst: h.src,
                src: c.mac,
                response: true,
                error: Some(e),
                shelf: c.shelf,
                slot: c.slot,
                tag: h.tag,
            },
            body: Body::Error(cmd),
        })
    }

    fn ata(&mut self, h: &Header, a: &AtaRepr<'_>) -> Vec<u8> {
        if let Some(code) = self.behaviour.aoe_error {
            return self.error_reply(h, Command::Ata, AoeError::from_u8(code));
        }
        if self.behaviour.unavailable_for > 0 {
            self.behaviour.unavailable_for -= 1;
            return self.error_reply(h, Command::Ata, AoeError::DeviceUnavailable);
        }
        if a.sector_count > self.cfg.max_sectors {
            return self.error_reply(h, Command::Ata, AoeError::BadArgument);
        }
        let sectors = self.backing.sectors();
        let ext = a.aflags & wire::AFLAG_EXT != 0;
        let lba = if ext { a.lba & 0xFFFF_FFFF_FFFF } else { a.lba & 0x0FFF_FFFF };
        let n = a.sector_count as u64;
        let range = lba as usize * SECTOR..(lba + n) as usize * SECTOR;
        let (mut status, mut err) = (wire::ATA_STATUS_DRDY, 0u8);
        let mut data: Vec<u8> = Vec::new();
        let abort = |status: &mut u8, err: &mut u8, e: u8| {
            *status = wire::ATA_STATUS_DRDY | 0x01;
            *err = e;
        };
        match a.cmd_status {
            wire::ATA_IDENTIFY => {
                self.counters.identifies += 1;
                data = self.identify().emit().to_vec();
            }
            wire::ATA_READ | wire::ATA_READ_EXT | wire::ATA_WRITE | wire::ATA_WRITE_EXT if lba + n > sectors => {
                abort(&mut status, &mut err, wire::ATA_ERR_IDNF)
            }
            wire::ATA_READ | wire::ATA_READ_EXT => {
                self.counters.reads += 1;
                data = match &self.backing {
                    Backing::Mem(d) => d[range].to_vec(),
                    Backing::Junk { byte, .. } => vec![*byte; range.len()],
                };
            }
            wire::ATA_WRITE | wire::ATA_WRITE_EXT if self.behaviour.read_only => {
                abort(&mut status, &mut err, wire::ATA_ERR_ABRT)
            }
            wire::ATA_WRITE | wire::ATA_WRITE_EXT => match a.data_exact(range.len()) {
                Ok(d) => {
                    self.counters.writes += 1;
                    self.counters.bytes_written += d.len() as u64;
                    if let Backing::Mem(disk) = &mut self.backing {
                        disk[range].copy_from_slice(d);
                    }
                }
                Err(_) => abort(&mut status, &mut err, wire::ATA_ERR_ABRT),
            },
            wire::ATA_FLUSH if self.cfg.flush => self.counters.flushes += 1,
            wire::ATA_FLUSH_EXT if self.cfg.flush_ext => self.counters.flushes_ext += 1,
            _ => abort(&mut status, &mut err, wire::ATA_ERR_ABRT),
        }
        let c = &self.cfg;
        // As vblade: the sector count register says how many sectors were
        // not transferred (a command fails whole), and the LBA is echoed.
        let sector_count = if status & wire::ATA_STATUS_FAIL != 0 { a.sector_count } else { 0 };
        emit(&Repr {
            header: Header {
                dst: h.src,
                src: c.mac,
                response: true,
                error: None,
                shelf: c.shelf,
                slot: c.slot,
                tag: h.tag,
            },
            body: Body::Ata(AtaRepr {
                aflags: a.aflags,
                err_feature: err,
                sector_count,
                cmd_status: status,
                lba: a.lba,
                data: &data,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Mac = Mac([2, 0, 0, 0, 0, 0xaa]);
    const I: Mac = Mac([2, 0, 0, 0, 0, 0x11]);

    fn request(aflags: u8, count: u8, cmd: u8, lba: u64, data: &[u8]) -> Vec<u8> {
        emit(&Repr {
            header: Header {
                dst: T,
                src: I,
                response: false,
                error: None,
                shelf: 1,
                slot: 2,
                tag: wire::TAG_USER_TOOLS | 1,
            },
            body: Body::Ata(AtaRepr { aflags, err_feature: 0, sector_count: count, cmd_status: cmd, lba, data }),
        })
    }

    fn ata_reply(f: &[u8]) -> (u8, u8, Vec<u8>) {
        let r = Repr::parse(f).unwrap();
        assert!(r.header.response);
        let Body::Ata(a) = r.body else { panic!("ATA reply expected: {r:?}") };
        (a.cmd_status, a.err_feature, a.data.to_vec())
    }

    #[test]
    fn reads_writes_flushes_and_errors_like_vblade() {
        let mut t = SimModel::with_disk(SimConfig::new(1, 2, T), 64);
        let w = request(wire::AFLAG_EXT | wire::AFLAG_WRITE, 2, wire::ATA_WRITE_EXT, 10, &[7u8; 1024]);
        assert_eq!(ata_reply(&t.handle(&w).unwrap()).0, wire::ATA_STATUS_DRDY);
        let (st, _, d) = ata_reply(&t.handle(&request(wire::AFLAG_EXT, 2, wire::ATA_READ_EXT, 10, &[])).unwrap());
        assert_eq!((st, d), (wire::ATA_STATUS_DRDY, vec![7u8; 1024]));
        // LBA28 commands carry device bits in byte 3 of the LBA field.
        let (_, _, d) = ata_reply(&t.handle(&request(0, 1, wire::ATA_READ, 0xE000_000A, &[])).unwrap());
        assert_eq!(d, vec![7u8; 512]);
        let (st, err, _) = ata_reply(&t.handle(&request(wire::AFLAG_EXT, 2, wire::ATA_READ_EXT, 63, &[])).unwrap());
        assert_eq!((st & wire::ATA_STATUS_FAIL != 0, err), (true, wire::ATA_ERR_IDNF), "past the end");
        let (st, err, _) = ata_reply(&t.handle(&request(wire::AFLAG_EXT, 0, wire::ATA_FLUSH_EXT, 0, &[])).unwrap());
        assert_eq!((st & wire::ATA_STATUS_FAIL != 0, err), (true, wire::ATA_ERR_ABRT), "no FLUSH CACHE EXT");
        t.handle(&request(0, 0, wire::ATA_FLUSH, 0, &[])).unwrap();
        t.cfg.flush_ext = true;
        t.handle(&request(wire::AFLAG_EXT, 0, wire::ATA_FLUSH_EXT, 0, &[])).unwrap();
        assert_eq!((t.counters.flushes, t.counters.flushes_ext, t.counters.writes), (1, 1, 1));
        let too_many = request(wire::AFLAG_EXT, 18, wire::ATA_READ_EXT, 0, &[]);
        assert_eq!(Repr::parse(&t.handle(&too_many).unwrap()).unwrap().header.error, Some(AoeError::BadArgument));
        t.behaviour.silent = true;
        assert!(t.handle(&w).is_none());
    }

    #[test]
    fn replies_count_the_sectors_not_transferred_and_read_only_refuses_writes() {
        let mut t = SimModel::with_disk(SimConfig::new(1, 2, T), 64);
        let count = |f: &[u8]| {
            let Body::Ata(a) = Repr::parse(f).unwrap().body else { panic!("ATA reply expected") };
            (a.sector_count, a.lba)
        };
        let w = request(wire::AFLAG_EXT | wire::AFLAG_WRITE, 2, wire::ATA_WRITE_EXT, 10, &[7u8; 1024]);
        assert_eq!(count(&t.handle(&w).unwrap()), (0, 10), "all written");
        let past_end = request(wire::AFLAG_EXT, 2, wire::ATA_READ_EXT, 63, &[]);
        assert_eq!(count(&t.handle(&past_end).unwrap()), (2, 63), "nothing read");
        t.behaviour.read_only = true;
        let w2 = request(wire::AFLAG_EXT | wire::AFLAG_WRITE, 2, wire::ATA_WRITE_EXT, 20, &[8u8; 1024]);
        let r = t.handle(&w2).unwrap();
        let (st, err, _) = ata_reply(&r);
        assert_eq!((st, err, count(&r)), (wire::ATA_STATUS_DRDY | 0x01, wire::ATA_ERR_ABRT, (2, 20)));
        assert!(t.disk()[20 * SECTOR..22 * SECTOR].iter().all(|&b| b == 0), "nothing written");
        assert_eq!(t.counters.writes, 1);
    }

    #[test]
    fn junk_backing_reads_junk_and_forgets_writes() {
        let mut t = SimModel::new(SimConfig::new(1, 2, T), Backing::Junk { sectors: 1 << 20, byte: 0xEE });
        let w = request(wire::AFLAG_EXT | wire::AFLAG_WRITE, 1, wire::ATA_WRITE_EXT, 5, &[1u8; 512]);
        t.handle(&w).unwrap();
        let (_, _, d) = ata_reply(&t.handle(&request(wire::AFLAG_EXT, 1, wire::ATA_READ_EXT, 5, &[])).unwrap());
        assert_eq!(d, vec![0xEE; 512]);
        assert_eq!(t.counters.bytes_written, 512);
    }
}
