//! Crashes and faults in the middle of exports and imports: whatever point a
//! process dies at, the next command puts things right (the container that
//! ran runs, no snapshot, partial archive, staged container, user or group is
//! left), and `pool check` then finds nothing.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use testkit::loopfs::{self, LoopFs};

use super::support::{can_run_containers, wait_until, Env};
use crate::require;

const EXPORT_POINTS: &[&str] = &[
    "export-after-journal",
    "export-after-base-snapshot",
    "export-in-stream",
    "export-after-stop",
    "export-after-incr-snapshot",
    "export-before-end",
    "export-before-rename",
];

const IMPORT_POINTS: &[&str] = &[
    "import-after-journal",
    "import-in-stream",
    "import-before-commit",
    "import-after-accounts",
    "import-after-rename",
];

/// Runs osctl with a failpoint; it must die of SIGKILL there.
pub(super) fn killed_at(env: &Env, point: &str, args: &[&str]) {
    killed_in(env, Path::new("."), point, args)
}

/// [`killed_at`] with `cwd` as the working directory (the recovery that
/// follows runs in another, so relative paths must not matter).
fn killed_in(env: &Env, cwd: &Path, point: &str, args: &[&str]) {
    let out: Output = env
        .cmd()
        .current_dir(cwd)
        .env("OSCTL_FAILPOINT", point)
        .args(args)
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.signal(),
        Some(9),
        "{point}: osctl {args:?} should have died there ({}; {})",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// After a crash: the next command recovers, and `pool check` finds nothing more.
fn assert_recovered(env: &Env, pool: &str, point: &str) {
    env.ok(&["--pool", pool, "ct", "ls"]);
    let left = env.json(&["--pool", pool, "pool", "check"]);
    assert_eq!(
        left.as_array().unwrap().len(),
        0,
        "{point}: pool check still found {left}"
    );
    let state = pool_root(env, pool).join("state");
    let journals: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(journals.is_empty(), "{point}: journals left: {journals:?}");
    for id in env.json(&["--pool", pool, "ct", "ls"]).as_array().unwrap() {
        // Every config is whole: show parses it.
        env.ok(&["--pool", pool, "ct", "show", id["id"].as_str().unwrap()]);
    }
}

fn pool_root(env: &Env, pool: &str) -> PathBuf {
    let pools = env.json(&["pool", "ls"]);
    let p = pools
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == pool)
        .unwrap();
    PathBuf::from(p["location"].as_str().unwrap())
}

fn no_files_in(dir: &Path, point: &str) {
    let files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        files.is_empty(),
        "{point}: left in the output directory: {files:?}"
    );
}

/// Crashes of a consistent export of a running container at every step, on
/// the pool named `pool` (installed by the caller, with user u1).
fn export_crashes(env: &Env, pool: &str) {
    let rootfs = env.busybox_rootfs(&format!("rootfs-{pool}"));
    env.ok(&[
        "--pool",
        pool,
        "ct",
        "new",
        "--user",
        "u1",
        "--from-dir",
        rootfs.to_str().unwrap(),
        "victim",
    ]);
    env.ok(&["--pool", pool, "ct", "start", "victim"]);
    let out = env.path(&format!("out-{pool}"));
    std::fs::create_dir_all(&out).unwrap();
    let file = out.join("victim.tar");
    for point in EXPORT_POINTS {
        killed_in(
            env,
            &out,
            point,
            &["--pool", pool, "ct", "export", "victim", "victim.tar"],
        );
        assert_recovered(env, pool, point);
        let state = env.json(&["--pool", pool, "ct", "show", "victim"])["state"].clone();
        assert_eq!(state, "running", "{point}: the container runs again");
        no_files_in(&out, point);
    }
    // And after all that, an export works.
    env.ok(&[
        "--pool",
        pool,
        "ct",
        "export",
        "victim",
        file.to_str().unwrap(),
    ]);
}

/// Lines of /etc/subuid for host range `host` (other tests change other lines).
fn subuid_lines_for(host: u32) -> usize {
    let line = format!("root:{host}:65536");
    std::fs::read_to_string("/etc/subuid")
        .unwrap()
        .lines()
        .filter(|l| *l == line)
        .count()
}

/// Crashes of an import at every step: nothing of it stays visible. `host`
/// is the archive user's host range, distinct per caller.
fn import_crashes(env: &Env, pool: &str, host: u32) {
    // An archive whose user and group the pool does not have: the import creates them.
    let src = Env::new();
    src.ok(&[
        "user",
        "new",
        "--map",
        &format!("0:{host}:65536"),
        "newcomer",
    ]);
    src.ok(&["group", "new", "/fresh"]);
    let rootfs = src.busybox_rootfs("r");
    src.ok(&[
        "ct",
        "new",
        "--user",
        "newcomer",
        "--group",
        "/fresh",
        "--from-dir",
        rootfs.to_str().unwrap(),
        "app",
    ]);
    let archive = env.path(&format!("app-{pool}.tar"));
    src.ok(&[
        "ct",
        "export",
        "--format",
        "tar",
        "app",
        archive.to_str().unwrap(),
    ]);
    src.ok(&["ct", "del", "app"]);
    src.ok(&["user", "del", "newcomer"]);
    let subuid = subuid_lines_for(host);
    for point in IMPORT_POINTS {
        killed_at(
            env,
            point,
            &["--pool", pool, "ct", "import", archive.to_str().unwrap()],
        );
        assert_recovered(env, pool, point);
        let cts = env.json(&["--pool", pool, "ct", "ls"]);
        assert!(
            !cts.as_array().unwrap().iter().any(|c| c["id"] == "app"),
            "{point}: {cts}"
        );
        assert!(
            env.run(&["--pool", pool, "user", "show", "newcomer"])
                .status
                .code()
                == Some(1),
            "{point}: user left"
        );
        assert!(
            env.run(&["--pool", pool, "group", "show", "/fresh"])
                .status
                .code()
                == Some(1),
            "{point}: group left"
        );
        assert_eq!(
            subuid_lines_for(host),
            subuid,
            "{point}: the new user's subuid line stayed"
        );
        let ct_dir = pool_root(env, pool).join("ct");
        let left: Vec<_> = std::fs::read_dir(&ct_dir)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            !left.iter().any(|n| n.to_string_lossy().starts_with("app")),
            "{point}: {left:?}"
        );
    }
    // Killed once the container's config is written: the import stands,
    // with the user and group it created.
    killed_at(
        env,
        "import-after-commit",
        &["--pool", pool, "ct", "import", archive.to_str().unwrap()],
    );
    assert_recovered(env, pool, "import-after-commit");
    env.ok(&["--pool", pool, "ct", "show", "app"]);
    env.ok(&["--pool", pool, "user", "show", "newcomer"]);
    env.ok(&["--pool", pool, "group", "show", "/fresh"]);
}

#[test]
fn crashes_at_every_step_on_the_dir_pool() {
    require!(
        can_run_containers(),
        "needs root, LXC, uidmap and busybox-static"
    );
    let env = Env::new();
    env.ok(&["user", "new", "u1"]);
    export_crashes(&env, "default");
    import_crashes(&env, "default", 3_500_000_000);
}

#[test]
fn crashes_at_every_step_on_a_btrfs_pool() {
    require!(
        can_run_containers(),
        "needs root, LXC, uidmap and busybox-static"
    );
    // The file system outlives the environment, whose clean-up needs it.
    let Some(fs) = LoopFs::new("btrfs", 512, "") else {
        return;
    };
    let env = Env::new();
    env.ok(&[
        "pool",
        "install",
        "--backend",
        "btrfs",
        "--path",
        fs.path().join("pool").to_str().unwrap(),
        "bt",
    ]);
    env.ok(&["--pool", "bt", "user", "new", "u1"]);
    export_crashes(&env, "bt");
    import_crashes(&env, "bt", 3_510_000_000);
}

/// Kill -9 at arbitrary moments of a long export and a long import.
#[test]
fn kill_at_random_moments() {
    require!(
        can_run_containers(),
        "needs root, LXC, uidmap and busybox-static"
    );
    let env = Env::new();
    let rootfs = env.busybox_rootfs("big");
    std::fs::write(rootfs.join("root/data"), vec![7u8; 64 << 20]).unwrap();
    env.ct_from("big", &rootfs);
    env.ok(&["ct", "start", "big"]);
    let out = env.path("out");
    std::fs::create_dir_all(&out).unwrap();
    let file = out.join("big.tar");
    for i in 0..8u64 {
        let mut child = env
            .cmd()
            .args(["ct", "export", "--compression", "gzip", "big"])
            .arg(&file)
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(50 + i * 90));
        let _ = child.kill();
        let _ = child.wait();
        assert_recovered(
            &env,
            "default",
            &format!("export killed after {}ms", 50 + i * 90),
        );
        assert_eq!(env.state("big"), "running");
        let _ = std::fs::remove_file(&file);
        no_files_in(&out, "random export kill");
    }
    env.ok(&[
        "ct",
        "export",
        "--compression",
        "gzip",
        "big",
        file.to_str().unwrap(),
    ]);
    for i in 0..8u64 {
        let mut child = env
            .cmd()
            .args(["ct", "import", "--as-id", "copy"])
            .arg(&file)
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(30 + i * 60));
        let _ = child.kill();
        let _ = child.wait();
        let point = format!("import killed after {}ms", 30 + i * 60);
        assert_recovered(&env, "default", &point);
        // A kill that lands after the commit (or once the import finished)
        // leaves the whole container; before it, none at all.
        if env.run(&["ct", "show", "copy"]).status.success() {
            let data = std::fs::metadata(env.rootfs_of("copy").join("root/data"));
            assert_eq!(data.map(|m| m.len()).ok(), Some(64 << 20), "{point}");
            env.ok(&["ct", "del", "copy"]);
        }
        assert_eq!(env.run(&["ct", "show", "copy"]).status.code(), Some(1));
    }
}

#[test]
fn export_to_a_vanishing_directory_and_import_onto_a_full_pool() {
    require!(
        can_run_containers() && loopfs::can_mount("ext4"),
        "needs root, LXC, loop devices and mkfs.ext4"
    );
    let env = Env::new();
    let rootfs = env.noisy_rootfs("big", 200);
    env.ct_from("big", &rootfs);
    env.ok(&["ct", "start", "big"]);

    let out = env.path("vanishing");
    std::fs::create_dir_all(&out).unwrap();
    let child = env
        .cmd()
        .args(["ct", "export", "--compression", "gzip", "big"])
        .arg(out.join("big.tar"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_until(20, || std::fs::read_dir(&out)
        .map(|d| d.count() > 0)
        .unwrap_or(false)));
    std::fs::remove_dir_all(&out).unwrap();
    let output = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot move the archive") && err.lines().count() == 1,
        "{err}"
    );
    assert_eq!(env.state("big"), "running");
    assert_recovered(&env, "default", "vanishing directory");

    // A pool too small for the container.
    let archive = env.path("big.tar");
    env.ok(&["ct", "export", "big", archive.to_str().unwrap()]);
    let small = LoopFs::new("ext4", 64, "").expect("checked above");
    env.ok(&[
        "pool",
        "install",
        "--path",
        small.path().join("pool").to_str().unwrap(),
        "small",
    ]);
    // Trusted: its user's ids are those of the source pool's user, on this
    // same host; the import creates that user and must remove it again.
    let err = env.fails(
        &[
            "--pool",
            "small",
            "ct",
            "import",
            "--trusted",
            archive.to_str().unwrap(),
        ],
        1,
    );
    assert!(err.contains("No space left on device"), "{err}");
    assert_recovered(&env, "small", "full pool");
    assert_eq!(
        env.json(&["--pool", "small", "ct", "ls"])
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        env.json(&["--pool", "small", "user", "ls"])
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let ct_dir = small.path().join("pool/ct");
    let left: Vec<_> = std::fs::read_dir(&ct_dir)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    env.ok(&["pool", "uninstall", "small"]);
}

/// Kill -9 while the export stops the container, and while it starts it
/// again. LXC carries on without us (init shutting down, the monitor
/// starting), so the recovery must see that through: afterwards the container
/// runs, and goes on running once LXC is done.
#[test]
fn kill_while_the_export_stops_or_starts_the_container() {
    require!(
        can_run_containers(),
        "needs root, LXC, uidmap and busybox-static"
    );
    let env = Env::new();
    // busybox init takes about 2 s to shut down: time for a kill in the middle.
    env.busybox_ct("ct");
    env.ok(&["ct", "start", "ct"]);
    let journal = pool_root(&env, "default").join("state/export.ct.yml");
    let file = env.path("ct.tar");
    for (phase, marker, delay_ms) in [
        ("stop just sent", "stopped: true", 200),
        ("stop half way", "stopped: true", 1200),
        ("start", "starting: true", 0),
    ] {
        let mut child = env
            .cmd()
            .args(["ct", "export", "-q", "ct"])
            .arg(&file)
            .spawn()
            .unwrap();
        // Polled every millisecond, not with wait_until's 100 ms: the restart
        // itself lasts about that long.
        let seen = (0..20_000).any(|_| {
            let found = std::fs::read_to_string(&journal).is_ok_and(|j| j.contains(marker));
            if !found {
                std::thread::sleep(Duration::from_millis(1));
            }
            found
        });
        assert!(seen, "{phase}: the journal never said {marker}");
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        assert_recovered(&env, "default", phase);
        assert_eq!(env.state("ct"), "running", "{phase}");
        std::thread::sleep(Duration::from_secs(3));
        assert_eq!(env.state("ct"), "running", "{phase}: it stopped later");
        let _ = std::fs::remove_file(&file);
    }
}
