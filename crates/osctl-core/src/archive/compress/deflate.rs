//! Raw deflate for the parallel gzip encoder, through zlib-rs's zlib API.
//!
//! Why not flate2's `Compress` (same zlib-rs engine underneath)? Its levels 6-8
//! use zlib-ng's match finder (4-byte hashing, the "medium" parser), whose
//! output on rootfs-like data is larger than `gzip -6`'s, and we promise to
//! stay within 2% of zlib's `-6`, the original's baseline. zlib-rs's level-9
//! path uses zlib's 3-byte rolling hash and lazy parser; `deflateTune` (not
//! offered by flate2) sets its search limits to zlib's own for the level
//! asked: zlib's ratio at zlib-rs's speed. Shorter chains would be faster but
//! cost more size on repetitive data, so we keep zlib's limits (the figures:
//! docs/performance.md, "gzip: zlib's ratio at zlib-rs's speed").
//! Levels 6-8 are tuned so; 1-5 and 9 are zlib-rs's own levels.

use std::ffi::c_int;
use std::io;

use libz_rs_sys as z;

/// Match-finder limits: good length, lazy match, nice length, chain.
type Tuning = (c_int, c_int, c_int, c_int);

fn tuning(level: u32) -> (c_int, Option<Tuning>) {
    match level {
        6 => (9, Some((8, 16, 128, 128))),
        7 => (9, Some((8, 32, 128, 256))),
        8 => (9, Some((32, 128, 258, 1024))),
        other => (other.min(9) as c_int, None),
    }
}

/// A raw deflate stream (no zlib or gzip wrapper), reset for every block.
pub(super) struct RawDeflate {
    // Boxed: zlib's internal state points back at the stream, which must not move.
    stream: Box<z::z_stream>,
    tuning: Option<Tuning>,
}

fn check(code: c_int, what: &str) -> io::Result<()> {
    if code == z::Z_OK {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "deflate {what} failed (zlib code {code})"
    )))
}

impl RawDeflate {
    pub(super) fn new(level: u32) -> io::Result<Self> {
        let (level, tuning) = tuning(level);
        let mut stream = Box::new(z::z_stream::default());
        // SAFETY: `stream` is a valid, default-initialised z_stream that stays
        // at this address; negative window bits ask for raw deflate.
        let code = unsafe {
            z::deflateInit2_(
                &mut *stream,
                level,
                z::Z_DEFLATED,
                -15,
                8,
                z::Z_DEFAULT_STRATEGY,
                z::zlibVersion(),
                std::mem::size_of::<z::z_stream>() as c_int,
            )
        };
        check(code, "initialisation")?;
        let mut deflate = RawDeflate { stream, tuning };
        deflate.tune()?;
        Ok(deflate)
    }

    fn tune(&mut self) -> io::Result<()> {
        let Some((good, lazy, nice, chain)) = self.tuning else {
            return Ok(());
        };
        // SAFETY: the stream was initialised by deflateInit2_.
        check(
            unsafe { z::deflateTune(&mut *self.stream, good, lazy, nice, chain) },
            "tuning",
        )
    }

    /// Starts a new stream (a reset also restores the level's default limits).
    pub(super) fn reset(&mut self) -> io::Result<()> {
        // SAFETY: the stream was initialised by deflateInit2_.
        check(unsafe { z::deflateReset(&mut *self.stream) }, "reset")?;
        self.tune()
    }

    /// Primes the window with data the decoder will already have seen.
    pub(super) fn set_dictionary(&mut self, dictionary: &[u8]) -> io::Result<()> {
        let len = z::uInt::try_from(dictionary.len()).map_err(io::Error::other)?;
        // SAFETY: pointer and length describe a live slice zlib only reads.
        let code = unsafe { z::deflateSetDictionary(&mut *self.stream, dictionary.as_ptr(), len) };
        check(code, "dictionary")
    }

    /// Deflates all of `input` into `out` (grown as needed), then either
    /// finishes the stream or ends with a sync flush (byte-aligned, not final,
    /// so another block's deflate data can follow).
    pub(super) fn compress(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        finish: bool,
    ) -> io::Result<()> {
        let flush = if finish { z::Z_FINISH } else { z::Z_SYNC_FLUSH };
        self.stream.next_in = input.as_ptr();
        self.stream.avail_in = z::uInt::try_from(input.len()).map_err(io::Error::other)?;
        let result = self.run(out, flush);
        // Leave no pointer into `input` or `out` behind.
        self.stream.next_in = std::ptr::null();
        self.stream.avail_in = 0;
        self.stream.next_out = std::ptr::null_mut();
        self.stream.avail_out = 0;
        result
    }

    fn run(&mut self, out: &mut Vec<u8>, flush: c_int) -> io::Result<()> {
        loop {
            if out.capacity() - out.len() < 64 * 1024 {
                out.reserve(256 * 1024);
            }
            let spare = out.spare_capacity_mut();
            let room = spare.len().min(z::uInt::MAX as usize);
            self.stream.next_out = spare.as_mut_ptr().cast();
            self.stream.avail_out = room as z::uInt;
            // SAFETY: next_in/avail_in describe the caller's input slice and
            // next_out/avail_out the vector's spare capacity, both live for
            // this call; deflate writes only within avail_out.
            let code = unsafe { z::deflate(&mut *self.stream, flush) };
            let written = room - self.stream.avail_out as usize;
            // SAFETY: deflate initialised exactly `written` bytes of spare capacity.
            unsafe { out.set_len(out.len() + written) };
            match code {
                z::Z_STREAM_END => return Ok(()),
                z::Z_OK | z::Z_BUF_ERROR => {}
                other => return check(other, "compression"),
            }
            // A sync flush is complete once input is used up and output room is left.
            if flush != z::Z_FINISH && self.stream.avail_in == 0 && self.stream.avail_out != 0 {
                return Ok(());
            }
        }
    }
}

impl Drop for RawDeflate {
    fn drop(&mut self) {
        // SAFETY: the stream was initialised by deflateInit2_ and is ended once.
        unsafe { z::deflateEnd(&mut *self.stream) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn blocks_chain_into_one_deflate_stream() {
        let data = crate::archive::testutil::sample_data(300_000, 9);
        let (a, b) = data.split_at(150_000);
        for level in [1, 6, 7, 9] {
            let mut out = Vec::new();
            let mut d = RawDeflate::new(level).unwrap();
            d.compress(a, &mut out, false).unwrap();
            let mut d2 = RawDeflate::new(level).unwrap();
            d2.set_dictionary(&a[a.len() - 32 * 1024..]).unwrap();
            d2.compress(b, &mut out, true).unwrap();
            let mut back = Vec::new();
            flate2::read::DeflateDecoder::new(out.as_slice())
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "level {level}");
        }
    }
}
