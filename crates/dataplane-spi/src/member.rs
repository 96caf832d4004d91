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

/// What a replica publishes with every lease renewal (same statement, no extra write per flow):
/// its load, and how a selector reaches it. Unknown fields are ignored, new ones default.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LoadReport {
    /// Transfers running on the replica.
    pub running: u64,
    /// Most transfers it runs at once (`dpf.dataplane.max-concurrent-flows`); 0 = unlimited.
    pub capacity: u64,
    /// Bytes per second moved over the last reporting interval.
    pub bytes_per_second: u64,
    /// DPS transfer profiles it supports.
    pub profiles: Vec<String>,
    /// Data-plane id it registers with a selector (its runtime id when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataplane_id: Option<String>,
    /// Base URL of its DPS signaling API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Its labels.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// Source types it reads (empty = any).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_source_types: Vec<String>,
}

/// A member with the last load report it wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberLoad {
    /// The member row.
    pub member: Member,
    /// Its last report; `None` before its first reporting renewal.
    pub report: Option<LoadReport>,
    /// When the report was written (store clock).
    pub reported_at: Option<DateTime<Utc>>,
}

/// Every member with its load, as of the store's `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberLoads {
    /// The store's clock when read.
    pub now: DateTime<Utc>,
    /// Members sorted by runtime id.
    pub members: Vec<MemberLoad>,
}
