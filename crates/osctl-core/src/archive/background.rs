//! A writer whose writes are done by a thread of its own: an archive
//! streamed into a pipe goes out a whole part (8 MiB) at a time, and without
//! it the exporter (and its compression threads) would wait for the reader
//! at the other end to take each part before making the next; with it the
//! two ends work at once, up to a bounded amount of data in between.

use std::io::{self, Write};
use std::mem;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::{self, JoinHandle};

/// Bytes handed over at a time.
const PIECE: usize = 1 << 20;
/// Pieces that may wait for the writing thread: two parts' worth.
const QUEUE: usize = 16;

enum Message {
    Data(Vec<u8>),
    /// Answered once everything before it is written and flushed.
    Flush(SyncSender<io::Result<()>>),
}

pub struct BackgroundWriter {
    queue: Option<SyncSender<Message>>,
    piece: Vec<u8>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl BackgroundWriter {
    pub fn new<W: Write + Send + 'static>(out: W) -> BackgroundWriter {
        let (queue, messages) = sync_channel(QUEUE);
        let thread = thread::Builder::new()
            .name("archive-out".into())
            .spawn(move || write_out(out, messages))
            .expect("cannot start the archive's writing thread");
        BackgroundWriter {
            queue: Some(queue),
            piece: Vec::with_capacity(PIECE),
            thread: Some(thread),
        }
    }

    fn send(&mut self, message: Message) -> io::Result<()> {
        let sent = match &self.queue {
            Some(queue) => queue.send(message).is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The thread stopped: its error says why.
        self.queue = None;
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(Err(e))) => Err(e),
            Some(Err(_)) => Err(io::Error::other("the archive's writing thread panicked")),
            _ => Err(io::Error::from(io::ErrorKind::BrokenPipe)),
        }
    }

    fn send_piece(&mut self) -> io::Result<()> {
        if self.piece.is_empty() {
            return Ok(());
        }
        let piece = mem::replace(&mut self.piece, Vec::with_capacity(PIECE));
        self.send(Message::Data(piece))
    }
}

fn write_out<W: Write>(mut out: W, messages: Receiver<Message>) -> io::Result<()> {
    for message in messages {
        match message {
            Message::Data(piece) => out.write_all(&piece)?,
            Message::Flush(done) => {
                let flushed = out.flush();
                let failed = flushed
                    .as_ref()
                    .err()
                    .map(|e| io::Error::new(e.kind(), e.to_string()));
                let _ = done.send(flushed);
                if let Some(e) = failed {
                    return Err(e);
                }
            }
        }
    }
    out.flush()
}

impl Write for BackgroundWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let take = buf.len().min(PIECE - self.piece.len());
        self.piece.extend_from_slice(&buf[..take]);
        if self.piece.len() == PIECE {
            self.send_piece()?;
        }
        Ok(take)
    }

    /// Waits until everything written so far is out, and tells how that went.
    fn flush(&mut self) -> io::Result<()> {
        self.send_piece()?;
        let (done, answer) = sync_channel(1);
        self.send(Message::Flush(done))?;
        match answer.recv() {
            Ok(result) => result,
            // The thread stopped before answering: its error.
            Err(_) => self.send(Message::Data(Vec::new())),
        }
    }
}

impl Drop for BackgroundWriter {
    /// What was handed over is still written; the piece being filled is
    /// not (a writer dropped unflushed belongs to a failed export).
    fn drop(&mut self) {
        self.queue = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn everything_arrives_in_order_by_the_flush() {
        let sink = Shared::default();
        let mut w = BackgroundWriter::new(sink.clone());
        let data: Vec<u8> = (0..(3 * PIECE + 12345)).map(|i| (i % 251) as u8).collect();
        for chunk in data.chunks(100_000) {
            w.write_all(chunk).unwrap();
        }
        w.flush().unwrap();
        assert_eq!(*sink.0.lock().unwrap(), data);
    }

    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_writers_error_comes_back() {
        let mut w = BackgroundWriter::new(Broken);
        let mut failed = None;
        for _ in 0..(QUEUE + 4) {
            if let Err(e) = w.write_all(&vec![0u8; PIECE]) {
                failed = Some(e);
                break;
            }
        }
        let e = failed.or_else(|| w.flush().err()).expect("an error");
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    }
}
