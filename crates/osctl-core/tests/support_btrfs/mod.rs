//! Test support for the btrfs backend: a btrfs file system on a loop device
//! that goes away with its guard, files of every kind, and a tree comparison.

#![allow(dead_code)] // each test binary uses its own part of it

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use osctl_core::cmd::Cmd;
use rustix::fs::{AtFlags, FileType, Gid, Mode, Uid, XattrFlags, CWD};

/// A freshly made btrfs on a sparse image, mounted; unmounted and detached on
/// drop, also when the test fails.
pub struct LoopBtrfs {
    mount_point: PathBuf,
    device: String,
    mounted: bool,
    // Last: the image is deleted after the unmount.
    _dir: tempfile::TempDir,
}

impl LoopBtrfs {
    /// None (with the reason printed) when this machine cannot do it: not
    /// root, no btrfs-progs, no loop device.
    pub fn new(mount_options: &str) -> Option<LoopBtrfs> {
        if !rustix::process::geteuid().is_root() {
            eprintln!("SKIP: btrfs tests need root (loop devices and mounts)");
            return None;
        }
        for tool in ["mkfs.btrfs", "btrfs", "losetup"] {
            if Cmd::new(tool).arg("--version").run().is_err() {
                eprintln!("SKIP: `{tool}` is not installed (Debian package btrfs-progs / mount)");
                return None;
            }
        }
        let dir = tempfile::tempdir().expect("temporary directory");
        let image = dir.path().join("btrfs.img");
        File::create(&image)
            .and_then(|f| f.set_len(1536 << 20))
            .expect("sparse image");
        Cmd::new("mkfs.btrfs")
            .arg("-q")
            .arg(&image)
            .run()
            .expect("mkfs.btrfs");
        let device = match Cmd::new("losetup")
            .args(["--find", "--show"])
            .arg(&image)
            .run()
        {
            Ok(out) => out.trim().to_string(),
            Err(e) => {
                eprintln!("SKIP: no loop device available: {e}");
                return None;
            }
        };
        let mount_point = dir.path().join("mnt");
        fs::create_dir(&mount_point).expect("mount point");
        let mut fs = LoopBtrfs {
            mount_point,
            device,
            mounted: false,
            _dir: dir,
        };
        let mut mount = Cmd::new("mount");
        if !mount_options.is_empty() {
            mount = mount.args(["-o", mount_options]);
        }
        mount
            .arg(&fs.device)
            .arg(&fs.mount_point)
            .run()
            .expect("mount the btrfs image");
        fs.mounted = true;
        Some(fs)
    }

    pub fn path(&self) -> &Path {
        &self.mount_point
    }

    /// Every subvolume on the file system, as `btrfs subvolume list` prints them.
    pub fn subvolumes(&self) -> Vec<String> {
        Cmd::new("btrfs")
            .args(["subvolume", "list"])
            .arg(&self.mount_point)
            .run()
            .expect("btrfs subvolume list")
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for LoopBtrfs {
    fn drop(&mut self) {
        if self.mounted
            && Cmd::new("umount").arg(&self.mount_point).run().is_err()
            && Cmd::new("umount")
                .arg("-l")
                .arg(&self.mount_point)
                .run()
                .is_err()
        {
            eprintln!("warning: cannot unmount {}", self.mount_point.display());
        }
        let _ = Cmd::new("losetup").arg("-d").arg(&self.device).run();
    }
}

/// A capability set `cap_net_raw+ep` as `security.capability` holds it
/// (VFS_CAP_REVISION_2: magic with the effective flag, then permitted and
/// inheritable for the low and the high 32 capabilities).
pub fn net_raw_capability() -> Vec<u8> {
    let words: [u32; 5] = [0x0200_0001, 1 << 13, 0, 0, 0];
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

pub fn write_file(path: &Path, data: &[u8], mode: u32, uid: u32, gid: u32) {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).unwrap();
    }
    fs::write(path, data).unwrap();
    chown(path, uid, gid);
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

pub fn chown(path: &Path, uid: u32, gid: u32) {
    rustix::fs::chownat(
        CWD,
        path,
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

pub fn mknod(path: &Path, kind: FileType, major: u32, minor: u32) {
    rustix::fs::mknodat(
        CWD,
        path,
        kind,
        Mode::from_raw_mode(0o620),
        rustix::fs::makedev(major, minor),
    )
    .unwrap_or_else(|e| panic!("mknod {}: {e}", path.display()));
}

pub fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(path, name, value, XattrFlags::empty())
        .unwrap_or_else(|e| panic!("setxattr {name} on {}: {e}", path.display()));
}

/// A file of `size` bytes with data only at its start and its end.
pub fn write_sparse(path: &Path, size: u64) {
    let mut f = File::create(path).unwrap();
    f.write_all(b"head").unwrap();
    f.seek(SeekFrom::Start(size - 4)).unwrap();
    f.write_all(b"tail").unwrap();
}

/// Fills `dir` with one of every kind of file: owners, modes (setuid, sticky),
/// devices, a fifo, hard links, symlinks, xattrs (`user.*` and a file
/// capability), a sparse file, an empty directory and a bigger compressible file.
pub fn fill_every_kind(dir: &Path, tag: &str) {
    fs::create_dir_all(dir).unwrap();
    write_file(&dir.join("plain"), tag.as_bytes(), 0o644, 0, 0);
    write_file(&dir.join("owned"), b"owned", 0o640, 1000, 1001);
    write_file(&dir.join("setuid"), b"#!/bin/sh\n", 0o4755, 0, 0);
    let text: String = (0..20_000)
        .map(|i| format!("line {i} of {tag}\n"))
        .collect();
    write_file(&dir.join("compressible.txt"), text.as_bytes(), 0o644, 0, 0);
    fs::create_dir(dir.join("sticky")).unwrap();
    fs::set_permissions(dir.join("sticky"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::create_dir(dir.join("empty")).unwrap();
    chown(&dir.join("empty"), 33, 33);
    mknod(&dir.join("null"), FileType::CharacterDevice, 1, 3);
    mknod(&dir.join("loopdev"), FileType::BlockDevice, 7, 42);
    mknod(&dir.join("fifo"), FileType::Fifo, 0, 0);
    fs::hard_link(dir.join("owned"), dir.join("owned.link")).unwrap();
    std::os::unix::fs::symlink("plain", dir.join("to-plain")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", dir.join("dangling")).unwrap();
    chown(&dir.join("dangling"), 5, 6);
    set_xattr(&dir.join("plain"), "user.note", tag.as_bytes());
    set_xattr(&dir.join("sticky"), "user.dir", b"on a directory");
    write_file(&dir.join("ping"), b"\x7fELF", 0o755, 0, 0);
    set_xattr(
        &dir.join("ping"),
        "security.capability",
        &net_raw_capability(),
    );
    write_sparse(&dir.join("sparse"), 64 << 20);
}

#[derive(Debug, PartialEq)]
struct Entry {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    rdev: u64,
    nlink: u64,
    /// Files: the size (contents are compared apart); symlinks: the target.
    content: String,
    xattrs: Vec<(String, Vec<u8>)>,
    /// Not compared for directories: creating a nested subvolume changes
    /// its parent directory's mtime after the data arrived.
    mtime: Option<(i64, i64)>,
    /// The first path of the tree sharing this entry's inode (hard links).
    link_group: String,
}

fn kind_of(ft: &fs::FileType) -> &'static str {
    if ft.is_dir() {
        "dir"
    } else if ft.is_file() {
        "file"
    } else if ft.is_symlink() {
        "symlink"
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

fn xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut names = vec![0u8; 64 * 1024];
    let len = rustix::fs::llistxattr(path, &mut names[..]).unwrap();
    let mut out = Vec::new();
    for name in names[..len].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        let mut value = vec![0u8; 64 * 1024];
        let n = rustix::fs::lgetxattr(path, name.as_str(), &mut value[..]).unwrap();
        value.truncate(n);
        out.push((name, value));
    }
    out.sort();
    out
}

/// Whether two files hold the same bytes (compared, not hashed: hashing is
/// slow in unoptimised test builds).
fn same_content(a: &Path, b: &Path) -> bool {
    let (mut fa, mut fb) = (File::open(a).unwrap(), File::open(b).unwrap());
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = read_full(&mut fa, &mut ba);
        if n != read_full(&mut fb, &mut bb) || ba[..n] != bb[..n] {
            return false;
        }
        if n == 0 {
            return true;
        }
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> usize {
    let mut filled = 0;
    while filled < buf.len() {
        match f.read(&mut buf[filled..]).unwrap() {
            0 => break,
            n => filled += n,
        }
    }
    filled
}

/// Everything below `root` that a faithful copy keeps, by relative path.
fn snapshot_tree(root: &Path) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let path = root.join(&rel);
        let meta = fs::symlink_metadata(&path).unwrap();
        let ft = meta.file_type();
        let key = rel.to_string_lossy().into_owned();
        if !ft.is_dir() {
            inodes.insert(key.clone(), (meta.dev(), meta.ino()));
        }
        let content = if ft.is_file() {
            meta.len().to_string()
        } else if ft.is_symlink() {
            fs::read_link(&path).unwrap().to_string_lossy().into_owned()
        } else {
            String::new()
        };
        if ft.is_dir() {
            for entry in fs::read_dir(&path).unwrap() {
                stack.push(rel.join(entry.unwrap().file_name()));
            }
        }
        out.insert(
            key,
            Entry {
                kind: kind_of(&ft),
                mode: meta.mode(),
                uid: meta.uid(),
                gid: meta.gid(),
                rdev: meta.rdev(),
                nlink: if ft.is_dir() { 0 } else { meta.nlink() },
                content,
                xattrs: xattrs(&path),
                mtime: (!ft.is_dir()).then(|| (meta.mtime(), meta.mtime_nsec())),
                link_group: String::new(),
            },
        );
    }
    // Paths are visited in directory order, which differs between copies:
    // name each group of hard links by its smallest path.
    let mut first_path: BTreeMap<(u64, u64), String> = BTreeMap::new();
    for (path, inode) in &inodes {
        first_path.entry(*inode).or_insert_with(|| path.clone());
    }
    for (path, inode) in &inodes {
        if let Some(entry) = out.get_mut(path) {
            entry.link_group = first_path[inode].clone();
        }
    }
    out
}

/// Panics with every difference between two trees.
pub fn assert_same_tree(expected: &Path, actual: &Path) {
    let (a, b) = (snapshot_tree(expected), snapshot_tree(actual));
    let mut diffs = Vec::new();
    for (path, entry) in &a {
        match b.get(path) {
            None => diffs.push(format!("missing: /{path}")),
            Some(other) if other != entry => {
                diffs.push(format!("differs: /{path}\n  {entry:?}\n  {other:?}"))
            }
            Some(_) => {}
        }
    }
    for path in b.keys().filter(|p| !a.contains_key(*p)) {
        diffs.push(format!("extra: /{path}"));
    }
    for (path, entry) in &a {
        let both_files = entry.kind == "file" && b.get(path).is_some_and(|e| e.kind == "file");
        if both_files && !same_content(&expected.join(path), &actual.join(path)) {
            diffs.push(format!("content differs: /{path}"));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} differs from {}:\n{}",
        actual.display(),
        expected.display(),
        diffs.join("\n")
    );
    assert!(a.len() > 1, "nothing compared in {}", expected.display());
}

/// Whether a file takes less space than its size (holes kept).
pub fn is_sparse(path: &Path) -> bool {
    let meta = fs::symlink_metadata(path).unwrap();
    meta.blocks() * 512 < meta.len() / 2
}
