//! Hashing bytes that move without passing through our memory.
//!
//! When an export's stream is spliced from a pipe into the archive file, or
//! written there by `zfs send` itself, the kernel copies it and we never see
//! the bytes. To still hash them, a thread reads the same region of the
//! archive file with `pread` while the copy runs: the pages were just
//! written, so they come from the page cache, and hashing overlaps the copy
//! instead of following it. (Imports read every byte themselves: a native
//! stream's check must see the bytes its receiver gets.)

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::digest::Hasher;

/// Chunk read per `pread`.
const CHUNK: usize = 1 << 20;
/// `end` while the region is still growing.
const UNKNOWN_END: u64 = u64::MAX;

/// A thread hashing `[start, end)` of a file, where `end` may be set later
/// (export: the region grows while a child's output is spliced in).
pub(crate) struct RegionHasher {
    end: Arc<AtomicU64>,
    cancel: Arc<AtomicBool>,
    /// Taken by `finish` and `cancel`; still there on drop (a panic or an
    /// early return in the copy), when the thread is told to stop.
    thread: Option<JoinHandle<io::Result<Hasher>>>,
}

impl RegionHasher {
    /// Starts hashing from `start`, continuing `hasher`. With `end: None` the
    /// thread follows the file's growing length until [`RegionHasher::finish`]
    /// tells it where the region ends.
    pub(crate) fn spawn(
        file: &File,
        start: u64,
        end: Option<u64>,
        hasher: Hasher,
    ) -> io::Result<Self> {
        let file = file.try_clone()?;
        let end = Arc::new(AtomicU64::new(end.unwrap_or(UNKNOWN_END)));
        let cancel = Arc::new(AtomicBool::new(false));
        let thread = {
            let (end, cancel) = (end.clone(), cancel.clone());
            std::thread::Builder::new()
                .name("archive-hash".into())
                .spawn(move || hash_region(&file, start, &end, &cancel, hasher))?
        };
        Ok(RegionHasher {
            end,
            cancel,
            thread: Some(thread),
        })
    }

    /// Sets the end of the region, waits until it is hashed, returns the hasher.
    pub(crate) fn finish(mut self, end: u64) -> io::Result<Hasher> {
        self.end.store(end, Ordering::Release);
        let thread = self
            .thread
            .take()
            .ok_or_else(|| io::Error::other("hashing already finished"))?;
        thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the hashing thread panicked")))
    }

    /// Stops the thread without waiting for the rest of the region.
    pub(crate) fn cancel(mut self) {
        self.cancel.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for RegionHasher {
    fn drop(&mut self) {
        // Without this a thread following a growing file would poll forever.
        self.cancel.store(true, Ordering::Release);
    }
}

fn hash_region(
    file: &File,
    start: u64,
    end: &AtomicU64,
    cancel: &AtomicBool,
    mut hasher: Hasher,
) -> io::Result<Hasher> {
    let mut buf = vec![0u8; CHUNK];
    let mut at = start;
    let mut available = start;
    loop {
        if cancel.load(Ordering::Acquire) {
            return Err(io::Error::other("hashing cancelled"));
        }
        let known_end = end.load(Ordering::Acquire);
        if known_end != UNKNOWN_END {
            available = known_end;
        } else if at >= available {
            available = file.metadata()?.len();
        }
        if at >= available {
            if known_end != UNKNOWN_END {
                return Ok(hasher);
            }
            // Caught up with the copy: wait for more bytes.
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        let want = usize::try_from(available - at).map_or(CHUNK, |n| n.min(CHUNK));
        let n = file.read_at(&mut buf[..want], at)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the file ends at {at} bytes, before the end of the region to hash"),
            ));
        }
        hasher.update(&buf[..n]);
        at += n as u64;
        // What is hashed is complete: the disk may have it now.
        crate::fsutil::start_writeback(file, at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::DigestAlgorithm::Blake3;
    use std::io::Write;

    #[test]
    fn follows_a_growing_file() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"header").unwrap();
        let hasher = RegionHasher::spawn(&file, 6, None, Blake3.hasher()).unwrap();
        let mut expected = Blake3.hasher();
        for i in 0..50u32 {
            let chunk = vec![i as u8; 100_000];
            file.write_all(&chunk).unwrap();
            expected.update(&chunk);
        }
        let got = hasher.finish(6 + 50 * 100_000).unwrap();
        assert_eq!(got.hex(), expected.hex());
    }

    #[test]
    fn dropping_stops_the_thread() {
        let file = tempfile::tempfile().unwrap();
        let hasher = RegionHasher::spawn(&file, 0, None, Blake3.hasher()).unwrap();
        let cancel = hasher.cancel.clone();
        drop(hasher);
        assert!(cancel.load(Ordering::Acquire));
    }

    #[test]
    fn short_file_is_an_error() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"abc").unwrap();
        let hasher = RegionHasher::spawn(&file, 0, Some(10), Blake3.hasher()).unwrap();
        assert!(hasher.finish(10).is_err());
    }
}
