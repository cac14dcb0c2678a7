//! Progress of long operations on stderr: the step, bytes, rate. Silent with
//! `-q` and when stderr is not a terminal.

use std::io::{self, IsTerminal, Read, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Clone)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A progress display, drawn only when `wanted` and stderr is a terminal.
    pub fn new(wanted: bool) -> Progress {
        let target = if wanted && io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(None, target);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {msg:<28} {bytes:>10} {binary_bytes_per_sec:>12} {elapsed}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress { bar }
    }

    pub fn hidden() -> Progress {
        Progress::new(false)
    }

    /// Starts a new step; the byte count restarts.
    pub fn step(&self, message: impl Into<String>) {
        let message = message.into();
        if !self.bar.is_hidden() && self.bar.position() > 0 {
            self.bar.println(format!(
                "  {} ({})",
                self.bar.message(),
                indicatif::HumanBytes(self.bar.position())
            ));
        }
        self.bar.set_position(0);
        self.bar.reset_elapsed();
        self.bar.set_message(message);
    }

    pub fn add_bytes(&self, n: u64) {
        self.bar.inc(n);
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    /// A writer or reader that counts what passes through it, into this
    /// display and its own total.
    pub fn counting<T>(&self, inner: T) -> Counting<T> {
        Counting {
            inner,
            progress: Some(self.clone()),
            count: 0,
        }
    }
}

pub struct Counting<T> {
    inner: T,
    progress: Option<Progress>,
    count: u64,
}

impl<T> Counting<T> {
    /// Counts without a display.
    pub fn new(inner: T) -> Counting<T> {
        Counting {
            inner,
            progress: None,
            count: 0,
        }
    }

    pub fn into_inner(self) -> T {
        self.inner
    }

    /// The bytes that passed through so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    fn passed(&mut self, n: usize) {
        self.count += n as u64;
        if let Some(progress) = &self.progress {
            progress.add_bytes(n as u64);
        }
    }
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.passed(n);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.passed(n);
        Ok(n)
    }
}
