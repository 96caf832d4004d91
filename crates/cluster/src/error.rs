//! The one error type of the cluster services.

use dataplane_spi::{CoordinationError, StoreError};

/// Failures of cluster services. What they mean on the wire is decided by the API crates.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// Another live replica already uses this name.
    #[error("{0}")]
    NameInUse(String),
    /// The replica's recorded cluster or baseline history does not match the cluster's.
    #[error("{0}")]
    IdentityMismatch(String),
    /// The cluster is INACTIVE, or baseline members are missing.
    #[error("the cluster is inactive; missing baseline members: {}", missing.join(", "))]
    Inactive {
        /// Baseline members that are not live.
        missing: Vec<String>,
    },
    /// A key (or another named thing) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A compare-and-set lost, a fencing token is stale, or a revision is gone.
    #[error("{0}")]
    Conflict(String),
    /// A malformed setting, key or request.
    #[error("{0}")]
    InvalidInput(String),
    /// The store did not answer; retrying may help.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected backend answer.
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for ClusterError {
    fn from(error: StoreError) -> Self {
        CoordinationError::from(error).into()
    }
}

impl From<CoordinationError> for ClusterError {
    fn from(error: CoordinationError) -> Self {
        match error {
            CoordinationError::InvalidInput(message) => Self::InvalidInput(message),
            CoordinationError::Unavailable(message) => Self::Unavailable(message),
            CoordinationError::Internal(message) => Self::Internal(message),
            CoordinationError::NotFound(key) => Self::NotFound(format!("key '{key}' not found")),
            other => Self::Conflict(other.to_string()),
        }
    }
}
