//! The rows, columns, shared SQL fragments and helpers of the flow and member queries.

use dataplane_spi::{
    Checkpoint, DataFlow, DataFlowState, FlowKind, FlowUpdate, Member, StoreError, StoreResult,
};
use diesel::sql_types::{BigInt, Integer, Nullable, Text};
use diesel::QueryableByName;

use crate::db::{micros, DbError};

pub(super) const FLOW_COLUMNS: &str =
    "id, process_id, kind, profile, state, state_count, state_timestamp, \
    created_at, updated_at, runtime_id, epoch, source, destination, metadata, participant_id, \
    callback_address, checkpoint_bytes, checkpoint_cursor, checkpoint_sink, error_detail";

pub(super) const MEMBER_COLUMNS: &str =
    "runtime_id, incarnation, heartbeat_at, lease_expires_at, started_at, state";

#[derive(QueryableByName)]
pub(super) struct FlowRow {
    #[diesel(sql_type = Text)]
    pub(super) id: String,
    #[diesel(sql_type = Text)]
    pub(super) process_id: String,
    #[diesel(sql_type = Text)]
    pub(super) kind: String,
    #[diesel(sql_type = Text)]
    pub(super) profile: String,
    #[diesel(sql_type = Text)]
    pub(super) state: String,
    #[diesel(sql_type = Integer)]
    pub(super) state_count: i32,
    #[diesel(sql_type = BigInt)]
    pub(super) state_timestamp: i64,
    #[diesel(sql_type = BigInt)]
    pub(super) created_at: i64,
    #[diesel(sql_type = BigInt)]
    pub(super) updated_at: i64,
    #[diesel(sql_type = Nullable<Text>)]
    pub(super) runtime_id: Option<String>,
    #[diesel(sql_type = BigInt)]
    pub(super) epoch: i64,
    #[diesel(sql_type = Text)]
    pub(super) source: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub(super) destination: Option<String>,
    #[diesel(sql_type = Text)]
    pub(super) metadata: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub(super) participant_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub(super) callback_address: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub(super) checkpoint_bytes: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    pub(super) checkpoint_cursor: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub(super) checkpoint_sink: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub(super) error_detail: Option<String>,
}

pub(super) fn json(column: &str, text: &str) -> StoreResult<serde_json::Value> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Internal(format!("corrupt {column} column: {e}")))
}

pub(super) fn encode(value: &serde_json::Value) -> String {
    // Serialising a `Value` cannot fail (its map keys are strings).
    value.to_string()
}

impl FlowRow {
    pub(super) fn into_flow(self) -> StoreResult<DataFlow> {
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
                sink: self.checkpoint_sink,
            }),
            error_detail: self.error_detail,
        })
    }
}

/// Converts rows, sorted oldest state first (RETURNING does not promise an order).
pub(super) fn flows(rows: Vec<FlowRow>) -> Result<Vec<DataFlow>, DbError> {
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
pub(super) struct MemberRow {
    #[diesel(sql_type = Text)]
    pub(super) runtime_id: String,
    #[diesel(sql_type = Text)]
    pub(super) incarnation: String,
    #[diesel(sql_type = BigInt)]
    pub(super) heartbeat_at: i64,
    #[diesel(sql_type = BigInt)]
    pub(super) lease_expires_at: i64,
    #[diesel(sql_type = BigInt)]
    pub(super) started_at: i64,
    #[diesel(sql_type = Text)]
    pub(super) state: String,
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
pub(super) struct Incarnation {
    #[diesel(sql_type = Text)]
    pub(super) incarnation: String,
}

#[derive(QueryableByName)]
pub(super) struct Micros {
    #[diesel(sql_type = BigInt)]
    pub(super) now: i64,
}

pub(super) fn membership_lost(runtime_id: &str, incarnation: &str) -> DbError {
    DbError::Store(StoreError::MembershipLost(format!(
        "replica '{runtime_id}' incarnation '{incarnation}' is not the registered member with a valid lease"
    )))
}

pub(super) fn limit(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Releases every flow owned by `runtime_id` (unowned, epoch + 1).
pub(super) const RELEASE_ALL: &str =
    "UPDATE data_flows SET runtime_id = NULL, epoch = epoch + 1, updated_at = {now} WHERE runtime_id = ?";

#[derive(QueryableByName)]
pub(super) struct StateRow {
    #[diesel(sql_type = Text)]
    pub(super) state: String,
}

/// The SET clause shared by owner writes and transitions. Every expression reads the row as
/// it was before the statement; a checkpoint behind the stored one is ignored.
pub(super) const UPDATE_SET: &str = "\
    state_count = CASE WHEN ? IS NULL THEN state_count WHEN state = ? THEN state_count + 1 ELSE 1 END, \
    state_timestamp = CASE WHEN ? IS NULL THEN state_timestamp ELSE {now} END, \
    state = COALESCE(?, state), \
    error_detail = COALESCE(?, error_detail), \
    checkpoint_cursor = CASE WHEN ? IS NOT NULL AND ? >= COALESCE(checkpoint_bytes, 0) THEN ? ELSE checkpoint_cursor END, \
    checkpoint_sink = CASE WHEN ? IS NOT NULL AND ? >= COALESCE(checkpoint_bytes, 0) THEN ? ELSE checkpoint_sink END, \
    checkpoint_bytes = CASE WHEN ? IS NOT NULL AND ? >= COALESCE(checkpoint_bytes, 0) THEN ? ELSE checkpoint_bytes END, \
    metadata = COALESCE(?, metadata), \
    source = COALESCE(?, source), \
    destination = COALESCE(?, destination), \
    updated_at = {now}";

/// The values bound to [`UPDATE_SET`], owned so they can move to the blocking pool.
pub(super) struct UpdateValues {
    pub(super) state: Option<String>,
    pub(super) error_detail: Option<String>,
    pub(super) checkpoint_bytes: Option<i64>,
    pub(super) checkpoint_cursor: Option<String>,
    pub(super) checkpoint_sink: Option<String>,
    pub(super) metadata: Option<String>,
    pub(super) source: Option<String>,
    pub(super) destination: Option<String>,
}

impl UpdateValues {
    pub(super) fn of(update: &FlowUpdate) -> Self {
        Self {
            state: update.state.map(|s| s.as_str().to_owned()),
            error_detail: update.error_detail.clone(),
            checkpoint_bytes: update.checkpoint.as_ref().map(|c| c.bytes),
            checkpoint_cursor: update.checkpoint.as_ref().and_then(|c| c.cursor.clone()),
            checkpoint_sink: update.checkpoint.as_ref().and_then(|c| c.sink.clone()),
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
            .bind::<Nullable<Text>, _>($v.checkpoint_sink.clone())
            .bind::<Nullable<BigInt>, _>($v.checkpoint_bytes)
            .bind::<Nullable<BigInt>, _>($v.checkpoint_bytes)
            .bind::<Nullable<BigInt>, _>($v.checkpoint_bytes)
            .bind::<Nullable<Text>, _>($v.metadata.clone())
            .bind::<Nullable<Text>, _>($v.source.clone())
            .bind::<Nullable<Text>, _>($v.destination.clone())
    };
}
pub(super) use bind_update;

#[derive(QueryableByName)]
pub(super) struct OwnerRow {
    #[diesel(sql_type = Nullable<Text>)]
    pub(super) runtime_id: Option<String>,
    #[diesel(sql_type = BigInt)]
    pub(super) epoch: i64,
    #[diesel(sql_type = Text)]
    pub(super) state: String,
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
pub(super) use fenced_miss;
