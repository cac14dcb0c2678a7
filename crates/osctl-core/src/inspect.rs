//! `osctl archive show` and `osctl archive verify`: an archive read as the
//! hostile input it may be, without importing it.
//!
//! Both read the archive once, in order, as a stream (a pipe works as well as
//! a file), with the rules the importer applies: only the format's entry
//! names, `metadata.yml` first, configs and hooks before the root file
//! system, checksums and snapshots after it, nothing twice. [`show`] skips
//! the streams' data; [`verify`] also decompresses every stream to its end
//! (so the gzip CRC or zstd checksum is checked), walks the tar streams'
//! headers with the extractor's own checks of names, checks the magic of
//! zfs and btrfs send streams, and compares every entry's size and SHA-256
//! with `checksums.yml` when the archive has one.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::archive::compress::{self, Compression};
use crate::archive::grammar::Grammar;
use crate::archive::meta::{
    self, ArchiveFormat, EntryName, Metadata, StreamEncoding, StreamKind, StreamName,
};
use crate::archive::reader::read_error;
use crate::archive::{ArchiveReader, Entry, EntryKind, PartsReader};
use crate::error::{Context, Error, ErrorKind, Result};
use crate::fstar::{self, WalkStats};
use crate::model::{ContainerConfig, GroupConfig, UserConfig};
use crate::progress::Counting;
use crate::yaml;

pub mod fuzz;

/// `DRR_BEGIN`'s magic number, first in a zfs send stream's first record.
const ZFS_MAGIC: u64 = 0x0002_f5ba_cbac;
/// What a btrfs send stream starts with (then a little-endian u32 version).
const BTRFS_MAGIC: &[u8; 13] = b"btrfs-stream\0";

/// One entry of the outer archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryInfo {
    pub name: String,
    /// "file" or "dir".
    pub kind: &'static str,
    pub size: u64,
    /// For rootfs streams: "off", "gzip" or "zstd".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression: Option<&'static str>,
}

/// What an archive says about itself.
#[derive(Debug, Clone, Serialize)]
pub struct ArchiveSummary {
    pub metadata: Metadata,
    /// `config/user.yml`, `config/group.yml`, `config/container.yml` as parsed.
    pub user: Option<Value>,
    pub group: Option<Value>,
    pub container: Option<Value>,
    /// Hook scripts, relative to `hooks/`.
    pub hooks: Vec<String>,
    /// `snapshots.yml`, newest first; None when the archive has none.
    pub snapshots: Option<Vec<String>>,
    /// Whether the archive has a `checksums.yml`.
    pub checksums: bool,
    pub entries: Vec<EntryInfo>,
    /// Bytes read: the whole archive.
    pub archive_bytes: u64,
}

/// What is inside one rootfs stream, found by reading it to its end.
#[derive(Debug, Clone, Serialize)]
pub struct StreamReport {
    pub name: String,
    pub compression: &'static str,
    /// Bytes in the archive.
    pub stored_bytes: u64,
    /// Bytes after decompression.
    pub data_bytes: u64,
    /// For tar streams: what the headers describe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tar: Option<WalkStats>,
    /// For send streams: "zfs send stream" or "btrfs send stream v<N>".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_stream: Option<String>,
}

/// What [`verify`] checked; it returns one only when everything held.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub summary: ArchiveSummary,
    pub streams: Vec<StreamReport>,
    /// Entries whose size and SHA-256 matched `checksums.yml`; None when the
    /// archive has no `checksums.yml`.
    pub checksums_verified: Option<usize>,
}

/// Reads the archive at `path` (a regular file, a pipe or a device) for its
/// metadata, configs and list of entries, skipping the streams' data.
pub fn show(path: &Path) -> Result<ArchiveSummary> {
    let file = open(path)?;
    show_from(file).map_err(|e| e.context(format!("archive {}", path.display())))
}

/// [`show`] over any stream.
pub fn show_from(input: impl Read + Send) -> Result<ArchiveSummary> {
    Ok(Scan::new(Depth::Head).run(input)?.summary)
}

/// Checks the archive at `path` without importing it: structure, configs,
/// every stream read to its end, checksums. The first problem is the error,
/// naming the entry.
pub fn verify(path: &Path) -> Result<VerifyReport> {
    let file = open(path)?;
    verify_from(file).map_err(|e| e.context(format!("archive {}", path.display())))
}

/// [`verify`] over any stream.
pub fn verify_from(input: impl Read + Send) -> Result<VerifyReport> {
    Scan::new(Depth::Full).run(input)
}

fn open(path: &Path) -> Result<File> {
    File::open(path).ctx(|| format!("cannot open archive {}", path.display()))
}

impl VerifyReport {
    /// One line per group of checks, for people.
    pub fn lines(&self) -> Vec<String> {
        let s = &self.summary;
        let m = &s.metadata;
        let mut lines = vec![format!(
            "structure: {} entries, all of the format, in order, none missing",
            s.entries.len()
        )];
        let owner = |what: &str, v: &Option<String>| match v {
            Some(v) => format!(", {what} '{v}'"),
            None => String::new(),
        };
        lines.push(format!(
            "metadata.yml: {} archive, format {}{}{}{}, {} subdataset(s), exported at {}",
            match m.archive_type {
                meta::ArchiveType::Full => "full",
                meta::ArchiveType::Skel => "skel",
            },
            m.format,
            owner("container", &m.container),
            owner("user", &m.user),
            owner("group", &m.group),
            m.datasets.len(),
            crate::timefmt::utc_time(m.exported_at)
        ));
        let configs: Vec<&str> = [
            (meta::USER_CONFIG, &s.user),
            (meta::GROUP_CONFIG, &s.group),
            (meta::CONTAINER_CONFIG, &s.container),
        ]
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(name, _)| *name)
        .collect();
        lines.push(format!("configs: {} parsed", configs.join(", ")));
        lines.push(if s.hooks.is_empty() {
            "hooks: none".into()
        } else {
            format!("hooks: {} ({})", s.hooks.len(), s.hooks.join(", "))
        });
        for st in &self.streams {
            let content = match (&st.tar, &st.send_stream) {
                (Some(t), _) => format!(
                    "tar with {} entries ({} files of {} bytes, {} directories, {} symlinks, \
                     {} hard links, {} device nodes, {} fifos, {} whiteouts), names safe",
                    t.counts.entries,
                    t.counts.files,
                    t.counts.file_bytes,
                    t.counts.dirs,
                    t.counts.symlinks,
                    t.counts.hardlinks,
                    t.counts.devices,
                    t.counts.fifos,
                    t.counts.whiteouts
                ),
                (None, Some(kind)) => kind.clone(),
                (None, None) => "data".into(),
            };
            let packing = if st.compression == Compression::Off.name() {
                format!("{} bytes", st.stored_bytes)
            } else {
                format!(
                    "{} stream intact, {} -> {} bytes",
                    st.compression, st.stored_bytes, st.data_bytes
                )
            };
            lines.push(format!("{}: {packing}, {content}", st.name));
        }
        lines.push(match &s.snapshots {
            Some(list) if list.is_empty() => "snapshots.yml: no snapshots".into(),
            Some(list) => format!("snapshots.yml: {}", list.join(", ")),
            None => "snapshots.yml: none".into(),
        });
        lines.push(match self.checksums_verified {
            Some(n) => format!("checksums: all {n} entries match checksums.yml"),
            None => "checksums: no checksums.yml (an archive of the original osctl)".into(),
        });
        lines
    }

    /// The closing line: `archive FILE: OK (N entries, X bytes, ...)`.
    pub fn verdict(&self, shown_name: &str) -> String {
        format!(
            "archive {shown_name}: OK ({} entries, {} bytes, {})",
            self.summary.entries.len(),
            self.summary.archive_bytes,
            if self.checksums_verified.is_some() {
                "checksums verified"
            } else {
                "no checksums.yml"
            }
        )
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Depth {
    /// Names, order, documents; stream data skipped.
    Head,
    /// Everything, streams read to their end.
    Full,
}

struct Scan {
    depth: Depth,
    grammar: Grammar,
    user: Option<Value>,
    group: Option<Value>,
    container: Option<Value>,
    hooks: Vec<String>,
    entries: Vec<EntryInfo>,
    streams: Vec<StreamReport>,
}

impl Scan {
    fn new(depth: Depth) -> Scan {
        Scan {
            depth,
            grammar: Grammar::new(),
            user: None,
            group: None,
            container: None,
            hooks: Vec::new(),
            entries: Vec::new(),
            streams: Vec::new(),
        }
    }

    fn run(mut self, input: impl Read + Send) -> Result<VerifyReport> {
        let mut counted = Counting::new(input);
        let mut reader = ArchiveReader::new(&mut counted);
        while let Some(mut entry) = reader.next_entry()? {
            let name = meta::classify(entry.name(), entry.kind())?;
            self.grammar.admit(&name, entry.name())?;
            if let (EntryName::StreamPart(stream, 1), Depth::Full) = (&name, self.depth) {
                // Read as one stream across its parts (shown, each part is
                // an entry skipped).
                let stream = stream.clone();
                self.parts(&mut reader, stream)?;
                continue;
            }
            if !self.grammar.read_own(&mut entry, &name)? {
                self.entry(&mut entry, &name)?;
            }
            self.record(&entry, &name);
            if entry.remaining() > 0 && self.depth == Depth::Full {
                return Err(Error::archive(format!(
                    "archive entry '{}': {} bytes after the end of its content",
                    entry.name(),
                    entry.remaining()
                )));
            }
            if self.depth == Depth::Full {
                // Read to its end above, so hashed whole.
                self.grammar.keep_digest(&name, &entry);
            }
        }
        drop(reader);
        // What follows the end-of-archive marker (GNU tar pads to 10 KiB
        // records) is read too: a pipe's writer should not get SIGPIPE, and
        // the size reported is the whole input's.
        io::copy(&mut counted, &mut io::sink()).ctx(|| "cannot read the archive")?;
        let finished = self.grammar.finish(self.depth == Depth::Full)?;
        let checksums_verified = finished.checksums_verified;
        Ok(VerifyReport {
            summary: ArchiveSummary {
                metadata: finished.metadata.clone(),
                user: self.user,
                group: self.group,
                container: self.container,
                hooks: self.hooks,
                snapshots: finished.snapshots.map(<[String]>::to_vec),
                checksums: self.grammar.has_checksums(),
                entries: self.entries,
                archive_bytes: counted.count(),
            },
            streams: self.streams,
            checksums_verified,
        })
    }

    /// A stream in parts, from its first (the reader's current entry) to
    /// its last, checked as one.
    fn parts<R: Read + Send>(
        &mut self,
        reader: &mut ArchiveReader<R>,
        stream: StreamName,
    ) -> Result<()> {
        let metadata = self
            .grammar
            .metadata()
            .cloned()
            .expect("admitted after metadata.yml");
        let whole = stream.entry_name();
        let mut parts = PartsReader::new(reader, &mut self.grammar, stream.clone())?;
        let report = read_stream(&mut parts, &stream, &metadata)
            .map_err(|e| e.context(format!("archive entry '{whole}'")))?;
        parts.finish()?;
        self.entries.push(EntryInfo {
            name: whole,
            kind: "file",
            size: report.stored_bytes,
            compression: Some(stream.compression.name()),
        });
        self.streams.push(report);
        Ok(())
    }

    /// Reads an entry the grammar admitted.
    fn entry<R: Read + Send>(&mut self, entry: &mut Entry<'_, R>, name: &EntryName) -> Result<()> {
        let shown = entry.name().to_string();
        match name {
            EntryName::UserConfig | EntryName::GroupConfig | EntryName::ContainerConfig => {
                let bytes = entry.read_to_vec(meta::MAX_DOCUMENT)?;
                self.config(name, &shown, &bytes)?;
            }
            EntryName::Hook(rel) => {
                // Only its size matters here; the digest needs the bytes read.
                entry.read_to_vec(meta::MAX_HOOK_BYTES)?;
                self.hooks.push(rel.clone());
            }
            // Skipped: read across parts only when verifying (`parts`).
            EntryName::Dir(_) | EntryName::StreamPart(..) => {}
            EntryName::Stream(stream) => {
                if self.depth == Depth::Full {
                    let metadata = self
                        .grammar
                        .metadata()
                        .expect("admitted after metadata.yml");
                    let report = read_stream(entry, stream, metadata)
                        .map_err(|e| e.context(format!("archive entry '{shown}'")))?;
                    self.streams.push(report);
                }
            }
            // The grammar's own documents, read by it.
            EntryName::Metadata | EntryName::Checksums | EntryName::Snapshots => {}
        }
        Ok(())
    }

    fn record<R: Read>(&mut self, entry: &Entry<'_, R>, name: &EntryName) {
        let compression = match name {
            EntryName::Stream(s) | EntryName::StreamPart(s, _) => Some(s.compression.name()),
            _ => None,
        };
        self.entries.push(EntryInfo {
            name: entry.name().to_string(),
            kind: match entry.kind() {
                EntryKind::File => "file",
                EntryKind::Dir => "dir",
            },
            size: entry.size(),
            compression,
        });
    }

    /// Parses a config as the importer does (typed, under the YAML budget)
    /// when verifying, and keeps it as a plain value for showing.
    fn config(&mut self, name: &EntryName, shown: &str, bytes: &[u8]) -> Result<()> {
        let as_archive_error = |e: Error| e.reclassify(ErrorKind::Invalid, ErrorKind::Archive);
        let value: Value = yaml::parse_bytes(bytes, shown).map_err(as_archive_error)?;
        if self.depth == Depth::Full {
            let typed = |e: Error| as_archive_error(e);
            match name {
                EntryName::UserConfig => {
                    let user: UserConfig = yaml::parse_bytes(bytes, shown).map_err(typed)?;
                    user.maps()
                        .map_err(|e| e.context(shown).with_kind(ErrorKind::Archive))?;
                }
                EntryName::GroupConfig => {
                    GroupConfig::parse(bytes, shown).map_err(typed)?;
                }
                _ => {
                    let ct = ContainerConfig::parse(bytes, shown).map_err(typed)?;
                    let datasets = self.grammar.metadata().map(|m| m.datasets.as_slice());
                    crate::datasets::check_mounts(&ct, datasets.unwrap_or_default())
                        .map_err(|e| e.context(shown).with_kind(ErrorKind::Archive))?;
                }
            }
        }
        match name {
            EntryName::UserConfig => self.user = Some(value),
            EntryName::GroupConfig => self.group = Some(value),
            _ => self.container = Some(value),
        }
        Ok(())
    }
}

/// Reads a stream to its end: decompressed (which checks the compressor's
/// own checksum), its tar headers walked or its send-stream magic checked.
fn read_stream<R: Read + Send>(
    entry: &mut R,
    stream: &StreamName,
    metadata: &Metadata,
) -> Result<StreamReport> {
    let compression = stream.compression;
    let data_bytes;
    let mut tar = None;
    let mut send_stream = None;
    let mut stored = Counting::new(&mut *entry);
    {
        let buffered = BufReader::with_capacity(1 << 20, &mut stored);
        let decompressed =
            compress::decompressor(compression, buffered).map_err(|e| corrupt(compression, e))?;
        let spoilt = |e: Error| match e.into_io_source() {
            Ok(source) => corrupt(compression, source),
            Err(other) => other,
        };
        let mut input = Counting::new(decompressed);
        match stream.encoding {
            StreamEncoding::Tar => {
                let whiteouts = stream.kind == StreamKind::Incremental;
                tar = Some(fstar::walk(&mut input, whiteouts).map_err(spoilt)?);
            }
            StreamEncoding::Dat => {
                send_stream = Some(check_send_magic(&mut input, metadata.format).map_err(spoilt)?);
            }
        }
        // The rest: end blocks, and the compressor's trailer with its checksum.
        io::copy(&mut input, &mut io::sink()).map_err(|e| corrupt(compression, e))?;
        data_bytes = input.count();
    }
    let stored_bytes = stored.count();
    Ok(StreamReport {
        name: stream.entry_name(),
        compression: compression.name(),
        stored_bytes,
        data_bytes,
        tar,
        send_stream,
    })
}

/// An error reading a stream: the archive is truncated, the compressed
/// stream is corrupt (any error that is not the system's), or reading the
/// archive failed.
fn corrupt(compression: Compression, e: io::Error) -> Error {
    let e = read_error(e);
    match e.io_source() {
        Some(source) if compression != Compression::Off && source.raw_os_error().is_none() => {
            Error::archive(format!("corrupt {} stream: {source}", compression.name()))
        }
        _ => e,
    }
}

/// Reads the first bytes of a send stream and checks they are one of the
/// format's; returns what it is.
fn check_send_magic(input: &mut dyn Read, format: ArchiveFormat) -> Result<String> {
    let mut head = [0u8; 17];
    let mut filled = 0;
    while filled < head.len() {
        match input.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(read_error(e)),
        }
    }
    let head = &head[..filled];
    let bad = |what: &str| {
        Err(Error::archive(format!(
            "not a {format} send stream ({what})"
        )))
    };
    match format {
        ArchiveFormat::Zfs => {
            // struct dmu_replay_record: drr_type (u32, DRR_BEGIN = 0),
            // drr_payloadlen (u32), drr_begin.drr_magic (u64), in the
            // sender's byte order.
            if head.len() < 16 {
                return bad("shorter than its first record");
            }
            let field = |at: usize| -> [u8; 8] { head[at..at + 8].try_into().unwrap_or([0; 8]) };
            let magic = field(8);
            let kind = &head[..4];
            let little = u64::from_le_bytes(magic) == ZFS_MAGIC && kind == [0, 0, 0, 0];
            let big = u64::from_be_bytes(magic) == ZFS_MAGIC && kind == [0, 0, 0, 0];
            if !(little || big) {
                return bad("no DRR_BEGIN record with the zfs magic number first");
            }
            Ok("zfs send stream".into())
        }
        ArchiveFormat::Btrfs => {
            if head.len() < 17 || &head[..13] != BTRFS_MAGIC {
                return bad("no \"btrfs-stream\" magic");
            }
            let version = u32::from_le_bytes([head[13], head[14], head[15], head[16]]);
            Ok(format!("btrfs send stream v{version}"))
        }
        other => bad(&format!("format '{other}' has no send streams")),
    }
}

#[cfg(test)]
mod tests;
