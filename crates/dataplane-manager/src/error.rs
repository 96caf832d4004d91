use dataplane_spi::StoreError;

/// Failures of data-plane operations. Each variant has one HTTP meaning (see
/// [`DataPlaneError::status`]); client mistakes are 4xx and change nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataPlaneError {
    /// Malformed or unacceptable request (400).
    #[error("{0}")]
    InvalidInput(String),
    /// Missing or wrong credentials (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Unknown flow, dataset or control plane (404).
    #[error("{0}")]
    NotFound(String),
    /// Duplicate process id or illegal transition (409).
    #[error("{0}")]
    Conflict(String),
    /// More data than a limit allows, e.g. `dpf.transfer.max-bytes` (413).
    #[error("{0}")]
    TooLarge(String),
    /// The store or the flow's owner did not answer in time (503); retrying may help.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected backend answer (500).
    #[error("{0}")]
    Internal(String),
}

impl DataPlaneError {
    /// The HTTP status code of this error.
    pub fn status(&self) -> u16 {
        match self {
            Self::InvalidInput(_) => 400,
            Self::Unauthorized(_) => 401,
            Self::NotFound(_) => 404,
            Self::Conflict(_) => 409,
            Self::TooLarge(_) => 413,
            Self::Unavailable(_) => 503,
            Self::Internal(_) => 500,
        }
    }

    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidInput(_) => "INVALID_INPUT",
            Self::Unauthorized(_) => "UNAUTHORIZED",
            Self::NotFound(_) => "NOT_FOUND",
            Self::Conflict(_) => "CONFLICT",
            Self::TooLarge(_) => "PAYLOAD_TOO_LARGE",
            Self::Unavailable(_) => "UNAVAILABLE",
            Self::Internal(_) => "INTERNAL",
        }
    }
}

impl From<StoreError> for DataPlaneError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound { entity, id } => {
                Self::NotFound(format!("{entity} '{id}' not found"))
            }
            StoreError::AlreadyExists { .. }
            | StoreError::WrongState { .. }
            | StoreError::Conflict(_) => Self::Conflict(error.to_string()),
            StoreError::InvalidInput(message) => Self::InvalidInput(message),
            StoreError::Unavailable(_)
            | StoreError::LeaseLost { .. }
            | StoreError::MembershipLost(_) => Self::Unavailable(error.to_string()),
            StoreError::Internal(message) => Self::Internal(message),
        }
    }
}
