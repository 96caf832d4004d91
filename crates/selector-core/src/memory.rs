use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::Utc;
use selector_spi::{
    DataPlaneInstance, DataPlaneInstanceStore, DataPlaneRegistration, InstanceState, SelectorError,
    SelectorResult,
};

/// Instances kept in process memory: for a single selector process, tests and demos.
///
/// Its clock is the process clock, which is fine because nothing is shared.
#[derive(Debug, Default)]
pub struct InMemoryInstanceStore {
    state: Mutex<MemoryState>,
}

#[derive(Debug, Default)]
struct MemoryState {
    instances: BTreeMap<String, DataPlaneInstance>,
    sequences: BTreeMap<String, u64>,
}

impl InMemoryInstanceStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut MemoryState) -> T) -> SelectorResult<T> {
        // A poisoned lock means a panic mid-update elsewhere; report it instead of panicking.
        let mut guard = self
            .state
            .lock()
            .map_err(|_| SelectorError::Internal("in-memory store lock poisoned".into()))?;
        Ok(f(&mut guard))
    }
}

fn not_found(id: &str) -> SelectorError {
    SelectorError::NotFound { id: id.to_owned() }
}

#[async_trait]
impl DataPlaneInstanceStore for InMemoryInstanceStore {
    async fn create(
        &self,
        registration: &DataPlaneRegistration,
    ) -> SelectorResult<DataPlaneInstance> {
        self.with_state(|state| {
            let id = registration.dataplane_id.as_str();
            if state.instances.contains_key(id) {
                return Err(SelectorError::AlreadyExists { id: id.to_owned() });
            }
            let instance = DataPlaneInstance::from_registration(registration, Utc::now());
            state.instances.insert(id.to_owned(), instance.clone());
            Ok(instance)
        })?
    }

    async fn upsert(
        &self,
        registration: &DataPlaneRegistration,
    ) -> SelectorResult<(DataPlaneInstance, bool)> {
        self.with_state(|state| {
            let now = Utc::now();
            let id = registration.dataplane_id.as_str();
            match state.instances.get_mut(id) {
                Some(existing) => {
                    existing.apply_registration(registration, now);
                    (existing.clone(), false)
                }
                None => {
                    let instance = DataPlaneInstance::from_registration(registration, now);
                    state.instances.insert(id.to_owned(), instance.clone());
                    (instance, true)
                }
            }
        })
    }

    async fn find(&self, id: &str) -> SelectorResult<Option<DataPlaneInstance>> {
        let now = Utc::now();
        self.with_state(|state| {
            state
                .instances
                .get(id)
                .cloned()
                .map(|i| i.with_ttl_applied(now))
        })
    }

    async fn list(&self) -> SelectorResult<Vec<DataPlaneInstance>> {
        let now = Utc::now();
        self.with_state(|state| {
            state
                .instances
                .values()
                .cloned()
                .map(|i| i.with_ttl_applied(now))
                .collect()
        })
    }

    async fn delete(&self, id: &str) -> SelectorResult<()> {
        self.with_state(|state| {
            state
                .instances
                .remove(id)
                .map(|_| ())
                .ok_or_else(|| not_found(id))
        })?
    }

    async fn set_state(
        &self,
        id: &str,
        new_state: InstanceState,
    ) -> SelectorResult<DataPlaneInstance> {
        self.with_state(|state| {
            let instance = state.instances.get_mut(id).ok_or_else(|| not_found(id))?;
            instance.state = new_state;
            instance.updated_at = Utc::now();
            Ok(instance.clone())
        })?
    }

    async fn record_selection(&self, id: &str) -> SelectorResult<DataPlaneInstance> {
        self.with_state(|state| {
            let instance = state.instances.get_mut(id).ok_or_else(|| not_found(id))?;
            instance.turn_count += 1;
            instance.last_active = Some(Utc::now());
            Ok(instance.clone())
        })?
    }

    async fn next_sequence(&self, name: &str) -> SelectorResult<u64> {
        self.with_state(|state| {
            let slot = state.sequences.entry(name.to_owned()).or_insert(0);
            let current = *slot;
            *slot += 1;
            current
        })
    }
}

#[cfg(test)]
mod conformance_tests {
    use std::sync::Arc;

    use selector_spi::DataPlaneInstanceStore;

    async fn fresh() -> Arc<dyn DataPlaneInstanceStore> {
        Arc::new(super::InMemoryInstanceStore::new())
    }

    crate::instance_store_conformance!(fresh());
}
