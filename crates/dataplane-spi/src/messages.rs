//! DPS messages with their exact field names (see `specs/dps/specifications/schemas`).
//! Optional fields are left out when absent, never `null`.

use serde::{Deserialize, Serialize};

use crate::DataAddress;

/// `DataFlowPrepareMessage` and `DataFlowStartMessage` (start adds `dataAddress`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataFlowMessage {
    /// Unique id of the message.
    pub message_id: String,
    /// Participant sending the message.
    pub participant_id: String,
    /// The counterparty.
    pub counter_party_id: String,
    /// Dataspace context.
    pub dataspace_context: String,
    /// The control plane's transfer process id.
    pub process_id: String,
    /// Contract agreement id.
    pub agreement_id: String,
    /// Dataset id.
    pub dataset_id: String,
    /// Transfer profile.
    pub profile: String,
    /// Verified DSP claims of the counterparty.
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// Where to push (provider push start); must be absent on pull starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_address: Option<DataAddress>,
    /// Flavours of the flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
    /// Free metadata (dpf reads `destination` on the consumer side).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

/// `DataFlowStatusMessage`: answers to prepare/start/resume and the body of callbacks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataFlowStatusMessage {
    /// Unique id of the message.
    pub message_id: String,
    /// The flow's id.
    pub data_flow_id: String,
    /// The DPS state.
    pub state: String,
    /// An address, when the state transition produced one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_address: Option<DataAddress>,
    /// An error description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `DataFlowStatusResponseMessage` (`GET …/status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataFlowStatusResponseMessage {
    /// The flow's id.
    pub data_flow_id: String,
    /// The DPS state.
    pub state: String,
}

/// `DataFlowStartedNotificationMessage` and `DataFlowResumeMessage` (same shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataFlowAddressMessage {
    /// Unique id of the message.
    pub message_id: String,
    /// An address (consumer pull: where to pull from).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_address: Option<DataAddress>,
}

/// `DataFlowSuspendMessage` and `DataFlowTerminateMessage` (same shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataFlowReasonMessage {
    /// Unique id of the message.
    pub message_id: String,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// DPS `ControlPlaneRegistrationMessage`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ControlPlaneRegistration {
    /// Id of the control plane (callbacks for flows whose `participantId` equals it go there).
    pub controlplane_id: String,
    /// Base URL of its signaling API; `/transfers/{processId}/dataflow/{event}` is appended.
    pub endpoint: String,
    /// How to authenticate to it (`{"type":"none"}` accepted).
    pub authorization: serde_json::Value,
}
