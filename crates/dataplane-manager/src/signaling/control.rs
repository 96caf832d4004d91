//! DPS `suspend`, `terminate`, `resume` and `completed`: control of an existing flow, whichever
//! replica owns it (the request is recorded; the owner, woken by a change hint, or this replica
//! when the owner is gone, finishes it).

use std::sync::Arc;
use std::time::Duration;

use dataplane_spi::{
    DataAddress, DataFlow, DataFlowState, FlowKind, FlowOwner, FlowUpdate, StoreError,
};
use tokio::time::Instant;

use super::{illegal, message, new_token, runs_pipeline, Outcome, TOKEN_KEY};
use crate::{DataPlane, DataPlaneError};

type Result<T> = std::result::Result<T, DataPlaneError>;

impl DataPlane {
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
        self.terminated_staged(&stopped).await;
        Ok(Outcome {
            message: message(&stopped, None, None),
        })
    }

    /// Records the request (`-ING` state), has the owner stop, and waits for the final state.
    pub(crate) async fn stop(
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

    pub(crate) async fn owner_alive(&self, owner: Option<&str>) -> bool {
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
    pub(crate) async fn finish_stop(
        self: &Arc<Self>,
        flow: &DataFlow,
        stopped: DataFlowState,
    ) -> Result<()> {
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
        if flow.state == DataFlowState::Started {
            // A staged upload (consumer push into object storage) is committed first: a
            // failure leaves the flow STARTED.
            self.finish_staged(&flow).await?;
        }
        // The committed upload's state is not kept: nothing is left to abort.
        let update = FlowUpdate {
            checkpoint: flow
                .checkpoint
                .clone()
                .filter(|c| c.sink.is_some())
                .map(|c| dataplane_spi::Checkpoint { sink: None, ..c }),
            ..FlowUpdate::default()
        };
        let completed = self
            .store
            .transition(
                &flow.id,
                &[DataFlowState::Started],
                DataFlowState::Completed,
                None,
                &update,
            )
            .await
            .map_err(|e| DataPlaneError::transition("complete", e))?;
        self.close_gate(&flow.id);
        self.stop_local(&flow.id).await;
        Ok(Outcome {
            message: message(&completed, None, None),
        })
    }
}
