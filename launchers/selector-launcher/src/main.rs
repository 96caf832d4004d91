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
//! `edc.dpf.selector.strategy`,
//! `edc.dpf.selector.<alias>.<property>` for seeding, `dpf.log.level`, `dpf.log.format`.
//! Every key can also be set from the environment (`WEB_HTTP_PORT=0`).

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
    if run_migrate_if_asked(&cli, &config).await? {
        return Ok(());
    }
    let host = config.get_or("web.http.host", "127.0.0.1").to_owned();
    let port: u16 = config.parse_or("web.http.port", 8181)?;
    let workers: usize = config.parse_or("web.http.workers", 2)?;
    let strategy = config.get_or("edc.dpf.selector.strategy", "random");

    let sql = open_sql_store(&config).await?;
    let store: Arc<dyn DataPlaneInstanceStore> = match &sql {
        Some(store) => Arc::new(store.clone()),
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

    let registrations = seed::registrations_from_entries(&config.with_prefix(seed::SEED_PREFIX))?;
    let created = seed::apply(selector.as_ref(), &registrations).await?;
    tracing::info!(seeded = registrations.len(), created, "seeding done");

    let listener = TcpListener::bind((host.as_str(), port)).with_context(|| {
        format!("cannot listen on {host}:{port} (web.http.host / web.http.port)")
    })?;
    let address = listener.local_addr()?;
    // Printed on stdout so scripts and tests can find the port when web.http.port=0.
    println!(
        "dpf selector listening on http://{address}{}",
        selector_api::BASE_PATH
    );
    tracing::info!(%address, workers, strategy, "selector started");
    let api_key = config.get("dpf.api.auth.key").map(str::to_owned);
    if api_key.is_none() {
        tracing::warn!(
            "dpf.api.auth.key is not set: the selector API is open to anyone who can reach it"
        );
    }
    selector_api::serve_with_key(listener, selector, workers, api_key)?.await?;
    tracing::info!("selector stopped");
    Ok(())
}
