//! Authentication on every API, the destination allow-list, readiness and metrics.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)] // metrics pages are small

use std::time::Duration;

use serde_json::json;
use system_tests::{flow_message, get, post, wait_flow, Content, DataServer, Launcher, PUSH};

const KEY: &str = "s3cret-key-for-tests";

/// Every route of the data-plane API (method, path) with a body that passes decoding; open
/// routes are marked.
fn routes() -> Vec<(&'static str, &'static str, bool)> {
    vec![
        ("GET", "/health", true),
        ("GET", "/ready", true),
        ("GET", "/metrics", true),
        ("GET", "/openapi.json", true),
        ("POST", "/signaling/dataflows/prepare", false),
        ("POST", "/signaling/dataflows/start", false),
        ("POST", "/signaling/dataflows/x/started", false),
        ("POST", "/signaling/dataflows/x/suspend", false),
        ("POST", "/signaling/dataflows/x/resume", false),
        ("POST", "/signaling/dataflows/x/terminate", false),
        ("POST", "/signaling/dataflows/x/completed", false),
        ("GET", "/signaling/dataflows/x/status", false),
        ("PUT", "/signaling/controlplanes", false),
        ("DELETE", "/signaling/controlplanes/x", false),
        ("GET", "/cluster/members", false),
        ("GET", "/cluster/leader", false),
        ("GET", "/cluster/baseline", false),
        ("PUT", "/cluster/baseline", false),
        ("GET", "/cluster/baseline/version", false),
        ("POST", "/cluster/baseline/add", false),
        ("POST", "/cluster/baseline/remove", false),
        ("POST", "/cluster/baseline/activate", false),
        ("POST", "/cluster/baseline/deactivate", false),
        ("PUT", "/cluster/baseline/auto-adjust", false),
        ("GET", "/cluster/kv", false),
        ("GET", "/cluster/kv/a/b", false),
        ("PUT", "/cluster/kv/a/b", false),
        ("DELETE", "/cluster/kv/a/b", false),
        ("GET", "/dataflows", false),
        ("GET", "/dataflows/x", false),
        ("GET", "/datasets", false),
        ("PUT", "/datasets/x", false),
        ("GET", "/datasets/x", false),
        ("DELETE", "/datasets/x", false),
    ]
}

async fn send(method: &str, url: &str, auth: Option<&str>) -> u16 {
    let client = system_tests::client();
    let mut request = client
        .request(method.parse().unwrap(), url)
        .json(&json!({}));
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protected_route_needs_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let plane = Launcher::start(
        "dataplane-launcher",
        &[
            "-D",
            &format!("dpf.api.auth.key={KEY}"),
            "-D",
            "dpf.store.url=memory:",
        ],
        &[],
        dir.path(),
    );
    for (method, path, open) in routes() {
        let url = format!("{}{path}", plane.base_url);
        let missing = send(method, &url, None).await;
        let wrong = send(method, &url, Some("Bearer nope")).await;
        let right = send(method, &url, Some(&format!("Bearer {KEY}"))).await;
        if open {
            assert_ne!(missing, 401, "{method} {path} should be open");
        } else {
            assert_eq!((missing, wrong), (401, 401), "{method} {path}");
            assert_ne!(right, 401, "{method} {path} refused the right key");
        }
    }
    // X-Api-Key works too, and the key never appears in the log.
    let response = system_tests::client()
        .get(format!("{}/dataflows", plane.base_url))
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(!plane.log_text().contains(KEY), "the key was logged");

    // The selector API too.
    let selector = Launcher::start(
        "selector-launcher",
        &[
            "-D",
            &format!("dpf.api.auth.key={KEY}"),
            "-D",
            "dpf.store.url=memory:",
        ],
        &[],
        dir.path(),
    );
    for (method, path, open) in [
        ("GET", "/health", true),
        ("GET", "/dataplanes", false),
        ("PUT", "/dataplanes", false),
        ("POST", "/dataplanes/select", false),
        ("GET", "/strategies", false),
        ("DELETE", "/dataplanes/x", false),
    ] {
        let url = format!("{}{path}", selector.base_url);
        let missing = send(method, &url, None).await;
        let right = send(method, &url, Some(&format!("Bearer {KEY}"))).await;
        assert_eq!(missing == 401, !open, "{method} {path}: {missing}");
        assert_ne!(right, 401, "{method} {path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_list_readiness_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let plane = Launcher::start(
        "dataplane-launcher",
        &[
            "-D",
            "dpf.transfer.allowed-hosts=sink.example.com,127.0.0.0/8",
            "-D",
            "dpf.store.url=memory:",
        ],
        &[],
        dir.path(),
    );
    let base = plane.base_url.clone();
    let data = DataServer::start();
    let source = data.put(
        "src",
        Content::Bytes(system_tests::random_bytes(3 * 1024 * 1024, 9)),
    );
    system_tests::client()
        .put(format!("{base}/datasets/src"))
        .json(&json!({"type": "HttpData", "baseUrl": source}))
        .send()
        .await
        .unwrap();

    // Outside the allow-list: refused, nothing created.
    let mut start = flow_message("deny-1", PUSH, "src", "p");
    start["dataAddress"] =
        json!({"endpointType": PUSH, "endpoint": "http://169.254.169.254/latest/meta-data"});
    let (status, body) = post(&format!("{base}/signaling/dataflows/start"), &start).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("not in this data plane's allow-list"),
        "{body}"
    );
    assert_eq!(get(&format!("{base}/dataflows")).await.1, json!([]));

    // Ready once joined.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = get(&format!("{base}/ready")).await;
        if status == 200 {
            assert_eq!(body["status"], "READY");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never ready: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Metrics move as a transfer runs.
    let metric = |text: &str, name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1.0)
    };
    let scrape = || async {
        reqwest::get(format!("{base}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let before = scrape().await;
    let mut start = flow_message("ok-1", PUSH, "src", "p");
    start["dataAddress"] = json!({"endpointType": PUSH, "endpoint": data.upload_url("sink")});
    let (status, body) = post(&format!("{base}/signaling/dataflows/start"), &start).await;
    assert_eq!(status, 200, "{body}");
    wait_flow(
        &base,
        body["dataFlowId"].as_str().unwrap(),
        Duration::from_secs(20),
        |v| v["state"] == "COMPLETED",
    )
    .await;
    let after = scrape().await;
    for name in [
        "dpf_flows{state=\"COMPLETED\"}",
        "dpf_bytes_transferred_total",
        "dpf_transfers_completed_total",
    ] {
        assert!(
            metric(&after, name) > metric(&before, name),
            "{name} did not move:\n{after}"
        );
    }
    for name in [
        "dpf_lease_renewals_total",
        "dpf_claims_total",
        "dpf_takeovers_total",
        "dpf_lease_renew_seconds_sum",
        "dpf_callback_retries_total",
        "dpf_leader",
        "dpf_transfers_running",
    ] {
        assert!(metric(&after, name) >= 0.0, "{name} missing:\n{after}");
    }
    // The finished flow leaves no local state behind.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = scrape().await;
        let entries = metric(&text, "dpf_runner_entries");
        if entries == 0.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "dpf_runner_entries stays {entries}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
