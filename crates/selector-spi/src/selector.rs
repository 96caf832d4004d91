use std::fmt::Debug;

use async_trait::async_trait;

use crate::{DataPlaneInstance, DataPlaneRegistration, SelectionRequest, SelectorResult};

/// The selector's use cases, the same whether called in process (SPI) or through the REST API.
#[async_trait]
pub trait DataPlaneSelector: Send + Sync + Debug {
    /// Selects the best-fitting instance for `request` with the strategy it names (or the
    /// default), and records the selection (turn count, last active).
    ///
    /// # Errors
    /// [`crate::SelectorError::InvalidInput`] for a bad request,
    /// [`crate::SelectorError::UnknownStrategy`], [`crate::SelectorError::NoMatch`] when no
    /// instance can handle it.
    async fn select(&self, request: &SelectionRequest) -> SelectorResult<DataPlaneInstance>;

    /// Adds a new instance (create only).
    ///
    /// # Errors
    /// [`crate::SelectorError::InvalidInput`], [`crate::SelectorError::AlreadyExists`].
    async fn add(&self, registration: &DataPlaneRegistration) -> SelectorResult<DataPlaneInstance>;

    /// Creates or replaces an instance (DPS registration). Returns it and whether it was new.
    ///
    /// # Errors
    /// [`crate::SelectorError::InvalidInput`].
    async fn register(
        &self,
        registration: &DataPlaneRegistration,
    ) -> SelectorResult<(DataPlaneInstance, bool)>;

    /// The instance with this id.
    ///
    /// # Errors
    /// [`crate::SelectorError::NotFound`].
    async fn get(&self, id: &str) -> SelectorResult<DataPlaneInstance>;

    /// Every instance, sorted by id.
    ///
    /// # Errors
    /// Backend failures only.
    async fn list(&self) -> SelectorResult<Vec<DataPlaneInstance>>;

    /// Removes an instance.
    ///
    /// # Errors
    /// [`crate::SelectorError::NotFound`].
    async fn remove(&self, id: &str) -> SelectorResult<()>;

    /// Names of the registered strategies, sorted, and the default's name.
    fn strategies(&self) -> (Vec<String>, String);
}

/// Narrows the instances a selector may offer, from outside the selector (e.g. a cluster's
/// baseline topology: only replicas that own work are offered).
#[async_trait]
pub trait CandidateFilter: Send + Sync + Debug {
    /// The ids that may be selected now; `None` for no restriction.
    async fn allowed(&self) -> Option<std::collections::BTreeSet<String>>;
}
