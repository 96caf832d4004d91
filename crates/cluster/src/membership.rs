//! The replica's membership: its row in the members table, the lease it renews alone on its
//! task, the heartbeat key bound to its session, and what happens when the membership is lost.
//!
//! [`Membership::new`] gives the service and its [`MembershipHandle`]; the data plane calls
//! [`MembershipHandle::join`], spawns [`Membership::run`], and calls
//! [`MembershipHandle::leave`] after it stopped its transfers. Every time read here is tokio
//! time, so tests can pause and advance it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use dataplane_spi::{
    Coordinator, DataFlowStore, Expected, LoadReport, Member, MemberRegistration, Session,
    StoreError,
};
use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::{ClusterError, ClusterOptions, Result};

/// Keys bound to each replica's session (one per replica, `dpf/heartbeat/<runtime id>`): its
/// value is `{"incarnation": …, "api": <public base url>}`; the key goes when the session dies.
pub const HEARTBEAT_PREFIX: &str = "dpf/heartbeat/";

pub use crate::changes::MemberState;

/// What [`Membership::run`] awaits after the membership was lost (the guard is already
/// invalid) and before it joins again: the data plane stops every transfer of the old
/// incarnation there.
pub type LostHook = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// Self-fencing on the local monotonic (tokio) clock: valid only before the start of the last
/// successful lease write plus 0.9 × the lease. The store counts the lease from when the write
/// reached it, which is never earlier than when it began, so while this says valid nobody else
/// can own this replica's flows (with a tenth of the lease as margin for clock rates). Clones
/// share the same deadline.
#[derive(Clone, Debug)]
pub struct LeaseGuard(Arc<GuardState>);

#[derive(Debug)]
struct GuardState {
    origin: Instant,
    lease: Duration,
    /// Microseconds since `origin` until which the lease is ours; 0 = not valid.
    deadline: AtomicU64,
}

impl LeaseGuard {
    fn micros(&self, at: Instant) -> u64 {
        let elapsed = at.saturating_duration_since(self.0.origin);
        u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
    }

    /// Whether the lease is certainly still this replica's right now. A replica that was
    /// paused past its lease finds out here before writing anything.
    pub fn is_valid(&self) -> bool {
        self.micros(Instant::now()) < self.0.deadline.load(Ordering::Acquire)
    }

    /// Records a successful lease write that began at `began`.
    fn renewed(&self, began: Instant) {
        let until = self.micros(began + self.0.lease.mul_f64(0.9)).max(1);
        self.0.deadline.store(until, Ordering::Release);
    }

    fn invalidate(&self) {
        self.0.deadline.store(0, Ordering::Release);
    }
}

#[derive(Debug)]
struct Shared {
    store: Arc<dyn DataFlowStore>,
    coordinator: Arc<dyn Coordinator>,
    runtime_id: String,
    public_base_url: String,
    lease: Duration,
    renew_interval: Duration,
    incarnation: Mutex<String>,
    reported: Mutex<Option<MemberState>>,
    /// The load report the next renewals write (none until the data plane sets one).
    load: Mutex<Option<LoadReport>>,
    guard: LeaseGuard,
    session: watch::Sender<Option<Session>>,
    lost: watch::Sender<u64>,
    left: AtomicBool,
    renewals: AtomicU64,
    renewal_micros: AtomicU64,
}

/// The membership service: [`Membership::run`] renews the lease alone on its task.
pub struct Membership {
    shared: Arc<Shared>,
    hook: Option<LostHook>,
}

/// Cheap-clone handle of the membership. It exists before joining; its lease is not valid and
/// its session is `None` until [`MembershipHandle::join`] succeeded.
#[derive(Clone, Debug)]
pub struct MembershipHandle {
    shared: Arc<Shared>,
}

/// The value behind `mutex`, also after a panic elsewhere (the values here are always whole).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The store's errors as the membership reports them: a live replica with this name is
/// [`ClusterError::NameInUse`], a lost membership a [`ClusterError::Conflict`].
fn store_error(error: StoreError) -> ClusterError {
    match error {
        StoreError::Conflict(message) => ClusterError::NameInUse(message),
        StoreError::MembershipLost(message) => {
            ClusterError::Conflict(format!("membership lost: {message}"))
        }
        other => other.into(),
    }
}

impl Membership {
    /// The service and its handle for the replica `options.runtime_id`, first as incarnation
    /// `options.incarnation`, with `options.lease` renewed every `options.renew_interval`.
    pub fn new(
        store: Arc<dyn DataFlowStore>,
        coordinator: Arc<dyn Coordinator>,
        options: &ClusterOptions,
    ) -> (Membership, MembershipHandle) {
        let shared = Arc::new(Shared {
            store,
            coordinator,
            runtime_id: options.runtime_id.clone(),
            public_base_url: options.public_base_url.clone(),
            lease: options.lease,
            renew_interval: options.renew_interval,
            incarnation: Mutex::new(options.incarnation.clone()),
            reported: Mutex::new(None),
            load: Mutex::new(None),
            guard: LeaseGuard(Arc::new(GuardState {
                origin: Instant::now(),
                lease: options.lease,
                deadline: AtomicU64::new(0),
            })),
            session: watch::channel(None).0,
            lost: watch::channel(0).0,
            left: AtomicBool::new(false),
            renewals: AtomicU64::new(0),
            renewal_micros: AtomicU64::new(0),
        });
        let handle = MembershipHandle {
            shared: shared.clone(),
        };
        (Membership { shared, hook: None }, handle)
    }

    /// Sets the hook [`Membership::run`] awaits after losing the membership, before re-joining.
    #[must_use]
    pub fn on_lost(mut self, hook: LostHook) -> Self {
        self.hook = Some(hook);
        self
    }

    /// The renewal loop, alone on its task: every `renew_interval` renews the lease (joins
    /// first when not joined yet). On [`StoreError::MembershipLost`] it invalidates the guard,
    /// publishes `None` on the session watch, bumps the `lost` counter, awaits the hook, takes
    /// a fresh incarnation and joins again (retried every interval until it succeeds). Other
    /// failures are logged and retried next interval (the guard simply expires meanwhile).
    /// Returns when `shutdown` becomes true or its sender is dropped, without leaving; after
    /// [`MembershipHandle::leave`] it idles until the next `join` or shutdown.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let handle = MembershipHandle {
            shared: self.shared,
        };
        loop {
            if *shutdown.borrow_and_update() {
                return;
            }
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    continue;
                }
                () = tokio::time::sleep(handle.shared.renew_interval) => {}
            }
            if handle.shared.left.load(Ordering::Acquire) {
                continue;
            }
            if handle.shared.session.borrow().is_none() {
                if let Err(error) = handle.join().await {
                    tracing::warn!(%error, "joining the cluster failed; retrying");
                }
                continue;
            }
            match handle.renew().await {
                Ok(()) => {}
                // Not lost but left when `leave` removed the row during this renewal.
                Err(StoreError::MembershipLost(message))
                    if !handle.shared.left.load(Ordering::Acquire) =>
                {
                    tracing::error!(%message, "membership lost; stopping every local transfer");
                    handle.mark_lost();
                    if let Some(hook) = &self.hook {
                        hook().await;
                    }
                    *lock(&handle.shared.incarnation) = uuid::Uuid::new_v4().to_string();
                    if let Err(error) = handle.join().await {
                        tracing::warn!(%error, "re-joining the cluster failed; retrying");
                    }
                }
                Err(error) => tracing::error!(%error, "lease renewal failed"),
            }
        }
    }
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hook = self.hook.is_some();
        f.debug_struct("Membership")
            .field("hook", &hook)
            .finish_non_exhaustive()
    }
}

impl MembershipHandle {
    /// The replica's stable name.
    pub fn runtime_id(&self) -> &str {
        &self.shared.runtime_id
    }

    /// The current incarnation (a fresh one after every loss of the membership).
    pub fn incarnation(&self) -> String {
        lock(&self.shared.incarnation).clone()
    }

    /// The session while joined with a valid lease; `None` before joining, after a loss and
    /// while the lease is not confirmed.
    pub fn current_session(&self) -> Option<Session> {
        let session = self.shared.session.borrow().clone();
        session.filter(|_| self.lease_valid())
    }

    /// The session as it changes: `None` before joining and from the moment the membership is
    /// lost (or left) until it is joined again.
    pub fn session_watch(&self) -> watch::Receiver<Option<Session>> {
        self.shared.session.subscribe()
    }

    /// The lease guard (clones share its deadline).
    pub fn guard(&self) -> LeaseGuard {
        self.shared.guard.clone()
    }

    /// Whether the lease is certainly still ours (see [`LeaseGuard::is_valid`]).
    pub fn lease_valid(&self) -> bool {
        self.shared.guard.is_valid()
    }

    /// A generation counter bumped every time the membership is lost.
    pub fn lost(&self) -> watch::Receiver<u64> {
        self.shared.lost.subscribe()
    }

    /// Successful lease renewals so far.
    pub fn renewals(&self) -> u64 {
        self.shared.renewals.load(Ordering::Relaxed)
    }

    /// Total duration of the successful renewals, in microseconds.
    pub fn renewal_micros(&self) -> u64 {
        self.shared.renewal_micros.load(Ordering::Relaxed)
    }

    /// The lifecycle state last published (`None` when unknown: not joined, or the last
    /// publication failed).
    pub fn reported_state(&self) -> Option<MemberState> {
        *lock(&self.shared.reported)
    }

    /// Registers the current incarnation (state `INITIALIZING`) and writes the heartbeat key
    /// bound to its session. The guard is valid from the time the registration began plus
    /// 0.9 × the lease; the session watch then shows the session.
    ///
    /// # Errors
    /// [`ClusterError::NameInUse`] when a live incarnation already uses the name; store
    /// failures. A heartbeat key that cannot be written is only logged.
    pub async fn join(&self) -> Result<()> {
        let shared = &self.shared;
        let incarnation = self.incarnation();
        let registration = MemberRegistration {
            runtime_id: shared.runtime_id.clone(),
            incarnation: incarnation.clone(),
            lease_ms: i64::try_from(shared.lease.as_millis()).unwrap_or(i64::MAX),
            state: MemberState::Initializing.as_str().into(),
        };
        let began = Instant::now();
        shared
            .store
            .register_member(&registration)
            .await
            .map_err(store_error)?;
        shared.guard.renewed(began);
        shared.left.store(false, Ordering::Release);
        let session = Session {
            runtime_id: shared.runtime_id.clone(),
            incarnation: incarnation.clone(),
        };
        // Watchers of `dpf/heartbeat/` see the replica come and, once its session dies, go.
        let heartbeat = format!("{HEARTBEAT_PREFIX}{}", shared.runtime_id);
        let value = serde_json::json!({"incarnation": incarnation, "api": shared.public_base_url})
            .to_string();
        if let Err(error) = shared
            .coordinator
            .kv_put(&heartbeat, &value, Expected::Any, Some(&session))
            .await
        {
            tracing::warn!(%error, "heartbeat key not written");
        }
        *lock(&shared.reported) = Some(MemberState::Initializing);
        shared.session.send_replace(Some(session));
        tracing::info!(runtime_id = %shared.runtime_id, %incarnation, "joined the cluster");
        Ok(())
    }

    /// One renewal; the guard moves only on success.
    async fn renew(&self) -> std::result::Result<(), StoreError> {
        let shared = &self.shared;
        let began = Instant::now();
        let lease_ms = i64::try_from(shared.lease.as_millis()).unwrap_or(i64::MAX);
        let incarnation = self.incarnation();
        // The lock is released at the end of this statement, before any await.
        let load = lock(&shared.load).clone();
        let reported = match &load {
            Some(report) => {
                shared
                    .coordinator
                    .renew_member_reporting(&shared.runtime_id, &incarnation, lease_ms, report)
                    .await?
            }
            None => None,
        };
        if reported.is_none() {
            shared
                .store
                .renew_member(&shared.runtime_id, &incarnation, lease_ms)
                .await?;
        }
        shared.guard.renewed(began);
        shared.renewals.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
        shared.renewal_micros.fetch_add(micros, Ordering::Relaxed);
        Ok(())
    }

    /// Sets the load report every following renewal writes with the lease (same statement):
    /// a cheap in-memory update, nothing is written here.
    pub fn set_load(&self, report: LoadReport) {
        *lock(&self.shared.load) = Some(report);
    }

    /// Changes part of the load report (starting from an empty one), e.g. the running
    /// transfers while keeping the endpoint and profiles.
    pub fn update_load(&self, change: impl FnOnce(&mut LoadReport)) {
        change(lock(&self.shared.load).get_or_insert_with(LoadReport::default));
    }

    /// The load report the next renewal writes, if any.
    pub fn load(&self) -> Option<LoadReport> {
        lock(&self.shared.load).clone()
    }

    /// Invalidates the guard, publishes `None`, bumps `lost`.
    fn mark_lost(&self) {
        self.shared.guard.invalidate();
        self.shared.session.send_replace(None);
        self.shared.lost.send_modify(|generation| *generation += 1);
    }

    /// Publishes the lifecycle state when it changed since the last publication (one
    /// statement, only then); a failure is logged and the next call publishes again.
    pub async fn report_state(&self, state: MemberState) {
        // The lock is released at the end of this statement, before any await.
        if lock(&self.shared.reported).replace(state) == Some(state) {
            return;
        }
        match self
            .shared
            .store
            .set_member_state(&self.shared.runtime_id, &self.incarnation(), state.as_str())
            .await
        {
            Ok(()) => tracing::info!(state = state.as_str(), "member state"),
            Err(error) => {
                tracing::debug!(%error, "member state not published");
                *lock(&self.shared.reported) = None;
            }
        }
    }

    /// Leaves the cluster: publishes `STOPPING`, removes the member row and releases its flows
    /// in one step; returns how many flows were released. Afterwards the guard is invalid, the
    /// session watch shows `None` and [`Membership::run`] neither renews nor re-joins (until
    /// [`MembershipHandle::join`] is called again).
    ///
    /// # Errors
    /// [`ClusterError::Conflict`] when the membership was already lost; store failures.
    pub async fn leave(&self) -> Result<u64> {
        self.shared.left.store(true, Ordering::Release);
        self.report_state(MemberState::Stopping).await;
        let removed = self
            .shared
            .store
            .remove_member(&self.shared.runtime_id, &self.incarnation())
            .await;
        self.shared.guard.invalidate();
        self.shared.session.send_replace(None);
        let released = removed.map_err(store_error)?;
        tracing::info!(released, "left the cluster; owned flows released");
        Ok(released)
    }

    /// Members whose lease is valid by the store's clock, sorted by name.
    ///
    /// # Errors
    /// Store failures.
    pub async fn live_members(&self) -> Result<Vec<Member>> {
        crate::changes::live_members(self.shared.store.as_ref()).await
    }
}
