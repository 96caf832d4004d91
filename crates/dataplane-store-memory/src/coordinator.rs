//! The [`Coordinator`] implementation: each call runs the matching `kv` or `leader` operation
//! under the store's lock.

use async_trait::async_trait;
use dataplane_spi::{CoordinationResult, Coordinator, Expected, KvEntry, KvEvent, Leader, Session};

use crate::kv::validate_put;
use crate::MemoryStore;

#[async_trait]
impl Coordinator for MemoryStore {
    async fn renew_member_reporting(
        &self,
        runtime_id: &str,
        incarnation: &str,
        lease_ms: i64,
        report: &dataplane_spi::LoadReport,
    ) -> dataplane_spi::StoreResult<Option<dataplane_spi::Member>> {
        self.with(|state, now| {
            state
                .renew_member_reporting(runtime_id, incarnation, lease_ms, report, now)
                .map(Some)
        })
    }

    async fn member_loads(&self) -> dataplane_spi::StoreResult<dataplane_spi::MemberLoads> {
        self.with(|state, now| Ok(state.member_loads(now)))
    }

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
        validate_put(key, value)?;
        self.coordinate(|state, now| state.kv_put(key, value, expected, session, now))
    }

    async fn kv_delete(&self, key: &str, expected: Expected) -> CoordinationResult<KvEvent> {
        self.coordinate(|state, _| state.kv_delete(key, expected))
    }

    async fn kv_list(&self, prefix: &str) -> CoordinationResult<(Vec<KvEntry>, i64)> {
        self.coordinate(|state, _| Ok(state.kv_list(prefix)))
    }

    async fn kv_events(
        &self,
        prefix: &str,
        after: i64,
        limit: usize,
    ) -> CoordinationResult<Vec<KvEvent>> {
        self.coordinate(|state, _| state.kv_events(prefix, after, limit))
    }

    async fn kv_expire_sessions(&self) -> CoordinationResult<u64> {
        self.coordinate(|state, now| Ok(state.kv_expire_sessions(now)))
    }

    async fn kv_compact(&self, keep: i64) -> CoordinationResult<i64> {
        self.coordinate(|state, _| Ok(state.kv_compact(keep)))
    }

    async fn campaign(
        &self,
        session: &Session,
        lease_ms: i64,
    ) -> CoordinationResult<Option<Leader>> {
        self.coordinate(|state, now| state.campaign(session, lease_ms, now))
    }

    async fn leader(&self) -> CoordinationResult<Option<Leader>> {
        self.coordinate(|state, now| Ok(state.valid_leader(now)))
    }

    async fn resign(&self, session: &Session, term: i64) -> CoordinationResult<()> {
        self.coordinate(|state, now| state.resign(session, term, now))
    }

    async fn reap_member(
        &self,
        leader: &Session,
        term: i64,
        runtime_id: &str,
        incarnation: &str,
    ) -> CoordinationResult<bool> {
        self.coordinate(|state, now| state.reap_member(leader, term, runtime_id, incarnation, now))
    }

    async fn purge_finished_flows(
        &self,
        leader: &Session,
        term: i64,
        age_ms: i64,
    ) -> CoordinationResult<u64> {
        self.coordinate(|state, now| state.purge_finished_flows(leader, term, age_ms, now))
    }

    async fn publish_config_revision(
        &self,
        session: &Session,
        revision: i64,
    ) -> CoordinationResult<()> {
        self.coordinate(|state, now| state.publish_config_revision(session, revision, now))
    }

    async fn config_revisions(&self) -> CoordinationResult<Vec<(String, i64)>> {
        self.coordinate(|state, _| Ok(state.config_revisions()))
    }
}
