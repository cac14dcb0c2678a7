//! The 512-byte tar header block: its layout, checksum and the end-of-archive
//! zero block, shared by the outer archive ([`crate::archive`], which keeps its
//! own strict rules on top) and the root file system's streams
//! ([`crate::fstar`], which reads and writes every entry type).
//!
//! Layout of a header (POSIX ustar; GNU reuses the prefix area for its own
//! fields, which is why the magic decides how it is read).

pub(crate) const BLOCK: usize = 512;
pub(crate) type Block = [u8; BLOCK];

// Field offsets and lengths.
pub(crate) const NAME: (usize, usize) = (0, 100);
pub(crate) const MODE: (usize, usize) = (100, 8);
pub(crate) const UID: (usize, usize) = (108, 8);
pub(crate) const GID: (usize, usize) = (116, 8);
pub(crate) const SIZE: (usize, usize) = (124, 12);
pub(crate) const MTIME: (usize, usize) = (136, 12);
pub(crate) const CHECKSUM: (usize, usize) = (148, 8);
pub(crate) const TYPEFLAG: usize = 156;
pub(crate) const LINKNAME: (usize, usize) = (157, 100);
/// Magic and version together.
pub(crate) const MAGIC: (usize, usize) = (257, 8);
pub(crate) const UNAME: (usize, usize) = (265, 32);
pub(crate) const GNAME: (usize, usize) = (297, 32);
pub(crate) const DEVMAJOR: (usize, usize) = (329, 8);
pub(crate) const DEVMINOR: (usize, usize) = (337, 8);
pub(crate) const PREFIX: (usize, usize) = (345, 155);

/// GNU tar's magic and version: what GNU tar writes by default.
pub(crate) const GNU_MAGIC: &[u8; 8] = b"ustar  \0";
/// The POSIX magic, before its two version digits.
pub(crate) const POSIX_MAGIC: &[u8; 6] = b"ustar\0";

pub(crate) fn field(block: &Block, (at, len): (usize, usize)) -> &[u8] {
    &block[at..at + len]
}

pub(crate) fn field_mut(block: &mut Block, (at, len): (usize, usize)) -> &mut [u8] {
    &mut block[at..at + len]
}

/// Whether the magic is POSIX ustar's (whose prefix field extends the name).
pub(crate) fn is_posix(block: &Block) -> bool {
    field(block, MAGIC).starts_with(POSIX_MAGIC)
}

/// The header's checksum computed both ways, unsigned and signed bytes (old
/// writers summed signed ones), the checksum field read as spaces.
pub(crate) fn checksum_sums(block: &Block) -> (u64, i64) {
    let (at, len) = CHECKSUM;
    let mut unsigned = 0u64;
    let mut signed = 0i64;
    for (i, &b) in block.iter().enumerate() {
        let b = if (at..at + len).contains(&i) { b' ' } else { b };
        unsigned += u64::from(b);
        signed += i64::from(b as i8);
    }
    (unsigned, signed)
}

/// Whether a stored checksum matches the block, summed either way.
pub(crate) fn checksum_matches(block: &Block, stored: u64) -> bool {
    let (unsigned, signed) = checksum_sums(block);
    stored == unsigned || i64::try_from(stored).ok() == Some(signed)
}

/// Fills the checksum field: six octal digits, a NUL and a space, the
/// traditional layout.
pub(crate) fn seal(block: &mut Block) {
    let (sum, _) = checksum_sums(block);
    let text = format!("{sum:06o}\0 ");
    field_mut(block, CHECKSUM).copy_from_slice(text.as_bytes());
}

/// A block of zeros: two of them end an archive.
pub(crate) fn is_zero(block: &Block) -> bool {
    block.iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_block_checks_both_ways() {
        let mut block = [0u8; BLOCK];
        block[..4].copy_from_slice(b"name");
        block[200] = 0xe9; // a byte that sums differently as signed
        seal(&mut block);
        assert_eq!(&field(&block, CHECKSUM)[6..], b"\0 ");
        let (unsigned, signed) = checksum_sums(&block);
        assert_ne!(unsigned as i64, signed);
        assert!(checksum_matches(&block, unsigned));
        assert!(checksum_matches(&block, signed as u64));
        assert!(!checksum_matches(&block, unsigned + 1));
        assert!(is_zero(&[0u8; BLOCK]) && !is_zero(&block));
    }
}
