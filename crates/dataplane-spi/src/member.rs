use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A data-plane replica as recorded in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// Stable name of the replica (`edc.runtime.id`); flows record it as their owner.
    pub runtime_id: String,
    /// Fresh id of this start of the replica.
    pub incarnation: String,
    /// Last successful heartbeat (store clock).
    pub heartbeat_at: DateTime<Utc>,
    /// The replica owns its flows until this instant (store clock).
    pub lease_expires_at: DateTime<Utc>,
    /// When this incarnation registered (store clock).
    pub started_at: DateTime<Utc>,
    /// Free-form lifecycle state reported by the replica (e.g. `HEALTHY`).
    pub state: String,
}

/// What a replica sends when it joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRegistration {
    /// Stable name.
    pub runtime_id: String,
    /// Fresh id of this start.
    pub incarnation: String,
    /// Lease length in milliseconds.
    pub lease_ms: i64,
    /// Initial lifecycle state.
    pub state: String,
}
