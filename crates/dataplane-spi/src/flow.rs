use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{StoreError, StoreResult};

/// State of a data flow: the DPS states plus two internal ones.
///
/// `SUSPENDING` and `TERMINATING` record that a replica accepted a suspend/terminate request;
/// the flow's owner then stops the transfer and writes `SUSPENDED`/`TERMINATED`. The DPS API
/// never shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(clippy::enum_glob_use)]
pub enum DataFlowState {
    /// Received, nothing done yet.
    Initialized,
    /// Being prepared (consumer side).
    Preparing,
    /// Prepared, waiting for start.
    Prepared,
    /// Start accepted, transfer not yet running.
    Starting,
    /// Transfer running (or ready to be pulled).
    Started,
    /// Suspend accepted; the owner is stopping the transfer (internal).
    Suspending,
    /// Suspended; may be resumed.
    Suspended,
    /// Finished successfully (terminal).
    Completed,
    /// Terminate accepted; the owner is stopping the transfer (internal).
    Terminating,
    /// Terminated, by request or by error (terminal).
    Terminated,
}

impl DataFlowState {
    /// Every state, in lifecycle order.
    pub const ALL: [Self; 10] = [
        Self::Initialized,
        Self::Preparing,
        Self::Prepared,
        Self::Starting,
        Self::Started,
        Self::Suspending,
        Self::Suspended,
        Self::Completed,
        Self::Terminating,
        Self::Terminated,
    ];

    /// The wire name (`STARTED`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initialized => "INITIALIZED",
            Self::Preparing => "PREPARING",
            Self::Prepared => "PREPARED",
            Self::Starting => "STARTING",
            Self::Started => "STARTED",
            Self::Suspending => "SUSPENDING",
            Self::Suspended => "SUSPENDED",
            Self::Completed => "COMPLETED",
            Self::Terminating => "TERMINATING",
            Self::Terminated => "TERMINATED",
        }
    }

    /// Parses a wire name.
    ///
    /// # Errors
    /// [`StoreError::InvalidInput`] for an unknown name.
    pub fn parse(value: &str) -> StoreResult<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == value)
            .ok_or_else(|| StoreError::InvalidInput(format!("unknown data flow state '{value}'")))
    }

    /// Terminal states never change.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Terminated)
    }

    /// The one transition table of dpf. Terminal states go nowhere; any other state may be
    /// terminated (through `TERMINATING` when a running owner must stop first, or directly when
    /// a transfer fails); the rest follows the DPS state machine, with `SUSPENDING` between
    /// `STARTED` and `SUSPENDED`, and `STARTED → STARTED` for a retried transfer.
    pub fn can_transition_to(self, to: Self) -> bool {
        use DataFlowState::*;
        if self.is_terminal() {
            return false;
        }
        match (self, to) {
            (Terminating, Terminated) => true,
            (Terminating, _) => false,
            (_, Terminating | Terminated) => true,
            (Initialized, Preparing | Prepared | Starting | Started) => true,
            (Preparing, Prepared) => true,
            (Prepared, Starting | Started) => true,
            (Starting, Started) => true,
            (Started, Started | Suspending | Completed) => true,
            (Suspending, Suspended) => true,
            (Suspended, Started) => true,
            _ => false,
        }
    }

    /// Every state from which `to` may be entered (see [`Self::can_transition_to`]).
    pub fn predecessors(to: Self) -> Vec<Self> {
        Self::ALL
            .into_iter()
            .filter(|s| s.can_transition_to(to))
            .collect()
    }

    /// The state the DPS API shows: internal states appear as the state they leave
    /// (`SUSPENDING` and `TERMINATING` show as `STARTED` until the owner confirms).
    pub fn dps_name(self) -> &'static str {
        match self {
            Self::Suspending | Self::Terminating => Self::Started.as_str(),
            other => other.as_str(),
        }
    }
}

impl fmt::Display for DataFlowState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which side and direction a flow serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FlowKind {
    /// Provider pushes data to the consumer's destination.
    ProviderPush,
    /// Consumer pulls data from the provider's endpoint.
    ProviderPull,
    /// Consumer side receiving pushed data.
    ConsumerPush,
    /// Consumer side pulling data.
    ConsumerPull,
}

impl FlowKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ProviderPush => "PROVIDER_PUSH",
            Self::ProviderPull => "PROVIDER_PULL",
            Self::ConsumerPush => "CONSUMER_PUSH",
            Self::ConsumerPull => "CONSUMER_PULL",
        }
    }

    /// Parses a wire name.
    ///
    /// # Errors
    /// [`StoreError::InvalidInput`] for an unknown name.
    pub fn parse(value: &str) -> StoreResult<Self> {
        [
            Self::ProviderPush,
            Self::ProviderPull,
            Self::ConsumerPush,
            Self::ConsumerPull,
        ]
        .into_iter()
        .find(|k| k.as_str() == value)
        .ok_or_else(|| StoreError::InvalidInput(format!("unknown flow kind '{value}'")))
    }
}

/// The committed position of a running transfer: everything before it reached the sink and
/// was flushed. Checkpoints only move forward.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    /// Bytes committed to the sink.
    pub bytes: i64,
    /// Opaque source position for sources that are not byte streams (e.g. a last event id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Opaque state of the sink at this position (e.g. a multipart upload's id and the parts
    /// the object store acknowledged), handed back to the sink before it resumes
    /// ([`DataSink::restore_state`](crate::DataSink::restore_state)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink: Option<String>,
}

/// A data flow as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataFlow {
    /// Flow id (dpf's).
    pub id: String,
    /// The control plane's transfer process id (unique).
    pub process_id: String,
    /// Side and direction.
    pub kind: FlowKind,
    /// DPS transfer profile.
    pub profile: String,
    /// Current state.
    pub state: DataFlowState,
    /// How many times the flow entered (or stayed in) its current state; retries count here.
    pub state_count: i32,
    /// When the current state was entered (store clock).
    pub state_timestamp: DateTime<Utc>,
    /// Creation time (store clock).
    pub created_at: DateTime<Utc>,
    /// Last change (store clock).
    pub updated_at: DateTime<Utc>,
    /// Owning replica (runtime id); `None` while unowned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_id: Option<String>,
    /// Fencing token: +1 at every change of owner.
    pub epoch: i64,
    /// Source address (JSON, DPS `DataAddress` shape or a dataset reference).
    pub source: serde_json::Value,
    /// Destination address, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<serde_json::Value>,
    /// Free metadata (agreement, dataset, labels, ...).
    pub metadata: serde_json::Value,
    /// Participant the flow belongs to (selects the control plane for callbacks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participant_id: Option<String>,
    /// Where callbacks go, when given with the flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_address: Option<String>,
    /// Last committed position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Checkpoint>,
    /// Last error, if the flow failed or a step is being retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_detail: Option<String>,
}

/// What is needed to create a flow.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDataFlow {
    /// Flow id.
    pub id: String,
    /// Transfer process id (unique).
    pub process_id: String,
    /// Side and direction.
    pub kind: FlowKind,
    /// DPS transfer profile.
    pub profile: String,
    /// Initial state.
    pub state: DataFlowState,
    /// Initial owner: a replica that starts the flow itself creates it owned (epoch 1);
    /// `None` leaves it for any replica to claim (epoch 0).
    pub runtime_id: Option<String>,
    /// Source address.
    pub source: serde_json::Value,
    /// Destination address.
    pub destination: Option<serde_json::Value>,
    /// Free metadata.
    pub metadata: serde_json::Value,
    /// Participant id.
    pub participant_id: Option<String>,
    /// Callback address.
    pub callback_address: Option<String>,
}

impl NewDataFlow {
    /// A minimal flow (tests, examples): unowned, empty metadata.
    pub fn new(
        id: impl Into<String>,
        process_id: impl Into<String>,
        kind: FlowKind,
        state: DataFlowState,
    ) -> Self {
        Self {
            id: id.into(),
            process_id: process_id.into(),
            kind,
            profile: "https://w3id.org/dspace-sig/profile/http-push".into(),
            state,
            runtime_id: None,
            source: serde_json::json!({}),
            destination: None,
            metadata: serde_json::json!({}),
            participant_id: None,
            callback_address: None,
        }
    }
}

/// Changes an owner writes to its flow. `None` fields are left as they are.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FlowUpdate {
    /// New state; entering the same state again increments `state_count`, a different state
    /// resets it to 1. Either way `state_timestamp` moves to now.
    pub state: Option<DataFlowState>,
    /// New error detail.
    pub error_detail: Option<String>,
    /// New checkpoint; ignored when behind the stored one (checkpoints never move backwards).
    pub checkpoint: Option<Checkpoint>,
    /// New metadata (replaces the old).
    pub metadata: Option<serde_json::Value>,
    /// New source address (e.g. a consumer-pull `started` carries where to pull from).
    pub source: Option<serde_json::Value>,
    /// New destination address (e.g. a provider-push `resume` may carry a new one).
    pub destination: Option<serde_json::Value>,
    /// Owner writes only: apply only while the flow is in one of these states (any
    /// non-terminal state when empty). A mismatch is [`StoreError::WrongState`]. Terminal
    /// flows are never written by an owner.
    pub only_from: Vec<DataFlowState>,
}

impl FlowUpdate {
    /// An update that only changes the state.
    pub fn state(state: DataFlowState) -> Self {
        Self {
            state: Some(state),
            ..Self::default()
        }
    }

    /// An owner's move to `to`, allowed only from the states the transition table allows.
    pub fn move_to(to: DataFlowState) -> Self {
        Self {
            state: Some(to),
            only_from: DataFlowState::predecessors(to),
            ..Self::default()
        }
    }

    /// An update that only records a checkpoint.
    pub fn checkpoint(checkpoint: Checkpoint) -> Self {
        Self {
            checkpoint: Some(checkpoint),
            ..Self::default()
        }
    }
}
