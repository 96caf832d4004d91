//! End-to-end tests: the real `dpfctl` binary against a real embedded launcher (data plane and
//! selector in one process, in-memory store, a free port).

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

const HTTP_PUSH: &str = "https://w3id.org/dspace-sig/profile/http-push";

/// The embedded launcher binary next to this test's target directory, built when missing.
fn launcher_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    static BUILDING: Mutex<()> = Mutex::new(());
    if let Some(path) = BUILT.get() {
        return path.clone();
    }
    let _guard = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    // …/target/debug/deps/cli-xxxx → …/target/debug/embedded-launcher
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let binary = profile_dir.join(format!("embedded-launcher{}", std::env::consts::EXE_SUFFIX));
    if !binary.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let status = Command::new(cargo)
            .args(["build", "-p", "embedded-launcher"])
            .current_dir(&root)
            .status()
            .unwrap();
        assert!(status.success(), "cargo build -p embedded-launcher failed");
        assert!(
            binary.exists(),
            "{} still missing after the build",
            binary.display()
        );
    }
    BUILT.get_or_init(|| binary).clone()
}

/// A running embedded launcher, killed on drop.
struct Launcher {
    child: Child,
    /// `http://127.0.0.1:PORT/api/v1`
    api: String,
    dir: tempfile::TempDir,
}

impl Launcher {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("launcher.log")).unwrap();
        let mut child = Command::new(launcher_binary())
            .args(["-D", "web.http.port=0", "-D", "dpf.store.url=memory:"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        // Keep draining stdout so the launcher never writes into a closed pipe.
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let api = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|_| {
                let _ = child.kill();
                let log = std::fs::read_to_string(dir.path().join("launcher.log"));
                panic!("the launcher did not say where it listens; its log: {log:?}")
            });
            if let Some(url) = line.strip_prefix("dpf data plane listening on ") {
                break url.trim().to_owned();
            }
        };
        Self { child, api, dir }
    }

    fn selector(&self) -> String {
        format!("{}/selector", self.api)
    }

    /// Runs dpfctl against this launcher.
    fn dpfctl(&self, args: &[&str]) -> Output {
        let mut all = vec!["--dataplane", &self.api, "--selector"];
        let selector = self.selector();
        all.push(&selector);
        all.extend_from_slice(args);
        dpfctl(&all)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dpfctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dpfctl"))
        .args(args)
        .env_remove("DPF_DATAPLANE_URL")
        .env_remove("DPF_SELECTOR_URL")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[track_caller]
fn assert_ok(output: &Output) {
    assert!(
        output.status.success(),
        "dpfctl failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        stdout(output),
        stderr(output)
    );
}

/// `len` pseudo-random bytes (xorshift; no need for a crypto generator here).
fn random_bytes(len: usize, mut seed: u64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        bytes.extend_from_slice(&seed.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

#[test]
fn transfers_a_dataset_with_push_and_with_pull() {
    let launcher = Launcher::start();
    let input = launcher.path("in.bin");
    let data = random_bytes(3 * 1024 * 1024, 0x9E37_79B9_7F4A_7C15);
    std::fs::write(&input, &data).unwrap();

    let put = launcher.dpfctl(&["dataset", "put", "src", "--file", input.to_str().unwrap()]);
    assert_ok(&put);

    let push_out = launcher.path("out.bin");
    let push = launcher.dpfctl(&[
        "transfer",
        "--dataset",
        "src",
        "--to-file",
        push_out.to_str().unwrap(),
    ]);
    assert_ok(&push);
    assert!(stdout(&push).contains("3145728 bytes"), "{}", stdout(&push));
    assert!(
        std::fs::read(&push_out).unwrap() == data,
        "push copy differs"
    );

    let pull_out = launcher.path("pulled.bin");
    let pull = launcher.dpfctl(&[
        "--output",
        "json",
        "transfer",
        "--dataset",
        "src",
        "--to-file",
        pull_out.to_str().unwrap(),
        "--profile",
        "pull",
    ]);
    assert_ok(&pull);
    let report: Value = serde_json::from_slice(&pull.stdout).unwrap();
    assert_eq!(report["state"], "COMPLETED");
    assert_eq!(report["bytes"], 3 * 1024 * 1024);
    assert!(
        std::fs::read(&pull_out).unwrap() == data,
        "pull copy differs"
    );

    let list = launcher.dpfctl(&["flow", "list", "--output", "json"]);
    assert_ok(&list);
    let flows: Value = serde_json::from_slice(&list.stdout).unwrap();
    let flows = flows.as_array().unwrap();
    assert_eq!(flows.len(), 4, "{flows:?}");
    assert!(
        flows.iter().all(|f| f["dpsState"] == "COMPLETED"),
        "{flows:?}"
    );

    let completed = launcher.dpfctl(&["flow", "list", "--state", "COMPLETED"]);
    assert_ok(&completed);
    assert_eq!(
        stdout(&completed).lines().count(),
        5,
        "{}",
        stdout(&completed)
    );

    // A finished flow watched again ends at once.
    let id = flows[0]["id"].as_str().unwrap();
    let watch = launcher.dpfctl(&["flow", "watch", id]);
    assert_ok(&watch);
    assert!(stdout(&watch).contains("COMPLETED"));
}

#[test]
fn select_finds_the_embedded_data_plane() {
    let launcher = Launcher::start();
    let deadline = Instant::now() + Duration::from_secs(10);
    let instance: Value = loop {
        let output = launcher.dpfctl(&["select", "--profile", HTTP_PUSH, "--output", "json"]);
        if output.status.success() {
            break serde_json::from_slice(&output.stdout).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the data plane never registered: {}",
            stderr(&output)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(instance["endpoint"], format!("{}/signaling", launcher.api));

    let list = launcher.dpfctl(&["dataplane", "list", "--output", "json"]);
    assert_ok(&list);
    let list: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(list[0]["id"], instance["id"]);

    let none = launcher.dpfctl(&["select", "--profile", "push", "--label", "nowhere"]);
    assert!(!none.status.success());
    assert!(
        stderr(&none).starts_with("error: no data plane can handle"),
        "{}",
        stderr(&none)
    );
}

#[test]
fn an_unknown_dataset_fails_the_transfer_with_the_api_message() {
    let launcher = Launcher::start();
    let out = launcher.path("never.bin");
    let output = launcher.dpfctl(&[
        "transfer",
        "--dataset",
        "no-such-dataset",
        "--to-file",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("error: ") && err.contains("unknown dataset 'no-such-dataset'"),
        "{err}"
    );
    // The consumer flow that was prepared is not left waiting.
    let list = launcher.dpfctl(&["flow", "list", "--output", "json"]);
    let flows: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert!(
        flows
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["dpsState"] == "TERMINATED"),
        "{flows:?}"
    );
}

#[test]
fn datasets_can_be_put_listed_read_and_deleted() {
    let launcher = Launcher::start();
    assert_ok(&launcher.dpfctl(&[
        "dataset",
        "put",
        "web",
        "--http",
        "http://example.invalid/data",
    ]));
    let get = launcher.dpfctl(&["dataset", "get", "web", "--output", "json"]);
    assert_ok(&get);
    let dataset: Value = serde_json::from_slice(&get.stdout).unwrap();
    assert_eq!(dataset["type"], "HttpData");
    assert_eq!(dataset["baseUrl"], "http://example.invalid/data");

    let list = launcher.dpfctl(&["dataset", "list"]);
    assert_ok(&list);
    assert!(stdout(&list).contains("http://example.invalid/data"));

    assert_ok(&launcher.dpfctl(&["dataset", "delete", "web"]));
    let gone = launcher.dpfctl(&["dataset", "get", "web"]);
    assert_eq!(gone.status.code(), Some(1));
    assert_eq!(stderr(&gone).trim(), "error: dataset 'web' not found");
}

#[test]
fn an_unreachable_api_is_named() {
    let output = dpfctl(&[
        "--dataplane",
        "http://127.0.0.1:1/api/v1",
        "dataset",
        "list",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).starts_with("error: cannot reach http://127.0.0.1:1/api/v1/datasets"),
        "{}",
        stderr(&output)
    );
    let output = dpfctl(&[
        "--selector",
        "http://127.0.0.1:1/api/v1",
        "dataplane",
        "list",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("http://127.0.0.1:1/api/v1"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn help_lists_the_commands() {
    let output = dpfctl(&["--help"]);
    assert_ok(&output);
    let help = stdout(&output);
    for command in ["dataset", "dataplane", "select", "flow", "transfer"] {
        assert!(help.contains(command), "{help}");
    }
}
