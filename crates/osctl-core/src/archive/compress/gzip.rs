//! A gzip encoder that uses every core and still writes ONE gzip member.
//!
//! The original importer reads rootfs streams with Ruby's `Zlib::GzipReader`,
//! which stops after the first member: concatenated members (what most
//! parallel gzip libraries write) would import silently truncated. So we do
//! what pigz does: one header; the input cut into blocks; each block deflated
//! on a worker with the previous block's last 32 KiB as dictionary (the ratio
//! stays close to a single deflate stream) and ended with a sync flush, so that
//! the pieces join into one valid deflate stream; the last block is final; one
//! trailer with the CRC-32 of all input (per-block CRCs combined) and its size.
//!
//! Deflate is zlib-rs through its zlib API ([`super::deflate`] says why not
//! through flate2).
//!
//! Memory is bounded: at most `2 * threads + 1` blocks are in flight. Output is
//! written in order on the caller's thread, so the sink needs no `Send`.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::deflate::RawDeflate;

/// Window size of deflate, hence the useful dictionary size.
const WINDOW: usize = 32 * 1024;
/// Smallest block: a block must hold a whole dictionary for the next one.
const MIN_BLOCK: usize = 64 * 1024;

/// gzip header: magic, deflate, no flags, no mtime, no extra flags, OS Unix.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];

#[derive(Debug, Clone)]
pub struct GzipOptions {
    /// Deflate level, 0-9 (6 is gzip's default).
    pub level: u32,
    /// Worker threads.
    pub threads: usize,
    /// Input bytes per independently deflated block.
    pub block_size: usize,
}

impl Default for GzipOptions {
    fn default() -> Self {
        GzipOptions {
            level: 6,
            threads: super::default_threads(),
            block_size: 256 * 1024,
        }
    }
}

struct Job {
    data: Arc<Vec<u8>>,
    dictionary: Option<Arc<Vec<u8>>>,
    last: bool,
    reply: SyncSender<io::Result<Compressed>>,
}

struct Compressed {
    bytes: Vec<u8>,
    crc: crc32fast::Hasher,
}

/// Parallel single-member gzip encoder; see the module documentation.
/// Call [`ParallelGzEncoder::finish`]: dropping it unfinished leaves an
/// incomplete gzip stream in the sink.
pub struct ParallelGzEncoder<W: Write> {
    inner: Option<W>,
    block_size: usize,
    max_in_flight: usize,
    current: Vec<u8>,
    previous: Option<Arc<Vec<u8>>>,
    pending: VecDeque<Receiver<io::Result<Compressed>>>,
    jobs: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
    crc: crc32fast::Hasher,
    /// Input bytes so far (the trailer holds them modulo 2^32).
    total_in: u64,
    header_written: bool,
    /// Set after a failure: the output is broken, refuse to go on.
    failed: bool,
}

impl<W: Write> ParallelGzEncoder<W> {
    pub fn new(inner: W, options: &GzipOptions) -> io::Result<Self> {
        let threads = options.threads.max(1);
        let level = options.level.min(9);
        let (jobs, queue) = mpsc::sync_channel::<Job>(threads);
        let queue = Arc::new(Mutex::new(queue));
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let queue = queue.clone();
            let worker = std::thread::Builder::new()
                .name(format!("gzip-{i}"))
                .spawn(move || work(&queue, level))?;
            workers.push(worker);
        }
        let block_size = options.block_size.max(MIN_BLOCK);
        Ok(ParallelGzEncoder {
            inner: Some(inner),
            block_size,
            max_in_flight: 2 * threads + 1,
            current: Vec::with_capacity(block_size),
            previous: None,
            pending: VecDeque::new(),
            jobs: Some(jobs),
            workers,
            crc: crc32fast::Hasher::new(),
            total_in: 0,
            header_written: false,
            failed: false,
        })
    }

    /// Compresses what is left, writes the trailer and returns the sink.
    pub fn finish(mut self) -> io::Result<W> {
        self.check()?;
        let result = self.finish_stream();
        if result.is_err() {
            self.failed = true;
        }
        result?;
        self.stop_workers();
        self.inner
            .take()
            .ok_or_else(|| io::Error::other("gzip encoder already finished"))
    }

    fn finish_stream(&mut self) -> io::Result<()> {
        self.dispatch(true)?;
        while !self.pending.is_empty() {
            self.write_next()?;
        }
        let total = self.total_in;
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&self.crc.clone().finalize().to_le_bytes());
        // ISIZE is the input size modulo 2^32, by definition of the format.
        trailer[4..].copy_from_slice(&(total as u32).to_le_bytes());
        let inner = self.sink()?;
        inner.write_all(&trailer)?;
        inner.flush()
    }

    fn check(&self) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other("the gzip stream failed earlier"));
        }
        Ok(())
    }

    fn sink(&mut self) -> io::Result<&mut W> {
        self.inner
            .as_mut()
            .ok_or_else(|| io::Error::other("gzip encoder already finished"))
    }

    /// Hands the current block to the workers, first making room if too many
    /// blocks are in flight.
    fn dispatch(&mut self, last: bool) -> io::Result<()> {
        while self.pending.len() >= self.max_in_flight {
            self.write_next()?;
        }
        let data = Arc::new(std::mem::replace(
            &mut self.current,
            if last {
                Vec::new()
            } else {
                Vec::with_capacity(self.block_size)
            },
        ));
        let (reply, result) = mpsc::sync_channel(1);
        let job = Job {
            data: data.clone(),
            dictionary: self.previous.replace(data),
            last,
            reply,
        };
        let jobs = self.jobs.as_ref().ok_or_else(workers_gone)?;
        jobs.send(job).map_err(|_| workers_gone())?;
        self.pending.push_back(result);
        // Write whatever is already done, so output keeps flowing.
        while let Some(Ok(done)) = self.pending.front().map(Receiver::try_recv) {
            self.pending.pop_front();
            self.emit(done)?;
        }
        Ok(())
    }

    /// Waits for the oldest block in flight and writes it.
    fn write_next(&mut self) -> io::Result<()> {
        let Some(next) = self.pending.pop_front() else {
            return Ok(());
        };
        let done = next.recv().map_err(|_| workers_gone())?;
        self.emit(done)
    }

    fn emit(&mut self, done: io::Result<Compressed>) -> io::Result<()> {
        let done = done?;
        self.crc.combine(&done.crc);
        if !self.header_written {
            self.sink()?.write_all(&HEADER)?;
            self.header_written = true;
        }
        self.sink()?.write_all(&done.bytes)
    }

    fn stop_workers(&mut self) {
        drop(self.jobs.take());
        self.pending.clear();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

fn workers_gone() -> io::Error {
    io::Error::other("a gzip worker thread died")
}

impl<W: Write> Write for ParallelGzEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.check()?;
        let room = self.block_size - self.current.len();
        let n = buf.len().min(room);
        self.current.extend_from_slice(&buf[..n]);
        self.total_in += n as u64;
        if self.current.len() == self.block_size {
            if let Err(e) = self.dispatch(false) {
                self.failed = true;
                return Err(e);
            }
        }
        Ok(n)
    }

    /// Writes out every finished block and flushes the sink. The block being
    /// filled is not cut short: that would cost ratio for nothing.
    fn flush(&mut self) -> io::Result<()> {
        self.check()?;
        while !self.pending.is_empty() {
            self.write_next()?;
        }
        self.sink()?.flush()
    }
}

impl<W: Write> Drop for ParallelGzEncoder<W> {
    fn drop(&mut self) {
        self.stop_workers();
    }
}

fn work(queue: &Mutex<Receiver<Job>>, level: u32) {
    let mut deflate = RawDeflate::new(level);
    loop {
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let result = match &mut deflate {
            Ok(deflate) => compress_block(deflate, &job),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        };
        // The encoder may be gone (dropped after an error): nothing to do.
        let _ = job.reply.send(result);
    }
}

fn compress_block(deflate: &mut RawDeflate, job: &Job) -> io::Result<Compressed> {
    deflate.reset()?;
    if let Some(dictionary) = &job.dictionary {
        deflate.set_dictionary(&dictionary[dictionary.len().saturating_sub(WINDOW)..])?;
    }
    let input = job.data.as_slice();
    // Deflate's worst case is a few bytes per 16 KiB stored block.
    let mut out = Vec::with_capacity(input.len() + input.len() / 64 + 256);
    deflate.compress(input, &mut out, job.last)?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(input);
    Ok(Compressed { bytes: out, crc })
}
