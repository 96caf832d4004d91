//! A transfer end to end over HTTPS, with a CA and certificates generated in the test: two data
//! planes serve TLS (dpf.tls.cert/key) and trust the CA for their outbound calls (dpf.tls.ca).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::{json, Value};
use system_tests::{
    flow_message, random_bytes, sha256, sha256_file, simple_message, Launcher, PUSH,
};

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: &Value,
) -> (u16, Value) {
    let response = client.request(method, url).json(body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_transfer_runs_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let ca = system_tests::write_test_pki(dir.path());
    let path = |name: &str| dir.path().join(name).display().to_string();
    let tls = [
        "-D".to_owned(),
        format!("dpf.tls.cert={}", path("cert.pem")),
        "-D".to_owned(),
        format!("dpf.tls.key={}", path("key.pem")),
        "-D".to_owned(),
        format!("dpf.tls.ca={}", path("ca.pem")),
        "-D".to_owned(),
        "dpf.store.url=memory:".to_owned(),
        // The DPS HTTP profile's HTTPS requirement is enforced (the harness default is off).
        "-D".to_owned(),
        "dpf.http.insecure=false".to_owned(),
        // Both name files anywhere in the test directory.
        "-D".to_owned(),
        format!("dpf.transfer.file.root={}", dir.path().display()),
    ];
    let args: Vec<&str> = tls.iter().map(String::as_str).collect();
    std::fs::create_dir_all(dir.path().join("p")).unwrap();
    std::fs::create_dir_all(dir.path().join("c")).unwrap();
    let provider = Launcher::start("dataplane-launcher", &args, &[], &dir.path().join("p"));
    let consumer = Launcher::start("dataplane-launcher", &args, &[], &dir.path().join("c"));
    assert!(
        provider.base_url.starts_with("https://"),
        "{}",
        provider.base_url
    );

    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .build()
        .unwrap();
    // Plain HTTP to a TLS port does not work; HTTPS with the CA does.
    let plain = system_tests::client()
        .get(provider.base_url.replace("https://", "http://") + "/health")
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());

    let payload = random_bytes(5 * 1024 * 1024 + 1, 21);
    std::fs::write(dir.path().join("source.bin"), &payload).unwrap();
    let (status, _) = call(
        &client,
        reqwest::Method::PUT,
        &format!("{}/datasets/s", provider.base_url),
        &json!({"type": "File", "path": path("source.bin")}),
    )
    .await;
    assert_eq!(status, 200);

    let destination = dir.path().join("received.bin");
    let mut prepare = flow_message("tls-c", PUSH, "s", "c");
    prepare["metadata"] = json!({"destination": {"type": "File", "path": destination}});
    let (status, prepared) = call(
        &client,
        reqwest::Method::POST,
        &format!("{}/signaling/dataflows/prepare", consumer.base_url),
        &prepare,
    )
    .await;
    assert_eq!(status, 200, "{prepared}");
    let address = prepared["dataAddress"].clone();
    assert!(
        address["endpoint"]
            .as_str()
            .unwrap()
            .starts_with("https://"),
        "{address}"
    );
    let consumer_id = prepared["dataFlowId"].as_str().unwrap().to_owned();
    call(
        &client,
        reqwest::Method::POST,
        &format!(
            "{}/signaling/dataflows/{consumer_id}/started",
            consumer.base_url
        ),
        &simple_message(),
    )
    .await;

    let mut start = flow_message("tls-p", PUSH, "s", "p");
    start["dataAddress"] = address;
    let (status, started) = call(
        &client,
        reqwest::Method::POST,
        &format!("{}/signaling/dataflows/start", provider.base_url),
        &start,
    )
    .await;
    assert_eq!(status, 200, "{started}");
    let id = started["dataFlowId"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, view) = call(
            &client,
            reqwest::Method::GET,
            &format!("{}/dataflows/{id}", provider.base_url),
            &Value::Null,
        )
        .await;
        if view["state"] == "COMPLETED" {
            break;
        }
        assert_ne!(
            view["state"],
            "TERMINATED",
            "{view}\n{}",
            provider.log_text()
        );
        assert!(tokio::time::Instant::now() < deadline, "{view}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sha256_file(&destination), sha256(&payload));

    // Plain-HTTP destinations and callback endpoints are refused, and nothing is created.
    let mut plain = flow_message("tls-plain", PUSH, "s", "p");
    plain["dataAddress"] = json!({"endpointType": PUSH, "endpoint": "http://127.0.0.1:9/sink"});
    let (status, body) = call(
        &client,
        reqwest::Method::POST,
        &format!("{}/signaling/dataflows/start", provider.base_url),
        &plain,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("requires HTTPS"),
        "{body}"
    );
    let (status, _) = call(
        &client,
        reqwest::Method::GET,
        &format!("{}/dataflows/tls-plain", provider.base_url),
        &Value::Null,
    )
    .await;
    assert_eq!(status, 404);
    let (status, body) = call(
        &client,
        reqwest::Method::PUT,
        &format!("{}/signaling/controlplanes", provider.base_url),
        &json!({"controlplaneId": "cp", "endpoint": "http://127.0.0.1:9/callbacks",
                "authorization": {"type": "none"}}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("requires HTTPS"),
        "{body}"
    );
}

/// Without a certificate the data plane refuses to serve plain HTTP unless told it may.
#[test]
fn plain_http_needs_the_explicit_insecure_setting() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(system_tests::binary("dataplane-launcher"))
        .args(["-D", "web.http.port=0", "-D", "dpf.store.url=memory:"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("refusing to serve plain HTTP"), "{stderr}");
    assert!(stderr.contains("dpf.http.insecure=true"), "{stderr}");
}
