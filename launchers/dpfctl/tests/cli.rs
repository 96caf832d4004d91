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
            // The tests name files in their own temporary directories and sinks on loopback.
            .args(["-D", "dpf.transfer.denied-networks="])
            .arg("-D")
            .arg(format!(
                "dpf.transfer.file.root={}",
                std::env::temp_dir().display()
            ))
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
    assert_eq!(output.status.code(), Some(3));
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
    assert_eq!(gone.status.code(), Some(3));
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

/// A dpfctl that keeps running (a watch), killed on drop; its stdout lines arrive on `lines`.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    /// The next `count` lines, or a panic after `within`.
    fn lines(&mut self, count: usize, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut lines = Vec::new();
        while lines.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => lines.push(line),
                Err(_) => {
                    let err = self.stop();
                    panic!("got only {lines:?} in {within:?}; stderr: {err}");
                }
            }
        }
        lines
    }

    /// Kills it; returns what it wrote on stderr.
    fn stop(&mut self) -> String {
        use std::io::Read;
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut err = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            let _ = stderr.read_to_string(&mut err);
        }
        err
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Launcher {
    /// Starts dpfctl against this launcher without waiting for it to end.
    fn spawn_dpfctl(&self, args: &[&str]) -> Running {
        self.spawn_dpfctl_at(&self.api, args)
    }

    /// [`Launcher::spawn_dpfctl`] with another data-plane URL (a proxy in front of this one).
    fn spawn_dpfctl_at(&self, dataplane: &str, args: &[&str]) -> Running {
        let selector = self.selector();
        let mut child = Command::new(env!("CARGO_BIN_EXE_dpfctl"))
            .args(["--dataplane", dataplane, "--selector", &selector])
            .args(args)
            .env_remove("DPF_DATAPLANE_URL")
            .env_remove("DPF_SELECTOR_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running { child, lines }
    }

    /// `dpfctl --output json ARGS…` parsed, asserting success.
    fn dpfctl_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        let output = self.dpfctl(&all);
        assert_ok(&output);
        serde_json::from_slice(&output.stdout).unwrap()
    }
}

#[test]
fn cluster_kv_keys_can_be_put_read_listed_and_deleted() {
    let launcher = Launcher::start();
    let key = "app/blue?green#1%/x+y";

    let put = launcher.dpfctl(&[
        "cluster",
        "kv",
        "put",
        key,
        "one",
        "--expected-version",
        "0",
    ]);
    assert_ok(&put);
    assert!(stdout(&put).contains("version 1"), "{}", stdout(&put));
    assert_ok(&launcher.dpfctl(&["cluster", "kv", "put", "app/mode", "-dark"]));

    let entry = launcher.dpfctl_json(&["cluster", "kv", "get", key]);
    assert_eq!(entry["key"], key);
    assert_eq!(entry["value"], "one");
    assert_eq!(entry["version"], 1);

    // Compare-and-set: the right version wins, a wrong one is a conflict and changes nothing.
    assert_ok(&launcher.dpfctl(&[
        "cluster",
        "kv",
        "put",
        key,
        "two",
        "--expected-version",
        "1",
    ]));
    for args in [
        vec![
            "cluster",
            "kv",
            "put",
            key,
            "three",
            "--expected-version",
            "1",
        ],
        vec![
            "cluster",
            "kv",
            "put",
            key,
            "three",
            "--expected-version",
            "0",
        ],
        vec!["cluster", "kv", "delete", key, "--expected-version", "7"],
    ] {
        let conflict = launcher.dpfctl(&args);
        assert_eq!(conflict.status.code(), Some(1), "{args:?}");
        let err = stderr(&conflict);
        assert!(
            err.starts_with("error: version conflict on 'app/blue?green#1%/x+y'"),
            "{err}"
        );
    }
    let get = launcher.dpfctl(&["cluster", "kv", "get", key]);
    assert_ok(&get);
    assert!(stdout(&get).contains("two"), "{}", stdout(&get));

    let listing = launcher.dpfctl_json(&["cluster", "kv", "list", "--prefix", "app/"]);
    let keys: Vec<&str> = listing["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, [key, "app/mode"]);
    assert!(listing["revision"].as_i64().unwrap() >= 3, "{listing}");
    let list = launcher.dpfctl(&["cluster", "kv", "list", "--prefix", "app/"]);
    assert_ok(&list);
    let text = stdout(&list);
    assert!(text.starts_with("KEY"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("app/mode") && l.ends_with("-dark")),
        "{text}"
    );

    assert_ok(&launcher.dpfctl(&["cluster", "kv", "delete", key, "--expected-version", "2"]));
    let gone = launcher.dpfctl(&["cluster", "kv", "get", key]);
    assert_eq!(gone.status.code(), Some(3));
    assert_eq!(
        stderr(&gone).trim(),
        "error: key 'app/blue?green#1%/x+y' not found"
    );
    let listing = launcher.dpfctl_json(&["cluster", "kv", "list", "--prefix", "app/"]);
    assert_eq!(listing["entries"].as_array().unwrap().len(), 1, "{listing}");
}

#[test]
fn cluster_settings_are_validated_and_applied_by_the_replica() {
    let launcher = Launcher::start();
    let bad = launcher.dpfctl(&[
        "cluster",
        "config",
        "set",
        "dataplane.max-concurrent-flows",
        "abc",
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert_eq!(
        stderr(&bad).trim(),
        "error: dpf/config/dataplane.max-concurrent-flows takes a non-negative integer, got 'abc'"
    );

    let set = launcher.dpfctl_json(&[
        "cluster",
        "config",
        "set",
        "dataplane.max-concurrent-flows",
        "3",
    ]);
    let revision = set["modRevision"].as_i64().unwrap();
    let get = launcher.dpfctl(&["cluster", "config", "get", "dataplane.max-concurrent-flows"]);
    assert_ok(&get);
    assert_eq!(stdout(&get).trim(), "3");
    let list = launcher.dpfctl(&["cluster", "config", "list"]);
    assert_ok(&list);
    assert!(
        stdout(&list)
            .lines()
            .any(|l| l.starts_with("dataplane.max-concurrent-flows") && l.ends_with(" 3")),
        "{}",
        stdout(&list)
    );

    // The replica applies it and says so in the member list.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let members = launcher.dpfctl_json(&["cluster", "members"]);
        let applied = members
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "dataplane")
            .and_then(|m| m["configRevision"].as_i64());
        if applied.is_some_and(|r| r >= revision) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replica never applied revision {revision}: {members}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let table = launcher.dpfctl(&["cluster", "members"]);
    assert_ok(&table);
    let text = stdout(&table);
    assert!(
        text.starts_with("NAME") && text.contains("CONFIG-REVISION"),
        "{text}"
    );
    let row = text.lines().find(|l| l.starts_with("dataplane")).unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert!(cells[2].parse::<i64>().unwrap() >= revision, "{text}");

    let unset = launcher.dpfctl(&[
        "cluster",
        "config",
        "unset",
        "dataplane.max-concurrent-flows",
    ]);
    assert_ok(&unset);
    let gone = launcher.dpfctl(&["cluster", "config", "get", "dataplane.max-concurrent-flows"]);
    assert_eq!(gone.status.code(), Some(3));
    assert!(stderr(&gone).contains("is not set"), "{}", stderr(&gone));
}

#[test]
fn cluster_leader_and_members_name_the_embedded_replica() {
    let launcher = Launcher::start();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let output = launcher.dpfctl(&["cluster", "leader"]);
        if output.status.success() {
            assert!(
                stdout(&output).starts_with("dataplane  term "),
                "{}",
                stdout(&output)
            );
            break;
        }
        assert_eq!(output.status.code(), Some(1));
        assert_eq!(stderr(&output).trim(), "error: no leader right now");
        assert!(Instant::now() < deadline, "no leader was ever elected");
        std::thread::sleep(Duration::from_millis(100));
    }
    let leader = launcher.dpfctl_json(&["cluster", "leader"]);
    assert_eq!(leader["leader"], "dataplane");
    assert!(leader["term"].as_i64().unwrap() >= 1, "{leader}");

    let mut watch = launcher.spawn_dpfctl(&["cluster", "members", "--watch"]);
    let lines = watch.lines(1, Duration::from_secs(10));
    assert!(lines[0].starts_with("join   dataplane  "), "{lines:?}");
}

#[test]
fn cluster_kv_watch_prints_every_change_in_order() {
    let launcher = Launcher::start();
    for i in 1..=3 {
        assert_ok(&launcher.dpfctl(&["cluster", "kv", "put", &format!("w/{i}"), &format!("v{i}")]));
    }
    // Outside the prefix: not shown.
    assert_ok(&launcher.dpfctl(&["cluster", "kv", "put", "other", "x"]));
    let mut watch = launcher.spawn_dpfctl(&[
        "cluster",
        "kv",
        "watch",
        "--prefix",
        "w/",
        "--from-revision",
        "0",
    ]);
    let first = watch.lines(3, Duration::from_secs(15));
    assert_ok(&launcher.dpfctl(&["cluster", "kv", "put", "w/2", "v2b"]));
    assert_ok(&launcher.dpfctl(&["cluster", "kv", "delete", "w/1"]));
    let later = watch.lines(2, Duration::from_secs(15));

    let lines: Vec<String> = first.into_iter().chain(later).collect();
    let events: Vec<(i64, String)> = lines
        .iter()
        .map(|line| {
            let (revision, rest) = line.split_once(' ').unwrap();
            (revision.parse().unwrap(), rest.to_owned())
        })
        .collect();
    let texts: Vec<&str> = events.iter().map(|(_, text)| text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "PUT w/1 v1",
            "PUT w/2 v2",
            "PUT w/3 v3",
            "PUT w/2 v2b",
            "DELETE w/1 v1"
        ],
        "{lines:?}"
    );
    assert!(
        events.windows(2).all(|pair| pair[0].0 < pair[1].0),
        "revisions not increasing: {lines:?}"
    );
}

#[test]
fn cluster_kv_watch_fails_at_once_without_a_data_plane() {
    // Reconnecting is for interruptions: a data plane that never answered fails the watch.
    let output = dpfctl(&[
        "--dataplane",
        "http://127.0.0.1:1/api/v1",
        "cluster",
        "kv",
        "watch",
        "--from-revision",
        "0",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).starts_with("error: cannot reach http://127.0.0.1:1/api/v1/cluster/kv"),
        "{}",
        stderr(&output)
    );
}

/// A TCP proxy in front of a launcher that can cut every open connection.
struct Proxy {
    /// `http://127.0.0.1:PORT/api/v1`, through the proxy.
    api: String,
    open: std::sync::Arc<Mutex<Vec<std::net::TcpStream>>>,
}

impl Proxy {
    fn start(launcher: &Launcher) -> Self {
        let upstream: std::net::SocketAddr = launcher
            .api
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let api = format!("http://{}/api/v1", listener.local_addr().unwrap());
        let open = std::sync::Arc::new(Mutex::new(Vec::new()));
        let registry = open.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let Ok(server) = std::net::TcpStream::connect(upstream) else {
                    continue;
                };
                let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                if let Ok(mut open) = registry.lock() {
                    open.extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                }
                for (mut from, mut to) in [(client, s2), (server, c2)] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Self { api, open }
    }

    /// Closes every connection made so far.
    fn cut(&self) {
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

#[test]
fn cluster_kv_watch_resumes_after_disconnections_without_losing_or_repeating() {
    let launcher = Launcher::start();
    let proxy = Proxy::start(&launcher);
    let put = |key: &str, value: &str| {
        assert_ok(&launcher.dpfctl(&["cluster", "kv", "put", key, value]));
    };
    let mut watch = launcher.spawn_dpfctl_at(
        &proxy.api,
        &[
            "cluster",
            "kv",
            "watch",
            "--prefix",
            "r/",
            "--from-revision",
            "0",
        ],
    );
    put("r/a", "1");
    put("r/b", "2");
    let mut lines = watch.lines(2, Duration::from_secs(15));
    proxy.cut();
    put("r/a", "3");
    put("r/c", "4");
    lines.extend(watch.lines(2, Duration::from_secs(15)));
    proxy.cut();
    proxy.cut();
    put("r/b", "5");
    lines.extend(watch.lines(1, Duration::from_secs(15)));
    let texts: Vec<&str> = lines.iter().map(|l| l.split_once(' ').unwrap().1).collect();
    assert_eq!(
        texts,
        [
            "PUT r/a 1",
            "PUT r/b 2",
            "PUT r/a 3",
            "PUT r/c 4",
            "PUT r/b 5"
        ],
        "{lines:?}"
    );
    // Nothing is printed twice.
    assert!(
        watch
            .lines
            .recv_timeout(Duration::from_millis(1500))
            .is_err(),
        "{lines:?}"
    );
    let err = watch.stop();
    assert!(err.contains("reconnecting from revision"), "{err}");
}

/// An HTTP server that answers every request with `status`, then `body`; its API base URL.
fn canned_server(status: &str, content_type: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let api = format!("http://{}/api/v1", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut request = Vec::new();
            let mut buf = [0_u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let _ = stream.write_all(response.as_bytes());
        }
    });
    api
}

#[test]
fn cluster_kv_watch_exits_4_when_its_changes_were_compacted() {
    let in_stream = canned_server(
        "200 OK",
        "text/event-stream",
        "id: 12\nevent: PUT\ndata: {\"revision\":12,\"kind\":\"PUT\",\"key\":\"k\",\"value\":\"v\",\"version\":1}\n\n\
         event: compacted\ndata: {\"compacted\":20}\n\n",
    );
    let output = dpfctl(&[
        "--dataplane",
        &in_stream,
        "cluster",
        "kv",
        "watch",
        "--from-revision",
        "3",
    ]);
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert_eq!(stdout(&output), "12 PUT k v\n");
    let err = stderr(&output);
    assert!(
        err.starts_with("error: the changes after revision 12 were compacted away")
            && err.contains("cluster kv list"),
        "{err}"
    );

    let refused = canned_server(
        "400 Bad Request",
        "application/json",
        "{\"error\":\"revision 1 was compacted (oldest kept: 20); list again and watch from the \
         listing's revision\",\"code\":\"INVALID_INPUT\"}",
    );
    let output = dpfctl(&[
        "--dataplane",
        &refused,
        "cluster",
        "kv",
        "watch",
        "--prefix",
        "p/",
        "--from-revision",
        "1",
    ]);
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("--prefix 'p/'"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn baseline_is_shown_set_guarded_and_auto_adjusted() {
    let launcher = Launcher::start();

    // A fresh cluster: no baseline, the embedded replica outside it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let fresh = loop {
        let output = launcher.dpfctl(&["baseline"]);
        assert_ok(&output);
        let text = stdout(&output);
        if text.contains("ConsistentId=dataplane") || Instant::now() >= deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(fresh.contains("Cluster state: ACTIVE\n"), "{fresh}");
    assert!(fresh.contains("Current topology version: 0\n"), "{fresh}");
    assert!(
        fresh.contains("Baseline auto adjustment disabled: softTimeout=0\n"),
        "{fresh}"
    );
    assert!(fresh.contains("Number of baseline nodes: 0\n"), "{fresh}");
    assert!(
        fresh.contains("Other nodes:\n    ConsistentId=dataplane\nNumber of other nodes: 1\n"),
        "{fresh}"
    );
    let show = launcher.dpfctl(&["baseline", "show"]);
    assert_ok(&show);
    assert!(
        stdout(&show).contains("Number of baseline nodes: 0\n"),
        "{}",
        stdout(&show)
    );
    let version = launcher.dpfctl_json(&["baseline", "version"]);
    assert_eq!(version["version"], 0);

    // A version conflict.
    let conflict = launcher.dpfctl(&["baseline", "set", "x", "--expected-version", "7"]);
    assert_eq!(conflict.status.code(), Some(1), "{}", stdout(&conflict));
    assert!(
        stderr(&conflict).starts_with("error: ") && stderr(&conflict).contains("conflict"),
        "{}",
        stderr(&conflict)
    );

    // The replica becomes the baseline.
    let set = launcher.dpfctl(&["baseline", "set", "dataplane", "--expected-version", "0"]);
    assert_ok(&set);
    let show = launcher.dpfctl(&["baseline", "show"]);
    assert_ok(&show);
    let text = stdout(&show);
    assert!(text.contains("Current topology version: 1\n"), "{text}");
    assert!(
        text.contains("Baseline nodes:\n    ConsistentId=dataplane, State=ONLINE\n"),
        "{text}"
    );
    assert!(text.contains("Number of baseline nodes: 1\n"), "{text}");
    assert!(text.contains("Number of other nodes: 0\n"), "{text}");
    assert!(!text.contains("Other nodes:"), "{text}");
    let view = launcher.dpfctl_json(&["baseline"]);
    assert_eq!(view["version"], 1);
    assert_eq!(view["members"][0]["name"], "dataplane");
    assert_eq!(view["members"][0]["online"], true);

    // An offline replica can join and leave the baseline; an online member cannot leave.
    let add = launcher.dpfctl(&["baseline", "add", "ghost"]);
    assert_ok(&add);
    let text = stdout(&add);
    assert!(text.contains("Current topology version: 2\n"), "{text}");
    assert!(
        text.contains("    ConsistentId=ghost, State=OFFLINE\n"),
        "{text}"
    );
    let remove = launcher.dpfctl(&["baseline", "remove", "dataplane"]);
    assert_eq!(remove.status.code(), Some(1), "{}", stdout(&remove));
    assert!(
        stderr(&remove).starts_with("error: ") && stderr(&remove).contains("online members"),
        "{}",
        stderr(&remove)
    );
    let remove = launcher.dpfctl(&["baseline", "remove", "ghost", "--expected-version", "2"]);
    assert_ok(&remove);
    assert!(
        stdout(&remove).contains("Number of baseline nodes: 1\n"),
        "{}",
        stdout(&remove)
    );
    let version = launcher.dpfctl(&["baseline", "version"]);
    assert_ok(&version);
    assert!(
        stdout(&version).starts_with("Baseline version: 3 (history "),
        "{}",
        stdout(&version)
    );
    // Removing the last member is refused too.
    let last = launcher.dpfctl(&["baseline", "remove", "dataplane"]);
    assert_eq!(last.status.code(), Some(1), "{}", stdout(&last));
    assert!(stderr(&last).starts_with("error: "), "{}", stderr(&last));

    // Auto-adjust.
    let enable = launcher.dpfctl(&["baseline", "auto-adjust", "enable", "--timeout", "1500"]);
    assert_ok(&enable);
    let show = launcher.dpfctl(&["baseline"]);
    assert_ok(&show);
    assert!(
        stdout(&show).contains("Baseline auto adjustment enabled: softTimeout=1500\n"),
        "{}",
        stdout(&show)
    );
    let disable = launcher.dpfctl(&["--output", "json", "baseline", "auto-adjust", "disable"]);
    assert_ok(&disable);
    let view: Value = serde_json::from_slice(&disable.stdout).unwrap();
    assert_eq!(view["autoAdjust"]["enabled"], false);
    assert_eq!(view["autoAdjust"]["timeoutMs"], 1500);

    // Deactivation and activation.
    let deactivate = launcher.dpfctl(&["baseline", "deactivate"]);
    assert_ok(&deactivate);
    assert!(
        stdout(&deactivate).starts_with("Cluster ID: ")
            && stdout(&deactivate).contains("Cluster state: INACTIVE\n"),
        "{}",
        stdout(&deactivate)
    );
    let refused = launcher.dpfctl(&["baseline", "add", "ghost"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("INACTIVE"),
        "{}",
        stderr(&refused)
    );
    let activate = launcher.dpfctl_json(&["baseline", "activate"]);
    assert_eq!(activate["state"], "ACTIVE");
}
