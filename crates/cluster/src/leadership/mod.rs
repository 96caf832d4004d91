//! The leader campaign and the leader's duties.
//!
//! [`Leadership`] campaigns on its own task, every [`ClusterOptions::campaign_interval`], while
//! the replica has a session; its [`LeadershipHandle`] says who leads and, only while this
//! replica certainly leads, its [`LeaderTerm`] (the fencing token). While leading, the task runs
//! each [`LeaderDuty`] on the duty's own interval, counted from its last run in the same term; a
//! new term runs every duty at once. Duties never run on the membership renewal path.
//!
//! Built-in duties: [`Reaper`] (expires the keys of dead sessions and reaps dead members, every
//! campaign interval) and [`Housekeeping`] (purges finished flows past retention and compacts the
//! key-value event log, every [`ClusterOptions::housekeeping_interval`]).
//!
//! [`ClusterOptions::campaign_interval`]: crate::ClusterOptions::campaign_interval
//! [`ClusterOptions::housekeeping_interval`]: crate::ClusterOptions::housekeeping_interval

mod campaign;
mod duties;
mod duty;

pub use campaign::{Leadership, LeadershipHandle};
pub use duties::{Housekeeping, Reaper};
pub use duty::{LeaderDuty, LeaderTerm};
