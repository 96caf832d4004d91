use std::collections::BTreeMap;
use std::sync::RwLock;

use address_policy::AddressPolicy;
use dataplane_spi::{ResourceAddress, FILE_TYPE, HTTP_DATA_TYPE};

use crate::DataPlaneError;

/// Datasets this data plane can serve: dataset id → source address.
///
/// Filled from configuration (`dpf.dataset.<id>.type=File`, `dpf.dataset.<id>.path=…`, or
/// `type=HttpData` with `baseUrl`) and from `PUT /api/v1/datasets/{id}`. Kept per replica;
/// give every replica of a cluster the same configuration.
///
/// Every address goes through the data plane's [`AddressPolicy`] before it is stored.
#[derive(Debug)]
pub struct DatasetRegistry {
    datasets: RwLock<BTreeMap<String, ResourceAddress>>,
    policy: AddressPolicy,
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

impl DatasetRegistry {
    /// An empty registry accepting any address ([`AddressPolicy::unrestricted`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty registry whose addresses must pass `policy`.
    pub fn with_policy(policy: AddressPolicy) -> Self {
        Self {
            datasets: RwLock::default(),
            policy,
        }
    }

    /// Reads `(id.property, value)` pairs (the keys below `dpf.dataset.`).
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
                .put(&id, address, known_types)
                .map_err(|e| DataPlaneError::InvalidInput(format!("dpf.dataset.{id}: {e}")))?;
        }
        Ok(registry)
    }

    /// Adds or replaces a dataset.
    ///
    /// # Errors
    /// [`DataPlaneError::InvalidInput`] for a blank id or an unusable address.
    pub fn put(
        &self,
        id: &str,
        address: ResourceAddress,
        known_types: &[String],
    ) -> Result<(), DataPlaneError> {
        if id.trim().is_empty() || id.contains('/') {
            return Err(DataPlaneError::InvalidInput(
                "a dataset id must be non-blank and contain no '/'".into(),
            ));
        }
        let address = check_address(&address, known_types, &self.policy)?;
        self.write()?.insert(id.to_owned(), address);
        Ok(())
    }

    /// The dataset's source address.
    pub fn get(&self, id: &str) -> Option<ResourceAddress> {
        self.datasets.read().ok()?.get(id).cloned()
    }

    /// Removes a dataset; whether it existed.
    ///
    /// # Errors
    /// Only on a poisoned lock.
    pub fn remove(&self, id: &str) -> Result<bool, DataPlaneError> {
        Ok(self.write()?.remove(id).is_some())
    }

    /// Every dataset, by id.
    pub fn list(&self) -> Vec<(String, ResourceAddress)> {
        self.datasets
            .read()
            .map(|d| d.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    fn write(
        &self,
    ) -> Result<std::sync::RwLockWriteGuard<'_, BTreeMap<String, ResourceAddress>>, DataPlaneError>
    {
        self.datasets
            .write()
            .map_err(|_| DataPlaneError::Internal("dataset registry lock poisoned".into()))
    }
}
