//! The one error type of the vault: a kind (the same list in Rust, C and
//! Python), a message for people, and an optional source.

use std::fmt;

/// What went wrong, as callers branch on it. Each kind maps one-to-one to an
/// `sv_status` in C and an exception class in Python.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No such subject, record, request or identifier.
    NotFound,
    /// The subject or record was erased (its key destroyed).
    Erased,
    /// The record's retention period ended and its day key was destroyed.
    Expired,
    /// The purpose is not allowed for this category or this subject.
    PurposeDenied,
    /// The subject's processing is restricted.
    Restricted,
    /// The subject is under legal hold: erasure is refused.
    LegalHold,
    /// A malformed argument: bad id, empty identifier, wrong key length...
    InvalidArgument,
    /// The policy file is invalid or does not fit the stored data.
    Policy,
    /// The root key does not open this vault.
    WrongKey,
    /// Another process (or handle) has the vault open.
    Locked,
    /// Stored bytes failed authentication, a checksum or decoding.
    Corrupt,
    /// The operating system refused a file operation.
    Io,
    /// A bug in shredvault.
    Internal,
    /// The caller is not granted this: an operation, a purpose, a category
    /// or privileged reads outside what the server's client list allows.
    Forbidden,
}

impl ErrorKind {
    /// The stable name of the kind, as used in messages and bindings.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "NotFound",
            ErrorKind::Erased => "Erased",
            ErrorKind::Expired => "Expired",
            ErrorKind::PurposeDenied => "PurposeDenied",
            ErrorKind::Restricted => "Restricted",
            ErrorKind::LegalHold => "LegalHold",
            ErrorKind::InvalidArgument => "InvalidArgument",
            ErrorKind::Policy => "Policy",
            ErrorKind::WrongKey => "WrongKey",
            ErrorKind::Locked => "Locked",
            ErrorKind::Corrupt => "Corrupt",
            ErrorKind::Io => "Io",
            ErrorKind::Internal => "Internal",
            ErrorKind::Forbidden => "Forbidden",
        }
    }

    /// Every kind, in the order of their C status numbers (starting at 1).
    pub const ALL: [ErrorKind; 14] = [
        ErrorKind::NotFound,
        ErrorKind::Erased,
        ErrorKind::Expired,
        ErrorKind::PurposeDenied,
        ErrorKind::Restricted,
        ErrorKind::LegalHold,
        ErrorKind::InvalidArgument,
        ErrorKind::Policy,
        ErrorKind::WrongKey,
        ErrorKind::Locked,
        ErrorKind::Corrupt,
        ErrorKind::Io,
        ErrorKind::Internal,
        ErrorKind::Forbidden,
    ];
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An error from the vault. Messages name ids, paths and policy keys, never
/// key bytes or record contents.
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub fn with_source(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error {
            kind,
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message without the kind prefix.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        Error::new(ErrorKind::NotFound, what)
    }
    pub(crate) fn invalid(what: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidArgument, what)
    }
    pub(crate) fn corrupt(what: impl Into<String>) -> Self {
        Error::new(ErrorKind::Corrupt, what)
    }
    pub(crate) fn internal(what: impl Into<String>) -> Self {
        Error::new(ErrorKind::Internal, what)
    }
    /// An `Io` error: what was being done, and the OS's reason.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        let what = what.into();
        Error::with_source(ErrorKind::Io, format!("{what}: {source}"), source)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
