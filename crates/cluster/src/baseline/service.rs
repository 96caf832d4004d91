//! [`BaselineService`]: reads the baseline and the cluster state on its own cadence into a
//! cached [`Topology`]; [`BaselineHandle`] answers admission questions from that cache and
//! carries the operator's reads and writes.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dataplane_spi::{Coordinator, DataFlowStore, Expected, Session};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::auto_adjust::{put_initial_baseline, write_next, MANUAL_INACTIVE};
use super::identity;
use super::model::{
    live_names, read_auto_adjust, read_baseline, read_state, Baseline, BaselineMember,
    BaselineView, ClusterState, Topology, AUTO_ADJUST_KEY, BASELINE_KEY, CLUSTER_ID_KEY, STATE_KEY,
};
use crate::{ClusterError, ClusterOptions, Result};

/// What the service and its handles share.
#[derive(Debug)]
struct Shared {
    store: Arc<dyn DataFlowStore>,
    coordinator: Arc<dyn Coordinator>,
    runtime_id: String,
    data_dir: PathBuf,
    initial_baseline: Option<BTreeSet<String>>,
    topology: watch::Sender<Topology>,
}

/// Refreshes the cached topology every `topology_interval` while the replica is joined (and
/// at once when it joins). Start it with [`BaselineService::run`].
#[derive(Debug)]
pub struct BaselineService {
    handle: BaselineHandle,
    sessions: watch::Receiver<Option<Session>>,
    interval: Duration,
}

/// The baseline as this replica sees it, and the operator's baseline commands. Cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct BaselineHandle {
    shared: Arc<Shared>,
}

impl BaselineService {
    /// The service of a replica with `options`; `sessions` says whether it is joined (Some
    /// while its lease is valid). The cached topology starts as "no baseline, ACTIVE".
    pub fn new(
        store: Arc<dyn DataFlowStore>,
        coordinator: Arc<dyn Coordinator>,
        sessions: watch::Receiver<Option<Session>>,
        options: &ClusterOptions,
    ) -> (Self, BaselineHandle) {
        let (topology, _) = watch::channel(Topology {
            baseline: None,
            state: ClusterState::Active,
        });
        let handle = BaselineHandle {
            shared: Arc::new(Shared {
                store,
                coordinator,
                runtime_id: options.runtime_id.clone(),
                data_dir: options.data_dir.clone(),
                initial_baseline: options.initial_baseline.clone(),
                topology,
            }),
        };
        let service = Self {
            handle: handle.clone(),
            sessions,
            interval: options.topology_interval,
        };
        (service, handle)
    }

    /// Spawns the refresh loop; it ends when `shutdown` completes. A failed read is logged
    /// and the cached topology kept.
    pub fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> JoinHandle<()> {
        let Self {
            handle,
            mut sessions,
            interval,
        } = self;
        tokio::spawn(async move {
            tokio::pin!(shutdown);
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut watching = true;
            loop {
                tokio::select! {
                    () = &mut shutdown => break,
                    _ = ticker.tick() => {}
                    changed = sessions.changed(), if watching => {
                        // The membership service is gone: keep the last answer.
                        watching = changed.is_ok();
                    }
                }
                if sessions.borrow().is_none() {
                    continue;
                }
                if let Err(error) = handle.refresh().await {
                    tracing::warn!(%error, "cannot read the baseline");
                }
            }
        })
    }
}

/// Today's message for a refusal by [`BaselineHandle::require_active`]: the missing members,
/// or (none missing) an operator's deactivation.
pub fn inactive_message(missing: &[String]) -> String {
    if missing.is_empty() {
        "the cluster is INACTIVE (deactivated by an operator); activate it with dpfctl baseline activate".to_owned()
    } else {
        format!(
            "the cluster is INACTIVE until every baseline member is online; missing: {}",
            missing.join(", ")
        )
    }
}

impl BaselineHandle {
    fn coordinator(&self) -> &dyn Coordinator {
        self.shared.coordinator.as_ref()
    }

    /// Reads the baseline and the cluster state now, records the baseline in the data
    /// directory, and caches them.
    ///
    /// # Errors
    /// Store failures (the cache is then unchanged).
    pub async fn refresh(&self) -> Result<Topology> {
        let baseline = read_baseline(self.coordinator()).await?;
        let (state, _) = read_state(self.coordinator()).await?;
        if let Some((b, _)) = &baseline {
            identity::record_locally(self.coordinator(), &self.shared.data_dir, b).await;
        }
        let topology = Topology { baseline, state };
        self.shared.topology.send_replace(topology.clone());
        Ok(topology)
    }

    /// The topology as of the last refresh.
    pub fn topology(&self) -> Topology {
        self.shared.topology.borrow().clone()
    }

    /// Changes of the cached topology.
    pub fn watch(&self) -> watch::Receiver<Topology> {
        self.shared.topology.subscribe()
    }

    /// Whether the baseline lets this replica own work, from the cached topology: always
    /// without a baseline, else only as a member of an ACTIVE cluster.
    pub fn may_own(&self) -> bool {
        self.shared
            .topology
            .borrow()
            .may_own(&self.shared.runtime_id)
    }

    /// At start: creates the cluster id if there is none, refuses a data directory recorded
    /// for another cluster or for a baseline history this cluster does not have, sets the
    /// configured initial baseline when the cluster has none (INACTIVE until every member is
    /// online), and refreshes the topology.
    ///
    /// # Errors
    /// [`ClusterError::IdentityMismatch`], [`ClusterError::InvalidInput`] (an unreadable
    /// record), store failures.
    pub async fn check_identity(&self) -> Result<()> {
        identity::check(self.coordinator(), &self.shared.data_dir).await?;
        if read_baseline(self.coordinator()).await?.is_none() {
            if let Some(members) = &self.shared.initial_baseline {
                put_initial_baseline(self.coordinator(), members).await;
            }
        }
        self.refresh().await?;
        Ok(())
    }

    /// Refuses new work while the cluster has a baseline and is INACTIVE, naming the baseline
    /// members that are not live (none: an operator deactivated it). The cached view is
    /// re-read before refusing, so an activation is never missed.
    ///
    /// # Errors
    /// [`ClusterError::Inactive`] (see [`inactive_message`] for today's wording), store
    /// failures listing the members.
    pub async fn require_active(&self) -> Result<()> {
        let inactive = |t: &Topology| t.baseline.is_some() && t.state == ClusterState::Inactive;
        if !inactive(&self.shared.topology.borrow()) {
            return Ok(());
        }
        if let Err(error) = self.refresh().await {
            tracing::debug!(%error, "cannot refresh the topology; using the cached view");
        }
        let Topology {
            baseline: Some((baseline, _)),
            state: ClusterState::Inactive,
        } = self.topology()
        else {
            return Ok(());
        };
        let online = live_names(self.shared.store.as_ref()).await?;
        let missing = baseline
            .members
            .iter()
            .filter(|m| !online.contains(*m))
            .cloned()
            .collect();
        Err(ClusterError::Inactive { missing })
    }

    /// `GET /cluster/baseline`.
    ///
    /// # Errors
    /// Store failures.
    pub async fn view(&self) -> Result<BaselineView> {
        let coordinator = self.coordinator();
        let cluster_id = coordinator
            .kv_get(CLUSTER_ID_KEY)
            .await?
            .map(|e| e.value)
            .unwrap_or_default();
        let baseline = read_baseline(coordinator).await?;
        let (state, _) = read_state(coordinator).await?;
        let (auto_adjust, _) = read_auto_adjust(coordinator).await?;
        let live = live_names(self.shared.store.as_ref()).await?;
        let in_baseline = baseline
            .as_ref()
            .map(|(b, _)| b.members.clone())
            .unwrap_or_default();
        Ok(BaselineView {
            cluster_id,
            state: state.as_str(),
            version: baseline.as_ref().map_or(0, |(b, _)| b.version),
            history: baseline.as_ref().map(|(b, _)| b.history.clone()),
            members: in_baseline
                .iter()
                .map(|m| BaselineMember {
                    name: m.clone(),
                    online: live.contains(m),
                })
                .collect(),
            others: live
                .iter()
                .filter(|m| !in_baseline.contains(*m))
                .cloned()
                .collect(),
            auto_adjust,
        })
    }

    /// Changes the baseline: `op` `set` replaces it, `add`/`remove` edit it. Compare-and-set
    /// on `expected_version` when given. Refused on an INACTIVE cluster and when it would drop
    /// an online member. The first baseline set this way leaves the cluster ACTIVE.
    ///
    /// # Errors
    /// [`ClusterError::Conflict`] (inactive cluster, online member, version conflict),
    /// [`ClusterError::InvalidInput`] (blank names, unknown operation, empty baseline).
    pub async fn change(
        &self,
        op: &str,
        names: &[String],
        expected_version: Option<u64>,
    ) -> Result<BaselineView> {
        if names.iter().any(|n| n.trim().is_empty()) {
            return Err(ClusterError::InvalidInput(
                "replica names must not be blank".into(),
            ));
        }
        let coordinator = self.coordinator();
        let (state, _) = read_state(coordinator).await?;
        let current = read_baseline(coordinator).await?;
        if state == ClusterState::Inactive && current.is_some() {
            return Err(ClusterError::Conflict(
                "Changing the baseline of an INACTIVE cluster is not allowed; activate it first (dpfctl baseline activate)".into(),
            ));
        }
        let live = live_names(self.shared.store.as_ref()).await?;
        let before = current
            .as_ref()
            .map(|(b, _)| b.members.clone())
            .unwrap_or_default();
        let names: BTreeSet<String> = names.iter().map(|n| n.trim().to_owned()).collect();
        let after: BTreeSet<String> = match op {
            "set" => names,
            "add" => before.union(&names).cloned().collect(),
            "remove" => before.difference(&names).cloned().collect(),
            other => {
                return Err(ClusterError::InvalidInput(format!(
                    "unknown baseline operation '{other}'"
                )))
            }
        };
        if after.is_empty() {
            return Err(ClusterError::InvalidInput(
                "a baseline needs at least one member".into(),
            ));
        }
        let dropped_online: Vec<&str> = before
            .difference(&after)
            .filter(|m| live.contains(*m))
            .map(String::as_str)
            .collect();
        if !dropped_online.is_empty() {
            return Err(ClusterError::Conflict(format!(
                "Failed to remove {} from the baseline: online members cannot be removed; stop them first",
                dropped_online.join(", ")
            )));
        }
        let current_version = current.as_ref().map_or(0, |(b, _)| b.version);
        if let Some(expected) = expected_version {
            if expected != current_version {
                return Err(ClusterError::Conflict(format!(
                    "baseline version conflict: expected {expected}, the cluster is at {current_version}"
                )));
            }
        }
        match current {
            Some((baseline, version)) => write_next(coordinator, &baseline, version, after).await?,
            None => {
                let first = Baseline::first(after);
                let value = serde_json::to_string(&first).unwrap_or_default();
                coordinator
                    .kv_put(BASELINE_KEY, &value, Expected::Absent, None)
                    .await?;
                let _ = coordinator
                    .kv_put(STATE_KEY, "ACTIVE", Expected::Any, None)
                    .await;
            }
        }
        self.refresh().await?;
        self.view().await
    }

    /// Activates or deactivates the cluster (a deactivation is marked as the operator's, so
    /// the leader does not reactivate it by itself).
    ///
    /// # Errors
    /// Store failures.
    pub async fn set_state(&self, active: bool) -> Result<BaselineView> {
        let value = if active { "ACTIVE" } else { MANUAL_INACTIVE };
        self.coordinator()
            .kv_put(STATE_KEY, value, Expected::Any, None)
            .await?;
        self.refresh().await?;
        self.view().await
    }

    /// Sets auto-adjust.
    ///
    /// # Errors
    /// [`ClusterError::InvalidInput`] for a zero timeout when enabled; store failures.
    pub async fn set_auto_adjust(&self, settings: super::AutoAdjust) -> Result<BaselineView> {
        if settings.enabled && settings.timeout_ms == 0 {
            return Err(ClusterError::InvalidInput(
                "auto-adjust needs a timeout of at least 1 ms".into(),
            ));
        }
        let value = serde_json::to_string(&settings).unwrap_or_default();
        self.coordinator()
            .kv_put(AUTO_ADJUST_KEY, &value, Expected::Any, None)
            .await?;
        self.view().await
    }
}
