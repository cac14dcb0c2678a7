//! ZFS pools, through the `zfs` command of OpenZFS 2.x or zfs-fuse.
//!
//! A pool lives in a dataset `PATH` of the user's choice, marked as ours by the
//! user property [`POOL_PROPERTY`] so that it is recognised again after a reboot
//! or a `zpool import`. Below it:
//!
//! ```text
//! PATH                 mounted at ROOT: the pool root, holds state/
//! PATH/conf            ROOT/conf         configs
//! PATH/log             ROOT/log          container logs
//! PATH/ct              ROOT/ct
//! PATH/ct/<id>         ROOT/ct/<id>      a container's root dataset, holds private/
//! PATH/ct/<id>/<rel>   ROOT/ct/<id>/<rel>   its subdatasets, each with its private/
//! PATH/views           ROOT/views        read-only clones of snapshots (zfs-fuse)
//! ```
//!
//! Every dataset inherits its mountpoint, so that renaming a container or
//! moving the pool root changes no property. Mounting a container puts
//! mountpoints right where they are not, and refuses a symlink on the way to
//! one (the directories there come from archives' streams). Older versions
//! of osctl-rs mounted subdatasets inside the root file system
//! (`private/<rel>`, files at the dataset's top); such containers are refused
//! with a message, not rearranged.
//!
//! Every property is read with `zfs get -Hp` and parsed in [`super::zfs_parse`].

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use super::zfs_parse::{self, Dataset as Listed, Mountpoint, ZfsFeatures, GET_COLUMNS};
use super::zfs_stream::ZfsStreamJudge;
use super::{
    refuse_symlinks, Backend, Dataset, NativeStreams, Receiver, SendRequest, SnapshotView, Storage,
    StreamCheck, ROOTFS_DIR,
};
use crate::archive::meta::ArchiveFormat;
use crate::cmd::{Cmd, ExecError};
use crate::error::{Context, Error, ErrorKind, Result};
use crate::filepolicy::FilePolicy;
use crate::fsutil;

/// The user property marking a pool's dataset; its value is the layout version.
pub const POOL_PROPERTY: &str = "org.osctl-rs:pool";
const LAYOUT_VERSION: &str = "1";

/// Child datasets of the pool dataset, each mounted at `ROOT/<name>`.
const LAYOUT: [&str; 4] = ["conf", "log", "ct", VIEWS];
const CT: &str = "ct";
const VIEWS: &str = "views";

/// Properties read for every dataset tree we look at.
const TREE_PROPERTIES: &str = "type,mountpoint,mounted,compression";

/// How often to retry destroying, unmounting or renaming a busy dataset.
/// zfs-fuse reports "dataset is busy" for a short while after files of a
/// dataset were accessed, usually gone by the first retry: it starts soon and
/// doubles, about 3 s in all as before, but an import's one busy rename now
/// waits 25 ms instead of 100.
const BUSY_RETRIES: u32 = 7;
const BUSY_FIRST_DELAY: Duration = Duration::from_millis(25);

pub struct ZfsStorage {
    /// The pool dataset, `PATH`.
    dataset: String,
    /// Its mountpoint, the pool root.
    root: PathBuf,
    features: OnceLock<ZfsFeatures>,
    /// Facts this process saw, kept to spare `zfs get` queries (each 3-20 ms
    /// on zfs-fuse) that would only confirm them.
    seen: Mutex<Seen>,
}

/// What a [`ZfsStorage`] learned and nothing osctl does makes untrue while
/// it holds the container's lock. Forgotten when the container's datasets
/// are destroyed or renamed.
#[derive(Default)]
struct Seen {
    /// Containers whose subdatasets are mounted as this version mounts them
    /// (no version since makes the older layout).
    current_layout: HashSet<String>,
    /// `(container, snapshot)`: snapshots `snapshot` took, recursively, and
    /// not destroyed since.
    snapshots: HashSet<(String, String)>,
    /// Containers without a root dataset: found missing by `exists`,
    /// destroyed, or renamed away. Spares the query of a rename's target and
    /// of an import's fresh dataset before `zfs recv`.
    absent: HashSet<String>,
    /// Containers whose datasets were all received with `-u` into a new
    /// tree and none mounted since: a rename has nothing to unmount.
    unmounted: HashSet<String>,
}

impl Seen {
    fn forget_container(&mut self, ct: &str) {
        self.current_layout.remove(ct);
        self.snapshots.retain(|(c, _)| c != ct);
        self.unmounted.remove(ct);
    }

    fn saw_exists(&mut self, ct: &str, exists: bool) {
        match exists {
            true => self.absent.remove(ct),
            false => self.absent.insert(ct.to_string()),
        };
    }
}

impl std::fmt::Debug for ZfsStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZfsStorage")
            .field("dataset", &self.dataset)
            .field("root", &self.root)
            .finish()
    }
}

fn zfs<I, S>(args: I) -> Cmd
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Cmd::new("zfs").args(args)
}

/// Turns a failed `zfs` run into our error kinds. `action` says what failed and
/// names the dataset ("cannot create dataset 'tank/osctl/ct/web1'").
fn classify(action: String, err: ExecError) -> Error {
    let stderr = err.stderr().to_ascii_lowercase();
    let reason = zfs_parse::error_reason(err.stderr());
    if stderr.contains("does not exist") {
        Error::not_found(format!("{action}: {reason}"))
    } else if stderr.contains("already exists") {
        Error::exists(format!("{action}: {reason}"))
    } else if stderr.contains("out of space") || stderr.contains("no space left") {
        Error::io(
            format!("{action}: the zpool is full"),
            std::io::Error::from_raw_os_error(libc::ENOSPC),
        )
    } else if stderr.contains("busy") {
        Error::busy(format!("{action}: {reason}"))
    } else {
        Error::exec(action, err)
    }
}

fn run(cmd: Cmd, action: impl FnOnce() -> String) -> Result<String> {
    cmd.run().map_err(|e| classify(action(), e))
}

fn parse_output(output: &str, action: impl FnOnce() -> String) -> Result<Vec<Listed>> {
    zfs_parse::parse_get(output).map_err(|e| super::unexpected_output(action(), e))
}

/// How far below a dataset `zfs get` looks.
#[derive(Clone, Copy)]
enum Depth {
    Itself,
    Children,
    All,
}

/// Properties of a dataset (and what is below it, snapshots included); None
/// when it does not exist.
fn query(name: &str, properties: &str, depth: Depth) -> Result<Option<Vec<Listed>>> {
    let mut cmd = zfs(["get", "-Hp", "-o", GET_COLUMNS]);
    cmd = match depth {
        Depth::Itself => cmd,
        Depth::Children => cmd.args(["-d", "1"]),
        Depth::All => cmd.arg("-r"),
    };
    let action = || format!("cannot read properties of dataset '{name}'");
    match run(cmd.arg(properties).arg(name), action) {
        Ok(out) => parse_output(&out, action).map(Some),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Mounts a file system; one that is mounted already is fine.
fn mount(name: &str) -> Result<()> {
    match zfs(["mount", name]).run() {
        Ok(_) => Ok(()),
        Err(e) if e.stderr().contains("already mounted") => Ok(()),
        Err(e) => Err(classify(format!("cannot mount dataset '{name}'"), e)),
    }
}

/// Runs a `zfs` command, retrying a few times while zfs says busy: zfs-fuse
/// does so for a moment after a dataset was mounted or its files were used.
/// `between` runs before each retry (e.g. to unmount).
fn run_patiently(cmd: &Cmd, action: impl Fn() -> String, between: impl Fn()) -> Result<String> {
    let mut delay = BUSY_FIRST_DELAY;
    for _ in 0..BUSY_RETRIES {
        match run(cmd.clone(), &action) {
            Err(e) if e.kind() == ErrorKind::Busy => {
                std::thread::sleep(delay);
                delay *= 2;
                between();
            }
            done => return done,
        }
    }
    run(cmd.clone(), &action).map_err(|e| match e.kind() {
        ErrorKind::Busy => Error::busy(format!(
            "{e} (still after {BUSY_RETRIES} retries: is a process using its files?)"
        )),
        _ => e,
    })
}

/// Unmounts the mounted file systems of a tree, children first.
fn unmount_tree(datasets: &[Listed]) -> Result<()> {
    for name in mounted_children_first(datasets) {
        let unmount = zfs(["unmount", name]);
        match run_patiently(
            &unmount,
            || format!("cannot unmount dataset '{name}'"),
            || {},
        ) {
            Ok(_) => {}
            Err(e)
                if e.exec_source()
                    .is_some_and(|source| source.stderr().contains("not currently mounted")) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn mounted_children_first(datasets: &[Listed]) -> Vec<&str> {
    let mut mounted: Vec<&str> = datasets
        .iter()
        .filter(|d| d.is_filesystem() && d.is_mounted())
        .map(|d| d.name.as_str())
        .collect();
    mounted.sort_by(|a, b| b.cmp(a));
    mounted
}

/// Between retries of a busy command: one attempt to unmount what of a
/// dataset's tree is mounted. Errors are left to the command retried.
fn try_unmount(name: &str) {
    if let Ok(Some(tree)) = query(name, "type,mounted", Depth::All) {
        for mounted in mounted_children_first(&tree) {
            let _ = zfs(["unmount", mounted]).run();
        }
    }
}

/// Tries of `zfs rollback` when a refused send round is undone.
const ROLLBACK_ATTEMPTS: u32 = 3;

/// Destroys a dataset (with `-r`: its children and snapshots too). Missing is
/// fine; busy is retried a few times, unmounting in between.
fn destroy_dataset(name: &str, recursive: bool) -> Result<()> {
    let mut cmd = zfs(["destroy"]);
    if recursive {
        cmd = cmd.arg("-r");
    }
    let cmd = cmd.arg(name);
    let action = || format!("cannot destroy dataset '{name}'");
    match run_patiently(&cmd, action, || try_unmount(name)) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// A dataset name as the user gives it: `pool/a/b`, no snapshot, no tricks.
fn check_dataset_name(name: &str) -> Result<()> {
    let component_ok = |c: &str| {
        !c.is_empty()
            && c != "."
            && c != ".."
            && c.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "_-.:".contains(ch))
    };
    let starts_with_letter = name.starts_with(|c: char| c.is_ascii_alphabetic());
    // Leave room below it for ct/<id>.importing/<rel>@<snap> (ZFS allows 255).
    if name.len() > 128 || !starts_with_letter || !name.split('/').all(component_ok) {
        return Err(Error::invalid(format!(
            "invalid zfs dataset '{}': use POOL/PATH with components of letters, digits, '_', '-', '.', ':'",
            name.escape_debug()
        )));
    }
    Ok(())
}

/// A container id or a staging name (`<id>.importing`).
fn check_ct_name(ct: &str) -> Result<()> {
    let ok = !ct.is_empty()
        && ct.len() <= crate::names::MAX_NAME + 20
        && !ct.starts_with('.')
        && ct
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid container name '{}'",
            ct.escape_debug()
        )))
    }
}

/// Snapshot names come from archives (`snapshots.yml`): a narrow alphabet keeps
/// out `%` (ranges in `zfs destroy`), `,` (lists), `@`, `/` and `#`.
fn check_snapshot_name(snap: &str) -> Result<()> {
    let ok = !snap.is_empty()
        && snap.len() <= 128
        && snap
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid snapshot name '{}'",
            snap.escape_debug()
        )))
    }
}

/// Finds what `zfs` can do by asking it: the usage text of `zfs send` (its
/// options) and `zfs version` (absent on zfs-fuse).
pub fn detect_features() -> Result<ZfsFeatures> {
    // Without arguments `zfs send` prints its usage on stderr and fails.
    let usage = match zfs(["send"]).run() {
        Ok(out) => out,
        Err(e) if e.is_not_found() => {
            return Err(Error::exec("cannot find out what zfs can do", e))
        }
        Err(e) => e.stderr().to_string(),
    };
    let version = zfs(["version"]).run().ok();
    Ok(ZfsFeatures::from_outputs(&usage, version.as_deref()))
}

impl ZfsStorage {
    /// Opens the pool in `dataset`; returns the storage and the pool root (the
    /// dataset's mountpoint, where `conf/`, `log/` and `state/` are). Mounts
    /// what is not mounted and creates layout datasets that are missing.
    pub fn open(dataset: &str) -> Result<(ZfsStorage, PathBuf)> {
        check_dataset_name(dataset)?;
        let tree = query(
            dataset,
            &format!("{TREE_PROPERTIES},{POOL_PROPERTY}"),
            Depth::Children,
        )?
        .ok_or_else(|| missing_dataset(dataset))?;
        let top = top_of(&tree, dataset)?;
        if top.local_value(POOL_PROPERTY).is_none() {
            return Err(Error::refused(format!(
                "zfs dataset '{dataset}' is not an osctl pool (no {POOL_PROPERTY} property); \
                 install it with `osctl pool install --backend zfs --dataset {dataset}`"
            )));
        }
        let root = Self::root_of(top)?;
        let storage = ZfsStorage {
            dataset: dataset.to_string(),
            root: root.clone(),
            features: OnceLock::new(),
            seen: Mutex::new(Seen::default()),
        };
        storage.ensure_layout(&tree)?;
        Ok((storage, root))
    }

    /// Prepares `dataset` for a pool: creates it (with parents) where missing,
    /// refuses one that holds something and is not ours, marks it and creates
    /// the layout datasets. Installing over an existing pool of ours is fine.
    pub fn install(dataset: &str) -> Result<()> {
        check_dataset_name(dataset)?;
        let properties = format!("{TREE_PROPERTIES},{POOL_PROPERTY}");
        let tree = match query(dataset, &properties, Depth::Children)? {
            Some(tree) => tree,
            None => {
                run(zfs(["create", "-p", dataset]), || {
                    format!("cannot create zfs dataset '{dataset}'")
                })?;
                query(dataset, &properties, Depth::Children)?
                    .ok_or_else(|| missing_dataset(dataset))?
            }
        };
        let top = top_of(&tree, dataset)?;
        if !top.is_filesystem() {
            return Err(Error::refused(format!(
                "zfs dataset '{dataset}' is not a file system"
            )));
        }
        let root = Self::root_of(top)?;
        if top.local_value(POOL_PROPERTY).is_none() {
            if !top.is_mounted() {
                mount(dataset)?;
            }
            let children: Vec<&str> = tree
                .iter()
                .filter(|d| d.name != dataset && d.snapshot_of().is_none())
                .map(|d| d.name.as_str())
                .collect();
            if !children.is_empty() || !list_dir(&root)?.is_empty() {
                return Err(Error::refused(format!(
                    "zfs dataset '{dataset}' is not empty and not an osctl pool{}",
                    match children.first() {
                        Some(child) => format!(" (it has child dataset '{child}')"),
                        None => format!(" (files in {})", root.display()),
                    }
                )));
            }
            run(
                zfs([
                    "set".to_string(),
                    format!("{POOL_PROPERTY}={LAYOUT_VERSION}"),
                    dataset.to_string(),
                ]),
                || format!("cannot mark zfs dataset '{dataset}' as an osctl pool"),
            )?;
        }
        Self::open(dataset).map(drop)
    }

    /// Datasets marked as osctl pools in every imported zpool (to recognise
    /// pools after a reboot or `zpool import`).
    pub fn find_pools() -> Result<Vec<String>> {
        let out = run(
            zfs([
                "get",
                "-Hp",
                "-o",
                GET_COLUMNS,
                "-s",
                "local",
                POOL_PROPERTY,
            ]),
            || "cannot look for osctl pools in zfs".to_string(),
        )?;
        let sets = parse_output(&out, || "cannot look for osctl pools in zfs".into())?;
        Ok(sets
            .into_iter()
            .filter(|d| d.local_value(POOL_PROPERTY).is_some() && d.snapshot_of().is_none())
            .map(|d| d.name)
            .collect())
    }

    fn root_of(top: &Listed) -> Result<PathBuf> {
        match top.mountpoint() {
            Some(Mountpoint::Path(p)) => Ok(p),
            _ => Err(Error::refused(format!(
                "zfs dataset '{}' has mountpoint '{}': osctl needs it mounted by zfs \
                 (zfs set mountpoint=/{} {})",
                top.name,
                top.value("mountpoint").unwrap_or("-"),
                top.name,
                top.name
            ))),
        }
    }

    /// Mounts the pool dataset and its layout datasets, creating missing ones
    /// and putting inherited mountpoints back where they were changed.
    fn ensure_layout(&self, tree: &[Listed]) -> Result<()> {
        let find = |name: &str| tree.iter().find(|d| d.name == name);
        if !find(&self.dataset).is_some_and(Listed::is_mounted) {
            mount(&self.dataset)?;
        }
        for child in LAYOUT {
            let name = format!("{}/{child}", self.dataset);
            let expected = Mountpoint::Path(self.root.join(child));
            match find(&name) {
                None => {
                    run(zfs(["create", &name]), || {
                        format!("cannot create zfs dataset '{name}'")
                    })?;
                    mount(&name)?;
                }
                Some(d) => {
                    if d.mountpoint() != Some(expected) {
                        run(zfs(["inherit", "mountpoint", &name]), || {
                            format!("cannot reset the mountpoint of zfs dataset '{name}'")
                        })?;
                    }
                    if !d.is_mounted() {
                        mount(&name)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The pool dataset.
    pub fn dataset(&self) -> &str {
        &self.dataset
    }

    /// What the installed ZFS can do (detected once).
    pub fn features(&self) -> Result<&ZfsFeatures> {
        if let Some(f) = self.features.get() {
            return Ok(f);
        }
        let detected = detect_features()?;
        Ok(self.features.get_or_init(|| detected))
    }

    /// The zfs dataset of a container's root dataset or subdataset.
    pub fn dataset_of(&self, ds: Dataset) -> Result<String> {
        check_ct_name(ds.ct)?;
        let root = format!("{}/{CT}/{}", self.dataset, ds.ct);
        if ds.is_root() {
            Ok(root)
        } else {
            crate::names::subdataset(ds.rel)?;
            Ok(format!("{root}/{}", ds.rel))
        }
    }

    /// The container's file systems as `(rel, dataset)`, parents first.
    fn filesystems(&self, ct: &str) -> Result<Vec<(String, Listed)>> {
        let root = self.dataset_of(Dataset::root(ct))?;
        let mut out: Vec<(String, Listed)> = self
            .dataset_tree(ct)?
            .into_iter()
            .filter(Listed::is_filesystem)
            .filter_map(|d| {
                let rel = if d.name == root {
                    String::new()
                } else {
                    d.name.strip_prefix(&root)?.strip_prefix('/')?.to_string()
                };
                Some((rel, d))
            })
            .collect();
        // A parent's name is a prefix of its children's: it sorts first.
        out.sort_by(|a, b| a.0.cmp(&b.0));
        if self.mounted_the_old_way(ct, &out).is_none() {
            self.seen().current_layout.insert(ct.to_string());
        }
        Ok(out)
    }

    fn seen(&self) -> MutexGuard<'_, Seen> {
        // A panic elsewhere leaves the sets as they were: still true.
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts mountpoints where the layout wants them and mounts, parents first,
    /// the container's file systems that `wanted` selects. The root dataset's
    /// directory is made root's own with mode 0700 as soon as it is mounted:
    /// its mode and owner are whatever the last stream received said.
    fn mount_where(&self, ct: &str, wanted: impl Fn(&str) -> bool) -> Result<()> {
        self.seen().unmounted.remove(ct);
        let mut sets = self.filesystems(ct)?;
        self.check_layout(ct, &sets)?;
        let top = self.path(Dataset::root(ct));
        let mut next = 0;
        while let Some((rel, ds)) = sets.get(next) {
            next += 1;
            if !wanted(rel) {
                continue;
            }
            let expected = self.path(Dataset::new(ct, rel));
            let name = ds.name.clone();
            if !rel.is_empty() {
                // Its parent is mounted: what is on the way is known now.
                refuse_symlinks(&top, rel)
                    .map_err(|e| e.context(format!("cannot mount dataset '{name}'")))?;
            }
            if ds.mountpoint() == Some(Mountpoint::Path(expected.clone())) {
                if !ds.is_mounted() {
                    mount(&name)?;
                }
                if rel.is_empty() {
                    fsutil::seal_container_dir(&expected)?;
                }
                continue;
            }
            run(zfs(["inherit", "mountpoint", &name]), || {
                format!("cannot set the mountpoint of dataset '{name}'")
            })?;
            // OpenZFS mounts on `set mountpoint`, zfs-fuse does not.
            mount(&name)?;
            if rel.is_empty() {
                fsutil::seal_container_dir(&expected)?;
            }
            // Children inheriting the mountpoint moved along: look again, and
            // leave alone what is right now (each needless change of a
            // mountpoint re-creates its directory, touching the parent's mtime).
            sets = self.filesystems(ct)?;
        }
        Ok(())
    }

    /// Refuses a container whose subdatasets are mounted inside its root file
    /// system, as older versions of osctl-rs mounted them: moving them would
    /// hide their files from the container.
    fn check_layout(&self, ct: &str, sets: &[(String, Listed)]) -> Result<()> {
        match self.mounted_the_old_way(ct, sets) {
            None => Ok(()),
            Some((rel, ds)) => Err(Error::refused(format!(
                "container '{ct}': dataset '{rel}' ({}) is mounted inside the root file system with \
                 its files at its top, as older osctl-rs versions kept datasets; this version keeps \
                 them in the dataset's own private/ and mounts them through container.yml: export \
                 the container with --format tar using the version that made it, and import that \
                 archive here (the dataset's files join the root file system)",
                ds.name
            ))),
        }
    }

    /// A subdataset whose mountpoint lies inside the root file system.
    fn mounted_the_old_way<'s>(
        &self,
        ct: &str,
        sets: &'s [(String, Listed)],
    ) -> Option<&'s (String, Listed)> {
        let rootfs = self.rootfs(ct);
        sets.iter().find(|(rel, ds)| {
            !rel.is_empty()
                && matches!(ds.mountpoint(), Some(Mountpoint::Path(p)) if p.starts_with(&rootfs))
        })
    }

    /// Mounts the datasets from the container's root down to `ds`.
    fn mount_chain(&self, ds: Dataset) -> Result<()> {
        let rel = ds.rel;
        self.mount_where(ds.ct, |r| {
            r.is_empty() || r == rel || rel.strip_prefix(r).is_some_and(|s| s.starts_with('/'))
        })
    }

    /// Every dataset of a container, snapshots included.
    fn dataset_tree(&self, ct: &str) -> Result<Vec<Listed>> {
        self.query_container(ct, TREE_PROPERTIES, Depth::All)
    }

    fn query_container(&self, ct: &str, properties: &str, depth: Depth) -> Result<Vec<Listed>> {
        let root = self.dataset_of(Dataset::root(ct))?;
        query(&root, properties, depth)?
            .ok_or_else(|| Error::not_found(format!("container '{ct}' has no dataset '{root}'")))
    }

    fn destroy_snapshot_on(&self, dataset: &str, snap: &str) -> Result<()> {
        let name = format!("{dataset}@{snap}");
        match run(zfs(["destroy", &name]), || {
            format!("cannot destroy snapshot '{name}'")
        }) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `zfs rollback -r DATASET@SNAP`, unmounted (on zfs-fuse a mounted
    /// dataset may be busy for a moment): later snapshots go too.
    fn rollback(&self, name: &str, snap: &str) -> Result<()> {
        check_snapshot_name(snap)?;
        if let Some(tree) = query(name, "type,mounted", Depth::All)? {
            unmount_tree(&tree)?;
        }
        let target = format!("{name}@{snap}");
        run_patiently(
            &zfs(["rollback", "-r", &target]),
            || format!("cannot roll dataset '{name}' back to '{snap}'"),
            || try_unmount(name),
        )
        .map(drop)
    }

    /// Whether a mounted dataset holds nothing but what `create` put there:
    /// an empty `private/`.
    fn as_created(&self, ds: Dataset) -> Result<bool> {
        let dir = self.path(ds);
        let entries = list_dir(&dir)?;
        Ok(entries.is_empty()
            || (entries == [ROOTFS_DIR] && list_dir(&dir.join(ROOTFS_DIR))?.is_empty()))
    }

    /// Destroys read-only snapshot clones left behind by processes that died
    /// while showing them (their pid is in the clone's name). Returns their names.
    pub fn cleanup_stale_views(&self) -> Result<Vec<String>> {
        let views = format!("{}/{VIEWS}", self.dataset);
        let Some(tree) = query(&views, "type", Depth::Children)? else {
            return Ok(Vec::new());
        };
        let mut removed = Vec::new();
        for d in tree.iter().filter(|d| d.is_filesystem() && d.name != views) {
            let pid = d
                .name
                .rsplit('/')
                .next()
                .and_then(|leaf| leaf.split('_').nth(1))
                .and_then(|pid| pid.parse::<u32>().ok());
            if !pid.is_some_and(crate::fsutil::process_alive) {
                destroy_dataset(&d.name, true)?;
                removed.push(d.name.clone());
            }
        }
        Ok(removed)
    }
}

fn missing_dataset(name: &str) -> Error {
    Error::not_found(format!("zfs dataset '{name}' does not exist"))
}

/// The dataset itself in the output of a query on it.
fn top_of<'a>(tree: &'a [Listed], name: &str) -> Result<&'a Listed> {
    tree.iter()
        .find(|d| d.name == name)
        .ok_or_else(|| missing_dataset(name))
}

/// Names in a directory (at most a few: enough to tell "empty" and "one").
fn list_dir(dir: &Path) -> Result<Vec<String>> {
    let read = || format!("cannot read directory {}", dir.display());
    std::fs::read_dir(dir)
        .ctx(read)?
        .take(2)
        .map(|e| {
            e.map(|e| e.file_name().to_string_lossy().into_owned())
                .ctx(read)
        })
        .collect()
}

/// Unique names for snapshot clones: `v_<pid>_<n>_<container>`.
fn view_name(ct: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("v_{}_{n}_{ct}", std::process::id())
}

impl Storage for ZfsStorage {
    fn backend(&self) -> Backend {
        Backend::Zfs
    }

    /// The zfs dataset of the container: `<pool dataset>/ct/<id>`.
    fn recorded_name(&self, ct: &str) -> String {
        format!("{}/{CT}/{ct}", self.dataset)
    }

    fn native(&self) -> Option<&dyn NativeStreams> {
        Some(self)
    }

    fn remove_leftovers(&self) -> Result<Vec<String>> {
        Ok(self
            .cleanup_stale_views()?
            .into_iter()
            .map(|clone| format!("destroyed snapshot view {clone}"))
            .collect())
    }

    fn create(&self, ds: Dataset) -> Result<()> {
        let name = self.dataset_of(ds)?;
        let action = || format!("cannot create dataset '{name}'");
        if !ds.is_root() {
            // The parent must be mounted before the child mounts inside it.
            self.mount_chain(ds.parent())?;
            refuse_symlinks(&self.path(Dataset::root(ds.ct)), ds.rel)?;
        }
        if ds.is_root() {
            self.seen().saw_exists(ds.ct, true);
        }
        run(zfs(["create", &name]), action)?;
        let made = (|| {
            // Mounting seals the container's directory (see `mount_where`).
            self.mount_chain(ds)?;
            let rootfs = self.private(ds);
            std::fs::create_dir(&rootfs).ctx(|| format!("cannot create {}", rootfs.display()))?;
            fsutil::set_mode(&rootfs, 0o755)
        })();
        if let Err(e) = made {
            let _ = destroy_dataset(&name, true);
            return Err(e.context(format!("dataset '{name}'")));
        }
        Ok(())
    }

    fn exists(&self, ct: &str) -> Result<bool> {
        let name = self.dataset_of(Dataset::root(ct))?;
        let exists = query(&name, "type", Depth::Itself)?.is_some();
        self.seen().saw_exists(ct, exists);
        Ok(exists)
    }

    fn subdatasets(&self, ct: &str) -> Result<Vec<String>> {
        Ok(self
            .filesystems(ct)?
            .into_iter()
            .map(|(rel, _)| rel)
            .filter(|rel| !rel.is_empty())
            .collect())
    }

    fn destroy(&self, ds: Dataset) -> Result<()> {
        let name = self.dataset_of(ds)?;
        self.seen().forget_container(ds.ct);
        destroy_dataset(&name, true)?;
        if ds.is_root() {
            self.seen().saw_exists(ds.ct, false);
            // zfs removes mountpoint directories it made; an old one may stay.
            let _ = std::fs::remove_dir(self.path(ds));
        }
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        let old = self.dataset_of(Dataset::root(from))?;
        let new = self.dataset_of(Dataset::root(to))?;
        let cannot_rename = || format!("cannot rename container '{from}' to '{to}'");
        if !self.seen().absent.contains(to) && self.exists(to)? {
            return Err(Error::exists(format!(
                "{}: dataset '{new}' already exists",
                cannot_rename()
            )));
        }
        let unmounted = self.seen().unmounted.contains(from);
        self.seen().forget_container(from);
        // Renaming mounted datasets would remount subdatasets at their old,
        // explicitly set mountpoints: unmount, rename, then mount afresh.
        if !unmounted {
            unmount_tree(&self.dataset_tree(from)?)?;
        }
        let renamed = run_patiently(
            &zfs(["rename", &old, &new]),
            || format!("cannot rename dataset '{old}' to '{new}'"),
            || try_unmount(&old),
        );
        if let Err(e) = renamed {
            // As it was; a tree that was never mounted stays so.
            if !unmounted {
                let _ = self.mount(from);
            }
            return Err(match e.kind() {
                // Made by someone else since this process saw it missing.
                ErrorKind::Exists => e.context(cannot_rename()),
                _ => e,
            });
        }
        {
            let mut seen = self.seen();
            seen.saw_exists(from, false);
            seen.saw_exists(to, true);
        }
        let _ = std::fs::remove_dir(self.path(Dataset::root(from)));
        self.mount(to)
    }

    fn path(&self, ds: Dataset) -> PathBuf {
        let root = self.root.join(CT).join(ds.ct);
        if ds.is_root() {
            root
        } else {
            root.join(ds.rel)
        }
    }

    fn mount(&self, ct: &str) -> Result<()> {
        self.mount_where(ct, |_| true)
    }

    fn containers(&self) -> Result<Vec<String>> {
        let parent = format!("{}/{CT}", self.dataset);
        let tree =
            query(&parent, "type", Depth::Children)?.ok_or_else(|| missing_dataset(&parent))?;
        let mut names: Vec<String> = tree
            .iter()
            .filter(|d| d.is_filesystem())
            .filter_map(|d| d.name.strip_prefix(&parent)?.strip_prefix('/'))
            .map(String::from)
            .collect();
        names.sort();
        Ok(names)
    }

    fn snapshot(&self, ct: &str, snap: &str) -> Result<()> {
        check_snapshot_name(snap)?;
        if !self.seen().current_layout.contains(ct) {
            self.check_layout(ct, &self.filesystems(ct)?)?;
        }
        let name = format!("{}@{snap}", self.dataset_of(Dataset::root(ct))?);
        // -r: one atomic snapshot of the root and every subdataset.
        run(zfs(["snapshot", "-r", &name]), || {
            format!("cannot snapshot container '{ct}' as '{name}'")
        })?;
        let taken = (ct.to_string(), snap.to_string());
        self.seen().snapshots.insert(taken);
        Ok(())
    }

    /// `zfs destroy -r` of the root's snapshot takes the subdatasets' too;
    /// where the root has none (zfs-fuse then destroys nothing), each
    /// dataset that has one.
    fn destroy_snapshot(&self, ct: &str, snap: &str) -> Result<()> {
        check_snapshot_name(snap)?;
        let root = self.dataset_of(Dataset::root(ct))?;
        self.seen()
            .snapshots
            .remove(&(ct.to_string(), snap.to_string()));
        let name = format!("{root}@{snap}");
        match run(zfs(["destroy", "-r", &name]), || {
            format!("cannot destroy snapshot '{name}'")
        }) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let tree = match self.dataset_tree(ct) {
            Ok(tree) => tree,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut holders: Vec<&str> = tree
            .iter()
            .filter_map(|d| d.snapshot_of())
            .filter(|(_, s)| *s == snap)
            .map(|(ds, _)| ds)
            .collect();
        // Children first, as `zfs destroy -r` would.
        holders.sort_by(|a, b| b.cmp(a));
        for ds in holders {
            self.destroy_snapshot_on(ds, snap)?;
        }
        Ok(())
    }

    fn snapshots(&self, ct: &str) -> Result<Vec<String>> {
        let root = self.dataset_of(Dataset::root(ct))?;
        let tree = self.query_container(ct, "type", Depth::Children)?;
        Ok(tree
            .iter()
            .filter_map(|d| d.snapshot_of())
            .filter(|(ds, _)| *ds == root)
            .map(|(_, snap)| snap.to_string())
            .collect())
    }

    fn snapshot_view(&self, ds: Dataset, snap: &str) -> Result<SnapshotView> {
        check_snapshot_name(snap)?;
        let name = self.dataset_of(ds)?;
        // OpenZFS shows snapshots under .zfs (mounted on access); zfs-fuse has
        // no .zfs directory, so there a read-only clone shows the snapshot.
        let snapdir = self.path(ds).join(".zfs/snapshot").join(snap);
        if snapdir.is_dir() {
            return Ok(SnapshotView::new(snapdir));
        }
        let leaf = view_name(ds.ct);
        let clone = format!("{}/{VIEWS}/{leaf}", self.dataset);
        let origin = format!("{name}@{snap}");
        run(zfs(["clone", "-o", "readonly=on", &origin, &clone]), || {
            format!("cannot show snapshot '{origin}'")
        })?;
        let shown = mount(&clone);
        let release_name = clone.clone();
        let view = SnapshotView::with_release(self.root.join(VIEWS).join(leaf), move || {
            // Best effort: a clone left behind is found by cleanup_stale_views.
            let _ = destroy_dataset(&release_name, false);
        });
        shown.map(|()| view)
    }
}

impl NativeStreams for ZfsStorage {
    fn format(&self) -> ArchiveFormat {
        ArchiveFormat::Zfs
    }

    fn can_send_compressed(&self, ds: Dataset) -> Result<bool> {
        if !self.features()?.send_compressed() {
            return Ok(false);
        }
        let name = self.dataset_of(ds)?;
        let sets =
            query(&name, "compression", Depth::Itself)?.ok_or_else(|| missing_dataset(&name))?;
        Ok(sets
            .first()
            .and_then(|d| d.value("compression"))
            .is_some_and(|c| c != "off"))
    }

    /// A full stream: `referenced` is what the snapshot takes on disk,
    /// compressed; an uncompressed stream is about `compressratio` times that
    /// (zfs-fuse has no `logicalreferenced`). Incremental streams: no guess.
    fn send_estimate(&self, ds: Dataset, request: &SendRequest) -> Option<u64> {
        if request.from.is_some() {
            return None;
        }
        check_snapshot_name(request.snapshot).ok()?;
        let name = format!("{}@{}", self.dataset_of(ds).ok()?, request.snapshot);
        let sets = query(&name, "referenced,compressratio", Depth::Itself).ok()??;
        let value = |p: &str| sets.iter().find_map(|d| d.value(p));
        let referenced: f64 = value("referenced")?.parse().ok()?;
        let ratio: f64 = match request.compressed {
            true => 1.0,
            false => value("compressratio")?.trim_end_matches('x').parse().ok()?,
        };
        Some((referenced * ratio) as u64)
    }

    fn send_cmd(&self, ds: Dataset, request: &SendRequest) -> Result<Cmd> {
        let SendRequest {
            snapshot: snap,
            from,
            compressed,
        } = *request;
        check_snapshot_name(snap)?;
        let name = self.dataset_of(ds)?;
        if compressed && !self.features()?.send_compressed() {
            return Err(Error::refused(format!(
                "cannot send dataset '{name}' compressed: `zfs send -c` is missing in {}",
                self.features()?.describe()
            )));
        }
        let mut snapshots = vec![format!("{name}@{snap}")];
        if let Some(from) = from {
            check_snapshot_name(from)?;
            snapshots.push(format!("{name}@{from}"));
        }
        // Missing snapshots are reported here, clearly, not at the stream's
        // end; those this process took are there.
        let seen = self.seen();
        let taken = |snap: &str| {
            seen.snapshots
                .contains(&(ds.ct.to_string(), snap.to_string()))
        };
        let all_taken = taken(snap) && from.is_none_or(taken);
        drop(seen);
        if !all_taken {
            let check = zfs(["get", "-Hp", "-o", GET_COLUMNS, "type"]).args(&snapshots);
            run(check, || format!("cannot send dataset '{name}'"))?;
        }

        let mut cmd = zfs(["send"]);
        if compressed {
            cmd = cmd.arg("-c");
        }
        if let Some(base) = snapshots.get(1) {
            // -i, not -I: snapshots taken in between stay out of the stream.
            cmd = cmd.args(["-i", base]);
        }
        Ok(cmd.arg(&snapshots[0]))
    }

    /// The stream passes through [`ZfsStreamJudge`], which judges the
    /// owner, mode and device of every file from its record (and says where
    /// the received tree must be walked instead).
    fn receive(&self, ds: Dataset, policy: &FilePolicy) -> Result<Receiver> {
        let name = self.dataset_of(ds)?;
        let judge = self.stream_judge(ds, policy)?;
        self.receive_cmd(ds)?
            .spawn_writer()
            .map(|writer| Receiver::checked(writer, Box::new(judge)))
            .ctx(|| format!("cannot receive into dataset '{name}'"))
    }

    /// zfs-fuse receives from a file faster than from a pipe (its daemon
    /// reads the stream itself); the record judge reads the same bytes.
    fn receive_beside(
        &self,
        ds: Dataset,
        policy: &FilePolicy,
    ) -> Result<Option<(Cmd, Box<dyn StreamCheck>)>> {
        let judge = self.stream_judge(ds, policy)?;
        Ok(Some((self.receive_cmd(ds)?, Box::new(judge))))
    }

    /// Leaves the dataset unmounted, as received: the rename that follows
    /// (the import's `place`) would unmount it again (and zfs-fuse then
    /// reports the dataset busy for a moment), and mounts it at its final
    /// place anyway.
    fn finish_receive(&self, ds: Dataset, snapshots: &[String]) -> Result<()> {
        let name = self.dataset_of(ds)?;
        for snap in snapshots {
            check_snapshot_name(snap)?;
        }
        for snap in snapshots {
            self.destroy_snapshot_on(&name, snap)?;
        }
        Ok(())
    }

    /// A whole stream goes into a new dataset (see `receive_cmd`); an
    /// incremental one into the dataset, which `zfs recv -F` rolls back to
    /// `base` itself (an explicit `zfs rollback` of a received dataset
    /// fails now and then on zfs-fuse with "I/O error"); an earlier
    /// attempt's `snap` goes first (destroying a missing one is no error).
    fn receive_round(
        &self,
        ds: Dataset,
        snap: &str,
        base: Option<&str>,
        policy: &FilePolicy,
    ) -> Result<Receiver> {
        check_snapshot_name(snap)?;
        match base {
            None => self.destroy(ds)?,
            Some(base) => {
                check_snapshot_name(base)?;
                self.destroy_snapshot_on(&self.dataset_of(ds)?, snap)?;
            }
        }
        self.receive(ds, policy)
    }

    /// The stream must have made `snap` and nothing else: the dataset holds
    /// that snapshot and at most the round's base besides.
    fn received_round(&self, ds: Dataset, snap: &str, base: Option<&str>) -> Result<PathBuf> {
        check_snapshot_name(snap)?;
        let mut snapshots = self.snapshots(ds.ct)?;
        snapshots.sort();
        let mut expected: Vec<&str> = base.into_iter().chain([snap]).collect();
        expected.sort();
        if snapshots != expected {
            return Err(Error::archive(format!(
                "{}: the round's stream did not make snapshot '{snap}' (snapshots: {})",
                ds.label(),
                snapshots.join(", ")
            )));
        }
        self.mount(ds.ct)?;
        Ok(self.path(ds))
    }

    /// Rolls back to `base`; where that fails (zfs-fuse, see
    /// `receive_round`) or there is no base, the dataset is made anew,
    /// empty: nothing of the refused round may stay, even if the send then
    /// has to start again.
    fn drop_round(&self, ds: Dataset, snap: &str, base: Option<&str>) -> Result<()> {
        check_snapshot_name(snap)?;
        let name = self.dataset_of(ds)?;
        if let Some(base) = base {
            if self.snapshots(ds.ct)?.iter().any(|s| s == base) {
                for attempt in 0..ROLLBACK_ATTEMPTS {
                    if self.rollback(&name, base).is_ok() {
                        return Ok(());
                    }
                    std::thread::sleep(BUSY_FIRST_DELAY * (attempt + 1));
                }
            }
        }
        self.destroy(ds)?;
        self.create(ds)
    }

    /// A snapshot already gone is no error.
    fn forget_round(&self, ds: Dataset, snap: &str) -> Result<()> {
        check_snapshot_name(snap)?;
        self.destroy_snapshot_on(&self.dataset_of(ds)?, snap)
    }

    /// The dataset is the received tree already: it only has to be mounted.
    fn place_round(&self, ds: Dataset, snap: &str) -> Result<()> {
        check_snapshot_name(snap)?;
        self.mount(ds.ct)
    }
}

impl ZfsStorage {
    /// The check of a stream into `ds`, naming its dataset.
    fn stream_judge(&self, ds: Dataset, policy: &FilePolicy) -> Result<ZfsStreamJudge> {
        let name = self.dataset_of(ds)?;
        Ok(ZfsStreamJudge::new(
            format!("zfs dataset '{name}'"),
            *policy,
        ))
    }

    /// `zfs recv -u -F`: unmounted, so that nothing touches the dataset between
    /// the base and the incremental stream (on zfs-fuse a mere atime update
    /// breaks the incremental), and forced, so that an incremental stream rolls
    /// back whatever changed. A subdataset's parent must exist.
    fn receive_cmd(&self, ds: Dataset) -> Result<Cmd> {
        let name = self.dataset_of(ds)?;
        let new_tree = ds.is_root() && self.seen().absent.contains(ds.ct);
        if new_tree {
            // It exists from the receive on, and stays unmounted.
            let mut seen = self.seen();
            seen.saw_exists(ds.ct, true);
            seen.unmounted.insert(ds.ct.to_string());
        } else if let Some(tree) = query(&name, "type,mounted", Depth::All)? {
            let alone = tree.iter().all(|d| d.name == name);
            let mounted = tree.iter().any(|d| d.name == name && d.is_mounted());
            if alone && mounted && self.as_created(ds)? {
                // Left as `create` made it, the dataset can only take a full
                // stream, which replaces it anyway; and receiving a full stream
                // over an existing dataset fails now and then on zfs-fuse
                // ("I/O error"), into a new one it does not.
                destroy_dataset(&name, false)?;
            } else {
                unmount_tree(&tree)?;
            }
        }
        Ok(zfs(["recv", "-u", "-F", &name]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn dataset_names() {
        for good in ["tank", "tank/osctl", "t-1/a.b/c_d:e"] {
            assert!(check_dataset_name(good).is_ok(), "{good}");
        }
        for bad in [
            "", "/tank", "tank/", "tank//a", "tank@s", "tank/a b", "1tank", "tank/..", "tank#b",
        ] {
            assert!(check_dataset_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn container_and_snapshot_names() {
        assert!(check_ct_name("web1").is_ok());
        assert!(check_ct_name("web1.importing").is_ok());
        for bad in ["", ".x", "a/b", "a@b", "A"] {
            assert!(check_ct_name(bad).is_err(), "{bad}");
        }
        assert!(check_snapshot_name("osctl-base-1700000000").is_ok());
        for bad in ["", "a%b", "a,b", "a@b", "a/b", "a#b", "a b"] {
            assert!(check_snapshot_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn classification() {
        let failed = |stderr: &str| {
            Cmd::new("sh")
                .args(["-c", "printf '%s' \"$0\" >&2; exit 1", stderr])
                .run()
                .unwrap_err()
        };
        let e = classify(
            "cannot create dataset 'p/ct/a/b'".into(),
            failed("cannot create 'p/ct/a/b': parent does not exist\n"),
        );
        assert!(
            (e.kind() == ErrorKind::NotFound && {
                let m = e.message();
                m == "cannot create dataset 'p/ct/a/b': parent does not exist"
            }),
            "{e}"
        );
        let e = classify(
            "x 'p/a'".into(),
            failed("cannot create 'p/a': dataset already exists\n"),
        );
        assert!(e.kind() == ErrorKind::Exists);
        let e = classify(
            "cannot receive into dataset 'p/a'".into(),
            failed("cannot receive new filesystem stream: out of space\n"),
        );
        let source = e.io_source().expect("an I/O error");
        assert!(e.message().contains("'p/a'") && e.message().contains("full"));
        assert_eq!(source.kind(), std::io::ErrorKind::StorageFull);
        let e = classify(
            "d".into(),
            failed("cannot destroy 'p/a': dataset is busy\n"),
        );
        assert!(e.kind() == ErrorKind::Busy);
        let e = classify(
            "cannot receive into dataset 'p/a'".into(),
            failed("cannot receive: invalid stream (bad magic number)\n"),
        );
        assert_eq!(e.kind(), ErrorKind::Exec);
        assert!(e.to_string().contains("'p/a'") && e.to_string().contains("bad magic"));
    }

    #[test]
    fn view_names_are_unique_and_carry_the_pid() {
        let (a, b) = (view_name("web1"), view_name("web1"));
        assert_ne!(a, b);
        assert_eq!(
            a.split('_').nth(1),
            Some(std::process::id().to_string().as_str())
        );
    }
}
