//! The zfs storage backend against real ZFS (zfs-fuse here and in CI, OpenZFS
//! where it is the machine's ZFS). Every test makes its own file-backed zpool
//! and destroys it at the end, also when it fails. Needs root; skipped with a
//! message where ZFS cannot run.

use osctl_core::ErrorKind;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use osctl_core::cmd::Cmd;
use osctl_core::storage::zfs::{ZfsStorage, POOL_PROPERTY};
use osctl_core::storage::{
    self, staging_name, Dataset, NativeStreams, SendRequest, Storage, TreeJudged,
};

use testkit::tree::{assert_same, build_every_kind, Allocation, Options, Precision};
use testkit::zpool::{zfs, TestZpool};

/// What zfs send and receive keep, from zfs-fuse to zfs-fuse: everything
/// (zfs-fuse has no xattrs); its block counts are right only for large holes.
const ZFS: Precision = Precision {
    allocation: Allocation::LargeHolesOnly,
    ..Precision::EXACT
};

macro_rules! zpool_or_skip {
    ($megabytes:expr) => {
        match TestZpool::create($megabytes) {
            Some(zp) => zp,
            None => return,
        }
    };
}

fn install(zp: &TestZpool) -> (ZfsStorage, std::path::PathBuf) {
    let ds = zp.ds("osctl");
    ZfsStorage::install(&ds).expect("install");
    ZfsStorage::open(&ds).expect("open")
}

/// Files of every kind the streams must carry (no xattrs: zfs-fuse has none).
fn populate(dir: &Path, tag: &str) {
    let options = Options {
        xattrs: false,
        ..Options::rootfs(tag)
    };
    build_every_kind(dir, &options);
}

fn send_to_file(st: &ZfsStorage, ct: &str, rel: &str, snap: &str, from: Option<&str>, file: &Path) {
    let mut reader = storage::send(st, Dataset::new(ct, rel), &plain(snap, from)).expect("send");
    let mut out = File::create(file).unwrap();
    reader.copy_to_file(&mut out).expect("stream to file");
}

/// A stream of `snapshot` as the storage keeps it, from `from` if given.
fn plain<'a>(snapshot: &'a str, from: Option<&'a str>) -> SendRequest<'a> {
    SendRequest {
        snapshot,
        from,
        compressed: false,
    }
}

/// A full stream of `snapshot` with its data compressed as stored.
fn compressed(snapshot: &str) -> SendRequest<'_> {
    SendRequest {
        snapshot,
        from: None,
        compressed: true,
    }
}

fn receive_file(
    st: &ZfsStorage,
    ct: &str,
    rel: &str,
    file: &Path,
) -> osctl_core::Result<TreeJudged> {
    let mut receiver = st.receive(
        Dataset::new(ct, rel),
        &osctl_core::filepolicy::FilePolicy::anything(),
    )?;
    let copied = receiver.copy_from(&mut File::open(file).unwrap(), drop);
    receiver.end(copied.map(drop), &format!("into {ct}/{rel}"))
}

fn snapshot_names(dataset: &str) -> Vec<String> {
    zfs(&["get", "-Hp", "-r", "-o", "name", "type", dataset])
        .lines()
        .filter(|l| l.contains('@'))
        .map(String::from)
        .collect()
}

fn view_clones(zp: &TestZpool) -> Vec<String> {
    zfs(&[
        "get",
        "-Hp",
        "-d",
        "1",
        "-o",
        "name",
        "type",
        &zp.ds("osctl/views"),
    ])
    .lines()
    .filter(|l| *l != zp.ds("osctl/views"))
    .map(String::from)
    .collect()
}

#[test]
fn install_open_and_recognise() {
    let zp = zpool_or_skip!(128);
    let ds = zp.ds("deep/osctl");
    // Missing: created with its parents.
    ZfsStorage::install(&ds).unwrap();
    let (st, root) = ZfsStorage::open(&ds).unwrap();
    assert_eq!(root, zp.mnt.join("deep/osctl"));
    assert_eq!(st.dataset(), ds);
    for child in ["conf", "log", "ct", "views"] {
        let out = zfs(&[
            "get",
            "-Hp",
            "-o",
            "value",
            "mounted",
            &format!("{ds}/{child}"),
        ]);
        assert_eq!(out.trim(), "yes", "{child}");
        assert!(root.join(child).is_dir());
    }
    assert!(ZfsStorage::find_pools().unwrap().contains(&ds));
    // Installing again over our own pool is fine.
    ZfsStorage::install(&ds).unwrap();

    // Recognised after an unmount: open mounts again.
    let conf = format!("{ds}/conf");
    zfs(&["unmount", &conf]);
    ZfsStorage::open(&ds).unwrap();
    assert_eq!(
        zfs(&["get", "-Hp", "-o", "value", "mounted", &conf]).trim(),
        "yes"
    );
    // And after the zpool went away and came back (another host, a reboot).
    fs::write(root.join("conf/marker"), "kept").unwrap();
    let zpool = |args: &[&str]| Cmd::new("zpool").args(args).run().map(drop);
    zpool(&["export", &zp.name]).unwrap();
    assert!(!ZfsStorage::find_pools().unwrap().contains(&ds));
    let image_dir = zp.dir().to_str().unwrap();
    zpool(&["import", "-d", image_dir, &zp.name]).unwrap();
    assert!(ZfsStorage::find_pools().unwrap().contains(&ds));
    let (_, again) = ZfsStorage::open(&ds).unwrap();
    assert_eq!(
        fs::read_to_string(again.join("conf/marker")).unwrap(),
        "kept"
    );

    // A dataset that is not ours: open refuses, install refuses when it holds
    // something, accepts it when empty.
    let foreign = zp.ds("foreign");
    zfs(&["create", &foreign]);
    fs::write(zp.mnt.join("foreign/data"), "x").unwrap();
    let e = ZfsStorage::open(&foreign).unwrap_err();
    assert!(
        (e.kind() == ErrorKind::Refused && {
            let m = e.message();
            m.contains(POOL_PROPERTY)
        }),
        "{e}"
    );
    let e = ZfsStorage::install(&foreign).unwrap_err();
    assert!(
        (e.kind() == ErrorKind::Refused && {
            let m = e.message();
            m.contains("not empty")
        }),
        "{e}"
    );
    let empty = zp.ds("empty");
    zfs(&["create", &empty]);
    ZfsStorage::install(&empty).unwrap();

    let e = ZfsStorage::open(&zp.ds("missing")).unwrap_err();
    assert!(e.kind() == ErrorKind::NotFound, "{e}");
    let e = ZfsStorage::open("bad name").unwrap_err();
    assert!(e.kind() == ErrorKind::Invalid, "{e}");
}

#[test]
fn roundtrip_through_streams() {
    let zp = zpool_or_skip!(256);
    let (st, root) = install(&zp);
    let ct = "c1";
    st.create(Dataset::root(ct)).unwrap();
    st.create(Dataset::new(ct, "var")).unwrap();
    st.create(Dataset::new(ct, "var/log")).unwrap();
    assert_eq!(st.subdatasets(ct).unwrap(), ["var", "var/log"]);
    assert_eq!(st.path(Dataset::root(ct)), root.join("ct/c1"));
    assert_eq!(st.rootfs(ct), root.join("ct/c1/private"));
    // The original's layout: each dataset beside its parent's private/,
    // with its own, created empty.
    assert_eq!(
        st.path(Dataset::new(ct, "var/log")),
        root.join("ct/c1/var/log")
    );
    assert_eq!(
        st.private(Dataset::new(ct, "var")),
        root.join("ct/c1/var/private")
    );
    for rel in ["var", "var/log"] {
        let private = st.private(Dataset::new(ct, rel));
        assert_eq!(fs::read_dir(&private).unwrap().count(), 0, "{rel}");
        assert_eq!(
            fs::metadata(&private).unwrap().permissions().mode() & 0o7777,
            0o755
        );
    }
    populate(&st.rootfs(ct), "root");
    populate(&st.private(Dataset::new(ct, "var")), "var");
    populate(&st.private(Dataset::new(ct, "var/log")), "log");

    st.snapshot(ct, "base").unwrap();
    // Changes after the base snapshot: the incremental streams carry them.
    fs::write(st.rootfs(ct).join("etc/hostname"), "changed\n").unwrap();
    fs::remove_file(st.private(Dataset::new(ct, "var/log")).join("usr/bin/suid")).unwrap();
    fs::write(
        st.private(Dataset::new(ct, "var/log")).join("new"),
        "appended\n",
    )
    .unwrap();
    st.snapshot(ct, "incr").unwrap();
    assert_eq!(st.snapshots(ct).unwrap(), ["base", "incr"]);

    // A read-only view of the base snapshot shows the old content.
    {
        let view = st.snapshot_view(Dataset::root(ct), "base").unwrap();
        let old = fs::read_to_string(view.path().join("private/etc/hostname")).unwrap();
        assert_eq!(old, "root\n");
        assert!(
            fs::write(view.path().join("private/x"), "x").is_err(),
            "read-only"
        );
        let log_view = st
            .snapshot_view(Dataset::new(ct, "var/log"), "base")
            .unwrap();
        assert!(log_view.path().join("private/usr/bin/suid").exists());
        assert!(!log_view.path().join("private/new").exists());
    }
    assert_eq!(view_clones(&zp), Vec::<String>::new(), "views released");

    // Streams to files, base and incremental, per dataset.
    let streams = zp.dir().join("streams");
    fs::create_dir(&streams).unwrap();
    let file = |rel: &str, kind: &str| streams.join(format!("{}-{kind}", rel.replace('/', "_")));
    for rel in ["", "var", "var/log"] {
        send_to_file(&st, ct, rel, "base", None, &file(rel, "base"));
        send_to_file(&st, ct, rel, "incr", Some("base"), &file(rel, "incr"));
    }

    // Received into a staging container: the root into a new dataset, `var`
    // into one made beforehand (as an importer may do), `var/log` new.
    let staging = staging_name("c2");
    for rel in ["", "var", "var/log"] {
        if rel == "var" {
            st.create(Dataset::new(&staging, "var")).unwrap();
        }
        receive_file(&st, &staging, rel, &file(rel, "base")).unwrap();
        receive_file(&st, &staging, rel, &file(rel, "incr")).unwrap();
    }
    let listed = ["incr".to_string(), "base".to_string()];
    for rel in ["", "var", "var/log"] {
        st.finish_receive(Dataset::new(&staging, rel), &listed)
            .unwrap();
    }
    assert_eq!(
        snapshot_names(&st.dataset_of(Dataset::root(&staging)).unwrap()),
        Vec::<String>::new()
    );
    assert_eq!(st.subdatasets(&staging).unwrap(), ["var", "var/log"]);
    // Left unmounted (the rename mounts); shown here, and renamed mounted.
    st.mount(&staging).unwrap();
    // Each dataset's files (the directories holding them have mountpoints
    // made and removed by zfs).
    let same_files = |a: &str, b: &str| {
        for rel in ["", "var", "var/log"] {
            assert_same(
                &st.private(Dataset::new(a, rel)),
                &st.private(Dataset::new(b, rel)),
                &ZFS,
            );
        }
    };
    same_files(&staging, ct);
    assert!(st.containers().unwrap().contains(&staging));

    // Staging name to final id: the subdatasets follow to their new places.
    st.rename(&staging, "c2").unwrap();
    assert!(!st.exists(&staging).unwrap());
    assert!(!st.path(Dataset::root(&staging)).exists());
    same_files("c2", ct);
    let mountpoint = zfs(&[
        "get",
        "-Hp",
        "-o",
        "value",
        "mountpoint",
        &st.dataset_of(Dataset::new("c2", "var/log")).unwrap(),
    ]);
    assert_eq!(
        mountpoint.trim(),
        st.path(Dataset::new("c2", "var/log")).to_str().unwrap()
    );
    assert_eq!(st.containers().unwrap(), ["c1", "c2"]);

    // A root dataset made by `create` takes a full stream, then the incremental.
    let made_first = staging_name("c3");
    st.create(Dataset::root(&made_first)).unwrap();
    receive_file(&st, &made_first, "", &file("", "base")).unwrap();
    receive_file(&st, &made_first, "", &file("", "incr")).unwrap();
    st.finish_receive(Dataset::root(&made_first), &listed)
        .unwrap();
    st.mount(&made_first).unwrap();
    let hostname = st.rootfs(&made_first).join("etc/hostname");
    assert_eq!(fs::read_to_string(hostname).unwrap(), "changed\n");
    st.destroy(Dataset::root(&made_first)).unwrap();

    // Our streams are plain zfs streams: `zfs recv` takes them as they are.
    let plain = zp.ds("plain");
    for kind in ["base", "incr"] {
        let mut w = Cmd::new("zfs")
            .args(["recv", &plain])
            .spawn_writer()
            .unwrap();
        io::copy(&mut File::open(file("var/log", kind)).unwrap(), w.stdin()).unwrap();
        w.finish().unwrap();
    }
    assert_eq!(
        fs::read_to_string(zp.mnt.join("plain/private/new")).unwrap(),
        "appended\n"
    );

    // Snapshots go on every dataset; a missing one is fine to destroy.
    st.destroy_snapshot(ct, "incr").unwrap();
    st.destroy_snapshot(ct, "incr").unwrap();
    assert_eq!(
        snapshot_names(&st.dataset_of(Dataset::root(ct)).unwrap()),
        ["c1@base", "c1/var@base", "c1/var/log@base"].map(|s| format!("{}/ct/{s}", st.dataset()))
    );

    st.destroy(Dataset::new("c2", "var/log")).unwrap();
    assert_eq!(st.subdatasets("c2").unwrap(), ["var"]);
    st.destroy(Dataset::root("c2")).unwrap();
    st.destroy(Dataset::root(ct)).unwrap();
    assert_eq!(st.containers().unwrap(), Vec::<String>::new());
    assert!(!st.path(Dataset::root(ct)).exists());
}

#[test]
fn compressed_send_only_where_zfs_has_it() {
    let zp = zpool_or_skip!(128);
    let (st, _) = install(&zp);
    st.create(Dataset::root("c1")).unwrap();
    let features = st.features().unwrap().clone();
    let ds = st.dataset_of(Dataset::root("c1")).unwrap();

    zfs(&["set", "compression=off", &ds]);
    assert!(!st.can_send_compressed(Dataset::root("c1")).unwrap());
    zfs(&["set", "compression=on", &ds]);
    assert_eq!(
        st.can_send_compressed(Dataset::root("c1")).unwrap(),
        features.send_compressed()
    );
    st.snapshot("c1", "s").unwrap();
    if features.send_compressed() {
        let mut r = storage::send(&st, Dataset::root("c1"), &compressed("s")).unwrap();
        io::copy(&mut r, &mut io::sink()).unwrap();
    } else {
        // zfs-fuse: `zfs send` knows only -R -D -p -i -I.
        assert!(!features.send_flags.contains(&'c'));
        let e = storage::send(&st, Dataset::root("c1"), &compressed("s"))
            .err()
            .expect("refused");
        assert!(
            (e.kind() == ErrorKind::Refused && {
                let m = e.message();
                m.contains(&ds)
            }),
            "{e}"
        );
    }
    eprintln!(
        "detected: {} (zfs send flags {:?})",
        features.describe(),
        features.send_flags
    );
}

#[test]
fn errors_name_the_dataset() {
    let zp = zpool_or_skip!(128);
    let (st, _) = install(&zp);
    let ds = st.dataset_of(Dataset::root("c1")).unwrap();

    // Destroying what is missing is fine.
    st.destroy(Dataset::root("nothing")).unwrap();
    st.destroy_snapshot("nothing", "s").unwrap();

    st.create(Dataset::root("c1")).unwrap();
    let e = st.create(Dataset::root("c1")).unwrap_err();
    assert!(
        (e.kind() == ErrorKind::Exists && {
            let m = e.message();
            m.contains(&ds)
        }),
        "{e}"
    );
    let e = st.create(Dataset::new("c1", "a/b")).unwrap_err();
    assert!(
        (e.kind() == ErrorKind::NotFound && {
            let m = e.message();
            m.contains(&format!("{ds}/a/b"))
        }),
        "{e}"
    );
    let e = st.subdatasets("nothing").unwrap_err();
    assert!(e.kind() == ErrorKind::NotFound, "{e}");

    st.snapshot("c1", "s").unwrap();
    let e = st.snapshot("c1", "s").unwrap_err();
    assert!(
        (e.kind() == ErrorKind::Exists && {
            let m = e.message();
            m.contains(&ds)
        }),
        "{e}"
    );
    let e = storage::send(&st, Dataset::root("c1"), &plain("nope", None))
        .err()
        .expect("missing snapshot");
    assert!(
        (e.kind() == ErrorKind::NotFound && {
            let m = e.message();
            m.contains(&ds)
        }),
        "{e}"
    );
    let e = st
        .snapshot_view(Dataset::root("c1"), "nope")
        .err()
        .expect("missing snapshot");
    assert!(
        (e.kind() == ErrorKind::NotFound && {
            let m = e.message();
            m.contains(&ds)
        }),
        "{e}"
    );

    // Names from archives cannot smuggle in zfs syntax.
    for bad in ["a%b", "a,b", "a@b", "../x"] {
        let e = st
            .finish_receive(Dataset::root("c1"), &[bad.to_string()])
            .unwrap_err();
        assert!(e.kind() == ErrorKind::Invalid, "{bad}: {e}");
    }
    assert!(st
        .create(Dataset::new("c1", "../x"))
        .as_ref()
        .is_err_and(|e| e.kind() == ErrorKind::Invalid));
    assert!(st
        .create(Dataset::root("a/b"))
        .as_ref()
        .is_err_and(|e| e.kind() == ErrorKind::Invalid));

    st.create(Dataset::root("c2")).unwrap();
    let e = st.rename("c1", "c2").unwrap_err();
    assert!(
        (e.kind() == ErrorKind::Exists && {
            let m = e.message();
            m.contains("c2")
        }),
        "{e}"
    );
    // A target this process saw missing is not looked up again before the
    // rename; made behind its back, zfs refuses it, and the error says so.
    assert!(!st.exists("c4").unwrap());
    zfs(&["create", &st.dataset_of(Dataset::root("c4")).unwrap()]);
    let e = st.rename("c1", "c4").unwrap_err();
    assert!(
        e.kind() == ErrorKind::Exists && e.message().contains("container 'c1' to 'c4'"),
        "{e}"
    );
    assert!(
        st.path(Dataset::root("c1")).join("private").is_dir(),
        "c1 stays mounted"
    );

    // Garbage is refused by zfs recv, and the error names the dataset.
    let garbage = zp.dir().join("garbage");
    fs::write(&garbage, vec![0x5au8; 64 << 10]).unwrap();
    let staging = staging_name("c3");
    let e = receive_file(&st, &staging, "", &garbage).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(&st.dataset_of(Dataset::root(&staging)).unwrap()),
        "{msg}"
    );
    assert!(!st.exists(&staging).unwrap(), "nothing left behind");
}

/// A dataset's mountpoint is reached without a symlink: the directories on
/// the way come from archives' streams. Containers whose subdatasets are
/// mounted inside the root file system (older osctl-rs) are refused.
#[test]
fn symlinks_and_the_older_layout_are_refused() {
    let zp = zpool_or_skip!(128);
    let (st, root) = install(&zp);
    st.create(Dataset::root("c1")).unwrap();
    st.create(Dataset::new("c1", "var")).unwrap();
    let var = st.dataset_of(Dataset::new("c1", "var")).unwrap();
    zfs(&["unmount", &var]);
    let target = zp.dir().join("elsewhere");
    fs::create_dir(&target).unwrap();
    fs::remove_dir(st.path(Dataset::new("c1", "var"))).unwrap();
    std::os::unix::fs::symlink(&target, st.path(Dataset::new("c1", "var"))).unwrap();
    let e = st.mount("c1").unwrap_err();
    assert!(
        (e.kind() == ErrorKind::Refused && {
            let m = e.message();
            m.contains("symlink")
        }),
        "{e}"
    );
    assert_eq!(
        fs::read_dir(&target).unwrap().count(),
        0,
        "nothing mounted there"
    );
    fs::remove_file(st.path(Dataset::new("c1", "var"))).unwrap();
    st.mount("c1").unwrap();
    assert!(st.private(Dataset::new("c1", "var")).is_dir());

    // The older layout: mounted at private/var, files at its top. Only an
    // older version makes it, so a storage that saw the current layout
    // trusts it for the rest of its process: the next command sees this.
    let old = root.join("ct/c1/private/var");
    zfs(&["set", &format!("mountpoint={}", old.display()), &var]);
    let (st, _) = ZfsStorage::open(st.dataset()).unwrap();
    for e in [
        st.mount("c1").unwrap_err(),
        st.snapshot("c1", "s").unwrap_err(),
    ] {
        assert!(
            (e.kind() == ErrorKind::Refused && {
                let m = e.message();
                m.contains("dataset 'var'") && m.contains("older")
            }),
            "{e}"
        );
    }
    assert!(st.snapshots("c1").unwrap().is_empty());
    st.destroy(Dataset::root("c1")).unwrap();
}

#[test]
fn busy_dataset_is_a_clean_error() {
    let zp = zpool_or_skip!(128);
    let (st, _) = install(&zp);
    st.create(Dataset::root("c1")).unwrap();
    st.create(Dataset::new("c1", "var")).unwrap();
    // A process whose working directory is inside the dataset keeps it busy.
    let mut holder = std::process::Command::new("sleep")
        .arg("60")
        .current_dir(st.path(Dataset::new("c1", "var")))
        .spawn()
        .unwrap();
    let e = st.destroy(Dataset::root("c1")).unwrap_err();
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(
        (e.kind() == ErrorKind::Busy && {
            let m = e.message();
            m.contains("c1")
        }),
        "{e}"
    );
    // Once it is gone, destroying works.
    st.destroy(Dataset::root("c1")).unwrap();
    assert!(!st.exists("c1").unwrap());
}

#[test]
fn full_zpool_is_a_clean_error() {
    let zp = zpool_or_skip!(64);
    let (st, _) = install(&zp);
    st.create(Dataset::root("c1")).unwrap();
    st.snapshot("c1", "s").unwrap();
    let stream = zp.dir().join("c1.zfs");
    send_to_file(&st, "c1", "", "s", None, &stream);

    // Fill the zpool until the kernel says ENOSPC.
    let filler = st.rootfs("c1").join("filler");
    let mut out = File::create(&filler).unwrap();
    let chunk = vec![0xa5u8; 1 << 20];
    let err = loop {
        if let Err(e) = out.write_all(&chunk).and_then(|_| out.sync_data()) {
            break e;
        }
    };
    drop(out);
    assert_eq!(err.kind(), io::ErrorKind::StorageFull, "{err}");

    let ds = st.dataset_of(Dataset::root("c2")).unwrap();
    let e = st.create(Dataset::root("c2")).unwrap_err();
    let msg = e.to_string();
    let source = e.io_source().expect("an I/O error");
    assert_eq!(source.kind(), io::ErrorKind::StorageFull);
    assert!(msg.contains(&ds) && msg.contains("full"), "{msg}");
    assert!(!msg.contains('\n'), "one line: {msg}");

    // Space back: creating works again, nothing was left half made.
    fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match st.create(Dataset::root("c2")) {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("space did not come back: {e}"),
        }
    }
    assert_eq!(st.containers().unwrap(), ["c1", "c2"]);
    receive_file(&st, "c3", "", &stream).unwrap();
}

/// What export relies on for its zero-copy path: `zfs send` may write into a
/// file at its offset (appending there); the streams then come back through
/// the judge, which vouches for their files.
#[test]
fn streams_straight_into_files_and_judged_back() {
    use std::io::Seek;
    let zp = zpool_or_skip!(160);
    let (st, _) = install(&zp);
    st.create(Dataset::root("c1")).unwrap();
    populate(&st.rootfs("c1"), "one");
    st.snapshot("c1", "base").unwrap();
    fs::write(st.rootfs("c1").join("etc/hostname"), "two\n").unwrap();
    st.snapshot("c1", "incr").unwrap();

    // Sent into a file after other data, as into an archive entry.
    let piped = zp.dir().join("piped");
    send_to_file(&st, "c1", "", "base", None, &piped);
    let expected = fs::read(&piped).unwrap();
    let archive = zp.dir().join("archive");
    let mut out = File::create_new(&archive).unwrap();
    out.write_all(&[b'h'; 1536]).unwrap();
    let mut polls = 0;
    st.send_cmd(Dataset::root("c1"), &plain("base", None))
        .unwrap()
        .run_with_files(None, Some(&out), || {
            polls += 1;
            Ok(())
        })
        .unwrap();
    assert!(polls > 0);
    let base_end = out.stream_position().unwrap();
    assert_eq!(base_end, 1536 + expected.len() as u64, "the offset moved");
    out.write_all(&[0u8; 512]).unwrap();
    drop(out);
    let incr_file = zp.dir().join("incr");
    send_to_file(&st, "c1", "", "incr", Some("base"), &incr_file);
    assert_eq!(
        &fs::read(&archive).unwrap()[1536..base_end as usize],
        expected
    );

    // Received through the stream judge, which vouches for every file.
    let staging = staging_name("c2");
    for stream in [&piped, &incr_file] {
        let judged = receive_file(&st, &staging, "", stream).unwrap();
        assert_eq!(judged, TreeJudged::ByStream, "{}", stream.display());
    }
    st.finish_receive(Dataset::root(&staging), &["incr".into(), "base".into()])
        .unwrap();
    st.rename(&staging, "c2").unwrap();
    assert_same(
        &st.path(Dataset::root("c2")),
        &st.path(Dataset::root("c1")),
        &ZFS,
    );
}
