//! The Data Plane Signaling operations, as `impl DataPlane` blocks by concern:
//!
//! - `request`: what every incoming message passes (field checks, address policy, the metadata
//!   kept, duplicate process ids);
//! - `provider`: `start` (provider push and pull);
//! - `consumer`: `prepare` and `started` (consumer push and pull);
//! - `control`: `suspend`, `terminate`, `resume`, `completed` on an existing flow, whoever owns
//!   it;
//! - `reply`: the answers ([`Outcome`], status messages, the addresses handed out) and callbacks.

use dataplane_spi::{DataFlow, FlowKind};

use crate::{DataPlane, DataPlaneError};

mod consumer;
mod control;
mod provider;
mod reply;
mod request;

pub(crate) use reply::message;
pub use reply::Outcome;

type Result<T> = std::result::Result<T, DataPlaneError>;

/// Private metadata key holding the digest of the flow's bearer token for pull and ingest (the
/// token itself is handed out once and never stored).
pub(crate) const TOKEN_KEY: &str = dataplane_spi::secrets::TOKEN_DIGEST_KEY;

pub(crate) fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn illegal(flow_id: &str, state: &str, action: &str) -> DataPlaneError {
    DataPlaneError::illegal(action, flow_id, state)
}

pub(crate) fn runs_pipeline(kind: FlowKind) -> bool {
    matches!(kind, FlowKind::ProviderPush | FlowKind::ConsumerPull)
}

impl DataPlane {
    /// Finds a flow by its id or, failing that, by its process id.
    ///
    /// # Errors
    /// [`DataPlaneError::NotFound`].
    pub async fn resolve(&self, id: &str) -> Result<DataFlow> {
        if let Some(flow) = self.store.find(id).await? {
            return Ok(flow);
        }
        self.store
            .find_by_process_id(id)
            .await?
            .ok_or_else(|| DataPlaneError::not_found(crate::Entity::DataFlow, id))
    }

    /// DPS `status`.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn status(&self, id: &str) -> Result<DataFlow> {
        self.resolve(id).await
    }
}
