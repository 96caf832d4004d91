//! Attacks: auth (see docs/security.md, "Authentication and roles" and "Limits").
//!
//! Real `dataplane-launcher` processes: route-based authentication (paths that used to be
//! exempted by string matching), per-control-plane keys, reserved KV keys, serving without a
//! key (bind and `Host` checks), the watch-stream cap and `Range` arithmetic.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)] // test bodies are at most 1000 bytes

use std::time::Duration;

use serde_json::{json, Value};
use system_tests::{binary, flow_message, simple_message, Launcher, PULL};

const ADMIN: &str = "admin-key-for-attack-tests";
const CP1: &str = "cp-key-of-participant-one";
const CP2: &str = "cp-key-of-participant-two";

/// Sends a request with an optional API key and JSON body; returns the status and the JSON
/// body (Null when not JSON).
async fn send(method: &str, url: &str, key: Option<&str>, body: Option<&Value>) -> (u16, Value) {
    let client = system_tests::client();
    let mut request = client
        .request(method.parse().unwrap(), url)
        .timeout(Duration::from_secs(30));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// A data plane with an admin key and keys for participants `p1` and `p2`, and a 1000-byte
/// `File` dataset `data`.
async fn keyed_plane(dir: &std::path::Path) -> Launcher {
    std::fs::write(dir.join("data.bin"), vec![7u8; 1000]).unwrap();
    let plane = Launcher::start(
        "dataplane-launcher",
        &[
            "-D",
            &format!("dpf.api.auth.key={ADMIN}"),
            "-D",
            &format!("dpf.api.auth.controlplane.p1.key={CP1}"),
            "-D",
            &format!("dpf.api.auth.controlplane.p2.key={CP2}"),
        ],
        &[],
        dir,
    );
    let (status, body) = send(
        "PUT",
        &format!("{}/datasets/data", plane.base_url),
        Some(ADMIN),
        Some(&json!({"type": "File", "path": dir.join("data.bin").display().to_string()})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    plane
}

/// Starts a provider-pull flow for `process` as `participant` with `key`; returns its flow id,
/// endpoint and token.
async fn start_pull(
    base: &str,
    key: &str,
    process: &str,
    participant: &str,
) -> (String, String, String) {
    let (status, body) = send(
        "POST",
        &format!("{base}/signaling/dataflows/start"),
        Some(key),
        Some(&flow_message(process, PULL, "data", participant)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let address = &body["dataAddress"];
    let token = address["endpointProperties"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "authorization")
        .unwrap()["value"]
        .as_str()
        .unwrap()
        .to_owned();
    (
        body["dataFlowId"].as_str().unwrap().to_owned(),
        address["endpoint"].as_str().unwrap().to_owned(),
        token,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_paths_need_the_key_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let plane = keyed_plane(dir.path()).await;
    let base = &plane.base_url;
    // Paths that a string match on `/public/`, `/ingest/`, `/metrics`, `/health` let through.
    for (method, path) in [
        ("PUT", "/cluster/kv/a/public/b"),
        ("PUT", "/cluster/kv/a/ingest/b"),
        ("PUT", "/cluster/kv/x/health"),
        ("PUT", "/datasets/metrics"),
        ("PUT", "/datasets/health"),
        ("PUT", "/datasets/openapi.json"),
        ("DELETE", "/datasets/data"),
        ("GET", "/dataflows"),
        ("GET", "/cluster/kv"),
    ] {
        let body = json!({"value": "pwned", "type": "File", "path": "/etc/passwd"});
        let (status, answer) = send(method, &format!("{base}{path}"), None, Some(&body)).await;
        assert_eq!(status, 401, "{method} {path}: {answer}");
        assert_eq!(answer["code"], "UNAUTHORIZED", "{method} {path}");
        let (status, _) = send(method, &format!("{base}{path}"), Some("wrong"), Some(&body)).await;
        assert_eq!(status, 401, "{method} {path} with a wrong key");
    }
    // Nothing changed.
    for path in [
        "/cluster/kv/a/public/b",
        "/cluster/kv/a/ingest/b",
        "/cluster/kv/x/health",
        "/datasets/metrics",
        "/datasets/health",
        "/datasets/openapi.json",
    ] {
        let (status, body) = send("GET", &format!("{base}{path}"), Some(ADMIN), None).await;
        assert_eq!(status, 404, "{path} was written: {body}");
    }
    let (status, _) = send("GET", &format!("{base}/datasets/data"), Some(ADMIN), None).await;
    assert_eq!(status, 200, "the dataset was deleted");

    // The open routes stay open.
    for path in ["/health", "/metrics", "/openapi.json"] {
        let response = reqwest::get(format!("{base}{path}")).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    // Readiness answers 200 or 503 (the replica may still be joining), never 401.
    let (status, body) = send("GET", &format!("{base}/ready"), None, None).await;
    assert!(status == 200 || status == 503, "/ready: {status} {body}");
    assert!(body["status"].is_string(), "{body}");
    // The public endpoint takes the flow's token, not the API key.
    let (_, endpoint, token) = start_pull(base, ADMIN, "bypass-1", "p1").await;
    let client = system_tests::client();
    let without = client.get(&endpoint).send().await.unwrap();
    assert_eq!(without.status(), 401);
    let with_api_key = client
        .get(&endpoint)
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(with_api_key.status(), 401, "the API key is no flow token");
    let pulled = client
        .get(&endpoint)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(pulled.status(), 200);
    assert_eq!(pulled.bytes().await.unwrap().len(), 1000);
    assert!(
        !plane.log_text().contains(ADMIN),
        "the admin key was logged"
    );
    assert!(
        !plane.log_text().contains(CP1),
        "a control-plane key was logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_key_sees_and_signals_only_its_own_flows() {
    let dir = tempfile::tempdir().unwrap();
    let plane = keyed_plane(dir.path()).await;
    let base = &plane.base_url;
    let (own, _, _) = start_pull(base, CP1, "own-1", "p1").await;
    let (other, _, _) = start_pull(base, CP2, "other-1", "p2").await;

    // A message for another participant is refused and creates nothing.
    let (status, body) = send(
        "POST",
        &format!("{base}/signaling/dataflows/start"),
        Some(CP1),
        Some(&flow_message("forged-1", PULL, "data", "p2")),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = send(
        "GET",
        &format!("{base}/dataflows/forged-1"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 404, "a forged start created a flow");

    // Another participant's flow does not exist for p1: every action is a 404 with the same
    // answer as a flow that really does not exist, by flow id and by process id.
    for id in [other.as_str(), "other-1"] {
        let not_found =
            json!({"error": format!("data flow '{id}' not found"), "code": "NOT_FOUND"});
        for (method, path, body) in [
            ("GET", format!("/signaling/dataflows/{id}/status"), None),
            ("GET", format!("/dataflows/{id}"), None),
            (
                "POST",
                format!("/signaling/dataflows/{id}/suspend"),
                Some(json!({"messageId": "m", "reason": "x"})),
            ),
            (
                "POST",
                format!("/signaling/dataflows/{id}/terminate"),
                Some(json!({"messageId": "m", "reason": "x"})),
            ),
            (
                "POST",
                format!("/signaling/dataflows/{id}/resume"),
                Some(simple_message()),
            ),
            ("POST", format!("/signaling/dataflows/{id}/completed"), None),
            (
                "POST",
                format!("/signaling/dataflows/{id}/started"),
                Some(simple_message()),
            ),
        ] {
            let (status, answer) =
                send(method, &format!("{base}{path}"), Some(CP1), body.as_ref()).await;
            assert_eq!((status, &answer), (404, &not_found), "{method} {path}");
        }
    }
    let (_, view) = send(
        "GET",
        &format!("{base}/dataflows/{other}"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(view["state"], "STARTED", "p1 changed p2's flow: {view}");

    // Listings show only p1's flows; the admin sees both.
    let (status, list) = send("GET", &format!("{base}/dataflows"), Some(CP1), None).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![own.as_str()]);
    let (_, list) = send(
        "GET",
        &format!("{base}/dataflows?state=STARTED"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(list.as_array().unwrap().len(), 2);

    // On its own flow everything works.
    let (status, body) = send("GET", &format!("{base}/dataflows/{own}"), Some(CP1), None).await;
    assert_eq!((status, body["participantId"].as_str()), (200, Some("p1")));
    let (status, body) = send(
        "GET",
        &format!("{base}/signaling/dataflows/own-1/status"),
        Some(CP1),
        None,
    )
    .await;
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("STARTED")),
        "{body}"
    );
    let (status, body) = send(
        "POST",
        &format!("{base}/signaling/dataflows/{own}/suspend"),
        Some(CP1),
        Some(&json!({"messageId": "m-s", "reason": "pause"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(
        "POST",
        &format!("{base}/signaling/dataflows/own-1/terminate"),
        Some(CP1),
        Some(&json!({"messageId": "m-t", "reason": "done"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, view) = send("GET", &format!("{base}/dataflows/{own}"), Some(ADMIN), None).await;
    assert_eq!(view["state"], "TERMINATED");

    // Datasets, cluster, baseline and KV are the administrator's.
    for (method, path) in [
        ("GET", "/datasets"),
        ("GET", "/datasets/data"),
        ("PUT", "/datasets/mine"),
        ("DELETE", "/datasets/data"),
        ("GET", "/cluster/members"),
        ("GET", "/cluster/leader"),
        ("GET", "/cluster/baseline"),
        ("POST", "/cluster/baseline/deactivate"),
        ("GET", "/cluster/kv"),
        ("PUT", "/cluster/kv/app/x"),
    ] {
        let body = json!({"type": "File", "path": "x", "value": "v", "members": []});
        let (status, answer) = send(method, &format!("{base}{path}"), Some(CP1), Some(&body)).await;
        assert_eq!(status, 403, "{method} {path}: {answer}");
        assert_eq!(answer["code"], "FORBIDDEN");
    }
    let (status, _) = send("GET", &format!("{base}/datasets/mine"), Some(ADMIN), None).await;
    assert_eq!(status, 404);
    let (status, _) = send(
        "GET",
        &format!("{base}/cluster/kv/app/x"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 404);

    // It may register its own control plane, and no other.
    let registration = |id: &str| json!({"controlplaneId": id, "endpoint": "http://192.0.2.1:9/cp", "authorization": {"type": "none"}});
    let (status, body) = send(
        "PUT",
        &format!("{base}/signaling/controlplanes"),
        Some(CP1),
        Some(&registration("p2")),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = send(
        "PUT",
        &format!("{base}/signaling/controlplanes"),
        Some(CP1),
        Some(&registration("p1")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = send(
        "DELETE",
        &format!("{base}/signaling/controlplanes/p2"),
        Some(CP1),
        None,
    )
    .await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_kv_keys_are_refused_even_to_the_admin() {
    let dir = tempfile::tempdir().unwrap();
    let plane = keyed_plane(dir.path()).await;
    let base = &plane.base_url;
    let url = format!("{base}/cluster/kv/dpf/cluster/id");
    let (status, before) = send("GET", &url, Some(ADMIN), None).await;
    assert_eq!(status, 200, "{before}");
    for key in [CP1, ADMIN] {
        let (status, body) = send(
            "PUT",
            &url,
            Some(key),
            Some(&json!({"value": "other-cluster"})),
        )
        .await;
        assert_eq!(status, 403, "{body}");
        let (status, body) = send("DELETE", &url, Some(key), None).await;
        assert_eq!(status, 403, "{body}");
    }
    for path in [
        "dpf/cluster/baseline",
        "dpf/cluster/state",
        "dpf/heartbeat/x",
        "dpf/anything",
    ] {
        let (status, body) = send(
            "PUT",
            &format!("{base}/cluster/kv/{path}"),
            Some(ADMIN),
            Some(&json!({"value": "x"})),
        )
        .await;
        assert_eq!(status, 403, "{path}: {body}");
    }
    let (_, after) = send("GET", &url, Some(ADMIN), None).await;
    assert_eq!(after, before, "dpf/cluster/id changed");

    // Live settings stay writable by the admin, validated.
    let setting = format!("{base}/cluster/kv/dpf/config/checkpoint.bytes");
    let (status, body) = send(
        "PUT",
        &setting,
        Some(ADMIN),
        Some(&json!({"value": "1024"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = send("PUT", &setting, Some(ADMIN), Some(&json!({"value": "-1"}))).await;
    assert_eq!(status, 400);
    let (status, _) = send("PUT", &setting, Some(CP1), Some(&json!({"value": "1"}))).await;
    assert_eq!(status, 403);
    let (status, body) = send("DELETE", &setting, Some(ADMIN), None).await;
    assert_eq!(status, 200, "{body}");
    // Keys outside dpf/ are the application's.
    let (status, _) = send(
        "PUT",
        &format!("{base}/cluster/kv/app/dpf/x"),
        Some(ADMIN),
        Some(&json!({"value": "1"})),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_loopback_bind_needs_a_key_or_an_explicit_opt_out() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(binary("dataplane-launcher"))
        .args([
            "-D",
            "dpf.http.insecure=true",
            "-D",
            "web.http.host=0.0.0.0",
            "-D",
            "web.http.port=0",
            "-D",
            "dpf.store.url=memory:",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success(), "started open on 0.0.0.0");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("dpf.api.auth.key") && stderr.contains("dpf.api.auth.disabled"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&output.stdout).contains("listening"));

    for extra in [
        "dpf.api.auth.disabled=true",
        "dpf.api.auth.key=k3y-for-0.0.0.0",
    ] {
        let plane = Launcher::start(
            "dataplane-launcher",
            &[
                "-D",
                "web.http.host=0.0.0.0",
                "-D",
                "dpf.store.url=memory:",
                "-D",
                extra,
            ],
            &[],
            dir.path(),
        );
        let base = plane.base_url.replace("0.0.0.0", "127.0.0.1");
        let response = reqwest::get(format!("{base}/health")).await.unwrap();
        assert_eq!(response.status(), 200, "{extra}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_key_a_foreign_host_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let plane = Launcher::start(
        "dataplane-launcher",
        &[
            "-D",
            "dpf.store.url=memory:",
            "-D",
            "dpf.public.url=http://dp.example.com:8443/api/v1",
        ],
        &[],
        dir.path(),
    );
    let base = &plane.base_url;
    let port = base.split(':').nth(2).unwrap().split('/').next().unwrap();
    let client = system_tests::client();
    let with_host = |path: &str, host: &str| {
        client
            .request(reqwest::Method::PUT, format!("{base}{path}"))
            .header("host", host)
            .json(&json!({"value": "rebound"}))
            .send()
    };
    for host in [
        "evil.example",
        "evil.example:80",
        "localhost.evil.example",
        "127.0.0.1.nip.io",
    ] {
        let response = with_host("/cluster/kv/app/rebind", host).await.unwrap();
        assert_eq!(response.status(), 403, "{host}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "FORBIDDEN");
    }
    let (status, _) = send("GET", &format!("{base}/cluster/kv/app/rebind"), None, None).await;
    assert_eq!(status, 404, "a refused request wrote");
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        "[::1]".to_owned(),
        "dp.example.com:8443".to_owned(),
    ] {
        let response = with_host("/cluster/kv/app/rebind", &host).await.unwrap();
        assert_eq!(response.status(), 200, "{host}");
    }
    // Liveness stays open for probes, whatever the host.
    let response = client
        .get(format!("{base}/health"))
        .header("host", "10.1.2.3:8282")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// Opens a watch stream; returns the response once its headers arrived.
async fn watch(client: &reqwest::Client, url: &str) -> reqwest::Response {
    client.get(url).send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_are_capped_and_their_slots_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let plane = Launcher::start(
        "dataplane-launcher",
        &[
            "-D",
            "dpf.store.url=memory:",
            "-D",
            "dpf.api.max-watchers=2",
        ],
        &[],
        dir.path(),
    );
    let base = &plane.base_url;
    let kv = format!("{base}/cluster/kv?watch=true&prefix=app/");
    let members = format!("{base}/cluster/members?watch=true");
    let client = system_tests::client();
    let first = watch(&client, &kv).await;
    let second = watch(&client, &members).await;
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    for url in [&kv, &members] {
        let third = watch(&client, url).await;
        assert_eq!(third.status(), 429, "{url}");
        let body: Value = third.json().await.unwrap();
        assert_eq!(body["code"], "TOO_MANY_REQUESTS");
    }
    // Plain listings are not watches.
    let (status, _) = send("GET", &format!("{base}/cluster/members"), None, None).await;
    assert_eq!(status, 200);

    // Closing both streams gives their slots back.
    drop(first);
    drop(second);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut reopened = Vec::new();
    while reopened.len() < 2 {
        let response = watch(&client, if reopened.is_empty() { &kv } else { &members }).await;
        if response.status() == 200 {
            reopened.push(response);
        } else {
            assert_eq!(response.status(), 429);
            assert!(
                tokio::time::Instant::now() < deadline,
                "closed watch streams never gave their slots back"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert_eq!(watch(&client, &kv).await.status(), 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflowing_and_unsatisfiable_ranges_are_416_and_the_process_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let plane = keyed_plane(dir.path()).await;
    let (_, endpoint, token) = start_pull(&plane.base_url, ADMIN, "range-1", "p1").await;
    let client = system_tests::client();
    let get = |range: &'static str| {
        client
            .get(&endpoint)
            .bearer_auth(&token)
            .header("range", range)
            .send()
    };
    for range in [
        "bytes=0-18446744073709551615",
        "bytes=18446744073709551615-",
        "bytes=18446744073709551614-18446744073709551615",
        "bytes=99999999999999999999999999-",
        "bytes=0-99999999999999999999999999",
        "bytes=1000-",
        "bytes=5000-6000",
        "bytes=10-5",
    ] {
        let response = get(range).await.unwrap();
        assert_eq!(response.status(), 416, "{range}");
        assert_eq!(
            response.headers()["content-range"].to_str().unwrap(),
            "bytes */1000",
            "{range}"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "RANGE_NOT_SATISFIABLE", "{range}");
    }
    // A malformed header is a 400, not a crash.
    let response = get("bytes=abc-").await.unwrap();
    assert_eq!(response.status(), 400);

    // Still serving, with the right lengths.
    let response = get("bytes=10-19").await.unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(response.headers()["content-range"], "bytes 10-19/1000");
    assert_eq!(response.headers()["content-length"], "10");
    assert_eq!(response.bytes().await.unwrap().len(), 10);
    let response = get("bytes=990-5000").await.unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(response.headers()["content-range"], "bytes 990-999/1000");
    assert_eq!(response.bytes().await.unwrap().len(), 10);
    let response = client
        .get(&endpoint)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap().len(), 1000);
    assert!(plane.signal_alive());
    assert!(
        !plane.log_text().contains("panicked"),
        "{}",
        plane.log_text()
    );
}
