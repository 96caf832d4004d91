//! The answers of the DPS operations: [`Outcome`], status messages, the addresses a flow hands
//! out (pull and ingest endpoints), and callbacks to the control plane.

use dataplane_spi::{
    DataAddress, DataFlow, DataFlowState, DataFlowStatusMessage, FlowKind, HTTP_PULL, HTTP_PUSH,
};

use crate::callbacks::CallbackEvent;
use crate::DataPlane;

/// What a DPS operation answers.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The body (a `DataFlowStatusMessage`).
    pub message: DataFlowStatusMessage,
}

pub(crate) fn message(
    flow: &DataFlow,
    data_address: Option<DataAddress>,
    error: Option<String>,
) -> DataFlowStatusMessage {
    DataFlowStatusMessage {
        message_id: uuid::Uuid::new_v4().to_string(),
        data_flow_id: flow.id.clone(),
        state: flow.state.dps_name().to_owned(),
        data_address,
        error,
    }
}

impl DataPlane {
    pub(crate) fn pull_address(&self, flow: &DataFlow, token: Option<&str>) -> DataAddress {
        DataAddress::http(
            HTTP_PULL,
            format!(
                "{}/public/{}",
                self.config.public_base_url.trim_end_matches('/'),
                flow.id
            ),
            token,
        )
    }

    pub(crate) fn ingest_address(&self, flow: &DataFlow, token: Option<&str>) -> DataAddress {
        let mut address = DataAddress::http(
            HTTP_PUSH,
            format!(
                "{}/ingest/{}",
                self.config.public_base_url.trim_end_matches('/'),
                flow.id
            ),
            token,
        );
        // The ingest endpoint is a tus upload: a pushing dpf checkpoints from the first byte
        // without probing it first.
        address
            .endpoint_properties
            .push(dataplane_spi::EndpointProperty {
                kind: Some("EndpointProperty".into()),
                name: "resumable".into(),
                value: "tus".into(),
            });
        address
    }

    /// The address a flow's state hands out, if any (pull endpoint, ingest endpoint), with
    /// `token`: the raw token exists only when it was just issued (only its digest is stored).
    pub(crate) fn address_for(&self, flow: &DataFlow, token: Option<&str>) -> Option<DataAddress> {
        match (flow.kind, flow.state) {
            (FlowKind::ProviderPull, DataFlowState::Started) => {
                Some(self.pull_address(flow, token))
            }
            (FlowKind::ConsumerPush, DataFlowState::Prepared | DataFlowState::Started) => {
                Some(self.ingest_address(flow, token))
            }
            _ => None,
        }
    }

    pub(crate) fn callback(&self, flow: &DataFlow, event: &'static str, error: Option<String>) {
        self.callbacks.send(CallbackEvent {
            process_id: flow.process_id.clone(),
            participant_id: flow.participant_id.clone(),
            event,
            message: message(flow, None, error),
        });
    }
}
