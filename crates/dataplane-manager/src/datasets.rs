use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use address_policy::AddressPolicy;
use dataplane_spi::{Coordinator, ResourceAddress, TransferRegistry, FILE_TYPE, HTTP_DATA_TYPE};

use crate::registry::{SharedRegistry, DATASETS_PREFIX};
use crate::{DataPlaneError, Entity};

/// Datasets this data plane can serve: dataset id → source address.
///
/// Filled from configuration (`dpf.dataset.<id>.type=File`, `dpf.dataset.<id>.path=…`, or
/// `type=HttpData` with `baseUrl`) and from `PUT /api/v1/datasets/{id}`. Shared by the
/// cluster once the [`DataPlane`](crate::DataPlane) is built: kept in the cluster key-value
/// store under `dpf/datasets/<id>`, so every replica serves every dataset and a delete is
/// cluster-wide; datasets from configuration are written there at start (see
/// [`crate::registry`]).
///
/// Every address goes through the data plane's [`AddressPolicy`] before it is stored.
#[derive(Debug)]
pub struct DatasetRegistry {
    datasets: SharedRegistry<ResourceAddress>,
    policy: AddressPolicy,
    /// The data plane's transfer registry, once shared: validates the addresses of the types
    /// it checks itself ([`check_with_transfers`]).
    transfers: OnceLock<TransferRegistry>,
}

impl Default for DatasetRegistry {
    fn default() -> Self {
        Self::with_policy(AddressPolicy::unrestricted())
    }
}

/// [`validate_address`], then the address policy: the address as it will be stored and used
/// (file paths relative to the root, URLs normalised).
///
/// # Errors
/// [`DataPlaneError::InvalidInput`] saying what is wrong or which rule refuses it.
pub(crate) fn check_address(
    address: &ResourceAddress,
    known_types: &[String],
    policy: &AddressPolicy,
) -> Result<ResourceAddress, DataPlaneError> {
    validate_address(address, known_types)?;
    policy
        .check_resource(address)
        .map_err(|e| DataPlaneError::InvalidInput(e.to_string()))
}

/// Checks an address the way the transfer layer will need it.
///
/// # Errors
/// [`DataPlaneError::InvalidInput`] naming the missing or bad property.
pub(crate) fn validate_address(
    address: &ResourceAddress,
    known_types: &[String],
) -> Result<(), DataPlaneError> {
    let type_name = address.type_name().unwrap_or_default();
    match type_name {
        FILE_TYPE if address.get("path").is_none_or(|p| p.trim().is_empty()) => {
            return Err(DataPlaneError::InvalidInput(
                "a File address needs a non-blank \"path\"".into(),
            ));
        }
        FILE_TYPE => {}
        HTTP_DATA_TYPE => {
            let base = address.get("baseUrl").unwrap_or_default();
            match url::Url::parse(base) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => {}
                _ => {
                    return Err(DataPlaneError::InvalidInput(format!(
                    "an HttpData address needs \"baseUrl\", an absolute http(s) URL (got '{base}')"
                )))
                }
            }
        }
        other if !known_types.iter().any(|t| t == other) => {
            return Err(DataPlaneError::InvalidInput(format!(
                "unsupported address type '{other}'; supported: {}",
                known_types.join(", ")
            )))
        }
        _ => {}
    }
    Ok(())
}

/// Has `transfers` create the source (`as_sink` false) or sink of `address` once — which sends
/// nothing — for the types [`validate_address`] leaves to it (not `File`, not `HttpData`): an
/// object-storage address without its bucket or key, with a malformed `endpointOverride` or
/// one the address policy refuses, is refused here rather than when its flow first runs.
///
/// # Errors
/// [`DataPlaneError::InvalidInput`] with the factory's reason.
pub(crate) fn check_with_transfers(
    transfers: &TransferRegistry,
    address: &ResourceAddress,
    as_sink: bool,
) -> Result<(), DataPlaneError> {
    let type_name = address.type_name().unwrap_or_default();
    if matches!(type_name, FILE_TYPE | HTTP_DATA_TYPE) {
        return Ok(());
    }
    let created = if as_sink {
        transfers.sink(address).map(drop)
    } else {
        transfers.source(address).map(drop)
    };
    created.map_err(|e| DataPlaneError::InvalidInput(e.to_string()))
}

impl DatasetRegistry {
    /// An empty registry accepting any address ([`AddressPolicy::unrestricted`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty registry whose addresses must pass `policy`.
    pub fn with_policy(policy: AddressPolicy) -> Self {
        Self {
            datasets: SharedRegistry::new(Entity::Dataset, DATASETS_PREFIX),
            policy,
            transfers: OnceLock::new(),
        }
    }

    /// Reads `(id.property, value)` pairs (the keys below `dpf.dataset.`). They are written to
    /// the shared store when the registry is shared, on [`DatasetRegistry::publish`] or first
    /// use.
    ///
    /// # Errors
    /// [`DataPlaneError::InvalidInput`] naming the dataset whose address is incomplete.
    pub fn from_entries(
        entries: &[(String, String)],
        known_types: &[String],
        policy: AddressPolicy,
    ) -> Result<Self, DataPlaneError> {
        let mut by_id: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (key, value) in entries {
            if let Some((id, property)) = key.split_once('.') {
                by_id
                    .entry(id.to_owned())
                    .or_default()
                    .insert(property.to_owned(), value.clone());
            }
        }
        let registry = Self::with_policy(policy);
        for (id, properties) in by_id {
            let type_name = properties.get("type").cloned().ok_or_else(|| {
                DataPlaneError::InvalidInput(format!(
                    "dpf.dataset.{id}.type is required (File or HttpData)"
                ))
            })?;
            let mut address = ResourceAddress::new(&type_name);
            for (property, value) in &properties {
                if property != "type" {
                    address.set(property, value);
                }
            }
            registry
                .checked(&id, &address, known_types)
                .and_then(|address| registry.datasets.configure(&id, address))
                .map_err(|e| DataPlaneError::InvalidInput(format!("dpf.dataset.{id}: {e}")))?;
        }
        Ok(registry)
    }

    /// Keeps the datasets in the cluster key-value store of `coordinator` from now on (the
    /// [`DataPlane`](crate::DataPlane) does this with its own).
    pub fn share(&self, coordinator: Arc<dyn Coordinator>) {
        self.datasets.share(coordinator);
    }

    /// Writes the datasets from configuration to the shared store now (else on first use).
    ///
    /// # Errors
    /// [`DataPlaneError::Unavailable`] when the store does not answer.
    pub async fn publish(&self) -> Result<(), DataPlaneError> {
        self.datasets.publish().await
    }

    fn checked(
        &self,
        id: &str,
        address: &ResourceAddress,
        known_types: &[String],
    ) -> Result<ResourceAddress, DataPlaneError> {
        // `/` would not fit the `/datasets/{id}` route.
        if id.trim().is_empty() || id.contains('/') {
            return Err(DataPlaneError::InvalidInput(
                "a dataset id must be non-blank and contain no '/'".into(),
            ));
        }
        self.datasets.check_id(id)?;
        let checked = check_address(address, known_types, &self.policy)?;
        if let Some(transfers) = self.transfers.get() {
            check_with_transfers(transfers, &checked, false)?;
        }
        Ok(checked)
    }

    /// Validates addresses with the data plane's `transfers` from now on (source addresses).
    pub fn use_transfers(&self, transfers: TransferRegistry) {
        let _ = self.transfers.set(transfers);
    }

    /// Adds or replaces a dataset, for the whole cluster.
    ///
    /// # Errors
    /// [`DataPlaneError::InvalidInput`] for a blank id or an unusable address;
    /// [`DataPlaneError::Unavailable`] when the store does not answer.
    pub async fn put(
        &self,
        id: &str,
        address: ResourceAddress,
        known_types: &[String],
    ) -> Result<(), DataPlaneError> {
        let address = self.checked(id, &address, known_types)?;
        self.datasets.put(id, address).await
    }

    /// The dataset's source address, as the store has it now.
    ///
    /// # Errors
    /// [`DataPlaneError::Unavailable`] when the store does not answer.
    pub async fn get(&self, id: &str) -> Result<Option<ResourceAddress>, DataPlaneError> {
        self.datasets.get(id).await
    }

    /// The dataset's source address for a transfer: from this replica's cache when read within
    /// [`crate::registry::CACHE_TTL`], else from the store (a dataset registered on another
    /// replica a moment ago is found).
    ///
    /// # Errors
    /// [`DataPlaneError::Unavailable`] when the store does not answer.
    pub async fn resolve(&self, id: &str) -> Result<Option<ResourceAddress>, DataPlaneError> {
        self.datasets.resolve(id).await
    }

    /// Removes a dataset from the cluster; whether it existed.
    ///
    /// # Errors
    /// [`DataPlaneError::Unavailable`] when the store does not answer.
    pub async fn remove(&self, id: &str) -> Result<bool, DataPlaneError> {
        self.datasets.remove(id).await
    }

    /// Every dataset, by id.
    ///
    /// # Errors
    /// [`DataPlaneError::Unavailable`] when the store does not answer.
    pub async fn list(&self) -> Result<Vec<(String, ResourceAddress)>, DataPlaneError> {
        self.datasets.list().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane_store_memory::MemoryStore;

    fn entries(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[tokio::test]
    async fn configured_and_put_datasets_are_shared_after_the_address_policy() {
        let dir = tempfile::tempdir().unwrap();
        let policy = AddressPolicy::builder()
            .require_https(true)
            .file_root(dir.path())
            .build()
            .unwrap();
        let known = vec![FILE_TYPE.to_owned(), HTTP_DATA_TYPE.to_owned()];
        let a = DatasetRegistry::from_entries(
            &entries(&[
                ("cfg.type", HTTP_DATA_TYPE),
                ("cfg.baseUrl", "HTTPS://Data.Example/x"),
            ]),
            &known,
            policy.clone(),
        )
        .unwrap();
        // Configuration goes through the policy before anything is shared.
        assert!(DatasetRegistry::from_entries(
            &entries(&[
                ("bad.type", HTTP_DATA_TYPE),
                ("bad.baseUrl", "http://plain/x")
            ]),
            &known,
            policy.clone(),
        )
        .is_err());
        let b = DatasetRegistry::with_policy(policy);
        let store: Arc<dyn Coordinator> = Arc::new(MemoryStore::new());
        a.share(store.clone());
        b.share(store);
        a.publish().await.unwrap();
        // Stored as the policy normalised it, seen by the other replica.
        let cfg = b.resolve("cfg").await.unwrap().unwrap();
        assert_eq!(cfg.get("baseUrl"), Some("https://data.example/x"));

        // A refused address changes nothing.
        let outside = ResourceAddress::file("/etc/passwd");
        assert!(b.put("f", outside, &known).await.is_err());
        assert!(b
            .put("f", ResourceAddress::http("http://plain/x"), &known)
            .await
            .is_err());
        assert!(b
            .put("a/b", ResourceAddress::file("x"), &known)
            .await
            .is_err());
        assert_eq!(a.get("f").await.unwrap(), None);

        b.put("f", ResourceAddress::file("in-root.bin"), &known)
            .await
            .unwrap();
        let ids: Vec<String> = a
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(ids, ["cfg", "f"]);
        assert!(a.remove("f").await.unwrap());
        assert_eq!(b.get("f").await.unwrap(), None);
    }
}
