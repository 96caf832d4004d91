//! [`DataFlowStore`] on SQL: flows, members, claims, takeovers, renewals and fenced writes.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use dataplane_spi::{
    DataFlow, DataFlowState, DataFlowStore, FlowOwner, FlowUpdate, Member, MemberRegistration,
    NewDataFlow, StoreError, StoreResult,
};
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{Connection, QueryableByName, RunQueryDsl};

use crate::db::{micros, state_list, with_conn, write_tx, DbError, Kind};
use crate::SqlStore;

mod members;
mod rows;

use rows::{
    bind_update, encode, fenced_miss, flows, limit, FlowRow, Micros, OwnerRow, StateRow,
    UpdateValues, FLOW_COLUMNS, UPDATE_SET,
};

impl SqlStore {
    /// The flow whose `column` (`id` or `process_id`, both unique) equals `value`.
    async fn find_one(&self, column: &'static str, value: &str) -> StoreResult<Option<DataFlow>> {
        let value = value.to_owned();
        Ok(self
            .run(move |pools| {
                with_conn!(pools, |conn, backend| {
                    let rows = diesel::sql_query(backend.sql(&format!(
                        "SELECT {FLOW_COLUMNS} FROM data_flows WHERE {column} = ?"
                    )))
                    .bind::<Text, _>(&value)
                    .load::<FlowRow>(conn)?;
                    flows(rows)
                })
            })
            .await?
            .into_iter()
            .next())
    }
}

impl SqlStore {
    /// Gives up to `max` flows in `states` that `pick` selects to `runtime_id` (epoch + 1), in
    /// one statement, oldest state change first; nothing unless `runtime_id` holds a valid
    /// lease. Rows locked by a concurrent picker are skipped, not waited for.
    async fn pick(
        &self,
        pick: Pick,
        runtime_id: &str,
        states: &[DataFlowState],
        max: usize,
    ) -> StoreResult<Vec<DataFlow>> {
        if states.is_empty() || max == 0 {
            return Ok(Vec::new());
        }
        let runtime_id = runtime_id.to_owned();
        let sql = pick.sql(&state_list(states.iter().map(|s| s.as_str())));
        Ok(self
            .run(move |pools| {
                write_tx!(pools, |conn, backend| {
                    let query = diesel::sql_query(backend.sql(&sql));
                    let rows = match pick {
                        Pick::Unowned => query
                            .bind::<Text, _>(&runtime_id)
                            .bind::<BigInt, _>(limit(max))
                            .bind::<Text, _>(&runtime_id)
                            .load::<FlowRow>(conn)?,
                        Pick::Abandoned => query
                            .bind::<Text, _>(&runtime_id)
                            .bind::<Text, _>(&runtime_id)
                            .bind::<BigInt, _>(limit(max))
                            .bind::<Text, _>(&runtime_id)
                            .bind::<Text, _>(&runtime_id)
                            .load::<FlowRow>(conn)?,
                    };
                    flows(rows)
                })
            })
            .await?)
    }
}

/// Which flows [`DataFlowStore::claim`] and [`DataFlowStore::take_over`] pick.
#[derive(Clone, Copy)]
enum Pick {
    /// Flows nobody owns (released, or created on a replica outside the baseline).
    Unowned,
    /// Flows whose owner has no valid member lease (never the picker's own).
    Abandoned,
}

impl Pick {
    /// The statement: a `picked` set, then the update that re-checks each row's owner.
    fn sql(self, states: &str) -> String {
        let (picked, still) = match self {
            Pick::Unowned => (
                format!(
                    "SELECT id AS picked_id FROM data_flows \
                     WHERE runtime_id IS NULL AND state IN ({states}) \
                       AND EXISTS (SELECT 1 FROM members WHERE runtime_id = ? AND lease_expires_at > {{now}}) \
                     ORDER BY state_timestamp, id LIMIT ? {{skip_locked}}"
                ),
                "data_flows.runtime_id IS NULL",
            ),
            Pick::Abandoned => (
                format!(
                    "SELECT f.id AS picked_id FROM data_flows f \
                     WHERE f.runtime_id IS NOT NULL AND f.runtime_id <> ? AND f.state IN ({states}) \
                       AND NOT EXISTS (SELECT 1 FROM members m WHERE m.runtime_id = f.runtime_id AND m.lease_expires_at > {{now}}) \
                       AND EXISTS (SELECT 1 FROM members me WHERE me.runtime_id = ? AND me.lease_expires_at > {{now}}) \
                     ORDER BY f.state_timestamp, f.id LIMIT ? {{skip_locked}}"
                ),
                "data_flows.runtime_id IS NOT NULL AND data_flows.runtime_id <> ?",
            ),
        };
        format!(
            "WITH picked AS ({picked}) \
             UPDATE data_flows SET runtime_id = ?, epoch = epoch + 1, updated_at = {{now}} \
             FROM picked WHERE data_flows.id = picked.picked_id AND {still} \
             RETURNING {FLOW_COLUMNS}"
        )
    }
}

#[async_trait]
impl DataFlowStore for SqlStore {
    async fn now(&self) -> StoreResult<DateTime<Utc>> {
        let now = self
            .run(|pools| {
                with_conn!(pools, |conn, backend| {
                    let rows = diesel::sql_query(backend.sql("SELECT {now} AS now"))
                        .load::<Micros>(conn)?;
                    Ok(rows.first().map(|r| r.now).unwrap_or_default())
                })
            })
            .await?;
        Ok(micros(now))
    }

    async fn create(&self, flow: &NewDataFlow) -> StoreResult<DataFlow> {
        let f = flow.clone();
        let result = self
            .run(move |pools| {
                let sql = format!(
                    "INSERT INTO data_flows ({FLOW_COLUMNS}) VALUES \
                     (?, ?, ?, ?, ?, 1, {{now}}, {{now}}, {{now}}, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL) \
                     RETURNING {FLOW_COLUMNS}"
                );
                with_conn!(pools, |conn, backend| {
                    let rows = diesel::sql_query(backend.sql(&sql))
                        .bind::<Text, _>(&f.id)
                        .bind::<Text, _>(&f.process_id)
                        .bind::<Text, _>(f.kind.as_str())
                        .bind::<Text, _>(&f.profile)
                        .bind::<Text, _>(f.state.as_str())
                        .bind::<Nullable<Text>, _>(&f.runtime_id)
                        .bind::<BigInt, _>(i64::from(f.runtime_id.is_some()))
                        .bind::<Text, _>(encode(&f.source))
                        .bind::<Nullable<Text>, _>(f.destination.as_ref().map(encode))
                        .bind::<Text, _>(encode(&f.metadata))
                        .bind::<Nullable<Text>, _>(&f.participant_id)
                        .bind::<Nullable<Text>, _>(&f.callback_address)
                        .load::<FlowRow>(conn)?;
                    flows(rows)
                })
            })
            .await;
        match result {
            Ok(created) => created
                .into_iter()
                .next()
                .ok_or_else(|| StoreError::Internal("insert returned no row".into())),
            Err(error) => match error.kind() {
                Kind::UniqueViolation(detail) if detail.contains("process_id") => {
                    Err(StoreError::AlreadyExists {
                        entity: "data flow with process id",
                        id: flow.process_id.clone(),
                    })
                }
                Kind::UniqueViolation(_) => Err(StoreError::AlreadyExists {
                    entity: "data flow",
                    id: flow.id.clone(),
                }),
                _ => Err(error.into()),
            },
        }
    }

    async fn find(&self, id: &str) -> StoreResult<Option<DataFlow>> {
        self.find_one("id", id).await
    }

    async fn find_by_process_id(&self, process_id: &str) -> StoreResult<Option<DataFlow>> {
        self.find_one("process_id", process_id).await
    }

    async fn list(&self, states: &[DataFlowState], max: usize) -> StoreResult<Vec<DataFlow>> {
        let filter = if states.is_empty() {
            String::new()
        } else {
            format!(
                "WHERE state IN ({})",
                state_list(states.iter().map(|s| s.as_str()))
            )
        };
        let sql = format!(
            "SELECT {FLOW_COLUMNS} FROM data_flows {filter} ORDER BY created_at, id LIMIT ?"
        );
        let mut result = self
            .run(move |pools| {
                with_conn!(pools, |conn, backend| {
                    let rows = diesel::sql_query(backend.sql(&sql))
                        .bind::<BigInt, _>(limit(max))
                        .load::<FlowRow>(conn)?;
                    flows(rows)
                })
            })
            .await?;
        result.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(result)
    }

    async fn register_member(&self, registration: &MemberRegistration) -> StoreResult<Member> {
        self.insert_member(registration).await
    }

    async fn renew_member(
        &self,
        runtime_id: &str,
        incarnation: &str,
        lease_ms: i64,
    ) -> StoreResult<Member> {
        self.renew_member_lease(runtime_id, incarnation, lease_ms)
            .await
    }

    async fn set_member_state(
        &self,
        runtime_id: &str,
        incarnation: &str,
        state: &str,
    ) -> StoreResult<()> {
        self.update_member_state(runtime_id, incarnation, state)
            .await
    }

    async fn remove_member(&self, runtime_id: &str, incarnation: &str) -> StoreResult<u64> {
        self.delete_member(runtime_id, incarnation).await
    }

    async fn list_members(&self) -> StoreResult<Vec<Member>> {
        self.select_members().await
    }

    async fn claim(
        &self,
        runtime_id: &str,
        states: &[DataFlowState],
        max: usize,
    ) -> StoreResult<Vec<DataFlow>> {
        self.pick(Pick::Unowned, runtime_id, states, max).await
    }

    async fn take_over(
        &self,
        runtime_id: &str,
        states: &[DataFlowState],
        max: usize,
    ) -> StoreResult<Vec<DataFlow>> {
        self.pick(Pick::Abandoned, runtime_id, states, max).await
    }

    async fn update_owned(
        &self,
        owner: &FlowOwner,
        flow_id: &str,
        update: &FlowUpdate,
    ) -> StoreResult<DataFlow> {
        let (owner, flow_id) = (owner.clone(), flow_id.to_owned());
        let values = UpdateValues::of(update);
        let only_from = if update.only_from.is_empty() {
            String::new()
        } else {
            format!(
                "AND state IN ({})",
                state_list(update.only_from.iter().map(|s| s.as_str()))
            )
        };
        let sql = format!(
            "UPDATE data_flows SET {UPDATE_SET} WHERE id = ? AND runtime_id = ? AND epoch = ? \
             AND state NOT IN ('COMPLETED', 'TERMINATED') {only_from} RETURNING {FLOW_COLUMNS}"
        );
        Ok(self
            .run(move |pools| {
                with_conn!(pools, |conn, backend| {
                    let rows = bind_update!(diesel::sql_query(backend.sql(&sql)), values)
                        .bind::<Text, _>(&flow_id)
                        .bind::<Text, _>(&owner.runtime_id)
                        .bind::<BigInt, _>(owner.epoch)
                        .load::<FlowRow>(conn)?;
                    match flows(rows)?.into_iter().next() {
                        Some(flow) => Ok(flow),
                        None => Err(fenced_miss!(conn, backend, owner, &flow_id)),
                    }
                })
            })
            .await?)
    }

    async fn transition(
        &self,
        flow_id: &str,
        from: &[DataFlowState],
        to: DataFlowState,
        new_owner: Option<&str>,
        update: &FlowUpdate,
    ) -> StoreResult<DataFlow> {
        let flow_id = flow_id.to_owned();
        let new_owner = new_owner.map(str::to_owned);
        let values = UpdateValues::of(&FlowUpdate {
            state: Some(to),
            ..update.clone()
        });
        let sql = format!(
            "UPDATE data_flows SET {UPDATE_SET}, \
               runtime_id = CASE WHEN ? IS NULL THEN runtime_id ELSE ? END, \
               epoch = CASE WHEN ? IS NULL THEN epoch ELSE epoch + 1 END \
             WHERE id = ? AND state IN ({from}) RETURNING {FLOW_COLUMNS}",
            from = state_list(from.iter().map(|s| s.as_str()))
        );
        Ok(self
            .run(move |pools| {
                with_conn!(pools, |conn, backend| {
                    let rows = bind_update!(diesel::sql_query(backend.sql(&sql)), values)
                        .bind::<Nullable<Text>, _>(&new_owner)
                        .bind::<Nullable<Text>, _>(&new_owner)
                        .bind::<Nullable<Text>, _>(&new_owner)
                        .bind::<Text, _>(&flow_id)
                        .load::<FlowRow>(conn)?;
                    if let Some(flow) = flows(rows)?.into_iter().next() {
                        return Ok(flow);
                    }
                    let current =
                        diesel::sql_query(backend.sql("SELECT state FROM data_flows WHERE id = ?"))
                            .bind::<Text, _>(&flow_id)
                            .load::<StateRow>(conn)?;
                    Err(DbError::Store(match current.into_iter().next() {
                        Some(row) => StoreError::WrongState {
                            flow_id,
                            state: row.state,
                        },
                        None => StoreError::NotFound {
                            entity: "data flow",
                            id: flow_id,
                        },
                    }))
                })
            })
            .await?)
    }

    async fn list_owned(
        &self,
        runtime_id: &str,
        states: &[DataFlowState],
        max: usize,
    ) -> StoreResult<Vec<DataFlow>> {
        if states.is_empty() {
            return Ok(Vec::new());
        }
        let runtime_id = runtime_id.to_owned();
        let sql = format!(
            "SELECT {FLOW_COLUMNS} FROM data_flows WHERE runtime_id = ? AND state IN ({states}) \
             ORDER BY state_timestamp, id LIMIT ?",
            states = state_list(states.iter().map(|s| s.as_str()))
        );
        Ok(self
            .run(move |pools| {
                with_conn!(pools, |conn, backend| {
                    let rows = diesel::sql_query(backend.sql(&sql))
                        .bind::<Text, _>(&runtime_id)
                        .bind::<BigInt, _>(limit(max))
                        .load::<FlowRow>(conn)?;
                    flows(rows)
                })
            })
            .await?)
    }

    async fn count_by_state(&self) -> StoreResult<Vec<(DataFlowState, u64)>> {
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = Text)]
            state: String,
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let rows = self
            .run(|pools| {
                with_conn!(pools, |conn, _backend| {
                    Ok(diesel::sql_query(
                        "SELECT state, COUNT(*) AS n FROM data_flows GROUP BY state",
                    )
                    .load::<Count>(conn)?)
                })
            })
            .await?;
        rows.into_iter()
            .map(|r| {
                Ok((
                    DataFlowState::parse(&r.state)?,
                    u64::try_from(r.n).unwrap_or(0),
                ))
            })
            .collect()
    }

    async fn notify_change(&self, flow_id: &str) -> StoreResult<()> {
        if self.backend() != crate::Backend::Postgres {
            return Ok(());
        }
        let flow_id = flow_id.to_owned();
        Ok(self
            .run(move |pools| {
                with_conn!(pools, |conn, backend| {
                    diesel::sql_query(backend.sql(&format!(
                        "SELECT pg_notify('{}', ?)",
                        crate::db::CHANGE_CHANNEL
                    )))
                    .bind::<Text, _>(&flow_id)
                    .execute(conn)?;
                    Ok(())
                })
            })
            .await?)
    }

    fn change_hints(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.change_receiver()
    }

    async fn release(&self, owner: &FlowOwner, flow_id: &str) -> StoreResult<()> {
        let (owner, flow_id) = (owner.clone(), flow_id.to_owned());
        Ok(self
            .run(move |pools| {
                with_conn!(pools, |conn, backend| {
                    let updated = diesel::sql_query(backend.sql(
                        "UPDATE data_flows SET runtime_id = NULL, updated_at = {now} \
                         WHERE id = ? AND runtime_id = ? AND epoch = ?",
                    ))
                    .bind::<Text, _>(&flow_id)
                    .bind::<Text, _>(&owner.runtime_id)
                    .bind::<BigInt, _>(owner.epoch)
                    .execute(conn)?;
                    if updated == 0 {
                        return Err(fenced_miss!(conn, backend, owner, &flow_id));
                    }
                    Ok(())
                })
            })
            .await?)
    }
}
