//! Load reports on the members table: written by the lease renewal itself (one statement,
//! whatever the replica runs) and read, with the store's clock, by selectors on the same store.

use dataplane_spi::{LoadReport, Member, MemberLoad, MemberLoads, StoreError, StoreResult};
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{QueryableByName, RunQueryDsl};

use crate::db::{micros, with_conn};
use crate::SqlStore;

const COLUMNS: &str =
    "runtime_id, incarnation, heartbeat_at, lease_expires_at, started_at, state, \
                       load_report, load_reported_at";

#[derive(QueryableByName)]
struct LoadRow {
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
    #[diesel(sql_type = Nullable<Text>)]
    load_report: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    load_reported_at: Option<i64>,
}

#[derive(QueryableByName)]
struct Now {
    #[diesel(sql_type = BigInt)]
    now: i64,
}

impl LoadRow {
    fn into_load(self) -> MemberLoad {
        // A report this version cannot read counts as no report, not as a broken member.
        let report = self
            .load_report
            .as_deref()
            .and_then(|text| serde_json::from_str::<LoadReport>(text).ok());
        MemberLoad {
            member: Member {
                runtime_id: self.runtime_id,
                incarnation: self.incarnation,
                heartbeat_at: micros(self.heartbeat_at),
                lease_expires_at: micros(self.lease_expires_at),
                started_at: micros(self.started_at),
                state: self.state,
            },
            reported_at: report.as_ref().and(self.load_reported_at.map(micros)),
            report,
        }
    }
}

fn membership_lost(runtime_id: &str, incarnation: &str) -> StoreError {
    StoreError::MembershipLost(format!(
        "replica '{runtime_id}' incarnation '{incarnation}' is not the registered member, or its lease expired"
    ))
}

impl SqlStore {
    /// The lease renewal with the load report in the same statement.
    pub(crate) async fn renew_with_report(
        &self,
        runtime_id: &str,
        incarnation: &str,
        lease_ms: i64,
        report: &LoadReport,
    ) -> StoreResult<Member> {
        let (runtime_id, incarnation) = (runtime_id.to_owned(), incarnation.to_owned());
        let report = serde_json::to_string(report)
            .map_err(|e| StoreError::Internal(format!("cannot encode a load report: {e}")))?;
        Ok(self
            .run(move |pools| {
                with_conn!(pools, |conn, backend| {
                    let rows = diesel::sql_query(backend.sql(&format!(
                        "UPDATE members SET heartbeat_at = {{now}}, lease_expires_at = {{now}} + ? * 1000, \
                           load_report = ?, load_reported_at = {{now}} \
                         WHERE runtime_id = ? AND incarnation = ? AND lease_expires_at > {{now}} \
                         RETURNING {COLUMNS}"
                    )))
                    .bind::<BigInt, _>(lease_ms)
                    .bind::<Text, _>(&report)
                    .bind::<Text, _>(&runtime_id)
                    .bind::<Text, _>(&incarnation)
                    .load::<LoadRow>(conn)?;
                    rows.into_iter()
                        .next()
                        .map(|row| row.into_load().member)
                        .ok_or_else(|| membership_lost(&runtime_id, &incarnation).into())
                })
            })
            .await?)
    }

    /// Every member with its report, and the database clock.
    pub(crate) async fn select_member_loads(&self) -> StoreResult<MemberLoads> {
        Ok(self
            .run(|pools| {
                with_conn!(pools, |conn, backend| {
                    let now = diesel::sql_query(backend.sql("SELECT {now} AS now"))
                        .load::<Now>(conn)?
                        .into_iter()
                        .next()
                        .map_or(0, |n| n.now);
                    let rows = diesel::sql_query(backend.sql(&format!(
                        "SELECT {COLUMNS} FROM members ORDER BY runtime_id"
                    )))
                    .load::<LoadRow>(conn)?;
                    Ok(MemberLoads {
                        now: micros(now),
                        members: rows.into_iter().map(LoadRow::into_load).collect(),
                    })
                })
            })
            .await?)
    }
}
