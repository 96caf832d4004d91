//! Baseline topology: a versioned set of replica names that own work, kept in the cluster's
//! key-value store.
//!
//! | key | value |
//! |---|---|
//! | `dpf/cluster/id` | the cluster's id (created by the first replica) |
//! | `dpf/cluster/baseline` | `{"version": n, "members": [...], "history": "<hash>"}` |
//! | `dpf/cluster/state` | `ACTIVE` or `INACTIVE` |
//! | `dpf/cluster/baseline.auto-adjust` | `{"enabled": bool, "timeoutMs": n}` |
//!
//! Without a baseline every replica may own work (the cluster is ACTIVE). With one, the
//! cluster is INACTIVE until every baseline member is online, then activates by itself; only
//! baseline members of an ACTIVE cluster claim flows; other replicas stay IDLE. A member that
//! leaves does not change the baseline. `history` chains every version's hash, so a replica
//! can tell whether the baseline it last saw is part of this cluster's history.

use std::collections::BTreeSet;

use dataplane_spi::{Coordinator, DataFlowStore};
use serde::{Deserialize, Serialize};

/// The cluster id key.
pub const CLUSTER_ID_KEY: &str = "dpf/cluster/id";
/// The baseline key.
pub const BASELINE_KEY: &str = "dpf/cluster/baseline";
/// The cluster state key.
pub const STATE_KEY: &str = "dpf/cluster/state";
/// The auto-adjust settings key.
pub const AUTO_ADJUST_KEY: &str = "dpf/cluster/baseline.auto-adjust";

/// A version of the baseline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Baseline {
    /// +1 at every change.
    pub version: u64,
    /// Replica names, sorted.
    pub members: BTreeSet<String>,
    /// Hash chaining every version so far.
    pub history: String,
}

impl Baseline {
    /// The first version.
    pub fn first(members: BTreeSet<String>) -> Self {
        let history = chain("", 1, &members);
        Self {
            version: 1,
            members,
            history,
        }
    }

    /// The next version with `members`.
    pub fn next(&self, members: BTreeSet<String>) -> Self {
        let version = self.version + 1;
        Self {
            history: chain(&self.history, version, &members),
            version,
            members,
        }
    }
}

/// FNV-1a 64 over the previous hash, the version and the members: stable across builds and
/// platforms (unlike std's hasher).
fn chain(previous: &str, version: u64, members: &BTreeSet<String>) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    feed(previous.as_bytes());
    feed(&version.to_le_bytes());
    for member in members {
        feed(member.as_bytes());
        feed(&[0]);
    }
    format!("{hash:016x}")
}

/// Auto-adjust settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct AutoAdjust {
    /// Whether the leader adjusts the baseline to the live replicas.
    pub enabled: bool,
    /// How long membership must be stable first, in milliseconds.
    pub timeout_ms: u64,
}

/// Whether the cluster runs work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClusterState {
    /// Baseline members are missing (or an operator deactivated it): no new work.
    Inactive,
    /// Running.
    Active,
}

impl ClusterState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inactive => "INACTIVE",
            Self::Active => "ACTIVE",
        }
    }
}

/// What a replica records in its data directory about the cluster it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalRecord {
    /// The cluster's id.
    pub cluster_id: String,
    /// The last baseline version this replica saw.
    pub baseline_version: u64,
    /// Its history hash.
    pub history: String,
}

/// The cluster as one replica sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// The baseline, if one was set.
    pub baseline: Option<(Baseline, i64)>,
    /// ACTIVE without a baseline.
    pub state: ClusterState,
}

impl Topology {
    /// Whether `name` may own work.
    pub fn may_own(&self, name: &str) -> bool {
        match &self.baseline {
            None => true,
            Some((baseline, _)) => {
                self.state == ClusterState::Active && baseline.members.contains(name)
            }
        }
    }
}

/// What `GET /cluster/baseline` shows.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BaselineView {
    /// The cluster's id.
    pub cluster_id: String,
    /// ACTIVE or INACTIVE.
    pub state: &'static str,
    /// The baseline version (0: no baseline, every replica may own work).
    pub version: u64,
    /// Its history hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<String>,
    /// Baseline members and whether each is online.
    pub members: Vec<BaselineMember>,
    /// Live replicas outside the baseline (IDLE).
    pub others: Vec<String>,
    /// Auto-adjust settings.
    pub auto_adjust: AutoAdjust,
}

/// One baseline member.
#[derive(Debug, Clone, Serialize)]
pub struct BaselineMember {
    /// Replica name.
    pub name: String,
    /// Whether it is online (valid lease).
    pub online: bool,
}

fn read_json<T: serde::de::DeserializeOwned>(value: &str, key: &str) -> crate::Result<T> {
    serde_json::from_str(value).map_err(|e| {
        dataplane_spi::CoordinationError::Internal(format!("corrupt {key}: {e}")).into()
    })
}

/// The baseline and its key's version, if one was set.
pub(crate) async fn read_baseline(
    coordinator: &dyn Coordinator,
) -> crate::Result<Option<(Baseline, i64)>> {
    match coordinator.kv_get(BASELINE_KEY).await? {
        Some(entry) => Ok(Some((
            read_json(&entry.value, BASELINE_KEY)?,
            entry.version,
        ))),
        None => Ok(None),
    }
}

/// The cluster state and its key's version (ACTIVE and 0 when never set).
pub(crate) async fn read_state(
    coordinator: &dyn Coordinator,
) -> crate::Result<(ClusterState, i64)> {
    match coordinator.kv_get(STATE_KEY).await? {
        Some(entry) if entry.value.starts_with("INACTIVE") => {
            Ok((ClusterState::Inactive, entry.version))
        }
        Some(entry) => Ok((ClusterState::Active, entry.version)),
        None => Ok((ClusterState::Active, 0)),
    }
}

/// The auto-adjust settings and their key's version (disabled and 0 when never set).
pub(crate) async fn read_auto_adjust(
    coordinator: &dyn Coordinator,
) -> crate::Result<(AutoAdjust, i64)> {
    match coordinator.kv_get(AUTO_ADJUST_KEY).await? {
        Some(entry) => Ok((read_json(&entry.value, AUTO_ADJUST_KEY)?, entry.version)),
        None => Ok((AutoAdjust::default(), 0)),
    }
}

/// Names of the members whose lease is valid, as the store's clock sees them.
pub(crate) async fn live_names(
    store: &dyn DataFlowStore,
) -> crate::Result<std::collections::BTreeSet<String>> {
    let now = store.now().await?;
    Ok(store
        .list_members()
        .await?
        .into_iter()
        .filter(|m| m.lease_expires_at > now)
        .map(|m| m.runtime_id)
        .collect())
}
