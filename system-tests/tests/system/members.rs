//! Replica lifecycle and discovery: the members listing shows lifecycle states, a killed
//! member disappears within its lease, and a watcher sees joins and leaves.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;
use system_tests::{
    flow_message, get, post, postgres_store_url, start_replicas, Content, DataServer, PUSH,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn members_listing_lifecycle_and_watch() {
    let _serial = system_tests::serial().await;
    let dir = tempfile::tempdir().unwrap();
    let url = tokio::task::spawn_blocking(postgres_store_url)
        .await
        .unwrap();
    let fast = [
        "-D",
        "edc.dataplane.state-machine.flow.lease.time=1000",
        "-D",
        "edc.dataplane.state-machine.flow.lease.renew-interval=250",
        "-D",
        "edc.dataplane.state-machine.claim.interval=100",
    ];
    let mut replicas = start_replicas(2, &url, &fast, dir.path());
    let base = replicas[1].base_url.clone();

    // Watch from r1: the stream starts with the current members, then reports changes.
    let response = system_tests::client()
        .get(format!("{base}/cluster/members?watch=true"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut stream = response.bytes_stream();
    let mut seen = String::new();

    // Both replicas are listed; idle ones say IDLE.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, members) = get(&format!("{base}/cluster/members")).await;
        let states: Vec<(String, String)> = members
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["name"].as_str().unwrap().to_owned(),
                    m["state"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        if states
            == [
                ("r0".to_owned(), "IDLE".to_owned()),
                ("r1".to_owned(), "IDLE".to_owned()),
            ]
        {
            break;
        }
        assert!(Instant::now() < deadline, "{states:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A running transfer makes its owner HEALTHY.
    let data = DataServer::start();
    let block = system_tests::random_bytes(64 * 1024, 3);
    let source = data.put(
        "slow",
        Content::Pattern {
            block,
            len: 64 * 1024 * 40,
            delay: Duration::from_millis(100),
        },
    );
    system_tests::client()
        .put(format!("{}/datasets/slow", replicas[0].base_url))
        .json(&json!({"type": "HttpData", "baseUrl": source}))
        .send()
        .await
        .unwrap();
    let mut start = flow_message("m-1", PUSH, "slow", "p");
    start["dataAddress"] = json!({"endpointType": PUSH, "endpoint": data.upload_url("sink")});
    let (status, _) = post(
        &format!("{}/signaling/dataflows/start", replicas[0].base_url),
        &start,
    )
    .await;
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, members) = get(&format!("{base}/cluster/members")).await;
        if members
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "r0" && m["state"] == "HEALTHY")
        {
            break;
        }
        assert!(Instant::now() < deadline, "{members}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Kill r0: it leaves the listing within its lease, and the watcher sees it leave.
    replicas[0].kill();
    let killed = Instant::now();
    loop {
        let (_, members) = get(&format!("{base}/cluster/members")).await;
        if members
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["name"] != "r0")
        {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_millis(1500),
            "r0 still listed: {members}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !seen.contains("event: leave\ndata: {")
        || !seen
            .split("event: leave")
            .nth(1)
            .is_some_and(|s| s.contains("\"r0\""))
    {
        let chunk = tokio::time::timeout_at(deadline.into(), stream.next())
            .await
            .expect("no leave event")
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        seen.starts_with("event: join\n"),
        "the watch starts with the listing: {seen}"
    );
    assert!(
        seen.contains("\"name\":\"r0\"") && seen.contains("\"name\":\"r1\""),
        "{seen}"
    );
    assert!(
        seen.contains("event: update"),
        "state changes are reported: {seen}"
    );
}
