//! The send's scenarios on every pair of backends the issue names: dir, zfs
//! and btrfs each to its own kind (native rounds where it has them), and zfs
//! to dir (tar rounds from a zfs pool). Each scenario is one function of the
//! source's backend and the target's; `on_every_pair!` makes a test of it
//! per pair, as `it::send::matrix::<scenario>::<pair>`.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Output, Stdio};

use super::{pool_hosts, read, write, PoolHosts};
use crate::it::backends::Kind;
use crate::it::support::wait_until;

/// A test per pair (`name = From => To`) running `scenario`.
macro_rules! pair_tests {
    ($scenario:ident: $($name:ident = $from:ident => $to:ident),*) => {$(
        #[test]
        fn $name() {
            crate::require!(super::super::can_send(), "needs root, LXC, busybox and sshd");
            super::$scenario(Kind::$from, Kind::$to);
        }
    )*};
}

macro_rules! on_every_pair {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            use crate::it::backends::Kind;

            pair_tests!($scenario:
                dir = Dir => Dir,
                zfs = Zfs => Zfs,
                btrfs = Btrfs => Btrfs,
                zfs_to_dir = Zfs => Dir);
        }
    )*};
}

on_every_pair!(
    steps_survive_a_crash_in_each,
    one_shot_move_and_clone,
    failed_steps_are_retried,
    cancel_at_every_step_leaves_nothing_on_the_target,
    a_connection_cut_mid_round_resumes_where_it_stopped,
    every_authorization_case_gets_one_line_and_changes_nothing,
);

/// Two hosts for a send from a pool of `from` to one of `to`, the source's
/// key authorized (trusted where the source's containers must be
/// privileged: zfs-fuse runs no others).
fn pair(from: Kind, to: Kind) -> Option<PoolHosts> {
    let privileged = from == Kind::Zfs;
    let key: &[&str] = if privileged { &["--trusted"] } else { &[] };
    pool_hosts(from, to, Some(key), privileged)
}

/// The one error line of a failed step, whose other lines may only tell
/// the rounds that went before the failure.
fn failed_step(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let (errors, others): (Vec<&str>, Vec<&str>) =
        stderr.lines().partition(|l| l.starts_with("error: "));
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        others.iter().all(|l| l.starts_with("osctl: round ")),
        "{stderr}"
    );
    errors[0].to_string()
}

/// What a round of this pair travels as, as the round lines say it.
fn round_kind(from: Kind, to: Kind) -> String {
    match (from, to) {
        (Kind::Dir, _) => "(tar stream)".into(),
        (from, to) if from == to => format!("({} stream)", from.name()),
        _ => "(tar stream)".into(),
    }
}

impl PoolHosts {
    /// `ct send STEP source:web`, which must succeed; its stderr.
    fn step(&self, step: &str) -> String {
        self.h.send_ok(&[step, "source:web"])
    }

    /// `ct send STEP source:web`, which must fail: its one error line
    /// (after the lines of the rounds that went before the failure).
    fn step_fails(&self, step: &str) -> String {
        failed_step(&self.h.send(&[step, "source:web"]))
    }

    /// `ct send config` of `web` to the target's pool.
    fn stage(&self) {
        self.h
            .send_ok(&["config", "--to-pool", "target", "source:web", "{dest}"]);
    }

    /// `ct send ARGS` with `OSCTL_FAILPOINT=point`, which must kill it there.
    fn dies_at(&self, point: &str, args: &[&str]) {
        let out = self.h.send_env(("OSCTL_FAILPOINT", point), args);
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGKILL),
            "ct send {args:?} did not die at {point}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The target's `osctl receive` runs with `OSCTL_FAILPOINT=point` from
    /// now on (None: without): the forced command of every authorized key
    /// is written anew by an entry added and deleted with it set.
    fn target_failpoint(&self, point: Option<&str>) {
        let key = self.h.public_key();
        for args in [
            &["add", "failpoint", "--passphrase", "failpoint"][..],
            &["del", "failpoint"][..],
        ] {
            let mut cmd = self.h.dst.cmd();
            cmd.args(["receive", "authorized-keys"]).args(args);
            match point {
                Some(point) => cmd.env("OSCTL_FAILPOINT", point),
                None => cmd.env_remove("OSCTL_FAILPOINT"),
            };
            let mut child = cmd
                .stdin(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            if args[0] == "add" {
                stdin.write_all(key.as_bytes()).unwrap();
            }
            drop(stdin);
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "{out:?}");
        }
    }

    /// `ct show` of container `id` in the pool `source` or `target`.
    fn show(&self, pool: &str, id: &str) -> serde_json::Value {
        let env = match pool {
            "source" => &self.h.src,
            _ => &self.h.dst,
        };
        env.json(&["--pool", pool, "ct", "show", id])
    }

    fn state(&self, pool: &str, id: &str) -> String {
        self.show(pool, id)["state"].as_str().unwrap().to_string()
    }

    /// The root file system of the target's container `id`.
    fn there(&self, id: &str) -> PathBuf {
        PathBuf::from(self.show("target", id)["rootfs"].as_str().unwrap())
    }

    /// The target's answer to `receive status` for `web`.
    fn target_status(&self) -> serde_json::Value {
        let out = self.h.raw_request("receive status web --pool target", b"");
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The rounds the target applied.
    fn target_round(&self) -> u64 {
        self.target_status()["round"].as_u64().unwrap()
    }

    /// Nothing of the send is left: no round snapshot on either side, no
    /// spool on the target.
    fn assert_no_leftovers(&self) {
        assert_eq!(self.stores.round_snapshots(0), Vec::<String>::new());
        assert_eq!(self.stores.round_snapshots(1), Vec::<String>::new());
        let spool = self.stores.roots[1].join("state/receive/web");
        assert!(!spool.exists(), "{}", spool.display());
    }

    /// The target's copy runs with `files` (name, body) in /root, and
    /// without `gone`; the source's container is gone.
    fn assert_moved(&self, files: &[(&str, &str)], gone: &[&str]) {
        assert_eq!(self.state("target", "web"), "running");
        let there = self.there("web");
        for (name, body) in files {
            let got = read(&there, &format!("root/{name}"));
            assert_eq!(got.as_deref(), Some(*body), "root/{name}");
        }
        for name in gone {
            assert_eq!(read(&there, &format!("root/{name}")), None, "root/{name}");
        }
        assert_eq!(read(&there, "etc/hostname").as_deref(), Some("busybox\n"));
        let left = self.h.src.json(&["--pool", "source", "ct", "ls"]);
        assert_eq!(left, serde_json::json!([]));
    }
}

/// Step by step with files written between the steps, each step killed
/// once where it has recorded part of its work (on the source, and on the
/// target after it applied a round), then run again: the progress kept on
/// both sides carries the move to its end as if nothing had happened.
fn steps_survive_a_crash_in_each(from: Kind, to: Kind) {
    let Some(p) = pair(from, to) else { return };
    p.h.src.ok(&["ct", "start", "source:web"]);
    write(&p.live, "root/a", "first");
    let send_column = |env: &crate::it::support::Env| {
        env.ok(&["ct", "ls", "-H", "-o", "send"]).trim().to_string()
    };
    let config = ["config", "--to-pool", "target", "source:web", "{dest}"];
    p.dies_at("send-config-after-log", &config);
    p.stage();
    assert_eq!(send_column(&p.h.dst), "staged");
    assert_eq!(send_column(&p.h.src), "sending: config");
    let staged = p.h.dst.fails(&["ct", "start", "target:web"], 1);
    assert!(staged.contains("staged"), "{staged}");

    p.dies_at("send-after-dump", &["rootfs", "source:web"]);
    let out = p.step("rootfs");
    let kind = round_kind(from, to);
    assert!(
        out.contains("round 1:") && out.contains(&kind),
        "{kind}: {out}"
    );

    write(&p.live, "root/b", "second");
    p.target_failpoint(Some("receive-after-apply"));
    let err = p.step_fails("sync");
    assert!(err.contains("127.0.0.2"), "{err}");
    p.target_failpoint(None);
    let out = p.step("sync");
    // Round 2 again (it was in, not recorded), then round 3.
    assert!(
        out.contains("round 2:") && out.contains("round 3:"),
        "{out}"
    );
    assert_eq!(p.target_round(), 3);

    std::fs::remove_file(p.live.join("root/a")).unwrap();
    write(&p.live, "root/c", "third");
    p.dies_at("send-after-round", &["sync", "source:web"]);
    p.step("sync");

    write(&p.live, "root/d", "fourth");
    p.dies_at("send-after-stop", &["state", "source:web"]);
    assert_eq!(p.state("source", "web"), "stopped");
    let out = p.step("state");
    assert!(
        out.contains("cutover: container 'web' was down for"),
        "{out}"
    );
    assert_eq!(send_column(&p.h.dst), "received");

    p.dies_at("send-cleanup-after-done", &["cleanup", "source:web"]);
    p.step("cleanup");
    assert_eq!(send_column(&p.h.dst), "-");
    p.assert_moved(&[("b", "second"), ("c", "third"), ("d", "fourth")], &["a"]);
    p.assert_no_leftovers();
}

/// All steps in one go: with `--clone` the source runs on and the copy is
/// its own; then the container itself moves.
fn one_shot_move_and_clone(from: Kind, to: Kind) {
    let Some(p) = pair(from, to) else { return };
    p.h.src.ok(&["ct", "start", "source:web"]);
    write(&p.live, "root/x", "carried");
    let clone = [
        "--clone",
        "--as-id",
        "web2",
        "--to-pool",
        "target",
        "source:web",
        "{dest}",
    ];
    let out = p.h.send_ok(&clone);
    assert!(out.contains("down for"), "{out}");
    assert_eq!(p.state("source", "web"), "running");
    assert_eq!(p.state("target", "web2"), "running");
    assert_eq!(read(&p.there("web2"), "root/x").as_deref(), Some("carried"));
    let cfg = std::fs::read_to_string(p.stores.roots[0].join("conf/ct/web.yml")).unwrap();
    assert!(!cfg.contains("send_log"), "{cfg}");

    write(&p.live, "root/y", "moved");
    p.h.send_ok(&["--to-pool", "target", "source:web", "{dest}"]);
    p.assert_moved(&[("x", "carried"), ("y", "moved")], &[]);
    assert_eq!(read(&p.there("web2"), "root/y"), None);
    p.assert_no_leftovers();
}

/// Each failure the issue names, then the same step again: the final
/// receive of a round failing (undone on the target), the source's stop
/// failing, the cutover's round failing, the target's start failing, the
/// target unreachable. After each the source runs, the target's copy stays
/// staged at the last round it applied; the last attempt completes the move.
fn failed_steps_are_retried(from: Kind, to: Kind) {
    let Some(mut p) = pair(from, to) else { return };
    p.h.src.ok(&["ct", "start", "source:web"]);
    p.stage();
    p.step("rootfs");
    let staged_and_source_runs = |p: &PoolHosts, round: u64, after: &str| {
        assert_eq!(p.state("source", "web"), "running", "after {after}");
        assert_eq!(p.target_status()["state"], "staged", "after {after}");
        assert_eq!(p.target_round(), round, "after {after}");
    };

    write(&p.live, "root/a", "first");
    p.target_failpoint(Some("receive-round-2:fail"));
    let err = p.step_fails("sync");
    assert!(err.contains("round 2 of container 'web'"), "{err}");
    staged_and_source_runs(&p, 1, "a failed receive");
    p.target_failpoint(None);
    p.step("sync");

    write(&p.live, "root/b", "second");
    let before = p.target_round();
    let out = p.h.send_env(
        ("OSCTL_FAILPOINT", "send-stop:fail"),
        &["state", "source:web"],
    );
    let err = failed_step(&out);
    assert!(err.contains("send-stop"), "{err}");
    // The round while the source ran went before the stop.
    staged_and_source_runs(&p, before + 1, "a failed stop");

    // The cutover's round: the one after the round sent while running.
    let last = p.target_round() + 2;
    p.target_failpoint(Some(&format!("receive-round-{last}:fail")));
    let err = p.step_fails("state");
    assert!(err.contains(&format!("round {last} ")), "{err}");
    staged_and_source_runs(&p, last - 1, "a failed last round");

    p.target_failpoint(Some("receive-start:fail"));
    let err = p.step_fails("state");
    assert!(err.contains("receive-start"), "{err}");
    let applied = p.target_round();
    staged_and_source_runs(&p, applied, "a failed start");
    assert_eq!(p.state("target", "web"), "stopped");
    p.target_failpoint(None);

    write(&p.live, "root/c", "third");
    p.h.sshd.stop();
    let err = p.step_fails("state");
    assert!(err.contains("127.0.0.2"), "{err}");
    assert_eq!(p.state("source", "web"), "running");
    p.h.sshd.restart();

    write(&p.live, "root/d", "fourth");
    p.step("state");
    assert_eq!(p.state("source", "web"), "stopped");
    p.step("cleanup");
    p.assert_moved(
        &[
            ("a", "first"),
            ("b", "second"),
            ("c", "third"),
            ("d", "fourth"),
        ],
        &[],
    );
    p.assert_no_leftovers();
}

/// `cancel` after each step: the target holds nothing of the send (no
/// container, user, spool or round snapshot), the source runs as before.
fn cancel_at_every_step_leaves_nothing_on_the_target(from: Kind, to: Kind) {
    let Some(p) = pair(from, to) else { return };
    p.h.src.ok(&["ct", "start", "source:web"]);
    let steps: [&[&str]; 4] = [
        &["config"],
        &["config", "rootfs"],
        &["config", "rootfs", "sync"],
        &["config", "rootfs", "state"],
    ];
    for steps in steps {
        for step in steps {
            match *step {
                "config" => p.stage(),
                other => drop(p.step(other)),
            }
        }
        p.step("cancel");
        assert!(p.h.dst_ids().is_empty(), "after {steps:?}");
        assert!(p.h.dst_users().is_empty(), "after {steps:?}");
        assert_eq!(p.target_status()["exists"], false, "after {steps:?}");
        p.assert_no_leftovers();
        assert_eq!(p.state("source", "web"), "running", "after {steps:?}");
    }
}

/// Kills the `ssh` children of `osctl` once the target's spool of `round`
/// holds some of it; returns the bytes it held.
fn cut_connection(p: &PoolHosts, mut osctl: Child, round: u32) -> u64 {
    let spool = p.stores.roots[1].join(format!("state/receive/web/round-{round}"));
    let size = || std::fs::metadata(&spool).map_or(0, |m| m.len());
    assert!(
        wait_until(60, || size() > (1 << 20)),
        "the round never reached the target"
    );
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let Some((comm, rest)) = stat.split_once(") ") else {
            continue;
        };
        let ppid: u32 = rest
            .split(' ')
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if ppid == osctl.id() && comm.ends_with("(ssh") {
            let pid: i32 = entry.file_name().to_string_lossy().parse().unwrap();
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    let out = osctl.wait().unwrap();
    assert!(!out.success(), "the step ended before the cut");
    size()
}

/// A connection cut in the middle of `rootfs` and of `sync`: the step run
/// again sends the rest of the round, not all of it.
fn a_connection_cut_mid_round_resumes_where_it_stopped(from: Kind, to: Kind) {
    let Some(p) = pair(from, to) else { return };
    p.h.src.ok(&["ct", "start", "source:web"]);
    let noise = random_bytes(192 << 20);
    std::fs::write(p.live.join("root/noise"), &noise).unwrap();
    p.stage();
    let spawn = |step: &str| {
        let mut cmd = p.h.send_command(&[step, "source:web"]);
        cmd.stderr(Stdio::null()).spawn().unwrap()
    };
    let held = cut_connection(&p, spawn("rootfs"), 1);
    let out = p.step("rootfs");
    assert!(
        out.contains("round 1:") && out.contains("resumed"),
        "held {held}: {out}"
    );
    std::fs::write(p.live.join("root/more"), &noise[..128 << 20]).unwrap();
    cut_connection(&p, spawn("sync"), 2);
    let out = p.step("sync");
    assert!(out.contains("round 2:") && out.contains("resumed"), "{out}");
    p.step("state");
    p.step("cleanup");
    let there = p.there("web");
    assert!(std::fs::read(there.join("root/noise")).unwrap() == noise);
    assert!(std::fs::read(there.join("root/more")).unwrap()[..] == noise[..128 << 20]);
    p.assert_no_leftovers();
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    let mut random = std::fs::File::open("/dev/urandom").unwrap();
    std::io::Read::read_exact(&mut random, &mut bytes).unwrap();
    bytes
}

/// Every way a key can be refused gets one line and leaves the target as it
/// was; the right passphrase from the right address sends, and spends a
/// single-use entry.
fn every_authorization_case_gets_one_line_and_changes_nothing(from: Kind, to: Kind) {
    let privileged = from == Kind::Zfs;
    let Some(p) = pool_hosts(from, to, None, privileged) else {
        return;
    };
    let h = &p.h;
    let trusted: &[&str] = if privileged { &["--trusted"] } else { &[] };
    // `ct send [STEP] --passphrase P --to-pool target source:ID DEST`.
    let with_passphrase = |step: &[&str], passphrase: &str, id: &str| -> Vec<String> {
        let ct = format!("source:{id}");
        let rest = [
            "--passphrase",
            passphrase,
            "--to-pool",
            "target",
            &ct,
            "{dest}",
        ];
        step.iter().chain(&rest).map(|s| s.to_string()).collect()
    };
    let config = |passphrase: &str, id: &str| {
        let args = with_passphrase(&["config"], passphrase, id);
        h.send_fails(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let nothing_on_the_target = || {
        assert!(h.dst_ids().is_empty() && h.dst_users().is_empty());
        assert!(!p.stores.roots[1].join("state/receive/web").exists());
    };
    p.h.src.ok(&["ct", "start", "source:web"]);
    // No key authorized: sshd itself refuses.
    let e = config("none", "web");
    assert!(e.contains("Permission denied"), "{e}");
    nothing_on_the_target();
    // Two entries of one key, told apart by passphrase.
    let entry = |name: &str, passphrase: &str, ctid: &str, more: &[&str]| {
        let mut args = vec![
            "--from",
            "127.0.0.1",
            "--passphrase",
            passphrase,
            "--ctid",
            ctid,
        ];
        args.extend_from_slice(more);
        args.extend_from_slice(trusted);
        h.authorize(name, &args);
    };
    entry("other", "p1", "other", &[]);
    entry("once", "p2", "web", &["--single-use"]);
    let e = config("nope", "web");
    assert!(e.contains("wrong passphrase"), "{e}");
    let e = config("p1", "web");
    assert!(e.contains("may send only container 'other'"), "{e}");
    // From 127.0.0.3, which both entries' from= exclude: sshd refuses.
    let args = with_passphrase(&["config"], "p2", "web");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let from3 = h.send_env(("OSCTL_SSH_OPTIONS", "-b 127.0.0.3"), &args);
    assert_eq!(from3.status.code(), Some(1));
    let e = String::from_utf8_lossy(&from3.stderr);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.contains("Permission denied"), "{e}");
    nothing_on_the_target();
    // The right passphrase from the right address: the send completes, and
    // the single-use entry is gone with it.
    let send = with_passphrase(&[], "p2", "web");
    h.send_ok(&send.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(h.dst_ids(), ["web"]);
    let names: Vec<String> = h
        .dst
        .json(&["receive", "authorized-keys", "ls"])
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["other"]);
    // Spent: the same passphrase is refused now.
    p.new_source_ct("web3");
    let e = config("p2", "web3");
    assert!(e.contains("wrong passphrase"), "{e}");
    assert_eq!(h.dst_ids(), ["web"]);
}
