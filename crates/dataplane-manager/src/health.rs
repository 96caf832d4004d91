//! Readiness of a replica.

use crate::DataPlane;
use cluster::membership::MemberState;

impl DataPlane {
    /// Readiness: the store answers and this replica is a member that may take work or is
    /// deliberately idle (outside the baseline); not while joining, stopping, or when its
    /// lease is in doubt.
    ///
    /// # Errors
    /// A reason, for an `Unavailable` answer.
    pub async fn ready(&self) -> std::result::Result<&'static str, String> {
        self.store
            .now()
            .await
            .map_err(|e| format!("store unreachable: {e}"))?;
        if !self.membership.lease_valid() {
            return Err("membership lease not confirmed".into());
        }
        match self.membership.reported_state() {
            Some(MemberState::Healthy) => Ok("ACTIVE"),
            Some(MemberState::Idle) => Ok("IDLE"),
            Some(state) => Err(format!("replica is {}", state.as_str())),
            None => Err("replica state unknown".into()),
        }
    }
}
