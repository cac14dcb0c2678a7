//! `osctl ct export`: a container's configs and root file system into one
//! archive, in the layout of vpsAdminOS's osctl.
//!
//! A consistent export of a running container in native streams dumps a base
//! while it runs, stops it, takes an incremental snapshot and starts it again;
//! the incremental is dumped from that snapshot after the start, so the
//! downtime does not grow with the container. The original reads only the
//! base of a tar archive, so a `tar` archive holds one tar: on zfs and btrfs
//! the container stops for a snapshot only, which is then dumped whole. Dir
//! pools have no snapshots: there a base is dumped while the container runs
//! and the changes while it is stopped (`format: tar-layers`, which the
//! original refuses), or, with `single_layer`, one tar while it is stopped.
//! Whatever fails, the container is running again if it was, every snapshot
//! is destroyed and the partial file is removed; a killed export leaves a
//! journal that the next command replays.

use std::fs::File;
use std::io::{self, Seek, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::archive::background::BackgroundWriter;
use crate::archive::compress::{self, CompressOptions, Compression, Encoder};
use crate::archive::meta::{self, ArchiveFormat, ArchiveType, Metadata, StreamEncoding};
use crate::archive::{ArchiveWriter, DigestAlgorithm, EntrySink};
use crate::cmd::{Cmd, ExecError, OffsetWatch};
use crate::containers;
use crate::datasets;
use crate::error::{Context, Error, Result};
use crate::failpoint;
use crate::fstar::{self, DumpSource, Manifest};
use crate::interrupt::{self, Interruptible};
use crate::journal::{ExportRecord, Journal};
use crate::model::ContainerConfig;
use crate::names;
use crate::pool::Pool;
use crate::progress::Progress;
use crate::runtime::{CtState, Runtime};
use crate::storage::{self, Dataset, NativeStreams, SendRequest, ROOTFS_DIR};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionChoice {
    /// Stored compressed by the storage where it can send so, else gzip.
    Auto,
    Fixed(Compression),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatChoice {
    /// The pool's own streams: zfs, btrfs, or tar for dir pools.
    Native,
    /// Portable between pools of any kind.
    Tar,
}

pub struct ExportOptions {
    pub consistent: bool,
    pub compression: CompressionChoice,
    pub format: FormatChoice,
    /// Tar archives on dir pools: one tar of the stopped container, as the
    /// original reads it, instead of a base and the changes after it.
    pub single_layer: bool,
    pub force: bool,
    pub progress: Progress,
    pub stop_timeout: Duration,
    /// Consistent exports freeze a running container for the last snapshot
    /// (or, on dir pools, the last dump) instead of stopping it: crash-
    /// consistent, without a shutdown and a start.
    pub freeze: bool,
    /// Largest part of a stream written to a pipe (see `archive::parts`).
    pub part_size: u64,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            consistent: true,
            compression: CompressionChoice::Auto,
            format: FormatChoice::Native,
            single_layer: false,
            force: false,
            progress: Progress::hidden(),
            stop_timeout: containers::DEFAULT_STOP_TIMEOUT,
            freeze: false,
            part_size: crate::archive::parts::DEFAULT_PART,
        }
    }
}

/// What an export wrote, for its closing line.
#[derive(Debug, Clone)]
pub struct Exported {
    pub path: PathBuf,
    pub bytes: u64,
    pub elapsed: Duration,
    /// How long a consistent export kept the running container stopped (or
    /// frozen); None when it never stopped it.
    pub downtime: Option<Duration>,
}

/// The archive file being written: a temporary name next to the destination,
/// renamed over it only when complete, removed when dropped before that.
pub(crate) struct PartialFile {
    temp: PathBuf,
    dest: PathBuf,
    force: bool,
    done: bool,
}

impl PartialFile {
    /// Checks the destination and picks the temporary name; creates nothing.
    /// Whatever makes the destination unusable is found here, before the
    /// container is touched.
    pub(crate) fn plan(dest: &Path, force: bool) -> Result<PartialFile> {
        let shown = dest.display();
        match dest.metadata() {
            Ok(m) if m.is_dir() => {
                return Err(Error::invalid(format!(
                    "{shown} is a directory: name the archive file, e.g. {}",
                    dest.join("archive.tar").display()
                )))
            }
            Ok(_) if !force => {
                return Err(Error::exists(format!(
                    "file {shown} already exists; --force to overwrite"
                )))
            }
            _ if !force && dest.symlink_metadata().is_ok() => {
                return Err(Error::exists(format!(
                    "file {shown} already exists (a dangling link); --force to overwrite"
                )))
            }
            _ => {}
        }
        let name = dest
            .file_name()
            .filter(|_| !dest.as_os_str().as_encoded_bytes().ends_with(b"/"))
            .ok_or_else(|| Error::invalid(format!("{shown} is not a file name")))?;
        // Absolute: the journal keeps this name for a later command, which
        // may run elsewhere, to remove.
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        check_writable_dir(&dir, dest)?;
        let dir = std::path::absolute(&dir)
            .ctx(|| format!("cannot resolve the directory of {}", dest.display()))?;
        let temp = dir.join(format!(
            ".{}.partial-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        Ok(PartialFile {
            temp,
            dest: dest.to_path_buf(),
            force,
            done: false,
        })
    }

    pub(crate) fn create(&self) -> Result<File> {
        std::fs::OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .open(&self.temp)
            .ctx(|| format!("cannot create {}", self.temp.display()))
    }

    pub(crate) fn commit(mut self) -> Result<()> {
        let flags = if self.force {
            rustix::fs::RenameFlags::empty()
        } else {
            rustix::fs::RenameFlags::NOREPLACE
        };
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            &self.temp,
            rustix::fs::CWD,
            &self.dest,
            flags,
        )
        .map_err(io::Error::from)
        .ctx(|| format!("cannot move the archive to {}", self.dest.display()))?;
        self.done = true;
        if let Some(dir) = self.dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            crate::fsutil::sync_dir(dir)?;
        }
        Ok(())
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// The directory an archive goes into must exist and take new files.
fn check_writable_dir(dir: &Path, dest: &Path) -> Result<()> {
    use rustix::fs::{access, Access};
    match dir.metadata() {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Error::invalid(format!(
                "cannot write {}: {} is not a directory",
                dest.display(),
                dir.display()
            )))
        }
        Err(_) => {
            return Err(Error::not_found(format!(
                "cannot write {}: directory {} does not exist",
                dest.display(),
                dir.display()
            )))
        }
    }
    access(dir, Access::WRITE_OK | Access::EXEC_OK).map_err(|e| {
        Error::refused(format!(
            "cannot write {}: no permission to create files in {} ({e})",
            dest.display(),
            dir.display()
        ))
    })
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Where an export writes.
enum Destination<'w> {
    /// A named file: written under a temporary name, renamed when complete.
    Path(PartialFile),
    /// An open seekable file (standard output redirected to one): written
    /// from its position, cut back there on failure.
    File(File),
    /// A pipe or any writer: streams in parts (`archive::parts`).
    Stream(Box<dyn Write + 'w>),
}

/// Exports container `id` of `pool` into the archive `dest`.
pub fn export(pool: &Pool, id: &str, dest: &Path, opts: &ExportOptions) -> Result<Exported> {
    names::container_id(id)?;
    let partial = PartialFile::plan(dest, opts.force)?;
    run(pool, id, Destination::Path(partial), opts)
}

/// Exports container `id` through `out`, which need not seek (a pipe, a
/// socket, an SSH channel): each stream goes out as parts of at most
/// `opts.part_size` bytes, `metadata.yml` says so (`part_size:`), and
/// `import_from` reads it back. Nothing of the archive is kept here: on
/// failure the reader gets a cut archive, which it refuses.
pub fn export_to<W: Write>(
    pool: &Pool,
    id: &str,
    out: W,
    opts: &ExportOptions,
) -> Result<Exported> {
    names::container_id(id)?;
    run(pool, id, Destination::Stream(Box::new(out)), opts)
}

/// Exports container `id` into an open file from its current position: the
/// seekable archive of [`export`], without a rename (the file is cut back
/// on failure).
pub fn export_to_file(pool: &Pool, id: &str, file: File, opts: &ExportOptions) -> Result<Exported> {
    names::container_id(id)?;
    run(pool, id, Destination::File(file), opts)
}

/// Exports container `id` to standard output: the seekable archive when it
/// is a regular file opened without O_APPEND, parts when it is a pipe or a
/// socket; a terminal is refused before anything is done.
pub fn export_to_stdout(pool: &Pool, id: &str, opts: &ExportOptions) -> Result<Exported> {
    use std::io::IsTerminal;
    use std::os::fd::AsFd;
    let stdout = io::stdout();
    let fd = stdout
        .as_fd()
        .try_clone_to_owned()
        .ctx(|| "cannot use standard output")?;
    if fd.is_terminal() {
        return Err(Error::refused(
            "standard output is a terminal: redirect it to a file or a pipe (osctl ct export ID - | ...)",
        ));
    }
    let file = File::from(fd);
    let seekable = file.metadata().is_ok_and(|m| m.is_file())
        && !rustix::fs::fcntl_getfl(&file).is_ok_and(|f| f.contains(rustix::fs::OFlags::APPEND));
    let exported = if seekable {
        export_to_file(pool, id, file, opts)
    } else {
        // A thread writes into the pipe, so that a part waiting for the
        // reader does not hold up the making of the next.
        let _ = rustix::pipe::fcntl_setpipe_size(&file, 1 << 20);
        export_to(pool, id, BackgroundWriter::new(file), opts)
    };
    exported.map(|done| Exported {
        path: PathBuf::from("standard output"),
        ..done
    })
}

/// The export proper, once the destination is known to be usable.
fn run(pool: &Pool, id: &str, dest: Destination, opts: &ExportOptions) -> Result<Exported> {
    let began = Instant::now();
    // The pool's native streams when the archive takes them, else tar.
    let native = match opts.format {
        FormatChoice::Native => pool.storage.native(),
        FormatChoice::Tar => None,
    };
    if let (true, Some(native)) = (opts.single_layer, native) {
        return Err(Error::invalid(format!(
            "--single-layer is for tar archives; {} streams of a consistent export hold two layers",
            native.format()
        )));
    }
    interrupt::install();
    let _lock = pool.lock_ct(id)?;
    let cfg = pool.ct(id)?;
    let runtime = containers::runtime(pool);
    let running = is_running(runtime.state(id)?, id)?;
    let (output, shown) = match &dest {
        Destination::Path(partial) => (partial.temp.clone(), partial.dest.clone()),
        _ => (PathBuf::new(), PathBuf::from("the stream")),
    };
    // Journal before the file: a crash in between leaves nothing unrecorded.
    let mut journal = Journal::begin(
        pool,
        ExportRecord {
            pid: std::process::id(),
            id: id.to_string(),
            output,
            ..Default::default()
        },
    )?;
    failpoint::hit("export-after-journal");
    let (writer, finish) = match open_destination(dest, opts.part_size) {
        Ok(opened) => opened,
        Err(e) => {
            journal.finish()?;
            return Err(e.context(format!("cannot export container '{id}'")));
        }
    };
    let mut job = ExportJob {
        pool,
        id,
        cfg: &cfg,
        opts,
        journal: &mut journal,
        runtime,
        running,
        native,
        streaming: writer.part_size().is_some(),
        down_since: None,
        downtime: None,
    };
    let written = job.write(writer);
    let written = finish.complete(written);
    let cleaned = job.clean_up();
    opts.progress.finish();
    let downtime = job.downtime;
    let outcome = match (written, cleaned) {
        (Ok(bytes), Ok(())) => Ok(bytes),
        (Err(e), _) => Err(interrupt::explain(e)),
        (Ok(_), Err(e)) => Err(e),
    };
    // The journal goes only when everything it records was undone.
    match &outcome {
        Ok(_) => journal.finish()?,
        Err(_) if job_is_clean(&journal) => {
            let _ = journal.finish();
        }
        Err(_) => {}
    }
    let bytes = outcome.map_err(|e| e.context(format!("cannot export container '{id}'")))?;
    Ok(Exported {
        bytes,
        path: shown,
        elapsed: began.elapsed(),
        downtime,
    })
}

/// Whether a container to export runs; one on its way up or down is busy.
fn is_running(state: CtState, id: &str) -> Result<bool> {
    match state {
        CtState::Running => Ok(true),
        CtState::Stopped => Ok(false),
        other => Err(Error::busy(format!(
            "container '{id}' is {other}: try again later"
        ))),
    }
}

/// The archive's writer on `dest`, and what completes or undoes it.
fn open_destination(dest: Destination<'_>, part_size: u64) -> Result<(ArchiveWriter<'_>, Finish)> {
    match dest {
        Destination::Path(partial) => partial
            .create()
            .and_then(ArchiveWriter::new)
            .map(|w| (w, Finish::Rename(partial))),
        Destination::File(mut file) => file
            .stream_position()
            .ctx(|| "standard output is a file but cannot seek")
            .and_then(|start| {
                let w = ArchiveWriter::new(file.try_clone().ctx(|| "cannot use the file")?)?;
                Ok((w, Finish::CutBack(file, start)))
            }),
        Destination::Stream(out) => {
            let count = Arc::new(AtomicU64::new(0));
            let out = CountedOut {
                inner: out,
                count: Arc::clone(&count),
            };
            ArchiveWriter::streaming(out, part_size).map(|w| (w, Finish::Nothing(count)))
        }
    }
}

/// What makes a written archive final, or undoes a failed one.
enum Finish {
    Rename(PartialFile),
    CutBack(File, u64),
    /// A stream: only its count of bytes written is kept.
    Nothing(Arc<AtomicU64>),
}

impl Finish {
    /// Makes the archive final; the bytes it holds.
    fn complete(self, written: Result<()>) -> Result<u64> {
        match (self, written) {
            (Finish::Rename(partial), Ok(())) => {
                failpoint::hit("export-before-rename");
                let dest = partial.dest.clone();
                partial.commit()?;
                Ok(std::fs::metadata(dest).map_or(0, |m| m.len()))
            }
            (Finish::CutBack(file, start), Ok(())) => {
                Ok(file.metadata().map_or(0, |m| m.len().saturating_sub(start)))
            }
            (Finish::CutBack(file, start), Err(e)) => {
                let _ = file.set_len(start);
                Err(e)
            }
            (Finish::Nothing(count), Ok(())) => Ok(count.load(Ordering::Relaxed)),
            (_, Err(e)) => Err(e),
        }
    }
}

/// A stream that counts what went through it, for the closing line.
struct CountedOut<'w> {
    inner: Box<dyn Write + 'w>,
    count: Arc<AtomicU64>,
}

impl Write for CountedOut<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn job_is_clean(journal: &Journal<ExportRecord>) -> bool {
    let r = journal.record();
    r.snapshots.is_empty() && !r.stopped && !r.frozen
}

/// One export under way: what it writes, and what it must undo.
struct ExportJob<'a> {
    pool: &'a Pool,
    id: &'a str,
    cfg: &'a ContainerConfig,
    opts: &'a ExportOptions,
    journal: &'a mut Journal<ExportRecord>,
    runtime: &'a dyn Runtime,
    running: bool,
    /// The pool's native streams when the archive holds them (else tar).
    native: Option<&'a dyn NativeStreams>,
    /// The archive goes to a stream, in parts: nothing is written into a file.
    streaming: bool,
    /// When the container was last stopped or frozen, until it runs again.
    down_since: Option<Instant>,
    /// The time it spent stopped or frozen, in all.
    downtime: Option<Duration>,
}

/// How many dumps the archive holds, and when the container is stopped.
#[derive(Clone, Copy, PartialEq)]
enum Layers {
    /// One dump; the container is not stopped.
    One,
    /// One dump of the stopped container: of a snapshot taken while it was
    /// stopped (it runs again during the dump), or where views are live of
    /// the live tree while it stays stopped.
    OneStopped,
    /// A base dumped while it runs, then the changes after a stop.
    BaseAndChanges,
}

/// How one dataset's stream goes into its archive entry; chosen in
/// [`ExportJob::route`], the one place that knows.
#[derive(Clone, Copy)]
enum Route<'a> {
    /// A native sender writes an uncompressed entry straight into the
    /// archive file; `compressed`: its data as the storage keeps it
    /// compressed.
    SendIntoFile {
        native: &'a dyn NativeStreams,
        compressed: bool,
    },
    /// A native sender's pipe through an encoder (`compressed` as above).
    SendThroughEncoder {
        native: &'a dyn NativeStreams,
        compression: Compression,
        compressed: bool,
    },
    /// A tar dump of the root file system through an encoder.
    Tar(Compression),
}

impl Route<'_> {
    fn compression(self) -> Compression {
        match self {
            Route::SendIntoFile { .. } => Compression::Off,
            Route::SendThroughEncoder { compression: c, .. } | Route::Tar(c) => c,
        }
    }

    /// `rootfs/[<rel>/]<stem>.<dat|tar><compression>`.
    fn entry(self, rel: &str, stem: &str) -> String {
        let dir = if rel.is_empty() {
            meta::ROOTFS_DIR.to_string()
        } else {
            format!("{}/{rel}", meta::ROOTFS_DIR)
        };
        let kind = match self {
            Route::Tar(_) => StreamEncoding::Tar,
            _ => StreamEncoding::Dat,
        };
        let suffix = self.compression().suffix();
        format!("{dir}/{stem}{}{suffix}", kind.extension())
    }
}

/// A tar dump: the root file system with the subdatasets `shown` where the
/// container sees them, at `snap`; whole, or the changes since the base dump
/// that made `base`.
struct TarDump<'a> {
    shown: &'a [(String, String)],
    snap: &'a str,
    base: Option<&'a Manifest>,
    /// The progress step it shows.
    step: String,
}

/// What the archive holds of the container's datasets.
struct Contents {
    /// Native archives: the subdatasets, each with its own streams.
    datasets: Vec<String>,
    /// Tar archives: each subdataset with where the container sees it, all
    /// in the one tree.
    shown: Vec<(String, String)>,
}

impl<'a> ExportJob<'a> {
    fn layers(&self) -> Layers {
        if !(self.opts.consistent && self.running) {
            Layers::One
        } else if self.native.is_some()
            || (self.pool.storage.views_are_live() && !self.opts.single_layer)
        {
            Layers::BaseAndChanges
        } else {
            Layers::OneStopped
        }
    }

    fn format(&self) -> ArchiveFormat {
        match self.native {
            Some(native) => native.format(),
            None if self.layers() == Layers::BaseAndChanges => ArchiveFormat::TarLayers,
            None => ArchiveFormat::Tar,
        }
    }

    /// How the stream of dataset `rel` is written.
    fn route(&self, rel: &str) -> Result<Route<'a>> {
        let fixed = match self.opts.compression {
            CompressionChoice::Fixed(c) => Some(c),
            CompressionChoice::Auto => None,
        };
        let Some(native) = self.native else {
            return Ok(Route::Tar(fixed.unwrap_or(Compression::Gzip)));
        };
        let through = |compression, compressed| Route::SendThroughEncoder {
            native,
            compression,
            compressed,
        };
        let into_file = |compressed| match self.streaming {
            // No file to send into: the same bytes through the parts.
            true => through(Compression::Off, compressed),
            false => Route::SendIntoFile { native, compressed },
        };
        Ok(match fixed {
            Some(Compression::Off) => into_file(false),
            Some(c) => through(c, false),
            None if native.can_send_compressed(Dataset::new(self.id, rel))? => into_file(true),
            None => through(Compression::Gzip, false),
        })
    }

    /// The archive: its head (metadata and configs), the root file system's
    /// streams, and its tail (checksums and snapshot names).
    fn write(&mut self, mut w: ArchiveWriter) -> Result<()> {
        let contents = match self.native {
            Some(_) => Contents {
                datasets: self.pool.storage.subdatasets(self.id)?,
                shown: Vec::new(),
            },
            None => Contents {
                datasets: Vec::new(),
                shown: self.shown_datasets()?,
            },
        };
        self.write_head(&mut w, &contents.datasets)?;
        self.dump_layers(&mut w, &contents)?;
        interrupt::check()?;
        failpoint::hit("export-before-end");
        self.write_tail(w)
    }

    /// `metadata.yml`, the configs, hooks and the root file system's
    /// directories.
    fn write_head(&self, w: &mut ArchiveWriter, datasets: &[String]) -> Result<()> {
        let metadata = Metadata {
            archive_type: ArchiveType::Full,
            format: self.format(),
            user: Some(self.cfg.user.clone()),
            group: Some(self.cfg.group.clone()),
            container: Some(self.id.to_string()),
            datasets: datasets.to_vec(),
            exported_at: now() as i64,
            checksums: Some(DigestAlgorithm::CURRENT),
            part_size: w.part_size(),
        };
        w.add_file(meta::METADATA, metadata.to_yaml()?.as_bytes())?;
        w.add_dir(meta::CONFIG_DIR)?;
        let pool = self.pool;
        for (entry, path) in [
            (meta::USER_CONFIG, pool.user_config_path(&self.cfg.user)),
            (meta::GROUP_CONFIG, pool.group_config_path(&self.cfg.group)),
        ] {
            let body = std::fs::read(&path).ctx(|| format!("cannot read {}", path.display()))?;
            w.add_file(entry, &body)?;
        }
        w.add_file(meta::CONTAINER_CONFIG, &self.container_config()?)?;
        self.add_hooks(w)?;
        w.add_dir(meta::ROOTFS_DIR)?;
        for rel in datasets {
            w.add_dir(&format!("{}/{rel}", meta::ROOTFS_DIR))?;
        }
        Ok(())
    }

    /// After the streams: destroys the snapshots, then writes
    /// `checksums.yml` and `snapshots.yml` (newest first) and ends the archive.
    fn write_tail(&mut self, mut w: ArchiveWriter) -> Result<()> {
        let snapshots = self.journal.record().snapshots.clone();
        self.destroy_snapshots()?;
        let checksums = w.checksums().to_vec();
        w.add_file(
            meta::CHECKSUMS,
            meta::checksums_to_yaml(&checksums)?.as_bytes(),
        )?;
        let newest_first: Vec<String> = snapshots.into_iter().rev().collect();
        w.add_file(
            meta::SNAPSHOTS,
            meta::snapshots_to_yaml(&newest_first)?.as_bytes(),
        )?;
        w.end()
    }

    /// Takes the snapshots and dumps them, stopping and starting the
    /// container as [`ExportJob::layers`] says.
    fn dump_layers(&mut self, w: &mut ArchiveWriter, contents: &Contents) -> Result<()> {
        let live_views = self.pool.storage.views_are_live();
        let layers = self.layers();
        if layers == Layers::OneStopped {
            self.stop_for_export()?;
        }
        let base = self.take_snapshot("base")?;
        failpoint::hit("export-after-base-snapshot");
        // With real snapshots the container may run while they are dumped.
        if layers == Layers::OneStopped && !live_views {
            self.start_again()?;
        }
        let manifest = self.dump(w, contents, &base, None)?;
        if layers == Layers::BaseAndChanges {
            self.stop_for_export()?;
            let incr = self.take_snapshot("incr")?;
            failpoint::hit("export-after-incr-snapshot");
            if !live_views {
                self.start_again()?;
            }
            self.dump(w, contents, &incr, Some((base.as_str(), &manifest)))?;
        }
        self.start_again()
    }

    /// Stops the running container for the last snapshot, or freezes it
    /// with `--freeze`; [`Job::start_again`] undoes either.
    fn stop_for_export(&mut self) -> Result<()> {
        self.down_since = Some(Instant::now());
        if self.opts.freeze {
            self.progress(format!("freezing container '{}'", self.id));
            self.journal.update(|r| r.frozen = true)?;
            self.runtime.freeze(self.id)?;
            failpoint::hit("export-after-freeze");
            return Ok(());
        }
        self.progress(format!("stopping container '{}'", self.id));
        self.journal.update(|r| r.stopped = true)?;
        self.runtime.stop(self.id, self.opts.stop_timeout)?;
        failpoint::hit("export-after-stop");
        Ok(())
    }

    /// `config/container.yml`: the pool's file as it is, except that a tar
    /// archive, whose tree holds the subdatasets' files at their mountpoints,
    /// drops the mounts that showed them.
    fn container_config(&self) -> Result<Vec<u8>> {
        let path = self.pool.ct_config_path(self.id);
        let body = std::fs::read(&path).ctx(|| format!("cannot read {}", path.display()))?;
        let of_subdataset = |m: &serde_json::Value| {
            datasets::parse_mount(m).is_some_and(|p| p.is_ok_and(|p| !p.dataset.is_empty()))
        };
        if self.native.is_some() || !self.cfg.mounts.iter().any(of_subdataset) {
            return Ok(body);
        }
        let mut cfg = self.cfg.clone();
        cfg.mounts.retain(|m| !of_subdataset(m));
        Ok(crate::yaml::to_string(&cfg)?.into_bytes())
    }

    /// For a tar archive: each subdataset with the path where the container
    /// sees it (its mountpoint, relative). One that the container does not
    /// see cannot be placed in the tree and is refused.
    fn shown_datasets(&self) -> Result<Vec<(String, String)>> {
        let subdatasets = self.pool.storage.subdatasets(self.id)?;
        let mounts = datasets::check_mounts(self.cfg, &subdatasets)?;
        subdatasets
            .into_iter()
            .map(|rel| match mounts.iter().find(|m| m.dataset == rel) {
                Some(m) => Ok((rel, m.mountpoint.trim_start_matches('/').to_string())),
                None => Err(Error::refused(format!(
                    "dataset '{rel}' is not mounted in the container, so a tar archive, which \
                     holds what the container sees, has no place for it: mount it (`osctl ct \
                     dataset` mounts new ones) or export with --format native"
                ))),
            })
            .collect()
    }

    /// The container's hook scripts (kept from a trusted import), one
    /// directory level deep as the original exports them.
    fn add_hooks(&self, w: &mut ArchiveWriter) -> Result<()> {
        let dir = self.pool.hooks_dir(self.id);
        let files = hook_files(&dir)?;
        if files.is_empty() {
            return Ok(());
        }
        w.add_dir(meta::HOOKS_DIR)?;
        let mut dirs_added = Vec::new();
        for rel in files {
            if let Some((sub, _)) = rel.split_once('/') {
                if !dirs_added.iter().any(|d| d == sub) {
                    w.add_dir(&format!("{}/{sub}", meta::HOOKS_DIR))?;
                    dirs_added.push(sub.to_string());
                }
            }
            let path = dir.join(&rel);
            let body = std::fs::read(&path).ctx(|| format!("cannot read hook {rel}"))?;
            let mode = std::fs::metadata(&path)
                .ctx(|| format!("cannot stat hook {rel}"))?
                .permissions()
                .mode();
            // The original runs only hooks installed executable, with the
            // mode of their entry.
            let mode = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
            w.add_file_with_mode(&format!("{}/{rel}", meta::HOOKS_DIR), &body, mode)?;
        }
        Ok(())
    }

    fn progress(&self, step: String) {
        self.opts.progress.step(step);
    }

    /// Whether progress is drawn: estimates are worth their cost only then.
    fn visible(&self) -> bool {
        self.opts.progress.is_visible()
    }

    fn take_snapshot(&mut self, kind: &str) -> Result<String> {
        interrupt::check()?;
        let name = format!("osctl-{kind}-{}", now());
        // Journal first: a crash right after the snapshot still finds it.
        self.journal.update(|r| r.snapshots.push(name.clone()))?;
        self.pool.storage.snapshot(self.id, &name)?;
        Ok(name)
    }

    fn start_again(&mut self) -> Result<()> {
        if self.journal.record().frozen {
            self.runtime.thaw(self.id)?;
            self.journal.update(|r| r.frozen = false)?;
        }
        if self.journal.record().stopped {
            self.progress(format!("starting container '{}'", self.id));
            self.journal.update(|r| r.starting = true)?;
            containers::start_locked(self.pool, self.id)?;
            self.journal.update(|r| {
                r.stopped = false;
                r.starting = false;
            })?;
        }
        if let Some(since) = self.down_since.take() {
            *self.downtime.get_or_insert_default() += since.elapsed();
        }
        Ok(())
    }

    fn destroy_snapshots(&mut self) -> Result<()> {
        let snapshots = self.journal.record().snapshots.clone();
        for snap in snapshots.iter().rev() {
            self.pool.storage.destroy_snapshot(self.id, snap)?;
            self.journal.update(|r| r.snapshots.retain(|s| s != snap))?;
        }
        Ok(())
    }

    /// Undoes what a failed export did; also run after success (nothing to do then).
    fn clean_up(&mut self) -> Result<()> {
        let started = self.start_again();
        let destroyed = self.destroy_snapshots();
        started.and(destroyed)
    }

    /// Dumps every dataset at `snap`: a base, or with `since` the changes
    /// after the base. Returns the manifest of a tar base dump.
    fn dump(
        &mut self,
        w: &mut ArchiveWriter,
        contents: &Contents,
        snap: &str,
        since: Option<(&str, &Manifest)>,
    ) -> Result<Manifest> {
        let stem = match since {
            Some(_) => "incremental",
            None => "base",
        };
        let request = SendRequest {
            snapshot: snap,
            from: since.map(|s| s.0),
            compressed: false,
        };
        let mut manifest = Manifest::default();
        for rel in std::iter::once("").chain(contents.datasets.iter().map(String::as_str)) {
            let route = self.route(rel)?;
            let entry = route.entry(rel, stem);
            let shown = if rel.is_empty() { "rootfs" } else { rel };
            let step = format!("{stem} of {shown}");
            let ds = Dataset::new(self.id, rel);
            if let Route::SendIntoFile { native, compressed }
            | Route::SendThroughEncoder {
                native, compressed, ..
            } = route
            {
                let sent = SendRequest {
                    compressed,
                    ..request
                };
                let estimate = self.visible().then(|| native.send_estimate(ds, &sent));
                self.opts
                    .progress
                    .step_bytes(step.clone(), estimate.flatten());
            }
            manifest = match route {
                Route::Tar(compression) => {
                    let base = since.map(|s| s.1);
                    let tar = TarDump {
                        shown: &contents.shown,
                        snap,
                        base,
                        step,
                    };
                    self.dump_tar(w, &tar, compression, &entry)?
                }
                Route::SendIntoFile { native, compressed } => {
                    let send = native.send_cmd(
                        ds,
                        &SendRequest {
                            compressed,
                            ..request
                        },
                    )?;
                    self.send_into_entry(w, &send, &entry)?;
                    Manifest::default()
                }
                Route::SendThroughEncoder {
                    native,
                    compression,
                    compressed,
                } => {
                    let request = SendRequest {
                        compressed,
                        ..request
                    };
                    let mut stream = storage::send(native, ds, &request)?;
                    self.compress_into_entry(w, compression, &entry, |out| {
                        io::copy(&mut stream, out).map(drop)
                    })?;
                    Manifest::default()
                }
            };
        }
        Ok(manifest)
    }

    /// Runs a native sender with the entry's data in the archive file as its
    /// stdout.
    fn send_into_entry(&self, w: &mut ArchiveWriter, send: &Cmd, entry: &str) -> Result<()> {
        let progress = &self.opts.progress;
        w.stream_entry(entry, |sink| {
            failpoint::hit("export-in-stream");
            sink.with_file(|file| {
                send_into_file(send, file, progress).ctx(|| format!("cannot dump {entry}"))
            })
        })
    }

    /// Writes the native stream that `fill` copies into the entry through
    /// an encoder.
    fn compress_into_entry(
        &self,
        w: &mut ArchiveWriter,
        compression: Compression,
        entry: &str,
        fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<()> {
        w.stream_entry(entry, |sink| {
            let feed = Feed::NativeStream;
            compress_into(sink, compression, feed, &self.opts.progress, |out| {
                fill(out).ctx(|| format!("cannot dump {entry}"))
            })
        })
    }

    /// The root file system as one tar stream, see [`TarDump`].
    fn dump_tar(
        &self,
        w: &mut ArchiveWriter,
        tar: &TarDump,
        compression: Compression,
        entry: &str,
    ) -> Result<Manifest> {
        let views = self.views(tar.snap, tar.shown)?;
        let sources: Vec<DumpSource> = views.iter().map(|(source, _)| source.clone()).collect();
        let progress = &self.opts.progress;
        // A base dump's size is about the tree's; the changes' is unknown.
        let estimate = (tar.base.is_none() && self.visible()).then(|| {
            sources
                .iter()
                .map(|s| crate::fsutil::tree_bytes(&s.dir))
                .sum()
        });
        progress.step_bytes(tar.step.clone(), estimate);
        w.stream_entry(entry, |sink| {
            let mut manifest = Manifest::default();
            compress_into(sink, compression, Feed::TarDump, progress, |out| {
                match tar.base {
                    None => manifest = fstar::dump_full(out, &sources)?.1,
                    Some(base) => {
                        fstar::dump_changes(out, &sources, base)?;
                    }
                }
                Ok(())
            })
            .map_err(|e| e.context(format!("cannot dump {entry}")))?;
            Ok(manifest)
        })
    }

    /// Directory views of the root file system and each subdataset (`shown`:
    /// with where the container sees it) at `snap`, as dump sources (the
    /// views must live while the sources are read).
    fn views(
        &self,
        snap: &str,
        shown: &[(String, String)],
    ) -> Result<Vec<(DumpSource, crate::storage::SnapshotView)>> {
        let storage = &self.pool.storage;
        let mut out = Vec::new();
        let root = storage.snapshot_view(Dataset::root(self.id), snap)?;
        out.push((
            DumpSource {
                prefix: String::new(),
                dir: root.path().join(ROOTFS_DIR),
            },
            root,
        ));
        for (rel, at) in shown {
            let view = storage.snapshot_view(Dataset::new(self.id, rel), snap)?;
            out.push((
                DumpSource {
                    prefix: at.clone(),
                    dir: view.path().join(ROOTFS_DIR),
                },
                view,
            ));
        }
        Ok(out)
    }
}

/// Regular files in `dir` and its direct subdirectories, as relative paths.
fn hook_files(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let list = |d: &Path| -> Result<Vec<(String, std::fs::FileType)>> {
        match std::fs::read_dir(d) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e).ctx(|| format!("cannot list {}", d.display())),
            Ok(entries) => entries
                .map(|e| {
                    let e = e.ctx(|| format!("cannot list {}", d.display()))?;
                    let kind = e
                        .file_type()
                        .ctx(|| format!("cannot stat {}", e.path().display()))?;
                    Ok((e.file_name().to_string_lossy().into_owned(), kind))
                })
                .collect(),
        }
    };
    for (name, kind) in list(dir)? {
        if kind.is_file() {
            out.push(name);
        } else if kind.is_dir() {
            for (sub, kind) in list(&dir.join(&name))? {
                if kind.is_file() {
                    out.push(format!("{name}/{sub}"));
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Runs a native sender with the archive file as its stdout, positioned at
/// the entry's data: the stream goes straight into the archive, without a
/// pipe, and the child's writes move the shared file offset, which ends where
/// the stream ends. Stops at a signal (the child is killed).
fn send_into_file(send: &Cmd, file: &File, progress: &Progress) -> io::Result<()> {
    let mut written = OffsetWatch::new(file)?;
    send.run_with_files(None, Some(file), || {
        interrupt::check_io()?;
        progress.add_bytes(written.advance()?);
        Ok(())
    })
    .map_err(ExecError::into_io)?;
    progress.add_bytes(written.advance()?);
    Ok(())
}

/// What feeds an encoder.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Feed {
    /// `zfs send` or `btrfs send` output, copied in large pieces.
    NativeStream,
    /// Our own tar dump, written header by header and file by file.
    TarDump,
}

/// Runs `fill` with a writer that compresses into the sink, stops at a signal
/// and counts bytes for the progress display.
fn compress_into(
    sink: &mut EntrySink<'_>,
    compression: Compression,
    feed: Feed,
    progress: &Progress,
    fill: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    let name = sink.name().to_string();
    let failed = || format!("cannot write archive entry '{name}'");
    let mut options = CompressOptions::default();
    // A tar dump keeps the default jobs: with 4 MiB ones its export peaked
    // at 67-69 MiB (2 MiB: 42 MiB), a native stream's at 45 MiB.
    if sink.has_file() && feed == Feed::NativeStream {
        options.zstd_job_size = compress::ZSTD_JOB_SIZE_TO_FILE;
    }
    let encoder = Encoder::new(compression, Interruptible(sink), &options).ctx(failed)?;
    let mut counted = progress.counting(encoder);
    failpoint::hit("export-in-stream");
    fill(&mut counted)?;
    counted
        .into_inner()
        .finish()
        .and_then(|w| w.0.flush())
        .ctx(failed)
}
