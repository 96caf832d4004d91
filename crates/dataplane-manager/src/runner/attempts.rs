//! The attempt loop of one transfer this replica owns: run an attempt, record completion, retry
//! transient failures from the last checkpoint with exponential backoff (jittered, capped),
//! give up for good after the configured attempts, and stop without writing when the lease can
//! no longer be trusted or the flow moved on.

use std::sync::Arc;
use std::time::Duration;

use dataplane_spi::{
    Checkpoint, DataFlow, DataFlowState, DataFlowStore, FlowOwner, FlowUpdate, ResourceAddress,
    TransferRegistry,
};

use super::checkpointer::OwnerCheckpointer;
use crate::runner::pipeline::{run_attempt, CheckpointPolicy, Progress};

/// Longest retry delay.
pub(crate) const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// What the attempt loop needs from the replica that runs it.
pub(crate) trait PipelineHost: Send + Sync + 'static {
    /// The shared flow store (owner writes are fenced by the epoch).
    fn flow_store(&self) -> &Arc<dyn DataFlowStore>;
    /// Sources and sinks by address type.
    fn transfer_registry(&self) -> &TransferRegistry;
    /// How often checkpoints are taken now.
    fn checkpoint_policy(&self) -> CheckpointPolicy;
    /// Attempts before giving up, and the first retry delay (doubled each retry).
    fn retry_policy(&self) -> (u32, Duration);
    /// Whether this replica's lease is certainly still valid (self-fencing).
    fn lease_still_valid(&self) -> bool;
    /// The flow completed (recorded): count it and send `completed`.
    fn completed(&self, flow: &DataFlow);
    /// The transfer failed for good (counted before it is recorded).
    fn failed(&self);
    /// The failure was recorded (TERMINATED): send `errored`.
    fn errored(&self, flow: &DataFlow, error: String);
}

/// Runs the transfer of `flow` as `owner` until it completes, fails for good, or must stop.
pub(crate) async fn run<H: PipelineHost>(
    host: Arc<H>,
    flow: DataFlow,
    owner: FlowOwner,
    progress: Arc<Progress>,
) {
    let source = ResourceAddress::from_json(flow.source.clone());
    let destination = flow
        .destination
        .clone()
        .ok_or_else(|| "the flow has no destination".to_owned())
        .and_then(ResourceAddress::from_json);
    let (source, destination) = match (source, destination) {
        (Ok(s), Ok(d)) => (s, d),
        (Err(e), _) | (_, Err(e)) => {
            fail(&*host, &flow, &owner, format!("unusable address: {e}")).await;
            return;
        }
    };
    let store = host.flow_store().clone();
    let checkpointer = OwnerCheckpointer::new(store.clone(), owner.clone(), &flow);
    let (retry_limit, mut delay) = host.retry_policy();
    let mut attempt: u32 = 1;
    loop {
        let fence = host.clone();
        let from = checkpointer.last();
        let result = run_attempt(
            host.transfer_registry(),
            &source,
            &destination,
            from.as_ref(),
            checkpointer.first_attempt(),
            host.checkpoint_policy(),
            progress.clone(),
            move || fence.lease_still_valid(),
            &checkpointer,
        )
        .await;
        checkpointer.settle();
        if !host.lease_still_valid() {
            tracing::error!(flow_id = %flow.id, "lease expired during the transfer: stopped without writing further (self-fencing)");
            return;
        }
        match result {
            Ok(report) => {
                checkpointer.finished();
                let update = FlowUpdate {
                    checkpoint: Some(Checkpoint {
                        bytes: i64::try_from(report.position).unwrap_or(i64::MAX),
                        cursor: checkpointer.last().and_then(|c| c.cursor),
                        sink: None,
                    }),
                    metadata: Some(checkpointer.metadata(Some(report.position))),
                    ..FlowUpdate::move_to(DataFlowState::Completed)
                };
                match store.update_owned(&owner, &flow.id, &update).await {
                    Ok(done) => {
                        tracing::info!(flow_id = %flow.id, bytes = report.position, resumed_at = report.started_at, "data flow completed");
                        host.completed(&done);
                    }
                    Err(error) => {
                        tracing::warn!(flow_id = %flow.id, %error, "completion not recorded: the flow moved on");
                    }
                }
                return;
            }
            Err(error) if error.is_retryable() && attempt < retry_limit => {
                tracing::warn!(flow_id = %flow.id, attempt, %error, "transfer failed; retrying from the last checkpoint");
                let update = FlowUpdate {
                    error_detail: Some(error.to_string()),
                    only_from: vec![DataFlowState::Started],
                    ..FlowUpdate::state(DataFlowState::Started)
                };
                if let Err(error) = store.update_owned(&owner, &flow.id, &update).await {
                    tracing::warn!(flow_id = %flow.id, %error, "retry not recorded: the flow moved on; stopping");
                    return;
                }
                let jitter = rand::random::<f64>() * 0.2 + 0.9;
                tokio::time::sleep(delay.mul_f64(jitter)).await;
                delay = (delay * 2).min(MAX_RETRY_DELAY);
                attempt += 1;
            }
            Err(error) => {
                if checkpointer.lost() {
                    tracing::warn!(flow_id = %flow.id, "the flow moved on (lease lost or stopped); transfer stopped");
                    return;
                }
                checkpointer.abort_upload().await;
                fail(&*host, &flow, &owner, error.to_string()).await;
                return;
            }
        }
    }
}

/// Records that the transfer failed for good (TERMINATED, fenced) and sends `errored`.
async fn fail<H: PipelineHost>(host: &H, flow: &DataFlow, owner: &FlowOwner, error: String) {
    host.failed();
    tracing::error!(flow_id = %flow.id, %error, "transfer failed for good");
    let update = FlowUpdate {
        error_detail: Some(error.clone()),
        ..FlowUpdate::move_to(DataFlowState::Terminated)
    };
    if let Ok(failed) = host
        .flow_store()
        .update_owned(owner, &flow.id, &update)
        .await
    {
        host.errored(&failed, error);
    }
}
