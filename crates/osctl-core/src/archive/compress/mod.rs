//! Compression of the rootfs streams inside the archive. Each stream is
//! compressed on its own, the entry's suffix says how (`.gz`, `.zst`, none).

mod deflate;
mod gzip;

use std::io::{self, Read, Write};

pub use gzip::{GzipOptions, ParallelGzEncoder};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    Off,
    Gzip,
    Zstd,
}

impl Compression {
    /// Suffix appended to the entry name.
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::Off => "",
            Compression::Gzip => ".gz",
            Compression::Zstd => ".zst",
        }
    }

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Off => "off",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    /// Parses `off`, `gzip` or `zstd`.
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "off" => Ok(Compression::Off),
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            other => Err(Error::invalid(format!(
                "unknown compression '{other}': expected off, gzip or zstd"
            ))),
        }
    }

    /// Splits an entry name into its stem and the compression its suffix
    /// names: `base.dat.gz` -> (`base.dat`, Gzip); no known suffix -> Off.
    pub fn split_suffix(name: &str) -> (&str, Compression) {
        for c in [Compression::Gzip, Compression::Zstd] {
            if let Some(stem) = name.strip_suffix(c.suffix()) {
                return (stem, c);
            }
        }
        (name, Compression::Off)
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Worker threads by default: one per core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Largest zstd window we decode (32 MiB): a hostile stream cannot make an
/// import allocate more. Our encoder uses 2 MiB, `zstd -19` 8 MiB.
const ZSTD_MAX_WINDOW_LOG: u32 = 25;

/// Input bytes per zstd worker job, by default: memory stays low where
/// other buffers share the budget (an archive into a pipe queues 16 MiB of
/// parts besides the encoder: 46 MiB at 2 MiB jobs, 61 MiB at 4 MiB).
const ZSTD_JOB_SIZE: u32 = 2 << 20;

/// Job size for a native stream compressed into an archive file, where
/// nothing else holds much memory: 4 MiB jobs keep two workers busier than
/// 2 MiB ones (the 1 GiB zfs export 3-5% faster, 45 MiB peak instead of 29).
pub const ZSTD_JOB_SIZE_TO_FILE: u32 = 4 << 20;

#[derive(Debug, Clone)]
pub struct CompressOptions {
    pub threads: usize,
    /// Deflate level for gzip, 0-9.
    pub gzip_level: u32,
    /// Input bytes per parallel gzip block.
    pub gzip_block_size: usize,
    /// zstd level, 1-19 (22 with ultra).
    pub zstd_level: i32,
    /// Input bytes per zstd worker job (with more than one thread).
    pub zstd_job_size: u32,
}

impl Default for CompressOptions {
    fn default() -> Self {
        let gzip = GzipOptions::default();
        CompressOptions {
            threads: gzip.threads,
            gzip_level: gzip.level,
            gzip_block_size: gzip.block_size,
            zstd_level: 3,
            zstd_job_size: ZSTD_JOB_SIZE,
        }
    }
}

/// A stream compressor over a sink; `Off` passes bytes through.
pub enum Encoder<W: Write> {
    Off(W),
    Gzip(ParallelGzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    pub fn new(compression: Compression, inner: W, options: &CompressOptions) -> io::Result<Self> {
        Ok(match compression {
            Compression::Off => Encoder::Off(inner),
            Compression::Gzip => {
                let gzip = GzipOptions {
                    level: options.gzip_level,
                    threads: options.threads,
                    block_size: options.gzip_block_size,
                };
                Encoder::Gzip(ParallelGzEncoder::new(inner, &gzip)?)
            }
            Compression::Zstd => {
                let mut zstd = zstd::stream::write::Encoder::new(inner, options.zstd_level)?;
                let threads = u32::try_from(options.threads).unwrap_or(1);
                if threads > 1 {
                    zstd.multithread(threads)?;
                    // Default jobs are 4x the window and several are kept in
                    // flight (~60 MiB with 2 workers); smaller jobs keep the
                    // whole export within its memory budget.
                    zstd.set_parameter(zstd::stream::raw::CParameter::JobSize(
                        options.zstd_job_size,
                    ))?;
                }
                // Lets `zstd -t` and our reader detect corruption.
                zstd.include_checksum(true)?;
                Encoder::Zstd(zstd)
            }
        })
    }

    /// Ends the compressed stream and returns the sink (not flushed further).
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Off(w) => Ok(w),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Off(w) => w.write(buf),
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Encoder::Off(w) => w.write_all(buf),
            Encoder::Gzip(e) => e.write_all(buf),
            Encoder::Zstd(e) => e.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Off(w) => w.flush(),
            Encoder::Gzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }
}

/// The decompressed view of a stream. Gzip input may hold several members
/// (pigz and other tools write them), all are read. zstd frames needing a
/// window over 32 MiB (`zstd --long`) are refused.
pub fn decompressor<'a, R: Read + Send + 'a>(
    compression: Compression,
    input: R,
) -> io::Result<Box<dyn Read + Send + 'a>> {
    Ok(match compression {
        Compression::Off => Box::new(input),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
        Compression::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::new(input)?;
            decoder.window_log_max(ZSTD_MAX_WINDOW_LOG)?;
            Box::new(decoder)
        }
    })
}

#[cfg(test)]
mod tests;
