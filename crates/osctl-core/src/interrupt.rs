//! SIGINT, SIGTERM and SIGHUP during a long operation: the handler only notes
//! the signal; the operation sees it at its next check, fails with
//! `Error::Interrupted`, and cleans up like after any other failure.
//!
//! The handler is installed without `SA_RESTART`, so a blocking read or write
//! returns `EINTR` and the loop doing it gets to look at the flag.

use std::io::{self, Write};
use std::sync::atomic::{AtomicI32, Ordering};

use crate::error::{Error, Result};

static RECEIVED: AtomicI32 = AtomicI32::new(0);

extern "C" fn note_signal(sig: libc::c_int) {
    RECEIVED.store(sig, Ordering::SeqCst);
}

/// Installs the handlers. Call once, before starting a long operation.
pub fn install() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe; the sigaction struct is fully initialised.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = note_signal as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            action.sa_flags = 0;
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

/// The signal that arrived, if any: the CLI exits with 128 + its number.
pub fn received() -> Option<i32> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        sig => Some(sig),
    }
}

/// Fails once a signal has arrived.
pub fn check() -> Result<()> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => Ok(()),
        sig => Err(Error::interrupted(format!(
            "interrupted by {}",
            signal_name(sig)
        ))),
    }
}

/// The same check as an I/O error, for use inside `Read`/`Write` code. Not of
/// kind `Interrupted`: `write_all` and `io::copy` retry those forever.
pub fn check_io() -> io::Result<()> {
    check().map_err(|e| io::Error::other(e.to_string()))
}

/// Turns an I/O error caused by a signal into `Error::Interrupted`.
pub fn explain(err: Error) -> Error {
    match check() {
        Err(interrupted) => interrupted,
        Ok(()) => err,
    }
}

/// A writer that stops at the first write after a signal.
pub struct Interruptible<W>(pub W);

impl<R: io::Read> io::Read for Interruptible<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        check_io()?;
        self.0.read(buf)
    }
}

impl<W: Write> Write for Interruptible<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        check_io()?;
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}
