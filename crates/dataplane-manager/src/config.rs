use std::path::PathBuf;
use std::time::Duration;

use cluster::live_config::LiveDefaults;
use cluster::ClusterOptions;

/// How often the leader purges finished flows past retention and compacts the event log.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(60);

/// Settings of one data-plane replica (see `docs/configuration.md` for the keys).
#[derive(Debug, Clone)]
pub struct DataPlaneConfig {
    /// Stable name of the replica (`edc.runtime.id`); flows record it as their owner.
    pub runtime_id: String,
    /// Fresh id of this start.
    pub incarnation: String,
    /// Base URL under which this replica's API is reachable by others, e.g.
    /// `http://dp1:8282/api/v1`; pull and ingest addresses are built from it.
    pub public_base_url: String,
    /// Membership lease (`edc.dataplane.state-machine.flow.lease.time`).
    pub lease: Duration,
    /// How often the lease is renewed.
    pub renew_interval: Duration,
    /// How often unowned and abandoned flows are looked for.
    pub claim_interval: Duration,
    /// Flows claimed per statement.
    pub claim_batch: usize,
    /// Attempts of a transfer before it is given up (TERMINATED + `errored`).
    pub retry_limit: u32,
    /// First retry delay; doubles each attempt (with jitter), capped at 30 s.
    pub retry_backoff: Duration,
    /// How long a suspend/terminate call waits for the owner to confirm.
    pub stop_wait: Duration,
    /// Where consumer flows without `metadata.destination` write, beneath the file root (one
    /// file per flow, named by the flow id).
    pub consumer_destination_dir: PathBuf,
    /// How often running transfers record checkpoints.
    pub checkpoints: crate::runner::pipeline::CheckpointPolicy,
    /// Transfers this replica runs at once (0 = unlimited); overridden live by the cluster's
    /// `dpf/config/dataplane.max-concurrent-flows`.
    pub max_concurrent_flows: u64,
    /// How often the leader purges finished flows, and how old they must be (0 = never).
    pub retention: std::time::Duration,
    /// The initial baseline (`dpf.cluster.baseline`), set when the cluster has none yet.
    pub initial_baseline: Option<std::collections::BTreeSet<String>>,
    /// `dpf.cluster.baseline.min-live`: when fewer baseline members are live, the leader sets
    /// the baseline to the live replicas at once.
    pub min_live: Option<usize>,
    /// Where this replica records the cluster it belongs to (`dpf.data.dir`).
    pub data_dir: PathBuf,
    /// `dpf.transfer.max-bytes`: most bytes one flow may move (an ingest upload, or what a
    /// transfer reads from its source); `None` = unlimited.
    pub max_bytes: Option<u64>,
    /// The one address policy every address passes through (files beneath a root, URLs
    /// parsed once, denied networks, allow-list, HTTPS, file URLs): see the `address-policy`
    /// crate. [`AddressPolicy::unrestricted`] in the library; the launchers build it from
    /// `dpf.transfer.*` and `dpf.http.insecure`.
    pub address_policy: address_policy::AddressPolicy,
}

impl DataPlaneConfig {
    /// Defaults for a replica named `runtime_id` reachable at `public_base_url`.
    pub fn new(runtime_id: impl Into<String>, public_base_url: impl Into<String>) -> Self {
        Self {
            runtime_id: runtime_id.into(),
            incarnation: uuid::Uuid::new_v4().to_string(),
            public_base_url: public_base_url.into(),
            lease: Duration::from_millis(2000),
            renew_interval: Duration::from_millis(500),
            claim_interval: Duration::from_millis(250),
            claim_batch: 20,
            retry_limit: 5,
            retry_backoff: Duration::from_millis(500),
            stop_wait: Duration::from_secs(10),
            consumer_destination_dir: PathBuf::from("received"),
            checkpoints: crate::runner::pipeline::CheckpointPolicy::default(),
            max_concurrent_flows: 0,
            retention: Duration::from_secs(7 * 24 * 3600),
            initial_baseline: None,
            min_live: None,
            data_dir: PathBuf::from("./dpf-data"),
            max_bytes: None,
            address_policy: address_policy::AddressPolicy::unrestricted(),
        }
    }

    /// The lease in milliseconds, as the store wants it.
    pub fn lease_ms(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX)
    }

    /// The one mapping of this configuration to the cluster services' options and to the
    /// defaults of the live settings: the baseline and the cluster settings are read every
    /// claim interval, the leader's housekeeping runs every minute, and the live settings
    /// start from `max_concurrent_flows`, `checkpoints` and `claim_batch`.
    pub fn cluster_settings(&self) -> (ClusterOptions, LiveDefaults) {
        let options = ClusterOptions {
            runtime_id: self.runtime_id.clone(),
            incarnation: self.incarnation.clone(),
            public_base_url: self.public_base_url.clone(),
            lease: self.lease,
            renew_interval: self.renew_interval,
            topology_interval: self.claim_interval.max(Duration::from_millis(1)),
            housekeeping_interval: HOUSEKEEPING_INTERVAL,
            retention: self.retention,
            initial_baseline: self.initial_baseline.clone(),
            min_live: self.min_live,
            data_dir: self.data_dir.clone(),
        };
        let defaults = LiveDefaults {
            max_concurrent_flows: self.max_concurrent_flows,
            checkpoint_bytes: self.checkpoints.bytes,
            checkpoint_interval: self.checkpoints.interval,
            batch_size: self.claim_batch,
        };
        (options, defaults)
    }
}
