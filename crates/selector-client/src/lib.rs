//! One client handle to the dpf data-plane selector, whether it runs in the same process or
//! behind its REST API.
//!
//! - [`SelectorClient`]: the trait callers program against.
//! - [`LocalSelectorClient`]: calls an in-process [`DataPlaneSelector`] (embedded selector).
//! - [`RemoteSelectorClient`]: calls a standalone selector over HTTP with reqwest, translating
//!   its JSON errors back into the same [`SelectorError`] variants, so a caller cannot tell the
//!   two apart.
//!
//! Both may carry a default strategy name, used when a request does not name one.

mod local;
mod remote;

use std::fmt::Debug;

use async_trait::async_trait;
use selector_spi::{DataPlaneInstance, DataPlaneRegistration, SelectionRequest, SelectorResult};

pub use local::LocalSelectorClient;
pub use remote::{RemoteSelectorClient, RemoteSelectorClientConfig};
pub use selector_spi::{DataPlaneSelector, SelectorError};

/// The selector's use cases as seen by a caller (a control plane, a data plane registering
/// itself, `dpfctl`).
#[async_trait]
pub trait SelectorClient: Send + Sync + Debug {
    /// Selects an instance for `request` (see [`DataPlaneSelector::select`]).
    ///
    /// # Errors
    /// As [`DataPlaneSelector::select`], plus [`SelectorError::Unavailable`] when the selector
    /// cannot be reached.
    async fn select(&self, request: &SelectionRequest) -> SelectorResult<DataPlaneInstance>;

    /// Creates an instance; [`SelectorError::AlreadyExists`] when the id is taken.
    ///
    /// # Errors
    /// As [`DataPlaneSelector::add`].
    async fn add(&self, registration: &DataPlaneRegistration) -> SelectorResult<DataPlaneInstance>;

    /// Creates or replaces an instance (DPS registration).
    ///
    /// # Errors
    /// As [`DataPlaneSelector::register`].
    async fn register(
        &self,
        registration: &DataPlaneRegistration,
    ) -> SelectorResult<DataPlaneInstance>;

    /// One instance.
    ///
    /// # Errors
    /// [`SelectorError::NotFound`].
    async fn get(&self, id: &str) -> SelectorResult<DataPlaneInstance>;

    /// Every instance, sorted by id.
    ///
    /// # Errors
    /// Transport or store failures.
    async fn list(&self) -> SelectorResult<Vec<DataPlaneInstance>>;

    /// Removes an instance.
    ///
    /// # Errors
    /// [`SelectorError::NotFound`].
    async fn remove(&self, id: &str) -> SelectorResult<()>;

    /// Names of the registered strategies, sorted.
    ///
    /// # Errors
    /// Transport failures.
    async fn strategies(&self) -> SelectorResult<Vec<String>>;
}

/// Applies a client's default strategy to a request that names none.
fn with_default_strategy(request: &SelectionRequest, strategy: Option<&str>) -> SelectionRequest {
    let mut request = request.clone();
    if request.strategy.is_none() {
        request.strategy = strategy.map(str::to_owned);
    }
    request
}
