//! The dpf data plane: what happens between a DPS call and the last byte.
//!
//! - [`DataPlane`]: the DPS operations (prepare, start, started, suspend, resume, terminate,
//!   completed, status) on a shared [`DataFlowStore`](dataplane_spi::DataFlowStore), the
//!   management view, pull and ingest authorisation, and the replica's background work
//!   (membership lease, claims of unowned flows, takeover of flows whose owner died, finishing
//!   SUSPENDING/TERMINATING flows it owns) — see [`DataPlane::run`].
//!   Its `impl` blocks are split by concern: `plane` (state, constructor, accessors, `run`),
//!   `signaling/` (the DPS operations), `access` (pull and ingest), `view` (management views,
//!   redaction), `ownership` (the ownership loop: claims, takeovers, shedding, self-fencing;
//!   runner hooks), `health`, `metrics`. The cluster services (membership, leadership, live
//!   configuration, baseline) come from the `cluster` crate; the plane holds their handles.
//! - [`pipeline`] (in [`runner`]): runs one transfer attempt (`sink.write(source.open())`) with a byte counter
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

mod access;
mod callbacks;
mod config;
mod controlplanes;
mod datasets;
mod error;
mod health;
pub mod janitor;
pub mod limits;
mod metrics;
mod ownership;
mod plane;
pub mod registry;
pub mod runner;
mod signaling;
mod staged_ingest;
mod view;

/// One transfer attempt with a byte counter and checkpoints; lives in [`runner::pipeline`].
pub use runner::pipeline;

pub use access::PullGrant;
pub use callbacks::{CallbackDispatcher, CallbackEvent};
/// The cluster services the data plane runs on (its handles' types).
pub use cluster;
/// The baseline topology (the `cluster` crate's [`cluster::baseline`]).
pub use cluster::baseline;
pub use cluster::baseline::{BaselineMember, BaselineView};
/// Live configuration under `dpf/config/` (the `cluster` crate's [`cluster::live_config`]).
pub use cluster::live_config as live;
pub use cluster::membership::{MemberState, HEARTBEAT_PREFIX};
pub use config::DataPlaneConfig;
pub use controlplanes::ControlPlaneRegistry;
pub use datasets::DatasetRegistry;
pub use error::{DataPlaneError, Entity};
pub use metrics::{AtomicU64Counter, Metrics};
pub use plane::{DataPlane, DataPlaneHandle, DataPlaneServices};
pub use signaling::Outcome;
pub use view::{redact, DataFlowView};
