//! The fencing token of leader-only work and the duties a leader runs.

use std::time::Duration;

use dataplane_spi::Session;

/// The leadership a replica won: its session and the term. The term is the fencing token:
/// every leader-only write (reaping, purging, compaction, baseline changes) passes it to the
/// store, which refuses it once a later term exists, so a deposed leader that has not noticed
/// yet cannot change anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderTerm {
    /// The leader's session (name and incarnation).
    pub session: Session,
    /// The term, increasing with every change of leader.
    pub term: i64,
}

/// Work only the leader does, on its own interval, fenced by the term.
#[async_trait::async_trait]
pub trait LeaderDuty: Send + Sync + std::fmt::Debug {
    /// Name for logs.
    fn name(&self) -> &'static str;
    /// Least time between two runs on one leader.
    fn interval(&self) -> Duration;
    /// One run under `term`.
    ///
    /// # Errors
    /// Store failures and stale terms; the leadership logs them and tries again next interval.
    async fn run(&self, term: &LeaderTerm) -> crate::Result<()>;
}
