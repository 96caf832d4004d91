//! In-process tests of one replica over the in-memory store: the runner holds no entry for
//! flows that ran, a refused request changes nothing, a full replica leaves new flows unowned,
//! retries are spaced as configured, and an owner whose lease runs out fences itself (on paused
//! tokio time: advanced, not slept).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // a test suite

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use dataplane_manager::{
    CallbackDispatcher, ControlPlaneRegistry, DataPlane, DataPlaneConfig, DataPlaneError,
    DataPlaneHandle, DatasetRegistry,
};
use dataplane_spi::{
    Coordinator, DataAddress, DataFlowMessage, DataFlowState, DataFlowStore, DataSink,
    DataSinkFactory, DataSource, DataSourceFactory, ResourceAddress, Session, SourceStream,
    TransferError, TransferRegistry, HTTP_PUSH,
};
use dataplane_store_memory::MemoryStore;
use futures::StreamExt;

/// How a [`TestSource`] behaves.
#[derive(Debug, Clone, Copy)]
enum Behaviour {
    /// Yields a few bytes and ends.
    Tiny,
    /// Never yields: the transfer runs until it is stopped.
    Stall,
    /// Fails to open with a transient error, every time.
    Flaky,
    /// One byte every 100 ms, forever.
    Trickle,
}

/// A source of type `Test` whose behaviour is chosen by the test, recording when it was opened
/// (tokio time, so paused tests see advanced time).
#[derive(Debug, Clone)]
struct TestSource {
    behaviour: Behaviour,
    opened: Arc<Mutex<Vec<tokio::time::Instant>>>,
}

impl TestSource {
    fn new(behaviour: Behaviour) -> Self {
        Self {
            behaviour,
            opened: Arc::default(),
        }
    }
}

#[async_trait]
impl DataSource for TestSource {
    async fn open(&self, offset: u64) -> Result<SourceStream, TransferError> {
        self.opened
            .lock()
            .unwrap()
            .push(tokio::time::Instant::now());
        let stream: dataplane_spi::ByteStream = match self.behaviour {
            Behaviour::Tiny => Box::pin(futures::stream::iter([Ok(bytes::Bytes::from_static(
                b"tiny",
            ))])),
            Behaviour::Stall => Box::pin(futures::stream::pending()),
            Behaviour::Flaky => {
                return Err(TransferError::Transient("the source is down".into()));
            }
            Behaviour::Trickle => Box::pin(futures::stream::unfold((), |()| async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Some((Ok(bytes::Bytes::from_static(b"x")), ()))
            })),
        };
        Ok(SourceStream {
            stream,
            size: None,
            content_type: None,
            offset,
        })
    }
}

impl DataSourceFactory for TestSource {
    fn type_name(&self) -> &str {
        "Test"
    }
    fn create(&self, _address: &ResourceAddress) -> Result<Box<dyn DataSource>, TransferError> {
        Ok(Box::new(self.clone()))
    }
}

/// A sink for every HTTP push address: takes the bytes (counting them) and acknowledges at
/// once.
#[derive(Debug, Clone, Default)]
struct Drain {
    received: Arc<AtomicU64>,
}

#[async_trait]
impl DataSink for Drain {
    async fn write(&self, mut input: SourceStream) -> Result<u64, TransferError> {
        let mut bytes = 0;
        while let Some(chunk) = input.stream.next().await {
            let len = chunk?.len() as u64;
            self.received.fetch_add(len, Ordering::Relaxed);
            bytes += len;
        }
        Ok(bytes)
    }
}

impl DataSinkFactory for Drain {
    fn type_name(&self) -> &str {
        "HttpData"
    }
    fn create(&self, _address: &ResourceAddress) -> Result<Box<dyn DataSink>, TransferError> {
        Ok(Box::new(self.clone()))
    }
}

struct Replica {
    plane: Arc<DataPlane>,
    store: MemoryStore,
    source: TestSource,
    sink: Drain,
    config: DataPlaneConfig,
}

async fn replica(behaviour: Behaviour, configure: impl FnOnce(&mut DataPlaneConfig)) -> Replica {
    let store = MemoryStore::new();
    let source = TestSource::new(behaviour);
    let sink = Drain::default();
    let transfers = TransferRegistry::builder()
        .source(Arc::new(source.clone()))
        .and_then(|b| b.sink(Arc::new(sink.clone())))
        .unwrap()
        .build();
    let mut config = DataPlaneConfig::new("r1", "http://127.0.0.1:1/api/v1");
    configure(&mut config);
    let control_planes = Arc::new(ControlPlaneRegistry::new());
    let plane = DataPlane::new(
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
        store,
        source,
        sink,
        config,
    }
}

fn push(process_id: &str) -> DataFlowMessage {
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

async fn all_flows(store: &MemoryStore) -> Vec<dataplane_spi::DataFlow> {
    store.list(&[], usize::MAX).await.unwrap()
}

/// Waits (on whatever clock the test runs) until `done`, at most `limit` polls of 1 ms.
async fn until(limit: usize, mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..limit {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    done()
}

/// Acceptance: a replica that ran 100 000 tiny provider pushes holds no per-flow entry for any
/// of them afterwards. `RUNNER_FLOWS` overrides the count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_ran_many_flows_holds_no_entry_for_them() {
    let flows: usize = std::env::var("RUNNER_FLOWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    const WAVE: usize = 500;
    let r = replica(Behaviour::Tiny, |_| {}).await;
    let handle: DataPlaneHandle = r.plane.run().await.unwrap();
    // Finished flows are purged as the leader does it, so that the in-memory store (which scans
    // its flows on every create) stays small; the runner is what is measured.
    let session = Session {
        runtime_id: "r1".into(),
        incarnation: r.config.incarnation.clone(),
    };
    assert!(
        until(5000, || r.plane.known_leader().is_some()).await,
        "the replica did not become the leader"
    );
    let term = r.plane.known_leader().unwrap().term;
    let began = std::time::Instant::now();
    let mut peak = 0;
    for wave in 0..flows.div_ceil(WAVE) {
        let starts = (wave * WAVE..flows.min((wave + 1) * WAVE)).map(|i| {
            let plane = r.plane.clone();
            async move { plane.start(push(&format!("p{i}"))).await }
        });
        for outcome in futures::future::join_all(starts).await {
            assert_eq!(outcome.unwrap().message.state, "STARTED");
        }
        peak = peak.max(r.plane.runner_len());
        r.store
            .purge_finished_flows(&session, term, 0)
            .await
            .unwrap();
    }
    let completed = || r.plane.metrics.completed.get() as usize == flows;
    assert!(until(60_000, completed).await, "not every flow completed");
    assert!(until(5000, || r.plane.runner_len() == 0).await);
    println!(
        "{flows} flows in {:.1} s; runner peak {peak}, after {}",
        began.elapsed().as_secs_f64(),
        r.plane.runner_len()
    );
    assert_eq!(r.plane.runner_len(), 0, "entries left for finished flows");
    assert_eq!(r.plane.metrics.completed.get() as usize, flows);
    assert_eq!(r.plane.running_transfers(), 0);
    handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_refused_request_changes_nothing() {
    let r = replica(Behaviour::Stall, |_| {}).await;
    r.plane.start(push("first")).await.unwrap();
    let before = all_flows(&r.store).await;
    assert_eq!(r.plane.runner_len(), 1);

    let mut unknown = push("second");
    unknown.dataset_id = "nope".into();
    let mut profile = push("third");
    profile.profile = "https://example.com/unknown".into();
    let mut blank = push("fourth");
    blank.message_id = " ".into();
    let mut no_address = push("fifth");
    no_address.data_address = None;
    for (message, what) in [
        (unknown, "unknown dataset"),
        (profile, "unknown profile"),
        (blank, "blank message id"),
        (no_address, "push without an address"),
        (push("first"), "duplicate process id"),
    ] {
        let error = r.plane.start(message).await.expect_err(what);
        assert!(
            matches!(
                error,
                DataPlaneError::NotFound(..)
                    | DataPlaneError::InvalidInput(..)
                    | DataPlaneError::Conflict(..)
            ),
            "{what}: {error:?}"
        );
    }
    let after = all_flows(&r.store).await;
    assert_eq!(
        serde_json::to_value(&after).unwrap(),
        serde_json::to_value(&before).unwrap(),
        "a refused request changed the store"
    );
    assert_eq!(
        r.plane.runner_len(),
        1,
        "a refused request started something"
    );
}

#[tokio::test(start_paused = true)]
async fn a_full_replica_leaves_new_flows_unowned() {
    let r = replica(Behaviour::Stall, |c| c.max_concurrent_flows = 2).await;
    let mut ids = Vec::new();
    for i in 0..4 {
        let outcome = r.plane.start(push(&format!("p{i}"))).await.unwrap();
        ids.push(outcome.message.data_flow_id);
    }
    assert_eq!(r.plane.running_transfers(), 2);
    assert_eq!(r.plane.runner_len(), 2);
    for (i, id) in ids.iter().enumerate() {
        let flow = r.store.find(id).await.unwrap().unwrap();
        assert_eq!(flow.state, DataFlowState::Started);
        let expected = (i < 2).then_some("r1");
        assert_eq!(flow.runtime_id.as_deref(), expected, "flow {i}");
    }
    // Stopping one frees its entry and its slot.
    r.plane.terminate(&ids[0], None).await.unwrap();
    assert_eq!(r.plane.runner_len(), 1);
    assert_eq!(r.plane.running_transfers(), 1);
}

#[tokio::test(start_paused = true)]
async fn retries_are_spaced_by_the_configured_backoff() {
    let r = replica(Behaviour::Flaky, |c| {
        c.retry_limit = 5;
        c.retry_backoff = Duration::from_secs(10);
        // Long enough that the paused clock, advanced by the backoff, never outruns it.
        c.lease = Duration::from_secs(600);
        c.renew_interval = Duration::from_secs(60);
    })
    .await;
    let handle = r.plane.run().await.unwrap();
    let id = r
        .plane
        .start(push("flaky"))
        .await
        .unwrap()
        .message
        .data_flow_id;
    let began = tokio::time::Instant::now();
    let terminated = loop {
        let flow = r.store.find(&id).await.unwrap().unwrap();
        if flow.state == DataFlowState::Terminated {
            break flow;
        }
        assert!(began.elapsed() < Duration::from_secs(600), "never gave up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(terminated
        .error_detail
        .as_deref()
        .is_some_and(|e| e.contains("the source is down")));
    let opened = r.source.opened.lock().unwrap().clone();
    assert_eq!(opened.len(), 5, "retry.limit attempts");
    for (i, pair) in opened.windows(2).enumerate() {
        let gap = pair[1] - pair[0];
        // 10 s, doubling, capped at 30 s.
        let nominal = (Duration::from_secs(10) * 2u32.pow(u32::try_from(i).unwrap()))
            .min(Duration::from_secs(30));
        // ±10 % jitter, plus the few milliseconds of store writes between attempts.
        assert!(
            gap >= nominal.mul_f64(0.9) && gap <= nominal.mul_f64(1.1) + Duration::from_millis(50),
            "attempt {} came {gap:?} after the previous one (nominal {nominal:?})",
            i + 2
        );
    }
    assert!(until(100, || r.plane.runner_len() == 0).await);
    assert_eq!(r.plane.metrics.failed.get(), 1);
    handle.shutdown().await;
}

/// The runner keeps an entry only while a flow runs: one per pipeline, gone when it is
/// suspended, back on resume, gone when it completes.
#[tokio::test(start_paused = true)]
async fn suspend_and_resume_free_and_take_the_entry() {
    let r = replica(Behaviour::Stall, |_| {}).await;
    let id = r.plane.start(push("p")).await.unwrap().message.data_flow_id;
    assert_eq!(r.plane.runner_len(), 1);
    r.plane.suspend(&id, None).await.unwrap();
    assert_eq!(r.plane.runner_len(), 0);
    r.plane.resume(&id, None).await.unwrap();
    assert_eq!(r.plane.runner_len(), 1);
    r.plane.terminate(&id, None).await.unwrap();
    assert_eq!(r.plane.runner_len(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_owner_whose_lease_expires_fences_itself() {
    let r = replica(Behaviour::Trickle, |c| {
        c.lease = Duration::from_secs(2);
        // The renewal never comes in time: as if the replica had been paused past its lease.
        c.renew_interval = Duration::from_secs(3600);
    })
    .await;
    let handle = r.plane.run().await.unwrap();
    let id = r.plane.start(push("p")).await.unwrap().message.data_flow_id;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(r.plane.lease_valid());
    assert_eq!(r.plane.runner_len(), 1);
    let flowing = r.sink.received.load(Ordering::Relaxed);
    assert!(
        flowing > 0,
        "no byte reached the sink while the lease was valid"
    );

    // 90 % of the lease after joining, the replica stops writing and drops the transfer.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(!r.plane.lease_valid());
    let fenced = r.sink.received.load(Ordering::Relaxed);
    assert!(
        fenced <= 18,
        "{fenced} bytes: written past 90 % of the lease"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        r.sink.received.load(Ordering::Relaxed),
        fenced,
        "bytes written after the lease ran out"
    );
    assert_eq!(r.plane.runner_len(), 0);
    let flow = r.store.find(&id).await.unwrap().unwrap();
    assert_eq!(
        flow.state,
        DataFlowState::Started,
        "a fenced owner records nothing (the flow is left for a replica with a valid lease)"
    );
    handle.shutdown().await;
}
