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
