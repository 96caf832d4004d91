//! Lease renewal cost with 10 000 owned flows: dpf's per-replica renewal (one statement per
//! tick) against the one-write-per-flow scheme (each running flow's lease row updated every
//! tick), measured on the same database in the same run, on SQLite and PostgreSQL.
//!
//! ```text
//! cargo bench -p dataplane-store-sql --bench renewal            # 3 s per measurement
//! BENCH_SECONDS=10 BENCH_FLOWS=10000 cargo bench -p dataplane-store-sql --bench renewal
//! ```
//!
//! Reported: renewal ticks per second each scheme sustains (a tick renews every owned flow),
//! the statements per tick, and the ratio dpf / baseline.

#![allow(clippy::unwrap_used, clippy::print_stdout)] // a benchmark binary

use std::time::{Duration, Instant};

use dataplane_spi::{DataFlowState, DataFlowStore, FlowKind, MemberRegistration, NewDataFlow};
use dataplane_store_sql::{SqlStore, SqlStoreOptions, StoreUrl};
use diesel::sql_types::Text;
use diesel::{Connection, RunQueryDsl};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Figures {
    backend: &'static str,
    flows: u64,
    dpf_ticks_per_s: f64,
    dpf_statements_per_tick: f64,
    baseline_ticks_per_s: f64,
    baseline_writes_per_s: f64,
}

async fn setup(store: &SqlStore, flows: u64) {
    store
        .register_member(&MemberRegistration {
            runtime_id: "bench".into(),
            incarnation: "1".into(),
            lease_ms: 600_000,
            state: "HEALTHY".into(),
        })
        .await
        .unwrap();
    for i in 0..flows {
        let mut flow = NewDataFlow::new(
            format!("f{i}"),
            format!("p{i}"),
            FlowKind::ProviderPush,
            DataFlowState::Started,
        );
        flow.runtime_id = Some("bench".into());
        store.create(&flow).await.unwrap();
    }
}

async fn measure_dpf(store: &SqlStore, budget: Duration) -> (f64, f64) {
    let statements = store.statements_executed();
    let started = Instant::now();
    let mut ticks = 0u64;
    while started.elapsed() < budget {
        store.renew_member("bench", "1", 600_000).await.unwrap();
        ticks += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let per_tick = (store.statements_executed() - statements) as f64 / ticks as f64;
    (ticks as f64 / elapsed, per_tick)
}

/// One UPDATE per running flow per tick, each its own transaction, the way a per-flow lease
/// is renewed when every flow carries its own lease. A macro so that it runs on either
/// connection type. Evaluates to (ticks/s, writes/s).
macro_rules! measure_baseline {
    ($conn:expr, $backend:expr, $flows:expr, $budget:expr) => {{
        let sql = $backend
            .sql("UPDATE data_flows SET updated_at = {now} WHERE id = ? AND runtime_id = 'bench'");
        let ids: Vec<String> = (0..$flows).map(|i| format!("f{i}")).collect();
        let started = Instant::now();
        let mut writes = 0u64;
        'outer: loop {
            for id in &ids {
                let updated = diesel::sql_query(&sql)
                    .bind::<Text, _>(id)
                    .execute($conn)
                    .unwrap();
                assert_eq!(updated, 1);
                writes += 1;
                if started.elapsed() >= $budget {
                    break 'outer;
                }
            }
        }
        let writes_per_s = writes as f64 / started.elapsed().as_secs_f64();
        (writes_per_s / $flows as f64, writes_per_s)
    }};
}

async fn run(backend_name: &'static str, url: StoreUrl, flows: u64, budget: Duration) -> Figures {
    let store = SqlStore::open(&url, SqlStoreOptions::default())
        .await
        .unwrap();
    setup(&store, flows).await;
    let (dpf_ticks_per_s, dpf_statements_per_tick) = measure_dpf(&store, budget).await;
    let backend = store.backend();
    let (baseline_ticks_per_s, baseline_writes_per_s) =
        tokio::task::spawn_blocking(move || match url {
            StoreUrl::Sqlite(path) => {
                let mut conn =
                    diesel::sqlite::SqliteConnection::establish(path.to_str().unwrap()).unwrap();
                diesel::sql_query("PRAGMA busy_timeout = 5000")
                    .execute(&mut conn)
                    .unwrap();
                diesel::sql_query("PRAGMA synchronous = NORMAL")
                    .execute(&mut conn)
                    .unwrap();
                measure_baseline!(&mut conn, backend, flows, budget)
            }
            StoreUrl::Postgres(location) => {
                let mut conn = diesel::pg::PgConnection::establish(&location).unwrap();
                measure_baseline!(&mut conn, backend, flows, budget)
            }
            StoreUrl::Memory => unreachable!("benchmarks run on SQL stores"),
        })
        .await
        .unwrap();
    Figures {
        backend: backend_name,
        flows,
        dpf_ticks_per_s,
        dpf_statements_per_tick,
        baseline_ticks_per_s,
        baseline_writes_per_s,
    }
}

#[tokio::main]
async fn main() {
    let flows = env_number("BENCH_FLOWS", 10_000);
    let budget = Duration::from_secs(env_number("BENCH_SECONDS", 3));
    let dir = tempfile::tempdir().unwrap();
    let sqlite = StoreUrl::Sqlite(dir.path().join("bench.db"));
    let database = tokio::task::spawn_blocking(test_utils::postgres_database)
        .await
        .unwrap();
    let postgres = StoreUrl::Postgres(database.url().to_owned());

    let mut results = Vec::new();
    results.push(run("sqlite", sqlite, flows, budget).await);
    results.push(run("postgres", postgres, flows, budget).await);

    println!();
    println!(
        "lease renewal with {flows} owned flows ({}s per measurement)",
        budget.as_secs()
    );
    println!(
        "{:<10} {:>22} {:>16} {:>26} {:>20} {:>10}",
        "backend",
        "dpf ticks/s",
        "dpf stmts/tick",
        "per-flow baseline ticks/s",
        "baseline writes/s",
        "ratio"
    );
    let mut json = Vec::new();
    for r in &results {
        let ratio = r.dpf_ticks_per_s / r.baseline_ticks_per_s;
        println!(
            "{:<10} {:>22.0} {:>16.1} {:>26.3} {:>20.0} {:>9.0}x",
            r.backend,
            r.dpf_ticks_per_s,
            r.dpf_statements_per_tick,
            r.baseline_ticks_per_s,
            r.baseline_writes_per_s,
            ratio
        );
        json.push(serde_json::json!({
            "scenario": "lease-renewal", "backend": r.backend, "flows": r.flows,
            "dpfTicksPerSecond": r.dpf_ticks_per_s, "dpfStatementsPerTick": r.dpf_statements_per_tick,
            "baselineTicksPerSecond": r.baseline_ticks_per_s, "baselineWritesPerSecond": r.baseline_writes_per_s,
            "ratio": ratio,
        }));
    }
    let out =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-renewal.json");
    std::fs::write(&out, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    println!("\nwritten: {}", out.display());
}
