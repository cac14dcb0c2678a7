//! File-system primitives relative to directory descriptors: resolving paths
//! beneath a root without following symbolic links, removing trees without
//! leaving the root, reading extended attributes, listing directories.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use rustix::fs::{self as fs, AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::Timestamp;

/// A directory opened for reading entries and as the base of *at calls.
pub(crate) const DIR_FLAGS: OFlags = OFlags::DIRECTORY
    .union(OFlags::RDONLY)
    .union(OFlags::CLOEXEC)
    .union(OFlags::NOFOLLOW);

/// The parts of `struct stat` we use, in fixed types on every architecture.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Meta {
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    pub size: u64,
    pub blocks: u64,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
}

impl Meta {
    #[allow(clippy::unnecessary_cast)] // the field types differ per architecture
    pub fn from_stat(st: &fs::Stat) -> Meta {
        Meta {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            nlink: st.st_nlink as u64,
            mode: st.st_mode as u32,
            uid: st.st_uid as u32,
            gid: st.st_gid as u32,
            rdev: st.st_rdev as u64,
            size: st.st_size.max(0) as u64,
            blocks: st.st_blocks.max(0) as u64,
            mtime: Timestamp {
                sec: st.st_mtime as i64,
                nsec: st.st_mtime_nsec as u32,
            },
            ctime: Timestamp {
                sec: st.st_ctime as i64,
                nsec: st.st_ctime_nsec as u32,
            },
        }
    }

    pub fn file_type(&self) -> FileType {
        FileType::from_raw_mode(self.mode as _)
    }

    pub fn perm(&self) -> u32 {
        self.mode & 0o7777
    }
}

pub(crate) fn fstat(fd: BorrowedFd<'_>) -> io::Result<Meta> {
    Ok(Meta::from_stat(&fs::fstat(fd)?))
}

pub(crate) fn lstat_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Meta> {
    Ok(Meta::from_stat(&fs::statat(
        dir,
        name,
        AtFlags::SYMLINK_NOFOLLOW,
    )?))
}

/// `/proc/self/fd/<fd>`: reopening or changing the very inode a descriptor
/// (possibly an O_PATH one) refers to.
pub(crate) fn proc_fd_path(fd: BorrowedFd<'_>) -> CString {
    CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("no NUL in a number")
}

/// `/proc/self/fd/<dir>/<name>`: a path for the l*xattr calls, which have no
/// *at variant; the directory part is pinned by the descriptor and the last
/// component is not followed.
pub(crate) fn proc_child_path(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<CString> {
    let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    path.extend_from_slice(name);
    CString::new(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// Names in a directory (without "." and ".."), with the type readdir gives.
pub(crate) fn read_names(dir: BorrowedFd<'_>) -> io::Result<Vec<(Vec<u8>, FileType)>> {
    let mut listing = fs::Dir::read_from(dir)?;
    collect_names(&mut listing)
}

pub(crate) fn collect_names(listing: &mut fs::Dir) -> io::Result<Vec<(Vec<u8>, FileType)>> {
    let mut names = Vec::new();
    while let Some(entry) = listing.read() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push((name.to_vec(), entry.file_type()));
        }
    }
    Ok(names)
}

/// How paths beneath the root are resolved: openat2 when the kernel has it
/// (5.6+), else one component at a time with O_NOFOLLOW.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resolver {
    Openat2,
    PerComponent,
}

impl Resolver {
    pub fn detect() -> Resolver {
        match fs::openat2(
            fs::CWD,
            "/",
            DIR_FLAGS,
            Mode::empty(),
            ResolveFlags::NO_SYMLINKS,
        ) {
            Err(Errno::NOSYS) | Err(Errno::PERM) => Resolver::PerComponent,
            _ => Resolver::Openat2,
        }
    }

    /// Opens the directory `rel` ("a/b", "" for the root itself) beneath
    /// `root`. Fails with ELOOP or ENOTDIR when a component is a symbolic
    /// link or not a directory, ENOENT when one is missing.
    pub fn open_dir(self, root: BorrowedFd<'_>, rel: &[u8]) -> io::Result<OwnedFd> {
        if rel.is_empty() {
            return Ok(fs::openat(root, ".", DIR_FLAGS, Mode::empty())?);
        }
        match self {
            Resolver::Openat2 => {
                let how =
                    ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
                // EAGAIN: a concurrent rename elsewhere; the kernel asks to retry.
                let mut tries = 0;
                loop {
                    match fs::openat2(root, rel, DIR_FLAGS, Mode::empty(), how) {
                        Err(Errno::AGAIN) if tries < 16 => tries += 1,
                        other => return Ok(other?),
                    }
                }
            }
            Resolver::PerComponent => {
                let mut fd = fs::openat(root, ".", DIR_FLAGS, Mode::empty())?;
                for part in rel.split(|&b| b == b'/') {
                    fd = fs::openat(&fd, part, DIR_FLAGS, Mode::empty())?;
                }
                Ok(fd)
            }
        }
    }

    /// Like `open_dir`, creating missing directories (mode 0755, owned by
    /// us) as `tar` does for entries whose parents the archive omits.
    pub fn open_or_create_dir(self, root: BorrowedFd<'_>, rel: &[u8]) -> io::Result<OwnedFd> {
        match self.open_dir(root, rel) {
            Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => {}
            other => return other,
        }
        let mut fd = fs::openat(root, ".", DIR_FLAGS, Mode::empty())?;
        for part in rel.split(|&b| b == b'/') {
            match fs::mkdirat(&fd, part, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
            fd = fs::openat(&fd, part, DIR_FLAGS, Mode::empty())?;
        }
        Ok(fd)
    }

    /// Removes `name` in the directory `parent_rel` (whose descriptor is
    /// `parent`), recursively for a directory. Never follows a symbolic
    /// link, never leaves `root`, refuses to descend into another file
    /// system. Returns false when there was nothing to remove.
    pub fn remove(
        self,
        root: BorrowedFd<'_>,
        parent: BorrowedFd<'_>,
        parent_rel: &[u8],
        name: &[u8],
    ) -> io::Result<bool> {
        let meta = match lstat_at(parent, name) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        if meta.file_type() != FileType::Directory {
            fs::unlinkat(parent, name, AtFlags::empty())?;
            return Ok(true);
        }
        if meta.dev != fstat(parent)?.dev {
            return Err(mount_point_error());
        }
        self.clear_dir(root, &join(parent_rel, name))?;
        fs::unlinkat(parent, name, AtFlags::REMOVEDIR)?;
        Ok(true)
    }

    /// Removes everything inside the directory `rel`. Works by path from the
    /// root rather than by holding one descriptor per level, so that a deep
    /// tree cannot exhaust descriptors.
    pub fn clear_dir(self, root: BorrowedFd<'_>, rel: &[u8]) -> io::Result<()> {
        let top = self.open_dir(root, rel)?;
        let dev = fstat(top.as_fd())?.dev;
        drop(top);
        // (directory, children already removed or queued)
        let mut stack: Vec<(Vec<u8>, bool)> = vec![(rel.to_vec(), false)];
        while let Some((path, expanded)) = stack.pop() {
            if expanded {
                if path != rel {
                    let (parent_rel, name) = split_last(&path);
                    let parent = self.open_dir(root, parent_rel)?;
                    fs::unlinkat(&parent, name, AtFlags::REMOVEDIR)?;
                }
                continue;
            }
            let dir = self.open_dir(root, &path)?;
            if fstat(dir.as_fd())?.dev != dev {
                return Err(mount_point_error());
            }
            stack.push((path.clone(), true));
            for (name, _) in read_names(dir.as_fd())? {
                let is_dir = match lstat_at(dir.as_fd(), &name) {
                    Ok(m) => m.file_type() == FileType::Directory,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                if is_dir {
                    stack.push((join(&path, &name), false));
                } else {
                    fs::unlinkat(&dir, &name, AtFlags::empty())?;
                }
            }
        }
        Ok(())
    }
}

fn mount_point_error() -> io::Error {
    io::Error::other("refusing to remove a mount point or anything below it")
}

/// "a/b" + "c" = "a/b/c"; "" + "c" = "c".
pub(crate) fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(dir.len() + 1 + name.len());
    out.extend_from_slice(dir);
    if !dir.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

/// "a/b/c" = ("a/b", "c"); "c" = ("", "c").
pub(crate) fn split_last(rel: &[u8]) -> (&[u8], &[u8]) {
    match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (&[], rel),
    }
}

/// Reusable buffers for reading extended attributes (both at the kernel's
/// maximum size, so no size query and no retry are needed).
pub(crate) struct XattrReader {
    names: Vec<u8>,
    value: Vec<u8>,
}

/// Where to read extended attributes from.
pub(crate) enum XattrSource<'a> {
    Fd(BorrowedFd<'a>),
    /// A path whose last component is not followed.
    Path(&'a CStr),
}

impl XattrReader {
    pub fn new() -> Self {
        XattrReader {
            names: vec![0; 64 << 10],
            value: vec![0; 64 << 10],
        }
    }

    /// All extended attributes, sorted by name; none on a file system that
    /// has no support for them.
    pub fn read(&mut self, src: &XattrSource<'_>) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let listed = match src {
            XattrSource::Fd(fd) => fs::flistxattr(fd, &mut self.names[..]),
            XattrSource::Path(p) => fs::llistxattr(*p, &mut self.names[..]),
        };
        let len = match listed {
            Ok(n) => n,
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for name in self.names[..len]
            .split(|&b| b == 0)
            .filter(|n| !n.is_empty())
        {
            let cname =
                CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
            let got = match src {
                XattrSource::Fd(fd) => fs::fgetxattr(fd, &cname, &mut self.value[..]),
                XattrSource::Path(p) => fs::lgetxattr(*p, &cname, &mut self.value[..]),
            };
            match got {
                Ok(n) => out.push((name.to_vec(), self.value[..n].to_vec())),
                // Removed between listing and reading.
                Err(Errno::NODATA) => {}
                Err(e) => return Err(e.into()),
            }
        }
        out.sort();
        Ok(out)
    }
}

/// chmod of a special file (device, fifo) without following a symbolic link:
/// through an O_PATH descriptor and its /proc path.
pub(crate) fn chmod_nofollow(dir: BorrowedFd<'_>, name: &[u8], mode: u32) -> io::Result<()> {
    let fd = fs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    if fstat(fd.as_fd())?.file_type() == FileType::Symlink {
        return Ok(());
    }
    Ok(fs::chmod(
        proc_fd_path(fd.as_fd()).as_c_str(),
        Mode::from_raw_mode(mode),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn both_resolvers_refuse_symlinks_and_stay_beneath() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("a/b")).unwrap();
        symlink("/", t.path().join("a/up")).unwrap();
        symlink("b", t.path().join("a/rel")).unwrap();
        let root = fs::open(t.path(), DIR_FLAGS, Mode::empty()).unwrap();
        for r in [Resolver::detect(), Resolver::PerComponent] {
            assert!(r.open_dir(root.as_fd(), b"a/b").is_ok());
            let e = r.open_dir(root.as_fd(), b"a/up/etc").unwrap_err();
            assert!(
                matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)),
                "{e}"
            );
            assert!(r.open_dir(root.as_fd(), b"a/rel").is_err());
            assert!(r.open_or_create_dir(root.as_fd(), b"a/rel/x").is_err());
            assert!(r.open_or_create_dir(root.as_fd(), b"a/new/deeper").is_ok());
        }
        assert!(t.path().join("a/new/deeper").is_dir());
    }

    #[test]
    fn remove_deletes_trees_without_following_links() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), b"x").unwrap();
        std::fs::create_dir_all(t.path().join("d/e/f")).unwrap();
        std::fs::write(t.path().join("d/e/f/g"), b"x").unwrap();
        symlink(outside.path(), t.path().join("d/link")).unwrap();
        let root = fs::open(t.path(), DIR_FLAGS, Mode::empty()).unwrap();
        let r = Resolver::detect();
        assert!(r.remove(root.as_fd(), root.as_fd(), b"", b"d").unwrap());
        assert!(!t.path().join("d").exists());
        assert!(outside.path().join("keep").exists());
        assert!(!r.remove(root.as_fd(), root.as_fd(), b"", b"d").unwrap());
    }

    #[test]
    fn path_helpers() {
        assert_eq!(join(b"", b"x"), b"x");
        assert_eq!(join(b"a/b", b"x"), b"a/b/x");
        assert_eq!(split_last(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split_last(b"c"), (&b""[..], &b"c"[..]));
    }
}
