//! The [`DataPlane`] of one replica: its state, its constructor and accessors, and
//! [`DataPlane::run`], which joins the cluster and spawns the replica's background tasks (the
//! cluster services of the `cluster` crate and the ownership loop).
//!
//! The operations live next door, as further `impl DataPlane` blocks: the DPS operations in
//! `signaling`, pull and ingest in `access`, views in `view`, claims and takeovers in
//! `ownership`, readiness in `health`, metrics in `metrics`.

use std::sync::Arc;

use cluster::baseline::{AutoAdjustDuty, BaselineHandle, BaselineService};
use cluster::kv::Kv;
use cluster::leadership::{Housekeeping, Leadership, LeadershipHandle, Reaper};
use cluster::live_config::{ConfigWatcher, LiveSettings};
use cluster::membership::{MemberState, Membership, MembershipHandle};
use dataplane_spi::{Coordinator, DataFlowStore, Leader, Member, TransferRegistry};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::callbacks::CallbackDispatcher;
use crate::metrics::Metrics;
use crate::runner::Runner;
use crate::{ControlPlaneRegistry, DataPlaneConfig, DataPlaneError, DatasetRegistry};

type Result<T> = std::result::Result<T, DataPlaneError>;

/// One replica of the data plane: the DPS operations, the views, and the handles of its
/// cluster services.
#[derive(Debug)]
pub struct DataPlane {
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    pub(crate) store: Arc<dyn DataFlowStore>,
    /// The cluster key-value store (over the coordinator).
    pub(crate) kv: Kv,
    /// The settings applied now: the configuration, overridden live by `dpf/config/…`.
    pub(crate) live: Arc<LiveSettings>,
    pub(crate) membership: MembershipHandle,
    pub(crate) leadership: LeadershipHandle,
    pub(crate) baseline: BaselineHandle,
    pub(crate) transfers: TransferRegistry,
    pub(crate) datasets: Arc<DatasetRegistry>,
    pub(crate) control_planes: Arc<ControlPlaneRegistry>,
    pub(crate) callbacks: CallbackDispatcher,
    pub(crate) config: DataPlaneConfig,
    /// What runs here for each flow (transfer tasks, pull streams, their progress and gates).
    pub(crate) runner: Arc<Runner>,
    /// Staging sinks of consumer-push flows between their uploads.
    pub(crate) staged: crate::staged_ingest::StagedSinks,
}

/// The cluster services of a [`DataPlane`] between [`DataPlane::new`] and [`DataPlane::run`],
/// which starts them (their handles are in the plane from the start).
#[derive(Debug)]
pub struct DataPlaneServices {
    membership: Membership,
    leadership: Leadership,
    config_watcher: ConfigWatcher,
    baseline: BaselineService,
}

/// A stop signal and the task it stops.
#[derive(Debug)]
struct Task {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Task {
    fn spawn<F>(run: impl FnOnce(watch::Receiver<bool>) -> F) -> Self
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let (stop, stopped) = watch::channel(false);
        Self {
            stop,
            task: tokio::spawn(run(stopped)),
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(error) = self.task.await {
            tracing::warn!(%error, "a background task of the data plane failed");
        }
    }
}

/// The running background tasks of a [`DataPlane`] (see [`DataPlane::run`]).
#[derive(Debug)]
pub struct DataPlaneHandle {
    plane: Arc<DataPlane>,
    ownership: Task,
    leadership: Task,
    /// Membership renewal, configuration watcher, baseline refresh.
    services: Vec<Task>,
}

impl DataPlaneHandle {
    /// Stops claiming, publishes `STOPPING`, stops local transfers, resigns a leadership it
    /// holds, leaves the cluster (releasing owned flows so peers take them at once) and waits
    /// for all of it.
    pub async fn shutdown(self) {
        let Self {
            plane,
            ownership,
            leadership,
            services,
        } = self;
        ownership.stop().await;
        plane.membership.report_state(MemberState::Stopping).await;
        plane.stop_all().await;
        leadership.stop().await;
        if let Err(error) = plane.membership.leave().await {
            tracing::warn!(%error, "could not leave the cluster cleanly");
        }
        for task in services {
            task.stop().await;
        }
    }
}

impl DataPlane {
    /// A data plane over `store`, moving data with `transfers`, and its cluster services (not
    /// running yet: see [`DataPlane::run`]).
    pub fn new(
        store: Arc<dyn DataFlowStore>,
        coordinator: Arc<dyn Coordinator>,
        transfers: TransferRegistry,
        datasets: Arc<DatasetRegistry>,
        control_planes: Arc<ControlPlaneRegistry>,
        callbacks: CallbackDispatcher,
        config: DataPlaneConfig,
    ) -> (Arc<Self>, DataPlaneServices) {
        control_planes.set_policy(config.address_policy.clone());
        // The registries live in the cluster's key-value store: any replica serves any dataset
        // and calls back any control plane.
        datasets.share(coordinator.clone());
        control_planes.share(coordinator.clone());
        // dpf.transfer.max-bytes: no source yields more than the cap to any flow.
        let transfers = match config.max_bytes {
            Some(max) => transfers.wrap_sources(|factory| {
                Arc::new(crate::limits::CappedSourceFactory::new(factory, max))
            }),
            None => transfers,
        };
        datasets.use_transfers(transfers.clone());
        let (options, defaults) = config.cluster_settings();
        let live = Arc::new(LiveSettings::new(defaults));
        let (membership, membership_handle) =
            Membership::new(store.clone(), coordinator.clone(), &options);
        let sessions = membership_handle.session_watch();
        let (leadership, leadership_handle) =
            Leadership::new(coordinator.clone(), sessions.clone(), &options);
        let leadership = leadership
            .with_duty(Arc::new(Reaper::new(
                store.clone(),
                coordinator.clone(),
                &options,
            )))
            .with_duty(Arc::new(Housekeeping::new(coordinator.clone(), &options)))
            .with_duty(Arc::new(AutoAdjustDuty::new(
                store.clone(),
                coordinator.clone(),
                &options,
            )))
            .with_duty(Arc::new(crate::janitor::UploadJanitor::new(
                store.clone(),
                transfers.clone(),
                options.housekeeping_interval,
            )));
        let config_watcher = ConfigWatcher::new(
            coordinator.clone(),
            live.clone(),
            sessions.clone(),
            options.topology_interval,
        );
        let (baseline, baseline_handle) =
            BaselineService::new(store.clone(), coordinator.clone(), sessions, &options);
        let plane = Arc::new(Self {
            metrics: Metrics::default(),
            store,
            kv: Kv::new(coordinator),
            live,
            membership: membership_handle,
            leadership: leadership_handle,
            baseline: baseline_handle,
            transfers,
            datasets,
            control_planes,
            callbacks,
            runner: Runner::new(),
            staged: crate::staged_ingest::StagedSinks::default(),
            config,
        });
        let services = DataPlaneServices {
            membership,
            leadership,
            config_watcher,
            baseline,
        };
        (plane, services)
    }

    /// The configuration.
    pub fn config(&self) -> &DataPlaneConfig {
        &self.config
    }

    /// The cluster key-value store.
    pub fn kv(&self) -> &Kv {
        &self.kv
    }

    /// This replica's membership (lease, session, published state).
    pub fn membership(&self) -> &MembershipHandle {
        &self.membership
    }

    /// Who leads the cluster, as this replica's campaigns saw it.
    pub fn leadership(&self) -> &LeadershipHandle {
        &self.leadership
    }

    /// The baseline topology and the operator's baseline commands.
    pub fn baseline(&self) -> &BaselineHandle {
        &self.baseline
    }

    /// The settings this replica applies now (its configuration, overridden live by the
    /// cluster's `dpf/config/…` keys).
    pub fn live(&self) -> &Arc<LiveSettings> {
        &self.live
    }

    /// Transfers running here now.
    pub fn running_transfers(&self) -> usize {
        self.runner.running()
    }

    /// Flows with a local entry in this replica's runner (a running transfer task or open pull
    /// streams): for tests and metrics. Zero when nothing runs, however many flows ran before.
    pub fn runner_len(&self) -> usize {
        self.runner.len()
    }

    /// The dataset registry.
    pub fn datasets(&self) -> &Arc<DatasetRegistry> {
        &self.datasets
    }

    /// The control-plane registry.
    pub fn control_planes(&self) -> &Arc<ControlPlaneRegistry> {
        &self.control_planes
    }

    /// The transfer registry.
    pub fn transfers(&self) -> &TransferRegistry {
        &self.transfers
    }

    /// Address types the data plane can read and write.
    pub fn known_types(&self) -> Vec<String> {
        let mut types = self.transfers.source_types();
        types.extend(self.transfers.sink_types());
        types.sort();
        types.dedup();
        types
    }

    pub(crate) fn me(&self) -> &str {
        &self.config.runtime_id
    }

    /// Whether this replica's lease is certainly still valid (monotonic clock). A replica that
    /// was paused (SIGSTOP) past its lease finds out here before writing anything.
    pub fn lease_valid(&self) -> bool {
        self.membership.lease_valid()
    }

    /// The leader as of this replica's last campaign.
    pub fn known_leader(&self) -> Option<Leader> {
        self.leadership.known_leader()
    }

    /// The leader as the coordinator knows it now (`None` while no replica leads).
    ///
    /// # Errors
    /// Store failures.
    pub async fn current_leader(&self) -> Result<Option<Leader>> {
        Ok(self.kv.coordinator().leader().await?)
    }

    /// Members whose lease is valid, by name, as the store's clock sees them.
    ///
    /// # Errors
    /// Store failures.
    pub async fn live_members(&self) -> Result<Vec<Member>> {
        Ok(self.membership.live_members().await?)
    }

    /// The configuration revision each member applied last (by name; members that never
    /// published one are missing).
    ///
    /// # Errors
    /// Store failures.
    pub async fn config_revisions(&self) -> Result<Vec<(String, i64)>> {
        Ok(self.kv.coordinator().config_revisions().await?)
    }

    /// The changes of the live members after `known` (what the caller already listed),
    /// compared every `interval`: see [`cluster::changes::member_changes_after`].
    pub fn member_changes_after(
        &self,
        interval: std::time::Duration,
        known: Vec<Member>,
    ) -> impl futures::Stream<Item = cluster::Result<cluster::changes::MemberChange>> + Send + 'static
    {
        cluster::changes::member_changes_after(self.store.clone(), interval, known)
    }

    /// Refuses new work while the cluster is INACTIVE (`Unavailable`, naming the missing
    /// baseline members).
    pub(crate) async fn require_active(&self) -> Result<()> {
        Ok(self.baseline.require_active().await?)
    }

    /// Joins the cluster, checks the replica's identity (leaving again when it does not
    /// belong), and spawns the replica's background tasks until the handle is shut down: the
    /// membership renewal (which stops every local transfer when the membership is lost), the
    /// leader campaign with its duties (reaping, housekeeping, baseline auto-adjust, aborting the
    /// staged uploads of terminated flows), the
    /// configuration watcher, the baseline refresh, and the ownership loop (claims of unowned
    /// flows, takeovers of flows whose owner died, finishing SUSPENDING/TERMINATING flows this
    /// replica owns).
    ///
    /// # Errors
    /// [`DataPlaneError::Conflict`] when a live replica already uses this runtime id or the
    /// data directory belongs to another cluster; store failures.
    pub async fn run(self: &Arc<Self>, services: DataPlaneServices) -> Result<DataPlaneHandle> {
        let DataPlaneServices {
            membership,
            leadership,
            config_watcher,
            baseline,
        } = services;
        self.membership.join().await?;
        if let Err(error) = self.baseline.check_identity().await {
            // Leave at once so the name is free for a corrected start.
            if let Err(left) = self.membership.leave().await {
                tracing::debug!(error = %left, "could not leave after the identity check");
            }
            return Err(error.into());
        }
        let plane = self.clone();
        let membership = membership.on_lost(Arc::new(move || {
            let plane = plane.clone();
            Box::pin(async move { plane.stop_all().await })
        }));
        let services = vec![
            Task::spawn(|stopped| membership.run(stopped)),
            Task::spawn(|stopped| config_watcher.run(stopped)),
            Task::spawn(|mut stopped| {
                let refresh = baseline.run(async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                });
                async move {
                    if let Err(error) = refresh.await {
                        tracing::warn!(%error, "the baseline refresh failed");
                    }
                }
            }),
        ];
        let leadership = Task::spawn(|stopped| leadership.run(stopped));
        let plane = self.clone();
        let ownership = Task::spawn(|stopped| plane.ownership_loop(stopped));
        Ok(DataPlaneHandle {
            plane: self.clone(),
            ownership,
            leadership,
            services,
        })
    }
}
