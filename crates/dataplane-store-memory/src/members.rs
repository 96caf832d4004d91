//! Members: registration (refusing a second live incarnation of a name), renewal, state,
//! removal, and the session checks the coordination calls share.

use chrono::{DateTime, Duration, Utc};
use dataplane_spi::{
    LoadReport, Member, MemberLoad, MemberLoads, MemberRegistration, Session, StoreError,
    StoreResult,
};

use crate::State;

fn membership_lost(runtime_id: &str, incarnation: &str) -> StoreError {
    StoreError::MembershipLost(format!(
        "replica '{runtime_id}' incarnation '{incarnation}' is not the registered member"
    ))
}

impl State {
    pub(crate) fn live_member(&self, runtime_id: &str, now: DateTime<Utc>) -> bool {
        self.members
            .get(runtime_id)
            .is_some_and(|m| m.lease_expires_at > now)
    }

    /// Whether `session` is the registered incarnation of its member, with a live lease.
    pub(crate) fn session_alive(&self, session: &Session, now: DateTime<Utc>) -> bool {
        self.members
            .get(&session.runtime_id)
            .is_some_and(|m| m.incarnation == session.incarnation && m.lease_expires_at > now)
    }

    /// Releases every flow `runtime_id` owns, bumping their epochs (fencing the old owner).
    fn release_all(&mut self, runtime_id: &str, now: DateTime<Utc>) -> u64 {
        let mut released = 0;
        for flow in self.flows.values_mut() {
            if flow.runtime_id.as_deref() == Some(runtime_id) {
                flow.runtime_id = None;
                flow.epoch += 1;
                flow.updated_at = now;
                released += 1;
            }
        }
        released
    }

    pub(crate) fn register_member(
        &mut self,
        registration: &MemberRegistration,
        now: DateTime<Utc>,
    ) -> StoreResult<Member> {
        let name = registration.runtime_id.as_str();
        if let Some(existing) = self.members.get(name) {
            if existing.incarnation != registration.incarnation && existing.lease_expires_at > now {
                return Err(StoreError::Conflict(format!(
                    "replica name '{name}' is in use by a live incarnation until {}; retry after its lease expires",
                    existing.lease_expires_at
                )));
            }
        }
        let same_incarnation = self
            .members
            .get(name)
            .is_some_and(|m| m.incarnation == registration.incarnation);
        if !same_incarnation {
            self.release_all(name, now);
            self.loads.remove(name);
        }
        let member = Member {
            runtime_id: name.to_owned(),
            incarnation: registration.incarnation.clone(),
            heartbeat_at: now,
            lease_expires_at: now + Duration::milliseconds(registration.lease_ms),
            started_at: now,
            state: registration.state.clone(),
        };
        self.members.insert(name.to_owned(), member.clone());
        Ok(member)
    }

    pub(crate) fn renew_member(
        &mut self,
        runtime_id: &str,
        incarnation: &str,
        lease_ms: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<Member> {
        match self.members.get_mut(runtime_id) {
            Some(m) if m.incarnation == incarnation && m.lease_expires_at > now => {
                m.heartbeat_at = now;
                m.lease_expires_at = now + Duration::milliseconds(lease_ms);
                Ok(m.clone())
            }
            _ => Err(membership_lost(runtime_id, incarnation)),
        }
    }

    /// [`Self::renew_member`] recording `report` in the same step.
    pub(crate) fn renew_member_reporting(
        &mut self,
        runtime_id: &str,
        incarnation: &str,
        lease_ms: i64,
        report: &LoadReport,
        now: DateTime<Utc>,
    ) -> StoreResult<Member> {
        let member = self.renew_member(runtime_id, incarnation, lease_ms, now)?;
        self.loads
            .insert(runtime_id.to_owned(), (report.clone(), now));
        Ok(member)
    }

    /// Every member with its last report.
    pub(crate) fn member_loads(&self, now: DateTime<Utc>) -> MemberLoads {
        MemberLoads {
            now,
            members: self
                .members
                .values()
                .map(|member| {
                    let load = self.loads.get(&member.runtime_id);
                    MemberLoad {
                        member: member.clone(),
                        report: load.map(|(report, _)| report.clone()),
                        reported_at: load.map(|(_, at)| *at),
                    }
                })
                .collect(),
        }
    }

    pub(crate) fn set_member_state(
        &mut self,
        runtime_id: &str,
        incarnation: &str,
        new_state: &str,
    ) -> StoreResult<()> {
        match self.members.get_mut(runtime_id) {
            Some(m) if m.incarnation == incarnation => {
                new_state.clone_into(&mut m.state);
                Ok(())
            }
            _ => Err(membership_lost(runtime_id, incarnation)),
        }
    }

    pub(crate) fn remove_member(
        &mut self,
        runtime_id: &str,
        incarnation: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        match self.members.get(runtime_id) {
            Some(m) if m.incarnation == incarnation => {
                self.members.remove(runtime_id);
                self.loads.remove(runtime_id);
                Ok(self.release_all(runtime_id, now))
            }
            _ => Err(membership_lost(runtime_id, incarnation)),
        }
    }
}
