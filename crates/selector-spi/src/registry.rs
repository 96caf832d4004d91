use std::collections::BTreeMap;
use std::sync::Arc;

use crate::{SelectionStrategy, SelectorError, SelectorResult};

/// Name of the strategy used when neither the request nor the configuration names one.
pub const DEFAULT_STRATEGY: &str = "random";

/// Strategies by name, with a default. Immutable once built; build it with
/// [`StrategyRegistry::builder`], which refuses duplicate names.
#[derive(Debug, Clone)]
pub struct StrategyRegistry {
    strategies: BTreeMap<String, Arc<dyn SelectionStrategy>>,
    default: String,
}

/// Builder of a [`StrategyRegistry`].
#[derive(Debug, Default)]
pub struct StrategyRegistryBuilder {
    strategies: BTreeMap<String, Arc<dyn SelectionStrategy>>,
    default: Option<String>,
}

impl StrategyRegistryBuilder {
    /// Registers a strategy under its [`SelectionStrategy::name`].
    ///
    /// # Errors
    /// [`SelectorError::InvalidInput`] when the name is blank or already taken.
    pub fn register(mut self, strategy: Arc<dyn SelectionStrategy>) -> SelectorResult<Self> {
        let name = strategy.name().to_owned();
        if name.trim().is_empty() {
            return Err(SelectorError::InvalidInput(
                "a selection strategy needs a non-blank name".into(),
            ));
        }
        if self.strategies.contains_key(&name) {
            return Err(SelectorError::InvalidInput(format!(
                "selection strategy '{name}' is registered twice"
            )));
        }
        self.strategies.insert(name, strategy);
        Ok(self)
    }

    /// Sets the default strategy name (otherwise [`DEFAULT_STRATEGY`]).
    pub fn default_strategy(mut self, name: impl Into<String>) -> Self {
        self.default = Some(name.into());
        self
    }

    /// Builds the registry.
    ///
    /// # Errors
    /// [`SelectorError::UnknownStrategy`] when the default is not registered.
    pub fn build(self) -> SelectorResult<StrategyRegistry> {
        let default = self.default.unwrap_or_else(|| DEFAULT_STRATEGY.to_owned());
        if !self.strategies.contains_key(&default) {
            return Err(SelectorError::UnknownStrategy {
                name: default,
                known: self.strategies.keys().cloned().collect(),
            });
        }
        Ok(StrategyRegistry {
            strategies: self.strategies,
            default,
        })
    }
}

impl StrategyRegistry {
    /// An empty builder.
    pub fn builder() -> StrategyRegistryBuilder {
        StrategyRegistryBuilder::default()
    }

    /// Resolves `name`, or the default strategy when `None`.
    ///
    /// # Errors
    /// [`SelectorError::UnknownStrategy`] listing the known names.
    pub fn resolve(&self, name: Option<&str>) -> SelectorResult<Arc<dyn SelectionStrategy>> {
        let name = name.unwrap_or(&self.default);
        self.strategies
            .get(name)
            .cloned()
            .ok_or_else(|| SelectorError::UnknownStrategy {
                name: name.to_owned(),
                known: self.names(),
            })
    }

    /// Every registered name, sorted.
    pub fn names(&self) -> Vec<String> {
        self.strategies.keys().cloned().collect()
    }

    /// The default strategy's name.
    pub fn default_name(&self) -> &str {
        &self.default
    }
}
