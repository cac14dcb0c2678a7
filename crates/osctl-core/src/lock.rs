//! Advisory locks on files under the host state directory. A lock dies with its
//! process, so a crashed operation never leaves a stale lock; what it leaves is
//! found through its journal (see `journal`).

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Context, Error, Result};

/// How long an operation waits for another one on the same object.
fn wait_limit() -> Duration {
    std::env::var("OSCTL_LOCK_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(600))
}

#[derive(Debug)]
pub struct Lock {
    _file: File,
    path: PathBuf,
}

impl Lock {
    fn open(path: &Path) -> Result<File> {
        if let Some(dir) = path.parent() {
            crate::fsutil::create_dir_all(dir)?;
        }
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .ctx(|| format!("cannot open lock {}", path.display()))
    }

    /// Takes the lock, waiting while another process holds it. `what` names the
    /// locked object for the error message.
    pub fn acquire(path: &Path, what: &str) -> Result<Lock> {
        let deadline = Instant::now() + wait_limit();
        loop {
            let file = Self::open(path)?;
            match file.try_lock() {
                Ok(()) if Self::still_named(&file, path)? => {
                    return Ok(Lock {
                        _file: file,
                        path: path.to_owned(),
                    })
                }
                // Its holder removed it (see `remove`) before letting go:
                // the lock is on the file now at the path, if any.
                Ok(()) => continue,
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(Error::Busy(format!(
                        "{what} is busy: another operation holds it"
                    )))
                }
                Err(TryLockError::Error(e)) => {
                    return Err(e).ctx(|| format!("cannot lock {}", path.display()))
                }
            }
        }
    }

    /// Whether `path` still names the file we locked.
    fn still_named(file: &File, path: &Path) -> Result<bool> {
        use std::os::unix::fs::MetadataExt;
        let ours = file
            .metadata()
            .ctx(|| format!("cannot stat lock {}", path.display()))?;
        Ok(std::fs::metadata(path)
            .is_ok_and(|there| (there.dev(), there.ino()) == (ours.dev(), ours.ino())))
    }

    /// Takes the lock only if it is free now.
    pub fn try_acquire(path: &Path) -> Result<Option<Lock>> {
        loop {
            let file = Self::open(path)?;
            return match file.try_lock() {
                Ok(()) if Self::still_named(&file, path)? => Ok(Some(Lock {
                    _file: file,
                    path: path.to_owned(),
                })),
                Ok(()) => continue,
                Err(TryLockError::WouldBlock) => Ok(None),
                Err(TryLockError::Error(e)) => {
                    Err(e).ctx(|| format!("cannot lock {}", path.display()))
                }
            };
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the lock's file, then lets go: for objects that are gone (a
    /// deleted container, a refused import). Whoever waits on the old file
    /// gets it and sees that the path no longer names it.
    pub fn remove(self) -> Result<()> {
        crate::fsutil::remove_file_if_exists(&self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_try_fails_while_held() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.lock");
        let held = Lock::acquire(&p, "x").unwrap();
        assert!(Lock::try_acquire(&p).unwrap().is_none());
        drop(held);
        assert!(Lock::try_acquire(&p).unwrap().is_some());
    }

    #[test]
    fn a_removed_lock_is_not_held_by_its_waiters() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.lock");
        let held = Lock::acquire(&p, "x").unwrap();
        // A waiter that opened the file before it was removed.
        let stale = Lock::open(&p).unwrap();
        held.remove().unwrap();
        assert!(!p.exists());
        stale.try_lock().unwrap();
        assert!(!Lock::still_named(&stale, &p).unwrap());
        // The next taker makes a new file and holds that one.
        let next = Lock::acquire(&p, "x").unwrap();
        assert!(p.exists());
        assert!(Lock::try_acquire(&p).unwrap().is_none());
        drop(next);
    }
}
