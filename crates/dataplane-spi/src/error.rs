/// Result alias of store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// Failures of a [`crate::DataFlowStore`], translated from the backend at the store's edge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The entity does not exist.
    #[error("{entity} '{id}' not found")]
    NotFound {
        /// Kind of entity (`data flow`, `member`).
        entity: &'static str,
        /// Its id.
        id: String,
    },
    /// An entity with this id (or another unique key) exists already.
    #[error("{entity} '{id}' already exists")]
    AlreadyExists {
        /// Kind of entity.
        entity: &'static str,
        /// The clashing key.
        id: String,
    },
    /// A fenced write matched nothing: the writer is no longer the owner at that epoch.
    /// The writer must stop working on the flow at once.
    #[error("lease lost on data flow '{flow_id}': not owned by '{runtime_id}' at epoch {epoch} any more")]
    LeaseLost {
        /// The flow.
        flow_id: String,
        /// The runtime that tried to write.
        runtime_id: String,
        /// The epoch it held.
        epoch: i64,
    },
    /// The flow is not in a state the operation starts from.
    #[error("data flow '{flow_id}' is {state}")]
    WrongState {
        /// The flow.
        flow_id: String,
        /// Its current state.
        state: String,
    },
    /// The replica's membership is gone or held by another incarnation.
    #[error("membership lost: {0}")]
    MembershipLost(String),
    /// The operation conflicts with the current state (e.g. a live replica already uses the name).
    #[error("{0}")]
    Conflict(String),
    /// Bad input to the store (e.g. an unknown state name read back).
    #[error("{0}")]
    InvalidInput(String),
    /// The backend is unreachable or busy; retrying later may succeed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Anything else.
    #[error("internal store error: {0}")]
    Internal(String),
}

impl StoreError {
    /// Whether retrying the same operation later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}
