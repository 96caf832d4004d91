//! Pods as processes: a replica started with the environment the manifests give its pod, the
//! client Service (calls spread over the replicas in service), the kubelet's probes, and a
//! StatefulSet's rolling update of one replica.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use system_tests::{binary, Launcher};

use super::manifest::{self, StatefulSet};
use super::probes::{probe_client, probe_loop, probe_status, Monitor};

/// Maps a path of the pod (its volume, its TLS Secret) to the test's directories.
fn map_path(value: &str, root: &Path, data: &Path) -> Option<String> {
    let tls = [
        ("/etc/dpf/tls/tls.crt", "cert.pem"),
        ("/etc/dpf/tls/tls.key", "key.pem"),
        ("/etc/dpf/tls/ca.crt", "ca.pem"),
    ];
    if let Some((_, file)) = tls.iter().find(|(path, _)| *path == value) {
        return Some(root.join(file).display().to_string());
    }
    value
        .strip_prefix("/data")
        .map(|rest| format!("{}{rest}", data.display()))
}

/// The selector of `selector-configmap.yaml` and `selector-deployment.yaml`, on loopback.
pub fn start_selector(root: &Path, secrets: &BTreeMap<String, String>) -> Launcher {
    let mut env = manifest::map_block("selector-configmap.yaml", "data");
    for key in ["DPF_STORE_URL", "EDC_DPF_SELECTOR_API_KEY"] {
        env.insert(key.to_owned(), secrets[key].clone());
    }
    env.insert(
        "DPF_TLS_CERT".into(),
        root.join("cert.pem").display().to_string(),
    );
    env.insert(
        "DPF_TLS_KEY".into(),
        root.join("key.pem").display().to_string(),
    );
    env.insert("WEB_HTTP_HOST".into(), "127.0.0.1".into());
    let dir = root.join("selector");
    std::fs::create_dir_all(&dir).unwrap();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Launcher::start_strict("selector-launcher", &[], &env, &dir)
}

/// One replica: the environment of its pod and, while it runs, its process.
#[derive(Debug)]
pub struct Pod {
    pub name: String,
    pub base_url: String,
    env: BTreeMap<String, String>,
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Pod {
    /// Pod `index` of the StatefulSet: ConfigMap and Secret (`envFrom`), then the `env` list
    /// with `$(VAR)` expanded, then what differs for a process (see rolling.rs).
    pub fn new(
        set: &StatefulSet,
        index: usize,
        root: &Path,
        secrets: &BTreeMap<String, String>,
        selector_url: &str,
    ) -> Self {
        let name = format!("{}-{index}", set.name);
        let dir = root.join(&name);
        let data = dir.join("data");
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut env = manifest::map_block(&format!("{}.yaml", config_map_file(set)), "data");
        env.extend(secrets.clone());
        for (variable, field) in &set.field_env {
            let value = match field.as_str() {
                "metadata.name" => name.clone(),
                "metadata.namespace" => "default".to_owned(),
                other => panic!("fieldRef {other} is not provided by this test"),
            };
            env.insert(variable.clone(), value);
        }
        for (variable, value) in &set.env {
            let expanded = manifest::expand(value, &env);
            env.insert(variable.clone(), expanded);
        }
        // A process instead of a pod.
        env.insert("WEB_HTTP_HOST".into(), "127.0.0.1".into());
        env.insert("WEB_HTTP_PORT".into(), port.to_string());
        let public = env.get("DPF_PUBLIC_URL").cloned().unwrap();
        let (scheme, rest) = public.split_once("://").unwrap();
        let path = rest.split_once('/').map_or("", |(_, path)| path);
        env.insert(
            "DPF_PUBLIC_URL".into(),
            format!("{scheme}://127.0.0.1:{port}/{path}"),
        );
        env.insert("EDC_DPF_SELECTOR_URL".into(), selector_url.to_owned());
        env.insert("DPF_HTTP_INSECURE".into(), "true".into());
        env.insert("DPF_TRANSFER_DENIED_NETWORKS".into(), String::new());
        for value in env.values_mut() {
            if value.starts_with('/') {
                *value = map_path(value, root, &data)
                    .unwrap_or_else(|| panic!("no mapping for the pod path {value}"));
            }
        }
        Self {
            base_url: format!("https://127.0.0.1:{port}/api/v1"),
            log: dir.join("stderr.log"),
            name,
            env,
            dir,
            child: None,
        }
    }

    /// Starts the process (a pod's container) and waits for its address on stdout.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut child = Command::new(binary("dataplane-launcher"))
            .env_clear()
            .envs(&self.env)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(
            line.trim().ends_with(&self.base_url),
            "{} did not start: {line:?}; log: {}",
            self.name,
            self.log_tail()
        );
        std::thread::spawn(move || for _ in reader.lines() {});
        self.child = Some(child);
    }

    /// SIGTERM (as the kubelet sends after preStop); returns the exit code and how long it took.
    pub fn terminate(&mut self, grace: Duration) -> (Option<i32>, Duration) {
        let child = self.child.as_mut().unwrap();
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let sent = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return (status.code(), sent.elapsed());
            }
            if sent.elapsed() > grace {
                // The kubelet's SIGKILL at the end of the grace period.
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                return (None, sent.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn config_map_file(set: &StatefulSet) -> &'static str {
    assert_eq!(set.config_map, "dpf-dataplane-config");
    "dataplane-configmap"
}

/// What the kubelet and the Services know of a replica.
#[derive(Debug, Clone, Default)]
pub(super) struct Status {
    pub(super) base_url: String,
    /// Running (probed) rather than starting, terminating or stopped.
    pub(super) running: bool,
    /// An endpoint of the client Service.
    pub(super) in_service: bool,
    /// Bumped at every start.
    pub(super) incarnation: u32,
}

/// The replicas of the StatefulSet, the client Service and the probes.
#[derive(Debug)]
pub struct Cluster {
    set: StatefulSet,
    pods: Vec<Pod>,
    status: Arc<Mutex<Vec<Status>>>,
    api: reqwest::Client,
    next: AtomicUsize,
}

impl Cluster {
    pub fn new(_root: &Path, ca: &str, key: &str, set: StatefulSet) -> Self {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {key}").parse().unwrap(),
        );
        let api = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
            .default_headers(headers)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Self {
            set,
            pods: Vec::new(),
            status: Arc::default(),
            api,
            next: AtomicUsize::new(0),
        }
    }

    /// Starts every pod at once (`podManagementPolicy: Parallel`).
    pub fn start_all(&mut self, pods: Vec<Pod>) {
        let handles: Vec<_> = pods
            .into_iter()
            .map(|mut pod| {
                std::thread::spawn(move || {
                    pod.spawn();
                    pod
                })
            })
            .collect();
        self.pods = handles.into_iter().map(|h| h.join().unwrap()).collect();
        *self.status.lock().unwrap() = self
            .pods
            .iter()
            .map(|pod| Status {
                base_url: pod.base_url.clone(),
                running: true,
                in_service: false,
                incarnation: 1,
            })
            .collect();
    }

    pub async fn wait_all_ready(&self, timeout: Duration) {
        for index in 0..self.pods.len() {
            self.wait_ready(index, timeout).await;
        }
    }

    /// Polls the readiness probe until it passes; then the pod is an endpoint of the Service.
    async fn wait_ready(&self, index: usize, timeout: Duration) -> Duration {
        let started = Instant::now();
        let probe = probe_client();
        let url = format!("{}{}", self.pods[index].base_url, ready_path(&self.set));
        loop {
            if probe_status(&probe, &url, &self.set.readiness).await == Some(200) {
                self.status.lock().unwrap()[index].in_service = true;
                return started.elapsed();
            }
            assert!(
                started.elapsed() < timeout,
                "{} not ready within {timeout:?}: {}",
                self.pods[index].name,
                self.pods[index].log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A call through the client Service: to the endpoints in service, in turn; a refused
    /// connection or a 503 is tried on the next one.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let endpoints: Vec<String> = self
                .status
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.in_service)
                .map(|s| s.base_url.clone())
                .collect();
            let base = &endpoints[self.next.fetch_add(1, Ordering::Relaxed) % endpoints.len()];
            let mut request = self.api.request(method.clone(), format!("{base}{path}"));
            if let Some(body) = body {
                request = request.json(body);
            }
            let outcome = match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let value = response.json().await.unwrap_or(Value::Null);
                    (status != 503).then_some((status, value))
                }
                Err(_) => None,
            };
            if let Some(answer) = outcome {
                return answer;
            }
            assert!(
                Instant::now() < deadline,
                "{method} {path}: no endpoint answered"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The rolling update of one pod, as the StatefulSet controller and the kubelet do it.
    pub async fn roll(&mut self, index: usize) {
        {
            let mut status = self.status.lock().unwrap();
            status[index].in_service = false;
            status[index].running = false;
        }
        tokio::time::sleep(Duration::from_secs(self.set.pre_stop_sleep_seconds)).await;
        let grace = Duration::from_secs(
            self.set.termination_grace_seconds - self.set.pre_stop_sleep_seconds,
        );
        let pod = &mut self.pods[index];
        let (code, took) = tokio::task::block_in_place(|| pod.terminate(grace));
        assert_eq!(
            code,
            Some(0),
            "{} did not drain within the grace period ({took:?}): {}",
            pod.name,
            pod.log_tail()
        );
        let restarted = Instant::now();
        tokio::task::block_in_place(|| pod.spawn());
        let listening = restarted.elapsed();
        assert!(
            listening < Duration::from_secs(self.set.liveness.initial_delay_seconds),
            "{} answered its liveness probe only after {listening:?}",
            pod.name
        );
        {
            let mut status = self.status.lock().unwrap();
            status[index].running = true;
            status[index].incarnation += 1;
        }
        let ready = self.wait_ready(index, Duration::from_secs(60)).await;
        println!(
            "rolled {}: drained in {:.2} s (SIGTERM → exit 0), listening after {:.2} s, ready after {:.2} s",
            self.pods[index].name,
            took.as_secs_f64(),
            listening.as_secs_f64(),
            ready.as_secs_f64()
        );
    }

    /// Starts probing every running pod as the kubelet does (and more often).
    pub fn monitor(&self) -> Monitor {
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(probe_loop(
            self.set.clone(),
            self.status.clone(),
            stop.clone(),
        ));
        Monitor { stop, task }
    }

    pub fn stop_all(&mut self) {
        self.pods.clear();
    }
}

pub(super) fn ready_path(set: &StatefulSet) -> &str {
    set.readiness.path.trim_start_matches("/api/v1")
}
