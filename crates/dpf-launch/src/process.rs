//! Running a data-plane process: the server, its API keys and roles, shutdown.

use crate::*;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use dataplane_spi::DataFlowStore;
use dpf_config::Config;
use selector_client::SelectorClient;

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
    warn_unknown_settings(&config);
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
                let memory = Arc::new(dataplane_store_memory::MemoryStore::new());
                (memory.clone(), memory)
            }
        };

    let cluster = coordinator.clone();
    let (plane, services) = build_data_plane(&config, flow_store, coordinator, &public)?;
    // What the replica reports with every heartbeat besides its load: how a selector on the
    // cluster's store reaches it.
    let advertised = registration_for(&config, &plane);
    plane.membership().update_load(|report| {
        report.dataplane_id = Some(advertised.dataplane_id.to_string());
        report.endpoint = Some(advertised.endpoint);
        report.profiles = advertised.profiles;
        report.labels = advertised.labels;
        report.allowed_source_types = advertised.allowed_source_types;
    });
    // Datasets and control planes from configuration join the cluster-wide registries now,
    // like a PUT at start; should the store hiccup, they are written on first use instead.
    for published in [
        plane.datasets().publish().await,
        plane.control_planes().publish().await,
    ] {
        if let Err(error) = published {
            tracing::warn!(%error, "configured datasets or control planes not yet in the cluster registry; written on first use");
        }
    }
    let background = plane.run(services).await.with_context(|| {
        format!(
            "cannot join the cluster as '{}' (edc.runtime.id)",
            plane.config().runtime_id
        )
    })?;

    let selector: Option<Arc<dyn selector_spi::DataPlaneSelector>> = match mode {
        SelectorMode::Embedded => {
            let stored: Arc<dyn selector_spi::DataPlaneInstanceStore> = match &sql {
                Some(store) => Arc::new(store.clone()),
                None => Arc::new(selector_core::InMemoryInstanceStore::new()),
            };
            // Instances follow the cluster's members and show their load reports.
            let instances: Arc<dyn selector_spi::DataPlaneInstanceStore> =
                crate::ClusterInstances::start(
                    stored,
                    cluster,
                    crate::ClusterInstancesOptions::from_config(&config)?,
                )
                .await;
            let registry = selector_core::default_registry_builder()
                .default_strategy(config.get_or("edc.dpf.selector.strategy", "random"))
                .build()
                .context("invalid edc.dpf.selector.strategy")?;
            let selector: Arc<dyn selector_spi::DataPlaneSelector> = Arc::new(
                selector_core::DefaultDataPlaneSelector::new(instances, registry),
            );
            let seeds = seed_registrations(&config)?;
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
        let registration = registration_for(&config, &plane);
        if mode == SelectorMode::Embedded {
            // The embedded selector follows the cluster: load and liveness come from its members.
            return spawn_self_registration(
                client,
                move || registration.clone(),
                Duration::from_secs(30),
            );
        }
        // A remote selector learns this replica's load and liveness from its renewals only.
        let (interval, ttl) = remote_registration_timing(plane.config().renew_interval);
        let plane = plane.clone();
        spawn_self_registration(
            client,
            move || with_load(registration.clone(), &plane, ttl),
            interval,
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
    for (participant, value) in groups::control_plane_keys(config, CONTROL_PLANE_KEY_PREFIX)? {
        let participant = participant.as_str();
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
