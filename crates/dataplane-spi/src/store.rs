use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::{
    DataFlow, DataFlowState, FlowUpdate, Member, MemberRegistration, NewDataFlow, StoreResult,
};

/// The fencing token of an owner: a write succeeds only while the flow is still owned by
/// `runtime_id` at `epoch`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlowOwner {
    /// The owning replica.
    pub runtime_id: String,
    /// The epoch at which it obtained the flow.
    pub epoch: i64,
}

impl FlowOwner {
    /// The owner of `flow` as stored, if any.
    pub fn of(flow: &DataFlow) -> Option<Self> {
        flow.runtime_id.as_ref().map(|runtime_id| Self {
            runtime_id: runtime_id.clone(),
            epoch: flow.epoch,
        })
    }
}

/// Persistence of data flows and replicas, shared by every replica of a cluster.
///
/// Invariants every implementation keeps:
/// - time is the store's clock (never a replica's);
/// - a flow has at most one owner; every change of owner increments its `epoch` in the same
///   atomic step;
/// - a replica's ownership lasts while its member lease is valid; renewing the lease is one
///   write per replica, whatever the number of flows it owns;
/// - owner writes are fenced: they apply only when `runtime_id` and `epoch` still match, and
///   otherwise fail with [`crate::StoreError::LeaseLost`] having changed nothing.
#[async_trait]
pub trait DataFlowStore: Send + Sync + Debug {
    /// The store's current time.
    ///
    /// # Errors
    /// Backend failures.
    async fn now(&self) -> StoreResult<DateTime<Utc>>;

    /// Creates a flow (epoch 1 when created owned, else 0; `state_count` 1).
    ///
    /// # Errors
    /// [`crate::StoreError::AlreadyExists`] when the id or the process id is taken.
    async fn create(&self, flow: &NewDataFlow) -> StoreResult<DataFlow>;

    /// The flow with this id.
    ///
    /// # Errors
    /// Backend failures.
    async fn find(&self, id: &str) -> StoreResult<Option<DataFlow>>;

    /// The flow with this transfer process id.
    ///
    /// # Errors
    /// Backend failures.
    async fn find_by_process_id(&self, process_id: &str) -> StoreResult<Option<DataFlow>>;

    /// Flows in any of `states` (all when empty), oldest first, at most `limit`.
    ///
    /// # Errors
    /// Backend failures.
    async fn list(&self, states: &[DataFlowState], limit: usize) -> StoreResult<Vec<DataFlow>>;

    /// How many flows are in each state.
    ///
    /// # Errors
    /// Backend failures.
    async fn count_by_state(&self) -> StoreResult<Vec<(DataFlowState, u64)>> {
        let flows = self.list(&[], usize::MAX).await?;
        let mut counts: Vec<(DataFlowState, u64)> = Vec::new();
        for flow in flows {
            match counts.iter_mut().find(|(s, _)| *s == flow.state) {
                Some((_, n)) => *n += 1,
                None => counts.push((flow.state, 1)),
            }
        }
        Ok(counts)
    }

    /// Registers a replica's incarnation with a lease of `lease_ms`.
    ///
    /// A name whose previous incarnation's lease is still valid is refused with
    /// [`crate::StoreError::Conflict`]. When a new incarnation replaces an expired one, the
    /// flows the old incarnation owned are released (unowned, epoch + 1) in the same atomic
    /// step, so that they are claimed again — by anyone — and the old incarnation is fenced.
    ///
    /// # Errors
    /// [`crate::StoreError::Conflict`] as above.
    async fn register_member(&self, registration: &MemberRegistration) -> StoreResult<Member>;

    /// Renews a replica's lease to now + `lease_ms`: one write, whatever it owns.
    ///
    /// # Errors
    /// [`crate::StoreError::MembershipLost`] when the member row is gone, belongs to another
    /// incarnation, or its lease already expired (the replica must stop its pipelines).
    async fn renew_member(
        &self,
        runtime_id: &str,
        incarnation: &str,
        lease_ms: i64,
    ) -> StoreResult<Member>;

    /// Sets the lifecycle state a replica reports.
    ///
    /// # Errors
    /// [`crate::StoreError::MembershipLost`] when the incarnation is not the registered one.
    async fn set_member_state(
        &self,
        runtime_id: &str,
        incarnation: &str,
        state: &str,
    ) -> StoreResult<()>;

    /// Removes a replica (graceful shutdown) and releases its flows (unowned, epoch + 1) in
    /// one atomic step, so peers can claim them at once. Returns how many were released.
    ///
    /// # Errors
    /// [`crate::StoreError::MembershipLost`] when the incarnation is not the registered one.
    async fn remove_member(&self, runtime_id: &str, incarnation: &str) -> StoreResult<u64>;

    /// Every member, sorted by runtime id.
    ///
    /// # Errors
    /// Backend failures.
    async fn list_members(&self) -> StoreResult<Vec<Member>>;

    /// Atomically takes ownership of up to `limit` unowned flows in `states`, oldest state
    /// first, for `runtime_id` (epoch + 1 each). Only a member with a valid lease can claim.
    /// Concurrent claimers never obtain the same flow.
    ///
    /// # Errors
    /// Backend failures.
    async fn claim(
        &self,
        runtime_id: &str,
        states: &[DataFlowState],
        limit: usize,
    ) -> StoreResult<Vec<DataFlow>>;

    /// Atomically takes over up to `limit` flows in `states` whose owner's lease expired (or
    /// whose owner is not a member any more), oldest state first (epoch + 1 each). Only a
    /// member with a valid lease can take over; it never takes its own flows.
    ///
    /// # Errors
    /// Backend failures.
    async fn take_over(
        &self,
        runtime_id: &str,
        states: &[DataFlowState],
        limit: usize,
    ) -> StoreResult<Vec<DataFlow>>;

    /// An owner's write to its flow, fenced by `owner`, never applied to a terminal flow, and
    /// only from `update.only_from` when given.
    ///
    /// # Errors
    /// [`crate::StoreError::LeaseLost`] when the flow is no longer owned by `owner` (nothing
    /// changed), [`crate::StoreError::WrongState`] when it is owned but in a state the update
    /// does not apply to, [`crate::StoreError::NotFound`] when the flow does not exist.
    async fn update_owned(
        &self,
        owner: &FlowOwner,
        flow_id: &str,
        update: &FlowUpdate,
    ) -> StoreResult<DataFlow>;

    /// A conditional state change that any replica may make (the DPS call may reach any of
    /// them): applies only when the flow is in one of `from`. With `new_owner`, the caller also
    /// takes ownership in the same atomic step (epoch + 1) — used when it will run the flow
    /// itself (resume), or finishes a flow whose owner is gone.
    ///
    /// # Errors
    /// [`crate::StoreError::WrongState`] (nothing changed) when the flow is in another state,
    /// [`crate::StoreError::NotFound`] when it does not exist.
    async fn transition(
        &self,
        flow_id: &str,
        from: &[DataFlowState],
        to: DataFlowState,
        new_owner: Option<&str>,
        update: &FlowUpdate,
    ) -> StoreResult<DataFlow>;

    /// Flows owned by `runtime_id` in any of `states`, oldest state first.
    ///
    /// # Errors
    /// Backend failures.
    async fn list_owned(
        &self,
        runtime_id: &str,
        states: &[DataFlowState],
        limit: usize,
    ) -> StoreResult<Vec<DataFlow>>;

    /// Tells the other replicas that a flow changed in a way its owner must act on (e.g. a
    /// suspend request recorded by a replica that does not own it). A wake-up hint only:
    /// replicas poll anyway. PostgreSQL sends a `NOTIFY`; other stores do nothing.
    ///
    /// # Errors
    /// Backend failures (callers may ignore them: polling covers a lost hint).
    async fn notify_change(&self, _flow_id: &str) -> StoreResult<()> {
        Ok(())
    }

    /// A receiver whose value changes whenever another process sent
    /// [`DataFlowStore::notify_change`]; `None` when the store has no such channel.
    fn change_hints(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    /// An owner gives a flow up (unowned, epoch unchanged; the next claim bumps it).
    ///
    /// # Errors
    /// As [`DataFlowStore::update_owned`].
    async fn release(&self, owner: &FlowOwner, flow_id: &str) -> StoreResult<()>;
}
