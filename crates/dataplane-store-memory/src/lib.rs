//! [`MemoryStore`]: the in-memory twin of `dataplane_store_sql::SqlStore`. Flows, members, the
//! key-value store and leader election live in process memory, for a single replica, tests and
//! demos. Its clock ([`MemoryStore::now`]) is the wall-clock time at creation advanced by tokio
//! time, which is sound because nothing is shared, and lets a test that pauses and advances
//! tokio time (`tokio::time::pause`, `advance`) expire leases without sleeping.
//!
//! It implements [`dataplane_spi::DataFlowStore`] and [`dataplane_spi::Coordinator`] and passes
//! their conformance suites (`dataplane_spi::conformance`). The logic is split by contract:
//! `flows` (the [`DataFlowStore`](dataplane_spi::DataFlowStore) implementation and ownership),
//! `members` (registration, renewal, sessions), `kv` (compare-and-set, events, compaction) and
//! `leader` (campaigns, terms and leader duties); `coordinator` wires the last two into
//! [`Coordinator`](dataplane_spi::Coordinator).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use dataplane_spi::{
    CoordinationError, CoordinationResult, DataFlow, KvEntry, KvEvent, Leader, Member, StoreError,
    StoreResult,
};

mod coordinator;
mod flows;
mod kv;
mod leader;
mod members;

/// In-memory [`DataFlowStore`](dataplane_spi::DataFlowStore) and
/// [`Coordinator`](dataplane_spi::Coordinator). Clones share the same state and clock.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    clock: Clock,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self {
            state: Arc::default(),
            clock: Clock::start(),
        }
    }
}

/// Wall-clock time at the start plus the tokio time elapsed since: monotonic, and it follows a
/// paused and advanced tokio clock in tests.
#[derive(Debug, Clone, Copy)]
struct Clock {
    origin: DateTime<Utc>,
    started: tokio::time::Instant,
}

impl Clock {
    fn start() -> Self {
        Self {
            origin: Utc::now(),
            started: tokio::time::Instant::now(),
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.origin + chrono::Duration::from_std(self.started.elapsed()).unwrap_or_default()
    }
}

#[derive(Debug, Default)]
struct State {
    flows: BTreeMap<String, DataFlow>,
    members: BTreeMap<String, Member>,
    kv: BTreeMap<String, KvEntry>,
    events: Vec<KvEvent>,
    revision: i64,
    compacted: i64,
    leader: Option<Leader>,
    config_revisions: BTreeMap<String, i64>,
    /// Each member's last load report and when it was written.
    loads: BTreeMap<String, (dataplane_spi::LoadReport, DateTime<Utc>)>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The store's clock: the wall-clock time at [`Self::new`] advanced by tokio time since.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Runs `f` on the state under the lock, with the store clock's now.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut State, DateTime<Utc>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let mut guard = self
            .state
            .lock()
            .map_err(|_| StoreError::Internal("in-memory store lock poisoned".into()))?;
        f(&mut guard, self.clock.now())
    }

    /// [`Self::with`] for the coordination calls and their error type.
    fn coordinate<T>(
        &self,
        f: impl FnOnce(&mut State, DateTime<Utc>) -> CoordinationResult<T>,
    ) -> CoordinationResult<T> {
        let mut guard = self
            .state
            .lock()
            .map_err(|_| CoordinationError::Internal("in-memory store lock poisoned".into()))?;
        f(&mut guard, self.clock.now())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test suite: a failed unwrap is a failed case
mod conformance_tests {
    use std::sync::Arc;

    async fn fresh() -> Arc<dyn dataplane_spi::DataFlowStore> {
        Arc::new(super::MemoryStore::new())
    }

    dataplane_spi::data_flow_store_conformance!(fresh());

    mod coordinator {
        async fn fresh() -> std::sync::Arc<super::super::MemoryStore> {
            std::sync::Arc::new(super::super::MemoryStore::new())
        }

        dataplane_spi::coordinator_conformance!(fresh());
    }
}
