use std::fmt::Debug;

use async_trait::async_trait;

use crate::{
    DataPlaneId, DataPlaneInstance, DataPlaneInstanceStore, SelectionRequest, SelectorResult,
};

/// What a strategy may consult besides the candidates: shared state kept in the store, so
/// that several selector processes on one database agree (e.g. the round-robin position).
#[derive(Debug, Clone, Copy)]
pub struct SelectionContext<'a> {
    store: &'a dyn DataPlaneInstanceStore,
}

impl<'a> SelectionContext<'a> {
    /// A context backed by `store`.
    pub fn new(store: &'a dyn DataPlaneInstanceStore) -> Self {
        Self { store }
    }

    /// The store, for strategies that need more than sequences.
    pub fn store(&self) -> &'a dyn DataPlaneInstanceStore {
        self.store
    }

    /// Atomically returns the next value (0, 1, 2, ...) of the named shared sequence.
    ///
    /// # Errors
    /// Whatever the store reports, e.g. [`crate::SelectorError::Unavailable`].
    pub async fn next_in_sequence(&self, name: &str) -> SelectorResult<u64> {
        self.store.next_sequence(name).await
    }
}

/// Chooses one instance among candidates that can all handle the request.
///
/// Register implementations in a [`crate::StrategyRegistry`] under a unique [`name`]
/// (`SelectionStrategy::name`); callers then pick them by name.
///
/// [`name`]: SelectionStrategy::name
#[async_trait]
pub trait SelectionStrategy: Send + Sync + Debug {
    /// Unique name used to select this strategy (e.g. `round-robin`).
    fn name(&self) -> &str;

    /// Picks one of `candidates` (never empty; sorted by id), or `None` to decline, which the
    /// selector reports as "no data plane can handle …".
    ///
    /// # Errors
    /// Store failures while reading shared state.
    async fn select(
        &self,
        candidates: &[DataPlaneInstance],
        request: &SelectionRequest,
        context: SelectionContext<'_>,
    ) -> SelectorResult<Option<DataPlaneId>>;
}
