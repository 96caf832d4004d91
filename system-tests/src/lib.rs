//! Support for dpf's black-box tests: start the real launcher binaries, serve data and receive
//! uploads over real HTTP, and play a control plane that records (and schema-checks) callbacks.
//!
//! Binaries are taken from the cargo target directory next to the test executable; when one is
//! missing it is built with `cargo build -p <name>` (same profile).

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)] // test support: failures are test failures

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};
use sha2::Digest;

pub use test_utils::dps;

/// The DPS HTTP push profile.
pub const PUSH: &str = "https://w3id.org/dspace-sig/profile/http-push";
/// The DPS HTTP pull profile.
pub const PULL: &str = "https://w3id.org/dspace-sig/profile/http-pull";

/// Path of a workspace binary, built on demand.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // …/target/<profile>/deps/<test> → …/target/<profile>/<name>
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let path = profile_dir.join(name);
    if !path.exists() {
        let release = profile_dir.file_name().is_some_and(|p| p == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut command = Command::new(cargo);
        command
            .args(["build", "-p", name])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
        if release {
            command.arg("--release");
        }
        let status = command.status().unwrap();
        assert!(status.success(), "cannot build {name}");
    }
    path
}

/// A running launcher process, killed on drop.
#[derive(Debug)]
pub struct Launcher {
    child: Child,
    /// `http://127.0.0.1:PORT/api/v1`.
    pub base_url: String,
    /// Where its stderr goes.
    pub log: PathBuf,
}

impl Launcher {
    /// Starts `bin` on a given port (`-D web.http.port=PORT`) in `dir`.
    pub fn start_with_port(bin: &str, port: u16, dir: &Path) -> Self {
        Self::spawn(bin, &["-D", &format!("web.http.port={port}")], &[], dir)
    }

    /// Starts `bin` with `args` plus `-D web.http.port=0` in `dir`, and waits for its address.
    pub fn start(bin: &str, args: &[&str], envs: &[(&str, &str)], dir: &Path) -> Self {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["-D", "web.http.port=0"]);
        Self::spawn(bin, &all, envs, dir)
    }

    /// Starts `bin` with `args` plus `-D web.http.port=0` in `dir` **without** the test
    /// relaxations [`Launcher::start`] adds (plain HTTP, loopback peers, files anywhere under
    /// `dir`): the launcher's own defaults apply, as an attacker would find them.
    pub fn start_strict(bin: &str, args: &[&str], envs: &[(&str, &str)], dir: &Path) -> Self {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["-D", "web.http.port=0"]);
        Self::spawn_with(bin, &all, envs, dir, false)
    }

    fn spawn(bin: &str, args: &[&str], envs: &[(&str, &str)], dir: &Path) -> Self {
        Self::spawn_with(bin, args, envs, dir, true)
    }

    fn spawn_with(
        bin: &str,
        args: &[&str],
        envs: &[(&str, &str)],
        dir: &Path,
        relaxed: bool,
    ) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let log = dir.join(format!(
            "{bin}-{}.log",
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        // Tests talk plain HTTP to local fakes on loopback and name files anywhere in their
        // temporary directory; a test that wants a stricter policy passes its own `-D` flags
        // (later flags win) or uses `start_strict`.
        let root = format!("dpf.transfer.file.root={}", dir.display());
        let relaxations: Vec<&str> = match (relaxed, bin) {
            (true, "dataplane-launcher") => vec![
                "-D",
                "dpf.http.insecure=true",
                "-D",
                "dpf.transfer.denied-networks=",
                "-D",
                &root,
            ],
            (true, "embedded-launcher") => vec!["-D", "dpf.transfer.denied-networks=", "-D", &root],
            (true, "selector-launcher") => vec!["-D", "dpf.http.insecure=true"],
            _ => Vec::new(),
        };
        let mut child = Command::new(binary(bin))
            .args(&relaxations)
            .args(args)
            .envs(envs.iter().copied())
            .env("RUST_LOG", "info")
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let base_url = line
            .trim()
            .rsplit(" on ")
            .next()
            .filter(|url| url.starts_with("http://") || url.starts_with("https://"))
            .unwrap_or_else(|| {
                panic!(
                    "{bin} did not start: {line:?}; log: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })
            .to_owned();
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in reader.lines() {});
        Self {
            child,
            base_url,
            log,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident set size (VmHWM) in KiB, from `/proc`.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// The stderr log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal (`STOP`, `CONT`, `TERM`, `KILL`) with the `kill` command.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    /// Whether the process is still running (not killed, not exited).
    pub fn signal_alive(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .map(|s| {
                !s.lines().any(|l| {
                    l.starts_with("State:") && (l.contains("zombie") || l.contains("dead"))
                })
            })
            .unwrap_or(false)
    }

    /// Waits for the process to exit (after a signal); returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "process did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGKILL and waits.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Serialises the heavy multi-process tests of one test binary: on a 2-core machine, two
/// clusters of replicas at once make timing assertions (failover within a lease) meaningless.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// Starts `count` data-plane replicas named `r0`, `r1`, … at once, sharing `store_url`, each
/// in its own directory under `dir`, with `extra` arguments.
pub fn start_replicas(count: usize, store_url: &str, extra: &[&str], dir: &Path) -> Vec<Launcher> {
    let handles: Vec<_> = (0..count)
        .map(|i| {
            let root = dir.to_path_buf();
            let dir = dir.join(format!("r{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            // The replicas share one file root, `dir` (a shared volume in production).
            let mut args: Vec<String> = vec![
                "-D".into(),
                format!("edc.runtime.id=r{i}"),
                "-D".into(),
                format!("dpf.store.url={store_url}"),
                "-D".into(),
                format!("dpf.transfer.file.root={}", root.display()),
            ];
            args.extend(extra.iter().map(|s| (*s).to_owned()));
            std::thread::spawn(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                Launcher::start("dataplane-launcher", &args, &[], &dir)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// The store URLs the cluster tests run on: a throwaway PostgreSQL database, and a SQLite file
/// shared by every replica on this host.
pub fn postgres_store_url() -> String {
    test_utils::postgres_database().url().to_owned()
}

/// Registers `id` on the data plane at `base` as an `HttpData` dataset read from `url`.
pub async fn put_http_dataset(base: &str, id: &str, url: &str) {
    let (status, body) = call(
        reqwest::Method::PUT,
        &format!("{base}/datasets/{id}"),
        Some(&serde_json::json!({"type": "HttpData", "baseUrl": url})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// Sends a request with an optional JSON body; returns the status and the JSON body (Null when
/// empty or not JSON).
pub async fn call(method: reqwest::Method, url: &str, body: Option<&Value>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut request = client.request(method, url).timeout(Duration::from_secs(30));
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = response.status().as_u16();
    let mut bytes = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// POST with a JSON body.
pub async fn post(url: &str, body: &Value) -> (u16, Value) {
    call(reqwest::Method::POST, url, Some(body)).await
}

/// GET.
pub async fn get(url: &str) -> (u16, Value) {
    call(reqwest::Method::GET, url, None).await
}

/// A DPS prepare/start message with every required field.
pub fn flow_message(process_id: &str, profile: &str, dataset_id: &str, participant: &str) -> Value {
    json!({
        "messageId": uuid::Uuid::new_v4().to_string(),
        "participantId": participant,
        "counterPartyId": "counterparty",
        "dataspaceContext": "test-dataspace",
        "processId": process_id,
        "agreementId": "agreement-1",
        "datasetId": dataset_id,
        "profile": profile,
        "claims": {"membership": "active"}
    })
}

/// A message with only a message id (suspend, terminate, started, resume).
pub fn simple_message() -> Value {
    json!({"messageId": uuid::Uuid::new_v4().to_string()})
}

/// Waits until the flow's management view satisfies `done`, or panics after `timeout`.
pub async fn wait_flow(
    base: &str,
    id: &str,
    timeout: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let (status, view) = get(&format!("{base}/dataflows/{id}")).await;
        if status == 200 && done(&view) {
            return view;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "flow {id} did not get there in {timeout:?}: {view}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What a [`DataServer`] serves under a name.
#[derive(Clone, Debug)]
pub enum Content {
    /// These bytes.
    Bytes(Bytes),
    /// `len` bytes repeating `block`; `delay` between 64 KiB chunks (throttling).
    Pattern {
        /// Repeated block.
        block: Bytes,
        /// Total length.
        len: u64,
        /// Pause between chunks.
        delay: Duration,
    },
}

impl Content {
    fn len(&self) -> u64 {
        match self {
            Self::Bytes(b) => b.len() as u64,
            Self::Pattern { len, .. } => *len,
        }
    }

    /// The byte at `position`.
    fn chunk(&self, position: u64, max: usize) -> Bytes {
        match self {
            Self::Bytes(b) => {
                let start = usize::try_from(position).unwrap();
                b.slice(start..(start + max).min(b.len()))
            }
            Self::Pattern { block, len, .. } => {
                let offset = usize::try_from(position % block.len() as u64).unwrap();
                let left = usize::try_from(len - position).unwrap_or(usize::MAX);
                block.slice(offset..(offset + max).min(block.len()).min(offset + left))
            }
        }
    }
}

/// One upload received by a [`DataServer`].
#[derive(Debug, Clone, Default)]
pub struct Upload {
    /// Bytes received so far.
    pub bytes: u64,
    /// SHA-256 of the body, when complete.
    pub sha256: Option<String>,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// Whether the body arrived completely.
    pub complete: bool,
}

#[derive(Default, Debug)]
struct ServerState {
    content: HashMap<String, Content>,
    uploads: HashMap<String, Vec<Upload>>,
    /// Names whose GET ignores `Range` (always 200 from byte 0).
    ignore_range: std::collections::HashSet<String>,
    /// Bytes served per name.
    served: HashMap<String, Arc<AtomicU64>>,
}

/// An HTTP server that serves [`Content`] at `GET /data/{name}` (with `Range`) and accepts
/// uploads at `POST|PUT /upload/{name}`, hashing them as they stream in.
#[derive(Clone, Debug)]
pub struct DataServer {
    state: Arc<Mutex<ServerState>>,
    /// Bytes received by all uploads, live.
    pub received: Arc<AtomicU64>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl DataServer {
    /// Starts the server on a free port in the current tokio runtime.
    pub fn start() -> Self {
        let state = Arc::new(Mutex::new(ServerState::default()));
        let received = Arc::new(AtomicU64::new(0));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = {
            let state = state.clone();
            let received = received.clone();
            HttpServer::new(move || {
                App::new()
                    .app_data(web::Data::new(state.clone()))
                    .app_data(web::Data::new(received.clone()))
                    .app_data(web::PayloadConfig::new(usize::MAX))
                    .route("/data/{name}", web::get().to(serve))
                    .route("/events/{count}", web::get().to(events))
                    .route("/upload/{name}", web::post().to(upload))
                    .route("/upload/{name}", web::put().to(upload))
            })
            .workers(2)
            .listen(listener)
            .unwrap()
            .run()
        };
        tokio::spawn(server);
        Self {
            state,
            received,
            url,
        }
    }

    /// Serves `content` at `/data/{name}`; returns its URL.
    pub fn put(&self, name: &str, content: Content) -> String {
        self.state
            .lock()
            .unwrap()
            .content
            .insert(name.to_owned(), content);
        format!("{}/data/{name}", self.url)
    }

    /// Makes `GET /data/{name}` ignore `Range` headers, like servers that cannot seek.
    pub fn ignore_range(&self, name: &str) {
        self.state
            .lock()
            .unwrap()
            .ignore_range
            .insert(name.to_owned());
    }

    /// Bytes served from `/data/{name}` so far, over every request.
    pub fn served(&self, name: &str) -> u64 {
        self.state
            .lock()
            .unwrap()
            .served
            .get(name)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// A server-sent event stream of events `1..=count` (`id: i`, `data: event i`), 100 events
    /// per network chunk every 5 ms, resuming after `Last-Event-ID`.
    pub fn events_url(&self, count: u64) -> String {
        format!("{}/events/{count}", self.url)
    }

    /// The upload URL for `name`.
    pub fn upload_url(&self, name: &str) -> String {
        format!("{}/upload/{name}", self.url)
    }

    /// Uploads received for `name`, oldest first.
    pub fn uploads(&self, name: &str) -> Vec<Upload> {
        self.state
            .lock()
            .unwrap()
            .uploads
            .get(name)
            .cloned()
            .unwrap_or_default()
    }
}

async fn serve(
    req: HttpRequest,
    name: web::Path<String>,
    state: web::Data<Arc<Mutex<ServerState>>>,
) -> HttpResponse {
    let (content, ignore_range, served) = {
        let mut state = state.lock().unwrap();
        let Some(content) = state.content.get(name.as_str()).cloned() else {
            return HttpResponse::NotFound().finish();
        };
        let ignore = state.ignore_range.contains(name.as_str());
        let served = state.served.entry(name.to_string()).or_default().clone();
        (content, ignore, served)
    };
    let len = content.len();
    let start: u64 = if ignore_range {
        0
    } else {
        req.headers()
            .get("range")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("bytes="))
            .and_then(|v| v.trim_end_matches('-').parse().ok())
            .unwrap_or(0)
    };
    let delay = match &content {
        Content::Pattern { delay, .. } => *delay,
        Content::Bytes(_) => Duration::ZERO,
    };
    let body = futures::stream::unfold(start, move |position| {
        let content = content.clone();
        let served = served.clone();
        async move {
            if position >= len {
                return None;
            }
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let chunk = content.chunk(position, 64 * 1024);
            served.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            let next = position + chunk.len() as u64;
            Some((Ok::<_, actix_web::Error>(chunk), next))
        }
    });
    let mut response = if start > 0 {
        HttpResponse::PartialContent()
    } else {
        HttpResponse::Ok()
    };
    if start > 0 {
        response.insert_header(("Content-Range", format!("bytes {start}-{}/{len}", len - 1)));
    }
    response.no_chunking(len - start).streaming(body)
}

async fn events(req: HttpRequest, count: web::Path<u64>) -> HttpResponse {
    let count = count.into_inner();
    let after: u64 = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let body = futures::stream::unfold(after + 1, move |next| async move {
        if next > count {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        let last = (next + 99).min(count);
        let mut chunk = String::new();
        for id in next..=last {
            chunk.push_str(&format!("id: {id}\ndata: event {id}\n\n"));
        }
        Some((Ok::<_, actix_web::Error>(Bytes::from(chunk)), last + 1))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .streaming(body)
}

async fn upload(
    req: HttpRequest,
    name: web::Path<String>,
    mut payload: web::Payload,
    state: web::Data<Arc<Mutex<ServerState>>>,
    received: web::Data<Arc<AtomicU64>>,
) -> HttpResponse {
    let authorization = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let index = {
        let mut state = state.lock().unwrap();
        let uploads = state.uploads.entry(name.to_string()).or_default();
        uploads.push(Upload {
            authorization,
            ..Upload::default()
        });
        uploads.len() - 1
    };
    let mut hasher = sha2::Sha256::new();
    while let Some(chunk) = payload.next().await {
        let Ok(chunk) = chunk else {
            return HttpResponse::BadRequest().finish();
        };
        hasher.update(&chunk);
        received.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        state
            .lock()
            .unwrap()
            .uploads
            .get_mut(name.as_str())
            .unwrap()[index]
            .bytes += chunk.len() as u64;
    }
    let digest = hex(&hasher.finalize());
    let mut state = state.lock().unwrap();
    let entry = &mut state.uploads.get_mut(name.as_str()).unwrap()[index];
    entry.sha256 = Some(digest);
    entry.complete = true;
    HttpResponse::Ok().json(json!({"received": entry.bytes}))
}

/// SHA-256 (hex) of `len` bytes repeating `block`, without holding them.
pub fn pattern_sha256(block: &[u8], len: u64) -> String {
    let mut hasher = sha2::Sha256::new();
    let mut position = 0u64;
    while position < len {
        let offset = usize::try_from(position % block.len() as u64).unwrap();
        let take = usize::try_from((len - position).min((block.len() - offset) as u64)).unwrap();
        hasher.update(&block[offset..offset + take]);
        position += take as u64;
    }
    hex(&hasher.finalize())
}

/// SHA-256 (hex) of a file, streamed.
pub fn sha256_file_streamed(path: &Path) -> String {
    use std::io::Read;
    let mut file = std::fs::File::open(path).unwrap();
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    hex(&hasher.finalize())
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of bytes, hex.
pub fn sha256(bytes: &[u8]) -> String {
    hex(&sha2::Sha256::digest(bytes))
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> String {
    sha256(&std::fs::read(path).unwrap())
}

/// `n` pseudo-random bytes (deterministic per seed).
pub fn random_bytes(n: usize, seed: u64) -> Bytes {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(n);
    Bytes::from(out)
}

/// A callback received by the [`FakeControlPlane`].
#[derive(Debug, Clone)]
pub struct Callback {
    /// The transfer (process) id from the URL.
    pub process_id: String,
    /// `prepared`, `started`, `completed` or `errored`.
    pub event: String,
    /// The body.
    pub body: Value,
}

/// A control plane that records callbacks, checks them against the DPS schema and can be told
/// to fail the first `n` calls with 500.
#[derive(Clone, Debug)]
pub struct FakeControlPlane {
    callbacks: Arc<Mutex<Vec<Callback>>>,
    failures_left: Arc<AtomicUsize>,
    /// Calls received, accepted or not.
    pub attempts: Arc<AtomicUsize>,
    /// `http://127.0.0.1:PORT/signaling` — the endpoint to register.
    pub endpoint: String,
}

impl FakeControlPlane {
    /// Starts it on `listener` (bind port 0, or a port chosen earlier to start it late).
    pub fn start_on(listener: std::net::TcpListener, fail_first: usize) -> Self {
        let callbacks = Arc::new(Mutex::new(Vec::new()));
        let failures_left = Arc::new(AtomicUsize::new(fail_first));
        let attempts = Arc::new(AtomicUsize::new(0));
        let endpoint = format!("http://{}/signaling", listener.local_addr().unwrap());
        let server = {
            let (callbacks, failures_left, attempts) =
                (callbacks.clone(), failures_left.clone(), attempts.clone());
            HttpServer::new(move || {
                let (callbacks, failures_left, attempts) =
                    (callbacks.clone(), failures_left.clone(), attempts.clone());
                App::new().route(
                    "/signaling/transfers/{process}/dataflow/{event}",
                    web::post().to(
                        move |path: web::Path<(String, String)>, body: web::Json<Value>| {
                            let (callbacks, failures_left, attempts) =
                                (callbacks.clone(), failures_left.clone(), attempts.clone());
                            async move {
                                attempts.fetch_add(1, Ordering::Relaxed);
                                if failures_left.load(Ordering::Relaxed) > 0 {
                                    failures_left.fetch_sub(1, Ordering::Relaxed);
                                    return HttpResponse::InternalServerError().finish();
                                }
                                let (process_id, event) = path.into_inner();
                                callbacks.lock().unwrap().push(Callback {
                                    process_id,
                                    event,
                                    body: body.into_inner(),
                                });
                                HttpResponse::Ok().finish()
                            }
                        },
                    ),
                )
            })
            .workers(1)
            .listen(listener)
            .unwrap()
            .run()
        };
        tokio::spawn(server);
        Self {
            callbacks,
            failures_left,
            attempts,
            endpoint,
        }
    }

    /// Starts it on a free port.
    pub fn start(fail_first: usize) -> Self {
        Self::start_on(
            std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
            fail_first,
        )
    }

    /// Makes the next `n` calls fail with 500.
    pub fn fail_next(&self, n: usize) {
        self.failures_left.store(n, Ordering::Relaxed);
    }

    /// Callbacks accepted so far.
    pub fn callbacks(&self) -> Vec<Callback> {
        self.callbacks.lock().unwrap().clone()
    }

    /// Waits for a callback of `event` for `process_id`.
    pub async fn wait_for(&self, process_id: &str, event: &str, timeout: Duration) -> Callback {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(found) = self
                .callbacks()
                .into_iter()
                .find(|c| c.process_id == process_id && c.event == event)
            {
                return found;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {event} callback for {process_id} within {timeout:?}; got {:?}",
                self.callbacks()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The DPS registration message of this control plane.
    pub fn registration(&self, id: &str) -> Value {
        json!({"controlplaneId": id, "endpoint": self.endpoint, "authorization": {"type": "none"}})
    }
}

/// A TCP forwarder that can be closed and reopened on the same port: to a client, the server
/// behind it goes down (connections reset, new ones refused) and comes back.
#[derive(Debug)]
pub struct TcpGate {
    /// The port clients connect to.
    pub port: u16,
    target: std::net::SocketAddr,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl TcpGate {
    /// A closed gate to `target` on a free port.
    pub fn new(target: std::net::SocketAddr) -> Self {
        Self {
            port: test_utils::free_port(),
            target,
            tasks: Arc::default(),
        }
    }

    /// Starts accepting and forwarding.
    pub async fn open(&self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        let (target, tasks) = (self.target, self.tasks.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    break;
                };
                let handle = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().unwrap().push(handle);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    /// Stops accepting and cuts every forwarded connection.
    pub fn close(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

/// A CA, and a certificate it signed for `127.0.0.1` and `localhost`, written as `ca.pem`,
/// `cert.pem` and `key.pem` into `dir`, for tests that serve or trust TLS. Returns the CA's PEM.
pub fn write_test_pki(dir: &Path) -> String {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = vec![
        SanType::IpAddress("127.0.0.1".parse().unwrap()),
        SanType::DnsName("localhost".try_into().unwrap()),
    ];
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    ca.pem()
}
