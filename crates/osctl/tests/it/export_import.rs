//! Export and import on the dir pool: round trips, the archive's layout,
//! consistent exports of running containers, failures that leave nothing.

use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use testkit::loopfs::{self, LoopFs};
use testkit::tree::{self, build_every_kind, Mtimes, Options, Precision};

use super::original;
use super::support::{
    assert_consistent, can_run_containers, is_root, signal, tar_names, wait_for_writes, wait_until,
    Env,
};
use crate::require;

fn entry_bytes(archive: &Path, name: &str) -> Vec<u8> {
    let out = Command::new("tar")
        .arg("-xOf")
        .arg(archive)
        .arg(name)
        .output()
        .unwrap();
    assert!(out.status.success(), "entry {name} extracts");
    out.stdout
}

/// True when `gz` is exactly one gzip member (what Ruby's GzipReader reads).
fn single_gzip_member(gz: &[u8]) -> bool {
    let mut first = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut first)
        .unwrap();
    let mut all = Vec::new();
    flate2::read::MultiGzDecoder::new(gz)
        .read_to_end(&mut all)
        .unwrap();
    first == all && !all.is_empty()
}

fn gzip_t(gz: &[u8], dir: &Path) -> bool {
    let f = dir.join("check.gz");
    std::fs::write(&f, gz).unwrap();
    Command::new("gzip")
        .arg("-t")
        .arg(&f)
        .status()
        .unwrap()
        .success()
}

#[test]
fn round_trip_of_every_file_kind_for_each_compression() {
    require!(is_root(), "needs root (owners, devices, xattrs)");
    let env = Env::new();
    let src = env.path("src");
    build_every_kind(&src, &Options::rootfs("rootfs"));
    env.ct_from("orig", &src);
    let orig = env.rootfs_of("orig");
    tree::assert_same(&src, &orig, &Precision::EXACT);
    for (compression, entry) in [
        ("off", "rootfs/base.tar"),
        ("gzip", "rootfs/base.tar.gz"),
        ("zstd", "rootfs/base.tar.zst"),
        ("auto", "rootfs/base.tar.gz"),
    ] {
        let archive = env.path(&format!("orig-{compression}.tar"));
        env.ok(&[
            "ct",
            "export",
            "--compression",
            compression,
            "orig",
            archive.to_str().unwrap(),
        ]);
        let names = tar_names(&archive);
        assert!(
            names.contains(&entry.to_string()),
            "{compression}: {names:?}"
        );
        let id = format!("copy-{compression}");
        // The tree holds a block device, which only a trusted import creates.
        let err = env.fails(
            &["ct", "import", "--as-id", &id, archive.to_str().unwrap()],
            1,
        );
        assert!(
            err.contains("'./dev/loop9': device node (block 7:9) refused"),
            "{err}"
        );
        env.ok(&[
            "ct",
            "import",
            "--trusted",
            "--as-id",
            &id,
            archive.to_str().unwrap(),
        ]);
        tree::assert_same(&orig, &env.rootfs_of(&id), &Precision::EXACT);
        if entry.ends_with(".gz") {
            let gz = entry_bytes(&archive, entry);
            assert!(gzip_t(&gz, env.dir.path()), "gzip -t passes");
            assert!(single_gzip_member(&gz), "one gzip member");
        }
        if original::have_ruby() {
            // The original reads rootfs/base.tar.gz only, restoring no
            // xattr but security.capability; it refuses the others loudly.
            let work = env.path(&format!("original-{compression}"));
            match original::import(&archive, "-", Path::new("-"), &work) {
                Ok(seen) => {
                    assert!(entry.ends_with(".gz"), "{compression}");
                    let gnu_tar = Precision {
                        xattrs: false,
                        ..Precision::EXACT
                    };
                    tree::assert_same(&orig, &seen.seen("/"), &gnu_tar);
                }
                Err(err) => {
                    assert!(!entry.ends_with(".gz"), "{compression}: {err}");
                    assert!(err.contains("rootfs archive not found"), "{err}");
                }
            }
        }
    }
}

#[test]
fn archive_layout_is_the_originals() {
    require!(is_root(), "needs root");
    let env = Env::new();
    let src = env.busybox_rootfs("rootfs");
    env.ok(&["user", "new", "u1"]);
    env.ok(&["group", "new", "/web"]);
    env.ok(&[
        "ct",
        "new",
        "--user",
        "u1",
        "--group",
        "/web",
        "--from-dir",
        src.to_str().unwrap(),
        "lay",
    ]);
    let archive = env.path("lay.tar");
    env.ok(&["ct", "export", "lay", archive.to_str().unwrap()]);
    let names = tar_names(&archive);
    let expected_prefix = [
        "metadata.yml",
        "config/",
        "config/user.yml",
        "config/group.yml",
        "config/container.yml",
        "rootfs/",
        "rootfs/base.tar.gz",
    ];
    assert_eq!(
        &names[..expected_prefix.len()],
        &expected_prefix,
        "{names:?}"
    );
    assert_eq!(names.last().unwrap(), "snapshots.yml");
    // Modes 0644 and 0755, no PAX headers in the outer archive.
    let verbose = Command::new("tar")
        .arg("-tvf")
        .arg(&archive)
        .output()
        .unwrap();
    for line in String::from_utf8_lossy(&verbose.stdout).lines() {
        assert!(
            line.starts_with("-rw-r--r--") || line.starts_with("drwxr-xr-x"),
            "{line}"
        );
    }
    let raw = std::fs::read(&archive).unwrap();
    for block in raw
        .chunks(512)
        .filter(|b| b.len() == 512 && &b[257..262] == b"ustar")
    {
        assert!(
            block[156] == b'0' || block[156] == b'5',
            "only files and dirs, no PAX ('{}')",
            block[156] as char
        );
    }
    let meta = String::from_utf8(entry_bytes(&archive, "metadata.yml")).unwrap();
    for key in [
        "type: full",
        "format: tar",
        "user: u1",
        "group: /web",
        "container: lay",
        "datasets: []",
        "exported_at: ",
    ] {
        assert!(meta.contains(key), "metadata.yml has {key:?}: {meta}");
    }
    let user = String::from_utf8(entry_bytes(&archive, "config/user.yml")).unwrap();
    assert!(
        user.contains("uid_map") && user.contains("gid_map"),
        "{user}"
    );
    let snaps = String::from_utf8(entry_bytes(&archive, "snapshots.yml")).unwrap();
    assert!(snaps.contains("osctl-base-"), "{snaps}");
    // The original imports a tar-format archive with `tar -xz -C rootfs`.
    let out = env.path("gnu-extracted");
    std::fs::create_dir_all(&out).unwrap();
    let gz = entry_bytes(&archive, "rootfs/base.tar.gz");
    std::fs::write(env.path("base.tar.gz"), &gz).unwrap();
    let status = Command::new("tar")
        .args([
            "-xz",
            "--numeric-owner",
            "-p",
            "--xattrs",
            "--xattrs-include=*",
            "-f",
        ])
        .arg(env.path("base.tar.gz"))
        .arg("-C")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    tree::assert_same(&env.rootfs_of("lay"), &out, &Precision::EXACT);
}

#[test]
fn output_is_not_overwritten_without_force() {
    require!(is_root(), "needs root");
    let env = Env::new();
    env.busybox_ct("c1");
    let archive = env.path("c1.tar");
    std::fs::write(&archive, "precious").unwrap();
    let err = env.fails(&["ct", "export", "c1", archive.to_str().unwrap()], 1);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(&archive).unwrap(), b"precious");
    env.ok(&["ct", "export", "--force", "c1", archive.to_str().unwrap()]);
    assert!(tar_names(&archive).contains(&"metadata.yml".to_string()));
}

#[test]
fn one_archive_imported_many_times_gives_independent_containers() {
    require!(
        can_run_containers(),
        "needs root, LXC, uidmap and busybox-static"
    );
    let env = Env::new();
    env.busybox_ct("tmpl");
    let archive = env.path("tmpl.tar");
    env.ok(&["ct", "export", "tmpl", archive.to_str().unwrap()]);
    for id in ["n1", "n2", "n3"] {
        env.ok(&["ct", "import", "--as-id", id, archive.to_str().unwrap()]);
        assert_eq!(
            env.json(&["ct", "show", id])["user"],
            "u1",
            "existing user with equal maps is reused"
        );
    }
    std::fs::write(env.rootfs_of("n1").join("etc/hostname"), "changed\n").unwrap();
    assert_eq!(
        std::fs::read_to_string(env.rootfs_of("n2").join("etc/hostname")).unwrap(),
        "busybox\n"
    );
    env.ok(&["ct", "start", "n2"]);
    env.ok(&["ct", "start", "n3"]);
    assert_eq!(env.state("n2"), "running");
    assert_eq!(env.state("n3"), "running");
    let out = env.ok(&["ct", "exec", "n3", "--", "cat", "/etc/hostname"]);
    assert_eq!(out, "busybox\n");
}

#[test]
fn import_creates_or_reuses_users_and_groups() {
    require!(is_root(), "needs root");
    let src = Env::new();
    src.ok(&["user", "new", "--map", "0:3700000000:65536", "alice"]);
    src.ok(&["group", "new", "/team"]);
    let rootfs = src.busybox_rootfs("r");
    src.ok(&[
        "ct",
        "new",
        "--user",
        "alice",
        "--group",
        "/team",
        "--from-dir",
        rootfs.to_str().unwrap(),
        "app",
    ]);
    // A key osctl-rs does not know survives the trip.
    let conf = src.root().join("pools/default/conf/ct/app.yml");
    let text = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(&conf, format!("{text}future_setting:\n  nested: [1, 2]\n")).unwrap();
    let archive = src.path("app.tar");
    src.ok(&["ct", "export", "app", archive.to_str().unwrap()]);
    // Free alice's host range for the destination host below.
    src.ok(&["ct", "del", "app"]);
    src.ok(&["user", "del", "alice"]);

    let dst = Env::new();
    dst.ok(&["ct", "import", archive.to_str().unwrap()]);
    let ct = dst.json(&["ct", "show", "app"]);
    assert_eq!(
        (ct["user"].as_str(), ct["group"].as_str()),
        (Some("alice"), Some("/team"))
    );
    assert_eq!(
        dst.json(&["user", "show", "alice"])["uid_map"][0],
        "0:3700000000:65536"
    );
    let conf = std::fs::read_to_string(dst.root().join("pools/default/conf/ct/app.yml")).unwrap();
    assert!(conf.contains("future_setting"), "{conf}");
    // --as-user and --as-group take existing ones instead.
    dst.ok(&["user", "new", "bob"]);
    dst.ok(&["group", "new", "/other"]);
    dst.ok(&[
        "ct",
        "import",
        "--as-id",
        "app2",
        "--as-user",
        "bob",
        "--as-group",
        "/other",
        archive.to_str().unwrap(),
    ]);
    let ct = dst.json(&["ct", "show", "app2"]);
    assert_eq!(
        (ct["user"].as_str(), ct["group"].as_str()),
        (Some("bob"), Some("/other"))
    );
}

#[test]
fn consistent_export_of_a_running_container_with_writes_in_flight() {
    require!(
        can_run_containers(),
        "needs root, LXC, uidmap and busybox-static"
    );
    let env = Env::new();
    let root = env.writer_rootfs("writer");
    env.ct_from("busy", &root);
    env.ok(&["ct", "start", "busy"]);
    let live = env.rootfs_of("busy");
    wait_for_writes(&live);
    let archive = env.path("busy.tar");
    env.ok(&["ct", "export", "busy", archive.to_str().unwrap()]);
    assert_eq!(
        env.state("busy"),
        "running",
        "running again after the export"
    );
    let names = tar_names(&archive);
    assert!(
        names.contains(&"rootfs/incremental.tar.gz".to_string()),
        "{names:?}"
    );
    let snaps = String::from_utf8(entry_bytes(&archive, "snapshots.yml")).unwrap();
    assert!(
        snaps.contains("osctl-incr-") && snaps.contains("osctl-base-"),
        "{snaps}"
    );
    // Two layers: a format the original refuses, instead of reading the
    // base alone.
    let meta = String::from_utf8(entry_bytes(&archive, "metadata.yml")).unwrap();
    assert!(meta.contains("format: tar-layers"), "{meta}");
    env.ok(&["archive", "verify", archive.to_str().unwrap()]);
    if original::have_ruby() {
        let work = env.path("original-layers");
        let err = original::import(&archive, "-", Path::new("-"), &work).err();
        let err = err.expect("the original refuses a layered archive");
        assert!(
            err.contains("unsupported archive format 'tar-layers'"),
            "{err}"
        );
    }
    env.ok(&["ct", "import", "--as-id", "snap", archive.to_str().unwrap()]);
    let lines = assert_consistent(&env.rootfs_of("snap"));
    assert!(lines > 100);
    // The copy boots and carries on counting from its own state.
    env.ok(&["ct", "start", "snap"]);
    assert_eq!(env.state("snap"), "running");
}

/// `--single-layer`: the container stays stopped while its one tar is
/// written, and the original reads the archive whole.
#[test]
fn single_layer_export_of_a_running_container_is_the_originals() {
    require!(
        can_run_containers(),
        "needs root, LXC, uidmap and busybox-static"
    );
    let env = Env::new();
    let root = env.writer_rootfs("writer");
    env.ct_from("busy", &root);
    env.ok(&["ct", "start", "busy"]);
    let live = env.rootfs_of("busy");
    wait_for_writes(&live);
    let archive = env.path("busy.tar");
    env.ok(&[
        "ct",
        "export",
        "--single-layer",
        "busy",
        archive.to_str().unwrap(),
    ]);
    assert_eq!(
        env.state("busy"),
        "running",
        "running again after the export"
    );
    let names = tar_names(&archive);
    assert!(
        names.contains(&"rootfs/base.tar.gz".to_string()),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n.contains("incremental")),
        "{names:?}"
    );
    let meta = String::from_utf8(entry_bytes(&archive, "metadata.yml")).unwrap();
    assert!(meta.contains("format: tar\n"), "{meta}");
    env.ok(&["ct", "import", "--as-id", "copy", archive.to_str().unwrap()]);
    assert!(assert_consistent(&env.rootfs_of("copy")) > 100);
    if original::have_ruby() {
        let work = env.path("original");
        let seen = original::import(&archive, "-", Path::new("-"), &work).unwrap();
        assert!(assert_consistent(&seen.seen("/")) > 100);
    }
}

#[test]
fn inconsistent_export_never_stops_the_container() {
    require!(
        can_run_containers(),
        "needs root, LXC, uidmap and busybox-static"
    );
    let env = Env::new();
    env.busybox_ct("c1");
    env.ok(&["ct", "start", "c1"]);
    let pid = || {
        String::from_utf8(
            Command::new("lxc-info")
                .args(["-n", "c1", "-P"])
                .arg(env.root().join("lxc/default"))
                .args(["-p", "-H"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
    };
    let before = pid();
    let archive = env.path("c1.tar");
    env.ok(&[
        "ct",
        "export",
        "--no-consistent",
        "c1",
        archive.to_str().unwrap(),
    ]);
    assert_eq!(pid(), before, "same init: never stopped");
    let names = tar_names(&archive);
    assert!(
        !names.iter().any(|n| n.contains("incremental")),
        "{names:?}"
    );
    let snaps = String::from_utf8(entry_bytes(&archive, "snapshots.yml")).unwrap();
    assert!(!snaps.contains("osctl-incr-"), "{snaps}");
}

fn nothing_left(env: &Env, dir: &Path) {
    let state = env.root().join("pools/default/state");
    let journals: Vec<_> = std::fs::read_dir(&state)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(journals.is_empty(), "journals left: {journals:?}");
    let files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        files.iter().all(|f| f.to_string_lossy() == "lost+found"),
        "files left: {files:?}"
    );
}

#[test]
fn export_into_a_full_file_system_fails_cleanly() {
    require!(
        can_run_containers() && loopfs::can_mount("ext4"),
        "needs root, LXC, loop devices and mkfs.ext4"
    );
    let env = Env::new();
    // Incompressible data that cannot fit into the small file system.
    let root = env.noisy_rootfs("big", 48);
    env.ct_from("big", &root);
    env.ok(&["ct", "start", "big"]);
    let small = LoopFs::new("ext4", 24, "").expect("checked above");
    let target = small.path().join("big.tar");
    let err = env.fails(&["ct", "export", "big", target.to_str().unwrap()], 1);
    assert!(err.contains("No space left on device"), "{err}");
    assert_eq!(env.state("big"), "running");
    nothing_left(&env, small.path());
}

#[test]
fn export_killed_by_sigterm_cleans_up() {
    require!(
        can_run_containers(),
        "needs root, LXC, uidmap and busybox-static"
    );
    let env = Env::new();
    let root = env.noisy_rootfs("big", 400);
    env.ct_from("big", &root);
    env.ok(&["ct", "start", "big"]);
    let out_dir = env.path("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let target = out_dir.join("big.tar");
    let mut child = env
        .cmd()
        .args(["ct", "export", "--compression", "gzip", "big"])
        .arg(&target)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the export is writing, then stop it.
    assert!(wait_until(20, || std::fs::read_dir(&out_dir)
        .unwrap()
        .flatten()
        .any(|e| e
            .metadata()
            .map(|m| m.len() > (1 << 20))
            .unwrap_or(false))));
    signal(&child, libc::SIGTERM);
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(143), "128 + SIGTERM: {stderr}");
    assert!(stderr.contains("SIGTERM"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(env.state("big"), "running");
    nothing_left(&env, &out_dir);
    std::thread::sleep(Duration::from_millis(100));
}

#[test]
fn original_style_tar_archive_imports() {
    require!(is_root(), "needs root");
    let env = Env::new();
    // Built the way vpsAdminOS's osctl builds a tar-format archive: GNU tar
    // for the root file system, gzip, and the configs verbatim.
    let rootfs = env.busybox_rootfs("orig-rootfs");
    let stage = env.path("stage");
    std::fs::create_dir_all(stage.join("config")).unwrap();
    std::fs::create_dir_all(stage.join("rootfs")).unwrap();
    std::fs::write(stage.join("metadata.yml"), "---\ntype: full\nformat: tar\nuser: legacy\ngroup: \"/default\"\ncontainer: legacy-ct\ndatasets: []\nexported_at: 1690000000\n").unwrap();
    std::fs::write(stage.join("config/user.yml"), "---\nugid: 100123\nuid_map:\n- 0:3600000000:65536\ngid_map:\n- 0:3600000000:65536\nstandalone: true\nattrs: {}\n").unwrap();
    std::fs::write(
        stage.join("config/group.yml"),
        "---\ncgparams: []\nattrs: {}\n",
    )
    .unwrap();
    std::fs::write(stage.join("config/container.yml"), "---\nuser: legacy\ngroup: \"/default\"\ndataset: tank/ct/legacy-ct\ndistribution: debian\nversion: '12'\narch: x86_64\nnet_interfaces: []\ncgparams: []\ndevices: []\nprlimits: []\nmounts: []\nautostart:\nephemeral: false\nhostname:\ndns_resolvers:\nnesting: false\nseccomp_profile:\ninit_cmd:\nraw: {}\nattrs: {}\n").unwrap();
    let st = Command::new("tar")
        .args(["-cz", "--numeric-owner", "-f"])
        .arg(stage.join("rootfs/base.tar.gz"))
        .arg("-C")
        .arg(&rootfs)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::write(stage.join("snapshots.yml"), "--- []\n").unwrap();
    let archive = env.path("legacy.tar");
    let st = Command::new("tar")
        .arg("-cf")
        .arg(&archive)
        .arg("-C")
        .arg(&stage)
        .args(["metadata.yml", "config", "rootfs", "snapshots.yml"])
        .status()
        .unwrap();
    assert!(st.success());
    env.ok(&["ct", "import", archive.to_str().unwrap()]);
    let ct = env.json(&["ct", "show", "legacy-ct"]);
    assert_eq!(ct["user"], "legacy");
    // GNU tar's default format: whole seconds, no xattrs.
    let gnu_format = Precision {
        mtimes: Mtimes::Seconds,
        xattrs: false,
        ..Precision::EXACT
    };
    tree::assert_same(&rootfs, &env.rootfs_of("legacy-ct"), &gnu_format);
    let conf =
        std::fs::read_to_string(env.root().join("pools/default/conf/ct/legacy-ct.yml")).unwrap();
    assert!(conf.contains("distribution: debian"), "{conf}");
}
