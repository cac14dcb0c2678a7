//! Streaming tar reader for hostile input: POSIX/PAX (GNU sparse 0.0, 0.1,
//! 1.0), GNU (`L`/`K` long names, old sparse `S`), ustar and v7 headers.
//! Every size it acts on is bounded; a short stream is an error, never a hang.
//! Names come out raw: checking them is the extractor's job.

use std::io::{self, BufReader, Read};

use super::header::{self as h, Block, TarKind, BLOCK};
use super::{limits, Timestamp, IO_BUFFER};
use crate::error::{Error, Result};

/// Data segments of a sparse file: (offset, length) pairs in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SparseMap {
    pub realsize: u64,
    pub segments: Vec<(u64, u64)>,
}

#[derive(Debug)]
pub(crate) struct InEntry {
    /// The name as the archive gives it (after PAX/GNU overrides).
    pub name: Vec<u8>,
    pub kind: TarKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: Timestamp,
    /// Symlink target or hard link target, raw.
    pub link: Vec<u8>,
    pub dev: (u32, u32),
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Bytes of data that follow (for a sparse file: the segments' data).
    pub size: u64,
    pub sparse: Option<SparseMap>,
}

/// What one PAX extended header says about the next entry.
#[derive(Default)]
struct Pax {
    path: Option<Vec<u8>>,
    linkpath: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<Timestamp>,
    devmajor: Option<u64>,
    devminor: Option<u64>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    sparse_major: Option<u64>,
    sparse_minor: Option<u64>,
    sparse_name: Option<Vec<u8>>,
    sparse_realsize: Option<u64>,
    /// GNU.sparse.size: the real size in formats 0.0 and 0.1.
    sparse_size: Option<u64>,
    /// GNU.sparse.map (format 0.1), comma-separated.
    sparse_map: Option<Vec<u8>>,
    /// GNU.sparse.offset / GNU.sparse.numbytes in order (format 0.0).
    sparse_pairs: Vec<u64>,
}

impl Pax {
    /// Whether the records describe a GNU sparse file (any format).
    fn is_sparse(&self) -> bool {
        let v1 = self.sparse_major == Some(1) && self.sparse_minor == Some(0);
        v1 || self.sparse_map.is_some() || !self.sparse_pairs.is_empty()
    }

    fn parse(data: &[u8]) -> std::result::Result<Pax, String> {
        let mut pax = Pax::default();
        for (key, value) in h::parse_pax(data)? {
            // An empty value cancels the keyword (POSIX).
            let text = || (!value.is_empty()).then(|| value.to_vec());
            let num = || -> std::result::Result<Option<u64>, String> {
                if value.is_empty() {
                    Ok(None)
                } else {
                    h::parse_decimal(value).map(Some)
                }
            };
            match key {
                b"path" => pax.path = text(),
                b"linkpath" => pax.linkpath = text(),
                b"size" => pax.size = num()?,
                b"uid" => pax.uid = num()?,
                b"gid" => pax.gid = num()?,
                b"mtime" if value.is_empty() => pax.mtime = None,
                b"mtime" => {
                    let (sec, nsec) = h::parse_pax_time(value)?;
                    pax.mtime = Some(Timestamp { sec, nsec });
                }
                b"SCHILY.devmajor" => pax.devmajor = num()?,
                b"SCHILY.devminor" => pax.devminor = num()?,
                b"GNU.sparse.major" => pax.sparse_major = num()?,
                b"GNU.sparse.minor" => pax.sparse_minor = num()?,
                b"GNU.sparse.name" => pax.sparse_name = text(),
                b"GNU.sparse.realsize" => pax.sparse_realsize = num()?,
                b"GNU.sparse.size" => pax.sparse_size = num()?,
                b"GNU.sparse.map" => pax.sparse_map = text(),
                b"GNU.sparse.offset" | b"GNU.sparse.numbytes" => {
                    if pax.sparse_pairs.len() >= 2 * limits::SPARSE_SEGMENTS {
                        return Err("too many sparse segments".into());
                    }
                    pax.sparse_pairs.push(h::parse_decimal(value)?);
                }
                _ => {
                    if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                        if pax.xattrs.len() >= limits::XATTRS_PER_ENTRY {
                            return Err("too many extended attributes".into());
                        }
                        if value.len() > limits::XATTR_VALUE {
                            return Err(format!(
                                "extended attribute value of {} bytes exceeds the limit",
                                value.len()
                            ));
                        }
                        pax.xattrs.push((h::decode_xattr_key(name), value.to_vec()));
                    }
                    // atime, ctime, uname, gname, comment, hdrcharset and
                    // vendor keywords do not change what we extract.
                }
            }
        }
        Ok(pax)
    }
}

pub(crate) struct TarReader<'a> {
    input: BufReader<&'a mut dyn Read>,
    /// Data bytes of the current entry not read yet.
    remaining: u64,
    /// Padding after the current entry's data.
    padding: u64,
    /// Stream offset, for messages about headers.
    offset: u64,
    ended: bool,
}

fn truncated() -> Error {
    Error::archive("unexpected end of the archive (truncated stream)")
}

fn read_error(e: io::Error) -> Error {
    Error::io("cannot read the archive stream", e)
}

fn padding_of(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

impl<'a> TarReader<'a> {
    pub fn new(input: &'a mut dyn Read) -> Self {
        TarReader {
            input: BufReader::with_capacity(IO_BUFFER, input),
            remaining: 0,
            padding: 0,
            offset: 0,
            ended: false,
        }
    }

    /// Fills `buf` completely; Ok(false) on a clean end of input before the
    /// first byte.
    fn fill(&mut self, buf: &mut [u8]) -> Result<bool> {
        let mut done = 0;
        while done < buf.len() {
            match self.input.read(&mut buf[done..]) {
                Ok(0) if done == 0 => return Ok(false),
                Ok(0) => return Err(truncated()),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(read_error(e)),
            }
        }
        self.offset += buf.len() as u64;
        Ok(true)
    }

    fn block(&mut self) -> Result<Option<Block>> {
        let mut block = [0u8; BLOCK];
        Ok(self.fill(&mut block)?.then_some(block))
    }

    fn discard(&mut self, n: u64) -> Result<()> {
        let copied =
            io::copy(&mut (&mut self.input).take(n), &mut io::sink()).map_err(read_error)?;
        self.offset += copied;
        if copied < n {
            return Err(truncated());
        }
        Ok(())
    }

    /// Reads the current entry's data; Ok(0) when it is all read.
    pub fn read_data(&mut self, buf: &mut [u8]) -> Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(self.remaining.min(usize::MAX as u64) as usize);
        loop {
            match self.input.read(&mut buf[..want]) {
                Ok(0) => return Err(truncated()),
                Ok(n) => {
                    self.remaining -= n as u64;
                    self.offset += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(read_error(e)),
            }
        }
    }

    /// Reads exactly `buf.len()` bytes of the current entry's data.
    pub fn read_data_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        if buf.len() as u64 > self.remaining {
            return Err(Error::archive("entry data shorter than announced"));
        }
        if !self.fill(buf)? {
            return Err(truncated());
        }
        self.remaining -= buf.len() as u64;
        Ok(())
    }

    /// Skips what is left of the current entry, padding included.
    fn finish_entry(&mut self) -> Result<()> {
        let rest = self.remaining + self.padding;
        self.remaining = 0;
        self.padding = 0;
        self.discard(rest)
    }

    /// Reads a whole meta entry (extended header, long name) of bounded size.
    fn meta_data(&mut self, size: u64, what: &str) -> Result<Vec<u8>> {
        if size > limits::PAX_HEADER {
            return Err(Error::archive(format!(
                "{what} of {size} bytes exceeds the limit of {} bytes",
                limits::PAX_HEADER
            )));
        }
        let mut data = vec![0u8; size as usize];
        if !self.fill(&mut data)? && size > 0 {
            return Err(truncated());
        }
        self.discard(padding_of(size))?;
        Ok(data)
    }

    /// The next real entry, or None at the end of the archive. Data the
    /// caller left unread is skipped.
    pub fn next_entry(&mut self) -> Result<Option<InEntry>> {
        if self.ended {
            return Ok(None);
        }
        self.finish_entry()?;
        let mut pax: Option<Pax> = None;
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        loop {
            let at = self.offset;
            let here = |m: String| Error::archive(format!("archive header at byte {at}: {m}"));
            let Some(block) = self.block()? else {
                return Err(if at == 0 && pax.is_none() {
                    Error::archive("the archive is empty (no end-of-archive marker)")
                } else {
                    Error::archive(
                        "the archive ends without an end-of-archive marker (truncated stream)",
                    )
                });
            };
            if h::is_zero(&block) {
                // End of archive. Whatever follows (more zero blocks, the
                // rest of a record) is read so that the caller's decoder
                // sees its own end and checks its trailer.
                self.ended = true;
                io::copy(&mut self.input, &mut io::sink()).map_err(read_error)?;
                return Ok(None);
            }
            if !h::checksum_ok(&block) {
                return Err(here(
                    "header checksum mismatch (not a tar stream, or corrupt)".into(),
                ));
            }
            let size = h::get_num(&block, h::SIZE).map_err(|m| here(format!("size: {m}")))?;
            match block[h::TYPEFLAG] {
                b'x' => {
                    let data = self
                        .meta_data(size, "PAX extended header")
                        .map_err(|e| e.context(format!("archive header at byte {at}")))?;
                    pax = Some(
                        Pax::parse(&data).map_err(|m| here(format!("PAX extended header: {m}")))?,
                    );
                }
                b'g' => {
                    // Global headers carry nothing we apply; still checked.
                    let data = self
                        .meta_data(size, "PAX global header")
                        .map_err(|e| e.context(format!("archive header at byte {at}")))?;
                    Pax::parse(&data).map_err(|m| here(format!("PAX global header: {m}")))?;
                }
                b'L' => {
                    let data = self
                        .meta_data(size, "GNU long name")
                        .map_err(|e| e.context(format!("archive header at byte {at}")))?;
                    long_name = Some(until_nul(data));
                }
                b'K' => {
                    let data = self
                        .meta_data(size, "GNU long link name")
                        .map_err(|e| e.context(format!("archive header at byte {at}")))?;
                    long_link = Some(until_nul(data));
                }
                b'V' => {
                    self.discard(size + padding_of(size))?;
                }
                _ => {
                    let pax = pax.unwrap_or_default();
                    let entry = self
                        .build(&block, pax, long_name, long_link, size)
                        .map_err(|e| e.context(format!("archive header at byte {at}")))?;
                    return Ok(Some(entry));
                }
            }
        }
    }

    fn build(
        &mut self,
        block: &Block,
        pax: Pax,
        long_name: Option<Vec<u8>>,
        long_link: Option<Vec<u8>>,
        header_size: u64,
    ) -> Result<InEntry> {
        let is_ustar = crate::tarblock::is_posix(block);
        let header_name = || {
            let name = h::get_str(block, h::NAME);
            let prefix = h::get_str(block, h::PREFIX);
            if is_ustar && !prefix.is_empty() {
                let mut full = prefix.to_vec();
                full.push(b'/');
                full.extend_from_slice(name);
                full
            } else {
                name.to_vec()
            }
        };
        let typeflag = block[h::TYPEFLAG];
        let pax_sparse = pax.is_sparse();
        let name = match (&pax.sparse_name, pax_sparse) {
            (Some(n), true) => n.clone(),
            _ => pax.path.clone().or(long_name).unwrap_or_else(header_name),
        };
        let link = pax
            .linkpath
            .clone()
            .or(long_link)
            .unwrap_or_else(|| h::get_str(block, h::LINKNAME).to_vec());
        let kind = entry_kind(typeflag, &name)?;
        let numbers = HeaderNumbers::read(block, &pax, kind)?;
        let mut size = pax.size.unwrap_or(header_size);
        self.remaining = size;
        self.padding = padding_of(size);
        let sparse = if typeflag == b'S' {
            Some(self.old_gnu_sparse_map(block)?)
        } else if pax_sparse && kind == TarKind::File {
            Some(self.pax_sparse_map(&pax)?)
        } else {
            None
        };
        if let Some(map) = &sparse {
            size = self.remaining;
            check_sparse_map(map, size)?;
        }
        Ok(InEntry {
            name,
            kind,
            mode: numbers.mode,
            uid: numbers.uid,
            gid: numbers.gid,
            mtime: numbers.mtime,
            link,
            dev: numbers.dev,
            xattrs: pax.xattrs,
            size,
            sparse,
        })
    }

    /// The sparse map of a PAX sparse file: format 1.0 in the data's first
    /// blocks, or 0.x in the PAX records.
    fn pax_sparse_map(&mut self, pax: &Pax) -> Result<SparseMap> {
        let bad = |m: String| Error::archive(m);
        if pax.sparse_major == Some(1) && pax.sparse_minor == Some(0) {
            let realsize = pax
                .sparse_realsize
                .ok_or_else(|| bad("sparse file without GNU.sparse.realsize".into()))?;
            let segments = self.v1_sparse_map()?;
            return Ok(SparseMap { realsize, segments });
        }
        let realsize = pax
            .sparse_size
            .ok_or_else(|| bad("sparse file without GNU.sparse.size".into()))?;
        let numbers = match &pax.sparse_map {
            Some(map) => map
                .split(|&b| b == b',')
                .map(h::parse_decimal)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(bad)?,
            None => pax.sparse_pairs.clone(),
        };
        Ok(SparseMap {
            realsize,
            segments: pairs(&numbers)?,
        })
    }

    /// The map of an old GNU 'S' header: four pairs in the header, 21 in
    /// each continuation block.
    fn old_gnu_sparse_map(&mut self, block: &Block) -> Result<SparseMap> {
        let bad = |m: String| Error::archive(format!("GNU sparse header: {m}"));
        let realsize = h::get_num(block, h::GNU_REALSIZE).map_err(bad)?;
        let mut segments = Vec::new();
        let mut collect = |b: &Block, count: usize, start: usize| -> Result<()> {
            for i in 0..count {
                let off = start + i * 24;
                if b[off] == 0 {
                    break;
                }
                let offset = h::get_num(b, (off, 12)).map_err(bad)?;
                let len = h::get_num(b, (off + 12, 12)).map_err(bad)?;
                if segments.len() >= limits::SPARSE_SEGMENTS {
                    return Err(bad("too many sparse segments".into()));
                }
                segments.push((offset, len));
            }
            Ok(())
        };
        collect(block, 4, h::GNU_SPARSE)?;
        let mut extended = block[h::GNU_IS_EXTENDED] != 0;
        while extended {
            let ext = self.block()?.ok_or_else(truncated)?;
            collect(&ext, h::GNU_EXT_PAIRS, 0)?;
            extended = ext[h::GNU_EXT_IS_EXTENDED] != 0;
        }
        Ok(SparseMap { realsize, segments })
    }

    /// The map at the start of a sparse 1.0 entry's data: decimal numbers,
    /// one per line (count, then offset/length pairs), padded to a block.
    fn v1_sparse_map(&mut self) -> Result<Vec<(u64, u64)>> {
        let bad = |m: &str| Error::archive(format!("sparse map: {m}"));
        let mut numbers: Vec<u64> = Vec::new();
        let mut wanted: Option<usize> = None;
        let mut current: Vec<u8> = Vec::new();
        while wanted.is_none_or(|w| numbers.len() < 1 + 2 * w) {
            let mut block = [0u8; BLOCK];
            self.read_data_exact(&mut block)?;
            for &b in block.iter() {
                if wanted.is_some_and(|w| numbers.len() == 1 + 2 * w) {
                    break;
                }
                if b == b'\n' {
                    let n = h::parse_decimal(&current).map_err(|m| bad(&m))?;
                    current.clear();
                    if numbers.is_empty() {
                        let count = usize::try_from(n)
                            .ok()
                            .filter(|&c| c <= limits::SPARSE_SEGMENTS)
                            .ok_or_else(|| bad("too many segments"))?;
                        wanted = Some(count);
                    }
                    numbers.push(n);
                } else if b.is_ascii_digit() && current.len() < 20 {
                    current.push(b);
                } else {
                    return Err(bad("malformed number"));
                }
            }
        }
        self.padding = padding_of(self.remaining);
        pairs(&numbers[1..])
    }
}

fn until_nul(mut data: Vec<u8>) -> Vec<u8> {
    if let Some(end) = data.iter().position(|&b| b == 0) {
        data.truncate(end);
    }
    data
}

fn pairs(numbers: &[u64]) -> Result<Vec<(u64, u64)>> {
    if !numbers.len().is_multiple_of(2) {
        return Err(Error::archive("sparse map with an odd count of numbers"));
    }
    if numbers.len() > 2 * limits::SPARSE_SEGMENTS {
        return Err(Error::archive("too many sparse segments"));
    }
    Ok(numbers.chunks(2).map(|c| (c[0], c[1])).collect())
}

/// What a header's type flag says the entry is.
fn entry_kind(typeflag: u8, name: &[u8]) -> Result<TarKind> {
    Ok(match typeflag {
        b'0' | b'7' | b'S' => TarKind::File,
        0 if name.ends_with(b"/") => TarKind::Dir,
        0 => TarKind::File,
        b'1' => TarKind::HardLink,
        b'2' => TarKind::Symlink,
        b'3' => TarKind::Char,
        b'4' => TarKind::Block,
        b'5' | b'D' => TarKind::Dir,
        b'6' => TarKind::Fifo,
        other => {
            return Err(Error::archive(format!(
                "unsupported entry type {:?} for {}",
                other as char,
                super::show_path(name)
            )))
        }
    })
}

/// The numbers of a header, PAX records taking precedence.
struct HeaderNumbers {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: Timestamp,
    dev: (u32, u32),
}

impl HeaderNumbers {
    fn read(block: &Block, pax: &Pax, kind: TarKind) -> Result<HeaderNumbers> {
        let bad = |m: String| Error::archive(m);
        let num = |f: (usize, usize), what: &str| {
            h::get_num(block, f).map_err(|m| bad(format!("{what}: {m}")))
        };
        let id = |v: u64, what: &str| {
            u32::try_from(v).map_err(|_| bad(format!("{what} {v} is out of range")))
        };
        let uid = id(pax.uid.map_or_else(|| num(h::UID, "uid"), Ok)?, "uid")?;
        let gid = id(pax.gid.map_or_else(|| num(h::GID, "gid"), Ok)?, "gid")?;
        let mode = (num(h::MODE, "mode")? & 0o7777) as u32;
        let mtime = match pax.mtime {
            Some(t) => t,
            None => Timestamp {
                sec: h::get_signed(block, h::MTIME).map_err(|m| bad(format!("mtime: {m}")))?,
                nsec: 0,
            },
        };
        let dev = if matches!(kind, TarKind::Char | TarKind::Block) {
            let major = pax
                .devmajor
                .map_or_else(|| num(h::DEVMAJOR, "device major"), Ok)?;
            let minor = pax
                .devminor
                .map_or_else(|| num(h::DEVMINOR, "device minor"), Ok)?;
            (id(major, "device major")?, id(minor, "device minor")?)
        } else {
            (0, 0)
        };
        Ok(HeaderNumbers {
            uid,
            gid,
            mode,
            mtime,
            dev,
        })
    }
}

/// Segments must be in order, disjoint, inside the file, and their lengths
/// must add up to the data that follows.
fn check_sparse_map(map: &SparseMap, data: u64) -> Result<()> {
    let bad = |m: &str| Err(Error::archive(format!("sparse map: {m}")));
    let mut end = 0u64;
    let mut total = 0u64;
    for &(offset, len) in &map.segments {
        let Some(seg_end) = offset.checked_add(len) else {
            return bad("segment out of range");
        };
        if offset < end || seg_end > map.realsize {
            return bad("segments overlap or exceed the file size");
        }
        end = seg_end;
        total += len;
    }
    if total != data {
        return bad("segment lengths do not match the entry's data size");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn header(name: &[u8], flag: u8, size: u64) -> Block {
        let mut b = [0u8; BLOCK];
        h::put_str(&mut b, h::NAME, name);
        h::put_num(&mut b, h::MODE, 0o644);
        h::put_num(&mut b, h::UID, 0);
        h::put_num(&mut b, h::GID, 0);
        h::put_num(&mut b, h::SIZE, size);
        h::put_num(&mut b, h::MTIME, 0);
        b[h::TYPEFLAG] = flag;
        b[h::MAGIC.0..h::MAGIC.0 + 8].copy_from_slice(h::GNU_MAGIC);
        h::seal(&mut b);
        b
    }

    fn padded(data: &[u8]) -> Vec<u8> {
        let mut v = data.to_vec();
        v.resize(v.len() + padding_of(data.len() as u64) as usize, 0);
        v
    }

    fn entries(stream: &[u8]) -> Result<Vec<(InEntry, Vec<u8>)>> {
        let mut input = stream;
        let mut r = TarReader::new(&mut input);
        let mut out = Vec::new();
        while let Some(e) = r.next_entry()? {
            let mut data = vec![0u8; e.size as usize];
            r.read_data_exact(&mut data)?;
            out.push((e, data));
        }
        Ok(out)
    }

    #[test]
    fn gnu_long_names_apply_to_the_next_entry() {
        let long = vec![b'n'; 300];
        let mut s = Vec::new();
        s.extend_from_slice(&header(b"././@LongLink", b'L', 301));
        let mut name = long.clone();
        name.push(0);
        s.extend_from_slice(&padded(&name));
        s.extend_from_slice(&header(b"trunc", b'0', 3));
        s.extend_from_slice(&padded(b"abc"));
        s.extend_from_slice(&[0u8; 1024]);
        let got = entries(&s).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0.name, long);
        assert_eq!(got[0].1, b"abc");
    }

    #[test]
    fn old_gnu_sparse_with_extension_block() {
        let mut b = header(b"sp", b'S', 6 * 2);
        let put_pair = |b: &mut Block, at: usize, off: u64, len: u64| {
            h::put_num(b, (at, 12), off);
            h::put_num(b, (at + 12, 12), len);
        };
        for i in 0..4 {
            put_pair(&mut b, h::GNU_SPARSE + i * 24, i as u64 * 100, 2);
        }
        b[h::GNU_IS_EXTENDED] = 1;
        h::put_num(&mut b, h::GNU_REALSIZE, 1000);
        h::seal(&mut b);
        let mut ext = [0u8; BLOCK];
        put_pair(&mut ext, 0, 400, 2);
        put_pair(&mut ext, 24, 998, 2);
        let mut s = b.to_vec();
        s.extend_from_slice(&ext);
        s.extend_from_slice(&padded(b"aabbccddeeff"));
        s.extend_from_slice(&[0u8; 1024]);
        let got = entries(&s).unwrap();
        let map = got[0].0.sparse.as_ref().unwrap();
        assert_eq!(map.realsize, 1000);
        assert_eq!(map.segments.len(), 6);
        assert_eq!(map.segments[5], (998, 2));
        assert_eq!(got[0].1, b"aabbccddeeff");
    }

    #[test]
    fn truncation_and_garbage_are_errors() {
        let mut s = header(b"f", b'0', 1000).to_vec();
        s.extend_from_slice(&[1u8; 700]);
        assert!(entries(&s)
            .as_ref()
            .is_err_and(|e| e.kind() == ErrorKind::Archive));
        assert!(entries(&s[..300])
            .as_ref()
            .is_err_and(|e| e.kind() == ErrorKind::Archive));
        assert!(entries(b"")
            .as_ref()
            .is_err_and(|e| e.kind() == ErrorKind::Archive));
        let mut bad = header(b"f", b'0', 0);
        bad[0] = b'g';
        assert!(entries(&bad)
            .as_ref()
            .is_err_and(|e| e.kind() == ErrorKind::Archive));
        assert!(entries(&[0u8; 10240]).unwrap().is_empty());
    }

    #[test]
    fn oversized_pax_header_is_refused_without_reading_it() {
        let s = header(b"PaxHeaders/x", b'x', 1 << 40).to_vec();
        let err = entries(&s).unwrap_err().to_string();
        assert!(err.contains("exceeds the limit"), "{err}");
    }

    #[test]
    fn sparse_map_checks() {
        let map = SparseMap {
            realsize: 10,
            segments: vec![(0, 4), (3, 2)],
        };
        assert!(check_sparse_map(&map, 6).is_err());
        let map = SparseMap {
            realsize: 10,
            segments: vec![(0, 4), (8, 4)],
        };
        assert!(check_sparse_map(&map, 8).is_err());
        let map = SparseMap {
            realsize: 10,
            segments: vec![(0, 4), (8, 2)],
        };
        assert!(check_sparse_map(&map, 6).is_ok());
        assert!(check_sparse_map(&map, 7).is_err());
    }
}
