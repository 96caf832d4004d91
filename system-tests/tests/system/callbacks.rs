//! A control plane that is down, then answers 500, gets its callbacks retried with backoff
//! while the flow itself completes without waiting for it.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::json;
use system_tests::{
    flow_message, post, wait_flow, Content, DataServer, FakeControlPlane, Launcher, PUSH,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callbacks_are_retried_and_never_delay_the_flow() {
    let dir = tempfile::tempdir().unwrap();
    // Reserve the control plane's address; nothing listens there yet.
    let cp_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cp_address = cp_listener.local_addr().unwrap();
    drop(cp_listener);
    let plane = Launcher::start(
        "dataplane-launcher",
        &[
            "-D",
            &format!(
                "dpf.controlplane.provider-participant.endpoint=http://{cp_address}/signaling"
            ),
            "-D",
            "dpf.callback.retry.backoff=100",
            "-D",
            "dpf.callback.retry.limit=30",
        ],
        &[],
        dir.path(),
    );
    let base = plane.base_url.clone();
    let data = DataServer::start();
    let url = data.put(
        "src",
        Content::Bytes(system_tests::random_bytes(256 * 1024, 4)),
    );
    system_tests::client()
        .put(format!("{base}/datasets/src"))
        .json(&json!({"type": "HttpData", "baseUrl": url}))
        .send()
        .await
        .unwrap();
    let mut start = flow_message("cb-1", PUSH, "src", "provider-participant");
    start["dataAddress"] = json!({"endpointType": PUSH, "endpoint": data.upload_url("sink")});
    let began = Instant::now();
    let (status, body) = post(&format!("{base}/signaling/dataflows/start"), &start).await;
    assert_eq!(status, 200, "{body}");
    let id = body["dataFlowId"].as_str().unwrap().to_owned();
    // The flow completes although its control plane is unreachable.
    wait_flow(&base, &id, Duration::from_secs(10), |v| {
        v["state"] == "COMPLETED"
    })
    .await;
    let completed_after = began.elapsed();
    assert!(
        completed_after < Duration::from_secs(5),
        "completion took {completed_after:?}"
    );

    // Now the control plane comes up, failing its first two calls with 500.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cp = FakeControlPlane::start_on(std::net::TcpListener::bind(cp_address).unwrap(), 2);
    let callback = cp
        .wait_for("cb-1", "completed", Duration::from_secs(20))
        .await;
    assert_eq!(callback.body["state"], "COMPLETED");
    system_tests::dps::assert_valid("DataFlowStatusMessage", &callback.body);
    assert!(
        cp.attempts.load(std::sync::atomic::Ordering::Relaxed) >= 3,
        "two 500s, then success"
    );
    assert!(
        plane.log_text().contains("callback failed"),
        "connection failures were retried"
    );
}
