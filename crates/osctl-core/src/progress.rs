//! Progress of long operations on stderr. A step that moves bytes of a known
//! (or estimated) size shows a bar with the total, percent, rate and ETA; one
//! of unknown size the bytes and rate; one without bytes (stopping a
//! container, checking files) a spinner. Silent with `-q` and when stderr is
//! not a terminal.

use std::io::{self, IsTerminal, Read, Write};
use std::time::Duration;

use indicatif::{HumanBytes, HumanDuration, ProgressBar, ProgressDrawTarget, ProgressStyle};

// The bar takes what the text leaves of the line; the ETA comes before the
// rate so that a narrow terminal keeps it.
const SIZED: &str = "{spinner} {msg} [{wide_bar}] {percent:>3}% {bytes}/{total_bytes} ETA {eta} \
                     {binary_bytes_per_sec}";
const UNSIZED: &str = "{spinner} {msg} {bytes} {binary_bytes_per_sec} {elapsed}";
const NO_BYTES: &str = "{spinner} {msg} {elapsed}";

#[derive(Clone)]
pub struct Progress {
    bar: ProgressBar,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
        .progress_chars("=> ")
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
        bar.set_style(style(NO_BYTES));
        Progress { bar }
    }

    pub fn hidden() -> Progress {
        Progress::new(false)
    }

    /// Whether anything is drawn: estimates are worth their cost only then.
    pub fn is_visible(&self) -> bool {
        !self.bar.is_hidden()
    }

    /// Starts a step that moves no bytes: a spinner.
    pub fn step(&self, message: impl Into<String>) {
        self.start(message.into(), None, NO_BYTES);
    }

    /// Starts a step that moves bytes, `total` of them where known.
    pub fn step_bytes(&self, message: impl Into<String>, total: Option<u64>) {
        let template = if total.is_some() { SIZED } else { UNSIZED };
        self.start(message.into(), total, template);
    }

    fn start(&self, message: String, total: Option<u64>, template: &str) {
        // The new step is set up before the line of the last one is
        // printed, which redraws the bar.
        let finished = self.finished_line();
        // Each call below draws: hidden until the step is whole.
        let visible = self.is_visible();
        self.bar.set_draw_target(ProgressDrawTarget::hidden());
        self.bar.set_message(message);
        self.bar.set_style(style(template));
        self.bar.reset();
        match total {
            Some(n) => self.bar.set_length(n.max(1)),
            None => self.bar.unset_length(),
        }
        if visible {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
        }
        if let Some(line) = finished {
            self.bar.println(line);
        }
        if visible {
            // Idempotent after the first step; nothing is drawn before it.
            self.bar.enable_steady_tick(Duration::from_millis(200));
        }
    }

    /// The line a finished step that moved bytes leaves.
    fn finished_line(&self) -> Option<String> {
        (self.is_visible() && self.bar.position() > 0).then(|| {
            format!(
                "  {}: {} in {}",
                self.bar.message(),
                HumanBytes(self.bar.position()),
                HumanDuration(self.bar.elapsed())
            )
        })
    }

    pub fn add_bytes(&self, n: u64) {
        self.bar.inc(n);
        // An estimate that fell short grows with what came.
        if let Some(len) = self.bar.length() {
            if self.bar.position() > len {
                self.bar.set_length(self.bar.position());
            }
        }
    }

    pub fn finish(&self) {
        if let Some(line) = self.finished_line() {
            self.bar.println(line);
        }
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
