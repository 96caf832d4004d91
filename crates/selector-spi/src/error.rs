use serde::{Deserialize, Serialize};

/// Result alias used throughout the selector.
pub type SelectorResult<T> = Result<T, SelectorError>;

/// Every failure the selector can report.
///
/// Each variant has a stable [`ErrorCode`] so that the REST API and the remote client
/// translate errors both ways without losing their kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The request was malformed or violated a rule (bad URL, missing field, ...).
    #[error("{0}")]
    InvalidInput(String),
    /// No instance with this id exists.
    #[error("data plane '{id}' not found")]
    NotFound {
        /// The id that was asked for.
        id: String,
    },
    /// An instance with this id exists already (create-only operations).
    #[error("data plane '{id}' already exists")]
    AlreadyExists {
        /// The id that clashed.
        id: String,
    },
    /// No registered instance can handle the request.
    #[error("no data plane can handle {0}")]
    NoMatch(String),
    /// The strategy name is not registered.
    #[error("unknown selection strategy '{name}'; known strategies: {}", known.join(", "))]
    UnknownStrategy {
        /// The name that was asked for.
        name: String,
        /// Every registered name, sorted.
        known: Vec<String>,
    },
    /// A backend (database, remote selector) is not reachable right now; retrying may help.
    #[error("selector unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug or an unexpected backend answer.
    #[error("internal selector error: {0}")]
    Internal(String),
}

/// Stable, machine-readable error codes (the `code` field of the API's JSON errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// [`SelectorError::InvalidInput`]
    InvalidInput,
    /// [`SelectorError::NotFound`]
    NotFound,
    /// [`SelectorError::AlreadyExists`]
    AlreadyExists,
    /// [`SelectorError::NoMatch`]
    NoMatch,
    /// [`SelectorError::UnknownStrategy`]
    UnknownStrategy,
    /// [`SelectorError::Unavailable`]
    Unavailable,
    /// [`SelectorError::Internal`]
    Internal,
}

impl SelectorError {
    /// The stable code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidInput(_) => ErrorCode::InvalidInput,
            Self::NotFound { .. } => ErrorCode::NotFound,
            Self::AlreadyExists { .. } => ErrorCode::AlreadyExists,
            Self::NoMatch(_) => ErrorCode::NoMatch,
            Self::UnknownStrategy { .. } => ErrorCode::UnknownStrategy,
            Self::Unavailable(_) => ErrorCode::Unavailable,
            Self::Internal(_) => ErrorCode::Internal,
        }
    }

    /// Whether the same call may succeed later without any change by the caller.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}
