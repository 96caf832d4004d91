use std::fmt::Debug;

use async_trait::async_trait;

use crate::{DataPlaneInstance, DataPlaneRegistration, InstanceState, SelectorResult};

/// Name of the shared sequence used by the round-robin strategy.
pub const ROUND_ROBIN_SEQUENCE: &str = "round-robin";

/// Persistence of data-plane instances and of the strategies' shared state.
///
/// Implementations: in memory (`selector-core`), SQLite and PostgreSQL
/// (`dataplane-store-sql`). Every timestamp is taken from the store's clock, so that several
/// selector processes sharing one database agree. A shared conformance suite checks every
/// implementation against this contract.
#[async_trait]
pub trait DataPlaneInstanceStore: Send + Sync + Debug {
    /// Creates an instance from a validated registration: turn count 0, never active, state
    /// from the registration or `REGISTERED`.
    ///
    /// # Errors
    /// [`crate::SelectorError::AlreadyExists`] when the id is taken.
    async fn create(
        &self,
        registration: &DataPlaneRegistration,
    ) -> SelectorResult<DataPlaneInstance>;

    /// Creates or replaces the definition of an instance, keeping its turn count, last-active
    /// time and creation time (see [`DataPlaneInstance::apply_registration`]). Returns the
    /// stored instance and whether it was created.
    ///
    /// # Errors
    /// Backend failures only.
    async fn upsert(
        &self,
        registration: &DataPlaneRegistration,
    ) -> SelectorResult<(DataPlaneInstance, bool)>;

    /// The instance with this id, if any.
    ///
    /// # Errors
    /// Backend failures only.
    async fn find(&self, id: &str) -> SelectorResult<Option<DataPlaneInstance>>;

    /// Every instance, sorted by id.
    ///
    /// # Errors
    /// Backend failures only.
    async fn list(&self) -> SelectorResult<Vec<DataPlaneInstance>>;

    /// Deletes an instance.
    ///
    /// # Errors
    /// [`crate::SelectorError::NotFound`] when it does not exist.
    async fn delete(&self, id: &str) -> SelectorResult<()>;

    /// Sets the state of an instance.
    ///
    /// # Errors
    /// [`crate::SelectorError::NotFound`] when it does not exist.
    async fn set_state(&self, id: &str, state: InstanceState) -> SelectorResult<DataPlaneInstance>;

    /// Records that an instance was selected: turn count + 1, last active = store clock, in one
    /// atomic write. Returns the updated instance.
    ///
    /// # Errors
    /// [`crate::SelectorError::NotFound`] when it was deleted meanwhile.
    async fn record_selection(&self, id: &str) -> SelectorResult<DataPlaneInstance>;

    /// Atomically returns the current value of the named sequence (starting at 0) and advances
    /// it by one. Shared by every process using the same store.
    ///
    /// # Errors
    /// Backend failures only.
    async fn next_sequence(&self, name: &str) -> SelectorResult<u64>;
}
