//! The guard on streams built here command by command. Streams from a real
//! `btrfs send` are checked in `tests/btrfs.rs`.

use super::*;
use crate::ErrorKind;

/// The guard's checks of streams, without its file policy.
const ANY: FilePolicy = FilePolicy::anything();

const BASE: SubvolumeId = SubvolumeId {
    uuid: [0x11; 16],
    ctransid: 7,
};
const INCR: SubvolumeId = SubvolumeId {
    uuid: [0x22; 16],
    ctransid: 9,
};
/// Another subvolume of the host (another container).
const FOREIGN: SubvolumeId = SubvolumeId {
    uuid: [0x99; 16],
    ctransid: 7,
};

const C_MKDIR: u16 = 4;
const C_UTIMES: u16 = 20;
const C_ENCODED_WRITE: u16 = 25;
const A_MTIME: u16 = 10;
const A_UNENCODED_FILE_LEN: u16 = 27;

/// A stream being built: its version and bytes.
struct Stream {
    version: u32,
    bytes: Vec<u8>,
}

impl Stream {
    fn new(version: u32) -> Stream {
        Stream {
            version,
            bytes: encode_stream_header(version),
        }
    }

    fn cmd(mut self, kind: u16, attrs: &[(u16, &[u8])]) -> Stream {
        self.bytes.extend(encode_command(self.version, kind, attrs));
        self
    }

    fn subvol(self, name: &str, id: SubvolumeId) -> Stream {
        self.cmd(
            C_SUBVOL,
            &[
                (A_PATH, name.as_bytes()),
                (A_UUID, &id.uuid),
                (A_CTRANSID, &id.ctransid.to_le_bytes()),
            ],
        )
    }

    fn snapshot(self, name: &str, id: SubvolumeId, parent: SubvolumeId) -> Stream {
        self.cmd(
            C_SNAPSHOT,
            &[
                (A_PATH, name.as_bytes()),
                (A_UUID, &id.uuid),
                (A_CTRANSID, &id.ctransid.to_le_bytes()),
                (A_CLONE_UUID, &parent.uuid),
                (A_CLONE_CTRANSID, &parent.ctransid.to_le_bytes()),
            ],
        )
    }

    fn mkfile(self, path: &str) -> Stream {
        self.cmd(
            C_MKFILE,
            &[(A_PATH, path.as_bytes()), (A_INO, &257u64.to_le_bytes())],
        )
    }

    fn write(self, path: &str, data: &[u8]) -> Stream {
        self.cmd(
            C_WRITE,
            &[
                (A_PATH, path.as_bytes()),
                (A_FILE_OFFSET, &0u64.to_le_bytes()),
                (A_DATA, data),
            ],
        )
    }

    fn clone_from(self, path: &str, source: SubvolumeId, source_path: &str) -> Stream {
        self.cmd(
            C_CLONE,
            &[
                (A_FILE_OFFSET, &0u64.to_le_bytes()),
                (A_CLONE_LEN, &4096u64.to_le_bytes()),
                (A_PATH, path.as_bytes()),
                (A_CLONE_UUID, &source.uuid),
                (A_CLONE_CTRANSID, &source.ctransid.to_le_bytes()),
                (A_CLONE_PATH, source_path.as_bytes()),
                (A_CLONE_OFFSET, &0u64.to_le_bytes()),
            ],
        )
    }

    fn end(self) -> Vec<u8> {
        self.cmd(C_END, &[]).bytes
    }
}

/// A base stream with a bit of everything: files, renames, data, a clone
/// within itself, links, a symlink pointing anywhere, the root's times.
fn base_stream() -> Vec<u8> {
    Stream::new(1)
        .subvol("osctl-base", BASE)
        .cmd(C_UTIMES, &[(A_PATH, b""), (A_MTIME, &[0; 12])])
        .cmd(C_MKDIR, &[(A_PATH, b"o256-7-0"), (A_INO, &[0; 8])])
        .cmd(C_RENAME, &[(A_PATH, b"o256-7-0"), (A_PATH_TO, b"etc")])
        .mkfile("o257-7-0")
        .cmd(
            C_RENAME,
            &[(A_PATH, b"o257-7-0"), (A_PATH_TO, b"etc/passwd")],
        )
        .write("etc/passwd", &[b'x'; 5000])
        .mkfile("etc/copy")
        .clone_from("etc/copy", BASE, "etc/passwd")
        .cmd(
            C_LINK,
            &[(A_PATH, b"etc/hard"), (A_PATH_LINK, b"etc/passwd")],
        )
        .cmd(
            C_SYMLINK,
            &[
                (A_PATH, b"etc/up"),
                (A_INO, &[0; 8]),
                (A_PATH_LINK, b"../../../etc/shadow"),
            ],
        )
        .cmd(
            C_SYMLINK,
            &[
                (A_PATH, b"etc/abs"),
                (A_INO, &[0; 8]),
                (A_PATH_LINK, b"/etc/shadow"),
            ],
        )
        .end()
}

fn incremental_stream() -> Vec<u8> {
    Stream::new(1)
        .snapshot("osctl-incr", INCR, BASE)
        .mkfile("etc/new")
        .clone_from("etc/new", BASE, "etc/passwd")
        .clone_from("etc/new", INCR, "etc/copy")
        .end()
}

/// Feeds `stream` in pieces of `piece` bytes; returns what came out and the
/// guard's verdict.
fn feed(guard: &mut StreamGuard, stream: &[u8], piece: usize) -> (Vec<u8>, Result<SubvolumeId>) {
    let mut out = Vec::new();
    for chunk in stream.chunks(piece) {
        if let Err(e) = guard.check(chunk) {
            return (out, Err(e));
        }
        out.extend_from_slice(chunk);
    }
    let verdict = guard.finish();
    (out, verdict)
}

fn refused_base(stream: &[u8]) -> String {
    refused(
        StreamGuard::base("dataset 'var' of container 'c1'", ANY),
        stream,
    )
}

fn refused_incremental(stream: &[u8]) -> String {
    refused(
        StreamGuard::incremental("dataset 'var' of container 'c1'", BASE, ANY),
        stream,
    )
}

/// The refusal of `stream`, the same whatever the pieces it comes in.
fn refused(guard: StreamGuard, stream: &[u8]) -> String {
    let mut messages = Vec::new();
    for piece in [1, 7, 4096, stream.len().max(1)] {
        let mut guard = StreamGuard {
            top_resealed: guard.top_resealed,
            ..StreamGuard::new(guard.label.clone(), guard.parent, guard.policy)
        };
        match feed(&mut guard, stream, piece).1 {
            Err(e) if e.kind() == ErrorKind::Archive => messages.push(e.message().to_string()),
            other => panic!("accepted in pieces of {piece}: {other:?}"),
        }
    }
    assert!(messages.iter().all(|m| m == &messages[0]), "{messages:#?}");
    let msg = messages.remove(0);
    assert!(
        msg.starts_with("dataset 'var' of container 'c1': btrfs stream refused at byte "),
        "{msg}"
    );
    msg
}

#[test]
fn good_streams_pass_unchanged_in_any_pieces() {
    let base = base_stream();
    let incr = incremental_stream();
    for piece in [1, 2, 3, 9, 10, 11, 17, 64, 4096, 1 << 20] {
        let mut guard = StreamGuard::base("c1", ANY);
        let (out, made) = feed(&mut guard, &base, piece);
        assert_eq!(out, base, "pieces of {piece}");
        assert_eq!(made.unwrap(), BASE);

        let mut guard = StreamGuard::incremental("c1", BASE, ANY);
        let (out, made) = feed(&mut guard, &incr, piece);
        assert_eq!(out, incr, "pieces of {piece}");
        assert_eq!(made.unwrap(), INCR);
    }
    let mut copied = Vec::new();
    let made = StreamGuard::base("c1", ANY)
        .copy(&mut &base[..], &mut copied)
        .unwrap();
    assert_eq!((copied, made), (base, BASE));
}

/// From version 2 the data attribute takes the rest of the command, whatever
/// it holds (here bytes that would read as a foreign clone source).
#[test]
fn version_2_data_runs_to_the_end_of_the_command() {
    let mut lookalike = Vec::new();
    lookalike.extend_from_slice(&A_CLONE_UUID.to_le_bytes());
    lookalike.extend_from_slice(&16u16.to_le_bytes());
    lookalike.extend_from_slice(&FOREIGN.uuid);
    let stream = Stream::new(2)
        .subvol("s", BASE)
        .mkfile("f")
        .write("f", &lookalike)
        .cmd(
            C_ENCODED_WRITE,
            &[
                (A_PATH, b"f"),
                (A_FILE_OFFSET, &[0; 8]),
                (A_UNENCODED_FILE_LEN, &[0; 8]),
                (A_DATA, &vec![0x28; 100_000]),
            ],
        )
        .end();
    let mut guard = StreamGuard::base("c1", ANY);
    let (out, made) = feed(&mut guard, &stream, 333);
    assert_eq!(out, stream);
    assert_eq!(made.unwrap(), BASE);
    // Read as version 1, the same bytes are attributes, and refused.
    let mut as_v1 = stream.clone();
    as_v1[13] = 1;
    let msg = refused_base(&as_v1);
    assert!(msg.contains("command #3 (write)"), "{msg}");
}

#[test]
fn clones_from_other_subvolumes_are_refused() {
    let foreign = Stream::new(1)
        .subvol("s", BASE)
        .mkfile("f")
        .clone_from("f", FOREIGN, "etc/shadow")
        .end();
    let msg = refused_base(&foreign);
    assert!(msg.contains("command #3 (clone)"), "{msg}");
    assert!(
        msg.contains("it clones from subvolume 99999999-9999-9999-9999-999999999999 (ctransid 7)"),
        "{msg}"
    );

    // A base stream has no parent to clone from.
    let from_parent = Stream::new(1)
        .subvol("s", INCR)
        .mkfile("f")
        .clone_from("f", BASE, "f")
        .end();
    refused_base(&from_parent);

    let foreign = Stream::new(1)
        .snapshot("s", INCR, BASE)
        .clone_from("f", FOREIGN, "f")
        .end();
    refused_incremental(&foreign);

    // The right UUID with another ctransid is not the same subvolume.
    let other_generation = SubvolumeId {
        ctransid: 8,
        ..BASE
    };
    let stream = Stream::new(1)
        .snapshot("s", INCR, BASE)
        .clone_from("f", other_generation, "f")
        .end();
    refused_incremental(&stream);
}

#[test]
fn a_clone_is_judged_before_its_last_byte_passes() {
    let stream = Stream::new(1)
        .subvol("s", BASE)
        .mkfile("f")
        .clone_from("f", FOREIGN, "etc/shadow")
        .end();
    let end_len = encode_command(1, C_END, &[]).len();
    let clone_end = stream.len() - end_len;
    let mut guard = StreamGuard::base("c1", ANY);
    guard.check(&stream[..clone_end - 1]).unwrap();
    assert!(guard.check(&stream[clone_end - 1..clone_end]).is_err());
    // Refused for good.
    assert!(guard.check(&stream[clone_end..]).is_err());
    assert!(guard.finish().is_err());
}

#[test]
fn incremental_streams_must_be_based_on_the_base() {
    let msg = refused_incremental(&Stream::new(1).snapshot("s", INCR, FOREIGN).end());
    assert!(
        msg.contains("command #1 (snapshot): its parent is subvolume 99999999"),
        "{msg}"
    );
    let other_generation = SubvolumeId {
        ctransid: 8,
        ..BASE
    };
    refused_incremental(&Stream::new(1).snapshot("s", INCR, other_generation).end());
    // Not a new subvolume either, nor one that takes its parent's UUID.
    let msg = refused_incremental(&Stream::new(1).subvol("s", INCR).end());
    assert!(msg.contains("must be a snapshot of its base"), "{msg}");
    refused_incremental(&Stream::new(1).snapshot("s", BASE, BASE).end());
}

#[test]
fn base_streams_must_create_their_subvolume() {
    let msg = refused_base(&Stream::new(1).snapshot("s", INCR, FOREIGN).end());
    assert!(
        msg.contains("command #1 (snapshot): a base stream must create its subvolume"),
        "{msg}"
    );
    let msg = refused_base(&Stream::new(1).mkfile("f").subvol("s", BASE).end());
    assert!(
        msg.contains("must start with a subvol or snapshot"),
        "{msg}"
    );
}

#[test]
fn one_subvolume_per_stream() {
    let msg = refused_base(&Stream::new(1).subvol("a", BASE).subvol("b", INCR).end());
    assert!(
        msg.contains("command #2 (subvol): a second subvolume"),
        "{msg}"
    );
    refused_base(
        &Stream::new(1)
            .subvol("a", BASE)
            .snapshot("b", INCR, BASE)
            .end(),
    );
    // Nothing after the end, where `btrfs receive` would read another stream.
    let mut two = Stream::new(1).subvol("a", BASE).end();
    two.extend(Stream::new(1).subvol("b", INCR).end());
    let msg = refused_base(&two);
    assert!(msg.contains("after the end command"), "{msg}");
}

#[test]
fn broken_streams_are_refused() {
    let good = base_stream();

    let mut bad_magic = good.clone();
    bad_magic[0] = b'B';
    let msg = refused_base(&bad_magic);
    assert!(msg.contains("at byte 0: not a btrfs send stream"), "{msg}");
    for version in [0u32, 4, 0xffff_ffff] {
        let mut bad_version = good.clone();
        bad_version[13..17].copy_from_slice(&version.to_le_bytes());
        let msg = refused_base(&bad_version);
        assert!(
            msg.contains(&format!("unknown stream version {version}")),
            "{msg}"
        );
    }

    // One bit flipped in the data of the write command.
    let mut bad_crc = good.clone();
    let at = good.windows(8).position(|w| w == b"xxxxxxxx").unwrap();
    bad_crc[at] ^= 1;
    let msg = refused_base(&bad_crc);
    assert!(msg.contains("(write): CRC-32C"), "{msg}");

    let end_len = encode_command(1, C_END, &[]).len();
    for (cut, why) in [
        (0, "ends within its header"),
        (5, "ends within its header"),
        (17, "without an end command"),
        (20, "ends within command #1 (3 of its bytes present)"),
        (30, "ends within command #1 (13 of its bytes present)"),
        (at, "ends within command #"),
        (good.len() - end_len, "without an end command"),
        (good.len() - 1, "ends within command #"),
    ] {
        let mut guard = StreamGuard::base("c1", ANY);
        let (_, verdict) = feed(&mut guard, &good[..cut], 64);
        let msg = verdict.unwrap_err().to_string();
        assert!(msg.contains(why), "cut at {cut}: {msg}");
    }
}

#[test]
fn absurd_lengths_are_refused_before_anything_is_buffered() {
    let header_only = |version: u32, len: u32| {
        let mut stream = encode_stream_header(version);
        stream.extend_from_slice(&len.to_le_bytes());
        stream.extend_from_slice(&C_WRITE.to_le_bytes());
        stream.extend_from_slice(&[0; 4]);
        stream
    };
    for (version, len) in [
        (1, u32::MAX),
        (1, (MAX_COMMAND_V1 - COMMAND_HEADER_LEN + 1) as u32),
        (2, (MAX_COMMAND_V2 - COMMAND_HEADER_LEN + 1) as u32),
    ] {
        let mut guard = StreamGuard::base("c1", ANY);
        let msg = guard
            .check(&header_only(version, len))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("command #1 (write):"), "{msg}");
        assert!(msg.contains("more than the"), "{msg}");
        assert!(guard.pending.capacity() < 1024, "nothing reserved for it");
    }
    // The kernel's largest version 1 command passes.
    let data = vec![7u8; MAX_COMMAND_V1 - COMMAND_HEADER_LEN - 4 - 12 - 4 - 1];
    let stream = Stream::new(1).subvol("s", BASE).write("f", &data).end();
    let mut guard = StreamGuard::base("c1", ANY);
    assert_eq!(feed(&mut guard, &stream, 10_000).1.unwrap(), BASE);
}

#[test]
fn paths_that_leave_the_subvolume_are_refused() {
    for (path, why) in [
        ("/etc/shadow", "is absolute"),
        ("..", "climbs out"),
        ("a/../../b", "climbs out"),
        ("a/..", "climbs out"),
        ("a\0/../../x", "NUL byte"),
    ] {
        let msg = refused_base(&Stream::new(1).subvol("s", BASE).mkfile(path).end());
        assert!(msg.contains("command #2 (mkfile): path"), "{msg}");
        assert!(msg.contains(why), "{path:?}: {msg}");
    }
    let climbing_clone = Stream::new(1)
        .subvol("s", BASE)
        .mkfile("f")
        .clone_from("f", BASE, "../../ct/other/private/etc/shadow")
        .end();
    let msg = refused_base(&climbing_clone);
    assert!(msg.contains("(attribute 22) climbs out"), "{msg}");
    let rename_out = Stream::new(1)
        .subvol("s", BASE)
        .mkfile("f")
        .cmd(C_RENAME, &[(A_PATH, b"f"), (A_PATH_TO, b"../f")])
        .end();
    refused_base(&rename_out);
    let link_out = Stream::new(1)
        .subvol("s", BASE)
        .cmd(C_LINK, &[(A_PATH, b"f"), (A_PATH_LINK, b"../../x")])
        .end();
    refused_base(&link_out);
    for name in ["", ".", "..", "a/b", "/s"] {
        let msg = refused_base(&Stream::new(1).subvol(name, BASE).end());
        assert!(msg.contains("is not one plain path component"), "{msg}");
    }
}

#[test]
fn unknown_and_repeated_attributes_and_unknown_commands_are_refused() {
    // `btrfs receive` would clone from the last CLONE_UUID given.
    let twice = Stream::new(1)
        .subvol("s", BASE)
        .cmd(
            C_CLONE,
            &[
                (A_PATH, b"f"),
                (A_CLONE_UUID, &BASE.uuid),
                (A_CLONE_CTRANSID, &BASE.ctransid.to_le_bytes()),
                (A_CLONE_UUID, &FOREIGN.uuid),
                (A_CLONE_PATH, b"f"),
            ],
        )
        .end();
    let msg = refused_base(&twice);
    assert!(msg.contains("attribute 20 appears twice"), "{msg}");
    // Version 2 commands and attributes in a version 1 stream.
    let msg = refused_base(&Stream::new(1).subvol("s", BASE).cmd(23, &[]).end());
    assert!(
        msg.contains("(fallocate): unknown in a version 1 stream"),
        "{msg}"
    );
    let msg = refused_base(
        &Stream::new(1)
            .subvol("s", BASE)
            .cmd(C_MKFILE, &[(A_PATH, b"f"), (25, &[0; 4])])
            .end(),
    );
    assert!(msg.contains("unknown attribute 25"), "{msg}");
    let msg = refused_base(&Stream::new(3).subvol("s", BASE).cmd(27, &[]).end());
    assert!(msg.contains("(number 27): unknown"), "{msg}");
    refused_base(&Stream::new(1).subvol("s", BASE).cmd(0, &[]).end());
    // An attribute longer than what is left of its command.
    let mut short = encode_command(1, C_MKFILE, &[(A_PATH, b"abc")]);
    short[COMMAND_HEADER_LEN + 2] = 200;
    let crc = crc32c(
        0,
        &[&short[..6], &[0; 4], &short[COMMAND_HEADER_LEN..]].concat(),
    );
    short[6..10].copy_from_slice(&crc.to_le_bytes());
    let mut stream = Stream::new(1).subvol("s", BASE).bytes;
    stream.extend(short);
    let msg = refused_base(&stream);
    assert!(
        msg.contains("attribute 15 says 200 bytes, 3 are left"),
        "{msg}"
    );
}

#[test]
fn crc32c_is_the_castagnoli_crc() {
    // The standard check value, with the usual inversions added.
    assert_eq!(!crc32c(!0, b"123456789"), 0xE306_9283);
    // Eight bytes at a time agree with one byte at a time.
    let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + i / 3) as u8).collect();
    for len in [0, 1, 7, 8, 9, 63, 1000] {
        let bytewise = data[..len].iter().fold(0x1234_5678u32, |crc, &b| {
            CRC_TABLES[0][((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8)
        });
        assert_eq!(crc32c(0x1234_5678, &data[..len]), bytewise, "{len}");
    }
}

#[test]
fn received_uuid_holders_from_subvolume_list() {
    let listed = "\
ID 256 gen 8 top level 5 received_uuid -                                    path A
ID 260 gen 24 top level 5 received_uuid 11111111-1111-1111-1111-111111111111 path r1/A-s1
ID 265 gen 18 top level 5 received_uuid 11111111-1111-1111-1111-111111111111 path x/with space path y
ID 266 gen 20 top level 5 received_uuid 107c9f33-fd21-4c89-982a-becbe29d9292 path r3/evil
";
    assert_eq!(
        received_uuid_holders(listed, &BASE.uuid).unwrap(),
        ["r1/A-s1", "x/with space path y"]
    );
    assert!(received_uuid_holders(listed, &INCR.uuid)
        .unwrap()
        .is_empty());
    assert!(received_uuid_holders("ID 256 gen 8 top level 5 path A\n", &BASE.uuid).is_err());
    assert!(received_uuid_holders("garbage\n", &BASE.uuid).is_err());
    assert_eq!(
        format_uuid(&[
            0xb8, 0xe6, 0xae, 0x26, 0xcc, 0xb1, 0x20, 0x4d, 0xb8, 0xd9, 0x47, 0xb3, 0xcf, 0xf2,
            0xb3, 0xde
        ]),
        "b8e6ae26-ccb1-204d-b8d9-47b3cff2b3de"
    );
}

/// The file policy of an import without `--trusted` into a map of 65536 ids,
/// on the commands that make device nodes, owners and attributes.
#[test]
fn files_the_policy_refuses_are_refused() {
    let policy = FilePolicy::for_import(Some(65536), false);
    let with = |kind: u16, attrs: &[(u16, &[u8])]| {
        Stream::new(1)
            .subvol("osctl-base", BASE)
            .mkfile("f")
            .cmd(kind, attrs)
            .end()
    };
    let u64_of = |n: u64| n.to_le_bytes();
    let (block, null) = (u64_of(0o060666), u64_of(0o020666));
    let (loop0, dev_null) = (u64_of(0x700), u64_of(0x103));
    let (root, foreign) = (u64_of(0), u64_of(4_000_000_000));
    let mut v3_cap = 0x0300_0000u32.to_le_bytes().to_vec();
    v3_cap.extend_from_slice(&[0; 16]);
    v3_cap.extend_from_slice(&100_000u32.to_le_bytes());
    let mut v2_cap = v3_cap[..20].to_vec();
    v2_cap[..4].copy_from_slice(&0x0200_0000u32.to_le_bytes());
    let mknod = |mode: &[u8], rdev: &[u8]| {
        with(
            C_MKNOD,
            &[(A_PATH, b"dev/x"), (A_MODE, mode), (A_RDEV, rdev)],
        )
    };
    let chown =
        |uid: &[u8], gid: &[u8]| with(C_CHOWN, &[(A_PATH, b"f"), (A_UID, uid), (A_GID, gid)]);
    let xattr = |name: &[u8], value: &[u8]| {
        with(
            C_SET_XATTR,
            &[(A_PATH, b"f"), (A_XATTR_NAME, name), (A_XATTR_DATA, value)],
        )
    };
    let refusals = [
        (
            mknod(&block, &loop0),
            "(mknod): path \"dev/x\": device node (block 7:0)",
        ),
        (
            chown(&foreign, &root),
            "(chown): path \"f\": uid 4000000000 is outside",
        ),
        (
            chown(&root, &foreign),
            "(chown): path \"f\": gid 4000000000",
        ),
        (
            xattr(b"trusted.overlay.redirect", b"/etc"),
            "(set_xattr): path \"f\": extended attribute trusted.overlay.redirect refused",
        ),
        (xattr(b"security.selinux", b"x"), "security.selinux refused"),
        (xattr(CAP_NAME, &v3_cap), "file capability root uid 100000"),
    ];
    for (stream, expect) in refusals {
        let msg = refused(
            StreamGuard::base("dataset 'var' of container 'c1'", policy),
            &stream,
        );
        assert!(msg.contains(expect), "{msg}");
        // Trusted, without a map, the same streams pass.
        let mut guard = StreamGuard::base("c1", ANY);
        assert_eq!(feed(&mut guard, &stream, 100).1.unwrap(), BASE);
    }
    // A number `btrfs receive` would not read either.
    let msg = refused_base(&chown(&root, &[0; 4]));
    assert!(msg.contains("attribute 7 has 4 bytes, not 8"), "{msg}");
    for fine in [
        mknod(&null, &dev_null),
        chown(&u64_of(65535), &u64_of(65535)),
        xattr(b"user.x", b"1"),
        xattr(CAP_NAME, &v2_cap),
    ] {
        let mut guard = StreamGuard::base("c1", policy);
        assert_eq!(feed(&mut guard, &fine, 100).1.unwrap(), BASE);
    }
}

const CAP_NAME: &[u8] = b"security.capability";

/// A container's root subvolume: the owner of its top (`path ""`) is not
/// judged, the storage makes it root's own after the receive; every other
/// path is, and other subvolumes' tops are.
#[test]
fn the_top_of_a_resealed_subvolume_may_have_any_owner() {
    let policy = FilePolicy::for_import(Some(65536), false);
    let chown = |path: &[u8]| {
        let (root, host_gid) = (0u64.to_le_bytes(), 1_572_864u64.to_le_bytes());
        Stream::new(1)
            .subvol("osctl-base", BASE)
            .mkfile("f")
            .cmd(
                C_CHOWN,
                &[(A_PATH, path), (A_UID, &root), (A_GID, &host_gid)],
            )
            .end()
    };
    let label = "dataset 'var' of container 'c1'";
    let mut guard = StreamGuard::base(label, policy).top_resealed();
    assert_eq!(feed(&mut guard, &chown(b""), 100).1.unwrap(), BASE);
    let msg = refused(
        StreamGuard::base(label, policy).top_resealed(),
        &chown(b"f"),
    );
    assert!(msg.contains("path \"f\": gid 1572864"), "{msg}");
    let msg = refused(StreamGuard::base(label, policy), &chown(b""));
    assert!(msg.contains("path \"\": gid 1572864"), "{msg}");
}

#[test]
fn uuids_read_back_as_printed() {
    let uuid: [u8; UUID_LEN] = core::array::from_fn(|i| (i * 17) as u8);
    let text = format_uuid(&uuid);
    assert_eq!(parse_uuid(&text), Some(uuid));
    assert_eq!(parse_uuid(&text.to_uppercase()), Some(uuid));
    for bad in [
        "",
        "-",
        "335980a6-70e3-a246-994a-7e07461f186",
        "335980a670e3-a246-994a-7e07461f1865-",
        "+35980a6-70e3-a246-994a-7e07461f1865",
        "335980a6-70e3-a246-994a-7e07461f186g",
    ] {
        assert_eq!(parse_uuid(bad), None, "{bad}");
    }
}
