//! Database load of a running replica: statements per second with 0, 1 000 and 5 000 running
//! flows on PostgreSQL, next to EDC's scheme (one lease write per running flow every 500 ms)
//! computed for the same flows.
//!
//! ```text
//! cargo bench -p dataplane-manager --bench renewal_load
//! BENCH_SECONDS=10 cargo bench -p dataplane-manager --bench renewal_load
//! ```
//!
//! The replica runs in process on a throwaway PostgreSQL (`test-utils`, or
//! `TEST_DATABASE_URL`); its flows read from a source that never yields, so they stay running
//! and only the state machine and the lease touch the database. Statements are counted by the
//! store's diesel instrumentation.

#![allow(clippy::unwrap_used, clippy::print_stdout)] // a benchmark binary

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use dataplane_manager::{
    CallbackDispatcher, ControlPlaneRegistry, DataPlane, DataPlaneConfig, DatasetRegistry,
};
use dataplane_spi::{
    DataFlowState, DataFlowStore, DataSink, DataSinkFactory, DataSource, DataSourceFactory,
    FlowKind, NewDataFlow, ResourceAddress, SourceStream, TransferError, TransferRegistry,
};
use dataplane_store_sql::{SqlStore, SqlStoreOptions, StoreUrl};

/// A source that never yields: a transfer that runs forever.
#[derive(Debug)]
struct Stall;

#[async_trait]
impl DataSource for Stall {
    async fn open(&self, _offset: u64) -> Result<SourceStream, TransferError> {
        Ok(SourceStream {
            stream: Box::pin(futures::stream::pending()),
            size: None,
            content_type: None,
            offset: 0,
        })
    }
}

#[async_trait]
impl DataSink for Stall {
    async fn write(&self, mut input: SourceStream) -> Result<u64, TransferError> {
        use futures::StreamExt;
        while input.stream.next().await.is_some() {}
        Ok(0)
    }
}

impl DataSourceFactory for Stall {
    fn type_name(&self) -> &str {
        "Stall"
    }
    fn create(&self, _address: &ResourceAddress) -> Result<Box<dyn DataSource>, TransferError> {
        Ok(Box::new(Stall))
    }
}

impl DataSinkFactory for Stall {
    fn type_name(&self) -> &str {
        "Stall"
    }
    fn create(&self, _address: &ResourceAddress) -> Result<Box<dyn DataSink>, TransferError> {
        Ok(Box::new(Stall))
    }
}

async fn measure(flows: usize, seconds: u64) -> (f64, f64) {
    let database = tokio::task::spawn_blocking(test_utils::postgres_database)
        .await
        .unwrap();
    let store = SqlStore::open(
        &StoreUrl::Postgres(database.url().to_owned()),
        SqlStoreOptions::default(),
    )
    .await
    .unwrap();
    for i in 0..flows {
        let mut flow = NewDataFlow::new(
            format!("f{i}"),
            format!("p{i}"),
            FlowKind::ProviderPush,
            DataFlowState::Started,
        );
        flow.source = serde_json::json!({"type": "Stall"});
        flow.destination = Some(serde_json::json!({"type": "Stall"}));
        store.create(&flow).await.unwrap();
    }
    let transfers = TransferRegistry::builder()
        .source(Arc::new(Stall))
        .and_then(|b| b.sink(Arc::new(Stall)))
        .unwrap()
        .build();
    let control_planes = Arc::new(ControlPlaneRegistry::new());
    let config = DataPlaneConfig::new("bench-replica", "http://127.0.0.1:1/api/v1");
    let (plane, services) = DataPlane::new(
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        transfers,
        Arc::new(DatasetRegistry::new()),
        control_planes.clone(),
        CallbackDispatcher::new(control_planes, 1, Duration::from_millis(10)),
        config,
    );
    let handle = plane.run(services).await.unwrap();
    // Wait until every flow is claimed and running here.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let owned = store
            .list_owned("bench-replica", &[DataFlowState::Started], flows + 1)
            .await
            .unwrap();
        if owned.len() == flows {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "claimed only {} of {flows}",
            owned.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = store.statements_executed();
    let began = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let statements = (store.statements_executed() - before) as f64 / began.elapsed().as_secs_f64();
    handle.shutdown().await;
    // EDC renews the lease of every running flow every 500 ms: 2 writes per flow per second.
    let edc = flows as f64 * 2.0;
    (statements, edc)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let mut rows = Vec::new();
    for flows in [0usize, 1000, 5000] {
        let (dpf, edc) = measure(flows, seconds).await;
        rows.push((flows, dpf, edc));
    }
    println!();
    println!(
        "database statements per second of one running replica (PostgreSQL, {seconds} s each)"
    );
    println!(
        "{:>14} {:>18} {:>28} {:>10}",
        "running flows", "dpf stmts/s", "EDC lease writes/s (computed)", "EDC / dpf"
    );
    let mut json = Vec::new();
    for (flows, dpf, edc) in &rows {
        println!("{flows:>14} {dpf:>18.1} {edc:>28.0} {:>9.0}x", edc / dpf);
        json.push(serde_json::json!({"scenario": "renewal-load", "runningFlows": flows, "dpfStatementsPerSecond": dpf, "edcWritesPerSecond": edc}));
    }
    let growth = rows[2].1 / rows[0].1;
    println!(
        "dpf at 5 000 flows / at 0 flows: {growth:.2}x (the load does not grow with the flows)"
    );
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/bench-renewal-load.json");
    std::fs::write(&out, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    println!("written: {}", out.display());
}
