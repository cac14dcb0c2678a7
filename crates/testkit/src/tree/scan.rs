//! Everything about a tree that a faithful copy keeps, by relative path.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use rustix::io::Errno;
use sha2::{Digest, Sha256};

/// Relative path (`""` is the root, no leading slash) to what is there.
pub type Tree = BTreeMap<Vec<u8>, Node>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub kind: Kind,
    /// The 12 permission bits: setuid, setgid and sticky included.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Links to the inode; 0 for directories, whose count depends on the
    /// file system.
    pub nlink: u64,
    /// Regular files only (0 otherwise).
    pub size: u64,
    /// SHA-256 of a regular file's contents.
    pub digest: Option<[u8; 32]>,
    pub mtime: Mtime,
    pub target: Option<Vec<u8>>,
    /// Device nodes only (0 otherwise).
    pub rdev: u64,
    /// Empty where the file system has none (zfs-fuse).
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// For a file with more than one link: the smallest path in the tree
    /// sharing its inode. Paths, not inode numbers, compare across trees; the
    /// smallest, as directory order differs between file systems.
    pub link_group: Option<Vec<u8>>,
    /// Allocated 512-byte blocks (`st_blocks`).
    pub blocks: u64,
    /// On another file system than its parent directory: a nested subvolume
    /// or dataset (not the root of the scan).
    pub mount_point: bool,
    /// A directory with a mount point among its entries.
    pub holds_mount_point: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mtime {
    pub sec: i64,
    pub nsec: i64,
}

/// Scans everything below `root` (itself included), crossing mount points.
pub fn scan(root: &Path) -> Tree {
    let mut tree = Tree::new();
    // Files with more than one link: their inode, and each inode's smallest path.
    let mut linked: Vec<(Vec<u8>, (u64, u64))> = Vec::new();
    let mut smallest_path: BTreeMap<(u64, u64), Vec<u8>> = BTreeMap::new();
    // Paths to visit, with the device of their parent directory.
    let mut todo: Vec<(Vec<u8>, Option<u64>)> = vec![(Vec::new(), None)];
    while let Some((rel, parent_dev)) = todo.pop() {
        let path = root.join(std::ffi::OsStr::from_bytes(&rel));
        let meta =
            fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
        let kind = kind_of(meta.file_type());
        let mut holds_mount_point = false;
        if kind == Kind::Dir {
            let entries =
                fs::read_dir(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            for entry in entries {
                let entry = entry.unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
                let mut child = rel.clone();
                if !child.is_empty() {
                    child.push(b'/');
                }
                child.extend_from_slice(entry.file_name().as_bytes());
                holds_mount_point |= entry.metadata().is_ok_and(|m| m.dev() != meta.dev());
                todo.push((child, Some(meta.dev())));
            }
        }
        if kind != Kind::Dir && meta.nlink() > 1 {
            let inode = (meta.dev(), meta.ino());
            let smallest = smallest_path.entry(inode).or_insert_with(|| rel.clone());
            if rel < *smallest {
                smallest.clone_from(&rel);
            }
            linked.push((rel.clone(), inode));
        }
        let node = Node {
            kind,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            nlink: if kind == Kind::Dir { 0 } else { meta.nlink() },
            size: if kind == Kind::File { meta.size() } else { 0 },
            digest: (kind == Kind::File).then(|| digest(&path)),
            mtime: Mtime {
                sec: meta.mtime(),
                nsec: meta.mtime_nsec(),
            },
            target: (kind == Kind::Symlink).then(|| {
                let target = fs::read_link(&path)
                    .unwrap_or_else(|e| panic!("readlink {}: {e}", path.display()));
                target.as_os_str().as_bytes().to_vec()
            }),
            rdev: match kind {
                Kind::CharDevice | Kind::BlockDevice => meta.rdev(),
                _ => 0,
            },
            xattrs: xattrs(&path),
            // Known once the whole tree is seen.
            link_group: None,
            blocks: meta.blocks(),
            mount_point: parent_dev.is_some_and(|dev| dev != meta.dev()),
            holds_mount_point,
        };
        tree.insert(rel, node);
    }
    for (rel, inode) in linked {
        if let Some(node) = tree.get_mut(&rel) {
            node.link_group = Some(smallest_path[&inode].clone());
        }
    }
    tree
}

fn kind_of(ft: fs::FileType) -> Kind {
    if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        Kind::File
    } else if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_char_device() {
        Kind::CharDevice
    } else if ft.is_block_device() {
        Kind::BlockDevice
    } else if ft.is_fifo() {
        Kind::Fifo
    } else {
        Kind::Socket
    }
}

fn digest(path: &Path) -> [u8; 32] {
    let mut file = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return hasher.finalize().into(),
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) => panic!("read {}: {e}", path.display()),
        }
    }
}

/// The extended attributes of `path` itself; none where the file system has
/// no support for them.
fn xattrs(path: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut names = vec![0u8; 64 << 10];
    let len = match rustix::fs::llistxattr(path, &mut names[..]) {
        Ok(len) => len,
        Err(Errno::NOTSUP) => return BTreeMap::new(),
        Err(e) => panic!("list the xattrs of {}: {e}", path.display()),
    };
    let mut out = BTreeMap::new();
    for name in names[..len].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let mut value = vec![0u8; 64 << 10];
        let len = rustix::fs::lgetxattr(path, name, &mut value[..]).unwrap_or_else(|e| {
            let name = name.escape_ascii();
            panic!("get xattr {name} of {}: {e}", path.display())
        });
        value.truncate(len);
        out.insert(name.to_vec(), value);
    }
    out
}
