//! The leader's clean-up of staged uploads that no replica will finish: a TERMINATED flow whose
//! last checkpoint still holds a sink state (an object-storage multipart upload id) — e.g. one
//! terminated while its owner was dead and nobody had taken it over, so nobody aborted it. The
//! duty aborts each such upload once ([`DataSink::abort`]) and clears the state.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cluster::leadership::{LeaderDuty, LeaderTerm};
use dataplane_spi::{
    Checkpoint, DataFlow, DataFlowState, DataFlowStore, DataSink, FlowUpdate, ResourceAddress,
    TransferError, TransferRegistry,
};

/// How many TERMINATED flows one run looks at.
const SCAN_LIMIT: usize = 10_000;

/// Aborts the staged uploads of TERMINATED flows (see the module docs).
#[derive(Debug, Clone)]
pub struct UploadJanitor {
    store: Arc<dyn DataFlowStore>,
    transfers: TransferRegistry,
    interval: Duration,
}

impl UploadJanitor {
    /// A janitor over `store`, creating sinks with `transfers`, every `interval`.
    pub fn new(
        store: Arc<dyn DataFlowStore>,
        transfers: TransferRegistry,
        interval: Duration,
    ) -> Self {
        Self {
            store,
            transfers,
            interval,
        }
    }

    /// The destination's sink with the flow's recorded state, if there is one to abort.
    fn staged_sink(&self, flow: &DataFlow) -> Option<Result<Box<dyn DataSink>, TransferError>> {
        let state = flow.checkpoint.as_ref()?.sink.as_deref()?;
        let destination = ResourceAddress::from_json(flow.destination.clone()?).ok()?;
        Some(self.transfers.sink(&destination).and_then(|sink| {
            sink.restore_state(state)?;
            Ok(sink)
        }))
    }

    /// Aborts one flow's upload; `true` when its state can be cleared (aborted, or nothing left
    /// to abort), `false` to try again next run.
    async fn abort(&self, flow: &DataFlow) -> bool {
        let Some(sink) = self.staged_sink(flow) else {
            return false;
        };
        let result = match sink {
            Ok(sink) => sink.abort().await,
            Err(error) => Err(error),
        };
        match result {
            Ok(()) => {
                tracing::info!(flow_id = %flow.id, "aborted the staged upload of a terminated flow");
                true
            }
            Err(error) if error.is_retryable() => {
                tracing::warn!(flow_id = %flow.id, %error, "the staged upload of a terminated flow could not be aborted; trying again later");
                false
            }
            // Gone already (aborted by its owner), or unusable: nothing more can be done.
            Err(error) => {
                tracing::debug!(flow_id = %flow.id, %error, "the staged upload of a terminated flow is gone");
                true
            }
        }
    }
}

#[async_trait]
impl LeaderDuty for UploadJanitor {
    fn name(&self) -> &'static str {
        "upload-janitor"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    async fn run(&self, _term: &LeaderTerm) -> cluster::Result<()> {
        let terminated = self
            .store
            .list(&[DataFlowState::Terminated], SCAN_LIMIT)
            .await?;
        for flow in terminated {
            if !self.abort(&flow).await {
                continue;
            }
            let Some(checkpoint) = flow.checkpoint.clone() else {
                continue;
            };
            let update = FlowUpdate::checkpoint(Checkpoint {
                sink: None,
                ..checkpoint
            });
            let from = [DataFlowState::Terminated];
            if let Err(error) = self
                .store
                .transition(&flow.id, &from, DataFlowState::Terminated, None, &update)
                .await
            {
                tracing::debug!(flow_id = %flow.id, %error, "the cleared upload state was not recorded");
            }
        }
        Ok(())
    }
}
