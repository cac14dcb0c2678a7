//! Containers under LXC: lifecycle, exec, stop, locking, crash safety.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use testkit::tree::{self, build_every_kind, Options, Precision};

use super::support::{can_run_containers, is_root, Env};
use crate::require;

#[test]
fn unprivileged_lifecycle_with_exec_and_graceful_stop() {
    require!(
        can_run_containers(),
        "needs root, LXC, uidmap and busybox-static"
    );
    let env = Env::new();
    env.busybox_ct("c1");
    let show = env.json(&["ct", "show", "c1"]);
    assert_eq!(show["state"], "stopped");
    assert_eq!(show["user"], "u1");
    assert_eq!(show["group"], "/default");
    let rootfs = show["rootfs"].as_str().unwrap().to_string();
    // Unshifted on disk: root inside is uid 0 on the host's disk.
    assert_eq!(
        std::fs::metadata(Path::new(&rootfs).join("bin/busybox"))
            .unwrap()
            .uid(),
        0
    );

    env.ok(&["ct", "start", "c1"]);
    assert_eq!(env.state("c1"), "running");
    // Inside, we are root of the user namespace...
    let out = env
        .cmd()
        .args(["ct", "exec", "c1", "--", "id", "-u"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
    // ...which is the user's host uid seen from outside.
    let map = env.json(&["user", "show", "u1"])["uid_map"][0]
        .as_str()
        .unwrap()
        .to_string();
    let host_uid: u32 = map.split(':').nth(1).unwrap().parse().unwrap();
    let ps = std::process::Command::new("ps")
        .args(["-o", "uid=", "-C", "sleep"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&ps.stdout)
        .lines()
        .any(|l| l.trim() == host_uid.to_string()));
    // A file created inside lands unshifted on disk.
    env.ok(&["ct", "exec", "c1", "--", "touch", "/root/made-inside"]);
    assert_eq!(
        std::fs::metadata(Path::new(&rootfs).join("root/made-inside"))
            .unwrap()
            .uid(),
        0
    );
    // Exit status passes through.
    let out = env.run(&["ct", "exec", "c1", "--", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));

    let err = env.fails(&["ct", "del", "c1"], 1);
    assert!(err.contains("container 'c1' is running"), "{err}");

    let t = Instant::now();
    env.ok(&["ct", "stop", "--timeout", "20", "c1"]);
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "graceful stop, not the kill timeout"
    );
    assert_eq!(env.state("c1"), "stopped");
    let err = env.fails(&["ct", "exec", "c1", "--", "true"], 1);
    assert!(err.contains("not running"), "{err}");

    env.ok(&["ct", "restart", "c1"]);
    assert_eq!(env.state("c1"), "running");
    env.ok(&["ct", "del", "--force", "c1"]);
    assert!(!Path::new(&rootfs).exists());
    assert!(env.fails(&["ct", "show", "c1"], 1).contains("not found"));
}

#[test]
fn init_ignoring_signals_is_killed_after_timeout() {
    require!(
        can_run_containers(),
        "needs root, LXC, uidmap and busybox-static"
    );
    let env = Env::new();
    let rootfs = env.stubborn_rootfs("stubborn");
    env.ct_from("stubborn", &rootfs);
    env.ok(&["ct", "start", "stubborn"]);
    assert_eq!(env.state("stubborn"), "running");
    let t = Instant::now();
    env.ok(&["ct", "stop", "--timeout", "3", "stubborn"]);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(3),
        "waited for the timeout: {took:?}"
    );
    assert!(took < Duration::from_secs(20), "then killed: {took:?}");
    assert_eq!(env.state("stubborn"), "stopped");
}

#[test]
fn concurrent_operations_on_one_container_are_serialised() {
    require!(
        can_run_containers(),
        "needs root, LXC, uidmap and busybox-static"
    );
    let env = Env::new();
    // An init that ignores SIGPWR keeps `ct stop` holding the lock until its timeout.
    let rootfs = env.stubborn_rootfs("slow");
    env.ct_from("slow", &rootfs);
    env.ok(&["ct", "start", "slow"]);

    let t = Instant::now();
    let mut stop = env
        .cmd()
        .args(["ct", "stop", "--timeout", "3", "slow"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // Waits for the stop to finish, then finds the container stopped and deletes it.
    let del = env.run(&["ct", "del", "slow"]);
    let del_done = t.elapsed();
    assert!(stop.wait().unwrap().success());
    assert!(
        del.status.success(),
        "{}",
        String::from_utf8_lossy(&del.stderr)
    );
    assert!(
        del_done >= Duration::from_secs(3),
        "del waited for the stop: {del_done:?}"
    );

    // With a short lock timeout the second operation is refused clearly instead.
    env.ct_from("slow", &rootfs);
    env.ok(&["ct", "start", "slow"]);
    let mut stop = env
        .cmd()
        .args(["ct", "stop", "--timeout", "3", "slow"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let out = env
        .cmd()
        .env("OSCTL_LOCK_TIMEOUT", "0")
        .args(["ct", "start", "slow"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("container 'slow' in pool 'default' is busy"),
        "{err}"
    );
    assert!(stop.wait().unwrap().success());
}

#[test]
fn configs_survive_kill_during_writes() {
    require!(is_root(), "needs root");
    let env = Env::new();
    let rootfs = env.path("r");
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    env.ct_from("c1", &rootfs);
    let config = env.root().join("pools/default/conf/ct/c1.yml");
    for i in 0..60u64 {
        let value = if i % 2 == 0 { "on" } else { "off" };
        let mut child = env
            .cmd()
            .args(["ct", "set", "privileged", "c1", value])
            .spawn()
            .unwrap();
        // Kill at varying points of the command's life.
        std::thread::sleep(Duration::from_micros((i * 397) % 4000));
        let _ = child.kill();
        let _ = child.wait();
        let text = std::fs::read_to_string(&config).expect("config still exists");
        assert!(
            text.contains("user: u1") && text.contains("group: /default"),
            "whole config: {text:?}"
        );
    }
    // Still readable by osctl itself.
    assert_eq!(env.json(&["ct", "show", "c1"])["user"], "u1");
}

#[test]
fn from_tar_keeps_every_file_kind_for_each_compression() {
    require!(is_root(), "needs root (owners, device nodes)");
    let env = Env::new();
    let tree = env.path("tree");
    build_every_kind(&tree, &Options::rootfs("from-tar"));
    env.ok(&["user", "new", "u1"]);
    for (i, (ext, flag)) in [("tar", ""), ("tar.gz", "-z"), ("tar.zst", "--zstd")]
        .iter()
        .enumerate()
    {
        let tarball = env.path(&format!("rootfs.{ext}"));
        let mut tar = std::process::Command::new("tar");
        tar.args([
            "-c",
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=*",
            "--sparse",
            "-f",
        ])
        .arg(&tarball);
        if !flag.is_empty() {
            tar.arg(flag);
        }
        assert!(tar
            .arg("-C")
            .arg(&tree)
            .arg(".")
            .status()
            .unwrap()
            .success());
        let id = format!("t{i}");
        env.ok(&[
            "ct",
            "new",
            "--user",
            "u1",
            "--from-tar",
            tarball.to_str().unwrap(),
            &id,
        ]);
        tree::assert_same(&tree, &env.rootfs_of(&id), &Precision::EXACT);
    }
    // A missing tarball creates nothing.
    let err = env.fails(
        &[
            "ct",
            "new",
            "--user",
            "u1",
            "--from-tar",
            "/nonexistent.tar",
            "t9",
        ],
        1,
    );
    assert!(err.contains("/nonexistent.tar not found"), "{err}");
    assert!(!env.root().join("pools/default/ct/t9").exists());
    // A broken tarball is cleaned up after.
    std::fs::write(env.path("broken.tar.gz"), b"\x1f\x8bgarbage").unwrap();
    env.fails(
        &[
            "ct",
            "new",
            "--user",
            "u1",
            "--from-tar",
            env.path("broken.tar.gz").to_str().unwrap(),
            "t8",
        ],
        1,
    );
    assert!(!env.root().join("pools/default/ct/t8").exists());
    assert!(env.fails(&["ct", "show", "t8"], 1).contains("not found"));
}
