//! The member queries behind [`DataFlowStore`](dataplane_spi::DataFlowStore): registering,
//! renewing, updating and removing the replicas' memberships.

use dataplane_spi::{Member, MemberRegistration, StoreError, StoreResult};
use diesel::sql_types::{BigInt, Text};
use diesel::{Connection, RunQueryDsl};

use super::rows::{membership_lost, Incarnation, MemberRow, MEMBER_COLUMNS, RELEASE_ALL};
use crate::db::{with_conn, write_tx, DbError};
use crate::SqlStore;

impl SqlStore {
    pub(super) async fn insert_member(
        &self,
        registration: &MemberRegistration,
    ) -> StoreResult<Member> {
        let r = registration.clone();
        let member = self
            .run(move |pools| {
                write_tx!(pools, |conn, backend| {
                    let previous = diesel::sql_query(backend.sql(
                        "SELECT incarnation FROM members WHERE runtime_id = ? {for_update}",
                    ))
                    .bind::<Text, _>(&r.runtime_id)
                    .load::<Incarnation>(conn)?;
                    // Take the name only from the same incarnation or from an expired lease.
                    let rows = diesel::sql_query(backend.sql(&format!(
                        "INSERT INTO members ({MEMBER_COLUMNS}) VALUES (?, ?, {{now}}, {{now}} + ? * 1000, {{now}}, ?) \
                         ON CONFLICT (runtime_id) DO UPDATE SET incarnation = excluded.incarnation, \
                           heartbeat_at = excluded.heartbeat_at, lease_expires_at = excluded.lease_expires_at, \
                           started_at = CASE WHEN members.incarnation = excluded.incarnation THEN members.started_at ELSE excluded.started_at END, \
                           state = excluded.state \
                         WHERE members.incarnation = excluded.incarnation OR members.lease_expires_at <= {{now}} \
                         RETURNING {MEMBER_COLUMNS}"
                    )))
                    .bind::<Text, _>(&r.runtime_id)
                    .bind::<Text, _>(&r.incarnation)
                    .bind::<BigInt, _>(r.lease_ms)
                    .bind::<Text, _>(&r.state)
                    .load::<MemberRow>(conn)?;
                    let Some(row) = rows.into_iter().next() else {
                        return Err(DbError::Store(StoreError::Conflict(format!(
                            "replica name '{}' is in use by a live incarnation; retry after its lease expires",
                            r.runtime_id
                        ))));
                    };
                    if previous.first().map(|p| p.incarnation.as_str()) != Some(r.incarnation.as_str()) {
                        // A new incarnation: whatever the name owned belongs to a dead process.
                        let released = diesel::sql_query(backend.sql(RELEASE_ALL))
                            .bind::<Text, _>(&r.runtime_id)
                            .execute(conn)?;
                        if released > 0 {
                            tracing::info!(runtime_id = %r.runtime_id, released, "released flows of a previous incarnation");
                        }
                    }
                    Ok(Member::from(row))
                })
            })
            .await?;
        Ok(member)
    }

    pub(super) async fn renew_member_lease(
        &self,
        runtime_id: &str,
        incarnation: &str,
        lease_ms: i64,
    ) -> StoreResult<Member> {
        let (runtime_id, incarnation) = (runtime_id.to_owned(), incarnation.to_owned());
        Ok(self
            .run(move |pools| {
                with_conn!(pools, |conn, backend| {
                    // The whole renewal: one statement, whatever the number of owned flows.
                    let rows = diesel::sql_query(backend.sql(&format!(
                        "UPDATE members SET heartbeat_at = {{now}}, lease_expires_at = {{now}} + ? * 1000 \
                         WHERE runtime_id = ? AND incarnation = ? AND lease_expires_at > {{now}} \
                         RETURNING {MEMBER_COLUMNS}"
                    )))
                    .bind::<BigInt, _>(lease_ms)
                    .bind::<Text, _>(&runtime_id)
                    .bind::<Text, _>(&incarnation)
                    .load::<MemberRow>(conn)?;
                    rows.into_iter()
                        .next()
                        .map(Member::from)
                        .ok_or_else(|| membership_lost(&runtime_id, &incarnation))
                })
            })
            .await?)
    }

    pub(super) async fn update_member_state(
        &self,
        runtime_id: &str,
        incarnation: &str,
        state: &str,
    ) -> StoreResult<()> {
        let (runtime_id, incarnation, state) = (
            runtime_id.to_owned(),
            incarnation.to_owned(),
            state.to_owned(),
        );
        Ok(self
            .run(move |pools| {
                with_conn!(pools, |conn, backend| {
                    let updated = diesel::sql_query(backend.sql(
                        "UPDATE members SET state = ? WHERE runtime_id = ? AND incarnation = ?",
                    ))
                    .bind::<Text, _>(&state)
                    .bind::<Text, _>(&runtime_id)
                    .bind::<Text, _>(&incarnation)
                    .execute(conn)?;
                    if updated == 0 {
                        return Err(membership_lost(&runtime_id, &incarnation));
                    }
                    Ok(())
                })
            })
            .await?)
    }

    pub(super) async fn delete_member(
        &self,
        runtime_id: &str,
        incarnation: &str,
    ) -> StoreResult<u64> {
        let (runtime_id, incarnation) = (runtime_id.to_owned(), incarnation.to_owned());
        Ok(self
            .run(move |pools| {
                write_tx!(pools, |conn, backend| {
                    let deleted = diesel::sql_query(
                        backend.sql("DELETE FROM members WHERE runtime_id = ? AND incarnation = ?"),
                    )
                    .bind::<Text, _>(&runtime_id)
                    .bind::<Text, _>(&incarnation)
                    .execute(conn)?;
                    if deleted == 0 {
                        return Err(membership_lost(&runtime_id, &incarnation));
                    }
                    let released = diesel::sql_query(backend.sql(RELEASE_ALL))
                        .bind::<Text, _>(&runtime_id)
                        .execute(conn)?;
                    Ok(u64::try_from(released).unwrap_or_default())
                })
            })
            .await?)
    }

    pub(super) async fn select_members(&self) -> StoreResult<Vec<Member>> {
        Ok(self
            .run(|pools| {
                with_conn!(pools, |conn, backend| {
                    let rows = diesel::sql_query(backend.sql(&format!(
                        "SELECT {MEMBER_COLUMNS} FROM members ORDER BY runtime_id"
                    )))
                    .load::<MemberRow>(conn)?;
                    Ok(rows.into_iter().map(Member::from).collect::<Vec<_>>())
                })
            })
            .await?)
    }
}
