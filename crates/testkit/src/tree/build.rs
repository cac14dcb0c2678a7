//! A tree holding every kind of file a container's root file system, an
//! archive and a send stream must carry.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use rustix::fs::FileType;

use crate::fs::{
    capability_xattr, chmod, chown, mknod, noise, set_mtime, set_xattr, write_file, write_sparse,
    CAP_NET_BIND_SERVICE, CAP_NET_RAW,
};

/// What [`build_every_kind`] puts in, besides what every tree has.
#[derive(Clone, Copy, Debug)]
pub struct Options<'a> {
    /// Goes into contents and attribute values, so that trees built with
    /// other tags differ (one per dataset: a stream sent into the wrong one
    /// is noticed).
    pub tag: &'a str,
    /// Extended attributes: `user.*` on a file and a directory, `trusted.*`
    /// on a symlink and a fifo, file capabilities on a plain and a setuid
    /// executable. Off for file systems without any (zfs-fuse).
    pub xattrs: bool,
    /// A path of about 4000 bytes and owner ids past 2^21: what tar headers
    /// need extensions for. Off where a container's path prefix would take the
    /// path past PATH_MAX or an import maps ids into 65536.
    pub extremes: bool,
}

impl Options<'static> {
    /// Everything, tagged "every".
    pub const ALL: Options<'static> = Options {
        tag: "every",
        xattrs: true,
        extremes: true,
    };
}

impl<'a> Options<'a> {
    /// What a container's root file system holds: xattrs, no extremes.
    pub const fn rootfs(tag: &'a str) -> Options<'a> {
        Options {
            tag,
            xattrs: true,
            extremes: false,
        }
    }
}

/// Fills `root` (made as needed) with the following, under names no dataset
/// of the tests has (no `var`, no `srv`):
/// - regular files: small, empty, 3 MiB of noise, compressible text, owned by
///   users and groups, setuid, setgid, in a 0700 and a 0555 directory;
/// - sparse files: 64 MiB with two extents and a trailing hole, 8 MiB of
///   holes and data up to its end, 5 MiB of hole only;
/// - hard links: a group of three across directories, a pair;
/// - symlinks: relative, absolute, dangling (owned by a user), a long target;
/// - a character and a block device (`dev/null`, `dev/loop9`) and a fifo;
/// - a sticky directory (`tmp`), an empty one (`mnt`); names with a space, a
///   newline, invalid UTF-8, 200 bytes;
/// - xattrs and the extremes as [`Options`] say;
/// - a distinct mtime with nanoseconds on every entry, the root's included.
pub fn build_every_kind(root: &Path, options: &Options) {
    let tag = options.tag;
    let at = |rel: &str| root.join(rel);
    for dir in [
        "etc",
        "home/user",
        "home/private",
        "usr/bin",
        "usr/lib",
        "usr/share",
        "tmp",
        "mnt",
        "opt/ro",
        "dev",
    ] {
        fs::create_dir_all(at(dir)).unwrap_or_else(|e| panic!("mkdir {dir}: {e}"));
    }

    write_file(at("etc/hostname"), format!("{tag}\n"), 0o644, 0, 0);
    write_file(at("etc/shadow"), "root:*:1:0:99999:7:::\n", 0o640, 0, 42);
    write_file(at("empty"), "", 0o644, 0, 0);
    let owned = format!("owned by {tag}");
    write_file(at("home/user/owned"), owned, 0o640, 1000, 1001);
    chown(at("home/user"), 1000, 100);
    write_file(at("home/nobody"), "n", 0o644, 65534, 65534);
    write_file(at("home/private/secret"), "s", 0o600, 0, 0);
    chmod(at("home/private"), 0o700);
    let random = noise(3 << 20 | 123, tag_seed(tag));
    write_file(at("usr/bin/random.bin"), random, 0o755, 0, 0);
    write_file(at("usr/bin/suid"), "#!/bin/sh\n", 0o4755, 0, 0);
    write_file(at("usr/bin/sgid"), "#!/bin/sh\n", 0o2750, 0, 1000);
    write_file(at("usr/bin/ping"), b"\x7fELF", 0o755, 0, 0);
    let text: String = (0..20_000)
        .map(|i| format!("line {i} of {tag}\n"))
        .collect();
    write_file(at("usr/share/compressible.txt"), text, 0o644, 0, 0);
    write_file(at("opt/ro/inside"), "r", 0o444, 0, 0);
    chmod(at("opt/ro"), 0o555);
    chmod(at("tmp"), 0o1777);
    chown(at("mnt"), 33, 33);

    // 64 MiB: the size from which holes are checked even on zfs-fuse.
    write_sparse(at("sparse"), 64 << 20, &[(0, 4096), (10 << 20, 1 << 20)]);
    write_sparse(
        at("sparse-tail"),
        8 << 20,
        &[(4 << 20, 8192), ((8 << 20) - 100, 100)],
    );
    write_sparse(at("all-hole"), 5 << 20, &[]);

    for (from, to) in [
        ("usr/bin/random.bin", "usr/bin/hardlink"),
        ("usr/bin/random.bin", "usr/lib/random.bin"),
        ("home/user/owned", "home/user/owned.link"),
    ] {
        fs::hard_link(at(from), at(to)).unwrap_or_else(|e| panic!("link {to}: {e}"));
    }
    let long_target = vec!["x"; 150].join("/");
    for (target, link) in [
        ("../etc/hostname", "usr/rel-link"),
        ("/etc/hostname", "etc/abs-link"),
        ("does/not/exist", "dangling"),
        (long_target.as_str(), "long-target"),
    ] {
        symlink(target, at(link)).unwrap_or_else(|e| panic!("symlink {link}: {e}"));
    }
    chown(at("dangling"), 1000, 1001);

    mknod(at("dev/null"), FileType::CharacterDevice, 0o666, 1, 3);
    mknod(at("dev/loop9"), FileType::BlockDevice, 0o660, 7, 9);
    mknod(at("fifo"), FileType::Fifo, 0o620, 0, 0);

    for (name, data) in [
        (b"with space".as_slice(), b"s".as_slice()),
        (b"new\nline", b"n"),
        (b"bad\xff\xfeutf8", b"b"),
        ("n".repeat(200).as_bytes(), b"long"),
    ] {
        let path = root.join(OsStr::from_bytes(name));
        fs::write(&path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    if options.extremes {
        write_file(at("home/bigid"), "b", 0o644, 3_000_000, 4_000_000);
        // 19 directories of 200 bytes, then a file: about 4000 bytes.
        let mut deep = root.to_path_buf();
        for i in 0..19 {
            deep.push(format!("{i:02}{}", "d".repeat(198)));
        }
        fs::create_dir_all(&deep).expect("a deep directory");
        fs::write(deep.join("f".repeat(180)), "deep").expect("a file at its bottom");
    }

    if options.xattrs {
        let note = [tag.as_bytes(), b"\0binary\xff=\n"].concat();
        set_xattr(at("etc/hostname"), "user.note", &note);
        set_xattr(at("etc/hostname"), "user.odd=name%", b"");
        set_xattr(at("home/user"), "user.dir", b"on a directory");
        // Symlinks and fifos take trusted.* attributes only.
        set_xattr(at("usr/rel-link"), "trusted.sym", b"s");
        set_xattr(at("fifo"), "trusted.node", b"n");
        set_xattr(
            at("usr/bin/ping"),
            "security.capability",
            &capability_xattr(CAP_NET_RAW),
        );
        // With the setuid bit: an importer that changes the owner after
        // setting attributes loses both.
        set_xattr(
            at("usr/bin/suid"),
            "security.capability",
            &capability_xattr(CAP_NET_BIND_SERVICE),
        );
    }

    set_distinct_mtimes(root);
}

/// A seed for the noise of a tag: other tags, other bytes.
fn tag_seed(tag: &str) -> u64 {
    tag.bytes().fold(0x9e37_79b9_7f4a_7c15, |h, b| {
        (h ^ u64::from(b)).rotate_left(13)
    })
}

/// Every entry gets its own time with nanoseconds; directories after their
/// contents (creating entries changes a directory's mtime), the root last.
fn set_distinct_mtimes(root: &Path) {
    let mut entries = Vec::new();
    collect(root, &mut entries);
    entries.sort_by_key(|(path, is_dir)| (*is_dir, std::cmp::Reverse(path.as_os_str().len())));
    for (i, (path, _)) in entries.iter().enumerate() {
        let i = i as i64;
        set_mtime(path, 1_600_000_000 + i, 123_456_789 + i);
    }
    set_mtime(root, 1_400_000_000, 999_999_999);
}

fn collect(dir: &Path, out: &mut Vec<(PathBuf, bool)>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.unwrap();
        let is_dir = entry.file_type().unwrap().is_dir();
        if is_dir {
            collect(&entry.path(), out);
        }
        out.push((entry.path(), is_dir));
    }
}
