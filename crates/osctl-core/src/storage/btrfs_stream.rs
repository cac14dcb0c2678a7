//! A check of btrfs send streams from archives, on their way to `btrfs receive`.
//!
//! Why: `btrfs receive` finds the parent of a `snapshot` command and the source
//! of a `clone` command by UUID in the file system's UUID tree, across the
//! whole file system, also with `-C` (it opens what it finds through a
//! descriptor of the mount's root taken before the chroot). A stream that
//! names the UUID of another container's subvolume (or snapshot) as its parent
//! gets a copy of that subvolume; one that clones from a foreign subvolume
//! gets its data, with `..` in the clone path reaching any file on the mount.
//! An archive must reach nothing but what it brings itself.
//!
//! The check parses the stream as it passes, without holding it back: every
//! command is complete (and judged) before its last byte is passed on, and
//! `btrfs receive` acts on a command only once it has read all of it.
//! Refused, with the command named:
//! - a bad magic, a version other than 1 to 3, a command cut short, a CRC that
//!   does not match, a command longer than the kernel ever writes;
//! - a base stream that does not start with `subvol` (a `snapshot` of
//!   something on the host), an incremental stream whose `snapshot` parent is
//!   not what the same dataset's base stream created;
//! - a second `subvol`/`snapshot` (one stream, one subvolume), anything after
//!   `end` (`btrfs receive` would read a further stream);
//! - a `clone` from any subvolume but the one being received and its parent;
//! - paths that are absolute, hold `..` or a NUL byte (where `btrfs receive`
//!   would stop reading them);
//! - commands and attributes this check does not know (it could not tell what
//!   they refer to), and attributes given twice (`btrfs receive` takes the last);
//! - what the import's [`FilePolicy`] refuses, as a tar stream's entries are
//!   refused: `mknod` of a device node it does not allow, `chown` to ids
//!   outside the container's map, `set_xattr` of an attribute it does not
//!   restore (privileged ones without `--trusted`, ACLs and capabilities
//!   naming ids outside the map). `chmod` needs no owner check here: every
//!   owner passed its `chown`, and `btrfs receive` creates files as root.
//!   Every file's owner, mode, device number and attributes are thereby
//!   judged on the way in, so the received tree is not walked again
//!   ([`super::TreeJudged::ByStream`]).
//!
//! Cost: the stream goes through userspace instead of being spliced from the
//! archive; `btrfs receive` is what takes the time. Figures in
//! docs/performance.md ("btrfs import: the stream guard's copy").
//!
//! The wire format: the magic `btrfs-stream\0`, a le32 version, then commands:
//! a le32 payload length, a le16 command, a le32 CRC-32C (of the header with
//! the CRC zeroed and the payload); the payload is attributes (le16 type, le16
//! length, value), except that from version 2 on the data attribute has no
//! length and takes the rest of the command.

use std::fmt;
use std::io::{self, Read, Write};

use crate::error::{Error, Result};
use crate::filepolicy::FilePolicy;

const MAGIC: &[u8; 13] = b"btrfs-stream\0";
const STREAM_HEADER_LEN: usize = MAGIC.len() + 4;
const COMMAND_HEADER_LEN: usize = 10;
/// The kernel's send buffer in version 1, header included.
const MAX_COMMAND_V1: usize = 64 << 10;
/// From version 2 the kernel's buffer is 16 KiB plus the largest compressed
/// extent (128 KiB), rounded up to the page size: 192 KiB with 64 KiB pages.
/// 1 MiB leaves room for larger extents and still bounds what is buffered.
const MAX_COMMAND_V2: usize = 1 << 20;
const UUID_LEN: usize = 16;

// Command numbers (the kernel's `fs/btrfs/send.h`), the ones the check looks at.
pub const C_SUBVOL: u16 = 1;
pub const C_SNAPSHOT: u16 = 2;
pub const C_MKFILE: u16 = 3;
pub const C_MKNOD: u16 = 5;
pub const C_SYMLINK: u16 = 8;
pub const C_RENAME: u16 = 9;
pub const C_LINK: u16 = 10;
pub const C_SET_XATTR: u16 = 13;
pub const C_WRITE: u16 = 15;
pub const C_CLONE: u16 = 16;
pub const C_CHMOD: u16 = 18;
pub const C_CHOWN: u16 = 19;
pub const C_END: u16 = 21;
/// The highest command of each version: 1 ends with `update_extent`,
/// 2 with `encoded_write`, 3 with `enable_verity`.
const LAST_COMMAND: [u16; 3] = [22, 25, 26];
const COMMAND_NAMES: [&str; 27] = [
    "unspec",
    "subvol",
    "snapshot",
    "mkfile",
    "mkdir",
    "mknod",
    "mkfifo",
    "mksock",
    "symlink",
    "rename",
    "link",
    "unlink",
    "rmdir",
    "set_xattr",
    "remove_xattr",
    "write",
    "clone",
    "truncate",
    "chmod",
    "chown",
    "utimes",
    "end",
    "update_extent",
    "fallocate",
    "fileattr",
    "encoded_write",
    "enable_verity",
];

// Attribute numbers.
pub const A_UUID: u16 = 1;
pub const A_CTRANSID: u16 = 2;
pub const A_INO: u16 = 3;
pub const A_MODE: u16 = 5;
pub const A_UID: u16 = 6;
pub const A_GID: u16 = 7;
pub const A_RDEV: u16 = 8;
pub const A_XATTR_NAME: u16 = 13;
pub const A_XATTR_DATA: u16 = 14;
pub const A_PATH: u16 = 15;
pub const A_PATH_TO: u16 = 16;
pub const A_PATH_LINK: u16 = 17;
pub const A_FILE_OFFSET: u16 = 18;
pub const A_DATA: u16 = 19;
pub const A_CLONE_UUID: u16 = 20;
pub const A_CLONE_CTRANSID: u16 = 21;
pub const A_CLONE_PATH: u16 = 22;
pub const A_CLONE_OFFSET: u16 = 23;
pub const A_CLONE_LEN: u16 = 24;
/// The highest attribute of each version.
const LAST_ATTRIBUTE: [u16; 3] = [24, 31, 35];
const ATTRIBUTE_SLOTS: usize = 36;

/// A subvolume as send streams name it: its UUID (the received UUID where it
/// has one) and its ctransid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubvolumeId {
    pub uuid: [u8; UUID_LEN],
    pub ctransid: u64,
}

impl fmt::Display for SubvolumeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (ctransid {})",
            format_uuid(&self.uuid),
            self.ctransid
        )
    }
}

/// A UUID as `btrfs` prints it: `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
/// The other way round: `8-4-4-4-12` hex digits; None if `text` is not one.
pub fn parse_uuid(text: &str) -> Option<[u8; UUID_LEN]> {
    let groups: Vec<&str> = text.split('-').collect();
    let lengths: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    if lengths != [8, 4, 4, 4, 12] {
        return None;
    }
    let hex = groups.concat();
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut uuid = [0u8; UUID_LEN];
    for (i, byte) in uuid.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(uuid)
}

pub fn format_uuid(uuid: &[u8; UUID_LEN]) -> String {
    let hex: String = uuid.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Where the stream is in its syntax.
enum Phase {
    /// Reading the magic and the version.
    Header,
    /// Reading commands of this version.
    Commands(u32),
    /// `end` was read: nothing may follow.
    Ended,
}

/// Checks one btrfs send stream, fed to it piece by piece with
/// [`StreamGuard::check`] before each piece goes on to `btrfs receive`.
pub struct StreamGuard {
    /// Names the dataset in messages.
    label: String,
    /// What the files the stream makes may be.
    policy: FilePolicy,
    /// The subvolume an incremental stream must be based on; None for a base stream.
    parent: Option<SubvolumeId>,
    phase: Phase,
    /// The header or command being read, until it is complete.
    pending: Vec<u8>,
    /// Where `pending` starts in the stream.
    pending_offset: u64,
    /// Bytes checked so far.
    offset: u64,
    /// Commands read so far.
    commands: u64,
    /// What the stream's `subvol` or `snapshot` command creates.
    created: Option<SubvolumeId>,
    /// Set once a check failed: the stream cannot go on.
    refused: bool,
    /// The subvolume's top directory is made root's own after the receive
    /// (a container's directory): its owner in the stream is not judged.
    top_resealed: bool,
}

impl StreamGuard {
    /// A guard for a base (full) stream: it must create its subvolume, and
    /// its files must pass `policy`.
    pub fn base(label: impl Into<String>, policy: FilePolicy) -> StreamGuard {
        StreamGuard::new(label.into(), None, policy)
    }

    /// A guard for an incremental stream, which must be a snapshot of
    /// `parent`, what the same dataset's base stream created.
    pub fn incremental(
        label: impl Into<String>,
        parent: SubvolumeId,
        policy: FilePolicy,
    ) -> StreamGuard {
        StreamGuard::new(label.into(), Some(parent), policy)
    }

    fn new(label: String, parent: Option<SubvolumeId>, policy: FilePolicy) -> StreamGuard {
        StreamGuard {
            label,
            policy,
            parent,
            phase: Phase::Header,
            pending: Vec::with_capacity(STREAM_HEADER_LEN),
            pending_offset: 0,
            offset: 0,
            commands: 0,
            created: None,
            refused: false,
            top_resealed: false,
        }
    }

    /// For a container's root subvolume, whose top the storage seals after
    /// every receive: a container that ran left it with its root's host
    /// group (`datasets::let_root_through`), which the stream carries.
    pub fn top_resealed(self) -> StreamGuard {
        StreamGuard {
            top_resealed: true,
            ..self
        }
    }

    /// The subvolume an incremental stream is based on; None for a base stream.
    pub fn parent(&self) -> Option<SubvolumeId> {
        self.parent
    }

    /// Checks the next bytes of the stream. Every command they complete is
    /// judged here, so an error means that these bytes must not reach the
    /// receiver, nor anything after them.
    pub fn check(&mut self, mut bytes: &[u8]) -> Result<()> {
        if self.refused {
            return Err(Error::archive(format!(
                "{}: the btrfs stream was refused already",
                self.label
            )));
        }
        while !bytes.is_empty() {
            let taken = match self.step(bytes) {
                Ok(taken) => taken,
                Err(e) => {
                    self.refused = true;
                    return Err(e);
                }
            };
            bytes = &bytes[taken..];
            self.offset += taken as u64;
        }
        Ok(())
    }

    /// The stream ended: refuses one cut short; returns the subvolume it created.
    pub fn finish(&mut self) -> Result<SubvolumeId> {
        if self.refused {
            return Err(Error::archive(format!(
                "{}: the btrfs stream was refused",
                self.label
            )));
        }
        match (&self.phase, self.created) {
            (Phase::Ended, Some(created)) => Ok(created),
            (Phase::Header, _) => Err(self.refuse_at(
                self.pending_offset,
                "the stream ends within its header".into(),
            )),
            _ if !self.pending.is_empty() => Err(self.refuse_at(
                self.pending_offset,
                format!(
                    "the stream ends within command #{} ({} of its bytes present)",
                    self.commands + u64::from(self.pending.len() < COMMAND_HEADER_LEN),
                    self.pending.len()
                ),
            )),
            _ => Err(self.refuse_at(self.offset, "the stream ends without an end command".into())),
        }
    }

    /// Copies a whole stream from `input` to `output`, checking it on the way
    /// (for tests and measurements; imports feed [`StreamGuard::check`]).
    pub fn copy(&mut self, input: &mut dyn Read, output: &mut dyn Write) -> Result<SubvolumeId> {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("cannot read the btrfs stream", e)),
            };
            self.check(&buf[..n])?;
            output
                .write_all(&buf[..n])
                .map_err(|e| Error::io("cannot write the btrfs stream", e))?;
        }
        self.finish()
    }

    /// Takes what the current header or command still lacks from `bytes`
    /// and judges it once complete; returns how many bytes it took.
    fn step(&mut self, bytes: &[u8]) -> Result<usize> {
        let version = match self.phase {
            Phase::Ended => return Err(self.refuse_at(
                self.offset,
                "bytes after the end command (btrfs receive would read them as a further stream)"
                    .into(),
            )),
            Phase::Header => {
                let taken = self.fill(bytes, STREAM_HEADER_LEN);
                if self.pending.len() == STREAM_HEADER_LEN {
                    let version = self.stream_header()?;
                    self.phase = Phase::Commands(version);
                    self.next_item();
                }
                return Ok(taken);
            }
            Phase::Commands(version) => version,
        };
        let mut taken = 0;
        if self.pending.len() < COMMAND_HEADER_LEN {
            taken = self.fill(bytes, COMMAND_HEADER_LEN);
            if self.pending.len() < COMMAND_HEADER_LEN {
                return Ok(taken);
            }
            self.commands += 1;
            let total = COMMAND_HEADER_LEN + le32(&self.pending[..4]) as usize;
            let limit = max_command(version);
            if total > limit {
                let kind = le16(&self.pending[4..6]);
                return Err(self.refuse_command(
                    kind,
                    format!(
                        "{total} bytes long, more than the {limit} a version {version} stream holds in one command"
                    ),
                ));
            }
            self.pending.reserve_exact(total - COMMAND_HEADER_LEN);
        }
        // The payload (none at all for some commands, such as `end`).
        let total = COMMAND_HEADER_LEN + le32(&self.pending[..4]) as usize;
        taken += self.fill(&bytes[taken..], total);
        if self.pending.len() == total {
            self.command(version)?;
            self.next_item();
        }
        Ok(taken)
    }

    /// Appends to `pending` up to `want` bytes in all; returns how many it took.
    fn fill(&mut self, bytes: &[u8], want: usize) -> usize {
        let taken = (want - self.pending.len()).min(bytes.len());
        self.pending.extend_from_slice(&bytes[..taken]);
        taken
    }

    fn next_item(&mut self) {
        self.pending_offset += self.pending.len() as u64;
        self.pending.clear();
    }

    fn stream_header(&self) -> Result<u32> {
        if &self.pending[..MAGIC.len()] != MAGIC {
            return Err(self.refuse_at(
                0,
                format!(
                    "not a btrfs send stream (it starts with \"{}\")",
                    self.pending[..MAGIC.len()].escape_ascii()
                ),
            ));
        }
        let version = le32(&self.pending[MAGIC.len()..]);
        if !(1..=3).contains(&version) {
            return Err(self.refuse_at(
                MAGIC.len() as u64,
                format!("unknown stream version {version} (1 to 3 are known)"),
            ));
        }
        Ok(version)
    }

    /// Judges the complete command in `pending`.
    fn command(&mut self, version: u32) -> Result<()> {
        // Taken out while judged, which may record what the command creates.
        let raw = std::mem::take(&mut self.pending);
        let kind = le16(&raw[4..6]);
        let verdict = self.judge_raw(version, kind, &raw);
        self.pending = raw;
        verdict.map_err(|why| self.refuse_command(kind, why))?;
        if kind == C_END {
            self.phase = Phase::Ended;
        }
        Ok(())
    }

    fn judge_raw(&mut self, version: u32, kind: u16, raw: &[u8]) -> Result<(), String> {
        let stated_crc = le32(&raw[6..10]);
        let crc = crc32c(
            crc32c(crc32c(0, &raw[..6]), &[0; 4]),
            &raw[COMMAND_HEADER_LEN..],
        );
        if crc != stated_crc {
            return Err(format!(
                "CRC-32C {crc:#010x} where the header says {stated_crc:#010x}"
            ));
        }
        if kind == 0 || kind > LAST_COMMAND[version as usize - 1] {
            return Err(format!("unknown in a version {version} stream"));
        }
        let attrs = Attributes::parse(version, &raw[COMMAND_HEADER_LEN..])?;
        self.judge(kind, &attrs)
    }

    /// The policy, on one well-formed command.
    fn judge(&mut self, kind: u16, attrs: &Attributes) -> Result<(), String> {
        match (kind, self.created, self.parent) {
            (C_SUBVOL, None, None) => {
                subvolume_name(attrs)?;
                self.created = Some(attrs.subvolume(A_UUID, A_CTRANSID)?);
                Ok(())
            }
            (C_SUBVOL, None, Some(parent)) => Err(format!(
                "an incremental stream must be a snapshot of its base {parent}, not a new subvolume"
            )),
            (C_SNAPSHOT, None, None) => Err(format!(
                "a base stream must create its subvolume: this one snapshots subvolume {} of the host",
                attrs
                    .subvolume(A_CLONE_UUID, A_CLONE_CTRANSID)
                    .map_or_else(|e| e, |s| s.to_string())
            )),
            (C_SNAPSHOT, None, Some(parent)) => {
                subvolume_name(attrs)?;
                let from = attrs.subvolume(A_CLONE_UUID, A_CLONE_CTRANSID)?;
                if from != parent {
                    return Err(format!(
                        "its parent is subvolume {from}, not {parent}, which the base stream created"
                    ));
                }
                let created = attrs.subvolume(A_UUID, A_CTRANSID)?;
                if created.uuid == parent.uuid {
                    return Err(format!(
                        "it gives the new subvolume its parent's UUID {}",
                        format_uuid(&parent.uuid)
                    ));
                }
                self.created = Some(created);
                Ok(())
            }
            (C_SUBVOL | C_SNAPSHOT, Some(created), _) => Err(format!(
                "a second subvolume in one stream (the first is {created})"
            )),
            (_, None, _) => Err("the stream must start with a subvol or snapshot command".into()),
            (C_CLONE, Some(created), parent) => {
                let source = attrs.subvolume(A_CLONE_UUID, A_CLONE_CTRANSID)?;
                if source != created && Some(source) != parent {
                    return Err(format!(
                        "it clones from subvolume {source}, which is neither the one received ({created}) nor its parent{}",
                        parent.map_or_else(String::new, |p| format!(" ({p})"))
                    ));
                }
                inner_paths(kind, attrs)
            }
            _ => {
                inner_paths(kind, attrs)?;
                self.judge_files(kind, attrs)
            }
        }
    }

    /// The file policy, on the commands that make device nodes, owners and
    /// extended attributes.
    fn judge_files(&self, kind: u16, attrs: &Attributes) -> Result<(), String> {
        let verdict = match kind {
            C_MKNOD => {
                let mode = attrs.u64(A_MODE)?;
                // `btrfs receive` passes the mode's file type bits only.
                let mode = u32::try_from(mode & 0o170000).expect("masked");
                self.policy.check_node(mode, attrs.u64(A_RDEV)?)
            }
            C_CHOWN if self.top_resealed && attrs.get(A_PATH).unwrap_or_default().is_empty() => {
                Ok(())
            }
            C_CHOWN => self
                .policy
                .check_owner(attrs.u64(A_UID)?, attrs.u64(A_GID)?),
            C_SET_XATTR => {
                let name = attrs.required(A_XATTR_NAME)?;
                let value = attrs.required(A_XATTR_DATA)?;
                // Trusted: what is never restored from tar streams is
                // still received as it is, as before.
                self.policy.check_xattr(name, value).map(drop)
            }
            _ => Ok(()),
        };
        verdict.map_err(|why| {
            let path = attrs.get(A_PATH).unwrap_or_default();
            format!("path \"{}\": {why}", path.escape_ascii())
        })
    }

    /// An error naming the command being read (number, name, offset).
    fn refuse_command(&self, kind: u16, why: String) -> Error {
        let name = match COMMAND_NAMES.get(kind as usize) {
            Some(name) => name.to_string(),
            None => format!("number {kind}"),
        };
        self.refuse_at(
            self.pending_offset,
            format!("command #{} ({name}): {why}", self.commands),
        )
    }

    fn refuse_at(&self, offset: u64, why: String) -> Error {
        Error::archive(format!(
            "{}: btrfs stream refused at byte {offset}: {why}",
            self.label
        ))
    }
}

fn max_command(version: u32) -> usize {
    if version == 1 {
        MAX_COMMAND_V1
    } else {
        MAX_COMMAND_V2
    }
}

/// A command's attributes by type, each at most once.
struct Attributes<'a>([Option<&'a [u8]>; ATTRIBUTE_SLOTS]);

impl<'a> Attributes<'a> {
    /// Splits a payload as `btrfs receive` does, refusing what it would
    /// refuse and attributes given twice (where it would take the last).
    fn parse(version: u32, mut payload: &'a [u8]) -> Result<Attributes<'a>, String> {
        let last = LAST_ATTRIBUTE[version as usize - 1];
        let mut attrs = Attributes([None; ATTRIBUTE_SLOTS]);
        while !payload.is_empty() {
            let Some((head, rest)) = payload.split_first_chunk::<2>() else {
                return Err("an attribute is cut short".into());
            };
            let kind = u16::from_le_bytes(*head);
            if kind == 0 || kind > last {
                return Err(format!(
                    "unknown attribute {kind} in a version {version} stream"
                ));
            }
            let (value, rest) = if version >= 2 && kind == A_DATA {
                (rest, &rest[rest.len()..])
            } else {
                let Some((len, rest)) = rest.split_first_chunk::<2>() else {
                    return Err(format!("attribute {kind} is cut short"));
                };
                let len = u16::from_le_bytes(*len) as usize;
                if len > rest.len() {
                    return Err(format!(
                        "attribute {kind} says {len} bytes, {} are left",
                        rest.len()
                    ));
                }
                rest.split_at(len)
            };
            let slot = &mut attrs.0[kind as usize];
            if slot.is_some() {
                return Err(format!("attribute {kind} appears twice"));
            }
            *slot = Some(value);
            payload = rest;
        }
        Ok(attrs)
    }

    fn get(&self, kind: u16) -> Option<&'a [u8]> {
        self.0[kind as usize]
    }

    fn required(&self, kind: u16) -> Result<&'a [u8], String> {
        self.get(kind)
            .ok_or_else(|| format!("attribute {kind} is missing"))
    }

    /// A number attribute (8 bytes, little-endian, as `btrfs receive` reads it).
    fn u64(&self, kind: u16) -> Result<u64, String> {
        let bytes = self.required(kind)?;
        <[u8; 8]>::try_from(bytes)
            .map(u64::from_le_bytes)
            .map_err(|_| format!("attribute {kind} has {} bytes, not 8", bytes.len()))
    }

    /// The subvolume named by a UUID and a ctransid attribute.
    fn subvolume(&self, uuid: u16, ctransid: u16) -> Result<SubvolumeId, String> {
        let uuid_bytes = self.required(uuid)?;
        let ctransid_bytes = self.required(ctransid)?;
        match (
            <[u8; UUID_LEN]>::try_from(uuid_bytes),
            <[u8; 8]>::try_from(ctransid_bytes),
        ) {
            (Ok(uuid), Ok(ctransid)) => Ok(SubvolumeId {
                uuid,
                ctransid: u64::from_le_bytes(ctransid),
            }),
            _ => Err(format!(
                "a UUID of {} bytes or a ctransid of {} bytes",
                uuid_bytes.len(),
                ctransid_bytes.len()
            )),
        }
    }
}

/// The name of the subvolume a stream creates: one path component, since
/// `btrfs receive` puts it in the receive directory.
fn subvolume_name(attrs: &Attributes) -> Result<(), String> {
    let name = attrs.required(A_PATH)?;
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0)
    {
        return Err(format!(
            "the subvolume name \"{}\" is not one plain path component",
            name.escape_ascii()
        ));
    }
    Ok(())
}

/// Paths inside the subvolume (what is created, renamed, linked, cloned):
/// relative, without `..`, without a NUL byte. A symlink's target is data,
/// not a path `btrfs receive` follows, and is left alone.
fn inner_paths(kind: u16, attrs: &Attributes) -> Result<(), String> {
    let mut names = vec![A_PATH, A_PATH_TO, A_CLONE_PATH];
    if kind != C_SYMLINK {
        names.push(A_PATH_LINK);
    }
    for name in names {
        let Some(path) = attrs.get(name) else {
            continue;
        };
        let why = if path.contains(&0) {
            "holds a NUL byte"
        } else if path.starts_with(b"/") {
            "is absolute"
        } else if path.split(|&b| b == b'/').any(|part| part == b"..") {
            "climbs out with '..'"
        } else {
            continue;
        };
        return Err(format!(
            "path \"{}\" (attribute {name}) {why}",
            path.escape_ascii()
        ));
    }
    Ok(())
}

/// The start of a stream of `version`, as `btrfs send` writes it.
pub fn encode_stream_header(version: u32) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&version.to_le_bytes());
    out
}

/// One command as the kernel writes it, CRC included; from version 2 on the
/// data attribute goes without its length (it must come last). For tests and
/// tools that build or edit streams.
pub fn encode_command(version: u32, kind: u16, attributes: &[(u16, &[u8])]) -> Vec<u8> {
    let mut payload = Vec::new();
    for (attr, value) in attributes {
        payload.extend_from_slice(&attr.to_le_bytes());
        if !(version >= 2 && *attr == A_DATA) {
            payload.extend_from_slice(&(value.len() as u16).to_le_bytes());
        }
        payload.extend_from_slice(value);
    }
    let mut out = Vec::with_capacity(COMMAND_HEADER_LEN + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&payload);
    let crc = crc32c(0, &out);
    out[6..COMMAND_HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
    out
}

fn le16(bytes: &[u8]) -> u16 {
    u16::from_le_bytes([bytes[0], bytes[1]])
}

fn le32(bytes: &[u8]) -> u32 {
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// Paths of the subvolumes that `btrfs subvolume list -R` shows with `uuid`
/// as their received UUID. Lines look like
/// `ID 260 gen 24 top level 5 received_uuid 3c1f...-... path a/b` (`-` for
/// none, padded with spaces); the path is the rest of the line.
pub fn received_uuid_holders(list: &str, uuid: &[u8; UUID_LEN]) -> Result<Vec<String>> {
    let wanted = format_uuid(uuid);
    let mut holders = Vec::new();
    for line in list.lines().filter(|l| !l.trim().is_empty()) {
        let bad = || {
            Error::invalid(format!(
                "unexpected line in `btrfs subvolume list -R` output: '{}'",
                line.escape_debug()
            ))
        };
        let (head, path) = line.split_once(" path ").ok_or_else(bad)?;
        let mut words = head.split_whitespace();
        if words.next() != Some("ID") {
            return Err(bad());
        }
        let received = words
            .skip_while(|w| *w != "received_uuid")
            .nth(1)
            .ok_or_else(bad)?;
        if received.eq_ignore_ascii_case(&wanted) {
            holders.push(path.to_string());
        }
    }
    Ok(holders)
}

/// CRC-32C (Castagnoli) as btrfs computes it: reflected, seeded with `crc`
/// (0 for a command), without the usual final inversion. Eight bytes at a
/// time through eight tables ("slicing by 8").
fn crc32c(mut crc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        let low = crc ^ le32(&chunk[..4]);
        let high = le32(&chunk[4..]);
        crc = CRC_TABLES[7][(low & 0xff) as usize]
            ^ CRC_TABLES[6][((low >> 8) & 0xff) as usize]
            ^ CRC_TABLES[5][((low >> 16) & 0xff) as usize]
            ^ CRC_TABLES[4][(low >> 24) as usize]
            ^ CRC_TABLES[3][(high & 0xff) as usize]
            ^ CRC_TABLES[2][((high >> 8) & 0xff) as usize]
            ^ CRC_TABLES[1][((high >> 16) & 0xff) as usize]
            ^ CRC_TABLES[0][(high >> 24) as usize];
    }
    for &byte in chunks.remainder() {
        crc = CRC_TABLES[0][((crc ^ byte as u32) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

/// `[0]` is the byte-at-a-time table of the reflected polynomial 0x82F63B78;
/// `[k]` advances `[k-1]` by one more zero byte.
static CRC_TABLES: [[u32; 256]; 8] = crc_tables();

const fn crc_tables() -> [[u32; 256]; 8] {
    let mut tables = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
            bit += 1;
        }
        tables[0][i] = crc;
        i += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let previous = tables[k - 1][i];
            tables[k][i] = (previous >> 8) ^ tables[0][(previous & 0xff) as usize];
            i += 1;
        }
        k += 1;
    }
    tables
}

#[cfg(test)]
mod tests;
