//! [`InMemoryDataFlowStore`]: flows and members in process memory, for a single replica,
//! tests and demos. Its clock is the process clock, which is sound because nothing is shared.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use crate::coordination::validate_key;
use crate::{
    CoordinationError, CoordinationResult, Coordinator, DataFlow, DataFlowState, DataFlowStore,
    Expected, FlowOwner, FlowUpdate, KvEntry, KvEvent, KvEventKind, Leader, Member,
    MemberRegistration, NewDataFlow, Session, StoreError, StoreResult,
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
    kv: BTreeMap<String, KvEntry>,
    events: Vec<KvEvent>,
    revision: i64,
    compacted: i64,
    leader: Option<Leader>,
    config_revisions: BTreeMap<String, i64>,
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

fn session_alive(state: &State, session: &Session, now: DateTime<Utc>) -> bool {
    state
        .members
        .get(&session.runtime_id)
        .is_some_and(|m| m.incarnation == session.incarnation && m.lease_expires_at > now)
}

fn check_expected(
    key: &str,
    expected: Expected,
    current: Option<&KvEntry>,
) -> CoordinationResult<()> {
    let ok = match (expected, current) {
        (Expected::Any, _) | (Expected::Absent, None) => true,
        (Expected::Version(v), Some(entry)) => entry.version == v,
        _ => false,
    };
    if ok {
        return Ok(());
    }
    Err(CoordinationError::Conflict {
        key: key.to_owned(),
        expected: match expected {
            Expected::Any => "anything".into(),
            Expected::Absent => "no key".into(),
            Expected::Version(v) => format!("version {v}"),
        },
        actual: current.map_or_else(|| "no key".to_owned(), |e| format!("version {}", e.version)),
    })
}

impl State {
    fn record(&mut self, kind: KvEventKind, entry: &KvEntry) -> KvEvent {
        let event = KvEvent {
            revision: entry.mod_revision,
            kind,
            key: entry.key.clone(),
            value: entry.value.clone(),
            version: entry.version,
        };
        self.events.push(event.clone());
        event
    }

    fn leads(&self, leader: &Session, term: i64, now: DateTime<Utc>) -> bool {
        self.leader.as_ref().is_some_and(|l| {
            l.leader == leader.runtime_id
                && l.incarnation == leader.incarnation
                && l.term == term
                && l.expires_at > now
        })
    }
}

fn stale(leader: &Session, term: i64) -> CoordinationError {
    CoordinationError::StaleTerm {
        leader: leader.runtime_id.clone(),
        term,
    }
}

impl InMemoryDataFlowStore {
    fn coordinate<T>(
        &self,
        f: impl FnOnce(&mut State, DateTime<Utc>) -> CoordinationResult<T>,
    ) -> CoordinationResult<T> {
        let mut guard = self
            .state
            .lock()
            .map_err(|_| CoordinationError::Internal("in-memory store lock poisoned".into()))?;
        f(&mut guard, Utc::now())
    }
}

#[async_trait]
impl Coordinator for InMemoryDataFlowStore {
    async fn kv_get(&self, key: &str) -> CoordinationResult<Option<KvEntry>> {
        self.coordinate(|state, _| Ok(state.kv.get(key).cloned()))
    }

    async fn kv_put(
        &self,
        key: &str,
        value: &str,
        expected: Expected,
        session: Option<&Session>,
    ) -> CoordinationResult<KvEntry> {
        validate_key(key)?;
        if value.len() > crate::coordination::MAX_VALUE_LEN {
            return Err(CoordinationError::InvalidInput("value too large".into()));
        }
        self.coordinate(|state, now| {
            check_expected(key, expected, state.kv.get(key))?;
            if let Some(session) = session {
                if !session_alive(state, session, now) {
                    return Err(CoordinationError::SessionGone(session.runtime_id.clone()));
                }
            }
            state.revision += 1;
            let revision = state.revision;
            let entry = match state.kv.get(key) {
                Some(old) => KvEntry {
                    value: value.to_owned(),
                    version: old.version + 1,
                    mod_revision: revision,
                    session: session.map(|s| s.runtime_id.clone()),
                    ..old.clone()
                },
                None => KvEntry {
                    key: key.to_owned(),
                    value: value.to_owned(),
                    version: 1,
                    create_revision: revision,
                    mod_revision: revision,
                    session: session.map(|s| s.runtime_id.clone()),
                },
            };
            state.kv.insert(key.to_owned(), entry.clone());
            state.record(KvEventKind::Put, &entry);
            Ok(entry)
        })
    }

    async fn kv_delete(&self, key: &str, expected: Expected) -> CoordinationResult<KvEvent> {
        self.coordinate(|state, _| {
            let current = state
                .kv
                .get(key)
                .cloned()
                .ok_or_else(|| CoordinationError::NotFound(key.to_owned()))?;
            check_expected(key, expected, Some(&current))?;
            state.kv.remove(key);
            state.revision += 1;
            let entry = KvEntry {
                mod_revision: state.revision,
                ..current
            };
            Ok(state.record(KvEventKind::Delete, &entry))
        })
    }

    async fn kv_list(&self, prefix: &str) -> CoordinationResult<(Vec<KvEntry>, i64)> {
        self.coordinate(|state, _| {
            let entries = state
                .kv
                .range(prefix.to_owned()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(_, e)| e.clone())
                .collect();
            Ok((entries, state.revision))
        })
    }

    async fn kv_events(
        &self,
        prefix: &str,
        after: i64,
        limit: usize,
    ) -> CoordinationResult<Vec<KvEvent>> {
        self.coordinate(|state, _| {
            if after < state.compacted {
                return Err(CoordinationError::Compacted {
                    requested: after,
                    compacted: state.compacted,
                });
            }
            Ok(state
                .events
                .iter()
                .filter(|e| e.revision > after && e.key.starts_with(prefix))
                .take(limit)
                .cloned()
                .collect())
        })
    }

    async fn kv_expire_sessions(&self) -> CoordinationResult<u64> {
        self.coordinate(|state, now| {
            let dead: Vec<String> = state
                .kv
                .values()
                .filter(|e| {
                    e.session.as_ref().is_some_and(|s| {
                        state
                            .members
                            .get(s)
                            .is_none_or(|m| m.lease_expires_at <= now)
                    })
                })
                .map(|e| e.key.clone())
                .collect();
            for key in &dead {
                if let Some(entry) = state.kv.remove(key) {
                    state.revision += 1;
                    let entry = KvEntry {
                        mod_revision: state.revision,
                        ..entry
                    };
                    state.record(KvEventKind::Delete, &entry);
                }
            }
            Ok(dead.len() as u64)
        })
    }

    async fn kv_compact(&self, keep: i64) -> CoordinationResult<i64> {
        self.coordinate(|state, _| {
            let keep = usize::try_from(keep.max(0)).unwrap_or(0);
            if state.events.len() > keep {
                let cut = state.events.len() - keep;
                state.compacted = state.events[cut - 1].revision;
                state.events.drain(..cut);
            }
            Ok(state.compacted)
        })
    }

    async fn campaign(
        &self,
        session: &Session,
        lease_ms: i64,
    ) -> CoordinationResult<Option<Leader>> {
        self.coordinate(|state, now| {
            if !session_alive(state, session, now) {
                return Err(CoordinationError::SessionGone(session.runtime_id.clone()));
            }
            let expires_at = now + Duration::milliseconds(lease_ms);
            let (mine, valid, term) = match &state.leader {
                Some(l) => (
                    l.leader == session.runtime_id && l.incarnation == session.incarnation,
                    l.expires_at > now,
                    l.term,
                ),
                None => (false, false, 0),
            };
            match (&mut state.leader, valid, mine) {
                (Some(l), true, true) => l.expires_at = expires_at,
                (Some(_), true, false) => {}
                (slot, _, _) => {
                    *slot = Some(Leader {
                        leader: session.runtime_id.clone(),
                        incarnation: session.incarnation.clone(),
                        term: term + 1,
                        expires_at,
                    });
                }
            }
            Ok(state.leader.clone().filter(|l| l.expires_at > now))
        })
    }

    async fn leader(&self) -> CoordinationResult<Option<Leader>> {
        self.coordinate(|state, now| Ok(state.leader.clone().filter(|l| l.expires_at > now)))
    }

    async fn resign(&self, session: &Session, term: i64) -> CoordinationResult<()> {
        self.coordinate(|state, now| {
            if !state.leads(session, term, now) {
                return Err(stale(session, term));
            }
            if let Some(l) = state.leader.as_mut() {
                l.expires_at = now;
            }
            Ok(())
        })
    }

    async fn reap_member(
        &self,
        leader: &Session,
        term: i64,
        runtime_id: &str,
        incarnation: &str,
    ) -> CoordinationResult<bool> {
        self.coordinate(|state, now| {
            if !state.leads(leader, term, now) {
                return Err(stale(leader, term));
            }
            let dead = state
                .members
                .get(runtime_id)
                .is_some_and(|m| m.incarnation == incarnation && m.lease_expires_at <= now);
            if dead {
                state.members.remove(runtime_id);
            }
            Ok(dead)
        })
    }

    async fn purge_finished_flows(
        &self,
        leader: &Session,
        term: i64,
        age_ms: i64,
    ) -> CoordinationResult<u64> {
        self.coordinate(|state, now| {
            if !state.leads(leader, term, now) {
                return Err(stale(leader, term));
            }
            let cutoff = now - Duration::milliseconds(age_ms);
            let before = state.flows.len();
            state
                .flows
                .retain(|_, f| !(f.state.is_terminal() && f.updated_at < cutoff));
            Ok((before - state.flows.len()) as u64)
        })
    }

    async fn publish_config_revision(
        &self,
        session: &Session,
        revision: i64,
    ) -> CoordinationResult<()> {
        self.coordinate(|state, now| {
            if !session_alive(state, session, now) {
                return Err(CoordinationError::SessionGone(session.runtime_id.clone()));
            }
            state
                .config_revisions
                .insert(session.runtime_id.clone(), revision);
            Ok(())
        })
    }

    async fn config_revisions(&self) -> CoordinationResult<Vec<(String, i64)>> {
        self.coordinate(|state, _| {
            Ok(state
                .config_revisions
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect())
        })
    }
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

    mod coordinator {
        async fn fresh() -> std::sync::Arc<super::super::InMemoryDataFlowStore> {
            std::sync::Arc::new(super::super::InMemoryDataFlowStore::new())
        }

        crate::coordinator_conformance!(fresh());
    }
}
