//! The library's error type: one shape for every failure, a kind, the message
//! a user reads (naming the object and the cause) and, for failures of the
//! system, the I/O or command error underneath. The CLI prints the whole chain
//! as one line; callers that decide by the failure look at [`Error::kind`].

use std::fmt;
use std::io;

use crate::cmd::ExecError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, for callers that decide by it (the CLI's exit status,
/// a backend that treats "not found" as done).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The caller asked for something malformed (a name, an option value).
    Invalid,
    NotFound,
    Exists,
    /// Allowed in principle, refused by policy (a running container, an untrusted setting).
    Refused,
    /// An archive that is broken or hostile.
    Archive,
    /// Another operation holds what this one needs.
    Busy,
    /// Interrupted by a signal.
    Interrupted,
    /// A system call failed.
    Io,
    /// An external program failed.
    Exec,
}

/// The failure underneath an error, kept typed so that callers can look at
/// an errno or a program's exit status without parsing the message.
#[derive(Debug)]
enum Source {
    Io(io::Error),
    Exec(ExecError),
}

#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Source>,
}

impl Error {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    pub fn exists(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Exists, message)
    }
    pub fn refused(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Refused, message)
    }
    pub fn archive(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Archive, message)
    }
    pub fn busy(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Busy, message)
    }
    pub fn interrupted(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Interrupted, message)
    }

    /// A failed system call on the object `context` names.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error {
            source: Some(Source::Io(source)),
            ..Self::new(ErrorKind::Io, context)
        }
    }

    /// A failed external program; `context` says what it was doing.
    pub fn exec(context: impl Into<String>, source: ExecError) -> Self {
        Error {
            source: Some(Source::Exec(source)),
            ..Self::new(ErrorKind::Exec, context)
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The same failure, classified otherwise (e.g. an I/O error while
    /// reading an archive's entry is the archive's fault); keeps the source.
    pub fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.kind = kind;
        self
    }

    /// Reclassifies errors of kind `from` as `to`, leaving others alone.
    pub fn reclassify(self, from: ErrorKind, to: ErrorKind) -> Self {
        if self.kind == from {
            self.with_kind(to)
        } else {
            self
        }
    }

    /// The I/O error underneath, by value; the error itself when it has none.
    pub fn into_io_source(self) -> std::result::Result<io::Error, Self> {
        match self.source {
            Some(Source::Io(e)) => Ok(e),
            source => Err(Error { source, ..self }),
        }
    }

    /// Prefixes the message with more context, keeping the kind and source.
    pub fn context(mut self, outer: impl fmt::Display) -> Self {
        self.message = format!("{outer}: {}", self.message);
        self
    }

    /// The message without the source's.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn io_source(&self) -> Option<&io::Error> {
        match &self.source {
            Some(Source::Io(e)) => Some(e),
            _ => None,
        }
    }

    pub fn exec_source(&self) -> Option<&ExecError> {
        match &self.source {
            Some(Source::Exec(e)) => Some(e),
            _ => None,
        }
    }

    /// True for errors caused by the caller's input rather than by the system.
    pub fn is_usage(&self) -> bool {
        self.kind == ErrorKind::Invalid
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        match &self.source {
            Some(Source::Io(e)) => write!(f, ": {e}"),
            Some(Source::Exec(e)) => write!(f, ": {e}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.source {
            Some(Source::Io(e)) => Some(e),
            Some(Source::Exec(e)) => Some(e),
            None => None,
        }
    }
}

/// Attaches context to I/O and command results.
pub trait Context<T> {
    fn ctx<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, io::Error> {
    fn ctx<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| Error::io(context(), e))
    }
}

impl<T> Context<T> for std::result::Result<T, ExecError> {
    fn ctx<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| Error::exec(context(), e))
    }
}

impl<T> Context<T> for Result<T> {
    fn ctx<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| e.context(context().into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keeps_kind_and_source() {
        let e = Error::io("reading /x", io::Error::from_raw_os_error(2))
            .context("container 'a'")
            .with_kind(ErrorKind::Archive);
        assert_eq!(e.kind(), ErrorKind::Archive);
        assert_eq!(e.io_source().and_then(io::Error::raw_os_error), Some(2));
        assert!(
            e.to_string().starts_with("container 'a': reading /x: "),
            "{e}"
        );
    }
}
