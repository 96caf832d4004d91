//! [`DataPlaneInstanceStore`] on SQL.

use async_trait::async_trait;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{Connection, QueryableByName, RunQueryDsl};
use selector_spi::{
    DataPlaneId, DataPlaneInstance, DataPlaneInstanceStore, DataPlaneRegistration, InstanceState,
    RegisteredLoad, SelectorError, SelectorResult,
};

use crate::db::{micros, with_conn, write_tx, DbError, Kind};
use crate::SqlStore;

const INSERT_COLUMNS: &str =
    "id, endpoint, profiles, allowed_source_types, labels, properties, auth_entry, \
                       turn_count, last_active, state, created_at, updated_at, ttl_seconds, load_report, load_reported_at";

/// The columns as read: a selectable instance whose `ttl_seconds` passed since its last
/// registration reads as UNAVAILABLE (by the database clock); `read_at` is that clock, which
/// ages the load the instance registered with.
const COLUMNS: &str =
    "id, endpoint, profiles, allowed_source_types, labels, properties, auth_entry, \
     turn_count, last_active, \
     CASE WHEN ttl_seconds IS NOT NULL AND state IN ('REGISTERED', 'AVAILABLE') \
       AND updated_at + ttl_seconds * 1000000 <= {now} THEN 'UNAVAILABLE' ELSE state END AS state, \
     created_at, updated_at, ttl_seconds, load_report, load_reported_at, {now} AS read_at";

#[derive(QueryableByName)]
struct InstanceRow {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Text)]
    endpoint: String,
    #[diesel(sql_type = Text)]
    profiles: String,
    #[diesel(sql_type = Text)]
    allowed_source_types: String,
    #[diesel(sql_type = Text)]
    labels: String,
    #[diesel(sql_type = Text)]
    properties: String,
    #[diesel(sql_type = Nullable<Text>)]
    auth_entry: Option<String>,
    #[diesel(sql_type = BigInt)]
    turn_count: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    last_active: Option<i64>,
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = BigInt)]
    created_at: i64,
    #[diesel(sql_type = BigInt)]
    updated_at: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    ttl_seconds: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    load_report: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    load_reported_at: Option<i64>,
    #[diesel(sql_type = BigInt)]
    read_at: i64,
}

fn json<T: serde::de::DeserializeOwned>(column: &str, text: &str) -> SelectorResult<T> {
    serde_json::from_str(text)
        .map_err(|e| SelectorError::Internal(format!("corrupt {column} column: {e}")))
}

impl InstanceRow {
    fn into_instance(self) -> SelectorResult<DataPlaneInstance> {
        let ttl_seconds = self.ttl_seconds.and_then(|t| u64::try_from(t).ok());
        let load = match (self.load_report.as_deref(), self.load_reported_at) {
            (Some(report), Some(at)) => Some(json::<RegisteredLoad>("load_report", report)?.at(
                micros(at),
                micros(self.read_at),
                ttl_seconds,
            )),
            _ => None,
        };
        Ok(DataPlaneInstance {
            id: DataPlaneId::new(self.id),
            endpoint: self.endpoint,
            profiles: json("profiles", &self.profiles)?,
            allowed_source_types: json("allowed_source_types", &self.allowed_source_types)?,
            labels: json("labels", &self.labels)?,
            properties: json("properties", &self.properties)?,
            authorization: self
                .auth_entry
                .as_deref()
                .map(|a| json("auth_entry", a))
                .transpose()?,
            turn_count: u64::try_from(self.turn_count).unwrap_or_default(),
            last_active: self.last_active.map(micros),
            state: InstanceState::parse(&self.state)?,
            created_at: micros(self.created_at),
            updated_at: micros(self.updated_at),
            ttl_seconds,
            load,
        })
    }
}

/// The definition columns of a registration, serialised once.
struct Definition {
    id: String,
    endpoint: String,
    profiles: String,
    allowed_source_types: String,
    labels: String,
    properties: String,
    auth_entry: Option<String>,
    state: Option<String>,
    ttl_seconds: Option<i64>,
    load_report: Option<String>,
}

impl Definition {
    fn of(registration: &DataPlaneRegistration) -> SelectorResult<Self> {
        let mut labels = registration.labels.clone();
        labels.sort();
        labels.dedup();
        Ok(Self {
            id: registration.dataplane_id.to_string(),
            endpoint: registration.endpoint.clone(),
            profiles: encode(&registration.profiles)?,
            allowed_source_types: encode(&registration.allowed_source_types)?,
            labels: encode(&labels)?,
            properties: encode(&registration.properties)?,
            auth_entry: registration
                .authorization
                .as_ref()
                .map(encode)
                .transpose()?,
            state: registration.state.map(|s| s.as_str().to_owned()),
            ttl_seconds: registration
                .ttl_seconds
                .map(|t| i64::try_from(t).unwrap_or(i64::MAX / 1_000_000)),
            load_report: registration.load.as_ref().map(encode).transpose()?,
        })
    }
}

fn encode<T: serde::Serialize>(value: &T) -> SelectorResult<String> {
    serde_json::to_string(value).map_err(|e| SelectorError::Internal(format!("cannot encode: {e}")))
}

fn rows_to_instances(rows: Vec<InstanceRow>) -> Result<Vec<DataPlaneInstance>, DbError> {
    rows.into_iter()
        .map(|r| r.into_instance().map_err(DbError::from))
        .collect()
}

fn one(rows: Vec<InstanceRow>, id: &str) -> Result<DataPlaneInstance, DbError> {
    rows_to_instances(rows)?
        .into_iter()
        .next()
        .ok_or_else(|| DbError::Selector(SelectorError::NotFound { id: id.to_owned() }))
}

#[async_trait]
impl DataPlaneInstanceStore for SqlStore {
    async fn create(
        &self,
        registration: &DataPlaneRegistration,
    ) -> SelectorResult<DataPlaneInstance> {
        let d = Definition::of(registration)?;
        let id = d.id.clone();
        let result = self
            .run(move |pools| {
                let sql = format!(
                    "INSERT INTO dataplane_instances ({INSERT_COLUMNS}) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, 0, NULL, COALESCE(?, 'REGISTERED'), {{now}}, {{now}}, ?, \
             ?, CASE WHEN ? IS NOT NULL THEN {{now}} END) \
                     RETURNING {COLUMNS}"
                );
                with_conn!(pools, |conn, backend| {
                    let rows = diesel::sql_query(backend.sql(&sql))
                        .bind::<Text, _>(&d.id)
                        .bind::<Text, _>(&d.endpoint)
                        .bind::<Text, _>(&d.profiles)
                        .bind::<Text, _>(&d.allowed_source_types)
                        .bind::<Text, _>(&d.labels)
                        .bind::<Text, _>(&d.properties)
                        .bind::<Nullable<Text>, _>(&d.auth_entry)
                        .bind::<Nullable<Text>, _>(&d.state)
                        .bind::<Nullable<BigInt>, _>(d.ttl_seconds)
                        .bind::<Nullable<Text>, _>(&d.load_report)
                        .bind::<Nullable<Text>, _>(&d.load_report)
                        .load::<InstanceRow>(conn)?;
                    one(rows, &d.id)
                })
            })
            .await;
        match result {
            Err(error) if matches!(error.kind(), Kind::UniqueViolation(_)) => {
                Err(SelectorError::AlreadyExists { id })
            }
            other => Ok(other?),
        }
    }

    async fn upsert(
        &self,
        registration: &DataPlaneRegistration,
    ) -> SelectorResult<(DataPlaneInstance, bool)> {
        let d = Definition::of(registration)?;
        // The upsert is one atomic statement; the existence check before it (same transaction)
        // only decides the `created` flag, which may claim "created" for both of two racing
        // first registrations on PostgreSQL — the stored row is right either way.
        let sql = format!(
            "INSERT INTO dataplane_instances ({INSERT_COLUMNS}) \
             VALUES (?, ?, ?, ?, ?, ?, ?, 0, NULL, COALESCE(?, 'REGISTERED'), {{now}}, {{now}}, ?, \
             ?, CASE WHEN ? IS NOT NULL THEN {{now}} END) \
             ON CONFLICT (id) DO UPDATE SET endpoint = excluded.endpoint, profiles = excluded.profiles, \
               allowed_source_types = excluded.allowed_source_types, labels = excluded.labels, \
               properties = excluded.properties, auth_entry = excluded.auth_entry, \
               updated_at = excluded.updated_at, ttl_seconds = excluded.ttl_seconds, \
               load_report = excluded.load_report, load_reported_at = excluded.load_reported_at, \
               state = CASE WHEN ? IS NOT NULL THEN excluded.state \
                            WHEN dataplane_instances.state = 'UNREGISTERED' THEN 'REGISTERED' \
                            ELSE dataplane_instances.state END \
             RETURNING {COLUMNS}"
        );
        Ok(self
            .run(move |pools| {
                write_tx!(pools, |conn, backend| {
                    let existing = diesel::sql_query(backend.sql(&format!(
                        "SELECT {COLUMNS} FROM dataplane_instances WHERE id = ? {{for_update}}"
                    )))
                    .bind::<Text, _>(&d.id)
                    .load::<InstanceRow>(conn)?;
                    let rows = diesel::sql_query(backend.sql(&sql))
                        .bind::<Text, _>(&d.id)
                        .bind::<Text, _>(&d.endpoint)
                        .bind::<Text, _>(&d.profiles)
                        .bind::<Text, _>(&d.allowed_source_types)
                        .bind::<Text, _>(&d.labels)
                        .bind::<Text, _>(&d.properties)
                        .bind::<Nullable<Text>, _>(&d.auth_entry)
                        .bind::<Nullable<Text>, _>(&d.state)
                        .bind::<Nullable<BigInt>, _>(d.ttl_seconds)
                        .bind::<Nullable<Text>, _>(&d.load_report)
                        .bind::<Nullable<Text>, _>(&d.load_report)
                        .bind::<Nullable<Text>, _>(&d.state)
                        .load::<InstanceRow>(conn)?;
                    Ok((one(rows, &d.id)?, existing.is_empty()))
                })
            })
            .await?)
    }

    async fn find(&self, id: &str) -> SelectorResult<Option<DataPlaneInstance>> {
        let id = id.to_owned();
        Ok(self
            .run(move |pools| {
                with_conn!(pools, |conn, backend| {
                    let rows = diesel::sql_query(backend.sql(&format!(
                        "SELECT {COLUMNS} FROM dataplane_instances WHERE id = ?"
                    )))
                    .bind::<Text, _>(&id)
                    .load::<InstanceRow>(conn)?;
                    rows_to_instances(rows)
                })
            })
            .await?
            .into_iter()
            .next())
    }

    async fn list(&self) -> SelectorResult<Vec<DataPlaneInstance>> {
        Ok(self
            .run(move |pools| {
                with_conn!(pools, |conn, backend| {
                    let rows = diesel::sql_query(backend.sql(&format!(
                        "SELECT {COLUMNS} FROM dataplane_instances ORDER BY id"
                    )))
                    .load::<InstanceRow>(conn)?;
                    rows_to_instances(rows)
                })
            })
            .await?)
    }

    async fn delete(&self, id: &str) -> SelectorResult<()> {
        let id = id.to_owned();
        Ok(self
            .run(move |pools| {
                with_conn!(pools, |conn, backend| {
                    let deleted = diesel::sql_query(
                        backend.sql("DELETE FROM dataplane_instances WHERE id = ?"),
                    )
                    .bind::<Text, _>(&id)
                    .execute(conn)?;
                    if deleted == 0 {
                        return Err(DbError::Selector(SelectorError::NotFound { id }));
                    }
                    Ok(())
                })
            })
            .await?)
    }

    async fn set_state(&self, id: &str, state: InstanceState) -> SelectorResult<DataPlaneInstance> {
        let id = id.to_owned();
        Ok(self
            .run(move |pools| {
                with_conn!(pools, |conn, backend| {
                    let rows = diesel::sql_query(backend.sql(&format!(
                        "UPDATE dataplane_instances SET state = ?, updated_at = {{now}} WHERE id = ? RETURNING {COLUMNS}"
                    )))
                    .bind::<Text, _>(state.as_str())
                    .bind::<Text, _>(&id)
                    .load::<InstanceRow>(conn)?;
                    one(rows, &id)
                })
            })
            .await?)
    }

    async fn record_selection(&self, id: &str) -> SelectorResult<DataPlaneInstance> {
        let id = id.to_owned();
        Ok(self
            .run(move |pools| {
                with_conn!(pools, |conn, backend| {
                    let rows = diesel::sql_query(backend.sql(&format!(
                        "UPDATE dataplane_instances SET turn_count = turn_count + 1, last_active = {{now}} \
                         WHERE id = ? RETURNING {COLUMNS}"
                    )))
                    .bind::<Text, _>(&id)
                    .load::<InstanceRow>(conn)?;
                    one(rows, &id)
                })
            })
            .await?)
    }

    async fn next_sequence(&self, name: &str) -> SelectorResult<u64> {
        #[derive(QueryableByName)]
        struct Value {
            #[diesel(sql_type = BigInt)]
            value: i64,
        }
        let name = name.to_owned();
        let value = self
            .run(move |pools| {
                // One atomic upsert: every caller on the database gets a distinct value.
                write_tx!(pools, |conn, backend| {
                    let rows = diesel::sql_query(backend.sql(
                        "INSERT INTO selector_sequences (name, value) VALUES (?, 1) \
                         ON CONFLICT (name) DO UPDATE SET value = selector_sequences.value + 1 \
                         RETURNING value - 1 AS value",
                    ))
                    .bind::<Text, _>(&name)
                    .load::<Value>(conn)?;
                    rows.into_iter().next().map(|v| v.value).ok_or_else(|| {
                        DbError::Selector(SelectorError::Internal(
                            "sequence upsert returned nothing".into(),
                        ))
                    })
                })
            })
            .await?;
        Ok(u64::try_from(value).unwrap_or_default())
    }
}
