//! The errors the master's API answers with, each mapped once to a gRPC status.

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};
use wasmgrid_proto::LEADER_METADATA;

use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// This master is not the leader; `leader` is the leader's client address when known.
    #[error("this master is not the leader{}", leader_hint(.leader))]
    NotLeader { leader: Option<String> },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    Unavailable(String),
    /// Not done in time, and not safe to retry blindly (it may still take effect).
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("internal error: {0}")]
    Internal(String),
}

fn leader_hint(leader: &Option<String>) -> String {
    match leader {
        Some(l) if !l.is_empty() => format!("; the leader is {l}"),
        _ => "; no leader is known yet, retry shortly".to_string(),
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        let code = match &e {
            ApiError::NotLeader { .. } | ApiError::Unavailable(_) => Code::Unavailable,
            ApiError::InvalidArgument(_) => Code::InvalidArgument,
            ApiError::NotFound(_) => Code::NotFound,
            ApiError::FailedPrecondition(_) => Code::FailedPrecondition,
            ApiError::ResourceExhausted(_) => Code::ResourceExhausted,
            ApiError::DeadlineExceeded(_) => Code::DeadlineExceeded,
            ApiError::Storage(_) | ApiError::Internal(_) => Code::Internal,
        };
        let mut status = Status::new(code, e.to_string());
        if let ApiError::NotLeader { leader: Some(addr) } = &e {
            if let Ok(v) = MetadataValue::try_from(addr.as_str()) {
                status.metadata_mut().insert(LEADER_METADATA, v);
            }
        }
        status
    }
}
