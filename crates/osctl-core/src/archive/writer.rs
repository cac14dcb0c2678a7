//! Writes the outer archive into a seekable file, or through any writer.
//!
//! Headers are plain GNU/ustar (no PAX, no long-name records): the original
//! reads them with Ruby's TarReader. In a file, streams of unknown size are
//! written after a placeholder header that is patched once the size is
//! known; through a writer that cannot seek (a pipe), as parts of bounded
//! size, each buffered whole before its header (see `archive::parts`).
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

/// Where the archive goes.
enum Output<'w> {
    /// A seekable file: streams patched in place, spliced into.
    File { file: File, readback: File },
    /// A pipe or any other writer: streams in parts (see `archive::parts`).
    Stream {
        out: Box<dyn Write + 'w>,
        part_size: usize,
    },
}

impl Output<'_> {
    fn raw(&mut self) -> &mut dyn Write {
        match self {
            Output::File { file, .. } => file,
            Output::Stream { out, .. } => out,
        }
    }
}

pub struct ArchiveWriter<'w> {
    out: Output<'w>,
    mtime: u64,
    digests: Vec<EntryDigest>,
    /// How `digests` are computed: as `metadata.yml` says.
    algorithm: DigestAlgorithm,
    /// Set when an entry failed half-way: the file is no valid archive.
    broken: bool,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl ArchiveWriter<'static> {
    /// Starts an archive at the file's current position; anything after it is
    /// cut off. The file must be seekable (headers are patched in place).
    pub fn new(mut file: File) -> Result<Self> {
        let at = file
            .stream_position()
            .ctx(|| "the archive must be written to a seekable file")?;
        file.set_len(at)
            .ctx(|| "cannot truncate the archive file")?;
        let readback = readable_handle(&file).ctx(|| "cannot open the archive file for reading")?;
        Ok(Self::with_output(Output::File { file, readback }))
    }
}

impl<'w> ArchiveWriter<'w> {
    /// Starts an archive written straight through `out`, never seeking: each
    /// streamed entry goes out in parts of at most `part_size` bytes, which
    /// `metadata.yml` must announce (`part_size:`).
    pub fn streaming(out: impl Write + 'w, part_size: u64) -> Result<Self> {
        let part_size = usize::try_from(part_size)
            .ok()
            .filter(|s| (super::parts::MIN_PART..=super::parts::MAX_PART).contains(&(*s as u64)))
            .ok_or_else(|| Error::invalid(format!("part size {part_size} is out of bounds")))?;
        Ok(Self::with_output(Output::Stream {
            out: Box::new(out),
            part_size,
        }))
    }

    fn with_output(out: Output<'w>) -> Self {
        ArchiveWriter {
            out,
            mtime: now(),
            digests: Vec::new(),
            algorithm: DigestAlgorithm::CURRENT,
            broken: false,
        }
    }

    /// The part size of an archive written in parts; None for a file.
    pub fn part_size(&self) -> Option<u64> {
        match &self.out {
            Output::File { .. } => None,
            Output::Stream { part_size, .. } => Some(*part_size as u64),
        }
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
        self.guard(|w| w.out.raw().write_all(&header).ctx(|| write_failed(&name)))
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
            let out = w.out.raw();
            out.write_all(&header).ctx(|| write_failed(name))?;
            out.write_all(data).ctx(|| write_failed(name))?;
            pad(out, data.len() as u64).ctx(|| write_failed(name))?;
            w.digests.push(EntryDigest::of(name, data, w.algorithm));
            Ok(())
        })
    }

    /// Adds a file entry whose content `fill` streams into the sink, size
    /// unknown beforehand: in a file, after a header patched at the end; in
    /// a stream, as parts. On error the archive is left broken (every later
    /// call fails): the caller removes the file.
    pub fn stream_entry<T>(
        &mut self,
        name: &str,
        fill: impl FnOnce(&mut EntrySink<'_>) -> Result<T>,
    ) -> Result<T> {
        self.check()?;
        let placeholder = header::encode(name, EntryKind::File, 0, self.mtime)?;
        let mtime = self.mtime;
        let hasher = self.algorithm.hasher();
        self.guard(|w| {
            let (value, size, hasher) = match &mut w.out {
                Output::File { file, readback } => {
                    let header_at = file.stream_position().ctx(|| write_failed(name))?;
                    file.write_all(&placeholder).ctx(|| write_failed(name))?;
                    let target = Target::File { file, readback };
                    let mut sink = EntrySink::new(target, name, mtime, hasher, SINK_BUFFER);
                    let value = fill(&mut sink)?;
                    let (size, hasher) = sink.close()?;
                    pad(file, size).ctx(|| write_failed(name))?;
                    let end = file.stream_position().ctx(|| write_failed(name))?;
                    let header = header::encode(name, EntryKind::File, size, mtime)?;
                    file.seek(SeekFrom::Start(header_at))
                        .and_then(|_| file.write_all(&header))
                        .and_then(|()| file.seek(SeekFrom::Start(end)))
                        .ctx(|| format!("cannot patch the header of archive entry '{name}'"))?;
                    (value, size, hasher)
                }
                Output::Stream { out, part_size } => {
                    let target = Target::Parts {
                        out: &mut **out,
                        parts: 0,
                    };
                    let mut sink = EntrySink::new(target, name, mtime, hasher, *part_size);
                    let value = fill(&mut sink)?;
                    let (size, hasher) = sink.close()?;
                    (value, size, hasher)
                }
            };
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
    /// Fails for an archive written to a stream (see [`ArchiveWriter::end`]).
    pub fn finish(mut self) -> Result<File> {
        self.end_marker()?;
        match self.out {
            Output::File { file, .. } => {
                file.sync_all().ctx(|| "cannot finish the archive")?;
                Ok(file)
            }
            Output::Stream { .. } => Err(Error::invalid("the archive was written to a stream")),
        }
    }

    /// Ends the archive, wherever it went: a file is synced, a stream flushed.
    pub fn end(mut self) -> Result<()> {
        self.end_marker()?;
        match &mut self.out {
            Output::File { file, .. } => file.sync_all(),
            Output::Stream { out, .. } => out.flush(),
        }
        .ctx(|| "cannot finish the archive")
    }

    fn end_marker(&mut self) -> Result<()> {
        self.check()?;
        self.out
            .raw()
            .write_all(&[0u8; 2 * BLOCK])
            .ctx(|| "cannot finish the archive")
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
}

/// Zeros up to the next block boundary after `size` bytes of content.
fn pad(out: &mut dyn Write, size: u64) -> io::Result<()> {
    let rest = (size % BLOCK as u64) as usize;
    if rest == 0 {
        return Ok(());
    }
    out.write_all(&[0u8; BLOCK][rest..])
}

/// The archive is usually created write-only; reopening it through /proc
/// gives a read-only handle whatever its open mode was.
fn readable_handle(file: &File) -> io::Result<File> {
    use std::os::fd::AsRawFd;
    File::open(format!("/proc/self/fd/{}", file.as_raw_fd())).or_else(|_| file.try_clone())
}

/// Hands what the archive file holds so far to the disk (see
/// [`crate::fsutil::start_writeback`]).
fn written_out(file: &mut File) -> io::Result<()> {
    let end = file.stream_position()?;
    crate::fsutil::start_writeback(file, end);
    Ok(())
}

fn write_failed(name: &str) -> String {
    format!("cannot write archive entry '{name}'")
}

/// Where a streamed entry's content goes: a buffered, hashing `Write`, or
/// the archive file itself for zero-copy ([`EntrySink::with_file`]).
pub struct EntrySink<'a> {
    target: Target<'a>,
    name: &'a str,
    mtime: u64,
    /// Content not written out yet: up to `limit` bytes (a whole part when
    /// written in parts).
    buffer: Vec<u8>,
    limit: usize,
    hasher: Hasher,
    /// Bytes of content so far, buffered ones included.
    size: u64,
}

enum Target<'a> {
    File {
        file: &'a mut File,
        readback: &'a File,
    },
    /// Parts written so far.
    Parts { out: &'a mut dyn Write, parts: u32 },
}

impl<'a> EntrySink<'a> {
    fn new(target: Target<'a>, name: &'a str, mtime: u64, hasher: Hasher, limit: usize) -> Self {
        EntrySink {
            target,
            name,
            mtime,
            buffer: Vec::new(),
            limit,
            hasher,
            size: 0,
        }
    }

    /// The entry's name.
    pub fn name(&self) -> &str {
        self.name
    }

    /// Bytes of content written so far.
    pub fn written(&self) -> u64 {
        self.size
    }

    /// Whether [`EntrySink::with_file`] can be used (not in a stream).
    pub fn has_file(&self) -> bool {
        matches!(self.target, Target::File { .. })
    }

    /// Lets `copy` append straight to the archive file, e.g. with
    /// `ChildReader::copy_to_file` or `std::io::copy(&mut child_stdout, file)`,
    /// which the standard library turns into `splice(2)`: no userspace copy.
    /// `copy` must only append (no seeking, no truncating). The appended bytes
    /// are hashed concurrently by reading them back (see the module docs).
    /// Fails for an archive written to a stream.
    pub fn with_file<T>(&mut self, copy: impl FnOnce(&mut File) -> Result<T>) -> Result<T> {
        self.drain().ctx(|| write_failed(self.name))?;
        let name = self.name;
        let Target::File { file, readback } = &mut self.target else {
            return Err(Error::invalid(format!(
                "archive entry '{name}' goes to a stream, not into a file"
            )));
        };
        let start = file.stream_position().ctx(|| write_failed(name))?;
        let hasher = RegionHasher::spawn(readback, start, None, self.hasher.clone())
            .ctx(|| format!("cannot start hashing archive entry '{name}'"))?;
        let value = match copy(file) {
            Ok(value) => value,
            Err(e) => {
                hasher.cancel();
                return Err(e);
            }
        };
        let end = match file.stream_position() {
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

    /// Copies a reader into the entry: through [`EntrySink::with_file`] into
    /// a file (for a `ChildStdout`, `File` or `Take` of them a kernel copy),
    /// through the buffer into a stream.
    pub fn copy_from<R: io::Read>(&mut self, source: &mut R) -> Result<u64> {
        let name = self.name;
        if !self.has_file() {
            return io::copy(source, self).ctx(|| write_failed(name));
        }
        self.with_file(|file| io::copy(source, file).ctx(|| write_failed(name)))
    }

    /// Hashes and writes out the buffer: into the file, or as the next part.
    fn drain(&mut self) -> io::Result<()> {
        match &mut self.target {
            Target::File { file, .. } => {
                if self.buffer.is_empty() {
                    return Ok(());
                }
                self.hasher.update(&self.buffer);
                let result = file
                    .write_all(&self.buffer)
                    .and_then(|()| written_out(file));
                self.buffer.clear();
                result
            }
            Target::Parts { out, parts } => {
                *parts += 1;
                if *parts > super::parts::MAX_PARTS {
                    return Err(io::Error::other(format!(
                        "more than {} parts of {} bytes",
                        super::parts::MAX_PARTS,
                        self.limit
                    )));
                }
                let name = super::parts::part_name(self.name, *parts);
                let len = self.buffer.len() as u64;
                let header = header::encode(&name, EntryKind::File, len, self.mtime)
                    .map_err(|e| io::Error::other(e.to_string()))?;
                self.hasher.update(&self.buffer);
                out.write_all(&header)?;
                out.write_all(&self.buffer)?;
                pad(out, len)?;
                self.buffer.clear();
                Ok(())
            }
        }
    }

    fn close(mut self) -> Result<(u64, Hasher)> {
        // A stream in parts has at least one, if empty.
        let last_part = matches!(self.target, Target::Parts { parts: 0, .. });
        if !self.buffer.is_empty() || last_part {
            self.drain().ctx(|| write_failed(self.name))?;
        }
        Ok((self.size, self.hasher))
    }
}

impl Write for EntrySink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Target::Parts { .. } = self.target {
            // A part goes out when full, so that only full parts come
            // before the last one.
            let take = buf.len().min(self.limit - self.buffer.len());
            if self.buffer.capacity() == 0 {
                self.buffer.reserve_exact(self.limit);
            }
            self.buffer.extend_from_slice(&buf[..take]);
            self.size += take as u64;
            if self.buffer.len() == self.limit {
                self.drain()?;
            }
            return Ok(take);
        }
        if self.buffer.len() + buf.len() > self.limit {
            self.drain()?;
        }
        if buf.len() >= self.limit {
            // Large writes go straight out, no copy into the buffer.
            self.hasher.update(buf);
            if let Target::File { file, .. } = &mut self.target {
                file.write_all(buf)?;
                written_out(file)?;
            }
        } else {
            self.buffer.extend_from_slice(buf);
        }
        self.size += buf.len() as u64;
        Ok(buf.len())
    }

    /// Writes out the buffer of a file (the file itself is synced by
    /// `finish`); parts go out only when full or at the end.
    fn flush(&mut self) -> io::Result<()> {
        match self.target {
            Target::File { .. } => self.drain(),
            Target::Parts { .. } => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
