//! The dpf data plane: what happens between a DPS call and the last byte.
//!
//! - [`DataPlane`]: the DPS operations (prepare, start, started, suspend, resume, terminate,
//!   completed, status) on a shared [`DataFlowStore`](dataplane_spi::DataFlowStore), the
//!   management view, pull and ingest authorisation, and the replica's background work
//!   (membership lease, claims of unowned flows, takeover of flows whose owner died, finishing
//!   SUSPENDING/TERMINATING flows it owns) — see [`DataPlane::run`].
//! - [`pipeline`]: runs one transfer attempt (`sink.write(source.open())`) with a byte counter
//!   and checkpoints.
//! - [`runner`]: what runs on this replica, one entry per running flow (task, progress, pull
//!   gate), removed when it ends; the attempt loop (retries with exponential backoff up to a
//!   limit) and the owner's checkpointer.
//! - [`DatasetRegistry`]: dataset id → source address; like the [`ControlPlaneRegistry`], shared
//!   by the cluster in its key-value store ([`registry`]).
//! - [`ControlPlaneRegistry`] and [`CallbackDispatcher`]: where callbacks go, delivered with
//!   retries in the background, never blocking a flow.
//! - [`DataPlaneError`]: the one error type of the operations, with a stable code (the HTTP
//!   meaning is the API crate's business).

pub mod baseline;
mod callbacks;
mod config;
mod controlplanes;
mod datasets;
mod error;
pub mod limits;
pub mod live;
mod manager;
pub mod pipeline;
pub mod registry;
pub mod runner;

pub use callbacks::{CallbackDispatcher, CallbackEvent};
pub use config::DataPlaneConfig;
pub use controlplanes::ControlPlaneRegistry;
pub use datasets::DatasetRegistry;
pub use error::{DataPlaneError, Entity};
pub use manager::{
    redact, DataFlowView, DataPlane, DataPlaneHandle, MemberState, Outcome, PullGrant,
    HEARTBEAT_PREFIX,
};
