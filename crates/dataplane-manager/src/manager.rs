use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dataplane_spi::{
    Checkpoint, DataAddress, DataFlow, DataFlowMessage, DataFlowState, DataFlowStatusMessage,
    DataFlowStore, FlowKind, FlowOwner, FlowUpdate, MemberRegistration, NewDataFlow,
    ResourceAddress, SourceStream, StoreError, TransferError, TransferRegistry, HTTP_PULL,
    HTTP_PUSH,
};
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
// Tokio's clock (the system's monotonic clock unless a test pauses it): leases, self-fencing
// and the leader's countdowns can be tested by advancing time instead of sleeping.
use tokio::time::Instant;

use crate::baseline::{
    AutoAdjust, Baseline, ClusterState, LocalRecord, Topology, AUTO_ADJUST_KEY, BASELINE_KEY,
    CLUSTER_ID_KEY, STATE_KEY,
};
use crate::callbacks::{CallbackDispatcher, CallbackEvent};
use crate::datasets::check_address;
use crate::live::{LiveSettings, CONFIG_PREFIX};
use crate::pipeline::{counted, CheckpointPolicy};
use crate::runner::attempts::{self, PipelineHost};
use crate::runner::checkpointer::TransferCounters;
use crate::runner::{IfRunning, Runner};
use crate::{ControlPlaneRegistry, DataPlaneConfig, DataPlaneError, DatasetRegistry};
use dataplane_spi::{Coordinator, Leader, Session};
use std::collections::BTreeSet;

type Result<T> = std::result::Result<T, DataPlaneError>;

/// Private metadata key holding the digest of the flow's bearer token for pull and ingest (the
/// token itself is handed out once and never stored).
const TOKEN_KEY: &str = dataplane_spi::secrets::TOKEN_DIGEST_KEY;
/// What a replica claims when unowned: STARTED flows to run, and SUSPENDING/TERMINATING flows
/// nobody finished (their requester died between recording and finishing them).
const CLAIMABLE: [DataFlowState; 3] = [
    DataFlowState::Started,
    DataFlowState::Suspending,
    DataFlowState::Terminating,
];
/// Keys bound to each replica's session (one per replica).
pub const HEARTBEAT_PREFIX: &str = "dpf/heartbeat/";
/// How often the leader purges old flows and compacts the event log.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(60);
/// Key-value events kept by compaction (watchers further behind must re-list).
const KV_EVENTS_KEPT: i64 = 100_000;
/// Most claim (or takeover) statements per tick.
const MAX_BATCHES_PER_TICK: usize = 50;

/// Lifecycle of a replica as published in the members table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// Joined; not yet looking for work.
    Initializing,
    /// Ready, running no transfer.
    Idle,
    /// Running transfers.
    Healthy,
    /// Shutting down: releasing its flows.
    Stopping,
}

impl MemberState {
    /// The published name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initializing => "INITIALIZING",
            Self::Idle => "IDLE",
            Self::Healthy => "HEALTHY",
            Self::Stopping => "STOPPING",
        }
    }
}

/// Counters of one replica, exposed as Prometheus metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Flows claimed (unowned work picked up).
    pub claims: AtomicU64Counter,
    /// Flows taken over from dead replicas.
    pub takeovers: AtomicU64Counter,
    /// Lease renewals, and their total duration in microseconds.
    pub renewals: AtomicU64Counter,
    /// Sum of renewal latencies, microseconds.
    pub renewal_micros: AtomicU64Counter,
    /// Transfers completed by this replica.
    pub completed: AtomicU64Counter,
    /// Transfers that failed for good on this replica.
    pub failed: AtomicU64Counter,
}

/// A relaxed atomic counter.
#[derive(Debug, Default)]
pub struct AtomicU64Counter(std::sync::atomic::AtomicU64);

impl AtomicU64Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What a DPS operation answers.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The body (a `DataFlowStatusMessage`).
    pub message: DataFlowStatusMessage,
}

/// A pull granted by [`DataPlane::open_pull`]: the stream (gated, counted) and its range.
#[derive(Debug)]
pub struct PullGrant {
    /// The data from `stream.offset`.
    pub stream: SourceStream,
}

/// Everything an operator wants to know about a flow (`GET /api/v1/dataflows/{id}`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DataFlowView {
    /// Flow id.
    pub id: String,
    /// Transfer process id.
    pub process_id: String,
    /// Role.
    pub kind: FlowKind,
    /// Transfer profile.
    pub profile: String,
    /// Internal state (may be SUSPENDING/TERMINATING).
    pub state: DataFlowState,
    /// State as the DPS API shows it.
    pub dps_state: &'static str,
    /// Times the current state was entered (retries increase it).
    pub state_count: i32,
    /// Retries of the current transfer attempt series.
    pub retries: i32,
    /// When the state was entered.
    pub state_timestamp: chrono::DateTime<chrono::Utc>,
    /// Creation time.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Last change.
    pub updated_at: chrono::DateTime<chrono::Utc>,
    /// Owning replica.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime_id: Option<String>,
    /// Fencing epoch.
    pub epoch: i64,
    /// Bytes moved so far (live when this replica runs the flow, else the last recorded).
    pub bytes_transferred: u64,
    /// Total bytes, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_total: Option<u64>,
    /// Bytes covered by the last checkpoint (durably at the destination).
    pub bytes_checkpointed: u64,
    /// Times the transfer continued from a checkpoint (retry, takeover, resume).
    pub resumes: u64,
    /// Times a later attempt had to start from zero (the destination or the source cannot
    /// continue where the last attempt stopped).
    pub restarts: u64,
    /// Why the transfer last restarted from zero.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_reason: Option<String>,
    /// Last recorded position.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Checkpoint>,
    /// Last error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_detail: Option<String>,
    /// Participant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub participant_id: Option<String>,
    /// Source address (tokens removed).
    pub source: serde_json::Value,
    /// Destination address (tokens removed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<serde_json::Value>,
    /// Message metadata (agreement, dataset, labels, ...; the flow token removed).
    pub metadata: serde_json::Value,
}

/// The data plane of one replica. Share it as `Arc<DataPlane>`.
#[derive(Debug)]
pub struct DataPlane {
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    store: Arc<dyn DataFlowStore>,
    coordinator: Arc<dyn Coordinator>,
    live: LiveSettings,
    /// The leadership this replica holds, as of its last campaign.
    leadership: Mutex<Option<Leader>>,
    /// Revision up to which configuration changes were applied (-1: not listed yet).
    config_revision: std::sync::atomic::AtomicI64,
    /// When the leader last ran its periodic duties (retention, compaction).
    last_housekeeping: Mutex<Option<Instant>>,
    /// The baseline topology as of the last tick.
    topology: Mutex<Topology>,
    /// Leader only: the live replicas it last saw, and since when (auto-adjust countdown).
    membership: Mutex<Option<(BTreeSet<String>, Instant)>>,
    transfers: TransferRegistry,
    datasets: Arc<DatasetRegistry>,
    control_planes: Arc<ControlPlaneRegistry>,
    callbacks: CallbackDispatcher,
    config: DataPlaneConfig,
    /// What runs here for each flow (transfer tasks, pull streams, their progress and gates).
    runner: Arc<Runner>,
    /// The current incarnation (a fresh one after the membership was lost).
    incarnation: Mutex<String>,
    /// The lifecycle state last published in the members table.
    reported: Mutex<Option<MemberState>>,
    /// Self-fencing: milliseconds since `clock_origin` until which this replica may be sure
    /// nobody else took its flows (its last successful renewal plus the lease, minus a margin).
    lease_deadline: std::sync::atomic::AtomicU64,
    clock_origin: Instant,
}

/// Handle of [`DataPlane::run`]: stop it with [`DataPlaneHandle::shutdown`].
#[derive(Debug)]
pub struct DataPlaneHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl DataPlaneHandle {
    /// Stops claiming, stops local transfers, leaves the cluster (releasing owned flows so
    /// peers take them at once) and waits for all of it.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// A flow's addresses and metadata as management views show them: at any depth, the value of
/// every property whose name looks secret (the rule of `dpf_config::is_secret_key`: `key`,
/// `secret`, `password`, `token`, `credential`, `auth`; plus `claims`) is masked, and so are
/// the userinfo and the query of every URL string.
pub fn redact(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(name, value)| {
                    let secret = dpf_config::is_secret_key(&name)
                        || name.eq_ignore_ascii_case("claims")
                        || name.eq_ignore_ascii_case("headers");
                    let value = if secret && !value.is_null() {
                        Value::String(dpf_config::MASK.into())
                    } else {
                        redact(value)
                    };
                    (name, value)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(redact).collect()),
        Value::String(text) => Value::String(redact_url_credentials(&text)),
        other => other,
    }
}

/// `text` with the userinfo and the query of a URL masked (`https://***@host/p?***`); anything
/// that is not a URL with an authority is returned unchanged.
fn redact_url_credentials(text: &str) -> String {
    let Ok(mut url) = url::Url::parse(text) else {
        return text.to_owned();
    };
    if !text.contains("://") || !url.has_host() {
        return text.to_owned();
    }
    let mut changed = false;
    if !url.username().is_empty() || url.password().is_some() {
        let _ = url.set_password(None);
        let _ = url.set_username(dpf_config::MASK);
        changed = true;
    }
    if url.query().is_some_and(|q| !q.is_empty()) {
        url.set_query(Some(dpf_config::MASK));
        changed = true;
    }
    if changed {
        url.to_string()
    } else {
        text.to_owned()
    }
}

fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn message(
    flow: &DataFlow,
    data_address: Option<DataAddress>,
    error: Option<String>,
) -> DataFlowStatusMessage {
    DataFlowStatusMessage {
        message_id: uuid::Uuid::new_v4().to_string(),
        data_flow_id: flow.id.clone(),
        state: flow.state.dps_name().to_owned(),
        data_address,
        error,
    }
}

fn illegal(flow_id: &str, state: &str, action: &str) -> DataPlaneError {
    DataPlaneError::illegal(action, flow_id, state)
}

fn runs_pipeline(kind: FlowKind) -> bool {
    matches!(kind, FlowKind::ProviderPush | FlowKind::ConsumerPull)
}

impl DataPlane {
    /// A data plane over `store`, moving data with `transfers`.
    pub fn new(
        store: Arc<dyn DataFlowStore>,
        coordinator: Arc<dyn Coordinator>,
        transfers: TransferRegistry,
        datasets: Arc<DatasetRegistry>,
        control_planes: Arc<ControlPlaneRegistry>,
        callbacks: CallbackDispatcher,
        config: DataPlaneConfig,
    ) -> Arc<Self> {
        control_planes.set_policy(config.address_policy.clone());
        // The registries live in the cluster's key-value store: any replica serves any dataset
        // and calls back any control plane.
        datasets.share(coordinator.clone());
        control_planes.share(coordinator.clone());
        // dpf.transfer.max-bytes: no source yields more than the cap to any flow.
        let transfers = match config.max_bytes {
            Some(max) => transfers.wrap_sources(|factory| {
                Arc::new(crate::limits::CappedSourceFactory::new(factory, max))
            }),
            None => transfers,
        };
        Arc::new(Self {
            metrics: Metrics::default(),
            store,
            coordinator,
            live: LiveSettings::from_config(&config),
            leadership: Mutex::new(None),
            config_revision: std::sync::atomic::AtomicI64::new(-1),
            last_housekeeping: Mutex::new(None),
            topology: Mutex::new(Topology {
                baseline: None,
                state: ClusterState::Active,
            }),
            membership: Mutex::new(None),
            transfers,
            datasets,
            control_planes,
            callbacks,
            runner: Runner::new(),
            incarnation: Mutex::new(config.incarnation.clone()),
            reported: Mutex::new(Some(MemberState::Initializing)),
            lease_deadline: std::sync::atomic::AtomicU64::new(0),
            clock_origin: Instant::now(),
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DataPlaneConfig {
        &self.config
    }

    /// The cluster coordinator (key-value store, leader election).
    pub fn coordinator(&self) -> &Arc<dyn Coordinator> {
        &self.coordinator
    }

    /// The settings this replica applies now (its configuration, overridden live by the
    /// cluster's `dpf/config/…` keys).
    pub fn live(&self) -> &LiveSettings {
        &self.live
    }

    /// Transfers running here now.
    pub fn running_transfers(&self) -> usize {
        self.runner.running()
    }

    /// Flows with a local entry in this replica's runner (a running transfer task or open pull
    /// streams): for tests and metrics. Zero when nothing runs, however many flows ran before.
    pub fn runner_len(&self) -> usize {
        self.runner.len()
    }

    /// Whether the baseline lets this replica own work now.
    fn may_own(&self) -> bool {
        self.topology
            .lock()
            .map(|t| t.may_own(self.me()))
            .unwrap_or(true)
    }

    /// Whether this replica has room for another transfer.
    fn has_capacity(&self) -> bool {
        if !self.may_own() {
            return false;
        }
        let max = self.live.max_concurrent();
        max == 0 || (self.running_transfers() as u64) < max
    }

    /// The dataset registry.
    pub fn datasets(&self) -> &Arc<DatasetRegistry> {
        &self.datasets
    }

    /// The control-plane registry.
    pub fn control_planes(&self) -> &Arc<ControlPlaneRegistry> {
        &self.control_planes
    }

    /// The transfer registry.
    pub fn transfers(&self) -> &TransferRegistry {
        &self.transfers
    }

    /// Address types the data plane can read and write.
    pub fn known_types(&self) -> Vec<String> {
        let mut types = self.transfers.source_types();
        types.extend(self.transfers.sink_types());
        types.sort();
        types.dedup();
        types
    }

    fn me(&self) -> &str {
        &self.config.runtime_id
    }

    fn incarnation(&self) -> String {
        self.incarnation
            .lock()
            .map(|i| i.clone())
            .unwrap_or_else(|_| self.config.incarnation.clone())
    }

    fn millis_since_origin(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.clock_origin).as_millis())
            .unwrap_or(u64::MAX)
    }

    /// Records a successful lease write that started at `began`: the lease is ours until
    /// `began + lease` on any clock that runs at the database's rate; keep a tenth as margin.
    fn lease_renewed(&self, began: Instant) {
        let valid = self.config.lease.mul_f64(0.9);
        self.lease_deadline
            .store(self.millis_since_origin(began + valid), Ordering::Release);
    }

    /// Whether this replica's lease is certainly still valid (monotonic clock). A replica that
    /// was paused (SIGSTOP) past its lease finds out here before writing anything.
    pub fn lease_valid(&self) -> bool {
        self.millis_since_origin(Instant::now()) < self.lease_deadline.load(Ordering::Acquire)
    }

    fn pull_address(&self, flow: &DataFlow, token: Option<&str>) -> DataAddress {
        DataAddress::http(
            HTTP_PULL,
            format!(
                "{}/public/{}",
                self.config.public_base_url.trim_end_matches('/'),
                flow.id
            ),
            token,
        )
    }

    fn ingest_address(&self, flow: &DataFlow, token: Option<&str>) -> DataAddress {
        let mut address = DataAddress::http(
            HTTP_PUSH,
            format!(
                "{}/ingest/{}",
                self.config.public_base_url.trim_end_matches('/'),
                flow.id
            ),
            token,
        );
        // The ingest endpoint is a tus upload: a pushing dpf checkpoints from the first byte
        // without probing it first.
        address
            .endpoint_properties
            .push(dataplane_spi::EndpointProperty {
                kind: Some("EndpointProperty".into()),
                name: "resumable".into(),
                value: "tus".into(),
            });
        address
    }

    /// The address a flow's state hands out, if any (pull endpoint, ingest endpoint), with
    /// `token`: the raw token exists only when it was just issued (only its digest is stored).
    fn address_for(&self, flow: &DataFlow, token: Option<&str>) -> Option<DataAddress> {
        match (flow.kind, flow.state) {
            (FlowKind::ProviderPull, DataFlowState::Started) => {
                Some(self.pull_address(flow, token))
            }
            (FlowKind::ConsumerPush, DataFlowState::Prepared | DataFlowState::Started) => {
                Some(self.ingest_address(flow, token))
            }
            _ => None,
        }
    }

    /// The resource a DPS data address names, through the address policy: `file://` only
    /// when allowed and beneath the file root; HTTP URLs parsed once and checked (HTTPS,
    /// denied networks, allow-list).
    fn resource_of(&self, address: &DataAddress) -> Result<ResourceAddress> {
        let policy = &self.config.address_policy;
        if address
            .endpoint
            .get(..7)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("file://"))
        {
            let relative = policy
                .check_file_url(&address.endpoint)
                .map_err(|e| DataPlaneError::InvalidInput(format!("dataAddress: {e}")))?;
            return Ok(ResourceAddress::file(relative.to_string_lossy()));
        }
        self.check_address(&address.to_resource())
            .map_err(|e| DataPlaneError::InvalidInput(format!("dataAddress: {e}")))
    }

    /// Checks a transfer address (its type's properties, then the address policy) and returns
    /// it as it is stored and used.
    fn check_address(&self, address: &ResourceAddress) -> Result<ResourceAddress> {
        check_address(address, &self.known_types(), &self.config.address_policy)
    }

    /// Finds a flow by its id or, failing that, by its process id.
    ///
    /// # Errors
    /// [`DataPlaneError::NotFound`].
    pub async fn resolve(&self, id: &str) -> Result<DataFlow> {
        if let Some(flow) = self.store.find(id).await? {
            return Ok(flow);
        }
        self.store
            .find_by_process_id(id)
            .await?
            .ok_or_else(|| DataPlaneError::not_found(crate::Entity::DataFlow, id))
    }

    fn check_message(&self, msg: &DataFlowMessage) -> Result<()> {
        for (field, value) in [
            ("messageId", &msg.message_id),
            ("processId", &msg.process_id),
            ("participantId", &msg.participant_id),
            ("datasetId", &msg.dataset_id),
            ("profile", &msg.profile),
        ] {
            if value.trim().is_empty() {
                return Err(DataPlaneError::InvalidInput(format!(
                    "{field} must not be blank"
                )));
            }
        }
        Ok(())
    }

    async fn check_new_process(&self, process_id: &str) -> Result<()> {
        if self.store.find_by_process_id(process_id).await?.is_some() {
            return Err(DataPlaneError::Conflict(format!(
                "a data flow for process '{process_id}' exists already"
            )));
        }
        Ok(())
    }

    /// The flow metadata kept from a DPS message. Only the digest of `token` is stored, and
    /// the counterparty's destination (with its credentials) is not copied: it is the flow's
    /// destination already.
    fn metadata_of(msg: &DataFlowMessage, token: Option<&str>) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        map.insert("messageId".into(), msg.message_id.clone().into());
        map.insert("agreementId".into(), msg.agreement_id.clone().into());
        map.insert("datasetId".into(), msg.dataset_id.clone().into());
        map.insert("counterPartyId".into(), msg.counter_party_id.clone().into());
        map.insert(
            "dataspaceContext".into(),
            msg.dataspace_context.clone().into(),
        );
        map.insert(
            "claims".into(),
            serde_json::Value::Object(msg.claims.clone()),
        );
        if let Some(labels) = &msg.labels {
            map.insert("labels".into(), serde_json::json!(labels));
        }
        if let Some(metadata) = &msg.metadata {
            let mut metadata = metadata.clone();
            metadata.remove("destination");
            map.insert("metadata".into(), serde_json::Value::Object(metadata));
        }
        if let Some(token) = token {
            map.insert(
                TOKEN_KEY.into(),
                dataplane_spi::secrets::token_digest(token).into(),
            );
        }
        serde_json::Value::Object(map)
    }

    async fn create(&self, new: NewDataFlow) -> Result<DataFlow> {
        self.store.create(&new).await.map_err(|error| match error {
            StoreError::AlreadyExists { .. } => DataPlaneError::Conflict(format!(
                "a data flow for process '{}' exists already",
                new.process_id
            )),
            other => other.into(),
        })
    }

    /// DPS `start` (provider side): `http-push` pushes the dataset to `dataAddress`;
    /// `http-pull` answers the address of the public pull endpoint. Synchronous: the answer
    /// is STARTED.
    ///
    /// # Errors
    /// `InvalidInput` for a bad message (unsupported profile, missing or forbidden `dataAddress`), `NotFound` for
    /// an unknown dataset, `Conflict` for a duplicate process id. Nothing is created then.
    pub async fn start(self: &Arc<Self>, msg: DataFlowMessage) -> Result<Outcome> {
        self.check_message(&msg)?;
        self.require_active().await?;
        let kind = match msg.profile.as_str() {
            HTTP_PUSH => FlowKind::ProviderPush,
            HTTP_PULL => FlowKind::ProviderPull,
            other => {
                return Err(DataPlaneError::InvalidInput(format!(
                    "unsupported profile '{other}'; supported: {HTTP_PUSH}, {HTTP_PULL}"
                )))
            }
        };
        let source = self
            .datasets
            .resolve(&msg.dataset_id)
            .await?
            .ok_or_else(|| {
                DataPlaneError::NotFound(format!(
                    "unknown dataset '{}': register it with PUT /api/v1/datasets/{}",
                    msg.dataset_id, msg.dataset_id
                ))
            })?;
        let (destination, token) = match (kind, &msg.data_address) {
            (FlowKind::ProviderPush, Some(address)) => {
                let resource = self.resource_of(address)?;
                (Some(resource.to_json()), None)
            }
            (FlowKind::ProviderPush, None) => {
                return Err(DataPlaneError::InvalidInput(
                    "a provider-push start needs a dataAddress to push to".into(),
                ))
            }
            (_, Some(_)) => {
                return Err(DataPlaneError::InvalidInput(
                    "a pull start must not carry a dataAddress (the data plane provides it)".into(),
                ))
            }
            (_, None) => (None, Some(new_token())),
        };
        self.check_new_process(&msg.process_id).await?;
        let flow = self
            .create(NewDataFlow {
                id: uuid::Uuid::new_v4().to_string(),
                process_id: msg.process_id.clone(),
                kind,
                profile: msg.profile.clone(),
                state: DataFlowState::Started,
                // A full replica leaves the flow waiting for one with room.
                runtime_id: (kind == FlowKind::ProviderPull || self.has_capacity())
                    .then(|| self.me().to_owned()),
                source: source.to_json(),
                destination,
                metadata: Self::metadata_of(&msg, token.as_deref()),
                participant_id: Some(msg.participant_id.clone()),
                callback_address: None,
            })
            .await?;
        tracing::info!(flow_id = %flow.id, process_id = %flow.process_id, kind = ?flow.kind, "data flow started");
        self.open_gate(&flow.id);
        if runs_pipeline(kind) {
            self.spawn_pipeline(flow.clone());
        }
        Ok(Outcome {
            message: message(&flow, self.address_for(&flow, token.as_deref()), None),
        })
    }

    /// DPS `prepare` (consumer side): `http-push` answers the ingest endpoint's address;
    /// `http-pull` waits for `started` with the provider's address. Synchronous: PREPARED.
    ///
    /// # Errors
    /// `InvalidInput` for a bad message or destination, `Conflict` for a duplicate process id.
    pub async fn prepare(self: &Arc<Self>, msg: DataFlowMessage) -> Result<Outcome> {
        self.check_message(&msg)?;
        self.require_active().await?;
        let kind = match msg.profile.as_str() {
            HTTP_PUSH => FlowKind::ConsumerPush,
            HTTP_PULL => FlowKind::ConsumerPull,
            other => {
                return Err(DataPlaneError::InvalidInput(format!(
                    "unsupported profile '{other}'; supported: {HTTP_PUSH}, {HTTP_PULL}"
                )))
            }
        };
        let flow_id = uuid::Uuid::new_v4().to_string();
        let destination = match msg.metadata.as_ref().and_then(|m| m.get("destination")) {
            Some(value) => {
                let address = ResourceAddress::from_json(value.clone()).map_err(|e| {
                    DataPlaneError::InvalidInput(format!("metadata.destination: {e}"))
                })?;
                self.check_address(&address).map_err(|e| {
                    DataPlaneError::InvalidInput(format!("metadata.destination: {e}"))
                })?
            }
            // Beneath the file root, named by the flow id: unique, whatever the process id.
            None => self
                .check_address(&ResourceAddress::file(
                    self.config
                        .consumer_destination_dir
                        .join(&flow_id)
                        .to_string_lossy(),
                ))
                .map_err(|e| {
                    DataPlaneError::InvalidInput(format!(
                        "no metadata.destination and the default destination is refused: {e}"
                    ))
                })?,
        };
        self.check_new_process(&msg.process_id).await?;
        let token = (kind == FlowKind::ConsumerPush).then(new_token);
        let flow = self
            .create(NewDataFlow {
                id: flow_id,
                process_id: msg.process_id.clone(),
                kind,
                profile: msg.profile.clone(),
                state: DataFlowState::Prepared,
                runtime_id: None,
                source: serde_json::json!({}),
                destination: Some(destination.to_json()),
                metadata: Self::metadata_of(&msg, token.as_deref()),
                participant_id: Some(msg.participant_id.clone()),
                callback_address: None,
            })
            .await?;
        tracing::info!(flow_id = %flow.id, process_id = %flow.process_id, kind = ?flow.kind, "data flow prepared");
        self.open_gate(&flow.id);
        Ok(Outcome {
            message: message(&flow, self.address_for(&flow, token.as_deref()), None),
        })
    }

    /// DPS `started` (consumer side only): the provider started. Consumer pull begins pulling
    /// from the given address.
    ///
    /// # Errors
    /// `NotFound` unknown flow, `Conflict` provider flow or wrong state, `InvalidInput` missing/forbidden address.
    pub async fn started(
        self: &Arc<Self>,
        id: &str,
        data_address: Option<DataAddress>,
    ) -> Result<Outcome> {
        let flow = self.resolve(id).await?;
        let update = match (flow.kind, data_address) {
            (FlowKind::ProviderPush | FlowKind::ProviderPull, _) => {
                return Err(DataPlaneError::Conflict(format!(
                    "data flow '{}' is a provider flow; started is a consumer-side signal",
                    flow.id
                )))
            }
            (FlowKind::ConsumerPull, None) => {
                return Err(DataPlaneError::InvalidInput(
                    "a consumer-pull started notification needs the dataAddress to pull from"
                        .into(),
                ))
            }
            (FlowKind::ConsumerPull, Some(address)) => {
                let resource = self.resource_of(&address)?;
                FlowUpdate {
                    source: Some(resource.to_json()),
                    ..FlowUpdate::default()
                }
            }
            (FlowKind::ConsumerPush, Some(_)) => {
                return Err(DataPlaneError::InvalidInput(
                    "a push started notification must not carry a dataAddress".into(),
                ))
            }
            (FlowKind::ConsumerPush, None) => FlowUpdate::default(),
        };
        let owner = runs_pipeline(flow.kind).then(|| self.me().to_owned());
        let started = self
            .store
            .transition(
                &flow.id,
                &[DataFlowState::Prepared, DataFlowState::Starting],
                DataFlowState::Started,
                owner.as_deref(),
                &update,
            )
            .await
            .map_err(|e| DataPlaneError::transition("start", e))?;
        if runs_pipeline(started.kind) {
            self.spawn_pipeline(started.clone());
        }
        Ok(Outcome {
            message: message(&started, None, None),
        })
    }

    /// DPS `suspend`: answers once the flow is SUSPENDED (the owner stopped its transfer).
    ///
    /// # Errors
    /// `NotFound`, `Conflict` when the flow is not STARTED, `Unavailable` when the owner did not confirm in time.
    pub async fn suspend(self: &Arc<Self>, id: &str, reason: Option<String>) -> Result<Outcome> {
        let flow = self.resolve(id).await?;
        let stopped = self
            .stop(
                &flow,
                DataFlowState::Suspending,
                DataFlowState::Suspended,
                reason,
                "suspend",
            )
            .await?;
        Ok(Outcome {
            message: message(&stopped, None, None),
        })
    }

    /// DPS `terminate`: answers once the flow is TERMINATED.
    ///
    /// # Errors
    /// `NotFound`, `Conflict` when the flow is already COMPLETED or TERMINATED, `Unavailable` when the owner did not
    /// confirm in time.
    pub async fn terminate(self: &Arc<Self>, id: &str, reason: Option<String>) -> Result<Outcome> {
        let flow = self.resolve(id).await?;
        let stopped = self
            .stop(
                &flow,
                DataFlowState::Terminating,
                DataFlowState::Terminated,
                reason,
                "terminate",
            )
            .await?;
        Ok(Outcome {
            message: message(&stopped, None, None),
        })
    }

    /// Records the request (`-ING` state), has the owner stop, and waits for the final state.
    async fn stop(
        self: &Arc<Self>,
        flow: &DataFlow,
        stopping: DataFlowState,
        stopped: DataFlowState,
        reason: Option<String>,
        action: &str,
    ) -> Result<DataFlow> {
        let update = FlowUpdate {
            error_detail: reason,
            ..FlowUpdate::default()
        };
        let requested = self
            .store
            .transition(
                &flow.id,
                &DataFlowState::predecessors(stopping),
                stopping,
                None,
                &update,
            )
            .await
            .map_err(|e| DataPlaneError::transition(action, e))?;
        self.close_gate(&flow.id);
        if requested.runtime_id.as_deref() != Some(self.me()) {
            // Wake the owner now rather than at its next poll; polling covers a lost hint.
            if let Err(error) = self.store.notify_change(&flow.id).await {
                tracing::debug!(%error, "change hint not sent");
            }
        }
        self.finish_stop(&requested, stopped).await?;
        let deadline = Instant::now() + self.config.stop_wait;
        loop {
            let current = self.resolve(&flow.id).await?;
            if current.state == stopped {
                return Ok(current);
            }
            if current.state.is_terminal() {
                return Err(illegal(&flow.id, current.state.as_str(), action));
            }
            if Instant::now() >= deadline {
                return Err(DataPlaneError::Unavailable(format!(
                    "the owner of data flow '{}' did not confirm within {:?}; it is {} and will be {} by its owner or by the replica that takes it over",
                    flow.id, self.config.stop_wait, current.state, stopped
                )));
            }
            // The owner may be another replica: it notices within one claim interval.
            if current.runtime_id.is_none()
                || !self.owner_alive(current.runtime_id.as_deref()).await
            {
                self.finish_stop(&current, stopped).await?;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn owner_alive(&self, owner: Option<&str>) -> bool {
        let Some(owner) = owner else { return false };
        let (Ok(members), Ok(now)) = (self.store.list_members().await, self.store.now().await)
        else {
            return true;
        };
        members
            .iter()
            .any(|m| m.runtime_id == owner && m.lease_expires_at > now)
    }

    /// Moves a flow in `SUSPENDING`/`TERMINATING` to its final state, if this replica may: it
    /// owns it (stops the local transfer first), or nobody does, or its owner is dead.
    async fn finish_stop(self: &Arc<Self>, flow: &DataFlow, stopped: DataFlowState) -> Result<()> {
        let stopping = flow.state;
        match flow.runtime_id.as_deref() {
            Some(owner) if owner == self.me() => {
                self.stop_local(&flow.id).await;
                let token = FlowOwner {
                    runtime_id: owner.to_owned(),
                    epoch: flow.epoch,
                };
                match self
                    .store
                    .update_owned(&token, &flow.id, &FlowUpdate::move_to(stopped))
                    .await
                {
                    Ok(_) | Err(StoreError::WrongState { .. } | StoreError::LeaseLost { .. }) => {}
                    Err(other) => return Err(other.into()),
                }
            }
            owner => {
                if owner.is_some() && self.owner_alive(owner).await {
                    return Ok(()); // the live owner finishes it
                }
                self.stop_local(&flow.id).await;
                match self
                    .store
                    .transition(
                        &flow.id,
                        &[stopping],
                        stopped,
                        Some(self.me()),
                        &FlowUpdate::default(),
                    )
                    .await
                {
                    Ok(_) | Err(StoreError::WrongState { .. }) => {}
                    Err(other) => return Err(other.into()),
                }
            }
        }
        tracing::info!(flow_id = %flow.id, state = %stopped, "data flow stopped");
        Ok(())
    }

    /// DPS `resume`: SUSPENDED → STARTED; this replica takes the flow over and restarts its
    /// transfer. A `dataAddress` replaces the destination (provider push) or the source
    /// (consumer pull). A flow with a bearer token (provider pull, consumer push) gets a new
    /// one, returned in the answer's data address; the old token stops working.
    ///
    /// # Errors
    /// `NotFound`, `Conflict` when the flow is not SUSPENDED, `InvalidInput` for a bad address.
    pub async fn resume(
        self: &Arc<Self>,
        id: &str,
        data_address: Option<DataAddress>,
    ) -> Result<Outcome> {
        let flow = self.resolve(id).await?;
        let mut update = FlowUpdate::default();
        if let Some(address) = data_address {
            let resource = self.resource_of(&address)?;
            match flow.kind {
                FlowKind::ProviderPush => update.destination = Some(resource.to_json()),
                FlowKind::ConsumerPull => update.source = Some(resource.to_json()),
                FlowKind::ProviderPull | FlowKind::ConsumerPush => {}
            }
        }
        let token =
            matches!(flow.kind, FlowKind::ProviderPull | FlowKind::ConsumerPush).then(new_token);
        if let Some(token) = &token {
            let mut metadata = flow.metadata.clone();
            if let Some(map) = metadata.as_object_mut() {
                map.insert(
                    TOKEN_KEY.into(),
                    dataplane_spi::secrets::token_digest(token).into(),
                );
            }
            update.metadata = Some(metadata);
        }
        let resumed = self
            .store
            .transition(
                &flow.id,
                &[DataFlowState::Suspended],
                DataFlowState::Started,
                Some(self.me()),
                &update,
            )
            .await
            .map_err(|e| DataPlaneError::transition("resume", e))?;
        self.open_gate(&resumed.id);
        if runs_pipeline(resumed.kind) {
            self.spawn_pipeline(resumed.clone());
        }
        tracing::info!(flow_id = %resumed.id, epoch = resumed.epoch, "data flow resumed");
        Ok(Outcome {
            message: message(&resumed, self.address_for(&resumed, token.as_deref()), None),
        })
    }

    /// DPS `completed`: the other side finished (provider pull, consumer push).
    ///
    /// # Errors
    /// `NotFound`, `Conflict` when the flow is not STARTED.
    pub async fn completed(self: &Arc<Self>, id: &str) -> Result<Outcome> {
        let flow = self.resolve(id).await?;
        if runs_pipeline(flow.kind) && flow.state == DataFlowState::Started {
            return Err(DataPlaneError::Conflict(format!(
                "data flow '{}' is still transferring; this data plane reports its own completion",
                flow.id
            )));
        }
        let completed = self
            .store
            .transition(
                &flow.id,
                &[DataFlowState::Started],
                DataFlowState::Completed,
                None,
                &FlowUpdate::default(),
            )
            .await
            .map_err(|e| DataPlaneError::transition("complete", e))?;
        self.close_gate(&flow.id);
        self.stop_local(&flow.id).await;
        Ok(Outcome {
            message: message(&completed, None, None),
        })
    }

    /// DPS `status`.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn status(&self, id: &str) -> Result<DataFlow> {
        self.resolve(id).await
    }

    /// The management view of one flow.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn view(&self, id: &str) -> Result<DataFlowView> {
        Ok(self.view_of(self.resolve(id).await?))
    }

    /// The management view of flows, optionally in one state, oldest first.
    ///
    /// # Errors
    /// Store failures.
    pub async fn views(
        &self,
        state: Option<DataFlowState>,
        limit: usize,
    ) -> Result<Vec<DataFlowView>> {
        let states: Vec<DataFlowState> = state.into_iter().collect();
        Ok(self
            .store
            .list(&states, limit)
            .await?
            .into_iter()
            .map(|f| self.view_of(f))
            .collect())
    }

    /// [`DataPlane::views`] restricted to the flows of one participant (what a control plane
    /// with a per-participant key may see). Scans the listing, so it costs as much as listing
    /// every flow in that state.
    ///
    /// # Errors
    /// Store failures.
    pub async fn participant_views(
        &self,
        participant: &str,
        state: Option<DataFlowState>,
        limit: usize,
    ) -> Result<Vec<DataFlowView>> {
        let states: Vec<DataFlowState> = state.into_iter().collect();
        Ok(self
            .store
            .list(&states, usize::MAX)
            .await?
            .into_iter()
            .filter(|f| f.participant_id.as_deref() == Some(participant))
            .take(limit)
            .map(|f| self.view_of(f))
            .collect())
    }

    fn view_of(&self, flow: DataFlow) -> DataFlowView {
        let live = self.runner.progress(&flow.id);
        let recorded = flow
            .checkpoint
            .as_ref()
            .map_or(0, |c| u64::try_from(c.bytes).unwrap_or(0));
        let (bytes_transferred, bytes_total) = match &live {
            Some(progress) => (progress.bytes().max(recorded), progress.total()),
            None => (recorded, None),
        };
        let counters = TransferCounters::of(&flow.metadata);
        let bytes_total = bytes_total.or_else(|| {
            flow.metadata
                .pointer("/transfer/bytesTotal")
                .and_then(serde_json::Value::as_u64)
        });
        DataFlowView {
            dps_state: flow.state.dps_name(),
            retries: if flow.state == DataFlowState::Started {
                flow.state_count - 1
            } else {
                0
            },
            id: flow.id,
            process_id: flow.process_id,
            kind: flow.kind,
            profile: flow.profile,
            state: flow.state,
            state_count: flow.state_count,
            state_timestamp: flow.state_timestamp,
            created_at: flow.created_at,
            updated_at: flow.updated_at,
            runtime_id: flow.runtime_id,
            epoch: flow.epoch,
            bytes_transferred,
            bytes_total,
            bytes_checkpointed: recorded,
            resumes: counters.resumes,
            restarts: counters.restarts,
            restart_reason: counters.restart_reason,
            checkpoint: flow.checkpoint,
            error_detail: flow.error_detail,
            participant_id: flow.participant_id,
            source: redact(flow.source),
            destination: flow.destination.map(redact),
            metadata: redact(flow.metadata),
        }
    }

    fn check_token(flow: &DataFlow, presented: Option<&str>) -> Result<()> {
        let expected = flow.metadata.get(TOKEN_KEY).and_then(|t| t.as_str());
        match (expected, presented) {
            (Some(expected), Some(presented))
                if dataplane_spi::secrets::token_matches(expected, presented) =>
            {
                Ok(())
            }
            _ => Err(DataPlaneError::Unauthorized(
                "missing or wrong bearer token for this data flow".into(),
            )),
        }
    }

    /// Authorises a pull from the public endpoint and opens the dataset at `offset`.
    ///
    /// # Errors
    /// `Unauthorized` wrong token (checked first, so flow ids cannot be probed), `NotFound`, `Conflict` when the flow
    /// is not a STARTED provider-pull flow.
    pub async fn open_pull(
        self: &Arc<Self>,
        id: &str,
        token: Option<&str>,
        offset: u64,
    ) -> Result<PullGrant> {
        // Registered before the flow is read: a suspend recorded after the read closes it.
        let guard = self.runner.open_stream(id);
        let flow = self.store.find(id).await?;
        let flow = match flow {
            Some(flow) => {
                Self::check_token(&flow, token)?;
                flow
            }
            None => {
                return Err(DataPlaneError::Unauthorized(
                    "missing or wrong bearer token for this data flow".into(),
                ))
            }
        };
        if flow.kind != FlowKind::ProviderPull || flow.state != DataFlowState::Started {
            return Err(illegal(&flow.id, flow.state.as_str(), "pull from"));
        }
        let source_address =
            ResourceAddress::from_json(flow.source.clone()).map_err(DataPlaneError::Internal)?;
        let source = self
            .transfers
            .source(&source_address)
            .map_err(transfer_to_api)?;
        let input = source.open(offset).await.map_err(transfer_to_api)?;
        let counted = counted(input, guard.progress.clone());
        // The guard lives as long as the stream: the flow's entry goes with its last stream.
        let gated = counted.stream.map(move |chunk| {
            if guard.gate.load(Ordering::Acquire) {
                chunk
            } else {
                Err(TransferError::Rejected(
                    "the data flow was suspended or terminated".into(),
                ))
            }
        });
        // End the stream after the first refused chunk.
        let gated = gated.scan(false, |failed, chunk| {
            if *failed {
                return futures::future::ready(None);
            }
            *failed = chunk.is_err();
            futures::future::ready(Some(chunk))
        });
        Ok(PullGrant {
            stream: SourceStream {
                stream: Box::pin(gated),
                ..counted
            },
        })
    }

    async fn ingest_flow(
        &self,
        id: &str,
        token: Option<&str>,
    ) -> Result<(DataFlow, Box<dyn dataplane_spi::DataSink>)> {
        let flow = match self.store.find(id).await? {
            Some(flow) => {
                Self::check_token(&flow, token)?;
                flow
            }
            None => {
                return Err(DataPlaneError::Unauthorized(
                    "missing or wrong bearer token for this data flow".into(),
                ))
            }
        };
        if flow.kind != FlowKind::ConsumerPush
            || !matches!(flow.state, DataFlowState::Prepared | DataFlowState::Started)
        {
            return Err(illegal(&flow.id, flow.state.as_str(), "upload to"));
        }
        let destination = flow
            .destination
            .clone()
            .ok_or_else(|| DataPlaneError::Internal("consumer flow without destination".into()))
            .and_then(|d| ResourceAddress::from_json(d).map_err(DataPlaneError::Internal))?;
        let sink = self.transfers.sink(&destination).map_err(transfer_to_api)?;
        Ok((flow, sink))
    }

    /// The tus `Upload-Offset` of a flow's ingest endpoint: how many bytes its destination
    /// holds, so that an interrupted push continues there.
    ///
    /// # Errors
    /// As [`DataPlane::begin_ingest`]; `Conflict` when the destination cannot append.
    pub async fn ingest_offset(&self, id: &str, token: Option<&str>) -> Result<u64> {
        let (flow, sink) = self.ingest_flow(id, token).await?;
        sink.resume_point(u64::MAX)
            .await
            .map_err(transfer_to_api)?
            .ok_or_else(|| {
                DataPlaneError::Conflict(format!(
                    "the destination of data flow '{}' cannot be resumed",
                    flow.id
                ))
            })
    }

    /// Authorises an upload to the ingest endpoint and starts writing it to the flow's
    /// destination: from the start (`offset` `None`: POST/PUT replace the object) or appended at
    /// `offset`, which must equal the current [`DataPlane::ingest_offset`] (tus `PATCH`). Send
    /// the body's chunks into the returned sender, drop it at the end, then await the receiver
    /// for the bytes written.
    ///
    /// # Errors
    /// `Unauthorized` wrong token, `Conflict` when the flow is not a PREPARED/STARTED consumer-push flow or
    /// `offset` is not the current offset, `Unavailable` while an earlier upload is still running.
    pub async fn begin_ingest(
        self: &Arc<Self>,
        id: &str,
        token: Option<&str>,
        body_length: Option<u64>,
        offset: Option<u64>,
    ) -> Result<(
        mpsc::Sender<std::result::Result<bytes::Bytes, TransferError>>,
        tokio::sync::oneshot::Receiver<Result<u64>>,
    )> {
        let (flow, sink) = self.ingest_flow(id, token).await?;
        if let Some(offset) = offset {
            let current = sink.resume_point(u64::MAX).await.map_err(transfer_to_api)?;
            if current != Some(offset) {
                return Err(DataPlaneError::Conflict(format!(
                    "Upload-Offset {offset} does not match the upload's offset {}",
                    current.map_or_else(|| "(not resumable)".to_owned(), |c| c.to_string())
                )));
            }
        }
        let offset = offset.unwrap_or(0);
        let size = body_length.map(|length| offset.saturating_add(length));
        if let Some(max) = self.config.max_bytes {
            // Refused before the destination is touched when the sender says how much comes.
            if size.unwrap_or(offset) > max {
                return Err(DataPlaneError::TooLarge(format!(
                    "the upload exceeds dpf.transfer.max-bytes ({max} bytes per data flow)"
                )));
            }
        }
        let (sender, receiver) = mpsc::channel(8);
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let input = SourceStream {
            stream: Box::pin(tokio_stream_from(receiver)),
            size,
            content_type: None,
            offset,
        };
        let exceeded = Arc::new(AtomicBool::new(false));
        let input = match self.config.max_bytes {
            Some(max) => crate::limits::capped(input, max, "the upload", exceeded.clone())
                .map_err(|e| DataPlaneError::TooLarge(e.to_string()))?,
            None => input,
        };
        let flow_id = flow.id.clone();
        // The flow completes on the control plane's `completed`; the upload only moves bytes.
        let upload = move |progress| async move {
            let result = sink.write(counted(input, progress)).await.map_err(|error| {
                if exceeded.load(Ordering::Acquire) {
                    DataPlaneError::TooLarge(error.to_string())
                } else {
                    transfer_to_api(error)
                }
            });
            if result.is_err() && offset > 0 {
                // An interrupted append leaves nothing behind: the next HEAD answers the offset
                // the sender last completed, so each PATCH lands whole or not at all.
                let rewind = SourceStream {
                    stream: Box::pin(futures::stream::empty()),
                    size: None,
                    content_type: None,
                    offset,
                };
                if let Err(error) = sink.write(rewind).await {
                    tracing::warn!(%flow_id, %error, "cannot discard a partial upload");
                }
            }
            if let Ok(bytes) = &result {
                tracing::debug!(%flow_id, offset, bytes, "ingest finished");
            }
            let _ = done_tx.send(result.map(|bytes| offset + bytes));
        };
        // Checked before anything is written, so a refused upload never touches the
        // destination. A previous upload still running is usually the connection of a sender
        // that just lost its flow to another replica and is about to be closed: `Unavailable`, which
        // senders retry.
        if !self
            .runner
            .spawn(&flow.id, flow.epoch, IfRunning::Refuse, upload)
        {
            return Err(DataPlaneError::Unavailable(format!(
                "an earlier upload to data flow '{}' is still being received; retry shortly",
                flow.id
            )));
        }
        Ok((sender, done_rx))
    }

    fn open_gate(&self, flow_id: &str) {
        self.runner.open_gate(flow_id);
    }

    fn close_gate(&self, flow_id: &str) {
        self.runner.close_gate(flow_id);
    }

    /// Stops this replica's transfer of a flow and waits until it cannot write any more.
    async fn stop_local(&self, flow_id: &str) {
        self.runner.stop(flow_id).await;
    }

    /// Starts the transfer of a flow this replica owns, unless one is running already.
    fn spawn_pipeline(self: &Arc<Self>, flow: DataFlow) {
        let Some(owner) = FlowOwner::of(&flow) else {
            return;
        };
        let plane = self.clone();
        let flow_id = flow.id.clone();
        self.runner.spawn(
            &flow_id,
            owner.epoch,
            IfRunning::KeepSameEpoch,
            move |progress| attempts::run(plane, flow, owner, progress),
        );
    }

    fn callback(&self, flow: &DataFlow, event: &'static str, error: Option<String>) {
        self.callbacks.send(CallbackEvent {
            process_id: flow.process_id.clone(),
            participant_id: flow.participant_id.clone(),
            event,
            message: message(flow, None, error),
        });
    }

    /// Joins the cluster and runs the replica's background work until the handle is shut
    /// down: lease renewal, claims of unowned STARTED flows, takeover of flows whose owner's
    /// lease expired, and finishing SUSPENDING/TERMINATING flows this replica owns.
    ///
    /// # Errors
    /// [`DataPlaneError::Conflict`] when a live replica already uses this runtime id.
    pub async fn run(self: &Arc<Self>) -> Result<DataPlaneHandle> {
        self.join().await?;
        if let Err(error) = self.check_identity().await {
            // Leave at once so the name is free for a corrected start.
            let _ = self
                .store
                .remove_member(self.me(), &self.incarnation())
                .await;
            return Err(error);
        }
        let (stop, mut stopped) = watch::channel(false);
        let plane = self.clone();
        let mut hints = self.store.change_hints();
        let task = tokio::spawn(async move {
            let mut last_renew = Instant::now();
            loop {
                let hinted = async {
                    match hints.as_mut() {
                        Some(receiver) => {
                            if receiver.changed().await.is_err() {
                                std::future::pending::<()>().await;
                            }
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    _ = stopped.changed() => break,
                    () = tokio::time::sleep(plane.config.claim_interval) => {}
                    () = hinted => {}
                }
                if last_renew.elapsed() >= plane.config.renew_interval {
                    last_renew = Instant::now();
                    if let Err(error) = plane.renew().await {
                        tracing::error!(%error, "lease renewal failed");
                    }
                }
                if let Err(error) = plane.tick().await {
                    tracing::warn!(%error, "state machine tick failed");
                }
            }
            plane.leave().await;
        });
        Ok(DataPlaneHandle { stop, task })
    }

    async fn join(&self) -> Result<()> {
        let incarnation = self.incarnation();
        let registration = MemberRegistration {
            runtime_id: self.me().to_owned(),
            incarnation: incarnation.clone(),
            lease_ms: self.config.lease_ms(),
            state: MemberState::Initializing.as_str().into(),
        };
        let began = Instant::now();
        self.store.register_member(&registration).await?;
        self.lease_renewed(began);
        // A heartbeat key bound to this session: watchers of `dpf/heartbeat/` see the replica
        // come and, once its session dies, go (the leader deletes the key).
        let heartbeat = format!("{HEARTBEAT_PREFIX}{}", self.me());
        let value =
            serde_json::json!({"incarnation": incarnation, "api": self.config.public_base_url})
                .to_string();
        if let Err(error) = self
            .coordinator
            .kv_put(
                &heartbeat,
                &value,
                dataplane_spi::Expected::Any,
                Some(&self.session()),
            )
            .await
        {
            tracing::warn!(%error, "heartbeat key not written");
        }
        if let Ok(mut reported) = self.reported.lock() {
            *reported = Some(MemberState::Initializing);
        }
        tracing::info!(runtime_id = %self.me(), %incarnation, "joined the cluster");
        Ok(())
    }

    async fn renew(self: &Arc<Self>) -> Result<()> {
        let began = Instant::now();
        match self
            .store
            .renew_member(self.me(), &self.incarnation(), self.config.lease_ms())
            .await
        {
            Ok(_) => {
                self.lease_renewed(began);
                self.metrics.renewals.add(1);
                self.metrics
                    .renewal_micros
                    .add(u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX));
                Ok(())
            }
            Err(StoreError::MembershipLost(message)) => {
                // Our flows may already belong to others: stop writing at once, then rejoin as
                // a new incarnation, which releases whatever we still held so it runs again.
                tracing::error!(%message, "membership lost; stopping every local transfer");
                self.stop_all().await;
                if let Ok(mut incarnation) = self.incarnation.lock() {
                    *incarnation = uuid::Uuid::new_v4().to_string();
                }
                self.join().await
            }
            Err(other) => Err(other.into()),
        }
    }

    /// Publishes this replica's lifecycle state when it changed (one statement, only then).
    async fn report_state(&self, state: MemberState) {
        let changed = self
            .reported
            .lock()
            .map(|mut reported| reported.replace(state) != Some(state))
            .unwrap_or(false);
        if changed {
            match self
                .store
                .set_member_state(self.me(), &self.incarnation(), state.as_str())
                .await
            {
                Ok(()) => tracing::info!(state = state.as_str(), "member state"),
                Err(error) => {
                    tracing::debug!(%error, "member state not published");
                    if let Ok(mut reported) = self.reported.lock() {
                        *reported = None;
                    }
                }
            }
        }
    }

    /// IDLE without running transfers, HEALTHY with.
    async fn report_load(&self) {
        let busy = self.runner.running() > 0;
        self.report_state(if busy {
            MemberState::Healthy
        } else {
            MemberState::Idle
        })
        .await;
    }

    /// Members whose lease is valid, by name, as the store's clock sees them.
    ///
    /// # Errors
    /// Store failures.
    pub async fn live_members(&self) -> Result<Vec<dataplane_spi::Member>> {
        let now = self.store.now().await?;
        Ok(self
            .store
            .list_members()
            .await?
            .into_iter()
            .filter(|m| m.lease_expires_at > now)
            .collect())
    }

    async fn tick(self: &Arc<Self>) -> Result<()> {
        if !self.lease_valid() {
            // Renewal is late: whatever we run may already belong to someone else.
            self.stop_all().await;
            return Ok(());
        }
        if let Err(error) = self.sync_config().await {
            tracing::warn!(%error, "cannot read the cluster configuration");
        }
        if let Err(error) = self.refresh_topology().await {
            tracing::warn!(%error, "cannot read the baseline");
        }
        let batch = self.live.batch_size();
        let me = self.me().to_owned();
        self.shed_excess().await;
        // Keep claiming while batches come back full, so that a burst (a dead replica's flows)
        // is absorbed within one tick rather than one batch per tick; never beyond the room
        // left under max-concurrent-flows.
        for _ in 0..MAX_BATCHES_PER_TICK {
            let want = self.room().min(batch);
            if want == 0 {
                break;
            }
            let claimed = self.store.claim(&me, &CLAIMABLE, want).await?;
            self.metrics.claims.add(claimed.len() as u64);
            let full = claimed.len() == want;
            for flow in claimed {
                self.adopt(flow).await;
            }
            if !full {
                break;
            }
        }
        let abandoned = [
            DataFlowState::Started,
            DataFlowState::Suspending,
            DataFlowState::Terminating,
        ];
        for _ in 0..MAX_BATCHES_PER_TICK {
            let want = self.room().min(batch);
            if want == 0 {
                break;
            }
            let taken = self.store.take_over(&me, &abandoned, want).await?;
            self.metrics.takeovers.add(taken.len() as u64);
            let full = taken.len() == want;
            for flow in taken {
                tracing::info!(flow_id = %flow.id, epoch = flow.epoch, state = %flow.state, "took over a data flow of a dead replica");
                self.adopt(flow).await;
            }
            if !full {
                break;
            }
        }
        let stopping = [DataFlowState::Suspending, DataFlowState::Terminating];
        for flow in self.store.list_owned(&me, &stopping, batch).await? {
            self.adopt(flow).await;
        }
        if let Err(error) = self.lead().await {
            tracing::warn!(%error, "leader duties failed");
        }
        self.report_load().await;
        Ok(())
    }

    /// How many more transfers this replica may start now.
    fn room(&self) -> usize {
        if !self.may_own() {
            return 0;
        }
        match self.live.max_concurrent() {
            0 => usize::MAX,
            max => usize::try_from(max.saturating_sub(self.running_transfers() as u64))
                .unwrap_or(usize::MAX),
        }
    }

    /// When max-concurrent-flows was lowered below what runs here, gives the newest transfers
    /// back (they wait, unowned, and continue from their checkpoints wherever there is room).
    async fn shed_excess(&self) {
        let max = self.live.max_concurrent();
        if max == 0 {
            return;
        }
        let excess: Vec<(String, i64)> = {
            let mut live = self.runner.running_tasks();
            let keep = usize::try_from(max).unwrap_or(usize::MAX);
            if live.len() <= keep {
                return;
            }
            live.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            live.truncate(live.len() - keep);
            live
        };
        for (flow_id, epoch) in excess {
            self.stop_local(&flow_id).await;
            let owner = FlowOwner {
                runtime_id: self.me().to_owned(),
                epoch,
            };
            match self.store.release(&owner, &flow_id).await {
                Ok(()) => {
                    tracing::info!(%flow_id, "released a transfer: over max-concurrent-flows")
                }
                Err(error) => tracing::debug!(%flow_id, %error, "release refused"),
            }
        }
    }

    fn session(&self) -> Session {
        Session {
            runtime_id: self.me().to_owned(),
            incarnation: self.incarnation(),
        }
    }

    /// Applies configuration changes under `dpf/config/` (the whole listing the first time, then
    /// the events after the last applied revision) and publishes the revision applied.
    async fn sync_config(&self) -> std::result::Result<(), dataplane_spi::CoordinationError> {
        let after = self.config_revision.load(Ordering::Acquire);
        let revision = if after < 0 {
            let (entries, revision) = self.coordinator.kv_list(CONFIG_PREFIX).await?;
            for entry in &entries {
                self.apply_setting(&entry.key, Some(&entry.value));
            }
            revision
        } else {
            match self.coordinator.kv_events(CONFIG_PREFIX, after, 1000).await {
                Ok(events) if events.is_empty() => return Ok(()),
                Ok(events) => {
                    for event in &events {
                        let value = (event.kind == dataplane_spi::KvEventKind::Put)
                            .then_some(event.value.as_str());
                        self.apply_setting(&event.key, value);
                    }
                    events.last().map_or(after, |e| e.revision)
                }
                Err(dataplane_spi::CoordinationError::Compacted { .. }) => {
                    // Missed changes: start over from a fresh listing.
                    self.config_revision.store(-1, Ordering::Release);
                    return Ok(());
                }
                Err(other) => return Err(other),
            }
        };
        self.config_revision.store(revision, Ordering::Release);
        self.live
            .applied_revision
            .store(u64::try_from(revision).unwrap_or(0), Ordering::Relaxed);
        self.coordinator
            .publish_config_revision(&self.session(), revision)
            .await
    }

    fn apply_setting(&self, key: &str, value: Option<&str>) {
        if self.live.apply(key, value, &self.config) {
            tracing::info!(%key, value = value.unwrap_or("(default)"), "applied a cluster setting");
        }
    }

    /// Campaigns (or renews) the leadership; when leading, does what only the leader does:
    /// expires the keys of dead sessions, reaps each dead member once, and now and then purges
    /// old finished flows and compacts the key-value event log. Every duty is fenced by the term.
    async fn lead(&self) -> std::result::Result<(), dataplane_spi::CoordinationError> {
        let session = self.session();
        let leader = self
            .coordinator
            .campaign(&session, self.config.lease_ms())
            .await?;
        let term = leader
            .as_ref()
            .filter(|l| l.leader == session.runtime_id && l.incarnation == session.incarnation)
            .map(|l| l.term);
        let previous = self
            .leadership
            .lock()
            .map(|mut l| std::mem::replace(&mut *l, leader.clone()))
            .unwrap_or(None);
        let Some(term) = term else {
            return Ok(());
        };
        if previous.as_ref().map(|l| (l.leader.as_str(), l.term)) != Some((self.me(), term)) {
            tracing::info!(term, "became the leader");
        }
        self.coordinator.kv_expire_sessions().await?;
        let now = self
            .store
            .now()
            .await
            .map_err(dataplane_spi::CoordinationError::from)?;
        for member in self
            .store
            .list_members()
            .await
            .map_err(dataplane_spi::CoordinationError::from)?
        {
            if member.lease_expires_at <= now
                && self
                    .coordinator
                    .reap_member(&session, term, &member.runtime_id, &member.incarnation)
                    .await?
            {
                tracing::info!(member = %member.runtime_id, incarnation = %member.incarnation, term, "reaped dead member");
            }
        }
        self.lead_baseline().await?;
        let due = self
            .last_housekeeping
            .lock()
            .map(|mut last| {
                let due = last.is_none_or(|at| at.elapsed() >= HOUSEKEEPING_INTERVAL);
                if due {
                    *last = Some(Instant::now());
                }
                due
            })
            .unwrap_or(false);
        if due {
            if !self.config.retention.is_zero() {
                let age = i64::try_from(self.config.retention.as_millis()).unwrap_or(i64::MAX);
                let purged = self
                    .coordinator
                    .purge_finished_flows(&session, term, age)
                    .await?;
                if purged > 0 {
                    tracing::info!(purged, "purged finished flows past retention");
                }
            }
            self.coordinator.kv_compact(KV_EVENTS_KEPT).await?;
        }
        Ok(())
    }

    /// The leader as of this replica's last campaign.
    pub fn known_leader(&self) -> Option<Leader> {
        self.leadership.lock().ok().and_then(|l| l.clone())
    }

    /// Continues a flow this replica just obtained or must finish.
    async fn adopt(self: &Arc<Self>, flow: DataFlow) {
        match flow.state {
            DataFlowState::Suspending => {
                let _ = self.finish_stop(&flow, DataFlowState::Suspended).await;
            }
            DataFlowState::Terminating => {
                let _ = self.finish_stop(&flow, DataFlowState::Terminated).await;
            }
            DataFlowState::Started if runs_pipeline(flow.kind) => self.spawn_pipeline(flow),
            _ => {}
        }
    }

    async fn stop_all(&self) {
        let ids = self.runner.with_tasks();
        for id in ids {
            self.stop_local(&id).await;
        }
    }

    async fn leave(&self) {
        self.report_state(MemberState::Stopping).await;
        self.stop_all().await;
        match self
            .store
            .remove_member(self.me(), &self.incarnation())
            .await
        {
            Ok(released) => tracing::info!(released, "left the cluster; owned flows released"),
            Err(error) => tracing::warn!(%error, "could not leave the cluster cleanly"),
        }
    }
}

impl PipelineHost for DataPlane {
    fn flow_store(&self) -> &Arc<dyn DataFlowStore> {
        &self.store
    }

    fn transfer_registry(&self) -> &TransferRegistry {
        &self.transfers
    }

    fn checkpoint_policy(&self) -> CheckpointPolicy {
        self.live.checkpoints()
    }

    fn retry_policy(&self) -> (u32, Duration) {
        (self.config.retry_limit, self.config.retry_backoff)
    }

    fn lease_still_valid(&self) -> bool {
        self.lease_valid()
    }

    fn completed(&self, flow: &DataFlow) {
        self.metrics.completed.add(1);
        self.callback(flow, "completed", None);
    }

    fn failed(&self) {
        self.metrics.failed.add(1);
    }

    fn errored(&self, flow: &DataFlow, error: String) {
        self.callback(flow, "errored", Some(error));
    }
}

fn transfer_to_api(error: TransferError) -> DataPlaneError {
    match error {
        TransferError::Unsupported(_) | TransferError::InvalidAddress(_) => {
            DataPlaneError::InvalidInput(error.to_string())
        }
        TransferError::Rejected(_) => DataPlaneError::Conflict(error.to_string()),
        TransferError::Transient(_) => DataPlaneError::Unavailable(error.to_string()),
    }
}

/// A `Stream` over an mpsc receiver (ingest bodies).
fn tokio_stream_from(
    mut receiver: mpsc::Receiver<std::result::Result<bytes::Bytes, TransferError>>,
) -> impl futures::Stream<Item = std::result::Result<bytes::Bytes, TransferError>> + Send {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

type CoordResult<T> = std::result::Result<T, dataplane_spi::CoordinationError>;

/// See `From<CoordinationError> for DataPlaneError` (error.rs), the one mapping.
fn coordination(error: dataplane_spi::CoordinationError) -> DataPlaneError {
    error.into()
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

impl DataPlane {
    fn read_json<T: serde::de::DeserializeOwned>(value: &str, key: &str) -> CoordResult<T> {
        serde_json::from_str(value)
            .map_err(|e| dataplane_spi::CoordinationError::Internal(format!("corrupt {key}: {e}")))
    }

    async fn read_baseline(&self) -> CoordResult<Option<(Baseline, i64)>> {
        match self.coordinator.kv_get(BASELINE_KEY).await? {
            Some(entry) => Ok(Some((
                Self::read_json(&entry.value, BASELINE_KEY)?,
                entry.version,
            ))),
            None => Ok(None),
        }
    }

    async fn read_state(&self) -> CoordResult<(ClusterState, i64)> {
        match self.coordinator.kv_get(STATE_KEY).await? {
            Some(entry) if entry.value.starts_with("INACTIVE") => {
                Ok((ClusterState::Inactive, entry.version))
            }
            Some(entry) => Ok((ClusterState::Active, entry.version)),
            None => Ok((ClusterState::Active, 0)),
        }
    }

    async fn read_auto_adjust(&self) -> CoordResult<(AutoAdjust, i64)> {
        match self.coordinator.kv_get(AUTO_ADJUST_KEY).await? {
            Some(entry) => Ok((
                Self::read_json(&entry.value, AUTO_ADJUST_KEY)?,
                entry.version,
            )),
            None => Ok((AutoAdjust::default(), 0)),
        }
    }

    async fn refresh_topology(&self) -> CoordResult<()> {
        let baseline = self.read_baseline().await?;
        let (state, _) = self.read_state().await?;
        if let Some((b, _)) = &baseline {
            self.record_locally(b).await;
        }
        if let Ok(mut topology) = self.topology.lock() {
            *topology = Topology { baseline, state };
        }
        Ok(())
    }

    fn record_path(&self) -> std::path::PathBuf {
        self.config.data_dir.join("cluster.json")
    }

    async fn record_locally(&self, baseline: &Baseline) {
        let Ok(Some(id)) = self.coordinator.kv_get(CLUSTER_ID_KEY).await else {
            return;
        };
        let record = LocalRecord {
            cluster_id: id.value,
            baseline_version: baseline.version,
            history: baseline.history.clone(),
        };
        let path = self.record_path();
        let current = tokio::fs::read_to_string(&path)
            .await
            .ok()
            .and_then(|t| serde_json::from_str::<LocalRecord>(&t).ok());
        if current.as_ref() == Some(&record) {
            return;
        }
        if let Ok(text) = serde_json::to_string_pretty(&record) {
            // Owner-only: the data directory 0700, the record 0600.
            let written = tokio::task::spawn_blocking({
                let path = path.clone();
                move || {
                    if let Some(parent) = path.parent() {
                        dataplane_spi::secrets::create_private_dir(parent)?;
                    }
                    dataplane_spi::secrets::write_private_file(&path, text.as_bytes())
                }
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            if let Err(error) = written {
                tracing::warn!(%error, path = %path.display(), "cannot record the cluster identity");
            }
        }
    }

    /// At start: the cluster id (created by the first replica), the refusal of a replica whose
    /// data directory belongs to another cluster or to a baseline history this cluster does not
    /// have, and the initial baseline from configuration.
    async fn check_identity(&self) -> Result<()> {
        let id = uuid::Uuid::new_v4().to_string();
        let cluster_id = match self
            .coordinator
            .kv_put(CLUSTER_ID_KEY, &id, dataplane_spi::Expected::Absent, None)
            .await
        {
            Ok(entry) => entry.value,
            Err(dataplane_spi::CoordinationError::Conflict { .. }) => self
                .coordinator
                .kv_get(CLUSTER_ID_KEY)
                .await
                .map_err(coordination)?
                .map(|e| e.value)
                .unwrap_or(id),
            Err(other) => return Err(coordination(other)),
        };
        let baseline = self.read_baseline().await.map_err(coordination)?;
        let path = self.record_path();
        if let Ok(text) = tokio::fs::read_to_string(&path).await {
            let record: LocalRecord = serde_json::from_str(&text).map_err(|e| {
                DataPlaneError::InvalidInput(format!(
                    "{} is not a cluster record ({e}); remove it to join afresh",
                    path.display()
                ))
            })?;
            let clean = format!(
                "Consider cleaning persistent storage: remove {} (and only then restart) to join cluster {cluster_id} as a new replica, or point dpf.store.url at the cluster this replica belongs to",
                path.display()
            );
            if record.cluster_id != cluster_id {
                return Err(DataPlaneError::Conflict(format!(
                    "this replica belongs to cluster {} but the store belongs to cluster {cluster_id}. {clean}",
                    record.cluster_id
                )));
            }
            let (version, history) = baseline
                .as_ref()
                .map_or((0, String::new()), |(b, _)| (b.version, b.history.clone()));
            if record.baseline_version > version {
                return Err(DataPlaneError::Conflict(format!(
                    "this replica saw baseline version {} but the cluster is at version {version}: its history is ahead of the cluster's. {clean}",
                    record.baseline_version
                )));
            }
            if record.baseline_version == version && version > 0 && record.history != history {
                return Err(DataPlaneError::Conflict(format!(
                    "this replica's baseline version {version} has history {} but the cluster's has {history}: the histories diverged. {clean}",
                    record.history
                )));
            }
        }
        if baseline.is_none() {
            if let Some(members) = &self.config.initial_baseline {
                let first = Baseline::first(members.clone());
                let value = serde_json::to_string(&first).unwrap_or_default();
                if self
                    .coordinator
                    .kv_put(BASELINE_KEY, &value, dataplane_spi::Expected::Absent, None)
                    .await
                    .is_ok()
                {
                    let _ = self
                        .coordinator
                        .kv_put(STATE_KEY, "INACTIVE", dataplane_spi::Expected::Any, None)
                        .await;
                    tracing::info!(members = ?members, "initial baseline set; the cluster is INACTIVE until every member is online");
                }
            }
        }
        self.refresh_topology().await.map_err(coordination)?;
        Ok(())
    }

    /// `Unavailable` while the cluster is INACTIVE, naming the missing baseline members.
    async fn require_active(&self) -> Result<()> {
        let inactive = |manager: &Self| {
            manager
                .topology
                .lock()
                .is_ok_and(|t| t.baseline.is_some() && t.state == ClusterState::Inactive)
        };
        if !inactive(self) {
            return Ok(());
        }
        // The cached view may predate an activation: re-read it before refusing (only on this
        // refusal path, so the common case costs nothing).
        if let Err(error) = self.refresh_topology().await {
            tracing::debug!(%error, "cannot refresh the topology; using the cached view");
        }
        let topology = self.topology.lock().map(|t| t.clone()).ok();
        let Some(Topology {
            baseline: Some((baseline, _)),
            state: ClusterState::Inactive,
        }) = topology
        else {
            return Ok(());
        };
        let online: BTreeSet<String> = self
            .live_members()
            .await?
            .into_iter()
            .map(|m| m.runtime_id)
            .collect();
        let missing: Vec<&String> = baseline
            .members
            .iter()
            .filter(|m| !online.contains(*m))
            .collect();
        Err(DataPlaneError::Unavailable(if missing.is_empty() {
            "the cluster is INACTIVE (deactivated by an operator); activate it with dpfctl baseline activate".to_owned()
        } else {
            format!(
                "the cluster is INACTIVE until every baseline member is online; missing: {}",
                missing
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }))
    }

    /// Leader: activates when every baseline member is online, and adjusts the baseline to the
    /// live replicas when auto-adjust's countdown ran out or fewer than `min_live` baseline
    /// members are live.
    async fn lead_baseline(&self) -> CoordResult<()> {
        let Some((baseline, version)) = self.read_baseline().await? else {
            return Ok(());
        };
        let now = self
            .store
            .now()
            .await
            .map_err(dataplane_spi::CoordinationError::from)?;
        let live: BTreeSet<String> = self
            .store
            .list_members()
            .await
            .map_err(dataplane_spi::CoordinationError::from)?
            .into_iter()
            .filter(|m| m.lease_expires_at > now)
            .map(|m| m.runtime_id)
            .collect();
        let (state, state_version) = self.read_state().await?;
        if state == ClusterState::Inactive {
            // Only the automatic initial activation; an operator's deactivate is marked.
            let manual = self
                .coordinator
                .kv_get(STATE_KEY)
                .await?
                .is_some_and(|e| e.value == "INACTIVE (manual)");
            if !manual && baseline.members.iter().all(|m| live.contains(m)) {
                let expected = dataplane_spi::Expected::Version(state_version);
                if self
                    .coordinator
                    .kv_put(STATE_KEY, "ACTIVE", expected, None)
                    .await
                    .is_ok()
                {
                    tracing::info!(
                        version = baseline.version,
                        "every baseline member is online: the cluster is ACTIVE"
                    );
                }
            }
            return Ok(());
        }
        let changed = {
            let mut membership = self
                .membership
                .lock()
                .map_err(|_| dataplane_spi::CoordinationError::Internal("lock".into()))?;
            match membership.as_ref() {
                Some((seen, _)) if *seen == live => {}
                _ => *membership = Some((live.clone(), Instant::now())),
            }
            membership.as_ref().map(|(_, since)| since.elapsed())
        };
        let live_baseline = baseline
            .members
            .iter()
            .filter(|m| live.contains(*m))
            .count();
        if let Some(min) = self.config.min_live {
            if live_baseline < min && live != baseline.members && !live.is_empty() {
                tracing::warn!(live_baseline, min, live = ?live, "fewer baseline members are live than dpf.cluster.baseline.min-live: the baseline becomes the live replicas now");
                return self.write_baseline(&baseline, version, live).await;
            }
        }
        let (auto, _) = self.read_auto_adjust().await?;
        if auto.enabled && live != baseline.members && !live.is_empty() {
            if let Some(stable) = changed {
                if stable >= Duration::from_millis(auto.timeout_ms) {
                    tracing::info!(live = ?live, stable_ms = stable.as_millis() as u64, "auto-adjust: the baseline becomes the live replicas");
                    return self.write_baseline(&baseline, version, live).await;
                }
            }
        }
        Ok(())
    }

    async fn write_baseline(
        &self,
        current: &Baseline,
        version: i64,
        members: BTreeSet<String>,
    ) -> CoordResult<()> {
        let next = current.next(members);
        let value = serde_json::to_string(&next).unwrap_or_default();
        self.coordinator
            .kv_put(
                BASELINE_KEY,
                &value,
                dataplane_spi::Expected::Version(version),
                None,
            )
            .await?;
        tracing::info!(version = next.version, members = ?next.members, "baseline changed");
        Ok(())
    }

    /// `GET /cluster/baseline`.
    ///
    /// # Errors
    /// Store failures.
    pub async fn baseline_view(&self) -> Result<BaselineView> {
        let cluster_id = self
            .coordinator
            .kv_get(CLUSTER_ID_KEY)
            .await
            .map_err(coordination)?
            .map(|e| e.value)
            .unwrap_or_default();
        let baseline = self.read_baseline().await.map_err(coordination)?;
        let (state, _) = self.read_state().await.map_err(coordination)?;
        let (auto_adjust, _) = self.read_auto_adjust().await.map_err(coordination)?;
        let live: BTreeSet<String> = self
            .live_members()
            .await?
            .into_iter()
            .map(|m| m.runtime_id)
            .collect();
        let in_baseline = baseline
            .as_ref()
            .map(|(b, _)| b.members.clone())
            .unwrap_or_default();
        Ok(BaselineView {
            cluster_id,
            state: state.as_str(),
            version: baseline.as_ref().map_or(0, |(b, _)| b.version),
            history: baseline.as_ref().map(|(b, _)| b.history.clone()),
            members: in_baseline
                .iter()
                .map(|m| BaselineMember {
                    name: m.clone(),
                    online: live.contains(m),
                })
                .collect(),
            others: live
                .iter()
                .filter(|m| !in_baseline.contains(*m))
                .cloned()
                .collect(),
            auto_adjust,
        })
    }

    /// Changes the baseline: `set` replaces it, `add`/`remove` edit it. Compare-and-set on
    /// `expected_version` when given. Refused on an INACTIVE cluster and when it would drop an
    /// online member.
    ///
    /// # Errors
    /// `Conflict` (inactive cluster, online member, version conflict), `InvalidInput` (empty or bad names).
    pub async fn change_baseline(
        &self,
        op: &str,
        names: &[String],
        expected_version: Option<u64>,
    ) -> Result<BaselineView> {
        if names.iter().any(|n| n.trim().is_empty()) {
            return Err(DataPlaneError::InvalidInput(
                "replica names must not be blank".into(),
            ));
        }
        let (state, _) = self.read_state().await.map_err(coordination)?;
        let current = self.read_baseline().await.map_err(coordination)?;
        if state == ClusterState::Inactive && current.is_some() {
            return Err(DataPlaneError::Conflict(
                "Changing the baseline of an INACTIVE cluster is not allowed; activate it first (dpfctl baseline activate)".into(),
            ));
        }
        let live: BTreeSet<String> = self
            .live_members()
            .await?
            .into_iter()
            .map(|m| m.runtime_id)
            .collect();
        let before = current
            .as_ref()
            .map(|(b, _)| b.members.clone())
            .unwrap_or_default();
        let names: BTreeSet<String> = names.iter().map(|n| n.trim().to_owned()).collect();
        let after: BTreeSet<String> = match op {
            "set" => names,
            "add" => before.union(&names).cloned().collect(),
            "remove" => before.difference(&names).cloned().collect(),
            other => {
                return Err(DataPlaneError::InvalidInput(format!(
                    "unknown baseline operation '{other}'"
                )))
            }
        };
        if after.is_empty() {
            return Err(DataPlaneError::InvalidInput(
                "a baseline needs at least one member".into(),
            ));
        }
        let dropped_online: Vec<&String> = before
            .difference(&after)
            .filter(|m| live.contains(*m))
            .collect();
        if !dropped_online.is_empty() {
            return Err(DataPlaneError::Conflict(format!(
                "Failed to remove {} from the baseline: online members cannot be removed; stop them first",
                dropped_online.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        let current_version = current.as_ref().map_or(0, |(b, _)| b.version);
        if let Some(expected) = expected_version {
            if expected != current_version {
                return Err(DataPlaneError::Conflict(format!(
                    "baseline version conflict: expected {expected}, the cluster is at {current_version}"
                )));
            }
        }
        match current {
            Some((baseline, version)) => self
                .write_baseline(&baseline, version, after)
                .await
                .map_err(coordination)?,
            None => {
                let first = Baseline::first(after);
                let value = serde_json::to_string(&first).unwrap_or_default();
                self.coordinator
                    .kv_put(BASELINE_KEY, &value, dataplane_spi::Expected::Absent, None)
                    .await
                    .map_err(coordination)?;
                let _ = self
                    .coordinator
                    .kv_put(STATE_KEY, "ACTIVE", dataplane_spi::Expected::Any, None)
                    .await;
            }
        }
        self.refresh_topology().await.map_err(coordination)?;
        self.baseline_view().await
    }

    /// Activates or deactivates the cluster.
    ///
    /// # Errors
    /// Store failures.
    pub async fn set_cluster_state(&self, active: bool) -> Result<BaselineView> {
        let value = if active {
            "ACTIVE"
        } else {
            "INACTIVE (manual)"
        };
        self.coordinator
            .kv_put(STATE_KEY, value, dataplane_spi::Expected::Any, None)
            .await
            .map_err(coordination)?;
        self.refresh_topology().await.map_err(coordination)?;
        self.baseline_view().await
    }

    /// Sets auto-adjust.
    ///
    /// # Errors
    /// `InvalidInput` for a zero timeout when enabled.
    pub async fn set_auto_adjust(&self, settings: AutoAdjust) -> Result<BaselineView> {
        if settings.enabled && settings.timeout_ms == 0 {
            return Err(DataPlaneError::InvalidInput(
                "auto-adjust needs a timeout of at least 1 ms".into(),
            ));
        }
        let value = serde_json::to_string(&settings).unwrap_or_default();
        self.coordinator
            .kv_put(AUTO_ADJUST_KEY, &value, dataplane_spi::Expected::Any, None)
            .await
            .map_err(coordination)?;
        self.baseline_view().await
    }
}

impl DataPlane {
    /// Readiness: the store answers and this replica is a member that may take work or is
    /// deliberately idle (outside the baseline); not while joining, stopping, or when its
    /// lease is in doubt.
    ///
    /// # Errors
    /// A reason, for an `Unavailable` answer.
    pub async fn ready(&self) -> std::result::Result<&'static str, String> {
        self.store
            .now()
            .await
            .map_err(|e| format!("store unreachable: {e}"))?;
        if !self.lease_valid() {
            return Err("membership lease not confirmed".into());
        }
        match self.reported.lock().ok().and_then(|r| *r) {
            Some(MemberState::Healthy) => Ok("ACTIVE"),
            Some(MemberState::Idle) => Ok("IDLE"),
            Some(state) => Err(format!("replica is {}", state.as_str())),
            None => Err("replica state unknown".into()),
        }
    }

    /// Prometheus text exposition of this replica's metrics.
    ///
    /// # Errors
    /// Store failures (flows by state).
    pub async fn metrics_text(&self) -> Result<String> {
        use std::fmt::Write;
        let mut out = String::new();
        let by_state = self.store.count_by_state().await?;
        let _ = writeln!(
            out,
            "# HELP dpf_flows Data flows in the shared store by state.\n# TYPE dpf_flows gauge"
        );
        for state in DataFlowState::ALL {
            let n = by_state
                .iter()
                .find(|(s, _)| *s == state)
                .map_or(0, |(_, n)| *n);
            let _ = writeln!(out, "dpf_flows{{state=\"{}\"}} {n}", state.as_str());
        }
        let counters = [
            (
                "dpf_bytes_transferred_total",
                "Bytes moved by transfers of this replica.",
                crate::pipeline::BYTES_TRANSFERRED.load(Ordering::Relaxed),
            ),
            (
                "dpf_claims_total",
                "Unowned flows claimed by this replica.",
                self.metrics.claims.get(),
            ),
            (
                "dpf_takeovers_total",
                "Flows taken over from dead replicas.",
                self.metrics.takeovers.get(),
            ),
            (
                "dpf_lease_renewals_total",
                "Lease renewals.",
                self.metrics.renewals.get(),
            ),
            (
                "dpf_transfers_completed_total",
                "Transfers completed by this replica.",
                self.metrics.completed.get(),
            ),
            (
                "dpf_transfers_failed_total",
                "Transfers that failed for good on this replica.",
                self.metrics.failed.get(),
            ),
            (
                "dpf_callback_retries_total",
                "Callback deliveries retried.",
                self.callbacks.retries(),
            ),
            (
                "dpf_callbacks_failed_total",
                "Callbacks given up.",
                self.callbacks.failures(),
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        let seconds = self.metrics.renewal_micros.get() as f64 / 1e6;
        let _ = writeln!(
            out,
            "# HELP dpf_lease_renew_seconds Lease renewal latency.\n# TYPE dpf_lease_renew_seconds summary\ndpf_lease_renew_seconds_sum {seconds}\ndpf_lease_renew_seconds_count {}",
            self.metrics.renewals.get()
        );
        let _ = writeln!(
            out,
            "# HELP dpf_transfers_running Transfers running on this replica.\n# TYPE dpf_transfers_running gauge\ndpf_transfers_running {}",
            self.running_transfers()
        );
        let _ = writeln!(
            out,
            "# HELP dpf_runner_entries Flows with local state on this replica (transfers, pull streams, uploads).\n# TYPE dpf_runner_entries gauge\ndpf_runner_entries {}",
            self.runner_len()
        );
        let leader = self.known_leader().is_some_and(|l| l.leader == self.me());
        let _ = writeln!(out, "# HELP dpf_leader Whether this replica leads the cluster.\n# TYPE dpf_leader gauge\ndpf_leader {}", u8::from(leader));
        Ok(out)
    }
}
