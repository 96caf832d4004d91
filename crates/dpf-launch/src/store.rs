//! Opening the store named by `dpf.store.url`, patiently when it is unreachable, and `migrate`.

use crate::*;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use dataplane_store_sql::{SqlStore, SqlStoreOptions, StoreUrl, DEFAULT_STORE_URL};
use dpf_config::Config;

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

/// Opens the store; while a PostgreSQL store is unreachable, keeps retrying (with backoff, up to
/// 5 s apart) and serves a stand-in on the port: `/health` 200, `/ready` and everything else
/// 503 with the reason. A data plane started before its database therefore comes up on its own
/// instead of crashing.
pub(crate) async fn open_store_patiently(
    config: &Config,
    listener: &std::net::TcpListener,
    tls: Option<rustls::ServerConfig>,
) -> anyhow::Result<Option<SqlStore>> {
    use actix_web::{App, HttpServer};

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
                        App::new().configure(dataplane_api::configure_standin(reason.clone()))
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
