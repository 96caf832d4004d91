//! The stream of member changes that `GET /api/v1/cluster/members?watch=true` renders: the
//! live members (valid lease by the store's clock) polled on an interval, compared with what
//! was already sent, and only the differences yielded.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use dataplane_spi::{DataFlowStore, Member};
use futures::Stream;

use crate::Result;

/// Lifecycle of a replica as published in the members table (the `state` of a [`Member`]
/// written by [`MembershipHandle::report_state`](crate::membership::MembershipHandle::report_state)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// Joined; not yet looking for work.
    Initializing,
    /// Ready, running no transfer.
    Idle,
    /// Running transfers.
    Healthy,
    /// Shutting down: releasing its flows.
    Stopping,
}

impl MemberState {
    /// The published name: `INITIALIZING`, `IDLE`, `HEALTHY` or `STOPPING`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initializing => "INITIALIZING",
            Self::Idle => "IDLE",
            Self::Healthy => "HEALTHY",
            Self::Stopping => "STOPPING",
        }
    }
}

/// One change of the live members. A new incarnation of a name is a [`MemberChange::Left`] of
/// the old one followed by a [`MemberChange::Joined`] of the new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberChange {
    /// A member became live (or was live when the stream started).
    Joined(Member),
    /// A live member's published state changed (same incarnation).
    Updated(Member),
    /// A member left, or its lease expired; the member as last seen.
    Left(Member),
}

impl MemberChange {
    /// The server-sent-event name: `join`, `update` or `leave`.
    pub fn event(&self) -> &'static str {
        match self {
            Self::Joined(_) => "join",
            Self::Updated(_) => "update",
            Self::Left(_) => "leave",
        }
    }

    /// The member the change is about.
    pub fn member(&self) -> &Member {
        match self {
            Self::Joined(m) | Self::Updated(m) | Self::Left(m) => m,
        }
    }
}

/// Members whose lease is valid by the store's clock, sorted by name.
///
/// # Errors
/// Store failures.
pub async fn live_members(store: &dyn DataFlowStore) -> Result<Vec<Member>> {
    let now = store.now().await?;
    Ok(store
        .list_members()
        .await?
        .into_iter()
        .filter(|m| m.lease_expires_at > now)
        .collect())
}

fn by_name(members: Vec<Member>) -> BTreeMap<String, Member> {
    members
        .into_iter()
        .map(|m| (m.runtime_id.clone(), m))
        .collect()
}

/// What changed from `known` to `fresh`: joins and updates in name order, a new incarnation
/// as a leave then a join, then the members that are gone. Heartbeats and lease extensions
/// alone are no change.
pub fn diff_members(known: &[Member], fresh: &[Member]) -> Vec<MemberChange> {
    diff(&by_name(known.to_vec()), &by_name(fresh.to_vec()))
}

fn diff(known: &BTreeMap<String, Member>, fresh: &BTreeMap<String, Member>) -> Vec<MemberChange> {
    let mut changes = Vec::new();
    for (name, member) in fresh {
        match known.get(name) {
            None => changes.push(MemberChange::Joined(member.clone())),
            Some(old) if old.incarnation != member.incarnation => {
                changes.push(MemberChange::Left(old.clone()));
                changes.push(MemberChange::Joined(member.clone()));
            }
            Some(old) if old.state != member.state => {
                changes.push(MemberChange::Updated(member.clone()));
            }
            Some(_) => {}
        }
    }
    for (name, member) in known {
        if !fresh.contains_key(name) {
            changes.push(MemberChange::Left(member.clone()));
        }
    }
    changes
}

struct Poll {
    store: Arc<dyn DataFlowStore>,
    interval: Duration,
    /// `None` until the first listing (which is yielded as joins).
    known: Option<BTreeMap<String, Member>>,
    pending: VecDeque<MemberChange>,
}

/// The member changes: first every live member as [`MemberChange::Joined`] (read at once),
/// then, polling every `interval`, only the differences (see [`diff_members`]).
///
/// A store failure is yielded as an `Err` item and does not end the stream: the next poll, an
/// interval later, tries again (compared with what was sent before the failure). The stream
/// never ends by itself; an idle stream yields nothing (a server-sent-event handler adds its
/// keep-alives with a timeout on `next()`, which is safe: a pending poll is kept inside the
/// stream).
pub fn member_changes(
    store: Arc<dyn DataFlowStore>,
    interval: Duration,
) -> impl Stream<Item = Result<MemberChange>> + Send + 'static {
    changes(Poll {
        store,
        interval,
        known: None,
        pending: VecDeque::new(),
    })
}

/// The member changes after a listing the caller already sent (`known`, e.g. rendered with
/// the configuration revisions): no initial joins, then as [`member_changes`], the first poll
/// an `interval` from now.
pub fn member_changes_after(
    store: Arc<dyn DataFlowStore>,
    interval: Duration,
    known: Vec<Member>,
) -> impl Stream<Item = Result<MemberChange>> + Send + 'static {
    changes(Poll {
        store,
        interval,
        known: Some(by_name(known)),
        pending: VecDeque::new(),
    })
}

fn changes(start: Poll) -> impl Stream<Item = Result<MemberChange>> + Send + 'static {
    futures::stream::unfold(start, |mut poll| async move {
        loop {
            if let Some(change) = poll.pending.pop_front() {
                return Some((Ok(change), poll));
            }
            if poll.known.is_some() {
                tokio::time::sleep(poll.interval).await;
            }
            match live_members(poll.store.as_ref()).await {
                Ok(members) => {
                    let fresh = by_name(members);
                    let known = poll.known.take().unwrap_or_default();
                    poll.pending.extend(diff(&known, &fresh));
                    poll.known = Some(fresh);
                }
                Err(error) => {
                    // Compare with what was sent; the first listing is still due.
                    if poll.known.is_none() {
                        tokio::time::sleep(poll.interval).await;
                    }
                    return Some((Err(error), poll));
                }
            }
        }
    })
}
