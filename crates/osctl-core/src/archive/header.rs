//! One 512-byte tar header, written and read by hand so that we control every
//! byte: the original reads our archives with Ruby's `Gem::Package::TarReader`
//! (no PAX, octal fields parsed strictly) and we read archives from anywhere.

use crate::error::{Error, Result};
use crate::tarblock::{
    self as tb, field, CHECKSUM, GID, GNAME, GNU_MAGIC, MAGIC, MODE, MTIME, NAME, PREFIX, SIZE,
    TYPEFLAG, UID, UNAME,
};
pub(crate) use crate::tarblock::{is_zero, Block, BLOCK};

/// The two kinds of entry the outer archive may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
}

/// Longest name a plain header holds (no prefix, no GNU long-name entry).
pub(crate) const MAX_WRITTEN_NAME: usize = 100;
/// Longest name we accept on reading (a ustar prefix joined with the name).
pub(crate) const MAX_READ_NAME: usize = 255;

/// Largest value an 11-digit octal field with its terminator holds (8 GiB - 1).
const OCTAL_11_MAX: u64 = (1 << 33) - 1;
/// Largest value 12 octal digits hold without a terminator (64 GiB - 1).
const OCTAL_12_MAX: u64 = (1 << 36) - 1;

fn put_octal(block: &mut Block, (at, len): (usize, usize), value: u64) {
    // `len - 1` digits and a NUL, as GNU tar and Ruby's TarWriter write them.
    let text = format!("{:0width$o}\0", value, width = len - 1);
    block[at..at + len].copy_from_slice(text.as_bytes());
}

/// Encodes an entry size. Below 8 GiB: 11 octal digits and a NUL. Up to
/// 64 GiB: 12 octal digits with no terminator, which is what Ruby's TarWriter
/// itself writes and what every reader we know accepts (Ruby's TarReader parses
/// the size as strict octal and would refuse base-256). Beyond: GNU base-256,
/// which GNU tar and libarchive read (the original cannot read such an entry
/// in any encoding).
fn put_size(block: &mut Block, size: u64) {
    let (at, len) = SIZE;
    let dest = &mut block[at..at + len];
    if size <= OCTAL_11_MAX {
        dest.copy_from_slice(format!("{size:011o}\0").as_bytes());
    } else if size <= OCTAL_12_MAX {
        dest.copy_from_slice(format!("{size:012o}").as_bytes());
    } else {
        dest.fill(0);
        dest[0] = 0x80;
        dest[len - 8..].copy_from_slice(&size.to_be_bytes());
    }
}

/// Builds a GNU-format header (magic `ustar  `): the format GNU tar writes by
/// default and the one whose base-256 sizes are defined. Files get mode
/// 0644, directories 0755, as the original writes them.
pub(crate) fn encode(name: &str, kind: EntryKind, size: u64, mtime: u64) -> Result<Block> {
    let mode = match kind {
        EntryKind::File => 0o644,
        EntryKind::Dir => 0o755,
    };
    encode_with_mode(name, kind, size, mtime, mode)
}

/// [`encode`] with the permission bits given (hook scripts keep theirs).
pub(crate) fn encode_with_mode(
    name: &str,
    kind: EntryKind,
    size: u64,
    mtime: u64,
    mode: u32,
) -> Result<Block> {
    check_written_name(name)?;
    let mut block = [0u8; BLOCK];
    block[..name.len()].copy_from_slice(name.as_bytes());
    put_octal(&mut block, MODE, u64::from(mode & 0o7777));
    put_octal(&mut block, UID, 0);
    put_octal(&mut block, GID, 0);
    put_size(&mut block, size);
    put_octal(&mut block, MTIME, mtime.min(OCTAL_11_MAX));
    block[TYPEFLAG] = match kind {
        EntryKind::File => b'0',
        EntryKind::Dir => b'5',
    };
    block[MAGIC.0..MAGIC.0 + MAGIC.1].copy_from_slice(GNU_MAGIC);
    block[UNAME.0..UNAME.0 + 4].copy_from_slice(b"root");
    block[GNAME.0..GNAME.0 + 4].copy_from_slice(b"root");
    tb::seal(&mut block);
    Ok(block)
}

/// Names we write: relative, clean, short enough for the plain name field.
pub(crate) fn check_written_name(name: &str) -> Result<()> {
    if name.len() > MAX_WRITTEN_NAME {
        return Err(Error::invalid(format!(
            "archive entry name '{name}' is {} bytes long, more than the {MAX_WRITTEN_NAME} a plain tar header holds",
            name.len()
        )));
    }
    check_path(name).map_err(|why| Error::invalid(format!("archive entry name '{name}' {why}")))
}

/// Shared rules for entry names; the error completes "entry name '...' ".
fn check_path(name: &str) -> std::result::Result<(), &'static str> {
    if name.is_empty() {
        return Err("is empty");
    }
    if name.contains('\0') {
        return Err("contains a NUL byte");
    }
    if name.starts_with('/') {
        return Err("is absolute");
    }
    if name.split('/').any(|c| c == "..") {
        return Err("contains '..'");
    }
    Ok(())
}

/// A header as read, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decoded {
    /// Leading "./" and a directory's trailing "/" removed.
    pub name: String,
    pub kind: EntryKind,
    pub size: u64,
    /// Permission bits (the mode field without the file type bits).
    pub mode: u32,
}

/// Validates and decodes a non-zero header block. Every other entry type than
/// a file or a directory is refused, naming the entry.
pub(crate) fn decode(block: &Block) -> Result<Decoded> {
    let posix = tb::is_posix(block);
    if !posix && field(block, MAGIC) != GNU_MAGIC {
        return Err(Error::archive(
            "not a tar archive: a header has neither the ustar nor the GNU magic",
        ));
    }
    let stored_sum = parse_number(field(block, CHECKSUM))
        .map_err(|why| Error::archive(format!("tar header checksum field {why}")))?;
    if !tb::checksum_matches(block, stored_sum) {
        let (unsigned, _) = tb::checksum_sums(block);
        return Err(Error::archive(format!(
            "tar header checksum mismatch (stored {stored_sum:o}, computed {unsigned:o}): the archive is corrupt"
        )));
    }

    let raw_name = read_name(block, posix)?;
    let shown = String::from_utf8_lossy(&raw_name).into_owned();
    let bad = |why: String| Error::archive(format!("archive entry '{shown}': {why}"));
    let number = |f: (usize, usize), what: &str| {
        parse_number(field(block, f)).map_err(|why| bad(format!("{what} field {why}")))
    };
    let mode = (number(MODE, "mode")? & 0o7777) as u32;
    number(UID, "uid")?;
    number(GID, "gid")?;
    number(MTIME, "mtime")?;
    let size = number(SIZE, "size")?;
    if size > i64::MAX as u64 {
        return Err(bad(format!("size {size} is impossibly large")));
    }

    let kind = match block[TYPEFLAG] {
        b'0' | b'\0' => EntryKind::File,
        b'5' => EntryKind::Dir,
        other => {
            return Err(bad(format!(
                "is {}, not a file or a directory",
                type_name(other)
            )))
        }
    };
    if kind == EntryKind::Dir && size != 0 {
        return Err(bad(format!("a directory with {size} bytes of data")));
    }

    let name = String::from_utf8(raw_name).map_err(|_| bad("name is not UTF-8".into()))?;
    if name.len() > MAX_READ_NAME {
        return Err(bad(format!("name longer than {MAX_READ_NAME} bytes")));
    }
    check_path(&name).map_err(|why| bad(format!("name {why}")))?;
    let name = normalize(&name, kind).map_err(bad)?;
    if name.is_empty() && kind == EntryKind::File {
        return Err(bad("a file without a name".into()));
    }
    Ok(Decoded {
        name,
        kind,
        size,
        mode,
    })
}

/// Name bytes up to the first NUL; everything after it must be NUL too. A
/// POSIX header may carry the leading part of the name in its prefix field.
fn read_name(block: &Block, posix: bool) -> Result<Vec<u8>> {
    let name = nul_terminated(field(block, NAME))?;
    if !posix {
        // In GNU headers that area holds times and sparse maps, not a prefix.
        return Ok(name.to_vec());
    }
    let prefix = nul_terminated(field(block, PREFIX))?;
    if prefix.is_empty() {
        return Ok(name.to_vec());
    }
    Ok([prefix, b"/", name].concat())
}

fn nul_terminated(bytes: &[u8]) -> Result<&[u8]> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    if bytes[end..].iter().any(|&b| b != 0) {
        return Err(Error::archive(format!(
            "archive entry '{}': name contains a NUL byte",
            String::from_utf8_lossy(&bytes[..end])
        )));
    }
    Ok(&bytes[..end])
}

/// Strips "./" prefixes (GNU tar given "." writes them) and a directory's
/// trailing slashes (GNU tar writes "config/", Ruby's TarWriter "config").
fn normalize(name: &str, kind: EntryKind) -> std::result::Result<String, String> {
    let mut rest = name;
    while let Some(stripped) = rest.strip_prefix("./") {
        rest = stripped;
    }
    if kind == EntryKind::Dir {
        rest = rest.trim_end_matches('/');
    } else if rest.ends_with('/') {
        return Err("a file whose name ends with '/'".into());
    }
    if rest == "." {
        rest = "";
    }
    Ok(rest.to_string())
}

fn type_name(flag: u8) -> String {
    match flag {
        b'1' => "a hard link".into(),
        b'2' => "a symbolic link".into(),
        b'3' => "a character device".into(),
        b'4' => "a block device".into(),
        b'6' => "a FIFO".into(),
        b'7' => "a contiguous file".into(),
        b'x' | b'g' => "a PAX extended header (not supported in the outer archive)".into(),
        b'L' | b'K' => "a GNU long name record (names must fit the header)".into(),
        b'S' => "a GNU sparse file".into(),
        b'D' | b'M' | b'V' | b'N' => "a GNU incremental/multi-volume record".into(),
        other if other.is_ascii_graphic() => format!("of unknown type '{}'", other as char),
        other => format!("of unknown type {other:#04x}"),
    }
}

/// Parses a numeric field: octal digits (leading spaces, trailing NULs or
/// spaces, all 12 digits without a terminator allowed) or GNU base-256.
/// The error completes "... field ".
pub(crate) fn parse_number(bytes: &[u8]) -> std::result::Result<u64, String> {
    match bytes.first() {
        Some(0x80) => {
            let digits = &bytes[1..];
            let skip = digits.len().saturating_sub(8);
            if digits[..skip].iter().any(|&b| b != 0) {
                return Err("holds a base-256 number too large".into());
            }
            Ok(digits[skip..]
                .iter()
                .fold(0u64, |v, &b| (v << 8) | u64::from(b)))
        }
        Some(b) if b & 0x80 != 0 => Err("holds a negative base-256 number".into()),
        _ => {
            let text = bytes.iter().skip_while(|&&b| b == b' ');
            let mut value = 0u64;
            let mut ended = false;
            for &b in text {
                match b {
                    b'0'..=b'7' if !ended => value = (value << 3) | u64::from(b - b'0'),
                    b'\0' | b' ' => ended = true,
                    _ => {
                        return Err(format!(
                            "is not an octal number: '{}'",
                            String::from_utf8_lossy(bytes).escape_debug()
                        ))
                    }
                }
            }
            Ok(value)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fix_checksum(block: &mut Block) {
        tb::seal(block);
    }

    #[test]
    fn round_trip_file_and_dir() {
        let h = encode("config/user.yml", EntryKind::File, 1234, 1_700_000_000).unwrap();
        let d = decode(&h).unwrap();
        assert_eq!(d.name, "config/user.yml");
        assert_eq!(d.kind, EntryKind::File);
        assert_eq!(d.size, 1234);
        let h = encode("config/", EntryKind::Dir, 0, 0).unwrap();
        assert_eq!(decode(&h).unwrap().name, "config");
        assert_eq!(&h[MODE.0..MODE.0 + 8], b"0000755\0");
    }

    #[test]
    fn size_encodings() {
        for size in [
            0,
            OCTAL_11_MAX,
            OCTAL_11_MAX + 1,
            OCTAL_12_MAX,
            OCTAL_12_MAX + 1,
            i64::MAX as u64,
        ] {
            let h = encode("rootfs/base.dat", EntryKind::File, size, 0).unwrap();
            assert_eq!(decode(&h).unwrap().size, size, "size {size}");
        }
        let h = encode("a", EntryKind::File, 8 << 30, 0).unwrap();
        assert_eq!(
            &h[SIZE.0..SIZE.0 + 12],
            b"100000000000",
            "12 octal digits, no NUL"
        );
        let h = encode("a", EntryKind::File, 64 << 30, 0).unwrap();
        assert_eq!(h[SIZE.0], 0x80, "base-256 beyond 64 GiB");
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_number(b"0000644\0"), Ok(0o644));
        assert_eq!(parse_number(b"   644 \0"), Ok(0o644));
        assert_eq!(parse_number(b"\0\0\0\0\0\0\0\0"), Ok(0));
        assert!(parse_number(b"00006x4\0").is_err());
        assert!(
            parse_number(b"0006\x0044\0").is_err(),
            "digits after the terminator"
        );
        assert!(parse_number(&[0xff; 12]).is_err());
        let mut big = [0u8; 12];
        big[0] = 0x80;
        big[1] = 1;
        assert!(parse_number(&big).is_err());
    }

    #[test]
    fn long_and_bad_names_are_refused_on_write() {
        assert!(encode(&"a".repeat(100), EntryKind::File, 0, 0).is_ok());
        assert!(encode(&"a".repeat(101), EntryKind::File, 0, 0).is_err());
        assert!(encode("/etc/passwd", EntryKind::File, 0, 0).is_err());
        assert!(encode("a/../b", EntryKind::File, 0, 0).is_err());
        assert!(encode("", EntryKind::File, 0, 0).is_err());
    }

    #[test]
    fn posix_prefix_is_joined() {
        let mut h = encode("base.dat", EntryKind::File, 0, 0).unwrap();
        h[MAGIC.0..MAGIC.0 + 8].copy_from_slice(b"ustar\x0000");
        h[PREFIX.0..PREFIX.0 + 9].copy_from_slice(b"rootfs/ab");
        fix_checksum(&mut h);
        assert_eq!(decode(&h).unwrap().name, "rootfs/ab/base.dat");
    }

    #[test]
    fn hostile_headers_are_refused() {
        let good = encode("x", EntryKind::File, 0, 0).unwrap();
        let with = |f: &dyn Fn(&mut Block)| {
            let mut h = good;
            f(&mut h);
            fix_checksum(&mut h);
            decode(&h).unwrap_err().to_string()
        };
        assert!(with(&|h| h[TYPEFLAG] = b'2').contains("symbolic link"));
        assert!(with(&|h| h[TYPEFLAG] = b'x').contains("PAX"));
        assert!(with(&|h| h[TYPEFLAG] = b'L').contains("long name"));
        assert!(with(&|h| h[..5].copy_from_slice(b"/etc\0")).contains("absolute"));
        assert!(with(&|h| h[..5].copy_from_slice(b"a/../")).contains(".."));
        assert!(with(&|h| h[..3].copy_from_slice(b"a\0b")).contains("NUL"));
        assert!(with(&|h| h[..2].copy_from_slice(b"\xff\xfe")).contains("UTF-8"));
        assert!(with(&|h| h[MAGIC.0] = b'x').contains("magic"));
        let mut bad_sum = good;
        bad_sum[0] = b'y';
        assert!(decode(&bad_sum)
            .unwrap_err()
            .to_string()
            .contains("checksum"));
        let huge = with(&|h| {
            h[SIZE.0..SIZE.0 + 12].fill(0);
            h[SIZE.0] = 0x80;
            h[SIZE.0 + 4..SIZE.0 + 12].fill(0xff);
        });
        assert!(huge.contains("impossibly large"), "{huge}");
    }
}
