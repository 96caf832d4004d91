//! What the in-process tests share: replicas over one `MemoryStore`, moving data from the
//! `test-utils` fakes (a [`FakeSource`] registered as type `Test`, a [`RecordingSink`] for
//! every HTTP push address), and DPS messages.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // test support, not every suite uses all of it

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use dataplane_manager::{
    CallbackDispatcher, ControlPlaneRegistry, DataPlane, DataPlaneConfig, DataPlaneError,
    DataPlaneHandle, DataPlaneServices, DatasetRegistry,
};
use dataplane_spi::{
    DataAddress, DataFlowMessage, DataFlowStore, DataSource, DataSourceFactory, ResourceAddress,
    SourceStream, TransferError, TransferRegistry, HTTP_PUSH,
};
use dataplane_store_memory::MemoryStore;
use test_utils::fakes::{FakeSource, RecordingSink, RecordingSinkFactory};

/// A [`FakeSource`] of type `Test` that also records when it was opened (tokio time, so paused
/// tests see advanced time).
#[derive(Debug, Clone)]
pub struct TimedSource {
    pub inner: FakeSource,
    pub opened: Arc<Mutex<Vec<tokio::time::Instant>>>,
}

impl TimedSource {
    pub fn new(inner: FakeSource) -> Self {
        Self {
            inner,
            opened: Arc::default(),
        }
    }
}

#[async_trait]
impl DataSource for TimedSource {
    async fn open(&self, offset: u64) -> Result<SourceStream, TransferError> {
        self.opened
            .lock()
            .unwrap()
            .push(tokio::time::Instant::now());
        self.inner.open(offset).await
    }
}

impl DataSourceFactory for TimedSource {
    fn type_name(&self) -> &str {
        "Test"
    }
    fn create(&self, _address: &ResourceAddress) -> Result<Box<dyn DataSource>, TransferError> {
        Ok(Box::new(self.clone()))
    }
}

/// A source whose transfers never end: nothing is ever read (so nothing is fenced either, even
/// on a replica that never ran and so has no lease), until the transfer is stopped.
pub fn stalling() -> FakeSource {
    stalling_after(0)
}

/// A source whose transfers yield `bytes` bytes in chunks of 16, then stall until stopped.
pub fn stalling_after(bytes: u64) -> FakeSource {
    FakeSource::new(vec![7u8; 1024])
        .chunk_size(16)
        .stall_after(bytes)
}

pub struct Replica {
    pub plane: Arc<DataPlane>,
    pub store: MemoryStore,
    pub source: TimedSource,
    pub sink: RecordingSink,
    pub config: DataPlaneConfig,
    /// The cluster services until [`Replica::run`] starts them.
    pub services: Mutex<Option<DataPlaneServices>>,
}

impl Replica {
    /// Joins the cluster and starts the replica's background tasks (once).
    pub async fn run(&self) -> Result<DataPlaneHandle, DataPlaneError> {
        let services = self
            .services
            .lock()
            .unwrap()
            .take()
            .expect("the replica runs once");
        self.plane.run(services).await
    }
}

/// A replica named `name` over `store` (shared by every replica of a test), reading `source`.
/// Its data directory is a fresh temporary one (kept as long as the test process runs).
pub async fn replica_on(
    store: &MemoryStore,
    name: &str,
    source: FakeSource,
    configure: impl FnOnce(&mut DataPlaneConfig),
) -> Replica {
    let source = TimedSource::new(source);
    let sink = RecordingSink::new();
    let transfers = TransferRegistry::builder()
        .source(Arc::new(source.clone()))
        .and_then(|b| {
            b.sink(Arc::new(RecordingSinkFactory(
                "HttpData".into(),
                sink.clone(),
            )))
        })
        .unwrap()
        .build();
    let mut config = DataPlaneConfig::new(name, "http://127.0.0.1:1/api/v1");
    config.data_dir = tempfile::tempdir().unwrap().keep();
    configure(&mut config);
    let control_planes = Arc::new(ControlPlaneRegistry::new());
    let (plane, services) = DataPlane::new(
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        transfers,
        Arc::new(DatasetRegistry::new()),
        control_planes.clone(),
        CallbackDispatcher::new(control_planes, 1, Duration::from_millis(10)),
        config.clone(),
    );
    plane
        .datasets()
        .put("data", ResourceAddress::new("Test"), &plane.known_types())
        .await
        .unwrap();
    Replica {
        plane,
        store: store.clone(),
        source,
        sink,
        config,
        services: Mutex::new(Some(services)),
    }
}

/// One replica `r1` over a store of its own.
pub async fn replica(source: FakeSource, configure: impl FnOnce(&mut DataPlaneConfig)) -> Replica {
    replica_on(&MemoryStore::new(), "r1", source, configure).await
}

/// A provider-push `start` of dataset `data`.
pub fn push(process_id: &str) -> DataFlowMessage {
    serde_json::from_value(serde_json::json!({
        "messageId": format!("m-{process_id}"),
        "participantId": "provider",
        "counterPartyId": "consumer",
        "dataspaceContext": "test",
        "processId": process_id,
        "agreementId": "agreement",
        "datasetId": "data",
        "profile": HTTP_PUSH,
        "claims": {},
        "dataAddress": DataAddress::http(HTTP_PUSH, "http://sink.test/upload", None),
    }))
    .unwrap()
}

pub async fn all_flows(store: &MemoryStore) -> Vec<dataplane_spi::DataFlow> {
    store.list(&[], usize::MAX).await.unwrap()
}

/// Waits (on whatever clock the test runs) until `done`, at most `limit` polls of 1 ms.
pub async fn until(limit: usize, mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..limit {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    done()
}
