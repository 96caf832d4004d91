//! Cluster-wide registries with real processes: two `dataplane-launcher` replicas on one
//! PostgreSQL. A control plane registered through one replica is called back by the replica
//! that took its flow over after the first was killed; a dataset registered through one replica
//! (or in its configuration) is served by the other; a delete through either is cluster-wide;
//! credentials in registrations never show in views.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use system_tests::{
    call, dps, flow_message, get, post, postgres_store_url, random_bytes, sha256, start_replicas,
    wait_flow, Content, DataServer, FakeControlPlane, Launcher, PULL, PUSH,
};

/// Short leases so that the takeover happens within the test.
const FAST: &[&str] = &[
    "-D",
    "edc.dataplane.state-machine.flow.lease.time=1000",
    "-D",
    "edc.dataplane.state-machine.flow.lease.renew-interval=250",
    "-D",
    "edc.dataplane.state-machine.claim.interval=100",
];

async fn store_url() -> String {
    tokio::task::spawn_blocking(postgres_store_url)
        .await
        .unwrap()
}

async fn put(url: &str, body: &Value) -> (u16, Value) {
    call(reqwest::Method::PUT, url, Some(body)).await
}

async fn delete(url: &str) -> u16 {
    call(reqwest::Method::DELETE, url, None).await.0
}

/// Starts a provider-pull flow on `base` and pulls its `/public` endpoint with the token;
/// returns the endpoint and the bytes.
async fn pull(base: &str, process_id: &str, dataset: &str) -> (String, Vec<u8>) {
    let start = flow_message(process_id, PULL, dataset, "provider-participant");
    let (status, started) = post(&format!("{base}/signaling/dataflows/start"), &start).await;
    assert_eq!(status, 200, "{started}");
    let address = &started["dataAddress"];
    let endpoint = address["endpoint"].as_str().unwrap().to_owned();
    let token = address["endpointProperties"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "authorization")
        .and_then(|p| p["value"].as_str())
        .unwrap()
        .to_owned();
    let response = system_tests::client()
        .get(&endpoint)
        .bearer_auth(token)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{endpoint}");
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(&chunk.unwrap());
    }
    (endpoint, body)
}

/// The KV watch of `prefix` from the first revision, read until it mentions `needle`.
async fn watch_until(base: &str, prefix: &str, needle: &str) -> String {
    let response = system_tests::client()
        .get(format!(
            "{base}/cluster/kv?prefix={prefix}&watch=true&fromRevision=0"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream();
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains(needle) {
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .unwrap_or_else(|_| panic!("the watch never showed {needle}: {seen}"))
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    seen
}

/// One replica `r{index}` on `store` in `dir/r{index}`, the file root shared, with `extra`.
fn replica(index: usize, store: &str, extra: &[&str], dir: &Path) -> Launcher {
    let own = dir.join(format!("r{index}"));
    std::fs::create_dir_all(&own).unwrap();
    let mut args = vec![
        "-D".to_owned(),
        format!("edc.runtime.id=r{index}"),
        "-D".to_owned(),
        format!("dpf.store.url={store}"),
        "-D".to_owned(),
        format!("dpf.transfer.file.root={}", dir.display()),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Launcher::start("dataplane-launcher", &args, &[], &own)
}

/// Acceptance: a control plane registered through r0 receives the `completed` callback of a
/// flow r1 took over after r0 was killed (SIGKILL); r1 never heard of it otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_control_plane_registered_through_one_replica_is_called_back_by_its_successor() {
    let _serial = system_tests::serial().await;
    let dir = tempfile::tempdir().unwrap();
    let store = store_url().await;
    let mut replicas = start_replicas(2, &store, FAST, dir.path());
    let (a, b) = (replicas[0].base_url.clone(), replicas[1].base_url.clone());

    let cp = FakeControlPlane::start(0);
    let mut registration = cp.registration("provider-cp");
    registration["authorization"] = json!({"type": "bearer", "token": "cp-s3cret-token"});
    let (status, body) = put(&format!("{a}/signaling/controlplanes"), &registration).await;
    assert_eq!(status, 200, "{body}");

    // A source that takes about 5 s, registered through r0 only.
    let block = random_bytes(64 * 1024, 11);
    let len = 12 * 64 * 1024;
    let url = DataServer::start();
    let source = url.put(
        "slow",
        Content::Pattern {
            block: block.clone(),
            len,
            delay: Duration::from_millis(400),
        },
    );
    let (status, body) = put(
        &format!("{a}/datasets/slow"),
        &json!({"type": "HttpData", "baseUrl": source}),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let mut start = flow_message("takeover-1", PUSH, "slow", "provider-cp");
    start["dataAddress"] = json!({"endpointType": PUSH, "endpoint": url.upload_url("sink")});
    let (status, body) = post(&format!("{a}/signaling/dataflows/start"), &start).await;
    assert_eq!(status, 200, "{body}");
    let id = body["dataFlowId"].as_str().unwrap().to_owned();
    // The transfer runs on r0 for about 5 s; kill r0 a moment into it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, running) = get(&format!("{b}/dataflows/{id}")).await;
    assert_eq!(status, 200, "{running}");
    assert_eq!(running["runtimeId"], "r0", "{running}");
    assert_eq!(running["state"], "STARTED", "{running}");
    replicas[0].kill();
    let done = wait_flow(&b, &id, Duration::from_secs(30), |v| {
        v["state"] == "COMPLETED"
    })
    .await;
    assert_eq!(done["runtimeId"], "r1", "{done}");
    let callback = cp
        .wait_for("takeover-1", "completed", Duration::from_secs(20))
        .await;
    assert_eq!(callback.body["state"], "COMPLETED");
    dps::assert_valid("DataFlowStatusMessage", &callback.body);
    let log = replicas[1].log_text();
    assert!(
        !log.contains("no control plane registered"),
        "r1 skipped a callback:\n{log}"
    );
    // The registration's credential never reaches a log.
    assert!(!log.contains("cp-s3cret-token"));
    assert!(!replicas[0].log_text().contains("cp-s3cret-token"));

    // A delete through the survivor is cluster-wide: a second delete finds nothing.
    assert_eq!(
        delete(&format!("{b}/signaling/controlplanes/provider-cp")).await,
        204
    );
    assert_eq!(
        delete(&format!("{b}/signaling/controlplanes/provider-cp")).await,
        404
    );
    drop(replicas);
}

/// Acceptance: a dataset registered through r0 is served by r1 (a provider pull started on r1
/// and pulled from r1's `/public`), a dataset in r0's configuration too; deleted through r1 it
/// is gone on r0. Its credential never shows in a view, raw KV included.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dataset_registered_through_one_replica_is_served_and_deleted_by_another() {
    let _serial = system_tests::serial().await;
    let dir = tempfile::tempdir().unwrap();
    let store = store_url().await;
    let data = DataServer::start();
    let payload = random_bytes(512 * 1024 + 5, 12);
    let source = data.put("shared-source", Content::Bytes(payload.clone()));
    let configured = format!("dpf.dataset.from-config.baseUrl={source}");
    let r0 = replica(
        0,
        &store,
        &[
            "-D",
            "dpf.dataset.from-config.type=HttpData",
            "-D",
            &configured,
        ],
        dir.path(),
    );
    let r1 = replica(1, &store, &[], dir.path());
    let (a, b) = (r0.base_url.clone(), r1.base_url.clone());

    let (status, body) = put(
        &format!("{a}/datasets/shared"),
        &json!({"type": "HttpData", "baseUrl": source, "authorization": "ds-s3cret-token"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // r1 serves it at once: a provider pull started on r1, pulled from r1's /public.
    let (endpoint, bytes) = pull(&b, "pull-on-r1", "shared").await;
    assert!(endpoint.starts_with(&b), "{endpoint} is not r1's");
    assert_eq!(sha256(&bytes), sha256(&payload));
    // The dataset from r0's configuration too.
    let (_, bytes) = pull(&b, "pull-config-on-r1", "from-config").await;
    assert_eq!(sha256(&bytes), sha256(&payload));

    // Views on r1 show it, the credential masked.
    let (status, view) = get(&format!("{b}/datasets/shared")).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["baseUrl"], source.as_str());
    let (status, listing) = get(&format!("{b}/datasets")).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = listing
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["id"].as_str())
        .collect();
    assert_eq!(ids, ["from-config", "shared"], "{listing}");
    let (status, raw) = get(&format!("{b}/cluster/kv?prefix=dpf/datasets/")).await;
    assert_eq!(status, 200, "{raw}");
    assert_eq!(raw["entries"].as_array().unwrap().len(), 2, "{raw}");
    let (status, raw_one) = get(&format!("{b}/cluster/kv/dpf/datasets/shared")).await;
    assert_eq!(status, 200, "{raw_one}");
    let watched = Value::String(watch_until(&b, "dpf/datasets/", "dpf/datasets/shared").await);
    assert!(watched.to_string().contains("***"), "{watched}");
    for shown in [&view, &listing, &raw, &raw_one, &watched] {
        assert!(
            !shown.to_string().contains("ds-s3cret-token"),
            "a view shows the credential: {shown}"
        );
    }
    // The store is written through the registry only.
    let (status, _) = put(
        &format!("{b}/cluster/kv/dpf/datasets/shared"),
        &json!({"value": "{}"}),
    )
    .await;
    assert_eq!(status, 403);

    // Deleted through r1: gone on r0.
    assert_eq!(delete(&format!("{b}/datasets/shared")).await, 204);
    assert_eq!(get(&format!("{a}/datasets/shared")).await.0, 404);
    assert_eq!(delete(&format!("{a}/datasets/shared")).await, 404);
    // A transfer start on r0 refuses it once r0's cache (at most 1 s) has expired.
    let deadline = Instant::now() + Duration::from_secs(5);
    for attempt in 0.. {
        let start = flow_message(&format!("after-delete-{attempt}"), PULL, "shared", "p");
        let (status, body) = post(&format!("{a}/signaling/dataflows/start"), &start).await;
        if status == 404 {
            assert!(body.to_string().contains("shared"), "{body}");
            break;
        }
        assert_eq!(status, 200, "{body}");
        assert!(
            Instant::now() < deadline,
            "r0 still serves the deleted dataset"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!r0.log_text().contains("ds-s3cret-token"));
    assert!(!r1.log_text().contains("ds-s3cret-token"));
}
