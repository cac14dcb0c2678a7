//! File system helpers: atomic writes and durable renames.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Context, Result};

/// Temporary files of [`atomic_write`] are named `.tmp-<pid>-<random>`, so
/// that those of dead processes can be told apart and removed.
pub const TEMP_PREFIX: &str = ".tmp-";

/// Removes temporary files of [`atomic_write`] in `dir` whose writer is no
/// longer alive; returns their paths.
pub fn remove_stale_temp_files(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(TEMP_PREFIX) else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if !pid.is_some_and(process_alive) {
            remove_file_if_exists(&entry.path())?;
            removed.push(entry.path());
        }
    }
    Ok(removed)
}

/// Runs `change` (which adds or removes entries in `dir`) and then gives
/// `dir` back its access and modification times, which the change moved.
pub fn keeping_times<T>(dir: &Path, change: impl FnOnce() -> Result<T>) -> Result<T> {
    use rustix::fs::{statat, utimensat, AtFlags, Timestamps, CWD};
    let before = statat(CWD, dir, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(std::io::Error::from)
        .ctx(|| format!("cannot stat {}", dir.display()))?;
    let value = change()?;
    let times = Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: before.st_atime as _,
            tv_nsec: before.st_atime_nsec as _,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: before.st_mtime as _,
            tv_nsec: before.st_mtime_nsec as _,
        },
    };
    utimensat(CWD, dir, &times, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(std::io::Error::from)
        .ctx(|| format!("cannot restore the times of {}", dir.display()))?;
    Ok(value)
}

/// True while a process with this pid exists.
pub fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Writes `data` to `path` so that a reader (or a crash) sees either the old
/// file or the new one, never a mix: temp file in the same directory, fsync,
/// rename, fsync of the directory.
pub fn atomic_write(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let prefix = format!("{TEMP_PREFIX}{}-", std::process::id());
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .tempfile_in(dir)
        .ctx(|| format!("cannot create a temporary file in {}", dir.display()))?;
    tmp.write_all(data)
        .and_then(|_| tmp.as_file().sync_all())
        .ctx(|| format!("cannot write {}", path.display()))?;
    set_mode(tmp.path(), 0o644)?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .ctx(|| format!("cannot replace {}", path.display()))?;
    sync_dir(dir)
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx(|| format!("cannot sync directory {}", dir.display()))
}

/// Starts writing `file`'s dirty pages before `end` out to disk, without
/// waiting for them. An archive is synced before it gets its name; starting
/// the write-out as the data comes lets the disk work while the export goes
/// on, so that the closing sync waits only for the last pieces. The page that
/// `end` falls in is left alone: it is still being filled, and a page under
/// write-out may make the next write to it wait. Advisory: an error here
/// shows again at that sync.
pub fn start_writeback(file: &File, end: u64) {
    use std::os::fd::AsRawFd;
    let page = rustix::param::page_size() as u64;
    let Some(len) = whole_pages_before(end, page) else {
        return;
    };
    // SAFETY: a system call on a descriptor that `file` keeps open.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// The bytes of the whole pages before `end`; None for none (a length of 0
/// would mean "to the end of the file" to sync_file_range).
fn whole_pages_before(end: u64, page: u64) -> Option<libc::off64_t> {
    libc::off64_t::try_from(end / page * page)
        .ok()
        .filter(|&len| len > 0)
}

/// Writes back the dirty data of the file system holding `dir` (syncfs).
pub fn sync_file_system(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| rustix::fs::syncfs(&d).map_err(std::io::Error::from))
        .ctx(|| format!("cannot sync the file system of {}", dir.display()))
}

pub fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .ctx(|| format!("cannot set mode of {}", path.display()))
}

/// Makes a container's directory (the root dataset's, which holds
/// `private/`) root's own with mode 0700, whatever a stream said: root file
/// systems are stored unshifted, and their setuid programs must be out of
/// host users' reach. The last component is not followed.
pub fn seal_container_dir(dir: &Path) -> Result<()> {
    use rustix::fs::{Gid, Mode, OFlags, Uid};
    let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let sealed = rustix::fs::open(dir, flags, Mode::empty()).and_then(|fd| {
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o700))?;
        rustix::fs::fchown(&fd, Some(Uid::ROOT), Some(Gid::ROOT))
    });
    sealed
        .map_err(std::io::Error::from)
        .ctx(|| format!("cannot make {} root's own with mode 0700", dir.display()))
}

pub fn create_dir_all(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).ctx(|| format!("cannot create directory {}", dir.display()))
}

/// Reads a file that may not exist.
pub fn read_optional(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).ctx(|| format!("cannot read {}", path.display())),
    }
}

/// Removes a file that may not exist.
pub fn remove_file_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).ctx(|| format!("cannot remove {}", path.display())),
    }
}

/// Removes a directory tree that may not exist.
pub fn remove_dir_all_if_exists(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).ctx(|| format!("cannot remove {}", path.display())),
    }
}

/// The first directory on the way down to `path` (itself included) that a
/// process with host `uid` and `gid` (no supplementary groups) cannot search,
/// by its mode bits, with its metadata. Directories with a POSIX ACL are
/// taken as searchable: their ACL may grant it.
pub fn first_unsearchable(path: &Path, uid: u32, gid: u32) -> Option<(PathBuf, fs::Metadata)> {
    use std::os::unix::fs::MetadataExt;
    let mut dirs: Vec<&Path> = path.ancestors().collect();
    dirs.reverse();
    for dir in dirs {
        let Ok(meta) = fs::metadata(dir) else {
            continue;
        };
        let bit = if meta.uid() == uid {
            0o100
        } else if meta.gid() == gid {
            0o010
        } else {
            0o001
        };
        let has_acl =
            rustix::fs::getxattr(dir, "system.posix_acl_access", &mut [0u8; 0][..]).is_ok();
        if meta.mode() & bit == 0 && !has_acl {
            return Some((dir.to_path_buf(), meta));
        }
    }
    None
}

/// About the bytes a stream of the tree at `dir` carries: file sizes plus a
/// header's 512 bytes per entry, without following symlinks or leaving the
/// file system. For progress estimates only: unreadable parts count nothing.
pub fn tree_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(top) = fs::symlink_metadata(dir) else {
        return 0;
    };
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            total += 512;
            if meta.is_file() {
                total += meta.len();
            } else if meta.is_dir() && meta.dev() == top.dev() {
                pending.push(entry.path());
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writeback_leaves_the_page_being_filled() {
        assert_eq!(whole_pages_before(0, 4096), None);
        assert_eq!(whole_pages_before(4095, 4096), None);
        assert_eq!(whole_pages_before(4096, 4096), Some(4096));
        assert_eq!(whole_pages_before(10_000, 4096), Some(8192));
        assert_eq!(whole_pages_before(100_000, 65536), Some(65536));
        assert_eq!(whole_pages_before(u64::MAX, 4096), None);
        // On a real file it is harmless, whatever the end.
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&[1; 10_000]).unwrap();
        for end in [0, 5000, 10_000, 1 << 40] {
            start_writeback(&file, end);
        }
        file.sync_all().unwrap();
        assert_eq!(file.metadata().unwrap().len(), 10_000);
    }

    /// File bytes plus a header per entry; symlinks are not followed.
    #[test]
    fn tree_bytes_counts_files_and_headers() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("sub")).unwrap();
        fs::write(d.path().join("sub/a"), [0u8; 1000]).unwrap();
        fs::write(d.path().join("b"), [0u8; 24]).unwrap();
        std::os::unix::fs::symlink("/usr", d.path().join("link")).unwrap();
        assert_eq!(tree_bytes(d.path()), 4 * 512 + 1024);
        assert_eq!(tree_bytes(&d.path().join("missing")), 0);
    }

    #[test]
    fn atomic_write_replaces() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.yml");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "two");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn stale_temp_files_go_live_ones_stay() {
        let d = tempfile::tempdir().unwrap();
        let live = d
            .path()
            .join(format!("{TEMP_PREFIX}{}-abc", std::process::id()));
        let dead = d.path().join(format!("{TEMP_PREFIX}999999999-abc"));
        let other = d.path().join("keep.yml");
        for p in [&live, &dead, &other] {
            fs::write(p, "x").unwrap();
        }
        assert_eq!(
            remove_stale_temp_files(d.path()).unwrap(),
            vec![dead.clone()]
        );
        assert!(live.exists() && other.exists() && !dead.exists());
    }
}
