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
    let mut child = Command::new(env!("CARGO_BIN_EXE_selector-launcher"))
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
            .args(["-D", flag])
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
