//! The tar stream writer: PAX extended headers where ustar falls short, a
//! large buffer between the file system and the output.

use std::io::{self, Write};
use std::os::fd::BorrowedFd;

use super::header::{self as h, Block, TarKind, BLOCK};
use super::{Timestamp, IO_BUFFER};

/// One entry's header. `path` is relative to the archive root without "./"
/// (empty for the root); the writer adds "./" and a trailing "/" for
/// directories, as `tar -C rootfs .` does.
pub(crate) struct OutEntry<'a> {
    pub path: &'a [u8],
    pub kind: TarKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: Timestamp,
    /// Bytes of data following the header (sparse: map block + data).
    pub size: u64,
    /// Symlink target as is, or the hard link's target path (relative, no "./").
    pub link: &'a [u8],
    pub dev: (u32, u32),
    pub xattrs: &'a [(Vec<u8>, Vec<u8>)],
    /// Real size of a sparse file written in GNU sparse format 1.0.
    pub sparse_realsize: Option<u64>,
}

impl<'a> OutEntry<'a> {
    /// An entry of `kind` at `path` and nothing else: root's, mode 0, time 0,
    /// no data, link, device or xattrs. Callers fill in what they have.
    pub fn bare(path: &'a [u8], kind: TarKind) -> OutEntry<'a> {
        OutEntry {
            path,
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: Timestamp::default(),
            size: 0,
            link: b"",
            dev: (0, 0),
            xattrs: &[],
            sparse_realsize: None,
        }
    }
}

pub(crate) struct TarWriter<'a> {
    out: &'a mut dyn Write,
    buf: Box<[u8]>,
    filled: usize,
    written: u64,
}

impl<'a> TarWriter<'a> {
    pub fn new(out: &'a mut dyn Write) -> Self {
        TarWriter {
            out,
            buf: vec![0u8; IO_BUFFER].into_boxed_slice(),
            filled: 0,
            written: 0,
        }
    }

    /// Bytes produced so far (buffered or not).
    pub fn position(&self) -> u64 {
        self.written + self.filled as u64
    }

    fn flush_buffer(&mut self) -> io::Result<()> {
        if self.filled > 0 {
            self.out.write_all(&self.buf[..self.filled])?;
            self.written += self.filled as u64;
            self.filled = 0;
        }
        Ok(())
    }

    pub fn put(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            if self.filled == self.buf.len() {
                self.flush_buffer()?;
            }
            let n = bytes.len().min(self.buf.len() - self.filled);
            self.buf[self.filled..self.filled + n].copy_from_slice(&bytes[..n]);
            self.filled += n;
            bytes = &bytes[n..];
        }
        Ok(())
    }

    pub fn put_zeros(&mut self, mut n: u64) -> io::Result<()> {
        while n > 0 {
            if self.filled == self.buf.len() {
                self.flush_buffer()?;
            }
            let k = (n as usize).min(self.buf.len() - self.filled);
            self.buf[self.filled..self.filled + k].fill(0);
            self.filled += k;
            n -= k as u64;
        }
        Ok(())
    }

    /// Pads the stream to the next block boundary.
    pub fn pad(&mut self) -> io::Result<()> {
        let rest = (self.position() % BLOCK as u64) as usize;
        if rest != 0 {
            self.put_zeros((BLOCK - rest) as u64)?;
        }
        Ok(())
    }

    /// Copies exactly `len` bytes of `fd` (from `offset` with pread when
    /// given, else from its current position) straight into the buffer. A
    /// file that shrinks is padded with zeros, one that grows is cut: the
    /// header's size must stay true whatever the file does meanwhile.
    /// Returns the number of bytes that really came from the file.
    pub fn copy_from_fd(
        &mut self,
        fd: BorrowedFd<'_>,
        offset: Option<u64>,
        len: u64,
    ) -> io::Result<u64> {
        let mut done = 0u64;
        while done < len {
            if self.filled == self.buf.len() {
                self.flush_buffer()?;
            }
            let want = ((len - done) as usize).min(self.buf.len() - self.filled);
            let target = &mut self.buf[self.filled..self.filled + want];
            let got = match offset {
                Some(off) => rustix::io::pread(fd, target, off + done),
                None => rustix::io::read(fd, target),
            };
            match got {
                Ok(0) => break,
                Ok(n) => {
                    self.filled += n;
                    done += n as u64;
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        self.put_zeros(len - done)?;
        Ok(done)
    }

    /// Writes the PAX extended header (when needed) and the ustar header.
    pub fn header(&mut self, e: &OutEntry<'_>) -> io::Result<()> {
        let name = archive_name(e.path, e.kind == TarKind::Dir);
        let mut block: Block = [0; BLOCK];
        let mut pax = Vec::new();

        match e.sparse_realsize {
            Some(realsize) => {
                // GNU sparse 1.0: the ustar name is a placeholder, the real
                // name and size live in the extended header.
                h::pax_record(&mut pax, b"GNU.sparse.major", b"1");
                h::pax_record(&mut pax, b"GNU.sparse.minor", b"0");
                h::pax_record(&mut pax, b"GNU.sparse.name", &name);
                h::pax_record(
                    &mut pax,
                    b"GNU.sparse.realsize",
                    realsize.to_string().as_bytes(),
                );
                put_truncated(&mut block, h::NAME, &sparse_placeholder(&name));
            }
            None => {
                if !put_name(&mut block, &name) {
                    h::pax_record(&mut pax, b"path", &name);
                    put_truncated(&mut block, h::NAME, &name);
                }
            }
        }

        let link = match e.kind {
            TarKind::HardLink => archive_name(e.link, false),
            _ => e.link.to_vec(),
        };
        if link.len() > h::LINKNAME.1 {
            h::pax_record(&mut pax, b"linkpath", &link);
            put_truncated(&mut block, h::LINKNAME, &link);
        } else {
            h::put_str(&mut block, h::LINKNAME, &link);
        }

        h::put_num(&mut block, h::MODE, (e.mode & 0o7777) as u64);
        if !h::put_num(&mut block, h::UID, e.uid as u64) {
            h::pax_record(&mut pax, b"uid", e.uid.to_string().as_bytes());
        }
        if !h::put_num(&mut block, h::GID, e.gid as u64) {
            h::pax_record(&mut pax, b"gid", e.gid.to_string().as_bytes());
        }
        if !h::put_num(&mut block, h::SIZE, e.size) {
            h::pax_record(&mut pax, b"size", e.size.to_string().as_bytes());
        }
        let secs_fit = h::put_signed(&mut block, h::MTIME, e.mtime.sec);
        if !secs_fit || e.mtime.nsec != 0 {
            let text = h::format_pax_time(e.mtime.sec, e.mtime.nsec);
            h::pax_record(&mut pax, b"mtime", text.as_bytes());
        }
        for (name, value) in e.xattrs {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(&h::encode_xattr_key(name));
            h::pax_record(&mut pax, &key, value);
        }
        block[h::TYPEFLAG] = e.kind.typeflag();
        block[h::MAGIC.0..h::MAGIC.0 + 8].copy_from_slice(h::USTAR_MAGIC);
        if matches!(e.kind, TarKind::Char | TarKind::Block) {
            h::put_num(&mut block, h::DEVMAJOR, e.dev.0 as u64);
            h::put_num(&mut block, h::DEVMINOR, e.dev.1 as u64);
        }
        h::seal(&mut block);

        if !pax.is_empty() {
            self.pax_header(&name, e.mtime.sec, &pax)?;
        }
        self.put(&block)
    }

    fn pax_header(&mut self, name: &[u8], mtime: i64, records: &[u8]) -> io::Result<()> {
        let mut block: Block = [0; BLOCK];
        // GNU tar's convention for the extended header's own name.
        let base = name
            .strip_suffix(b"/")
            .unwrap_or(name)
            .rsplit(|&b| b == b'/')
            .next()
            .unwrap_or(b"");
        let mut pax_name = b"./PaxHeaders/".to_vec();
        pax_name.extend_from_slice(base);
        put_truncated(&mut block, h::NAME, &pax_name);
        h::put_num(&mut block, h::MODE, 0o644);
        h::put_num(&mut block, h::UID, 0);
        h::put_num(&mut block, h::GID, 0);
        h::put_num(&mut block, h::SIZE, records.len() as u64);
        h::put_signed(&mut block, h::MTIME, mtime.max(0));
        block[h::TYPEFLAG] = b'x';
        block[h::MAGIC.0..h::MAGIC.0 + 8].copy_from_slice(h::USTAR_MAGIC);
        h::seal(&mut block);
        self.put(&block)?;
        self.put(records)?;
        self.pad()
    }

    /// Writes the end-of-archive marker and flushes everything.
    pub fn finish(mut self) -> io::Result<u64> {
        self.put_zeros(2 * BLOCK as u64)?;
        self.flush_buffer()?;
        self.out.flush()?;
        Ok(self.written)
    }
}

/// "./" + path, plus "/" for a directory; the root is "./".
pub(crate) fn archive_name(rel: &[u8], dir: bool) -> Vec<u8> {
    let mut name = Vec::with_capacity(rel.len() + 3);
    name.extend_from_slice(b"./");
    name.extend_from_slice(rel);
    if dir && !rel.is_empty() {
        name.push(b'/');
    }
    name
}

/// Puts a name into the ustar name field, or split into prefix and name;
/// false when neither fits.
fn put_name(block: &mut Block, name: &[u8]) -> bool {
    if name.len() <= h::NAME.1 {
        h::put_str(block, h::NAME, name);
        return true;
    }
    // The prefix ends at a '/' that is not the trailing one of a directory.
    let body = name.strip_suffix(b"/").unwrap_or(name);
    for (i, &b) in body.iter().enumerate().rev() {
        if b != b'/' {
            continue;
        }
        let (prefix, rest) = (&name[..i], &name[i + 1..]);
        if rest.len() > h::NAME.1 {
            break;
        }
        if prefix.len() <= h::PREFIX.1 {
            h::put_str(block, h::PREFIX, prefix);
            h::put_str(block, h::NAME, rest);
            return true;
        }
    }
    false
}

fn put_truncated(block: &mut Block, f: (usize, usize), value: &[u8]) {
    h::put_str(block, f, &value[..value.len().min(f.1)]);
}

/// `dir/GNUSparseFile.0/base`, the name GNU tar gives a sparse 1.0 entry for
/// readers that do not know the format.
fn sparse_placeholder(name: &[u8]) -> Vec<u8> {
    let (dir, base) = match name.iter().rposition(|&b| b == b'/') {
        Some(i) => (&name[..i], &name[i + 1..]),
        None => (&b"."[..], name),
    };
    let mut out = dir.to_vec();
    out.extend_from_slice(b"/GNUSparseFile.0/");
    out.extend_from_slice(base);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &[u8]) -> OutEntry<'_> {
        OutEntry {
            mode: 0o644,
            mtime: Timestamp { sec: 1, nsec: 0 },
            ..OutEntry::bare(path, TarKind::File)
        }
    }

    fn write_one(e: &OutEntry<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = TarWriter::new(&mut out);
        w.header(e).unwrap();
        w.finish().unwrap();
        out
    }

    #[test]
    fn short_name_has_no_pax_header() {
        let out = write_one(&entry(b"etc/hostname"));
        assert_eq!(out.len(), 3 * BLOCK);
        assert!(out.starts_with(b"./etc/hostname\0"));
        assert_eq!(out[156], b'0');
    }

    #[test]
    fn long_name_uses_prefix_or_pax() {
        let dir = vec![b'd'; 120];
        let mut path = dir.clone();
        path.extend_from_slice(b"/file");
        let out = write_one(&entry(&path));
        assert_eq!(out.len(), 3 * BLOCK, "split into prefix and name");
        assert_eq!(&out[0..5], b"file\0");
        let long = vec![b'x'; 300];
        let out = write_one(&entry(&long));
        assert_eq!(out[156], b'x', "extended header first");
    }

    #[test]
    fn nanoseconds_and_big_ids_go_to_pax() {
        let mut e = entry(b"a");
        e.mtime = Timestamp { sec: 5, nsec: 7 };
        e.uid = 4_000_000;
        let out = write_one(&e);
        let text = String::from_utf8_lossy(&out[BLOCK..2 * BLOCK]);
        assert!(text.contains("mtime=5.000000007\n"), "{text}");
        assert!(text.contains("uid=4000000\n"), "{text}");
    }

    #[test]
    fn sizes_beyond_octal_go_to_pax_and_base256() {
        let mut e = entry(b"huge");
        e.size = 9 << 30;
        let mut out = Vec::new();
        let mut w = TarWriter::new(&mut out);
        w.header(&e).unwrap();
        drop(w.finish());
        let text = String::from_utf8_lossy(&out[BLOCK..2 * BLOCK]);
        assert!(text.contains(&format!("size={}\n", 9u64 << 30)), "{text}");
        let block: &Block = out[2 * BLOCK..3 * BLOCK].try_into().unwrap();
        assert_eq!(h::get_num(block, h::SIZE).unwrap(), 9 << 30);
    }

    #[test]
    fn copy_pads_a_shrunk_file() {
        let file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut &file, b"abc").unwrap();
        let mut out = Vec::new();
        let mut w = TarWriter::new(&mut out);
        use std::os::fd::AsFd;
        let got = w.copy_from_fd(file.as_fd(), Some(0), 10).unwrap();
        assert_eq!(got, 3);
        assert_eq!(w.position(), 10);
        w.pad().unwrap();
        w.finish().unwrap();
        assert_eq!(out.len(), 3 * BLOCK);
        assert_eq!(&out[..4], b"abc\0");
    }
}
