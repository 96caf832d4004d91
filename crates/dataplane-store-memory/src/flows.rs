//! The [`DataFlowStore`] implementation: flows (create, find, list, claims, takeovers, fenced
//! owner writes, conditional transitions, release); the member calls go to `members`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use dataplane_spi::{
    DataFlow, DataFlowState, DataFlowStore, FlowOwner, FlowUpdate, Member, MemberRegistration,
    NewDataFlow, StoreError, StoreResult,
};

use crate::{MemoryStore, State};

impl State {
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

    fn flow_mut(&mut self, flow_id: &str) -> StoreResult<&mut DataFlow> {
        self.flows
            .get_mut(flow_id)
            .ok_or_else(|| StoreError::NotFound {
                entity: "data flow",
                id: flow_id.to_owned(),
            })
    }

    fn owned_mut(&mut self, owner: &FlowOwner, flow_id: &str) -> StoreResult<&mut DataFlow> {
        let flow = self.flow_mut(flow_id)?;
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

fn wrong_state(flow: &DataFlow) -> StoreError {
    StoreError::WrongState {
        flow_id: flow.id.clone(),
        state: flow.state.as_str().to_owned(),
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

/// Sorts by `key` then id and keeps the first `limit`.
fn sorted<K: Ord>(
    mut flows: Vec<DataFlow>,
    limit: usize,
    key: impl Fn(&DataFlow) -> K,
) -> Vec<DataFlow> {
    flows.sort_by(|a, b| key(a).cmp(&key(b)).then_with(|| a.id.cmp(&b.id)));
    flows.truncate(limit);
    flows
}

#[async_trait]
impl DataFlowStore for MemoryStore {
    async fn now(&self) -> StoreResult<DateTime<Utc>> {
        Ok(MemoryStore::now(self))
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
            let flows = state
                .flows
                .values()
                .filter(|f| states.is_empty() || states.contains(&f.state))
                .cloned()
                .collect();
            Ok(sorted(flows, limit, |f| f.created_at))
        })
    }

    async fn register_member(&self, registration: &MemberRegistration) -> StoreResult<Member> {
        self.with(|state, now| state.register_member(registration, now))
    }

    async fn renew_member(
        &self,
        runtime_id: &str,
        incarnation: &str,
        lease_ms: i64,
    ) -> StoreResult<Member> {
        self.with(|state, now| state.renew_member(runtime_id, incarnation, lease_ms, now))
    }

    async fn set_member_state(
        &self,
        runtime_id: &str,
        incarnation: &str,
        new_state: &str,
    ) -> StoreResult<()> {
        self.with(|state, _| state.set_member_state(runtime_id, incarnation, new_state))
    }

    async fn remove_member(&self, runtime_id: &str, incarnation: &str) -> StoreResult<u64> {
        self.with(|state, now| state.remove_member(runtime_id, incarnation, now))
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
                return Err(wrong_state(flow));
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
            let flow = state.flow_mut(flow_id)?;
            if !from.contains(&flow.state) {
                return Err(wrong_state(flow));
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
            let flows = state
                .flows
                .values()
                .filter(|f| {
                    f.runtime_id.as_deref() == Some(runtime_id) && states.contains(&f.state)
                })
                .cloned()
                .collect();
            Ok(sorted(flows, limit, |f| f.state_timestamp))
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
