//! Consumer push into a destination that stages its data ([`DataSink::stages`]: an
//! object-storage multipart upload): the sink lives across the uploads (tus `PATCH`es) of a
//! flow.
//!
//! - Each upload is written like a pipeline attempt: [`DataSink::write`] returns after every
//!   acknowledged part, and the sink's [`DataSink::state`] (upload id, acknowledged parts) is
//!   recorded in the flow's checkpoint right away.
//! - Between uploads the sink stays in memory on this replica ([`StagedSinks`]) with the bytes
//!   after its last acknowledged part (less than one part), so the next `PATCH` continues at the
//!   offset the last one answered. A replica without it (another replica, a restart, an upload
//!   that failed) restores the sink from the checkpoint; its `HEAD` then answers the end of the
//!   last acknowledged part, and the sender sends the rest again from there (tus).
//! - `completed` commits the upload ([`DataSink::finish`]) before the flow is COMPLETED;
//!   `terminate` aborts it ([`DataSink::abort`]); a `POST`/`PUT` (replace) aborts the previous
//!   upload and starts a new one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use dataplane_spi::{
    Checkpoint, DataFlow, DataFlowState, DataSink, FlowUpdate, ResourceAddress, SourceStream,
    TransferError,
};

use crate::access::transfer_to_api;
use crate::runner::pipeline::Segments;
use crate::{DataPlane, DataPlaneError};

type Result<T> = std::result::Result<T, DataPlaneError>;

/// How many empty writes settle the parts still in flight when an upload's body ended.
const SETTLE_ROUNDS: usize = 64;

/// A staging sink kept between the uploads of a flow, and the offset its next upload starts at.
#[derive(Debug, Clone)]
struct Staged {
    sink: Arc<dyn DataSink>,
    position: u64,
}

/// The staging sinks of the consumer-push flows uploaded to on this replica.
#[derive(Debug, Default)]
pub(crate) struct StagedSinks(StdMutex<HashMap<String, Staged>>);

impl StagedSinks {
    fn take(&self, flow_id: &str) -> Option<Staged> {
        self.0.lock().ok().and_then(|mut map| map.remove(flow_id))
    }

    fn get(&self, flow_id: &str) -> Option<Staged> {
        self.0.lock().ok().and_then(|map| map.get(flow_id).cloned())
    }

    fn put(&self, flow_id: &str, staged: Staged) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(flow_id.to_owned(), staged);
        }
    }
}

fn busy(flow_id: &str) -> DataPlaneError {
    DataPlaneError::Unavailable(format!(
        "an earlier upload to data flow '{flow_id}' is still being received; retry shortly"
    ))
}

fn checkpoint_bytes(flow: &DataFlow) -> u64 {
    flow.checkpoint
        .as_ref()
        .map_or(0, |c| u64::try_from(c.bytes).unwrap_or(0))
}

impl DataPlane {
    /// A new sink for the flow's destination, handed the state of the flow's checkpoint (when
    /// it has one), and the offset it continues at.
    async fn restored_sink(&self, flow: &DataFlow) -> Result<(Arc<dyn DataSink>, u64)> {
        let sink: Arc<dyn DataSink> = Arc::from(self.destination_sink(flow)?);
        if let Some(state) = flow.checkpoint.as_ref().and_then(|c| c.sink.as_deref()) {
            sink.restore_state(state).map_err(transfer_to_api)?;
        } else {
            sink.first_point().await.map_err(transfer_to_api)?;
        }
        let at = sink
            .resume_point(checkpoint_bytes(flow))
            .await
            .map_err(transfer_to_api)?
            .unwrap_or(0);
        Ok((sink, at))
    }

    pub(crate) fn destination_sink(&self, flow: &DataFlow) -> Result<Box<dyn DataSink>> {
        let destination = flow
            .destination
            .clone()
            .ok_or_else(|| DataPlaneError::Internal("consumer flow without destination".into()))
            .and_then(|d| ResourceAddress::from_json(d).map_err(DataPlaneError::Internal))?;
        self.transfers.sink(&destination).map_err(transfer_to_api)
    }

    /// The tus `Upload-Offset` of a staging destination.
    pub(crate) async fn staged_offset(&self, flow: &DataFlow) -> Result<u64> {
        if let Some(staged) = self.staged.get(&flow.id) {
            return Ok(staged.position);
        }
        let (sink, position) = self.restored_sink(flow).await?;
        self.staged.put(&flow.id, Staged { sink, position });
        Ok(position)
    }

    /// The sink an upload at `offset` (`None`: replace) writes to.
    pub(crate) async fn staged_sink_for(
        &self,
        flow: &DataFlow,
        offset: Option<u64>,
    ) -> Result<Arc<dyn DataSink>> {
        if self.runner.is_running(&flow.id) {
            return Err(busy(&flow.id));
        }
        let Some(offset) = offset else {
            // Replace: the previous upload is discarded, a new one starts.
            self.abort_staged(flow).await;
            let sink: Arc<dyn DataSink> = Arc::from(self.destination_sink(flow)?);
            sink.first_point().await.map_err(transfer_to_api)?;
            return Ok(sink);
        };
        let current = self.staged_offset(flow).await?;
        if current != offset {
            return Err(DataPlaneError::Conflict(format!(
                "Upload-Offset {offset} does not match the upload's offset {current}"
            )));
        }
        self.staged
            .take(&flow.id)
            .map(|s| s.sink)
            .ok_or_else(|| busy(&flow.id))
    }

    /// Writes one upload's `input` into a staging `sink`, recording the sink's state after each
    /// acknowledged part; keeps the sink for the next upload. Returns the offset reached.
    pub(crate) async fn write_staged(
        &self,
        flow: &DataFlow,
        sink: Arc<dyn DataSink>,
        input: SourceStream,
    ) -> std::result::Result<u64, TransferError> {
        let mut position = input.offset;
        let segments = Segments::new(input);
        let mut settling = 0;
        loop {
            let ended = segments.exhausted();
            let before = sink.state();
            position += segments
                .write_next(sink.as_ref(), position, u64::MAX, Duration::MAX)
                .await?;
            let state = sink.state();
            if state != before {
                self.record_staged(flow, position, state)
                    .await
                    .map_err(|e| TransferError::Transient(e.to_string()))?;
            } else if ended {
                break;
            }
            if ended {
                settling += 1;
                if settling >= SETTLE_ROUNDS {
                    break;
                }
            }
        }
        self.staged.put(&flow.id, Staged { sink, position });
        Ok(position)
    }

    /// Records a staging sink's state in the flow's checkpoint, in whatever state the flow is
    /// (PREPARED or STARTED).
    async fn record_staged(
        &self,
        flow: &DataFlow,
        position: u64,
        state: Option<String>,
    ) -> Result<()> {
        let current = self
            .store
            .find(&flow.id)
            .await?
            .ok_or_else(|| DataPlaneError::NotFound(format!("data flow '{}'", flow.id)))?;
        // Checkpoints never move back: a replaced upload records its state at the old height.
        let bytes = position.max(checkpoint_bytes(&current));
        let update = FlowUpdate::checkpoint(Checkpoint {
            bytes: i64::try_from(bytes).unwrap_or(i64::MAX),
            cursor: None,
            sink: state,
        });
        self.store
            .transition(&flow.id, &[current.state], current.state, None, &update)
            .await
            .map_err(|e| DataPlaneError::transition("record the upload of", e))?;
        Ok(())
    }

    /// Commits the staged upload of a consumer-push flow (at `completed`). Nothing happens for
    /// other flows or destinations that do not stage.
    ///
    /// # Errors
    /// The sink's: the flow then stays STARTED.
    pub(crate) async fn finish_staged(&self, flow: &DataFlow) -> Result<()> {
        if flow.kind != dataplane_spi::FlowKind::ConsumerPush {
            return Ok(());
        }
        if self.runner.is_running(&flow.id) {
            return Err(DataPlaneError::Conflict(format!(
                "an upload to data flow '{}' is still being received; signal completed once it ended",
                flow.id
            )));
        }
        let staged = match self.staged.take(&flow.id) {
            Some(staged) => staged,
            None => {
                // Nothing to commit for a destination that does not stage (or cannot be made).
                if !self.destination_sink(flow).is_ok_and(|sink| sink.stages()) {
                    return Ok(());
                }
                let (sink, position) = self.restored_sink(flow).await?;
                if position < checkpoint_bytes(flow) {
                    return Err(DataPlaneError::Conflict(format!(
                        "data flow '{}' received {} bytes, but only {position} are at the destination: the rest was held by a replica that is gone; upload it again from byte {position}",
                        flow.id,
                        checkpoint_bytes(flow)
                    )));
                }
                Staged { sink, position }
            }
        };
        if let Err(error) = staged.sink.finish(staged.position).await {
            self.staged.put(&flow.id, staged);
            return Err(transfer_to_api(error));
        }
        tracing::info!(flow_id = %flow.id, bytes = staged.position, "the staged upload was committed");
        Ok(())
    }

    /// Aborts the staged upload of a consumer-push flow (terminate, replace); failures are
    /// logged (a bucket lifecycle rule removes what is left).
    pub(crate) async fn abort_staged(&self, flow: &DataFlow) {
        let sink = match self.staged.take(&flow.id) {
            Some(staged) => staged.sink,
            None => {
                let Some(state) = flow.checkpoint.as_ref().and_then(|c| c.sink.as_deref()) else {
                    return;
                };
                let Ok(sink) = self.destination_sink(flow) else {
                    return;
                };
                if let Err(error) = sink.restore_state(state) {
                    tracing::warn!(flow_id = %flow.id, %error, "the staged upload cannot be aborted");
                    return;
                }
                Arc::from(sink)
            }
        };
        if sink.state().is_none() {
            return; // nothing was staged yet
        }
        match sink.abort().await {
            Ok(()) => tracing::info!(flow_id = %flow.id, "the staged upload was aborted"),
            Err(error) => {
                tracing::warn!(flow_id = %flow.id, %error, "the staged upload could not be aborted");
            }
        }
    }

    /// After `terminate` of a consumer-push flow: aborts its staged upload.
    pub(crate) async fn terminated_staged(&self, flow: &DataFlow) {
        if flow.kind == dataplane_spi::FlowKind::ConsumerPush
            && flow.state == DataFlowState::Terminated
        {
            self.abort_staged(flow).await;
        }
    }
}
