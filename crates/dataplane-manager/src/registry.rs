//! The storage under the dataset and control-plane registries.
//!
//! Once [shared](SharedRegistry::share) (the [`DataPlane`](crate::DataPlane) does it with its
//! coordinator), every entry lives in the cluster key-value store under the registry's prefix
//! ([`DATASETS_PREFIX`]`<id>`, [`CONTROL_PLANES_PREFIX`]`<id>`, the id percent-encoded), so any
//! replica reads what any replica wrote and a delete is cluster-wide. Those keys are written
//! only through the registries' own APIs: the raw KV API refuses writes under `dpf/` and shows
//! their values redacted ([`redact_kv_value`]).
//!
//! Reads are cheap and correct: an entry read within the last [`CACHE_TTL`] is answered from a
//! local cache, a miss always reads the store (a `PUT` on one replica is usable on another at
//! once), and a replica's own writes update its cache. A change made elsewhere (replaced or
//! deleted) reaches this replica's cache within [`CACHE_TTL`]; the management reads
//! ([`SharedRegistry::get`], [`SharedRegistry::list`]) always read the store.
//!
//! Entries added before sharing (from configuration) are written to the store once, on
//! [`SharedRegistry::publish`] or the first operation after sharing — like a `PUT` at start.
//! Never shared (a registry used on its own), the registry is a local map.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use dataplane_spi::coordination::MAX_KEY_LEN;
use dataplane_spi::{Coordinator, Expected};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::time::Instant;

use crate::{DataPlaneError, Entity};

/// Where datasets live in the cluster key-value store.
pub const DATASETS_PREFIX: &str = "dpf/datasets/";
/// Where control-plane registrations live in the cluster key-value store.
pub const CONTROL_PLANES_PREFIX: &str = "dpf/controlplanes/";
/// How long a replica answers a registry entry from its cache before reading it again.
pub const CACHE_TTL: Duration = Duration::from_secs(1);

/// A registry value as the raw KV API may show it: values under [`DATASETS_PREFIX`] and
/// [`CONTROL_PLANES_PREFIX`] hold credentials (tokens, client secrets), so they are shown
/// [redacted](crate::redact); any other value unchanged.
pub fn redact_kv_value(key: &str, value: String) -> String {
    if !(key.starts_with(DATASETS_PREFIX) || key.starts_with(CONTROL_PLANES_PREFIX)) {
        return value;
    }
    serde_json::from_str::<serde_json::Value>(&value)
        .map(|json| crate::redact(json).to_string())
        .unwrap_or_else(|_| dpf_config::MASK.to_owned())
}

#[derive(Debug)]
struct Cached<T> {
    value: T,
    at: Instant,
}

impl<T: Clone> Cached<T> {
    fn new(value: T) -> Self {
        Self {
            value,
            at: Instant::now(),
        }
    }

    fn fresh(&self) -> Option<T> {
        (self.at.elapsed() < CACHE_TTL).then(|| self.value.clone())
    }
}

/// Every entry, by id.
type Listing<T> = Vec<(String, T)>;

/// Entries of one kind (`T`) by id: in the cluster key-value store once shared, else local.
#[derive(Debug)]
pub(crate) struct SharedRegistry<T> {
    entity: Entity,
    prefix: &'static str,
    /// Unshared: the registry. Shared: the entries from configuration, published once.
    local: RwLock<BTreeMap<String, T>>,
    store: OnceLock<Arc<dyn Coordinator>>,
    published: tokio::sync::OnceCell<()>,
    cache: RwLock<HashMap<String, Cached<T>>>,
    listing: RwLock<Option<Cached<Listing<T>>>>,
}

impl<T> SharedRegistry<T>
where
    T: Clone + Serialize + DeserializeOwned + Send + Sync,
{
    pub(crate) fn new(entity: Entity, prefix: &'static str) -> Self {
        Self {
            entity,
            prefix,
            local: RwLock::default(),
            store: OnceLock::new(),
            published: tokio::sync::OnceCell::new(),
            cache: RwLock::default(),
            listing: RwLock::default(),
        }
    }

    /// Keeps entries in `store` from now on (the first call wins).
    pub(crate) fn share(&self, store: Arc<dyn Coordinator>) {
        let _ = self.store.set(store);
    }

    /// Checks an id: non-blank and short enough for a key (any character is encoded).
    pub(crate) fn check_id(&self, id: &str) -> Result<(), DataPlaneError> {
        if id.trim().is_empty() {
            return Err(DataPlaneError::InvalidInput(format!(
                "a {} id must be non-blank",
                self.entity
            )));
        }
        if self.key(id).len() > MAX_KEY_LEN {
            return Err(DataPlaneError::InvalidInput(format!(
                "a {} id is too long (at most {} bytes once percent-encoded)",
                self.entity,
                MAX_KEY_LEN - self.prefix.len()
            )));
        }
        Ok(())
    }

    fn key(&self, id: &str) -> String {
        format!(
            "{}{}",
            self.prefix,
            percent_encoding::utf8_percent_encode(id, crate::callbacks::SEGMENT)
        )
    }

    fn id_of(&self, key: &str) -> Option<String> {
        let encoded = key.strip_prefix(self.prefix)?;
        percent_encoding::percent_decode_str(encoded)
            .decode_utf8()
            .ok()
            .map(|id| id.into_owned())
    }

    fn decode(&self, id: &str, value: &str) -> Result<T, DataPlaneError> {
        // The value holds credentials: the error names the entry, never the value.
        serde_json::from_str(value).map_err(|e| {
            DataPlaneError::Internal(format!(
                "the stored {} '{id}' is unreadable ({:?} error at line {} column {})",
                self.entity,
                e.classify(),
                e.line(),
                e.column()
            ))
        })
    }

    /// Adds an entry before sharing (configuration): validated by the caller.
    pub(crate) fn configure(&self, id: &str, value: T) -> Result<(), DataPlaneError> {
        self.local
            .write()
            .map_err(|_| self.poisoned())?
            .insert(id.to_owned(), value);
        Ok(())
    }

    fn poisoned(&self) -> DataPlaneError {
        DataPlaneError::Internal(format!("{} registry lock poisoned", self.entity))
    }

    /// The store once shared, after the configured entries were written to it.
    async fn shared(&self) -> Result<Option<&Arc<dyn Coordinator>>, DataPlaneError> {
        let Some(store) = self.store.get() else {
            return Ok(None);
        };
        self.published
            .get_or_try_init(|| async {
                let configured: Vec<(String, T)> = self
                    .local
                    .read()
                    .map_err(|_| self.poisoned())?
                    .iter()
                    .map(|(id, value)| (id.clone(), value.clone()))
                    .collect();
                for (id, value) in configured {
                    self.write(store, &id, &value).await?;
                }
                Ok::<(), DataPlaneError>(())
            })
            .await?;
        Ok(Some(store))
    }

    /// Writes the entries from configuration to the shared store now (else on first use).
    ///
    /// # Errors
    /// The store is unavailable.
    pub(crate) async fn publish(&self) -> Result<(), DataPlaneError> {
        self.shared().await.map(|_| ())
    }

    async fn write(
        &self,
        store: &Arc<dyn Coordinator>,
        id: &str,
        value: &T,
    ) -> Result<(), DataPlaneError> {
        let json = serde_json::to_string(value).map_err(|e| {
            DataPlaneError::Internal(format!("{} not serialisable: {e}", self.entity))
        })?;
        store
            .kv_put(&self.key(id), &json, Expected::Any, None)
            .await?;
        self.remember(id, Some(value.clone()));
        Ok(())
    }

    fn remember(&self, id: &str, value: Option<T>) {
        if let Ok(mut cache) = self.cache.write() {
            match value {
                Some(value) => cache.insert(id.to_owned(), Cached::new(value)),
                None => cache.remove(id),
            };
        }
        // The listing is read again on its next use.
        if let Ok(mut listing) = self.listing.write() {
            *listing = None;
        }
    }

    /// Adds or replaces an entry (already validated), cluster-wide once shared.
    pub(crate) async fn put(&self, id: &str, value: T) -> Result<(), DataPlaneError> {
        self.check_id(id)?;
        match self.shared().await? {
            Some(store) => self.write(store, id, &value).await,
            None => self.configure(id, value),
        }
    }

    /// Removes an entry; whether it existed.
    pub(crate) async fn remove(&self, id: &str) -> Result<bool, DataPlaneError> {
        let Some(store) = self.shared().await? else {
            return Ok(self
                .local
                .write()
                .map_err(|_| self.poisoned())?
                .remove(id)
                .is_some());
        };
        if self.check_id(id).is_err() {
            return Ok(false);
        }
        let existed = match store.kv_delete(&self.key(id), Expected::Any).await {
            Ok(_) => true,
            Err(dataplane_spi::CoordinationError::NotFound(_)) => false,
            Err(other) => return Err(other.into()),
        };
        self.remember(id, None);
        Ok(existed)
    }

    /// An entry as the store has it now.
    pub(crate) async fn get(&self, id: &str) -> Result<Option<T>, DataPlaneError> {
        let Some(store) = self.shared().await? else {
            return Ok(self
                .local
                .read()
                .map_err(|_| self.poisoned())?
                .get(id)
                .cloned());
        };
        if self.check_id(id).is_err() {
            return Ok(None);
        }
        let value = match store.kv_get(&self.key(id)).await? {
            Some(entry) => Some(self.decode(id, &entry.value)?),
            None => None,
        };
        self.remember(id, value.clone());
        Ok(value)
    }

    /// An entry from the cache when read within [`CACHE_TTL`], else from the store.
    pub(crate) async fn resolve(&self, id: &str) -> Result<Option<T>, DataPlaneError> {
        if self.store.get().is_some() {
            let cached = self
                .cache
                .read()
                .ok()
                .and_then(|cache| cache.get(id).and_then(Cached::fresh));
            if cached.is_some() {
                return Ok(cached);
            }
        }
        self.get(id).await
    }

    /// Every entry, by id, as the store has them now.
    pub(crate) async fn list(&self) -> Result<Listing<T>, DataPlaneError> {
        let Some(store) = self.shared().await? else {
            return Ok(self
                .local
                .read()
                .map_err(|_| self.poisoned())?
                .iter()
                .map(|(id, value)| (id.clone(), value.clone()))
                .collect());
        };
        let (entries, _) = store.kv_list(self.prefix).await?;
        let mut all = Vec::with_capacity(entries.len());
        for entry in entries {
            let Some(id) = self.id_of(&entry.key) else {
                continue;
            };
            all.push((id.clone(), self.decode(&id, &entry.value)?));
        }
        if let Ok(mut listing) = self.listing.write() {
            *listing = Some(Cached::new(all.clone()));
        }
        Ok(all)
    }

    /// Every entry, from the cache when listed within [`CACHE_TTL`], else from the store. An
    /// empty listing is never answered from the cache (like a missing entry).
    pub(crate) async fn resolve_all(&self) -> Result<Listing<T>, DataPlaneError> {
        if self.store.get().is_some() {
            let cached = self
                .listing
                .read()
                .ok()
                .and_then(|listing| listing.as_ref().and_then(Cached::fresh));
            if let Some(all) = cached.filter(|all| !all.is_empty()) {
                return Ok(all);
            }
        }
        self.list().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane_store_memory::MemoryStore;

    fn shared_pair() -> (SharedRegistry<String>, SharedRegistry<String>) {
        let store: Arc<dyn Coordinator> = Arc::new(MemoryStore::new());
        let a = SharedRegistry::new(Entity::Dataset, DATASETS_PREFIX);
        let b = SharedRegistry::new(Entity::Dataset, DATASETS_PREFIX);
        a.share(store.clone());
        b.share(store);
        (a, b)
    }

    #[tokio::test]
    async fn a_put_on_one_replica_is_read_at_once_on_another_and_a_delete_is_shared() {
        let (a, b) = shared_pair();
        // b looked before the put: a miss is never cached.
        assert_eq!(b.resolve("ds 1").await.unwrap(), None);
        a.put("ds 1", "v1".into()).await.unwrap();
        assert_eq!(b.resolve("ds 1").await.unwrap().as_deref(), Some("v1"));
        assert_eq!(b.list().await.unwrap(), vec![("ds 1".into(), "v1".into())]);
        assert!(b.remove("ds 1").await.unwrap());
        assert_eq!(a.get("ds 1").await.unwrap(), None);
        assert!(!a.remove("ds 1").await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_elsewhere_reaches_the_cache_within_the_ttl() {
        let (a, b) = shared_pair();
        a.put("ds", "v1".into()).await.unwrap();
        assert_eq!(b.resolve("ds").await.unwrap().as_deref(), Some("v1"));
        a.put("ds", "v2".into()).await.unwrap();
        // Cached on b for at most CACHE_TTL…
        assert_eq!(b.resolve("ds").await.unwrap().as_deref(), Some("v1"));
        tokio::time::advance(CACHE_TTL).await;
        // …then read again.
        assert_eq!(b.resolve("ds").await.unwrap().as_deref(), Some("v2"));
        // The management read is never stale.
        a.remove("ds").await.unwrap();
        assert_eq!(b.get("ds").await.unwrap(), None);
    }

    #[tokio::test]
    async fn configured_entries_are_published_on_first_use_and_ids_are_encoded() {
        let store: Arc<dyn Coordinator> = Arc::new(MemoryStore::new());
        let a = SharedRegistry::new(Entity::Dataset, DATASETS_PREFIX);
        a.configure("from config", "c".to_owned()).unwrap();
        a.share(store.clone());
        let b: SharedRegistry<String> = SharedRegistry::new(Entity::Dataset, DATASETS_PREFIX);
        b.share(store.clone());
        assert_eq!(b.get("from config").await.unwrap(), None);
        a.publish().await.unwrap();
        assert_eq!(b.get("from config").await.unwrap().as_deref(), Some("c"));
        let (keys, _) = store.kv_list(DATASETS_PREFIX).await.unwrap();
        assert_eq!(keys[0].key, "dpf/datasets/from%20config");
        assert!(a.put(" ", "x".into()).await.is_err());
        a.put("a/b", "slash".into()).await.unwrap();
        assert_eq!(b.get("a/b").await.unwrap().as_deref(), Some("slash"));
        assert!(a.put(&"x".repeat(MAX_KEY_LEN), "x".into()).await.is_err());
    }

    #[test]
    fn registry_values_are_redacted_in_raw_kv_views() {
        let value = serde_json::json!({"controlplaneId": "cp", "endpoint": "https://cp/s",
            "authorization": {"type": "bearer", "token": "s3cret"}})
        .to_string();
        let shown = redact_kv_value("dpf/controlplanes/cp", value.clone());
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("https://cp/s"), "{shown}");
        assert_eq!(redact_kv_value("app/x", value.clone()), value);
        assert_eq!(
            redact_kv_value("dpf/datasets/d", "not json s3cret".into()),
            dpf_config::MASK
        );
    }
}
