//! Leader election: campaigns with terms (the fencing token), resignation, and the duties only
//! the leader of a valid term may perform (reaping members, purging finished flows); plus the
//! per-replica applied config revisions.

use chrono::{DateTime, Duration, Utc};
use dataplane_spi::{CoordinationError, CoordinationResult, Leader, Session};

use crate::State;

fn stale(leader: &Session, term: i64) -> CoordinationError {
    CoordinationError::StaleTerm {
        leader: leader.runtime_id.clone(),
        term,
    }
}

fn session_gone(session: &Session) -> CoordinationError {
    CoordinationError::SessionGone(session.runtime_id.clone())
}

impl State {
    fn leads(&self, leader: &Session, term: i64, now: DateTime<Utc>) -> bool {
        self.leader.as_ref().is_some_and(|l| {
            l.leader == leader.runtime_id
                && l.incarnation == leader.incarnation
                && l.term == term
                && l.expires_at > now
        })
    }

    /// Fails with `StaleTerm` unless `leader` leads `term` now.
    fn require_lead(
        &self,
        leader: &Session,
        term: i64,
        now: DateTime<Utc>,
    ) -> CoordinationResult<()> {
        if self.leads(leader, term, now) {
            Ok(())
        } else {
            Err(stale(leader, term))
        }
    }

    /// The current leader, if its lead has not expired.
    pub(crate) fn valid_leader(&self, now: DateTime<Utc>) -> Option<Leader> {
        self.leader.clone().filter(|l| l.expires_at > now)
    }

    pub(crate) fn campaign(
        &mut self,
        session: &Session,
        lease_ms: i64,
        now: DateTime<Utc>,
    ) -> CoordinationResult<Option<Leader>> {
        if !self.session_alive(session, now) {
            return Err(session_gone(session));
        }
        let expires_at = now + Duration::milliseconds(lease_ms);
        let (mine, valid, term) = match &self.leader {
            Some(l) => (
                l.leader == session.runtime_id && l.incarnation == session.incarnation,
                l.expires_at > now,
                l.term,
            ),
            None => (false, false, 0),
        };
        match (&mut self.leader, valid, mine) {
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
        Ok(self.valid_leader(now))
    }

    pub(crate) fn resign(
        &mut self,
        session: &Session,
        term: i64,
        now: DateTime<Utc>,
    ) -> CoordinationResult<()> {
        self.require_lead(session, term, now)?;
        if let Some(l) = self.leader.as_mut() {
            l.expires_at = now;
        }
        Ok(())
    }

    pub(crate) fn reap_member(
        &mut self,
        leader: &Session,
        term: i64,
        runtime_id: &str,
        incarnation: &str,
        now: DateTime<Utc>,
    ) -> CoordinationResult<bool> {
        self.require_lead(leader, term, now)?;
        let dead = self
            .members
            .get(runtime_id)
            .is_some_and(|m| m.incarnation == incarnation && m.lease_expires_at <= now);
        if dead {
            self.members.remove(runtime_id);
        }
        Ok(dead)
    }

    pub(crate) fn purge_finished_flows(
        &mut self,
        leader: &Session,
        term: i64,
        age_ms: i64,
        now: DateTime<Utc>,
    ) -> CoordinationResult<u64> {
        self.require_lead(leader, term, now)?;
        let cutoff = now - Duration::milliseconds(age_ms);
        let before = self.flows.len();
        self.flows
            .retain(|_, f| !(f.state.is_terminal() && f.updated_at < cutoff));
        Ok((before - self.flows.len()) as u64)
    }

    pub(crate) fn publish_config_revision(
        &mut self,
        session: &Session,
        revision: i64,
        now: DateTime<Utc>,
    ) -> CoordinationResult<()> {
        if !self.session_alive(session, now) {
            return Err(session_gone(session));
        }
        self.config_revisions
            .insert(session.runtime_id.clone(), revision);
        Ok(())
    }

    pub(crate) fn config_revisions(&self) -> Vec<(String, i64)> {
        self.config_revisions
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
}
