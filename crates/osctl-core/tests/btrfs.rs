//! The btrfs storage backend on a real btrfs (a loop-mounted image): datasets,
//! snapshots, native streams both ways, and cleanup after failures.
//! Skips (with a printed reason) without root, btrfs-progs or loop devices.

use osctl_core::ErrorKind;
use std::fs::{self, File};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use osctl_core::cmd::Cmd;
use osctl_core::host::{Host, PoolEntry};
use osctl_core::pool::Pool;
use osctl_core::storage::{
    self, staging_name, Backend, Dataset, NativeStreams, SendRequest, Storage,
};
use testkit::fs::{chown, is_sparse, write_file};
use testkit::loopfs::LoopFs;
use testkit::tree::{assert_same, build_every_kind, Options, Precision};

/// What a copy through btrfs streams keeps: everything but the mtimes of
/// nested subvolumes and of the directories holding them (making a subvolume
/// after the data arrived changes them).
const BTRFS: Precision = Precision {
    mount_point_mtimes: false,
    ..Precision::EXACT
};

/// Every kind of file, with attributes, `tag` in the contents.
fn fill_every_kind(dir: &Path, tag: &str) {
    build_every_kind(dir, &Options::rootfs(tag));
}

/// A btrfs pool on a fresh file system, with its host state in a temporary root.
struct Fixture {
    pool: Pool,
    work: tempfile::TempDir,
    // Last: unmounted after everything else is dropped.
    fs: LoopFs,
}

impl Fixture {
    fn new(mount_options: &str) -> Option<Fixture> {
        let fs = LoopFs::new("btrfs", 1536, mount_options)?;
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

    fn native(&self) -> &dyn NativeStreams {
        self.storage().native().expect("btrfs has native streams")
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
        let request = SendRequest {
            snapshot: snap,
            from,
            compressed,
        };
        let mut reader = storage::send(self.native(), Dataset::new(ct, rel), &request)
            .expect("start btrfs send");
        let mut out = File::create(&file).unwrap();
        reader.copy_to_file(&mut out).expect("btrfs send");
        file
    }

    /// Feeds a stream file to the storage's receiver, as an import does.
    fn receive(&self, ds: Dataset, file: &Path) -> osctl_core::Result<()> {
        let mut receiver = self.native().receive(ds, &ANY)?;
        let copied = receiver.copy_from(&mut File::open(file).unwrap(), drop);
        receiver
            .end(copied.map(drop), &format!("into '{}'", ds.ct))
            .map(drop)
    }

    /// Every subvolume on the file system, as `btrfs subvolume list` prints them.
    fn subvolumes(&self) -> Vec<String> {
        Cmd::new("btrfs")
            .args(["subvolume", "list"])
            .arg(self.fs.path())
            .run()
            .expect("btrfs subvolume list")
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn snapshots_dir(&self) -> PathBuf {
        self.fs.path().join("osctl/snapshots")
    }

    /// Nothing of any container left: no subvolume, no snapshot directory.
    fn assert_empty(&self) {
        assert_eq!(self.storage().containers().unwrap(), Vec::<String>::new());
        assert_eq!(self.subvolumes(), Vec::<String>::new());
        let leftovers: Vec<_> = fs::read_dir(self.snapshots_dir())
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(leftovers.is_empty(), "left in snapshots/: {leftovers:?}");
    }
}

const DATASETS: [&str; 3] = ["", "var", "var/log"];

/// A container `c1` with subdatasets `var` and `var/log`, every kind of file
/// in each one's `private/`.
fn populated_container(fx: &Fixture) {
    let s = fx.storage();
    for rel in DATASETS {
        s.create(Dataset::new("c1", rel)).unwrap();
    }
    let log = s.private(Dataset::new("c1", "var/log"));
    chown(&log, 0, 4);
    fs::set_permissions(&log, fs::Permissions::from_mode(0o2775)).unwrap();
    for (rel, tag) in DATASETS.iter().zip(["root", "var", "log"]) {
        fill_every_kind(&s.private(Dataset::new("c1", rel)).join("every"), tag);
    }
}

/// Each dataset's files are the same in two containers.
fn assert_same_datasets(s: &dyn Storage, a: &str, b: &str) {
    for rel in DATASETS {
        assert_same(
            &s.private(Dataset::new(a, rel)),
            &s.private(Dataset::new(b, rel)),
            &BTRFS,
        );
    }
}

/// Changes in every dataset between the base and the incremental snapshot.
fn modify(s: &dyn Storage) {
    let rootfs = s.rootfs("c1");
    write_file(rootfs.join("every/etc/hostname"), b"changed", 0o600, 0, 0);
    fs::remove_file(rootfs.join("every/home/user/owned.link")).unwrap();
    fs::rename(
        rootfs.join("every/usr/share/compressible.txt"),
        rootfs.join("every/moved.txt"),
    )
    .unwrap();
    write_file(rootfs.join("every/new/file"), b"new", 0o644, 12, 34);
    fs::remove_dir(rootfs.join("every/mnt")).unwrap();
    let var = s.private(Dataset::new("c1", "var"));
    write_file(var.join("every/more"), b"more", 0o644, 0, 0);
    fs::remove_file(var.join("every/fifo")).unwrap();
    write_file(
        s.private(Dataset::new("c1", "var/log")).join("every/today"),
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
    populated_container(fx);
    assert_eq!(s.subdatasets("c1").unwrap(), ["var", "var/log"]);

    s.snapshot("c1", "osctl-base").unwrap();
    assert_eq!(s.snapshots("c1").unwrap(), ["osctl-base"]);
    for rel in DATASETS {
        assert_eq!(
            fx.native()
                .can_send_compressed(Dataset::new("c1", rel))
                .unwrap(),
            compressed,
            "{rel:?}"
        );
    }
    let base: Vec<PathBuf> = DATASETS
        .iter()
        .map(|rel| fx.send("c1", rel, "osctl-base", None, compressed))
        .collect();
    modify(s);
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
        fx.receive(Dataset::new(&staging, rel), &base[i]).unwrap();
        fx.receive(Dataset::new(&staging, rel), &incr[i]).unwrap();
        fx.native()
            .finish_receive(Dataset::new(&staging, rel), &snapshots)
            .unwrap();
    }
    assert_same_datasets(s, "c1", &staging);
    assert!(is_sparse(s.rootfs(&staging).join("every/sparse")));
    assert_eq!(s.subdatasets(&staging).unwrap(), ["var", "var/log"]);
    assert_eq!(s.snapshots(&staging).unwrap(), Vec::<String>::new());
    assert!(
        !fx.snapshots_dir().join(&staging).exists(),
        "received snapshots deleted"
    );
    assert_eq!(
        fs::metadata(s.path(Dataset::root(&staging)))
            .unwrap()
            .mode()
            & 0o777,
        0o700
    );

    s.rename(&staging, "c2").unwrap();
    assert_eq!(s.containers().unwrap(), ["c1", "c2"]);
    assert!(!s.exists(&staging).unwrap());
    assert_same_datasets(s, "c1", "c2");
    // The imported datasets are writable subvolumes that no later stream
    // can take for a parent: the received UUID went with the read-only flag.
    for rel in DATASETS {
        let shown = Command::new("btrfs")
            .args(["subvolume", "show"])
            .arg(s.path(Dataset::new("c2", rel)))
            .output()
            .unwrap();
        let shown = String::from_utf8_lossy(&shown.stdout);
        let field = |key: &str| {
            shown
                .lines()
                .find_map(|l| l.trim().strip_prefix(key).map(str::trim))
                .map(String::from)
        };
        assert_eq!(field("Received UUID:").as_deref(), Some("-"), "{shown}");
        assert_eq!(field("Flags:").as_deref(), Some("-"), "{shown}");
    }
    for rel in DATASETS {
        fs::write(
            s.private(Dataset::new("c2", rel))
                .join("written-after-import"),
            b"x",
        )
        .unwrap();
    }

    s.destroy_snapshot("c1", "osctl-base").unwrap();
    s.destroy_snapshot("c1", "osctl-incr").unwrap();
    s.destroy_snapshot("c1", "osctl-incr").unwrap(); // missing is fine
    assert_eq!(s.snapshots("c1").unwrap(), Vec::<String>::new());
    s.destroy(Dataset::root("c1")).unwrap();
    s.destroy(Dataset::root("c2")).unwrap();
    s.destroy(Dataset::root("c2")).unwrap(); // missing is fine
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
    s.create(Dataset::root("c1")).unwrap();
    s.create(Dataset::new("c1", "var")).unwrap();
    assert!(!fx
        .native()
        .can_send_compressed(Dataset::root("c1"))
        .unwrap());
    Cmd::new("btrfs")
        .args(["property", "set"])
        .arg(s.private(Dataset::new("c1", "var")))
        .args(["compression", "zstd"])
        .run()
        .unwrap();
    assert!(fx
        .native()
        .can_send_compressed(Dataset::new("c1", "var"))
        .unwrap());
    assert!(!fx
        .native()
        .can_send_compressed(Dataset::root("c1"))
        .unwrap());
    s.destroy(Dataset::root("c1")).unwrap();
    fx.assert_empty();
}

/// `btrfs receive` alone reads our streams: nothing in them is ours only.
#[test]
fn plain_btrfs_receive_reads_our_streams() {
    let Some(fx) = Fixture::new("") else { return };
    let s = fx.storage();
    s.create(Dataset::root("c1")).unwrap();
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
    assert_same(&rootfs, &target.join("b").join("private"), &BTRFS);

    for name in ["a", "b"] {
        Cmd::new("btrfs")
            .args(["subvolume", "delete"])
            .arg(target.join(name))
            .run()
            .unwrap();
    }
    s.destroy(Dataset::root("c1")).unwrap();
    fx.assert_empty();
}

fn modify_root_only(rootfs: &Path) {
    write_file(rootfs.join("data/etc/hostname"), b"changed", 0o600, 0, 0);
    fs::remove_file(rootfs.join("data/home/user/owned.link")).unwrap();
    write_file(rootfs.join("data/new"), b"new", 0o644, 12, 34);
}

/// Garbage and truncated streams fail with the dataset named, and destroying
/// the half-received staging container removes every trace.
#[test]
fn broken_streams_leave_nothing_after_destroy() {
    let Some(fx) = Fixture::new("") else { return };
    let s = fx.storage();
    s.create(Dataset::root("c1")).unwrap();
    s.create(Dataset::new("c1", "var")).unwrap();
    fill_every_kind(&s.private(Dataset::new("c1", "var")).join("big"), "big");
    s.snapshot("c1", "base").unwrap();
    let root_stream = fx.send("c1", "", "base", None, false);
    let var_stream = fx.send("c1", "var", "base", None, false);

    let staging = staging_name("c2");
    // A subdataset cannot be finished before its container's root dataset.
    fx.receive(Dataset::new(&staging, "var"), &var_stream)
        .unwrap();
    let early = fx
        .native()
        .finish_receive(Dataset::new(&staging, "var"), &["base".into()]);
    assert!(
        early
            .as_ref()
            .is_err_and(|e| e.kind() == ErrorKind::Invalid),
        "{early:?}"
    );
    s.destroy(Dataset::new(&staging, "var")).unwrap();
    fx.receive(Dataset::root(&staging), &root_stream).unwrap();
    fx.native()
        .finish_receive(Dataset::root(&staging), &["base".into()])
        .unwrap();

    // Cut in the middle of the data: btrfs leaves a half-received subvolume.
    let truncated = fx.stream_file("truncated.dat");
    let data = fs::read(&var_stream).unwrap();
    fs::write(&truncated, &data[..data.len() / 2]).unwrap();
    let err = fx
        .receive(Dataset::new(&staging, "var"), &truncated)
        .unwrap_err();
    assert!(err.to_string().contains("btrfs receive"), "{err}");
    assert!(
        fx.subvolumes().iter().any(|l| l.contains(".recv")),
        "a partial subvolume is left for destroy to find"
    );
    let err = fx
        .native()
        .finish_receive(Dataset::new(&staging, "var"), &["base".into()])
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("dataset 'var' of container 'c2.importing'"),
        "{msg}"
    );

    // Garbage does not get past the stream guard.
    let garbage = fx.stream_file("garbage.dat");
    fs::write(&garbage, b"this is not a btrfs stream, not at all").unwrap();
    let err = fx
        .receive(Dataset::new(&staging, "var/log"), &garbage)
        .unwrap_err();
    assert!(err.kind() == ErrorKind::Archive, "{err}");
    assert!(err.to_string().contains("not a btrfs send stream"), "{err}");

    s.destroy(Dataset::root(&staging)).unwrap();
    assert_eq!(s.containers().unwrap(), ["c1"]);
    assert!(!fx.snapshots_dir().join(&staging).exists());
    assert!(
        !fx.subvolumes().iter().any(|l| l.contains("c2.importing")),
        "{:?}",
        fx.subvolumes()
    );
    s.destroy(Dataset::root("c1")).unwrap();
    fx.assert_empty();
}

#[test]
fn datasets_snapshots_and_views() {
    let Some(fx) = Fixture::new("") else { return };
    let s = fx.storage();
    s.create(Dataset::root("c1")).unwrap();
    assert!(s
        .create(Dataset::root("c1"))
        .as_ref()
        .is_err_and(|e| e.kind() == ErrorKind::Exists));
    let rootfs = s.rootfs("c1");
    assert!(s
        .create(Dataset::new("c1", "var/log"))
        .as_ref()
        .is_err_and(|e| e.kind() == ErrorKind::NotFound));
    s.create(Dataset::new("c1", "var")).unwrap();
    assert!(s
        .create(Dataset::new("c1", "var"))
        .as_ref()
        .is_err_and(|e| e.kind() == ErrorKind::Exists));
    s.create(Dataset::new("c1", "var/log")).unwrap();
    assert!(s
        .create(Dataset::new("c1", "../x"))
        .as_ref()
        .is_err_and(|e| e.kind() == ErrorKind::Invalid));

    // Each has an empty private/ of its own, beside its parent's.
    for rel in ["var", "var/log"] {
        let private = s.private(Dataset::new("c1", rel));
        assert_eq!(
            private,
            s.path(Dataset::root("c1")).join(rel).join("private")
        );
        assert_eq!(fs::read_dir(&private).unwrap().count(), 0, "{rel}");
        assert_eq!(fs::metadata(&private).unwrap().mode() & 0o7777, 0o755);
    }
    // An empty directory gives way to the subdataset (a parent's snapshot
    // shows a nested subvolume so); one with files in it does not, nor
    // does a symlink.
    let top = s.path(Dataset::root("c1"));
    fs::create_dir(top.join("srv")).unwrap();
    s.create(Dataset::new("c1", "srv")).unwrap();
    assert_eq!(fs::metadata(top.join("srv")).unwrap().ino(), 256);
    write_file(top.join("opt/keep"), b"keep", 0o644, 0, 0);
    assert!(s
        .create(Dataset::new("c1", "opt"))
        .as_ref()
        .is_err_and(|e| e.kind() == ErrorKind::Exists));
    assert_eq!(fs::read(top.join("opt/keep")).unwrap(), b"keep");
    std::os::unix::fs::symlink("/", top.join("link")).unwrap();
    assert!(s.create(Dataset::new("c1", "link")).is_err());
    assert!(s.create(Dataset::new("c1", "link/tmp")).is_err());
    fs::remove_file(top.join("link")).unwrap();
    fs::remove_dir_all(top.join("opt")).unwrap();
    assert_eq!(s.subdatasets("c1").unwrap(), ["srv", "var", "var/log"]);

    write_file(rootfs.join("opt/keep"), b"keep", 0o644, 0, 0);
    let var_files = s.private(Dataset::new("c1", "var"));
    write_file(var_files.join("in-var"), b"v", 0o644, 0, 0);
    write_file(
        s.private(Dataset::new("c1", "var/log")).join("in-log"),
        b"l",
        0o644,
        0,
        0,
    );
    s.snapshot("c1", "s").unwrap();
    assert!(s
        .snapshot("c1", "s")
        .as_ref()
        .is_err_and(|e| e.kind() == ErrorKind::Exists));
    assert!(s
        .snapshot("c1", "../s")
        .as_ref()
        .is_err_and(|e| e.kind() == ErrorKind::Invalid));
    fs::write(var_files.join("in-var"), b"changed later").unwrap();

    let var = s.snapshot_view(Dataset::new("c1", "var"), "s").unwrap();
    assert_eq!(fs::read(var.path().join("private/in-var")).unwrap(), b"v");
    // Snapshots are not recursive: the nested one is an empty directory.
    assert_eq!(fs::read_dir(var.path().join("log")).unwrap().count(), 0);
    let log = s.snapshot_view(Dataset::new("c1", "var/log"), "s").unwrap();
    assert!(log.path().join("private/in-log").is_file());
    let root = s.snapshot_view(Dataset::root("c1"), "s").unwrap();
    assert!(root.path().join("private/opt/keep").is_file());
    assert!(
        fs::write(root.path().join("private/new"), b"x").is_err(),
        "read-only"
    );
    assert!(s
        .snapshot_view(Dataset::new("c1", "var"), "nope")
        .as_ref()
        .is_err_and(|e| e.kind() == ErrorKind::NotFound));
    drop((var, log, root));

    // Destroying a subdataset takes its children and their snapshots along.
    s.destroy(Dataset::new("c1", "var")).unwrap();
    assert_eq!(s.subdatasets("c1").unwrap(), ["srv"]);
    assert!(s
        .snapshot_view(Dataset::new("c1", "var/log"), "s")
        .as_ref()
        .is_err_and(|e| e.kind() == ErrorKind::NotFound));
    assert!(s.snapshot_view(Dataset::root("c1"), "s").is_ok());
    assert_eq!(s.snapshots("c1").unwrap(), ["s"]);
    s.destroy_snapshot("c1", "s").unwrap();
    assert!(!fx.snapshots_dir().join("c1").exists());

    // A subvolume beside the datasets under a name that is no dataset name:
    // refused as a subdataset, removed with the container.
    let create_subvolume = |path: &Path| {
        Cmd::new("btrfs")
            .args(["subvolume", "create"])
            .arg(path)
            .run()
            .unwrap()
    };
    create_subvolume(&top.join("Bad Name"));
    let err = s.subdatasets("c1").unwrap_err();
    assert!(err.to_string().contains("Bad Name"), "{err}");
    Cmd::new("btrfs")
        .args(["subvolume", "delete"])
        .arg(top.join("Bad Name"))
        .run()
        .unwrap();
    // One made inside a root file system (as the container may, or as older
    // osctl-rs versions kept datasets) is the container's files: no dataset,
    // but a snapshot would show it empty, so there is none.
    create_subvolume(&rootfs.join("var"));
    assert_eq!(s.subdatasets("c1").unwrap(), ["srv"]);
    let err = s.snapshot("c1", "t").unwrap_err();
    assert!(
        (err.kind() == ErrorKind::Refused && {
            let m = err.message();
            m.contains("inside a root file system")
        }),
        "{err}"
    );
    assert!(s.snapshots("c1").unwrap().is_empty());
    s.destroy(Dataset::root("c1")).unwrap();
    fx.assert_empty();
}

#[test]
fn rename_refuses_a_taken_name() {
    let Some(fx) = Fixture::new("") else { return };
    let s = fx.storage();
    s.create(Dataset::root("a")).unwrap();
    s.create(Dataset::root("b")).unwrap();
    s.snapshot("a", "s").unwrap();
    assert!(s
        .rename("a", "b")
        .as_ref()
        .is_err_and(|e| e.kind() == ErrorKind::Exists));
    s.rename("a", "c").unwrap();
    assert_eq!(s.containers().unwrap(), ["b", "c"]);
    assert_eq!(s.snapshots("c").unwrap(), ["s"]);
    for ct in ["b", "c"] {
        s.destroy(Dataset::root(ct)).unwrap();
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
    assert!(err.kind() == ErrorKind::Refused, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("pool 'bt'") && msg.contains("not on a btrfs"),
        "{msg}"
    );
    assert!(!work.path().join("pool").exists(), "nothing created");
    assert!(host.pools().unwrap().is_empty());
}

// --- The stream guard on real streams, and the attacks it stops ----------

use osctl_core::filepolicy::FilePolicy;
use osctl_core::storage::btrfs_stream::{self as stream, StreamGuard, SubvolumeId};

/// The guard's checks of streams, without its file policy.
const ANY: FilePolicy = FilePolicy::anything();

/// What B holds and no one else may see.
const SECRET: &[u8] = b"the secret of container b";

/// `btrfs subvolume show` of a path: (UUID, received UUID) as bytes.
fn subvolume_uuids(path: &Path) -> ([u8; 16], Option<[u8; 16]>) {
    let out = Cmd::new("btrfs")
        .args(["subvolume", "show"])
        .arg(path)
        .run()
        .unwrap();
    let field = |key: &str| {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .map(|v| v.trim().replace('-', ""))
            .filter(|v| v.len() == 32)
            .map(|hex| {
                let mut uuid = [0u8; 16];
                for (i, byte) in uuid.iter_mut().enumerate() {
                    *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
                }
                uuid
            })
    };
    (field("UUID:").unwrap(), field("Received UUID:"))
}

/// The commands of a version 1 stream: (command, attributes in order).
type Commands = Vec<(u16, Vec<(u16, Vec<u8>)>)>;

fn split_stream(bytes: &[u8]) -> Commands {
    assert_eq!(&bytes[13..17], &1u32.to_le_bytes(), "a version 1 stream");
    let mut commands = Vec::new();
    let mut at = 17;
    while at < bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let kind = u16::from_le_bytes(bytes[at + 4..at + 6].try_into().unwrap());
        let mut payload = &bytes[at + 10..at + 10 + len];
        let mut attrs = Vec::new();
        while !payload.is_empty() {
            let attr = u16::from_le_bytes(payload[..2].try_into().unwrap());
            let alen = u16::from_le_bytes(payload[2..4].try_into().unwrap()) as usize;
            attrs.push((attr, payload[4..4 + alen].to_vec()));
            payload = &payload[4 + alen..];
        }
        commands.push((kind, attrs));
        at += 10 + len;
    }
    commands
}

fn join_stream(commands: &Commands) -> Vec<u8> {
    let mut out = stream::encode_stream_header(1);
    for (kind, attrs) in commands {
        let attrs: Vec<(u16, &[u8])> = attrs.iter().map(|(a, v)| (*a, v.as_slice())).collect();
        out.extend(stream::encode_command(1, *kind, &attrs));
    }
    out
}

fn guard_copy(guard: &mut StreamGuard, file: &Path) -> osctl_core::Result<(Vec<u8>, SubvolumeId)> {
    let mut out = Vec::new();
    let made = guard.copy(&mut File::open(file).unwrap(), &mut out)?;
    Ok((out, made))
}

/// `btrfs receive -C` as it is, into a directory of the same file system.
fn plain_receive(dir: &Path, stream: &Path) -> Result<String, osctl_core::cmd::ExecError> {
    fs::create_dir_all(dir).unwrap();
    Cmd::new("btrfs")
        .args(["receive", "-C", "-f"])
        .arg(stream)
        .arg(dir)
        .run()
}

/// Whether any regular file below `dir` holds `needle`.
fn tree_holds(dir: &Path, needle: &[u8]) -> bool {
    let Ok(entries) = fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            tree_holds(&e.path(), needle)
        } else {
            ft.is_file()
                && fs::read(e.path())
                    .is_ok_and(|data| data.windows(needle.len()).any(|w| w == needle))
        }
    })
}

/// Streams as `btrfs send` writes them, full and incremental, with clones
/// (reflinked copies) in both, pass the guard byte for byte; version 2 with
/// compressed data on a compressed mount too.
fn real_streams_pass(fx: &Fixture, compressed: bool) {
    let s = fx.storage();
    s.create(Dataset::root("c1")).unwrap();
    let rootfs = s.rootfs("c1");
    fill_every_kind(&rootfs.join("data"), "real");
    let reflink = |from: &str, to: &str| {
        Cmd::new("cp")
            .arg("--reflink=always")
            .arg(rootfs.join(from))
            .arg(rootfs.join(to))
            .run()
            .unwrap();
    };
    reflink("data/usr/share/compressible.txt", "data/reflinked.txt");
    s.snapshot("c1", "a").unwrap();
    let full = fx.send("c1", "", "a", None, compressed);
    modify_root_only(&rootfs);
    reflink(
        "data/usr/share/compressible.txt",
        "data/reflinked-again.txt",
    );
    s.snapshot("c1", "b").unwrap();
    let incr = fx.send("c1", "", "b", Some("a"), compressed);

    for file in [&full, &incr] {
        let dump = Cmd::new("btrfs")
            .args(["receive", "--dump", "-f"])
            .arg(file)
            .run()
            .unwrap();
        // Compressed incremental streams carry the new copy as encoded data.
        if file == &full || !compressed {
            assert!(dump.contains("\nclone"), "{} has clones", file.display());
        }
        let version = fs::read(file).unwrap()[13];
        assert_eq!(version, if compressed { 2 } else { 1 });
        if compressed && file == &full {
            assert!(dump.contains("encoded_write"), "{dump}");
        }
    }
    let (out, base) = guard_copy(&mut StreamGuard::base("c1", ANY), &full).unwrap();
    assert!(
        out == fs::read(&full).unwrap(),
        "the full stream passes unchanged"
    );
    let (sent, _) = subvolume_uuids(&fx.snapshots_dir().join("c1/root/a"));
    assert_eq!(base.uuid, sent, "the base stream names the sent snapshot");
    let (out, made) = guard_copy(&mut StreamGuard::incremental("c1", base, ANY), &incr).unwrap();
    assert!(
        out == fs::read(&incr).unwrap(),
        "the incremental stream passes unchanged"
    );
    assert_ne!(made.uuid, base.uuid);
    // Not based on anything else.
    let elsewhere = SubvolumeId {
        uuid: [7; 16],
        ..base
    };
    let err = guard_copy(&mut StreamGuard::incremental("c1", elsewhere, ANY), &incr).unwrap_err();
    assert!(
        err.to_string().contains("(snapshot): its parent is"),
        "{err}"
    );
    let err = guard_copy(&mut StreamGuard::base("c1", ANY), &incr).unwrap_err();
    assert!(
        err.to_string().contains("a base stream must create"),
        "{err}"
    );

    for snap in ["a", "b"] {
        s.destroy_snapshot("c1", snap).unwrap();
    }
    s.destroy(Dataset::root("c1")).unwrap();
    fx.assert_empty();
}

#[test]
fn real_streams_pass_the_guard_unchanged() {
    let Some(fx) = Fixture::new("") else { return };
    real_streams_pass(&fx, false);
}

#[test]
fn real_compressed_streams_pass_the_guard_unchanged() {
    let Some(fx) = Fixture::new("compress=zstd") else {
        return;
    };
    real_streams_pass(&fx, true);
}

/// Streams that would bring another container's data into an import: each
/// works with `btrfs receive -C` alone (shown first, in a scratch directory
/// of the same file system), each is refused through the storage's receive
/// and leaves nothing once the staging container is destroyed.
#[test]
fn streams_reaching_other_subvolumes_are_refused() {
    let Some(fx) = Fixture::new("") else { return };
    let s = fx.storage();
    for ct in ["a", "b"] {
        s.create(Dataset::root(ct)).unwrap();
    }
    let a_root = s.rootfs("a");
    fill_every_kind(&a_root.join("data"), "a");
    Cmd::new("cp")
        .arg("--reflink=always")
        .arg(a_root.join("data/usr/share/compressible.txt"))
        .arg(a_root.join("data/copy.txt"))
        .run()
        .unwrap();
    write_file(s.rootfs("b").join("secret"), SECRET, 0o600, 0, 0);
    s.snapshot("a", "base").unwrap();
    s.snapshot("b", "base").unwrap();
    let a_base = fx.send("a", "", "base", None, false);
    let b_base = fx.send("b", "", "base", None, false);
    let (b_uuid, _) = subvolume_uuids(&s.path(Dataset::root("b")));
    let b_id = SubvolumeId {
        uuid: b_uuid,
        ctransid: 1,
    };
    let scratch = fx.fs.path().join("scratch");
    let staging = staging_name("thief");
    let write = |name: &str, bytes: &[u8]| {
        let path = fx.stream_file(name);
        fs::write(&path, bytes).unwrap();
        path
    };
    let no_trace_left = || {
        s.destroy(Dataset::root(&staging)).unwrap();
        assert_eq!(s.containers().unwrap(), ["a", "b"]);
        assert!(!fx.subvolumes().iter().any(|l| l.contains(&staging)));
        assert!(!fx.snapshots_dir().join(&staging).exists());
        assert!(!tree_holds(&fx.fs.path().join("osctl/ct/a"), SECRET));
    };

    // 1. A's real base stream with its clone pointed at B (CRC redone).
    let mut commands = split_stream(&fs::read(&a_base).unwrap());
    let clone = commands
        .iter_mut()
        .find(|(kind, _)| *kind == stream::C_CLONE)
        .expect("the reflinked copy is sent as a clone");
    for (attr, value) in &mut clone.1 {
        if *attr == stream::A_CLONE_UUID {
            *value = b_uuid.to_vec();
        }
    }
    let edited = write("clone-from-b.dat", &join_stream(&commands));
    let err = fx.receive(Dataset::root(&staging), &edited).unwrap_err();
    assert!(err.kind() == ErrorKind::Archive, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("container 'thief.importing': btrfs stream refused at byte")
            && msg.contains("(clone): it clones from subvolume")
            && msg.contains(&stream::format_uuid(&b_uuid)),
        "{msg}"
    );
    no_trace_left();

    // 2. An incremental stream whose parent is B: a snapshot of all of B.
    let evil_incr = write(
        "snapshot-of-b.dat",
        &[
            stream::encode_stream_header(1),
            stream::encode_command(
                1,
                stream::C_SNAPSHOT,
                &[
                    (stream::A_PATH, b"stolen"),
                    (stream::A_UUID, &[0x5a; 16]),
                    (stream::A_CTRANSID, &9u64.to_le_bytes()),
                    (stream::A_CLONE_UUID, &b_uuid),
                    (stream::A_CLONE_CTRANSID, &b_id.ctransid.to_le_bytes()),
                ],
            ),
            stream::encode_command(1, stream::C_END, &[]),
        ]
        .concat(),
    );
    fx.receive(Dataset::root(&staging), &a_base).unwrap();
    let err = fx.receive(Dataset::root(&staging), &evil_incr).unwrap_err();
    let msg = err.to_string();
    assert!(
        err.kind() == ErrorKind::Archive
            && msg.contains("(snapshot): its parent is subvolume")
            && msg.contains(&stream::format_uuid(&b_uuid)),
        "{msg}"
    );
    assert!(!tree_holds(&fx.snapshots_dir().join(&staging), SECRET));
    no_trace_left();
    // As a base stream it is refused too.
    let err = fx.receive(Dataset::root(&staging), &evil_incr).unwrap_err();
    assert!(
        err.to_string()
            .contains("a base stream must create its subvolume"),
        "{err}"
    );
    no_trace_left();
    // Without the guard, the import would get B. (Shown after the guarded
    // receives: a second subvolume with the base's received UUID now exists.)
    plain_receive(&scratch.join("2"), &a_base).unwrap();
    plain_receive(&scratch.join("2"), &evil_incr).unwrap();
    assert_eq!(
        fs::read(scratch.join("2/stolen/private/secret")).unwrap(),
        SECRET
    );

    // 3. A clone from a received subvolume elsewhere on the file system
    //    (here B's stream received in a scratch directory: another import
    //    under way, a backup), found by its received UUID.
    plain_receive(&scratch.join("3"), &b_base).unwrap();
    let (_, received) = subvolume_uuids(&scratch.join("3/base"));
    let received = received.expect("a received subvolume has a received UUID");
    let evil_clone = write(
        "clone-from-received.dat",
        &[
            stream::encode_stream_header(1),
            stream::encode_command(
                1,
                stream::C_SUBVOL,
                &[
                    (stream::A_PATH, b"base"),
                    (stream::A_UUID, &[0x6b; 16]),
                    (stream::A_CTRANSID, &5u64.to_le_bytes()),
                ],
            ),
            stream::encode_command(
                1,
                stream::C_MKFILE,
                &[
                    (stream::A_PATH, b"loot"),
                    (stream::A_INO, &257u64.to_le_bytes()),
                ],
            ),
            stream::encode_command(
                1,
                stream::C_CLONE,
                &[
                    (stream::A_FILE_OFFSET, &0u64.to_le_bytes()),
                    // 0: up to the end of the source file.
                    (stream::A_CLONE_LEN, &0u64.to_le_bytes()),
                    (stream::A_PATH, b"loot"),
                    (stream::A_CLONE_UUID, &received),
                    (stream::A_CLONE_CTRANSID, &1u64.to_le_bytes()),
                    (stream::A_CLONE_PATH, b"private/secret"),
                    (stream::A_CLONE_OFFSET, &0u64.to_le_bytes()),
                ],
            ),
            stream::encode_command(1, stream::C_END, &[]),
        ]
        .concat(),
    );
    plain_receive(&scratch.join("3b"), &evil_clone).unwrap();
    assert!(
        fs::read(scratch.join("3b/base/loot"))
            .unwrap()
            .starts_with(SECRET),
        "without the guard, the import would get B's file"
    );
    let err = fx
        .receive(Dataset::root(&staging), &evil_clone)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("(clone): it clones from subvolume"),
        "{err}"
    );
    no_trace_left();

    // 4. A base stream that takes the received UUID of that subvolume as
    //    its own, and an incremental one based on it: `btrfs receive` finds
    //    the older subvolume with that UUID first.
    let impostor = write(
        "impostor-base.dat",
        &[
            stream::encode_stream_header(1),
            stream::encode_command(
                1,
                stream::C_SUBVOL,
                &[
                    (stream::A_PATH, b"base"),
                    (stream::A_UUID, &received),
                    (stream::A_CTRANSID, &5u64.to_le_bytes()),
                ],
            ),
            stream::encode_command(1, stream::C_END, &[]),
        ]
        .concat(),
    );
    let on_impostor = write(
        "on-impostor.dat",
        &[
            stream::encode_stream_header(1),
            stream::encode_command(
                1,
                stream::C_SNAPSHOT,
                &[
                    (stream::A_PATH, b"incr"),
                    (stream::A_UUID, &[0x7c; 16]),
                    (stream::A_CTRANSID, &6u64.to_le_bytes()),
                    (stream::A_CLONE_UUID, &received),
                    (stream::A_CLONE_CTRANSID, &5u64.to_le_bytes()),
                ],
            ),
            stream::encode_command(1, stream::C_END, &[]),
        ]
        .concat(),
    );
    plain_receive(&scratch.join("4"), &impostor).unwrap();
    plain_receive(&scratch.join("4"), &on_impostor).unwrap();
    assert_eq!(
        fs::read(scratch.join("4/incr/private/secret")).unwrap(),
        SECRET,
        "without the check, the incremental stream would be based on B's copy"
    );
    fx.receive(Dataset::root(&staging), &impostor).unwrap();
    let err = fx
        .receive(Dataset::root(&staging), &on_impostor)
        .unwrap_err();
    assert!(err.kind() == ErrorKind::Refused, "{err}");
    assert!(
        err.to_string()
            .contains("is not the only one with its UUID"),
        "{err}"
    );
    no_trace_left();

    for dir in [
        "2/stolen", "2/base", "3/base", "3b/base", "4/incr", "4/base",
    ] {
        Cmd::new("btrfs")
            .args(["subvolume", "delete"])
            .arg(scratch.join(dir))
            .run()
            .unwrap();
    }
    for ct in ["a", "b"] {
        s.destroy(Dataset::root(ct)).unwrap();
    }
    fx.assert_empty();
}

/// What the guard costs, on a real stream of a tree of files (`/usr/bin`, or
/// `OSCTL_BENCH_TREE`): the guard alone over the stream in memory, and
/// `btrfs receive` fed by the guarded userspace copy, by an unguarded
/// userspace copy, and reading the file itself. Run with
/// `cargo test --release -p osctl-core --test btrfs -- --ignored --nocapture guard_throughput`.
#[test]
#[ignore = "a measurement, not a test"]
fn guard_throughput() {
    use std::time::Instant;

    use osctl_core::storage::Receiver;

    let Some(fx) = Fixture::new("") else { return };
    let s = fx.storage();
    let tree = std::env::var("OSCTL_BENCH_TREE").unwrap_or_else(|_| "/usr/bin".into());
    s.create(Dataset::root("c1")).unwrap();
    Cmd::new("cp")
        .arg("-a")
        .arg(format!("{tree}/."))
        .arg(s.rootfs("c1"))
        .run()
        .unwrap();
    s.snapshot("c1", "base").unwrap();
    let file = fx.send("c1", "", "base", None, false);
    let bytes = fs::read(&file).unwrap();
    let mb = bytes.len() as f64 / 1e6;
    let rate = |secs: f64| format!("{:7.0} MB/s ({secs:.2} s)", mb / secs);
    println!("stream of {tree}: {mb:.0} MB");

    let start = Instant::now();
    let mut guard = StreamGuard::base("bench", ANY);
    for chunk in bytes.chunks(1 << 20) {
        guard.check(chunk).unwrap();
    }
    guard.finish().unwrap();
    println!(
        "guard alone, in memory:        {}",
        rate(start.elapsed().as_secs_f64())
    );

    let target = fx.fs.path().join("bench");
    fs::create_dir(&target).unwrap();
    let drop_received = || {
        Cmd::new("btrfs")
            .args(["subvolume", "delete"])
            .arg(target.join("base"))
            .run()
            .unwrap();
        // Until the space is free again (the image is small).
        Cmd::new("btrfs")
            .args(["subvolume", "sync"])
            .arg(fx.fs.path())
            .run()
            .unwrap();
    };
    let receive_through = |guarded: bool| {
        Cmd::new("sync").run().unwrap();
        let start = Instant::now();
        let writer = Cmd::new("btrfs")
            .args(["receive", "-C"])
            .arg(&target)
            .spawn_writer()
            .unwrap();
        struct Guarded(StreamGuard);
        impl osctl_core::storage::StreamCheck for Guarded {
            fn check(&mut self, bytes: &[u8]) -> osctl_core::Result<()> {
                self.0.check(bytes)
            }
            fn finish(&mut self) -> osctl_core::Result<storage::TreeJudged> {
                self.0.finish().map(|_| storage::TreeJudged::NeedsWalk)
            }
        }
        let mut receiver = if guarded {
            Receiver::checked(writer, Box::new(Guarded(StreamGuard::base("bench", ANY))))
        } else {
            Receiver::direct(writer)
        };
        receiver
            .copy_from(&mut File::open(&file).unwrap(), drop)
            .unwrap();
        receiver.finish("the bench stream").unwrap();
        start.elapsed().as_secs_f64()
    };
    for round in 1..=2 {
        let secs = receive_through(true);
        drop_received();
        println!("round {round}: guarded copy -> receive:  {}", rate(secs));
        let secs = receive_through(false);
        drop_received();
        println!("round {round}: plain copy -> receive:    {}", rate(secs));
        Cmd::new("sync").run().unwrap();
        let start = Instant::now();
        Cmd::new("btrfs")
            .args(["receive", "-C", "-f"])
            .arg(&file)
            .arg(&target)
            .run()
            .unwrap();
        let secs = start.elapsed().as_secs_f64();
        drop_received();
        println!("round {round}: receive -f FILE:          {}", rate(secs));
    }
    s.destroy_snapshot("c1", "base").unwrap();
    s.destroy(Dataset::root("c1")).unwrap();
}
