//! What the dpf launchers share, so that each `main` only composes: the command line
//! ([`Cli`]), logging, opening the store named by `dpf.store.url`, assembling a data plane from
//! configuration ([`build_data_plane`]) and registering it with a selector
//! ([`spawn_self_registration`]). Launcher support, so it may use `anyhow`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use address_policy::AddressPolicy;
use anyhow::Context;
use clap::{Parser, Subcommand};
use dataplane_manager::{
    CallbackDispatcher, ControlPlaneRegistry, DataPlane, DataPlaneConfig, DatasetRegistry,
};
use dataplane_spi::{
    ControlPlaneRegistration, DataFlowStore, TransferRegistry, HTTP_PULL, HTTP_PUSH,
};
use dataplane_store_sql::{SqlStore, SqlStoreOptions, StoreUrl, DEFAULT_STORE_URL};
use dpf_config::Config;
use selector_client::SelectorClient;
use selector_spi::DataPlaneRegistration;

/// Key prefixes shown by `--dump-config`.
pub const DUMP_PREFIXES: &[&str] = &["web.", "dpf.", "edc."];

/// The command line of every launcher.
#[derive(Debug, Parser)]
#[command(version)]
pub struct Cli {
    /// A Java .properties file with configuration keys.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Set a configuration key (highest precedence); repeatable.
    #[arg(short = 'D', long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Print the effective configuration and exit.
    #[arg(long)]
    pub dump_config: bool,
    /// What to do instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending store migrations and exit.
    Migrate,
}

/// Loads the configuration: `defaults`, the `--config` file, the environment, `-D` flags.
///
/// # Errors
/// Unreadable file or malformed entries.
pub fn load_config(cli: &Cli, defaults: &[(&str, &str)]) -> anyhow::Result<Config> {
    Ok(Config::load(defaults, cli.config.as_deref(), &cli.set)?)
}

/// Text or JSON logs on stderr, filtered by `RUST_LOG` or `dpf.log.level`. Every line carries
/// the process's runtime id (`edc.runtime.id`, else `default_runtime`): text lines start with
/// `runtime=ID`, JSON objects have a `runtimeId` field. Flow and process ids are fields of the
/// events that concern a flow. No line shows a secret: the values of secret configuration keys
/// and the passwords of URLs are masked (`dpf_config::mask_secrets`).
pub fn init_logging(config: &Config, default_runtime: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(config.get_or("dpf.log.level", "info"))
    });
    use std::io::IsTerminal;
    let runtime = config.get_or("edc.runtime.id", default_runtime).to_owned();
    let writer = RedactingStderr::new(config.secret_values());
    // Colours only on a terminal: log files and collectors get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    if config.get_or("dpf.log.format", "text") == "json" {
        let format = tracing_subscriber::fmt::format().json();
        builder
            .event_format(RuntimeTagged::json(runtime, format))
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .init();
    } else {
        let format = tracing_subscriber::fmt::format();
        builder
            .event_format(RuntimeTagged::text(runtime, format))
            .init();
    }
}

/// Adds the runtime id to every event an inner formatter writes.
struct RuntimeTagged<F> {
    inner: F,
    /// Text: `runtime=ID `. JSON: `"runtimeId":"ID",` (inserted after the opening brace).
    tag: String,
    json: bool,
}

impl<F> RuntimeTagged<F> {
    fn text(runtime: String, inner: F) -> Self {
        Self {
            inner,
            tag: format!("runtime={runtime} "),
            json: false,
        }
    }

    fn json(runtime: String, inner: F) -> Self {
        let value = serde_json::Value::String(runtime);
        Self {
            inner,
            tag: format!("\"runtimeId\":{value},"),
            json: true,
        }
    }
}

/// Standard error, with every line passed through `dpf_config::mask_secrets` first: the fmt
/// layer writes each event with one `write_all`, so each write is one whole line.
#[derive(Debug, Clone)]
pub struct RedactingStderr {
    secrets: Arc<Vec<String>>,
}

impl RedactingStderr {
    /// Masks `secrets` (and URL passwords) in everything written.
    pub fn new(secrets: Vec<String>) -> Self {
        Self {
            secrets: Arc::new(secrets),
        }
    }

    /// `line` as it would be written.
    pub fn mask(&self, line: &str) -> String {
        dpf_config::mask_secrets(line, &self.secrets)
    }
}

impl std::io::Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(self.mask(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactingStderr {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for RuntimeTagged<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        if !self.json {
            writer.write_str(&self.tag)?;
            return self.inner.format_event(ctx, writer, event);
        }
        let mut line = String::new();
        self.inner.format_event(
            ctx,
            tracing_subscriber::fmt::format::Writer::new(&mut line),
            event,
        )?;
        match line.strip_prefix('{') {
            Some(rest) => {
                writer.write_char('{')?;
                writer.write_str(&self.tag)?;
                writer.write_str(rest)
            }
            None => writer.write_str(&line),
        }
    }
}

/// Opens the SQL store named by `dpf.store.url` (applying migrations), or `None` for `memory:`.
///
/// # Errors
/// A bad URL, or a database that cannot be opened (the message names the URL without its
/// password).
pub async fn open_sql_store(config: &Config) -> anyhow::Result<Option<SqlStore>> {
    let url = StoreUrl::parse(config.get_or("dpf.store.url", DEFAULT_STORE_URL))
        .map_err(|e| anyhow::Error::msg(dpf_config::redact_urls_in_text(&e)))?;
    if url == StoreUrl::Memory {
        return Ok(None);
    }
    let options = SqlStoreOptions {
        pool_size: config.parse_or("dpf.store.pool.size", 10)?,
        ..SqlStoreOptions::default()
    };
    let store = SqlStore::open(&url, options)
        .await
        .with_context(|| format!("cannot open the store {url} (dpf.store.url)"))?;
    tracing::info!(store = %url, "store opened");
    Ok(Some(store))
}

/// Runs the `migrate` subcommand if it was given; returns whether it ran.
///
/// # Errors
/// As [`open_sql_store`].
pub async fn run_migrate_if_asked(cli: &Cli, config: &Config) -> anyhow::Result<bool> {
    if !matches!(cli.command, Some(Command::Migrate)) {
        return Ok(false);
    }
    match open_sql_store(config).await? {
        Some(_) => println!(
            "store {} is up to date",
            dpf_config::redact_value(
                "dpf.store.url",
                config.get_or("dpf.store.url", DEFAULT_STORE_URL)
            )
        ),
        None => println!("memory: needs no migration"),
    }
    Ok(true)
}

/// Data-plane defaults shared by the data-plane and embedded launchers.
pub const DATA_PLANE_DEFAULTS: &[(&str, &str)] = &[
    ("dpf.store.url", DEFAULT_STORE_URL),
    ("dpf.store.pool.size", "10"),
    ("edc.runtime.id", "dataplane"),
    ("edc.dataplane.state-machine.flow.lease.time", "2000"),
    (
        "edc.dataplane.state-machine.flow.lease.renew-interval",
        "500",
    ),
    ("edc.dataplane.state-machine.claim.interval", "250"),
    ("edc.dataplane.state-machine.batch-size", "20"),
    ("dpf.transfer.retry.limit", "5"),
    ("dpf.transfer.retry.backoff", "500"),
    ("dpf.signaling.stop.wait", "10000"),
    ("dpf.callback.retry.limit", "10"),
    ("dpf.callback.retry.backoff", "500"),
    ("dpf.consumer.destination.dir", "received"),
    ("dpf.dataplane.max-concurrent-flows", "0"),
    ("dpf.retention.age", "604800000"),
    ("dpf.transfer.allow-file-addresses", "false"),
    ("dpf.transfer.file.root", "./dpf-data/files"),
    (
        "dpf.transfer.denied-networks",
        address_policy::SERVER_DENIED_NETWORKS,
    ),
    ("dpf.http.insecure", "false"),
    ("dpf.checkpoint.bytes", "67108864"),
    ("dpf.checkpoint.interval", "5000"),
    ("dpf.api.auth.disabled", "false"),
    ("dpf.api.max-watchers", "64"),
    ("dpf.log.level", "info"),
    ("dpf.log.format", "text"),
];

/// Builds a data plane from configuration over `store`. `public_base_url` is where this
/// replica's `/api/v1` is reachable (`dpf.public.url`, else derived from the bound address).
///
/// # Errors
/// Invalid values, incomplete datasets or control planes.
pub fn build_data_plane(
    config: &Config,
    store: Arc<dyn DataFlowStore>,
    coordinator: Arc<dyn dataplane_spi::Coordinator>,
    public_base_url: &str,
) -> anyhow::Result<Arc<DataPlane>> {
    let millis = |key: &str, default: u64| -> anyhow::Result<Duration> {
        Ok(Duration::from_millis(config.parse_or(key, default)?))
    };
    let mut settings = DataPlaneConfig::new(
        config.get_or("edc.runtime.id", "dataplane"),
        public_base_url,
    );
    settings.lease = millis("edc.dataplane.state-machine.flow.lease.time", 2000)?;
    settings.renew_interval = millis("edc.dataplane.state-machine.flow.lease.renew-interval", 500)?;
    settings.claim_interval = millis("edc.dataplane.state-machine.claim.interval", 250)?;
    settings.claim_batch = config.parse_or("edc.dataplane.state-machine.batch-size", 20)?;
    settings.retry_limit = config.parse_or("dpf.transfer.retry.limit", 5)?;
    settings.retry_backoff = millis("dpf.transfer.retry.backoff", 500)?;
    settings.stop_wait = millis("dpf.signaling.stop.wait", 10_000)?;
    settings.initial_baseline = config.get("dpf.cluster.baseline").map(|list| {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    });
    settings.min_live = config.parse("dpf.cluster.baseline.min-live")?;
    settings.data_dir = PathBuf::from(config.get_or("dpf.data.dir", "./dpf-data"));
    // The data directory is the replica's own: owner-only (0700), tightened if it was not.
    if dataplane_spi::secrets::restrict_dir(&settings.data_dir)
        .with_context(|| format!("cannot create dpf.data.dir {}", settings.data_dir.display()))?
    {
        tracing::warn!(dir = %settings.data_dir.display(), "dpf.data.dir was accessible to other users; restricted it to its owner (0700)");
    }
    settings.max_concurrent_flows = config.parse_or("dpf.dataplane.max-concurrent-flows", 0)?;
    settings.checkpoints = dataplane_manager::pipeline::CheckpointPolicy {
        bytes: config.parse_or("dpf.checkpoint.bytes", 64 * 1024 * 1024)?,
        interval: millis("dpf.checkpoint.interval", 5000)?,
    };
    anyhow::ensure!(
        !settings.checkpoints.interval.is_zero(),
        "dpf.checkpoint.interval must be at least 1 (milliseconds)"
    );
    settings.retention = millis("dpf.retention.age", 604_800_000)?;
    settings.max_bytes = config
        .parse::<u64>("dpf.transfer.max-bytes")?
        .filter(|max| *max > 0);
    settings.consumer_destination_dir =
        PathBuf::from(config.get_or("dpf.consumer.destination.dir", "received"));
    settings.address_policy = address_policy(config, &settings.data_dir)?;
    anyhow::ensure!(
        settings.renew_interval < settings.lease,
        "the lease renew interval ({:?}) must be shorter than the lease ({:?})",
        settings.renew_interval,
        settings.lease
    );

    let policy = settings.address_policy.clone();
    let transfer_client = outbound_client(config, &policy, transfer_http::transfer_settings)?;
    let transfers = TransferRegistry::builder()
        .source(Arc::new(transfer_fs::FileSourceFactory::with_policy(
            policy.clone(),
        )))
        .and_then(|b| {
            b.sink(Arc::new(transfer_fs::FileSinkFactory::with_policy(
                policy.clone(),
            )))
        })
        .and_then(|b| {
            b.source(Arc::new(
                transfer_http::HttpSourceFactory::new(transfer_client.clone())
                    .with_policy(policy.clone()),
            ))
        })
        .and_then(|b| {
            b.sink(Arc::new(
                transfer_http::HttpSinkFactory::new(transfer_client).with_policy(policy.clone()),
            ))
        })
        .map_err(anyhow::Error::msg)?
        .build();
    let mut known = transfers.source_types();
    known.extend(transfers.sink_types());
    let datasets =
        DatasetRegistry::from_entries(&config.with_prefix("dpf.dataset."), &known, policy.clone())?;

    let control_planes = Arc::new(ControlPlaneRegistry::with_policy(policy.clone()));
    let mut endpoints: Vec<(String, String)> = config
        .with_prefix("dpf.controlplane.")
        .into_iter()
        .filter_map(|(key, value)| {
            key.strip_suffix(".endpoint")
                .map(|id| (id.to_owned(), value))
        })
        .collect();
    endpoints.sort();
    for (id, endpoint) in endpoints {
        // dpf.controlplane.<id>.authorization.<property>: the credential its callbacks carry
        // (the DPS authorization object, e.g. type=bearer and token=…).
        let mut authorization = serde_json::Map::new();
        for (property, value) in
            config.with_prefix(&format!("dpf.controlplane.{id}.authorization."))
        {
            authorization.insert(property, value.into());
        }
        let authorization = if authorization.is_empty() {
            serde_json_none()
        } else {
            serde_json::Value::Object(authorization)
        };
        control_planes
            .put(ControlPlaneRegistration {
                controlplane_id: id.clone(),
                endpoint,
                authorization,
            })
            .with_context(|| format!("dpf.controlplane.{id}.endpoint"))?;
    }
    let callback_client = outbound_client(config, &policy, |b| {
        b.connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
    })?;
    let callbacks = CallbackDispatcher::with_client(
        control_planes.clone(),
        callback_client,
        config.parse_or("dpf.callback.retry.limit", 10)?,
        millis("dpf.callback.retry.backoff", 500)?,
    );
    Ok(DataPlane::new(
        store,
        coordinator,
        transfers,
        Arc::new(datasets),
        control_planes,
        callbacks,
        settings,
    ))
}

/// The address policy every address of this replica passes through (docs/security.md):
/// `dpf.transfer.file.root` (created 0700), `dpf.transfer.denied-networks`,
/// `dpf.transfer.allowed-hosts`, `dpf.transfer.allow-file-addresses`, HTTPS unless
/// `dpf.http.insecure=true`. The replica's own files (the SQLite store, `cluster.json` in
/// `dpf.data.dir`, TLS keys, the configuration file) are never a transfer target.
///
/// # Errors
/// An invalid network or an unusable root.
pub fn address_policy(
    config: &Config,
    data_dir: &std::path::Path,
) -> anyhow::Result<AddressPolicy> {
    // An explicitly empty value denies nothing; unset falls back to the server default.
    let denied = config
        .get_raw("dpf.transfer.denied-networks")
        .unwrap_or(address_policy::SERVER_DENIED_NETWORKS);
    let denied = address_policy::parse_networks(denied)
        .map_err(|e| anyhow::anyhow!("dpf.transfer.denied-networks: {e}"))?;
    let allowed = config
        .get("dpf.transfer.allowed-hosts")
        .map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let mut builder = AddressPolicy::builder()
        .file_root(config.get_or("dpf.transfer.file.root", "./dpf-data/files"))
        .allow_file_urls(config.parse_or("dpf.transfer.allow-file-addresses", false)?)
        .require_https(!config.parse_or("dpf.http.insecure", false)?)
        .denied_networks(denied)
        .allowed_hosts(allowed)
        .protect(data_dir.join("cluster.json"));
    if let Ok(StoreUrl::Sqlite(file)) =
        StoreUrl::parse(config.get_or("dpf.store.url", DEFAULT_STORE_URL))
    {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut name = file.clone().into_os_string();
            name.push(suffix);
            builder = builder.protect(PathBuf::from(name));
        }
    }
    for key in ["dpf.tls.cert", "dpf.tls.key", "dpf.tls.ca"] {
        if let Some(path) = config.get(key) {
            builder = builder.protect(path);
        }
    }
    builder.build().map_err(|e| anyhow::anyhow!("{e}"))
}

/// The extra CA (`dpf.tls.ca`, PEM) outbound HTTPS calls trust besides the system's roots.
fn extra_ca(config: &Config) -> anyhow::Result<Option<Vec<u8>>> {
    config
        .get("dpf.tls.ca")
        .map(|path| std::fs::read(path).with_context(|| format!("cannot read dpf.tls.ca {path}")))
        .transpose()
}

/// An HTTP client for outbound calls, trusting `dpf.tls.ca` when set.
fn outbound_client(
    config: &Config,
    policy: &AddressPolicy,
    settings: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
) -> anyhow::Result<reqwest::Client> {
    let mut builder = settings(policy.client_builder());
    if let Some(pem) = extra_ca(config)? {
        builder = builder.add_root_certificate(
            reqwest::Certificate::from_pem(&pem).context("dpf.tls.ca is not a PEM certificate")?,
        );
    }
    builder.build().context("cannot build the HTTP client")
}

/// The rustls server configuration from `dpf.tls.cert` and `dpf.tls.key` (PEM), if both are set.
pub fn server_tls(config: &Config) -> anyhow::Result<Option<rustls::ServerConfig>> {
    use rustls_pki_types::pem::PemObject;
    let (Some(cert), Some(key)) = (config.get("dpf.tls.cert"), config.get("dpf.tls.key")) else {
        anyhow::ensure!(
            config.get("dpf.tls.cert").is_none() && config.get("dpf.tls.key").is_none(),
            "dpf.tls.cert and dpf.tls.key go together"
        );
        return Ok(None);
    };
    let chain = rustls_pki_types::CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read dpf.tls.cert {cert}"))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("dpf.tls.cert {cert} is not PEM"))?;
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read the key dpf.tls.key {key}"))?;
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS protocol versions")?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .context("dpf.tls.cert and dpf.tls.key do not form a usable pair")?;
    Ok(Some(tls))
}

fn serde_json_none() -> serde_json::Value {
    serde_json::json!({"type": "none"})
}

/// The DPS registration this replica sends to the selector.
pub fn registration_for(config: &Config, plane: &DataPlane) -> DataPlaneRegistration {
    let id = config
        .get("dpf.dataplane.id")
        .map_or_else(|| plane.config().runtime_id.clone(), str::to_owned);
    let endpoint = config.get("dpf.dataplane.endpoint").map_or_else(
        || {
            format!(
                "{}/signaling",
                plane.config().public_base_url.trim_end_matches('/')
            )
        },
        str::to_owned,
    );
    let mut registration =
        DataPlaneRegistration::new(id, endpoint, vec![HTTP_PUSH.into(), HTTP_PULL.into()]);
    registration.authorization = Some(DataPlaneRegistration::no_authorization());
    registration.labels = config
        .get("dpf.dataplane.labels")
        .map(|l| {
            l.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    registration.allowed_source_types = plane.transfers().source_types();
    registration
}

/// The client a replica registers with a standalone selector at `url` through: it sends
/// `edc.dpf.selector.api-key` (as `Authorization: Bearer`) when set, trusts `dpf.tls.ca` besides
/// the system's roots, and follows no redirects. The selector's URL is operator
/// configuration, so `dpf.transfer.denied-networks` does not apply to it.
///
/// # Errors
/// A malformed URL or an unreadable or invalid `dpf.tls.ca`.
pub fn remote_selector_client(
    config: &Config,
    url: &str,
) -> anyhow::Result<selector_client::RemoteSelectorClient> {
    let mut settings = selector_client::RemoteSelectorClientConfig::new(url);
    settings.api_key = config
        .get("edc.dpf.selector.api-key")
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .map(str::to_owned);
    settings.ca_pem = extra_ca(config)?;
    if settings.api_key.is_none() {
        tracing::info!(
            "edc.dpf.selector.api-key is not set: registering with the selector without a key"
        );
    }
    selector_client::RemoteSelectorClient::new(settings)
        .context("cannot build the selector client (edc.dpf.selector.url, dpf.tls.ca)")
}

/// Registers with the selector now and every `interval` (the DPS registration is idempotent,
/// so a selector that lost its state learns about this replica again). An unreachable
/// selector is a warning and a retry with backoff, never a crash.
pub fn spawn_self_registration(
    client: Arc<dyn SelectorClient>,
    registration: DataPlaneRegistration,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(250);
        let mut registered = false;
        loop {
            match client.register(&registration).await {
                Ok(instance) => {
                    if !registered {
                        tracing::info!(dataplane = %instance.id, endpoint = %instance.endpoint, "registered with the selector");
                    }
                    registered = true;
                    backoff = Duration::from_millis(250);
                    tokio::time::sleep(interval).await;
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "cannot register with the selector; retrying");
                    registered = false;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    })
}

/// Which selector a data-plane process talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectorMode {
    /// A standalone selector at `edc.dpf.selector.url` (optional: no registration when unset).
    Remote,
    /// A selector embedded in this process, served at `/api/v1/selector`.
    Embedded,
}

/// Runs a data-plane process (the data-plane and embedded launchers): parses the command line,
/// opens the store, joins the cluster, serves the API, registers with the selector, and on
/// SIGINT/SIGTERM stops serving, stops transfers and leaves the cluster (releasing its flows).
///
/// # Errors
/// Configuration, store, port or membership problems, with a message saying which key to fix.
pub async fn run_data_plane_process(
    mode: SelectorMode,
    defaults: &[(&str, &str)],
) -> anyhow::Result<()> {
    use actix_web::{web, App, HttpServer};

    let cli = Cli::parse();
    let mut all_defaults: Vec<(&str, &str)> = DATA_PLANE_DEFAULTS.to_vec();
    all_defaults.extend_from_slice(defaults);
    let config = load_config(&cli, &all_defaults)?;
    if cli.dump_config {
        println!("{}", config.dump(DUMP_PREFIXES));
        return Ok(());
    }
    init_logging(&config, "dataplane");
    if run_migrate_if_asked(&cli, &config).await? {
        return Ok(());
    }
    let host = config.get_or("web.http.host", "127.0.0.1").to_owned();
    let port: u16 = config.parse_or("web.http.port", 8282)?;
    let workers: usize = config.parse_or("web.http.workers", 2)?;
    let listener = std::net::TcpListener::bind((host.as_str(), port)).with_context(|| {
        format!("cannot listen on {host}:{port} (web.http.host / web.http.port)")
    })?;
    let address = listener.local_addr()?;
    let auth = api_auth(&config, address)?;
    let max_watchers: usize =
        config.parse_or("dpf.api.max-watchers", dataplane_api::DEFAULT_MAX_WATCHERS)?;
    let api_options = dataplane_api::ApiOptions::new(max_watchers);
    let tls = server_tls(&config)?;
    let insecure: bool = config.parse_or("dpf.http.insecure", false)?;
    // HTTPS here, or at a TLS-terminating proxy whose https:// address is dpf.public.url.
    let public_https = config
        .get("dpf.public.url")
        .is_some_and(|url| dataplane_spi::has_scheme(url, "https"));
    anyhow::ensure!(
        tls.is_some() || public_https || insecure,
        "refusing to serve plain HTTP: the DPS HTTP profile requires HTTPS. Set dpf.tls.cert and \
         dpf.tls.key (or dpf.public.url=https://… behind a TLS-terminating proxy), or \
         dpf.http.insecure=true for development on a trusted network"
    );
    if insecure {
        tracing::warn!("dpf.http.insecure=true: plain HTTP is served and accepted in DPS messages");
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    let public = config
        .get("dpf.public.url")
        .map_or_else(|| format!("{scheme}://{address}/api/v1"), str::to_owned);
    // Printed on stdout as soon as the port answers, so scripts and tests can find it when
    // web.http.port=0 (the store may still be coming up).
    println!("dpf data plane listening on {scheme}://{address}/api/v1");
    if mode == SelectorMode::Embedded {
        println!("dpf selector listening on {scheme}://{address}{EMBEDDED_SELECTOR_PATH}");
    }

    let sql = open_store_patiently(&config, &listener, tls.clone()).await?;
    let (flow_store, coordinator): (Arc<dyn DataFlowStore>, Arc<dyn dataplane_spi::Coordinator>) =
        match &sql {
            Some(store) => (Arc::new(store.clone()), Arc::new(store.clone())),
            None => {
                let memory = Arc::new(dataplane_spi::memory::InMemoryDataFlowStore::new());
                (memory.clone(), memory)
            }
        };

    let plane = build_data_plane(&config, flow_store, coordinator, &public)?;
    let background = plane.run().await.with_context(|| {
        format!(
            "cannot join the cluster as '{}' (edc.runtime.id)",
            plane.config().runtime_id
        )
    })?;

    let selector: Option<Arc<dyn selector_spi::DataPlaneSelector>> = match mode {
        SelectorMode::Embedded => {
            let instances: Arc<dyn selector_spi::DataPlaneInstanceStore> = match &sql {
                Some(store) => Arc::new(store.clone()),
                None => Arc::new(selector_core::InMemoryInstanceStore::new()),
            };
            let registry = selector_core::default_registry_builder()
                .default_strategy(config.get_or("edc.dpf.selector.strategy", "random"))
                .build()
                .context("invalid edc.dpf.selector.strategy")?;
            let selector: Arc<dyn selector_spi::DataPlaneSelector> = Arc::new(
                selector_core::DefaultDataPlaneSelector::new(instances, registry),
            );
            let seeds = selector_core::seed::registrations_from_entries(
                &config.with_prefix(selector_core::seed::SEED_PREFIX),
            )?;
            selector_core::seed::apply(selector.as_ref(), &seeds).await?;
            Some(selector)
        }
        SelectorMode::Remote => None,
    };
    let client: Option<Arc<dyn SelectorClient>> = match (
        &selector,
        config.get("edc.dpf.selector.url"),
    ) {
        (Some(selector), _) => Some(Arc::new(selector_client::LocalSelectorClient::new(
            selector.clone(),
        ))),
        (None, Some(url)) if dataplane_spi::has_scheme(url, "http") && !insecure => {
            anyhow::bail!(
                    "edc.dpf.selector.url {url} is plain HTTP: use https:// or dpf.http.insecure=true for development"
                )
        }
        (None, Some(url)) => Some(Arc::new(remote_selector_client(&config, url)?)),
        (None, None) => {
            tracing::info!("edc.dpf.selector.url is not set: not registering with a selector");
            None
        }
    };
    let registration_task = client.map(|client| {
        spawn_self_registration(
            client,
            registration_for(&config, &plane),
            Duration::from_secs(30),
        )
    });

    let app_plane = plane.clone();
    let server = HttpServer::new(move || {
        // Each API wraps its own protected scope with the key middleware, which reads this.
        let mut app = App::new().app_data(web::Data::new(auth.clone()));
        if let Some(selector) = &selector {
            app = app.configure(selector_api::configure_at(
                EMBEDDED_SELECTOR_PATH,
                selector.clone(),
            ));
        }
        app.configure(dataplane_api::configure_with(
            app_plane.clone(),
            api_options.clone(),
        ))
        .default_service(web::to(api_common::not_found_handler))
    })
    .workers(workers.max(1))
    // On SIGTERM, in-flight requests get a few seconds; then transfers stop and the replica
    // leaves the cluster, releasing its flows to its peers.
    .shutdown_timeout(5);
    let server = match tls {
        Some(tls) => server.listen_rustls_0_23(listener, tls)?,
        None => server.listen(listener)?,
    }
    .run();
    tracing::info!(%address, runtime_id = %plane.config().runtime_id, public = %public, "data plane started");
    server.await?;
    if let Some(task) = registration_task {
        task.abort();
    }
    background.shutdown().await;
    tracing::info!("data plane stopped");
    Ok(())
}

/// Prefix of the per-control-plane keys: `dpf.api.auth.controlplane.<participantId>.key`.
pub const CONTROL_PLANE_KEY_PREFIX: &str = "dpf.api.auth.controlplane.";

/// The API's keys and roles (`dpf.api.auth.key`, `dpf.api.auth.controlplane.<participantId>.key`)
/// and the rules for serving without any: a non-loopback `bind` refuses to start unless
/// `dpf.api.auth.disabled=true`; on loopback, requests must name a loopback host or the host of
/// `dpf.public.url` (`Host` check against DNS rebinding). Never logs a key.
///
/// # Errors
/// A malformed key name, an empty or duplicate key, or a non-loopback bind without a key.
pub fn api_auth(
    config: &Config,
    bind: std::net::SocketAddr,
) -> anyhow::Result<api_common::AuthConfig> {
    let mut auth = api_common::AuthConfig::admin(config.get("dpf.api.auth.key").map(str::trim));
    for (rest, value) in config.with_prefix(CONTROL_PLANE_KEY_PREFIX) {
        let participant = rest
            .len()
            .checked_sub(".key".len())
            .filter(|&at| rest.is_char_boundary(at) && rest[at..].eq_ignore_ascii_case(".key"))
            .map(|at| &rest[..at])
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "unknown setting {CONTROL_PLANE_KEY_PREFIX}{rest}: per-control-plane keys are \
                     {CONTROL_PLANE_KEY_PREFIX}<participantId>.key"
                )
            })?;
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        auth = auth
            .with_control_plane(participant, value)
            .map_err(|e| anyhow::anyhow!("{CONTROL_PLANE_KEY_PREFIX}{participant}.key: {e}"))?;
    }
    let disabled: bool = config.parse_or("dpf.api.auth.disabled", false)?;
    if auth.has_keys() {
        if disabled {
            tracing::warn!("dpf.api.auth.disabled=true is ignored: API keys are configured");
        }
        let participants = auth.participants();
        if !participants.is_empty() {
            tracing::info!(?participants, "per-control-plane API keys configured");
        }
        return Ok(auth);
    }
    if disabled {
        tracing::warn!("dpf.api.auth.disabled=true: the management, signaling and cluster APIs are open to anyone who can reach them");
        return Ok(auth);
    }
    anyhow::ensure!(
        bind.ip().is_loopback(),
        "refusing to serve the API without a key on {bind}, which is not a loopback address \
         (web.http.host): set dpf.api.auth.key (and per-control-plane keys \
         {CONTROL_PLANE_KEY_PREFIX}<participantId>.key), or dpf.api.auth.disabled=true to serve \
         it open on a network you trust"
    );
    let public_host = config
        .get("dpf.public.url")
        .and_then(|url| reqwest::Url::parse(url).ok())
        .and_then(|url| url.host_str().map(str::to_owned));
    tracing::warn!(
        public_host = public_host.as_deref().unwrap_or("(none)"),
        "no API key is configured (dpf.api.auth.key): the API is open on loopback; requests must \
         name a loopback host or the host of dpf.public.url"
    );
    Ok(auth.with_host_check(public_host))
}

/// Offers only the data planes of the cluster's baseline (when one is set): a selector that
/// shares the cluster's store never sends work to a replica that would not run it.
#[derive(Debug)]
pub struct BaselineFilter(pub Arc<dyn dataplane_spi::Coordinator>);

#[async_trait::async_trait]
impl selector_spi::CandidateFilter for BaselineFilter {
    async fn allowed(&self) -> Option<std::collections::BTreeSet<String>> {
        let entry = self
            .0
            .kv_get(dataplane_manager::baseline::BASELINE_KEY)
            .await
            .ok()??;
        serde_json::from_str::<dataplane_manager::baseline::Baseline>(&entry.value)
            .ok()
            .map(|b| b.members)
    }
}

/// Opens the store; while a PostgreSQL store is unreachable, keeps retrying (with backoff, up to
/// 5 s apart) and serves a stand-in on the port: `/health` 200, `/ready` and everything else
/// 503 with the reason. A data plane started before its database therefore comes up on its own
/// instead of crashing.
async fn open_store_patiently(
    config: &Config,
    listener: &std::net::TcpListener,
    tls: Option<rustls::ServerConfig>,
) -> anyhow::Result<Option<SqlStore>> {
    use actix_web::{web, App, HttpResponse, HttpServer};

    let mut backoff = Duration::from_millis(250);
    let mut standin: Option<actix_web::dev::ServerHandle> = None;
    let reason = Arc::new(std::sync::Mutex::new(String::new()));
    let result = loop {
        match open_sql_store(config).await {
            Ok(store) => break Ok(store),
            Err(error) => {
                let retryable = error
                    .chain()
                    .any(|cause| matches!(cause.downcast_ref::<dataplane_spi::StoreError>(), Some(e) if e.is_retryable()));
                if !retryable {
                    break Err(error);
                }
                tracing::warn!(error = %format!("{error:#}"), retry_in = ?backoff, "store unreachable; retrying");
                if let Ok(mut r) = reason.lock() {
                    *r = format!("store unreachable: {error:#}");
                }
                if standin.is_none() {
                    let reason = reason.clone();
                    let server = HttpServer::new(move || {
                        let reason = reason.clone();
                        App::new()
                            .route("/api/v1/health", web::get().to(|| async { HttpResponse::Ok().json(serde_json::json!({"status": "UP"})) }))
                            .default_service(web::to(move || {
                                let reason = reason.lock().map(|r| r.clone()).unwrap_or_default();
                                async move {
                                    HttpResponse::ServiceUnavailable()
                                        .json(serde_json::json!({"status": "NOT_READY", "error": reason, "code": "UNAVAILABLE"}))
                                }
                            }))
                    })
                    .workers(1)
                    .disable_signals();
                    let copy = listener.try_clone()?;
                    let server = match tls.clone() {
                        Some(tls) => server.listen_rustls_0_23(copy, tls)?,
                        None => server.listen(copy)?,
                    }
                    .run();
                    standin = Some(server.handle());
                    tokio::spawn(server);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    };
    if let Some(handle) = standin {
        handle.stop(false).await;
    }
    result
}

/// Where the embedded launcher serves the selector API.
pub const EMBEDDED_SELECTOR_PATH: &str = "/api/v1/selector";
