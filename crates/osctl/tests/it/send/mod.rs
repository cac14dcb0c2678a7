//! `osctl ct send` between two hosts on this machine: each with its own
//! OSCTL_ROOT, the target with its own subordinate-id files, the target behind a real sshd on
//! 127.0.0.2 (its own host key, config and port) whose authorized_keys
//! osctl manages; 127.0.0.3 is a source address that `--from` refuses.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::it::backends::Kind;
use crate::it::support::{can_run_containers, have, Env};
use crate::require;
use testkit::sshd::{Sshd, SSHD};

mod matrix;

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
        self.send_command(args).output().unwrap()
    }

    /// The `osctl ct send ARGS` of [`Hosts::send`], not yet run.
    fn send_command(&self, args: &[&str]) -> Command {
        let dest = self.sshd.dest();
        let args: Vec<&str> = args
            .iter()
            .map(|a| if *a == "{dest}" { dest.as_str() } else { a })
            .collect();
        let mut cmd = self.src.cmd();
        cmd.args(["ct", "send"]).args(&args);
        cmd
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

impl Hosts {
    fn send_env(&self, env: (&str, &str), args: &[&str]) -> std::process::Output {
        let mut cmd = self.send_command(args);
        cmd.env(env.0, env.1).output().unwrap()
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
    /// Where the source's pool and the target's keep their state.
    roots: [PathBuf; 2],
}

impl Stores {
    fn new(kinds: [Kind; 2], dir: &Path) -> Option<Stores> {
        let zpool = match kinds.contains(&Kind::Zfs) {
            // Sparse: room for two copies of a large container and the
            // spools of its rounds.
            true => Some(testkit::zpool::TestZpool::create(3072)?),
            false => None,
        };
        let mut fs = Vec::new();
        let mut install = [Vec::new(), Vec::new()];
        let mut snapshots = [(Kind::Dir, String::new()), (Kind::Dir, String::new())];
        let mut roots = [PathBuf::new(), PathBuf::new()];
        for (i, kind) in kinds.iter().enumerate() {
            let args: Vec<String> = match kind {
                Kind::Dir => {
                    roots[i] = dir.join(format!("pool{i}"));
                    vec!["--path".into(), roots[i].to_string_lossy().into()]
                }
                Kind::Btrfs => {
                    let f = testkit::loopfs::LoopFs::new("btrfs", 2048, "compress=zstd")?;
                    snapshots[i].1 = f.path().to_string_lossy().into_owned();
                    roots[i] = f.path().join("pool");
                    fs.push(f);
                    vec!["--path".into(), roots[i].to_string_lossy().into()]
                }
                Kind::Zfs => {
                    let zpool = zpool.as_ref()?;
                    let name = format!("pool{i}");
                    roots[i] = zpool.mnt.join(&name);
                    let ds = zpool.ds(&name);
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
            roots,
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
/// stopped busybox container of user u1, privileged where `privileged`) and
/// one of `to` on the target (`target`); the source's key authorized as
/// `src` with `key_args`, if given. None where a backend is missing here.
struct PoolHosts {
    h: Hosts,
    stores: Stores,
    /// The source container's root file system.
    live: PathBuf,
    /// The source's containers are privileged (zfs-fuse runs no others).
    privileged: bool,
    _scratch: tempfile::TempDir,
}

fn pool_hosts(
    from: Kind,
    to: Kind,
    key_args: Option<&[&str]>,
    privileged: bool,
) -> Option<PoolHosts> {
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
    if let Some(key_args) = key_args {
        h.authorize("src", key_args);
    }
    h.src.ok(&["--pool", "source", "user", "new", "u1"]);
    let hosts = PoolHosts {
        h,
        stores,
        live: PathBuf::new(),
        privileged,
        _scratch: scratch,
    };
    let live = hosts.new_source_ct("web");
    Some(PoolHosts { live, ..hosts })
}

impl PoolHosts {
    /// A new stopped busybox container `id` of user u1 in the source's
    /// pool; its root file system.
    fn new_source_ct(&self, id: &str) -> PathBuf {
        let rootfs = self.h.src.busybox_rootfs(&format!("rootfs-{id}"));
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
            id,
        ];
        if self.privileged {
            new.insert(4, "--privileged");
        }
        self.h.src.ok(&new);
        let show = self.h.src.json(&["--pool", "source", "ct", "show", id]);
        PathBuf::from(show["rootfs"].as_str().unwrap())
    }
}

/// `ct send config` of `web` from pool `source` to pool `target`.
fn stage_web(h: &Hosts) {
    let args = ["config", "--pool", "source", "--to-pool", "target", "web"];
    h.send_ok(&[&args[..], &["{dest}"]].concat());
}

/// A native round whose tree holds a file owned outside the container's
/// map is refused as an import refuses it, and undone: the target stays at
/// the round before, and a cancel then leaves nothing on either side.
fn hostile_native_round(kind: Kind) {
    let Some(PoolHosts {
        h, stores, live, ..
    }) = pool_hosts(kind, kind, Some(&[]), false)
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
