//! The btrfs storage backend on a real btrfs (a loop-mounted image): datasets,
//! snapshots, native streams both ways, and cleanup after failures.
//! Skips (with a printed reason) without root, btrfs-progs or loop devices.

mod support_btrfs;

use std::fs::{self, File};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use osctl_core::archive::CopyError;
use osctl_core::cmd::Cmd;
use osctl_core::host::{Host, PoolEntry};
use osctl_core::pool::Pool;
use osctl_core::storage::{staging_name, Backend, Storage};
use osctl_core::Error;
use support_btrfs::{assert_same_tree, chown, fill_every_kind, is_sparse, write_file, LoopBtrfs};

/// A btrfs pool on a fresh file system, with its host state in a temporary root.
struct Fixture {
    pool: Pool,
    work: tempfile::TempDir,
    // Last: unmounted after everything else is dropped.
    fs: LoopBtrfs,
}

impl Fixture {
    fn new(mount_options: &str) -> Option<Fixture> {
        let fs = LoopBtrfs::new(mount_options)?;
        let work = tempfile::tempdir().unwrap();
        let host = Host::at(work.path().join("osctl-root"));
        let pool = Pool::install(
            &host,
            PoolEntry {
                name: "bt".into(),
                backend: Backend::Btrfs,
                location: fs.path().join("osctl").to_string_lossy().into_owned(),
            },
        )
        .expect("install a btrfs pool");
        Some(Fixture { pool, work, fs })
    }

    fn storage(&self) -> &dyn Storage {
        self.pool.storage.as_ref()
    }

    fn stream_file(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    /// Sends a dataset's snapshot into a file in the work directory.
    fn send(
        &self,
        ct: &str,
        rel: &str,
        snap: &str,
        from: Option<&str>,
        compressed: bool,
    ) -> PathBuf {
        let file = self.stream_file(&format!("{}-{}-{snap}.dat", ct, rel.replace('/', "_")));
        let mut reader = self
            .storage()
            .send(ct, rel, snap, from, compressed)
            .expect("start btrfs send");
        let mut out = File::create(&file).unwrap();
        reader.copy_to_file(&mut out).expect("btrfs send");
        file
    }

    /// Feeds a stream file to the storage's receiver, as an import does.
    fn receive(&self, ct: &str, rel: &str, file: &Path) -> osctl_core::Result<()> {
        let mut receiver = self.storage().receive(ct, rel)?;
        let what = format!("into '{ct}'");
        match receiver.copy_from(&mut File::open(file).unwrap(), drop) {
            Ok(_) => receiver.finish(&what),
            Err(CopyError::Sink(e)) => Err(Error::exec(
                format!("cannot receive {what}"),
                receiver.explain(e),
            )),
            Err(CopyError::Source(e)) => Err(e),
        }
    }

    fn snapshots_dir(&self) -> PathBuf {
        self.fs.path().join("osctl/snapshots")
    }

    /// Nothing of any container left: no subvolume, no snapshot directory.
    fn assert_empty(&self) {
        assert_eq!(self.storage().containers().unwrap(), Vec::<String>::new());
        assert_eq!(self.fs.subvolumes(), Vec::<String>::new());
        let leftovers: Vec<_> = fs::read_dir(self.snapshots_dir())
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(leftovers.is_empty(), "left in snapshots/: {leftovers:?}");
    }
}

const DATASETS: [&str; 3] = ["", "var", "var/log"];

/// A container `c1` with subdatasets `var` and `var/log`, every kind of file
/// in each.
fn populated_container(fx: &Fixture) -> PathBuf {
    let s = fx.storage();
    for rel in DATASETS {
        s.create("c1", rel).unwrap();
    }
    let rootfs = s.rootfs("c1");
    chown(&rootfs.join("var/log"), 0, 4);
    fs::set_permissions(rootfs.join("var/log"), fs::Permissions::from_mode(0o2775)).unwrap();
    fill_every_kind(&rootfs.join("etc"), "root");
    fill_every_kind(&rootfs.join("var/lib"), "var");
    fill_every_kind(&rootfs.join("var/log/app"), "log");
    rootfs
}

/// Changes in every dataset between the base and the incremental snapshot.
fn modify(rootfs: &Path) {
    write_file(&rootfs.join("etc/plain"), b"changed", 0o600, 0, 0);
    fs::remove_file(rootfs.join("etc/owned.link")).unwrap();
    fs::rename(
        rootfs.join("etc/compressible.txt"),
        rootfs.join("etc/moved.txt"),
    )
    .unwrap();
    write_file(&rootfs.join("etc/new/file"), b"new", 0o644, 12, 34);
    fs::remove_dir(rootfs.join("etc/empty")).unwrap();
    write_file(&rootfs.join("var/lib/more"), b"more", 0o644, 0, 0);
    fs::remove_file(rootfs.join("var/lib/fifo")).unwrap();
    write_file(
        &rootfs.join("var/log/app/today"),
        b"log line\n",
        0o640,
        0,
        4,
    );
}

/// Export (base while "running", incremental after), import into a staging
/// container, compare, commit under the final id, destroy everything.
fn round_trip(fx: &Fixture, compressed: bool) {
    let s = fx.storage();
    let root = fx.fs.path().join("osctl");
    for dir in ["conf", "log", "state"] {
        assert!(root.join(dir).is_dir(), "{dir} in the pool directory");
    }
    let rootfs = populated_container(fx);
    assert_eq!(s.subdatasets("c1").unwrap(), ["var", "var/log"]);

    s.snapshot("c1", "osctl-base").unwrap();
    assert_eq!(s.snapshots("c1").unwrap(), ["osctl-base"]);
    for rel in DATASETS {
        assert_eq!(
            s.can_send_compressed("c1", rel).unwrap(),
            compressed,
            "{rel:?}"
        );
    }
    let base: Vec<PathBuf> = DATASETS
        .iter()
        .map(|rel| fx.send("c1", rel, "osctl-base", None, compressed))
        .collect();
    modify(&rootfs);
    s.snapshot("c1", "osctl-incr").unwrap();
    let incr: Vec<PathBuf> = DATASETS
        .iter()
        .map(|rel| fx.send("c1", rel, "osctl-incr", Some("osctl-base"), compressed))
        .collect();
    if compressed {
        let dump = Cmd::new("btrfs")
            .args(["receive", "--dump", "-f"])
            .arg(&base[0])
            .run()
            .unwrap();
        assert!(
            dump.contains("encoded_write"),
            "a compressed stream carries encoded writes"
        );
    }

    let staging = staging_name("c2");
    let snapshots = ["osctl-incr".to_string(), "osctl-base".to_string()];
    for (i, rel) in DATASETS.iter().enumerate() {
        fx.receive(&staging, rel, &base[i]).unwrap();
        fx.receive(&staging, rel, &incr[i]).unwrap();
        s.finish_receive(&staging, rel, &snapshots).unwrap();
    }
    assert_same_tree(&rootfs, &s.rootfs(&staging));
    assert!(is_sparse(&s.rootfs(&staging).join("etc/sparse")));
    assert_eq!(s.subdatasets(&staging).unwrap(), ["var", "var/log"]);
    assert_eq!(s.snapshots(&staging).unwrap(), Vec::<String>::new());
    assert!(
        !fx.snapshots_dir().join(&staging).exists(),
        "received snapshots deleted"
    );
    assert_eq!(
        fs::metadata(s.path(&staging, "")).unwrap().mode() & 0o777,
        0o700
    );

    s.rename(&staging, "c2").unwrap();
    assert_eq!(s.containers().unwrap(), ["c1", "c2"]);
    assert!(!s.exists(&staging).unwrap());
    assert_same_tree(&rootfs, &s.rootfs("c2"));
    // The imported datasets are writable subvolumes.
    for rel in DATASETS {
        fs::write(s.path("c2", rel).join("written-after-import"), b"x").unwrap();
    }

    s.destroy_snapshot("c1", "osctl-base").unwrap();
    s.destroy_snapshot("c1", "osctl-incr").unwrap();
    s.destroy_snapshot("c1", "osctl-incr").unwrap(); // missing is fine
    assert_eq!(s.snapshots("c1").unwrap(), Vec::<String>::new());
    s.destroy("c1", "").unwrap();
    s.destroy("c2", "").unwrap();
    s.destroy("c2", "").unwrap(); // missing is fine
    fx.assert_empty();
}

#[test]
fn round_trip_through_streams() {
    let Some(fx) = Fixture::new("") else { return };
    round_trip(&fx, false);
}

#[test]
fn round_trip_through_compressed_streams() {
    let Some(fx) = Fixture::new("compress=zstd") else {
        return;
    };
    round_trip(&fx, true);
}

#[test]
fn compression_property_enables_compressed_send() {
    let Some(fx) = Fixture::new("") else { return };
    let s = fx.storage();
    s.create("c1", "").unwrap();
    s.create("c1", "var").unwrap();
    assert!(!s.can_send_compressed("c1", "").unwrap());
    Cmd::new("btrfs")
        .args(["property", "set"])
        .arg(s.path("c1", "var"))
        .args(["compression", "zstd"])
        .run()
        .unwrap();
    assert!(s.can_send_compressed("c1", "var").unwrap());
    assert!(!s.can_send_compressed("c1", "").unwrap());
    s.destroy("c1", "").unwrap();
    fx.assert_empty();
}

/// `btrfs receive` alone reads our streams: nothing in them is ours only.
#[test]
fn plain_btrfs_receive_reads_our_streams() {
    let Some(fx) = Fixture::new("") else { return };
    let s = fx.storage();
    s.create("c1", "").unwrap();
    let rootfs = s.rootfs("c1");
    fill_every_kind(&rootfs.join("data"), "plain");
    s.snapshot("c1", "a").unwrap();
    let full = fx.send("c1", "", "a", None, false);
    modify_root_only(&rootfs);
    s.snapshot("c1", "b").unwrap();
    let incr = fx.send("c1", "", "b", Some("a"), false);

    let target = fx.fs.path().join("plain");
    fs::create_dir(&target).unwrap();
    for stream in [&full, &incr] {
        Cmd::new("btrfs")
            .args(["receive", "-f"])
            .arg(stream)
            .arg(&target)
            .run()
            .unwrap();
    }
    // Received under the snapshots' names.
    assert_same_tree(&rootfs, &target.join("b").join("private"));

    for name in ["a", "b"] {
        Cmd::new("btrfs")
            .args(["subvolume", "delete"])
            .arg(target.join(name))
            .run()
            .unwrap();
    }
    s.destroy("c1", "").unwrap();
    fx.assert_empty();
}

fn modify_root_only(rootfs: &Path) {
    write_file(&rootfs.join("data/plain"), b"changed", 0o600, 0, 0);
    fs::remove_file(rootfs.join("data/owned.link")).unwrap();
    write_file(&rootfs.join("data/new"), b"new", 0o644, 12, 34);
}

/// Garbage and truncated streams fail with the dataset named, and destroying
/// the half-received staging container removes every trace.
#[test]
fn broken_streams_leave_nothing_after_destroy() {
    let Some(fx) = Fixture::new("") else { return };
    let s = fx.storage();
    s.create("c1", "").unwrap();
    s.create("c1", "var").unwrap();
    fill_every_kind(&s.rootfs("c1").join("var/big"), "big");
    s.snapshot("c1", "base").unwrap();
    let root_stream = fx.send("c1", "", "base", None, false);
    let var_stream = fx.send("c1", "var", "base", None, false);

    let staging = staging_name("c2");
    // A subdataset cannot be finished before its container's root dataset.
    fx.receive(&staging, "var", &var_stream).unwrap();
    let early = s.finish_receive(&staging, "var", &["base".into()]);
    assert!(matches!(early, Err(Error::Invalid(_))), "{early:?}");
    s.destroy(&staging, "var").unwrap();
    fx.receive(&staging, "", &root_stream).unwrap();
    s.finish_receive(&staging, "", &["base".into()]).unwrap();

    // Cut in the middle of the data: btrfs leaves a half-received subvolume.
    let truncated = fx.stream_file("truncated.dat");
    let data = fs::read(&var_stream).unwrap();
    fs::write(&truncated, &data[..data.len() / 2]).unwrap();
    let err = fx.receive(&staging, "var", &truncated).unwrap_err();
    assert!(err.to_string().contains("btrfs receive"), "{err}");
    assert!(
        fx.fs.subvolumes().iter().any(|l| l.contains(".recv")),
        "a partial subvolume is left for destroy to find"
    );
    let err = s
        .finish_receive(&staging, "var", &["base".into()])
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("dataset 'var' of container 'c2.importing'"),
        "{msg}"
    );

    // Garbage does not get past the stream guard.
    let garbage = fx.stream_file("garbage.dat");
    fs::write(&garbage, b"this is not a btrfs stream, not at all").unwrap();
    let err = fx.receive(&staging, "var/log", &garbage).unwrap_err();
    assert!(matches!(err, Error::Archive(_)), "{err}");
    assert!(err.to_string().contains("not a btrfs send stream"), "{err}");

    s.destroy(&staging, "").unwrap();
    assert_eq!(s.containers().unwrap(), ["c1"]);
    assert!(!fx.snapshots_dir().join(&staging).exists());
    assert!(
        !fx.fs
            .subvolumes()
            .iter()
            .any(|l| l.contains("c2.importing")),
        "{:?}",
        fx.fs.subvolumes()
    );
    s.destroy("c1", "").unwrap();
    fx.assert_empty();
}

#[test]
fn datasets_snapshots_and_views() {
    let Some(fx) = Fixture::new("") else { return };
    let s = fx.storage();
    s.create("c1", "").unwrap();
    assert!(matches!(s.create("c1", ""), Err(Error::Exists(_))));
    let rootfs = s.rootfs("c1");
    assert!(matches!(s.create("c1", "var/log"), Err(Error::NotFound(_))));
    s.create("c1", "var").unwrap();
    assert!(matches!(s.create("c1", "var"), Err(Error::Exists(_))));
    s.create("c1", "var/log").unwrap();
    assert!(matches!(s.create("c1", "../x"), Err(Error::Invalid(_))));

    // An empty directory gives way to the subdataset, owner and mode kept.
    fs::create_dir(rootfs.join("srv")).unwrap();
    chown(&rootfs.join("srv"), 7, 8);
    fs::set_permissions(rootfs.join("srv"), fs::Permissions::from_mode(0o750)).unwrap();
    s.create("c1", "srv").unwrap();
    let meta = fs::metadata(rootfs.join("srv")).unwrap();
    assert_eq!((meta.ino(), meta.uid(), meta.gid()), (256, 7, 8));
    assert_eq!(meta.mode() & 0o7777, 0o750);
    // One with files in it does not, nor does a symlink.
    write_file(&rootfs.join("opt/keep"), b"keep", 0o644, 0, 0);
    assert!(matches!(s.create("c1", "opt"), Err(Error::Exists(_))));
    assert_eq!(fs::read(rootfs.join("opt/keep")).unwrap(), b"keep");
    std::os::unix::fs::symlink("/", rootfs.join("link")).unwrap();
    assert!(s.create("c1", "link").is_err());
    assert!(s.create("c1", "link/tmp").is_err());
    assert_eq!(s.subdatasets("c1").unwrap(), ["srv", "var", "var/log"]);

    write_file(&rootfs.join("var/in-var"), b"v", 0o644, 0, 0);
    write_file(&rootfs.join("var/log/in-log"), b"l", 0o644, 0, 0);
    s.snapshot("c1", "s").unwrap();
    assert!(matches!(s.snapshot("c1", "s"), Err(Error::Exists(_))));
    assert!(matches!(s.snapshot("c1", "../s"), Err(Error::Invalid(_))));
    fs::write(rootfs.join("var/in-var"), b"changed later").unwrap();

    let var = s.snapshot_view("c1", "var", "s").unwrap();
    assert_eq!(fs::read(var.path().join("in-var")).unwrap(), b"v");
    // Snapshots are not recursive: the nested one is an empty directory.
    assert_eq!(fs::read_dir(var.path().join("log")).unwrap().count(), 0);
    let log = s.snapshot_view("c1", "var/log", "s").unwrap();
    assert!(log.path().join("in-log").is_file());
    let root = s.snapshot_view("c1", "", "s").unwrap();
    assert!(root.path().join("private/opt/keep").is_file());
    assert!(
        fs::write(root.path().join("private/new"), b"x").is_err(),
        "read-only"
    );
    assert!(matches!(
        s.snapshot_view("c1", "var", "nope"),
        Err(Error::NotFound(_))
    ));
    drop((var, log, root));

    // Destroying a subdataset takes its children and their snapshots along.
    s.destroy("c1", "var").unwrap();
    assert_eq!(s.subdatasets("c1").unwrap(), ["srv"]);
    assert!(matches!(
        s.snapshot_view("c1", "var/log", "s"),
        Err(Error::NotFound(_))
    ));
    assert!(s.snapshot_view("c1", "", "s").is_ok());
    assert_eq!(s.snapshots("c1").unwrap(), ["s"]);
    s.destroy_snapshot("c1", "s").unwrap();
    assert!(!fx.snapshots_dir().join("c1").exists());

    // A subvolume made inside the container under a name that is no
    // dataset name: refused as a subdataset, removed with the container.
    Cmd::new("btrfs")
        .args(["subvolume", "create"])
        .arg(rootfs.join("Bad Name"))
        .run()
        .unwrap();
    let err = s.subdatasets("c1").unwrap_err();
    assert!(err.to_string().contains("Bad Name"), "{err}");
    s.destroy("c1", "").unwrap();
    fx.assert_empty();
}

#[test]
fn rename_refuses_a_taken_name() {
    let Some(fx) = Fixture::new("") else { return };
    let s = fx.storage();
    s.create("a", "").unwrap();
    s.create("b", "").unwrap();
    s.snapshot("a", "s").unwrap();
    assert!(matches!(s.rename("a", "b"), Err(Error::Exists(_))));
    s.rename("a", "c").unwrap();
    assert_eq!(s.containers().unwrap(), ["b", "c"]);
    assert_eq!(s.snapshots("c").unwrap(), ["s"]);
    for ct in ["b", "c"] {
        s.destroy(ct, "").unwrap();
    }
    fx.assert_empty();
}

/// Needs no btrfs at all: the check is on the location's file system.
#[test]
fn install_refuses_a_location_off_btrfs() {
    let work = tempfile::tempdir().unwrap();
    let probe = rustix::fs::statfs(work.path()).unwrap();
    #[allow(clippy::unnecessary_cast)]
    if probe.f_type as i64 == 0x9123683E {
        eprintln!("SKIP: the temporary directory is on btrfs");
        return;
    }
    let host = Host::at(work.path().join("root"));
    let err = Pool::install(
        &host,
        PoolEntry {
            name: "bt".into(),
            backend: Backend::Btrfs,
            location: work.path().join("pool").to_string_lossy().into_owned(),
        },
    )
    .unwrap_err();
    assert!(matches!(err, Error::Refused(_)), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("pool 'bt'") && msg.contains("not on a btrfs"),
        "{msg}"
    );
    assert!(!work.path().join("pool").exists(), "nothing created");
    assert!(host.pools().unwrap().is_empty());
}

/// The tree comparison the tests above rely on notices what it must.
#[test]
fn tree_comparison_notices_differences() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIP: making device nodes and owners needs root");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    fill_every_kind(&a, "tree");
    Cmd::new("cp")
        .args(["-a", "--sparse=always"])
        .arg(&a)
        .arg(&b)
        .run()
        .unwrap();
    assert_same_tree(&a, &b);

    let differs = |change: &dyn Fn(&Path)| {
        let c = work.path().join("c");
        let _ = fs::remove_dir_all(&c);
        Cmd::new("cp").arg("-a").arg(&a).arg(&c).run().unwrap();
        change(&c);
        std::panic::catch_unwind(|| assert_same_tree(&a, &c)).is_err()
    };
    // Same size and mtime, other bytes.
    assert!(differs(&|c| {
        let file = c.join("plain");
        let mtime = fs::metadata(&file).unwrap().modified().unwrap();
        fs::write(&file, b"TREE").unwrap();
        File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
    }));
    assert!(differs(&|c| support_btrfs::set_xattr(
        &c.join("plain"),
        "user.note",
        b"other"
    )));
    assert!(differs(&|c| chown(&c.join("dangling"), 0, 0)));
    assert!(differs(&|c| {
        fs::remove_file(c.join("owned.link")).unwrap();
        fs::copy(c.join("owned"), c.join("owned.link")).unwrap();
    }));
    assert!(differs(&|c| fs::remove_file(c.join("fifo")).unwrap()));
}
