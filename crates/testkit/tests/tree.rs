//! The comparison the round-trip tests rely on notices what it must, and
//! only that, at each precision. Needs root (owners, device nodes, trusted.*
//! attributes).

use std::fs;
use std::path::{Path, PathBuf};

use osctl_core::cmd::Cmd;
use testkit::fs::{chmod, chown, set_mtime, set_xattr};
use testkit::tree::{
    assert_same, build_every_kind, differences, scan, Allocation, Kind, Mtimes, Options, Precision,
};

/// The original, built once per test, and copies of it.
struct Trees {
    work: tempfile::TempDir,
}

impl Trees {
    fn new() -> Option<Trees> {
        if !testkit::is_root() {
            eprintln!("SKIPPED: building the tree needs root");
            return None;
        }
        let work = tempfile::tempdir().unwrap();
        build_every_kind(&work.path().join("a"), &Options::ALL);
        Some(Trees { work })
    }

    fn original(&self) -> PathBuf {
        self.work.path().join("a")
    }

    /// A fresh copy of the original by `cp -a`.
    fn copy(&self) -> PathBuf {
        let copy = self.work.path().join("b");
        let _ = fs::remove_dir_all(&copy);
        Cmd::new("cp")
            .args(["-a", "--sparse=always"])
            .arg(self.original())
            .arg(&copy)
            .run()
            .unwrap();
        copy
    }

    /// The differences `change` makes to a copy of the original.
    fn after(&self, precision: &Precision, change: impl FnOnce(&Path)) -> Vec<String> {
        let copy = self.copy();
        change(&copy);
        differences(&scan(&self.original()), &scan(&copy), precision)
    }
}

/// One difference, at `path`, mentioning `what`.
fn assert_one(problems: &[String], path: &str, what: &str) {
    assert!(
        problems.len() == 1 && problems[0].starts_with(path) && problems[0].contains(what),
        "expected one difference at {path} about {what}, got {problems:#?}"
    );
}

#[test]
fn a_faithful_copy_is_the_same() {
    let Some(t) = Trees::new() else { return };
    assert_same(&t.original(), &t.copy(), &Precision::EXACT);

    let tree = scan(&t.original());
    let node = |path: &str| &tree[path.as_bytes()];
    assert_eq!(node("").mtime.nsec, 999_999_999);
    assert_eq!(node("dev/loop9").kind, Kind::BlockDevice);
    assert_eq!(node("usr/bin/suid").mode, 0o4755);
    assert_eq!(node("tmp").mode, 0o1777);
    assert_eq!(
        node("usr/lib/random.bin").link_group.as_deref(),
        Some(b"usr/bin/hardlink".as_slice()),
        "a group is named by its smallest path"
    );
    assert_eq!(node("usr/bin/random.bin").nlink, 3);
    assert!(node("usr/bin/ping")
        .xattrs
        .contains_key(b"security.capability".as_slice()));
    assert!(node("sparse").blocks * 512 < 2 << 20);
    assert!(testkit::fs::is_sparse(t.original().join("sparse")));
    assert!(!testkit::fs::is_sparse(
        t.original().join("usr/bin/random.bin")
    ));
}

#[test]
fn each_kind_of_difference_is_noticed() {
    let Some(t) = Trees::new() else { return };
    let exact = Precision::EXACT;
    // Same size and mtime, other bytes.
    let problems = t.after(&exact, |c| {
        let file = c.join("etc/hostname");
        let mtime = fs::symlink_metadata(&file).unwrap();
        let mut data = fs::read(&file).unwrap();
        data[0] ^= 0x20;
        fs::write(&file, data).unwrap();
        set_mtime(&file, mtime_of(&mtime).0, mtime_of(&mtime).1);
    });
    assert_one(&problems, "/etc/hostname", "digest");
    let problems = t.after(&exact, |c| {
        set_xattr(c.join("etc/hostname"), "user.note", b"other")
    });
    assert_one(&problems, "/etc/hostname", "xattrs");
    let problems = t.after(&exact, |c| chown(c.join("dangling"), 0, 0));
    assert_one(
        &problems,
        "/dangling",
        "uid 1000 in the original, 0 in the copy",
    );
    let problems = t.after(&exact, |c| chmod(c.join("usr/bin/sgid"), 0o750));
    assert_one(&problems, "/usr/bin/sgid", "mode 2750");
    let problems = t.after(&exact, |c| {
        let link = c.join("usr/rel-link");
        fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink("elsewhere", &link).unwrap();
        set_mtime(&link, 1_600_000_000, 0);
        set_mtime(c.join("usr"), 1_600_000_000, 0);
    });
    assert!(problems
        .iter()
        .any(|p| p.contains("target '../etc/hostname'")));
    // A hard link broken into a copy: both members change.
    let problems = t.after(&exact, |c| {
        let (owned, link) = (c.join("home/user/owned"), c.join("home/user/owned.link"));
        fs::remove_file(&link).unwrap();
        fs::copy(&owned, &link).unwrap();
    });
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("/home/user/owned.link:") && p.contains("link_group")),
        "{problems:#?}"
    );
    let problems = t.after(&exact, |c| fs::remove_file(c.join("fifo")).unwrap());
    assert!(problems.contains(&"missing in the copy: /fifo".to_string()));
    let problems = t.after(&exact, |c| fs::write(c.join("mnt/x"), "").unwrap());
    assert!(problems.contains(&"not in the original: /mnt/x".to_string()));
}

#[test]
fn times_compare_as_precisely_as_asked() {
    let Some(t) = Trees::new() else { return };
    let seconds = Precision {
        mtimes: Mtimes::Seconds,
        ..Precision::EXACT
    };
    let nanos_off = |c: &Path| {
        let meta = fs::symlink_metadata(c.join("etc/abs-link")).unwrap();
        set_mtime(c.join("etc/abs-link"), mtime_of(&meta).0, 0);
    };
    assert_one(
        &t.after(&Precision::EXACT, nanos_off),
        "/etc/abs-link",
        "mtime",
    );
    assert!(t.after(&seconds, nanos_off).is_empty());
    let problems = t.after(&seconds, |c| set_mtime(c, 1_400_000_001, 999_999_999));
    assert_one(&problems, "/:", "mtime 1400000000.999999999");
}

#[test]
fn holes_must_stay_holes() {
    let Some(t) = Trees::new() else { return };
    let fill_holes = |c: &Path| {
        let sparse = c.join("sparse");
        let meta = fs::symlink_metadata(&sparse).unwrap();
        Cmd::new("cp")
            .args(["-p", "--sparse=never"])
            .arg(t.original().join("sparse"))
            .arg(&sparse)
            .run()
            .unwrap();
        set_mtime(&sparse, mtime_of(&meta).0, mtime_of(&meta).1);
    };
    for allocation in [
        Allocation::Same,
        Allocation::NoMore,
        Allocation::LargeHolesOnly,
    ] {
        let precision = Precision {
            allocation,
            ..Precision::EXACT
        };
        assert_one(&t.after(&precision, fill_holes), "/sparse", "blocks");
    }
}

/// Mount points and the directories holding them: their mtimes are compared
/// only when asked.
#[test]
fn mtimes_around_mount_points_are_optional() {
    let Some(t) = Trees::new() else { return };
    let mounted = |c: &Path| {
        let mnt = c.join("mnt");
        let meta = fs::symlink_metadata(&mnt).unwrap();
        rustix::mount::mount(
            "tmpfs",
            &mnt,
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            None::<&std::ffi::CStr>,
        )
        .unwrap();
        chown(&mnt, 33, 33);
        chmod(&mnt, 0o755);
        set_mtime(&mnt, mtime_of(&meta).0 + 1, mtime_of(&meta).1);
        set_mtime(c, 1, 0);
    };
    let lenient = Precision {
        mount_point_mtimes: false,
        ..Precision::EXACT
    };
    let copy = t.work.path().join("b/mnt");
    let unmount = || rustix::mount::unmount(&copy, rustix::mount::UnmountFlags::DETACH).unwrap();
    let strict = t.after(&Precision::EXACT, mounted);
    unmount();
    let relaxed = t.after(&lenient, mounted);
    unmount();
    assert!(
        strict.len() == 2
            && strict[0].starts_with("/: mtime")
            && strict[1].starts_with("/mnt: mtime"),
        "{strict:#?}"
    );
    assert!(relaxed.is_empty(), "{relaxed:#?}");
}

fn mtime_of(meta: &fs::Metadata) -> (i64, i64) {
    use std::os::unix::fs::MetadataExt;
    (meta.mtime(), meta.mtime_nsec())
}
