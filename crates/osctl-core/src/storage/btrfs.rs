//! btrfs: containers are subvolumes, subdatasets nested subvolumes, snapshots
//! read-only snapshots, and native streams come from `btrfs send`.
//!
//! Layout under the pool directory (which must be on btrfs):
//! - `ct/<ct>`: the root dataset, a subvolume holding `private/` (the rootfs);
//! - `ct/<ct>/<rel>`: subdataset `rel`, a nested subvolume holding its own
//!   `private/` (so `ct/<ct>/var/log` is nested in `ct/<ct>/var`, beside its
//!   `private/`);
//! - `snapshots/<ct>/<dataset>/<snap>`: read-only snapshots, one per dataset,
//!   `<dataset>` being `root` or `root.var.log` for `var/log` (dataset names
//!   never hold '.', so the encoding is one to one);
//! - `snapshots/<ct>/.recv/<dataset>/`: where `btrfs receive` puts the
//!   subvolumes an import's streams bring, until `finish_receive`.
//!
//! btrfs snapshots are not recursive: a nested subvolume shows up as an empty
//! directory in its parent's snapshot and is absent from its parent's stream.
//! Hence one snapshot and one stream per dataset, like zfs without `-R`.
//!
//! Snapshots are named `<snap>` in their dataset's directory because `btrfs
//! receive` names what it receives after the sent subvolume's last path
//! component: an import then finds each stream's subvolume under the snapshot
//! name the archive's `snapshots.yml` records.
//!
//! Streams from archives pass [`StreamGuard`] on their way to `btrfs receive`
//! (see [`super::btrfs_stream`] for why): a base stream must create its own
//! subvolume, an incremental one must be based on what the dataset's base
//! stream created, and neither may clone from anything else.
//!
//! Nested subvolumes are found with `btrfs subvolume list -o` (the kernel's
//! subvolume tree, no walk through the rootfs); every path it yields is checked
//! (plain names, no symlink on the way, a subvolume at the end) before it is
//! used, since users inside a container may create subvolumes with any name.
//! Subvolumes inside a `private/` are the container's files, not datasets;
//! snapshots would leave them out, so a container with one is not snapshotted
//! (older versions of osctl-rs kept subdatasets there).

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use super::btrfs_parse::{self, CompressionProperty};
use super::btrfs_stream::{self, StreamGuard, SubvolumeId};
use super::{
    refuse_symlinks, Backend, Dataset, NativeStreams, Receiver, SendRequest, SnapshotView, Storage,
    StreamCheck, TreeJudged, ROOTFS_DIR,
};
use crate::archive::meta::ArchiveFormat;
use crate::cmd::Cmd;
use crate::error::{Context, Error, Result};
use crate::filepolicy::FilePolicy;
use crate::fsutil;
use crate::names;

/// `f_type` of btrfs in statfs(2).
const BTRFS_SUPER_MAGIC: i64 = 0x9123683E;
/// The inode number of every subvolume's root directory.
const SUBVOLUME_ROOT_INO: u64 = 256;
/// Where the kernel tells the highest send stream version it writes.
const SEND_STREAM_VERSION: &str = "/sys/fs/btrfs/features/send_stream_version";
/// Send protocol 2 carries compressed extents as they are on disk.
const COMPRESSED_SEND_PROTOCOL: u32 = 2;
/// The directory, inside a container's snapshot directory, of received streams.
const RECEIVE_DIR: &str = ".recv";
/// How long a deletion waits for a `btrfs send` of the subvolume to end.
const SEND_WAIT: Duration = Duration::from_secs(5);

pub struct BtrfsStorage {
    /// `<pool>/ct`: one subvolume per container.
    ct_dir: PathBuf,
    /// `<pool>/snapshots`: one directory per container with snapshots.
    snap_dir: PathBuf,
    /// Whether btrfs-progs and the kernel can send compressed data, asked once.
    compressed_send: OnceLock<bool>,
    /// Streams received per (container, dataset), for the checks of the next.
    received: ReceivedMemory,
}

type ReceivedMemory = Arc<Mutex<HashMap<(String, String), Received>>>;

fn lock(memory: &ReceivedMemory) -> MutexGuard<'_, HashMap<(String, String), Received>> {
    // A panic elsewhere leaves the map whole: every change is one insert or removal.
    memory.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a dataset got so far in this process.
#[derive(Clone, Copy)]
enum Received {
    /// A base stream, which created this subvolume.
    Base(SubvolumeId),
    /// A base and an incremental stream: nothing more may come.
    Both,
}

impl BtrfsStorage {
    /// Opens the storage of a pool whose directory is on btrfs.
    pub fn open(pool_root: &Path) -> Result<BtrfsStorage> {
        if !pool_root.is_dir() {
            return Err(Error::not_found(format!(
                "pool directory {} not found",
                pool_root.display()
            )));
        }
        Self::check_location(pool_root)?;
        Ok(BtrfsStorage {
            ct_dir: pool_root.join("ct"),
            snap_dir: pool_root.join("snapshots"),
            compressed_send: OnceLock::new(),
            received: Arc::default(),
        })
    }

    /// Refuses a pool location that is not on btrfs; a location yet to be
    /// created is judged by its nearest existing ancestor, where it will be.
    pub fn check_location(location: &Path) -> Result<()> {
        let existing = location
            .ancestors()
            .find(|p| p.exists())
            .unwrap_or(Path::new("/"));
        let ftype = fs_type(existing)?;
        if ftype == BTRFS_SUPER_MAGIC {
            Ok(())
        } else {
            Err(Error::refused(format!(
                "{} is not on a btrfs file system (statfs type {ftype:#x}); \
                 mount a btrfs file system there or use another backend",
                location.display()
            )))
        }
    }

    fn ct_path(&self, ct: &str) -> PathBuf {
        self.ct_dir.join(ct)
    }

    /// `snapshots/<ct>/<dataset>`: the snapshots of one dataset.
    fn dataset_snap_dir(&self, ds: Dataset) -> PathBuf {
        self.snap_dir.join(ds.ct).join(encode_dataset(ds.rel))
    }

    /// `snapshots/<ct>/.recv/<dataset>`: where a dataset's streams are received.
    fn receive_dir(&self, ds: Dataset) -> PathBuf {
        self.snap_dir
            .join(ds.ct)
            .join(RECEIVE_DIR)
            .join(encode_dataset(ds.rel))
    }

    fn snapshot_path(&self, ds: Dataset, snap: &str) -> PathBuf {
        self.dataset_snap_dir(ds).join(snap)
    }

    /// A dataset's directory, checked to be reachable without a symlink (the
    /// directories between the container's and a subdataset's may come from
    /// an archive's streams).
    fn dataset_dir(&self, ds: Dataset) -> Result<PathBuf> {
        check_container_name(ds.ct)?;
        let top = self.ct_path(ds.ct);
        if ds.is_root() {
            return Ok(top);
        }
        names::subdataset(ds.rel)?;
        refuse_symlinks(&top, ds.rel)?;
        Ok(top.join(ds.rel))
    }

    /// An existing snapshot of a dataset.
    fn existing_snapshot(&self, ds: Dataset, snap: &str) -> Result<PathBuf> {
        check_dataset(ds)?;
        check_snapshot_name(snap)?;
        let path = self.snapshot_path(ds, snap);
        if is_subvolume(&path)? {
            Ok(path)
        } else {
            Err(Error::not_found(format!(
                "snapshot '{snap}' of {} not found",
                ds.label()
            )))
        }
    }

    fn create_root(&self, ct: &str) -> Result<()> {
        let dir = self.ct_path(ct);
        if fs::symlink_metadata(&dir).is_ok() {
            return Err(Error::exists(format!(
                "{} already exists",
                Dataset::root(ct).label()
            )));
        }
        fsutil::create_dir_all(&self.ct_dir)?;
        create_subvolume(&dir)?;
        let built = fsutil::seal_container_dir(&dir).and_then(|()| {
            let rootfs = dir.join(ROOTFS_DIR);
            fs::create_dir(&rootfs).ctx(|| format!("cannot create {}", rootfs.display()))?;
            fsutil::set_mode(&rootfs, 0o755)
        });
        if built.is_err() {
            let _ = remove_tree(&dir);
        }
        built
    }

    fn create_subdataset(&self, ds: Dataset) -> Result<()> {
        let parent = ds.parent();
        let parent_dir = self.dataset_dir(parent)?;
        if !is_subvolume(&parent_dir)? {
            return Err(Error::not_found(format!("{} not found", parent.label())));
        }
        let dir = self.dataset_dir(ds)?;
        if is_subvolume(&dir)? {
            return Err(Error::exists(format!("{} already exists", ds.label())));
        }
        // The parent's snapshot shows a nested subvolume as an empty
        // directory: an import of a dataset deleted since leaves one.
        take_empty_dir(&dir, &ds.label())?;
        create_subvolume(&dir)?;
        let rootfs = dir.join(ROOTFS_DIR);
        let built = fs::create_dir(&rootfs)
            .ctx(|| format!("cannot create {}", rootfs.display()))
            .and_then(|()| fsutil::set_mode(&rootfs, 0o755));
        if built.is_err() {
            let _ = remove_tree(&dir);
        }
        built
    }

    /// The container's subdatasets (relative names, sorted) and the
    /// subvolumes inside a `private/`, which are no datasets.
    fn nested_subvolumes(&self, ct: &str) -> Result<(Vec<String>, Vec<PathBuf>)> {
        let root = self.dataset_dir(Dataset::root(ct))?;
        if !is_subvolume(&root)? {
            return Ok((Vec::new(), Vec::new()));
        }
        let (mut datasets, mut inside) = (Vec::new(), Vec::new());
        for sub in subvolume_descendants(&root)? {
            let Ok(rel) = sub.strip_prefix(&root) else {
                continue;
            };
            let rel = rel.to_string_lossy().into_owned();
            if rel.split('/').any(|part| part == ROOTFS_DIR) {
                inside.push(sub);
                continue;
            }
            names::subdataset(&rel).map_err(|_| {
                Error::refused(format!(
                    "container '{ct}': nested subvolume {} is not a valid dataset name \
                     (names of a-z, 0-9, '_' and '-' separated by '/'); rename or delete it",
                    sub.display()
                ))
            })?;
            datasets.push(rel);
        }
        // A parent's name is a prefix of its children's: sorting puts it first.
        datasets.sort();
        Ok((datasets, inside))
    }

    /// Creates a directory below `snapshots/`, which only root may enter:
    /// snapshots hold whole root file systems, setuid programs included.
    fn create_snapshot_dir(&self, dir: &Path) -> Result<()> {
        if !self.snap_dir.exists() {
            fsutil::create_dir_all(&self.snap_dir)?;
            fsutil::set_mode(&self.snap_dir, 0o700)?;
        }
        fsutil::create_dir_all(dir)
    }

    /// Names of the entries of the container's snapshot directory that hold a
    /// dataset's snapshots (encoded names, the receive directory left out).
    fn snapshot_dataset_dirs(&self, ct: &str) -> Result<Vec<String>> {
        Ok(list_dir(&self.snap_dir.join(ct))?
            .into_iter()
            .filter(|name| name != RECEIVE_DIR)
            .collect())
    }

    /// Removes `snapshots/<ct>/<dataset>`, `.recv` and `snapshots/<ct>` when empty.
    fn tidy_snapshot_dirs(&self, ct: &str) {
        let ct_snaps = self.snap_dir.join(ct);
        for name in list_dir(&ct_snaps).unwrap_or_default() {
            let _ = fs::remove_dir(ct_snaps.join(name));
        }
        let _ = fs::remove_dir(&ct_snaps);
    }

    /// Whether btrfs-progs offers `--compressed-data` and the kernel writes
    /// send protocol 2.
    fn compressed_send_supported(&self) -> bool {
        *self.compressed_send.get_or_init(|| {
            let progs = Cmd::new("btrfs")
                .args(["send", "--help"])
                .run()
                .is_ok_and(|help| btrfs_parse::send_offers_compressed_data(&help));
            let kernel = fs::read_to_string(SEND_STREAM_VERSION)
                .ok()
                .and_then(|text| btrfs_parse::parse_send_stream_version(&text).ok())
                .is_some_and(|v| v >= COMPRESSED_SEND_PROTOCOL);
            progs && kernel
        })
    }

    /// The check for the next stream of a dataset: a base stream first, then
    /// one incremental stream based on what the base created.
    fn stream_guard(&self, ds: Dataset, policy: &FilePolicy) -> Result<StreamGuard> {
        let label = ds.label();
        let so_far = lock(&self.received).get(&memory_key(ds)).copied();
        // finish_receive and place_round seal the root subvolume's top.
        let sealed = |guard: StreamGuard| match ds.is_root() {
            true => guard.top_resealed(),
            false => guard,
        };
        match so_far {
            None => Ok(sealed(StreamGuard::base(label, *policy))),
            Some(Received::Base(parent)) => {
                self.check_parent_is_unique(&parent, ds)?;
                Ok(sealed(StreamGuard::incremental(label, parent, *policy)))
            }
            Some(Received::Both) => Err(Error::archive(format!(
                "{label}: a third stream (a base and an incremental stream were received)"
            ))),
        }
    }

    /// `btrfs receive` finds an incremental stream's parent and clone sources
    /// by received UUID and takes the first subvolume it finds: the one our
    /// base stream created must be the only one on the file system with its
    /// UUID, or an archive that names the received UUID of someone else's
    /// subvolume in its base stream would get that subvolume as its parent.
    fn check_parent_is_unique(&self, parent: &SubvolumeId, ds: Dataset) -> Result<()> {
        let label = ds.label();
        let listed = Cmd::new("btrfs")
            .args(["subvolume", "list", "-R"])
            .arg(&self.snap_dir)
            .run()
            .ctx(|| format!("cannot list the subvolumes of the file system of {label}"))?;
        let holders = btrfs_stream::received_uuid_holders(&listed, &parent.uuid)?;
        // Ours is `snapshots/<ct>/.recv/<dataset>/<snapshot>` (paths are
        // relative to the file system's top level, which may be above the pool).
        let ours = Path::new(ds.ct)
            .join(RECEIVE_DIR)
            .join(encode_dataset(ds.rel));
        let is_ours = |path: &String| {
            Path::new(path)
                .parent()
                .is_some_and(|dir| dir.ends_with(&ours))
        };
        match holders.as_slice() {
            [only] if is_ours(only) => Ok(()),
            _ => Err(Error::refused(format!(
                "{label}: the base stream's subvolume {parent} is not the only one with its UUID on the \
                 file system (received UUID of: {}), so `btrfs receive` could take another one as the \
                 incremental stream's parent; is the same archive being imported twice at once?",
                holders.join(", ")
            ))),
        }
    }

    /// A round received completely (read-only, with a received UUID): what
    /// its stream created, as the guard of the next round names its parent.
    fn complete_round(&self, ds: Dataset, snap: &str) -> Result<SubvolumeId> {
        check_dataset(ds)?;
        check_snapshot_name(snap)?;
        let label = ds.label();
        let path = self.receive_dir(ds).join(snap);
        let incomplete = || {
            Error::archive(format!(
                "{label}: round '{snap}' was not received completely"
            ))
        };
        if !is_subvolume(&path)? {
            return Err(incomplete());
        }
        let show = show_subvolume(&path)?;
        let uuid = match (&show.received_uuid, show.readonly) {
            (Some(uuid), true) => btrfs_stream::parse_uuid(uuid).ok_or_else(|| {
                Error::invalid(format!(
                    "{label}: round '{snap}' has received UUID '{uuid}'"
                ))
            })?,
            _ => return Err(incomplete()),
        };
        Ok(SubvolumeId {
            uuid,
            ctransid: show.send_transid,
        })
    }

    /// Forgets the streams of a dataset and of the datasets below it.
    fn forget_received(&self, ds: Dataset) {
        let children = format!("{}/", ds.rel);
        lock(&self.received).retain(|(c, r), _| {
            !(c == ds.ct && (ds.is_root() || r == ds.rel || r.starts_with(&children)))
        });
    }
}

/// A receive's check: the stream guard, and where to remember what it let in.
struct GuardedReceive {
    guard: StreamGuard,
    memory: ReceivedMemory,
    key: (String, String),
}

impl StreamCheck for GuardedReceive {
    fn check(&mut self, bytes: &[u8]) -> Result<()> {
        self.guard.check(bytes)
    }

    /// The guard judged every command that sets what the file policy
    /// looks at (`mknod`, `chown`, `set_xattr`; files are created as
    /// root), so the received tree needs no walk.
    fn finish(&mut self) -> Result<TreeJudged> {
        let created = self.guard.finish()?;
        let now = match self.guard.parent() {
            None => Received::Base(created),
            Some(_) => Received::Both,
        };
        lock(&self.memory).insert(self.key.clone(), now);
        Ok(TreeJudged::ByStream)
    }
}

impl Storage for BtrfsStorage {
    fn backend(&self) -> Backend {
        Backend::Btrfs
    }

    fn native(&self) -> Option<&dyn NativeStreams> {
        Some(self)
    }

    fn create(&self, ds: Dataset) -> Result<()> {
        check_dataset(ds)?;
        if ds.is_root() {
            self.create_root(ds.ct)
        } else {
            self.create_subdataset(ds)
        }
    }

    fn exists(&self, ct: &str) -> Result<bool> {
        check_container_name(ct)?;
        Ok(fs::symlink_metadata(self.ct_path(ct)).is_ok())
    }

    fn subdatasets(&self, ct: &str) -> Result<Vec<String>> {
        Ok(self.nested_subvolumes(ct)?.0)
    }

    fn destroy(&self, ds: Dataset) -> Result<()> {
        let ct = ds.ct;
        let dir = self.dataset_dir(ds)?;
        self.forget_received(ds);
        let label = ds.label();
        remove_tree(&dir).ctx(|| format!("cannot destroy {label}"))?;
        if ds.is_root() {
            return remove_tree(&self.snap_dir.join(ct))
                .ctx(|| format!("cannot destroy the snapshots of {label}"));
        }
        // The dataset's and its children's snapshots and received streams.
        let own = encode_dataset(ds.rel);
        let children = format!("{own}.");
        for base in [
            self.snap_dir.join(ct),
            self.snap_dir.join(ct).join(RECEIVE_DIR),
        ] {
            for name in list_dir(&base)? {
                if name == own || name.starts_with(&children) {
                    remove_tree(&base.join(&name))
                        .ctx(|| format!("cannot destroy the snapshots of {label}"))?;
                }
            }
        }
        self.tidy_snapshot_dirs(ct);
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        check_container_name(from)?;
        check_container_name(to)?;
        let (src, dst) = (self.ct_path(from), self.ct_path(to));
        let (src_snaps, dst_snaps) = (self.snap_dir.join(from), self.snap_dir.join(to));
        for taken in [&dst, &dst_snaps] {
            if fs::symlink_metadata(taken).is_ok() {
                return Err(Error::exists(format!(
                    "cannot rename container '{from}' to '{to}': {} already exists",
                    taken.display()
                )));
            }
        }
        fs::rename(&src, &dst)
            .ctx(|| format!("cannot rename {} to {}", src.display(), dst.display()))?;
        fsutil::seal_container_dir(&dst)?;
        if src_snaps.exists() {
            if let Err(e) = fs::rename(&src_snaps, &dst_snaps) {
                let _ = fs::rename(&dst, &src);
                return Err(e).ctx(|| {
                    format!(
                        "cannot rename {} to {}",
                        src_snaps.display(),
                        dst_snaps.display()
                    )
                });
            }
            fsutil::sync_dir(&self.snap_dir)?;
        }
        fsutil::sync_dir(&self.ct_dir)
    }

    fn path(&self, ds: Dataset) -> PathBuf {
        if ds.is_root() {
            self.ct_path(ds.ct)
        } else {
            self.ct_path(ds.ct).join(ds.rel)
        }
    }

    fn containers(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for name in list_dir(&self.ct_dir)? {
            if self.ct_dir.join(&name).is_dir() {
                names.push(name);
            }
        }
        // A half-received import may exist only as received streams.
        for name in list_dir(&self.snap_dir)? {
            if !names.contains(&name) && check_container_name(&name).is_ok() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn snapshot(&self, ct: &str, snap: &str) -> Result<()> {
        check_snapshot_name(snap)?;
        let root = self.dataset_dir(Dataset::root(ct))?;
        if !is_subvolume(&root)? {
            return Err(Error::not_found(format!(
                "{} not found",
                Dataset::root(ct).label()
            )));
        }
        if fs::symlink_metadata(self.snapshot_path(Dataset::root(ct), snap)).is_ok() {
            return Err(Error::exists(format!(
                "snapshot '{snap}' of container '{ct}' already exists"
            )));
        }
        let (subdatasets, inside) = self.nested_subvolumes(ct)?;
        if let Some(sub) = inside.first() {
            return Err(Error::refused(format!(
                "container '{ct}': subvolume {} is inside a root file system, where a snapshot \
                 would show it empty; move its files into a dataset (`osctl ct dataset new`) and \
                 delete the subvolume (older osctl-rs versions kept datasets there: export such a \
                 container with --format tar using the version that made it)",
                sub.display()
            )));
        }
        let mut datasets = vec![String::new()];
        datasets.extend(subdatasets);
        let mut taken = Vec::new();
        for rel in &datasets {
            let ds = Dataset::new(ct, rel);
            let made = self.dataset_dir(ds).and_then(|source| {
                let dir = self.dataset_snap_dir(ds);
                self.create_snapshot_dir(&dir)?;
                let dest = dir.join(snap);
                Cmd::new("btrfs")
                    .args(["subvolume", "snapshot", "-r"])
                    .arg(&source)
                    .arg(&dest)
                    .run()
                    .ctx(|| format!("cannot snapshot {}", ds.label()))?;
                Ok(dest)
            });
            match made {
                Ok(dest) => taken.push(dest),
                Err(e) => {
                    // All datasets or none.
                    for dest in taken.iter().rev() {
                        let _ = remove_tree(dest);
                    }
                    self.tidy_snapshot_dirs(ct);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn destroy_snapshot(&self, ct: &str, snap: &str) -> Result<()> {
        check_container_name(ct)?;
        check_snapshot_name(snap)?;
        let mut first_error = None;
        // Every dataset that has snapshots, including subdatasets destroyed since.
        for dataset in self.snapshot_dataset_dirs(ct)? {
            let path = self.snap_dir.join(ct).join(&dataset).join(snap);
            if let Err(e) = remove_tree(&path) {
                first_error.get_or_insert(e.context(format!(
                    "cannot destroy snapshot '{snap}' of container '{ct}'"
                )));
            }
        }
        self.tidy_snapshot_dirs(ct);
        first_error.map_or(Ok(()), Err)
    }

    fn snapshots(&self, ct: &str) -> Result<Vec<String>> {
        check_container_name(ct)?;
        list_dir(&self.dataset_snap_dir(Dataset::root(ct)))
    }

    fn snapshot_view(&self, ds: Dataset, snap: &str) -> Result<SnapshotView> {
        // Read-only snapshots are directories already: nothing to set up.
        Ok(SnapshotView::new(self.existing_snapshot(ds, snap)?))
    }
}

impl NativeStreams for BtrfsStorage {
    fn format(&self) -> ArchiveFormat {
        ArchiveFormat::Btrfs
    }

    /// The snapshot's tree for a full stream: btrfs has no cheap count of a
    /// subvolume's bytes without quotas, nor of an incremental stream's.
    fn send_estimate(&self, ds: Dataset, request: &SendRequest) -> Option<u64> {
        if request.from.is_some() {
            return None;
        }
        let dir = self.existing_snapshot(ds, request.snapshot).ok()?;
        Some(crate::fsutil::tree_bytes(&dir))
    }

    /// True when btrfs-progs offers `--compressed-data`, the kernel writes send
    /// protocol 2, and new data of the dataset is compressed: by its rootfs's
    /// (root) or its own (subdataset) `compression` property, or else by the
    /// mount's `compress`/`compress-force` option. Existing data written
    /// before compression was turned on is sent as it is, uncompressed.
    fn can_send_compressed(&self, ds: Dataset) -> Result<bool> {
        if !self.compressed_send_supported() {
            return Ok(false);
        }
        let data_dir = self.dataset_dir(ds)?.join(ROOTFS_DIR);
        let property = Cmd::new("btrfs")
            .args(["property", "get", "-t", "inode"])
            .arg(&data_dir)
            .arg("compression")
            .run()
            .ctx(|| format!("cannot read the compression of {}", ds.label()))?;
        match btrfs_parse::parse_compression_property(&property) {
            CompressionProperty::Algorithm(_) => Ok(true),
            CompressionProperty::Disabled => Ok(false),
            CompressionProperty::Unset => {
                let real = fs::canonicalize(&data_dir)
                    .ctx(|| format!("cannot resolve {}", data_dir.display()))?;
                let mountinfo = fs::read_to_string("/proc/self/mountinfo")
                    .ctx(|| "cannot read /proc/self/mountinfo")?;
                Ok(btrfs_parse::mount_compression(&mountinfo, &real).is_some())
            }
        }
    }

    /// `btrfs send [--proto 2 --compressed-data] [-p FROM] SNAP`. Protocol 1
    /// unless compressed, so that older receivers can read the stream.
    fn send_cmd(&self, ds: Dataset, request: &SendRequest) -> Result<Cmd> {
        let path = self.existing_snapshot(ds, request.snapshot)?;
        let mut cmd = Cmd::new("btrfs").arg("send");
        if request.compressed {
            cmd = cmd.args(["--proto", "2", "--compressed-data"]);
        }
        if let Some(from) = request.from {
            cmd = cmd.arg("-p").arg(self.existing_snapshot(ds, from)?);
        }
        Ok(cmd.arg(&path))
    }

    /// `btrfs receive -C` (chroot) into the dataset's receive directory,
    /// behind a [`StreamGuard`]: the chroot keeps the stream's own paths
    /// inside that directory, the guard keeps it from naming any subvolume but
    /// its own and its base (which `btrfs receive` would look up across the
    /// whole file system, chroot or not), and from making device nodes,
    /// owners and attributes that `policy` refuses.
    fn receive(&self, ds: Dataset, policy: &FilePolicy) -> Result<Receiver> {
        check_dataset(ds)?;
        let guard = self.stream_guard(ds, policy)?;
        let dir = self.receive_dir(ds);
        self.create_snapshot_dir(&dir)?;
        let writer = Cmd::new("btrfs")
            .args(["receive", "-C"])
            .arg(&dir)
            .spawn_writer()
            .ctx(|| format!("cannot receive {}", ds.label()))?;
        Ok(Receiver::checked(
            writer,
            Box::new(GuardedReceive {
                guard,
                memory: Arc::clone(&self.received),
                key: memory_key(ds),
            }),
        ))
    }

    /// Makes the newest received snapshot the dataset (made writable and moved
    /// to the dataset's place), then deletes everything else the streams brought.
    /// The root dataset comes first, then parents before children (a plain
    /// directory made for a child would stand in its parent's way).
    fn finish_receive(&self, ds: Dataset, snapshots: &[String]) -> Result<()> {
        let (ct, rel) = (ds.ct, ds.rel);
        let label = ds.label();
        let Some(newest) = snapshots.first() else {
            return Err(Error::invalid(format!(
                "{label}: no snapshot names to finish the receive with"
            )));
        };
        for snap in snapshots {
            check_snapshot_name(snap)?;
        }
        let recv_dir = self.receive_dir(ds);
        let received = recv_dir.join(newest);
        if !is_subvolume(&received)? {
            return Err(Error::archive(format!(
                "{label}: the received streams hold no snapshot '{newest}'"
            )));
        }
        // A stream cut short leaves a writable subvolume without a received
        // UUID; `btrfs receive` sets both only at the stream's end.
        let show = show_subvolume(&received)?;
        if !show.readonly || show.received_uuid.is_none() {
            return Err(Error::archive(format!(
                "{label}: snapshot '{newest}' was not received completely"
            )));
        }
        let dir = self.dataset_dir(ds)?;
        if !rel.is_empty() && !is_subvolume(&self.ct_path(ct))? {
            return Err(Error::invalid(format!(
                "{label}: the container's root dataset must be received first"
            )));
        }
        if rel.is_empty() {
            fsutil::create_dir_all(&self.ct_dir)?;
            if fs::symlink_metadata(&dir).is_ok() {
                return Err(Error::exists(format!("{label} already exists")));
            }
        }
        let place = || put_in_place(&received, &dir, &label);
        if rel.is_empty() {
            place()?;
        } else {
            // The parent's stream has no entry where a nested subvolume was
            // (btrfs sends none); directories above it may be plain ones.
            let top = self.ct_path(ct);
            let parent = dir.parent().unwrap_or(&top);
            fsutil::create_dir_all(parent)?;
            // The parent directory's times are part of the received tree.
            fsutil::keeping_times(parent, || {
                take_empty_dir(&dir, &label)?;
                place()
            })?;
        }
        if rel.is_empty() {
            // The stream's subvolume root is the container's directory.
            fsutil::seal_container_dir(&dir)?;
        }
        remove_tree(&recv_dir)
            .ctx(|| format!("cannot delete the received snapshots of {label}"))?;
        let _ = fs::remove_dir(self.snap_dir.join(ct).join(RECEIVE_DIR));
        self.tidy_snapshot_dirs(ct);
        lock(&self.received).remove(&memory_key(ds));
        Ok(())
    }

    /// Rounds are received next to each other in the dataset's receive
    /// directory, read-only, each the parent of the next; the guard of an
    /// incremental round takes its parent from the base round's received
    /// UUID and send transid (what the base stream created, in whichever
    /// process received it).
    fn receive_round(
        &self,
        ds: Dataset,
        snap: &str,
        base: Option<&str>,
        policy: &FilePolicy,
    ) -> Result<Receiver> {
        check_dataset(ds)?;
        check_snapshot_name(snap)?;
        self.forget_received(ds);
        remove_tree(&self.receive_dir(ds).join(snap)).ctx(|| {
            format!(
                "cannot delete an earlier attempt at round '{snap}' of {}",
                ds.label()
            )
        })?;
        if let Some(base) = base {
            let parent = self.complete_round(ds, base)?;
            lock(&self.received).insert(memory_key(ds), Received::Base(parent));
        }
        self.receive(ds, policy)
    }

    fn received_round(&self, ds: Dataset, snap: &str, base: Option<&str>) -> Result<PathBuf> {
        self.complete_round(ds, snap)?;
        let dir = self.receive_dir(ds);
        let others: Vec<String> = list_dir(&dir)?
            .into_iter()
            .filter(|name| name != snap && Some(name.as_str()) != base)
            .collect();
        if !others.is_empty() {
            return Err(Error::archive(format!(
                "{}: the round's stream made {} instead of '{snap}'",
                ds.label(),
                others.join(", ")
            )));
        }
        Ok(dir.join(snap))
    }

    /// Deletes what the stream made: the received subvolume (and anything
    /// else in the receive directory but the base).
    fn drop_round(&self, ds: Dataset, snap: &str, base: Option<&str>) -> Result<()> {
        check_dataset(ds)?;
        check_snapshot_name(snap)?;
        let dir = self.receive_dir(ds);
        for name in list_dir(&dir)? {
            if Some(name.as_str()) != base {
                remove_tree(&dir.join(&name))
                    .ctx(|| format!("cannot delete round '{name}' of {}", ds.label()))?;
            }
        }
        Ok(())
    }

    fn forget_round(&self, ds: Dataset, snap: &str) -> Result<()> {
        check_dataset(ds)?;
        check_snapshot_name(snap)?;
        let dir = self.receive_dir(ds);
        remove_tree(&dir.join(snap))
            .ctx(|| format!("cannot delete round '{snap}' of {}", ds.label()))?;
        if list_dir(&dir)?.is_empty() {
            let _ = fs::remove_dir(&dir);
            let _ = fs::remove_dir(self.snap_dir.join(ds.ct).join(RECEIVE_DIR));
            self.tidy_snapshot_dirs(ds.ct);
        }
        Ok(())
    }

    /// A writable snapshot of the round replaces the dataset's subvolume; the
    /// round itself stays, read-only, as the parent of a round that may follow.
    fn place_round(&self, ds: Dataset, snap: &str) -> Result<()> {
        if !ds.is_root() {
            return Err(Error::invalid(format!(
                "{}: rounds are received for root datasets only",
                ds.label()
            )));
        }
        self.complete_round(ds, snap)?;
        let dir = self.dataset_dir(ds)?;
        let label = ds.label();
        remove_tree(&dir).ctx(|| format!("cannot replace {label}"))?;
        Cmd::new("btrfs")
            .args(["subvolume", "snapshot"])
            .arg(self.receive_dir(ds).join(snap))
            .arg(&dir)
            .run()
            .ctx(|| format!("cannot put round '{snap}' of {label} in place"))?;
        fsutil::seal_container_dir(&dir)
    }
}

/// Moves the received read-only subvolume `received` to `dir`, writable.
/// Clearing the read-only flag with `-f` also clears its received UUID, so
/// that no later stream takes it for a parent; this is tens of milliseconds
/// where a writable snapshot and the deletion of the received one took
/// hundreds (docs/performance.md). btrfs-progs before 5.14 lack `-f`: those
/// fall back to the snapshot.
fn put_in_place(received: &Path, dir: &Path, label: &str) -> Result<()> {
    let made_writable = Cmd::new("btrfs")
        .args(["property", "set", "-f", "-ts"])
        .arg(received)
        .args(["ro", "false"])
        .run();
    if made_writable.is_ok() {
        return fs::rename(received, dir)
            .ctx(|| format!("cannot put the received {label} in place"));
    }
    Cmd::new("btrfs")
        .args(["subvolume", "snapshot"])
        .arg(received)
        .arg(dir)
        .run()
        .map(drop)
        .ctx(|| format!("cannot put the received {label} in place"))
}

/// The one-component name of a dataset's snapshot directory: `root` for the
/// root dataset, `root.var.log` for `var/log`.
fn encode_dataset(rel: &str) -> String {
    if rel.is_empty() {
        "root".into()
    } else {
        format!("root.{}", rel.replace('/', "."))
    }
}

/// Where the streams received into a dataset are remembered.
fn memory_key(ds: Dataset) -> (String, String) {
    (ds.ct.to_string(), ds.rel.to_string())
}

/// Checks the names of a dataset that become path components.
fn check_dataset(ds: Dataset) -> Result<()> {
    check_container_name(ds.ct)?;
    if !ds.is_root() {
        names::subdataset(ds.rel)?;
    }
    Ok(())
}

/// Container ids and staging names become one path component.
fn check_container_name(ct: &str) -> Result<()> {
    check_component("container name", ct)
}

/// Snapshot names become one path component; a leading '.' is kept for our
/// own directories (`.recv`).
fn check_snapshot_name(snap: &str) -> Result<()> {
    check_component("snapshot name", snap)
}

fn check_component(kind: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && !name.contains(['/', '\0']);
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid {kind} '{}'",
            name.escape_debug()
        )))
    }
}

fn fs_type(path: &Path) -> Result<i64> {
    let st = rustix::fs::statfs(path)
        .map_err(std::io::Error::from)
        .ctx(|| format!("cannot stat the file system of {}", path.display()))?;
    Ok(st.f_type as i64)
}

/// Whether `path` is the root directory of a subvolume (inode 256 on btrfs;
/// other file systems may have an inode 256 too). A symlink is not.
fn is_subvolume(path: &Path) -> Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() && meta.ino() == SUBVOLUME_ROOT_INO => {
            Ok(fs_type(path)? == BTRFS_SUPER_MAGIC)
        }
        Ok(_) => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).ctx(|| format!("cannot stat {}", path.display())),
    }
}

/// Removes an empty directory standing where a subvolume goes and returns
/// its metadata; nothing there is fine; anything else is refused.
fn take_empty_dir(dir: &Path, label: &str) -> Result<Option<fs::Metadata>> {
    let meta = match fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).ctx(|| format!("cannot stat {}", dir.display())),
    };
    let empty_dir = meta.is_dir()
        && !is_subvolume(dir)?
        && fs::read_dir(dir)
            .ctx(|| format!("cannot read {}", dir.display()))?
            .next()
            .is_none();
    if !empty_dir {
        return Err(Error::exists(format!(
            "{label}: {} already exists and is not an empty directory",
            dir.display()
        )));
    }
    fs::remove_dir(dir).ctx(|| format!("cannot remove {}", dir.display()))?;
    Ok(Some(meta))
}

fn create_subvolume(path: &Path) -> Result<()> {
    Cmd::new("btrfs")
        .args(["subvolume", "create"])
        .arg(path)
        .run()
        .map(drop)
        .ctx(|| format!("cannot create subvolume {}", path.display()))
}

fn show_subvolume(path: &Path) -> Result<btrfs_parse::SubvolumeShow> {
    let out = Cmd::new("btrfs")
        .args(["subvolume", "show"])
        .arg(path)
        .run()
        .ctx(|| format!("cannot inspect subvolume {}", path.display()))?;
    btrfs_parse::parse_subvolume_show(&out)
        .map_err(|e| super::unexpected_output(format!("subvolume {}", path.display()), e))
}

/// Every subvolume nested in the subvolume at `root`, parents before children.
fn subvolume_descendants(root: &Path) -> Result<Vec<PathBuf>> {
    let top_path = show_subvolume(root)?.path;
    let mut found = Vec::new();
    collect_descendants(root, &top_path, &mut found)?;
    Ok(found)
}

/// `dir` is a subvolume whose path from the top-level subvolume is `top_path`.
fn collect_descendants(dir: &Path, top_path: &str, found: &mut Vec<PathBuf>) -> Result<()> {
    let listed = Cmd::new("btrfs")
        .args(["subvolume", "list", "-o"])
        .arg(dir)
        .run()
        .ctx(|| format!("cannot list the subvolumes in {}", dir.display()))?;
    let listed = btrfs_parse::parse_subvolume_list(&listed)
        .map_err(|e| super::unexpected_output(format!("subvolumes in {}", dir.display()), e))?;
    for sub in listed {
        let unexpected = || {
            Error::refused(format!(
                "subvolume '{}' listed in {} is not a subvolume below it",
                sub.path.escape_debug(),
                dir.display()
            ))
        };
        let rel = btrfs_parse::path_below(top_path, &sub.path).ok_or_else(unexpected)?;
        refuse_symlinks(dir, rel)?;
        let child = dir.join(rel);
        if !is_subvolume(&child)? {
            return Err(unexpected());
        }
        found.push(child.clone());
        collect_descendants(&child, &sub.path, found)?;
    }
    Ok(())
}

/// Removes whatever is at `path`: a subvolume with the subvolumes nested in
/// it (children first), or a plain directory tree that may hold subvolumes
/// (snapshot and receive directories), or a file. Nothing there is fine.
fn remove_tree(path: &Path) -> Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).ctx(|| format!("cannot stat {}", path.display())),
    };
    if !meta.is_dir() {
        return fsutil::remove_file_if_exists(path);
    }
    if is_subvolume(path)? {
        return delete_subvolume_tree(path);
    }
    for name in dir_entries(path)? {
        remove_tree(&path.join(name))?;
    }
    match fs::remove_dir(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).ctx(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Deletes a subvolume and the ones nested in it, children first. btrfs
/// refuses (EPERM) while a `btrfs send` of it runs; a sender of a killed
/// export dies with it, but not at once: that is waited out for a while.
fn delete_subvolume_tree(path: &Path) -> Result<()> {
    let mut delay = Duration::from_millis(50);
    loop {
        let mut doomed = subvolume_descendants(path)?;
        doomed.reverse();
        doomed.push(path.to_path_buf());
        let deleted = Cmd::new("btrfs")
            .args(["subvolume", "delete"])
            .args(&doomed)
            .run();
        match deleted {
            Err(e) if e.stderr().contains("send may be in progress") && delay < SEND_WAIT => {
                std::thread::sleep(delay);
                delay *= 2;
            }
            done => {
                return done
                    .map(drop)
                    .ctx(|| format!("cannot delete subvolume {}", path.display()))
            }
        }
    }
}

/// Entry names of a directory, sorted; a missing directory has none.
fn dir_entries(dir: &Path) -> Result<Vec<OsString>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).ctx(|| format!("cannot list {}", dir.display())),
    };
    let mut names = Vec::new();
    for entry in entries {
        names.push(
            entry
                .ctx(|| format!("cannot list {}", dir.display()))?
                .file_name(),
        );
    }
    names.sort();
    Ok(names)
}

/// [`dir_entries`] for directories whose entries we named ourselves.
fn list_dir(dir: &Path) -> Result<Vec<String>> {
    Ok(dir_entries(dir)?
        .into_iter()
        .map(|name| name.to_string_lossy().into_owned())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn dataset_encoding_is_one_component_and_one_to_one() {
        assert_eq!(encode_dataset(""), "root");
        assert_eq!(encode_dataset("var"), "root.var");
        assert_eq!(encode_dataset("var/log"), "root.var.log");
        assert_eq!(encode_dataset("root"), "root.root");
        assert_ne!(encode_dataset("var-log"), encode_dataset("var/log"));
    }

    #[test]
    fn parents() {
        let parent = |rel| Dataset::new("c1", rel).parent().rel;
        assert_eq!(parent("var"), "");
        assert_eq!(parent("var/log"), "var");
        assert_eq!(parent("a/b/c"), "a/b");
        assert_eq!(Dataset::root("c1").parent(), Dataset::root("c1"));
        assert_eq!(
            Dataset::new("c1", "var").label(),
            "dataset 'var' of container 'c1'"
        );
    }

    #[test]
    fn names_that_become_path_components() {
        for good in ["c1", "c1.importing", "osctl-base-1700000000"] {
            assert!(check_component("x", good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", ".recv", "a/b", "a\0b", &"x".repeat(256)] {
            assert!(check_component("x", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn location_off_btrfs_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        if fs_type(dir.path()).unwrap() == BTRFS_SUPER_MAGIC {
            eprintln!("SKIP: the temporary directory is on btrfs");
            return;
        }
        let err = BtrfsStorage::open(dir.path()).err().unwrap();
        assert!(err.kind() == ErrorKind::Refused, "{err}");
        assert!(err.to_string().contains("not on a btrfs"), "{err}");
        let err = BtrfsStorage::check_location(&dir.path().join("a/b")).unwrap_err();
        assert!(err.to_string().contains("not on a btrfs"), "{err}");
    }
}
