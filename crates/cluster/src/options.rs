//! What a replica's cluster services need to know about it.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use crate::ClusterError;

/// Settings of one replica's cluster services (membership, leadership, live configuration,
/// baseline). Built by the data plane from its own configuration; see `docs/configuration.md`.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Stable name of the replica (`edc.runtime.id`).
    pub runtime_id: String,
    /// Fresh id of this start (a new one after the membership was lost).
    pub incarnation: String,
    /// Base URL of this replica's API, published with its heartbeat.
    pub public_base_url: String,
    /// Membership lease: peers consider the replica dead this long after its last renewal.
    pub lease: Duration,
    /// How often the lease is renewed (must be shorter than the lease).
    pub renew_interval: Duration,
    /// How often the baseline and the cluster state are read.
    pub topology_interval: Duration,
    /// How often the leader's periodic housekeeping runs (retention purge, KV compaction).
    pub housekeeping_interval: Duration,
    /// How old finished flows must be before the leader purges them (0 = never).
    pub retention: Duration,
    /// The initial baseline (`dpf.cluster.baseline`), set when the cluster has none yet.
    pub initial_baseline: Option<BTreeSet<String>>,
    /// `dpf.cluster.baseline.min-live`: when fewer baseline members are live, the leader sets
    /// the baseline to the live replicas at once.
    pub min_live: Option<usize>,
    /// Where this replica records the cluster it belongs to (`dpf.data.dir`).
    pub data_dir: PathBuf,
}

/// Key-value events kept by the leader's compaction (watchers further behind must re-list).
pub const KV_EVENTS_KEPT: i64 = 100_000;

impl ClusterOptions {
    /// Defaults for a replica named `runtime_id` reachable at `public_base_url`.
    pub fn new(runtime_id: impl Into<String>, public_base_url: impl Into<String>) -> Self {
        Self {
            runtime_id: runtime_id.into(),
            incarnation: uuid::Uuid::new_v4().to_string(),
            public_base_url: public_base_url.into(),
            lease: Duration::from_millis(2000),
            renew_interval: Duration::from_millis(500),
            topology_interval: Duration::from_millis(250),
            housekeeping_interval: Duration::from_secs(60),
            retention: Duration::from_secs(7 * 24 * 3600),
            initial_baseline: None,
            min_live: None,
            data_dir: PathBuf::from("./dpf-data"),
        }
    }

    /// The lease in milliseconds, as the store wants it.
    pub fn lease_ms(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX)
    }

    /// How often the leadership is campaigned for (and the leader's reaping runs): a third of
    /// the lease, at least 10 ms.
    pub fn campaign_interval(&self) -> Duration {
        (self.lease / 3).max(Duration::from_millis(10))
    }

    /// Checks the settings hang together.
    ///
    /// # Errors
    /// [`ClusterError::InvalidInput`] naming the setting.
    pub fn validate(&self) -> Result<(), ClusterError> {
        if self.runtime_id.trim().is_empty() {
            return Err(ClusterError::InvalidInput(
                "the replica needs a name (edc.runtime.id)".into(),
            ));
        }
        if self.lease.is_zero() {
            return Err(ClusterError::InvalidInput(
                "the lease must be positive".into(),
            ));
        }
        if self.renew_interval.is_zero() || self.renew_interval >= self.lease {
            return Err(ClusterError::InvalidInput(format!(
                "the lease renewal interval ({} ms) must be positive and shorter than the lease ({} ms)",
                self.renew_interval.as_millis(),
                self.lease.as_millis()
            )));
        }
        if self.topology_interval.is_zero() || self.housekeeping_interval.is_zero() {
            return Err(ClusterError::InvalidInput(
                "the topology and housekeeping intervals must be positive".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_must_be_shorter_than_the_lease() {
        let mut options = ClusterOptions::new("r1", "http://r1");
        assert!(options.validate().is_ok());
        options.renew_interval = options.lease;
        assert!(matches!(
            options.validate(),
            Err(ClusterError::InvalidInput(_))
        ));
        options.renew_interval = Duration::ZERO;
        assert!(options.validate().is_err());
    }

    #[test]
    fn a_replica_needs_a_name() {
        assert!(ClusterOptions::new(" ", "http://r1").validate().is_err());
    }
}
