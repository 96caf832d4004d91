//! The four roles of the DPS HTTP profile, end to end: two real data-plane processes (provider
//! and consumer, each with its own SQLite store), real HTTP source and sink servers, and a fake
//! control plane. Destination bytes must equal the source (sha256), and every DPS message sent
//! and received must validate against the specification's JSON schemas.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::{json, Value};
use system_tests::{
    dps, flow_message, get, post, random_bytes, sha256, sha256_file, simple_message, wait_flow,
    Content, DataServer, FakeControlPlane, Launcher, PULL, PUSH,
};

const TIMEOUT: Duration = Duration::from_secs(30);

struct World {
    _dir: tempfile::TempDir,
    provider: Launcher,
    consumer: Launcher,
    cp: FakeControlPlane,
    data: DataServer,
    dir: std::path::PathBuf,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    std::fs::create_dir_all(path.join("p")).unwrap();
    std::fs::create_dir_all(path.join("c")).unwrap();
    // Both name files anywhere in the test directory.
    let root = format!("dpf.transfer.file.root={}", path.display());
    let provider = Launcher::start(
        "dataplane-launcher",
        &["-D", "edc.runtime.id=provider", "-D", &root],
        &[],
        &path.join("p"),
    );
    let consumer = Launcher::start(
        "dataplane-launcher",
        &["-D", "edc.runtime.id=consumer", "-D", &root],
        &[],
        &path.join("c"),
    );
    let cp = FakeControlPlane::start(0);
    for plane in [&provider, &consumer] {
        for participant in ["provider-participant", "consumer-participant"] {
            let registration = cp.registration(participant);
            dps::assert_valid("ControlPlaneRegistrationMessage", &registration);
            let response = system_tests::client()
                .put(format!("{}/signaling/controlplanes", plane.base_url))
                .json(&registration)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
        }
    }
    World {
        _dir: dir,
        provider,
        consumer,
        cp,
        data: DataServer::start(),
        dir: path,
    }
}

/// Sends a DPS message after checking it against its schema; checks the answer too.
async fn signal(url: &str, schema: &str, message: &Value) -> Value {
    dps::assert_valid(schema, message);
    let (status, body) = post(url, message).await;
    assert_eq!(status, 200, "{url}: {body}");
    dps::assert_valid("DataFlowStatusMessage", &body);
    body
}

async fn register_dataset(base: &str, id: &str, address: Value) {
    let response = system_tests::client()
        .put(format!("{base}/datasets/{id}"))
        .json(&address)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

async fn assert_status(base: &str, id: &str, state: &str) {
    let (status, body) = get(&format!("{base}/signaling/dataflows/{id}/status")).await;
    assert_eq!(status, 200);
    dps::assert_valid("DataFlowStatusResponseMessage", &body);
    assert_eq!(body["state"], state, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn provider_push_from_http_source_to_http_sink() {
    let w = world().await;
    let payload = random_bytes(3 * 1024 * 1024 + 17, 1);
    let source_url = w.data.put("source", Content::Bytes(payload.clone()));
    register_dataset(
        &w.provider.base_url,
        "asset-http",
        json!({"type": "HttpData", "baseUrl": source_url}),
    )
    .await;

    let mut start = flow_message("pp-1", PUSH, "asset-http", "provider-participant");
    start["dataAddress"] = json!({
        "@type": "DataAddress",
        "endpointType": PUSH,
        "endpoint": w.data.upload_url("sink"),
        "endpointProperties": [
            {"@type": "EndpointProperty", "name": "authorization", "value": "sink-token"},
            {"@type": "EndpointProperty", "name": "authType", "value": "bearer"}
        ]
    });
    let started = signal(
        &format!("{}/signaling/dataflows/start", w.provider.base_url),
        "DataFlowStartMessage",
        &start,
    )
    .await;
    assert_eq!(started["state"], "STARTED");
    assert!(
        started.get("dataAddress").is_none(),
        "provider push start returns no address"
    );
    let id = started["dataFlowId"].as_str().unwrap();

    let callback = w.cp.wait_for("pp-1", "completed", TIMEOUT).await;
    dps::assert_valid("DataFlowStatusMessage", &callback.body);
    assert_eq!(callback.body["state"], "COMPLETED");
    let uploads = w.data.uploads("sink");
    assert_eq!(uploads.len(), 1);
    assert!(uploads[0].complete);
    assert_eq!(
        uploads[0].sha256.as_deref(),
        Some(sha256(&payload).as_str())
    );
    assert_eq!(
        uploads[0].authorization.as_deref(),
        Some("Bearer sink-token")
    );
    assert_status(&w.provider.base_url, id, "COMPLETED").await;
    let view = wait_flow(&w.provider.base_url, id, TIMEOUT, |v| {
        v["state"] == "COMPLETED"
    })
    .await;
    assert_eq!(view["bytesTransferred"], payload.len() as u64);
    assert_eq!(view["runtimeId"], "provider");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumer_push_receives_into_a_file() {
    let w = world().await;
    let source = w.dir.join("source.bin");
    let payload = random_bytes(2 * 1024 * 1024 + 5, 2);
    std::fs::write(&source, &payload).unwrap();
    register_dataset(
        &w.provider.base_url,
        "asset-file",
        json!({"type": "File", "path": source}),
    )
    .await;
    let destination = w.dir.join("received/consumer-push.bin");

    // Consumer: prepare answers the ingest endpoint.
    let mut prepare = flow_message("cp-1", PUSH, "asset-file", "consumer-participant");
    prepare["metadata"] = json!({"destination": {"type": "File", "path": destination}});
    let prepared = signal(
        &format!("{}/signaling/dataflows/prepare", w.consumer.base_url),
        "DataFlowPrepareMessage",
        &prepare,
    )
    .await;
    assert_eq!(prepared["state"], "PREPARED");
    let address = prepared["dataAddress"].clone();
    assert_eq!(address["endpointType"], PUSH);
    assert_eq!(address["endpointProperties"][1]["value"], "bearer");
    let consumer_id = prepared["dataFlowId"].as_str().unwrap().to_owned();

    // Provider: start pushing to it.
    let mut start = flow_message("pp-2", PUSH, "asset-file", "provider-participant");
    start["dataAddress"] = address;
    let started = signal(
        &format!("{}/signaling/dataflows/start", w.provider.base_url),
        "DataFlowStartMessage",
        &start,
    )
    .await;
    let provider_id = started["dataFlowId"].as_str().unwrap().to_owned();
    let started_notification = simple_message();
    signal(
        &format!(
            "{}/signaling/dataflows/{consumer_id}/started",
            w.consumer.base_url
        ),
        "DataFlowStartedNotificationMessage",
        &started_notification,
    )
    .await;

    w.cp.wait_for("pp-2", "completed", TIMEOUT).await;
    assert_status(&w.provider.base_url, &provider_id, "COMPLETED").await;
    // The control plane tells the consumer it is complete.
    let (status, body) = post(
        &format!(
            "{}/signaling/dataflows/{consumer_id}/completed",
            w.consumer.base_url
        ),
        &json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_status(&w.consumer.base_url, &consumer_id, "COMPLETED").await;
    assert_eq!(sha256_file(&destination), sha256(&payload));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn provider_pull_and_consumer_pull() {
    let w = world().await;
    let payload = random_bytes(4 * 1024 * 1024 + 3, 3);
    let source_url = w.data.put("pull-source", Content::Bytes(payload.clone()));
    register_dataset(
        &w.provider.base_url,
        "asset-pull",
        json!({"type": "HttpData", "baseUrl": source_url}),
    )
    .await;
    let destination = w.dir.join("received/consumer-pull.bin");

    // Consumer prepares (no address for pull).
    let mut prepare = flow_message("cpl-1", PULL, "asset-pull", "consumer-participant");
    prepare["metadata"] = json!({"destination": {"type": "File", "path": destination}});
    let prepared = signal(
        &format!("{}/signaling/dataflows/prepare", w.consumer.base_url),
        "DataFlowPrepareMessage",
        &prepare,
    )
    .await;
    assert!(prepared.get("dataAddress").is_none());
    let consumer_id = prepared["dataFlowId"].as_str().unwrap().to_owned();

    // Provider starts: answers the public pull endpoint with a token.
    let start = flow_message("ppl-1", PULL, "asset-pull", "provider-participant");
    let started = signal(
        &format!("{}/signaling/dataflows/start", w.provider.base_url),
        "DataFlowStartMessage",
        &start,
    )
    .await;
    let address = started["dataAddress"].clone();
    assert_eq!(address["endpointType"], PULL);
    let provider_id = started["dataFlowId"].as_str().unwrap().to_owned();

    // Provider pull by hand: full body and a Range request.
    let token = address["endpointProperties"][0]["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let endpoint = address["endpoint"].as_str().unwrap().to_owned();
    let client = system_tests::client();
    let ranged = client
        .get(&endpoint)
        .bearer_auth(&token)
        .header("Range", "bytes=1000-")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), 206);
    assert_eq!(
        ranged.headers()["content-range"].to_str().unwrap(),
        format!("bytes 1000-{}/{}", payload.len() - 1, payload.len())
    );
    let mut body = Vec::new();
    let mut stream = ranged.bytes_stream();
    use futures::StreamExt;
    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(&body[..], &payload[1000..]);

    // Consumer pull: started with the provider's address; the consumer fetches into its file.
    let mut notification = simple_message();
    notification["dataAddress"] = address;
    signal(
        &format!(
            "{}/signaling/dataflows/{consumer_id}/started",
            w.consumer.base_url
        ),
        "DataFlowStartedNotificationMessage",
        &notification,
    )
    .await;
    let callback = w.cp.wait_for("cpl-1", "completed", TIMEOUT).await;
    dps::assert_valid("DataFlowStatusMessage", &callback.body);
    assert_status(&w.consumer.base_url, &consumer_id, "COMPLETED").await;
    assert_eq!(sha256_file(&destination), sha256(&payload));

    // The consumer's control plane tells the provider it is complete.
    let (status, _) = post(
        &format!(
            "{}/signaling/dataflows/{provider_id}/completed",
            w.provider.base_url
        ),
        &json!({}),
    )
    .await;
    assert_eq!(status, 200);
    assert_status(&w.provider.base_url, &provider_id, "COMPLETED").await;
    // A completed pull flow refuses further pulls.
    let refused = client
        .get(&endpoint)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 409);
}
