//! Consumer push into a destination that stages its data (a fake multipart upload): one upload
//! spans the ingest requests, its state is in the checkpoint after each, `completed` commits it,
//! `terminate` aborts it, and the leader's janitor aborts what a terminated flow left behind.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test suite

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cluster::leadership::{LeaderDuty, LeaderTerm};
use dataplane_manager::janitor::UploadJanitor;
use dataplane_manager::DataPlane;
use dataplane_spi::{
    Checkpoint, DataFlowMessage, DataFlowState, DataFlowStore, DataSink, DataSinkFactory,
    FlowUpdate, ResourceAddress, Session, SourceStream, TransferError, TransferRegistry, HTTP_PUSH,
};
use dataplane_store_memory::MemoryStore;
use futures::StreamExt;
use serde_json::json;

/// Bytes per fake part.
const PART: usize = 4;

/// What the fake destination saw.
#[derive(Debug, Default)]
struct Destination {
    /// Acknowledged parts of the open upload.
    parts: Vec<u8>,
    committed: Option<Vec<u8>>,
    aborted: usize,
}

#[derive(Debug, Default)]
struct Inner {
    staged: bool,
    acked: usize,
    tail: Vec<u8>,
}

/// A sink that acknowledges parts of [`PART`] bytes and commits them at `finish`.
#[derive(Debug)]
struct StagingSink {
    destination: Arc<Mutex<Destination>>,
    inner: Mutex<Inner>,
}

#[async_trait]
impl DataSink for StagingSink {
    async fn write(&self, input: SourceStream) -> Result<u64, TransferError> {
        let mut stream = input.stream;
        let mut written = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            written += chunk.len() as u64;
            let mut inner = self.inner.lock().unwrap();
            assert!(inner.staged, "written without first_point or restore_state");
            inner.tail.extend_from_slice(&chunk);
            while inner.tail.len() >= PART {
                let part: Vec<u8> = inner.tail.drain(..PART).collect();
                self.destination.lock().unwrap().parts.extend(part);
                inner.acked += PART;
            }
        }
        Ok(written)
    }

    async fn resume_point(&self, _checkpoint: u64) -> Result<Option<u64>, TransferError> {
        let mut inner = self.inner.lock().unwrap();
        inner.staged = true;
        Ok(Some(inner.acked as u64))
    }

    async fn first_point(&self) -> Result<Option<u64>, TransferError> {
        self.inner.lock().unwrap().staged = true;
        self.destination.lock().unwrap().parts.clear();
        Ok(Some(0))
    }

    fn restore_state(&self, state: &str) -> Result<(), TransferError> {
        let state: serde_json::Value = serde_json::from_str(state).unwrap();
        let mut inner = self.inner.lock().unwrap();
        inner.acked = usize::try_from(state["acked"].as_u64().unwrap()).unwrap();
        inner.staged = true;
        Ok(())
    }

    fn state(&self) -> Option<String> {
        Some(json!({"acked": self.inner.lock().unwrap().acked}).to_string())
    }

    fn stages(&self) -> bool {
        true
    }

    async fn finish(&self, _position: u64) -> Result<(), TransferError> {
        let tail = std::mem::take(&mut self.inner.lock().unwrap().tail);
        let mut destination = self.destination.lock().unwrap();
        let mut object = std::mem::take(&mut destination.parts);
        object.extend(tail);
        destination.committed = Some(object);
        Ok(())
    }

    async fn abort(&self) -> Result<(), TransferError> {
        let mut destination = self.destination.lock().unwrap();
        destination.parts.clear();
        destination.aborted += 1;
        Ok(())
    }
}

#[derive(Debug, Clone, Default)]
struct StagingFactory(Arc<Mutex<Destination>>);

impl DataSinkFactory for StagingFactory {
    fn type_name(&self) -> &str {
        "Staging"
    }

    fn create(&self, _address: &ResourceAddress) -> Result<Box<dyn DataSink>, TransferError> {
        Ok(Box::new(StagingSink {
            destination: self.0.clone(),
            inner: Mutex::default(),
        }))
    }
}

fn prepare(process_id: &str) -> DataFlowMessage {
    serde_json::from_value(json!({
        "messageId": format!("m-{process_id}"),
        "participantId": "consumer",
        "counterPartyId": "provider",
        "dataspaceContext": "test",
        "processId": process_id,
        "agreementId": "agreement",
        "datasetId": "data",
        "profile": HTTP_PUSH,
        "claims": {},
        "metadata": {"destination": {"type": "Staging"}},
    }))
    .unwrap()
}

fn plane(store: &MemoryStore, destination: &StagingFactory) -> Arc<DataPlane> {
    let transfers = TransferRegistry::builder()
        .sink(Arc::new(destination.clone()))
        .unwrap()
        .build();
    let mut config = dataplane_manager::DataPlaneConfig::new("r1", "http://127.0.0.1:1/api/v1");
    config.data_dir = tempfile::tempdir().unwrap().keep();
    let control_planes = Arc::new(dataplane_manager::ControlPlaneRegistry::new());
    DataPlane::new(
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        transfers,
        Arc::new(dataplane_manager::DatasetRegistry::new()),
        control_planes.clone(),
        dataplane_manager::CallbackDispatcher::new(control_planes, 1, Duration::from_millis(10)),
        config,
    )
    .0
}

/// Sends `body` to the flow's ingest endpoint at `offset` (`None`: replace); the offset reached.
async fn upload(
    plane: &Arc<DataPlane>,
    id: &str,
    token: &str,
    offset: Option<u64>,
    body: &[u8],
) -> u64 {
    let (sender, done) = plane
        .begin_ingest(id, Some(token), None, offset)
        .await
        .unwrap();
    for chunk in body.chunks(3) {
        sender
            .send(Ok(Bytes::copy_from_slice(chunk)))
            .await
            .unwrap();
    }
    drop(sender);
    done.await.unwrap().unwrap()
}

async fn prepared(plane: &Arc<DataPlane>, process_id: &str) -> (String, String) {
    let outcome = plane.prepare(prepare(process_id)).await.unwrap();
    let address = outcome.message.data_address.unwrap();
    let token = address
        .endpoint_properties
        .iter()
        .find(|p| p.name == "authorization")
        .map(|p| p.value.clone())
        .unwrap();
    (outcome.message.data_flow_id, token)
}

fn recorded_acked(flow: &dataplane_spi::DataFlow) -> Option<u64> {
    let state = flow.checkpoint.as_ref()?.sink.as_deref()?;
    serde_json::from_str::<serde_json::Value>(state).ok()?["acked"].as_u64()
}

#[tokio::test]
async fn one_upload_spans_the_requests_and_completed_commits_it() {
    let store = MemoryStore::new();
    let destination = StagingFactory::default();
    let plane = plane(&store, &destination);
    let (id, token) = prepared(&plane, "spans").await;

    assert_eq!(upload(&plane, &id, &token, None, b"0123456789").await, 10);
    let flow = store.find(&id).await.unwrap().unwrap();
    assert_eq!(recorded_acked(&flow), Some(8), "{:?}", flow.checkpoint);
    assert_eq!(plane.ingest_offset(&id, Some(&token)).await.unwrap(), 10);
    assert_eq!(upload(&plane, &id, &token, Some(10), b"abcdefg").await, 17);
    assert!(destination.0.lock().unwrap().committed.is_none());
    // A wrong offset is refused and changes nothing.
    assert!(plane
        .begin_ingest(&id, Some(&token), None, Some(3))
        .await
        .is_err());

    plane.started(&id, None).await.unwrap();
    plane.completed(&id).await.unwrap();
    let committed = destination.0.lock().unwrap().committed.clone();
    assert_eq!(committed.as_deref(), Some(&b"0123456789abcdefg"[..]));
    let flow = store.find(&id).await.unwrap().unwrap();
    assert_eq!(flow.state, DataFlowState::Completed);
    assert_eq!(flow.checkpoint.and_then(|c| c.sink), None);
}

/// A replica without the sink in memory restores it from the checkpoint: it answers the end of
/// the last acknowledged part, and the sender continues there.
#[tokio::test]
async fn another_replica_continues_from_the_checkpointed_state() {
    let store = MemoryStore::new();
    let destination = StagingFactory::default();
    let first = plane(&store, &destination);
    let (id, token) = prepared(&first, "moves").await;
    assert_eq!(upload(&first, &id, &token, None, b"0123456789").await, 10);

    let second = plane(&store, &destination);
    assert_eq!(second.ingest_offset(&id, Some(&token)).await.unwrap(), 8);
    assert_eq!(upload(&second, &id, &token, Some(8), b"89xyz").await, 13);
    second.started(&id, None).await.unwrap();
    second.completed(&id).await.unwrap();
    let committed = destination.0.lock().unwrap().committed.clone();
    assert_eq!(committed.as_deref(), Some(&b"0123456789xyz"[..]));
}

#[tokio::test]
async fn terminate_aborts_the_upload() {
    let store = MemoryStore::new();
    let destination = StagingFactory::default();
    let plane = plane(&store, &destination);
    let (id, token) = prepared(&plane, "ends").await;
    upload(&plane, &id, &token, None, b"0123456789").await;
    plane.terminate(&id, None).await.unwrap();
    let destination = destination.0.lock().unwrap();
    assert_eq!(destination.aborted, 1);
    assert!(destination.committed.is_none());
}

/// The leader's janitor aborts the upload a TERMINATED flow still records, once.
#[tokio::test]
async fn the_janitor_aborts_what_a_terminated_flow_left_behind() {
    let store = MemoryStore::new();
    let destination = StagingFactory::default();
    let plane = plane(&store, &destination);
    let (id, _) = prepared(&plane, "orphan").await;
    let checkpoint = Checkpoint {
        bytes: 8,
        cursor: None,
        sink: Some(json!({"acked": 8}).to_string()),
    };
    store
        .transition(
            &id,
            &[DataFlowState::Prepared],
            DataFlowState::Terminated,
            None,
            &FlowUpdate::checkpoint(checkpoint),
        )
        .await
        .unwrap();
    let transfers = plane.transfers().clone();
    let janitor = UploadJanitor::new(Arc::new(store.clone()), transfers, Duration::from_secs(1));
    let term = LeaderTerm {
        session: Session {
            runtime_id: "r1".into(),
            incarnation: "i".into(),
        },
        term: 1,
    };
    janitor.run(&term).await.unwrap();
    janitor.run(&term).await.unwrap();
    assert_eq!(destination.0.lock().unwrap().aborted, 1);
    let flow = store.find(&id).await.unwrap().unwrap();
    assert_eq!(flow.state, DataFlowState::Terminated);
    assert_eq!(flow.checkpoint.and_then(|c| c.sink), None);
}
