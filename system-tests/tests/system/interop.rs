//! Interoperability with the HTTP servers people actually run, started by the test in a
//! temporary directory: nginx (files with and without `Range`, WebDAV `PUT`), lighttpd
//! (files, `mod_webdav` `PUT`) and Python's `http.server` (files; a POST-only sink that
//! answers 501 to `HEAD` and 405 to `PATCH`). Each pair moves a 64 MiB object byte-identical
//! as a provider push and as a consumer pull, with the owning replica killed (SIGKILL) mid-way.
//!
//! The servers come from Debian (`apt-get install nginx lighttpd lighttpd-mod-webdav`, which
//! `.ci/run` does); a missing one fails the test, it is never skipped. See `docs/interop.md`.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use system_tests::{
    flow_message, get, post, put_http_dataset, random_bytes, simple_message, start_replicas,
    wait_flow, Launcher, PULL, PUSH,
};

const MIB: u64 = 1024 * 1024;
/// The object every pair of the matrix moves.
const SIZE: u64 = 64 * MIB;
/// How fast the throttled servers send (bytes a second): a 64 MiB transfer takes ~2.7 s, so
/// that the kill lands in the middle.
const RATE: u64 = 24 * MIB;

/// A server process, killed on drop.
struct Server {
    child: Child,
    port: u16,
    /// Its directory (config, logs, served and stored files).
    dir: PathBuf,
    what: &'static str,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log(&self) -> String {
        let mut text = String::new();
        for name in ["error.log", "stderr.log"] {
            text.push_str(&std::fs::read_to_string(self.dir.join(name)).unwrap_or_default());
        }
        text
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The path of a server binary; a clear failure when it is not installed.
fn require(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed: the interoperability tests need real servers \
                 (apt-get install -y nginx lighttpd lighttpd-mod-webdav python3; .ci/run installs them)"
            )
        })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until `port` accepts connections, or fails with the server's log.
fn wait_listening(server: &mut Server) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", server.port)).is_err() {
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!(
                "{} exited ({status}) instead of listening: {}",
                server.what,
                server.log()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{} does not listen on {}: {}",
            server.what,
            server.port,
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn user_name() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// nginx serving `<dir>/www/files/` at `/files/` (with `Range`) and `/norange/` (ranges off,
/// `Accept-Ranges: none`), both throttled to [`RATE`], and taking WebDAV `PUT`s at `/upload/`
/// into `<dir>/www/upload/`. Everything it writes stays under `dir`.
fn nginx(dir: &Path) -> Server {
    let bin = require("nginx");
    let dir = dir.join("nginx");
    for sub in ["www/files", "www/upload", "tmp"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let port = free_port();
    let d = dir.display();
    let rate_kib = RATE / 1024;
    // `user` only matters when the master runs as root (then workers switch to it).
    let config = format!(
        r"user {user};
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 64; }}
http {{
  access_log {d}/access.log;
  client_body_temp_path {d}/tmp/body;
  proxy_temp_path {d}/tmp/proxy;
  fastcgi_temp_path {d}/tmp/fastcgi;
  uwsgi_temp_path {d}/tmp/uwsgi;
  scgi_temp_path {d}/tmp/scgi;
  default_type application/octet-stream;
  client_max_body_size 0;
  server {{
    listen 127.0.0.1:{port};
    root {d}/www;
    location /files/ {{ limit_rate {rate_kib}k; }}
    location /norange/ {{
      alias {d}/www/files/;
      max_ranges 0;
      add_header Accept-Ranges none;
      limit_rate {rate_kib}k;
    }}
    location /upload/ {{ dav_methods PUT; create_full_put_path on; }}
  }}
}}
",
        user = user_name()
    );
    std::fs::write(dir.join("nginx.conf"), config).unwrap();
    let child = Command::new(bin)
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-e")
        .arg(dir.join("error.log"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
        .spawn()
        .unwrap();
    let mut server = Server {
        child,
        port,
        dir,
        what: "nginx",
    };
    wait_listening(&mut server);
    server
}

/// lighttpd serving `<dir>/www/files/` at `/files/` (with `Range`, throttled to [`RATE`]) and
/// taking WebDAV (`mod_webdav`) `PUT`s at `/dav/` into `<dir>/www/dav/`.
fn lighttpd(dir: &Path) -> Server {
    let bin = require("lighttpd");
    let dir = dir.join("lighttpd");
    for sub in ["www/files", "www/dav", "tmp"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let port = free_port();
    let d = dir.display();
    let rate_kib = RATE / 1024;
    let config = format!(
        r#"server.modules += ( "mod_webdav" )
server.document-root = "{d}/www"
server.bind = "127.0.0.1"
server.port = {port}
server.pid-file = "{d}/lighttpd.pid"
server.errorlog = "{d}/error.log"
server.upload-dirs = ( "{d}/tmp" )
mimetype.assign = ( "" => "application/octet-stream" )
$HTTP["url"] =~ "^/dav/" {{
  webdav.activate = "enable"
  webdav.is-readonly = "disable"
}}
$HTTP["url"] =~ "^/files/" {{
  connection.kbytes-per-second = {rate_kib}
}}
"#
    );
    std::fs::write(dir.join("lighttpd.conf"), config).unwrap();
    let child = Command::new(bin)
        .arg("-D")
        .arg("-f")
        .arg(dir.join("lighttpd.conf"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
        .spawn()
        .unwrap();
    let mut server = Server {
        child,
        port,
        dir,
        what: "lighttpd",
    };
    wait_listening(&mut server);
    server
}

/// One of the Python scripts in `system-tests/servers/`, run in `dir` with `args`.
fn python(script: &str, dir: &Path, args: &[&str]) -> Server {
    let bin = require("python3");
    std::fs::create_dir_all(dir).unwrap();
    let script_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("servers")
        .join(script);
    let mut child = Command::new(bin)
        .arg(&script_path)
        .arg("--dir")
        .arg(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "{script} did not start: {line:?}: {}",
                std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default()
            )
        });
    Server {
        child,
        port,
        dir: dir.to_owned(),
        what: "python",
    }
}

/// The POST-only sink: `HEAD` answers `head` (501, 404 or 405), `PATCH` 405.
fn post_sink(dir: &Path, head: u16, extra: &[&str]) -> Server {
    let head = head.to_string();
    let mut args = vec!["--head", head.as_str()];
    args.extend_from_slice(extra);
    python("post_sink.py", dir, &args)
}

/// The methods the POST-only sink saw, in order, with their headers.
fn requests_seen(sink: &Server) -> Vec<Value> {
    std::fs::read_to_string(sink.dir.join("requests.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Writes `size` bytes (a repeated random block) to `path`; returns their SHA-256.
fn write_object(path: &Path, size: u64, seed: u64) -> String {
    let block = random_bytes(1024 * 1024 + 7, seed);
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut left = size;
    while left > 0 {
        let n = usize::try_from(left.min(block.len() as u64)).unwrap();
        file.write_all(&block[..n]).unwrap();
        left -= n as u64;
    }
    file.flush().unwrap();
    system_tests::pattern_sha256(&block, size)
}

fn sha256_of(path: &Path) -> String {
    assert!(path.is_file(), "{} was not written", path.display());
    system_tests::sha256_file_streamed(path)
}

/// Replica settings: 1 s leases, checkpoints every 8 MiB or 500 ms.
fn cluster_args() -> Vec<&'static str> {
    vec![
        "-D",
        "edc.dataplane.state-machine.flow.lease.time=1000",
        "-D",
        "edc.dataplane.state-machine.flow.lease.renew-interval=250",
        "-D",
        "edc.dataplane.state-machine.claim.interval=100",
        "-D",
        "dpf.checkpoint.bytes=8388608",
        "-D",
        "dpf.checkpoint.interval=500",
    ]
}

fn index_of(name: &Value) -> usize {
    name.as_str()
        .unwrap()
        .trim_start_matches('r')
        .parse()
        .unwrap()
}

/// Kills the replica that owns `id` once it moved half of [`SIZE`] (its live progress; the
/// owner has recorded the attempt by then), then waits for the other one to complete the flow;
/// returns the final view.
async fn kill_owner_midway(replicas: &mut [Launcher], id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    let owner = loop {
        let (_, view) = get(&format!("{}/dataflows/{id}", replicas[0].base_url)).await;
        assert_ne!(
            view["state"], "COMPLETED",
            "completed before the kill; throttle harder: {view}"
        );
        assert!(
            !matches!(view["state"].as_str(), Some("TERMINATED")),
            "failed: {view}"
        );
        if let Some(owner) = view.get("runtimeId").filter(|o| o.is_string()) {
            let owner = index_of(owner);
            let (_, live) = get(&format!("{}/dataflows/{id}", replicas[owner].base_url)).await;
            if live["bytesTransferred"].as_u64().unwrap_or(0) >= SIZE / 2 {
                break owner;
            }
        }
        assert!(Instant::now() < deadline, "no progress: {view}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    replicas[owner].kill();
    let survivor = replicas[1 - owner].base_url.clone();
    let done = wait_flow(&survivor, id, Duration::from_secs(90), |v| {
        v["state"] == "COMPLETED" || v["state"] == "TERMINATED"
    })
    .await;
    assert_eq!(done["state"], "COMPLETED", "{done}");
    assert_eq!(done["runtimeId"], format!("r{}", 1 - owner), "{done}");
    done
}

/// A provider push of the dataset at `source` to `sink` (`method` POST or PUT) on a fresh
/// two-replica cluster, with the owner killed mid-way; returns the final view.
async fn push(dir: &Path, name: &str, source: &str, sink: &str, method: &str) -> Value {
    let address = json!({
        "endpointType": PUSH,
        "endpoint": sink,
        "endpointProperties": [{"name": "method", "value": method}],
    });
    push_to(dir, name, source, address).await
}

/// A provider push of the dataset at `source` to the DPS `address` on a fresh two-replica
/// cluster, with the owner killed mid-way; returns the final view.
async fn push_to(dir: &Path, name: &str, source: &str, address: Value) -> Value {
    let dir = dir.join(format!("push-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    let store = format!("sqlite:{}", dir.join("shared.db").display());
    let mut replicas = start_replicas(2, &store, &cluster_args(), &dir);
    for replica in &replicas {
        put_http_dataset(&replica.base_url, "object", source).await;
    }
    let mut start = flow_message(&format!("push-{name}"), PUSH, "object", "p");
    start["dataAddress"] = address;
    let (status, body) = post(
        &format!("{}/signaling/dataflows/start", replicas[0].base_url),
        &start,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = body["dataFlowId"].as_str().unwrap().to_owned();
    kill_owner_midway(&mut replicas, &id).await
}

/// A consumer pull from `source` into a file on a fresh two-replica cluster, with the owner
/// killed mid-way; returns the final view and the file.
async fn pull(dir: &Path, name: &str, source: &str) -> (Value, PathBuf) {
    let dir = dir.join(format!("pull-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    let store = format!("sqlite:{}", dir.join("shared.db").display());
    // Both replicas write the same file, beneath their shared file root `dir`.
    let mut replicas = start_replicas(2, &store, &cluster_args(), &dir);
    let destination = dir.join("pulled.bin");
    let mut prepare = flow_message(&format!("pull-{name}"), PULL, "object", "c");
    prepare["metadata"] = json!({"destination": {"type": "File", "path": destination}});
    let base = replicas[0].base_url.clone();
    let (status, prepared) = post(&format!("{base}/signaling/dataflows/prepare"), &prepare).await;
    assert_eq!(status, 200, "{prepared}");
    let id = prepared["dataFlowId"].as_str().unwrap().to_owned();
    let mut started = simple_message();
    started["dataAddress"] = json!({"endpointType": PULL, "endpoint": source});
    let (status, body) = post(
        &format!("{base}/signaling/dataflows/{id}/started"),
        &started,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    (kill_owner_midway(&mut replicas, &id).await, destination)
}

fn restarted_because_of_the_destination(view: &Value) {
    assert_eq!(view["restarts"], 1, "{view}");
    assert_eq!(view["resumes"], 0, "{view}");
    let reason = view["restartReason"].as_str().unwrap_or_default();
    assert!(reason.contains("cannot continue an upload"), "{view}");
}

/// The matrix: nginx, lighttpd and Python `http.server`, each as the sink of a provider push
/// and as the source of a consumer pull, 64 MiB each, one owner killed mid-way each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn matrix_of_real_servers_survives_a_kill_midway() {
    let _serial = system_tests::serial().await;
    let began = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let nginx = nginx(dir.path());
    let lighttpd = lighttpd(dir.path());
    let python_files = dir.path().join("python-files");
    std::fs::create_dir_all(&python_files).unwrap();
    let rate = RATE.to_string();
    let python_source = python(
        "slow_http_server.py",
        &python_files,
        &["--rate", rate.as_str()],
    );
    let python_sink = post_sink(&dir.path().join("python-sink"), 501, &[]);

    let expected = write_object(&nginx.dir.join("www/files/object.bin"), SIZE, 41);
    std::fs::copy(
        nginx.dir.join("www/files/object.bin"),
        lighttpd.dir.join("www/files/object.bin"),
    )
    .unwrap();
    std::fs::copy(
        nginx.dir.join("www/files/object.bin"),
        python_files.join("object.bin"),
    )
    .unwrap();
    let mut summary = Vec::new();

    // Provider push into nginx's WebDAV PUT (from Python http.server): nginx answers 404 to the
    // HEAD of the later attempt, so the new owner restarts from zero with a plain PUT.
    let view = push(
        dir.path(),
        "nginx",
        &python_source.url("/object.bin"),
        &nginx.url("/upload/object.bin"),
        "PUT",
    )
    .await;
    assert_eq!(
        sha256_of(&nginx.dir.join("www/upload/object.bin")),
        expected
    );
    restarted_because_of_the_destination(&view);
    summary.push(format!("push → nginx PUT: restarts {}", view["restarts"]));

    // Provider push into lighttpd's mod_webdav (from nginx).
    let view = push(
        dir.path(),
        "lighttpd",
        &nginx.url("/files/object.bin"),
        &lighttpd.url("/dav/object.bin"),
        "PUT",
    )
    .await;
    assert_eq!(
        sha256_of(&lighttpd.dir.join("www/dav/object.bin")),
        expected
    );
    restarted_because_of_the_destination(&view);
    summary.push(format!(
        "push → lighttpd PUT: restarts {}",
        view["restarts"]
    ));

    // Provider push into the POST-only Python sink (from lighttpd).
    let view = push(
        dir.path(),
        "python",
        &lighttpd.url("/files/object.bin"),
        &python_sink.url("/sink/object.bin"),
        "POST",
    )
    .await;
    assert_eq!(sha256_of(&python_sink.dir.join("object.bin")), expected);
    restarted_because_of_the_destination(&view);
    let methods: Vec<String> = requests_seen(&python_sink)
        .iter()
        .map(|r| r["method"].as_str().unwrap().to_owned())
        .collect();
    // First attempt: one POST and no probe; the new owner's attempt: HEAD (501), then POST.
    assert_eq!(methods, ["POST", "HEAD", "POST"], "{methods:?}");
    summary.push(format!("push → python POST: restarts {}", view["restarts"]));

    // For comparison, a tus receiver: dpf's own ingest endpoint (advertised `resumable: tus`),
    // checkpointed from the first byte without a probe, resumed at its Upload-Offset.
    let consumer_dir = dir.path().join("consumer");
    std::fs::create_dir_all(&consumer_dir).unwrap();
    let consumer = Launcher::start(
        "dataplane-launcher",
        &["-D", "edc.runtime.id=consumer"],
        &[],
        &consumer_dir,
    );
    let ingested = consumer_dir.join("ingested.bin");
    let mut prepare = flow_message("ingest-c", PUSH, "object", "c");
    prepare["metadata"] = json!({"destination": {"type": "File", "path": ingested}});
    let (status, prepared) = post(
        &format!("{}/signaling/dataflows/prepare", consumer.base_url),
        &prepare,
    )
    .await;
    assert_eq!(status, 200, "{prepared}");
    let address = prepared["dataAddress"].clone();
    assert!(
        address["endpointProperties"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "resumable" && p["value"] == "tus"),
        "{address}"
    );
    let view = push_to(
        dir.path(),
        "ingest",
        &nginx.url("/files/object.bin"),
        address,
    )
    .await;
    assert_eq!(sha256_of(&ingested), expected);
    assert_eq!(
        (view["resumes"].as_u64(), view["restarts"].as_u64()),
        (Some(1), Some(0)),
        "{view}"
    );
    summary.push(format!(
        "push → dpf ingest (tus): resumes {}",
        view["resumes"]
    ));

    // Consumer pulls into a file: from nginx with Range (resumed at the last checkpoint) ...
    let (view, file) = pull(dir.path(), "nginx", &nginx.url("/files/object.bin")).await;
    assert_eq!(sha256_of(&file), expected);
    assert_eq!(
        (view["resumes"].as_u64(), view["restarts"].as_u64()),
        (Some(1), Some(0)),
        "{view}"
    );
    summary.push(format!("pull ← nginx (Range): resumes {}", view["resumes"]));

    // ... from nginx with ranges off (`Accept-Ranges: none`: restarted from zero) ...
    let (view, file) = pull(
        dir.path(),
        "nginx-norange",
        &nginx.url("/norange/object.bin"),
    )
    .await;
    assert_eq!(sha256_of(&file), expected);
    assert_eq!(
        (view["resumes"].as_u64(), view["restarts"].as_u64()),
        (Some(0), Some(1)),
        "{view}"
    );
    assert!(
        view["restartReason"]
            .as_str()
            .is_some_and(|r| r.contains("no Range support")),
        "{view}"
    );
    summary.push(format!(
        "pull ← nginx (no Range): restarts {}",
        view["restarts"]
    ));

    // ... from lighttpd (Range) ...
    let (view, file) = pull(dir.path(), "lighttpd", &lighttpd.url("/files/object.bin")).await;
    assert_eq!(sha256_of(&file), expected);
    assert_eq!(
        (view["resumes"].as_u64(), view["restarts"].as_u64()),
        (Some(1), Some(0)),
        "{view}"
    );
    summary.push(format!(
        "pull ← lighttpd (Range): resumes {}",
        view["resumes"]
    ));

    // ... and from Python http.server (no Range: restarted from zero).
    let (view, file) = pull(dir.path(), "python", &python_source.url("/object.bin")).await;
    assert_eq!(sha256_of(&file), expected);
    assert_eq!(
        (view["resumes"].as_u64(), view["restarts"].as_u64()),
        (Some(0), Some(1)),
        "{view}"
    );
    summary.push(format!(
        "pull ← python http.server: restarts {}",
        view["restarts"]
    ));

    println!(
        "interop matrix in {:.1} s:\n  {}",
        began.elapsed().as_secs_f64(),
        summary.join("\n  ")
    );
}

/// A single data plane pushing `size` bytes from `source` to `sink`; waits for the end and
/// returns the final view.
async fn push_once(dir: &Path, source: &str, sink: &str) -> Value {
    let plane = Launcher::start("dataplane-launcher", &[], &[], dir);
    put_http_dataset(&plane.base_url, "object", source).await;
    let mut start = flow_message("once", PUSH, "object", "p");
    start["dataAddress"] = json!({"endpointType": PUSH, "endpoint": sink});
    let (status, body) = post(
        &format!("{}/signaling/dataflows/start", plane.base_url),
        &start,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = body["dataFlowId"].as_str().unwrap().to_owned();
    wait_flow(&plane.base_url, &id, Duration::from_secs(60), |v| {
        v["state"] == "COMPLETED" || v["state"] == "TERMINATED"
    })
    .await
}

/// Acceptance: a provider push to a sink answering 501 (and, separately, 404 and 405) to
/// `HEAD` completes byte-identical on the first attempt, with no `HEAD` sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_to_a_post_only_sink_sends_no_probe_on_the_first_attempt() {
    let _serial = system_tests::serial().await;
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    let expected = write_object(&files.join("object.bin"), 10_000_000, 42);
    let source = python("slow_http_server.py", &files, &[]);
    for head in [501, 404, 405] {
        let sink = post_sink(&dir.path().join(format!("sink-{head}")), head, &[]);
        let plane_dir = dir.path().join(format!("plane-{head}"));
        std::fs::create_dir_all(&plane_dir).unwrap();
        let done = push_once(
            &plane_dir,
            &source.url("/object.bin"),
            &sink.url("/sink/object.bin"),
        )
        .await;
        assert_eq!(done["state"], "COMPLETED", "HEAD {head}: {done}");
        assert_eq!(done["stateCount"], 1, "HEAD {head}: retried: {done}");
        assert_eq!(done["metadata"]["transfer"]["attempts"], 1, "{done}");
        assert_eq!(sha256_of(&sink.dir.join("object.bin")), expected);
        let methods: Vec<String> = requests_seen(&sink)
            .iter()
            .map(|r| r["method"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(methods, ["POST"], "HEAD {head}: the sink saw {methods:?}");
        // The sink really refuses HEAD this way (the test could fail).
        let probe = system_tests::client()
            .head(sink.url("/sink/object.bin"))
            .send()
            .await
            .unwrap();
        assert_eq!(probe.status().as_u16(), head);
    }
}

/// Acceptance: a push to a server that refuses chunked bodies (411) succeeds when the size is
/// known: the upload carries `Content-Length`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_of_a_known_size_to_a_sink_refusing_chunked_bodies_succeeds() {
    let _serial = system_tests::serial().await;
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    let expected = write_object(&files.join("object.bin"), 10_000_000, 43);
    let source = python("slow_http_server.py", &files, &[]);
    let sink = post_sink(&dir.path().join("sink"), 501, &["--refuse-chunked"]);
    // The sink does refuse a chunked body.
    let chunked = system_tests::client()
        .post(sink.url("/sink/probe.bin"))
        .body(reqwest::Body::wrap_stream(futures::stream::iter([Ok::<
            _,
            std::io::Error,
        >(
            bytes::Bytes::from_static(b"abc"),
        )])))
        .send()
        .await
        .unwrap();
    assert_eq!(chunked.status().as_u16(), 411);

    let plane_dir = dir.path().join("plane");
    std::fs::create_dir_all(&plane_dir).unwrap();
    let done = push_once(
        &plane_dir,
        &source.url("/object.bin"),
        &sink.url("/sink/object.bin"),
    )
    .await;
    assert_eq!(done["state"], "COMPLETED", "{done}");
    assert_eq!(sha256_of(&sink.dir.join("object.bin")), expected);
    let upload = requests_seen(&sink)
        .into_iter()
        .find(|r| r["path"] == "/sink/object.bin")
        .unwrap();
    assert_eq!(upload["headers"]["content-length"], "10000000", "{upload}");
    assert!(
        upload["headers"].get("transfer-encoding").is_none(),
        "{upload}"
    );
}
