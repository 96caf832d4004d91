//! Which flows this replica runs: the ownership loop, whose ticks fence the replica when its
//! lease is in doubt; each tick's claims of unowned flows and takeovers of flows
//! whose owner died (within the room under max-concurrent-flows), giving back the newest
//! transfers when that maximum was lowered, finishing SUSPENDING/TERMINATING flows it owns, and
//! the hooks the runner calls back ([`PipelineHost`]).

use std::sync::Arc;
use std::time::Duration;

use cluster::membership::MemberState;
use dataplane_spi::{DataFlow, DataFlowState, DataFlowStore, FlowOwner, TransferRegistry};
use tokio::sync::watch;

use crate::runner::attempts::{self, PipelineHost};
use crate::runner::pipeline::CheckpointPolicy;
use crate::runner::IfRunning;
use crate::signaling::runs_pipeline;
use crate::{DataPlane, DataPlaneError};

type Result<T> = std::result::Result<T, DataPlaneError>;

/// What a replica claims when unowned: STARTED flows to run, and SUSPENDING/TERMINATING flows
/// nobody finished (their requester died between recording and finishing them).
pub(crate) const CLAIMABLE: [DataFlowState; 3] = [
    DataFlowState::Started,
    DataFlowState::Suspending,
    DataFlowState::Terminating,
];
/// Most claim (or takeover) statements per tick.
pub(crate) const MAX_BATCHES_PER_TICK: usize = 50;

impl DataPlane {
    /// The ownership loop, alone on its task: a tick every claim interval (or at once when the
    /// store hints at a change) until `stopped` turns true or its sender is dropped.
    pub(crate) async fn ownership_loop(self: Arc<Self>, mut stopped: watch::Receiver<bool>) {
        let mut hints = self.store.change_hints();
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
                changed = stopped.changed() => {
                    if changed.is_err() || *stopped.borrow() {
                        break;
                    }
                    continue;
                }
                () = tokio::time::sleep(self.config.claim_interval) => {}
                () = hinted => {}
            }
            if let Err(error) = self.tick().await {
                tracing::warn!(%error, "state machine tick failed");
            }
        }
    }

    /// Whether the baseline lets this replica own work now.
    pub(crate) fn may_own(&self) -> bool {
        self.baseline.may_own()
    }

    /// Whether this replica has room for another transfer.
    pub(crate) fn has_capacity(&self) -> bool {
        if !self.may_own() {
            return false;
        }
        let max = self.live.max_concurrent();
        max == 0 || (self.running_transfers() as u64) < max
    }

    /// One round of the ownership loop: self-fencing, then claims, takeovers and finishing
    /// what this replica owns, then the published load.
    pub(crate) async fn tick(self: &Arc<Self>) -> Result<()> {
        if !self.membership.lease_valid() {
            // Renewal is late: whatever we run may already belong to someone else.
            self.stop_all().await;
            return Ok(());
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
        self.report_load().await;
        Ok(())
    }

    /// IDLE without running transfers, HEALTHY with; and the load report the next lease
    /// renewal writes (running transfers, capacity, bytes per second; nothing written here).
    pub(crate) async fn report_load(&self) {
        let running = self.running_transfers() as u64;
        let capacity = self.live.max_concurrent();
        let bytes_per_second = self.metrics.bytes_per_second();
        let (public_base_url, transfers) = (&self.config.public_base_url, &self.transfers);
        self.membership.update_load(|report| {
            report.running = running;
            report.capacity = capacity;
            report.bytes_per_second = bytes_per_second;
            if report.endpoint.is_none() {
                report.endpoint = Some(format!(
                    "{}/signaling",
                    public_base_url.trim_end_matches('/')
                ));
            }
            if report.profiles.is_empty() {
                report.profiles = vec![
                    dataplane_spi::HTTP_PUSH.to_owned(),
                    dataplane_spi::HTTP_PULL.to_owned(),
                ];
                report.allowed_source_types = transfers.source_types();
            }
        });
        let state = if self.runner.running() > 0 {
            MemberState::Healthy
        } else {
            MemberState::Idle
        };
        self.membership.report_state(state).await;
    }

    /// How many more transfers this replica may start now.
    pub(crate) fn room(&self) -> usize {
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
    pub(crate) async fn shed_excess(&self) {
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

    /// Continues a flow this replica just obtained or must finish.
    pub(crate) async fn adopt(self: &Arc<Self>, flow: DataFlow) {
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

    pub(crate) async fn stop_all(&self) {
        let ids = self.runner.with_tasks();
        for id in ids {
            self.stop_local(&id).await;
        }
    }

    pub(crate) fn open_gate(&self, flow_id: &str) {
        self.runner.open_gate(flow_id);
    }

    pub(crate) fn close_gate(&self, flow_id: &str) {
        self.runner.close_gate(flow_id);
    }

    /// Stops this replica's transfer of a flow and waits until it cannot write any more.
    pub(crate) async fn stop_local(&self, flow_id: &str) {
        self.runner.stop(flow_id).await;
    }

    /// Starts the transfer of a flow this replica owns, unless one is running already.
    pub(crate) fn spawn_pipeline(self: &Arc<Self>, flow: DataFlow) {
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
}

impl PipelineHost for DataPlane {
    fn flow_store(&self) -> &Arc<dyn DataFlowStore> {
        &self.store
    }

    fn transfer_registry(&self) -> &TransferRegistry {
        &self.transfers
    }

    fn checkpoint_policy(&self) -> CheckpointPolicy {
        CheckpointPolicy {
            bytes: self.live.checkpoint_bytes(),
            interval: self.live.checkpoint_interval(),
        }
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
