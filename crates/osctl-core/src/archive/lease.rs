//! A read lease on an archive file: proof that no one changed the file
//! while it was leased.
//!
//! A receiver that reads a stream from the archive file itself (`zfs recv`
//! with the file as its stdin) and our judge that reads the same bytes must
//! see the same bytes. The kernel grants a read lease only while no one has
//! the file open for writing, and breaks it when someone opens it for
//! writing or truncates it (fcntl(2), "Leases"): the opener waits for the
//! holder, up to `/proc/sys/fs/lease-break-time`. A lease still held at the
//! end means the file did not change in between; a broken one refuses.

use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};

pub struct ReadLease {
    /// Our own open file description of the archive: the lease is its.
    file: File,
}

impl ReadLease {
    /// A lease on a new read-only description of `file` (a regular file),
    /// or None where there can be none: someone has it open for writing,
    /// its file system has no leases, it is not a regular file.
    pub fn take(file: &File) -> Option<ReadLease> {
        // /proc/self/fd names the open file, not a path that could now lead
        // elsewhere.
        let own = File::open(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()?;
        if !own.metadata().ok()?.is_file() {
            return None;
        }
        let fd = own.as_raw_fd();
        // The kernel signals a lease break, SIGIO by default, which would
        // kill us; SIGURG is ignored unless handled. `intact` asks instead.
        (fcntl(fd, F_SETSIG, libc::SIGURG) == 0).then_some(())?;
        (fcntl(fd, libc::F_SETLEASE, libc::F_RDLCK) == 0).then_some(())?;
        Some(ReadLease { file: own })
    }

    /// The leased description (its offset is its own).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// True while no one has opened the file for writing or truncated it
    /// since the lease was taken (a break under way shows as the lease
    /// type it breaks to).
    pub fn intact(&self) -> bool {
        fcntl(self.file.as_raw_fd(), libc::F_GETLEASE, 0) == libc::F_RDLCK
    }
}

/// Linux's `F_SETSIG` (<fcntl.h>), which the libc crate lacks on glibc.
const F_SETSIG: libc::c_int = 10;

fn fcntl(fd: RawFd, cmd: libc::c_int, arg: libc::c_int) -> libc::c_int {
    // SAFETY: fcntl(2) with integer arguments on a descriptor we own.
    unsafe { libc::fcntl(fd, cmd, arg) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    #[test]
    fn a_lease_breaks_when_the_file_is_opened_for_writing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("archive");
        std::fs::write(&path, b"bytes").unwrap();
        let file = File::open(&path).unwrap();
        let Some(lease) = ReadLease::take(&file) else {
            eprintln!("SKIPPED: no leases on {}", dir.path().display());
            return;
        };
        assert!(lease.intact());
        // Reading does not break it.
        drop(File::open(&path).unwrap());
        assert!(lease.intact());
        // Without blocking: the open fails, the break begins.
        let writer = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path);
        assert!(writer.is_err());
        assert!(!lease.intact());
    }

    #[test]
    fn no_lease_while_someone_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("archive");
        let mut writer = File::create(&path).unwrap();
        writer.write_all(b"bytes").unwrap();
        let file = File::open(&path).unwrap();
        assert!(ReadLease::take(&file).is_none());
        drop(writer);
        let lease = ReadLease::take(&file);
        assert!(lease.is_none_or(|l| l.intact()));
    }
}
