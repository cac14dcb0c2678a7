//! Extracting a tar stream into a root file system, treating the stream as
//! hostile.
//!
//! Every path is checked (no absolute name, no "..", no NUL) and every parent
//! directory is opened beneath the root without following symbolic links
//! (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, or O_NOFOLLOW component by
//! component on kernels without it). Files are created with
//! O_CREAT|O_EXCL|O_NOFOLLOW after removing what was there; links and nodes
//! with *at calls relative to those parents. Owners, device nodes,
//! setuid/setgid and extended attributes must pass the caller's
//! [`FilePolicy`] (the same rules judge native streams).

use std::ffi::CStr;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{
    self as fs, AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags,
};
use rustix::io::Errno;

use super::header::TarKind;
use super::read::{InEntry, TarReader};
use super::safefs::{self, join, split_last, Meta, Resolver, DIR_FLAGS};
use super::EntryCounts;
use super::{limits, show_bytes, show_path, Notes, Timestamp, IO_BUFFER};
use crate::error::{Context, Error, Result};
use crate::filepolicy::{self, FilePolicy, XattrVerdict};

/// What an extraction may create.
#[derive(Debug, Clone)]
pub struct ExtractOptions {
    /// Owners, device nodes, setuid/setgid and extended attributes an entry
    /// may have; one that breaks the policy fails the extraction.
    pub policy: FilePolicy,
    /// Apply `.wh.<name>` and `.wh..wh..opq` entries as OCI whiteouts (they
    /// delete, and are not created). When false they are ordinary files.
    pub whiteouts: bool,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            policy: FilePolicy::default(),
            whiteouts: true,
        }
    }
}

/// What an extraction did, and what it could not keep.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtractStats {
    /// Entries made; whiteouts applied; `file_bytes`: file content written.
    pub counts: EntryCounts,
    /// Entries whose extended attributes the file system could not store
    /// (zfs-fuse has none): a warning, not a failure.
    pub xattrs_unsupported: u64,
    /// Of those, files that lost their `security.capability` (the program
    /// keeps running without its capabilities; listed in `notes`).
    pub capabilities_lost: u64,
    /// Extended attributes in namespaces that are not restored (trusted
    /// archives; untrusted ones are refused).
    pub xattrs_skipped: u64,
    pub notes: Notes,
}

/// Extracts the tar stream `input` into the directory `root` (which must
/// exist). Accepts our dumps and GNU tar's posix and gnu formats, applies
/// whiteouts (see [`ExtractOptions`]). Any error names the entry:
/// `archive entry './etc/x': <cause>`; hostile content is `Error::Archive`.
/// What was extracted before an error stays: the caller discards the root.
pub fn extract(input: &mut dyn Read, root: &Path, opts: &ExtractOptions) -> Result<ExtractStats> {
    extract_with(input, root, opts, Resolver::detect())
}

/// `extract` with a chosen path resolver (tests force the fallback).
pub(crate) fn extract_with(
    input: &mut dyn Read,
    root: &Path,
    opts: &ExtractOptions,
    resolver: Resolver,
) -> Result<ExtractStats> {
    let root_fd = fs::open(
        root,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)
    .ctx(|| format!("cannot open extraction root {}", root.display()))?;
    let mut ex = Extractor {
        root: root_fd,
        resolver,
        opts,
        stats: ExtractStats::default(),
        cached_parent: None,
        dir_times: Vec::new(),
        buf: vec![0; IO_BUFFER],
    };
    let mut reader = TarReader::new(input);
    while let Some(entry) = reader.next_entry()? {
        ex.stats.counts.entries += 1;
        ex.apply(&mut reader, &entry)
            .map_err(|e| e.context(format!("archive entry '{}'", show_bytes(&entry.name))))?;
    }
    ex.set_dir_times()?;
    Ok(ex.stats)
}

struct Extractor<'o> {
    root: OwnedFd,
    resolver: Resolver,
    opts: &'o ExtractOptions,
    stats: ExtractStats,
    /// The directory the last entry was created in (or the last directory
    /// created): consecutive entries mostly share it.
    cached_parent: Option<(Vec<u8>, OwnedFd)>,
    /// Directory times, set at the end (creating entries changes them):
    /// path, mtime, inode (to skip a directory replaced since).
    dir_times: Vec<(Vec<u8>, Timestamp, u64)>,
    buf: Vec<u8>,
}

fn refused(m: impl Into<String>) -> Error {
    Error::archive(m.into())
}

/// Checks an archive path and returns it relative to the root ("" = root).
fn normalize(name: &[u8], what: &str) -> Result<Vec<u8>> {
    if name.is_empty() {
        return Err(refused(format!("empty {what}")));
    }
    if name.contains(&0) {
        return Err(refused(format!("{what} contains a NUL byte")));
    }
    if name[0] == b'/' {
        return Err(refused(format!("absolute {what} refused")));
    }
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in name.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err(refused(format!("'..' in the {what} refused"))),
            _ => parts.push(part),
        }
    }
    let rel = parts.join(&b'/');
    if rel.len() > limits::PATH {
        return Err(refused(format!(
            "{what} longer than {} bytes",
            limits::PATH
        )));
    }
    Ok(rel)
}

/// What an entry asks for, as far as the checks that need no file system tell.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Action {
    /// A whiteout (only when whiteouts apply) in the entry's directory.
    Whiteout(Whiteout),
    /// The root directory itself.
    Root,
    /// Any other entry, created at its path.
    Create,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Whiteout {
    /// `.wh..wh..opq`: empties the directory.
    Opaque,
    /// Another `.wh..wh.` marker, ignored: holds the marker.
    Unknown(Vec<u8>),
    /// `.wh.<name>`: removes `<name>`.
    Remove(Vec<u8>),
}

/// The checks of an entry's names (path, link targets, whiteout) that need
/// no file system: the extractor runs them before touching anything, and
/// [`super::walk`] runs the same on a stream it only reads. Returns the
/// normalized path and what the entry asks for.
pub(super) fn check_entry(e: &InEntry, whiteouts: bool) -> Result<(Vec<u8>, Action)> {
    let rel = normalize(&e.name, "name")?;
    if whiteouts && e.kind != TarKind::Dir {
        let (_, base) = split_last(&rel);
        if let Some(name) = base.strip_prefix(b".wh.") {
            let whiteout = if base == b".wh..wh..opq" {
                Whiteout::Opaque
            } else if base.starts_with(b".wh..wh.") {
                Whiteout::Unknown(base.to_vec())
            } else if name.is_empty() || name == b"." || name == b".." {
                return Err(refused("malformed whiteout"));
            } else {
                Whiteout::Remove(name.to_vec())
            };
            return Ok((rel, Action::Whiteout(whiteout)));
        }
    }
    if rel.is_empty() {
        if e.kind != TarKind::Dir {
            return Err(refused("the root can only be a directory"));
        }
        return Ok((rel, Action::Root));
    }
    let action = match e.kind {
        TarKind::HardLink => {
            hardlink_target(&e.link)?;
            Action::Create
        }
        TarKind::Symlink => {
            if e.link.is_empty() || e.link.contains(&0) || e.link.len() > limits::PATH {
                return Err(refused(
                    "symbolic link with an empty, too long or NUL-containing target",
                ));
            }
            Action::Create
        }
        _ => Action::Create,
    };
    Ok((rel, action))
}

/// A hard link's target, normalized: never the root.
fn hardlink_target(link: &[u8]) -> Result<Vec<u8>> {
    let target = normalize(link, "hard link target")?;
    if target.is_empty() {
        return Err(refused("hard link to the root refused"));
    }
    Ok(target)
}

/// Maps the errors of resolving a parent directory to what they mean here.
fn parent_error(e: io::Error, rel: &[u8]) -> Error {
    match e.raw_os_error() {
        // O_DIRECTORY|O_NOFOLLOW on a symlink gives either error.
        Some(libc::ELOOP) | Some(libc::ENOTDIR) => refused(format!(
            "path goes through a symbolic link or a non-directory at or above {} (refused)",
            show_path(rel)
        )),
        Some(libc::EXDEV) => refused("path escapes the root (refused)"),
        _ => Error::io(format!("cannot open directory {}", show_path(rel)), e),
    }
}

fn errno(e: Errno) -> io::Error {
    e.into()
}

fn timespec(t: Timestamp) -> Timespec {
    Timespec {
        tv_sec: t.sec,
        tv_nsec: t.nsec.min(999_999_999) as _,
    }
}

fn times(t: Timestamp) -> Timestamps {
    Timestamps {
        last_access: timespec(t),
        last_modification: timespec(t),
    }
}

/// Where extended attributes go.
enum XattrTarget<'a> {
    Fd(BorrowedFd<'a>),
    /// A symlink or a node: its /proc path through its pinned parent,
    /// whose last component the l*xattr calls do not follow.
    Path(&'a CStr),
}

impl Extractor<'_> {
    /// What the policy says of a judgement: a refusal is the archive's fault.
    fn judged<T>(verdict: std::result::Result<T, String>) -> Result<T> {
        verdict.map_err(refused)
    }

    /// The directory `rel`, from the cache or resolved beneath the root;
    /// missing directories are created.
    fn take_parent(&mut self, rel: &[u8]) -> Result<OwnedFd> {
        if let Some((cached, fd)) = self.cached_parent.take() {
            if cached == rel {
                return Ok(fd);
            }
        }
        self.resolver
            .open_or_create_dir(self.root.as_fd(), rel)
            .map_err(|e| parent_error(e, rel))
    }

    fn apply(&mut self, reader: &mut TarReader<'_>, e: &InEntry) -> Result<()> {
        let (rel, action) = check_entry(e, self.opts.whiteouts)?;
        if let Action::Whiteout(whiteout) = action {
            let (dir, _) = split_last(&rel);
            return self.whiteout(dir, whiteout);
        }
        if e.kind != TarKind::HardLink {
            // A hard link's owner and mode are its target's.
            let policy = &self.opts.policy;
            Self::judged(policy.check_setid(e.mode, e.uid.into(), e.gid.into()))?;
            Self::judged(policy.check_owner(e.uid.into(), e.gid.into()))?;
        }
        if action == Action::Root {
            let root = fs::openat(&self.root, ".", DIR_FLAGS, Mode::empty())
                .map_err(errno)
                .ctx(|| "cannot open the root")?;
            return self.dir_attributes(root, &rel, e, true);
        }
        let (parent_rel, name) = split_last(&rel);
        let parent = self.take_parent(parent_rel)?;
        let result = match e.kind {
            TarKind::Dir => {
                // The new directory becomes the cached parent instead.
                return self.dir(parent, &rel, name, e);
            }
            TarKind::File => self.file(reader, parent.as_fd(), parent_rel, name, e),
            TarKind::HardLink => self.hardlink(parent.as_fd(), parent_rel, &rel, name, e),
            TarKind::Symlink => self.symlink(parent.as_fd(), parent_rel, name, e),
            TarKind::Char | TarKind::Block | TarKind::Fifo => {
                self.node(parent.as_fd(), parent_rel, name, e)
            }
        };
        self.cached_parent = Some((parent_rel.to_vec(), parent));
        result
    }

    /// `.wh.<name>` deletes `<name>`; `.wh..wh..opq` empties its directory.
    fn whiteout(&mut self, dir: &[u8], whiteout: Whiteout) -> Result<()> {
        self.cached_parent = None;
        let root = self.root.as_fd();
        let dir_fd = match self.resolver.open_dir(root, dir) {
            Ok(fd) => fd,
            // Nothing there to delete.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
            Err(e) => return Err(parent_error(e, dir)),
        };
        match whiteout {
            Whiteout::Opaque => {
                self.stats.counts.whiteouts += 1;
                self.resolver
                    .clear_dir(root, dir)
                    .ctx(|| format!("cannot empty directory {}", show_path(dir)))
            }
            Whiteout::Unknown(marker) => {
                self.stats.notes.add(format!(
                    "{}: unknown whiteout marker ignored",
                    show_path(&join(dir, &marker))
                ));
                Ok(())
            }
            Whiteout::Remove(name) => {
                self.stats.counts.whiteouts += 1;
                self.resolver
                    .remove(root, dir_fd.as_fd(), dir, &name)
                    .map(|_| ())
                    .ctx(|| format!("cannot remove {}", show_path(&join(dir, &name))))
            }
        }
    }

    /// Makes room for a new entry `name`: removes a non-directory, or a
    /// directory (recursively) unless a directory is wanted. Returns true
    /// when a directory is there and stays.
    fn make_room(
        &mut self,
        parent: BorrowedFd<'_>,
        parent_rel: &[u8],
        name: &[u8],
        want_dir: bool,
    ) -> Result<bool> {
        let rel = || show_path(&join(parent_rel, name));
        let meta = match safefs::lstat_at(parent, name) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io(format!("cannot stat {}", rel()), e)),
        };
        if meta.file_type() == FileType::Directory {
            if want_dir {
                return Ok(true);
            }
            self.resolver
                .remove(self.root.as_fd(), parent, parent_rel, name)
                .ctx(|| format!("cannot replace directory {}", rel()))?;
        } else {
            fs::unlinkat(parent, name, AtFlags::empty())
                .map_err(errno)
                .ctx(|| format!("cannot replace {}", rel()))?;
        }
        Ok(false)
    }

    fn dir(&mut self, parent: OwnedFd, rel: &[u8], name: &[u8], e: &InEntry) -> Result<()> {
        let (parent_rel, _) = split_last(rel);
        let existed = self.make_room(parent.as_fd(), parent_rel, name, true)?;
        if !existed {
            fs::mkdirat(&parent, name, Mode::from_raw_mode(0o700))
                .map_err(errno)
                .ctx(|| format!("cannot create directory {}", show_path(rel)))?;
        }
        let fd = fs::openat(&parent, name, DIR_FLAGS, Mode::empty())
            .map_err(|err| parent_error(err.into(), rel))?;
        self.dir_attributes(fd, rel, e, existed)
    }

    /// Owner, mode, extended attributes of a directory now; its time later.
    fn dir_attributes(
        &mut self,
        fd: OwnedFd,
        rel: &[u8],
        e: &InEntry,
        existed: bool,
    ) -> Result<()> {
        let shown = show_path(rel);
        fs::fchown(&fd, Some(Uid::from_raw(e.uid)), Some(Gid::from_raw(e.gid)))
            .map_err(errno)
            .ctx(|| format!("cannot change owner of {shown}"))?;
        fs::fchmod(&fd, Mode::from_raw_mode(e.mode))
            .map_err(errno)
            .ctx(|| format!("cannot change mode of {shown}"))?;
        if existed {
            self.drop_stale_xattrs(fd.as_fd(), &e.xattrs)
                .ctx(|| format!("cannot remove extended attributes of {shown}"))?;
        }
        self.set_xattrs(XattrTarget::Fd(fd.as_fd()), rel, &e.xattrs)?;
        let ino = safefs::fstat(fd.as_fd())
            .ctx(|| format!("cannot stat {shown}"))?
            .ino;
        self.dir_times.push((rel.to_vec(), e.mtime, ino));
        self.stats.counts.dirs += 1;
        self.cached_parent = Some((rel.to_vec(), fd));
        Ok(())
    }

    /// An existing directory keeps only the attributes the entry lists (in
    /// the namespaces we restore).
    fn drop_stale_xattrs(
        &mut self,
        fd: BorrowedFd<'_>,
        keep: &[(Vec<u8>, Vec<u8>)],
    ) -> io::Result<()> {
        let len = match fs::flistxattr(fd, &mut self.buf[..]) {
            Ok(n) => n,
            Err(Errno::NOTSUP) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let names: Vec<Vec<u8>> = self.buf[..len]
            .split(|&b| b == 0)
            .filter(|n| !n.is_empty() && self.opts.policy.restores(n))
            .filter(|n| !keep.iter().any(|(k, _)| k == n))
            .map(|n| n.to_vec())
            .collect();
        for name in names {
            match fs::fremovexattr(fd, name.as_slice()) {
                Ok(()) | Err(Errno::NODATA) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn file(
        &mut self,
        reader: &mut TarReader<'_>,
        parent: BorrowedFd<'_>,
        parent_rel: &[u8],
        name: &[u8],
        e: &InEntry,
    ) -> Result<()> {
        let rel = join(parent_rel, name);
        let shown = show_path(&rel);
        self.make_room(parent, parent_rel, name, false)?;
        let flags =
            OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::WRONLY | OFlags::CLOEXEC;
        let fd = fs::openat(parent, name, flags, Mode::from_raw_mode(0o600))
            .map_err(errno)
            .ctx(|| format!("cannot create {shown}"))?;
        let write_error = |err| Error::io(format!("cannot write {shown}"), err);
        match &e.sparse {
            None => {
                let mut offset = 0u64;
                while offset < e.size {
                    let n = reader.read_data(&mut self.buf)?;
                    write_all_at(fd.as_fd(), &self.buf[..n], offset).map_err(write_error)?;
                    offset += n as u64;
                }
                self.stats.counts.file_bytes += offset;
            }
            Some(map) => {
                // Holes are what we do not write; the size comes last.
                for &(start, len) in &map.segments {
                    let mut done = 0u64;
                    while done < len {
                        let want = ((len - done) as usize).min(self.buf.len());
                        reader.read_data_exact(&mut self.buf[..want])?;
                        write_all_at(fd.as_fd(), &self.buf[..want], start + done)
                            .map_err(write_error)?;
                        done += want as u64;
                    }
                    self.stats.counts.file_bytes += len;
                }
                fs::ftruncate(&fd, map.realsize)
                    .map_err(errno)
                    .map_err(write_error)?;
            }
        }
        // chown first: it clears setuid/setgid, which chmod then sets; file
        // capabilities last, as chown and writes clear them.
        fs::fchown(&fd, Some(Uid::from_raw(e.uid)), Some(Gid::from_raw(e.gid)))
            .map_err(errno)
            .ctx(|| format!("cannot change owner of {shown}"))?;
        fs::fchmod(&fd, Mode::from_raw_mode(e.mode))
            .map_err(errno)
            .ctx(|| format!("cannot change mode of {shown}"))?;
        self.set_xattrs(XattrTarget::Fd(fd.as_fd()), &rel, &e.xattrs)?;
        fs::futimens(&fd, &times(e.mtime))
            .map_err(errno)
            .ctx(|| format!("cannot set times of {shown}"))?;
        self.stats.counts.files += 1;
        Ok(())
    }

    fn hardlink(
        &mut self,
        parent: BorrowedFd<'_>,
        parent_rel: &[u8],
        rel: &[u8],
        name: &[u8],
        e: &InEntry,
    ) -> Result<()> {
        let target = hardlink_target(&e.link)?;
        if target == rel {
            return Ok(());
        }
        let (target_dir_rel, target_name) = split_last(&target);
        let target_dir = self
            .resolver
            .open_dir(self.root.as_fd(), target_dir_rel)
            .map_err(|err| match err.raw_os_error() {
                Some(libc::ENOENT) => refused(format!(
                    "hard link target {} does not exist",
                    show_path(&target)
                )),
                _ => parent_error(err, target_dir_rel),
            })?;
        match safefs::lstat_at(target_dir.as_fd(), target_name) {
            Ok(m) if m.file_type() == FileType::Directory => {
                return Err(refused(format!(
                    "hard link to directory {} refused",
                    show_path(&target)
                )))
            }
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Err(refused(format!(
                    "hard link target {} does not exist",
                    show_path(&target)
                )))
            }
            Err(err) => {
                return Err(Error::io(
                    format!("cannot stat {}", show_path(&target)),
                    err,
                ))
            }
        }
        self.make_room(parent, parent_rel, name, false)?;
        // No AT_SYMLINK_FOLLOW: a symlink target is linked itself, not followed.
        fs::linkat(&target_dir, target_name, parent, name, AtFlags::empty())
            .map_err(errno)
            .ctx(|| format!("cannot link {} to {}", show_path(rel), show_path(&target)))?;
        self.stats.counts.hardlinks += 1;
        Ok(())
    }

    fn symlink(
        &mut self,
        parent: BorrowedFd<'_>,
        parent_rel: &[u8],
        name: &[u8],
        e: &InEntry,
    ) -> Result<()> {
        let rel = join(parent_rel, name);
        self.make_room(parent, parent_rel, name, false)?;
        // The target is data: any text is allowed, we never follow it.
        fs::symlinkat(e.link.as_slice(), parent, name)
            .map_err(errno)
            .ctx(|| format!("cannot create symbolic link {}", show_path(&rel)))?;
        self.finish_at(parent, &rel, name, e, false)?;
        self.stats.counts.symlinks += 1;
        Ok(())
    }

    fn node(
        &mut self,
        parent: BorrowedFd<'_>,
        parent_rel: &[u8],
        name: &[u8],
        e: &InEntry,
    ) -> Result<()> {
        let rel = join(parent_rel, name);
        let file_type = match e.kind {
            TarKind::Char => FileType::CharacterDevice,
            TarKind::Block => FileType::BlockDevice,
            _ => FileType::Fifo,
        };
        let device = file_type != FileType::Fifo;
        if device {
            let letter = if e.kind == TarKind::Char { 'c' } else { 'b' };
            Self::judged(self.opts.policy.check_device(letter, e.dev.0, e.dev.1))?;
        }
        self.make_room(parent, parent_rel, name, false)?;
        let dev = if device {
            fs::makedev(e.dev.0, e.dev.1)
        } else {
            0
        };
        fs::mknodat(parent, name, file_type, Mode::from_raw_mode(0o600), dev)
            .map_err(errno)
            .ctx(|| format!("cannot create {}", show_path(&rel)))?;
        self.finish_at(parent, &rel, name, e, true)?;
        if device {
            self.stats.counts.devices += 1;
        } else {
            self.stats.counts.fifos += 1;
        }
        Ok(())
    }

    /// Owner, mode, attributes and time of a symlink or node, by name in its
    /// parent and never following it.
    fn finish_at(
        &mut self,
        parent: BorrowedFd<'_>,
        rel: &[u8],
        name: &[u8],
        e: &InEntry,
        chmod: bool,
    ) -> Result<()> {
        let shown = show_path(rel);
        fs::chownat(
            parent,
            name,
            Some(Uid::from_raw(e.uid)),
            Some(Gid::from_raw(e.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(errno)
        .ctx(|| format!("cannot change owner of {shown}"))?;
        if chmod {
            safefs::chmod_nofollow(parent, name, e.mode)
                .ctx(|| format!("cannot change mode of {shown}"))?;
        }
        if !e.xattrs.is_empty() {
            let path = safefs::proc_child_path(parent, name)
                .ctx(|| format!("cannot name {shown} for its extended attributes"))?;
            self.set_xattrs(XattrTarget::Path(&path), rel, &e.xattrs)?;
        }
        fs::utimensat(parent, name, &times(e.mtime), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(errno)
            .ctx(|| format!("cannot set times of {shown}"))
    }

    fn set_xattrs(
        &mut self,
        target: XattrTarget<'_>,
        rel: &[u8],
        xattrs: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<()> {
        let mut unsupported = false;
        for (name, value) in xattrs {
            if name.is_empty() || name.contains(&0) {
                return Err(refused("malformed extended attribute name"));
            }
            let verdict = Self::judged(self.opts.policy.check_xattr(name, value))?;
            if verdict == XattrVerdict::Skip {
                self.stats.xattrs_skipped += 1;
                self.stats.notes.add(format!(
                    "{}: extended attribute {} not restored",
                    show_path(rel),
                    show_bytes(name)
                ));
                continue;
            }
            if unsupported {
                continue;
            }
            let set = match &target {
                XattrTarget::Fd(fd) => {
                    fs::fsetxattr(fd, name.as_slice(), value, XattrFlags::empty())
                }
                XattrTarget::Path(path) => {
                    fs::lsetxattr(*path, name.as_slice(), value, XattrFlags::empty())
                }
            };
            match set {
                Ok(()) => {}
                Err(Errno::NOTSUP) => unsupported = true,
                // ENOSPC from setxattr is not a full disk: the file's
                // attributes together pass what the file system keeps
                // per file (ext4: one block).
                Err(Errno::NOSPC | Errno::TOOBIG | Errno::RANGE) => {
                    return Err(Error::refused(format!(
                        "cannot set extended attribute {} of {}: the file's extended attributes \
                         are more than this file system holds for one file",
                        show_bytes(name),
                        show_path(rel)
                    )))
                }
                Err(err) => {
                    return Err(Error::io(
                        format!(
                            "cannot set extended attribute {} of {}",
                            show_bytes(name),
                            show_path(rel)
                        ),
                        err.into(),
                    ))
                }
            }
        }
        if unsupported {
            // The file system has no extended attributes (zfs-fuse): the
            // file is kept without them. Losing a capability only takes
            // privileges away, so it is a warning the caller reports.
            self.stats.xattrs_unsupported += 1;
            if xattrs.iter().any(|(n, _)| n == filepolicy::CAPABILITY) {
                self.stats.capabilities_lost += 1;
                self.stats.notes.add(format!(
                    "{}: file capabilities lost (the file system has no extended attributes)",
                    show_path(rel)
                ));
            } else {
                self.stats.notes.add(format!(
                    "{}: extended attributes lost (the file system has none)",
                    show_path(rel)
                ));
            }
        }
        Ok(())
    }

    /// Sets directory times, deepest first, each on the directory created
    /// (one replaced since is skipped).
    fn set_dir_times(&mut self) -> Result<()> {
        self.cached_parent = None;
        let depth = |rel: &[u8]| {
            if rel.is_empty() {
                0
            } else {
                1 + rel.iter().filter(|&&b| b == b'/').count()
            }
        };
        let mut todo = std::mem::take(&mut self.dir_times);
        todo.sort_by_key(|(rel, _, _)| std::cmp::Reverse(depth(rel)));
        for (rel, mtime, ino) in todo {
            let Ok(fd) = self.resolver.open_dir(self.root.as_fd(), &rel) else {
                continue;
            };
            let same = safefs::fstat(fd.as_fd()).is_ok_and(|m: Meta| m.ino == ino);
            if same {
                fs::futimens(&fd, &times(mtime))
                    .map_err(errno)
                    .ctx(|| format!("cannot set times of {}", show_path(&rel)))?;
            }
        }
        Ok(())
    }
}

fn write_all_at(fd: BorrowedFd<'_>, mut data: &[u8], mut offset: u64) -> io::Result<()> {
    while !data.is_empty() {
        match rustix::io::pwrite(fd, data, offset) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                data = &data[n..];
                offset += n as u64;
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn names_are_normalized_or_refused() {
        assert_eq!(normalize(b"./a//b/./c", "name").unwrap(), b"a/b/c");
        assert_eq!(normalize(b"./", "name").unwrap(), b"");
        assert_eq!(normalize(b"x/", "name").unwrap(), b"x");
        for bad in [&b""[..], b"/etc/x", b"../x", b"a/../../x", b"a/..", b"a\0b"] {
            assert!(
                normalize(bad, "name")
                    .as_ref()
                    .is_err_and(|e| e.kind() == ErrorKind::Archive),
                "{bad:?}"
            );
        }
        assert!(normalize(&vec![b'a'; 5000], "name").is_err());
    }
}
