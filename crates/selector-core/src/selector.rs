use std::sync::Arc;

use async_trait::async_trait;
use selector_spi::{
    DataPlaneInstance, DataPlaneInstanceStore, DataPlaneRegistration, DataPlaneSelector,
    SelectionContext, SelectionRequest, SelectorError, SelectorResult, StrategyRegistry,
};

/// The default selector: filter by `can_handle`, let the strategy choose, record the choice.
#[derive(Debug, Clone)]
pub struct DefaultDataPlaneSelector {
    store: Arc<dyn DataPlaneInstanceStore>,
    strategies: Arc<StrategyRegistry>,
    /// A default strategy set at run time (live configuration), overriding the registry's.
    default_override: Arc<std::sync::RwLock<Option<String>>>,
    /// Restricts the candidates (e.g. to a cluster's baseline).
    filter: Option<Arc<dyn selector_spi::CandidateFilter>>,
}

impl DefaultDataPlaneSelector {
    /// A selector over `store` choosing with `strategies`.
    pub fn new(store: Arc<dyn DataPlaneInstanceStore>, strategies: StrategyRegistry) -> Self {
        Self {
            store,
            strategies: Arc::new(strategies),
            default_override: Arc::new(std::sync::RwLock::new(None)),
            filter: None,
        }
    }

    /// Offers only the instances `filter` allows.
    pub fn with_candidate_filter(mut self, filter: Arc<dyn selector_spi::CandidateFilter>) -> Self {
        self.filter = Some(filter);
        self
    }

    /// Changes the default strategy while running (`None` goes back to the configured one).
    ///
    /// # Errors
    /// [`SelectorError::UnknownStrategy`] for a name that is not registered; nothing changes.
    pub fn set_default_strategy(&self, name: Option<&str>) -> SelectorResult<()> {
        if let Some(name) = name {
            self.strategies.resolve(Some(name))?;
        }
        if let Ok(mut current) = self.default_override.write() {
            *current = name.map(str::to_owned);
        }
        Ok(())
    }

    fn default_name(&self) -> String {
        self.default_override
            .read()
            .ok()
            .and_then(|o| o.clone())
            .unwrap_or_else(|| self.strategies.default_name().to_owned())
    }

    /// The store behind this selector.
    pub fn store(&self) -> &Arc<dyn DataPlaneInstanceStore> {
        &self.store
    }
}

#[async_trait]
impl DataPlaneSelector for DefaultDataPlaneSelector {
    async fn select(&self, request: &SelectionRequest) -> SelectorResult<DataPlaneInstance> {
        request.validate()?;
        // Resolve first: an unknown strategy is the caller's mistake whatever the instances.
        let default = self.default_name();
        let strategy = self
            .strategies
            .resolve(Some(request.strategy.as_deref().unwrap_or(&default)))?;
        let allowed = match &self.filter {
            Some(filter) => filter.allowed().await,
            None => None,
        };
        let candidates: Vec<DataPlaneInstance> = self
            .store
            .list()
            .await?
            .into_iter()
            .filter(|instance| instance.can_handle(request))
            .filter(|instance| {
                allowed
                    .as_ref()
                    .is_none_or(|a| a.contains(instance.id.as_str()))
            })
            .collect();
        if candidates.is_empty() {
            return Err(SelectorError::NoMatch(request.to_string()));
        }
        let chosen = strategy
            .select(
                &candidates,
                request,
                SelectionContext::new(self.store.as_ref()),
            )
            .await?
            .ok_or_else(|| SelectorError::NoMatch(request.to_string()))?;
        if !candidates.iter().any(|c| c.id == chosen) {
            return Err(SelectorError::Internal(format!(
                "strategy '{}' chose '{chosen}', which is not a candidate",
                strategy.name()
            )));
        }
        let instance = self.store.record_selection(chosen.as_str()).await?;
        tracing::debug!(instance = %instance.id, strategy = strategy.name(), "data plane selected");
        Ok(instance)
    }

    async fn add(&self, registration: &DataPlaneRegistration) -> SelectorResult<DataPlaneInstance> {
        registration.validate()?;
        self.store.create(registration).await
    }

    async fn register(
        &self,
        registration: &DataPlaneRegistration,
    ) -> SelectorResult<(DataPlaneInstance, bool)> {
        registration.validate_dps()?;
        self.store.upsert(registration).await
    }

    async fn get(&self, id: &str) -> SelectorResult<DataPlaneInstance> {
        self.store
            .find(id)
            .await?
            .ok_or_else(|| SelectorError::NotFound { id: id.to_owned() })
    }

    async fn list(&self) -> SelectorResult<Vec<DataPlaneInstance>> {
        self.store.list().await
    }

    async fn remove(&self, id: &str) -> SelectorResult<()> {
        self.store.delete(id).await
    }

    fn strategies(&self) -> (Vec<String>, String) {
        (self.strategies.names(), self.default_name())
    }
}
