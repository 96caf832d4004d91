//! [`InMemoryDataFlowStore`]: flows and members in process memory, for a single replica,
//! tests and demos. Its clock is the process clock, which is sound because nothing is shared.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use crate::{
    DataFlow, DataFlowState, DataFlowStore, FlowOwner, FlowUpdate, Member, MemberRegistration,
    NewDataFlow, StoreError, StoreResult,
};

/// In-memory [`DataFlowStore`].
#[derive(Debug, Default)]
pub struct InMemoryDataFlowStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    flows: BTreeMap<String, DataFlow>,
    members: BTreeMap<String, Member>,
}

impl State {
    fn live_member(&self, runtime_id: &str, now: DateTime<Utc>) -> bool {
        self.members
            .get(runtime_id)
            .is_some_and(|m| m.lease_expires_at > now)
    }

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

    /// Takes up to `limit` flows matching `eligible`, oldest state first, for `runtime_id`.
    fn acquire(
        &mut self,
        runtime_id: &str,
        states: &[DataFlowState],
        limit: usize,
        now: DateTime<Utc>,
        eligible: impl Fn(&Self, &DataFlow) -> bool,
    ) -> Vec<DataFlow> {
        if !self.live_member(runtime_id, now) {
            return Vec::new();
        }
        let mut candidates: Vec<(DateTime<Utc>, String)> = self
            .flows
            .values()
            .filter(|f| states.contains(&f.state) && eligible(self, f))
            .map(|f| (f.state_timestamp, f.id.clone()))
            .collect();
        candidates.sort();
        candidates.truncate(limit);
        let mut acquired = Vec::with_capacity(candidates.len());
        for (_, id) in candidates {
            if let Some(flow) = self.flows.get_mut(&id) {
                flow.runtime_id = Some(runtime_id.to_owned());
                flow.epoch += 1;
                flow.updated_at = now;
                acquired.push(flow.clone());
            }
        }
        acquired
    }

    fn owned_mut(&mut self, owner: &FlowOwner, flow_id: &str) -> StoreResult<&mut DataFlow> {
        let flow = self
            .flows
            .get_mut(flow_id)
            .ok_or_else(|| StoreError::NotFound {
                entity: "data flow",
                id: flow_id.to_owned(),
            })?;
        if flow.runtime_id.as_deref() != Some(owner.runtime_id.as_str())
            || flow.epoch != owner.epoch
        {
            return Err(StoreError::LeaseLost {
                flow_id: flow_id.to_owned(),
                runtime_id: owner.runtime_id.clone(),
                epoch: owner.epoch,
            });
        }
        Ok(flow)
    }
}

/// Applies an update the way the SQL stores do.
fn apply_update(flow: &mut DataFlow, update: &FlowUpdate, now: DateTime<Utc>) {
    if let Some(new_state) = update.state {
        flow.state_count = if flow.state == new_state {
            flow.state_count + 1
        } else {
            1
        };
        flow.state = new_state;
        flow.state_timestamp = now;
    }
    if let Some(detail) = &update.error_detail {
        flow.error_detail = Some(detail.clone());
    }
    if let Some(checkpoint) = &update.checkpoint {
        let current = flow.checkpoint.as_ref().map_or(0, |c| c.bytes);
        if checkpoint.bytes >= current {
            flow.checkpoint = Some(checkpoint.clone());
        }
    }
    if let Some(metadata) = &update.metadata {
        flow.metadata = metadata.clone();
    }
    if let Some(source) = &update.source {
        flow.source = source.clone();
    }
    if let Some(destination) = &update.destination {
        flow.destination = Some(destination.clone());
    }
    flow.updated_at = now;
}

fn membership_lost(runtime_id: &str, incarnation: &str) -> StoreError {
    StoreError::MembershipLost(format!(
        "replica '{runtime_id}' incarnation '{incarnation}' is not the registered member"
    ))
}

impl InMemoryDataFlowStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut State, DateTime<Utc>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let mut guard = self
            .state
            .lock()
            .map_err(|_| StoreError::Internal("in-memory store lock poisoned".into()))?;
        f(&mut guard, Utc::now())
    }
}

#[async_trait]
impl DataFlowStore for InMemoryDataFlowStore {
    async fn now(&self) -> StoreResult<DateTime<Utc>> {
        Ok(Utc::now())
    }

    async fn create(&self, new: &NewDataFlow) -> StoreResult<DataFlow> {
        self.with(|state, now| {
            if state.flows.contains_key(&new.id) {
                return Err(StoreError::AlreadyExists {
                    entity: "data flow",
                    id: new.id.clone(),
                });
            }
            if state.flows.values().any(|f| f.process_id == new.process_id) {
                return Err(StoreError::AlreadyExists {
                    entity: "data flow with process id",
                    id: new.process_id.clone(),
                });
            }
            let flow = DataFlow {
                id: new.id.clone(),
                process_id: new.process_id.clone(),
                kind: new.kind,
                profile: new.profile.clone(),
                state: new.state,
                state_count: 1,
                state_timestamp: now,
                created_at: now,
                updated_at: now,
                runtime_id: new.runtime_id.clone(),
                epoch: i64::from(new.runtime_id.is_some()),
                source: new.source.clone(),
                destination: new.destination.clone(),
                metadata: new.metadata.clone(),
                participant_id: new.participant_id.clone(),
                callback_address: new.callback_address.clone(),
                checkpoint: None,
                error_detail: None,
            };
            state.flows.insert(flow.id.clone(), flow.clone());
            Ok(flow)
        })
    }

    async fn find(&self, id: &str) -> StoreResult<Option<DataFlow>> {
        self.with(|state, _| Ok(state.flows.get(id).cloned()))
    }

    async fn find_by_process_id(&self, process_id: &str) -> StoreResult<Option<DataFlow>> {
        self.with(|state, _| {
            Ok(state
                .flows
                .values()
                .find(|f| f.process_id == process_id)
                .cloned())
        })
    }

    async fn list(&self, states: &[DataFlowState], limit: usize) -> StoreResult<Vec<DataFlow>> {
        self.with(|state, _| {
            let mut flows: Vec<DataFlow> = state
                .flows
                .values()
                .filter(|f| states.is_empty() || states.contains(&f.state))
                .cloned()
                .collect();
            flows.sort_by(|a, b| {
                a.created_at
                    .cmp(&b.created_at)
                    .then_with(|| a.id.cmp(&b.id))
            });
            flows.truncate(limit);
            Ok(flows)
        })
    }

    async fn register_member(&self, registration: &MemberRegistration) -> StoreResult<Member> {
        self.with(|state, now| {
            let name = registration.runtime_id.as_str();
            if let Some(existing) = state.members.get(name) {
                if existing.incarnation != registration.incarnation && existing.lease_expires_at > now {
                    return Err(StoreError::Conflict(format!(
                        "replica name '{name}' is in use by a live incarnation until {}; retry after its lease expires",
                        existing.lease_expires_at
                    )));
                }
            }
            let same_incarnation = state
                .members
                .get(name)
                .is_some_and(|m| m.incarnation == registration.incarnation);
            if !same_incarnation {
                state.release_all(name, now);
            }
            let member = Member {
                runtime_id: name.to_owned(),
                incarnation: registration.incarnation.clone(),
                heartbeat_at: now,
                lease_expires_at: now + Duration::milliseconds(registration.lease_ms),
                started_at: now,
                state: registration.state.clone(),
            };
            state.members.insert(name.to_owned(), member.clone());
            Ok(member)
        })
    }

    async fn renew_member(
        &self,
        runtime_id: &str,
        incarnation: &str,
        lease_ms: i64,
    ) -> StoreResult<Member> {
        self.with(|state, now| match state.members.get_mut(runtime_id) {
            Some(m) if m.incarnation == incarnation && m.lease_expires_at > now => {
                m.heartbeat_at = now;
                m.lease_expires_at = now + Duration::milliseconds(lease_ms);
                Ok(m.clone())
            }
            _ => Err(membership_lost(runtime_id, incarnation)),
        })
    }

    async fn set_member_state(
        &self,
        runtime_id: &str,
        incarnation: &str,
        new_state: &str,
    ) -> StoreResult<()> {
        self.with(|state, _| match state.members.get_mut(runtime_id) {
            Some(m) if m.incarnation == incarnation => {
                new_state.clone_into(&mut m.state);
                Ok(())
            }
            _ => Err(membership_lost(runtime_id, incarnation)),
        })
    }

    async fn remove_member(&self, runtime_id: &str, incarnation: &str) -> StoreResult<u64> {
        self.with(|state, now| match state.members.get(runtime_id) {
            Some(m) if m.incarnation == incarnation => {
                state.members.remove(runtime_id);
                Ok(state.release_all(runtime_id, now))
            }
            _ => Err(membership_lost(runtime_id, incarnation)),
        })
    }

    async fn list_members(&self) -> StoreResult<Vec<Member>> {
        self.with(|state, _| Ok(state.members.values().cloned().collect()))
    }

    async fn claim(
        &self,
        runtime_id: &str,
        states: &[DataFlowState],
        limit: usize,
    ) -> StoreResult<Vec<DataFlow>> {
        self.with(|state, now| {
            Ok(state.acquire(runtime_id, states, limit, now, |_, f| {
                f.runtime_id.is_none()
            }))
        })
    }

    async fn take_over(
        &self,
        runtime_id: &str,
        states: &[DataFlowState],
        limit: usize,
    ) -> StoreResult<Vec<DataFlow>> {
        self.with(|state, now| {
            Ok(state.acquire(runtime_id, states, limit, now, |s, f| {
                f.runtime_id
                    .as_deref()
                    .is_some_and(|owner| owner != runtime_id && !s.live_member(owner, now))
            }))
        })
    }

    async fn update_owned(
        &self,
        owner: &FlowOwner,
        flow_id: &str,
        update: &FlowUpdate,
    ) -> StoreResult<DataFlow> {
        self.with(|state, now| {
            let flow = state.owned_mut(owner, flow_id)?;
            if flow.state.is_terminal()
                || (!update.only_from.is_empty() && !update.only_from.contains(&flow.state))
            {
                return Err(StoreError::WrongState {
                    flow_id: flow_id.to_owned(),
                    state: flow.state.as_str().to_owned(),
                });
            }
            apply_update(flow, update, now);
            Ok(flow.clone())
        })
    }

    async fn transition(
        &self,
        flow_id: &str,
        from: &[DataFlowState],
        to: DataFlowState,
        new_owner: Option<&str>,
        update: &FlowUpdate,
    ) -> StoreResult<DataFlow> {
        self.with(|state, now| {
            let flow = state
                .flows
                .get_mut(flow_id)
                .ok_or_else(|| StoreError::NotFound {
                    entity: "data flow",
                    id: flow_id.to_owned(),
                })?;
            if !from.contains(&flow.state) {
                return Err(StoreError::WrongState {
                    flow_id: flow_id.to_owned(),
                    state: flow.state.as_str().to_owned(),
                });
            }
            let update = FlowUpdate {
                state: Some(to),
                ..update.clone()
            };
            apply_update(flow, &update, now);
            if let Some(owner) = new_owner {
                flow.runtime_id = Some(owner.to_owned());
                flow.epoch += 1;
            }
            Ok(flow.clone())
        })
    }

    async fn list_owned(
        &self,
        runtime_id: &str,
        states: &[DataFlowState],
        limit: usize,
    ) -> StoreResult<Vec<DataFlow>> {
        self.with(|state, _| {
            let mut flows: Vec<DataFlow> = state
                .flows
                .values()
                .filter(|f| {
                    f.runtime_id.as_deref() == Some(runtime_id) && states.contains(&f.state)
                })
                .cloned()
                .collect();
            flows.sort_by(|a, b| {
                a.state_timestamp
                    .cmp(&b.state_timestamp)
                    .then_with(|| a.id.cmp(&b.id))
            });
            flows.truncate(limit);
            Ok(flows)
        })
    }

    async fn release(&self, owner: &FlowOwner, flow_id: &str) -> StoreResult<()> {
        self.with(|state, now| {
            let flow = state.owned_mut(owner, flow_id)?;
            flow.runtime_id = None;
            flow.updated_at = now;
            Ok(())
        })
    }
}

#[cfg(test)]
mod conformance_tests {
    use std::sync::Arc;

    async fn fresh() -> Arc<dyn crate::DataFlowStore> {
        Arc::new(super::InMemoryDataFlowStore::new())
    }

    crate::data_flow_store_conformance!(fresh());
}
