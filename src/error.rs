//! The crate's error type: a usage error (exit 2) or a runtime error (exit 1), each one printable line.

use std::fmt;

/// What went wrong, already phrased for the person at the terminal: one line naming the problem and the fix.
#[derive(Debug)]
pub enum Error {
    /// Bad flags, bad configuration values: the command line must change. Exit code 2.
    Usage(String),
    /// The environment refused: address in use, permission denied, a failed syscall. Exit code 1.
    Runtime(String),
}

impl Error {
    /// The process exit code this error maps to.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            Error::Runtime(_) => 1,
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Error::Usage(message.into())
    }

    pub fn runtime(message: impl Into<String>) -> Self {
        Error::Runtime(message.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(message) | Error::Runtime(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
