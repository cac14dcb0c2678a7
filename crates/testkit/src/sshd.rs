//! A throw-away OpenSSH server on a loopback address: the "other host" of
//! the send tests and the send benchmark. Its own host key, config and port;
//! stopped when dropped.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Where sshd is installed on Debian.
pub const SSHD: &str = "/usr/sbin/sshd";

pub struct Sshd {
    child: Child,
    pub addr: String,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Sshd {
    /// Serves root logins on `addr` (a loopback address) with the keys in
    /// `authorized_keys` (files, as sshd's AuthorizedKeysFile takes them).
    pub fn start(addr: &str, authorized_keys: &[PathBuf]) -> Sshd {
        let dir = tempfile::tempdir().expect("temporary directory for sshd");
        let key = dir.path().join("host_key");
        let made = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status()
            .expect("ssh-keygen runs");
        assert!(made.success(), "ssh-keygen failed");
        let port = TcpListener::bind((addr, 0))
            .and_then(|l| l.local_addr())
            .unwrap_or_else(|e| panic!("no free port on {addr}: {e}"))
            .port();
        let files: Vec<String> = authorized_keys
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let config = dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress {addr}:{port}\nHostKey {}\nPidFile {}\n\
                 AuthorizedKeysFile {}\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
                 PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n\
                 LogLevel VERBOSE\n",
                key.display(),
                dir.path().join("sshd.pid").display(),
                files.join(" "),
            ),
        )
        .expect("sshd_config written");
        // sshd's privilege separation directory.
        std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
        let mut sshd = Sshd {
            child: spawn(dir.path()),
            addr: addr.to_string(),
            port,
            dir,
        };
        sshd.wait_up();
        sshd
    }

    fn wait_up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect((self.addr.as_str(), self.port)).is_err() {
            if Instant::now() > deadline {
                self.stop();
                panic!("sshd did not come up: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `root@ADDR:PORT`, as `osctl ct send` takes a destination.
    pub fn dest(&self) -> String {
        format!("root@{}:{}", self.addr, self.port)
    }

    /// What sshd logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// Stops sshd (the host is unreachable) until [`Sshd::restart`].
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts sshd again on the same port with the same config.
    pub fn restart(&mut self) {
        self.child = spawn(self.dir.path());
        self.wait_up();
    }

    /// The directory of its files (host key, config, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// sshd with the config in `dir`, its log appended to `dir/sshd.log`.
fn spawn(dir: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("sshd.log"))
        .expect("sshd.log");
    Command::new(SSHD)
        .args(["-D", "-e", "-f"])
        .arg(dir.join("sshd_config"))
        .stderr(log)
        .spawn()
        .expect("sshd starts")
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}
