//! Following a data flow until it ends, with a progress bar on stderr (drawn only when stderr
//! is a terminal).

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::api::Api;

/// How often a flow is polled.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Where a flow's state is read from.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// The management view (`GET {api}/dataflows/{id}`): state and bytes.
    Management(&'a Api),
    /// Only the DPS status (`GET {signaling}/dataflows/{id}/status`): state, no bytes.
    Signaling(&'a Api),
}

/// A flow that reached COMPLETED.
#[derive(Debug, Clone)]
pub struct Watched {
    /// The last document read (management view or DPS status).
    pub view: Value,
    /// Bytes moved, as the management view reports them (0 when unknown).
    pub bytes: u64,
    /// Time spent watching.
    pub elapsed: Duration,
}

/// Follows flow `id` of the data-plane API `api` (see [`watch_at`]).
///
/// # Errors
/// As [`watch_at`].
pub async fn watch(api: &Api, id: &str, timeout: Option<f64>, show_bar: bool) -> Result<Watched> {
    watch_at(Source::Management(api), id, timeout, show_bar).await
}

/// Polls flow `id` every [`POLL_INTERVAL`] until it is COMPLETED.
///
/// # Errors
/// `data flow … was terminated: <errorDetail>` when it ends TERMINATED; a timeout; any API
/// error while polling.
pub async fn watch_at(
    source: Source<'_>,
    id: &str,
    timeout: Option<f64>,
    show_bar: bool,
) -> Result<Watched> {
    let deadline = match timeout {
        Some(secs) if secs.is_finite() && secs >= 0.0 => Some(Duration::from_secs_f64(secs)),
        Some(secs) => bail!("--timeout must be a non-negative number of seconds (got {secs})"),
        None => None,
    };
    let bar = if show_bar {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(style(false));
    let mut sized = false;
    let started = Instant::now();
    let mut ticker = tokio::time::interval(POLL_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let view = match fetch(source, id).await {
            Ok(view) => view,
            Err(error) => {
                bar.abandon();
                return Err(error);
            }
        };
        let state = view
            .get("dpsState")
            .or_else(|| view.get("state"))
            .and_then(Value::as_str)
            .unwrap_or("UNKNOWN")
            .to_owned();
        let bytes = view
            .get("bytesTransferred")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if let Some(total) = view.get("bytesTotal").and_then(Value::as_u64) {
            if !sized {
                bar.set_style(style(true));
                sized = true;
            }
            bar.set_length(total);
        }
        bar.set_position(bytes);
        bar.set_message(state.clone());
        match state.as_str() {
            "COMPLETED" => {
                bar.finish_and_clear();
                return Ok(Watched {
                    view,
                    bytes,
                    elapsed: started.elapsed(),
                });
            }
            "TERMINATED" => {
                bar.abandon();
                let detail = view
                    .get("errorDetail")
                    .and_then(Value::as_str)
                    .unwrap_or("no error detail was recorded");
                return Err(anyhow!("data flow {id} was terminated: {detail}"));
            }
            _ => {}
        }
        if let Some(deadline) = deadline {
            if started.elapsed() >= deadline {
                bar.abandon();
                bail!(
                    "data flow {id} is still {state} after {:.1} s; giving up waiting",
                    deadline.as_secs_f64()
                );
            }
        }
    }
}

async fn fetch(source: Source<'_>, id: &str) -> Result<Value> {
    match source {
        Source::Management(api) => api.get(&["dataflows", id], &[]).await,
        Source::Signaling(api) => api.get(&["dataflows", id, "status"], &[]).await,
    }
}

fn style(sized: bool) -> ProgressStyle {
    let template = if sized {
        "{spinner:.green} [{elapsed_precise}] [{wide_bar:.cyan/blue}] {bytes}/{total_bytes} \
         ({binary_bytes_per_sec}, eta {eta}) {msg}"
    } else {
        "{spinner:.green} [{elapsed_precise}] {bytes} ({binary_bytes_per_sec}) {msg}"
    };
    ProgressStyle::with_template(template)
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}
