//! Suspend, resume, terminate on a running provider-push transfer: stopping means stopped,
//! resume continues, terminal states are final.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use system_tests::{
    flow_message, post, simple_message, wait_flow, Content, DataServer, Launcher, PUSH,
};

const TIMEOUT: Duration = Duration::from_secs(30);

/// A slow source (about 6 MiB/s) so the transfer is still running when we act.
fn slow_source(data: &DataServer, name: &str, len: u64) -> String {
    let block = system_tests::random_bytes(1024 * 1024, 9);
    data.put(
        name,
        Content::Pattern {
            block,
            len,
            delay: Duration::from_millis(10),
        },
    )
}

async fn start_push(base: &str, process: &str, dataset: &str, sink: &str) -> String {
    let mut start = flow_message(process, PUSH, dataset, "provider-participant");
    start["dataAddress"] = json!({"endpointType": PUSH, "endpoint": sink});
    let (status, body) = post(&format!("{base}/signaling/dataflows/start"), &start).await;
    assert_eq!(status, 200, "{body}");
    body["dataFlowId"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn suspend_stops_the_data_resume_continues_terminate_is_final() {
    let dir = tempfile::tempdir().unwrap();
    let plane = Launcher::start("dataplane-launcher", &[], &[], dir.path());
    let base = plane.base_url.clone();
    let data = DataServer::start();
    let len = 24 * 1024 * 1024;
    let url = slow_source(&data, "slow", len);
    system_tests::put_http_dataset(&base, "slow", &url).await;
    let id = start_push(&base, "ctl-1", "slow", &data.upload_url("sink")).await;

    // Let some data flow, then suspend.
    wait_flow(&base, &id, TIMEOUT, |v| {
        v["bytesTransferred"].as_u64().unwrap_or(0) > 1024 * 1024
    })
    .await;
    let (status, body) = post(
        &format!("{base}/signaling/dataflows/{id}/suspend"),
        &json!({"messageId": "s1", "reason": "maintenance"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "SUSPENDED");
    let frozen = data.received.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        data.received.load(Ordering::SeqCst),
        frozen,
        "bytes reached the sink after suspend answered"
    );
    assert!(
        frozen < len,
        "the transfer finished before it could be suspended"
    );
    let (_, status_body) =
        system_tests::get(&format!("{base}/signaling/dataflows/{id}/status")).await;
    assert_eq!(status_body["state"], "SUSPENDED");
    // Suspending again is an illegal transition.
    let (status, body) = post(
        &format!("{base}/signaling/dataflows/{id}/suspend"),
        &simple_message(),
    )
    .await;
    assert_eq!(status, 409, "{body}");

    // Resume: the transfer runs to completion (restarted; checkpoints come later).
    let (status, body) = post(
        &format!("{base}/signaling/dataflows/{id}/resume"),
        &simple_message(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "STARTED");
    let view = wait_flow(&base, &id, Duration::from_secs(60), |v| {
        v["state"] == "COMPLETED"
    })
    .await;
    assert_eq!(
        view["epoch"], 2,
        "resume takes the flow over with a new epoch"
    );
    let last = data.uploads("sink").last().cloned().unwrap();
    assert!(last.complete);
    assert_eq!(last.bytes, len);

    // Completed is final.
    for action in ["suspend", "resume", "terminate", "completed"] {
        let (status, body) = post(
            &format!("{base}/signaling/dataflows/{id}/{action}"),
            &simple_message(),
        )
        .await;
        assert_eq!(status, 409, "{action} on a COMPLETED flow: {body}");
        assert_eq!(body["code"], "CONFLICT");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn terminate_stops_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let plane = Launcher::start("dataplane-launcher", &[], &[], dir.path());
    let base = plane.base_url.clone();
    let data = DataServer::start();
    let url = slow_source(&data, "slow", 64 * 1024 * 1024);
    system_tests::client()
        .put(format!("{base}/datasets/slow"))
        .json(&json!({"type": "HttpData", "baseUrl": url}))
        .send()
        .await
        .unwrap();
    let id = start_push(&base, "ctl-2", "slow", &data.upload_url("sink")).await;
    wait_flow(&base, &id, TIMEOUT, |v| {
        v["bytesTransferred"].as_u64().unwrap_or(0) > 512 * 1024
    })
    .await;
    let (status, body) = post(
        &format!("{base}/signaling/dataflows/{id}/terminate"),
        &json!({"messageId": "t1", "reason": "policy"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "TERMINATED");
    let frozen = data.received.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(data.received.load(Ordering::SeqCst), frozen);
    for action in ["suspend", "resume", "terminate", "completed"] {
        let (status, _) = post(
            &format!("{base}/signaling/dataflows/{id}/{action}"),
            &simple_message(),
        )
        .await;
        assert_eq!(status, 409, "{action} on a TERMINATED flow");
    }
    let (_, view) = system_tests::get(&format!("{base}/dataflows/{id}")).await;
    assert_eq!(view["state"], "TERMINATED");
    assert_eq!(view["errorDetail"], "policy");
}

/// JSON logs: every line is a JSON object naming the replica; the lines about a flow name it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn json_logs_name_the_replica_on_every_line_and_the_flow_on_flow_lines() {
    let dir = tempfile::tempdir().unwrap();
    let plane = Launcher::start(
        "dataplane-launcher",
        &["-D", "edc.runtime.id=log-r1", "-D", "dpf.log.format=json"],
        &[],
        dir.path(),
    );
    let base = plane.base_url.clone();
    let data = DataServer::start();
    let url = data.put("small", Content::Bytes(system_tests::random_bytes(4096, 3)));
    system_tests::put_http_dataset(&base, "small", &url).await;
    let id = start_push(&base, "log-1", "small", &data.upload_url("sink")).await;
    wait_flow(&base, &id, TIMEOUT, |v| v["state"] == "COMPLETED").await;

    let log = plane.log_text();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    assert!(lines.len() >= 3, "{log}");
    for line in &lines {
        assert_eq!(line["runtimeId"], "log-r1", "{line}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["flow_id"] == id.as_str() && l["fields"]["process_id"] == "log-1"),
        "no line names the flow:\n{log}"
    );
}
