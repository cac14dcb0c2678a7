//! The library's error type. Every message names the object and the cause, so
//! that the CLI can print it as the one line a user reads.

use std::io;

use crate::cmd::ExecError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller asked for something malformed (a name, an option value).
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Exists(String),
    /// Allowed in principle, refused by policy (a running container, an untrusted setting).
    #[error("{0}")]
    Refused(String),
    /// An archive that is broken or hostile.
    #[error("{0}")]
    Archive(String),
    /// Another operation holds what this one needs.
    #[error("{0}")]
    Busy(String),
    /// Interrupted by a signal.
    #[error("{0}")]
    Interrupted(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("{context}: {source}")]
    Exec {
        context: String,
        #[source]
        source: ExecError,
    },
}

impl Error {
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub fn exec(context: impl Into<String>, source: ExecError) -> Self {
        Error::Exec {
            context: context.into(),
            source,
        }
    }

    /// Prefixes the message with more context, keeping the kind.
    pub fn context(self, outer: impl std::fmt::Display) -> Self {
        match self {
            Error::Io { context, source } => Error::Io {
                context: format!("{outer}: {context}"),
                source,
            },
            Error::Exec { context, source } => Error::Exec {
                context: format!("{outer}: {context}"),
                source,
            },
            Error::Invalid(m) => Error::Invalid(format!("{outer}: {m}")),
            Error::NotFound(m) => Error::NotFound(format!("{outer}: {m}")),
            Error::Exists(m) => Error::Exists(format!("{outer}: {m}")),
            Error::Refused(m) => Error::Refused(format!("{outer}: {m}")),
            Error::Archive(m) => Error::Archive(format!("{outer}: {m}")),
            Error::Busy(m) => Error::Busy(format!("{outer}: {m}")),
            Error::Interrupted(m) => Error::Interrupted(format!("{outer}: {m}")),
        }
    }

    /// True for errors caused by the caller's input rather than by the system.
    pub fn is_usage(&self) -> bool {
        matches!(self, Error::Invalid(_))
    }
}

/// What went wrong, for callers that decide by it (the CLI's exit status,
/// a backend that treats "not found" as done).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Invalid,
    NotFound,
    Exists,
    Refused,
    Archive,
    Busy,
    Interrupted,
    Io,
    Exec,
}

impl Error {
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::Invalid(message.into())
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Error::NotFound(message.into())
    }
    pub fn exists(message: impl Into<String>) -> Self {
        Error::Exists(message.into())
    }
    pub fn refused(message: impl Into<String>) -> Self {
        Error::Refused(message.into())
    }
    pub fn archive(message: impl Into<String>) -> Self {
        Error::Archive(message.into())
    }
    pub fn busy(message: impl Into<String>) -> Self {
        Error::Busy(message.into())
    }
    pub fn interrupted(message: impl Into<String>) -> Self {
        Error::Interrupted(message.into())
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Invalid(_) => ErrorKind::Invalid,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::Exists(_) => ErrorKind::Exists,
            Error::Refused(_) => ErrorKind::Refused,
            Error::Archive(_) => ErrorKind::Archive,
            Error::Busy(_) => ErrorKind::Busy,
            Error::Interrupted(_) => ErrorKind::Interrupted,
            Error::Io { .. } => ErrorKind::Io,
            Error::Exec { .. } => ErrorKind::Exec,
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
