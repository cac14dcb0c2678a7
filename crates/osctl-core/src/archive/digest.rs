//! The hash of `checksums.yml`.
//!
//! `checksums.yml` travels inside the archive it describes: whoever can change
//! the archive can rewrite it too, so it promises integrity against
//! corruption (a disk, a copy, a truncated transfer), not authenticity. Any
//! strong hash serves; it should cost as little CPU as possible, because it
//! runs beside `zfs send`/`btrfs receive` on machines whose cores those fill.
//! BLAKE3 (SIMD on every x86-64 and arm64 core) hashes several times faster
//! per core than SHA-256 with the SHA extensions (figures in
//! docs/performance.md, "checksums.yml: BLAKE3"), and stays cryptographic.
//!
//! Archives name their algorithm in `metadata.yml` (`checksums: blake3`), so
//! that a reader hashes each entry once, with the right algorithm, as it
//! streams by; each line of `checksums.yml` names it again (`blake3:` or
//! `sha256:`). Archives without the key are the ones written before it
//! existed: SHA-256.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DigestAlgorithm {
    /// Archives of osctl-rs before BLAKE3.
    Sha256,
    Blake3,
}

impl DigestAlgorithm {
    /// What exports write.
    pub const CURRENT: DigestAlgorithm = DigestAlgorithm::Blake3;

    pub fn name(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha256 => "sha256",
            DigestAlgorithm::Blake3 => "blake3",
        }
    }

    pub fn hasher(self) -> Hasher {
        match self {
            DigestAlgorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            DigestAlgorithm::Blake3 => Hasher::Blake3(Box::default()),
        }
    }

    /// The hex digest of `data`.
    pub fn hex_of(self, data: &[u8]) -> String {
        let mut hasher = self.hasher();
        hasher.update(data);
        hasher.hex()
    }
}

/// An incremental hash of one entry. Before the reader knows the archive's
/// algorithm (while it reads `metadata.yml`), it runs both.
#[derive(Clone)]
pub enum Hasher {
    Sha256(Sha256),
    Blake3(Box<blake3::Hasher>),
    Both(Sha256, Box<blake3::Hasher>),
}

impl Hasher {
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Blake3(h) => {
                h.update(data);
            }
            Hasher::Both(s, b) => {
                s.update(data);
                b.update(data);
            }
        }
    }

    /// The hex digest of what was hashed, by `algorithm`; None when this
    /// hasher did not run it.
    pub fn hex_by(&self, algorithm: DigestAlgorithm) -> Option<String> {
        match (self, algorithm) {
            (Hasher::Sha256(h) | Hasher::Both(h, _), DigestAlgorithm::Sha256) => {
                Some(hex(&h.clone().finalize()))
            }
            (Hasher::Blake3(h) | Hasher::Both(_, h), DigestAlgorithm::Blake3) => {
                Some(h.finalize().to_hex().to_string())
            }
            _ => None,
        }
    }

    /// The hex digest by this hasher's one algorithm (BLAKE3 for both).
    pub fn hex(&self) -> String {
        let algorithm = match self {
            Hasher::Sha256(_) => DigestAlgorithm::Sha256,
            Hasher::Blake3(_) | Hasher::Both(..) => DigestAlgorithm::Blake3,
        };
        self.hex_by(algorithm).unwrap_or_default()
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        // Test vectors of the empty input.
        assert_eq!(
            DigestAlgorithm::Sha256.hex_of(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            DigestAlgorithm::Blake3.hex_of(b""),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }

    #[test]
    fn both_gives_either() {
        let mut both = Hasher::Both(Sha256::new(), Box::default());
        both.update(b"abc");
        for algorithm in [DigestAlgorithm::Sha256, DigestAlgorithm::Blake3] {
            assert_eq!(both.hex_by(algorithm), Some(algorithm.hex_of(b"abc")));
        }
        let sha = DigestAlgorithm::Sha256.hasher();
        assert_eq!(sha.hex_by(DigestAlgorithm::Blake3), None);
    }
}
