//! Bad input on every data-plane endpoint is a JSON 4xx and changes nothing.

#![allow(clippy::unwrap_used)]

use serde_json::{json, Value};
use system_tests::{call, flow_message, get, post, simple_message, Launcher, PULL, PUSH};

async fn flow_count(base: &str) -> usize {
    let (_, flows) = get(&format!("{base}/dataflows?limit=1000")).await;
    flows.as_array().unwrap().len()
}

async fn raw(
    method: reqwest::Method,
    url: &str,
    content_type: &str,
    body: &'static str,
) -> (u16, Value) {
    let response = system_tests::client()
        .request(method, url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_refuses_bad_input_with_json_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("src.bin");
    std::fs::write(&source, b"hello").unwrap();
    let plane = Launcher::start("dataplane-launcher", &[], &[], dir.path());
    let b = plane.base_url.clone();
    let (status, _) = call(
        reqwest::Method::PUT,
        &format!("{b}/datasets/ds"),
        Some(&json!({"type": "File", "path": source})),
    )
    .await;
    assert_eq!(status, 200);
    // One real flow to have something to collide with.
    let start = flow_message("dup", PULL, "ds", "p");
    let (status, started) = post(&format!("{b}/signaling/dataflows/start"), &start).await;
    assert_eq!(status, 200);
    let id = started["dataFlowId"].as_str().unwrap().to_owned();
    let token = started["dataAddress"]["endpointProperties"][0]["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = flow_count(&b).await;

    let mut missing_process = flow_message("x", PUSH, "ds", "p");
    missing_process.as_object_mut().unwrap().remove("processId");
    let mut pull_with_address = flow_message("new-1", PULL, "ds", "p");
    pull_with_address["dataAddress"] = json!({"endpointType": PULL, "endpoint": "http://x/"});
    let push_without_address = flow_message("new-2", PUSH, "ds", "p");
    let mut bad_address = flow_message("new-3", PUSH, "ds", "p");
    bad_address["dataAddress"] = json!({"endpointType": PUSH, "endpoint": "not a url"});
    let unknown_profile = flow_message("new-4", "https://example.com/ftp", "ds", "p");
    let unknown_dataset = flow_message("new-5", PUSH, "nope", "p");

    let cases: Vec<(u16, (u16, Value))> = vec![
        (400, raw(reqwest::Method::POST, &format!("{b}/signaling/dataflows/start"), "application/json", "{\"messageId\": ").await),
        (415, raw(reqwest::Method::POST, &format!("{b}/signaling/dataflows/start"), "text/plain", "hello").await),
        (400, post(&format!("{b}/signaling/dataflows/start"), &missing_process).await),
        (400, post(&format!("{b}/signaling/dataflows/start"), &pull_with_address).await),
        (400, post(&format!("{b}/signaling/dataflows/start"), &push_without_address).await),
        (400, post(&format!("{b}/signaling/dataflows/start"), &bad_address).await),
        (400, post(&format!("{b}/signaling/dataflows/start"), &unknown_profile).await),
        (404, post(&format!("{b}/signaling/dataflows/start"), &unknown_dataset).await),
        (409, post(&format!("{b}/signaling/dataflows/start"), &flow_message("dup", PULL, "ds", "p")).await),
        (409, post(&format!("{b}/signaling/dataflows/prepare"), &flow_message("dup", PUSH, "ds", "p")).await),
        (400, post(&format!("{b}/signaling/dataflows/prepare"), &json!({"messageId": "m"})).await),
        (404, post(&format!("{b}/signaling/dataflows/unknown-id/suspend"), &simple_message()).await),
        (404, get(&format!("{b}/signaling/dataflows/unknown-id/status")).await),
        (404, get(&format!("{b}/dataflows/unknown-id")).await),
        (400, post(&format!("{b}/signaling/dataflows/{id}/suspend"), &json!({"reason": "no message id"})).await),
        (409, post(&format!("{b}/signaling/dataflows/{id}/resume"), &simple_message()).await),
        (409, post(&format!("{b}/signaling/dataflows/{id}/started"), &simple_message()).await),
        (400, raw(reqwest::Method::POST, &format!("{b}/signaling/dataflows/{id}/completed"), "application/json", "not json").await),
        (400, get(&format!("{b}/dataflows?state=RUNNING")).await),
        (400, call(reqwest::Method::PUT, &format!("{b}/datasets/bad"), Some(&json!({"type": "File"}))).await),
        (400, call(reqwest::Method::PUT, &format!("{b}/datasets/bad"), Some(&json!({"type": "HttpData", "baseUrl": "ftp://x"}))).await),
        (400, call(reqwest::Method::PUT, &format!("{b}/datasets/bad"), Some(&json!({"path": "/x"}))).await),
        (400, call(reqwest::Method::PUT, &format!("{b}/signaling/controlplanes"), Some(&json!({"controlplaneId": "c", "endpoint": "nope", "authorization": {"type": "none"}}))).await),
        (404, call(reqwest::Method::DELETE, &format!("{b}/signaling/controlplanes/unknown"), None).await),
        (404, call(reqwest::Method::GET, &format!("{b}/no/such/route"), None).await),
    ];
    for (index, (expected, (status, body))) in cases.into_iter().enumerate() {
        assert_eq!(status, expected, "case {index}: {body}");
        assert!(
            body["error"].is_string() && body["code"].is_string(),
            "case {index}: not a JSON error: {body}"
        );
    }

    // Wrong or missing bearer tokens on the public and ingest endpoints.
    let client = system_tests::client();
    let wrong = client
        .get(format!("{b}/public/{id}"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let missing = client.get(format!("{b}/public/{id}")).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    let unknown = client
        .get(format!("{b}/public/unknown"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        unknown.status(),
        401,
        "unknown flows look like wrong tokens"
    );
    let mut prepare = flow_message("ingest-1", PUSH, "ds", "p");
    prepare["metadata"] =
        json!({"destination": {"type": "File", "path": dir.path().join("in.bin")}});
    let (_, prepared) = post(&format!("{b}/signaling/dataflows/prepare"), &prepare).await;
    let ingest = prepared["dataAddress"]["endpoint"]
        .as_str()
        .unwrap()
        .to_owned();
    let refused = client
        .post(&ingest)
        .bearer_auth(&token)
        .body("data")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert!(
        !dir.path().join("in.bin").exists(),
        "a refused upload wrote nothing"
    );

    assert_eq!(
        flow_count(&b).await,
        before + 1,
        "only the valid prepare created a flow"
    );
    let (_, view) = get(&format!("{b}/dataflows/{id}")).await;
    assert_eq!(view["state"], "STARTED");
}

/// A second upload while one is still being received is refused with 503 (senders retry) and
/// leaves the first one intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_upload_is_refused_and_does_not_touch_the_running_one() {
    let dir = tempfile::tempdir().unwrap();
    let plane = Launcher::start("dataplane-launcher", &[], &[], dir.path());
    let b = plane.base_url.clone();
    let destination = dir.path().join("upload.bin");
    let mut prepare = flow_message("upload-1", PUSH, "ds", "p");
    prepare["metadata"] = json!({"destination": {"type": "File", "path": destination}});
    let (status, prepared) = post(&format!("{b}/signaling/dataflows/prepare"), &prepare).await;
    assert_eq!(status, 200, "{prepared}");
    let ingest = prepared["dataAddress"]["endpoint"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = prepared["dataAddress"]["endpointProperties"][0]["value"]
        .as_str()
        .unwrap()
        .to_owned();

    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    let client = system_tests::client();
    let first = tokio::spawn({
        let request = client
            .post(&ingest)
            .bearer_auth(&token)
            .body(reqwest::Body::wrap_stream(futures::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|item| (item, rx)) },
            )));
        async move { request.send().await.unwrap().status().as_u16() }
    });
    tx.send(Ok(bytes::Bytes::from_static(b"first-")))
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read(&destination).unwrap_or_default() != b"first-" {
        assert!(
            std::time::Instant::now() < deadline,
            "the first upload wrote nothing"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    let second = client
        .post(&ingest)
        .bearer_auth(&token)
        .body("second")
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 503);
    let body: Value = second.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("still being received"),
        "{body}"
    );

    tx.send(Ok(bytes::Bytes::from_static(b"rest")))
        .await
        .unwrap();
    drop(tx);
    let status = first.await.unwrap();
    assert!((200..300).contains(&status), "{status}");
    assert_eq!(std::fs::read(&destination).unwrap(), b"first-rest");
}
