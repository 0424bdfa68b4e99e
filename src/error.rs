//! The crate's error type: a kind a library user can match, a one-line message for the person at the
//! terminal, the underlying `io::Error` as its source, and the exit code the kind maps to.

use std::fmt;
use std::io;

/// What kind of thing went wrong; usage errors exit 2, everything else 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Bad flags or configuration values: the command line or the file must change.
    Usage,
    /// The address is already served (by another program, or by another udpd without `--share-port`).
    AddressInUse,
    /// The kernel refused for lack of privilege (a port below 1024, a user switch, a buffer size).
    PermissionDenied,
    /// No interface of this host has the address.
    AddressNotAvailable,
    /// Any other failure of the environment: a failed syscall, a thread that could not start.
    Io,
}

/// What went wrong, already phrased for the person at the terminal: one line naming the problem and the fix.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<io::Error>,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Bad flags or configuration (exit code 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Usage, message)
    }

    /// A failure of the environment with no more specific kind (exit code 1).
    pub fn runtime(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Io, message)
    }

    /// A failure caused by `source`, its kind taken from the `io::Error` (in use, permission, ...).
    pub fn io(message: impl Into<String>, source: io::Error) -> Self {
        let kind = match source.kind() {
            io::ErrorKind::AddrInUse => ErrorKind::AddressInUse,
            io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
            io::ErrorKind::AddrNotAvailable => ErrorKind::AddressNotAvailable,
            _ => ErrorKind::Io,
        };
        Error {
            kind,
            message: message.into(),
            source: Some(source),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The process exit code this error maps to: 2 for usage errors, 1 for the rest.
    pub fn exit_code(&self) -> u8 {
        match self.kind {
            ErrorKind::Usage => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|error| error as &(dyn std::error::Error + 'static))
    }
}

pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn kinds_follow_the_source_and_map_to_exit_codes() {
        let in_use = Error::io("cannot listen", io::Error::from(io::ErrorKind::AddrInUse));
        assert_eq!(in_use.kind(), ErrorKind::AddressInUse);
        assert_eq!(in_use.exit_code(), 1);
        assert!(in_use.source().is_some());
        let denied = Error::io("x", io::Error::from_raw_os_error(libc::EACCES));
        assert_eq!(denied.kind(), ErrorKind::PermissionDenied);
        let usage = Error::usage("--workers must be at least 1");
        assert_eq!((usage.kind(), usage.exit_code()), (ErrorKind::Usage, 2));
        assert!(usage.source().is_none());
        assert_eq!(usage.to_string(), "--workers must be at least 1");
    }
}
