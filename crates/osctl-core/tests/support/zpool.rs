//! A throw-away zpool per test: a sparse file under a temporary directory,
//! destroyed on drop (also when the test fails), after starting zfs-fuse with
//! `scripts/zfs-fuse-up.sh` where that is the ZFS of the machine.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
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
}

fn zfs_available() -> Result<(), String> {
    if !rustix::process::geteuid().is_root() {
        return Err("not root".into());
    }
    let has = |program: &str| {
        std::env::var_os("PATH").is_some_and(|paths| {
            std::env::split_paths(&paths).any(|dir| dir.join(program).is_file())
        })
    };
    if has("zfs-fuse") {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/zfs-fuse-up.sh");
        Cmd::new(script)
            .run()
            .map(drop)
            .map_err(|e| format!("cannot start zfs-fuse: {e}"))
    } else if has("zpool") && Cmd::new("zpool").arg("list").run().is_ok() {
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
        })
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
    Cmd::new("zfs").args(args).run().expect("zfs command")
}

/// Everything a file-system tree should keep through send and receive, by
/// path relative to `root`: type, mode, owner, device number, size, content
/// or link target, mtime, and which paths are hard links of each other.
pub fn describe_tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut first_path_of_inode: BTreeMap<(u64, u64), String> = BTreeMap::new();
    walk(root, root, &mut out, &mut first_path_of_inode);
    out
}

fn walk(
    root: &Path,
    dir: &Path,
    out: &mut BTreeMap<String, String>,
    inodes: &mut BTreeMap<(u64, u64), String>,
) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let md = fs::symlink_metadata(&path).expect("lstat");
        let ft = md.file_type();
        let what = if ft.is_symlink() {
            format!("link -> {}", fs::read_link(&path).unwrap().display())
        } else if ft.is_dir() {
            "dir".to_string()
        } else if ft.is_char_device() || ft.is_block_device() {
            format!("dev {:x}", md.rdev())
        } else if ft.is_file() {
            let key = (md.dev(), md.ino());
            match inodes.get(&key) {
                Some(first) => format!("hardlink of {first}"),
                None => {
                    inodes.insert(key, rel.clone());
                    let data = fs::read(&path).unwrap();
                    format!("file {} bytes, sum {}", data.len(), checksum(&data))
                }
            }
        } else {
            "other".to_string()
        };
        out.insert(
            rel,
            format!(
                "{what} mode {:o} owner {}:{} mtime {}.{}",
                md.mode(),
                md.uid(),
                md.gid(),
                md.mtime(),
                md.mtime_nsec()
            ),
        );
        if ft.is_dir() {
            walk(root, &path, out, inodes);
        }
    }
}

fn checksum(data: &[u8]) -> u64 {
    // FNV-1a: enough to tell contents apart in a test.
    data.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

/// Asserts two trees are alike, naming only the entries that differ.
pub fn assert_same_tree(copy: &Path, original: &Path) {
    let (a, b) = (describe_tree(copy), describe_tree(original));
    let differences: Vec<String> = a
        .keys()
        .chain(b.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            format!(
                "{k}:\n  copy:     {:?}\n  original: {:?}",
                a.get(k),
                b.get(k)
            )
        })
        .collect();
    assert!(
        differences.is_empty(),
        "{} differs from {}:\n{}",
        copy.display(),
        original.display(),
        differences.join("\n")
    );
}
