//! The dpf data plane: what happens between a DPS call and the last byte.
//!
//! - [`DataPlane`]: the DPS operations (prepare, start, started, suspend, resume, terminate,
//!   completed, status) on a shared [`DataFlowStore`](dataplane_spi::DataFlowStore), the
//!   management view, pull and ingest authorisation, and the replica's background work
//!   (membership lease, claims of unowned flows, takeover of flows whose owner died, finishing
//!   SUSPENDING/TERMINATING flows it owns) — see [`DataPlane::run`].
//! - [`pipeline`]: runs one transfer (`sink.write(source.open())`) with a byte counter, retries
//!   transient failures with exponential backoff up to a limit.
//! - [`DatasetRegistry`]: dataset id → source address.
//! - [`ControlPlaneRegistry`] and [`CallbackDispatcher`]: where callbacks go, delivered with
//!   retries in the background, never blocking a flow.
//! - [`DataPlaneError`]: the one error type of the operations, with its HTTP meaning.

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

pub use callbacks::{CallbackDispatcher, CallbackEvent};
pub use config::DataPlaneConfig;
pub use controlplanes::ControlPlaneRegistry;
pub use datasets::DatasetRegistry;
pub use error::DataPlaneError;
pub use manager::{
    redact, DataFlowView, DataPlane, DataPlaneHandle, MemberState, Outcome, PullGrant,
    HEARTBEAT_PREFIX,
};
