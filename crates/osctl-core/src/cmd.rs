//! The one way this crate runs external programs (`zfs`, `btrfs`, `lxc-*`).
//!
//! Argument vectors only, never shell strings. A child's stderr is always drained
//! on its own thread so that a chatty child cannot block on a full pipe, and a
//! non-zero exit becomes an [`ExecError`] that carries the command line, the exit
//! status and the end of stderr.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How much of a child's stderr is kept for the error message.
const STDERR_TAIL: usize = 16 * 1024;

/// How often [`Cmd::run_with_files`] looks at its child and calls its `poll`.
const POLL_INTERVAL: Duration = Duration::from_millis(5);

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed ({status}){}", stderr_suffix(stderr))]
    Failed {
        command: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error("`{command}`: {source}")]
    Io {
        command: String,
        #[source]
        source: io::Error,
    },
}

fn stderr_suffix(stderr: &str) -> String {
    let line = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    if line.is_empty() {
        String::new()
    } else {
        format!(": {line}")
    }
}

impl ExecError {
    /// The child's stderr, when it ran and failed.
    pub fn stderr(&self) -> &str {
        match self {
            ExecError::Failed { stderr, .. } => stderr,
            _ => "",
        }
    }

    /// True when the program itself is not installed.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ExecError::Spawn { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    pub fn into_io(self) -> io::Error {
        match self {
            ExecError::Spawn { source, .. } | ExecError::Io { source, .. }
                if source.kind() != io::ErrorKind::Other =>
            {
                source
            }
            other => io::Error::other(other),
        }
    }
}

static TRACE: AtomicBool = AtomicBool::new(false);

/// Makes every command print itself, its duration and its outcome to
/// stderr when it ends (`osctl --debug`).
pub fn trace_commands(on: bool) {
    TRACE.store(on, Ordering::Relaxed);
}

/// Prints a finished command when tracing.
fn trace(cmd: &Cmd, started: Instant, outcome: &dyn std::fmt::Display) {
    if TRACE.load(Ordering::Relaxed) {
        let ms = started.elapsed().as_millis();
        eprintln!("osctl: ran {} ({ms} ms, {outcome})", cmd.display());
    }
}

/// A command line to run: a program and its arguments.
#[derive(Debug, Clone)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
}

impl Cmd {
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Cmd {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// The command line as a human reads it, for error messages.
    pub fn display(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    fn spawn_with(&self, stdin: Stdio, stdout: Stdio) -> Result<Child, ExecError> {
        let mut command = self.command();
        command.stdin(stdin).stdout(stdout).stderr(Stdio::piped());
        // A sender or receiver outliving a killed osctl would hold what the
        // recovery must undo (btrfs refuses to delete a snapshot being sent).
        die_with_parent(&mut command);
        self.spawn(&mut command)
    }

    fn spawn(&self, command: &mut Command) -> Result<Child, ExecError> {
        let started = Instant::now();
        command.spawn().map_err(|source| {
            trace(self, started, &format_args!("cannot start: {source}"));
            ExecError::Spawn {
                command: self.display(),
                source,
            }
        })
    }

    /// Runs to completion and returns stdout. Non-zero exit is an error.
    pub fn run(&self) -> Result<String, ExecError> {
        let started = Instant::now();
        let mut child = self.spawn_with(Stdio::null(), Stdio::piped())?;
        let stderr = StderrDrain::start(&mut child);
        let mut out = Vec::new();
        let read = child
            .stdout
            .take()
            .expect("stdout is piped")
            .read_to_end(&mut out);
        let status = child.wait();
        let stderr = stderr.collect();
        let status = status.map_err(|source| self.io_error(source))?;
        read.map_err(|source| self.io_error(source))?;
        self.check(status, stderr, started)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// Runs with stdout and stderr inherited (output goes to the user) and
    /// returns the exit status, whatever it is.
    pub fn run_inherited(&self) -> Result<ExitStatus, ExecError> {
        let started = Instant::now();
        let status = self.spawn(&mut self.command())?.wait();
        let status = status.map_err(|source| self.io_error(source))?;
        trace(self, started, &status);
        Ok(status)
    }

    /// Runs with stdin and stdout connected to files (`None`: `/dev/null`),
    /// e.g. `zfs send` writing straight into an archive, or `zfs recv` reading
    /// from one: no pipe, no copy through us. The child gets duplicates of the
    /// handles, sharing their file offsets, so the caller sees how far it got.
    ///
    /// While the child runs, `poll` is called every few milliseconds (to check
    /// for an interrupt, to report progress); an error from it kills the child
    /// and is returned as [`ExecError::Io`]. The child is also killed if the
    /// thread waiting for it dies: unlike a pipe's reader, a file does not stop
    /// a writer whose consumer is gone. A non-zero exit is [`ExecError::Failed`].
    pub fn run_with_files(
        &self,
        stdin: Option<&File>,
        stdout: Option<&File>,
        mut poll: impl FnMut() -> io::Result<()>,
    ) -> Result<(), ExecError> {
        let stdio = |file: Option<&File>| -> Result<Stdio, ExecError> {
            match file {
                Some(file) => file
                    .try_clone()
                    .map(Stdio::from)
                    .map_err(|e| self.io_error(e)),
                None => Ok(Stdio::null()),
            }
        };
        let mut command = self.command();
        command
            .stdin(stdio(stdin)?)
            .stdout(stdio(stdout)?)
            .stderr(Stdio::piped());
        die_with_parent(&mut command);
        let started = Instant::now();
        let mut child = self.spawn(&mut command)?;
        let stderr = StderrDrain::start(&mut child);
        loop {
            let outcome = poll().and_then(|()| child.try_wait());
            match outcome {
                Ok(Some(status)) => return self.check(status, stderr.collect(), started),
                Ok(None) => std::thread::sleep(POLL_INTERVAL),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    // Not collected: what the child started may still hold
                    // its stderr open; the drain thread ends with them.
                    drop(stderr);
                    trace(self, started, &format_args!("killed: {e}"));
                    return Err(self.io_error(e));
                }
            }
        }
    }

    /// Starts the program with its stdout readable as a stream.
    pub fn spawn_reader(&self) -> Result<ChildReader, ExecError> {
        let started = Instant::now();
        let mut child = self.spawn_with(Stdio::null(), Stdio::piped())?;
        let stderr = StderrDrain::start(&mut child);
        let stdout = child.stdout.take().expect("stdout is piped");
        Ok(ChildReader {
            cmd: self.clone(),
            started,
            child: Some(child),
            stdout,
            stderr: Some(stderr),
        })
    }

    /// Starts the program with its stdin writable as a stream; stdout is captured.
    pub fn spawn_writer(&self) -> Result<ChildWriter, ExecError> {
        let started = Instant::now();
        let mut child = self.spawn_with(Stdio::piped(), Stdio::piped())?;
        let stderr = StderrDrain::start(&mut child);
        let stdout = child.stdout.take().expect("stdout is piped");
        let stdout = std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = { stdout }.take(STDERR_TAIL as u64).read_to_end(&mut out);
            out
        });
        let stdin = child.stdin.take().expect("stdin is piped");
        Ok(ChildWriter {
            cmd: self.clone(),
            started,
            child: Some(child),
            stdin: Some(stdin),
            stdout: Some(stdout),
            stderr: Some(stderr),
        })
    }

    fn io_error(&self, source: io::Error) -> ExecError {
        ExecError::Io {
            command: self.display(),
            source,
        }
    }

    fn check(&self, status: ExitStatus, stderr: String, started: Instant) -> Result<(), ExecError> {
        trace(self, started, &status);
        if status.success() {
            Ok(())
        } else {
            Err(ExecError::Failed {
                command: self.display(),
                status,
                stderr,
            })
        }
    }
}

/// How far a child got through a file whose offset it shares (a handle given
/// to [`Cmd::run_with_files`]): for progress while it runs, and to see where
/// it stopped.
pub struct OffsetWatch<'a> {
    file: &'a File,
    last: u64,
}

impl<'a> OffsetWatch<'a> {
    pub fn new(file: &'a File) -> io::Result<Self> {
        let mut watch = OffsetWatch { file, last: 0 };
        watch.last = watch.offset()?;
        Ok(watch)
    }

    /// The file's offset now.
    pub fn offset(&self) -> io::Result<u64> {
        let mut shared = self.file;
        shared.stream_position()
    }

    /// Bytes the offset moved forward since the last call (or the start).
    pub fn advance(&mut self) -> io::Result<u64> {
        let now = self.offset()?;
        let moved = now.saturating_sub(self.last);
        self.last = self.last.max(now);
        Ok(moved)
    }
}

/// Collects a child's stderr on a thread, keeping the last [`STDERR_TAIL`] bytes.
struct StderrDrain(Option<JoinHandle<Vec<u8>>>);

impl StderrDrain {
    fn start(child: &mut Child) -> Self {
        let Some(mut pipe) = child.stderr.take() else {
            return StderrDrain(None);
        };
        StderrDrain(Some(std::thread::spawn(move || {
            let mut tail = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        tail.extend_from_slice(&buf[..n]);
                        if tail.len() > 2 * STDERR_TAIL {
                            tail.drain(..tail.len() - STDERR_TAIL);
                        }
                    }
                }
            }
            if tail.len() > STDERR_TAIL {
                tail.drain(..tail.len() - STDERR_TAIL);
            }
            tail
        })))
    }

    fn collect(mut self) -> String {
        let bytes = self
            .0
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// A running child whose stdout is read as a stream (e.g. `zfs send`).
///
/// End of stream waits for the child; a non-zero exit then surfaces as a read
/// error carrying the [`ExecError`], so a dying sender is never mistaken for a
/// complete stream. Dropping it unfinished kills the child.
pub struct ChildReader {
    cmd: Cmd,
    started: Instant,
    child: Option<Child>,
    stdout: ChildStdout,
    stderr: Option<StderrDrain>,
}

impl ChildReader {
    /// Copies the whole stream into `out`. File to pipe and pipe to file copies
    /// go through `splice(2)` in the standard library, without a userspace copy.
    pub fn copy_to_file(&mut self, out: &mut File) -> io::Result<u64> {
        let n = io::copy(&mut self.stdout, out)?;
        self.finish().map_err(ExecError::into_io)?;
        Ok(n)
    }

    /// Like [`ChildReader::copy_to_file`], in `splice(2)` chunks with `check`
    /// called between them, so that a signal (which makes a blocked splice
    /// return `EINTR`) can stop the copy.
    pub fn splice_to_file(
        &mut self,
        out: &mut File,
        mut check: impl FnMut() -> io::Result<()>,
    ) -> io::Result<u64> {
        const CHUNK: usize = 4 << 20;
        let mut total = 0u64;
        loop {
            check()?;
            match rustix::pipe::splice(
                &self.stdout,
                None,
                &*out,
                None,
                CHUNK,
                rustix::pipe::SpliceFlags::MOVE,
            ) {
                Ok(0) => break,
                Ok(n) => total += n as u64,
                Err(rustix::io::Errno::INTR) => continue,
                // Not splice-able (e.g. an O_APPEND file): the plain copy.
                Err(rustix::io::Errno::INVAL) if total == 0 => return self.copy_to_file(out),
                Err(e) => return Err(e.into()),
            }
        }
        self.finish().map_err(ExecError::into_io)?;
        Ok(total)
    }

    /// Raises the pipe's capacity (fewer wake-ups on large streams). Best effort.
    pub fn enlarge_pipe(&self, bytes: usize) {
        let _ = rustix::pipe::fcntl_setpipe_size(&self.stdout, bytes);
    }

    /// Waits for the child and checks its exit status.
    pub fn finish(&mut self) -> Result<(), ExecError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let status = child.wait().map_err(|e| self.cmd.io_error(e))?;
        let stderr = self
            .stderr
            .take()
            .map(StderrDrain::collect)
            .unwrap_or_default();
        self.cmd.check(status, stderr, self.started)
    }
}

impl Read for ChildReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stdout.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.finish().map_err(ExecError::into_io)?;
        }
        Ok(n)
    }
}

impl Drop for ChildReader {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A running child fed on its stdin (e.g. `zfs recv`). Call [`ChildWriter::finish`]
/// to close the input and check the exit status; dropping it unfinished kills
/// the child.
pub struct ChildWriter {
    cmd: Cmd,
    started: Instant,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<StderrDrain>,
}

impl ChildWriter {
    /// Raises the pipe's capacity (fewer wake-ups on large streams). Best effort.
    pub fn enlarge_pipe(&self, bytes: usize) {
        if let Some(stdin) = &self.stdin {
            let _ = rustix::pipe::fcntl_setpipe_size(stdin, bytes);
        }
    }

    /// The child's stdin, for `io::copy` from a file (zero-copy `splice`).
    pub fn stdin(&mut self) -> &mut ChildStdin {
        self.stdin.as_mut().expect("stdin is open until finish")
    }

    /// Closes the child's input, waits for it and returns its stdout.
    pub fn finish(mut self) -> Result<String, ExecError> {
        drop(self.stdin.take());
        let mut child = self.child.take().expect("finish runs once");
        let status = child.wait().map_err(|e| self.cmd.io_error(e))?;
        let stdout = self
            .stdout
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let stderr = self
            .stderr
            .take()
            .map(StderrDrain::collect)
            .unwrap_or_default();
        self.cmd.check(status, stderr, self.started)?;
        Ok(String::from_utf8_lossy(&stdout).into_owned())
    }

    /// Turns a write error into the child's own error when the child has died
    /// (a broken pipe says less than "cannot receive: ...").
    pub fn explain(mut self, err: io::Error) -> ExecError {
        drop(self.stdin.take());
        if let Some(mut child) = self.child.take() {
            if let Ok(status) = child.wait() {
                let stderr = self
                    .stderr
                    .take()
                    .map(StderrDrain::collect)
                    .unwrap_or_default();
                if let Err(e) = self.cmd.check(status, stderr, self.started) {
                    return e;
                }
            }
        }
        self.cmd.io_error(err)
    }
}

impl Write for ChildWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stdin().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stdin().flush()
    }
}

impl Drop for ChildWriter {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Has the child killed when this process dies, SIGKILL included. A child
/// whose parent died before the request took effect does not start.
fn die_with_parent(command: &mut Command) {
    let parent = rustix::process::getpid();
    // SAFETY: the closure runs between fork and exec and makes only
    // async-signal-safe system calls (prctl, getppid), no allocation.
    unsafe {
        command.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
            if rustix::process::getppid() != Some(parent) {
                return Err(io::Error::other("the parent process is gone"));
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_returns_stdout() {
        assert_eq!(Cmd::new("echo").arg("hi").run().unwrap(), "hi\n");
    }

    #[test]
    fn failure_carries_command_and_stderr() {
        let err = Cmd::new("sh")
            .args(["-c", "echo nope >&2; exit 3"])
            .run()
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("sh -c"), "{msg}");
        assert!(msg.contains("nope"), "{msg}");
        assert!(matches!(err, ExecError::Failed { .. }));
    }

    #[test]
    fn missing_program_is_spawn_error() {
        let err = Cmd::new("/nonexistent/prog").run().unwrap_err();
        assert!(err.is_not_found());
    }

    #[test]
    fn reader_reports_dying_child_at_eof() {
        let mut r = Cmd::new("sh")
            .args(["-c", "echo partial; echo broken >&2; exit 1"])
            .spawn_reader()
            .unwrap();
        let mut out = String::new();
        let err = r.read_to_string(&mut out).unwrap_err();
        assert!(err.to_string().contains("broken"), "{err}");
    }

    #[test]
    fn splice_copies_everything_and_checks_exit() {
        let dir = tempfile::tempdir().unwrap();
        let mut out = File::create(dir.path().join("out")).unwrap();
        let mut r = Cmd::new("head")
            .args(["-c", "10000000", "/dev/zero"])
            .spawn_reader()
            .unwrap();
        assert_eq!(r.splice_to_file(&mut out, || Ok(())).unwrap(), 10_000_000);
        assert_eq!(out.metadata().unwrap().len(), 10_000_000);
        let mut r = Cmd::new("sh")
            .args(["-c", "echo x; exit 2"])
            .spawn_reader()
            .unwrap();
        assert!(r.splice_to_file(&mut out, || Ok(())).is_err());
        let mut r = Cmd::new("sleep").arg("10").spawn_reader().unwrap();
        let stop = r
            .splice_to_file(&mut out, || Err(io::Error::other("stop")))
            .unwrap_err();
        assert_eq!(stop.to_string(), "stop");
    }

    #[test]
    fn files_as_stdin_and_stdout_share_their_offsets() {
        use std::io::{Seek, SeekFrom};
        let dir = tempfile::tempdir().unwrap();
        let mut input = File::create_new(dir.path().join("in")).unwrap();
        input.write_all(b"skip:0123456789rest").unwrap();
        let input = File::open(dir.path().join("in")).unwrap();
        (&input).seek(SeekFrom::Start(5)).unwrap();
        let mut output = File::create_new(dir.path().join("out")).unwrap();
        output.write_all(b"head:").unwrap();
        let mut written = OffsetWatch::new(&output).unwrap();
        let mut seen = 0;
        Cmd::new("head")
            .args(["-c", "10"])
            .run_with_files(Some(&input), Some(&output), || {
                seen += written.advance()?;
                Ok(())
            })
            .unwrap();
        seen += written.advance().unwrap();
        assert_eq!(seen, 10);
        // Both offsets moved by what the child read and wrote.
        assert_eq!((&input).stream_position().unwrap(), 15);
        assert_eq!(output.stream_position().unwrap(), 15);
        output.write_all(b":tail").unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("out")).unwrap(),
            b"head:0123456789:tail"
        );
    }

    #[test]
    fn files_run_reports_failure_and_writes_nothing_more() {
        let dir = tempfile::tempdir().unwrap();
        let output = File::create_new(dir.path().join("out")).unwrap();
        let err = Cmd::new("sh")
            .args(["-c", "printf abc; echo broke >&2; exit 4"])
            .run_with_files(None, Some(&output), || Ok(()))
            .unwrap_err();
        assert!(matches!(err, ExecError::Failed { .. }), "{err}");
        assert!(err.to_string().contains("broke"), "{err}");
        assert_eq!(std::fs::read(dir.path().join("out")).unwrap(), b"abc");
    }

    #[test]
    fn files_run_stops_when_poll_fails() {
        let started = std::time::Instant::now();
        let mut polls = 0;
        let err = Cmd::new("sleep")
            .arg("10")
            .run_with_files(None, None, || {
                polls += 1;
                if polls > 3 {
                    Err(io::Error::other("interrupted by SIGINT"))
                } else {
                    Ok(())
                }
            })
            .unwrap_err();
        assert!(matches!(err, ExecError::Io { .. }), "{err}");
        assert!(err.to_string().contains("SIGINT"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn chatty_stderr_does_not_block() {
        // 1 MiB on stderr would fill a pipe many times over.
        let out = Cmd::new("sh")
            .args(["-c", "head -c 1048576 /dev/zero >&2; echo done"])
            .run()
            .unwrap();
        assert_eq!(out, "done\n");
    }

    #[test]
    fn writer_feeds_stdin() {
        let mut w = Cmd::new("wc").arg("-c").spawn_writer().unwrap();
        w.write_all(&[0u8; 100_000]).unwrap();
        assert_eq!(w.finish().unwrap().trim(), "100000");
    }

    #[test]
    fn pipes_to_and_from_children_can_be_enlarged() {
        let mut w = Cmd::new("wc").arg("-c").spawn_writer().unwrap();
        w.enlarge_pipe(1 << 20);
        assert!(rustix::pipe::fcntl_getpipe_size(w.stdin()).unwrap() >= 1 << 20);
        w.write_all(&[0u8; 2 << 20]).unwrap();
        assert_eq!(w.finish().unwrap().trim(), "2097152");
        let r = Cmd::new("true").spawn_reader().unwrap();
        r.enlarge_pipe(1 << 20);
        assert!(rustix::pipe::fcntl_getpipe_size(&r.stdout).unwrap() >= 1 << 20);
    }
}
