//! dpf's benchmark suite: every performance claim next to a baseline measured in the same run.
//!
//! ```text
//! cargo bench -p system-tests --bench suite              # quick mode (< 2 minutes)
//! DPF_BENCH_MODE=full cargo bench -p system-tests --bench suite
//! DPF_BENCH_ONLY=selection,failover cargo bench -p system-tests --bench suite
//! ```
//!
//! Builds in release (cargo bench), starts what it needs — a throwaway PostgreSQL, release
//! launchers, HTTP sources and sinks on loopback — prints one table and writes
//! `target/bench-suite.json`. Each scenario states its target and whether this run met it. The
//! command fails only when a scenario errors, never on the numbers (machines differ).

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::too_many_lines,
    clippy::too_many_arguments,
    clippy::print_literal
)] // a benchmark binary

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

#[path = "suite/object.rs"]
mod object;
use futures::StreamExt;
use serde_json::{json, Value};
use system_tests::{
    flow_message, get, post, random_bytes, simple_message, start_replicas, wait_flow, Content,
    DataServer, Launcher, PULL, PUSH,
};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Quick,
    Full,
}

impl Mode {
    fn pick<T>(self, quick: T, full: T) -> T {
        if self == Mode::Quick {
            quick
        } else {
            full
        }
    }
}

/// One line of the report.
struct Row {
    scenario: String,
    measured: String,
    baseline: String,
    ratio: Option<f64>,
    target: String,
    met: Option<bool>,
}

struct Report {
    rows: Vec<Row>,
    json: Vec<Value>,
}

impl Report {
    fn add(
        &mut self,
        scenario: &str,
        measured: String,
        baseline: String,
        ratio: Option<f64>,
        target: &str,
        met: Option<bool>,
        data: Value,
    ) {
        println!(
            "  {scenario}: {measured} | baseline {baseline} | ratio {} | target {target}: {}",
            ratio.map_or("-".into(), |r| format!("{r:.2}x")),
            match met {
                Some(true) => "MET",
                Some(false) => "NOT MET",
                None => "-",
            }
        );
        self.rows.push(Row {
            scenario: scenario.into(),
            measured,
            baseline,
            ratio,
            target: target.into(),
            met,
        });
        let mut data = data;
        data["scenario"] = scenario.into();
        data["target"] = target.into();
        data["met"] = json!(met);
        self.json.push(data);
    }
}

fn mib_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / 1_048_576.0 / elapsed.as_secs_f64()
}

fn quiet(store: &str) -> Vec<String> {
    [
        "-D",
        &format!("dpf.store.url={store}"),
        "-D",
        "dpf.log.level=warn",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

fn launch(store: &str, extra: &[&str], dir: &std::path::Path) -> Launcher {
    let mut args = quiet(store);
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Launcher::start("dataplane-launcher", &args, &[], dir)
}

async fn put_dataset(base: &str, id: &str, address: Value) {
    let response = system_tests::client()
        .put(format!("{base}/datasets/{id}"))
        .json(&address)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

async fn push(base: &str, process: &str, dataset: &str, sink: &str) -> String {
    let mut start = flow_message(process, PUSH, dataset, "bench");
    start["dataAddress"] = json!({"endpointType": PUSH, "endpoint": sink});
    let (status, body) = post(&format!("{base}/signaling/dataflows/start"), &start).await;
    assert_eq!(status, 200, "{body}");
    body["dataFlowId"].as_str().unwrap().to_owned()
}

async fn relay(client: &reqwest::Client, source: &str, sink: &str) -> u64 {
    let response = client.get(source).send().await.unwrap();
    let length = response.content_length();
    let stream = response
        .bytes_stream()
        .map(|c| c.map_err(std::io::Error::other));
    let mut request = client.post(sink).body(reqwest::Body::wrap_stream(stream));
    if let Some(length) = length {
        request = request.header("content-length", length);
    }
    assert!(request.send().await.unwrap().status().is_success());
    length.unwrap_or_default()
}

/// 1. HTTP → HTTP provider push, 1 and 16 flows, vs a reqwest relay and curl.
async fn throughput(mode: Mode, report: &mut Report) {
    let dir = tempfile::tempdir().unwrap();
    let data = DataServer::start();
    let one = mode.pick(512u64 << 20, 2 << 30);
    let each = mode.pick(32u64 << 20, 256 << 20);
    let block = random_bytes(1024 * 1024 + 7, 1);
    let big = data.put(
        "big",
        Content::Pattern {
            block: block.clone(),
            len: one,
            delay: Duration::ZERO,
        },
    );
    let small = data.put(
        "small",
        Content::Pattern {
            block,
            len: each,
            delay: Duration::ZERO,
        },
    );
    let plane = launch("memory:", &[], dir.path());
    put_dataset(
        &plane.base_url,
        "big",
        json!({"type": "HttpData", "baseUrl": big}),
    )
    .await;
    put_dataset(
        &plane.base_url,
        "small",
        json!({"type": "HttpData", "baseUrl": small}),
    )
    .await;
    let client = system_tests::client();

    let began = Instant::now();
    relay(&client, &big, &data.upload_url("relay")).await;
    let relay_one = mib_s(one, began.elapsed());
    let began = Instant::now();
    let id = push(&plane.base_url, "tp-1", "big", &data.upload_url("dpf")).await;
    wait_flow(&plane.base_url, &id, Duration::from_secs(600), |v| {
        v["state"] == "COMPLETED"
    })
    .await;
    let dpf_one = mib_s(one, began.elapsed());
    let curl = {
        let command = format!(
            "curl -s '{big}' | curl -s -o /dev/null -T - '{}'",
            data.upload_url("curl")
        );
        let began = Instant::now();
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(&command)
            .status();
        status
            .ok()
            .filter(std::process::ExitStatus::success)
            .map(|_| mib_s(one, began.elapsed()))
    };
    let ratio = dpf_one / relay_one;
    report.add(
        "1a push, 1 flow",
        format!("{dpf_one:.0} MiB/s"),
        format!(
            "relay {relay_one:.0} MiB/s; curl {}",
            curl.map_or("n/a".into(), |c| format!("{c:.0} MiB/s"))
        ),
        Some(ratio),
        ">= 0.8x relay",
        Some(ratio >= 0.8),
        json!({"dpfMiBps": dpf_one, "relayMiBps": relay_one, "curlMiBps": curl, "bytes": one}),
    );

    let began = Instant::now();
    let relays: Vec<_> = (0..16)
        .map(|i| {
            let (client, small, sink) = (
                client.clone(),
                small.clone(),
                data.upload_url(&format!("relay16-{i}")),
            );
            tokio::spawn(async move { relay(&client, &small, &sink).await })
        })
        .collect();
    for r in relays {
        r.await.unwrap();
    }
    let relay16 = mib_s(16 * each, began.elapsed());
    let began = Instant::now();
    let mut ids = Vec::new();
    for i in 0..16 {
        ids.push(
            push(
                &plane.base_url,
                &format!("tp16-{i}"),
                "small",
                &data.upload_url(&format!("dpf16-{i}")),
            )
            .await,
        );
    }
    for id in &ids {
        wait_flow(&plane.base_url, id, Duration::from_secs(600), |v| {
            v["state"] == "COMPLETED"
        })
        .await;
    }
    let dpf16 = mib_s(16 * each, began.elapsed());
    let ratio = dpf16 / relay16;
    report.add(
        "1b push, 16 flows",
        format!("{dpf16:.0} MiB/s"),
        format!("16 relays {relay16:.0} MiB/s"),
        Some(ratio),
        ">= 0.8x relay",
        Some(ratio >= 0.8),
        json!({"dpfMiBps": dpf16, "relayMiBps": relay16, "bytesEach": each}),
    );
}

/// 2. File → file through a data plane (file:// consumer pull) vs `cp`.
async fn file_to_file(mode: Mode, report: &mut Report) {
    let dir = tempfile::tempdir().unwrap();
    let size = mode.pick(512usize << 20, 2 << 30);
    let source = dir.path().join("source.bin");
    {
        use std::io::Write;
        let block = random_bytes(1 << 20, 2);
        let mut file = std::fs::File::create(&source).unwrap();
        for _ in 0..size >> 20 {
            file.write_all(&block).unwrap();
        }
    }
    let began = Instant::now();
    let status = std::process::Command::new("cp")
        .arg(&source)
        .arg(dir.path().join("cp.bin"))
        .status()
        .unwrap();
    assert!(status.success());
    let cp = mib_s(size as u64, began.elapsed());
    std::fs::remove_file(dir.path().join("cp.bin")).unwrap();
    let plane = launch(
        "memory:",
        &["-D", "dpf.transfer.allow-file-addresses=true"],
        dir.path(),
    );
    let destination = dir.path().join("dpf.bin");
    let mut prepare = flow_message("ff-1", PULL, "d", "c");
    prepare["metadata"] = json!({"destination": {"type": "File", "path": destination}});
    let (_, prepared) = post(
        &format!("{}/signaling/dataflows/prepare", plane.base_url),
        &prepare,
    )
    .await;
    let id = prepared["dataFlowId"].as_str().unwrap().to_owned();
    let mut started = simple_message();
    started["dataAddress"] =
        json!({"endpointType": PULL, "endpoint": format!("file://{}", source.display())});
    let began = Instant::now();
    let (status, body) = post(
        &format!("{}/signaling/dataflows/{id}/started", plane.base_url),
        &started,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    wait_flow(&plane.base_url, &id, Duration::from_secs(600), |v| {
        v["state"] == "COMPLETED"
    })
    .await;
    let dpf = mib_s(size as u64, began.elapsed());
    let ratio = dpf / cp;
    report.add(
        "2 file -> file",
        format!("{dpf:.0} MiB/s"),
        format!("cp {cp:.0} MiB/s"),
        Some(ratio),
        ">= 0.8x cp",
        Some(ratio >= 0.8),
        json!({"dpfMiBps": dpf, "cpMiBps": cp, "bytes": size}),
    );
}

/// Single-row UPDATE transactions per second with 4 connections: the practical ceiling of a
/// database for anything that writes one row per step.
fn update_ceiling(url: &str, seconds: u64) -> f64 {
    use diesel::{Connection, RunQueryDsl};
    let done = Arc::new(AtomicU64::new(0));
    let sqlite = url.strip_prefix("sqlite:").map(str::to_owned);
    let setup = |conn_url: &str| {
        if let Some(path) = &sqlite {
            let mut conn = diesel::sqlite::SqliteConnection::establish(path).unwrap();
            diesel::sql_query("PRAGMA journal_mode=WAL")
                .execute(&mut conn)
                .ok();
            diesel::sql_query(
                "CREATE TABLE IF NOT EXISTS bench_rows (id INTEGER PRIMARY KEY, v BIGINT NOT NULL)",
            )
            .execute(&mut conn)
            .unwrap();
            diesel::sql_query("INSERT OR IGNORE INTO bench_rows (id, v) SELECT value, 0 FROM (SELECT 1 AS value UNION SELECT 2 UNION SELECT 3 UNION SELECT 4)").execute(&mut conn).ok();
        } else {
            let mut conn = diesel::pg::PgConnection::establish(conn_url).unwrap();
            diesel::sql_query(
                "CREATE TABLE IF NOT EXISTS bench_rows (id INT PRIMARY KEY, v BIGINT NOT NULL)",
            )
            .execute(&mut conn)
            .unwrap();
            diesel::sql_query("INSERT INTO bench_rows SELECT g, 0 FROM generate_series(1, 4) g ON CONFLICT DO NOTHING").execute(&mut conn).unwrap();
        }
    };
    setup(url);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let threads: Vec<_> = (1..=4)
        .map(|id: i32| {
            let (done, url, sqlite) = (done.clone(), url.to_owned(), sqlite.clone());
            std::thread::spawn(move || {
                use diesel::sql_types::Integer;
                if let Some(path) = sqlite {
                    let mut conn = diesel::sqlite::SqliteConnection::establish(&path).unwrap();
                    diesel::sql_query("PRAGMA busy_timeout=5000")
                        .execute(&mut conn)
                        .ok();
                    diesel::sql_query("PRAGMA synchronous=NORMAL")
                        .execute(&mut conn)
                        .ok();
                    while Instant::now() < deadline {
                        diesel::sql_query("UPDATE bench_rows SET v = v + 1 WHERE id = ?")
                            .bind::<Integer, _>(id)
                            .execute(&mut conn)
                            .unwrap();
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                } else {
                    let mut conn = diesel::pg::PgConnection::establish(&url).unwrap();
                    while Instant::now() < deadline {
                        diesel::sql_query("UPDATE bench_rows SET v = v + 1 WHERE id = $1")
                            .bind::<Integer, _>(id)
                            .execute(&mut conn)
                            .unwrap();
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / seconds as f64
}

/// 3. Tiny flows started and completed per second.
async fn tiny_flows(mode: Mode, report: &mut Report) {
    let flows = mode.pick(300usize, 3000);
    for (label, replicas_count, store) in [
        ("PostgreSQL, 1 replica", 1usize, "pg"),
        ("PostgreSQL, 3 replicas", 3, "pg"),
        ("SQLite, 1 replica", 1, "sqlite"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let url = if store == "pg" {
            tokio::task::spawn_blocking(system_tests::postgres_store_url)
                .await
                .unwrap()
        } else {
            format!("sqlite:{}", dir.path().join("tiny.db").display())
        };
        let data = DataServer::start();
        let source = data.put("tiny", Content::Bytes(random_bytes(1024, 3)));
        let replicas = start_replicas(
            replicas_count,
            &url,
            &["-D", "dpf.log.level=warn"],
            dir.path(),
        );
        for r in &replicas {
            put_dataset(
                &r.base_url,
                "tiny",
                json!({"type": "HttpData", "baseUrl": source}),
            )
            .await;
        }
        let bases: Vec<String> = replicas.iter().map(|r| r.base_url.clone()).collect();
        let began = Instant::now();
        let next = Arc::new(AtomicU64::new(0));
        let workers: Vec<_> = (0..16)
            .map(|_| {
                let (bases, next, data) = (bases.clone(), next.clone(), data.clone());
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                        if i >= flows {
                            break;
                        }
                        push(
                            &bases[i % bases.len()],
                            &format!("tiny-{i}"),
                            "tiny",
                            &data.upload_url(&format!("t{i}")),
                        )
                        .await;
                    }
                })
            })
            .collect();
        for w in workers {
            w.await.unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let (_, started) =
                get(&format!("{}/dataflows?state=STARTED&limit=10000", bases[0])).await;
            if started.as_array().unwrap().is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "tiny flows did not finish");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let rate = flows as f64 / began.elapsed().as_secs_f64();
        drop(replicas);
        let url2 = url.clone();
        let ceiling = tokio::task::spawn_blocking(move || update_ceiling(&url2, 3))
            .await
            .unwrap();
        let ratio = rate / ceiling;
        let (target, met) = if label == "PostgreSQL, 3 replicas" {
            (">= 0.3x ceiling", Some(ratio >= 0.3))
        } else {
            ("(reported)", None)
        };
        report.add(
            &format!("3 tiny flows, {label}"),
            format!("{rate:.0} flows/s"),
            format!("{ceiling:.0} single-row UPDATE/s"),
            Some(ratio),
            target,
            met,
            json!({"flowsPerSecond": rate, "updateCeiling": ceiling, "flows": flows}),
        );
    }
}

#[derive(Debug)]
struct Stall;

#[async_trait]
impl dataplane_spi::DataSource for Stall {
    async fn open(
        &self,
        _offset: u64,
    ) -> Result<dataplane_spi::SourceStream, dataplane_spi::TransferError> {
        Ok(dataplane_spi::SourceStream {
            stream: Box::pin(futures::stream::pending()),
            size: None,
            content_type: None,
            offset: 0,
        })
    }
}

#[async_trait]
impl dataplane_spi::DataSink for Stall {
    async fn write(
        &self,
        mut input: dataplane_spi::SourceStream,
    ) -> Result<u64, dataplane_spi::TransferError> {
        while input.stream.next().await.is_some() {}
        Ok(0)
    }
}

impl dataplane_spi::DataSourceFactory for Stall {
    fn type_name(&self) -> &str {
        "Stall"
    }
    fn create(
        &self,
        _: &dataplane_spi::ResourceAddress,
    ) -> Result<Box<dyn dataplane_spi::DataSource>, dataplane_spi::TransferError> {
        Ok(Box::new(Stall))
    }
}

impl dataplane_spi::DataSinkFactory for Stall {
    fn type_name(&self) -> &str {
        "Stall"
    }
    fn create(
        &self,
        _: &dataplane_spi::ResourceAddress,
    ) -> Result<Box<dyn dataplane_spi::DataSink>, dataplane_spi::TransferError> {
        Ok(Box::new(Stall))
    }
}

/// 4. Statements per second of a replica with N running flows (in process, PostgreSQL).
async fn renewal_statements(flows: usize, seconds: u64) -> f64 {
    use dataplane_manager::{
        CallbackDispatcher, ControlPlaneRegistry, DataPlane, DataPlaneConfig, DatasetRegistry,
    };
    use dataplane_spi::{DataFlowStore, FlowKind, NewDataFlow, TransferRegistry};
    let url = tokio::task::spawn_blocking(system_tests::postgres_store_url)
        .await
        .unwrap();
    let store = dataplane_store_sql::SqlStore::open(
        &dataplane_store_sql::StoreUrl::parse(&url).unwrap(),
        Default::default(),
    )
    .await
    .unwrap();
    for i in 0..flows {
        let mut flow = NewDataFlow::new(
            format!("f{i}"),
            format!("p{i}"),
            FlowKind::ProviderPush,
            dataplane_spi::DataFlowState::Started,
        );
        flow.source = json!({"type": "Stall"});
        flow.destination = Some(json!({"type": "Stall"}));
        store.create(&flow).await.unwrap();
    }
    let transfers = TransferRegistry::builder()
        .source(Arc::new(Stall))
        .and_then(|b| b.sink(Arc::new(Stall)))
        .unwrap()
        .build();
    let control_planes = Arc::new(ControlPlaneRegistry::new());
    let (plane, services) = DataPlane::new(
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        transfers,
        Arc::new(DatasetRegistry::new()),
        control_planes.clone(),
        CallbackDispatcher::new(control_planes, 1, Duration::from_millis(10)),
        DataPlaneConfig::new("bench", "http://127.0.0.1:1/api/v1"),
    );
    let handle = plane.run(services).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while store
        .list_owned("bench", &[dataplane_spi::DataFlowState::Started], flows + 1)
        .await
        .unwrap()
        .len()
        < flows
    {
        assert!(Instant::now() < deadline, "flows not claimed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = store.statements_executed();
    let began = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let rate = (store.statements_executed() - before) as f64 / began.elapsed().as_secs_f64();
    handle.shutdown().await;
    rate
}

async fn renewal(mode: Mode, report: &mut Report) {
    let (small, large) = (1000usize, mode.pick(5000usize, 10_000));
    let seconds = mode.pick(3, 10);
    let at_small = renewal_statements(small, seconds).await;
    let at_large = renewal_statements(large, seconds).await;
    let growth = at_large / at_small;
    let edc = large as f64 * 2.0;
    report.add(&format!("4 lease renewal, {small} -> {large} running flows"), format!("{at_small:.0} -> {at_large:.0} statements/s"),
        format!("EDC one write per flow per 500 ms: {edc:.0} writes/s at {large}"), Some(edc / at_large), "flat (growth <= 1.2x)", Some(growth <= 1.2),
        json!({"statementsSmall": at_small, "statementsLarge": at_large, "flowsSmall": small, "flowsLarge": large, "edcWritesPerSecond": edc, "growth": growth}));
}

/// 5. Failover: SIGKILL of the owner of N flows until all are re-STARTED elsewhere.
async fn failover(mode: Mode, report: &mut Report) {
    let flows = mode.pick(200usize, 1000);
    for lease_ms in [500u64, 1000, 2000] {
        let dir = tempfile::tempdir().unwrap();
        let url = tokio::task::spawn_blocking(system_tests::postgres_store_url)
            .await
            .unwrap();
        let data = DataServer::start();
        let block = random_bytes(64 * 1024, 5);
        let source = data.put(
            "slow",
            Content::Pattern {
                block,
                len: 64 * 1024 * 600,
                delay: Duration::from_millis(200),
            },
        );
        let lease = format!("edc.dataplane.state-machine.flow.lease.time={lease_ms}");
        let renew = format!(
            "edc.dataplane.state-machine.flow.lease.renew-interval={}",
            lease_ms / 4
        );
        let args = [
            "-D",
            lease.as_str(),
            "-D",
            renew.as_str(),
            "-D",
            "edc.dataplane.state-machine.claim.interval=100",
            "-D",
            "dpf.log.level=warn",
        ];
        let mut replicas = start_replicas(3, &url, &args, dir.path());
        for r in &replicas {
            put_dataset(
                &r.base_url,
                "slow",
                json!({"type": "HttpData", "baseUrl": source}),
            )
            .await;
        }
        for i in 0..flows {
            push(
                &replicas[0].base_url,
                &format!("fo-{i}"),
                "slow",
                &data.upload_url(&format!("fo-{i}")),
            )
            .await;
        }
        replicas[0].kill();
        let killed = Instant::now();
        let survivor = replicas[1].base_url.clone();
        loop {
            let (_, all) = get(&format!("{survivor}/dataflows?limit=10000")).await;
            if all
                .as_array()
                .unwrap()
                .iter()
                .all(|f| f["runtimeId"] != "r0" && f["epoch"].as_i64() >= Some(2))
            {
                break;
            }
            assert!(
                killed.elapsed() < Duration::from_secs(60),
                "failover stalled"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let took = killed.elapsed();
        let lease = Duration::from_millis(lease_ms);
        let multiple = took.as_secs_f64() / lease.as_secs_f64();
        let bound = lease.mul_f64(1.5) + Duration::from_millis(500);
        report.add(
            &format!("5 failover of {flows} flows, lease {lease_ms} ms"),
            format!("{} ms", took.as_millis()),
            format!("lease {lease_ms} ms"),
            Some(multiple),
            "<= 1.5x lease + 0.5 s",
            Some(took <= bound),
            json!({"millis": took.as_millis() as u64, "leaseMillis": lease_ms, "flows": flows}),
        );
        drop(replicas);
    }
}

/// 6. Selection: in-process ns/op per strategy and size; REST select vs a trivial endpoint.
async fn selection(mode: Mode, report: &mut Report) {
    use selector_core::{
        default_registry_builder, DefaultDataPlaneSelector, InMemoryInstanceStore,
    };
    use selector_spi::{DataPlaneRegistration, DataPlaneSelector, SelectionRequest};
    for size in [10usize, 100, 1000] {
        let selector = DefaultDataPlaneSelector::new(
            Arc::new(InMemoryInstanceStore::new()),
            default_registry_builder().build().unwrap(),
        );
        for i in 0..size {
            let mut reg = DataPlaneRegistration::new(
                format!("dp-{i:04}"),
                format!("http://dp{i}:1/"),
                vec![PUSH.into()],
            );
            reg.authorization = Some(DataPlaneRegistration::no_authorization());
            selector.register(&reg).await.unwrap();
        }
        let mut line = Vec::new();
        let mut data = json!({"instances": size});
        for strategy in ["random", "round-robin", "oldest-next", "least-loaded"] {
            let request = SelectionRequest::for_profile(PUSH).with_strategy(strategy);
            let ops = mode.pick(2000u32, 20_000);
            let began = Instant::now();
            for _ in 0..ops {
                selector.select(&request).await.unwrap();
            }
            let ns = began.elapsed().as_nanos() as f64 / f64::from(ops);
            line.push(format!("{strategy} {:.1} µs", ns / 1000.0));
            data[strategy] = json!(ns);
        }
        report.add(
            &format!("6a select over {size} instances (in process)"),
            line.join(", "),
            "-".into(),
            None,
            "(reported)",
            None,
            data,
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let selector = Launcher::start(
        "selector-launcher",
        &["-D", "dpf.store.url=memory:", "-D", "dpf.log.level=warn"],
        &[],
        dir.path(),
    );
    for i in 0..3 {
        let body = json!({"dataplaneId": format!("dp-{i}"), "endpoint": format!("http://dp{i}:1/"), "profiles": [PUSH], "authorization": {"type": "none"}});
        let response = system_tests::client()
            .put(format!("{}/dataplanes", selector.base_url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let seconds = mode.pick(3u64, 10);
    let load = |url: String, body: Option<Value>| async move {
        let client = system_tests::client();
        let count = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let (client, url, body, count) =
                    (client.clone(), url.clone(), body.clone(), count.clone());
                tokio::spawn(async move {
                    while Instant::now() < deadline {
                        let request = match &body {
                            Some(b) => client.post(&url).json(b),
                            None => client.get(&url),
                        };
                        let response = request.send().await.unwrap();
                        assert!(response.status().is_success());
                        let _ = response.bytes_stream().collect::<Vec<_>>().await;
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        count.load(Ordering::Relaxed) as f64 / seconds as f64
    };
    let trivial = load(format!("{}/health", selector.base_url), None).await;
    let select = load(
        format!("{}/dataplanes/select", selector.base_url),
        Some(json!({"profile": PUSH, "strategy": "round-robin"})),
    )
    .await;
    let ratio = select / trivial;
    report.add(
        "6b REST select (32 clients)",
        format!("{select:.0} req/s"),
        format!("trivial actix endpoint {trivial:.0} req/s"),
        Some(ratio),
        ">= 0.5x trivial",
        Some(ratio >= 0.5),
        json!({"selectRps": select, "trivialRps": trivial}),
    );
    // Issue 18: `least-loaded` over 100 instances, against the same trivial endpoint.
    for i in 3..100 {
        let body = json!({"dataplaneId": format!("dp-{i}"), "endpoint": format!("http://dp{i}:1/"), "profiles": [PUSH], "authorization": {"type": "none"}});
        let response = system_tests::client()
            .put(format!("{}/dataplanes", selector.base_url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }
    let least = load(
        format!("{}/dataplanes/select", selector.base_url),
        Some(json!({"profile": PUSH, "strategy": "least-loaded"})),
    )
    .await;
    let ratio = least / trivial;
    report.add(
        "6c REST select least-loaded over 100 instances (32 clients)",
        format!("{least:.0} req/s"),
        format!("trivial actix endpoint {trivial:.0} req/s"),
        Some(ratio),
        ">= 0.5x trivial",
        Some(ratio >= 0.5),
        json!({"selectRps": least, "trivialRps": trivial, "instances": 100}),
    );
}

/// 7. RSS of a replica running N concurrent streaming flows.
async fn memory(mode: Mode, report: &mut Report) {
    let flows = mode.pick(300usize, 1000);
    let dir = tempfile::tempdir().unwrap();
    let data = DataServer::start();
    let block = random_bytes(64 * 1024, 6);
    let source = data.put(
        "slow",
        Content::Pattern {
            block,
            len: 64 * 1024 * 200,
            delay: Duration::from_millis(50),
        },
    );
    let plane = launch("memory:", &[], dir.path());
    put_dataset(
        &plane.base_url,
        "slow",
        json!({"type": "HttpData", "baseUrl": source}),
    )
    .await;
    let idle = plane.peak_rss_kib();
    for i in 0..flows {
        push(
            &plane.base_url,
            &format!("m-{i}"),
            "slow",
            &data.upload_url(&format!("m-{i}")),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_secs(mode.pick(3, 10))).await;
    let (_, running) = get(&format!(
        "{}/dataflows?state=STARTED&limit=10000",
        plane.base_url
    ))
    .await;
    let running = running.as_array().unwrap().len();
    let peak = plane.peak_rss_kib();
    let per_flow = (peak.saturating_sub(idle)) as f64 / flows as f64;
    let projected = idle as f64 + per_flow * 1000.0;
    report.add(
        &format!("7 RSS with {flows} streaming flows ({running} running)"),
        format!(
            "{} MiB ({per_flow:.0} KiB/flow; 1000 flows ≈ {:.0} MiB)",
            peak / 1024,
            projected / 1024.0
        ),
        format!("idle replica {} MiB", idle / 1024),
        Some(peak as f64 / idle as f64),
        "<= 300 MiB at 1000 flows",
        Some(projected <= 300.0 * 1024.0),
        json!({"peakKiB": peak, "idleKiB": idle, "flows": flows, "projected1000KiB": projected}),
    );
}

/// 8. Bytes re-sent per failover against the checkpoint interval.
async fn recovery_waste(mode: Mode, report: &mut Report) {
    let dir = tempfile::tempdir().unwrap();
    let url = tokio::task::spawn_blocking(system_tests::postgres_store_url)
        .await
        .unwrap();
    let data = DataServer::start();
    let size = mode.pick(1u64 << 30, 4 << 30);
    let interval = 64u64 << 20;
    let source = data.put(
        "big",
        Content::Pattern {
            block: random_bytes(1024 * 1024 + 3, 7),
            len: size,
            delay: Duration::ZERO,
        },
    );
    let args = [
        "-D",
        "edc.dataplane.state-machine.flow.lease.time=1000",
        "-D",
        "edc.dataplane.state-machine.flow.lease.renew-interval=250",
        "-D",
        "edc.dataplane.state-machine.claim.interval=100",
        "-D",
        "dpf.checkpoint.bytes=67108864",
        "-D",
        "dpf.log.level=warn",
    ];
    let mut replicas = start_replicas(2, &url, &args, dir.path());
    let destination = dir.path().join("waste.bin");
    let mut prepare = flow_message("w-1", PULL, "d", "c");
    prepare["metadata"] = json!({"destination": {"type": "File", "path": destination}});
    let (_, prepared) = post(
        &format!("{}/signaling/dataflows/prepare", replicas[0].base_url),
        &prepare,
    )
    .await;
    let id = prepared["dataFlowId"].as_str().unwrap().to_owned();
    let mut started = simple_message();
    started["dataAddress"] = json!({"endpointType": PULL, "endpoint": source});
    post(
        &format!("{}/signaling/dataflows/{id}/started", replicas[0].base_url),
        &started,
    )
    .await;
    wait_flow(&replicas[1].base_url, &id, Duration::from_secs(300), |v| {
        v["bytesCheckpointed"].as_u64().unwrap_or(0) >= size / 2
    })
    .await;
    replicas[0].kill();
    wait_flow(&replicas[1].base_url, &id, Duration::from_secs(600), |v| {
        v["state"] == "COMPLETED"
    })
    .await;
    let resent = data.served("big") - size;
    let ratio = resent as f64 / interval as f64;
    report.add(
        "8 recovery waste, 1 failover",
        format!("{} MiB re-sent", resent >> 20),
        format!("checkpoint interval {} MiB", interval >> 20),
        Some(ratio),
        "<= 1 interval per failover",
        Some(resent <= interval),
        json!({"resentBytes": resent, "intervalBytes": interval, "bytes": size}),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mode = if std::env::var("DPF_BENCH_MODE").is_ok_and(|m| m == "full") {
        Mode::Full
    } else {
        Mode::Quick
    };
    let only: Option<Vec<String>> = std::env::var("DPF_BENCH_ONLY")
        .ok()
        .map(|o| o.split(',').map(str::to_owned).collect());
    let wanted = |name: &str| only.as_ref().is_none_or(|o| o.iter().any(|w| w == name));
    let mut report = Report {
        rows: Vec::new(),
        json: Vec::new(),
    };
    let began = Instant::now();
    println!(
        "dpf benchmark suite ({} mode)",
        if mode == Mode::Quick { "quick" } else { "full" }
    );
    if wanted("throughput") {
        println!("1 throughput");
        throughput(mode, &mut report).await;
    }
    if wanted("file") {
        println!("2 file -> file");
        file_to_file(mode, &mut report).await;
    }
    if wanted("tiny") {
        println!("3 tiny flows");
        tiny_flows(mode, &mut report).await;
    }
    if wanted("renewal") {
        println!("4 renewal");
        renewal(mode, &mut report).await;
    }
    if wanted("failover") {
        println!("5 failover");
        failover(mode, &mut report).await;
    }
    if wanted("selection") {
        println!("6 selection");
        selection(mode, &mut report).await;
    }
    if wanted("memory") {
        println!("7 memory");
        memory(mode, &mut report).await;
    }
    if wanted("waste") {
        println!("8 recovery waste");
        recovery_waste(mode, &mut report).await;
    }
    if wanted("object") {
        println!("9 S3 -> S3");
        object::s3_to_s3(mode, &mut report).await;
    }
    println!();
    println!(
        "{:<48} {:<44} {:<52} {:>8}  {:<26} {}",
        "scenario", "measured", "baseline", "ratio", "target", "result"
    );
    for row in &report.rows {
        println!(
            "{:<48} {:<44} {:<52} {:>8}  {:<26} {}",
            row.scenario,
            row.measured,
            row.baseline,
            row.ratio.map_or("-".into(), |r| format!("{r:.2}x")),
            row.target,
            match row.met {
                Some(true) => "met",
                Some(false) => "NOT MET",
                None => "-",
            }
        );
    }
    println!("\nsuite took {:.0} s", began.elapsed().as_secs_f64());
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-suite.json");
    std::fs::write(&out, serde_json::to_string_pretty(&json!({"mode": if mode == Mode::Quick { "quick" } else { "full" }, "results": report.json})).unwrap()).unwrap();
    println!("written: {}", out.display());
}
