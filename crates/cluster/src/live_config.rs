//! Live configuration: cluster-wide settings kept in the coordinator's key-value store under
//! [`CONFIG_PREFIX`], watched by every replica ([`ConfigWatcher`]) and applied without restart
//! ([`LiveSettings`]).
//!
//! | key | value | effect |
//! |---|---|---|
//! | `dpf/config/dataplane.max-concurrent-flows` | integer ≥ 0 (0 = unlimited) | transfers a replica runs at once; excess flows wait, unowned, for a replica with room |
//! | `dpf/config/checkpoint.bytes` | integer ≥ 0 (0 = no checkpoints) | most bytes between checkpoints |
//! | `dpf/config/checkpoint.interval` | integer > 0 (milliseconds) | most time between checkpoints |
//! | `dpf/config/state-machine.batch-size` | 1 … 1000 | flows claimed per statement |
//! | `dpf/config/selector.strategy` | `random`, `round-robin`, `oldest-next`, `least-loaded` | default selection strategy of selectors on the cluster |

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dataplane_spi::{CoordinationError, Coordinator, KvEventKind, Session};
use tokio::sync::{watch, Mutex};

use crate::ClusterError;

/// Where cluster-wide settings live in the key-value store.
pub const CONFIG_PREFIX: &str = "dpf/config/";
/// Transfers a replica runs at once (0 = unlimited).
pub const MAX_CONCURRENT_FLOWS: &str = "dpf/config/dataplane.max-concurrent-flows";
/// Bytes between checkpoints.
pub const CHECKPOINT_BYTES: &str = "dpf/config/checkpoint.bytes";
/// Milliseconds between checkpoints.
pub const CHECKPOINT_INTERVAL: &str = "dpf/config/checkpoint.interval";
/// Flows claimed per statement.
pub const BATCH_SIZE: &str = "dpf/config/state-machine.batch-size";
/// Default selection strategy.
pub const SELECTOR_STRATEGY: &str = "dpf/config/selector.strategy";

/// Every setting, sorted.
pub const SETTINGS: [&str; 5] = [
    BATCH_SIZE,
    CHECKPOINT_BYTES,
    CHECKPOINT_INTERVAL,
    MAX_CONCURRENT_FLOWS,
    SELECTOR_STRATEGY,
];

/// Most events read per request while catching up.
const EVENTS_PER_READ: usize = 1000;

/// Checks a setting before it is written: the key must be known and the value valid.
///
/// # Errors
/// [`ClusterError::InvalidInput`] saying what is accepted.
pub fn validate_setting(key: &str, value: &str) -> Result<(), ClusterError> {
    let number = || {
        value.trim().parse::<u64>().map_err(|_| {
            ClusterError::InvalidInput(format!("{key} takes a non-negative integer, got '{value}'"))
        })
    };
    match key {
        MAX_CONCURRENT_FLOWS | CHECKPOINT_BYTES => number().map(|_| ()),
        CHECKPOINT_INTERVAL => match number()? {
            0 => Err(ClusterError::InvalidInput(format!(
                "{key} must be at least 1 millisecond"
            ))),
            _ => Ok(()),
        },
        BATCH_SIZE => match number()? {
            1..=1000 => Ok(()),
            _ => Err(ClusterError::InvalidInput(format!(
                "{key} must be between 1 and 1000"
            ))),
        },
        SELECTOR_STRATEGY => match value {
            "random" | "round-robin" | "oldest-next" | "least-loaded" => Ok(()),
            _ => Err(ClusterError::InvalidInput(format!(
                "{key} must be one of random, round-robin, oldest-next, least-loaded; got '{value}'"
            ))),
        },
        _ => Err(ClusterError::InvalidInput(format!(
            "unknown setting '{key}'; settings under {CONFIG_PREFIX}: {}",
            SETTINGS.join(", ")
        ))),
    }
}

/// A replica's own values of the live settings, applied when the cluster sets none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveDefaults {
    /// Transfers to run at once (0 = unlimited).
    pub max_concurrent_flows: u64,
    /// Most bytes between checkpoints (0 = no checkpoints).
    pub checkpoint_bytes: u64,
    /// Most time between checkpoints.
    pub checkpoint_interval: Duration,
    /// Flows per claim statement.
    pub batch_size: usize,
}

impl Default for LiveDefaults {
    /// The data plane's defaults: unlimited transfers, checkpoints every 64 MiB or 5 s, 20
    /// flows per claim.
    fn default() -> Self {
        Self {
            max_concurrent_flows: 0,
            checkpoint_bytes: 64 * 1024 * 1024,
            checkpoint_interval: Duration::from_secs(5),
            batch_size: 20,
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The settings a replica currently applies: its [`LiveDefaults`] until the cluster sets a
/// value, the default again when the cluster's value is deleted. Readable lock-free from any
/// task.
#[derive(Debug)]
pub struct LiveSettings {
    defaults: LiveDefaults,
    max_concurrent: AtomicU64,
    checkpoint_bytes: AtomicU64,
    checkpoint_interval_ms: AtomicU64,
    batch_size: AtomicU64,
    applied_revision: AtomicU64,
    strategy: std::sync::Mutex<Option<String>>,
}

impl LiveSettings {
    /// Settings at `defaults`, no revision applied yet.
    pub fn new(defaults: LiveDefaults) -> Self {
        Self {
            max_concurrent: AtomicU64::new(defaults.max_concurrent_flows),
            checkpoint_bytes: AtomicU64::new(defaults.checkpoint_bytes),
            checkpoint_interval_ms: AtomicU64::new(millis(defaults.checkpoint_interval)),
            batch_size: AtomicU64::new(u64::try_from(defaults.batch_size).unwrap_or(u64::MAX)),
            applied_revision: AtomicU64::new(0),
            strategy: std::sync::Mutex::new(None),
            defaults,
        }
    }

    /// The replica's own values.
    pub fn defaults(&self) -> &LiveDefaults {
        &self.defaults
    }

    /// Applies one setting: `Some(value)` as set in the cluster, `None` (deleted) restores the
    /// default. Values are validated when written; an invalid one restores the default here.
    /// Returns whether `key` is a known setting.
    pub fn apply(&self, key: &str, value: Option<&str>) -> bool {
        let parsed = value.and_then(|v| v.trim().parse::<u64>().ok());
        let defaults = &self.defaults;
        match key {
            MAX_CONCURRENT_FLOWS => self.max_concurrent.store(
                parsed.unwrap_or(defaults.max_concurrent_flows),
                Ordering::Relaxed,
            ),
            CHECKPOINT_BYTES => self.checkpoint_bytes.store(
                parsed.unwrap_or(defaults.checkpoint_bytes),
                Ordering::Relaxed,
            ),
            CHECKPOINT_INTERVAL => self.checkpoint_interval_ms.store(
                parsed
                    .filter(|v| *v > 0)
                    .unwrap_or(millis(defaults.checkpoint_interval)),
                Ordering::Relaxed,
            ),
            BATCH_SIZE => self.batch_size.store(
                parsed
                    .filter(|v| (1..=1000).contains(v))
                    .unwrap_or(u64::try_from(defaults.batch_size).unwrap_or(u64::MAX)),
                Ordering::Relaxed,
            ),
            SELECTOR_STRATEGY => {
                let valid = value.filter(|v| validate_setting(SELECTOR_STRATEGY, v).is_ok());
                if let Ok(mut strategy) = self.strategy.lock() {
                    *strategy = valid.map(str::to_owned);
                }
            }
            _ => return false,
        }
        true
    }

    /// Transfers to run at once (0 = unlimited).
    pub fn max_concurrent(&self) -> u64 {
        self.max_concurrent.load(Ordering::Relaxed)
    }

    /// Most bytes between checkpoints (0 = no checkpoints).
    pub fn checkpoint_bytes(&self) -> u64 {
        self.checkpoint_bytes.load(Ordering::Relaxed)
    }

    /// Most time between checkpoints (never zero unless the default is).
    pub fn checkpoint_interval(&self) -> Duration {
        Duration::from_millis(self.checkpoint_interval_ms.load(Ordering::Relaxed))
    }

    /// Flows per claim statement (at least 1).
    pub fn batch_size(&self) -> usize {
        usize::try_from(self.batch_size.load(Ordering::Relaxed))
            .unwrap_or(20)
            .max(1)
    }

    /// The cluster's default selection strategy, when set.
    pub fn strategy(&self) -> Option<String> {
        self.strategy.lock().ok().and_then(|s| s.clone())
    }

    /// Revision of the last applied configuration (0 = none yet).
    pub fn applied_revision(&self) -> u64 {
        self.applied_revision.load(Ordering::Relaxed)
    }

    /// Records the revision the settings reflect (done by [`ConfigWatcher`]).
    pub fn set_applied_revision(&self, revision: u64) {
        self.applied_revision.store(revision, Ordering::Relaxed);
    }
}

/// Where the watcher stands.
#[derive(Debug, Default)]
struct WatchState {
    /// Revision applied up to; `None` = list everything first.
    revision: Option<i64>,
    /// The values under [`CONFIG_PREFIX`] as applied (absent = default).
    applied: BTreeMap<String, String>,
    /// The session and revision last published.
    published: Option<(Session, i64)>,
}

/// Keeps a [`LiveSettings`] in step with the settings under [`CONFIG_PREFIX`]: a full listing
/// first, then the events after the last applied revision; when those were compacted away, a
/// new listing (settings deleted meanwhile return to their defaults). Publishes the applied
/// revision for the current session whenever it or the session changed.
#[derive(Debug)]
pub struct ConfigWatcher {
    coordinator: Arc<dyn Coordinator>,
    live: Arc<LiveSettings>,
    sessions: watch::Receiver<Option<Session>>,
    interval: Duration,
    state: Mutex<WatchState>,
}

impl ConfigWatcher {
    /// A watcher applying to `live`, publishing for the sessions of `sessions`, every
    /// `interval`. Nothing runs before [`Self::sync_once`] or [`Self::run`].
    pub fn new(
        coordinator: Arc<dyn Coordinator>,
        live: Arc<LiveSettings>,
        sessions: watch::Receiver<Option<Session>>,
        interval: Duration,
    ) -> Self {
        Self {
            coordinator,
            live,
            sessions,
            interval,
            state: Mutex::new(WatchState::default()),
        }
    }

    /// The settings this watcher applies to.
    pub fn live(&self) -> &Arc<LiveSettings> {
        &self.live
    }

    /// Syncs every `interval` (and publishes at once when the session changes) until
    /// `shutdown` turns true or its sender is dropped. Failures are logged and retried.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut sessions = self.sessions.clone();
        let mut sessions_open = true;
        loop {
            if *shutdown.borrow_and_update() {
                return;
            }
            if let Err(error) = self.sync_once().await {
                tracing::warn!(%error, "could not sync the cluster settings");
            }
            tokio::select! {
                biased;
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                changed = sessions.changed(), if sessions_open => {
                    sessions_open = changed.is_ok();
                }
                () = tokio::time::sleep(self.interval) => {}
            }
        }
    }

    /// Applies what changed since the last sync, records the revision in the settings, and
    /// publishes it when a session exists and it was not published for that session yet.
    ///
    /// # Errors
    /// Store failures (nothing is lost: the next sync continues from the last applied
    /// revision) and [`ClusterError::Conflict`] when the session is gone at publication.
    pub async fn sync_once(&self) -> crate::Result<()> {
        let mut state = self.state.lock().await;
        let revision = self.catch_up(&mut state).await?;
        self.live
            .set_applied_revision(u64::try_from(revision).unwrap_or(0));
        let session = self.sessions.borrow().clone();
        if let Some(session) = session {
            if state.published.as_ref() != Some(&(session.clone(), revision)) {
                self.coordinator
                    .publish_config_revision(&session, revision)
                    .await?;
                state.published = Some((session, revision));
            }
        }
        Ok(())
    }

    /// Brings `state` up to date; returns the revision applied.
    async fn catch_up(&self, state: &mut WatchState) -> crate::Result<i64> {
        loop {
            let Some(after) = state.revision else {
                let (entries, revision) = self.coordinator.kv_list(CONFIG_PREFIX).await?;
                let listed: BTreeMap<String, String> =
                    entries.into_iter().map(|e| (e.key, e.value)).collect();
                let keys: Vec<String> =
                    state.applied.keys().chain(listed.keys()).cloned().collect();
                for key in keys {
                    if state.applied.get(&key) != listed.get(&key) {
                        self.apply(&key, listed.get(&key).map(String::as_str));
                    }
                }
                state.applied = listed;
                state.revision = Some(revision);
                return Ok(revision);
            };
            match self
                .coordinator
                .kv_events(CONFIG_PREFIX, after, EVENTS_PER_READ)
                .await
            {
                Ok(events) => {
                    for event in &events {
                        let value = match event.kind {
                            KvEventKind::Put => {
                                state.applied.insert(event.key.clone(), event.value.clone());
                                Some(event.value.as_str())
                            }
                            KvEventKind::Delete => {
                                state.applied.remove(&event.key);
                                None
                            }
                        };
                        self.apply(&event.key, value);
                    }
                    let revision = events.last().map_or(after, |e| e.revision);
                    state.revision = Some(revision);
                    if events.len() < EVENTS_PER_READ {
                        return Ok(revision);
                    }
                }
                Err(CoordinationError::Compacted { .. }) => {
                    tracing::info!(
                        after,
                        "missed compacted setting changes; listing them again"
                    );
                    state.revision = None;
                }
                Err(other) => return Err(other.into()),
            }
        }
    }

    fn apply(&self, key: &str, value: Option<&str>) {
        if self.live.apply(key, value) {
            tracing::info!(%key, value = value.unwrap_or("(default)"), "applied a cluster setting");
        }
    }
}
