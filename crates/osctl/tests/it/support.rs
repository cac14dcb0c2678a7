//! Test harness: an isolated host state per test, a way to run `osctl` in it,
//! busybox root file systems, and clean-up that leaves the machine as it was.

#![allow(dead_code)]

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// Skips the test (with a message) unless the machine has what it needs.
#[macro_export]
macro_rules! require {
    ($cond:expr, $why:expr) => {
        if !$cond {
            eprintln!("SKIPPED: {}", $why);
            return;
        }
    };
}

pub use testkit::{have, is_root};

/// Root, LXC and a static busybox: what booting a test container takes.
pub fn can_run_containers() -> bool {
    is_root() && have("lxc-start") && have("newuidmap") && busybox().is_some()
}

pub fn busybox() -> Option<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// One test's host: its own OSCTL_ROOT in a temporary directory. Dropping it
/// stops and deletes its containers and users, so /etc/subuid is left as found.
pub struct Env {
    pub dir: tempfile::TempDir,
    /// Where this host's subuid and subgid files are, when not in /etc.
    subid_dir: Option<PathBuf>,
}

impl Env {
    pub fn new() -> Env {
        // Under /tmp (ext4 here): idmapped mounts work there.
        let dir = tempfile::Builder::new()
            .prefix("osctl-test-")
            .tempdir_in(std::env::temp_dir())
            .expect("temp dir");
        // LXC must traverse the path as the container's root.
        set_mode(dir.path(), 0o755);
        Env {
            dir,
            subid_dir: None,
        }
    }

    /// A host whose subuid and subgid files are its own copies of /etc's:
    /// for tests that assert on those lines, which parallel tests also add
    /// and remove (an import may add one just like a line freed earlier).
    pub fn with_private_subids() -> Env {
        let mut env = Env::new();
        let etc = env.path("etc");
        std::fs::create_dir(&etc).unwrap();
        for name in ["subuid", "subgid"] {
            let lines = std::fs::read_to_string(Path::new("/etc").join(name)).unwrap_or_default();
            std::fs::write(etc.join(name), lines).unwrap();
        }
        env.subid_dir = Some(etc);
        env
    }

    /// Whether this host's subuid and subgid files are its own.
    pub fn has_private_subids(&self) -> bool {
        self.subid_dir.is_some()
    }

    /// This host's /etc/subuid.
    pub fn subuid_file(&self) -> PathBuf {
        self.subid_dir
            .as_deref()
            .unwrap_or(Path::new("/etc"))
            .join("subuid")
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_osctl"));
        c.env("OSCTL_ROOT", self.root());
        if let Some(dir) = &self.subid_dir {
            c.env("OSCTL_SUBID_DIR", dir);
        }
        c
    }

    /// Runs osctl with the arguments; returns the output whatever the status.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("osctl runs")
    }

    /// Runs osctl and panics with its stderr unless it succeeds; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "osctl {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs osctl expecting failure with `code`; returns its one-line error.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(code),
            "osctl {args:?}: expected exit {code}, got {} (stderr: {stderr})",
            out.status
        );
        assert_eq!(
            stderr.lines().count(),
            1,
            "one error line expected: {stderr:?}"
        );
        assert!(stderr.starts_with("error: "), "{stderr:?}");
        stderr.trim_end().to_string()
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut full = vec!["-j"];
        full.extend_from_slice(args);
        serde_json::from_str(&self.ok(&full)).expect("JSON output")
    }

    /// Where a container's root file system is, as `ct show` says.
    pub fn rootfs_of(&self, id: &str) -> PathBuf {
        PathBuf::from(self.json(&["ct", "show", id])["rootfs"].as_str().unwrap())
    }

    pub fn state(&self, id: &str) -> String {
        self.json(&["ct", "show", id])["state"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// A busybox root file system whose init runs `inittab` lines.
    pub fn busybox_rootfs(&self, name: &str) -> PathBuf {
        let root = self.path(name);
        make_busybox_rootfs(&root, "::respawn:/bin/sleep 1000000\n");
        root
    }

    /// Container `id` made from `rootfs`, owned by user `u1` (created on
    /// first use).
    pub fn ct_from(&self, id: &str, rootfs: &Path) {
        if !self.root().join("pools/default/conf/user/u1.yml").exists() {
            self.ok(&["user", "new", "u1"]);
        }
        let rootfs = rootfs.to_str().unwrap();
        self.ok(&["ct", "new", "--user", "u1", "--from-dir", rootfs, id]);
    }

    /// User `u1` and a container `id` made from a busybox rootfs.
    pub fn busybox_ct(&self, id: &str) -> PathBuf {
        let rootfs = self.busybox_rootfs(&format!("rootfs-{id}"));
        self.ct_from(id, &rootfs);
        rootfs
    }

    /// A busybox rootfs whose init runs a web server on port 80 serving
    /// `body` as /index.html.
    pub fn web_rootfs(&self, name: &str, body: &str) -> PathBuf {
        let root = self.path(name);
        make_busybox_rootfs(&root, "::respawn:/bin/httpd -f -p 80 -h /www\n");
        std::fs::create_dir_all(root.join("www")).unwrap();
        std::fs::write(root.join("www/index.html"), body).unwrap();
        root
    }

    /// A busybox rootfs whose init ignores the signals that ask it to stop.
    pub fn stubborn_rootfs(&self, name: &str) -> PathBuf {
        let rootfs = self.path(name);
        make_busybox_rootfs(&rootfs, "");
        let init = rootfs.join("sbin/init");
        std::fs::remove_file(&init).unwrap();
        let script =
            "#!/bin/sh\ntrap '' PWR TERM INT HUP USR1 USR2\nwhile true; do sleep 1; done\n";
        std::fs::write(&init, script).unwrap();
        set_mode(&init, 0o755);
        rootfs
    }

    /// A busybox rootfs whose init keeps two files in step: `log` gets a
    /// line, then `counter` is replaced with the same number. In any
    /// consistent state the counter is the log's last line or the one before
    /// ([`assert_consistent`]).
    pub fn writer_rootfs(&self, name: &str) -> PathBuf {
        let root = self.path(name);
        make_busybox_rootfs(
            &root,
            "::respawn:/bin/sh -c 'i=0; while true; do i=$((i+1)); echo $i >> /root/log; echo $i > /root/c.tmp; mv /root/c.tmp /root/counter; done'\n",
        );
        symlink("busybox", root.join("bin/mv")).unwrap();
        root
    }

    /// A busybox rootfs with `mib` MiB of random data in /root/noise.
    pub fn noisy_rootfs(&self, name: &str, mib: u64) -> PathBuf {
        let rootfs = self.busybox_rootfs(name);
        let mut noise = std::fs::File::create(rootfs.join("root/noise")).unwrap();
        let random = std::fs::File::open("/dev/urandom").unwrap();
        std::io::copy(&mut std::io::Read::take(random, mib << 20), &mut noise).unwrap();
        rootfs
    }
}

impl Env {
    /// Names the `osctl ... -j <what> ls` lists under `key`; empty on failure.
    fn names(&self, args: &[&str], key: &str) -> Vec<String> {
        let out = self.run(args);
        serde_json::from_slice::<Value>(&out.stdout)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|x| x[key].as_str().map(String::from))
            .collect()
    }

    /// Deletes a pool's containers and users (so that /etc/subuid is left as
    /// found), then forgets the pool.
    pub fn clean_pool(&self, pool: &str) {
        for id in self.names(&["--pool", pool, "-j", "ct", "ls"], "id") {
            self.run(&["--pool", pool, "ct", "del", "--force", &id]);
        }
        for user in self.names(&["--pool", pool, "-j", "user", "ls"], "name") {
            self.run(&["--pool", pool, "user", "del", &user]);
        }
        self.run(&["pool", "uninstall", pool]);
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if !self.root().join("pools.yml").exists() {
            return;
        }
        for pool in self.names(&["-j", "pool", "ls"], "name") {
            self.clean_pool(&pool);
        }
    }
}

pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

const APPLETS: &[&str] = &[
    "sh",
    "ls",
    "cat",
    "echo",
    "sleep",
    "mkdir",
    "sync",
    "id",
    "sh",
    "touch",
    "rm",
    "dd",
    "sha256sum",
    "stat",
    "test",
    "true",
    "false",
    "kill",
    "ps",
    "seq",
    "wc",
    "head",
    "date",
    "ip",
    "ifconfig",
    "route",
    "ping",
    "nc",
    "httpd",
];

/// A minimal root file system: static busybox, its applets, and an inittab.
/// Waits until a running [`Env::writer_rootfs`] container, whose root file
/// system is at `live`, has written more than 100 lines.
pub fn wait_for_writes(live: &Path) {
    let lines = || std::fs::read_to_string(live.join("root/log")).map_or(0, |l| l.lines().count());
    assert!(wait_until(20, || lines() > 100), "the writer did not write");
}

/// Checks a copy of a [`Env::writer_rootfs`] container: the counter is the
/// log's last line or the one before, and no line is lost or torn. Returns
/// the number of lines.
pub fn assert_consistent(rootfs: &Path) -> u64 {
    let log = std::fs::read_to_string(rootfs.join("root/log")).unwrap();
    let last: u64 = log.lines().last().unwrap().parse().unwrap();
    let counter: u64 = std::fs::read_to_string(rootfs.join("root/counter"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        counter == last || counter + 1 == last,
        "counter {counter}, log ends at {last}"
    );
    assert_eq!(log.lines().count() as u64, last, "no line lost or torn");
    last
}

pub fn make_busybox_rootfs(root: &Path, inittab: &str) {
    let bb = busybox().expect("busybox-static is installed");
    for d in [
        "bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root", "run", "var",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    set_mode(root, 0o755);
    set_mode(&root.join("tmp"), 0o1777);
    std::fs::copy(&bb, root.join("bin/busybox")).unwrap();
    for applet in APPLETS {
        let link = root.join("bin").join(applet);
        if !link.exists() {
            symlink("busybox", &link).unwrap();
        }
    }
    symlink("../bin/busybox", root.join("sbin/init")).unwrap();
    std::fs::write(
        root.join("etc/inittab"),
        format!("::sysinit:/bin/mkdir -p /run/lock\n{inittab}::shutdown:/bin/sync\n"),
    )
    .unwrap();
    std::fs::write(root.join("etc/hostname"), "busybox\n").unwrap();
}

/// Starts `cmd` (an osctl command) with failpoint `point` set to stop it
/// there (SIGSTOP), and returns it once it is stopped: for running another
/// command at that moment of this one. Its stdout and stderr are piped.
pub fn stopped_at(mut cmd: std::process::Command, point: &str) -> std::process::Child {
    use std::process::Stdio;
    let child = cmd
        .env("OSCTL_FAILPOINT", format!("{point}:stop"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stat = format!("/proc/{}/stat", child.id());
    let stopped = || {
        std::fs::read_to_string(&stat).is_ok_and(|s| {
            let after_name = s.rsplit(')').next().unwrap_or("");
            after_name.trim_start().starts_with('T')
        })
    };
    assert!(wait_until(60, stopped), "osctl never reached {point}");
    child
}

/// Sends `signal` to a child (e.g. SIGCONT to one [`stopped_at`] a point).
pub fn signal(child: &std::process::Child, signal: i32) {
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as i32, signal);
    }
}

/// Polls `f` until it holds or `secs` pass.
pub fn wait_until(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    f()
}

/// Names in an archive, in order, as GNU tar lists them.
pub fn tar_names(archive: &Path) -> Vec<String> {
    let out = Command::new("tar")
        .arg("-tf")
        .arg(archive)
        .output()
        .unwrap();
    assert!(out.status.success(), "GNU tar reads {}", archive.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}
