use std::collections::BTreeMap;
use std::sync::RwLock;

use address_policy::AddressPolicy;
use dataplane_spi::ControlPlaneRegistration;

use crate::DataPlaneError;

/// Control planes that receive callbacks, by id: from configuration
/// (`dpf.controlplane.<id>.endpoint=…`) or `PUT /api/v1/signaling/controlplanes`.
///
/// A flow's callbacks go to the control plane whose id equals the flow's `participantId`, else
/// to the only one registered; with none (or several and no match) they are skipped and logged.
///
/// Endpoints go through the data plane's [`AddressPolicy`] (HTTPS when required, denied
/// networks, allow-list) and are stored normalised.
#[derive(Debug)]
pub struct ControlPlaneRegistry {
    entries: RwLock<BTreeMap<String, ControlPlaneRegistration>>,
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
            entries: RwLock::default(),
            policy: RwLock::new(policy),
        }
    }

    /// Checks endpoints registered from now on with `policy`.
    pub fn set_policy(&self, policy: AddressPolicy) {
        if let Ok(mut current) = self.policy.write() {
            *current = policy;
        }
    }

    /// Adds or replaces a registration.
    ///
    /// # Errors
    /// [`DataPlaneError::InvalidInput`] for a blank id, or an endpoint the address policy
    /// refuses (not an http(s) URL, `http://` when HTTPS is required, a denied network…).
    pub fn put(&self, mut registration: ControlPlaneRegistration) -> Result<(), DataPlaneError> {
        if registration.controlplane_id.trim().is_empty() {
            return Err(DataPlaneError::InvalidInput(
                "controlplaneId must not be blank".into(),
            ));
        }
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
        self.entries
            .write()
            .map_err(|_| DataPlaneError::Internal("control-plane registry lock poisoned".into()))?
            .insert(registration.controlplane_id.clone(), registration);
        Ok(())
    }

    /// Removes a registration; whether it existed.
    ///
    /// # Errors
    /// Only on a poisoned lock.
    pub fn remove(&self, id: &str) -> Result<bool, DataPlaneError> {
        Ok(self
            .entries
            .write()
            .map_err(|_| DataPlaneError::Internal("control-plane registry lock poisoned".into()))?
            .remove(id)
            .is_some())
    }

    /// The control plane for a participant (see the type's doc).
    pub fn for_participant(
        &self,
        participant_id: Option<&str>,
    ) -> Option<ControlPlaneRegistration> {
        let entries = self.entries.read().ok()?;
        if let Some(found) = participant_id.and_then(|p| entries.get(p)) {
            return Some(found.clone());
        }
        if entries.len() == 1 {
            return entries.values().next().cloned();
        }
        None
    }

    /// Every registration.
    pub fn list(&self) -> Vec<ControlPlaneRegistration> {
        self.entries
            .read()
            .map(|e| e.values().cloned().collect())
            .unwrap_or_default()
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

    #[test]
    fn endpoints_and_token_endpoints_pass_the_address_policy() {
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
                registry.put(registration(bad, none.clone())).is_err(),
                "{bad:?}"
            );
        }
        let oauth = serde_json::json!({
            "type": "oauth2_client_credentials", "tokenEndpoint": "https://127.0.0.1/token",
            "clientId": "c", "clientSecret": "s"
        });
        assert!(registry
            .put(registration("https://cp.example/cb", oauth))
            .is_err());
        registry
            .put(registration("HTTPS://CP.example/cb", none))
            .unwrap();
        assert_eq!(registry.list()[0].endpoint, "https://cp.example/cb");
    }
}
