//! Building trees with every file kind, and comparing two trees exactly:
//! kind, mode, owner, size, content, mtime (ns), link target, device number,
//! xattrs, hard-link groups, and that sparse files stay sparse.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, PartialEq, Clone)]
pub struct Node {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub digest: u64,
    pub mtime_ns: i128,
    pub target: Option<PathBuf>,
    pub rdev: u64,
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// Index of the first path of its hard-link group, for files with nlink > 1.
    pub link_group: Option<String>,
    pub blocks: u64,
}

fn kind_of(ft: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "dir"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_file() {
        "file"
    } else if ft.is_char_device() {
        "char"
    } else if ft.is_block_device() {
        "block"
    } else if ft.is_fifo() {
        "fifo"
    } else {
        "socket"
    }
}

fn xattrs(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut names = vec![0u8; 64 * 1024];
    let Ok(n) = rustix::fs::llistxattr(path, &mut names) else {
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for name in names[..n].split(|&b| b == 0).filter(|s| !s.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        let mut value = vec![0u8; 64 * 1024];
        if let Ok(len) = rustix::fs::lgetxattr(path, name.as_str(), &mut value) {
            out.insert(name, value[..len].to_vec());
        }
    }
    out
}

fn digest(path: &Path) -> u64 {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let mut f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.write(&buf[..n]);
    }
    h.finish()
}

/// Every path under `root` (relative, "" for the root) with its node.
pub fn scan(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    // Hard-linked files by inode; a group is named by its smallest path, as
    // readdir order differs between file systems.
    let mut inode_of: BTreeMap<String, u64> = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let full = root.join(&rel);
        let meta = std::fs::symlink_metadata(&full).unwrap();
        let kind = kind_of(meta.file_type());
        let key = rel.to_string_lossy().into_owned();
        if kind == "file" && meta.nlink() > 1 {
            inode_of.insert(key.clone(), meta.ino());
        }
        out.insert(
            key,
            Node {
                kind,
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                size: if kind == "file" { meta.len() } else { 0 },
                digest: if kind == "file" { digest(&full) } else { 0 },
                mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
                target: (kind == "symlink").then(|| std::fs::read_link(&full).unwrap()),
                rdev: if kind == "char" || kind == "block" {
                    meta.rdev()
                } else {
                    0
                },
                xattrs: xattrs(&full),
                link_group: None,
                blocks: meta.blocks(),
            },
        );
        if kind == "dir" {
            for e in std::fs::read_dir(&full).unwrap() {
                stack.push(rel.join(e.unwrap().file_name()));
            }
        }
    }
    let mut group_of: BTreeMap<u64, String> = BTreeMap::new();
    for (path, ino) in &inode_of {
        group_of.entry(*ino).or_insert_with(|| path.clone());
    }
    for (path, ino) in &inode_of {
        out.get_mut(path).unwrap().link_group = Some(group_of[ino].clone());
    }
    out
}

/// Asserts that two trees are the same. Sparse files may not take more space
/// in `copy` than in `orig` plus a little.
pub fn assert_same(orig: &Path, copy: &Path) {
    compare(orig, copy, false)
}

/// Like [`assert_same`], for copies through formats or file systems with
/// whole-second times and no xattrs (GNU tar's default format, as the
/// original uses; zfs-fuse).
pub fn assert_same_in_seconds(orig: &Path, copy: &Path) {
    compare(orig, copy, true)
}

fn compare(orig: &Path, copy: &Path, seconds: bool) {
    let (a, b) = (scan(orig), scan(copy));
    let only_a: Vec<_> = a.keys().filter(|k| !b.contains_key(*k)).collect();
    let only_b: Vec<_> = b.keys().filter(|k| !a.contains_key(*k)).collect();
    assert!(
        only_a.is_empty() && only_b.is_empty(),
        "missing in copy: {only_a:?}; extra in copy: {only_b:?}"
    );
    for (path, na) in &a {
        let nb = &b[path];
        let strip = |n: &Node| Node {
            blocks: 0,
            mtime_ns: if seconds {
                n.mtime_ns.div_euclid(1_000_000_000)
            } else {
                n.mtime_ns
            },
            xattrs: if seconds {
                BTreeMap::new()
            } else {
                n.xattrs.clone()
            },
            ..n.clone()
        };
        assert_eq!(strip(na), strip(nb), "'{path}' differs");
        if seconds {
            // zfs-fuse reports allocation late (an attribute cache): there,
            // only check that large holes stay holes.
            assert!(
                nb.size < 64 << 20 || nb.blocks * 512 < nb.size / 4,
                "'{path}' takes {} blocks in the copy for {} bytes",
                nb.blocks,
                nb.size
            );
        } else {
            assert!(
                nb.blocks <= na.blocks + 64,
                "'{path}' takes {} blocks in the copy, {} in the original",
                nb.blocks,
                na.blocks
            );
        }
    }
}

fn mknod(path: &Path, kind: rustix::fs::FileType, mode: u32, dev: u64) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        kind,
        rustix::fs::Mode::from_raw_mode(mode),
        dev,
    )
    .unwrap();
}

fn set_mtime(path: &Path, sec: i64, nsec: i64) {
    use rustix::fs::{utimensat, AtFlags, Timespec, Timestamps, CWD};
    let t = Timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    };
    utimensat(
        CWD,
        path,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

/// A root file system holding every file kind an archive must carry.
pub fn every_kind(root: &Path) {
    every_kind_but_xattrs(root);
    set_xattrs(root);
}

/// [`every_kind`] without extended attributes, for file systems that have
/// none (zfs-fuse).
pub fn every_kind_but_xattrs(root: &Path) {
    let p = |s: &str| root.join(s);
    for d in ["etc", "usr/bin", "var/empty", "dev", "home/user", "odd"] {
        std::fs::create_dir_all(p(d)).unwrap();
    }
    std::fs::write(p("etc/hostname"), "every\n").unwrap();
    std::fs::write(p("empty"), "").unwrap();
    std::fs::write(p("home/user/owned"), "mine").unwrap();
    std::os::unix::fs::chown(p("home/user/owned"), Some(1000), Some(1000)).unwrap();
    std::os::unix::fs::chown(p("home/user"), Some(1000), Some(100)).unwrap();
    std::fs::write(p("home/nobody"), "x").unwrap();
    std::os::unix::fs::chown(p("home/nobody"), Some(65534), Some(65534)).unwrap();
    let mut random = vec![0u8; 3 << 20];
    let mut seed = 0x9e3779b97f4a7c15u64;
    for b in random.iter_mut() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        *b = seed as u8;
    }
    std::fs::write(p("usr/bin/random.bin"), &random).unwrap();
    std::fs::write(p("usr/bin/suid"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(p("usr/bin/suid"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::fs::write(p("usr/bin/sgid"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(p("usr/bin/sgid"), std::fs::Permissions::from_mode(0o2711)).unwrap();
    std::fs::set_permissions(p("var/empty"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::set_permissions(p("odd"), std::fs::Permissions::from_mode(0o555)).unwrap();
    std::fs::hard_link(p("usr/bin/random.bin"), p("usr/bin/hardlink")).unwrap();
    symlink("/etc/hostname", p("etc/abs-link")).unwrap();
    symlink("../etc/hostname", p("usr/rel-link")).unwrap();
    symlink("does/not/exist", p("dangling")).unwrap();
    mknod(
        &p("dev/null"),
        rustix::fs::FileType::CharacterDevice,
        0o666,
        rustix::fs::makedev(1, 3),
    );
    mknod(
        &p("dev/loop9"),
        rustix::fs::FileType::BlockDevice,
        0o660,
        rustix::fs::makedev(7, 9),
    );
    mknod(&p("fifo"), rustix::fs::FileType::Fifo, 0o600, 0);
    let sparse = std::fs::File::create(p("sparse")).unwrap();
    sparse.set_len(256 << 20).unwrap();
    sparse.write_all_at(b"middle", 100 << 20).unwrap();
    sparse.write_all_at(b"end", (256 << 20) - 3).unwrap();
    let odd_name = OsStr::from_bytes(b"name with spaces\nand \xff byte");
    std::fs::write(root.join(odd_name), "odd").unwrap();
    let long = "l".repeat(200);
    std::fs::write(p(&long), "long").unwrap();
    set_mtime(&p("etc/hostname"), 1_600_000_000, 123_456_789);
    set_mtime(&p("etc/abs-link"), 1_500_000_000, 5);
    set_mtime(&p("etc"), 1_400_000_000, 987_654_321);
}

fn set_xattrs(root: &Path) {
    let p = |s: &str| root.join(s);
    rustix::fs::setxattr(
        p("etc/hostname"),
        "user.note",
        b"kept\0binary",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    // A file capability (cap_net_bind_service+ep), v2 format.
    let cap: [u8; 20] = [1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    rustix::fs::setxattr(
        p("usr/bin/suid"),
        "security.capability",
        &cap,
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
}
