//! A 2 GiB provider-push transfer (HTTP source → data plane → HTTP sink) completes with the
//! data plane's peak RSS under 150 MiB: the data path streams with bounded memory.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::json;
use system_tests::{
    flow_message, post, random_bytes, wait_flow, Content, DataServer, Launcher, PUSH,
};

const SIZE: u64 = 2 * 1024 * 1024 * 1024;
const RSS_LIMIT_KIB: u64 = 150 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_gib_push_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let plane = Launcher::start("dataplane-launcher", &[], &[], dir.path());
    let base = plane.base_url.clone();
    let data = DataServer::start();
    let block = random_bytes(1024 * 1024 + 7, 42); // odd size: chunks never align with it
    let url = data.put(
        "big",
        Content::Pattern {
            block: block.clone(),
            len: SIZE,
            delay: Duration::ZERO,
        },
    );
    let response = system_tests::client()
        .put(format!("{base}/datasets/big"))
        .json(&json!({"type": "HttpData", "baseUrl": url}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let mut start = flow_message("mem-1", PUSH, "big", "p");
    start["dataAddress"] = json!({"endpointType": PUSH, "endpoint": data.upload_url("sink")});
    let began = Instant::now();
    let (status, body) = post(&format!("{base}/signaling/dataflows/start"), &start).await;
    assert_eq!(status, 200, "{body}");
    let id = body["dataFlowId"].as_str().unwrap().to_owned();
    let view = wait_flow(&base, &id, Duration::from_secs(600), |v| {
        v["state"] != "STARTED"
    })
    .await;
    let elapsed = began.elapsed();
    assert_eq!(view["state"], "COMPLETED", "{view}");
    assert_eq!(view["bytesTransferred"], SIZE);

    // The sink got every byte, in order.
    let upload = data.uploads("sink").pop().unwrap();
    assert!(upload.complete);
    assert_eq!(upload.bytes, SIZE);
    let expected = {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        let mut position = 0u64;
        while position < SIZE {
            let offset = usize::try_from(position % block.len() as u64).unwrap();
            let take =
                usize::try_from((SIZE - position).min((block.len() - offset) as u64)).unwrap();
            hasher.update(&block[offset..offset + take]);
            position += take as u64;
        }
        system_tests::hex(&hasher.finalize())
    };
    assert_eq!(upload.sha256.as_deref(), Some(expected.as_str()));

    let peak = plane.peak_rss_kib();
    println!(
        "2 GiB provider push: {:.1} s ({:.0} MiB/s), data plane peak RSS {} MiB (limit {} MiB)",
        elapsed.as_secs_f64(),
        SIZE as f64 / 1048576.0 / elapsed.as_secs_f64(),
        peak / 1024,
        RSS_LIMIT_KIB / 1024
    );
    assert!(
        peak < RSS_LIMIT_KIB,
        "peak RSS {peak} KiB exceeds {RSS_LIMIT_KIB} KiB"
    );
}
