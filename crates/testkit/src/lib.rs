//! Test fixtures shared by the tests of `osctl-core` and `osctl` (a
//! dev-dependency only):
//! - [`tree`]: a tree with every kind of file, a scan of everything a faithful
//!   copy keeps, and a comparison of two trees at a chosen precision;
//! - [`fs`]: the small file-system operations those trees are made of;
//! - [`zpool`]: a throw-away zpool (zfs-fuse or OpenZFS);
//! - [`loopfs`]: a throw-away file system on a loop device (ext4, btrfs);
//! - [`sshd`]: a throw-away OpenSSH server on a loopback address.
//!
//! Everything here panics on failure, naming the path: these are tests.

pub mod fs;
pub mod loopfs;
pub mod sshd;
pub mod tree;
pub mod zpool;

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Whether `program` is an executable file on the PATH.
pub fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}
