use std::collections::BTreeMap;
use std::sync::RwLock;

use dataplane_spi::ControlPlaneRegistration;

use crate::DataPlaneError;

/// Control planes that receive callbacks, by id: from configuration
/// (`dpf.controlplane.<id>.endpoint=…`) or `PUT /api/v1/signaling/controlplanes`.
///
/// A flow's callbacks go to the control plane whose id equals the flow's `participantId`, else
/// to the only one registered; with none (or several and no match) they are skipped and logged.
#[derive(Debug, Default)]
pub struct ControlPlaneRegistry {
    entries: RwLock<BTreeMap<String, ControlPlaneRegistration>>,
    require_https: std::sync::atomic::AtomicBool,
}

impl ControlPlaneRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Refuses plain `http://` endpoints from now on (the DPS HTTP profile requires HTTPS).
    pub fn require_https(&self, on: bool) {
        self.require_https
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Adds or replaces a registration.
    ///
    /// # Errors
    /// [`DataPlaneError::InvalidInput`] for a blank id, an endpoint that is not an http(s) URL,
    /// or an `http://` endpoint when HTTPS is required.
    pub fn put(&self, registration: ControlPlaneRegistration) -> Result<(), DataPlaneError> {
        if registration.controlplane_id.trim().is_empty() {
            return Err(DataPlaneError::InvalidInput(
                "controlplaneId must not be blank".into(),
            ));
        }
        match url::Url::parse(&registration.endpoint) {
            Ok(url)
                if url.scheme() == "http"
                    && self.require_https.load(std::sync::atomic::Ordering::Relaxed) =>
            {
                return Err(DataPlaneError::InvalidInput(format!(
                    "endpoint '{}' is plain HTTP: the DPS HTTP profile requires HTTPS (dpf.http.insecure=true allows it for development)",
                    registration.endpoint
                )))
            }
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            _ => {
                return Err(DataPlaneError::InvalidInput(format!(
                    "endpoint '{}' is not an absolute http(s) URL",
                    registration.endpoint
                )))
            }
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
