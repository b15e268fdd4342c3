//! Errors of the client library.

use tonic::Code;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The master answered with an error (its message says what to do).
    #[error("{message}")]
    Refused { code: Code, message: String },
    /// No master could be reached, or none led, before the deadline.
    #[error("no master answered ({tried}): {last}")]
    Unavailable { tried: String, last: String },
    #[error("{0}")]
    Invalid(String),
}

impl ClientError {
    pub fn code(&self) -> Option<Code> {
        match self {
            Self::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }
}
