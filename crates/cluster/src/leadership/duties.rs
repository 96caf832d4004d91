//! The built-in leader duties: reaping dead members, and housekeeping.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dataplane_spi::{Coordinator, DataFlowStore};

use super::{LeaderDuty, LeaderTerm};
use crate::{ClusterOptions, KV_EVENTS_KEPT};

/// Expires the keys of dead sessions, then reaps (once, fenced by the term) every member whose
/// lease expired by the store's clock, so its flows can be taken over. Runs every campaign
/// interval.
#[derive(Debug, Clone)]
pub struct Reaper {
    store: Arc<dyn DataFlowStore>,
    coordinator: Arc<dyn Coordinator>,
    interval: Duration,
}

impl Reaper {
    /// A reaper over `store` (members, clock) and `coordinator` (keys, fenced reaping), every
    /// [`ClusterOptions::campaign_interval`].
    pub fn new(
        store: Arc<dyn DataFlowStore>,
        coordinator: Arc<dyn Coordinator>,
        options: &ClusterOptions,
    ) -> Self {
        Self {
            store,
            coordinator,
            interval: options.campaign_interval(),
        }
    }
}

#[async_trait]
impl LeaderDuty for Reaper {
    fn name(&self) -> &'static str {
        "reaper"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    async fn run(&self, term: &LeaderTerm) -> crate::Result<()> {
        let expired = self.coordinator.kv_expire_sessions().await?;
        if expired > 0 {
            tracing::debug!(expired, "expired the keys of dead sessions");
        }
        let now = self.store.now().await?;
        for member in self.store.list_members().await? {
            if member.lease_expires_at <= now
                && self
                    .coordinator
                    .reap_member(
                        &term.session,
                        term.term,
                        &member.runtime_id,
                        &member.incarnation,
                    )
                    .await?
            {
                tracing::info!(member = %member.runtime_id, incarnation = %member.incarnation, term = term.term, "reaped dead member");
            }
        }
        Ok(())
    }
}

/// Purges finished flows older than the retention (unless it is zero) and compacts the
/// key-value event log to the newest [`KV_EVENTS_KEPT`] events. Runs every
/// [`ClusterOptions::housekeeping_interval`].
#[derive(Debug, Clone)]
pub struct Housekeeping {
    coordinator: Arc<dyn Coordinator>,
    interval: Duration,
    retention: Duration,
    events_kept: i64,
}

impl Housekeeping {
    /// Housekeeping on `coordinator` with the interval and retention of `options`.
    pub fn new(coordinator: Arc<dyn Coordinator>, options: &ClusterOptions) -> Self {
        Self {
            coordinator,
            interval: options.housekeeping_interval,
            retention: options.retention,
            events_kept: KV_EVENTS_KEPT,
        }
    }

    /// Keeps `events_kept` key-value events at compaction instead of [`KV_EVENTS_KEPT`].
    #[must_use]
    pub fn with_events_kept(mut self, events_kept: i64) -> Self {
        self.events_kept = events_kept;
        self
    }
}

#[async_trait]
impl LeaderDuty for Housekeeping {
    fn name(&self) -> &'static str {
        "housekeeping"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    async fn run(&self, term: &LeaderTerm) -> crate::Result<()> {
        if !self.retention.is_zero() {
            let age = i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX);
            let purged = self
                .coordinator
                .purge_finished_flows(&term.session, term.term, age)
                .await?;
            if purged > 0 {
                tracing::info!(purged, "purged finished flows past retention");
            }
        }
        self.coordinator.kv_compact(self.events_kept).await?;
        Ok(())
    }
}
