//! A strict, sequential reader of the outer archive. It never seeks, so it
//! reads from a pipe as well as from a file, and it never trusts the input:
//! every header is validated, only files and directories are accepted, and
//! truncated input is an error, never a panic or a hang.
//!
//! Each entry's data is hashed as it is read.

use std::io::{self, Read};

use super::digest::{DigestAlgorithm, Hasher};
use super::header::{self, Block, EntryKind, BLOCK};
use super::EntryDigest;
use crate::error::{Error, Result};

/// Chunk size of copies through userspace.
const COPY_CHUNK: usize = 1 << 20;

pub struct ArchiveReader<R: Read> {
    input: R,
    current: Option<Current>,
    /// The next call of `next_entry` gives the current entry again (see
    /// [`ArchiveReader::keep_current`]).
    replay: bool,
    state: State,
    /// The archive's digest algorithm, once `metadata.yml` named it (see
    /// [`Entry::use_digest`]); until then entries are hashed both ways.
    algorithm: Option<DigestAlgorithm>,
    /// Bytes read from the input so far.
    consumed: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Reading,
    Ended,
    /// A header was broken; nothing after it can be trusted.
    Failed,
}

/// Data state of the entry last returned.
struct Current {
    name: String,
    kind: EntryKind,
    size: u64,
    mode: u32,
    remaining: u64,
    hasher: Hasher,
}

impl<R: Read> ArchiveReader<R> {
    pub fn new(input: R) -> Self {
        ArchiveReader {
            input,
            current: None,
            replay: false,
            state: State::Reading,
            algorithm: None,
            consumed: 0,
        }
    }

    /// The next entry, `None` at the end of the archive. Data of the previous
    /// entry that was not read is skipped. A root directory entry ("./") is
    /// skipped too: it carries nothing.
    pub fn next_entry(&mut self) -> Result<Option<Entry<'_, R>>> {
        if std::mem::take(&mut self.replay) && self.current.is_some() {
            return Ok(Some(Entry { reader: self }));
        }
        match self.state {
            State::Ended => return Ok(None),
            State::Failed => {
                return Err(Error::archive(
                    "cannot read on after an error in the archive",
                ))
            }
            State::Reading => {}
        }
        match self.advance() {
            Ok(true) => Ok(Some(Entry { reader: self })),
            Ok(false) => {
                self.state = State::Ended;
                Ok(None)
            }
            Err(e) => {
                self.state = State::Failed;
                Err(e)
            }
        }
    }

    /// Makes the next [`ArchiveReader::next_entry`] return the entry last
    /// returned once more, for a reader that looked at its header only (the
    /// end of a stream's parts is known by the entry after them).
    pub fn keep_current(&mut self) {
        self.replay = true;
    }

    /// The entry last returned, again, as it is now.
    pub fn current_entry(&mut self) -> Option<Entry<'_, R>> {
        self.current.as_ref()?;
        Some(Entry { reader: self })
    }

    /// Gives the input back (positioned after what was read).
    pub fn into_inner(self) -> R {
        self.input
    }

    /// Moves to the next entry's header; false at the end of the archive.
    fn advance(&mut self) -> Result<bool> {
        if let Some(current) = self.current.take() {
            let padding = (BLOCK as u64 - current.size % BLOCK as u64) % BLOCK as u64;
            self.skip(current.remaining + padding, &current.name)?;
        }
        loop {
            let mut block: Block = [0; BLOCK];
            if !self.read_block(&mut block, "a header")? {
                return Ok(false);
            }
            if header::is_zero(&block) {
                return self.check_end();
            }
            let decoded = header::decode(&block)?;
            if decoded.name.is_empty() {
                continue; // "./"
            }
            self.current = Some(Current {
                name: decoded.name,
                kind: decoded.kind,
                size: decoded.size,
                mode: decoded.mode,
                remaining: decoded.size,
                hasher: match self.algorithm {
                    Some(algorithm) => algorithm.hasher(),
                    None => Hasher::Both(Default::default(), Default::default()),
                },
            });
            return Ok(true);
        }
    }

    /// After a zero block: a second one (or the end of input) ends the archive.
    fn check_end(&mut self) -> Result<bool> {
        let mut block: Block = [0; BLOCK];
        if self.read_block(&mut block, "the end-of-archive marker")? && !header::is_zero(&block) {
            return Err(Error::archive(
                "archive is corrupt: a zero block in the middle of the archive",
            ));
        }
        Ok(false)
    }

    /// Reads one block; false on a clean end of input before its first byte.
    fn read_block(&mut self, block: &mut Block, what: &str) -> Result<bool> {
        let mut filled = 0;
        while filled < BLOCK {
            match self.input.read(&mut block[filled..]) {
                Ok(0) if filled == 0 => return Ok(false),
                Ok(0) => return Err(truncated(format!("{what} is cut off after {filled} bytes"))),
                Ok(n) => {
                    filled += n;
                    self.consumed += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("cannot read the archive", e)),
            }
        }
        Ok(true)
    }

    fn skip(&mut self, mut count: u64, name: &str) -> Result<()> {
        let mut buf = vec![0u8; COPY_CHUNK.min(count as usize)];
        while count > 0 {
            let want = buf.len().min(usize::try_from(count).unwrap_or(usize::MAX));
            match self.input.read(&mut buf[..want]) {
                Ok(0) => {
                    return Err(truncated(format!(
                        "entry '{name}' misses its last {count} bytes"
                    )))
                }
                Ok(n) => {
                    count -= n as u64;
                    self.consumed += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("cannot read the archive", e)),
            }
        }
        Ok(())
    }
}

fn truncated(what: String) -> Error {
    Error::archive(format!("archive is truncated: {what}"))
}

/// Marks the read error of a truncated entry, so that it maps back to
/// [`Error::Archive`] (see [`read_error`]).
#[derive(Debug)]
struct Truncated(String);

impl std::fmt::Display for Truncated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Truncated {}

/// An error of the archive found while reading on through a `Read` (a
/// stream's next part), as an I/O error that [`read_error`] maps back.
pub(crate) fn archive_fault(e: Error) -> io::Error {
    if e.kind() == crate::error::ErrorKind::Archive {
        io::Error::new(io::ErrorKind::InvalidData, Truncated(e.to_string()))
    } else {
        io::Error::other(e.to_string())
    }
}

/// Turns an error from reading an [`Entry`] into the library's error: a
/// truncated archive is [`Error::Archive`], anything else an I/O error.
pub fn read_error(err: io::Error) -> Error {
    if let Some(t) = err.get_ref().and_then(|e| e.downcast_ref::<Truncated>()) {
        return Error::archive(t.0.clone());
    }
    Error::io("cannot read the archive", err)
}

/// Failure of [`Entry::copy_to`]: reading the archive or writing the output.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The archive is broken or could not be read.
    #[error(transparent)]
    Source(Error),
    /// The destination refused the data (e.g. a receiving child died): the
    /// caller knows best how to explain it.
    #[error("cannot write the archive entry out: {0}")]
    Sink(io::Error),
}

impl From<CopyError> for Error {
    fn from(e: CopyError) -> Self {
        match e {
            CopyError::Source(e) => e,
            CopyError::Sink(e) => Error::io("cannot write the archive entry out", e),
        }
    }
}

/// One entry. Reading it yields the entry's data (and hashes it).
pub struct Entry<'a, R: Read> {
    reader: &'a mut ArchiveReader<R>,
}

impl<R: Read> Entry<'_, R> {
    fn current(&self) -> &Current {
        self.reader
            .current
            .as_ref()
            .expect("an entry exists while borrowed")
    }

    fn current_mut(&mut self) -> &mut Current {
        self.reader
            .current
            .as_mut()
            .expect("an entry exists while borrowed")
    }

    /// Name without a leading "./" and, for directories, without the trailing "/".
    pub fn name(&self) -> &str {
        &self.current().name
    }

    pub fn kind(&self) -> EntryKind {
        self.current().kind
    }

    /// Permission bits as the header says.
    pub fn mode(&self) -> u32 {
        self.current().mode
    }

    /// Size of the data as the header says.
    pub fn size(&self) -> u64 {
        self.current().size
    }

    /// Bytes of the archive read so far: where the entry's unread data
    /// begins, counted from where the input was when the reading began.
    pub fn position(&self) -> u64 {
        self.reader.consumed
    }

    /// Bytes of data not read yet.
    pub fn remaining(&self) -> u64 {
        self.current().remaining
    }

    /// Size and digest of the data, once all of it was read, by the
    /// archive's algorithm (SHA-256 until [`Entry::use_digest`] says).
    pub fn digest(&self) -> Option<EntryDigest> {
        let current = self.current();
        let algorithm = self.reader.algorithm.unwrap_or(DigestAlgorithm::Sha256);
        if current.remaining != 0 {
            return None;
        }
        Some(EntryDigest {
            name: current.name.clone(),
            size: current.size,
            algorithm,
            hex: current.hasher.hex_by(algorithm)?,
        })
    }

    /// The algorithm entries are hashed by now.
    pub(crate) fn algorithm(&self) -> DigestAlgorithm {
        self.reader.algorithm.unwrap_or(DigestAlgorithm::Sha256)
    }

    /// The hash of the whole data, once all of it was read and hashed.
    pub(crate) fn take_hash(&mut self) -> Option<Hasher> {
        let current = self.current();
        (current.remaining == 0).then(|| current.hasher.clone())
    }

    /// Hashes this entry's data on from `before` (the previous parts of a
    /// stream), before any of it is read.
    pub(crate) fn continue_hash(&mut self, before: Hasher) {
        self.current_mut().hasher = before;
    }

    /// Sets the archive's digest algorithm (from `metadata.yml`, which is
    /// hashed both ways while it is read) for this entry's digest and every
    /// later entry's.
    pub fn use_digest(&mut self, algorithm: DigestAlgorithm) {
        self.reader.algorithm = Some(algorithm);
    }

    /// Reads the whole (small) entry into memory, refusing entries larger than
    /// `limit` bytes before reading any of them.
    pub fn read_to_vec(&mut self, limit: u64) -> Result<Vec<u8>> {
        if self.remaining() > limit {
            return Err(Error::archive(format!(
                "archive entry '{}' is {} bytes, more than the {limit} allowed",
                self.name(),
                self.size()
            )));
        }
        let mut out = Vec::with_capacity(self.remaining() as usize);
        self.read_to_end(&mut out).map_err(read_error)?;
        Ok(out)
    }

    /// Copies the rest of the data into `out` through a buffer, hashing it.
    pub fn copy_to<W: io::Write + ?Sized>(&mut self, out: &mut W) -> Result<u64, CopyError> {
        let mut buf = vec![0u8; COPY_CHUNK.min(self.remaining() as usize).max(1)];
        let mut total = 0u64;
        loop {
            let n = match self.read(&mut buf) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CopyError::Source(read_error(e))),
            };
            out.write_all(&buf[..n]).map_err(CopyError::Sink)?;
            total += n as u64;
        }
    }
}

impl<R: Read> Read for Entry<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let remaining = self.remaining();
        if remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(remaining).unwrap_or(usize::MAX));
        let n = self.reader.input.read(&mut buf[..want])?;
        if n == 0 {
            let t = Truncated(format!(
                "archive is truncated: entry '{}' misses its last {remaining} bytes",
                self.name()
            ));
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, t));
        }
        self.reader.consumed += n as u64;
        let current = self.current_mut();
        current.hasher.update(&buf[..n]);
        current.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
