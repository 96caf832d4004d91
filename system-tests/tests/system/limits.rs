//! Limits an operator configures are honoured by the real launcher: `dpf.transfer.max-bytes`
//! on ingest uploads and on sources, `dpf.dataplane.max-concurrent-flows`.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use system_tests::{
    flow_message, get, post, put_http_dataset, random_bytes, wait_flow, Content, DataServer,
    Launcher, PUSH,
};

const TIMEOUT: Duration = Duration::from_secs(30);
/// The local test servers are on loopback: deny only a network nobody uses here.
const LOOPBACK_ALLOWED: &str = "dpf.transfer.denied-networks=224.0.0.0/4";

fn token_of(answer: &Value) -> String {
    answer["dataAddress"]["endpointProperties"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "authorization")
        .and_then(|p| p["value"].as_str())
        .unwrap()
        .to_owned()
}

async fn put_ingest(endpoint: &str, token: &str, body: reqwest::Body) -> (u16, Value) {
    let response = system_tests::client()
        .put(endpoint)
        .bearer_auth(token)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `dpf.transfer.max-bytes=1000`: an upload that says it is larger is refused with 413 before
/// anything is written; one that does not say (chunked) is cut off with 413 and nothing beyond
/// the cap is written; one within the cap lands whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ingest_beyond_max_bytes_is_refused_with_413() {
    let dir = tempfile::tempdir().unwrap();
    let plane = Launcher::start(
        "dataplane-launcher",
        &["-D", "dpf.transfer.max-bytes=1000", "-D", LOOPBACK_ALLOWED],
        &[],
        dir.path(),
    );
    let destination = dir.path().join("capped.bin");
    let mut prepare = flow_message("cap-ingest", PUSH, "any", "participant");
    prepare["metadata"] = json!({"destination": {"type": "File", "path": destination}});
    let (status, prepared) = post(
        &format!("{}/signaling/dataflows/prepare", plane.base_url),
        &prepare,
    )
    .await;
    assert_eq!(status, 200, "{prepared}");
    let endpoint = prepared["dataAddress"]["endpoint"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = token_of(&prepared);

    // Content-Length 5000: refused up front.
    let (status, body) = put_ingest(&endpoint, &token, vec![7u8; 5000].into()).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["code"], "PAYLOAD_TOO_LARGE", "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("dpf.transfer.max-bytes"),
        "{body}"
    );
    assert!(
        std::fs::metadata(&destination).map_or(0, |m| m.len()) == 0,
        "a refused upload wrote to the destination"
    );

    // Chunked, 10 × 500 bytes: cut off at the cap.
    let chunks: Vec<Result<Bytes, std::io::Error>> =
        (0..10).map(|_| Ok(Bytes::from(vec![8u8; 500]))).collect();
    let (status, body) = put_ingest(
        &endpoint,
        &token,
        reqwest::Body::wrap_stream(futures::stream::iter(chunks)),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    let written = std::fs::metadata(&destination).map_or(0, |m| m.len());
    assert!(written <= 1000, "{written} bytes written beyond the cap");

    // Exactly the cap: accepted.
    let (status, body) = put_ingest(&endpoint, &token, vec![9u8; 1000].into()).await;
    assert!((200..300).contains(&status), "{status}: {body}");
    assert_eq!(std::fs::read(&destination).unwrap(), vec![9u8; 1000]);
}

/// `dpf.transfer.max-bytes=1000`: a provider push whose source holds 5000 bytes fails (no
/// retry) with an error naming the setting, and the sink receives nothing beyond the cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_source_beyond_max_bytes_fails_the_transfer() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataServer::start();
    let plane = Launcher::start(
        "dataplane-launcher",
        &["-D", "dpf.transfer.max-bytes=1000", "-D", LOOPBACK_ALLOWED],
        &[],
        dir.path(),
    );
    let base = plane.base_url.clone();
    let url = data.put("big", Content::Bytes(random_bytes(5000, 1)));
    put_http_dataset(&base, "big", &url).await;
    let mut start = flow_message("cap-source", PUSH, "big", "participant");
    start["dataAddress"] = json!({
        "@type": "DataAddress",
        "endpointType": PUSH,
        "endpoint": data.upload_url("big-copy"),
        "endpointProperties": []
    });
    let (status, started) = post(&format!("{base}/signaling/dataflows/start"), &start).await;
    assert_eq!(status, 200, "{started}");
    let id = started["dataFlowId"].as_str().unwrap().to_owned();
    let view = wait_flow(&base, &id, TIMEOUT, |v| v["state"] == "TERMINATED").await;
    let error = view["errorDetail"].as_str().unwrap_or_default();
    assert!(error.contains("dpf.transfer.max-bytes"), "{view}");
    let received: u64 = data
        .uploads("big-copy")
        .iter()
        .map(|u| u.bytes)
        .max()
        .unwrap_or(0);
    assert!(received <= 1000, "the sink received {received} bytes");
}

/// `dpf.dataplane.max-concurrent-flows=1`: of two provider pushes started together, the second
/// waits, unowned, until the first finished; the two uploads never overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_concurrent_flows_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataServer::start();
    let plane = Launcher::start(
        "dataplane-launcher",
        &[
            "-D",
            "dpf.dataplane.max-concurrent-flows=1",
            "-D",
            LOOPBACK_ALLOWED,
        ],
        &[],
        dir.path(),
    );
    let base = plane.base_url.clone();
    // 1 MiB in 16 chunks of 64 KiB, 60 ms apart: about a second each.
    let slow = Content::Pattern {
        block: Bytes::from(vec![5u8; 64 * 1024]),
        len: 1024 * 1024,
        delay: Duration::from_millis(60),
    };
    let url = data.put("slow", slow);
    put_http_dataset(&base, "slow", &url).await;
    let mut ids = Vec::new();
    for name in ["first", "second"] {
        let mut start = flow_message(&format!("mc-{name}"), PUSH, "slow", "participant");
        start["dataAddress"] = json!({
            "@type": "DataAddress",
            "endpointType": PUSH,
            "endpoint": data.upload_url(name),
            "endpointProperties": []
        });
        let (status, started) = post(&format!("{base}/signaling/dataflows/start"), &start).await;
        assert_eq!(status, 200, "{started}");
        ids.push(started["dataFlowId"].as_str().unwrap().to_owned());
    }
    let (_, second) = get(&format!("{base}/dataflows/{}", ids[1])).await;
    assert!(
        second["runtimeId"].is_null(),
        "the second flow was taken although the replica is full: {second}"
    );

    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let running = ["first", "second"]
            .iter()
            .filter(|name| {
                data.uploads(name)
                    .last()
                    .is_some_and(|u| u.bytes > 0 && !u.complete)
            })
            .count();
        assert!(running <= 1, "two transfers ran at once");
        let done = ["first", "second"]
            .iter()
            .all(|name| data.uploads(name).last().is_some_and(|u| u.complete));
        if done {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the transfers did not finish"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for id in &ids {
        let view = wait_flow(&base, id, TIMEOUT, |v| v["state"] == "COMPLETED").await;
        assert_eq!(view["bytesTransferred"], 1024 * 1024, "{view}");
    }
}
