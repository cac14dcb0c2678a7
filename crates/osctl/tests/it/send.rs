//! `osctl ct send` between two hosts on this machine: each with its own
//! OSCTL_ROOT, the target with its own subordinate-id files, the target behind a real sshd on
//! 127.0.0.2 (its own host key, config and port) whose authorized_keys
//! osctl manages; 127.0.0.3 is a source address that `--from` refuses.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::it::backends::Kind;
use crate::it::support::{can_run_containers, have, wait_until, Env};
use crate::require;
use testkit::sshd::{Sshd, SSHD};

/// The target host's sshd, serving the authorized_keys osctl writes.
fn target_sshd(target: &Env) -> Sshd {
    Sshd::start("127.0.0.2", &[target.root().join("send/authorized_keys")])
}

fn can_send() -> bool {
    can_run_containers() && Path::new(SSHD).exists() && have("ssh")
}

/// Two hosts and the target's sshd; the source's key made.
struct Hosts {
    src: Env,
    dst: Env,
    sshd: Sshd,
}

impl Hosts {
    fn new() -> Hosts {
        // The target's subordinate-id files are its own, and empty: a host
        // that never saw the source's users (parallel tests come and go in
        // /etc's). The source's lines stay in /etc, where newuidmap finds
        // them for the copy started on the target too (the same ids).
        let dst = Env::with_private_subids();
        let subuid = dst.subuid_file();
        std::fs::write(&subuid, "").unwrap();
        std::fs::write(subuid.with_file_name("subgid"), "").unwrap();
        let src = Env::new();
        src.ok(&["send", "key", "gen"]);
        // The target's pool first: the receive command runs with its state.
        dst.ok(&["pool", "ls"]);
        let sshd = target_sshd(&dst);
        Hosts { src, dst, sshd }
    }

    fn public_key(&self) -> String {
        let path = self.src.ok(&["send", "key", "path", "public"]);
        std::fs::read_to_string(path.trim()).unwrap()
    }

    /// `receive authorized-keys add NAME ARGS` on the target with the
    /// source's public key.
    fn authorize(&self, name: &str, args: &[&str]) {
        let mut full = vec!["receive", "authorized-keys", "add", name];
        full.extend_from_slice(args);
        let mut child = self
            .dst
            .cmd()
            .args(&full)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let key = self.public_key();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(key.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `osctl ct send ARGS` on the source, DEST appended where `{dest}` is.
    fn send(&self, args: &[&str]) -> std::process::Output {
        let dest = self.sshd.dest();
        let args: Vec<&str> = args
            .iter()
            .map(|a| if *a == "{dest}" { dest.as_str() } else { a })
            .collect();
        let mut full = vec!["ct", "send"];
        full.extend_from_slice(&args);
        self.src.cmd().args(&full).output().unwrap()
    }

    fn send_ok(&self, args: &[&str]) -> String {
        let out = self.send(args);
        assert!(
            out.status.success(),
            "ct send {args:?}: {}\nsshd: {}",
            String::from_utf8_lossy(&out.stderr),
            self.sshd.log()
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// A failing `ct send` step: one error line, returned.
    fn send_fails(&self, args: &[&str]) -> String {
        let out = self.send(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "ct send {args:?}: {stderr}");
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        errors[0].to_string()
    }

    fn dst_ids(&self) -> Vec<String> {
        let list = self.dst.json(&["ct", "ls"]);
        list.as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect()
    }
}

fn write(root: &Path, rel: &str, body: &str) {
    std::fs::write(root.join(rel), body).unwrap();
}

fn read(root: &Path, rel: &str) -> Option<String> {
    std::fs::read_to_string(root.join(rel)).ok()
}

/// A running busybox container `id` on the source; its root file system.
fn running_ct(h: &Hosts, id: &str) -> PathBuf {
    h.src.busybox_ct(id);
    h.src.ok(&["ct", "start", id]);
    h.src.rootfs_of(id)
}

#[test]
fn dir_step_by_step_carries_every_change_and_stages_until_the_cutover() {
    require!(can_send(), "needs root, LXC, busybox and sshd");
    let h = Hosts::new();
    h.authorize("src", &[]);
    let live = running_ct(&h, "web");
    write(&live, "root/a", "before config");
    h.send_ok(&["config", "web", "{dest}"]);
    assert_eq!(h.dst_ids(), ["web"]);
    let staged = h.dst.fails(&["ct", "start", "web"], 1);
    assert!(staged.contains("staged"), "{staged}");
    let send_column = |env: &Env| env.ok(&["ct", "ls", "-H", "-o", "send"]).trim().to_string();
    assert_eq!(send_column(&h.dst), "staged");
    assert_eq!(send_column(&h.src), "sending: config");
    h.send_ok(&["rootfs", "web"]);
    let there = h.dst.rootfs_of("web");
    assert_eq!(read(&there, "root/a").as_deref(), Some("before config"));
    write(&live, "root/b", "after rootfs");
    h.send_ok(&["sync", "web"]);
    write(&live, "root/c", "after sync");
    std::fs::remove_file(live.join("root/a")).unwrap();
    h.send_ok(&["sync", "web"]);
    write(&live, "root/d", "before state");
    let out = h.send_ok(&["state", "web"]);
    assert!(
        out.contains("cutover: container 'web' was down for"),
        "{out}"
    );
    assert!(out.contains("round 4:"), "{out}");
    assert_eq!(h.dst.state("web"), "running");
    assert_eq!(h.src.state("web"), "stopped");
    assert_eq!(send_column(&h.dst), "received");
    assert_eq!(read(&there, "root/a"), None);
    for (f, body) in [
        ("b", "after rootfs"),
        ("c", "after sync"),
        ("d", "before state"),
    ] {
        assert_eq!(read(&there, &format!("root/{f}")).as_deref(), Some(body));
    }
    h.send_ok(&["cleanup", "web"]);
    assert_eq!(send_column(&h.dst), "-");
    assert!(h.src.json(&["ct", "ls"]).as_array().unwrap().is_empty());
    // The target's copy is its own now: no send log left.
    let cfg = std::fs::read_to_string(h.dst.root().join("pools/default/conf/ct/web.yml")).unwrap();
    assert!(!cfg.contains("send_log"), "{cfg}");
}

impl Hosts {
    fn send_env(&self, env: (&str, &str), args: &[&str]) -> std::process::Output {
        let dest = self.sshd.dest();
        let args: Vec<&str> = args
            .iter()
            .map(|a| if *a == "{dest}" { dest.as_str() } else { a })
            .collect();
        let mut full = vec!["ct", "send"];
        full.extend_from_slice(&args);
        self.src
            .cmd()
            .env(env.0, env.1)
            .args(&full)
            .output()
            .unwrap()
    }

    fn dst_users(&self) -> Vec<String> {
        let list = self.dst.json(&["user", "ls"]);
        list.as_array()
            .unwrap()
            .iter()
            .map(|u| u["name"].as_str().unwrap().to_string())
            .collect()
    }
}

#[test]
fn every_authorization_case_gets_one_line_and_changes_nothing() {
    require!(can_send(), "needs root, LXC, busybox and sshd");
    let h = Hosts::new();
    running_ct(&h, "web");
    // No key authorized: sshd itself refuses.
    let e = h.send_fails(&["config", "web", "{dest}"]);
    assert!(e.contains("Permission denied"), "{e}");
    assert!(h.dst_ids().is_empty());
    // Two entries of one key, told apart by passphrase.
    h.authorize(
        "other",
        &[
            "--from",
            "127.0.0.1",
            "--passphrase",
            "p1",
            "--ctid",
            "other",
        ],
    );
    h.authorize(
        "once",
        &[
            "--from",
            "127.0.0.1",
            "--passphrase",
            "p2",
            "--ctid",
            "web",
            "--single-use",
        ],
    );
    let e = h.send_fails(&["config", "--passphrase", "nope", "web", "{dest}"]);
    assert!(e.contains("wrong passphrase"), "{e}");
    let e = h.send_fails(&["config", "--passphrase", "p1", "web", "{dest}"]);
    assert!(e.contains("may send only container 'other'"), "{e}");
    // From 127.0.0.3, which both entries' from= exclude: sshd refuses.
    let from3 = h.send_env(
        ("OSCTL_SSH_OPTIONS", "-b 127.0.0.3"),
        &["config", "--passphrase", "p2", "web", "{dest}"],
    );
    assert_eq!(from3.status.code(), Some(1));
    let e = String::from_utf8_lossy(&from3.stderr);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.contains("Permission denied"), "{e}");
    assert!(h.dst_ids().is_empty() && h.dst_users().is_empty());
    // The right passphrase from the right address: the send completes, and
    // the single-use entry is gone with it.
    h.send_ok(&["--passphrase", "p2", "web", "{dest}"]);
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
    running_ct(&h, "web3");
    let e = h.send_fails(&["config", "--passphrase", "p2", "web3", "{dest}"]);
    assert!(e.contains("wrong passphrase"), "{e}");
    assert_eq!(h.dst_ids(), ["web"]);
}

#[test]
fn one_shot_clone_keeps_the_source_running_and_the_copy_is_its_own() {
    require!(can_send(), "needs root, LXC, busybox and sshd");
    let h = Hosts::new();
    h.authorize("src", &[]);
    let live = running_ct(&h, "web");
    write(&live, "root/x", "cloned");
    let out = h.send_ok(&["--clone", "--as-id", "web2", "web", "{dest}"]);
    assert!(out.contains("down for"), "{out}");
    assert_eq!(h.src.state("web"), "running");
    assert_eq!(h.dst_ids(), ["web2"]);
    assert_eq!(h.dst.state("web2"), "running");
    assert_eq!(
        read(&h.dst.rootfs_of("web2"), "root/x").as_deref(),
        Some("cloned")
    );
    // No send under way on either side: a new one may start.
    let cfg = std::fs::read_to_string(h.src.root().join("pools/default/conf/ct/web.yml")).unwrap();
    assert!(!cfg.contains("send_log"), "{cfg}");
}

/// The network interface `name` of container `id` as `ct netif show -j` prints it.
fn netif_of(env: &Env, id: &str, name: &str) -> serde_json::Value {
    env.json(&["ct", "netif", "show", id, name])
}

/// A clone sent to another host is a clone as `ct import --as-id` makes it:
/// its interface keeps its name and kind but gets a new MAC and no address;
/// a plain move keeps both (issue 14).
#[test]
fn a_sent_clone_gets_a_new_mac_and_no_address_a_move_keeps_them() {
    require!(can_send(), "needs root, LXC, busybox and sshd");
    let h = Hosts::new();
    h.authorize("src", &[]);
    h.src.busybox_ct("web");
    h.src.ok(&["ct", "netif", "new", "routed", "web", "eth0"]);
    h.src
        .ok(&["ct", "netif", "ip", "add", "web", "eth0", "10.231.7.2/32"]);
    let mac = netif_of(&h.src, "web", "eth0")["hwaddr"].clone();
    h.send_ok(&["--clone", "--no-start", "--as-id", "web2", "web", "{dest}"]);
    let clone = netif_of(&h.dst, "web2", "eth0");
    assert_ne!(clone["hwaddr"], mac, "{clone}");
    assert_eq!(
        clone["ip_addresses"]["v4"],
        serde_json::json!([]),
        "{clone}"
    );
    h.send_ok(&["--no-start", "web", "{dest}"]);
    let moved = netif_of(&h.dst, "web", "eth0");
    assert_eq!(moved["hwaddr"], mac, "{moved}");
    assert_eq!(
        moved["ip_addresses"]["v4"],
        serde_json::json!(["10.231.7.2/32"]),
        "{moved}"
    );
}

#[test]
fn cancel_at_every_step_leaves_nothing_on_the_target() {
    require!(can_send(), "needs root, LXC, busybox and sshd");
    let h = Hosts::new();
    h.authorize("src", &[]);
    running_ct(&h, "web");
    let steps: [&[&str]; 4] = [
        &["config"],
        &["config", "rootfs"],
        &["config", "rootfs", "sync"],
        &["config", "rootfs", "state"],
    ];
    for steps in steps {
        for step in steps {
            match *step {
                "config" => h.send_ok(&["config", "web", "{dest}"]),
                other => h.send_ok(&[other, "web"]),
            };
        }
        h.send_ok(&["cancel", "web"]);
        assert!(h.dst_ids().is_empty(), "after {steps:?}");
        assert!(h.dst_users().is_empty(), "after {steps:?}");
        let spool = h.dst.root().join("pools/default/state/receive/web");
        assert!(!spool.exists(), "after {steps:?}");
        assert_eq!(h.src.state("web"), "running", "after {steps:?}");
    }
}

/// `--as-user`/`--as-group` put the staged container under a user and a
/// group the target already has, only for a trusted entry; a cancel leaves
/// them, as the send did not create them.
#[test]
fn as_user_needs_a_trusted_entry_and_the_user_stays_after_a_cancel() {
    require!(can_send(), "needs root, LXC, busybox and sshd");
    let h = Hosts::new();
    h.authorize("plain", &[]);
    h.authorize("admin", &["--trusted", "--passphrase", "sesame"]);
    h.dst.ok(&["user", "new", "tenant"]);
    h.dst.ok(&["group", "new", "/tenants"]);
    h.src.busybox_ct("web");
    let err = h.send_fails(&["config", "--as-user", "tenant", "web", "{dest}"]);
    assert!(
        err.contains("--trusted authorized key") && err.contains("'plain'"),
        "{err}"
    );
    assert!(h.dst_ids().is_empty());
    // A name outside the grammar never leaves the source.
    let out = h.send(&["config", "--as-user", "no;such", "web", "{dest}"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("'no;such'"), "{err}");
    // Nothing recorded by the refused attempts: a new send may start.
    h.send_ok(&["cancel", "web"]);

    h.send_ok(&[
        "config",
        "--passphrase",
        "sesame",
        "--as-user",
        "tenant",
        "--as-group",
        "/tenants",
        "web",
        "{dest}",
    ]);
    let there = h.dst.json(&["ct", "show", "web"]);
    assert_eq!(there["user"], "tenant", "{there}");
    assert_eq!(there["group"], "/tenants", "{there}");
    h.send_ok(&["cancel", "web"]);
    assert!(h.dst_ids().is_empty());
    assert_eq!(h.dst_users(), ["tenant"]);
}

#[test]
fn an_unreachable_target_fails_a_step_which_then_succeeds() {
    require!(can_send(), "needs root, LXC, busybox and sshd");
    let mut h = Hosts::new();
    h.authorize("src", &[]);
    let live = running_ct(&h, "web");
    h.send_ok(&["config", "web", "{dest}"]);
    h.send_ok(&["rootfs", "web"]);
    write(&live, "root/late", "arrives");
    h.sshd.stop();
    let e = h.send_fails(&["state", "web"]);
    assert!(e.contains("127.0.0.2"), "{e}");
    // The cutover stopped the source, then failed: the source runs again.
    assert_eq!(h.src.state("web"), "running");
    h.sshd.restart();
    h.send_ok(&["state", "web"]);
    assert_eq!(h.src.state("web"), "stopped");
    assert_eq!(h.dst.state("web"), "running");
    assert_eq!(
        read(&h.dst.rootfs_of("web"), "root/late").as_deref(),
        Some("arrives")
    );
    h.send_ok(&["cleanup", "web"]);
}

/// The last round and the start travel together; a start that fails on the
/// target leaves the copy staged there with the round in, the source running
/// again, and the same step then completes the move.
#[test]
fn a_target_start_failing_at_the_cutover_is_retried() {
    require!(can_send(), "needs root, LXC, busybox and sshd");
    let h = Hosts::new();
    h.authorize("src", &[]);
    let live = running_ct(&h, "web");
    h.send_ok(&["config", "web", "{dest}"]);
    h.send_ok(&["rootfs", "web"]);
    // The target's copy loses its init: only its start can fail.
    let there = h.dst.rootfs_of("web");
    let init = there.join("sbin/init");
    let busybox = std::fs::read_link(&init).ok();
    std::fs::remove_file(&init).unwrap();
    write(&live, "root/late", "arrives");
    // The round while the source runs says its line, then the one error.
    let out = h.send(&["state", "web"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines.len() == 2 && lines[0].contains("round 2") && lines[1].starts_with("error: "),
        "{stderr}"
    );
    assert!(
        lines[1].contains("cannot start container 'web'"),
        "{stderr}"
    );
    assert_eq!(h.src.state("web"), "running");
    assert_eq!(h.dst.state("web"), "stopped");
    assert!(h.dst.fails(&["ct", "start", "web"], 1).contains("staged"));
    assert_eq!(read(&there, "root/late").as_deref(), Some("arrives"));
    match busybox {
        Some(target) => std::os::unix::fs::symlink(target, &init).unwrap(),
        None => std::fs::copy(live.join("sbin/init"), &init)
            .map(drop)
            .unwrap(),
    }
    write(&live, "root/later", "too");
    h.send_ok(&["state", "web"]);
    assert_eq!(h.src.state("web"), "stopped");
    assert_eq!(h.dst.state("web"), "running");
    assert_eq!(read(&there, "root/later").as_deref(), Some("too"));
    h.send_ok(&["cleanup", "web"]);
}

/// Kills the `ssh` children of `osctl` once the target's spool of `round`
/// holds some of it; returns the bytes it held.
fn cut_connection(h: &Hosts, mut osctl: Child, round: u32) -> u64 {
    let spool = h
        .dst
        .root()
        .join(format!("pools/default/state/receive/web/round-{round}"));
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

#[test]
fn a_connection_cut_mid_round_resumes_where_it_stopped() {
    require!(can_send(), "needs root, LXC, busybox and sshd");
    let h = Hosts::new();
    h.authorize("src", &[]);
    let rootfs = h.src.noisy_rootfs("rootfs-web", 256);
    h.src.ct_from("web", &rootfs);
    h.src.ok(&["ct", "start", "web"]);
    let live = h.src.rootfs_of("web");
    h.send_ok(&["config", "web", "{dest}"]);
    let spawn = |step: &str| {
        h.src
            .cmd()
            .args(["ct", "send", step, "web"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let held = cut_connection(&h, spawn("rootfs"), 1);
    let out = h.send_ok(&["rootfs", "web"]);
    assert!(
        out.contains("round 1:") && out.contains("resumed"),
        "held {held}: {out}"
    );
    // The same in a sync, with 128 MiB more.
    let noise = std::fs::read(live.join("root/noise")).unwrap();
    std::fs::write(live.join("root/more"), &noise[..128 << 20]).unwrap();
    cut_connection(&h, spawn("sync"), 2);
    let out = h.send_ok(&["sync", "web"]);
    assert!(out.contains("round 2:") && out.contains("resumed"), "{out}");
    h.send_ok(&["state", "web"]);
    let there = h.dst.rootfs_of("web");
    assert!(std::fs::read(there.join("root/noise")).unwrap() == noise);
    assert!(std::fs::read(there.join("root/more")).unwrap()[..] == noise[..128 << 20]);
    h.send_ok(&["cleanup", "web"]);
}

/// What holds the pools of a backend test (one zpool for both: a test
/// process has one zpool at a time); dropped after the hosts.
struct Stores {
    _zpool: Option<testkit::zpool::TestZpool>,
    _fs: Vec<testkit::loopfs::LoopFs>,
    /// `pool install` arguments of the source's pool and the target's.
    install: [Vec<String>; 2],
    /// The source's and the target's backend, and where its snapshots are
    /// listed: the zfs dataset, or the btrfs file system's mount.
    snapshots: [(Kind, String); 2],
}

impl Stores {
    fn new(kinds: [Kind; 2], dir: &Path) -> Option<Stores> {
        let zpool = match kinds.contains(&Kind::Zfs) {
            true => Some(testkit::zpool::TestZpool::create(1024)?),
            false => None,
        };
        let mut fs = Vec::new();
        let mut install = [Vec::new(), Vec::new()];
        let mut snapshots = [(Kind::Dir, String::new()), (Kind::Dir, String::new())];
        for (i, kind) in kinds.iter().enumerate() {
            let args: Vec<String> = match kind {
                Kind::Dir => vec![
                    "--path".into(),
                    dir.join(format!("pool{i}")).to_string_lossy().into(),
                ],
                Kind::Btrfs => {
                    let f = testkit::loopfs::LoopFs::new("btrfs", 1024, "compress=zstd")?;
                    snapshots[i].1 = f.path().to_string_lossy().into_owned();
                    let path = f.path().join("pool").to_string_lossy().into_owned();
                    fs.push(f);
                    vec!["--path".into(), path]
                }
                Kind::Zfs => {
                    let ds = zpool.as_ref()?.ds(&format!("pool{i}"));
                    snapshots[i].1 = ds.clone();
                    vec!["--dataset".into(), ds]
                }
            };
            snapshots[i].0 = *kind;
            install[i] = ["pool", "install", "--backend", &kind.name()]
                .iter()
                .map(|s| s.to_string())
                .chain(args)
                .collect();
        }
        Some(Stores {
            _zpool: zpool,
            _fs: fs,
            install,
            snapshots,
        })
    }

    /// The round snapshots of a native send on the source (0) or target (1).
    fn round_snapshots(&self, side: usize) -> Vec<String> {
        let (kind, place) = &self.snapshots[side];
        let listed = match kind {
            Kind::Dir => return Vec::new(),
            Kind::Zfs => Command::new("zfs")
                .args(["list", "-H", "-t", "snapshot", "-o", "name", "-r", place])
                .output(),
            Kind::Btrfs => Command::new("btrfs")
                .args(["subvolume", "list", place])
                .output(),
        }
        .unwrap();
        assert!(listed.status.success(), "{listed:?}");
        let mut found: Vec<String> = String::from_utf8_lossy(&listed.stdout)
            .lines()
            .filter_map(|l| l.rsplit(['@', '/']).next())
            .filter(|name| name.starts_with("osctl-send-"))
            .map(String::from)
            .collect();
        found.sort();
        found
    }
}

/// Two hosts with a pool of `from` on the source (`source`, with `web`, a
/// stopped busybox container of user u1) and one of `to` on the target
/// (`target`); the source's key authorized with `key_args`. None where a
/// backend is missing here.
struct PoolHosts {
    h: Hosts,
    stores: Stores,
    /// The source container's root file system.
    live: PathBuf,
    _scratch: tempfile::TempDir,
}

fn pool_hosts(from: Kind, to: Kind, key_args: &[&str], privileged: bool) -> Option<PoolHosts> {
    let scratch = tempfile::tempdir().unwrap();
    let Some(stores) = Stores::new([from, to], scratch.path()) else {
        eprintln!("SKIPPED: no {from:?} or {to:?} pool here");
        return None;
    };
    let h = Hosts::new();
    for (env, args, name) in [
        (&h.src, &stores.install[0], "source"),
        (&h.dst, &stores.install[1], "target"),
    ] {
        let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
        args.push(name);
        env.ok(&args);
    }
    h.authorize("src", key_args);
    let rootfs = h.src.busybox_rootfs("rootfs-web");
    h.src.ok(&["--pool", "source", "user", "new", "u1"]);
    let path = rootfs.to_str().unwrap();
    let mut new = vec![
        "--pool",
        "source",
        "ct",
        "new",
        "--user",
        "u1",
        "--from-dir",
        path,
        "web",
    ];
    if privileged {
        new.insert(4, "--privileged");
    }
    h.src.ok(&new);
    let show = h.src.json(&["--pool", "source", "ct", "show", "web"]);
    let live = PathBuf::from(show["rootfs"].as_str().unwrap());
    Some(PoolHosts {
        h,
        stores,
        live,
        _scratch: scratch,
    })
}

/// `ct send config` of `web` from pool `source` to pool `target`.
fn stage_web(h: &Hosts) {
    let args = ["config", "--pool", "source", "--to-pool", "target", "web"];
    h.send_ok(&[&args[..], &["{dest}"]].concat());
}

/// Step by step from a pool of `from` to one of `to`, files written between
/// the steps all arriving; rounds as native streams where both backends
/// are the same, and no round snapshot left on either side.
fn send_between(from: Kind, to: Kind) {
    // zfs-fuse runs only privileged containers, which need trust.
    let Some(PoolHosts {
        h, stores, live, ..
    }) = pool_hosts(from, to, &["--trusted"], from == Kind::Zfs)
    else {
        return;
    };
    h.src.ok(&["--pool", "source", "ct", "start", "web"]);
    write(&live, "root/a", "first");
    stage_web(&h);
    let out = h.send_ok(&["rootfs", "--pool", "source", "web"]);
    let kind = match from == to {
        true => format!("({} stream)", from.name()),
        false => "(tar stream)".to_string(),
    };
    assert!(out.contains(&kind), "{kind}: {out}");
    write(&live, "root/b", "second");
    h.send_ok(&["sync", "--pool", "source", "web"]);
    std::fs::remove_file(live.join("root/a")).unwrap();
    write(&live, "root/c", "third");
    h.send_ok(&["state", "--pool", "source", "web"]);
    h.send_ok(&["cleanup", "--pool", "source", "web"]);
    let show = h.dst.json(&["--pool", "target", "ct", "show", "web"]);
    assert_eq!(show["state"], "running");
    let there = PathBuf::from(show["rootfs"].as_str().unwrap());
    assert_eq!(read(&there, "root/a"), None);
    assert_eq!(read(&there, "root/b").as_deref(), Some("second"));
    assert_eq!(read(&there, "root/c").as_deref(), Some("third"));
    assert_eq!(read(&there, "etc/hostname").as_deref(), Some("busybox\n"));
    assert_eq!(stores.round_snapshots(0), Vec::<String>::new());
    assert_eq!(stores.round_snapshots(1), Vec::<String>::new());
    drop(h);
    drop(stores);
}

#[test]
fn zfs_to_dir() {
    require!(can_send(), "needs root, LXC, busybox and sshd");
    send_between(Kind::Zfs, Kind::Dir);
}

#[test]
fn zfs_to_zfs() {
    require!(can_send(), "needs root, LXC, busybox and sshd");
    send_between(Kind::Zfs, Kind::Zfs);
}

#[test]
fn btrfs_to_btrfs() {
    require!(can_send(), "needs root, LXC, busybox and sshd");
    send_between(Kind::Btrfs, Kind::Btrfs);
}

/// A native round whose tree holds a file owned outside the container's
/// map is refused as an import refuses it, and undone: the target stays at
/// the round before, and a cancel then leaves nothing on either side.
fn hostile_native_round(kind: Kind) {
    let Some(PoolHosts {
        h, stores, live, ..
    }) = pool_hosts(kind, kind, &[], false)
    else {
        return;
    };
    write(&live, "root/a", "first");
    stage_web(&h);
    // POOL:ID as everywhere else.
    h.send_ok(&["rootfs", "source:web"]);
    write(&live, "root/evil", "owned by someone else");
    std::os::unix::fs::chown(live.join("root/evil"), Some(4_000_000), Some(0)).unwrap();
    let err = h.send_fails(&["sync", "--pool", "source", "web"]);
    assert!(err.contains("round 2 of container 'web'"), "{err}");
    assert!(err.contains("outside the container's id map"), "{err}");
    assert_eq!(stores.round_snapshots(1), ["osctl-send-1"]);
    let there = h.dst.json(&["--pool", "target", "ct", "show", "web"]);
    let there = PathBuf::from(there["rootfs"].as_str().unwrap());
    assert_eq!(read(&there, "root/evil"), None);
    let status = h.raw_request("receive status web --pool target", b"");
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["round"], 1);
    assert_eq!(status["backend"], stores.snapshots[1].0.name());
    h.send_ok(&["cancel", "--pool", "source", "web"]);
    assert_eq!(h.dst_ids(), Vec::<String>::new());
    assert_eq!(stores.round_snapshots(0), Vec::<String>::new());
    assert_eq!(stores.round_snapshots(1), Vec::<String>::new());
    drop(h);
    drop(stores);
}

#[test]
fn zfs_native_rounds_are_judged_and_undone() {
    require!(can_send(), "needs root, LXC, busybox and sshd");
    hostile_native_round(Kind::Zfs);
}

#[test]
fn btrfs_native_rounds_are_judged_and_undone() {
    require!(can_send(), "needs root, LXC, busybox and sshd");
    hostile_native_round(Kind::Btrfs);
}

impl Hosts {
    /// Runs `receive REQUEST` on the target with the source's key, as a
    /// hostile source would (ssh by hand), with `input` as its stdin.
    fn raw_request(&self, request: &str, input: &[u8]) -> std::process::Output {
        let key = self.src.ok(&["send", "key", "path", "private"]);
        let known = self.src.root().join("send/known_hosts");
        let mut child = Command::new("ssh")
            .args([
                "-i",
                key.trim(),
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=accept-new",
            ])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known.display()))
            .args(["-p", &self.sshd.port.to_string(), "root@127.0.0.2", request])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }
}

/// A zstd tar of `dir` with every owner set to `uid`, made by GNU tar.
fn hostile_round(dir: &Path, uid: u32) -> Vec<u8> {
    let tar = Command::new("tar")
        .args([
            "--numeric-owner",
            &format!("--owner={uid}"),
            "--group=0",
            "-cf",
            "-",
            "-C",
        ])
        .arg(dir)
        .arg(".")
        .output()
        .unwrap();
    assert!(tar.status.success());
    let mut zstd = Command::new("zstd")
        .args(["-q", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    zstd.stdin.take().unwrap().write_all(&tar.stdout).unwrap();
    zstd.wait_with_output().unwrap().stdout
}

#[test]
fn the_target_judges_what_a_hostile_source_sends_as_an_import_does() {
    require!(can_send(), "needs root, LXC, busybox and sshd");
    let h = Hosts::new();
    h.authorize("src", &[]);
    running_ct(&h, "web");
    h.send_ok(&["config", "web", "{dest}"]);
    h.send_ok(&["rootfs", "web"]);
    let there = h.dst.rootfs_of("web");
    // A request outside the grammar changes nothing.
    let out = h.raw_request("receive cancel web; touch /tmp/x", b"");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("request refused"));
    assert_eq!(h.dst_ids(), ["web"]);
    // A round whose files belong to ids outside the container's map.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "evil", "owned by someone else");
    let round = hostile_round(dir.path(), 4_000_000);
    let sha = sha256_hex(&round);
    let request = format!("receive round web 2 {} {sha} 0", round.len());
    let out = h.raw_request(&request, &round);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("round 2 of container 'web'"), "{stderr}");
    assert_eq!(read(&there, "evil"), None);
    // The send goes on as if the round never came.
    let status = h.raw_request("receive status web", b"");
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["round"], 1);
    assert_eq!(status["spooled"], 0);
    h.send_ok(&["state", "web"]);
    h.send_ok(&["cleanup", "web"]);
    assert_eq!(h.dst.state("web"), "running");
}

fn sha256_hex(data: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}
