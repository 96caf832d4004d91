use cluster::ClusterError;
use dataplane_spi::{CoordinationError, StoreError};

/// Failures of data-plane operations. Each variant is one kind of failure with a stable
/// [`code`](DataPlaneError::code); what that means on the wire (an HTTP status) is decided by
/// the API crate (`dataplane-api/src/error.rs`), never here. Client mistakes change nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataPlaneError {
    /// Malformed or unacceptable request.
    #[error("{0}")]
    InvalidInput(String),
    /// Missing or wrong credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// Unknown flow, dataset, control plane, key… (see [`DataPlaneError::not_found`]).
    #[error("{0}")]
    NotFound(String),
    /// Duplicate process id or illegal transition (see [`DataPlaneError::transition`]).
    #[error("{0}")]
    Conflict(String),
    /// More data than a limit allows, e.g. `dpf.transfer.max-bytes`.
    #[error("{0}")]
    TooLarge(String),
    /// The store or the flow's owner did not answer in time; retrying may help.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected backend answer.
    #[error("{0}")]
    Internal(String),
}

/// What a [`DataPlaneError::NotFound`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    /// A data flow (by id or process id).
    DataFlow,
    /// A registered dataset.
    Dataset,
    /// A registered control plane.
    ControlPlane,
    /// A key of the cluster key-value store.
    Key,
}

impl Entity {
    /// How messages name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DataFlow => "data flow",
            Self::Dataset => "dataset",
            Self::ControlPlane => "control plane",
            Self::Key => "key",
        }
    }
}

impl std::fmt::Display for Entity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl DataPlaneError {
    /// `<entity> '<id>' not found`: the one wording of a missing entity.
    pub fn not_found(entity: Entity, id: impl std::fmt::Display) -> Self {
        Self::NotFound(format!("{entity} '{id}' not found"))
    }

    /// The error of a refused state transition `action` (start, suspend, resume, complete…):
    /// the store's `WrongState` becomes "cannot <action> data flow '<id>': it is <state>"
    /// (a conflict); any other store error keeps its own meaning.
    pub fn transition(action: &str, error: StoreError) -> Self {
        match error {
            StoreError::WrongState { flow_id, state } => Self::illegal(action, &flow_id, &state),
            other => other.into(),
        }
    }

    /// "cannot <action> data flow '<id>': it is <state>" (a conflict).
    pub fn illegal(action: &str, flow_id: &str, state: &str) -> Self {
        Self::Conflict(format!(
            "cannot {action} data flow '{flow_id}': it is {state}"
        ))
    }

    /// A stable machine-readable code (the `code` of an error body).
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

/// The one mapping of coordination (KV, leadership, sessions) failures.
impl From<CoordinationError> for DataPlaneError {
    fn from(error: CoordinationError) -> Self {
        use CoordinationError as E;
        match error {
            E::Conflict { .. } | E::StaleTerm { .. } => Self::Conflict(error.to_string()),
            E::NotFound(_) => Self::NotFound(error.to_string()),
            E::InvalidInput(_) | E::Compacted { .. } | E::SessionGone(_) => {
                Self::InvalidInput(error.to_string())
            }
            E::Unavailable(_) => Self::Unavailable(error.to_string()),
            E::Internal(_) => Self::Internal(error.to_string()),
        }
    }
}

/// The cluster services' failures, with the wording the API has always shown: a name in use or
/// a replica of another cluster is a conflict, an INACTIVE cluster is unavailable (naming the
/// missing baseline members).
impl From<ClusterError> for DataPlaneError {
    fn from(error: ClusterError) -> Self {
        match error {
            ClusterError::NameInUse(message)
            | ClusterError::IdentityMismatch(message)
            | ClusterError::Conflict(message) => Self::Conflict(message),
            ClusterError::Inactive { missing } => {
                Self::Unavailable(cluster::baseline::inactive_message(&missing))
            }
            ClusterError::InvalidInput(message) => Self::InvalidInput(message),
            ClusterError::NotFound(message) => Self::NotFound(message),
            ClusterError::Unavailable(message) => Self::Unavailable(message),
            ClusterError::Internal(message) => Self::Internal(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_state_names_the_action() {
        let refused = StoreError::WrongState {
            flow_id: "f1".into(),
            state: "SUSPENDING".into(),
        };
        assert_eq!(
            DataPlaneError::transition("resume", refused),
            DataPlaneError::Conflict("cannot resume data flow 'f1': it is SUSPENDING".into())
        );
        let gone = StoreError::Unavailable("down".into());
        assert_eq!(
            DataPlaneError::transition("start", gone).code(),
            "UNAVAILABLE"
        );
    }

    #[test]
    fn not_found_names_the_entity() {
        assert_eq!(
            DataPlaneError::not_found(Entity::Dataset, "ds1").to_string(),
            "dataset 'ds1' not found"
        );
    }

    #[test]
    fn cluster_errors_keep_their_wording() {
        let inactive = ClusterError::Inactive {
            missing: vec!["r1".into(), "r2".into()],
        };
        assert_eq!(
            DataPlaneError::from(inactive),
            DataPlaneError::Unavailable(
                "the cluster is INACTIVE until every baseline member is online; missing: r1, r2"
                    .into()
            )
        );
        let taken = ClusterError::NameInUse("r1 is live".into());
        assert_eq!(
            DataPlaneError::from(taken),
            DataPlaneError::Conflict("r1 is live".into())
        );
    }
}
