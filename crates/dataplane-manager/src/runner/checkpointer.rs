//! The owner's checkpoints: [`OwnerCheckpointer`] records positions and attempts, fenced by the
//! owner's epoch, and keeps the resume counters ([`TransferCounters`]) in the flow's metadata.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dataplane_spi::{
    Checkpoint, DataFlow, DataFlowState, DataFlowStore, DataSink, FlowOwner, FlowUpdate,
    StoreError, TransferError,
};
use tokio::task::JoinHandle;

use crate::runner::pipeline::{AttemptStart, Checkpointer};

/// How long a flow's first attempt runs before it is recorded in the store: a first attempt
/// that ends sooner (most small transfers) costs no store write; one whose owner dies sooner is
/// simply taken as a first attempt again (from zero, without asking the destination).
pub(crate) const FIRST_ATTEMPT_RECORD_DELAY: Duration = Duration::from_millis(500);

/// Records checkpoints as the flow's owner, fenced by its epoch.
pub(crate) struct OwnerCheckpointer {
    store: Arc<dyn DataFlowStore>,
    owner: FlowOwner,
    flow_id: String,
    last: Mutex<Option<Checkpoint>>,
    /// The flow's metadata and resume counters, kept current by this owner.
    metadata: Arc<Mutex<(serde_json::Value, TransferCounters)>>,
    /// The delayed record of a running first attempt.
    pending: Mutex<Option<JoinHandle<()>>>,
    /// The sink of the current attempt, until the transfer completed: what it staged is
    /// discarded when the flow is terminated or fails for good.
    sink: Mutex<Option<Arc<dyn DataSink>>>,
}

impl OwnerCheckpointer {
    /// The checkpointer of `owner`'s transfer of `flow`, starting from its recorded checkpoint
    /// and counters.
    pub(crate) fn new(store: Arc<dyn DataFlowStore>, owner: FlowOwner, flow: &DataFlow) -> Self {
        Self {
            store,
            owner,
            flow_id: flow.id.clone(),
            last: Mutex::new(flow.checkpoint.clone()),
            metadata: Arc::new(Mutex::new((
                flow.metadata.clone(),
                TransferCounters::of(&flow.metadata),
            ))),
            pending: Mutex::new(None),
            sink: Mutex::new(None),
        }
    }
}

impl Drop for OwnerCheckpointer {
    fn drop(&mut self) {
        self.settle();
        // Dropped without completing: the task was stopped (suspend, terminate, lease lost,
        // shutdown). Only a terminated flow discards its staged upload; a suspended one or one
        // another replica took over continues it.
        let Some(sink) = self.sink.lock().ok().and_then(|mut s| s.take()) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (store, flow_id) = (self.store.clone(), self.flow_id.clone());
        runtime.spawn(async move {
            let terminated = matches!(
                store.find(&flow_id).await,
                Ok(Some(flow)) if matches!(flow.state, DataFlowState::Terminating | DataFlowState::Terminated)
            );
            if terminated {
                match sink.abort().await {
                    Ok(()) => tracing::info!(%flow_id, "terminated: the staged upload was aborted"),
                    Err(error) => tracing::warn!(%flow_id, %error, "terminated: the staged upload could not be aborted"),
                }
            }
        });
    }
}

impl OwnerCheckpointer {
    /// The transfer completed: nothing is left to discard.
    pub(crate) fn finished(&self) {
        if let Ok(mut sink) = self.sink.lock() {
            *sink = None;
        }
    }

    /// Discards what the sink staged (the flow fails for good).
    pub(crate) async fn abort_upload(&self) {
        let sink = self.sink.lock().ok().and_then(|mut s| s.take());
        if let Some(sink) = sink {
            if let Err(error) = sink.abort().await {
                tracing::warn!(flow_id = %self.flow_id, %error, "the staged upload could not be aborted");
            }
        }
    }

    pub(crate) fn last(&self) -> Option<Checkpoint> {
        self.last.lock().ok().and_then(|l| l.clone())
    }

    /// Drops the delayed record of a first attempt that has ended (its outcome is written
    /// with the flow's next update).
    pub(crate) fn settle(&self) {
        if let Some(pending) = self.pending.lock().ok().and_then(|mut p| p.take()) {
            pending.abort();
        }
    }

    /// Whether no attempt of the flow ever started (none recorded, no checkpoint, and no owner
    /// before this one: an epoch above 1 means another replica held the flow, and may have been
    /// killed during its first attempt before that attempt was recorded).
    pub(crate) fn first_attempt(&self) -> bool {
        if self.owner.epoch > 1 {
            return false;
        }
        let counters = self
            .metadata
            .lock()
            .map(|m| m.1.clone())
            .unwrap_or_default();
        self.last().is_none()
            && counters.attempts == 0
            && counters.resumes == 0
            && counters.restarts == 0
    }

    /// Whether a write was refused because the flow moved on.
    pub(crate) fn lost(&self) -> bool {
        self.last
            .lock()
            .map(|l| l.as_ref().is_some_and(|c| c.bytes < 0))
            .unwrap_or(true)
    }
}

impl OwnerCheckpointer {
    pub(crate) fn metadata(&self, total: Option<u64>) -> serde_json::Value {
        self.metadata
            .lock()
            .map(|m| m.1.write(&m.0, total))
            .unwrap_or(serde_json::Value::Null)
    }

    fn refused(&self, error: StoreError) -> TransferError {
        tracing::warn!(flow_id = %self.flow_id, %error, "write refused: the flow moved on");
        if let Ok(mut last) = self.last.lock() {
            // A negative position marks "lost" without another field.
            *last = Some(Checkpoint {
                bytes: -1,
                cursor: None,
                sink: None,
            });
        }
        TransferError::Rejected(error.to_string())
    }
}

#[async_trait::async_trait]
impl Checkpointer for OwnerCheckpointer {
    async fn started(&self, start: &AttemptStart) -> std::result::Result<(), TransferError> {
        // Every attempt is recorded, so that a later owner knows the destination may hold part
        // of the data (and asks it where to continue). A later attempt at once; a first one
        // once it ran for FIRST_ATTEMPT_RECORD_DELAY (until then there is little to lose).
        self.settle();
        if let Ok(mut m) = self.metadata.lock() {
            m.1.attempts += 1;
            m.1.resumes += u64::from(start.resumed);
            m.1.restarts += u64::from(start.restarted);
            if start.restarted {
                m.1.restart_reason.clone_from(&start.reason);
            }
        }
        if let Some(reason) = start.reason.as_deref().filter(|_| start.restarted) {
            tracing::info!(flow_id = %self.flow_id, %reason, "transfer restarted from zero");
        }
        if start.first {
            let (store, owner, flow_id) =
                (self.store.clone(), self.owner.clone(), self.flow_id.clone());
            let metadata = Arc::clone(&self.metadata);
            let record = tokio::spawn(async move {
                tokio::time::sleep(FIRST_ATTEMPT_RECORD_DELAY).await;
                let value = metadata
                    .lock()
                    .map(|m| m.1.write(&m.0, None))
                    .unwrap_or(serde_json::Value::Null);
                let update = FlowUpdate {
                    metadata: Some(value),
                    only_from: vec![DataFlowState::Started],
                    ..FlowUpdate::default()
                };
                if let Err(error) = store.update_owned(&owner, &flow_id, &update).await {
                    tracing::debug!(%flow_id, %error, "first attempt not recorded");
                }
            });
            if let Ok(mut pending) = self.pending.lock() {
                *pending = Some(record);
            }
            return Ok(());
        }
        let update = FlowUpdate {
            metadata: Some(self.metadata(None)),
            only_from: vec![DataFlowState::Started],
            ..FlowUpdate::default()
        };
        match self
            .store
            .update_owned(&self.owner, &self.flow_id, &update)
            .await
        {
            Ok(_) => Ok(()),
            Err(
                error @ (StoreError::LeaseLost { .. }
                | StoreError::WrongState { .. }
                | StoreError::NotFound { .. }),
            ) => Err(self.refused(error)),
            Err(error) => Err(TransferError::Transient(format!(
                "cannot record the resume: {error}"
            ))),
        }
    }

    fn sink_opened(&self, sink: Arc<dyn DataSink>) {
        if let Ok(mut slot) = self.sink.lock() {
            *slot = Some(sink);
        }
    }

    async fn record(&self, checkpoint: Checkpoint) -> std::result::Result<(), TransferError> {
        let update = FlowUpdate {
            only_from: vec![DataFlowState::Started],
            ..FlowUpdate::checkpoint(checkpoint.clone())
        };
        match self
            .store
            .update_owned(&self.owner, &self.flow_id, &update)
            .await
        {
            Ok(_) => {
                if let Ok(mut last) = self.last.lock() {
                    *last = Some(checkpoint);
                }
                Ok(())
            }
            Err(
                error @ (StoreError::LeaseLost { .. }
                | StoreError::WrongState { .. }
                | StoreError::NotFound { .. }),
            ) => {
                tracing::warn!(flow_id = %self.flow_id, %error, "checkpoint refused: the flow moved on");
                if let Ok(mut last) = self.last.lock() {
                    // A negative position marks "lost" without another field.
                    *last = Some(Checkpoint {
                        bytes: -1,
                        cursor: None,
                        sink: None,
                    });
                }
                Err(TransferError::Rejected(error.to_string()))
            }
            Err(error) => Err(TransferError::Transient(format!(
                "cannot record a checkpoint: {error}"
            ))),
        }
    }
}

/// Resume statistics kept in the flow's metadata (`transfer.attempts`, `transfer.resumes`,
/// `transfer.restarts`, `transfer.restartReason`).
#[derive(Debug, Default, Clone)]
pub(crate) struct TransferCounters {
    pub(crate) attempts: u64,
    pub(crate) resumes: u64,
    pub(crate) restarts: u64,
    pub(crate) restart_reason: Option<String>,
}

impl TransferCounters {
    pub(crate) fn of(metadata: &serde_json::Value) -> Self {
        let get = |key: &str| {
            metadata
                .pointer(&format!("/transfer/{key}"))
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0)
        };
        Self {
            attempts: get("attempts"),
            resumes: get("resumes"),
            restarts: get("restarts"),
            restart_reason: metadata
                .pointer("/transfer/restartReason")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned),
        }
    }

    fn write(&self, metadata: &serde_json::Value, total: Option<u64>) -> serde_json::Value {
        let mut metadata = metadata.clone();
        if let Some(map) = metadata.as_object_mut() {
            let mut transfer = serde_json::json!({
                "attempts": self.attempts,
                "resumes": self.resumes,
                "restarts": self.restarts,
            });
            if let Some(reason) = &self.restart_reason {
                transfer["restartReason"] = reason.clone().into();
            }
            if let Some(total) = total {
                transfer["bytesTotal"] = total.into();
            }
            map.insert("transfer".into(), transfer);
        }
        metadata
    }
}
