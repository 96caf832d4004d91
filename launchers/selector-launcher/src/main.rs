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
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use dataplane_store_sql::{SqlStore, SqlStoreOptions, StoreUrl, DEFAULT_STORE_URL};
use dpf_config::Config;
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

/// Key prefixes shown by `--dump-config`.
const DUMP_PREFIXES: &[&str] = &["web.", "dpf.", "edc."];

#[derive(Debug, Parser)]
#[command(
    name = "selector-launcher",
    version,
    about = "Standalone dpf data-plane selector"
)]
struct Cli {
    /// A Java .properties file with configuration keys.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Set a configuration key (highest precedence); repeatable.
    #[arg(short = 'D', long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Print the effective configuration and exit.
    #[arg(long)]
    dump_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply pending store migrations and exit.
    Migrate,
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(config.get_or("dpf.log.level", "info"))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if config.get_or("dpf.log.format", "text") == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn open_sql_store(config: &Config) -> anyhow::Result<Option<SqlStore>> {
    let url = StoreUrl::parse(config.get_or("dpf.store.url", DEFAULT_STORE_URL))
        .map_err(anyhow::Error::msg)?;
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

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(DEFAULTS, cli.config.as_deref(), &cli.set)?;
    if cli.dump_config {
        println!("{}", config.dump(DUMP_PREFIXES));
        return Ok(());
    }
    init_logging(&config);
    if let Some(Command::Migrate) = cli.command {
        match open_sql_store(&config).await? {
            Some(_) => println!(
                "store {} is up to date",
                config.get_or("dpf.store.url", DEFAULT_STORE_URL)
            ),
            None => println!("memory: needs no migration"),
        }
        return Ok(());
    }

    let host = config.get_or("web.http.host", "127.0.0.1").to_owned();
    let port: u16 = config.parse_or("web.http.port", 8181)?;
    let workers: usize = config.parse_or("web.http.workers", 2)?;
    let strategy = config.get_or("edc.dpf.selector.strategy", "random");

    let store: Arc<dyn DataPlaneInstanceStore> = match open_sql_store(&config).await? {
        Some(store) => Arc::new(store),
        None => Arc::new(InMemoryInstanceStore::new()),
    };
    let registry = default_registry_builder()
        .default_strategy(strategy)
        .build()
        .context("invalid edc.dpf.selector.strategy")?;
    let selector: Arc<dyn DataPlaneSelector> =
        Arc::new(DefaultDataPlaneSelector::new(store, registry));

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
    selector_api::serve(listener, selector, workers)?.await?;
    tracing::info!("selector stopped");
    Ok(())
}
