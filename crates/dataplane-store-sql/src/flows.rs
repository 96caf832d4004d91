//! [`DataFlowStore`] on SQL: flows, members, claims, takeovers, renewals and fenced writes.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use dataplane_spi::{
    Checkpoint, DataFlow, DataFlowState, DataFlowStore, FlowKind, FlowOwner, FlowUpdate, Member,
    MemberRegistration, NewDataFlow, StoreError, StoreResult,
};
use diesel::sql_types::{BigInt, Integer, Nullable, Text};
use diesel::{Connection, QueryableByName, RunQueryDsl};

use crate::db::{micros, state_list, with_conn, write_tx, DbError, Kind};
use crate::SqlStore;

const FLOW_COLUMNS: &str = "id, process_id, kind, profile, state, state_count, state_timestamp, \
    created_at, updated_at, runtime_id, epoch, source, destination, metadata, participant_id, \
    callback_address, checkpoint_bytes, checkpoint_cursor, error_detail";

const MEMBER_COLUMNS: &str =
    "runtime_id, incarnation, heartbeat_at, lease_expires_at, started_at, state";

#[derive(QueryableByName)]
struct FlowRow {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Text)]
    process_id: String,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Text)]
    profile: String,
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = Integer)]
    state_count: i32,
    #[diesel(sql_type = BigInt)]
    state_timestamp: i64,
    #[diesel(sql_type = BigInt)]
    created_at: i64,
    #[diesel(sql_type = BigInt)]
    updated_at: i64,
    #[diesel(sql_type = Nullable<Text>)]
    runtime_id: Option<String>,
    #[diesel(sql_type = BigInt)]
    epoch: i64,
    #[diesel(sql_type = Text)]
    source: String,
    #[diesel(sql_type = Nullable<Text>)]
    destination: Option<String>,
    #[diesel(sql_type = Text)]
    metadata: String,
    #[diesel(sql_type = Nullable<Text>)]
    participant_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    callback_address: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    checkpoint_bytes: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    checkpoint_cursor: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    error_detail: Option<String>,
}

fn json(column: &str, text: &str) -> StoreResult<serde_json::Value> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Internal(format!("corrupt {column} column: {e}")))
}

fn encode(value: &serde_json::Value) -> String {
    // Serialising a `Value` cannot fail (its map keys are strings).
    value.to_string()
}

impl FlowRow {
    fn into_flow(self) -> StoreResult<DataFlow> {
        Ok(DataFlow {
            id: self.id,
            process_id: self.process_id,
            kind: FlowKind::parse(&self.kind)?,
            profile: self.profile,
            state: DataFlowState::parse(&self.state)?,
            state_count: self.state_count,
            state_timestamp: micros(self.state_timestamp),
            created_at: micros(self.created_at),
            updated_at: micros(self.updated_at),
            runtime_id: self.runtime_id,
            epoch: self.epoch,
            source: json("source", &self.source)?,
            destination: self
                .destination
                .as_deref()
                .map(|d| json("destination", d))
                .transpose()?,
            metadata: json("metadata", &self.metadata)?,
            participant_id: self.participant_id,
            callback_address: self.callback_address,
            checkpoint: self.checkpoint_bytes.map(|bytes| Checkpoint {
                bytes,
                cursor: self.checkpoint_cursor,
            }),
            error_detail: self.error_detail,
        })
    }
}

/// Converts rows, sorted oldest state first (RETURNING does not promise an order).
fn flows(rows: Vec<FlowRow>) -> Result<Vec<DataFlow>, DbError> {
    let mut flows = rows
        .into_iter()
        .map(|r| r.into_flow().map_err(DbError::from))
        .collect::<Result<Vec<_>, _>>()?;
    flows.sort_by(|a, b| {
        a.state_timestamp
            .cmp(&b.state_timestamp)
            .then_with(|| a.id.cmp(&b.id))
    });
    Ok(flows)
}

#[derive(QueryableByName)]
struct MemberRow {
    #[diesel(sql_type = Text)]
    runtime_id: String,
    #[diesel(sql_type = Text)]
    incarnation: String,
    #[diesel(sql_type = BigInt)]
    heartbeat_at: i64,
    #[diesel(sql_type = BigInt)]
    lease_expires_at: i64,
    #[diesel(sql_type = BigInt)]
    started_at: i64,
    #[diesel(sql_type = Text)]
    state: String,
}

impl From<MemberRow> for Member {
    fn from(row: MemberRow) -> Self {
        Self {
            runtime_id: row.runtime_id,
            incarnation: row.incarnation,
            heartbeat_at: micros(row.heartbeat_at),
            lease_expires_at: micros(row.lease_expires_at),
            started_at: micros(row.started_at),
            state: row.state,
        }
    }
}

#[derive(QueryableByName)]
struct Incarnation {
    #[diesel(sql_type = Text)]
    incarnation: String,
}

#[derive(QueryableByName)]
struct Micros {
    #[diesel(sql_type = BigInt)]
    now: i64,
}

fn membership_lost(runtime_id: &str, incarnation: &str) -> DbError {
    DbError::Store(StoreError::MembershipLost(format!(
        "replica '{runtime_id}' incarnation '{incarnation}' is not the registered member with a valid lease"
    )))
}

fn limit(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Releases every flow owned by `runtime_id` (unowned, epoch + 1).
const RELEASE_ALL: &str =
    "UPDATE data_flows SET runtime_id = NULL, epoch = epoch + 1, updated_at = {now} WHERE runtime_id = ?";

#[derive(QueryableByName)]
struct StateRow {
    #[diesel(sql_type = Text)]
    state: String,
}

/// The SET clause shared by owner writes and transitions. Every expression reads the row as
/// it was before the statement; a checkpoint behind the stored one is ignored.
const UPDATE_SET: &str = "\
    state_count = CASE WHEN ? IS NULL THEN state_count WHEN state = ? THEN state_count + 1 ELSE 1 END, \
    state_timestamp = CASE WHEN ? IS NULL THEN state_timestamp ELSE {now} END, \
    state = COALESCE(?, state), \
    error_detail = COALESCE(?, error_detail), \
    checkpoint_cursor = CASE WHEN ? IS NOT NULL AND ? >= COALESCE(checkpoint_bytes, 0) THEN ? ELSE checkpoint_cursor END, \
    checkpoint_bytes = CASE WHEN ? IS NOT NULL AND ? >= COALESCE(checkpoint_bytes, 0) THEN ? ELSE checkpoint_bytes END, \
    metadata = COALESCE(?, metadata), \
    source = COALESCE(?, source), \
    destination = COALESCE(?, destination), \
    updated_at = {now}";

/// The values bound to [`UPDATE_SET`], owned so they can move to the blocking pool.
struct UpdateValues {
    state: Option<String>,
    error_detail: Option<String>,
    checkpoint_bytes: Option<i64>,
    checkpoint_cursor: Option<String>,
    metadata: Option<String>,
    source: Option<String>,
    destination: Option<String>,
}

impl UpdateValues {
    fn of(update: &FlowUpdate) -> Self {
        Self {
            state: update.state.map(|s| s.as_str().to_owned()),
            error_detail: update.error_detail.clone(),
            checkpoint_bytes: update.checkpoint.as_ref().map(|c| c.bytes),
            checkpoint_cursor: update.checkpoint.as_ref().and_then(|c| c.cursor.clone()),
            metadata: update.metadata.as_ref().map(encode),
            source: update.source.as_ref().map(encode),
            destination: update.destination.as_ref().map(encode),
        }
    }
}

/// Binds [`UpdateValues`] in the order of [`UPDATE_SET`]'s placeholders.
macro_rules! bind_update {
    ($query:expr, $v:expr) => {
        $query
            .bind::<Nullable<Text>, _>($v.state.clone())
            .bind::<Nullable<Text>, _>($v.state.clone())
            .bind::<Nullable<Text>, _>($v.state.clone())
            .bind::<Nullable<Text>, _>($v.state.clone())
            .bind::<Nullable<Text>, _>($v.error_detail.clone())
            .bind::<Nullable<BigInt>, _>($v.checkpoint_bytes)
            .bind::<Nullable<BigInt>, _>($v.checkpoint_bytes)
            .bind::<Nullable<Text>, _>($v.checkpoint_cursor.clone())
            .bind::<Nullable<BigInt>, _>($v.checkpoint_bytes)
            .bind::<Nullable<BigInt>, _>($v.checkpoint_bytes)
            .bind::<Nullable<BigInt>, _>($v.checkpoint_bytes)
            .bind::<Nullable<Text>, _>($v.metadata.clone())
            .bind::<Nullable<Text>, _>($v.source.clone())
            .bind::<Nullable<Text>, _>($v.destination.clone())
    };
}

#[derive(QueryableByName)]
struct OwnerRow {
    #[diesel(sql_type = Nullable<Text>)]
    runtime_id: Option<String>,
    #[diesel(sql_type = BigInt)]
    epoch: i64,
    #[diesel(sql_type = Text)]
    state: String,
}

/// After a fenced write matched nothing: `WrongState` when the writer still owns the flow (it
/// is in a state the write does not apply to), `LeaseLost` when someone else owns it or at
/// another epoch, `NotFound` when it does not exist. A macro, so that it runs on either
/// connection type.
macro_rules! fenced_miss {
    ($conn:expr, $backend:expr, $owner:expr, $flow_id:expr) => {{
        let found = diesel::sql_query($backend.sql("SELECT runtime_id, epoch, state FROM data_flows WHERE id = ?"))
            .bind::<Text, _>($flow_id)
            .load::<OwnerRow>($conn)?;
        match found.into_iter().next() {
            Some(row) if row.runtime_id.as_deref() == Some($owner.runtime_id.as_str()) && row.epoch == $owner.epoch => {
                DbError::Store(StoreError::WrongState { flow_id: $flow_id.clone(), state: row.state })
            }
            Some(_) => {
                tracing::warn!(flow_id = %$flow_id, runtime_id = %$owner.runtime_id, epoch = $owner.epoch, "fenced write refused: lease lost");
                DbError::Store(StoreError::LeaseLost {
                    flow_id: $flow_id.clone(),
                    runtime_id: $owner.runtime_id.clone(),
                    epoch: $owner.epoch,
                })
            }
            None => DbError::Store(StoreError::NotFound { entity: "data flow", id: $flow_id.clone() }),
        }
    }};
}

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
                     (?, ?, ?, ?, ?, 1, {{now}}, {{now}}, {{now}}, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL) \
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

    async fn renew_member(
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

    async fn set_member_state(
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

    async fn remove_member(&self, runtime_id: &str, incarnation: &str) -> StoreResult<u64> {
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

    async fn list_members(&self) -> StoreResult<Vec<Member>> {
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

    async fn claim(
        &self,
        runtime_id: &str,
        states: &[DataFlowState],
        max: usize,
    ) -> StoreResult<Vec<DataFlow>> {
        if states.is_empty() || max == 0 {
            return Ok(Vec::new());
        }
        let runtime_id = runtime_id.to_owned();
        let sql = format!(
            "WITH picked AS ( \
               SELECT id AS picked_id FROM data_flows \
               WHERE runtime_id IS NULL AND state IN ({states}) \
                 AND EXISTS (SELECT 1 FROM members WHERE runtime_id = ? AND lease_expires_at > {{now}}) \
               ORDER BY state_timestamp, id LIMIT ? {{skip_locked}}) \
             UPDATE data_flows SET runtime_id = ?, epoch = epoch + 1, updated_at = {{now}} \
             FROM picked WHERE data_flows.id = picked.picked_id AND data_flows.runtime_id IS NULL \
             RETURNING {FLOW_COLUMNS}",
            states = state_list(states.iter().map(|s| s.as_str()))
        );
        Ok(self
            .run(move |pools| {
                write_tx!(pools, |conn, backend| {
                    let rows = diesel::sql_query(backend.sql(&sql))
                        .bind::<Text, _>(&runtime_id)
                        .bind::<BigInt, _>(limit(max))
                        .bind::<Text, _>(&runtime_id)
                        .load::<FlowRow>(conn)?;
                    flows(rows)
                })
            })
            .await?)
    }

    async fn take_over(
        &self,
        runtime_id: &str,
        states: &[DataFlowState],
        max: usize,
    ) -> StoreResult<Vec<DataFlow>> {
        if states.is_empty() || max == 0 {
            return Ok(Vec::new());
        }
        let runtime_id = runtime_id.to_owned();
        let sql = format!(
            "WITH picked AS ( \
               SELECT f.id AS picked_id FROM data_flows f \
               WHERE f.runtime_id IS NOT NULL AND f.runtime_id <> ? AND f.state IN ({states}) \
                 AND NOT EXISTS (SELECT 1 FROM members m WHERE m.runtime_id = f.runtime_id AND m.lease_expires_at > {{now}}) \
                 AND EXISTS (SELECT 1 FROM members me WHERE me.runtime_id = ? AND me.lease_expires_at > {{now}}) \
               ORDER BY f.state_timestamp, f.id LIMIT ? {{skip_locked}}) \
             UPDATE data_flows SET runtime_id = ?, epoch = epoch + 1, updated_at = {{now}} \
             FROM picked WHERE data_flows.id = picked.picked_id \
               AND data_flows.runtime_id IS NOT NULL AND data_flows.runtime_id <> ? \
             RETURNING {FLOW_COLUMNS}",
            states = state_list(states.iter().map(|s| s.as_str()))
        );
        Ok(self
            .run(move |pools| {
                write_tx!(pools, |conn, backend| {
                    let rows = diesel::sql_query(backend.sql(&sql))
                        .bind::<Text, _>(&runtime_id)
                        .bind::<Text, _>(&runtime_id)
                        .bind::<BigInt, _>(limit(max))
                        .bind::<Text, _>(&runtime_id)
                        .bind::<Text, _>(&runtime_id)
                        .load::<FlowRow>(conn)?;
                    flows(rows)
                })
            })
            .await?)
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
