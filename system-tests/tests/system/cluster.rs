//! The clustered data plane with real processes: several `dataplane-launcher` replicas on one
//! PostgreSQL (and, where the issue asks, on one shared SQLite file), killed, paused, stopped.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use system_tests::{
    flow_message, get, post, postgres_store_url, random_bytes, simple_message, start_replicas,
    wait_flow, Content, DataServer, Launcher, PULL, PUSH,
};

/// Short leases so that failover happens within the test: 1 s lease, renewed every 250 ms,
/// looked at every 100 ms.
const FAST: &[&str] = &[
    "-D",
    "edc.dataplane.state-machine.flow.lease.time=1000",
    "-D",
    "edc.dataplane.state-machine.flow.lease.renew-interval=250",
    "-D",
    "edc.dataplane.state-machine.claim.interval=100",
];

fn sqlite_url(dir: &std::path::Path) -> String {
    format!("sqlite:{}", dir.join("shared.db").display())
}

/// A source that dribbles: `chunks` chunks of 64 KiB, one every `every`.
fn slow(data: &DataServer, name: &str, chunks: u64, every: Duration) -> (String, String) {
    let block = random_bytes(64 * 1024, 7);
    let len = chunks * 64 * 1024;
    let url = data.put(
        name,
        Content::Pattern {
            block: block.clone(),
            len,
            delay: every,
        },
    );
    let mut whole = Vec::new();
    while (whole.len() as u64) < len {
        whole.extend_from_slice(&block);
    }
    whole.truncate(usize::try_from(len).unwrap());
    (url, system_tests::sha256(&whole))
}

async fn put_dataset(base: &str, id: &str, url: &str) {
    let response = system_tests::client()
        .put(format!("{base}/datasets/{id}"))
        .json(&json!({"type": "HttpData", "baseUrl": url}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

async fn start_push(base: &str, process: &str, dataset: &str, sink: &str) -> String {
    let mut start = flow_message(process, PUSH, dataset, "p");
    start["dataAddress"] = json!({"endpointType": PUSH, "endpoint": sink});
    let (status, body) = post(&format!("{base}/signaling/dataflows/start"), &start).await;
    assert_eq!(status, 200, "{body}");
    body["dataFlowId"].as_str().unwrap().to_owned()
}

async fn all_flows(base: &str) -> Vec<Value> {
    let (status, flows) = get(&format!("{base}/dataflows?limit=10000")).await;
    assert_eq!(status, 200);
    flows.as_array().unwrap().clone()
}

/// Acceptance 1: SIGKILL of the owner of 200 running flows; survivors take every flow over
/// (epoch + 1) within about one lease, and every flow completes byte-identical.
async fn failover_of_a_killed_owner(store_url: String, dir: &std::path::Path) {
    failover_with(store_url, dir, 3, 200).await;
}

async fn failover_with(store_url: String, dir: &std::path::Path, count: usize, flows: usize) {
    #[allow(non_snake_case)]
    let FLOWS = flows;
    let data = DataServer::start();
    let mut replicas = start_replicas(count, &store_url, FAST, dir);
    let (url, sha) = slow(&data, "src", 12, Duration::from_millis(400));
    for r in &replicas {
        put_dataset(&r.base_url, "src", &url).await;
    }
    let victim = replicas[0].base_url.clone();
    for i in 0..FLOWS {
        start_push(
            &victim,
            &format!("fo-{i}"),
            "src",
            &data.upload_url(&format!("sink-{i}")),
        )
        .await;
    }
    let flows = all_flows(&replicas[1].base_url).await;
    assert!(flows
        .iter()
        .all(|f| f["runtimeId"] == "r0" && f["epoch"] == 1 && f["state"] == "STARTED"));

    replicas[0].kill();
    let killed = Instant::now();
    let survivor = replicas[1].base_url.clone();
    // The flows the victim was running when it died.
    let running: Vec<String> = all_flows(&survivor)
        .await
        .iter()
        .filter(|f| f["state"] == "STARTED")
        .map(|f| f["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        running.len() >= FLOWS * 9 / 10,
        "only {} of {FLOWS} flows were running at the kill",
        running.len()
    );
    let taken_over = loop {
        let flows = all_flows(&survivor).await;
        let moved = flows
            .iter()
            .filter(|f| running.iter().any(|id| f["id"] == id.as_str()))
            // Epoch 2 at least: on a loaded machine a survivor may lose and re-claim a lease.
            .all(|f| f["runtimeId"] != "r0" && f["epoch"].as_i64().unwrap_or(0) >= 2);
        if moved {
            break killed.elapsed();
        }
        if killed.elapsed() > Duration::from_secs(15) {
            let odd: Vec<String> = flows
                .iter()
                .filter(|f| running.iter().any(|id| f["id"] == id.as_str()))
                .filter(|f| f["runtimeId"] == "r0" || f["epoch"].as_i64().unwrap_or(0) < 2)
                .map(|f| {
                    format!(
                        "{} {} {} {}",
                        f["id"], f["runtimeId"], f["epoch"], f["state"]
                    )
                })
                .take(5)
                .collect();
            panic!("takeover stalled: {odd:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!(
        "takeover of {FLOWS} flows after SIGKILL: {:.0} ms (lease 1000 ms)",
        taken_over.as_secs_f64() * 1000.0
    );
    assert!(
        taken_over < Duration::from_secs(2),
        "takeover took {taken_over:?}"
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let flows = all_flows(&survivor).await;
        if flows.iter().all(|f| f["state"] == "COMPLETED") {
            let owners: BTreeMap<String, usize> = flows.iter().fold(BTreeMap::new(), |mut m, f| {
                *m.entry(f["runtimeId"].as_str().unwrap().to_owned())
                    .or_default() += 1;
                m
            });
            println!("completed by: {owners:?}");
            break;
        }
        assert!(Instant::now() < deadline, "flows did not complete");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in 0..FLOWS {
        let uploads = data.uploads(&format!("sink-{i}"));
        let complete: Vec<_> = uploads.iter().filter(|u| u.complete).collect();
        assert_eq!(complete.len(), 1, "sink-{i}: {uploads:?}");
        // The dead owner's interrupted upload and one restart: nobody started it twice.
        assert!(
            uploads.len() <= 2,
            "sink-{i} was started {} times",
            uploads.len()
        );
        assert_eq!(
            complete[0].sha256.as_deref(),
            Some(sha.as_str()),
            "sink-{i}"
        );
    }
    drop(replicas);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failover_of_a_killed_owner_on_postgres() {
    let _serial = system_tests::serial().await;
    let dir = tempfile::tempdir().unwrap();
    let url = tokio::task::spawn_blocking(postgres_store_url)
        .await
        .unwrap();
    failover_of_a_killed_owner(url, dir.path()).await;
}

/// With five replicas competing for a dead replica's flows, each runs exactly once more.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failover_with_five_competing_replicas_on_postgres() {
    let _serial = system_tests::serial().await;
    let dir = tempfile::tempdir().unwrap();
    let url = tokio::task::spawn_blocking(postgres_store_url)
        .await
        .unwrap();
    failover_with(url, dir.path(), 5, 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failover_of_a_killed_owner_on_shared_sqlite() {
    let _serial = system_tests::serial().await;
    let dir = tempfile::tempdir().unwrap();
    failover_of_a_killed_owner(sqlite_url(dir.path()), dir.path()).await;
}

/// Acceptance 2: a paused owner (SIGSTOP past its lease) is taken over; once resumed it writes
/// nothing more: the file its successor writes ends byte-identical to the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_owner_is_fenced_when_it_resumes() {
    let _serial = system_tests::serial().await;
    let dir = tempfile::tempdir().unwrap();
    let url = tokio::task::spawn_blocking(postgres_store_url)
        .await
        .unwrap();
    let data = DataServer::start();
    let replicas = start_replicas(2, &url, FAST, dir.path());
    let (source, sha) = slow(&data, "src", 30, Duration::from_millis(100));
    let destination = dir.path().join("zombie.bin");

    // Consumer pull on r0: it pulls from the slow source into a file.
    let mut prepare = flow_message("zombie-1", PULL, "src", "c");
    prepare["metadata"] = json!({"destination": {"type": "File", "path": destination}});
    let (status, prepared) = post(
        &format!("{}/signaling/dataflows/prepare", replicas[0].base_url),
        &prepare,
    )
    .await;
    assert_eq!(status, 200, "{prepared}");
    let id = prepared["dataFlowId"].as_str().unwrap().to_owned();
    let mut started = simple_message();
    started["dataAddress"] = json!({"endpointType": PULL, "endpoint": source});
    let (status, body) = post(
        &format!("{}/signaling/dataflows/{id}/started", replicas[0].base_url),
        &started,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    wait_flow(&replicas[1].base_url, &id, Duration::from_secs(10), |v| {
        v["bytesTransferred"].as_u64().unwrap_or(0) > 0 || v["runtimeId"] == "r0"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;

    replicas[0].signal("STOP");
    let taken = wait_flow(&replicas[1].base_url, &id, Duration::from_secs(10), |v| {
        v["runtimeId"] == "r1"
    })
    .await;
    assert_eq!(
        taken["epoch"], 2,
        "started gave r0 epoch 1; the takeover bumps it"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    replicas[0].signal("CONT");

    let done = wait_flow(&replicas[1].base_url, &id, Duration::from_secs(30), |v| {
        v["state"] == "COMPLETED"
    })
    .await;
    assert_eq!(done["runtimeId"], "r1");
    tokio::time::sleep(Duration::from_millis(500)).await; // give a zombie every chance to write
    assert_eq!(
        system_tests::sha256_file(&destination),
        sha,
        "the file was corrupted by the old owner"
    );
    let log = replicas[0].log_text();
    assert!(
        log.contains("self-fencing") || log.contains("membership lost"),
        "the resumed replica did not notice it lost its lease:\n{log}"
    );
}

/// Acceptance 3: five replicas started at once over 500 waiting flows: every flow runs once.
async fn claim_race(store_url: String, dir: &std::path::Path) {
    use dataplane_spi::{DataFlowStore, FlowKind, NewDataFlow};
    const FLOWS: usize = 500;
    let data = DataServer::start();
    let url = data.put("src", Content::Bytes(random_bytes(16 * 1024, 5)));
    // Waiting flows: STARTED, unowned, as a replica leaves them when it shuts down.
    let store = dataplane_store_sql::SqlStore::open(
        &dataplane_store_sql::StoreUrl::parse(&store_url).unwrap(),
        dataplane_store_sql::SqlStoreOptions::default(),
    )
    .await
    .unwrap();
    for i in 0..FLOWS {
        let mut flow = NewDataFlow::new(
            format!("w-{i}"),
            format!("wp-{i}"),
            FlowKind::ProviderPush,
            dataplane_spi::DataFlowState::Started,
        );
        flow.source = json!({"type": "HttpData", "baseUrl": url});
        flow.destination =
            Some(json!({"type": "HttpData", "baseUrl": data.upload_url(&format!("w-{i}"))}));
        store.create(&flow).await.unwrap();
    }
    let replicas = start_replicas(5, &store_url, FAST, dir);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let flows = all_flows(&replicas[0].base_url).await;
        if flows.len() == FLOWS && flows.iter().all(|f| f["state"] == "COMPLETED") {
            let owners: BTreeMap<String, usize> = flows.iter().fold(BTreeMap::new(), |mut m, f| {
                *m.entry(f["runtimeId"].as_str().unwrap().to_owned())
                    .or_default() += 1;
                m
            });
            println!("500 waiting flows run by: {owners:?}");
            break;
        }
        assert!(Instant::now() < deadline, "flows did not complete");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in 0..FLOWS {
        let uploads = data.uploads(&format!("w-{i}"));
        assert_eq!(
            uploads.len(),
            1,
            "flow w-{i} was written {} times",
            uploads.len()
        );
        assert!(uploads[0].complete);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claim_race_on_postgres() {
    let _serial = system_tests::serial().await;
    let dir = tempfile::tempdir().unwrap();
    let url = tokio::task::spawn_blocking(postgres_store_url)
        .await
        .unwrap();
    claim_race(url, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claim_race_on_shared_sqlite() {
    let _serial = system_tests::serial().await;
    let dir = tempfile::tempdir().unwrap();
    claim_race(sqlite_url(dir.path()), dir.path()).await;
}

/// Acceptance 4 and 5: suspend and terminate reach the owner from any replica; resume through a
/// third replica continues; terminate of a flow whose owner is dead ends within a lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn suspend_and_terminate_from_any_replica() {
    let _serial = system_tests::serial().await;
    let dir = tempfile::tempdir().unwrap();
    let url = tokio::task::spawn_blocking(postgres_store_url)
        .await
        .unwrap();
    let data = DataServer::start();
    let mut replicas = start_replicas(3, &url, FAST, dir.path());
    let (source, sha) = slow(&data, "src", 40, Duration::from_millis(50));
    for r in &replicas {
        put_dataset(&r.base_url, "src", &source).await;
    }
    let owner = replicas[0].base_url.clone();
    let other = replicas[1].base_url.clone();
    let third = replicas[2].base_url.clone();

    let id = start_push(&owner, "any-1", "src", &data.upload_url("any-1")).await;
    wait_flow(&owner, &id, Duration::from_secs(10), |v| {
        v["bytesTransferred"].as_u64().unwrap_or(0) > 128 * 1024
    })
    .await;
    let began = Instant::now();
    let (status, body) = post(
        &format!("{other}/signaling/dataflows/{id}/suspend"),
        &simple_message(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "SUSPENDED");
    println!(
        "suspend through a non-owner answered in {:.0} ms",
        began.elapsed().as_secs_f64() * 1000.0
    );
    let frozen = data.uploads("any-1").iter().map(|u| u.bytes).sum::<u64>();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        data.uploads("any-1").iter().map(|u| u.bytes).sum::<u64>(),
        frozen,
        "data flowed after SUSPENDED"
    );

    let (status, body) = post(
        &format!("{third}/signaling/dataflows/{id}/resume"),
        &simple_message(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let done = wait_flow(&third, &id, Duration::from_secs(30), |v| {
        v["state"] == "COMPLETED"
    })
    .await;
    assert_eq!(done["runtimeId"], "r2", "the resuming replica runs it");
    let last = data.uploads("any-1").into_iter().last().unwrap();
    assert_eq!(last.sha256.as_deref(), Some(sha.as_str()));

    // Terminate through a non-owner.
    let id2 = start_push(&owner, "any-2", "src", &data.upload_url("any-2")).await;
    wait_flow(&owner, &id2, Duration::from_secs(10), |v| {
        v["bytesTransferred"].as_u64().unwrap_or(0) > 0
    })
    .await;
    let (status, body) = post(
        &format!("{third}/signaling/dataflows/{id2}/terminate"),
        &simple_message(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "TERMINATED");

    // Terminate a flow whose owner is dead: answered within one lease plus a tick.
    let id3 = start_push(&owner, "any-3", "src", &data.upload_url("any-3")).await;
    wait_flow(&owner, &id3, Duration::from_secs(10), |v| {
        v["bytesTransferred"].as_u64().unwrap_or(0) > 0
    })
    .await;
    replicas[0].kill();
    let began = Instant::now();
    let (status, body) = post(
        &format!("{other}/signaling/dataflows/{id3}/terminate"),
        &simple_message(),
    )
    .await;
    let took = began.elapsed();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "TERMINATED");
    println!(
        "terminate of a flow whose owner was killed: {:.0} ms",
        took.as_secs_f64() * 1000.0
    );
    assert!(
        took < Duration::from_millis(1000 + 100 + 400),
        "took {took:?}"
    );
    let view = wait_flow(&other, &id3, Duration::from_secs(5), |v| {
        v["state"] == "TERMINATED"
    })
    .await;
    assert_ne!(view["runtimeId"], "r0");
}

/// Acceptance 6: SIGTERM makes a replica release its flows; peers continue them within a tick
/// (with a 10 s lease, so waiting for the lease would show), and it exits 0.
async fn graceful_shutdown(store_url: String, dir: &std::path::Path) {
    let data = DataServer::start();
    let args = [
        "-D",
        "edc.dataplane.state-machine.flow.lease.time=10000",
        "-D",
        "edc.dataplane.state-machine.flow.lease.renew-interval=1000",
        "-D",
        "edc.dataplane.state-machine.claim.interval=100",
    ];
    let mut replicas = start_replicas(2, &store_url, &args, dir);
    let (source, sha) = slow(&data, "src", 10, Duration::from_millis(300));
    for r in &replicas {
        put_dataset(&r.base_url, "src", &source).await;
    }
    let leaving = replicas[0].base_url.clone();
    let staying = replicas[1].base_url.clone();
    for i in 0..20 {
        start_push(
            &leaving,
            &format!("gs-{i}"),
            "src",
            &data.upload_url(&format!("gs-{i}")),
        )
        .await;
    }
    replicas[0].signal("TERM");
    let signalled = Instant::now();
    let code = replicas[0].wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0), "SIGTERM exits 0");
    loop {
        let flows = all_flows(&staying).await;
        if flows.iter().all(|f| f["runtimeId"] == "r1") {
            break;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(5),
            "peers did not take the flows: {flows:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let moved = signalled.elapsed();
    println!(
        "flows continued on the peer {:.0} ms after SIGTERM (lease 10 s)",
        moved.as_secs_f64() * 1000.0
    );
    assert!(moved < Duration::from_secs(3), "{moved:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !all_flows(&staying)
        .await
        .iter()
        .all(|f| f["state"] == "COMPLETED")
    {
        assert!(
            Instant::now() < deadline,
            "flows did not complete on the peer"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in 0..20 {
        let last = data.uploads(&format!("gs-{i}")).into_iter().last().unwrap();
        assert_eq!(last.sha256.as_deref(), Some(sha.as_str()));
    }
    drop(replicas);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graceful_shutdown_on_postgres() {
    let _serial = system_tests::serial().await;
    let dir = tempfile::tempdir().unwrap();
    let url = tokio::task::spawn_blocking(postgres_store_url)
        .await
        .unwrap();
    graceful_shutdown(url, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graceful_shutdown_on_shared_sqlite() {
    let _serial = system_tests::serial().await;
    let dir = tempfile::tempdir().unwrap();
    graceful_shutdown(sqlite_url(dir.path()), dir.path()).await;
}

/// A second live replica with the same name is refused with a clear error and a non-zero exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_replica_with_a_live_name_is_refused() {
    let _serial = system_tests::serial().await;
    let dir = tempfile::tempdir().unwrap();
    let url = tokio::task::spawn_blocking(postgres_store_url)
        .await
        .unwrap();
    let first = start_replicas(1, &url, &[], dir.path());
    // The first replica serves its API before it has joined: wait until it is ready (joined),
    // or the second one could take the name first.
    let ready = format!("{}/ready", first[0].base_url);
    let mut joined = false;
    for _ in 0..200 {
        if system_tests::get(&ready).await.0 == 200 {
            joined = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(joined, "the first replica never became ready");
    let output = std::process::Command::new(system_tests::binary("dataplane-launcher"))
        .args([
            "-D",
            "edc.runtime.id=r0",
            "-D",
            &format!("dpf.store.url={url}"),
            "-D",
            "web.http.port=0",
            "-D",
            "dpf.http.insecure=true",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot join the cluster as 'r0'")
            && stderr.contains("in use by a live incarnation"),
        "{stderr}"
    );
    let _ = Launcher::start; // the same binary, started by the helper above
}
