//! Why a probe failed, in words an operator can act on.

use std::time::Duration;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ProbeError {
    /// The URL or address could not be used at all (a configuration error, not a health result).
    #[error("invalid target {target:?}: {reason}")]
    Invalid { target: String, reason: String },
    #[error("cannot resolve {host:?}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("refused")]
    Refused,
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Io(String),
    #[error("invalid HTTP response: {0}")]
    BadResponse(String),
    #[error("{status}")]
    Status { status: u16 },
    #[error("{status}, but the body does not contain {expected:?}")]
    BodyMismatch { status: u16, expected: String },
}

impl ProbeError {
    pub(crate) fn from_io(err: std::io::Error, timeout: Duration) -> Self {
        use std::io::ErrorKind::*;
        match err.kind() {
            ConnectionRefused => ProbeError::Refused,
            TimedOut | WouldBlock => ProbeError::Timeout(timeout),
            _ => ProbeError::Io(err.to_string()),
        }
    }
}
