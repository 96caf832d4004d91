//! dpf's cluster services, each on its own task and cadence: Options → `build`/`new` →
//! `run(shutdown)` → a cheap-clone handle.
//!
//! - [`membership`]: the replica's membership row and its lease, renewed alone on its task;
//!   [`LeaseGuard`](membership::LeaseGuard) says on tokio time whether the lease is certainly
//!   still ours; losing the membership is published on a channel.
//! - [`changes`]: the stream of member changes (joined, updated, left).
//! - [`kv`]: the cluster key-value store with watch streams.
//! - [`leadership`]: the leader campaign; [`LeaderTerm`](leadership::LeaderTerm) is the fencing
//!   token; leader duties (reaping dead members, housekeeping) on their own intervals.
//! - [`live_config`]: cluster-wide settings under `dpf/config/`, applied without restart.
//! - [`baseline`]: the versioned set of replicas that own work, the cluster state, identity
//!   checks and auto-adjust.
//!
//! Depends on `dataplane-spi` only (never on a store implementation, actix-web, reqwest or
//! diesel); tests run over `dataplane-store-memory` with paused tokio time.

pub mod baseline;
pub mod changes;
mod error;
pub mod kv;
pub mod leadership;
pub mod live_config;
pub mod membership;
mod options;

pub use error::ClusterError;
pub use options::{ClusterOptions, KV_EVENTS_KEPT};

/// Result alias of the cluster services.
pub type Result<T> = std::result::Result<T, ClusterError>;
