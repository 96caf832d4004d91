//! [`Coordinator`] on SQL: the watchable key-value store and leader election.
//!
//! Revisions come from the `kv_events` sequence. On PostgreSQL every KV write takes one
//! transaction-scoped advisory lock first, so revisions are handed out in commit order and a
//! watcher reading "events after r" never misses one that commits later with a smaller
//! revision; SQLite serialises writers anyway.

use async_trait::async_trait;
use dataplane_spi::coordination::{validate_key, MAX_VALUE_LEN};
use dataplane_spi::{
    CoordinationError, CoordinationResult, Coordinator, Expected, KvEntry, KvEvent, KvEventKind,
    Leader, Session,
};
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{Connection, RunQueryDsl};

use crate::db::{with_conn, write_tx, DbError};
use crate::{Backend, SqlStore};

mod rows;

use rows::{
    check_expected, current_entry, kv_lock, prefix_len, record_event, require_leader,
    session_alive, EventRow, KvRow, LeaderRow, Number, RevisionRow, KV_COLUMNS, KV_LOCK,
    PREFIX_MATCH,
};

#[async_trait]
impl Coordinator for SqlStore {
    async fn renew_member_reporting(
        &self,
        runtime_id: &str,
        incarnation: &str,
        lease_ms: i64,
        report: &dataplane_spi::LoadReport,
    ) -> dataplane_spi::StoreResult<Option<dataplane_spi::Member>> {
        self.renew_with_report(runtime_id, incarnation, lease_ms, report)
            .await
            .map(Some)
    }

    async fn member_loads(&self) -> dataplane_spi::StoreResult<dataplane_spi::MemberLoads> {
        self.select_member_loads().await
    }

    async fn kv_get(&self, key: &str) -> CoordinationResult<Option<KvEntry>> {
        let key = key.to_owned();
        Ok(self
            .run(move |pools| {
                with_conn!(pools, |conn, backend| Ok(current_entry!(
                    conn, backend, &key
                )))
            })
            .await?)
    }

    async fn kv_put(
        &self,
        key: &str,
        value: &str,
        expected: Expected,
        session: Option<&Session>,
    ) -> CoordinationResult<KvEntry> {
        validate_key(key)?;
        if value.len() > MAX_VALUE_LEN {
            return Err(CoordinationError::InvalidInput(format!(
                "a value may have at most {MAX_VALUE_LEN} bytes"
            )));
        }
        let (key, value, session) = (key.to_owned(), value.to_owned(), session.cloned());
        Ok(self
            .run(move |pools| {
                write_tx!(pools, |conn, backend| {
                    kv_lock!(conn, backend);
                    let current = current_entry!(conn, backend, &key);
                    check_expected(&key, expected, current.as_ref())?;
                    if let Some(session) = &session {
                        if !session_alive!(conn, backend, session) {
                            return Err(DbError::Coordination(CoordinationError::SessionGone(session.runtime_id.clone())));
                        }
                    }
                    let version = current.as_ref().map_or(1, |c| c.version + 1);
                    let revision = record_event!(conn, backend, "PUT", &key, &value, version);
                    let create_revision = current.as_ref().map_or(revision, |c| c.create_revision);
                    let (owner, incarnation) = match &session {
                        Some(s) => (Some(s.runtime_id.clone()), Some(s.incarnation.clone())),
                        None => (None, None),
                    };
                    diesel::sql_query(backend.sql(
                        "INSERT INTO kv (key, value, version, create_revision, mod_revision, session, incarnation) \
                         VALUES (?, ?, ?, ?, ?, ?, ?) \
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = excluded.version, \
                           mod_revision = excluded.mod_revision, session = excluded.session, incarnation = excluded.incarnation",
                    ))
                    .bind::<Text, _>(&key)
                    .bind::<Text, _>(&value)
                    .bind::<BigInt, _>(version)
                    .bind::<BigInt, _>(create_revision)
                    .bind::<BigInt, _>(revision)
                    .bind::<Nullable<Text>, _>(&owner)
                    .bind::<Nullable<Text>, _>(&incarnation)
                    .execute(conn)?;
                    Ok(KvEntry {
                        key: key.clone(),
                        value: value.clone(),
                        version,
                        create_revision,
                        mod_revision: revision,
                        session: owner,
                    })
                })
            })
            .await?)
    }

    async fn kv_delete(&self, key: &str, expected: Expected) -> CoordinationResult<KvEvent> {
        let key = key.to_owned();
        Ok(self
            .run(move |pools| {
                write_tx!(pools, |conn, backend| {
                    kv_lock!(conn, backend);
                    let current = current_entry!(conn, backend, &key).ok_or_else(|| {
                        DbError::Coordination(CoordinationError::NotFound(key.clone()))
                    })?;
                    check_expected(&key, expected, Some(&current))?;
                    let revision = record_event!(
                        conn,
                        backend,
                        "DELETE",
                        &key,
                        &current.value,
                        current.version
                    );
                    diesel::sql_query(backend.sql("DELETE FROM kv WHERE key = ?"))
                        .bind::<Text, _>(&key)
                        .execute(conn)?;
                    Ok(KvEvent {
                        revision,
                        kind: KvEventKind::Delete,
                        key: key.clone(),
                        value: current.value,
                        version: current.version,
                    })
                })
            })
            .await?)
    }

    async fn kv_list(&self, prefix: &str) -> CoordinationResult<(Vec<KvEntry>, i64)> {
        let prefix = prefix.to_owned();
        Ok(self
            .run(move |pools| {
                write_tx!(pools, |conn, backend| {
                    kv_lock!(conn, backend);
                    let rows = diesel::sql_query(backend.sql(&format!(
                        "SELECT {KV_COLUMNS} FROM kv WHERE {PREFIX_MATCH} ORDER BY key"
                    )))
                    .bind::<diesel::sql_types::Integer, _>(prefix_len(&prefix))
                    .bind::<Text, _>(&prefix)
                    .load::<KvRow>(conn)?;
                    let revision = diesel::sql_query(
                        "SELECT CASE WHEN MAX(revision) IS NULL OR MAX(revision) < (SELECT compacted FROM kv_meta WHERE id = 1) \
                           THEN (SELECT compacted FROM kv_meta WHERE id = 1) ELSE MAX(revision) END AS n FROM kv_events",
                    )
                    .load::<Number>(conn)?
                    .into_iter()
                    .next()
                    .map_or(0, |n| n.n);
                    Ok((rows.into_iter().map(KvEntry::from).collect::<Vec<_>>(), revision))
                })
            })
            .await?)
    }

    async fn kv_events(
        &self,
        prefix: &str,
        after: i64,
        limit: usize,
    ) -> CoordinationResult<Vec<KvEvent>> {
        let prefix = prefix.to_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Ok(self
            .run(move |pools| {
                write_tx!(pools, |conn, backend| {
                    let compacted =
                        diesel::sql_query("SELECT compacted AS n FROM kv_meta WHERE id = 1")
                            .load::<Number>(conn)?
                            .into_iter()
                            .next()
                            .map_or(0, |n| n.n);
                    if after < compacted {
                        return Err(DbError::Coordination(CoordinationError::Compacted {
                            requested: after,
                            compacted,
                        }));
                    }
                    let rows = diesel::sql_query(backend.sql(&format!(
                        "SELECT revision, kind, key, value, version FROM kv_events \
                         WHERE revision > ? AND {PREFIX_MATCH} ORDER BY revision LIMIT ?"
                    )))
                    .bind::<BigInt, _>(after)
                    .bind::<diesel::sql_types::Integer, _>(prefix_len(&prefix))
                    .bind::<Text, _>(&prefix)
                    .bind::<BigInt, _>(limit)
                    .load::<EventRow>(conn)?;
                    Ok(rows.into_iter().map(KvEvent::from).collect::<Vec<_>>())
                })
            })
            .await?)
    }

    async fn kv_expire_sessions(&self) -> CoordinationResult<u64> {
        Ok(self
            .run(move |pools| {
                write_tx!(pools, |conn, backend| {
                    kv_lock!(conn, backend);
                    let dead = diesel::sql_query(backend.sql(&format!(
                        "SELECT {KV_COLUMNS} FROM kv WHERE session IS NOT NULL AND NOT EXISTS \
                           (SELECT 1 FROM members m WHERE m.runtime_id = kv.session AND m.incarnation = kv.incarnation \
                              AND m.lease_expires_at > {{now}}) ORDER BY key"
                    )))
                    .load::<KvRow>(conn)?;
                    for row in &dead {
                        record_event!(conn, backend, "DELETE", &row.key, &row.value, row.version);
                        diesel::sql_query(backend.sql("DELETE FROM kv WHERE key = ?")).bind::<Text, _>(&row.key).execute(conn)?;
                    }
                    Ok(dead.len() as u64)
                })
            })
            .await?)
    }

    async fn kv_compact(&self, keep: i64) -> CoordinationResult<i64> {
        Ok(self
            .run(move |pools| {
                write_tx!(pools, |conn, backend| {
                    kv_lock!(conn, backend);
                    let newest = diesel::sql_query("SELECT COALESCE(MAX(revision), 0) AS n FROM kv_events")
                        .load::<Number>(conn)?
                        .into_iter()
                        .next()
                        .map_or(0, |n| n.n);
                    let cut = newest - keep.max(0);
                    diesel::sql_query(backend.sql("DELETE FROM kv_events WHERE revision <= ?")).bind::<BigInt, _>(cut).execute(conn)?;
                    diesel::sql_query(backend.sql("UPDATE kv_meta SET compacted = CASE WHEN compacted < ? THEN ? ELSE compacted END WHERE id = 1"))
                        .bind::<BigInt, _>(cut)
                        .bind::<BigInt, _>(cut)
                        .execute(conn)?;
                    let compacted = diesel::sql_query("SELECT compacted AS n FROM kv_meta WHERE id = 1")
                        .load::<Number>(conn)?
                        .into_iter()
                        .next()
                        .map_or(0, |n| n.n);
                    Ok(compacted)
                })
            })
            .await?)
    }

    async fn campaign(
        &self,
        session: &Session,
        lease_ms: i64,
    ) -> CoordinationResult<Option<Leader>> {
        let session = session.clone();
        Ok(self
            .run(move |pools| {
                write_tx!(pools, |conn, backend| {
                    if !session_alive!(conn, backend, &session) {
                        return Err(DbError::Coordination(CoordinationError::SessionGone(session.runtime_id.clone())));
                    }
                    let renewed = diesel::sql_query(backend.sql(
                        "UPDATE leader SET expires_at = {now} + ? * 1000 \
                         WHERE id = 1 AND holder = ? AND incarnation = ? AND expires_at > {now}",
                    ))
                    .bind::<BigInt, _>(lease_ms)
                    .bind::<Text, _>(&session.runtime_id)
                    .bind::<Text, _>(&session.incarnation)
                    .execute(conn)?;
                    if renewed == 0 {
                        // A new term, only when nobody leads.
                        diesel::sql_query(backend.sql(
                            "UPDATE leader SET holder = ?, incarnation = ?, term = term + 1, expires_at = {now} + ? * 1000 \
                             WHERE id = 1 AND (holder IS NULL OR expires_at <= {now})",
                        ))
                        .bind::<Text, _>(&session.runtime_id)
                        .bind::<Text, _>(&session.incarnation)
                        .bind::<BigInt, _>(lease_ms)
                        .execute(conn)?;
                    }
                    let current = diesel::sql_query(backend.sql(
                        "SELECT holder, incarnation, term, expires_at FROM leader WHERE id = 1 AND holder IS NOT NULL AND expires_at > {now}",
                    ))
                    .load::<LeaderRow>(conn)?;
                    Ok(current.into_iter().next().map(Leader::from))
                })
            })
            .await?)
    }

    async fn leader(&self) -> CoordinationResult<Option<Leader>> {
        Ok(self
            .run(move |pools| {
                with_conn!(pools, |conn, backend| {
                    let current = diesel::sql_query(backend.sql(
                        "SELECT holder, incarnation, term, expires_at FROM leader WHERE id = 1 AND holder IS NOT NULL AND expires_at > {now}",
                    ))
                    .load::<LeaderRow>(conn)?;
                    Ok(current.into_iter().next().map(Leader::from))
                })
            })
            .await?)
    }

    async fn resign(&self, session: &Session, term: i64) -> CoordinationResult<()> {
        let session = session.clone();
        Ok(self
            .run(move |pools| {
                with_conn!(pools, |conn, backend| {
                    let updated = diesel::sql_query(backend.sql(
                        "UPDATE leader SET expires_at = {now} \
                         WHERE id = 1 AND holder = ? AND incarnation = ? AND term = ? AND expires_at > {now}",
                    ))
                    .bind::<Text, _>(&session.runtime_id)
                    .bind::<Text, _>(&session.incarnation)
                    .bind::<BigInt, _>(term)
                    .execute(conn)?;
                    if updated == 0 {
                        return Err(DbError::Coordination(CoordinationError::StaleTerm { leader: session.runtime_id.clone(), term }));
                    }
                    Ok(())
                })
            })
            .await?)
    }

    async fn reap_member(
        &self,
        leader: &Session,
        term: i64,
        runtime_id: &str,
        incarnation: &str,
    ) -> CoordinationResult<bool> {
        let (leader, runtime_id, incarnation) = (
            leader.clone(),
            runtime_id.to_owned(),
            incarnation.to_owned(),
        );
        Ok(self
            .run(move |pools| {
                write_tx!(pools, |conn, backend| {
                    require_leader!(conn, backend, leader, term);
                    let deleted = diesel::sql_query(backend.sql(
                        "DELETE FROM members WHERE runtime_id = ? AND incarnation = ? AND lease_expires_at <= {now}",
                    ))
                    .bind::<Text, _>(&runtime_id)
                    .bind::<Text, _>(&incarnation)
                    .execute(conn)?;
                    Ok(deleted == 1)
                })
            })
            .await?)
    }

    async fn purge_finished_flows(
        &self,
        leader: &Session,
        term: i64,
        age_ms: i64,
    ) -> CoordinationResult<u64> {
        let leader = leader.clone();
        Ok(self
            .run(move |pools| {
                write_tx!(pools, |conn, backend| {
                    require_leader!(conn, backend, leader, term);
                    let deleted = diesel::sql_query(backend.sql(
                        "DELETE FROM data_flows WHERE state IN ('COMPLETED', 'TERMINATED') AND updated_at < {now} - ? * 1000",
                    ))
                    .bind::<BigInt, _>(age_ms)
                    .execute(conn)?;
                    Ok(u64::try_from(deleted).unwrap_or_default())
                })
            })
            .await?)
    }

    async fn publish_config_revision(
        &self,
        session: &Session,
        revision: i64,
    ) -> CoordinationResult<()> {
        let session = session.clone();
        Ok(self
            .run(move |pools| {
                with_conn!(pools, |conn, backend| {
                    let updated = diesel::sql_query(backend.sql(
                        "UPDATE members SET config_revision = ? WHERE runtime_id = ? AND incarnation = ? AND lease_expires_at > {now}",
                    ))
                    .bind::<BigInt, _>(revision)
                    .bind::<Text, _>(&session.runtime_id)
                    .bind::<Text, _>(&session.incarnation)
                    .execute(conn)?;
                    if updated == 0 {
                        return Err(DbError::Coordination(CoordinationError::SessionGone(session.runtime_id.clone())));
                    }
                    Ok(())
                })
            })
            .await?)
    }

    async fn config_revisions(&self) -> CoordinationResult<Vec<(String, i64)>> {
        Ok(self
            .run(move |pools| {
                with_conn!(pools, |conn, _backend| {
                    let rows = diesel::sql_query(
                        "SELECT runtime_id, config_revision FROM members WHERE config_revision IS NOT NULL ORDER BY runtime_id",
                    )
                    .load::<RevisionRow>(conn)?;
                    Ok(rows.into_iter().map(|r| (r.runtime_id, r.config_revision)).collect::<Vec<_>>())
                })
            })
            .await?)
    }
}
