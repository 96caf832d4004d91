//! DPS `prepare` and `started`: the consumer side.

use std::sync::Arc;

use dataplane_spi::{
    DataAddress, DataFlowMessage, DataFlowState, FlowKind, FlowUpdate, NewDataFlow,
    ResourceAddress, HTTP_PULL, HTTP_PUSH,
};

use super::{message, new_token, runs_pipeline, Outcome};
use crate::{DataPlane, DataPlaneError};

type Result<T> = std::result::Result<T, DataPlaneError>;

impl DataPlane {
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
                let address = self.check_address(&address).map_err(|e| {
                    DataPlaneError::InvalidInput(format!("metadata.destination: {e}"))
                })?;
                self.check_transfer(&address, true).map_err(|e| {
                    DataPlaneError::InvalidInput(format!("metadata.destination: {e}"))
                })?;
                address
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
}
