//! DPS `start`: the provider side.

use std::sync::Arc;

use dataplane_spi::{DataFlowMessage, DataFlowState, FlowKind, NewDataFlow, HTTP_PULL, HTTP_PUSH};

use super::{message, new_token, runs_pipeline, Outcome};
use crate::{DataPlane, DataPlaneError};

type Result<T> = std::result::Result<T, DataPlaneError>;

impl DataPlane {
    /// DPS `start` (provider side): `http-push` pushes the dataset to `dataAddress`;
    /// `http-pull` answers the address of the public pull endpoint. Synchronous: the answer
    /// is STARTED.
    ///
    /// # Errors
    /// `InvalidInput` for a bad message (unsupported profile, missing or forbidden `dataAddress`), `NotFound` for
    /// an unknown dataset, `Conflict` for a duplicate process id. Nothing is created then.
    pub async fn start(self: &Arc<Self>, msg: DataFlowMessage) -> Result<Outcome> {
        self.check_message(&msg)?;
        self.require_active().await?;
        let kind = match msg.profile.as_str() {
            HTTP_PUSH => FlowKind::ProviderPush,
            HTTP_PULL => FlowKind::ProviderPull,
            other => {
                return Err(DataPlaneError::InvalidInput(format!(
                    "unsupported profile '{other}'; supported: {HTTP_PUSH}, {HTTP_PULL}"
                )))
            }
        };
        let source = self
            .datasets
            .resolve(&msg.dataset_id)
            .await?
            .ok_or_else(|| {
                DataPlaneError::NotFound(format!(
                    "unknown dataset '{}': register it with PUT /api/v1/datasets/{}",
                    msg.dataset_id, msg.dataset_id
                ))
            })?;
        self.check_transfer(&source, false).map_err(|e| {
            DataPlaneError::InvalidInput(format!("dataset '{}': {e}", msg.dataset_id))
        })?;
        let (destination, token) = match (kind, &msg.data_address) {
            (FlowKind::ProviderPush, Some(address)) => {
                let resource = self.resource_of(address)?;
                self.check_transfer(&resource, true)
                    .map_err(|e| DataPlaneError::InvalidInput(format!("dataAddress: {e}")))?;
                (Some(resource.to_json()), None)
            }
            (FlowKind::ProviderPush, None) => {
                return Err(DataPlaneError::InvalidInput(
                    "a provider-push start needs a dataAddress to push to".into(),
                ))
            }
            (_, Some(_)) => {
                return Err(DataPlaneError::InvalidInput(
                    "a pull start must not carry a dataAddress (the data plane provides it)".into(),
                ))
            }
            (_, None) => (None, Some(new_token())),
        };
        self.check_new_process(&msg.process_id).await?;
        let flow = self
            .create(NewDataFlow {
                id: uuid::Uuid::new_v4().to_string(),
                process_id: msg.process_id.clone(),
                kind,
                profile: msg.profile.clone(),
                state: DataFlowState::Started,
                // A full replica leaves the flow waiting for one with room.
                runtime_id: (kind == FlowKind::ProviderPull || self.has_capacity())
                    .then(|| self.me().to_owned()),
                source: source.to_json(),
                destination,
                metadata: Self::metadata_of(&msg, token.as_deref()),
                participant_id: Some(msg.participant_id.clone()),
                callback_address: None,
            })
            .await?;
        tracing::info!(flow_id = %flow.id, process_id = %flow.process_id, kind = ?flow.kind, "data flow started");
        self.open_gate(&flow.id);
        if runs_pipeline(kind) {
            self.spawn_pipeline(flow.clone());
        }
        Ok(Outcome {
            message: message(&flow, self.address_for(&flow, token.as_deref()), None),
        })
    }
}
