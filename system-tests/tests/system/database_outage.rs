//! A replica started while PostgreSQL is unreachable keeps retrying, reports not-ready, and
//! becomes ready when the database comes up; a database outage during 50 running flows loses
//! none of them.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::json;
use system_tests::{flow_message, get, post, Content, DataServer, Launcher, TcpGate, PUSH};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_wait_for_the_database_and_survive_an_outage() {
    let _serial = system_tests::serial().await;
    let dir = tempfile::tempdir().unwrap();
    let real = tokio::task::spawn_blocking(system_tests::postgres_store_url)
        .await
        .unwrap();
    // postgres://postgres@127.0.0.1:PORT/db → the gate forwards to that port.
    let after_at = real.split('@').nth(1).unwrap();
    let (authority, database) = after_at.split_once('/').unwrap();
    let gate = TcpGate::new(authority.parse().unwrap());
    let url = format!("postgres://postgres@127.0.0.1:{}/{database}", gate.port);

    // The database is "down": the replica serves health, is not ready, and keeps trying.
    let fast = [
        "-D",
        "edc.dataplane.state-machine.flow.lease.time=2000",
        "-D",
        "edc.dataplane.state-machine.flow.lease.renew-interval=400",
        "-D",
        "edc.dataplane.state-machine.claim.interval=100",
    ];
    let mut args = vec![
        "-D".to_owned(),
        format!("dpf.store.url={url}"),
        "-D".to_owned(),
        "edc.runtime.id=r0".to_owned(),
    ];
    args.extend(fast.iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let plane = Launcher::start("dataplane-launcher", &args, &[], dir.path());
    let base = plane.base_url.clone();
    assert_eq!(get(&format!("{base}/health")).await.0, 200);
    let (status, body) = get(&format!("{base}/ready")).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("store unreachable"),
        "{body}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(plane.log_text().contains("store unreachable; retrying"));

    // The database comes up: the replica becomes ready by itself.
    gate.open().await;
    let began = Instant::now();
    loop {
        let (status, _) = get(&format!("{base}/ready")).await;
        if status == 200 {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(15),
            "never became ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "ready {} ms after the database came up",
        began.elapsed().as_millis()
    );

    // 50 running flows; the database goes away for 3 s and comes back: all complete.
    let data = DataServer::start();
    let block = system_tests::random_bytes(64 * 1024, 2);
    let source = data.put(
        "slow",
        Content::Pattern {
            block: block.clone(),
            len: 64 * 1024 * 40,
            delay: Duration::from_millis(100),
        },
    );
    let response = system_tests::client()
        .put(format!("{base}/datasets/slow"))
        .json(&json!({"type": "HttpData", "baseUrl": source}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    for i in 0..50 {
        let mut start = flow_message(&format!("o-{i}"), PUSH, "slow", "p");
        start["dataAddress"] =
            json!({"endpointType": PUSH, "endpoint": data.upload_url(&format!("o-{i}"))});
        let (status, body) = post(&format!("{base}/signaling/dataflows/start"), &start).await;
        assert_eq!(status, 200, "{body}");
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    gate.close();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, _) = get(&format!("{base}/ready")).await;
    assert_eq!(status, 503, "not ready while the database is away");
    gate.open().await;
    let began = Instant::now();
    loop {
        let (status, flows) = get(&format!("{base}/dataflows?limit=100")).await;
        if status == 200
            && flows
                .as_array()
                .unwrap()
                .iter()
                .all(|f| f["state"] == "COMPLETED")
        {
            assert_eq!(flows.as_array().unwrap().len(), 50);
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "flows did not all complete: {flows}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let expected = system_tests::pattern_sha256(&block, 64 * 1024 * 40);
    for i in 0..50 {
        let last = data
            .uploads(&format!("o-{i}"))
            .into_iter()
            .rfind(|u| u.complete)
            .unwrap();
        assert_eq!(last.sha256.as_deref(), Some(expected.as_str()), "flow {i}");
    }
}
