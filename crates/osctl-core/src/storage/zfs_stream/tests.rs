use super::*;
use crate::filepolicy::DevicePolicy;
use crate::ErrorKind;

/// An import's policy for a map of 65536 ids, with the usual devices.
fn policy() -> FilePolicy {
    FilePolicy::for_import(Some(65536), false)
}

/// Builds zfs send streams record by record, in either byte order.
struct Stream {
    bytes: Vec<u8>,
    big: bool,
}

/// A znode's fields the judge reads.
#[derive(Clone, Copy)]
struct Znode {
    mode: u64,
    uid: u64,
    gid: u64,
    rdev: u64,
    xattr: u64,
}

const FILE: Znode = Znode {
    mode: 0o100644,
    uid: 1000,
    gid: 1000,
    rdev: 0,
    xattr: 0,
};

impl Znode {
    fn mode(self, mode: u64) -> Znode {
        Znode { mode, ..self }
    }
    fn uid(self, uid: u64) -> Znode {
        Znode { uid, ..self }
    }
    fn gid(self, gid: u64) -> Znode {
        Znode { gid, ..self }
    }
    fn rdev(self, rdev: u64) -> Znode {
        Znode { rdev, ..self }
    }
    fn xattr(self, xattr: u64) -> Znode {
        Znode { xattr, ..self }
    }
}

impl Stream {
    fn new() -> Stream {
        Stream::with_order(false)
    }

    fn with_order(big: bool) -> Stream {
        Stream {
            bytes: Vec::new(),
            big,
        }
        .begin(1)
    }

    fn put32(&self, record: &mut [u8], at: usize, v: u32) {
        let b = if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        record[at..at + 4].copy_from_slice(&b);
    }

    fn put64(&self, buf: &mut [u8], at: usize, v: u64) {
        let b = if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        buf[at..at + 8].copy_from_slice(&b);
    }

    /// A record of `kind` with its u64 fields at the given offsets.
    fn record(mut self, kind: u32, fields: &[(usize, u64)], payload: &[u8]) -> Stream {
        let mut r = vec![0u8; RECORD_LEN];
        self.put32(&mut r, 0, kind);
        for &(at, v) in fields {
            self.put64(&mut r, at, v);
        }
        self.bytes.extend_from_slice(&r);
        self.bytes.extend_from_slice(payload);
        self
    }

    fn begin(self, versioninfo: u64) -> Stream {
        self.record(DRR_BEGIN, &[(8, MAGIC), (16, versioninfo)], &[])
    }

    /// DRR_OBJECT with a bonus of `bonus_type` and `bonus` as its bytes.
    fn object(mut self, object: u64, bonus_type: u32, bonus: &[u8]) -> Stream {
        let mut r = vec![0u8; RECORD_LEN];
        self.put32(&mut r, 0, DRR_OBJECT);
        self.put64(&mut r, 8, object);
        self.put32(&mut r, 16, 19);
        self.put32(&mut r, 20, bonus_type);
        self.put32(&mut r, 28, bonus.len() as u32);
        self.bytes.extend_from_slice(&r);
        self.bytes.extend_from_slice(bonus);
        let pad = round_up8(bonus.len() as u64) as usize - bonus.len();
        self.bytes.extend(std::iter::repeat_n(0, pad));
        self
    }

    fn znode(self, object: u64, z: Znode) -> Stream {
        let mut bonus = vec![0u8; ZNODE_LEN + 6];
        for (at, v) in [
            (ZP_MODE, z.mode),
            (ZP_UID, z.uid),
            (ZP_GID, z.gid),
            (ZP_RDEV, z.rdev),
            (ZP_XATTR, z.xattr),
        ] {
            self.put64(&mut bonus, at, v);
        }
        self.object(object, BONUS_ZNODE, &bonus)
    }

    fn write(self, object: u64, data: &[u8]) -> Stream {
        self.record(DRR_WRITE, &[(8, object), (32, data.len() as u64)], data)
    }

    fn end(self) -> Stream {
        self.record(DRR_END, &[], &[])
    }
}

/// Feeds `bytes` in pieces of `step` bytes; the check's error, else its verdict.
fn judge_in_steps(bytes: &[u8], step: usize) -> (Result<TreeJudged>, ZfsStreamJudge) {
    let mut judge = ZfsStreamJudge::new("dataset 'ct'", policy());
    for piece in bytes.chunks(step) {
        if let Err(e) = judge.check(piece) {
            return (Err(e), judge);
        }
    }
    (judge.finish(), judge)
}

fn judge(stream: Stream) -> (Result<TreeJudged>, ZfsStreamJudge) {
    judge_in_steps(&stream.bytes, 1 << 16)
}

fn verdict(stream: Stream) -> TreeJudged {
    judge(stream).0.unwrap()
}

fn refusal(stream: Stream) -> String {
    let err = judge(stream).0.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Archive, "{err}");
    err.to_string()
}

fn tree() -> Stream {
    Stream::new()
        .znode(3, FILE.mode(0o40755).uid(0).gid(0))
        .znode(7, FILE)
        .znode(8, FILE.mode(0o104755).uid(0))
        .znode(9, FILE.mode(0o20666).uid(0).gid(0).rdev(0x103))
        .object(1, 0, &[])
        .write(7, b"hello")
        .record(DRR_FREE, &[(8, 7), (16, 512), (24, u64::MAX)], &[])
}

#[test]
fn a_clean_tree_is_judged_by_the_stream() {
    let (judged, judge) = judge(tree().end());
    assert_eq!(judged.unwrap(), TreeJudged::ByStream);
    assert_eq!(judge.judged(), 4);
    assert_eq!(judge.walk_reason(), None);
}

#[test]
fn any_split_of_the_stream_gives_the_same_verdict() {
    let clean = tree().end().bytes;
    let bad = tree().znode(12, FILE.uid(70000)).end().bytes;
    for step in [1, 7, 311, 312, 313, 4096] {
        assert_eq!(
            judge_in_steps(&clean, step).0.unwrap(),
            TreeJudged::ByStream,
            "step {step}"
        );
        assert!(judge_in_steps(&bad, step).0.is_err(), "step {step}");
    }
}

#[test]
fn big_endian_streams_are_judged_alike() {
    let stream = || Stream::with_order(true).znode(7, FILE).write(7, b"data");
    assert_eq!(verdict(stream().end()), TreeJudged::ByStream);
    let bad = refusal(stream().znode(8, FILE.gid(1 << 20)).end());
    assert!(bad.contains("gid 1048576"), "{bad}");
}

#[test]
fn what_the_policy_refuses_is_refused_naming_the_inode() {
    let cases = [
        (FILE.uid(70000), "uid 70000 is outside"),
        // A FUID (a domain in the upper half) is no id of the map either.
        (FILE.uid(1 << 32 | 5), "uid 4294967301 is outside"),
        (FILE.mode(0o104755).uid(100_000), "setuid file"),
        // 8:0, a disk, in the C library's encoding that zfs-fuse keeps.
        (FILE.mode(0o60600).rdev(0x800), "block 8:0"),
    ];
    for (znode, why) in cases {
        let refused = refusal(tree().znode(12, znode).end());
        assert!(refused.contains("dataset 'ct'"), "{refused}");
        assert!(
            refused.contains("inode 12: ") && refused.contains(why),
            "{refused}"
        );
    }
}

#[test]
fn the_policy_given_is_the_one_applied() {
    let disk = tree().znode(15, FILE.mode(0o60600).rdev(0x800)).end();
    let mut judge = ZfsStreamJudge::new(
        "x",
        FilePolicy {
            devices: DevicePolicy::All,
            ..policy()
        },
    );
    judge.check(&disk.bytes).unwrap();
    assert_eq!(judge.finish().unwrap(), TreeJudged::ByStream);
}

/// What the judge cannot vouch for leaves the tree to the walk, naming why.
#[test]
fn what_the_judge_does_not_know_is_left_to_the_walk() {
    let cases: Vec<(&str, Stream)> = vec![
        (
            "system-attribute",
            tree().object(20, BONUS_SA, &[0; 168]).end(),
        ),
        ("extended-attribute", tree().znode(21, FILE.xattr(30)).end()),
        (
            "64-bit device",
            tree().znode(22, FILE.mode(0o20666).rdev(1 << 32 | 3)).end(),
        ),
        ("beyond 16", tree().znode(23, FILE.mode(0o1_100_644)).end()),
        (
            "shorter than a znode",
            tree().object(24, BONUS_ZNODE, &[0; 64]).end(),
        ),
        (
            "spill",
            tree()
                .record(DRR_SPILL, &[(8, 7), (16, 16)], &[0; 16])
                .end(),
        ),
        ("object 0", tree().write(0, b"dnodes").end()),
        ("kind 42", tree().record(42, &[], &[]).end()),
        (
            "compound",
            Stream {
                bytes: Vec::new(),
                big: false,
            }
            .begin(2)
            .end(),
        ),
        (
            "raw",
            Stream {
                bytes: Vec::new(),
                big: false,
            }
            .begin(1 | FEATURE_RAW << 2)
            .end(),
        ),
        ("did not end", tree()),
    ];
    for (why, stream) in cases {
        let (judged, judge) = judge(stream);
        assert_eq!(judged.unwrap(), TreeJudged::NeedsWalk, "{why}");
        let reason = judge.walk_reason().unwrap();
        assert!(
            reason.contains(why) && reason.contains("dataset 'ct'"),
            "{why}: {reason}"
        );
    }
}

/// A directory of a foreign owner may be the dataset's top, which a
/// container that ran leaves with its root's host gid: the walk judges it
/// (after the import made the top root's own).
#[test]
fn a_directory_of_a_foreign_owner_is_left_to_the_walk() {
    let top = tree()
        .znode(4, FILE.mode(0o40710).uid(0).gid(1_572_864))
        .end();
    assert_eq!(verdict(top), TreeJudged::NeedsWalk);
    let (_, judge) = judge(tree().znode(4, FILE.mode(0o40755).uid(70000)).end());
    assert!(
        judge.walk_reason().unwrap().contains("object 4"),
        "{:?}",
        judge.walk_reason()
    );
    // Files are still refused by the records.
    assert!(refusal(tree().znode(12, FILE.gid(1_572_864)).end()).contains("inode 12"));
}

#[test]
fn a_policy_violation_after_a_deferral_is_still_refused() {
    let stream = tree()
        .object(20, BONUS_SA, &[0; 168])
        .znode(12, FILE.uid(70000))
        .end();
    assert!(refusal(stream).contains("inode 12"));
}

#[test]
fn broken_streams_are_refused() {
    let mut junk = tree().end();
    junk.bytes[8] ^= 1;
    assert!(refusal(junk).contains("no DRR_BEGIN record"));
    let trailing = tree().end().write(7, b"more");
    assert!(refusal(trailing).contains("data after the end of the stream"));
}

#[test]
fn payload_lengths_follow_the_kind() {
    // OpenZFS writes drr_payloadlen; one that is not the kind's own is
    // not followed.
    let mut told = tree().end();
    let at = told.bytes.len() - RECORD_LEN * 2 + 4; // the DRR_FREE before END
    told.bytes[at] = 9;
    let (judged, judge) = judge(told);
    assert_eq!(judged.unwrap(), TreeJudged::NeedsWalk);
    assert!(judge.walk_reason().unwrap().contains("payload length"));
    // A compressed write's payload is its compressed size.
    let mut record = vec![0u8; RECORD_LEN];
    record[0] = DRR_WRITE as u8;
    record[8] = 7;
    record[32] = 200; // logical
    record[50] = 15; // compressed (zstd)
    record[96] = 24; // physical
    let mut stream = tree();
    stream.bytes.extend_from_slice(&record);
    stream.bytes.extend_from_slice(&[0xee; 24]);
    assert_eq!(verdict(stream.end()), TreeJudged::ByStream);
}
