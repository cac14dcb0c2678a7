//! Streams in parts: how an archive written to a pipe holds streams whose
//! size is not known before they end.
//!
//! A tar header states its entry's size, and a pipe cannot be patched
//! afterwards, so each stream is written as consecutive entries of at most
//! `part_size` bytes (`metadata.yml`'s `part_size:`), named after the
//! stream: `rootfs/base.dat.gz.part-000001`, `...part-000002`, with nothing
//! between them. The original's importer looks for `rootfs/base.dat[.gz]`
//! or `rootfs/base.tar.gz` by exact name, so it refuses such an archive
//! ("not found") instead of misreading it; `osctl archive repack` joins the
//! parts into the single entries it reads. `checksums.yml` lists each
//! stream once, by its whole name, with the size and digest of the parts'
//! concatenation: the same line as for the single entry, so a repacked
//! archive keeps it.
//!
//! [`PartsReader`] reads a stream's parts as one, each part admitted by the
//! [`Grammar`] like any entry.

use std::io::{self, Read};

use super::digest::Hasher;
use super::grammar::Grammar;
use super::meta::{self, EntryName, StreamName};
use super::reader::{archive_fault, ArchiveReader};
use super::EntryDigest;
use crate::error::{Error, Result};

/// The parts an export to a pipe writes: large enough that headers cost
/// nothing, small enough to be buffered whole (a part's size must be known
/// before its header is written).
pub const DEFAULT_PART: u64 = 8 << 20;
/// Bounds of `part_size:`.
pub const MIN_PART: u64 = 4096;
pub const MAX_PART: u64 = 1 << 30;
/// Part numbers have six digits.
pub const MAX_PARTS: u32 = 999_999;

const MARK: &str = ".part-";

/// `<whole>.part-<n>`, `n` with six digits.
pub fn part_name(whole: &str, n: u32) -> String {
    format!("{whole}{MARK}{n:06}")
}

/// The whole stream's name and the part number of a part's name.
pub fn split_part(name: &str) -> Option<(&str, u32)> {
    let (whole, digits) = name.rsplit_once(MARK)?;
    if digits.len() != 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u32 = digits.parse().ok()?;
    (n >= 1).then_some((whole, n))
}

/// One stream read across its parts. Made at its first part (admitted, the
/// reader's current entry); reads the next entries as long as they are the
/// stream's next parts, and leaves the first other entry to be returned
/// again by the reader. At the stream's end its digest goes to the grammar.
pub struct PartsReader<'a, R: Read> {
    reader: &'a mut ArchiveReader<R>,
    grammar: &'a mut Grammar,
    stream: StreamName,
    part: u32,
    max: u64,
    size: u64,
    /// The hash of the parts before the current one.
    carried: Option<Hasher>,
    ended: bool,
}

impl<'a, R: Read> PartsReader<'a, R> {
    pub fn new(
        reader: &'a mut ArchiveReader<R>,
        grammar: &'a mut Grammar,
        stream: StreamName,
    ) -> Result<Self> {
        let max = grammar
            .metadata()
            .and_then(|m| m.part_size)
            .ok_or_else(|| Error::archive("a stream part in an archive without part_size"))?;
        let mut parts = PartsReader {
            reader,
            grammar,
            stream,
            part: 1,
            max,
            size: 0,
            carried: None,
            ended: false,
        };
        parts.check_size()?;
        Ok(parts)
    }

    /// The stream's whole name.
    pub fn name(&self) -> String {
        self.stream.entry_name()
    }

    /// After the consumer is done: the stream must have been read to its end.
    pub fn finish(&self) -> Result<()> {
        if self.ended {
            return Ok(());
        }
        Err(Error::archive(format!(
            "archive entry '{}' was not read to its end (part {})",
            self.name(),
            self.part
        )))
    }

    fn check_size(&mut self) -> Result<()> {
        let size = self.reader_size();
        if size > self.max {
            return Err(Error::archive(format!(
                "archive entry '{}' is {size} bytes, more than the archive's part_size {}",
                meta::EntryName::StreamPart(self.stream.clone(), self.part).entry_name(),
                self.max
            )));
        }
        Ok(())
    }

    fn reader_size(&mut self) -> u64 {
        self.reader.current_entry().map_or(0, |e| e.size())
    }

    /// At the end of a part: on to the next one (true), or the stream ended.
    fn next_part(&mut self) -> Result<bool> {
        let algorithm = {
            let mut entry = self.reader.current_entry().expect("a part is current");
            let Some(hasher) = entry.take_hash() else {
                return Err(Error::archive(format!(
                    "archive entry '{}' was not hashed",
                    entry.name()
                )));
            };
            self.carried = Some(hasher);
            entry.algorithm()
        };
        let next = self.reader.next_entry()?.map(|entry| {
            let name = meta::classify(entry.name(), entry.kind()).ok();
            (name, entry.name().to_string())
        });
        match next {
            Some((Some(name @ EntryName::StreamPart(..)), shown)) if matches!(&name, EntryName::StreamPart(s, _) if *s == self.stream) =>
            {
                self.grammar.admit(&name, &shown)?;
                self.part += 1;
                self.check_size()?;
                let carried = self.carried.take().expect("set above");
                let mut entry = self.reader.current_entry().expect("just read");
                entry.continue_hash(carried);
                Ok(true)
            }
            other => {
                if other.is_some() {
                    self.reader.keep_current();
                }
                let hasher = self.carried.take().expect("set above");
                self.grammar.keep_stream_digest(EntryDigest {
                    name: self.name(),
                    size: self.size,
                    algorithm,
                    hex: hasher.hex_by(algorithm).unwrap_or_default(),
                });
                Ok(false)
            }
        }
    }
}

impl<R: Read> Read for PartsReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.ended || buf.is_empty() {
                return Ok(0);
            }
            let mut entry = self.reader.current_entry().expect("a part is current");
            let n = entry.read(buf)?;
            if n > 0 {
                self.size += n as u64;
                return Ok(n);
            }
            match self.next_part() {
                Ok(true) => {}
                Ok(false) => self.ended = true,
                Err(e) => return Err(archive_fault(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_names_round_trip_and_odd_ones_are_not_parts() {
        let name = part_name("rootfs/base.dat.gz", 12);
        assert_eq!(name, "rootfs/base.dat.gz.part-000012");
        assert_eq!(split_part(&name), Some(("rootfs/base.dat.gz", 12)));
        for odd in [
            "rootfs/base.dat.gz.part-000000",
            "rootfs/base.dat.gz.part-12",
            "rootfs/base.dat.gz.part-0000012",
            "rootfs/base.dat.gz.part-00001x",
            "rootfs/base.dat.gz",
        ] {
            assert_eq!(split_part(odd), None, "{odd}");
        }
    }
}
