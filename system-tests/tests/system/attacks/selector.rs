//! Attacks: selector (see docs/security.md, "The selector").
//!
//! A standalone selector serving HTTPS (a CA and a certificate generated here) with an API key;
//! data-plane replicas register with it over HTTPS with the key, a replica with a wrong key is
//! refused, an unauthenticated network client can change nothing, no answer carries a
//! registration's credential, and a selector without TLS refuses to start.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use system_tests::Launcher;

const KEY: &str = "selector-attacks-key-9f3c";
const WRONG_KEY: &str = "not-the-selector-key-41d7";

fn flags(pairs: &[String]) -> Vec<String> {
    pairs
        .iter()
        .flat_map(|pair| ["-D".to_owned(), pair.clone()])
        .collect()
}

async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    key: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut request = client.request(method, url);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn listed_ids(client: &reqwest::Client, selector: &str) -> Vec<String> {
    let (status, body) = send(
        client,
        reqwest::Method::GET,
        &format!("{selector}/dataplanes"),
        Some(KEY),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body.as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Starts a data-plane replica named `name` serving HTTPS that registers with `selector`
/// presenting `key`.
fn replica(name: &str, selector: &str, key: &str, dir: &Path) -> Launcher {
    let path = |file: &str| dir.join(file).display().to_string();
    let replica_dir = dir.join(name);
    std::fs::create_dir_all(&replica_dir).unwrap();
    let args = flags(&[
        format!("edc.runtime.id={name}"),
        "dpf.store.url=memory:".to_owned(),
        format!("dpf.tls.cert={}", path("cert.pem")),
        format!("dpf.tls.key={}", path("key.pem")),
        format!("dpf.tls.ca={}", path("ca.pem")),
        // HTTPS everywhere: the harness relaxation is lifted.
        "dpf.http.insecure=false".to_owned(),
        format!("edc.dpf.selector.url={selector}"),
        format!("edc.dpf.selector.api-key={key}"),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Launcher::start("dataplane-launcher", &args, &[], &replica_dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_protected_https_selector_registers_replicas_with_the_key_and_no_one_else() {
    let _serial = system_tests::serial().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = system_tests::write_test_pki(dir.path());
    let path = |file: &str| dir.path().join(file).display().to_string();
    let selector_dir = dir.path().join("selector");
    std::fs::create_dir_all(&selector_dir).unwrap();
    let args = flags(&[
        format!("dpf.tls.cert={}", path("cert.pem")),
        format!("dpf.tls.key={}", path("key.pem")),
        format!("edc.dpf.selector.api-key={KEY}"),
        "dpf.store.url=memory:".to_owned(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // No relaxation: the selector's own defaults.
    let selector = Launcher::start_strict("selector-launcher", &args, &[], &selector_dir);
    let base = selector.base_url.clone();
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .build()
        .unwrap();
    // Plain HTTP gets nowhere.
    let plain = system_tests::client()
        .get(base.replace("https://", "http://") + "/health")
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());

    // Open: health. An instance the attacker would like to remove.
    let (status, _) = send(
        &client,
        reqwest::Method::GET,
        &format!("{base}/health"),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let victim = json!({"dataplaneId": "health", "endpoint": "https://victim.example/api/v1/signaling",
        "profiles": [system_tests::PUSH], "authorization": {"type": "none"}});
    let (status, body) = send(
        &client,
        reqwest::Method::PUT,
        &format!("{base}/dataplanes"),
        Some(KEY),
        Some(&victim),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // An unauthenticated (or wrongly authenticated) network client changes nothing.
    let intruder = json!({"dataplaneId": "intruder", "endpoint": "https://evil.example/api/v1/signaling",
        "profiles": [system_tests::PUSH], "authorization": {"type": "none"}});
    for key in [None, Some(WRONG_KEY)] {
        for (method, path, body) in [
            (reqwest::Method::PUT, "/dataplanes", Some(&intruder)),
            (reqwest::Method::POST, "/dataplanes", Some(&intruder)),
            (reqwest::Method::DELETE, "/dataplanes/health", None),
            (reqwest::Method::GET, "/dataplanes", None),
            (reqwest::Method::GET, "/dataplanes/health", None),
            (
                reqwest::Method::POST,
                "/dataplanes/select",
                Some(&json!({"profile": system_tests::PUSH})),
            ),
        ] {
            let (status, answer) =
                send(&client, method.clone(), &format!("{base}{path}"), key, body).await;
            assert_eq!(status, 401, "{method} {path} with {key:?}: {answer}");
            assert_eq!(answer["code"], "UNAUTHORIZED", "{answer}");
        }
    }
    assert_eq!(listed_ids(&client, &base).await, vec!["health"]);

    // A replica with the key registers itself over HTTPS (trusting the CA via dpf.tls.ca); one
    // with a wrong key does not.
    let good = replica("good", &base, KEY, dir.path());
    let bad = replica("bad", &base, WRONG_KEY, dir.path());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ids = listed_ids(&client, &base).await;
        let refused = bad.log_text().contains("cannot register with the selector");
        if ids.contains(&"good".to_owned()) && refused {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{ids:?}\ngood: {}\nbad: {}",
            good.log_text(),
            bad.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, instance) = send(
        &client,
        reqwest::Method::GET,
        &format!("{base}/dataplanes/good"),
        Some(KEY),
        None,
    )
    .await;
    assert_eq!(status, 200, "{instance}");
    assert_eq!(
        instance["endpoint"],
        format!("{}/signaling", good.base_url),
        "{instance}"
    );
    assert!(good.base_url.starts_with("https://"), "{}", good.base_url);
    assert!(
        good.log_text().contains("registered with the selector"),
        "{}",
        good.log_text()
    );
    let bad_log = bad.log_text();
    assert!(bad_log.contains("401"), "{bad_log}");
    assert_eq!(listed_ids(&client, &base).await, vec!["good", "health"]);
    // Keys never reach the logs.
    for log in [good.log_text(), bad_log, selector.log_text()] {
        assert!(!log.contains(KEY) && !log.contains(WRONG_KEY), "{log}");
    }

    // A registration's credential is kept by the selector but never shown.
    let secret = json!({"dataplaneId": "oauth", "endpoint": "https://oauth.example/api/v1/signaling",
        "profiles": ["secret-profile"], "authorization": {"type": "oauth2_client_credentials",
        "tokenEndpoint": "https://auth.example/token", "clientId": "cid", "clientSecret": "TOP-SECRET-CS"}});
    let mut answers = Vec::new();
    for (method, path, body) in [
        (reqwest::Method::PUT, "/dataplanes", Some(&secret)),
        (reqwest::Method::GET, "/dataplanes", None),
        (reqwest::Method::GET, "/dataplanes/oauth", None),
        (
            reqwest::Method::POST,
            "/dataplanes/select",
            Some(&json!({"profile": "secret-profile"})),
        ),
    ] {
        let (status, answer) = send(
            &client,
            method.clone(),
            &format!("{base}{path}"),
            Some(KEY),
            body,
        )
        .await;
        assert_eq!(status, 200, "{method} {path}: {answer}");
        answers.push(answer);
    }
    for answer in &answers {
        let text = answer.to_string();
        assert!(
            !text.contains("TOP-SECRET-CS") && !text.contains("clientSecret"),
            "{text}"
        );
        assert!(text.contains("\"clientId\":\"cid\""), "{text}");
    }
}

#[test]
fn a_selector_without_tls_refuses_to_serve_plain_http() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(system_tests::binary("selector-launcher"))
        .args([
            "-D",
            "web.http.port=0",
            "-D",
            "dpf.store.url=memory:",
            "-D",
            &format!("edc.dpf.selector.api-key={KEY}"),
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("refusing to serve plain HTTP"), "{stderr}");
    assert!(stderr.contains("dpf.http.insecure=true"), "{stderr}");
    assert!(!stderr.contains(KEY), "{stderr}");
    assert!(String::from_utf8_lossy(&output.stdout).is_empty());
}
