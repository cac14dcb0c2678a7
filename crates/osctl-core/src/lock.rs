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
        let file = Self::open(path)?;
        let deadline = Instant::now() + wait_limit();
        loop {
            match file.try_lock() {
                Ok(()) => {
                    return Ok(Lock {
                        _file: file,
                        path: path.to_owned(),
                    })
                }
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

    /// Takes the lock only if it is free now.
    pub fn try_acquire(path: &Path) -> Result<Option<Lock>> {
        let file = Self::open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Lock {
                _file: file,
                path: path.to_owned(),
            })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(e).ctx(|| format!("cannot lock {}", path.display())),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
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
}
