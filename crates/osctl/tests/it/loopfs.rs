//! Small file systems on loop devices for tests (a full disk, btrfs).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use super::support::{have, is_root};

/// A mounted image file; unmounted (lazily, if busy) and deleted on drop.
pub struct LoopFs {
    pub mnt: PathBuf,
    image: PathBuf,
}

pub fn can_loop_mount() -> bool {
    is_root() && have("mkfs.ext4") && Path::new("/dev/loop-control").exists()
}

fn run(cmd: &mut Command) -> bool {
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

impl LoopFs {
    /// Makes and mounts a file system of `size_mb` MiB of type `fstype`
    /// (`ext4`, `btrfs`) in `dir`.
    pub fn new(dir: &Path, fstype: &str, size_mb: u64) -> LoopFs {
        LoopFs::with_options(dir, fstype, size_mb, "loop")
    }

    /// Like [`LoopFs::new`], mounted with `options` (which must include `loop`).
    pub fn with_options(dir: &Path, fstype: &str, size_mb: u64, options: &str) -> LoopFs {
        let image = dir.join(format!("{fstype}.img"));
        let mnt = dir.join(format!("{fstype}-mnt"));
        std::fs::create_dir_all(&mnt).unwrap();
        let f = std::fs::File::create(&image).unwrap();
        f.set_len(size_mb << 20).unwrap();
        drop(f);
        let mkfs = format!("mkfs.{fstype}");
        assert!(
            run(Command::new(&mkfs).arg("-q").arg(&image)),
            "{mkfs} failed"
        );
        assert!(
            run(Command::new("mount")
                .args(["-o", options])
                .arg(&image)
                .arg(&mnt)),
            "mount -o loop {} failed",
            image.display()
        );
        super::support::set_mode(&mnt, 0o755);
        LoopFs { mnt, image }
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        if !run(Command::new("umount").arg(&self.mnt)) {
            run(Command::new("umount").arg("-l").arg(&self.mnt));
        }
        let _ = std::fs::remove_file(&self.image);
    }
}
