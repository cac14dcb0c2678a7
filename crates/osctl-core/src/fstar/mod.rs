//! Root-file-system tar streams of `format: tar` archives.
//!
//! - [`dump_full`] writes a PAX tar of one or more directory trees (the root
//!   dataset and its subdatasets, each a [`DumpSource`]) that GNU tar extracts
//!   with `tar -x --numeric-owner --xattrs --xattrs-include='*' -p`, and returns
//!   a [`Manifest`] of what it saw.
//! - [`dump_changes`] writes the changeset of the same trees against such a
//!   manifest in the OCI image-layer convention (`.wh.<name>` whiteouts,
//!   `.wh..wh..opq` for replaced directories).
//! - [`extract`] applies a stream (ours, GNU tar's posix or gnu format) to a
//!   root file system. The stream is hostile input: nothing it says can make
//!   us write outside `root`, follow a symbolic link, or create a device node
//!   or an owner the caller did not allow.
//! - [`walk`] reads a stream through with the same checks of headers and
//!   names, writing nothing (`osctl archive verify`).
//!
//! Input and output are plain `Read`/`Write`; compression is the caller's.

mod dump;
mod extract;
mod header;
mod manifest;
mod read;
pub(crate) mod safefs;
mod walk;
mod write;

#[cfg(test)]
mod tests;

pub use crate::filepolicy::{DevicePolicy, FilePolicy};
pub use dump::{dump_changes, dump_full, dump_round, DumpSource, DumpStats};
pub use extract::{extract, ExtractOptions, ExtractStats};
pub use manifest::Manifest;
pub use walk::{walk, WalkStats};

/// How many entries of each kind a stream holds: what a dump wrote, an
/// extraction made and a walk read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct EntryCounts {
    /// Entries (a dump's and an extraction's whiteouts included).
    pub entries: u64,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    /// Character and block device nodes.
    pub devices: u64,
    pub fifos: u64,
    /// `.wh.<name>` entries and opaque markers.
    pub whiteouts: u64,
    /// Bytes of file content (the data of sparse files, not their holes).
    pub file_bytes: u64,
}

impl EntryCounts {
    /// Counts one entry of `kind` by its kind (not in `entries`).
    pub(crate) fn add(&mut self, kind: header::TarKind) {
        use header::TarKind;
        match kind {
            TarKind::File => self.files += 1,
            TarKind::Dir => self.dirs += 1,
            TarKind::Symlink => self.symlinks += 1,
            TarKind::HardLink => self.hardlinks += 1,
            TarKind::Char | TarKind::Block => self.devices += 1,
            TarKind::Fifo => self.fifos += 1,
        }
    }
}

/// Bounds that keep a hostile stream from exhausting memory.
pub(crate) mod limits {
    /// Size of one PAX extended header (also of a GNU long name).
    pub const PAX_HEADER: u64 = 1 << 20;
    /// Length of a path or a link target in the archive.
    pub const PATH: usize = 4096;
    /// Size of one extended attribute value (Linux's XATTR_SIZE_MAX).
    pub const XATTR_VALUE: usize = 64 << 10;
    /// Extended attributes on one entry.
    pub const XATTRS_PER_ENTRY: usize = 1024;
    /// (offset, length) pairs in one sparse file's map.
    pub const SPARSE_SEGMENTS: usize = 1 << 19;
    /// Human-readable notes kept in the statistics; more are only counted.
    pub const NOTES: usize = 100;
}

/// I/O buffer size for file contents and the stream (≥ 256 KiB keeps the
/// syscall count low; 1 MiB matches what pipes and compressors like).
pub(crate) const IO_BUFFER: usize = 1 << 20;

/// Seconds and nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct Timestamp {
    pub sec: i64,
    pub nsec: u32,
}

impl Timestamp {
    /// Nanoseconds as one number, saturating outside ±292 years of 1970.
    pub fn as_nanos(self) -> i64 {
        self.sec
            .saturating_mul(1_000_000_000)
            .saturating_add(self.nsec as i64)
    }
}

/// How an archive path is shown in messages: "./" + path.
pub(crate) fn show_path(rel: &[u8]) -> String {
    format!("./{}", show_bytes(rel))
}

/// Bytes from an archive as text: control characters and invalid UTF-8
/// escaped, so that a hostile name cannot forge output.
pub(crate) fn show_bytes(raw: &[u8]) -> String {
    let mut out = String::new();
    for chunk in raw.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Notes for the caller (never printed here): the first few in full, the
/// rest counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notes {
    pub shown: Vec<String>,
    pub more: u64,
}

impl Notes {
    pub(crate) fn add(&mut self, note: String) {
        if self.shown.len() < limits::NOTES {
            self.shown.push(note);
        } else {
            self.more += 1;
        }
    }

    /// All notes, one per line, with a count of the ones left out.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = self.shown.clone();
        if self.more > 0 {
            lines.push(format!("... and {} more", self.more));
        }
        lines
    }
}
