//! The leader's baseline duty: sets the configured initial baseline, activates the cluster
//! when every baseline member is online, and adjusts the baseline to the live replicas when
//! fewer than `min-live` baseline members are live or auto-adjust's countdown ran out.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dataplane_spi::{CoordinationError, Coordinator, DataFlowStore, Expected};
use tokio::time::Instant;

use super::model::{
    live_names, read_auto_adjust, read_baseline, read_state, Baseline, ClusterState, BASELINE_KEY,
    STATE_KEY,
};
use crate::leadership::{LeaderDuty, LeaderTerm};
use crate::{ClusterError, ClusterOptions, Result};

/// The value of the state key when an operator deactivated the cluster (the leader does not
/// reactivate it by itself).
pub(crate) const MANUAL_INACTIVE: &str = "INACTIVE (manual)";

/// The leader duty of the baseline (what `lead_baseline` did). It owns the auto-adjust
/// countdown: the live set it last saw and since when (tokio time), so a new leader starts
/// counting afresh.
#[derive(Debug)]
pub struct AutoAdjustDuty {
    store: Arc<dyn DataFlowStore>,
    coordinator: Arc<dyn Coordinator>,
    initial_baseline: Option<BTreeSet<String>>,
    min_live: Option<usize>,
    interval: Duration,
    countdown: Mutex<Option<(BTreeSet<String>, Instant)>>,
}

impl AutoAdjustDuty {
    /// The duty for a replica with `options` (initial baseline, `min_live`; runs every
    /// [`ClusterOptions::campaign_interval`]).
    pub fn new(
        store: Arc<dyn DataFlowStore>,
        coordinator: Arc<dyn Coordinator>,
        options: &ClusterOptions,
    ) -> Self {
        Self {
            store,
            coordinator,
            initial_baseline: options.initial_baseline.clone(),
            min_live: options.min_live,
            interval: options.campaign_interval(),
            countdown: Mutex::new(None),
        }
    }

    /// How long the live set has been what it is now (restarting the countdown when it
    /// changed).
    fn stable_for(&self, live: &BTreeSet<String>) -> Result<Duration> {
        let mut countdown = self
            .countdown
            .lock()
            .map_err(|_| ClusterError::Internal("auto-adjust countdown lock poisoned".into()))?;
        match countdown.as_ref() {
            Some((seen, since)) if seen == live => Ok(since.elapsed()),
            _ => {
                *countdown = Some((live.clone(), Instant::now()));
                Ok(Duration::ZERO)
            }
        }
    }

    async fn write_baseline(
        &self,
        term: &LeaderTerm,
        current: &Baseline,
        version: i64,
        members: BTreeSet<String>,
    ) -> Result<()> {
        ensure_leads(self.coordinator.as_ref(), term).await?;
        write_next(self.coordinator.as_ref(), current, version, members).await
    }
}

#[async_trait::async_trait]
impl LeaderDuty for AutoAdjustDuty {
    fn name(&self) -> &'static str {
        "baseline"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    async fn run(&self, term: &LeaderTerm) -> Result<()> {
        let coordinator = self.coordinator.as_ref();
        let Some((baseline, version)) = read_baseline(coordinator).await? else {
            if let Some(members) = &self.initial_baseline {
                ensure_leads(coordinator, term).await?;
                put_initial_baseline(coordinator, members).await;
            }
            return Ok(());
        };
        let live = live_names(self.store.as_ref()).await?;
        let (state, state_version) = read_state(coordinator).await?;
        if state == ClusterState::Inactive {
            // Only the automatic initial activation; an operator's deactivate is marked.
            let manual = coordinator
                .kv_get(STATE_KEY)
                .await?
                .is_some_and(|e| e.value == MANUAL_INACTIVE);
            if !manual && baseline.members.iter().all(|m| live.contains(m)) {
                ensure_leads(coordinator, term).await?;
                let expected = Expected::Version(state_version);
                if coordinator
                    .kv_put(STATE_KEY, "ACTIVE", expected, None)
                    .await
                    .is_ok()
                {
                    tracing::info!(
                        version = baseline.version,
                        "every baseline member is online: the cluster is ACTIVE"
                    );
                }
            }
            return Ok(());
        }
        let stable = self.stable_for(&live)?;
        let live_baseline = baseline
            .members
            .iter()
            .filter(|m| live.contains(*m))
            .count();
        if let Some(min) = self.min_live {
            if live_baseline < min && live != baseline.members && !live.is_empty() {
                tracing::warn!(live_baseline, min, live = ?live, "fewer baseline members are live than dpf.cluster.baseline.min-live: the baseline becomes the live replicas now");
                return self.write_baseline(term, &baseline, version, live).await;
            }
        }
        let (auto, _) = read_auto_adjust(coordinator).await?;
        if auto.enabled
            && live != baseline.members
            && !live.is_empty()
            && stable >= Duration::from_millis(auto.timeout_ms)
        {
            tracing::info!(live = ?live, stable_ms = u64::try_from(stable.as_millis()).unwrap_or(u64::MAX), "auto-adjust: the baseline becomes the live replicas");
            return self.write_baseline(term, &baseline, version, live).await;
        }
        Ok(())
    }
}

/// Fails unless `term` is the current leader's term (its session and term, lease valid).
///
/// The coordinator has no term-fenced put, so this is a check just before the write: it keeps
/// a deposed leader that noticed nothing from writing, and the write's compare-and-set on the
/// key's version keeps two writers from both succeeding.
///
/// # Errors
/// [`ClusterError::Conflict`] (a stale term), store failures.
pub async fn ensure_leads(coordinator: &dyn Coordinator, term: &LeaderTerm) -> Result<()> {
    let leads = coordinator.leader().await?.is_some_and(|l| {
        l.leader == term.session.runtime_id
            && l.incarnation == term.session.incarnation
            && l.term == term.term
    });
    if leads {
        Ok(())
    } else {
        Err(CoordinationError::StaleTerm {
            leader: term.session.runtime_id.clone(),
            term: term.term,
        }
        .into())
    }
}

/// Writes the version after `current` (whose key is at `version`) with `members`.
pub(crate) async fn write_next(
    coordinator: &dyn Coordinator,
    current: &Baseline,
    version: i64,
    members: BTreeSet<String>,
) -> Result<()> {
    let next = current.next(members);
    let value = serde_json::to_string(&next).unwrap_or_default();
    coordinator
        .kv_put(BASELINE_KEY, &value, Expected::Version(version), None)
        .await?;
    tracing::info!(version = next.version, members = ?next.members, "baseline changed");
    Ok(())
}

/// Sets the first baseline to `members` unless there is one, and the cluster INACTIVE until
/// every member is online; returns whether this call set it.
pub(crate) async fn put_initial_baseline(
    coordinator: &dyn Coordinator,
    members: &BTreeSet<String>,
) -> bool {
    let first = Baseline::first(members.clone());
    let value = serde_json::to_string(&first).unwrap_or_default();
    if coordinator
        .kv_put(BASELINE_KEY, &value, Expected::Absent, None)
        .await
        .is_err()
    {
        return false;
    }
    let _ = coordinator
        .kv_put(STATE_KEY, "INACTIVE", Expected::Any, None)
        .await;
    tracing::info!(members = ?members, "initial baseline set; the cluster is INACTIVE until every member is online");
    true
}
