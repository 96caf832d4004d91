//! Runs the real `selector-launcher` binary: start on port 0, health, seeding from a
//! properties file and from the environment, refusal of bad configuration.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// A running launcher, killed on drop.
struct Launcher {
    child: Child,
    base_url: String,
}

impl Drop for Launcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(args: &[&str], envs: &[(&str, &str)], dir: &Path) -> Launcher {
    // Plain HTTP on loopback, as in development (tests of TLS pass their own flags).
    let mut child = Command::new(env!("CARGO_BIN_EXE_selector-launcher"))
        .args(["-D", "dpf.http.insecure=true"])
        .args(args)
        .args(["-D", "web.http.port=0"])
        .envs(envs.iter().copied())
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("launcher starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("launcher prints its address");
    let base_url = line
        .trim()
        .strip_prefix("dpf selector listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_owned();
    Launcher { child, base_url }
}

async fn get_json(url: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn starts_with_no_configuration_and_answers_health() {
    let dir = tempfile::tempdir().unwrap();
    let launcher = start(&[], &[], dir.path());
    let (status, body) = get_json(&format!("{}/health", launcher.base_url)).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "UP");
}

#[tokio::test]
async fn seeds_instances_from_a_properties_file_and_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("selector.properties");
    std::fs::write(
        &file,
        "# two data planes\n\
         edc.dpf.selector.pod1.url=http://pod1.example:8080/api/v1/signaling\n\
         edc.dpf.selector.pod1.profiles=https://w3id.org/dspace-sig/profile/http-push\n\
         edc.dpf.selector.pod1.labels=eu\n\
         edc.dpf.selector.pod2.url=http://pod2.example:8080/api/v1/signaling\n\
         edc.dpf.selector.pod2.someOtherProperty=42\n\
         edc.dpf.selector.strategy=round-robin\n",
    )
    .unwrap();
    let config = file.to_str().unwrap();
    let launcher = start(
        &["--config", config],
        &[(
            "EDC_DPF_SELECTOR_POD2_URL",
            "http://pod2-from-env.example:9090/",
        )],
        dir.path(),
    );
    let (status, body) = get_json(&format!("{}/dataplanes", launcher.base_url)).await;
    assert_eq!(status, 200);
    let instances = body.as_array().unwrap();
    assert_eq!(instances.len(), 2, "{body}");
    assert_eq!(instances[0]["id"], "pod1");
    assert_eq!(instances[0]["labels"], serde_json::json!(["eu"]));
    assert_eq!(instances[1]["id"], "pod2");
    // The environment overrides the file, key for key.
    assert_eq!(
        instances[1]["endpoint"],
        "http://pod2-from-env.example:9090/"
    );
    assert_eq!(instances[1]["properties"]["someOtherProperty"], "42");
    let (_, strategies) = get_json(&format!("{}/strategies", launcher.base_url)).await;
    assert_eq!(strategies["default"], "round-robin");
}

/// Kubernetes-style configuration: the selector's own key and the seeds come from the
/// environment alone. `EDC_DPF_SELECTOR_API_KEY` is a setting, not an instance called `api`;
/// seed properties match without regard to case and `_` (`SOURCE_TYPES` is `sourceTypes`),
/// and an alias with `_` keeps it.
#[tokio::test]
async fn seeds_and_the_api_key_from_the_environment_alone() {
    let dir = tempfile::tempdir().unwrap();
    let launcher = start(
        &[],
        &[
            ("DPF_STORE_URL", "memory:"),
            ("EDC_DPF_SELECTOR_API_KEY", "env-selector-key"),
            ("EDC_DPF_SELECTOR_STRATEGY", "round-robin"),
            (
                "EDC_DPF_SELECTOR_POD_A_URL",
                "http://pod-a.example:8080/api/v1/signaling",
            ),
            ("EDC_DPF_SELECTOR_POD_A_SOURCE_TYPES", "HttpData,File"),
            ("EDC_DPF_SELECTOR_POD_A_LABELS", "eu"),
        ],
        dir.path(),
    );
    let response = reqwest::Client::new()
        .get(format!("{}/dataplanes", launcher.base_url))
        .bearer_auth("env-selector-key")
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.unwrap();
    let instances = body.as_array().unwrap();
    assert_eq!(instances.len(), 1, "{body}");
    assert_eq!(instances[0]["id"], "pod_a", "{body}");
    assert_eq!(
        instances[0]["endpoint"],
        "http://pod-a.example:8080/api/v1/signaling"
    );
    assert_eq!(
        instances[0]["allowedSourceTypes"],
        serde_json::json!(["HttpData", "File"]),
        "{body}"
    );
    assert_eq!(instances[0]["labels"], serde_json::json!(["eu"]));
    let (status, _) = get_json(&format!("{}/dataplanes", launcher.base_url)).await;
    assert_eq!(status, 401);
}

#[test]
fn refuses_an_unknown_default_strategy_and_a_bad_seed() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, expected) in [
        (
            "edc.dpf.selector.strategy=fastest",
            "unknown selection strategy 'fastest'",
        ),
        (
            "edc.dpf.selector.pod1.url=not-a-url",
            "edc.dpf.selector.pod1",
        ),
        ("web.http.port=eighty", "web.http.port"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_selector-launcher"))
            .args(["-D", "dpf.http.insecure=true", "-D", flag])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(!output.status.success(), "{flag} should be refused");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "stderr for {flag}: {stderr}");
    }
}

#[test]
fn dump_config_shows_every_layer() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_selector-launcher"))
        .args(["--dump-config", "-D", "web.http.port=9999"])
        .env("EDC_DPF_SELECTOR_STRATEGY", "oldest-next")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("web.http.port=9999  # flag"), "{stdout}");
    assert!(
        stdout.contains("edc.dpf.selector.strategy=oldest-next  # env"),
        "{stdout}"
    );
    assert!(
        stdout.contains("web.http.host=127.0.0.1  # default"),
        "{stdout}"
    );
}

async fn post_json(url: &str, method: reqwest::Method, body: &Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .request(method, url)
        .json(body)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn two_aliases(dir: &Path) -> String {
    let file = dir.join("seed.properties");
    std::fs::write(
        &file,
        "edc.dpf.selector.pod1.url=http://pod1.example:8080/api/v1/signaling\n\
         edc.dpf.selector.pod2.url=http://pod2.example:8080/api/v1/signaling\n",
    )
    .unwrap();
    file.to_str().unwrap().to_owned()
}

#[tokio::test]
async fn default_sqlite_store_keeps_instances_across_restarts_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let config = two_aliases(dir.path());
    {
        let launcher = start(&["--config", &config], &[], dir.path());
        let select = serde_json::json!({"profile": "any", "strategy": "round-robin"});
        let (status, _) = post_json(
            &format!("{}/dataplanes/select", launcher.base_url),
            reqwest::Method::POST,
            &select,
        )
        .await;
        assert_eq!(status, 200);
        let extra = serde_json::json!({"dataplaneId": "registered", "endpoint": "http://r:1/", "profiles": [], "authorization": {"type": "none"}});
        let (status, _) = post_json(
            &format!("{}/dataplanes", launcher.base_url),
            reqwest::Method::PUT,
            &extra,
        )
        .await;
        assert_eq!(status, 200);
    }
    assert!(
        dir.path().join("dpf-data/dpf.db").exists(),
        "default store is ./dpf-data/dpf.db"
    );
    let launcher = start(&["--config", &config], &[], dir.path());
    let (_, body) = get_json(&format!("{}/dataplanes", launcher.base_url)).await;
    let ids: Vec<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["pod1", "pod2", "registered"]);
    let turns: u64 = body
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["turnCount"].as_u64().unwrap())
        .sum();
    assert_eq!(
        turns, 1,
        "selection statistics survive the restart and re-seeding"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_selector_processes_on_one_postgres_share_the_rotation() {
    let database = tokio::task::spawn_blocking(test_utils::postgres_database)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = format!("dpf.store.url={}", database.url());
    let first = start(&["-D", &store], &[], dir.path());
    let second = start(&["-D", &store], &[], dir.path());
    for id in ["dp-1", "dp-2", "dp-3"] {
        let body = serde_json::json!({"dataplaneId": id, "endpoint": format!("http://{id}:8080/"), "profiles": ["push"], "authorization": {"type": "none"}});
        let (status, _) = post_json(
            &format!("{}/dataplanes", first.base_url),
            reqwest::Method::PUT,
            &body,
        )
        .await;
        assert_eq!(status, 200);
    }
    let select = serde_json::json!({"profile": "push", "strategy": "round-robin"});
    let mut counts = std::collections::BTreeMap::<String, u32>::new();
    for i in 0..300 {
        let base = if i % 2 == 0 {
            &first.base_url
        } else {
            &second.base_url
        };
        let (status, chosen) = post_json(
            &format!("{base}/dataplanes/select"),
            reqwest::Method::POST,
            &select,
        )
        .await;
        assert_eq!(status, 200, "{chosen}");
        *counts
            .entry(chosen["id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(
        counts.values().copied().collect::<Vec<_>>(),
        vec![100, 100, 100],
        "{counts:?}"
    );
}

#[test]
fn migrate_subcommand_prepares_the_store_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_selector-launcher"))
        .args(["-D", "dpf.store.url=sqlite:./state/selector.db", "migrate"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("up to date"));
    assert!(dir.path().join("state/selector.db").exists());
}

#[test]
fn an_unreachable_postgres_is_a_clear_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let port = test_utils::free_port();
    let output = Command::new(env!("CARGO_BIN_EXE_selector-launcher"))
        .args([
            "-D",
            "dpf.http.insecure=true",
            "-D",
            &format!("dpf.store.url=postgres://dpf:secret@127.0.0.1:{port}/dpf"),
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot open the store postgres://dpf"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("secret"),
        "the password must not be printed: {stderr}"
    );
}

/// Runs the launcher to completion (it is expected to refuse to start); returns its stderr.
fn refused(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_selector-launcher"))
        .args(["-D", "web.http.port=0", "-D", "dpf.store.url=memory:"])
        .args(args)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "{args:?} should be refused: {stderr}"
    );
    stderr
}

#[test]
fn plain_http_needs_the_explicit_insecure_setting() {
    let stderr = refused(&[]);
    assert!(stderr.contains("refusing to serve plain HTTP"), "{stderr}");
    assert!(stderr.contains("dpf.tls.cert"), "{stderr}");
    assert!(stderr.contains("dpf.http.insecure=true"), "{stderr}");
    // Half a TLS configuration is an error too, not plain HTTP.
    let stderr = refused(&["-D", "dpf.tls.cert=/nonexistent/cert.pem"]);
    assert!(stderr.contains("go together"), "{stderr}");
}

#[tokio::test]
async fn an_open_api_on_a_non_loopback_address_needs_auth_disabled() {
    let stderr = refused(&[
        "-D",
        "dpf.http.insecure=true",
        "-D",
        "web.http.host=0.0.0.0",
    ]);
    assert!(stderr.contains("without an API key"), "{stderr}");
    assert!(stderr.contains("edc.dpf.selector.api-key"), "{stderr}");
    assert!(stderr.contains("dpf.api.auth.disabled=true"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    for extra in [
        "dpf.api.auth.disabled=true",
        "edc.dpf.selector.api-key=k",
        "dpf.api.auth.key=k",
    ] {
        let launcher = start(
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
        let port = launcher.base_url.rsplit(':').next().unwrap().to_owned();
        let (status, _) = get_json(&format!("http://127.0.0.1:{port}/health")).await;
        assert_eq!(status, 200, "{extra}");
    }
}

#[tokio::test]
async fn edc_dpf_selector_api_key_protects_the_api_and_wins_over_dpf_api_auth_key() {
    let dir = tempfile::tempdir().unwrap();
    let launcher = start(
        &[
            "-D",
            "dpf.store.url=memory:",
            "-D",
            "edc.dpf.selector.api-key=selector-key",
            "-D",
            "dpf.api.auth.key=other-key",
        ],
        &[],
        dir.path(),
    );
    let status = |key: Option<&'static str>, path: &'static str| {
        let url = format!("{}{path}", launcher.base_url);
        async move {
            let mut request = reqwest::Client::new().get(url);
            if let Some(key) = key {
                request = request.bearer_auth(key);
            }
            request.send().await.unwrap().status().as_u16()
        }
    };
    assert_eq!(status(None, "/health").await, 200);
    assert_eq!(status(None, "/openapi.json").await, 200);
    assert_eq!(status(None, "/dataplanes").await, 401);
    assert_eq!(status(None, "/dataplanes/health").await, 401);
    assert_eq!(status(Some("other-key"), "/dataplanes").await, 401);
    assert_eq!(status(Some("selector-key"), "/dataplanes").await, 200);
}

#[tokio::test]
async fn without_a_key_only_loopback_host_names_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let launcher = start(&["-D", "dpf.store.url=memory:"], &[], dir.path());
    let status = |host: &'static str, path: &'static str| {
        let url = format!("{}{path}", launcher.base_url);
        async move {
            reqwest::Client::new()
                .get(url)
                .header("host", host)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // A DNS-rebinding page names its own host: refused, but health stays open.
    assert_eq!(status("evil.example", "/dataplanes").await, 403);
    assert_eq!(status("evil.example:8181", "/strategies").await, 403);
    assert_eq!(status("evil.example", "/health").await, 200);
    assert_eq!(status("localhost:8181", "/dataplanes").await, 200);
    assert_eq!(status("127.0.0.1", "/dataplanes").await, 200);
}
