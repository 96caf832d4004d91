//! Standalone dpf data-plane selector.
//!
//! ```text
//! cargo run -p selector-launcher -- [--config FILE] [-D key=value]... [--dump-config] [migrate]
//! ```
//!
//! `migrate` applies the store's pending migrations and exits (starting the selector applies
//! them too).
//!
//! Configuration keys (see `docs/configuration.md`): `web.http.host`, `web.http.port`
//! (0 = any free port), `web.http.workers`, `dpf.store.url`, `dpf.store.pool.size`,
//! `edc.dpf.selector.strategy`, `dpf.selector.load.refresh-interval`,
//! `dpf.selector.load.stale-after`,
//! `edc.dpf.selector.<alias>.<property>` for seeding, `dpf.log.level`, `dpf.log.format`,
//! and for security `edc.dpf.selector.api-key` (else `dpf.api.auth.key`),
//! `dpf.api.auth.disabled`, `dpf.tls.cert`, `dpf.tls.key`, `dpf.http.insecure`,
//! `dpf.public.url`. Every key can also be set from the environment (`WEB_HTTP_PORT=0`).
//!
//! The selector serves HTTPS (`dpf.tls.cert`/`dpf.tls.key`) and refuses to serve plain HTTP
//! unless `dpf.http.insecure=true` or `dpf.public.url` is the `https://` address of a
//! TLS-terminating proxy in front of it; it refuses to listen on a non-loopback address
//! without an API key unless `dpf.api.auth.disabled=true`.

use std::net::TcpListener;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use dataplane_store_sql::DEFAULT_STORE_URL;
use dpf_launch::{
    init_logging, load_config, open_sql_store, run_migrate_if_asked, Cli, DUMP_PREFIXES,
};
use selector_core::{
    default_registry_builder, seed, DefaultDataPlaneSelector, InMemoryInstanceStore,
};
use selector_spi::{DataPlaneInstanceStore, DataPlaneSelector};

/// Built-in defaults; every other layer overrides them.
const DEFAULTS: &[(&str, &str)] = &[
    ("web.http.host", "127.0.0.1"),
    ("web.http.port", "8181"),
    ("web.http.workers", "2"),
    ("dpf.store.url", DEFAULT_STORE_URL),
    ("dpf.store.pool.size", "10"),
    ("edc.dpf.selector.strategy", "random"),
    ("dpf.http.insecure", "false"),
    ("dpf.api.auth.disabled", "false"),
    ("dpf.log.level", "info"),
    ("dpf.log.format", "text"),
];

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = load_config(&cli, DEFAULTS)?;
    if cli.dump_config {
        println!("{}", config.dump(DUMP_PREFIXES));
        return Ok(());
    }
    init_logging(&config, "selector");
    dpf_launch::warn_unknown_settings(&config);
    if run_migrate_if_asked(&cli, &config).await? {
        return Ok(());
    }
    let host = config.get_or("web.http.host", "127.0.0.1").to_owned();
    let port: u16 = config.parse_or("web.http.port", 8181)?;
    let workers: usize = config.parse_or("web.http.workers", 2)?;
    let strategy = config.get_or("edc.dpf.selector.strategy", "random");
    let security = Security::from_config(&config)?;

    let sql = open_sql_store(&config).await?;
    let store: Arc<dyn DataPlaneInstanceStore> = match &sql {
        // On a cluster's store, instances follow its members (and show their load reports).
        Some(store) => {
            dpf_launch::ClusterInstances::start(
                Arc::new(store.clone()),
                Arc::new(store.clone()),
                dpf_launch::ClusterInstancesOptions::from_config(&config)?,
            )
            .await
        }
        None => Arc::new(InMemoryInstanceStore::new()),
    };
    let registry = default_registry_builder()
        .default_strategy(strategy)
        .build()
        .context("invalid edc.dpf.selector.strategy")?;
    let mut selector = DefaultDataPlaneSelector::new(store, registry);
    if let Some(sql) = sql {
        // On a cluster's store, offer only the replicas of its baseline topology.
        selector =
            selector.with_candidate_filter(Arc::new(dpf_launch::BaselineFilter(Arc::new(sql))));
    }
    let selector: Arc<dyn DataPlaneSelector> = Arc::new(selector);

    let registrations = dpf_launch::seed_registrations(&config)?;
    let created = seed::apply(selector.as_ref(), &registrations).await?;
    tracing::info!(seeded = registrations.len(), created, "seeding done");

    let listener = TcpListener::bind((host.as_str(), port)).with_context(|| {
        format!("cannot listen on {host}:{port} (web.http.host / web.http.port)")
    })?;
    let address = listener.local_addr()?;
    let auth = security.auth(&config, address)?;
    let scheme = if security.tls.is_some() {
        "https"
    } else {
        "http"
    };
    // Printed on stdout so scripts and tests can find the port when web.http.port=0.
    println!(
        "dpf selector listening on {scheme}://{address}{}",
        selector_api::BASE_PATH
    );
    tracing::info!(%address, workers, strategy, scheme, "selector started");
    selector_api::serve_with(listener, selector, workers, auth, security.tls)?.await?;
    tracing::info!("selector stopped");
    Ok(())
}

/// How the selector protects its API, from configuration.
struct Security {
    /// `edc.dpf.selector.api-key`, else `dpf.api.auth.key` (blank = unset).
    api_key: Option<String>,
    /// `dpf.api.auth.disabled`: an open API on a non-loopback address is intended.
    auth_disabled: bool,
    /// From `dpf.tls.cert`/`dpf.tls.key`.
    tls: Option<rustls::ServerConfig>,
}

impl Security {
    /// Reads the security keys and refuses plain HTTP unless it is allowed.
    fn from_config(config: &dpf_config::Config) -> anyhow::Result<Self> {
        let key = |name: &str| {
            config
                .get(name)
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(str::to_owned)
        };
        let api_key = key("edc.dpf.selector.api-key").or_else(|| key("dpf.api.auth.key"));
        let auth_disabled: bool = config.parse_or("dpf.api.auth.disabled", false)?;
        let tls = dpf_launch::server_tls(config)?;
        let insecure: bool = config.parse_or("dpf.http.insecure", false)?;
        // HTTPS here, or at a TLS-terminating proxy whose https:// address is dpf.public.url.
        let public_https = config
            .get("dpf.public.url")
            .and_then(|url| url::Url::parse(url.trim()).ok())
            .is_some_and(|url| url.scheme() == "https");
        anyhow::ensure!(
            tls.is_some() || public_https || insecure,
            "refusing to serve plain HTTP: the selector API carries API keys and data-plane \
             registrations. Set dpf.tls.cert and dpf.tls.key (or dpf.public.url=https://… behind \
             a TLS-terminating proxy), or dpf.http.insecure=true for development on a trusted \
             network"
        );
        if insecure && tls.is_none() {
            tracing::warn!("dpf.http.insecure=true: the selector serves plain HTTP");
        }
        Ok(Self {
            api_key,
            auth_disabled,
            tls,
        })
    }

    /// The API's authentication for a server bound to `address`: the key; without one, a
    /// non-loopback address is refused unless `dpf.api.auth.disabled=true`, and on loopback
    /// requests must name a loopback host or the host of `dpf.public.url` (DNS rebinding).
    fn auth(
        &self,
        config: &dpf_config::Config,
        address: std::net::SocketAddr,
    ) -> anyhow::Result<api_common::AuthConfig> {
        let auth = api_common::AuthConfig::admin(self.api_key.as_deref());
        if auth.has_keys() {
            return Ok(auth);
        }
        if self.auth_disabled {
            tracing::warn!(
                "dpf.api.auth.disabled=true: the selector API is open to anyone who can reach it"
            );
            return Ok(auth);
        }
        anyhow::ensure!(
            address.ip().is_loopback(),
            "refusing to serve the selector API on {address} without an API key: set \
             edc.dpf.selector.api-key (or dpf.api.auth.key), listen on loopback \
             (web.http.host=127.0.0.1), or set dpf.api.auth.disabled=true if the network is \
             trusted"
        );
        let public_host = config
            .get("dpf.public.url")
            .and_then(|url| url::Url::parse(url.trim()).ok())
            .and_then(|url| url.host_str().map(str::to_owned));
        tracing::warn!(
            "no API key (edc.dpf.selector.api-key / dpf.api.auth.key): the selector API is open \
             on loopback; requests must name a loopback host or the host of dpf.public.url"
        );
        Ok(auth.with_host_check(public_host))
    }
}
