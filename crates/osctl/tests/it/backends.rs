//! Export and import on zfs and btrfs pools, and moves between kinds of
//! pools: native streams with subdatasets, consistent exports of running
//! containers, archives as the original osctl writes them, failures.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::original;
use super::rawtar;
use testkit::loopfs::LoopFs;
use testkit::tree::{self, build_every_kind, Options, Precision};
use testkit::zpool::{self, TestZpool};

use super::support::{
    assert_consistent, can_run_containers, is_root, make_busybox_rootfs, signal, stopped_at,
    tar_names, wait_for_writes, wait_until, Env,
};
use crate::require;

#[derive(Clone, Copy, PartialEq, Debug)]
pub(crate) enum Kind {
    Dir,
    Btrfs,
    Zfs,
}

impl Kind {
    /// The backend's name, as `pool install --backend` takes it.
    pub(crate) fn name(self) -> String {
        format!("{self:?}").to_lowercase()
    }
}

/// A pool of some kind installed in an environment, with what holds it (a
/// loop-mounted file system, a zpool). Its containers and users are deleted
/// before those go away.
pub(crate) struct Pool<'e> {
    pub(crate) env: &'e Env,
    pub(crate) name: String,
    kind: Kind,
    _fs: Option<LoopFs>,
    pub(crate) _zpool: Option<TestZpool>,
}

impl<'e> Pool<'e> {
    /// The pool, or None (the test is skipped) where the machine lacks the parts.
    pub(crate) fn new(env: &'e Env, kind: Kind) -> Option<Pool<'e>> {
        let name = kind.name();
        let (fs, zpool, args): (_, _, Vec<String>) = match kind {
            Kind::Dir => (
                None,
                None,
                vec![
                    "--path".into(),
                    env.path("dirpool").to_string_lossy().into(),
                ],
            ),
            Kind::Btrfs => {
                // Compressed, as many btrfs hosts are: st_blocks then undercounts
                // file sizes, and `auto` exports btrfs's compressed stream.
                let fs = LoopFs::new("btrfs", 1024, "compress=zstd")?;
                let path = fs.path().join("pool").to_string_lossy().into_owned();
                (Some(fs), None, vec!["--path".into(), path])
            }
            Kind::Zfs => {
                let zpool = TestZpool::create(1024)?;
                let ds = zpool.ds("osctl");
                (None, Some(zpool), vec!["--dataset".into(), ds])
            }
        };
        let mut install = vec!["pool", "install", "--backend", &name];
        install.extend(args.iter().map(String::as_str));
        install.push(&name);
        env.ok(&install);
        env.ok(&["--pool", &name, "user", "new", "u1"]);
        Some(Pool {
            env,
            name,
            kind,
            _fs: fs,
            _zpool: zpool,
        })
    }

    /// `--pool NAME` and the arguments.
    fn on_pool<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut full = vec!["--pool", self.name.as_str()];
        full.extend_from_slice(args);
        full
    }

    pub(crate) fn ok(&self, args: &[&str]) -> String {
        self.env.ok(&self.on_pool(args))
    }

    pub(crate) fn fails(&self, args: &[&str]) -> String {
        self.env.fails(&self.on_pool(args), 1)
    }

    /// The output whatever the status.
    pub(crate) fn run(&self, args: &[&str]) -> std::process::Output {
        self.env.run(&self.on_pool(args))
    }

    pub(crate) fn show(&self, id: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["-j", "ct", "show", id])).unwrap()
    }

    pub(crate) fn rootfs(&self, id: &str) -> PathBuf {
        PathBuf::from(self.show(id)["rootfs"].as_str().unwrap())
    }

    /// `ct dataset ls`: each subdataset's name, mountpoint and files' path.
    pub(crate) fn datasets(&self, id: &str) -> Vec<(String, Option<String>, PathBuf)> {
        let list: serde_json::Value =
            serde_json::from_str(&self.ok(&["-j", "ct", "dataset", "ls", id])).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["name"].as_str().unwrap().to_string(),
                    d["mountpoint"].as_str().map(String::from),
                    PathBuf::from(d["path"].as_str().unwrap()),
                )
            })
            .collect()
    }

    /// Where a subdataset keeps its files.
    pub(crate) fn private(&self, id: &str, dataset: &str) -> PathBuf {
        let found = self.datasets(id).into_iter().find(|d| d.0 == dataset);
        found
            .unwrap_or_else(|| panic!("{id} has dataset {dataset}"))
            .2
    }

    /// Every dataset's files are the same in two containers.
    pub(crate) fn assert_same_datasets(&self, a: &str, b: &str) {
        self.assert_same(&self.rootfs(a), &self.rootfs(b));
        let (ours, theirs) = (self.datasets(a), self.datasets(b));
        assert_eq!(ours.len(), theirs.len(), "{ours:?} {theirs:?}");
        for (x, y) in ours.iter().zip(&theirs) {
            assert_eq!((&x.0, &x.1), (&y.0, &y.1));
            self.assert_same(&x.2, &y.2);
        }
    }

    /// `ct new` from a directory; privileged on zfs-fuse, which has no idmapped mounts.
    pub(crate) fn new_ct(&self, id: &str, rootfs: &Path) {
        let mut args = vec![
            "ct",
            "new",
            "--user",
            "u1",
            "--from-dir",
            rootfs.to_str().unwrap(),
        ];
        if self.kind == Kind::Zfs {
            args.push("--privileged");
        }
        args.push(id);
        self.ok(&args);
    }

    /// Compares trees as precisely as the pool keeps them.
    pub(crate) fn assert_same(&self, a: &Path, b: &Path) {
        let precision = match self.kind {
            Kind::Zfs => Precision::ZFS_FUSE,
            _ => Precision::EXACT,
        };
        tree::assert_same(a, b, &precision);
    }

    /// Every kind of file this pool can hold (zfs-fuse has no xattrs).
    pub(crate) fn every_kind(&self, dir: &Path, tag: &str) {
        let options = Options {
            xattrs: self.kind != Kind::Zfs,
            ..Options::rootfs(tag)
        };
        build_every_kind(dir, &options);
    }

    /// `ct export [options] id archive`, which must succeed.
    pub(crate) fn export(&self, options: &[&str], id: &str, archive: &Path) {
        let mut args = vec!["ct", "export"];
        args.extend_from_slice(options);
        args.extend([id, archive.to_str().unwrap()]);
        self.ok(&args);
    }

    /// The trust an import of this pool's containers needs: device nodes in
    /// the test trees, and running privileged on zfs-fuse.
    pub(crate) fn import(&self, id: &str, archive: &Path) {
        self.ok(&[
            "ct",
            "import",
            "--trusted",
            "--as-id",
            id,
            archive.to_str().unwrap(),
        ]);
    }

    /// Nothing of ours is left: no snapshot, staged container or journal.
    pub(crate) fn assert_clean(&self) {
        let left = self.ok(&["-j", "pool", "check"]);
        assert_eq!(left.trim(), "[]", "pool check found: {left}");
        if let Some(z) = &self._zpool {
            let snaps = zpool::zfs(&["list", "-H", "-o", "name", "-t", "snapshot", "-r", &z.name]);
            assert!(snaps.trim().is_empty(), "snapshots left: {snaps}");
            let staged = zpool::zfs(&["list", "-H", "-o", "name", "-r", &z.name]);
            assert!(
                !staged.contains(".importing"),
                "staged datasets left: {staged}"
            );
        }
        if let Some(fs) = &self._fs {
            let snaps = fs.path().join("pool/snapshots");
            let left: Vec<_> = std::fs::read_dir(&snaps)
                .map(|d| {
                    d.flatten()
                        .flat_map(|e| std::fs::read_dir(e.path()).into_iter().flatten().flatten())
                        .map(|e| e.path())
                        .collect()
                })
                .unwrap_or_default();
            assert!(left.is_empty(), "btrfs snapshots left: {left:?}");
        }
    }
}

impl Drop for Pool<'_> {
    fn drop(&mut self) {
        self.env.clean_pool(&self.name);
    }
}

/// A root file system with every file kind the pool can keep, plus files in
/// subdatasets `srv` and `srv/data` on pools that have them.
fn rich_container(pool: &Pool, id: &str) {
    let src = pool.env.path(&format!("src-{}-{id}", pool.name));
    pool.every_kind(&src, id);
    pool.new_ct(id, &src);
    if pool.kind != Kind::Dir {
        pool.ok(&["ct", "dataset", "new", id, "srv"]);
        pool.ok(&["ct", "dataset", "new", id, "srv/data"]);
        let (srv, data) = (pool.private(id, "srv"), pool.private(id, "srv/data"));
        std::fs::write(srv.join("in-srv"), "srv").unwrap();
        std::fs::write(data.join("in-data"), vec![5u8; 1 << 20]).unwrap();
        std::os::unix::fs::chown(data.join("in-data"), Some(33), Some(33)).unwrap();
    }
}

/// What a container of `rich_container` sees in its subdatasets.
fn assert_sees_rich_datasets(at: impl Fn(&str) -> PathBuf) {
    assert_eq!(std::fs::read(at("/srv/in-srv")).unwrap(), b"srv");
    let data = at("/srv/data/in-data");
    assert_eq!(std::fs::read(&data).unwrap(), vec![5u8; 1 << 20]);
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&data).unwrap()),
        33
    );
}

fn round_trips(kind: Kind) {
    require!(is_root(), "needs root");
    let env = Env::new();
    let Some(pool) = Pool::new(&env, kind) else {
        return;
    };
    rich_container(&pool, "orig");
    let orig = pool.rootfs("orig");
    let stem = match kind {
        Kind::Dir => "tar",
        _ => "dat",
    };
    for compression in ["off", "gzip", "zstd", "auto"] {
        let archive = env.path(&format!("{}-{compression}.tar", pool.name));
        pool.export(&["--compression", compression], "orig", &archive);
        let listing = tar_names(&archive).join("\n");
        assert!(
            listing.contains(&format!("rootfs/base.{stem}")),
            "{listing}"
        );
        if kind != Kind::Dir {
            assert!(
                listing.contains(&format!("rootfs/srv/data/base.{stem}")),
                "{listing}"
            );
        }
        let id = format!("copy-{compression}");
        pool.import(&id, &archive);
        pool.assert_same(&orig, &pool.rootfs(&id));
        assert_eq!(pool.show(&id)["datasets"], pool.show("orig")["datasets"]);
        pool.assert_same_datasets("orig", &id);
        if kind == Kind::Zfs {
            as_the_original_reads_it(&pool, &archive, compression);
        }
    }
    if kind != Kind::Dir {
        let archive = env.path("never.tar");
        let never = archive.to_str().unwrap();
        let args = [
            "--pool",
            &pool.name,
            "ct",
            "export",
            "--single-layer",
            "orig",
            never,
        ];
        let err = env.fails(&args, 2);
        assert!(err.contains("--single-layer is for tar archives"), "{err}");
        assert!(!archive.exists());
        // One tree of what the container sees: the subdatasets' files at
        // their mountpoints, no dataset mounts left.
        let archive = env.path(&format!("{}-tar.tar", pool.name));
        pool.export(&["--format", "tar"], "orig", &archive);
        pool.import("merged", &archive);
        assert_eq!(pool.show("merged")["datasets"], serde_json::json!([]));
        let merged = pool.rootfs("merged");
        assert_sees_rich_datasets(|path| merged.join(path.trim_start_matches('/')));
        if original::have_ruby() {
            let work = env.path(&format!("original-{}-tar", pool.name));
            let seen = original::import(&archive, "-", Path::new("-"), &work).unwrap();
            assert!(seen.dataset_mounts().is_empty(), "{:?}", seen.mounts);
            assert_sees_rich_datasets(|path| seen.seen(path));
        }
    }
    pool.assert_clean();
}

/// The original's importer on our native zfs archive: what it receives
/// shows the container our container sees, through its dataset mounts;
/// a zstd archive it refuses loudly.
fn as_the_original_reads_it(pool: &Pool, archive: &Path, compression: &str) {
    if !original::have_ruby() {
        eprintln!("SKIPPED part: ruby is not installed");
        return;
    }
    let z = pool._zpool.as_ref().unwrap();
    let rel = format!("original/{compression}");
    let work = pool.env.path(&format!("original-{compression}"));
    let read = original::import(archive, &z.ds(&rel), &z.mnt.join(&rel), &work);
    if compression == "zstd" {
        let err = read.err().expect("the original cannot read zstd streams");
        assert!(err.contains("base of / not found"), "{err}");
        return;
    }
    let seen = read.unwrap();
    assert_eq!(seen.datasets, ["srv", "srv/data"]);
    assert_eq!(
        seen.dataset_mounts(),
        [
            ("srv".into(), "/srv".into()),
            ("srv/data".into(), "/srv/data".into())
        ]
    );
    pool.assert_same(&pool.rootfs("orig"), &seen.seen("/"));
    assert_sees_rich_datasets(|path| seen.seen(path));
}

#[test]
fn round_trips_on_zfs() {
    round_trips(Kind::Zfs);
}

#[test]
fn round_trips_on_btrfs() {
    round_trips(Kind::Btrfs);
}

fn consistent_export_of_running_container(kind: Kind) {
    require!(
        can_run_containers(),
        "needs root, LXC, uidmap and busybox-static"
    );
    let env = Env::new();
    let Some(pool) = Pool::new(&env, kind) else {
        return;
    };
    let root = env.writer_rootfs("writer");
    pool.new_ct("busy", &root);
    pool.ok(&["ct", "start", "busy"]);
    let live = pool.rootfs("busy");
    wait_for_writes(&live);
    let archive = env.path("busy.tar");
    pool.ok(&["ct", "export", "busy", archive.to_str().unwrap()]);
    assert_eq!(pool.show("busy")["state"], "running");
    let listing = tar_names(&archive).join("\n");
    assert!(listing.contains("rootfs/incremental."), "{listing}");
    pool.import("snap", &archive);
    assert_consistent(&pool.rootfs("snap"));
    pool.ok(&["ct", "start", "snap"]);
    assert_eq!(pool.show("snap")["state"], "running");

    // A tar archive holds one tar, of a snapshot taken while the container
    // was stopped: what the original reads, nothing left out. (A container
    // started once: the writer counts anew from each start.)
    pool.new_ct("busy2", &root);
    pool.ok(&["ct", "start", "busy2"]);
    let live = pool.rootfs("busy2");
    wait_for_writes(&live);
    let tar = env.path("busy-tar.tar");
    pool.export(&["--format", "tar"], "busy2", &tar);
    assert_eq!(pool.show("busy2")["state"], "running");
    let names = tar_names(&tar);
    assert!(
        names.contains(&"rootfs/base.tar.gz".to_string()),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n.contains("incremental")),
        "{names:?}"
    );
    pool.import("from-tar", &tar);
    assert_consistent(&pool.rootfs("from-tar"));
    if original::have_ruby() {
        let work = env.path("original-tar");
        let seen = original::import(&tar, "-", Path::new("-"), &work).unwrap();
        assert_consistent(&seen.seen("/"));
    }
    pool.assert_clean();
}

/// Host pid of a running container's init, as LXC says: the same pid
/// before and after an export means it was never restarted.
fn init_pid(pool: &Pool, id: &str) -> String {
    let lxc = pool.env.root().join("lxc").join(&pool.name);
    let out = std::process::Command::new("lxc-info")
        .args(["-n", id, "-P"])
        .arg(&lxc)
        .args(["-p", "-H"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `--freeze`: the last snapshot (dir: the last dump) is taken with the
/// container frozen, not stopped; it runs on as the same processes, and the
/// archive is crash-consistent.
fn consistent_export_with_freeze(kind: Kind) {
    require!(
        can_run_containers(),
        "needs root, LXC, uidmap and busybox-static"
    );
    let env = Env::new();
    let Some(pool) = Pool::new(&env, kind) else {
        return;
    };
    let root = env.writer_rootfs("writer");
    pool.new_ct("busy", &root);
    pool.ok(&["ct", "start", "busy"]);
    wait_for_writes(&pool.rootfs("busy"));
    let pid = init_pid(&pool, "busy");
    assert!(!pid.is_empty());
    let archive = env.path("busy.tar");
    pool.export(&["--freeze"], "busy", &archive);
    assert_eq!(pool.show("busy")["state"], "running");
    assert_eq!(init_pid(&pool, "busy"), pid, "restarted, not frozen");
    let names = tar_names(&archive);
    assert!(
        names.iter().any(|n| n.starts_with("rootfs/incremental.")),
        "{names:?}"
    );
    pool.import("snap", &archive);
    assert!(assert_consistent(&pool.rootfs("snap")) > 100);
    // The writer goes on writing: it was thawed.
    let log = pool.rootfs("busy").join("root/log");
    let lines = || std::fs::read_to_string(&log).map_or(0, |l| l.lines().count());
    let now = lines();
    assert!(
        wait_until(10, || lines() > now + 100),
        "the container stayed frozen"
    );
}

#[test]
fn consistent_export_with_freeze_on_dir() {
    consistent_export_with_freeze(Kind::Dir);
}

#[test]
fn consistent_export_with_freeze_on_btrfs() {
    consistent_export_with_freeze(Kind::Btrfs);
}

#[test]
fn consistent_export_with_freeze_on_zfs() {
    consistent_export_with_freeze(Kind::Zfs);
}

/// An export killed while the container is frozen leaves it frozen only
/// until the next command replays the journal; one interrupted (SIGTERM)
/// thaws it itself.
#[test]
fn a_frozen_container_is_always_thawed() {
    require!(
        can_run_containers(),
        "needs root, LXC, uidmap and busybox-static"
    );
    let env = Env::new();
    let Some(pool) = Pool::new(&env, Kind::Dir) else {
        return;
    };
    let root = env.writer_rootfs("writer");
    pool.new_ct("busy", &root);
    pool.ok(&["ct", "start", "busy"]);
    let log = pool.rootfs("busy").join("root/log");
    wait_for_writes(&pool.rootfs("busy"));
    let lines = || std::fs::read_to_string(&log).map_or(0, |l| l.lines().count());
    let writes_on = || {
        let now = lines();
        wait_until(10, || lines() > now + 50)
    };
    let archive = env.path("busy.tar");
    let export = |point: &str| {
        pool.env
            .cmd()
            .env("OSCTL_FAILPOINT", point)
            .args(["--pool", &pool.name, "ct", "export", "--freeze", "busy"])
            .arg(&archive)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let killed = export("export-after-freeze").wait_with_output().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(killed.status.signal(), Some(9));
    let now = lines();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(
        lines(),
        now,
        "the dead export's freeze holds until the replay"
    );
    pool.ok(&["ct", "ls"]);
    assert!(writes_on(), "the replay did not thaw the container");
    assert!(!archive.exists());

    let mut cmd = pool.env.cmd();
    cmd.args(["--pool", &pool.name, "ct", "export", "--freeze", "busy"])
        .arg(&archive);
    let paused = stopped_at(cmd, "export-after-freeze");
    signal(&paused, libc::SIGTERM);
    signal(&paused, libc::SIGCONT);
    let out = paused.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(143),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        writes_on(),
        "the interrupted export left the container frozen"
    );
    assert!(!archive.exists());
    assert_eq!(pool.show("busy")["state"], "running");

    // A freeze that does not complete: under the cgroup v1 freezer a process
    // waiting in a FUSE request whose server hangs keeps the cgroup FREEZING;
    // here the failpoint makes the polls read that while the kernel has
    // frozen the container. SIGTERM ends the wait and thaws it; left alone,
    // the export gives up after 30 s, thaws it and says why in one line.
    if !Path::new("/sys/fs/cgroup/freezer").is_dir() {
        eprintln!("SKIPPED (the stuck freeze): no cgroup v1 freezer, LXC's tools freeze");
        return;
    }
    let stuck = || {
        pool.env
            .cmd()
            .env("OSCTL_FAILPOINT", "freezer-settles:fail")
            .args(["--pool", &pool.name, "ct", "export", "--freeze", "busy"])
            .arg(&archive)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let frozen = || {
        let before = lines();
        std::thread::sleep(std::time::Duration::from_millis(300));
        lines() == before
    };
    let waiting = stuck();
    assert!(wait_until(10, frozen), "the freeze did not begin");
    signal(&waiting, libc::SIGTERM);
    let out = waiting.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{err}");
    assert!(
        writes_on(),
        "the interrupted freeze left the container frozen"
    );
    assert!(!archive.exists());

    let began = std::time::Instant::now();
    let out = stuck().wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(began.elapsed().as_secs() >= 30, "gave up early: {err}");
    assert!(
        err.contains("cannot freeze container 'busy'")
            && err.contains("still says FREEZING after 30 s")
            && err.lines().count() == 1,
        "{err}"
    );
    assert!(writes_on(), "the freeze given up left the container frozen");
    assert!(!archive.exists());
    assert_eq!(pool.show("busy")["state"], "running");
    pool.assert_clean();
}

#[test]
fn consistent_export_of_a_running_container_on_zfs() {
    consistent_export_of_running_container(Kind::Zfs);
}

#[test]
fn consistent_export_of_a_running_container_on_btrfs() {
    consistent_export_of_running_container(Kind::Btrfs);
}

/// A running container sees each subdataset where its dataset mount says,
/// unshifted files shown through an idmapped mount when it is unprivileged
/// (btrfs), and its writes land in the dataset's private/ as it sees them.
fn datasets_are_mounted_into_running_containers(kind: Kind) {
    require!(
        can_run_containers(),
        "needs root, LXC, uidmap and busybox-static"
    );
    let env = Env::new();
    let Some(pool) = Pool::new(&env, kind) else {
        return;
    };
    let root = env.busybox_rootfs("r");
    pool.new_ct("c1", &root);
    pool.ok(&["ct", "dataset", "new", "c1", "srv"]);
    pool.ok(&["ct", "dataset", "new", "c1", "srv/data"]);
    pool.ok(&[
        "ct",
        "dataset",
        "new",
        "--mountpoint",
        "/mnt/cache",
        "c1",
        "cache",
    ]);
    let err = pool.fails(&[
        "ct",
        "dataset",
        "new",
        "--mountpoint",
        "/srv",
        "c1",
        "other",
    ]);
    assert!(
        err.contains("mounts dataset 'srv' at /srv already"),
        "{err}"
    );
    let listed: Vec<_> = pool
        .datasets("c1")
        .into_iter()
        .map(|(name, at, _)| (name, at.unwrap()))
        .collect();
    assert_eq!(
        listed,
        [
            ("cache", "/mnt/cache"),
            ("srv", "/srv"),
            ("srv/data", "/srv/data")
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    let data = pool.private("c1", "srv/data");
    std::fs::write(data.join("owned"), "by 33\n").unwrap();
    std::os::unix::fs::chown(data.join("owned"), Some(33), Some(33)).unwrap();
    pool.ok(&["ct", "start", "c1"]);
    let seen = pool.ok(&["ct", "exec", "c1", "--", "ls", "-ln", "/srv/data/owned"]);
    assert!(seen.contains(" 33 ") && seen.contains("owned"), "{seen}");
    pool.ok(&[
        "ct",
        "exec",
        "c1",
        "--",
        "sh",
        "-c",
        "echo hi > /mnt/cache/new",
    ]);
    let new = pool.private("c1", "cache").join("new");
    assert_eq!(std::fs::read_to_string(&new).unwrap(), "hi\n");
    let meta = std::fs::metadata(&new).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid()),
        (0, 0),
        "stored as the container sees it"
    );
    let err = pool.fails(&["ct", "dataset", "del", "c1", "cache"]);
    assert!(err.contains("stop it"), "{err}");
    pool.ok(&["ct", "stop", "c1"]);
    pool.ok(&["ct", "dataset", "del", "c1", "cache"]);
    pool.ok(&["ct", "start", "c1"]);
    let out = pool.ok(&["ct", "exec", "c1", "--", "ls", "/mnt"]);
    assert_eq!(
        out.trim(),
        "cache",
        "an empty mountpoint left in the rootfs"
    );
    pool.ok(&["ct", "stop", "c1"]);
    pool.assert_clean();
}

#[test]
fn datasets_are_mounted_into_running_containers_on_zfs() {
    datasets_are_mounted_into_running_containers(Kind::Zfs);
}

#[test]
fn datasets_are_mounted_into_running_containers_on_btrfs() {
    datasets_are_mounted_into_running_containers(Kind::Btrfs);
}

#[test]
fn containers_move_between_kinds_of_pools_as_tar() {
    require!(is_root(), "needs root");
    let env = Env::new();
    let (Some(dir), Some(zfs), Some(btrfs)) = (
        Pool::new(&env, Kind::Dir),
        Pool::new(&env, Kind::Zfs),
        Pool::new(&env, Kind::Btrfs),
    ) else {
        return;
    };
    let src = env.path("src");
    // No xattrs: the zfs pool is on the way.
    let options = Options {
        xattrs: false,
        ..Options::rootfs("mover")
    };
    build_every_kind(&src, &options);
    dir.new_ct("mover", &src);
    let mut from = &dir;
    for to in [&zfs, &btrfs, &dir] {
        let archive = env.path(&format!("{}-to-{}.tar", from.name, to.name));
        from.export(&["--format", "tar"], "mover", &archive);
        // A native archive cannot go to another kind of pool; tar can.
        // Each pool has its own user u1, with its own ids.
        let id = format!("from-{}", from.name);
        let archive = archive.to_str().unwrap();
        to.ok(&[
            "ct",
            "import",
            "--trusted",
            "--as-user",
            "u1",
            "--as-id",
            &id,
            archive,
        ]);
        // Compared as coarsely as zfs-fuse keeps things: it was on the way.
        tree::assert_same(&src, &to.rootfs(&id), &Precision::ZFS_FUSE);
        from = to;
        if to.kind != Kind::Dir {
            to.ok(&["ct", "del", &id]);
            to.new_ct("mover", &src);
        }
    }
    let native = env.path("native-zfs.tar");
    zfs.ok(&["ct", "export", "mover", native.to_str().unwrap()]);
    let err = btrfs.fails(&[
        "ct",
        "import",
        "--trusted",
        "--as-id",
        "x",
        native.to_str().unwrap(),
    ]);
    assert!(err.contains("only a zfs pool can take"), "{err}");
    let err = dir.fails(&[
        "ct",
        "import",
        "--trusted",
        "--as-id",
        "x",
        native.to_str().unwrap(),
    ]);
    assert!(err.contains("only a zfs pool can take"), "{err}");
    for p in [&dir, &zfs, &btrfs] {
        p.assert_clean();
    }
}

/// How the subdataset `var` of a hand-made zfs archive holds its files.
#[derive(PartialEq)]
enum Layout {
    /// vpsAdminOS's: in the dataset's own `private/`, shown to the container
    /// by a dataset mount; the archive carries hooks too.
    Original,
    /// Older osctl-rs versions': at the dataset's top, no mount.
    OlderOsctlRs,
}

/// A zfs archive made the way vpsAdminOS's osctl makes one: `zfs send`
/// streams, one gzipped and one raw, of a root dataset and a subdataset
/// `var`, written in the original's order by Ruby's TarWriter.
fn zfs_archive_in_layout(pool: &Pool, layout: &Layout) -> PathBuf {
    let env = pool.env;
    let z = pool._zpool.as_ref().unwrap();
    let (src, var) = (z.ds("legacy"), z.ds("legacy/var"));
    zpool::zfs(&["create", &src]);
    zpool::zfs(&["create", &var]);
    let src_mnt = z.mnt.join("legacy");
    make_busybox_rootfs(&src_mnt.join("private"), "::respawn:/bin/sleep 1000000\n");
    let var_files = match layout {
        Layout::Original => src_mnt.join("var/private"),
        Layout::OlderOsctlRs => src_mnt.join("var"),
    };
    std::fs::create_dir_all(&var_files).unwrap();
    std::fs::write(var_files.join("in-var"), "var data\n").unwrap();
    zpool::zfs(&["snapshot", "-r", &format!("{src}@osctl-base-1690000000")]);
    let stage = env.path("stage");
    std::fs::create_dir_all(stage.join("rootfs/var")).unwrap();
    std::fs::create_dir_all(stage.join("config")).unwrap();
    std::fs::create_dir_all(stage.join("hooks")).unwrap();
    let send = |ds: &str, out: &Path, gzip: bool| {
        let cmd = format!(
            "zfs send {ds}@osctl-base-1690000000 {} > {}",
            if gzip { "| gzip" } else { "" },
            out.display()
        );
        assert!(Command::new("sh")
            .args(["-c", &cmd])
            .status()
            .unwrap()
            .success());
    };
    send(&src, &stage.join("rootfs/base.dat.gz"), true);
    send(&var, &stage.join("rootfs/var/base.dat"), false);
    // zfs-fuse calls a dataset busy for a moment after it was used.
    assert!(wait_until(10, || Command::new("zfs")
        .args(["destroy", "-r", &src])
        .status()
        .unwrap()
        .success()));
    std::fs::write(stage.join("metadata.yml"), "---\ntype: full\nformat: zfs\nuser: legacy\ngroup: \"/default\"\ncontainer: legacy-ct\ndatasets:\n- var\nexported_at: 1690000000\n").unwrap();
    std::fs::write(stage.join("config/user.yml"), "---\nugid: 100123\nuid_map:\n- 0:3400000000:65536\ngid_map:\n- 0:3400000000:65536\nstandalone: true\nattrs: {}\n").unwrap();
    std::fs::write(
        stage.join("config/group.yml"),
        "---\ncgparams: []\nattrs: {}\n",
    )
    .unwrap();
    // The mount `ct dataset new` writes in the original, as Ruby dumps it.
    let mounts = match layout {
        Layout::Original => "mounts:\n- fs:\n  mountpoint: \"/var\"\n  type: bind\n  opts: bind,create=dir,rw\n  automount: true\n  dataset: var\n  temporary: false\n",
        Layout::OlderOsctlRs => "mounts: []\n",
    };
    std::fs::write(stage.join("config/container.yml"), format!("---\nuser: legacy\ngroup: \"/default\"\ndataset: tank/ct/legacy-ct\ndistribution: alpine\nversion: '3.18'\narch: x86_64\nnet_interfaces: []\ncgparams: []\ndevices: []\nprlimits: []\n{mounts}autostart:\nephemeral: false\nhostname:\ndns_resolvers:\nnesting: false\nseccomp_profile:\ninit_cmd:\nraw: {{}}\nattrs: {{}}\n")).unwrap();
    std::fs::write(stage.join("hooks/pre-start"), "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::write(stage.join("hooks/notes"), "not a hook\n").unwrap();
    std::fs::write(
        stage.join("snapshots.yml"),
        "---\n- osctl-base-1690000000\n",
    )
    .unwrap();
    let mut entries = vec![
        ("metadata.yml", 0o644),
        ("config/", 0o755),
        ("config/user.yml", 0o644),
        ("config/group.yml", 0o644),
        ("config/container.yml", 0o644),
    ];
    if *layout == Layout::Original {
        // A hook's header carries its st_mode: file type bits and all.
        entries.extend([
            ("hooks/", 0o755),
            ("hooks/notes", 0o100644),
            ("hooks/pre-start", 0o100755),
        ]);
    }
    entries.extend([
        ("rootfs/", 0o755),
        ("rootfs/var/", 0o755),
        ("rootfs/base.dat.gz", 0o644),
        ("rootfs/var/base.dat", 0o644),
        ("snapshots.yml", 0o644),
    ]);
    let archive = env.path("legacy.tar");
    original::write_archive(&stage, &entries, &archive);
    archive
}

/// The original's archive of a container with a subdataset and hooks
/// imports with the same result as there: the dataset keeps its private/
/// and is mounted where its dataset mount says, hooks keep their executable
/// bit. Exported again, the original reads it back the same.
#[test]
fn original_zfs_archive_imports() {
    require!(is_root(), "needs root");
    require!(original::have_ruby(), "needs ruby (Debian package `ruby`)");
    let env = Env::new();
    let Some(pool) = Pool::new(&env, Kind::Zfs) else {
        return;
    };
    let archive = zfs_archive_in_layout(&pool, &Layout::Original);
    // Hooks take trust; the dataset mount does not.
    let err = pool.fails(&["ct", "import", archive.to_str().unwrap()]);
    assert!(
        err.contains("2 hook script(s)") && !err.contains("mounts"),
        "{err}"
    );
    pool.ok(&["ct", "import", "--trusted", archive.to_str().unwrap()]);
    let ct = pool.show("legacy-ct");
    assert_eq!(ct["user"], "legacy");
    assert_eq!(ct["datasets"], serde_json::json!(["var"]));
    let (name, mountpoint, var) = pool.datasets("legacy-ct").remove(0);
    assert_eq!(
        (name.as_str(), mountpoint.as_deref()),
        ("var", Some("/var"))
    );
    assert!(var.ends_with("legacy-ct/var/private"), "{}", var.display());
    assert_eq!(
        std::fs::read_to_string(var.join("in-var")).unwrap(),
        "var data\n"
    );
    assert!(pool.rootfs("legacy-ct").join("bin/busybox").is_file());
    let hooks = pool
        ._zpool
        .as_ref()
        .unwrap()
        .mnt
        .join("osctl/hooks/ct/legacy-ct");
    for (hook, mode) in [("pre-start", 0o700), ("notes", 0o600)] {
        let meta = std::fs::metadata(hooks.join(hook)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, mode, "{hook}");
    }
    pool.assert_clean();
    pool.ok(&["ct", "set", "privileged", "legacy-ct", "on"]);
    pool.ok(&["ct", "start", "legacy-ct"]);
    let out = pool.ok(&["ct", "exec", "legacy-ct", "--", "cat", "/var/in-var"]);
    assert_eq!(out, "var data\n");
    let listed = pool.ok(&["ct", "exec", "legacy-ct", "--", "ls", "-a", "/var"]);
    assert_eq!(
        listed.split_whitespace().collect::<Vec<_>>(),
        [".", "..", "in-var"]
    );

    // Back to the original, from the running container.
    let again = env.path("again.tar");
    pool.export(&[], "legacy-ct", &again);
    let z = pool._zpool.as_ref().unwrap();
    let work = env.path("original-again");
    let seen = original::import(&again, &z.ds("back"), &z.mnt.join("back"), &work).unwrap();
    assert_eq!(seen.dataset_mounts(), [("var".into(), "/var".into())]);
    assert_eq!(
        std::fs::read_to_string(seen.seen("/var/in-var")).unwrap(),
        "var data\n"
    );
    assert!(seen.seen("/bin/busybox").is_file());
    assert_eq!(
        seen.hooks,
        [("notes".into(), 0o644), ("pre-start".into(), 0o755)]
    );
    pool.assert_clean();
}

/// An archive of an older osctl-rs, whose subdataset streams hold the files
/// at the dataset's top, is refused, not imported with an empty dataset.
#[test]
fn archive_of_the_older_dataset_layout_is_refused() {
    require!(is_root(), "needs root");
    require!(original::have_ruby(), "needs ruby (Debian package `ruby`)");
    let env = Env::new();
    let Some(pool) = Pool::new(&env, Kind::Zfs) else {
        return;
    };
    let archive = zfs_archive_in_layout(&pool, &Layout::OlderOsctlRs);
    let err = pool.fails(&["ct", "import", archive.to_str().unwrap()]);
    assert!(
        err.contains("dataset 'var' has no private/") && err.contains("older osctl-rs"),
        "{err}"
    );
    assert_eq!(pool.ok(&["-j", "ct", "ls"]).trim(), "[]");
    pool.assert_clean();
}

/// A directory with a `zfs` (or `btrfs`) that runs the real one, except that
/// `send` writes a little and then dies: a stream that breaks mid-way.
fn dying_sender(env: &Env, program: &str) -> PathBuf {
    let dir = env.path("fake-bin");
    std::fs::create_dir_all(&dir).unwrap();
    let real = String::from_utf8(
        Command::new("sh")
            .args(["-c", &format!("command -v {program}")])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let script = format!(
        "#!/bin/sh\nif [ \"$1\" = send ]; then \"{real}\" \"$@\" | head -c 4096; echo 'send: stream broke' >&2; exit 1; fi\nexec \"{real}\" \"$@\"\n"
    );
    let path = dir.join(program);
    std::fs::write(&path, script).unwrap();
    super::support::set_mode(&path, 0o755);
    dir
}

fn failures_leave_nothing(kind: Kind) {
    require!(
        can_run_containers(),
        "needs root, LXC, uidmap and busybox-static"
    );
    let env = Env::new();
    let Some(pool) = Pool::new(&env, kind) else {
        return;
    };
    let program = if kind == Kind::Zfs { "zfs" } else { "btrfs" };
    let root = env.busybox_rootfs("r");
    pool.new_ct("c1", &root);
    pool.ok(&["ct", "dataset", "new", "c1", "srv"]);
    pool.ok(&["ct", "start", "c1"]);

    // The sender dies mid-stream: into a pipe (compressed), or writing
    // straight into the archive (off).
    let fake = dying_sender(&env, program);
    let path = format!("{}:{}", fake.display(), std::env::var("PATH").unwrap());
    let out_dir = env.path("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    for compression in ["auto", "off"] {
        let out = env
            .cmd()
            .env("PATH", &path)
            .args(["--pool", &pool.name, "ct", "export", "--compression"])
            .args([compression, "c1"])
            .arg(out_dir.join("c1.tar"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{compression}: {err}");
        assert!(
            err.contains("stream broke") && err.lines().count() == 1,
            "{compression}: {err}"
        );
        assert_eq!(pool.show("c1")["state"], "running");
        assert_eq!(
            std::fs::read_dir(&out_dir).unwrap().count(),
            0,
            "{compression}: no partial archive"
        );
        pool.assert_clean();
    }

    let archive = env.path("c1.tar");
    pool.export(&["--compression", "off"], "c1", &archive);
    pool.ok(&["ct", "export", "c1", &format!("{}.auto", archive.display())]);

    // The imports go to a second host whose subuid and subgid files are its
    // own: the inventories compare those, and parallel tests change /etc's.
    // It has no user yet, so each import creates the archive's (and a crash
    // must take that user and its subordinate ids away again). The first
    // pool goes first: a test has one zpool at a time.
    drop(pool);
    let host = Env::with_private_subids();
    let Some(target) = Pool::new(&host, kind) else {
        return;
    };
    target.ok(&["user", "del", "u1"]);

    // A broken stream in an archive: the import fails and leaves nothing.
    let mut bytes = std::fs::read(&archive).unwrap();
    let at = bytes.windows(8).position(|w| w == b"base.dat").unwrap();
    // Well past the header, inside the stream's data.
    let inside = at + 512 + 2048;
    for b in &mut bytes[inside..inside + 64] {
        *b ^= 0x5a;
    }
    std::fs::write(&archive, &bytes).unwrap();
    let err = target.fails(&[
        "ct",
        "import",
        "--trusted",
        "--as-id",
        "broken",
        archive.to_str().unwrap(),
    ]);
    assert!(err.contains("rootfs/base.dat"), "{err}");
    assert_eq!(target.run(&["ct", "show", "broken"]).status.code(), Some(1));
    target.assert_clean();

    // Killed at every step of a native import, the received datasets under
    // the staging name or already placed under the final id: the next
    // command undoes all of it.
    std::fs::rename(format!("{}.auto", archive.display()), &archive).unwrap();
    let before = inventory(&target);
    for point in [
        "import-in-stream",
        "import-after-place",
        "import-before-commit",
        "import-after-accounts",
        "import-after-rename",
    ] {
        let import = ["ct", "import", "--trusted", "--as-id", "crashed"];
        let args = [
            &["--pool", &target.name][..],
            &import,
            &[archive.to_str().unwrap()],
        ];
        super::faults::killed_at(target.env, point, &args.concat());
        target.ok(&["ct", "ls"]);
        assert_eq!(inventory(&target), before, "{point}: left behind");
    }
    // Not killed, it imports (the container ran: its directory's group,
    // its root's on the host, came with the stream and is sealed away).
    let args = ["ct", "import", "--trusted", "--as-id", "crashed"];
    target.ok(&[&args[..], &[archive.to_str().unwrap()]].concat());
    assert_eq!(target.show("crashed")["state"], "stopped");
    target.ok(&["ct", "del", "crashed"]);
    target.assert_clean();

    // An id whose dataset exists already (not a container of ours) is refused, untouched.
    if let Some(z) = &target._zpool {
        let stray = z.ds("osctl/ct/stray");
        zpool::zfs(&["create", &stray]);
        let err = target.fails(&[
            "ct",
            "import",
            "--trusted",
            "--as-id",
            "stray",
            archive.to_str().unwrap(),
        ]);
        assert!(err.contains("container 'stray' already exists"), "{err}");
        assert_eq!(
            zpool::zfs(&["list", "-H", "-o", "name", &stray]).trim(),
            stray
        );
        // zfs-fuse calls a dataset busy for a moment after it was looked at.
        let destroy = || {
            Command::new("zfs")
                .args(["destroy", &stray])
                .status()
                .unwrap()
                .success()
        };
        assert!(wait_until(10, destroy));
    }
    target.assert_clean();
}

#[test]
fn failures_leave_nothing_on_zfs() {
    failures_leave_nothing(Kind::Zfs);
}

#[test]
fn failures_leave_nothing_on_btrfs() {
    failures_leave_nothing(Kind::Btrfs);
}

/// The zfs commands an import runs, each 3-15 ms on zfs-fuse: what the
/// import of a 200 MiB container spends besides the receive. A query that
/// only confirms what the import saw under its lock is not run again.
#[test]
fn a_zfs_import_runs_no_needless_command() {
    require!(is_root(), "needs root");
    let env = Env::new();
    let Some(pool) = Pool::new(&env, Kind::Zfs) else {
        return;
    };
    pool.new_ct("orig", &env.busybox_rootfs("orig"));
    let archive = env.path("orig.tar");
    pool.export(&["--compression", "off"], "orig", &archive);
    let archive = archive.to_str().unwrap();
    let import = [
        "-v",
        "ct",
        "import",
        "--trusted",
        "--as-id",
        "copy",
        archive,
    ];
    let out = pool.run(&import);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let run: Vec<&str> = stderr
        .lines()
        .filter_map(|line| line.strip_prefix("osctl: ran zfs "))
        .map(|line| line.split(' ').next().unwrap())
        .collect();
    // The pool's tree; the id and the staging name free; the stream; its
    // snapshot dropped; the staged tree renamed; its tree read and mounted.
    let wanted = [
        "get", "get", "get", "recv", "destroy", "rename", "get", "mount",
    ];
    assert_eq!(run, wanted, "{stderr}");
    pool.assert_same(&pool.rootfs("orig"), &pool.rootfs("copy"));
    pool.assert_clean();
}

/// `rootfs/base.dat` with `extra` bytes appended to its data (header size
/// adjusted; checksums.yml is left as it was).
fn with_data_after_stream(archive: &[u8], extra: &[u8]) -> Vec<u8> {
    let (at, size) = stream_entry(archive);
    let mut data = archive[at + 512..at + 512 + size].to_vec();
    data.extend_from_slice(extra);
    let entry = rawtar::Entry::file("rootfs/base.dat", &data);
    let mut out = archive[..at].to_vec();
    out.extend_from_slice(&rawtar::header(&entry));
    out.extend_from_slice(&data);
    out.resize(padded(out.len()), 0);
    out.extend_from_slice(&archive[at + 512 + padded(size)..]);
    out
}

/// The archive with the stream's entry made shorter than the stream, the
/// stream's last bytes left where the entry's padding is: the entry ends
/// one byte into its last block, so the entries after it stay in place.
fn with_stream_past_its_entry(archive: &[u8]) -> Vec<u8> {
    let (at, size) = stream_entry(archive);
    // zfs records are 8-byte aligned: never one byte into a block.
    assert_eq!(size % 8, 0);
    let cut = (size % 512 + 511) % 512;
    let data = &archive[at + 512..at + 512 + size];
    let entry = rawtar::Entry::file("rootfs/base.dat", &data[..size - cut]);
    let mut out = archive[..at].to_vec();
    out.extend_from_slice(&rawtar::header(&entry));
    out.extend_from_slice(&archive[at + 512..]);
    out
}

fn padded(n: usize) -> usize {
    n.div_ceil(512) * 512
}

/// Where the header of `rootfs/base.dat` is, and its size.
fn stream_entry(archive: &[u8]) -> (usize, usize) {
    let mut at = 0;
    loop {
        let header = &archive[at..at + 512];
        let name_len = header[..100].iter().position(|&b| b == 0).unwrap_or(100);
        let size_field = std::str::from_utf8(&header[124..135]).unwrap();
        let size =
            usize::from_str_radix(size_field.trim_matches(|c| c == '\0' || c == ' '), 8).unwrap();
        if &header[..name_len] == b"rootfs/base.dat" {
            return (at, size);
        }
        at += 512 + padded(size);
    }
}

/// An uncompressed zfs stream is received from the archive file itself
/// while the judge reads the same bytes, under a read lease: an archive
/// held open for writing gets no lease and goes through the judge's pipe
/// instead; one opened for writing while it is received is refused, and
/// nothing is left.
#[test]
fn zfs_archive_opened_for_writing_while_received_is_refused() {
    require!(is_root(), "needs root");
    let env = Env::with_private_subids();
    let Some(pool) = Pool::new(&env, Kind::Zfs) else {
        return;
    };
    pool.new_ct("c1", &small_rootfs(&env));
    let archive = env.path("c1.tar");
    pool.export(&["--compression", "off"], "c1", &archive);
    let held = std::fs::OpenOptions::new()
        .append(true)
        .open(&archive)
        .unwrap();
    pool.import("held", &archive);
    pool.assert_same(&pool.rootfs("c1"), &pool.rootfs("held"));
    drop(held);

    let before = inventory(&pool);
    let mut import = pool.env.cmd();
    import
        .args(["--pool", &pool.name, "ct", "import", "--trusted"])
        .args(["--as-id", "raced"])
        .arg(&archive);
    let osctl = super::support::stopped_at(import, "import-beside");
    // Not blocking: the open fails at once, and the lease's break begins.
    use std::os::unix::fs::OpenOptionsExt;
    let writer = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&archive);
    assert!(writer.is_err(), "the archive was not leased");
    super::support::signal(&osctl, libc::SIGCONT);
    let out = osctl.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("'rootfs/base.dat'")
            && err.contains("opened for writing while it was received"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(inventory(&pool), before);
    pool.assert_clean();

    // The receiver reads the file, and must not read past the entry: a
    // stream whose end lies beyond it is refused.
    let past = env.path("past.tar");
    std::fs::write(
        &past,
        with_stream_past_its_entry(&std::fs::read(&archive).unwrap()),
    )
    .unwrap();
    let err = pool.fails(&[
        "ct",
        "import",
        "--trusted",
        "--as-id",
        "past",
        past.to_str().unwrap(),
    ]);
    assert!(err.contains("runs on past the entry's end"), "{err}");
    assert_eq!(inventory(&pool), before);
    pool.assert_clean();
}

/// On zfs an uncompressed stream is received straight from the archive file
/// (the judge reading the same bytes beside it), and the stream must end
/// exactly at the end of its entry: an entry that holds more than the stream
/// is refused, and leaves nothing behind.
#[test]
fn zfs_stream_entry_with_data_after_the_stream_is_refused() {
    require!(is_root(), "needs root");
    let env = Env::new();
    let Some(pool) = Pool::new(&env, Kind::Zfs) else {
        return;
    };
    let root = env.busybox_rootfs("r");
    pool.new_ct("c1", &root);
    let archive = env.path("c1.tar");
    pool.export(&["--compression", "off"], "c1", &archive);
    pool.import("copy", &archive);
    pool.assert_same(&pool.rootfs("c1"), &pool.rootfs("copy"));

    let spoiled = env.path("spoiled.tar");
    let bytes = std::fs::read(&archive).unwrap();
    std::fs::write(&spoiled, with_data_after_stream(&bytes, &[0x5a; 3000])).unwrap();
    let err = pool.fails(&[
        "ct",
        "import",
        "--trusted",
        "--as-id",
        "spoiled",
        spoiled.to_str().unwrap(),
    ]);
    assert!(
        err.contains("rootfs/base.dat") && err.contains("data after the end of the stream"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        env.run(&["--pool", &pool.name, "ct", "show", "spoiled"])
            .status
            .code()
            == Some(1)
    );
    pool.assert_clean();
}

#[test]
fn import_onto_a_full_zpool_leaves_nothing() {
    require!(is_root(), "needs root");
    for attempt in 1..=3 {
        match import_onto_a_full_zpool() {
            Some(ZpoolRun::DaemonDied) => eprintln!(
                "attempt {attempt}: the zfs-fuse daemon died when the zpool filled up; \
                 again on a new daemon and zpool"
            ),
            Some(ZpoolRun::Checked) | None => return,
        }
    }
    panic!("the zfs-fuse daemon died every time the zpool filled up");
}

enum ZpoolRun {
    Checked,
    /// zfs-fuse's own bug: its daemon dies now and then when a zpool fills
    /// up, and then nothing the import did can be checked.
    DaemonDied,
}

/// None where the test is skipped.
fn import_onto_a_full_zpool() -> Option<ZpoolRun> {
    let env = Env::new();
    let big = Pool::new(&env, Kind::Dir)?;
    let root = env.noisy_rootfs("noisy", 120);
    big.new_ct("big", &root);
    let archive = env.path("big.tar");
    big.export(&["--format", "tar"], "big", &archive);
    let z = TestZpool::create(96)?;
    env.ok(&[
        "pool",
        "install",
        "--backend",
        "zfs",
        "--dataset",
        &z.ds("osctl"),
        "tiny",
    ]);
    // Trusted: its user's ids are those of the source pool's user, on this
    // same host; the import creates that user and must remove it again.
    let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        env.fails(
            &[
                "--pool",
                "tiny",
                "ct",
                "import",
                "--trusted",
                archive.to_str().unwrap(),
            ],
            1,
        )
    }));
    if z.daemon_died() {
        return Some(ZpoolRun::DaemonDied);
    }
    let err = failed.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    assert!(err.to_lowercase().contains("space"), "{err}");
    let left = zpool::zfs(&["list", "-H", "-o", "name", "-r", &z.ds("osctl/ct")]);
    assert_eq!(left.trim(), z.ds("osctl/ct"), "datasets left: {left}");
    assert_eq!(env.ok(&["--pool", "tiny", "-j", "ct", "ls"]).trim(), "[]");
    assert_eq!(env.ok(&["--pool", "tiny", "-j", "user", "ls"]).trim(), "[]");
    assert_eq!(
        env.ok(&["--pool", "tiny", "-j", "pool", "check"]).trim(),
        "[]"
    );
    env.clean_pool("tiny");
    Some(ZpoolRun::Checked)
}

/// Whether a regular file below `dir`, outside `skip`, holds `needle`.
fn holds_outside(dir: &Path, skip: &Path, needle: &[u8]) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let path = e.path();
        let ft = e.file_type().unwrap();
        if path == skip {
            false
        } else if ft.is_dir() {
            holds_outside(&path, skip, needle)
        } else {
            ft.is_file()
                && std::fs::read(&path)
                    .is_ok_and(|data| data.windows(needle.len()).any(|w| w == needle))
        }
    })
}

/// The UUID of the subvolume at `path`, as `btrfs subvolume show` prints it.
fn subvolume_uuid(path: &Path) -> [u8; 16] {
    let out = Command::new("btrfs")
        .args(["subvolume", "show"])
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let hex: String = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("UUID:"))
        .unwrap()
        .trim()
        .replace('-', "");
    let mut uuid = [0u8; 16];
    for (i, byte) in uuid.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    uuid
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A btrfs archive made from a real export of container `a`, with an
/// incremental stream added whose parent is container `b`'s subvolume (its
/// UUID is all it takes): `btrfs receive -C` alone would make a copy of `b`
/// the imported container. The import refuses it, leaves nothing behind, and
/// `b`'s data is found nowhere but in `b`.
#[test]
fn btrfs_import_cannot_take_another_containers_data() {
    use osctl_core::storage::btrfs_stream as stream;
    require!(is_root(), "needs root");
    let env = Env::new();
    let Some(pool) = Pool::new(&env, Kind::Btrfs) else {
        return;
    };
    const SECRET: &[u8] = b"only container b may read this";
    for id in ["a", "b"] {
        let src = env.path(&format!("src-{id}"));
        pool.every_kind(&src, id);
        if id == "b" {
            std::fs::write(src.join("secret-of-b"), SECRET).unwrap();
        }
        pool.new_ct(id, &src);
    }
    let archive = env.path("a.tar");
    pool.export(&["--compression", "off"], "a", &archive);
    let stage = env.path("stage");
    std::fs::create_dir(&stage).unwrap();
    run_ok(
        Command::new("tar")
            .arg("-xf")
            .arg(&archive)
            .arg("-C")
            .arg(&stage),
    );
    let listing = tar_names(&archive).join("\n");

    let b_dataset = pool.rootfs("b").parent().unwrap().to_path_buf();
    let b_uuid = subvolume_uuid(&b_dataset);
    let incremental = [
        stream::encode_stream_header(1),
        stream::encode_command(
            1,
            stream::C_SNAPSHOT,
            &[
                (stream::A_PATH, b"osctl-incr-1"),
                (stream::A_UUID, &[0x5a; 16]),
                (stream::A_CTRANSID, &9u64.to_le_bytes()),
                (stream::A_CLONE_UUID, &b_uuid),
                (stream::A_CLONE_CTRANSID, &1u64.to_le_bytes()),
            ],
        ),
        stream::encode_command(1, stream::C_END, &[]),
    ]
    .concat();
    std::fs::write(stage.join("rootfs/incremental.dat"), &incremental).unwrap();
    let snapshots = std::fs::read_to_string(stage.join("snapshots.yml")).unwrap();
    std::fs::write(
        stage.join("snapshots.yml"),
        snapshots.replacen("---\n", "---\n- osctl-incr-1\n", 1),
    )
    .unwrap();
    // The archive's order, the incremental stream after the base, no checksums.
    let mut entries: Vec<&str> = Vec::new();
    for name in listing.lines() {
        match name.trim_start_matches("./") {
            "checksums.yml" | "snapshots.yml" => {}
            "rootfs/base.dat" => entries.extend(["rootfs/base.dat", "rootfs/incremental.dat"]),
            other => entries.push(other),
        }
    }
    entries.push("snapshots.yml");
    let evil = env.path("evil.tar");
    run_ok(
        Command::new("tar")
            .args(["--no-recursion", "-cf"])
            .arg(&evil)
            .arg("-C")
            .arg(&stage)
            .args(&entries),
    );

    let err = pool.fails(&[
        "ct",
        "import",
        "--trusted",
        "--as-id",
        "thief",
        evil.to_str().unwrap(),
    ]);
    let b_shown = stream::format_uuid(&b_uuid);
    assert!(
        err.contains("rootfs/incremental.dat")
            && err.contains("btrfs stream refused")
            && err.contains("(snapshot): its parent is subvolume")
            && err.contains(&b_shown),
        "{err}"
    );
    assert_eq!(
        env.run(&["--pool", &pool.name, "ct", "show", "thief"])
            .status
            .code(),
        Some(1)
    );
    pool.assert_clean();
    let fs = pool._fs.as_ref().unwrap();
    assert!(!holds_outside(&fs.path().join("pool"), &b_dataset, SECRET));
    // The archive's own streams are fine: without the hostile one it imports.
    pool.import("a-again", &archive);

    // Without the guard: `btrfs receive -C` makes a copy of b from the same streams.
    let scratch = fs.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    for file in ["rootfs/base.dat", "rootfs/incremental.dat"] {
        run_ok(
            Command::new("btrfs")
                .args(["receive", "-C", "-f"])
                .arg(stage.join(file))
                .arg(&scratch),
        );
    }
    assert_eq!(
        std::fs::read(scratch.join("osctl-incr-1/private/secret-of-b")).unwrap(),
        SECRET
    );
    for entry in std::fs::read_dir(&scratch).unwrap() {
        run_ok(
            Command::new("btrfs")
                .args(["subvolume", "delete"])
                .arg(entry.unwrap().path()),
        );
    }
}

// --- Issue 10: native streams are judged like tar streams ----------------

/// What an import must leave as it found it: containers, users, lock files,
/// the lines of the (private) subordinate-id files, and the storage's
/// datasets, subvolumes and snapshots.
fn inventory(pool: &Pool) -> Vec<String> {
    let mut out = Vec::new();
    for (what, key) in [("ct", "id"), ("user", "name")] {
        let list: serde_json::Value = serde_json::from_str(&pool.ok(&["-j", what, "ls"])).unwrap();
        for item in list.as_array().unwrap() {
            out.push(format!("{what} {}", item[key].as_str().unwrap()));
        }
    }
    let locks = pool.env.root().join("locks").join(&pool.name);
    for e in std::fs::read_dir(locks).into_iter().flatten() {
        out.push(format!("lock {}", e.unwrap().file_name().to_string_lossy()));
    }
    assert!(
        pool.env.has_private_subids(),
        "an inventory compares subuid lines: use Env::with_private_subids"
    );
    let subuid = pool.env.subuid_file();
    for file in [subuid.clone(), subuid.with_file_name("subgid")] {
        out.push(std::fs::read_to_string(file).unwrap_or_default());
    }
    if let Some(fs) = &pool._fs {
        for dir in ["pool/ct", "pool/snapshots"] {
            for e in std::fs::read_dir(fs.path().join(dir)).into_iter().flatten() {
                out.push(format!(
                    "{dir}/{}",
                    e.unwrap().file_name().to_string_lossy()
                ));
            }
        }
    }
    if let Some(z) = &pool._zpool {
        out.push(zpool::zfs(&[
            "list", "-H", "-o", "name", "-t", "all", "-r", &z.name,
        ]));
    }
    out
}

/// Imports `archive` as `id` without `--trusted`: it must fail with one
/// error line and leave nothing. Returns the error.
fn refused_import(pool: &Pool, id: &str, archive: &Path) -> String {
    let before = inventory(pool);
    let err = pool.fails(&["ct", "import", "--as-id", id, archive.to_str().unwrap()]);
    assert_eq!(
        inventory(pool),
        before,
        "the refused import of {id} left something: {err}"
    );
    pool.assert_clean();
    err
}

fn mknod(path: &Path, kind: &str, major: u32, minor: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    run_ok(Command::new("mknod").args(["-m", "0666"]).arg(path).args([
        kind,
        &major.to_string(),
        &minor.to_string(),
    ]));
}

/// A small root file system: a file and a setuid-root program.
fn small_rootfs(env: &Env) -> PathBuf {
    let src = env.path("small");
    if !src.exists() {
        testkit::fs::write_file(src.join("etc/hostname"), "small\n", 0o644, 0, 0);
        testkit::fs::write_file(src.join("rootid"), "#!/bin/sh\nid -u\n", 0o4755, 0, 0);
    }
    src
}

/// Root's own, mode 0700: no host user reaches the root file system.
fn assert_sealed(dir: &Path) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(dir).unwrap();
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.gid()),
        (0o700, 0, 0),
        "{}",
        dir.display()
    );
}

/// The container's directory is root's own with mode 0700 after `ct new`,
/// and after an import of a container whose directory was open and owned
/// by a host user when it was exported (a native stream carries both);
/// returns the imported container's directory.
fn container_dir_is_sealed(pool: &Pool) -> PathBuf {
    pool.ok(&["ct", "new", "--user", "u1", "--from-dir"]
        .iter()
        .copied()
        .chain([small_rootfs(pool.env).to_str().unwrap(), "open"])
        .collect::<Vec<_>>());
    let dir = pool.rootfs("open").parent().unwrap().to_path_buf();
    assert_sealed(&dir);
    testkit::fs::chown(&dir, 1000, 1000);
    super::support::set_mode(&dir, 0o755);
    let archive = pool.env.path("open.tar");
    pool.export(&["--compression", "off"], "open", &archive);
    pool.ok(&[
        "ct",
        "import",
        "--as-id",
        "opened",
        archive.to_str().unwrap(),
    ]);
    let imported = pool.rootfs("opened").parent().unwrap().to_path_buf();
    assert_sealed(&imported);
    imported
}

#[test]
fn container_dir_is_sealed_on_dir() {
    require!(is_root(), "needs root");
    let env = Env::new();
    let Some(pool) = Pool::new(&env, Kind::Dir) else {
        return;
    };
    container_dir_is_sealed(&pool);
}

#[test]
fn container_dir_is_sealed_on_btrfs() {
    require!(is_root(), "needs root");
    let env = Env::new();
    let Some(pool) = Pool::new(&env, Kind::Btrfs) else {
        return;
    };
    container_dir_is_sealed(&pool);
}

/// Issue 10, hole 2: a btrfs stream made device nodes and foreign owners
/// that the same tree as a tar stream could not (the started container read
/// the host's block device). Each stream comes from a real `btrfs send` of a
/// pool's container, with its honest user.yml (65536 ids); without
/// `--trusted` each is refused, and nothing is left.
#[test]
fn hole_2_btrfs_stream_with_device_node_and_foreign_owners() {
    require!(is_root(), "needs root");
    let env = Env::with_private_subids();
    let Some(pool) = Pool::new(&env, Kind::Btrfs) else {
        return;
    };
    type Spoil = fn(&Path);
    let cases: [(&str, Spoil, &[&str]); 3] = [
        (
            "loopdev",
            |rootfs| mknod(&rootfs.join("dev/loop0"), "b", 7, 0),
            // btrfs send makes new inodes under a temporary name first.
            &["(mknod): path \"o", "\": device node (block 7:0) refused"],
        ),
        (
            "foreign",
            |rootfs| {
                let owned = rootfs.join("etc/owned");
                testkit::fs::write_file(owned, "x", 0o644, 4_000_000_000, 0)
            },
            &["(chown): path \"private/etc/owned\": uid 4000000000 is outside the container's id map (ids below 65536)"],
        ),
        (
            "suid",
            |rootfs| testkit::fs::write_file(rootfs.join("bin/su"), "x", 0o4755, 70000, 0),
            &["(chown): path \"private/bin/su\": uid 70000 is outside"],
        ),
    ];
    for (id, spoil, _) in &cases {
        pool.new_ct(id, &small_rootfs(&env));
        spoil(&pool.rootfs(id));
        pool.export(
            &["--compression", "off"],
            id,
            &env.path(&format!("{id}.tar")),
        );
        pool.ok(&["ct", "del", id]);
    }
    // The imports would create the user: its lines must not stay either.
    pool.ok(&["user", "del", "u1"]);
    for (id, _, expect) in &cases {
        let err = refused_import(&pool, id, &env.path(&format!("{id}.tar")));
        assert!(
            err.contains("'rootfs/base.dat'")
                && err.contains("btrfs stream refused")
                && expect.iter().all(|part| err.contains(part)),
            "{id}: {err}"
        );
    }
    // A device node is the admin's call; the id is free again.
    pool.import("loopdev", &env.path("loopdev.tar"));
    assert!(pool.rootfs("loopdev").join("dev/loop0").exists());
}

/// Issue 10, hole 3: a zfs stream whose dataset root (the container's
/// directory) was 0755 kept that mode, and its setuid-root program in
/// `private/` gave every host user root. The directory is root's own with
/// mode 0700 after the import, whatever the stream said; a stream with a
/// device node or a foreign owner is refused by the judge of its records
/// (naming the inode, as the tree is never kept), leaving nothing.
#[test]
fn hole_3_zfs_stream_with_open_container_dir() {
    require!(is_root(), "needs root");
    let env = Env::with_private_subids();
    let Some(pool) = Pool::new(&env, Kind::Zfs) else {
        return;
    };
    let imported = container_dir_is_sealed(&pool);
    let program = imported.join("private/rootid");
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&program).unwrap();
    assert_eq!((meta.mode() & 0o7777, meta.uid()), (0o4755, 0));
    let as_nobody = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            "test",
            "-e",
        ])
        .arg(&program)
        .status()
        .unwrap();
    assert!(
        !as_nobody.success(),
        "a host user reaches {}",
        program.display()
    );

    // Unprivileged containers (never started here): their owners are
    // judged against u1's map.
    let spoiled: [(&str, &str); 2] = [
        ("zdev", "device node (block 7:0) refused"),
        // zfs-fuse takes no uid past 2^31.
        ("zowner", "uid 2000000000 is outside"),
    ];
    for (id, _) in spoiled {
        pool.ok(&[
            "ct",
            "new",
            "--user",
            "u1",
            "--from-dir",
            small_rootfs(&env).to_str().unwrap(),
            id,
        ]);
        let rootfs = pool.rootfs(id);
        match id {
            "zdev" => mknod(&rootfs.join("dev/loop0"), "b", 7, 0),
            _ => testkit::fs::write_file(rootfs.join("etc/owned"), "x", 0o644, 2_000_000_000, 0),
        }
        pool.export(
            &["--compression", "off"],
            id,
            &env.path(&format!("{id}.tar")),
        );
    }
    for id in ["zdev", "zowner", "open", "opened"] {
        pool.ok(&["ct", "del", id]);
    }
    pool.ok(&["user", "del", "u1"]);
    for (id, expect) in spoiled {
        let err = refused_import(&pool, id, &env.path(&format!("{id}.tar")));
        assert!(
            err.contains("zfs stream") && err.contains(": inode ") && err.contains(expect),
            "{id}: {err}"
        );
    }
}

/// Issue 10, hole 7, through a btrfs stream: its `set_xattr` commands are
/// judged as a tar stream's attributes are. Without `--trusted`, privileged
/// attributes refuse the import; `user.*` and file capabilities are kept.
#[test]
fn hole_7_privileged_xattrs_in_a_btrfs_stream() {
    require!(is_root(), "needs root");
    let env = Env::with_private_subids();
    let Some(pool) = Pool::new(&env, Kind::Btrfs) else {
        return;
    };
    let cap = testkit::fs::capability_xattr(testkit::fs::CAP_NET_RAW);
    let marks: [(&str, &str, &[u8]); 3] = [
        ("overlay", "trusted.overlay.redirect", b"/etc/shadow"),
        ("ima", "security.ima", b"\x03\x02\x04"),
        ("kept", "user.note", b"n"),
    ];
    for (id, name, value) in marks {
        pool.new_ct(id, &small_rootfs(&env));
        let marked = pool.rootfs(id).join("etc/hostname");
        testkit::fs::set_xattr(&marked, name, value);
        testkit::fs::set_xattr(&marked, "security.capability", &cap);
        pool.export(
            &["--compression", "off"],
            id,
            &env.path(&format!("{id}.tar")),
        );
        pool.ok(&["ct", "del", id]);
    }
    pool.ok(&["user", "del", "u1"]);
    for (id, name, _) in &marks[..2] {
        let err = refused_import(&pool, id, &env.path(&format!("{id}.tar")));
        let expect = format!(
            "(set_xattr): path \"private/etc/hostname\": extended attribute {name} refused"
        );
        assert!(err.contains(&expect), "{err}");
    }
    pool.ok(&["ct", "import", env.path("kept.tar").to_str().unwrap()]);
    let marked = pool.rootfs("kept").join("etc/hostname");
    let get = super::hostile::get_xattr;
    assert_eq!(get(&marked, "user.note").as_deref(), Some(&b"n"[..]));
    assert_eq!(get(&marked, "security.capability"), Some(cap));
}
