//! Dumping directory trees to a tar stream: the full dump and the changeset
//! against a [`Manifest`].
//!
//! The walk sees one virtual tree: the sources, each placed at its prefix.
//! It never follows a symbolic link, never crosses into another file system
//! except into a source mounted at its prefix, and visits every directory's
//! children sorted by name (the manifest's order).

use std::collections::HashMap;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use rustix::fs::{self as fs, FileType, Mode, OFlags, SeekFrom};
use rustix::io::Errno;

use super::header::{TarKind, BLOCK};
use super::manifest::{key_of, Kind, Manifest, Recorded};
use super::safefs::{self, join, Meta, XattrReader, XattrSource, DIR_FLAGS};
use super::write::{OutEntry, TarWriter};
use super::EntryCounts;
use super::{limits, show_path, Notes, Timestamp};
use crate::error::{Context, Error, Result};

/// One directory tree of the dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpSource {
    /// Where the tree appears in the archive: "" for the root, "var/log" for
    /// a subdataset mounted there.
    pub prefix: String,
    /// The directory to read.
    pub dir: PathBuf,
}

/// What a dump wrote and what it had to leave out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DumpStats {
    /// Entries written; `file_bytes`: file content read.
    pub counts: EntryCounts,
    /// Files written in sparse format.
    pub sparse_files: u64,
    /// Bytes of the tar stream.
    pub stream_bytes: u64,
    /// Sockets: tar cannot carry them.
    pub skipped_sockets: u64,
    /// Paths that disappeared between listing and reading.
    pub vanished: u64,
    /// Files that shrank while being read: their entry holds what could be
    /// read, padded with zeros to the size announced. (A file that grows is
    /// cut at the size stat'ed; either way the manifest holds the state
    /// before reading, so the changeset carries the final content.)
    pub changed_while_read: u64,
    /// Directories on another file system that were not descended into.
    pub mount_points_not_crossed: u64,
    /// Paths longer than an extractor accepts, left out with their subtrees.
    pub skipped_long_paths: u64,
    /// Human-readable notes about the above (never printed by the dump).
    pub notes: Notes,
}

/// Writes a full dump of `sources` to `out` and returns what it saw.
///
/// Entries are named "./path" ("./" is the root); GNU tar extracts the
/// stream with `tar -x --numeric-owner --xattrs --xattrs-include='*' -p`.
/// The manifest records every path's state as stat'ed before its content
/// was read, so that a change made while the dump runs shows up in
/// [`dump_changes`].
pub fn dump_full(out: &mut dyn Write, sources: &[DumpSource]) -> Result<(DumpStats, Manifest)> {
    let mut walker = Walker::new(out, sources, None)?;
    walker.run()?;
    let (stats, manifest) = walker.finish()?;
    Ok((stats, manifest.unwrap_or_else(Manifest::new).seal()))
}

/// Writes the changes of `sources` since the full dump that produced `base`,
/// as an OCI-style layer: changed and new entries in full, `.wh.<name>` for
/// deleted paths (one per deleted directory) and before a path whose type
/// changed, a directory that was deleted and created again as its entry,
/// `<dir>/.wh..wh..opq` and its whole content. A hard link may point to a
/// file that is not in the changeset (it is in the base). Whiteouts of a
/// directory's children come before its other children's entries.
pub fn dump_changes(
    out: &mut dyn Write,
    sources: &[DumpSource],
    base: &Manifest,
) -> Result<DumpStats> {
    let mut walker = Walker::new(out, sources, Some(base))?;
    walker.run()?;
    Ok(walker.finish()?.0)
}

/// A dump that can be followed by another: the whole tree when `base` is
/// None, else the changes since the dump that recorded `base` (as
/// [`dump_changes`]); either way it records the tree's new state, so that
/// rounds of changes can follow one another (`osctl ct send`).
pub fn dump_round(
    out: &mut dyn Write,
    sources: &[DumpSource],
    base: Option<&Manifest>,
) -> Result<(DumpStats, Manifest)> {
    let mut walker = Walker::new(out, sources, base)?;
    walker.record = Some(Manifest::new());
    walker.run()?;
    let (stats, manifest) = walker.finish()?;
    Ok((stats, manifest.unwrap_or_else(Manifest::new).seal()))
}

/// Where a child of a directory in the virtual tree comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// An entry of the real directory.
    Real,
    /// The root of the source with this index.
    Source(usize),
    /// A directory on the way to a nested source's prefix.
    Between,
}

struct Child {
    name: Vec<u8>,
    origin: Origin,
    /// The type readdir reported (Unknown for virtual children).
    dtype: FileType,
}

struct Frame {
    /// The directory (its descriptor); None for a directory that exists
    /// only because a source lies below it.
    dir: Option<fs::Dir>,
    rel: Vec<u8>,
    children: Vec<Child>,
    next: usize,
    /// Device of the source this directory belongs to.
    dev: u64,
    /// Changesets: whether what is below is compared with the base (false:
    /// all of it is new).
    compare: bool,
}

/// The parent of a node being visited.
struct Parent<'a> {
    dir: Option<BorrowedFd<'a>>,
    dev: u64,
    compare: bool,
}

struct Source {
    prefix: Vec<u8>,
    dir: PathBuf,
}

struct Walker<'w, 'm> {
    out: TarWriter<'w>,
    stats: DumpStats,
    sources: Vec<Source>,
    /// Full dumps: the manifest being recorded.
    record: Option<Manifest>,
    /// Changesets: the manifest compared against.
    base: Option<&'m Manifest>,
    /// First path seen of each multiply-linked inode, by (dev, ino).
    links: HashMap<(u64, u64), Vec<u8>>,
    xattrs: XattrReader,
}

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_WHITEOUT: &[u8] = b".wh..wh..opq";
/// Holes smaller than this in total are not worth the sparse format.
const SPARSE_MIN_HOLES: u64 = 64 << 10;
/// A sparse map longer than this is simplified by filling small holes.
const SPARSE_MAX_SEGMENTS: usize = 1 << 16;

fn normalize_prefix(prefix: &str) -> Result<Vec<u8>> {
    let parts: Vec<&str> = prefix
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if prefix.starts_with('/') || parts.contains(&"..") {
        return Err(Error::invalid(format!(
            "dump source prefix '{prefix}' must be a relative path without '..'"
        )));
    }
    Ok(parts.join("/").into_bytes())
}

fn kind_of(ft: FileType) -> Option<Kind> {
    Some(match ft {
        FileType::RegularFile => Kind::File,
        FileType::Directory => Kind::Dir,
        FileType::Symlink => Kind::Symlink,
        FileType::CharacterDevice => Kind::Char,
        FileType::BlockDevice => Kind::Block,
        FileType::Fifo => Kind::Fifo,
        _ => return None,
    })
}

fn recorded(kind: Kind, m: &Meta) -> Recorded {
    Recorded {
        kind,
        mode: m.perm(),
        uid: m.uid,
        gid: m.gid,
        ino: m.ino,
        size: if kind == Kind::File { m.size } else { 0 },
        rdev: m.rdev,
        mtime_ns: m.mtime.as_nanos(),
        ctime_ns: m.ctime.as_nanos(),
    }
}

/// A directory that exists only in the archive (above a nested source whose
/// mount point is missing, or the root when no source is the root).
fn synthetic_dir() -> Recorded {
    Recorded {
        kind: Kind::Dir,
        mode: 0o755,
        uid: 0,
        gid: 0,
        ino: 0,
        size: 0,
        rdev: 0,
        mtime_ns: 0,
        ctime_ns: 0,
    }
}

fn timestamp_of_ns(ns: i64) -> Timestamp {
    Timestamp {
        sec: ns.div_euclid(1_000_000_000),
        nsec: ns.rem_euclid(1_000_000_000) as u32,
    }
}

/// What a changeset does with one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Unchanged: write nothing (but still descend into a directory).
    Same,
    /// New or changed: write the entry.
    Write,
    /// A directory deleted and created again: its entry, an opaque
    /// whiteout, then all of its content.
    Replaced,
}

/// The remainder of a source prefix below the directory `dir`.
fn below<'p>(prefix: &'p [u8], dir: &[u8]) -> Option<&'p [u8]> {
    if dir.is_empty() {
        return (!prefix.is_empty()).then_some(prefix);
    }
    prefix
        .strip_prefix(dir)
        .and_then(|rest| rest.strip_prefix(b"/"))
        .filter(|rest| !rest.is_empty())
}

fn write_error(e: io::Error) -> Error {
    Error::io("cannot write the archive stream", e)
}

impl<'w, 'm> Walker<'w, 'm> {
    fn new(
        out: &'w mut dyn Write,
        sources: &[DumpSource],
        base: Option<&'m Manifest>,
    ) -> Result<Self> {
        let mut list: Vec<Source> = Vec::new();
        for s in sources {
            let prefix = normalize_prefix(&s.prefix)?;
            if list.iter().any(|o| o.prefix == prefix) {
                return Err(Error::invalid(format!(
                    "two dump sources for the same prefix '{}'",
                    s.prefix
                )));
            }
            list.push(Source {
                prefix,
                dir: s.dir.clone(),
            });
        }
        Ok(Walker {
            out: TarWriter::new(out),
            stats: DumpStats::default(),
            sources: list,
            record: base.is_none().then(Manifest::new),
            base,
            links: HashMap::new(),
            xattrs: XattrReader::new(),
        })
    }

    fn finish(self) -> Result<(DumpStats, Option<Manifest>)> {
        let mut stats = self.stats;
        stats.stream_bytes = self.out.finish().map_err(write_error)?;
        Ok((stats, self.record))
    }

    fn run(&mut self) -> Result<()> {
        let root_origin = match self.sources.iter().position(|s| s.prefix.is_empty()) {
            Some(i) => Origin::Source(i),
            None => Origin::Between,
        };
        let top = Parent {
            dir: None,
            dev: 0,
            compare: true,
        };
        let mut stack: Vec<Frame> = Vec::new();
        if let Some(frame) = self.visit(&top, b"", b"", root_origin, FileType::Directory)? {
            stack.push(frame);
        }
        while let Some(frame) = stack.last_mut() {
            let Some(child) = frame.children.get(frame.next) else {
                stack.pop();
                continue;
            };
            frame.next += 1;
            let rel = join(&frame.rel, &child.name);
            let dir = match &frame.dir {
                Some(d) => Some(
                    d.fd()
                        .map_err(io::Error::from)
                        .ctx(|| "directory descriptor")?,
                ),
                None => None,
            };
            let parent = Parent {
                dir,
                dev: frame.dev,
                compare: frame.compare,
            };
            if let Some(next) = self.visit(&parent, &rel, &child.name, child.origin, child.dtype)? {
                stack.push(next);
            }
        }
        Ok(())
    }

    /// Visits one node: writes its entry (if due) and returns the frame of a
    /// directory to descend into.
    fn visit(
        &mut self,
        parent: &Parent<'_>,
        rel: &[u8],
        name: &[u8],
        origin: Origin,
        dtype: FileType,
    ) -> Result<Option<Frame>> {
        if rel.len() > limits::PATH {
            self.stats.skipped_long_paths += 1;
            self.stats.notes.add(format!(
                "{}...: path longer than {} bytes left out",
                show_path(&rel[..64]),
                limits::PATH
            ));
            return Ok(None);
        }
        let base_index = match (self.base, parent.compare) {
            (Some(m), true) => m.find(&key_of(rel)),
            _ => None,
        };
        match origin {
            Origin::Source(i) => {
                let path = self.sources[i].dir.clone();
                let opened = fs::open(
                    &path,
                    OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(io::Error::from)
                .and_then(|fd| Ok((safefs::fstat(fd.as_fd())?, fd)));
                let (meta, fd) =
                    opened.ctx(|| format!("cannot open dump source {}", path.display()))?;
                self.directory(rel, Some(fd), Some(meta), meta.dev, true, base_index)
                    .map(Some)
            }
            Origin::Between => {
                let real = parent
                    .dir
                    .and_then(|p| fs::openat(p, name, DIR_FLAGS, Mode::empty()).ok())
                    .and_then(|fd| Some((safefs::fstat(fd.as_fd()).ok()?, fd)));
                match real {
                    Some((meta, fd)) => {
                        let same_fs = meta.dev == parent.dev;
                        self.directory(rel, Some(fd), Some(meta), parent.dev, same_fs, base_index)
                    }
                    None => self.directory(rel, None, None, parent.dev, false, base_index),
                }
                .map(Some)
            }
            Origin::Real => match parent.dir {
                Some(dir) => self.real(dir, parent.dev, rel, name, dtype, base_index),
                None => Ok(None),
            },
        }
    }

    /// Decides what a changeset does with a node; full dumps write all.
    fn judge(&self, base_index: Option<usize>, now: &Recorded, target: &[u8]) -> Verdict {
        let (Some(m), Some(i)) = (self.base, base_index) else {
            return Verdict::Write;
        };
        let old = m.state(i);
        if old.kind != now.kind {
            // The parent wrote a whiteout for the old one.
            return Verdict::Write;
        }
        if now.kind == Kind::Dir && old.ino != now.ino {
            return Verdict::Replaced;
        }
        if old != now || m.target(i) != target {
            Verdict::Write
        } else {
            Verdict::Same
        }
    }

    fn record(&mut self, rel: &[u8], state: Recorded, target: &[u8]) {
        if let Some(m) = &mut self.record {
            m.push(rel, state, target);
        }
    }

    fn put(&mut self, e: &OutEntry<'_>) -> Result<()> {
        self.stats.counts.entries += 1;
        self.out.header(e).map_err(write_error)
    }

    /// An empty regular file named `<dir>/.wh.<name>` (or the opaque marker).
    fn whiteout(&mut self, dir: &[u8], name: &[u8]) -> Result<()> {
        let marker = if name == OPAQUE_WHITEOUT {
            name.to_vec()
        } else {
            [WHITEOUT_PREFIX, name].concat()
        };
        let path = join(dir, &marker);
        self.stats.counts.whiteouts += 1;
        self.put(&OutEntry::bare(&path, TarKind::File))
    }

    /// Writes a directory's entry and returns its frame.
    fn directory(
        &mut self,
        rel: &[u8],
        fd: Option<OwnedFd>,
        meta: Option<Meta>,
        dev: u64,
        list_real: bool,
        base_index: Option<usize>,
    ) -> Result<Frame> {
        let state = meta.map_or_else(synthetic_dir, |m| recorded(Kind::Dir, &m));
        let verdict = self.judge(base_index, &state, b"");
        self.record(rel, state, b"");
        if verdict != Verdict::Same {
            let xattrs = match &fd {
                Some(fd) => self.read_xattrs(rel, XattrSource::Fd(fd.as_fd()))?,
                None => Vec::new(),
            };
            self.stats.counts.dirs += 1;
            self.put(&OutEntry {
                mode: state.mode,
                uid: state.uid,
                gid: state.gid,
                mtime: timestamp_of_ns(state.mtime_ns),
                xattrs: &xattrs,
                ..OutEntry::bare(rel, TarKind::Dir)
            })?;
        }
        if verdict == Verdict::Replaced {
            self.whiteout(rel, OPAQUE_WHITEOUT)?;
        }

        let mut listing = None;
        let mut children = Vec::new();
        if let Some(fd) = fd {
            let mut dir = fs::Dir::new(fd)
                .map_err(io::Error::from)
                .ctx(|| format!("cannot read directory {}", show_path(rel)))?;
            if list_real {
                children = safefs::collect_names(&mut dir)
                    .ctx(|| format!("cannot read directory {}", show_path(rel)))?
                    .into_iter()
                    .map(|(name, dtype)| Child {
                        name,
                        origin: Origin::Real,
                        dtype,
                    })
                    .collect();
            } else if meta.is_some_and(|m| m.dev != dev) {
                self.stats.mount_points_not_crossed += 1;
                self.stats.notes.add(format!(
                    "{}: another file system is mounted here; not descended into",
                    show_path(rel)
                ));
            }
            listing = Some(dir);
        }
        self.add_virtual_children(rel, &mut children);

        let compare = match (self.base, base_index) {
            (None, _) => false,
            (Some(m), Some(i)) => {
                let old = m.state(i);
                old.kind == Kind::Dir && old.ino == state.ino
            }
            (Some(_), None) => false,
        };
        let frame = Frame {
            dir: listing,
            rel: rel.to_vec(),
            children,
            next: 0,
            dev,
            compare,
        };
        if let (true, Some(i)) = (compare, base_index) {
            self.whiteouts_for_children(&frame, i)?;
        }
        Ok(frame)
    }

    /// Adds the sources below `rel` (or the directories on their way) to
    /// the children, sorted by name; a source replaces a real entry of the
    /// same name (its mount point).
    fn add_virtual_children(&self, rel: &[u8], children: &mut Vec<Child>) {
        children.sort_by(|a, b| a.name.cmp(&b.name));
        for (i, source) in self.sources.iter().enumerate() {
            let Some(rest) = below(&source.prefix, rel) else {
                continue;
            };
            let (first, origin) = match rest.iter().position(|&b| b == b'/') {
                Some(end) => (&rest[..end], Origin::Between),
                None => (rest, Origin::Source(i)),
            };
            match children.binary_search_by(|c| c.name.as_slice().cmp(first)) {
                Ok(at) => {
                    // A source's own root wins over a directory on the way.
                    if !matches!(children[at].origin, Origin::Source(_)) {
                        children[at].origin = origin;
                    }
                }
                Err(at) => children.insert(
                    at,
                    Child {
                        name: first.to_vec(),
                        origin,
                        dtype: FileType::Directory,
                    },
                ),
            }
        }
    }

    /// Changesets: whiteouts for children of the directory (manifest index
    /// `index`) that are gone or whose type changed, before any of its
    /// children's entries.
    fn whiteouts_for_children(&mut self, frame: &Frame, index: usize) -> Result<()> {
        let Some(m) = self.base else {
            return Ok(());
        };
        for old in m.children(index) {
            let name = m.name(old);
            let Ok(at) = frame
                .children
                .binary_search_by(|c| c.name.as_slice().cmp(name))
            else {
                self.whiteout(&frame.rel, name)?;
                continue;
            };
            let child = &frame.children[at];
            let now = match child.origin {
                Origin::Source(_) | Origin::Between => Some(Kind::Dir),
                Origin::Real => match kind_of(child.dtype) {
                    Some(kind) => Some(kind),
                    None => frame
                        .dir
                        .as_ref()
                        .and_then(|d| d.fd().ok())
                        .and_then(|fd| safefs::lstat_at(fd, name).ok())
                        .and_then(|meta| kind_of(meta.file_type())),
                },
            };
            if now != Some(m.state(old).kind) {
                self.whiteout(&frame.rel, name)?;
            }
        }
        Ok(())
    }

    fn read_xattrs(&mut self, rel: &[u8], src: XattrSource<'_>) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.xattrs
            .read(&src)
            .ctx(|| format!("cannot read extended attributes of {}", show_path(rel)))
    }

    /// A node of a real directory.
    fn real(
        &mut self,
        dir: BorrowedFd<'_>,
        dev: u64,
        rel: &[u8],
        name: &[u8],
        dtype: FileType,
        base_index: Option<usize>,
    ) -> Result<Option<Frame>> {
        if matches!(dtype, FileType::Directory | FileType::Unknown) {
            match fs::openat(dir, name, DIR_FLAGS, Mode::empty()) {
                Ok(fd) => {
                    let meta = safefs::fstat(fd.as_fd())
                        .ctx(|| format!("cannot stat {}", show_path(rel)))?;
                    let same_fs = meta.dev == dev;
                    return self
                        .directory(rel, Some(fd), Some(meta), dev, same_fs, base_index)
                        .map(Some);
                }
                // Not a directory (any more): handled below.
                Err(Errno::NOTDIR) | Err(Errno::LOOP) => {}
                Err(Errno::NOENT) => return Ok(self.gone(rel)),
                Err(e) => {
                    return Err(io::Error::from(e))
                        .ctx(|| format!("cannot open directory {}", show_path(rel)))
                }
            }
        }
        // An O_PATH descriptor pins the inode this entry describes, without
        // opening it: opening a device node can have side effects.
        let pinned = match fs::openat(
            dir,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(self.gone(rel)),
            Err(e) => {
                return Err(io::Error::from(e)).ctx(|| format!("cannot open {}", show_path(rel)))
            }
        };
        let meta =
            safefs::fstat(pinned.as_fd()).ctx(|| format!("cannot stat {}", show_path(rel)))?;
        let ft = meta.file_type();
        if ft == FileType::Directory {
            // Replaced by a directory since it was listed.
            let fd = fs::openat(dir, name, DIR_FLAGS, Mode::empty());
            return match fd {
                Ok(fd) => self
                    .directory(rel, Some(fd), Some(meta), dev, meta.dev == dev, base_index)
                    .map(Some),
                Err(_) => Ok(self.gone(rel)),
            };
        }
        let Some(kind) = kind_of(ft) else {
            self.stats.skipped_sockets += 1;
            self.stats
                .notes
                .add(format!("{}: socket left out", show_path(rel)));
            return Ok(None);
        };
        let node = PinnedNode {
            dir,
            fd: &pinned,
            rel,
            name,
            meta: &meta,
            kind,
        };
        self.node(&node, base_index).map(|()| None)
    }

    /// A pinned non-directory: unchanged since the base (nothing written), a
    /// hard link to one written before, or an entry of its kind.
    fn node(&mut self, node: &PinnedNode<'_>, base_index: Option<usize>) -> Result<()> {
        let (rel, meta, kind) = (node.rel, node.meta, node.kind);
        let target = if kind == Kind::Symlink {
            match fs::readlinkat(node.fd, "", Vec::new()) {
                Ok(t) => t.into_bytes(),
                Err(e) => {
                    return Err(io::Error::from(e))
                        .ctx(|| format!("cannot read symbolic link {}", show_path(rel)))
                }
            }
        } else {
            Vec::new()
        };
        let state = recorded(kind, meta);
        let verdict = self.judge(base_index, &state, &target);
        self.record(rel, state, &target);
        let first_link = if meta.nlink > 1 {
            match self.links.get(&(meta.dev, meta.ino)) {
                Some(first) => Some(first.clone()),
                None => {
                    self.links.insert((meta.dev, meta.ino), rel.to_vec());
                    None
                }
            }
        } else {
            None
        };
        if verdict == Verdict::Same {
            return Ok(());
        }
        if let Some(first) = &first_link {
            self.stats.counts.hardlinks += 1;
            let mut entry = owned_entry(rel, TarKind::HardLink, meta);
            entry.link = first;
            return self.put(&entry);
        }
        if kind == Kind::File {
            return self.file(node.dir, node.fd, rel, node.name, meta);
        }
        self.special(node, &target)
    }

    /// A symlink, device node or fifo, with its extended attributes.
    fn special(&mut self, node: &PinnedNode<'_>, target: &[u8]) -> Result<()> {
        let (rel, meta, kind) = (node.rel, node.meta, node.kind);
        // The l*xattr calls need a path; the parent is pinned by its descriptor.
        let xattrs = match safefs::proc_child_path(node.dir, node.name) {
            Ok(path) => self.read_xattrs(rel, XattrSource::Path(&path))?,
            Err(_) => Vec::new(),
        };
        let mut entry = owned_entry(rel, TarKind::File, meta);
        entry.xattrs = &xattrs;
        match kind {
            Kind::Symlink => {
                self.stats.counts.symlinks += 1;
                entry.kind = TarKind::Symlink;
                entry.link = target;
            }
            Kind::Char | Kind::Block => {
                self.stats.counts.devices += 1;
                entry.kind = if kind == Kind::Char {
                    TarKind::Char
                } else {
                    TarKind::Block
                };
                entry.dev = (fs::major(meta.rdev as _), fs::minor(meta.rdev as _));
            }
            _ => {
                self.stats.counts.fifos += 1;
                entry.kind = TarKind::Fifo;
            }
        }
        self.put(&entry)
    }

    fn gone(&mut self, rel: &[u8]) -> Option<Frame> {
        self.stats.vanished += 1;
        self.stats
            .notes
            .add(format!("{}: vanished while being dumped", show_path(rel)));
        None
    }

    /// A regular file: header, data (sparse when it has large holes), padding.
    fn file(
        &mut self,
        dir: BorrowedFd<'_>,
        pinned: &OwnedFd,
        rel: &[u8],
        name: &[u8],
        meta: &Meta,
    ) -> Result<()> {
        let Some(fd) = open_for_reading(dir, pinned, name, meta)
            .ctx(|| format!("cannot open {}", show_path(rel)))?
        else {
            self.gone(rel);
            return Ok(());
        };
        let xattrs = self.read_xattrs(rel, XattrSource::Fd(fd.as_fd()))?;
        let segments = if meta
            .blocks
            .saturating_mul(512)
            .saturating_add(SPARSE_MIN_HOLES)
            <= meta.size
        {
            sparse_segments(fd.as_fd(), meta.size)
                .ctx(|| format!("cannot map the holes of {}", show_path(rel)))?
        } else {
            None
        };
        let map_text = segments.as_deref().map(sparse_map_text);
        let data: u64 = match &segments {
            Some(segs) => segs.iter().map(|s| s.1).sum(),
            None => meta.size,
        };
        let map_len = map_text.as_ref().map_or(0, |t| t.len() as u64);
        self.stats.counts.files += 1;
        self.put(&OutEntry {
            size: map_len + data,
            xattrs: &xattrs,
            sparse_realsize: segments.as_ref().map(|_| meta.size),
            ..owned_entry(rel, TarKind::File, meta)
        })?;
        let read_error = |e| Error::io(format!("cannot read {}", show_path(rel)), e);
        let mut got = 0u64;
        match (&segments, &map_text) {
            (Some(segs), Some(text)) => {
                self.stats.sparse_files += 1;
                self.out.put(text).map_err(write_error)?;
                for &(offset, len) in segs {
                    got += self
                        .out
                        .copy_from_fd(fd.as_fd(), Some(offset), len)
                        .map_err(read_error)?;
                }
            }
            // From offset 0 with pread: probing for holes moved the file
            // position (SEEK_HOLE leaves it at the hole), and a file whose
            // st_blocks undercounts (compression, zfs-fuse's attribute cache)
            // is probed and then read whole.
            _ => {
                got = self
                    .out
                    .copy_from_fd(fd.as_fd(), Some(0), data)
                    .map_err(read_error)?
            }
        }
        self.out.pad().map_err(write_error)?;
        self.stats.counts.file_bytes += got;
        // A file that grew is cut at the size announced, silently: the
        // manifest holds the state before reading, so a changeset catches it.
        if got < data {
            self.stats.changed_while_read += 1;
            self.stats.notes.add(format!(
                "{}: shrank while being read; padded with zeros to the size announced",
                show_path(rel)
            ));
        }
        Ok(())
    }
}

/// Opens a regular file for reading through its O_PATH descriptor, so that
/// the file read is the one stat'ed. Ok(None) when it is no longer there or
/// no longer a regular file.
fn open_for_reading(
    dir: BorrowedFd<'_>,
    pinned: &OwnedFd,
    name: &[u8],
    meta: &Meta,
) -> io::Result<Option<OwnedFd>> {
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY;
    let proc_path = safefs::proc_fd_path(pinned.as_fd());
    // O_NOATIME keeps reads from dirtying the tree (zfs receives care).
    match fs::open(proc_path.as_c_str(), flags | OFlags::NOATIME, Mode::empty()) {
        Ok(fd) => return Ok(Some(fd)),
        Err(Errno::PERM) => {
            if let Ok(fd) = fs::open(proc_path.as_c_str(), flags, Mode::empty()) {
                return Ok(Some(fd));
            }
        }
        Err(Errno::NOENT) => {}
        Err(e) => return Err(e.into()),
    }
    // No /proc: open by name, non-blocking in case it became a fifo, and
    // make sure it is still the same regular file.
    let fd = match fs::openat(
        dir,
        name,
        flags | OFlags::NOFOLLOW | OFlags::NONBLOCK,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) | Err(Errno::LOOP) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let now = safefs::fstat(fd.as_fd())?;
    if now.file_type() != FileType::RegularFile || now.ino != meta.ino || now.dev != meta.dev {
        return Ok(None);
    }
    Ok(Some(fd))
}

/// Data segments of a file whose allocation (st_blocks) is well below its
/// size, or None when its holes are too small to bother. Holes come from
/// SEEK_DATA/SEEK_HOLE; where those see none although st_blocks says there
/// are some (file systems without SEEK_HOLE, such as zfs-fuse), from runs of
/// zero blocks, as GNU tar finds them. A file ending in a hole gets a last
/// zero-length segment at its end, as GNU tar writes it (its extractor sets
/// the size from it).
fn sparse_segments(fd: BorrowedFd<'_>, size: u64) -> io::Result<Option<Vec<(u64, u64)>>> {
    let mut segments = seek_segments(fd, size)?;
    if segments == [(0, size)] {
        segments = zero_run_segments(fd, size)?;
    }
    let data: u64 = segments.iter().map(|s| s.1).sum();
    if size - data < SPARSE_MIN_HOLES {
        return Ok(None);
    }
    let mut min_gap = 4096u64;
    while segments.len() > SPARSE_MAX_SEGMENTS {
        segments = fill_small_holes(&segments, min_gap);
        min_gap *= 2;
    }
    if segments.last().is_none_or(|&(o, l)| o + l < size) {
        segments.push((size, 0));
    }
    Ok(Some(segments))
}

/// Data segments as SEEK_DATA/SEEK_HOLE report them. (They move the file
/// position; content is read with pread.)
fn seek_segments(fd: BorrowedFd<'_>, size: u64) -> io::Result<Vec<(u64, u64)>> {
    let mut segments: Vec<(u64, u64)> = Vec::new();
    let mut pos = 0u64;
    while pos < size {
        let data = match fs::seek(fd, SeekFrom::Data(pos)) {
            Ok(d) => d,
            Err(Errno::NXIO) => break,
            Err(e) => return Err(e.into()),
        };
        if data >= size {
            break;
        }
        let hole = match fs::seek(fd, SeekFrom::Hole(data)) {
            Ok(h) => h.min(size),
            Err(Errno::NXIO) => size,
            Err(e) => return Err(e.into()),
        };
        segments.push((data, hole - data));
        pos = hole;
    }
    Ok(segments)
}

/// Data segments around runs of all-zero 4 KiB blocks of at least
/// `SPARSE_MIN_HOLES`, found by reading the file.
fn zero_run_segments(fd: BorrowedFd<'_>, size: u64) -> io::Result<Vec<(u64, u64)>> {
    const BLOCK: usize = 4096;
    let mut buf = vec![0u8; super::IO_BUFFER];
    // Runs of zeros long enough to be holes, as [start, end).
    let mut holes: Vec<(u64, u64)> = Vec::new();
    let mut keep_hole = |start: u64, end: u64| {
        if end - start >= SPARSE_MIN_HOLES {
            holes.push((start, end));
        }
    };
    let mut run_start: Option<u64> = None;
    let mut pos = 0u64;
    while pos < size {
        let want = ((size - pos) as usize).min(buf.len());
        let n = match rustix::io::pread(fd, &mut buf[..want], pos) {
            Ok(0) => break,
            Ok(n) => n,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        for (i, block) in buf[..n].chunks(BLOCK).enumerate() {
            let at = pos + (i * BLOCK) as u64;
            if block.iter().all(|&b| b == 0) {
                run_start.get_or_insert(at);
            } else if let Some(start) = run_start.take() {
                keep_hole(start, at);
            }
        }
        pos += n as u64;
    }
    if let Some(start) = run_start {
        keep_hole(start, pos);
    }
    let mut segments = Vec::new();
    let mut from = 0u64;
    for (start, end) in holes {
        if start > from {
            segments.push((from, start - from));
        }
        from = end;
    }
    if from < size {
        segments.push((from, size - from));
    }
    Ok(segments)
}

/// Merges segments separated by holes smaller than `min_gap`.
fn fill_small_holes(segments: &[(u64, u64)], min_gap: u64) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(segments.len());
    for &(offset, len) in segments {
        match out.last_mut() {
            Some(last) if offset - (last.0 + last.1) < min_gap => last.1 = offset + len - last.0,
            _ => out.push((offset, len)),
        }
    }
    out
}

/// The sparse 1.0 map block: count, then offset and length per segment,
/// one decimal number per line, padded to whole blocks.
fn sparse_map_text(segments: &[(u64, u64)]) -> Vec<u8> {
    let mut text = format!("{}\n", segments.len());
    for (offset, len) in segments {
        text.push_str(&format!("{offset}\n{len}\n"));
    }
    let mut bytes = text.into_bytes();
    bytes.resize(bytes.len().div_ceil(BLOCK) * BLOCK, 0);
    bytes
}

/// A non-directory inode of a real tree, pinned by an O_PATH descriptor
/// `fd`; `name` in the directory `dir`.
struct PinnedNode<'a> {
    dir: BorrowedFd<'a>,
    fd: &'a OwnedFd,
    rel: &'a [u8],
    name: &'a [u8],
    meta: &'a Meta,
    kind: Kind,
}

/// An entry at `rel` with the owner, mode and time of `meta`.
fn owned_entry<'a>(rel: &'a [u8], kind: TarKind, meta: &Meta) -> OutEntry<'a> {
    OutEntry {
        mode: meta.perm(),
        uid: meta.uid,
        gid: meta.gid,
        mtime: meta.mtime,
        ..OutEntry::bare(rel, kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_normalized_and_checked() {
        assert_eq!(normalize_prefix("").unwrap(), b"");
        assert_eq!(normalize_prefix("./var//log/").unwrap(), b"var/log");
        assert!(normalize_prefix("/var").is_err());
        assert!(normalize_prefix("a/../b").is_err());
    }

    #[test]
    fn prefix_below_a_directory() {
        assert_eq!(below(b"var/log", b""), Some(&b"var/log"[..]));
        assert_eq!(below(b"var/log", b"var"), Some(&b"log"[..]));
        assert_eq!(below(b"var/log", b"var/log"), None);
        assert_eq!(below(b"varx/log", b"var"), None);
        assert_eq!(below(b"", b""), None);
    }

    #[test]
    fn zero_runs_become_holes() {
        use std::io::Write;
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&[1u8; 8 << 10]).unwrap();
        f.write_all(&vec![0u8; 128 << 10]).unwrap(); // written zeros: a hole
        f.write_all(&[2u8; 4 << 10]).unwrap();
        f.write_all(&vec![0u8; 16 << 10]).unwrap(); // too short to be one
        f.write_all(&[3u8; 100]).unwrap();
        f.write_all(&vec![0u8; 70 << 10]).unwrap(); // a hole at the end
        let size = f.metadata().unwrap().len();
        let segs = zero_run_segments(f.as_fd(), size).unwrap();
        assert_eq!(segs, vec![(0, 8 << 10), (136 << 10, (20 << 10) + 4096)]);
        // Without holes, one segment; the caller then dumps the file whole.
        assert_eq!(seek_segments(f.as_fd(), size).unwrap(), vec![(0, size)]);
    }

    #[test]
    fn sparse_map_text_is_block_padded() {
        let text = sparse_map_text(&[(0, 10), (4096, 5), (10000, 0)]);
        assert_eq!(text.len(), BLOCK);
        assert!(text.starts_with(b"3\n0\n10\n4096\n5\n10000\n0\n\0"));
    }

    #[test]
    fn small_holes_are_filled() {
        let segs = [(0, 10), (100, 10), (100_000, 10)];
        assert_eq!(fill_small_holes(&segs, 4096), vec![(0, 110), (100_000, 10)]);
    }
}
