//! Small file-system operations for building test trees. None of them follows
//! a symlink at the last component; each panics with the path on failure.

use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Gid, Mode, Timespec, Timestamps, Uid, XattrFlags, CWD};

/// `cap_net_raw`, for [`capability_xattr`].
pub const CAP_NET_RAW: u32 = 13;
/// `cap_net_bind_service`, for [`capability_xattr`].
pub const CAP_NET_BIND_SERVICE: u32 = 10;

/// Sets the modification (and access) time of `path` itself.
pub fn set_mtime(path: impl AsRef<Path>, sec: i64, nsec: i64) {
    let path = path.as_ref();
    let time = Timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    };
    let times = Timestamps {
        last_access: time,
        last_modification: time,
    };
    rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW)
        .unwrap_or_else(|e| panic!("set the mtime of {}: {e}", path.display()));
}

pub fn chown(path: impl AsRef<Path>, uid: u32, gid: u32) {
    let path = path.as_ref();
    rustix::fs::chownat(
        CWD,
        path,
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

/// Sets all 12 mode bits (setuid, setgid and sticky included).
pub fn chmod(path: impl AsRef<Path>, mode: u32) {
    let path = path.as_ref();
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// A device node or a fifo (`major` and `minor` 0) with exactly `mode`,
/// whatever the umask.
pub fn mknod(path: impl AsRef<Path>, kind: FileType, mode: u32, major: u32, minor: u32) {
    let path = path.as_ref();
    let dev = rustix::fs::makedev(major, minor);
    rustix::fs::mknodat(CWD, path, kind, Mode::from_raw_mode(mode), dev)
        .unwrap_or_else(|e| panic!("mknod {}: {e}", path.display()));
    chmod(path, mode);
}

/// Sets an extended attribute on `path` itself (a symlink's own, not its
/// target's).
pub fn set_xattr(path: impl AsRef<Path>, name: &str, value: &[u8]) {
    let path = path.as_ref();
    rustix::fs::lsetxattr(path, name, value, XattrFlags::empty())
        .unwrap_or_else(|e| panic!("set xattr {name} on {}: {e}", path.display()));
}

/// A file with `data`, owner and mode (set after the owner: a chown clears
/// setuid and setgid), its parent directories made as needed.
pub fn write_file(path: impl AsRef<Path>, data: impl AsRef<[u8]>, mode: u32, uid: u32, gid: u32) {
    let path = path.as_ref();
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    }
    fs::write(path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    chown(path, uid, gid);
    chmod(path, mode);
}

/// Deterministic pseudo-random bytes (xorshift64) for a given `seed`.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    // xorshift stays at 0 from 0.
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A file of `size` bytes with noise at the given `(offset, length)` extents
/// and holes everywhere else.
pub fn write_sparse(path: impl AsRef<Path>, size: u64, extents: &[(u64, usize)]) {
    let path = path.as_ref();
    let file = fs::File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    for (i, &(offset, len)) in extents.iter().enumerate() {
        file.write_all_at(&noise(len, 7 + i as u64), offset)
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
    file.set_len(size)
        .unwrap_or_else(|e| panic!("truncate {}: {e}", path.display()));
}

/// Whether a file takes less than half its size on disk (its holes kept).
pub fn is_sparse(path: impl AsRef<Path>) -> bool {
    let path = path.as_ref();
    let meta =
        fs::symlink_metadata(path).unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
    meta.blocks() * 512 < meta.len() / 2
}

/// A `security.capability` value granting one `capability` (a bit number such
/// as [`CAP_NET_RAW`]) permitted and effective: VFS_CAP_REVISION_2, the magic
/// word with the effective flag, then permitted and inheritable words for the
/// low and the high 32 capabilities.
pub fn capability_xattr(capability: u32) -> Vec<u8> {
    assert!(
        capability < 32,
        "capability {capability}: only the low word"
    );
    let words: [u32; 5] = [0x0200_0000 | 1, 1 << capability, 0, 0, 0];
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}
