use std::sync::Arc;

use async_trait::async_trait;
use rand::Rng;
use selector_spi::{
    DataPlaneId, DataPlaneInstance, SelectionContext, SelectionRequest, SelectionStrategy,
    SelectorResult, StrategyRegistry, StrategyRegistryBuilder, ROUND_ROBIN_SEQUENCE,
};

/// Picks a candidate uniformly at random. The default strategy.
#[derive(Debug, Default, Clone, Copy)]
pub struct RandomStrategy;

/// Picks candidates in turn, by id order, using a position shared through the store so that
/// every selector process on one database continues the same rotation.
#[derive(Debug, Default, Clone, Copy)]
pub struct RoundRobinStrategy;

/// Picks the candidate idle the longest: never selected first, then the oldest `lastActive`;
/// ties go to the smallest id.
#[derive(Debug, Default, Clone, Copy)]
pub struct OldestNextStrategy;

#[async_trait]
impl SelectionStrategy for RandomStrategy {
    fn name(&self) -> &str {
        "random"
    }

    async fn select(
        &self,
        candidates: &[DataPlaneInstance],
        _request: &SelectionRequest,
        _context: SelectionContext<'_>,
    ) -> SelectorResult<Option<DataPlaneId>> {
        if candidates.is_empty() {
            return Ok(None);
        }
        let index = rand::thread_rng().gen_range(0..candidates.len());
        Ok(Some(candidates[index].id.clone()))
    }
}

#[async_trait]
impl SelectionStrategy for RoundRobinStrategy {
    fn name(&self) -> &str {
        "round-robin"
    }

    async fn select(
        &self,
        candidates: &[DataPlaneInstance],
        _request: &SelectionRequest,
        context: SelectionContext<'_>,
    ) -> SelectorResult<Option<DataPlaneId>> {
        if candidates.is_empty() {
            return Ok(None);
        }
        let position = context.next_in_sequence(ROUND_ROBIN_SEQUENCE).await?;
        // The modulo result is < candidates.len(), which fits in usize.
        let index = usize::try_from(position % candidates.len() as u64).unwrap_or(0);
        Ok(Some(candidates[index].id.clone()))
    }
}

#[async_trait]
impl SelectionStrategy for OldestNextStrategy {
    fn name(&self) -> &str {
        "oldest-next"
    }

    async fn select(
        &self,
        candidates: &[DataPlaneInstance],
        _request: &SelectionRequest,
        _context: SelectionContext<'_>,
    ) -> SelectorResult<Option<DataPlaneId>> {
        // `None < Some(_)`, so never-selected instances come first.
        Ok(candidates
            .iter()
            .min_by(|a, b| {
                a.last_active
                    .cmp(&b.last_active)
                    .then_with(|| a.id.cmp(&b.id))
            })
            .map(|instance| instance.id.clone()))
    }
}

/// A registry builder holding the four built-in strategies, with `random` as default.
/// Embedders add their own strategies to it before building.
pub fn default_registry_builder() -> StrategyRegistryBuilder {
    let builtins: [Arc<dyn SelectionStrategy>; 4] = [
        Arc::new(RandomStrategy),
        Arc::new(RoundRobinStrategy),
        Arc::new(OldestNextStrategy),
        Arc::new(crate::LeastLoadedStrategy),
    ];
    builtins
        .into_iter()
        .fold(StrategyRegistry::builder(), |builder, strategy| {
            // Built-in names are distinct and non-blank, so registration cannot fail.
            match builder.register(strategy) {
                Ok(builder) => builder,
                Err(error) => unreachable!("built-in strategies clash: {error}"),
            }
        })
}
