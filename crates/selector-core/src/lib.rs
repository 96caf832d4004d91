//! Default implementation of the dpf data-plane selector.
//!
//! - [`DefaultDataPlaneSelector`]: filters instances with
//!   [`DataPlaneInstance::can_handle`](selector_spi::DataPlaneInstance::can_handle), then asks
//!   the requested strategy, then records the selection in the store.
//! - Built-in strategies: [`RandomStrategy`] (`random`, the default), [`RoundRobinStrategy`]
//!   (`round-robin`, position shared through the store) and [`OldestNextStrategy`]
//!   (`oldest-next`, longest idle first) and [`LeastLoadedStrategy`] (`least-loaded`, most room
//!   by the instances' load reports); [`default_registry_builder`] registers all four.
//! - [`InMemoryInstanceStore`], the store for a single process.
//! - [`seed`]: instances from `edc.dpf.selector.<alias>.<property>` configuration keys.
//! - `conformance` (feature `conformance`): the behaviour every store must have.

mod least_loaded;
mod memory;
pub mod seed;
mod selector;
mod strategies;

#[cfg(any(test, feature = "conformance"))]
#[allow(clippy::unwrap_used)] // a test suite: a failed unwrap is a failed case
pub mod conformance;

pub use least_loaded::LeastLoadedStrategy;
pub use memory::InMemoryInstanceStore;
pub use selector::DefaultDataPlaneSelector;
pub use strategies::{
    default_registry_builder, OldestNextStrategy, RandomStrategy, RoundRobinStrategy,
};
