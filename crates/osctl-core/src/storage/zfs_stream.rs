//! Judging a zfs send stream by its records, on its way to `zfs recv`.
//!
//! Why: an import must judge what a native stream brings (owners inside the
//! container's map, device nodes, setuid) before it commits. Walking the
//! received tree does that for any stream, but on zfs-fuse every first lookup
//! is a round trip to the daemon: seconds for a root file system, more than
//! the receive itself (docs/performance.md, "The check of received native
//! streams"). The owner, mode and device number of every file are in the
//! stream already, in the bonus buffer of its `DRR_OBJECT` record.
//!
//! What is judged: every `DRR_OBJECT` whose bonus is a `znode_phys_t` (the
//! layout before system attributes, ZPL versions up to 4: zfs-fuse and old
//! pools), by the import's [`FilePolicy`]; a violation refuses the stream,
//! naming the object (its inode number). An incremental stream carries a
//! `DRR_OBJECT` for every object whose bonus changed, so the objects it does
//! not carry keep owners that were judged with the stream before.
//!
//! Where the judge cannot vouch for the whole tree it says so
//! ([`TreeJudged::NeedsWalk`]) and stops looking; the received tree is then
//! walked as before. That is the case for system-attribute bonuses (OpenZFS
//! datasets of ZPL version 5, where the walk costs what it costs on any
//! kernel file system), spill blocks, extended-attribute directories, raw
//! (encrypted) and compound (`-R`) streams, device numbers in a 64-bit
//! encoding, records that touch object 0 (the dnode array itself), record
//! kinds newer than this code, and a directory whose owner is outside the
//! map: the dataset's top may be one (a container that ran left it with
//! its root's host group), and only the walk, after mounting sealed the
//! top, tells it from the others.
//!
//! The wire format (`sys/zfs_ioctl.h`): records of 312 bytes, a u32 kind and
//! a u32 payload length first, in the byte order the `DRR_BEGIN` magic
//! shows; payloads follow some records (the bonus after `DRR_OBJECT`, the
//! data after `DRR_WRITE`). The stream's bytes are not held back: zfs
//! applies nothing the import keeps before it commits, and a refused
//! stream's dataset is destroyed.

use crate::error::{Error, Result};
use crate::filepolicy::FilePolicy;

use super::{StreamCheck, TreeJudged};

/// `DMU_BACKUP_MAGIC`, first in `DRR_BEGIN`.
const MAGIC: u64 = 0x2F5B_ACBAC;
const RECORD_LEN: usize = 312;

// Record kinds (`drr_type`).
const DRR_BEGIN: u32 = 0;
const DRR_OBJECT: u32 = 1;
const DRR_FREEOBJECTS: u32 = 2;
const DRR_WRITE: u32 = 3;
const DRR_FREE: u32 = 4;
const DRR_END: u32 = 5;
const DRR_WRITE_BYREF: u32 = 6;
const DRR_SPILL: u32 = 7;
const DRR_WRITE_EMBEDDED: u32 = 8;

/// `DMU_OT_ZNODE`: a bonus that is a `znode_phys_t`.
const BONUS_ZNODE: u32 = 17;
/// `DMU_OT_SA`: a bonus of system attributes, laid out by tables elsewhere
/// in the dataset.
const BONUS_SA: u32 = 44;
/// The file type bits of a mode, and a directory's.
const S_IFMT: u32 = 0o170_000;
const S_IFDIR: u32 = 0o040_000;
/// `sizeof(znode_phys_t)`; zfs refuses a shorter znode bonus.
const ZNODE_LEN: usize = 264;
// Offsets of the fields judged, in `znode_phys_t` (all u64).
const ZP_MODE: usize = 72;
const ZP_XATTR: usize = 104;
const ZP_RDEV: usize = 112;
const ZP_UID: usize = 128;
const ZP_GID: usize = 136;

/// `DMU_GET_STREAM_HDRTYPE`: the low two bits of `drr_versioninfo`.
const COMPOUND_STREAM: u64 = 2;
/// `DMU_BACKUP_FEATURE_RAW`, in the feature bits above them.
const FEATURE_RAW: u64 = 1 << 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    Little,
    Big,
}

/// What is being read.
#[derive(Debug)]
enum Phase {
    /// A record; `have` bytes of it are in `record`.
    Record { have: usize },
    /// A payload: `left` bytes to pass, the first of them a znode bonus of
    /// `object` being collected when `bonus` is Some.
    Payload {
        left: u64,
        object: u64,
        bonus: Option<Vec<u8>>,
    },
    /// After `DRR_END`: nothing may follow.
    Ended,
}

/// Parses a zfs send stream as it passes and judges every znode in it.
pub struct ZfsStreamJudge {
    /// Names the dataset in messages.
    label: String,
    policy: FilePolicy,
    record: [u8; RECORD_LEN],
    phase: Phase,
    order: Option<Order>,
    /// Bytes seen, for messages.
    offset: u64,
    /// Znodes judged.
    judged: u64,
    /// Why the received tree must be walked after all.
    walk: Option<String>,
    /// The records could not be followed any further.
    lost: bool,
}

impl ZfsStreamJudge {
    pub fn new(label: impl Into<String>, policy: FilePolicy) -> ZfsStreamJudge {
        ZfsStreamJudge {
            label: label.into(),
            policy,
            record: [0; RECORD_LEN],
            phase: Phase::Record { have: 0 },
            order: None,
            offset: 0,
            judged: 0,
            walk: None,
            lost: false,
        }
    }

    /// Znodes judged so far.
    pub fn judged(&self) -> u64 {
        self.judged
    }

    /// Why the tree still has to be walked, if it has.
    pub fn walk_reason(&self) -> Option<&str> {
        self.walk.as_deref()
    }

    fn feed(&mut self, mut bytes: &[u8]) -> Result<()> {
        while !bytes.is_empty() && !self.lost {
            let used = match &mut self.phase {
                Phase::Record { have } => {
                    let n = (RECORD_LEN - *have).min(bytes.len());
                    self.record[*have..*have + n].copy_from_slice(&bytes[..n]);
                    *have += n;
                    if *have == RECORD_LEN {
                        self.phase = self.read_record()?;
                    }
                    n
                }
                Phase::Payload {
                    left,
                    object,
                    bonus,
                } => {
                    let n = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(bytes.len());
                    if let Some(bonus) = bonus {
                        let want = (ZNODE_LEN - bonus.len()).min(n);
                        bonus.extend_from_slice(&bytes[..want]);
                    }
                    *left -= n as u64;
                    if *left == 0 {
                        if let Some(bonus) = bonus.take() {
                            let object = *object;
                            self.judge_znode(object, &bonus)?;
                        }
                        self.phase = Phase::Record { have: 0 };
                    }
                    n
                }
                Phase::Ended => {
                    return Err(self.refused("data after the end of the stream (its END record)"));
                }
            };
            self.offset += used as u64;
            bytes = &bytes[used..];
        }
        Ok(())
    }

    /// One whole record in `self.record`: what comes after it.
    fn read_record(&mut self) -> Result<Phase> {
        if self.order.is_none() {
            self.order = Some(self.begin_order()?);
        }
        let kind = self.u32_at(0);
        let object = self.u64_at(8);
        let told = u64::from(self.u32_at(4));
        let payload = match kind {
            DRR_BEGIN => {
                let info = self.u64_at(16);
                if info & 3 == COMPOUND_STREAM {
                    return Ok(self.lose_framing("a compound (replication) stream"));
                }
                if (info >> 2) & FEATURE_RAW != 0 {
                    return Ok(self.lose_framing("a raw (encrypted) stream"));
                }
                told
            }
            DRR_END => {
                if told != 0 {
                    return Ok(self.lose_framing("an END record with a payload"));
                }
                return Ok(Phase::Ended);
            }
            DRR_OBJECT => return Ok(self.object_record(object, told)),
            DRR_FREEOBJECTS => 0,
            DRR_FREE | DRR_WRITE_BYREF => 0,
            // The compressed size where drr_compressiontype is set.
            DRR_WRITE if self.record[50] != 0 => self.u64_at(96),
            DRR_WRITE => self.u64_at(32),
            DRR_WRITE_EMBEDDED => round_up8(u64::from(self.u32_at(52))),
            DRR_SPILL => {
                self.defer("a spill block (attributes beyond the bonus)");
                self.u64_at(16)
            }
            other => return Ok(self.lose_framing(&format!("a record of kind {other}"))),
        };
        // Every record but the stream's list of objects names its object,
        // and none may be object 0, the dnode array itself.
        if object == 0 && kind != DRR_BEGIN && kind != DRR_FREEOBJECTS {
            self.defer("a record on object 0");
        }
        // zfs-fuse leaves drr_payloadlen 0 but in DRR_BEGIN; OpenZFS sets
        // it to what the record's kind implies.
        if kind != DRR_BEGIN && told != 0 && told != payload {
            return Ok(self.lose_framing("a record whose payload length is not its kind's"));
        }
        Ok(Self::payload(payload, 0, None))
    }

    /// `DRR_OBJECT`: its bonus follows; a znode's is collected and judged.
    fn object_record(&mut self, object: u64, told: u64) -> Phase {
        let bonus_type = self.u32_at(20);
        let bonus_len = self.u32_at(28);
        let len = round_up8(u64::from(bonus_len));
        if told != 0 && told != len {
            return self.lose_framing("an object record whose payload is not its bonus");
        }
        if object == 0 {
            self.defer("an object record for object 0");
        }
        match bonus_type {
            BONUS_ZNODE if (bonus_len as usize) < ZNODE_LEN => {
                self.defer("a znode bonus shorter than a znode");
                Self::payload(len, object, None)
            }
            BONUS_ZNODE => Self::payload(len, object, Some(Vec::with_capacity(ZNODE_LEN))),
            BONUS_SA => {
                self.defer("system-attribute bonuses (ZPL version 5)");
                Self::payload(len, object, None)
            }
            _ => Self::payload(len, object, None),
        }
    }

    fn payload(left: u64, object: u64, bonus: Option<Vec<u8>>) -> Phase {
        if left == 0 {
            return Phase::Record { have: 0 };
        }
        Phase::Payload {
            left,
            object,
            bonus,
        }
    }

    /// The first record: a BEGIN whose magic tells the byte order.
    fn begin_order(&self) -> Result<Order> {
        let magic = u64::from_le_bytes(self.record[8..16].try_into().expect("8 bytes"));
        let kind_le = u32::from_le_bytes(self.record[0..4].try_into().expect("4 bytes"));
        if magic == MAGIC && kind_le == DRR_BEGIN {
            Ok(Order::Little)
        } else if magic.swap_bytes() == MAGIC && kind_le == DRR_BEGIN {
            Ok(Order::Big)
        } else {
            Err(self.refused("no DRR_BEGIN record with the zfs magic number first"))
        }
    }

    fn judge_znode(&mut self, object: u64, bonus: &[u8]) -> Result<()> {
        let field = |at: usize| self.read_u64(&bonus[at..at + 8]);
        let (mode, xattr, rdev, uid, gid) = (
            field(ZP_MODE),
            field(ZP_XATTR),
            field(ZP_RDEV),
            field(ZP_UID),
            field(ZP_GID),
        );
        if xattr != 0 {
            self.defer(&format!(
                "an extended-attribute directory (object {object})"
            ));
            return Ok(());
        }
        // Linux keeps 16 bits of a mode; what zfs would drop is not guessed at.
        let Some(mode) = u32::try_from(mode).ok().filter(|m| *m <= 0o177_777) else {
            self.defer(&format!("mode bits beyond 16 (object {object})"));
            return Ok(());
        };
        // zfs-fuse keeps the C library's dev_t, which check_inode decodes;
        // OpenZFS's 64-bit encoding (major above bit 32) is not guessed at.
        if rdev > u64::from(u32::MAX) {
            self.defer(&format!("a 64-bit device number (object {object})"));
            return Ok(());
        }
        // The dataset's top directory, which the import makes root's own,
        // has the group of a container that ran (0710, its root's host gid,
        // `datasets::let_root_through`); the records do not tell which
        // directory is the top, the walk does.
        if mode & S_IFMT == S_IFDIR && self.policy.check_owner(uid, gid).is_err() {
            self.defer(&format!(
                "a directory owned by {uid}:{gid} (object {object}), perhaps the dataset's top"
            ));
            return Ok(());
        }
        self.policy
            .check_inode(mode, uid, gid, rdev)
            .map_err(|why| self.refused(&format!("inode {object}: {why}")))?;
        self.judged += 1;
        Ok(())
    }

    /// The tree must be walked; the first reason is kept.
    fn defer(&mut self, why: &str) {
        if self.walk.is_none() {
            self.walk = Some(format!("{}: {why}", self.label));
        }
    }

    /// The tree must be walked, and the records cannot be told apart any
    /// more: the rest passes unlooked at.
    fn lose_framing(&mut self, why: &str) -> Phase {
        self.defer(why);
        self.lost = true;
        Phase::Record { have: 0 }
    }

    fn refused(&self, why: &str) -> Error {
        Error::archive(format!(
            "{}: zfs stream at byte {}: {why}",
            self.label, self.offset
        ))
    }

    fn u32_at(&self, at: usize) -> u32 {
        let bytes: [u8; 4] = self.record[at..at + 4].try_into().expect("4 bytes");
        match self.order {
            Some(Order::Big) => u32::from_be_bytes(bytes),
            _ => u32::from_le_bytes(bytes),
        }
    }

    fn u64_at(&self, at: usize) -> u64 {
        self.read_u64(&self.record[at..at + 8])
    }

    fn read_u64(&self, bytes: &[u8]) -> u64 {
        let bytes: [u8; 8] = bytes.try_into().expect("8 bytes");
        match self.order {
            Some(Order::Big) => u64::from_be_bytes(bytes),
            _ => u64::from_le_bytes(bytes),
        }
    }
}

fn round_up8(n: u64) -> u64 {
    n.div_ceil(8) * 8
}

impl StreamCheck for ZfsStreamJudge {
    fn check(&mut self, bytes: &[u8]) -> Result<()> {
        self.feed(bytes)
    }

    /// `zfs recv` succeeded; a stream the judge did not see end (which zfs
    /// would not have taken) is left to the walk rather than trusted.
    fn finish(&mut self) -> Result<TreeJudged> {
        if !self.lost && !matches!(self.phase, Phase::Ended) {
            self.defer("the stream did not end where zfs ended it");
        }
        Ok(match self.walk {
            Some(_) => TreeJudged::NeedsWalk,
            None => TreeJudged::ByStream,
        })
    }
}

#[cfg(test)]
mod tests;
