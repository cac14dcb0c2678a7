//! The export/import archive: an uncompressed tar holding `metadata.yml`, the
//! configs, optional hooks, the rootfs streams and `snapshots.yml`, readable by
//! the original osctl and able to read its archives (see
//! `shared/spec/upstream-format.md`).
//!
//! - [`compress`]: per-stream compression (parallel single-member gzip, zstd).
//! - [`writer`]: the outer tar, written to a seekable file, streams of unknown
//!   size patched in place, every entry's SHA-256 recorded.
//! - [`reader`]: a strict streaming reader of the outer tar (works on a pipe).
//! - [`meta`]: `metadata.yml`, `snapshots.yml`, `checksums.yml` and the names
//!   of the entries.
//!
//! Nothing here runs programs or knows about pools.

pub mod compress;
pub mod grammar;
mod hashing;
mod header;
pub mod meta;
pub mod reader;
pub mod writer;

#[cfg(test)]
mod testutil;

use serde::{Deserialize, Serialize};

pub use compress::{Compression, Encoder};
pub use header::EntryKind;
pub use meta::EntryName;
pub use reader::{ArchiveReader, CopyError, Entry};
pub use writer::{ArchiveWriter, EntrySink};

/// Size and SHA-256 of one entry's content, as written or as read. Also the
/// record type of `checksums.yml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryDigest {
    pub name: String,
    pub size: u64,
    /// Lower-case hexadecimal SHA-256 of the entry's bytes.
    #[serde(rename = "sha256")]
    pub sha256_hex: String,
}
