//! Service-provider interface of the dpf data-plane selector.
//!
//! The selector answers one question for a control plane: *which data-plane instance should run
//! this transfer?* This crate holds only the vocabulary shared by every implementation and
//! client — no web, HTTP-client or database crate:
//!
//! - [`DataPlaneInstance`] and its [`InstanceState`]; [`DataPlaneRegistration`] (the DPS
//!   `DataPlaneRegistrationMessage`, plus dpf's optional extensions),
//! - [`SelectionRequest`] and [`DataPlaneInstance::can_handle`],
//! - [`SelectionStrategy`] and the [`StrategyRegistry`] that resolves strategy names,
//! - [`DataPlaneInstanceStore`], the persistence contract (memory, SQLite, PostgreSQL),
//! - [`DataPlaneSelector`], the use cases (select, add, replace, get, list, remove),
//! - [`SelectorError`], the one error type, with a stable [`ErrorCode`] per variant.

mod error;
mod instance;
mod load;
mod registry;
mod request;
mod selector;
mod store;
mod strategy;

pub use error::{ErrorCode, SelectorError, SelectorResult};
pub use instance::{
    is_credential_name, AuthorizationEntry, DataPlaneId, DataPlaneInstance, DataPlaneRegistration,
    InstanceState, REDACTED,
};
pub use load::{InstanceLoad, RegisteredLoad, REGISTERED_LOAD_STALE_AFTER_MS};
pub use registry::{StrategyRegistry, StrategyRegistryBuilder, DEFAULT_STRATEGY};
pub use request::SelectionRequest;
pub use selector::{CandidateFilter, DataPlaneSelector};
pub use store::{DataPlaneInstanceStore, ROUND_ROBIN_SEQUENCE};
pub use strategy::{SelectionContext, SelectionStrategy};
