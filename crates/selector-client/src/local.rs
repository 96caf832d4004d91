use std::sync::Arc;

use async_trait::async_trait;
use selector_spi::{
    DataPlaneInstance, DataPlaneRegistration, DataPlaneSelector, SelectionRequest, SelectorResult,
};

use crate::{with_default_strategy, SelectorClient};

/// [`SelectorClient`] for a selector embedded in the same process. Like the REST API, it
/// answers instances without credentials ([`DataPlaneInstance::redacted`]).
#[derive(Debug, Clone)]
pub struct LocalSelectorClient {
    selector: Arc<dyn DataPlaneSelector>,
    strategy: Option<String>,
}

impl LocalSelectorClient {
    /// A client calling `selector` directly.
    pub fn new(selector: Arc<dyn DataPlaneSelector>) -> Self {
        Self {
            selector,
            strategy: None,
        }
    }

    /// Uses `strategy` for requests that name none.
    pub fn with_strategy(mut self, strategy: impl Into<String>) -> Self {
        self.strategy = Some(strategy.into());
        self
    }
}

#[async_trait]
impl SelectorClient for LocalSelectorClient {
    async fn select(&self, request: &SelectionRequest) -> SelectorResult<DataPlaneInstance> {
        let request = with_default_strategy(request, self.strategy.as_deref());
        Ok(self.selector.select(&request).await?.redacted())
    }

    async fn add(&self, registration: &DataPlaneRegistration) -> SelectorResult<DataPlaneInstance> {
        Ok(self.selector.add(registration).await?.redacted())
    }

    async fn register(
        &self,
        registration: &DataPlaneRegistration,
    ) -> SelectorResult<DataPlaneInstance> {
        Ok(self.selector.register(registration).await?.0.redacted())
    }

    async fn get(&self, id: &str) -> SelectorResult<DataPlaneInstance> {
        Ok(self.selector.get(id).await?.redacted())
    }

    async fn list(&self) -> SelectorResult<Vec<DataPlaneInstance>> {
        Ok(self
            .selector
            .list()
            .await?
            .into_iter()
            .map(DataPlaneInstance::redacted)
            .collect())
    }

    async fn remove(&self, id: &str) -> SelectorResult<()> {
        self.selector.remove(id).await
    }

    async fn strategies(&self) -> SelectorResult<Vec<String>> {
        Ok(self.selector.strategies().0)
    }
}
