use std::sync::{Arc, RwLock};

use address_policy::AddressPolicy;
use dataplane_spi::{ControlPlaneRegistration, Coordinator};

use crate::registry::{SharedRegistry, CONTROL_PLANES_PREFIX};
use crate::{DataPlaneError, Entity};

/// Control planes that receive callbacks, by id: from configuration
/// (`dpf.controlplane.<id>.endpoint=…`) or `PUT /api/v1/signaling/controlplanes`.
///
/// A flow's callbacks go to the control plane whose id equals the flow's `participantId`, else
/// to the only one registered; with none (or several and no match) they are skipped and logged.
///
/// Shared by the cluster once the [`DataPlane`](crate::DataPlane) is built: kept in the
/// cluster key-value store under `dpf/controlplanes/<id>`, so the replica that finishes a flow
/// calls back the control plane registered through any replica, and a delete is cluster-wide;
/// control planes from configuration are written there at start (see [`crate::registry`]).
/// Their `authorization` holds credentials: never logged, redacted in every view.
///
/// Endpoints go through the data plane's [`AddressPolicy`] (HTTPS when required, denied
/// networks, allow-list) and are stored normalised.
#[derive(Debug)]
pub struct ControlPlaneRegistry {
    entries: SharedRegistry<ControlPlaneRegistration>,
    policy: RwLock<AddressPolicy>,
}

impl Default for ControlPlaneRegistry {
    fn default() -> Self {
        Self::with_policy(AddressPolicy::unrestricted())
    }
}

impl ControlPlaneRegistry {
    /// An empty registry accepting any http(s) endpoint ([`AddressPolicy::unrestricted`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty registry whose endpoints must pass `policy`.
    pub fn with_policy(policy: AddressPolicy) -> Self {
        Self {
            entries: SharedRegistry::new(Entity::ControlPlane, CONTROL_PLANES_PREFIX),
            policy: RwLock::new(policy),
        }
    }

    /// Checks endpoints registered from now on with `policy`.
    pub fn set_policy(&self, policy: AddressPolicy) {
        if let Ok(mut current) = self.policy.write() {
            *current = policy;
        }
    }

    /// Keeps the registrations in the cluster key-value store of `coordinator` from now on
    /// (the [`DataPlane`](crate::DataPlane) does this with its own).
    pub fn share(&self, coordinator: Arc<dyn Coordinator>) {
        self.entries.share(coordinator);
    }

    /// Writes the control planes from configuration to the shared store now (else on first
    /// use).
    ///
    /// # Errors
    /// [`DataPlaneError::Unavailable`] when the store does not answer.
    pub async fn publish(&self) -> Result<(), DataPlaneError> {
        self.entries.publish().await
    }

    /// The registration as it will be stored: id, endpoint and token endpoint checked, the
    /// endpoint normalised.
    fn checked(
        &self,
        mut registration: ControlPlaneRegistration,
    ) -> Result<ControlPlaneRegistration, DataPlaneError> {
        if registration.controlplane_id.trim().is_empty() {
            return Err(DataPlaneError::InvalidInput(
                "controlplaneId must not be blank".into(),
            ));
        }
        self.entries.check_id(&registration.controlplane_id)?;
        let policy = self
            .policy
            .read()
            .map_err(|_| DataPlaneError::Internal("control-plane registry lock poisoned".into()))?
            .clone();
        let endpoint = policy
            .check_url(&registration.endpoint)
            .map_err(|e| DataPlaneError::InvalidInput(format!("endpoint: {e}")))?;
        registration.endpoint = endpoint.to_string();
        // An OAuth 2 token endpoint is an address the data plane calls too.
        if let Some(token_endpoint) = registration.authorization.as_object().and_then(|fields| {
            fields
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case("tokenEndpoint"))
                .and_then(|(_, value)| value.as_str())
        }) {
            policy.check_url(token_endpoint).map_err(|e| {
                DataPlaneError::InvalidInput(format!("authorization.tokenEndpoint: {e}"))
            })?;
        }
        if !registration.authorization.is_object() {
            return Err(DataPlaneError::InvalidInput(
                "authorization must be an object (e.g. {\"type\":\"none\"})".into(),
            ));
        }
        Ok(registration)
    }

    /// Adds a registration from configuration (written to the shared store at start).
    ///
    /// # Errors
    /// As [`ControlPlaneRegistry::put`], without touching the store.
    pub fn configure(&self, registration: ControlPlaneRegistration) -> Result<(), DataPlaneError> {
        let registration = self.checked(registration)?;
        self.entries
            .configure(&registration.controlplane_id.clone(), registration)
    }

    /// Adds or replaces a registration, for the whole cluster.
    ///
    /// # Errors
    /// [`DataPlaneError::InvalidInput`] for a blank id, or an endpoint the address policy
    /// refuses (not an http(s) URL, `http://` when HTTPS is required, a denied network…);
    /// [`DataPlaneError::Unavailable`] when the store does not answer.
    pub async fn put(&self, registration: ControlPlaneRegistration) -> Result<(), DataPlaneError> {
        let registration = self.checked(registration)?;
        self.entries
            .put(&registration.controlplane_id.clone(), registration)
            .await
    }

    /// Removes a registration from the cluster; whether it existed.
    ///
    /// # Errors
    /// [`DataPlaneError::Unavailable`] when the store does not answer.
    pub async fn remove(&self, id: &str) -> Result<bool, DataPlaneError> {
        self.entries.remove(id).await
    }

    /// The control plane for a participant (see the type's doc), from this replica's cache
    /// when read within [`crate::registry::CACHE_TTL`], else from the store.
    ///
    /// # Errors
    /// [`DataPlaneError::Unavailable`] when the store does not answer.
    pub async fn for_participant(
        &self,
        participant_id: Option<&str>,
    ) -> Result<Option<ControlPlaneRegistration>, DataPlaneError> {
        if let Some(participant) = participant_id.filter(|p| self.entries.check_id(p).is_ok()) {
            if let Some(found) = self.entries.resolve(participant).await? {
                return Ok(Some(found));
            }
        }
        let mut all = self.entries.resolve_all().await?;
        Ok(match all.len() {
            1 => all.pop().map(|(_, registration)| registration),
            _ => None,
        })
    }

    /// Every registration, as the store has them now.
    ///
    /// # Errors
    /// [`DataPlaneError::Unavailable`] when the store does not answer.
    pub async fn list(&self) -> Result<Vec<ControlPlaneRegistration>, DataPlaneError> {
        Ok(self
            .entries
            .list()
            .await?
            .into_iter()
            .map(|(_, registration)| registration)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn registration(endpoint: &str, authorization: serde_json::Value) -> ControlPlaneRegistration {
        ControlPlaneRegistration {
            controlplane_id: "cp".into(),
            endpoint: endpoint.into(),
            authorization,
        }
    }

    #[tokio::test]
    async fn a_registration_through_one_replica_is_found_by_another_at_once() {
        let store: Arc<dyn Coordinator> = Arc::new(dataplane_store_memory::MemoryStore::new());
        let (a, b) = (ControlPlaneRegistry::new(), ControlPlaneRegistry::new());
        a.configure(ControlPlaneRegistration {
            controlplane_id: "configured".into(),
            ..registration("https://configured.example/cb", serde_json::json!({}))
        })
        .unwrap();
        a.share(store.clone());
        b.share(store);
        // b looks first: neither a miss nor an empty listing is remembered.
        assert_eq!(b.for_participant(Some("cp")).await.unwrap(), None);
        let bearer = serde_json::json!({"type": "bearer", "token": "t0k"});
        a.put(registration("https://cp.example/cb", bearer.clone()))
            .await
            .unwrap();
        let found = b.for_participant(Some("cp")).await.unwrap().unwrap();
        assert_eq!(found.endpoint, "https://cp.example/cb");
        assert_eq!(found.authorization, bearer);
        // a's configured control plane was published with a's first write: two now, so a
        // participant without its own gets none.
        assert_eq!(b.list().await.unwrap().len(), 2);
        assert_eq!(b.for_participant(Some("other")).await.unwrap(), None);
        // Deleted through b: the only one left takes every participant's callbacks, everywhere.
        assert!(b.remove("configured").await.unwrap());
        assert!(!a.remove("configured").await.unwrap());
        let only = a.for_participant(Some("other")).await.unwrap().unwrap();
        assert_eq!(only.controlplane_id, "cp");
    }

    #[tokio::test]
    async fn endpoints_and_token_endpoints_pass_the_address_policy() {
        let policy = AddressPolicy::builder()
            .require_https(true)
            .denied_networks(
                address_policy::parse_networks(address_policy::SERVER_DENIED_NETWORKS).unwrap(),
            )
            .build()
            .unwrap();
        let registry = ControlPlaneRegistry::with_policy(policy);
        let none = serde_json::json!({"type": "none"});
        for bad in [
            "http://cp.example/cb",
            " https://cp.example/cb",
            "https://169.254.169.254/cb",
            "https://10.0.0.1/cb",
        ] {
            assert!(
                registry.put(registration(bad, none.clone())).await.is_err(),
                "{bad:?}"
            );
        }
        let oauth = serde_json::json!({
            "type": "oauth2_client_credentials", "tokenEndpoint": "https://127.0.0.1/token",
            "clientId": "c", "clientSecret": "s"
        });
        assert!(registry
            .put(registration("https://cp.example/cb", oauth))
            .await
            .is_err());
        registry
            .put(registration("HTTPS://CP.example/cb", none))
            .await
            .unwrap();
        assert_eq!(
            registry.list().await.unwrap()[0].endpoint,
            "https://cp.example/cb"
        );
    }
}
