//! Writes the outer archive into a seekable file.
//!
//! Headers are plain GNU/ustar (no PAX, no long-name records): the original
//! reads them with Ruby's TarReader. Streams of unknown size are written after
//! a placeholder header that is patched once the size is known.
//!
//! Every file entry's size and SHA-256 are recorded for `checksums.yml`. Bytes
//! written through the sink's `Write` are hashed on the way; bytes spliced
//! straight into the file ([`EntrySink::with_file`]) are hashed by a thread
//! reading them back from the page cache while the copy runs, which keeps the
//! copy zero-copy and the hashing off its path.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use super::digest::{DigestAlgorithm, Hasher};
use super::hashing::RegionHasher;
use super::header::{self, EntryKind, BLOCK};
use super::EntryDigest;
use crate::error::{Context, Error, Result};

/// Buffer of the sink's `Write` side: large writes, few syscalls.
const SINK_BUFFER: usize = 1 << 20;

pub struct ArchiveWriter {
    file: File,
    /// A readable handle on the same file, to hash what was spliced into it.
    readback: File,
    mtime: u64,
    digests: Vec<EntryDigest>,
    /// How `digests` are computed: as `metadata.yml` says.
    algorithm: DigestAlgorithm,
    /// Set when an entry failed half-way: the file is no valid archive.
    broken: bool,
}

impl ArchiveWriter {
    /// Starts an archive at the file's current position; anything after it is
    /// cut off. The file must be seekable (headers are patched in place).
    pub fn new(mut file: File) -> Result<Self> {
        let at = file
            .stream_position()
            .ctx(|| "the archive must be written to a seekable file")?;
        file.set_len(at)
            .ctx(|| "cannot truncate the archive file")?;
        let readback = readable_handle(&file).ctx(|| "cannot open the archive file for reading")?;
        let mtime = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Ok(ArchiveWriter {
            file,
            readback,
            mtime,
            digests: Vec::new(),
            algorithm: DigestAlgorithm::CURRENT,
            broken: false,
        })
    }

    /// Hashes entries with `algorithm`, the one `metadata.yml` names
    /// ([`DigestAlgorithm::CURRENT`] unless set).
    pub fn with_digest(mut self, algorithm: DigestAlgorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// Adds a directory entry (mode 0755); `name` gets a trailing "/".
    pub fn add_dir(&mut self, name: &str) -> Result<()> {
        self.check()?;
        let name = format!("{}/", name.trim_end_matches('/'));
        let header = header::encode(&name, EntryKind::Dir, 0, self.mtime)?;
        self.guard(|w| w.file.write_all(&header).ctx(|| write_failed(&name)))
    }

    /// Adds a file entry (mode 0644) with the given content.
    pub fn add_file(&mut self, name: &str, data: &[u8]) -> Result<()> {
        self.add_file_with_mode(name, data, 0o644)
    }

    /// Adds a file entry with the given content and permission bits.
    pub fn add_file_with_mode(&mut self, name: &str, data: &[u8], mode: u32) -> Result<()> {
        self.check()?;
        let size = data.len() as u64;
        let header = header::encode_with_mode(name, EntryKind::File, size, self.mtime, mode)?;
        self.guard(|w| {
            w.file.write_all(&header).ctx(|| write_failed(name))?;
            w.file.write_all(data).ctx(|| write_failed(name))?;
            w.pad(data.len() as u64).ctx(|| write_failed(name))?;
            w.digests.push(EntryDigest::of(name, data, w.algorithm));
            Ok(())
        })
    }

    /// Adds a file entry whose content `fill` streams into the sink, size
    /// unknown beforehand. On error the archive is left broken (every later
    /// call fails): the caller removes the file.
    pub fn stream_entry<T>(
        &mut self,
        name: &str,
        fill: impl FnOnce(&mut EntrySink<'_>) -> Result<T>,
    ) -> Result<T> {
        self.check()?;
        let placeholder = header::encode(name, EntryKind::File, 0, self.mtime)?;
        let mtime = self.mtime;
        self.guard(|w| {
            let header_at = w.file.stream_position().ctx(|| write_failed(name))?;
            w.file.write_all(&placeholder).ctx(|| write_failed(name))?;
            let mut sink = EntrySink {
                file: &mut w.file,
                readback: &w.readback,
                name,
                buffer: Vec::with_capacity(SINK_BUFFER),
                hasher: w.algorithm.hasher(),
                size: 0,
            };
            let value = fill(&mut sink)?;
            let (size, hasher) = sink.close()?;
            w.pad(size).ctx(|| write_failed(name))?;
            let end = w.file.stream_position().ctx(|| write_failed(name))?;
            let header = header::encode(name, EntryKind::File, size, mtime)?;
            w.file
                .seek(SeekFrom::Start(header_at))
                .and_then(|_| w.file.write_all(&header))
                .and_then(|()| w.file.seek(SeekFrom::Start(end)))
                .ctx(|| format!("cannot patch the header of archive entry '{name}'"))?;
            w.digests.push(EntryDigest {
                name: name.to_string(),
                size,
                algorithm: w.algorithm,
                hex: hasher.hex(),
            });
            Ok(value)
        })
    }

    /// Size and digest of every file entry written so far, in order.
    pub fn checksums(&self) -> &[EntryDigest] {
        &self.digests
    }

    /// Writes the end-of-archive marker, syncs the file to disk, returns it.
    pub fn finish(mut self) -> Result<File> {
        self.check()?;
        self.file
            .write_all(&[0u8; 2 * BLOCK])
            .and_then(|()| self.file.sync_all())
            .ctx(|| "cannot finish the archive")?;
        Ok(self.file)
    }

    fn check(&self) -> Result<()> {
        if self.broken {
            return Err(Error::archive(
                "the archive is incomplete after an earlier error",
            ));
        }
        Ok(())
    }

    /// Runs a write step; a failure leaves the archive broken.
    fn guard<T>(&mut self, step: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let result = step(self);
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let rest = (size % BLOCK as u64) as usize;
        if rest == 0 {
            return Ok(());
        }
        self.file.write_all(&[0u8; BLOCK][rest..])
    }
}

/// The archive is usually created write-only; reopening it through /proc
/// gives a read-only handle whatever its open mode was.
fn readable_handle(file: &File) -> io::Result<File> {
    use std::os::fd::AsRawFd;
    File::open(format!("/proc/self/fd/{}", file.as_raw_fd())).or_else(|_| file.try_clone())
}

fn write_failed(name: &str) -> String {
    format!("cannot write archive entry '{name}'")
}

/// Where a streamed entry's content goes: a buffered, hashing `Write`, or the
/// archive file itself for zero-copy ([`EntrySink::with_file`]).
pub struct EntrySink<'a> {
    file: &'a mut File,
    readback: &'a File,
    name: &'a str,
    buffer: Vec<u8>,
    hasher: Hasher,
    /// Bytes of content so far, buffered ones included.
    size: u64,
}

impl EntrySink<'_> {
    /// The entry's name.
    pub fn name(&self) -> &str {
        self.name
    }

    /// Bytes of content written so far.
    pub fn written(&self) -> u64 {
        self.size
    }

    /// Lets `copy` append straight to the archive file, e.g. with
    /// `ChildReader::copy_to_file` or `std::io::copy(&mut child_stdout, file)`,
    /// which the standard library turns into `splice(2)`: no userspace copy.
    /// `copy` must only append (no seeking, no truncating). The appended bytes
    /// are hashed concurrently by reading them back (see the module docs).
    pub fn with_file<T>(&mut self, copy: impl FnOnce(&mut File) -> Result<T>) -> Result<T> {
        self.drain().ctx(|| write_failed(self.name))?;
        let name = self.name;
        let start = self.file.stream_position().ctx(|| write_failed(name))?;
        let hasher = RegionHasher::spawn(self.readback, start, None, self.hasher.clone())
            .ctx(|| format!("cannot start hashing archive entry '{name}'"))?;
        let value = match copy(self.file) {
            Ok(value) => value,
            Err(e) => {
                hasher.cancel();
                return Err(e);
            }
        };
        let end = match self.file.stream_position() {
            Ok(end) if end >= start => end,
            Ok(_) => {
                hasher.cancel();
                return Err(Error::archive(format!(
                    "archive entry '{name}': the copy moved the file position backwards"
                )));
            }
            Err(e) => {
                hasher.cancel();
                return Err(Error::io(write_failed(name), e));
            }
        };
        self.hasher = hasher
            .finish(end)
            .ctx(|| format!("cannot read back archive entry '{name}' to hash it"))?;
        self.size += end - start;
        Ok(value)
    }

    /// Copies a reader into the entry through [`EntrySink::with_file`]; for a
    /// `ChildStdout`, `File` or `Take` of them this is a kernel copy.
    pub fn copy_from<R: io::Read>(&mut self, source: &mut R) -> Result<u64> {
        let name = self.name;
        self.with_file(|file| io::copy(source, file).ctx(|| write_failed(name)))
    }

    /// Hashes and writes out the buffer.
    fn drain(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        self.hasher.update(&self.buffer);
        let result = self.file.write_all(&self.buffer);
        self.buffer.clear();
        result
    }

    fn close(mut self) -> Result<(u64, Hasher)> {
        self.drain().ctx(|| write_failed(self.name))?;
        Ok((self.size, self.hasher))
    }
}

impl Write for EntrySink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.buffer.len() + buf.len() > SINK_BUFFER {
            self.drain()?;
        }
        if buf.len() >= SINK_BUFFER {
            // Large writes go straight out, no copy into the buffer.
            self.hasher.update(buf);
            self.file.write_all(buf)?;
        } else {
            self.buffer.extend_from_slice(buf);
        }
        self.size += buf.len() as u64;
        Ok(buf.len())
    }

    /// Writes out the buffer (the archive file itself is synced by `finish`).
    fn flush(&mut self) -> io::Result<()> {
        self.drain()
    }
}

#[cfg(test)]
mod tests;
