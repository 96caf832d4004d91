//! The `least-loaded` strategy: the candidate with the most room by its last load report.

use std::cmp::Ordering;

use async_trait::async_trait;
use selector_spi::{
    DataPlaneId, DataPlaneInstance, SelectionContext, SelectionRequest, SelectionStrategy,
    SelectorResult,
};

/// Picks the candidate with the lowest running/capacity ratio by its load report; ties go to
/// the lowest bytes per second, then to the one idle the longest (never selected first, then
/// the oldest `lastActive`), then to the smallest id. Candidates without a report, or whose
/// report is stale (older than three heartbeats), count as unknown and rank after every fresh
/// one with room; a candidate at capacity ranks last, so it is offered only when every
/// candidate is at capacity (its `load.atCapacity` then says so). Reads only what the instances
/// carry: no store access per selection.
#[derive(Debug, Default, Clone, Copy)]
pub struct LeastLoadedStrategy;

/// 0: fresh with room, 1: unknown, 2: at capacity.
fn class(instance: &DataPlaneInstance) -> u8 {
    match &instance.load {
        Some(load) if load.at_capacity => 2,
        Some(load) if !load.stale => 0,
        _ => 1,
    }
}

fn fresh_numbers(instance: &DataPlaneInstance) -> (f64, u64) {
    match &instance.load {
        Some(load) if !load.stale => (load.ratio(), load.bytes_per_second),
        _ => (0.0, 0),
    }
}

/// The order of preference: `Less` means `a` is the better choice.
pub fn compare(a: &DataPlaneInstance, b: &DataPlaneInstance) -> Ordering {
    let (ratio_a, bytes_a) = fresh_numbers(a);
    let (ratio_b, bytes_b) = fresh_numbers(b);
    class(a)
        .cmp(&class(b))
        .then_with(|| ratio_a.total_cmp(&ratio_b))
        .then_with(|| bytes_a.cmp(&bytes_b))
        // `None < Some(_)`: never selected first.
        .then_with(|| a.last_active.cmp(&b.last_active))
        .then_with(|| a.id.cmp(&b.id))
}

#[async_trait]
impl SelectionStrategy for LeastLoadedStrategy {
    fn name(&self) -> &str {
        "least-loaded"
    }

    async fn select(
        &self,
        candidates: &[DataPlaneInstance],
        _request: &SelectionRequest,
        _context: SelectionContext<'_>,
    ) -> SelectorResult<Option<DataPlaneId>> {
        Ok(candidates
            .iter()
            .min_by(|a, b| compare(a, b))
            .map(|instance| instance.id.clone()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
