//! Recovery from checkpoints: a transfer whose owner dies (SIGKILL) or pauses (SIGSTOP)
//! continues on another replica from its last checkpoint, ends byte-identical, and re-sends at
//! most one checkpoint interval per recovery.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use system_tests::{
    flow_message, get, post, postgres_store_url, random_bytes, simple_message, start_replicas,
    wait_flow, Content, DataServer, Launcher, PULL, PUSH,
};

const GIB: u64 = 1024 * 1024 * 1024;
const CHECKPOINT: u64 = 64 * 1024 * 1024;

fn cluster_args() -> Vec<&'static str> {
    vec![
        "-D",
        "edc.dataplane.state-machine.flow.lease.time=1000",
        "-D",
        "edc.dataplane.state-machine.flow.lease.renew-interval=250",
        "-D",
        "edc.dataplane.state-machine.claim.interval=100",
        "-D",
        "dpf.checkpoint.bytes=67108864",
        "-D",
        "dpf.checkpoint.interval=2000",
    ]
}

/// Index of the replica named `name` (`r<i>`).
fn index_of(name: &Value) -> usize {
    name.as_str()
        .unwrap()
        .trim_start_matches('r')
        .parse()
        .unwrap()
}

async fn view(base: &str, id: &str) -> Value {
    get(&format!("{base}/dataflows/{id}")).await.1
}

/// Starts a consumer-pull flow (HTTP source → file) on `replicas[0]`.
async fn pull_into_file(
    base: &str,
    process: &str,
    source: &str,
    destination: &std::path::Path,
) -> String {
    let mut prepare = flow_message(process, PULL, "d", "c");
    prepare["metadata"] = json!({"destination": {"type": "File", "path": destination}});
    let (status, prepared) = post(&format!("{base}/signaling/dataflows/prepare"), &prepare).await;
    assert_eq!(status, 200, "{prepared}");
    let id = prepared["dataFlowId"].as_str().unwrap().to_owned();
    let mut started = simple_message();
    started["dataAddress"] = json!({"endpointType": PULL, "endpoint": source});
    let (status, body) = post(
        &format!("{base}/signaling/dataflows/{id}/started"),
        &started,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    id
}

/// Kills (or pauses, then resumes) whichever replica owns the flow, `times` times, each time
/// once it checkpointed past the next fraction of `size`.
async fn disturb_owner(replicas: &mut [Launcher], id: &str, size: u64, times: u64, pause: bool) {
    let mut owners_seen = Vec::new();
    for round in 1..=times {
        let threshold = size * round / (times + 1);
        let deadline = Instant::now() + Duration::from_secs(120);
        let owner = loop {
            let survivor = replicas
                .iter()
                .find(|r| !owners_seen.contains(&r.base_url) || pause)
                .unwrap();
            let v = view(&survivor.base_url, id).await;
            let owner = v["runtimeId"].clone();
            let fresh = !owners_seen
                .iter()
                .any(|b: &String| *b == replicas[index_of(&owner)].base_url)
                || pause;
            if v["bytesCheckpointed"].as_u64().unwrap_or(0) >= threshold
                && fresh
                && v["state"] == "STARTED"
            {
                break index_of(&owner);
            }
            assert_ne!(
                v["state"], "COMPLETED",
                "completed before disturbance {round}; make the transfer bigger"
            );
            assert!(Instant::now() < deadline, "no progress: {v}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // A live replica other than the owner to watch from.
        let peer = replicas
            .iter()
            .enumerate()
            .find(|(i, r)| *i != owner && (pause || !owners_seen.contains(&r.base_url)))
            .map(|(_, r)| r.base_url.clone())
            .unwrap();
        let epoch_before = view(&peer, id).await["epoch"].as_i64().unwrap();
        if pause {
            replicas[owner].signal("STOP");
        } else {
            replicas[owner].kill();
        }
        owners_seen.push(replicas[owner].base_url.clone());
        let taken = wait_flow(&peer, id, Duration::from_secs(10), |v| {
            v["epoch"].as_i64().unwrap_or(0) > epoch_before
        })
        .await;
        println!(
            "round {round}: r{owner} {} at {} MiB checkpointed; r{} took over",
            if pause { "paused" } else { "killed" },
            taken["bytesCheckpointed"].as_u64().unwrap_or(0) >> 20,
            index_of(&taken["runtimeId"])
        );
        if pause {
            tokio::time::sleep(Duration::from_millis(300)).await;
            replicas[owner].signal("CONT");
        }
    }
}

async fn file_sink_survives(pause: bool) {
    let dir = tempfile::tempdir().unwrap();
    let url = tokio::task::spawn_blocking(postgres_store_url)
        .await
        .unwrap();
    let data = DataServer::start();
    let size = 4 * GIB;
    let block = random_bytes(1024 * 1024 + 13, 11);
    let source = data.put(
        "big",
        Content::Pattern {
            block: block.clone(),
            len: size,
            delay: Duration::ZERO,
        },
    );
    let expected = tokio::task::spawn_blocking(move || system_tests::pattern_sha256(&block, size));
    let args = cluster_args();
    let mut replicas = start_replicas(4, &url, &args, dir.path());
    let destination = dir.path().join("out.bin");
    let id = pull_into_file(&replicas[0].base_url, "big-1", &source, &destination).await;
    let times = if pause { 1 } else { 3 };
    disturb_owner(&mut replicas, &id, size, times, pause).await;
    let survivor = replicas
        .iter()
        .rev()
        .find(|r| r.signal_alive())
        .unwrap()
        .base_url
        .clone();
    let done = wait_flow(&survivor, &id, Duration::from_secs(300), |v| {
        v["state"] == "COMPLETED"
    })
    .await;
    let resent = data.served("big") - size;
    println!(
        "4 GiB into a file, {times} owner {}: re-sent {} MiB in all (limit {} MiB = {times} checkpoint intervals), resumes {}",
        if pause { "pause" } else { "kills" },
        resent >> 20,
        (times * CHECKPOINT) >> 20,
        done["resumes"]
    );
    assert!(resent <= times * CHECKPOINT, "re-sent {resent} bytes");
    assert_eq!(done["resumes"], times);
    assert_eq!(done["bytesTransferred"], size);
    let actual =
        tokio::task::spawn_blocking(move || system_tests::sha256_file_streamed(&destination))
            .await
            .unwrap();
    assert_eq!(
        actual,
        expected.await.unwrap(),
        "the file differs from the source"
    );
    if pause {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let paused = replicas.iter().find(|r| {
            r.log_text().contains("self-fencing") || r.log_text().contains("membership lost")
        });
        assert!(paused.is_some(), "the resumed owner did not fence itself");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_gib_into_a_file_survives_three_kills() {
    let _serial = system_tests::serial().await;
    file_sink_survives(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_gib_into_a_file_survives_a_paused_owner() {
    let _serial = system_tests::serial().await;
    file_sink_survives(true).await;
}

/// A source that ignores `Range` is detected; the transfer restarts from zero and is right.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_source_ignoring_range_restarts_from_zero() {
    let _serial = system_tests::serial().await;
    let dir = tempfile::tempdir().unwrap();
    let url = tokio::task::spawn_blocking(postgres_store_url)
        .await
        .unwrap();
    let data = DataServer::start();
    let size = 512 * 1024 * 1024;
    let block = random_bytes(1024 * 1024 + 3, 12);
    let source = data.put(
        "norange",
        Content::Pattern {
            block: block.clone(),
            len: size,
            delay: Duration::ZERO,
        },
    );
    data.ignore_range("norange");
    let mut args = cluster_args();
    args[7] = "dpf.checkpoint.bytes=16777216";
    let mut replicas = start_replicas(2, &url, &args, dir.path());
    let destination = dir.path().join("norange.bin");
    let id = pull_into_file(&replicas[0].base_url, "nr-1", &source, &destination).await;
    wait_flow(&replicas[1].base_url, &id, Duration::from_secs(30), |v| {
        v["bytesCheckpointed"].as_u64().unwrap_or(0) >= 64 * 1024 * 1024
    })
    .await;
    replicas[0].kill();
    let done = wait_flow(&replicas[1].base_url, &id, Duration::from_secs(60), |v| {
        v["state"] == "COMPLETED"
    })
    .await;
    assert_eq!(done["restarts"], 1, "{done}");
    assert_eq!(done["resumes"], 0, "{done}");
    let actual =
        tokio::task::spawn_blocking(move || system_tests::sha256_file_streamed(&destination))
            .await
            .unwrap();
    assert_eq!(actual, system_tests::pattern_sha256(&block, size));
}

/// A consumer data plane (its own process and SQLite store) whose ingest endpoint receives a
/// push; returns it, the consumer flow id and the `DataAddress` to push to.
async fn consumer_ingest(
    dir: &std::path::Path,
    process: &str,
    destination: &std::path::Path,
) -> (Launcher, String, Value) {
    let consumer_dir = dir.join("consumer");
    std::fs::create_dir_all(&consumer_dir).unwrap();
    let root = format!("dpf.transfer.file.root={}", dir.display());
    let consumer = Launcher::start(
        "dataplane-launcher",
        &["-D", "edc.runtime.id=consumer", "-D", &root],
        &[],
        &consumer_dir,
    );
    let mut prepare = flow_message(process, PUSH, "d", "c");
    prepare["metadata"] = json!({"destination": {"type": "File", "path": destination}});
    let (status, prepared) = post(
        &format!("{}/signaling/dataflows/prepare", consumer.base_url),
        &prepare,
    )
    .await;
    assert_eq!(status, 200, "{prepared}");
    let id = prepared["dataFlowId"].as_str().unwrap().to_owned();
    // As the DPS push sequence goes, the consumer hears `started` once the provider started;
    // it accepts data from `prepare` on.
    let (status, body) = post(
        &format!("{}/signaling/dataflows/{id}/started", consumer.base_url),
        &simple_message(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    (consumer, id, prepared["dataAddress"].clone())
}

async fn start_push_on(base: &str, process: &str, dataset: &str, address: &Value) -> String {
    let mut start = flow_message(process, PUSH, dataset, "p");
    start["dataAddress"] = address.clone();
    let (status, body) = post(&format!("{base}/signaling/dataflows/start"), &start).await;
    assert_eq!(status, 200, "{body}");
    body["dataFlowId"].as_str().unwrap().to_owned()
}

/// 4 GiB pushed to dpf's own ingest endpoint (tus) survives three kills of the pushing owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_gib_into_the_ingest_endpoint_survives_three_kills() {
    let _serial = system_tests::serial().await;
    let dir = tempfile::tempdir().unwrap();
    let url = tokio::task::spawn_blocking(postgres_store_url)
        .await
        .unwrap();
    let data = DataServer::start();
    let size = 4 * GIB;
    let block = random_bytes(1024 * 1024 + 29, 13);
    let source = data.put(
        "big",
        Content::Pattern {
            block: block.clone(),
            len: size,
            delay: Duration::ZERO,
        },
    );
    let expected = tokio::task::spawn_blocking(move || system_tests::pattern_sha256(&block, size));
    let destination = dir.path().join("ingested.bin");
    let (consumer, consumer_id, address) = consumer_ingest(dir.path(), "ing-c", &destination).await;
    let args = cluster_args();
    let mut providers = start_replicas(4, &url, &args, dir.path());
    for p in &providers {
        let response = system_tests::client()
            .put(format!("{}/datasets/big", p.base_url))
            .json(&json!({"type": "HttpData", "baseUrl": source}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let id = start_push_on(&providers[0].base_url, "ing-p", "big", &address).await;
    disturb_owner(&mut providers, &id, size, 3, false).await;
    let survivor = providers
        .iter()
        .find(|r| r.signal_alive())
        .unwrap()
        .base_url
        .clone();
    let done = wait_flow(&survivor, &id, Duration::from_secs(300), |v| {
        v["state"] == "COMPLETED"
    })
    .await;
    let resent = data.served("big") - size;
    println!(
        "4 GiB into the ingest endpoint, 3 owner kills: re-sent {} MiB in all (limit {} MiB), resumes {}",
        resent >> 20,
        (3 * CHECKPOINT) >> 20,
        done["resumes"]
    );
    assert!(resent <= 3 * CHECKPOINT, "re-sent {resent} bytes");
    assert_eq!(done["resumes"], 3);
    let (status, _) = post(
        &format!(
            "{}/signaling/dataflows/{consumer_id}/completed",
            consumer.base_url
        ),
        &json!({}),
    )
    .await;
    assert_eq!(status, 200);
    let actual =
        tokio::task::spawn_blocking(move || system_tests::sha256_file_streamed(&destination))
            .await
            .unwrap();
    assert_eq!(
        actual,
        expected.await.unwrap(),
        "the ingested file differs from the source"
    );
}

/// An event stream of 100 000 events survives two owner kills: the destination holds every
/// event id exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_stream_survives_two_kills_exactly_once() {
    let _serial = system_tests::serial().await;
    const EVENTS: u64 = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let url = tokio::task::spawn_blocking(postgres_store_url)
        .await
        .unwrap();
    let data = DataServer::start();
    let destination = dir.path().join("events.txt");
    let (consumer, consumer_id, address) = consumer_ingest(dir.path(), "ev-c", &destination).await;
    let mut args = cluster_args();
    args[9] = "dpf.checkpoint.interval=300";
    let mut providers = start_replicas(3, &url, &args, dir.path());
    for p in &providers {
        let response = system_tests::client()
            .put(format!("{}/datasets/events", p.base_url))
            .json(&json!({"type": "HttpData", "baseUrl": data.events_url(EVENTS), "eventStream": "sse"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let id = start_push_on(&providers[0].base_url, "ev-p", "events", &address).await;
    // Each event is about 30 bytes: ~3 MB in all; kill at a third and two thirds.
    disturb_owner(&mut providers, &id, EVENTS * 30, 2, false).await;
    let survivor = providers
        .iter()
        .find(|r| r.signal_alive())
        .unwrap()
        .base_url
        .clone();
    let done = wait_flow(&survivor, &id, Duration::from_secs(120), |v| {
        v["state"] == "COMPLETED"
    })
    .await;
    println!(
        "event stream: resumes {}, restarts {}, cursor {}",
        done["resumes"], done["restarts"], done["checkpoint"]["cursor"]
    );
    let (status, _) = post(
        &format!(
            "{}/signaling/dataflows/{consumer_id}/completed",
            consumer.base_url
        ),
        &json!({}),
    )
    .await;
    assert_eq!(status, 200);
    let text = std::fs::read_to_string(&destination).unwrap();
    let ids: Vec<u64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(|id| id.parse().unwrap())
        .collect();
    assert_eq!(ids.len() as u64, EVENTS, "events delivered: {}", ids.len());
    assert!(
        ids.iter().copied().eq(1..=EVENTS),
        "ids are not 1..={EVENTS} exactly once in order"
    );
    assert_eq!(done["checkpoint"]["cursor"], EVENTS.to_string());
}
