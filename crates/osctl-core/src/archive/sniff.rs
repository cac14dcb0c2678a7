//! What a file is, from its first bytes: an osctl archive, a tar of files,
//! a compressed file. For errors that say what to do instead of how the
//! reader failed (`ct import` given a root file system tarball, `ct new
//! --from-tar` given an osctl archive).

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::header;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sniffed {
    /// A tar whose first entry is `metadata.yml`.
    OsctlArchive,
    /// A tar starting with another entry (its name).
    Tar(String),
    /// Compressed data, by the compressor's name.
    Compressed(&'static str),
    /// Too short or unknown: let the reader say what is wrong.
    Unknown,
}

const MAGICS: &[(&[u8], &str)] = &[
    (&[0x1f, 0x8b], "gzip"),
    (&[0x28, 0xb5, 0x2f, 0xfd], "zstd"),
    (&[0xfd, b'7', b'z', b'X', b'Z', 0], "xz"),
    (b"BZh", "bzip2"),
];

/// Judges the first bytes (512 suffice) of a file.
pub fn sniff(head: &[u8]) -> Sniffed {
    if let Some((_, name)) = MAGICS.iter().find(|(magic, _)| head.starts_with(magic)) {
        return Sniffed::Compressed(name);
    }
    let Some(block) = head.get(..header::BLOCK).and_then(|b| b.try_into().ok()) else {
        return Sniffed::Unknown;
    };
    match header::decode(block) {
        Ok(d) if d.name == super::meta::METADATA => Sniffed::OsctlArchive,
        Ok(d) if d.name.is_empty() => Sniffed::Tar("./".into()),
        Ok(d) => Sniffed::Tar(d.name),
        Err(_) => Sniffed::Unknown,
    }
}

/// [`sniff`] of a file's beginning; `Unknown` when it cannot be read.
pub fn sniff_file(path: &Path) -> Sniffed {
    let mut head = Vec::with_capacity(header::BLOCK);
    match File::open(path) {
        Ok(file) => match file.take(header::BLOCK as u64).read_to_end(&mut head) {
            Ok(_) => sniff(&head),
            Err(_) => Sniffed::Unknown,
        },
        Err(_) => Sniffed::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::EntryKind;

    fn tar_header(name: &str, kind: EntryKind) -> Vec<u8> {
        header::encode(name, kind, 0, 0).unwrap().to_vec()
    }

    #[test]
    fn kinds() {
        assert_eq!(
            sniff(&tar_header("metadata.yml", EntryKind::File)),
            Sniffed::OsctlArchive
        );
        assert_eq!(
            sniff(&tar_header("./etc/", EntryKind::Dir)),
            Sniffed::Tar("etc".into())
        );
        assert_eq!(sniff(&[0x1f, 0x8b, 8, 0]), Sniffed::Compressed("gzip"));
        assert_eq!(
            sniff(&[0x28, 0xb5, 0x2f, 0xfd, 1]),
            Sniffed::Compressed("zstd")
        );
        assert_eq!(sniff(b"short"), Sniffed::Unknown);
        assert_eq!(sniff(&[b'x'; 512]), Sniffed::Unknown);
    }
}
