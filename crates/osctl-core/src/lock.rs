//! Advisory locks on files under the host state directory. A lock dies with its
//! process, so a crashed operation never leaves a stale lock; what it leaves is
//! found through its journal (see `journal`).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::{Context, Error, Result};

/// What this process is doing (`ct export web1`), written into every lock
/// it takes so that whoever waits for it can say who holds it.
static OPERATION: OnceLock<String> = OnceLock::new();
/// How long to wait for a lock, when the caller says (`--lock-timeout`).
static WAIT_LIMIT: OnceLock<Duration> = OnceLock::new();
/// Told once when an acquire has to wait: who holds the lock.
static WAIT_NOTICE: OnceLock<fn(&str)> = OnceLock::new();

/// Names this process's operation in the locks it takes.
pub fn set_operation(operation: String) {
    let _ = OPERATION.set(operation);
}

/// Waits this long for a lock, instead of `OSCTL_LOCK_TIMEOUT` (600 s).
pub fn set_wait_limit(limit: Duration) {
    let _ = WAIT_LIMIT.set(limit);
}

/// Where the line saying that an acquire waits goes (nowhere by default).
pub fn set_wait_notice(notice: fn(&str)) {
    let _ = WAIT_NOTICE.set(notice);
}

/// How long an operation waits for another one on the same object.
fn wait_limit() -> Duration {
    WAIT_LIMIT.get().copied().unwrap_or_else(|| {
        std::env::var("OSCTL_LOCK_TIMEOUT")
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Duration::from_secs)
            .unwrap_or(Duration::from_secs(600))
    })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What a lock file says of its holder: `<pid> <unix time> <operation>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub since: u64,
    pub operation: String,
}

impl Holder {
    fn parse(text: &str) -> Option<Holder> {
        let mut words = text.trim_end().splitn(3, ' ');
        Some(Holder {
            pid: words.next()?.parse().ok()?,
            since: words.next()?.parse().ok()?,
            operation: words
                .next()
                .unwrap_or("")
                .chars()
                .filter(|c| !c.is_control())
                .collect(),
        })
    }

    /// "`osctl ct export web1` (pid 123, since 14:02:11 UTC, 40 s ago)"
    pub fn describe(&self, now: u64) -> String {
        let day = self.since % 86_400;
        let operation = if self.operation.is_empty() {
            "another osctl".to_string()
        } else {
            format!("`osctl {}`", self.operation)
        };
        format!(
            "{operation} (pid {}, since {:02}:{:02}:{:02} UTC, {} s ago)",
            self.pid,
            day / 3600,
            day / 60 % 60,
            day % 60,
            now.saturating_sub(self.since)
        )
    }
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
            .read(true)
            .write(true)
            .open(path)
            .ctx(|| format!("cannot open lock {}", path.display()))
    }

    /// Takes the lock, waiting while another process holds it (saying so
    /// once, see [`set_wait_notice`]). `what` names the locked object for
    /// messages.
    pub fn acquire(path: &Path, what: &str) -> Result<Lock> {
        let limit = wait_limit();
        let deadline = Instant::now() + limit;
        let mut told = false;
        loop {
            let file = Self::open(path)?;
            match file.try_lock() {
                Ok(()) if Self::still_named(&file, path)? => return Lock::held(file, path),
                // Its holder removed it (see `remove`) before letting go:
                // the lock is on the file now at the path, if any.
                Ok(()) => continue,
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    if !told {
                        told = true;
                        if let Some(notice) = WAIT_NOTICE.get() {
                            notice(&format!(
                                "{what} is held by {}; waiting up to {} s for it",
                                holder_of(&file),
                                limit.as_secs()
                            ));
                        }
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(Error::busy(format!(
                        "{what} is busy: held by {} for longer than {} s \
                         (--lock-timeout or OSCTL_LOCK_TIMEOUT to wait longer)",
                        holder_of(&file),
                        limit.as_secs()
                    )))
                }
                Err(TryLockError::Error(e)) => {
                    return Err(e).ctx(|| format!("cannot lock {}", path.display()))
                }
            }
        }
    }

    /// A lock just taken: says in its file who holds it.
    fn held(mut file: File, path: &Path) -> Result<Lock> {
        let holder = format!(
            "{} {} {}\n",
            std::process::id(),
            unix_now(),
            OPERATION.get().map_or("", String::as_str)
        );
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(holder.as_bytes()))
            .ctx(|| format!("cannot write lock {}", path.display()))?;
        Ok(Lock {
            _file: file,
            path: path.to_owned(),
        })
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
                Ok(()) if Self::still_named(&file, path)? => Lock::held(file, path).map(Some),
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

/// Who holds the lock on `file`, as its file says.
fn holder_of(file: &File) -> String {
    let mut text = String::new();
    let _ = file.take(4096).read_to_string(&mut text);
    match Holder::parse(&text) {
        Some(holder) => holder.describe(unix_now()),
        None => "another operation".into(),
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
    fn the_lock_file_names_its_holder() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.lock");
        let _held = Lock::acquire(&p, "x").unwrap();
        let holder = Holder::parse(&std::fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(holder.pid, std::process::id());
        let at = Holder {
            pid: 7,
            since: 86_400 * 3 + 3600 * 14 + 60 * 2 + 11,
            operation: "ct export web1".into(),
        };
        assert_eq!(
            at.describe(at.since + 40),
            "`osctl ct export web1` (pid 7, since 14:02:11 UTC, 40 s ago)"
        );
        assert_eq!(Holder::parse("garbage"), None);
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
