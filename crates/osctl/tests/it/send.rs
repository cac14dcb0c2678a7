//! `osctl ct send` between two hosts on this machine: each with its own
//! OSCTL_ROOT, the target with its own subordinate-id files, the target behind a real sshd on
//! 127.0.0.2 (its own host key, config and port) whose authorized_keys
//! osctl manages; 127.0.0.3 is a source address that `--from` refuses.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::it::support::{can_run_containers, have, wait_until, Env};
use crate::require;

/// An sshd for the target host, stopped when dropped.
struct Sshd {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Sshd {
    /// Serves `target`'s authorized_keys (as osctl writes them) on 127.0.0.2.
    fn start(target: &Env) -> Sshd {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("host_key");
        let made = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status()
            .unwrap();
        assert!(made.success());
        let port = TcpListener::bind("127.0.0.2:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress 127.0.0.2:{port}\nHostKey {}\nPidFile {}\n\
                 AuthorizedKeysFile {}\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
                 PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n\
                 LogLevel VERBOSE\n",
                key.display(),
                dir.path().join("sshd.pid").display(),
                target.root().join("send/authorized_keys").display(),
            ),
        )
        .unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let log = std::fs::File::create(dir.path().join("sshd.log")).unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stderr(log)
            .spawn()
            .unwrap();
        let sshd = Sshd {
            child,
            port,
            _dir: dir,
        };
        let up = wait_until(10, || TcpStream::connect(("127.0.0.2", port)).is_ok());
        assert!(up, "sshd did not come up: {}", sshd.log());
        sshd
    }

    fn dest(&self) -> String {
        format!("root@127.0.0.2:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn can_send() -> bool {
    can_run_containers() && Path::new("/usr/sbin/sshd").exists() && have("ssh")
}

/// Two hosts and the target's sshd; the source's key made.
struct Hosts {
    src: Env,
    dst: Env,
    sshd: Sshd,
}

impl Hosts {
    fn new() -> Hosts {
        // The target's subordinate ids are its own copy of /etc's, taken
        // before the source's user exists: a host that never saw it. The
        // source's lines stay in /etc, where newuidmap finds them for the
        // copy started on the target too (the same ids).
        let dst = Env::with_private_subids();
        let src = Env::new();
        src.ok(&["send", "key", "gen"]);
        // The target's pool first: the receive command runs with its state.
        dst.ok(&["pool", "ls"]);
        let sshd = Sshd::start(&dst);
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
    assert_eq!(read(&there, "root/a"), None);
    for (f, body) in [
        ("b", "after rootfs"),
        ("c", "after sync"),
        ("d", "before state"),
    ] {
        assert_eq!(read(&there, &format!("root/{f}")).as_deref(), Some(body));
    }
    h.send_ok(&["cleanup", "web"]);
    assert!(h.src.json(&["ct", "ls"]).as_array().unwrap().is_empty());
    // The target's copy is its own now: no send log left.
    let cfg = std::fs::read_to_string(h.dst.root().join("pools/default/conf/ct/web.yml")).unwrap();
    assert!(!cfg.contains("send_log"), "{cfg}");
}
