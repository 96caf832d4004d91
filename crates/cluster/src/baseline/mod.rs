//! The baseline topology: the versioned set of replicas that own work, the cluster state
//! (ACTIVE/INACTIVE), the replica's identity record, and the leader's auto-adjust.
//!
//! - [`model`]: [`Baseline`], [`AutoAdjust`], [`ClusterState`], [`LocalRecord`], [`Topology`],
//!   the keys, and the [`BaselineView`] the API shows.
//! - [`BaselineService`] refreshes the cached topology on its own task; its
//!   [`BaselineHandle`] answers [`may_own`](BaselineHandle::may_own) from the cache,
//!   [`require_active`](BaselineHandle::require_active), the start-up
//!   [`check_identity`](BaselineHandle::check_identity) and the operator's commands.
//! - [`AutoAdjustDuty`]: the leader's duty (initial baseline, activation, min-live,
//!   auto-adjust countdown), fenced by the [`LeaderTerm`](crate::leadership::LeaderTerm).

mod auto_adjust;
mod identity;
pub mod model;
mod service;

pub use auto_adjust::{ensure_leads, AutoAdjustDuty};
pub use identity::record_path;
pub use model::{
    AutoAdjust, Baseline, BaselineMember, BaselineView, ClusterState, LocalRecord, Topology,
    AUTO_ADJUST_KEY, BASELINE_KEY, CLUSTER_ID_KEY, STATE_KEY,
};
pub use service::{inactive_message, BaselineHandle, BaselineService};
