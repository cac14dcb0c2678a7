//! Tar header fields as the root file system's streams use them (every
//! entry type, numbers in octal or base-256) and PAX extended-header records,
//! shared by the dumper (encoding) and the extractor (decoding); the block
//! itself is [`crate::tarblock`]'s.

#[cfg(test)]
pub(crate) use crate::tarblock::GNU_MAGIC;
use crate::tarblock::{checksum_matches, field, field_mut};
pub(crate) use crate::tarblock::{
    is_zero, seal, Block, BLOCK, CHECKSUM, DEVMAJOR, DEVMINOR, GID, LINKNAME, MAGIC, MODE, MTIME,
    NAME, PREFIX, SIZE, TYPEFLAG, UID,
};

/// The kinds of entry a root file system's stream holds, read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TarKind {
    File,
    HardLink,
    Symlink,
    Char,
    Block,
    Dir,
    Fifo,
}

impl TarKind {
    /// The typeflag we write for it (the reader also takes other spellings).
    pub(crate) fn typeflag(self) -> u8 {
        match self {
            TarKind::File => b'0',
            TarKind::HardLink => b'1',
            TarKind::Symlink => b'2',
            TarKind::Char => b'3',
            TarKind::Block => b'4',
            TarKind::Dir => b'5',
            TarKind::Fifo => b'6',
        }
    }
}

/// Old GNU sparse header ('S'): four (offset, length) pairs, a continuation
/// flag and the real file size.
pub(crate) const GNU_SPARSE: usize = 386;
pub(crate) const GNU_IS_EXTENDED: usize = 482;
pub(crate) const GNU_REALSIZE: (usize, usize) = (483, 12);
/// A GNU sparse continuation block holds 21 pairs and its own flag.
pub(crate) const GNU_EXT_PAIRS: usize = 21;
pub(crate) const GNU_EXT_IS_EXTENDED: usize = 504;

pub(crate) const USTAR_MAGIC: &[u8; 8] = b"ustar\x0000";

/// A NUL-terminated string field (the whole field when it has no NUL).
pub(crate) fn get_str(block: &Block, f: (usize, usize)) -> &[u8] {
    let raw = field(block, f);
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    &raw[..end]
}

/// Copies `value` into a string field; the caller checked that it fits.
pub(crate) fn put_str(block: &mut Block, f: (usize, usize), value: &[u8]) {
    field_mut(block, f)[..value.len()].copy_from_slice(value);
}

/// Writes an unsigned number in octal when it fits (with a terminating NUL),
/// else in GNU base-256. Returns false when the value did not fit in octal,
/// so that the caller adds a PAX record strict readers can use.
pub(crate) fn put_num(block: &mut Block, f: (usize, usize), value: u64) -> bool {
    let out = field_mut(block, f);
    let digits = out.len() - 1;
    if digits * 3 >= 64 || value >> (digits * 3) == 0 {
        let mut v = value;
        for slot in out[..digits].iter_mut().rev() {
            *slot = b'0' + (v & 7) as u8;
            v >>= 3;
        }
        out[digits] = 0;
        true
    } else {
        put_base256(out, value as i128);
        false
    }
}

/// Like `put_num` for a signed value (mtime before 1970).
pub(crate) fn put_signed(block: &mut Block, f: (usize, usize), value: i64) -> bool {
    if value >= 0 {
        return put_num(block, f, value as u64);
    }
    put_base256(field_mut(block, f), value as i128);
    false
}

fn put_base256(out: &mut [u8], value: i128) {
    // Two's complement, big-endian; the first byte's top bit marks the encoding.
    let mut v = value;
    for slot in out.iter_mut().rev() {
        *slot = (v & 0xff) as u8;
        v >>= 8;
    }
    out[0] = if value < 0 { 0xff } else { 0x80 };
}

/// Reads a numeric field: octal (space or NUL padded) or GNU base-256.
pub(crate) fn get_signed(block: &Block, f: (usize, usize)) -> Result<i64, String> {
    let raw = field(block, f);
    if raw[0] & 0x80 != 0 {
        let negative = raw[0] == 0xff;
        let mut v: i128 = if negative { -1 } else { 0 };
        for (i, &b) in raw.iter().enumerate() {
            let b = if i == 0 && !negative { b & 0x7f } else { b };
            v = (v << 8) | b as i128;
            if !(i64::MIN as i128..=i64::MAX as i128).contains(&v) {
                return Err("base-256 number out of range".into());
            }
        }
        return Ok(v as i64);
    }
    let mut v: i64 = 0;
    let mut seen_digit = false;
    for &b in raw {
        match b {
            b'0'..=b'7' => {
                v = v
                    .checked_mul(8)
                    .and_then(|v| v.checked_add((b - b'0') as i64))
                    .ok_or("octal number out of range")?;
                seen_digit = true;
            }
            b' ' | 0 if !seen_digit => {}
            b' ' | 0 => break,
            _ => return Err(format!("bad character {:?} in a numeric field", b as char)),
        }
    }
    Ok(v)
}

pub(crate) fn get_num(block: &Block, f: (usize, usize)) -> Result<u64, String> {
    let v = get_signed(block, f)?;
    u64::try_from(v).map_err(|_| "negative number".to_string())
}

/// Checks the checksum; old writers summed signed bytes, both are accepted.
pub(crate) fn checksum_ok(block: &Block) -> bool {
    get_num(block, CHECKSUM).is_ok_and(|stored| checksum_matches(block, stored))
}

/// Appends one PAX record `"<len> <key>=<value>\n"`; `len` counts itself.
pub(crate) fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + decimal_digits(rest);
    if decimal_digits(len) != decimal_digits(rest) {
        len += 1;
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn decimal_digits(n: usize) -> usize {
    n.to_string().len()
}

/// Splits a PAX extended header into its records; values are binary-safe
/// (they are delimited by the length, not by the newline).
/// One PAX record: keyword and value.
pub(crate) type PaxRecord<'a> = (&'a [u8], &'a [u8]);

pub(crate) fn parse_pax(mut data: &[u8]) -> Result<Vec<PaxRecord<'_>>, String> {
    let mut records = Vec::new();
    // GNU tar pads the header with NULs in some versions; they end the list.
    while !data.is_empty() && data[0] != 0 {
        let space = data
            .iter()
            .take(20)
            .position(|&b| b == b' ')
            .ok_or("PAX record without a length")?;
        let len: usize = std::str::from_utf8(&data[..space])
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse().ok())
            .ok_or("PAX record with a bad length")?;
        if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err("malformed PAX record".into());
        }
        let record = &data[space + 1..len - 1];
        let eq = record
            .iter()
            .position(|&b| b == b'=')
            .filter(|&eq| eq > 0)
            .ok_or("PAX record without a key")?;
        records.push((&record[..eq], &record[eq + 1..]));
        data = &data[len..];
    }
    Ok(records)
}

/// A PAX time value: `[-]seconds[.fraction]`.
pub(crate) fn parse_pax_time(value: &[u8]) -> Result<(i64, u32), String> {
    let bad = || format!("bad PAX time {:?}", String::from_utf8_lossy(value));
    let text = std::str::from_utf8(value).map_err(|_| bad())?;
    let (negative, text) = match text.strip_prefix('-') {
        Some(t) => (true, t),
        None => (false, text),
    };
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let sec: i64 = whole.parse().map_err(|_| bad())?;
    let mut nsec: u32 = 0;
    for (i, b) in frac.bytes().take(9).enumerate() {
        nsec += (b - b'0') as u32 * 10u32.pow(8 - i as u32);
    }
    if !negative {
        return Ok((sec, nsec));
    }
    if nsec == 0 {
        Ok((-sec, 0))
    } else {
        Ok((-sec - 1, 1_000_000_000 - nsec))
    }
}

pub(crate) fn format_pax_time(sec: i64, nsec: u32) -> String {
    if nsec == 0 {
        return sec.to_string();
    }
    if sec >= 0 {
        return format!("{sec}.{nsec:09}");
    }
    // -1.5 s is sec = -2, nsec = 500000000.
    let (whole, frac) = (sec + 1, 1_000_000_000 - nsec);
    if whole == 0 {
        format!("-0.{frac:09}")
    } else {
        format!("{whole}.{frac:09}")
    }
}

/// Decimal number from a PAX value or a sparse map line.
pub(crate) fn parse_decimal(value: &[u8]) -> Result<u64, String> {
    std::str::from_utf8(value)
        .ok()
        .filter(|s| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad number {:?}", String::from_utf8_lossy(value)))
}

/// GNU tar escapes '%' and '=' in xattr names inside `SCHILY.xattr.` keys.
pub(crate) fn encode_xattr_key(name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len());
    for &b in name {
        match b {
            b'%' => out.extend_from_slice(b"%25"),
            b'=' => out.extend_from_slice(b"%3D"),
            _ => out.push(b),
        }
    }
    out
}

pub(crate) fn decode_xattr_key(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len());
    let mut i = 0;
    while i < key.len() {
        match &key[i..] {
            [b'%', b'2', b'5', ..] => {
                out.push(b'%');
                i += 3;
            }
            [b'%', b'3', b'D' | b'd', ..] => {
                out.push(b'=');
                i += 3;
            }
            _ => {
                out.push(key[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_and_base256_numbers_round_trip() {
        let mut b = [0u8; BLOCK];
        assert!(put_num(&mut b, SIZE, 0o777));
        assert_eq!(&b[124..136], b"00000000777\0");
        assert_eq!(get_num(&b, SIZE).unwrap(), 0o777);
        let big = 20u64 << 30;
        assert!(!put_num(&mut b, SIZE, big));
        assert_eq!(b[124], 0x80);
        assert_eq!(get_num(&b, SIZE).unwrap(), big);
        assert!(!put_signed(&mut b, MTIME, -5));
        assert_eq!(get_signed(&b, MTIME).unwrap(), -5);
        assert!(put_num(&mut b, UID, 2_097_151));
        assert!(!put_num(&mut b, UID, 2_097_152));
        assert_eq!(get_num(&b, UID).unwrap(), 2_097_152);
    }

    #[test]
    fn octal_accepts_padding_and_rejects_garbage() {
        let mut b = [0u8; BLOCK];
        b[108..116].copy_from_slice(b"  1750 \0");
        assert_eq!(get_num(&b, UID).unwrap(), 0o1750);
        b[108..116].copy_from_slice(b"0001x50\0");
        assert!(get_num(&b, UID).is_err());
    }

    #[test]
    fn checksum_seal_and_verify() {
        let mut b = [0u8; BLOCK];
        put_str(&mut b, NAME, b"./x");
        seal(&mut b);
        assert!(checksum_ok(&b));
        b[0] = b'y';
        assert!(!checksum_ok(&b));
    }

    #[test]
    fn pax_records_are_length_exact_and_binary_safe() {
        let mut out = Vec::new();
        pax_record(&mut out, b"path", b"a");
        assert_eq!(out, b"9 path=a\n");
        out.clear();
        // A length whose digit count grows when it counts itself.
        let value = vec![b'v'; 94];
        pax_record(&mut out, b"k", &value);
        assert_eq!(out.len(), 101);
        assert!(out.starts_with(b"101 k="));
        assert_eq!(parse_pax(&out).unwrap(), vec![(&b"k"[..], &value[..])]);
        out.clear();
        pax_record(&mut out, b"SCHILY.xattr.user.x", b"a\nb=\0c");
        let records = parse_pax(&out).unwrap();
        assert_eq!(records[0], (&b"SCHILY.xattr.user.x"[..], &b"a\nb=\0c"[..]));
    }

    #[test]
    fn pax_parse_rejects_malformed() {
        assert!(parse_pax(b"5 a=b\n").is_err());
        assert!(parse_pax(b"99 a=b\n").is_err());
        assert!(parse_pax(b"x a=b\n").is_err());
        assert!(parse_pax(b"7 =bcd\n").is_err());
        assert!(parse_pax(b"6 a=b\nXX").is_err());
        assert_eq!(parse_pax(b"6 a=b\n\0\0\0").unwrap().len(), 1);
    }

    #[test]
    fn pax_times() {
        assert_eq!(parse_pax_time(b"12.5").unwrap(), (12, 500_000_000));
        assert_eq!(parse_pax_time(b"-1.5").unwrap(), (-2, 500_000_000));
        assert_eq!(parse_pax_time(b"7").unwrap(), (7, 0));
        assert_eq!(parse_pax_time(b"1.1234567899").unwrap(), (1, 123_456_789));
        assert!(parse_pax_time(b"1e5").is_err());
        assert!(parse_pax_time(b"").is_err());
        for (s, n) in [(12, 5), (-2, 500_000_000), (-1, 1), (0, 0), (-7, 0)] {
            let text = format_pax_time(s, n);
            assert_eq!(parse_pax_time(text.as_bytes()).unwrap(), (s, n), "{text}");
        }
    }

    #[test]
    fn xattr_key_escaping() {
        let name = b"user.a=b%c";
        let key = encode_xattr_key(name);
        assert_eq!(key, b"user.a%3Db%25c");
        assert_eq!(decode_xattr_key(&key), name);
    }
}
