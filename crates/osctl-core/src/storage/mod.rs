//! Where containers' file systems live: one trait, three backends.
//!
//! A container has a root dataset and optional subdatasets named relative to it
//! (`var`, `var/log`). Every dataset keeps its files in its own `private/`:
//! the root dataset's is the root file system the container sees, a
//! subdataset's is shown to the container by a `mounts` entry of its config
//! (see [`crate::datasets`]). A subdataset's directory is beside its parent's
//! `private/`, not in it: `<ct>/var`, `<ct>/var/log`. This is the layout of
//! vpsAdminOS, whose `zfs send` streams therefore carry `private/...` paths.
//!
//! Snapshots are taken of all of a container's datasets at once. Native streams
//! (`zfs send`, `btrfs send`) exist only on backends that have them.

use std::io;
use std::path::{Path, PathBuf};

use crate::archive::meta::ArchiveFormat;
use crate::archive::CopyError;
use crate::cmd::{ChildReader, ChildWriter, Cmd};
use crate::error::{Context, Error, Result};
use crate::filepolicy::FilePolicy;

pub mod btrfs;
pub mod btrfs_parse;
pub mod btrfs_stream;
pub mod dir;
pub mod zfs;
pub mod zfs_parse;
pub mod zfs_stream;

/// The directory inside a root dataset that holds the container's root file system.
pub const ROOTFS_DIR: &str = "private";

/// Pipe capacity for native streams going out of a sender or into a
/// receiver. With the default 64 KiB the two ends take turns instead of
/// working at once (measured in docs/performance.md, "btrfs import").
const STREAM_PIPE_SIZE: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Dir,
    Zfs,
    Btrfs,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Dir => "dir",
            Backend::Zfs => "zfs",
            Backend::Btrfs => "btrfs",
        }
    }

    pub fn parse(s: &str) -> Result<Backend> {
        match s {
            "dir" => Ok(Backend::Dir),
            "zfs" => Ok(Backend::Zfs),
            "btrfs" => Ok(Backend::Btrfs),
            other => Err(Error::invalid(format!(
                "unknown backend '{other}': use dir, zfs or btrfs"
            ))),
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A read-only directory view of a dataset as it was at a snapshot. Dropping it
/// releases whatever the backend set up to show it (a clone, a mount).
pub struct SnapshotView {
    path: PathBuf,
    release: Option<Box<dyn FnOnce() + Send>>,
}

impl SnapshotView {
    pub fn new(path: PathBuf) -> Self {
        SnapshotView {
            path,
            release: None,
        }
    }

    pub fn with_release(path: PathBuf, release: impl FnOnce() + Send + 'static) -> Self {
        SnapshotView {
            path,
            release: Some(Box::new(release)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SnapshotView {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

/// One dataset of a container: its root dataset (`rel` "") or a subdataset
/// (`var`, `var/log`). `ct` is a container id or a staging name (ids never
/// contain '.', staging names always do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dataset<'a> {
    pub ct: &'a str,
    pub rel: &'a str,
}

impl<'a> Dataset<'a> {
    pub fn new(ct: &'a str, rel: &'a str) -> Self {
        Dataset { ct, rel }
    }

    /// The container's root dataset.
    pub fn root(ct: &'a str) -> Self {
        Dataset { ct, rel: "" }
    }

    pub fn is_root(self) -> bool {
        self.rel.is_empty()
    }

    /// The parent of a subdataset (the root dataset for `var`); the root
    /// dataset is its own.
    pub fn parent(self) -> Dataset<'a> {
        let rel = self.rel.rsplit_once('/').map_or("", |(parent, _)| parent);
        Dataset { ct: self.ct, rel }
    }

    /// "container 'c1'" or "dataset 'var' of container 'c1'", for messages.
    pub fn label(self) -> String {
        if self.is_root() {
            format!("container '{}'", self.ct)
        } else {
            format!("dataset '{}' of container '{}'", self.rel, self.ct)
        }
    }
}

/// Storage of containers' datasets: what every backend can do. Native
/// streams are a capability of some backends, asked for with
/// [`Storage::native`].
pub trait Storage: Send + Sync {
    /// The backend's name, for messages and the pool's record.
    fn backend(&self) -> Backend;

    /// Whether a snapshot view shows the live tree, not a frozen one (dir
    /// pools have no snapshots): a consistent export must then keep the
    /// container stopped while it dumps.
    fn views_are_live(&self) -> bool {
        false
    }

    /// The dataset name recorded in a container's `container.yml`.
    fn recorded_name(&self, ct: &str) -> String {
        self.path(Dataset::root(ct)).to_string_lossy().into_owned()
    }

    /// The backend's native streams, None when it has none (dir).
    fn native(&self) -> Option<&dyn NativeStreams> {
        None
    }

    /// Creates a dataset with an empty `private/` (mode 0755, owned by root);
    /// for a subdataset, its parent must exist.
    fn create(&self, ds: Dataset) -> Result<()>;

    fn exists(&self, ct: &str) -> Result<bool>;

    /// The container's subdatasets, relative names, parents before children.
    fn subdatasets(&self, ct: &str) -> Result<Vec<String>>;

    /// Destroys a dataset with its children and snapshots; the root dataset
    /// means the whole container. A missing dataset is not an error.
    fn destroy(&self, ds: Dataset) -> Result<()>;

    /// Renames a whole container (staging name to final id on import).
    fn rename(&self, from: &str, to: &str) -> Result<()>;

    /// A dataset's directory on the host (mounted), which holds `private/`.
    fn path(&self, ds: Dataset) -> PathBuf;

    /// Where a dataset keeps its files: its `private/`.
    fn private(&self, ds: Dataset) -> PathBuf {
        self.path(ds).join(ROOTFS_DIR)
    }

    /// The container's root file system on the host.
    fn rootfs(&self, ct: &str) -> PathBuf {
        self.private(Dataset::root(ct))
    }

    /// Makes sure all of a container's datasets are mounted.
    fn mount(&self, _ct: &str) -> Result<()> {
        Ok(())
    }

    /// Removes what processes that died left inside the storage (e.g. clones
    /// showing snapshots); returns one line per thing removed.
    fn remove_leftovers(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    /// Every container name the storage holds, staging names included.
    fn containers(&self) -> Result<Vec<String>>;

    /// Snapshots every dataset of the container under one name.
    fn snapshot(&self, ct: &str, snap: &str) -> Result<()>;

    /// Destroys a snapshot on every dataset of the container; missing is fine.
    fn destroy_snapshot(&self, ct: &str, snap: &str) -> Result<()>;

    /// Snapshot names present on the container's root dataset.
    fn snapshots(&self, ct: &str) -> Result<Vec<String>>;

    /// A directory showing a dataset's directory (with its `private/`) as of
    /// a snapshot. Where [`Storage::views_are_live`], it is the live directory.
    fn snapshot_view(&self, ds: Dataset, snap: &str) -> Result<SnapshotView>;
}

/// What a native stream of a dataset holds: the dataset at `snapshot`, whole
/// or (with `from`) the changes since `from`; `compressed` sends the data as
/// the storage keeps it compressed ([`NativeStreams::can_send_compressed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendRequest<'a> {
    pub snapshot: &'a str,
    pub from: Option<&'a str>,
    pub compressed: bool,
}

/// Native streams (`zfs send`, `btrfs send` and their receivers), on the
/// backends that have them ([`Storage::native`]).
pub trait NativeStreams: Send + Sync {
    /// The archive format of these streams.
    fn format(&self) -> ArchiveFormat;

    /// Whether the dataset's data is compressed by the storage and a
    /// compressed native stream (`zfs send -c`, `btrfs send
    /// --compressed-data`) is available.
    fn can_send_compressed(&self, ds: Dataset) -> Result<bool>;

    /// About how many bytes the stream `request` asks for holds, for
    /// progress; None where the storage cannot tell cheaply.
    fn send_estimate(&self, ds: Dataset, request: &SendRequest) -> Option<u64> {
        let _ = (ds, request);
        None
    }

    /// The command writing a native stream of a dataset to its stdout.
    /// Missing snapshots are reported here, before anything runs. The caller
    /// runs it with stdout into a pipe ([`send`]) or straight into a file
    /// ([`Cmd::run_with_files`]).
    fn send_cmd(&self, ds: Dataset, request: &SendRequest) -> Result<Cmd>;

    /// Starts receiving a native stream into a dataset (base, then
    /// incremental), through the backend's check of streams if it has one;
    /// a check that sees the files go by judges them by `policy`, and
    /// [`Receiver::finish`] tells whether the received tree must still be
    /// walked ([`crate::filepolicy::scan`]).
    fn receive(&self, ds: Dataset, policy: &FilePolicy) -> Result<Receiver>;

    /// For a stream the receiver may read from a file itself (an archive
    /// under a read lease, [`crate::archive::lease`]): the receive command
    /// and the check that is to read the same bytes beside it. None where
    /// the backend's receiver must get its bytes through the check.
    fn receive_beside(
        &self,
        _ds: Dataset,
        _policy: &FilePolicy,
    ) -> Result<Option<(Cmd, Box<dyn StreamCheck>)>> {
        Ok(None)
    }

    /// After all streams of a dataset are received: removes the snapshots the
    /// streams brought (`snapshots`, newest first). The dataset may be left
    /// unmounted: the import then renames the container to its id, which
    /// mounts it at its final place ([`Storage::mount`] shows it before that).
    fn finish_receive(&self, ds: Dataset, snapshots: &[String]) -> Result<()>;

    /// Starts receiving one round of a send (`osctl ct send`) into a staged
    /// dataset: a whole stream (`base` None, replacing the dataset's
    /// contents) or the changes since the round snapshot `base`, which the
    /// dataset keeps from the round before. The stream makes the snapshot
    /// `snap`; a leftover of an earlier attempt at `snap` goes first.
    fn receive_round(
        &self,
        ds: Dataset,
        snap: &str,
        base: Option<&str>,
        policy: &FilePolicy,
    ) -> Result<Receiver>;

    /// The tree a received round brought, to be judged by the file policy;
    /// refuses a round whose stream did not make the snapshot `snap`
    /// completely, or made others beside it and `base`.
    fn received_round(&self, ds: Dataset, snap: &str, base: Option<&str>) -> Result<PathBuf>;

    /// Undoes a round that was refused or failed: the dataset goes back to
    /// the round snapshot `base` (or, without one, to an empty dataset).
    fn drop_round(&self, ds: Dataset, snap: &str, base: Option<&str>) -> Result<()>;

    /// Removes the round snapshot `snap` once the next round is in, or the
    /// send has ended.
    fn forget_round(&self, ds: Dataset, snap: &str) -> Result<()>;

    /// At the cutover: makes the dataset's own directory show the round
    /// snapshot `snap`, writable, keeping `snap` for a round that may still
    /// follow if the start fails.
    fn place_round(&self, ds: Dataset, snap: &str) -> Result<()>;
}

/// Starts [`NativeStreams::send_cmd`] with its stream readable from a pipe.
pub fn send(native: &dyn NativeStreams, ds: Dataset, request: &SendRequest) -> Result<ChildReader> {
    let cmd = native.send_cmd(ds, request)?;
    let reader = cmd.spawn_reader().ctx(|| {
        let dataset = if ds.is_root() {
            String::new()
        } else {
            format!(", dataset '{}'", ds.rel)
        };
        format!(
            "cannot send snapshot '{}' of container '{}'{dataset}",
            request.snapshot, ds.ct
        )
    })?;
    reader.enlarge_pipe(STREAM_PIPE_SIZE);
    Ok(reader)
}

/// Pieces in which [`Receiver::copy_from`] moves a stream (and the import
/// reads one beside its receiver).
pub(crate) const COPY_BUFFER: usize = 1 << 20;

/// Where a native stream goes: the receiving program's stdin, behind a check
/// on backends whose receiver must not see some streams (btrfs: see
/// [`btrfs_stream`]). Unchecked streams may be spliced in without a copy
/// through userspace. Dropping it unfinished kills the receiver.
pub struct Receiver {
    writer: ChildWriter,
    check: Option<Box<dyn StreamCheck>>,
}

/// Whether the files a native stream brought were all judged by the file
/// policy on their way in, or the received tree must be walked
/// ([`crate::filepolicy::scan`]) before it may be kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeJudged {
    ByStream,
    NeedsWalk,
}

/// Looks at every byte of a native stream before the receiver gets it.
pub trait StreamCheck: Send {
    /// The next bytes of the stream. An error means that they must not reach
    /// the receiver, nor anything after them.
    fn check(&mut self, bytes: &[u8]) -> Result<()>;

    /// After the receiver took the whole stream and succeeded: refuses a
    /// stream that ended early, remembers what later streams may refer to,
    /// and tells whether the received files still have to be walked.
    fn finish(&mut self) -> Result<TreeJudged>;
}

impl Receiver {
    /// A receiver that takes streams as they are.
    pub fn direct(writer: ChildWriter) -> Receiver {
        Receiver::new(writer, None)
    }

    /// A receiver whose streams must pass `check` first.
    pub fn checked(writer: ChildWriter, check: Box<dyn StreamCheck>) -> Receiver {
        Receiver::new(writer, Some(check))
    }

    fn new(writer: ChildWriter, check: Option<Box<dyn StreamCheck>>) -> Receiver {
        writer.enlarge_pipe(STREAM_PIPE_SIZE);
        Receiver { writer, check }
    }

    /// Checks the next bytes of the stream, then passes them on. A refusal is
    /// the source's fault ([`CopyError::Source`]), a write error the receiver's.
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<(), CopyError> {
        if let Some(check) = &mut self.check {
            check.check(bytes).map_err(CopyError::Source)?;
        }
        io::Write::write_all(self.writer.stdin(), bytes).map_err(CopyError::Sink)
    }

    /// Copies all of `input` in (through the check), telling `progress` the
    /// size of each piece. Read errors are the source's.
    pub fn copy_from(
        &mut self,
        input: &mut dyn io::Read,
        mut progress: impl FnMut(u64),
    ) -> Result<u64, CopyError> {
        let mut buf = vec![0u8; COPY_BUFFER];
        let mut total = 0u64;
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CopyError::Source(crate::archive::reader::read_error(e))),
            };
            self.write_all(&buf[..n])?;
            total += n as u64;
            progress(n as u64);
        }
    }

    /// Closes the receiver's input and waits for it; then the check may still
    /// refuse the stream (cut short). `what` names the stream in messages.
    pub fn finish(self, what: &str) -> Result<TreeJudged> {
        let Receiver { writer, check } = self;
        writer
            .finish()
            .map_err(|e| Error::exec(format!("cannot receive {what}"), e))?;
        match check {
            Some(mut check) => check
                .finish()
                .map_err(|e| e.context(format!("cannot receive {what}"))),
            None => Ok(TreeJudged::NeedsWalk),
        }
    }

    /// Ends a copy into the receiver (`copied`, from [`Receiver::copy_from`]
    /// or [`Receiver::write_all`]): waits for it when the copy went through; a write error
    /// becomes the receiver's own error when it died; a source error is
    /// returned as it is. `what` names the stream in messages.
    pub fn end(self, copied: Result<(), CopyError>, what: &str) -> Result<TreeJudged> {
        match copied {
            Ok(()) => self.finish(what),
            Err(CopyError::Sink(e)) => Err(Error::exec(
                format!("cannot receive {what}"),
                self.writer.explain(e),
            )),
            Err(CopyError::Source(e)) => Err(e),
        }
    }
}

/// Refuses a symlink on the way from `base` down to `base/rel` (a plain
/// relative path); what does not exist yet is fine. Directories below a
/// container's directory may come from an archive's streams, and a symlink
/// there would send a mount or a new subvolume elsewhere on the host.
pub fn refuse_symlinks(base: &Path, rel: &str) -> Result<()> {
    if !btrfs_parse::is_plain_relative(rel) {
        return Err(Error::invalid(format!(
            "invalid path '{}' below {}",
            rel.escape_debug(),
            base.display()
        )));
    }
    let mut path = base.to_path_buf();
    for part in rel.split('/') {
        path.push(part);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(Error::refused(format!(
                    "{} is a symlink where a directory is expected",
                    path.display()
                )))
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).ctx(|| format!("cannot stat {}", path.display())),
        }
    }
    Ok(())
}

/// A dataset's `private/`, checked to be a directory reached without a
/// symlink from the container's directory `top` (`rel` "" for the root).
pub fn checked_private(top: &Path, rel: &str) -> Result<PathBuf> {
    let below = if rel.is_empty() {
        ROOTFS_DIR.to_string()
    } else {
        format!("{rel}/{ROOTFS_DIR}")
    };
    refuse_symlinks(top, &below)?;
    let private = top.join(&below);
    match std::fs::symlink_metadata(&private) {
        Ok(meta) if meta.is_dir() => Ok(private),
        Ok(_) => Err(Error::refused(format!(
            "{} is not a directory",
            private.display()
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::not_found(format!(
            "{} does not exist: every dataset keeps its files in its private/",
            private.display()
        ))),
        Err(e) => Err(e).ctx(|| format!("cannot stat {}", private.display())),
    }
}

/// The staging name under which an import builds a container before it commits.
pub fn staging_name(id: &str) -> String {
    format!("{id}.importing")
}

/// The container id a staging name belongs to.
pub fn staged_id(name: &str) -> Option<&str> {
    name.strip_suffix(".importing")
}

/// A storage tool printed what its parser does not understand: the system
/// misbehaves (an I/O error of kind `InvalidData`), the caller did nothing wrong.
fn unexpected_output(
    context: String,
    parse_error: impl std::error::Error + Send + Sync + 'static,
) -> Error {
    Error::io(
        context,
        std::io::Error::new(std::io::ErrorKind::InvalidData, parse_error),
    )
}
