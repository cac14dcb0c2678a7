//! A throw-away file system (ext4, btrfs) on a sparse image, mounted through
//! a loop device: for backends that need their own file system, and for
//! running out of space on purpose.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use osctl_core::cmd::Cmd;

/// Unmounted (lazily, if still busy) on drop, also when the test fails;
/// the image goes with its temporary directory.
pub struct LoopFs {
    mount_point: PathBuf,
    // Last: the image is deleted after the unmount.
    _dir: tempfile::TempDir,
}

impl LoopFs {
    /// A new `fstype` file system of `megabytes` MiB, mounted with `options`
    /// ("" for the defaults, or e.g. "compress=zstd"); or None, with the
    /// reason printed, where this machine cannot (not root, no
    /// `mkfs.<fstype>`, no loop devices).
    pub fn new(fstype: &str, megabytes: u64, options: &str) -> Option<LoopFs> {
        if let Some(missing) = missing(fstype) {
            eprintln!("SKIPPED: a {fstype} file system on a loop device needs {missing}");
            return None;
        }
        let mkfs = format!("mkfs.{fstype}");
        // Traversable: containers on it run as an unprivileged root.
        let dir = tempfile::Builder::new()
            .prefix(&format!("osctl-{fstype}-"))
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .tempdir()
            .expect("temporary directory");
        let image = dir.path().join(format!("{fstype}.img"));
        File::create(&image)
            .and_then(|f| f.set_len(megabytes << 20))
            .unwrap_or_else(|e| panic!("image {}: {e}", image.display()));
        Cmd::new(&mkfs)
            .arg("-q")
            .arg(&image)
            .run()
            .unwrap_or_else(|e| panic!("{e}"));
        let mount_point = dir.path().join("mnt");
        fs::create_dir(&mount_point).expect("mount point");
        let options = match options {
            "" => "loop".to_string(),
            more => format!("loop,{more}"),
        };
        Cmd::new("mount")
            .args(["-o", &options])
            .arg(&image)
            .arg(&mount_point)
            .run()
            .unwrap_or_else(|e| panic!("{e}"));
        crate::fs::chmod(&mount_point, 0o755);
        Some(LoopFs {
            mount_point,
            _dir: dir,
        })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.mount_point
    }
}

/// Whether [`LoopFs::new`] can make a `fstype` file system here.
pub fn can_mount(fstype: &str) -> bool {
    missing(fstype).is_none()
}

/// What this machine lacks for a `fstype` file system on a loop device.
fn missing(fstype: &str) -> Option<String> {
    let mkfs = format!("mkfs.{fstype}");
    if !crate::is_root() {
        Some("root".into())
    } else if !crate::have(&mkfs) {
        Some(format!("`{mkfs}` (Debian packages e2fsprogs, btrfs-progs)"))
    } else if !Path::new("/dev/loop-control").exists() {
        Some("loop devices".into())
    } else {
        None
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let unmounted = Cmd::new("umount").arg(&self.mount_point).run().is_ok()
            || Cmd::new("umount")
                .arg("-l")
                .arg(&self.mount_point)
                .run()
                .is_ok();
        if !unmounted {
            eprintln!("warning: cannot unmount {}", self.mount_point.display());
        }
    }
}
