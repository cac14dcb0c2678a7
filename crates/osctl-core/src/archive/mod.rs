//! The export/import archive: an uncompressed tar holding `metadata.yml`, the
//! configs, optional hooks, the rootfs streams and `snapshots.yml`, readable by
//! the original osctl and able to read its archives (see
//! `shared/spec/upstream-format.md`).
//!
//! - [`compress`]: per-stream compression (parallel single-member gzip, zstd).
//! - [`writer`]: the outer tar, written to a seekable file, streams of unknown
//!   size patched in place, every entry's SHA-256 recorded.
//! - [`reader`]: a strict streaming reader of the outer tar (works on a pipe).
//! - [`lease`]: a read lease on an archive file, for a receiver that reads a
//!   stream from the file itself while we judge the same bytes.
//! - [`meta`]: `metadata.yml`, `snapshots.yml`, `checksums.yml` and the names
//!   of the entries.
//!
//! Nothing here runs programs or knows about pools.

pub mod background;
pub mod compress;
pub mod digest;
pub mod grammar;
mod hashing;
mod header;
pub mod lease;
pub mod meta;
pub mod parts;
pub mod reader;
pub mod sniff;
pub mod writer;

#[cfg(test)]
mod testutil;

use serde::{Deserialize, Serialize};

pub use compress::{Compression, Encoder};
pub use digest::DigestAlgorithm;
pub use header::EntryKind;
pub use meta::EntryName;
pub use parts::PartsReader;
pub use reader::{ArchiveReader, CopyError, Entry};
pub use writer::{ArchiveWriter, EntrySink};

/// Size and digest of one entry's content, as written or as read. Also the
/// record type of `checksums.yml`: `{name, size, blake3: HEX}` (or
/// `sha256: HEX` in archives written before BLAKE3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "DigestLine", into = "DigestLine")]
pub struct EntryDigest {
    pub name: String,
    pub size: u64,
    pub algorithm: DigestAlgorithm,
    /// Lower-case hexadecimal digest of the entry's bytes.
    pub hex: String,
}

impl EntryDigest {
    /// The digest of a whole entry held in memory.
    pub fn of(name: &str, data: &[u8], algorithm: DigestAlgorithm) -> EntryDigest {
        EntryDigest {
            name: name.to_string(),
            size: data.len() as u64,
            algorithm,
            hex: algorithm.hex_of(data),
        }
    }
}

/// A line of `checksums.yml` as it is written: the algorithm is the key.
#[derive(Serialize, Deserialize)]
struct DigestLine {
    name: String,
    size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    blake3: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
}

impl TryFrom<DigestLine> for EntryDigest {
    type Error = String;

    fn try_from(line: DigestLine) -> Result<Self, String> {
        let (algorithm, hex) = match (line.blake3, line.sha256) {
            (Some(hex), None) => (DigestAlgorithm::Blake3, hex),
            (None, Some(hex)) => (DigestAlgorithm::Sha256, hex),
            _ => {
                return Err(format!(
                    "entry '{}' must have one of blake3 and sha256",
                    line.name
                ))
            }
        };
        Ok(EntryDigest {
            name: line.name,
            size: line.size,
            algorithm,
            hex,
        })
    }
}

impl From<EntryDigest> for DigestLine {
    fn from(d: EntryDigest) -> DigestLine {
        let (blake3, sha256) = match d.algorithm {
            DigestAlgorithm::Blake3 => (Some(d.hex), None),
            DigestAlgorithm::Sha256 => (None, Some(d.hex)),
        };
        DigestLine {
            name: d.name,
            size: d.size,
            blake3,
            sha256,
        }
    }
}
