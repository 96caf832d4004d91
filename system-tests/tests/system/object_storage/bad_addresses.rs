//! Item 6 of the object-storage tests: bad addresses.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use system_tests::object_servers::{prepare_pull, put_pattern, started, Azurite, MotoServer};
use system_tests::{
    flow_message, get, post, random_bytes, wait_flow, Content, DataServer, PULL, PUSH,
};

use super::{plane, put_dataset};

/// Item 6: bad object addresses fail with a clear reason, never a hang. What can be checked
/// without the network (a missing bucket/key/container property, a malformed or denied
/// `endpointOverride`) is refused at once with 400 and creates nothing; a bucket that does not
/// exist or credentials the service refuses end the flow TERMINATED (`errored`) with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_object_addresses_fail_with_a_clear_reason() {
    let _serial = system_tests::serial().await;
    let dir = tempfile::tempdir().unwrap();
    let moto = MotoServer::start(dir.path());
    moto.create_bucket("present").await;
    put_pattern(&moto.store("present"), "x.bin", 1000, 3).await;
    let azurite = Azurite::start(dir.path());
    azurite.create_container("bad-input").await;
    let data = DataServer::start();
    let sink = data.upload_url("sink");
    let provider = plane(dir.path(), "provider", &[]);
    let base = provider.base_url.clone();

    // What needs the network (a bucket that does not exist, credentials the service refuses)
    // is found when the flow first runs: TERMINATED with the reason.
    let mut wrong_key = azurite.address("bad-input", "x.bin");
    wrong_key["accountKey"] = json!("d3Jvbmcga2V5IGZvciB0aGUgZGV2IGFjY291bnQ=");
    let cases = [
        ("no-bucket", moto.address("absent", "x.bin"), "not found"),
        ("wrong-key", wrong_key, "refused the credentials"),
    ];
    for (name, address, reason) in cases {
        put_dataset(&base, name, &address).await;
        let mut start = flow_message(name, PUSH, name, "p");
        start["dataAddress"] = json!({"endpointType": PUSH, "endpoint": sink});
        let began = Instant::now();
        let (status, body) = post(&format!("{base}/signaling/dataflows/start"), &start).await;
        assert_eq!(status, 200, "{name}: {body}");
        let id = body["dataFlowId"].as_str().unwrap();
        let view = wait_flow(&base, id, Duration::from_secs(60), |v| {
            v["state"] == "TERMINATED"
        })
        .await;
        let detail = view["errorDetail"].as_str().unwrap_or_default().to_owned();
        println!("{name}: {:.1} s: {detail}", began.elapsed().as_secs_f64());
        assert!(detail.contains(reason), "{name}: {detail}");
        assert_no_secret(name, &detail);
    }

    // What can be checked without the network is refused at once with 400, and nothing is
    // created: a dataset without a key or with a malformed endpoint, a consumer destination
    // without its bucket or container.
    let flows_before = flow_count(&base).await;
    let mut malformed = moto.address("present", "x.bin");
    malformed["endpointOverride"] = json!("not a url");
    for (name, address, reason) in [
        (
            "no-key",
            json!({"type": "AmazonS3", "bucketName": "present"}),
            "keyName",
        ),
        ("malformed-endpoint", malformed, "endpointOverride"),
    ] {
        let (status, body) = put_dataset_status(&base, name, &address).await;
        println!("dataset {name}: {status}: {body}");
        assert_eq!(status, 400, "{name}: {body}");
        assert!(body.to_string().contains(reason), "{name}: {body}");
        assert_no_secret(name, &body.to_string());
        let (status, _) = get(&format!("{base}/datasets/{name}")).await;
        assert_eq!(status, 404, "{name} was registered");
    }
    let mut no_bucket = moto.address("present", "y.bin");
    no_bucket.as_object_mut().unwrap().remove("bucketName");
    let mut no_container = azurite.address("bad-input", "y.bin");
    no_container.as_object_mut().unwrap().remove("container");
    for (name, destination, reason) in [
        ("dest-no-bucket", no_bucket, "bucketName"),
        ("dest-no-container", no_container, "container"),
    ] {
        let (status, body) = prepare_status(&base, name, &destination).await;
        println!("prepare {name}: {status}: {body}");
        assert_eq!(status, 400, "{name}: {body}");
        assert!(body.to_string().contains(reason), "{name}: {body}");
        assert_no_secret(name, &body.to_string());
    }
    assert_eq!(
        flow_count(&base).await,
        flows_before,
        "a refused request created a flow"
    );

    // A destination bucket that does not exist: the consumer's flow fails with the reason.
    let source = data.put("small", Content::Bytes(random_bytes(1000, 4)));
    let id = prepare_pull(&base, "to-absent", &moto.address("absent", "y.bin")).await;
    started(
        &base,
        &id,
        json!({"endpointType": PULL, "endpoint": source}),
    )
    .await;
    let view = wait_flow(&base, &id, Duration::from_secs(60), |v| {
        v["state"] == "TERMINATED"
    })
    .await;
    let detail = view["errorDetail"].as_str().unwrap_or_default();
    println!("destination bucket absent: {detail}");
    assert!(detail.contains("not found"), "{detail}");

    // A data plane that denies loopback refuses the same endpoint override at once: as a
    // dataset (PUT /datasets) and as a consumer's destination (prepare), creating nothing.
    let strict = plane(
        dir.path(),
        "strict",
        &["-D", "dpf.transfer.denied-networks=127.0.0.0/8"],
    );
    let strict_base = strict.base_url.clone();
    let (status, body) =
        put_dataset_status(&strict_base, "denied", &moto.address("present", "x.bin")).await;
    println!("denied endpoint, dataset: {status}: {body}");
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("denied network"), "{body}");
    let (status, body) =
        prepare_status(&strict_base, "denied", &moto.address("present", "y.bin")).await;
    println!("denied endpoint, destination: {status}: {body}");
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("denied network"), "{body}");
    assert_eq!(flow_count(&strict_base).await, 0);
    let mut start = flow_message("denied", PUSH, "denied", "p");
    start["dataAddress"] = json!({"endpointType": PUSH, "endpoint": "http://example.invalid/sink"});
    let (status, body) = post(&format!("{strict_base}/signaling/dataflows/start"), &start).await;
    assert_eq!(status, 404, "the refused dataset was registered: {body}");
}

fn assert_no_secret(name: &str, detail: &str) {
    assert!(
        !detail.contains("testing") && !detail.contains("d3Jvbmcga2V5"),
        "{name} leaks a secret: {detail}"
    );
}

async fn put_dataset_status(base: &str, id: &str, address: &Value) -> (u16, Value) {
    let response = system_tests::client()
        .put(format!("{base}/datasets/{id}"))
        .json(address)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn prepare_status(base: &str, process: &str, destination: &Value) -> (u16, Value) {
    let mut prepare = flow_message(process, PULL, "d", "c");
    prepare["metadata"] = json!({ "destination": destination });
    post(&format!("{base}/signaling/dataflows/prepare"), &prepare).await
}

async fn flow_count(base: &str) -> usize {
    let (status, body) = get(&format!("{base}/dataflows?limit=10000")).await;
    assert_eq!(status, 200, "{body}");
    body.as_array().map_or(0, Vec::len)
}
