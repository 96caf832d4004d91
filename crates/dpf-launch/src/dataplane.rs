//! Assembling a data plane from configuration: defaults, settings, the address policy, the transfer registry and the outbound clients.

use crate::*;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use address_policy::AddressPolicy;
use anyhow::Context;
use dataplane_manager::{
    CallbackDispatcher, ControlPlaneRegistry, DataPlane, DataPlaneConfig, DataPlaneServices,
    DatasetRegistry,
};
use dataplane_spi::{DataFlowStore, TransferRegistry};
use dataplane_store_sql::{StoreUrl, DEFAULT_STORE_URL};
use dpf_config::Config;

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
    ("dpf.object.part-size", "16777216"),
    ("dpf.object.parts-in-flight", "2"),
    ("dpf.object.read-parallelism", "4"),
    ("dpf.api.auth.disabled", "false"),
    ("dpf.api.max-watchers", "64"),
    ("dpf.log.level", "info"),
    ("dpf.log.format", "text"),
];

/// Builds a data plane from configuration over `store`, and its cluster services (started by
/// [`DataPlane::run`]). `public_base_url` is where this replica's `/api/v1` is reachable
/// (`dpf.public.url`, else derived from the bound address).
///
/// # Errors
/// Invalid values, incomplete datasets or control planes.
pub fn build_data_plane(
    config: &Config,
    store: Arc<dyn DataFlowStore>,
    coordinator: Arc<dyn dataplane_spi::Coordinator>,
    public_base_url: &str,
) -> anyhow::Result<(Arc<DataPlane>, DataPlaneServices)> {
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
    // AmazonS3 and AzureStorage (docs/object-storage.md).
    let object_options = transfer_object::ObjectOptions {
        part_size: config.parse_or("dpf.object.part-size", transfer_object::DEFAULT_PART_SIZE)?,
        parts_in_flight: config.parse_or(
            "dpf.object.parts-in-flight",
            transfer_object::DEFAULT_PARTS_IN_FLIGHT,
        )?,
        read_parallelism: config.parse_or(
            "dpf.object.read-parallelism",
            transfer_object::DEFAULT_READ_PARALLELISM,
        )?,
        ..transfer_object::ObjectOptions::default()
    }
    .validated()
    .map_err(anyhow::Error::msg)?;
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
        .and_then(|b| transfer_object::register(b, &policy, object_options))
        .map_err(anyhow::Error::msg)?
        .build();
    let mut known = transfers.source_types();
    known.extend(transfers.sink_types());
    let datasets = DatasetRegistry::from_entries(&dataset_entries(config), &known, policy.clone())?;

    let control_planes = Arc::new(ControlPlaneRegistry::with_policy(policy.clone()));
    // dpf.controlplane.<id>.endpoint and .authorization.<property>: where its callbacks go and
    // the credential they carry (the DPS authorization object, e.g. type=bearer and token=…).
    for registration in groups::control_planes(config)? {
        let id = registration.controlplane_id.clone();
        control_planes
            .configure(registration)
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
pub(crate) fn extra_ca(config: &Config) -> anyhow::Result<Option<Vec<u8>>> {
    config
        .get("dpf.tls.ca")
        .map(|path| std::fs::read(path).with_context(|| format!("cannot read dpf.tls.ca {path}")))
        .transpose()
}

/// An HTTP client for outbound calls, trusting `dpf.tls.ca` when set.
pub(crate) fn outbound_client(
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
