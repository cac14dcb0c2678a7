//! A throw-away zpool per test: a sparse file under a temporary directory,
//! destroyed on drop (also when the test fails), after starting zfs-fuse with
//! `scripts/zfs-fuse-up.sh` where that is the ZFS of the machine.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use osctl_core::cmd::Cmd;

pub struct TestZpool {
    pub name: String,
    /// Where the zpool's root dataset is mounted.
    pub mnt: PathBuf,
    dir: tempfile::TempDir,
    /// One test at a time: zfs-fuse serialises the work anyway (parallel runs
    /// are no faster), and its daemon once hung for good under parallel tests.
    _serial: MutexGuard<'static, ()>,
    /// The zfs-fuse daemon the zpool was made on (None: the kernel's ZFS).
    daemon: Option<u32>,
}

const ZFS_FUSE_PIDFILE: &str = "/run/zfs-fuse.pid";

/// The pid of the live zfs-fuse daemon, if one runs.
pub fn zfs_fuse_pid() -> Option<u32> {
    let pid: u32 = fs::read_to_string(ZFS_FUSE_PIDFILE)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let alive = stat.contains("(zfs-fuse) ") && !stat.contains("(zfs-fuse) Z");
    alive.then_some(pid)
}

fn zfs_available() -> Result<(), String> {
    if !crate::is_root() {
        return Err("not root".into());
    }
    if crate::have("zfs-fuse") {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/zfs-fuse-up.sh");
        Cmd::new(script)
            .run()
            .map(drop)
            .map_err(|e| format!("cannot start zfs-fuse: {e}"))
    } else if crate::have("zpool") && Cmd::new("zpool").arg("list").run().is_ok() {
        Ok(()) // the kernel's OpenZFS
    } else {
        Err("neither zfs-fuse nor a working OpenZFS is installed (apt-get install zfs-fuse)".into())
    }
}

impl TestZpool {
    /// A new zpool of `megabytes` (64 at least), or None (with a message saying
    /// why the test is skipped) where ZFS cannot run.
    pub fn create(megabytes: u64) -> Option<TestZpool> {
        static AVAILABLE: OnceLock<Result<(), String>> = OnceLock::new();
        if let Err(why) = AVAILABLE.get_or_init(zfs_available) {
            eprintln!("SKIPPED: zfs tests need root and ZFS: {why}");
            return None;
        }
        static SERIAL: Mutex<()> = Mutex::new(());
        let serial = SERIAL
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // An earlier test may have seen the daemon die: start a new one.
        let fuse = crate::have("zfs-fuse");
        if fuse && zfs_fuse_pid().is_none() {
            zfs_available().expect("restarting zfs-fuse");
        }
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "osctltest{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let dir = tempfile::Builder::new()
            .prefix("osctl-zfs-test-")
            .tempdir()
            .expect("temporary directory");
        let image = dir.path().join("pool.img");
        fs::File::create(&image)
            .and_then(|f| f.set_len(megabytes << 20))
            .expect("pool image");
        let mnt = dir.path().join("mnt");
        Cmd::new("zpool")
            .args(["create", "-m"])
            .arg(&mnt)
            .arg(&name)
            .arg(&image)
            .run()
            .expect("zpool create");
        Some(TestZpool {
            name,
            mnt,
            dir,
            _serial: serial,
            daemon: if fuse { zfs_fuse_pid() } else { None },
        })
    }

    /// Whether the zfs-fuse daemon the zpool was made on is gone. It dies now
    /// and then when a zpool fills up (its own bug); after that nothing the
    /// test did can be checked.
    pub fn daemon_died(&self) -> bool {
        self.daemon.is_some() && zfs_fuse_pid() != self.daemon
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `<zpool>/<rel>`
    pub fn ds(&self, rel: &str) -> String {
        format!("{}/{rel}", self.name)
    }
}

impl Drop for TestZpool {
    fn drop(&mut self) {
        // A new daemon takes the zpool up again from its cache; destroy it there.
        if self.daemon_died() {
            let _ = zfs_available();
        }
        // zfs-fuse calls a zpool busy for a moment after its files were used.
        for attempt in 0..20 {
            match Cmd::new("zpool").args(["destroy", "-f", &self.name]).run() {
                Ok(_) => return,
                Err(e) if attempt == 19 => {
                    eprintln!("cannot destroy test zpool {}: {e}", self.name)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(250)),
            }
        }
    }
}

/// Runs `zfs` with arguments and returns stdout; panics on failure.
pub fn zfs(args: &[&str]) -> String {
    Cmd::new("zfs")
        .args(args)
        .run()
        .unwrap_or_else(|e| panic!("zfs {args:?}: {e}"))
}
