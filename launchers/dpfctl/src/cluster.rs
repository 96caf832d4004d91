//! `dpfctl cluster ...`: the members, the leader, the key-value store and the live settings of
//! the data plane's cluster API (`/cluster/...`).
//!
//! The two watches read server-sent events. `kv watch` survives disconnections: it reconnects
//! with `fromRevision` = the last revision it printed and drops anything at or below it, so every
//! change is printed once and in order; when the data plane no longer has the changes it needs
//! (compacted), it says so and exits with status 4. `members --watch` reconnects too, comparing
//! what it gets with what it printed so that it prints only real changes.

use std::io::Write;
use std::time::Duration;

use anyhow::{anyhow, Result};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;

use crate::api::{http_error, Api};
use crate::cli::ClusterCommand;
use crate::output::OutputFormat;
use crate::sse;

mod config;
mod kv;
mod members;

use config::config;
use kv::kv;
use members::{leader, members, watch_members};

/// Where the cluster-wide settings live in the key-value store.
pub const CONFIG_PREFIX: &str = "dpf/config/";

/// A failure with its own exit status: `main` prints `error: <message>` (nothing when the
/// message is empty) and exits with `code`.
#[derive(Debug, Clone)]
pub struct Exit {
    /// The process's exit status.
    pub code: u8,
    /// What to print on stderr after `error: `.
    pub message: String,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

/// `dpfctl cluster ...`
pub async fn cluster(api: &Api, command: ClusterCommand, output: OutputFormat) -> Result<()> {
    match command {
        ClusterCommand::Members { watch: false } => members(api, output).await,
        ClusterCommand::Members { watch: true } => watch_members(api, output).await,
        ClusterCommand::Leader => leader(api, output).await,
        ClusterCommand::Kv(command) => kv(api, command, output).await,
        ClusterCommand::Config(command) => config(api, command, output).await,
    }
}

/// Waits between reconnection attempts: 0.25 s, doubling up to 5 s, back to 0.25 s once data
/// flows again.
#[derive(Debug)]
struct Backoff {
    delay: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(5);

    fn new() -> Self {
        Self { delay: Self::FIRST }
    }

    fn reset(&mut self) {
        self.delay = Self::FIRST;
    }

    async fn wait(&mut self, error: &anyhow::Error) {
        eprintln!(
            "note: cannot reconnect ({error:#}); retrying in {:.2} s",
            self.delay.as_secs_f64()
        );
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(Self::MAX);
    }
}

fn status_of(error: &anyhow::Error) -> Option<StatusCode> {
    http_error(error).map(|e| e.status)
}

/// An API's 4xx answer: retrying the same request cannot help.
fn is_client_error(error: &anyhow::Error) -> bool {
    status_of(error).is_some_and(|s| s.is_client_error())
}

/// Reads the server-sent events of a watch's `response` into `on_event` until the stream breaks
/// and returns why it broke (the caller says so and reconnects); an error of `on_event` ends the
/// watch. Data that arrives resets `backoff`.
async fn read_events(
    response: reqwest::Response,
    backoff: &mut Backoff,
    mut on_event: impl FnMut(sse::Event) -> Result<()>,
) -> Result<String> {
    let mut parser = sse::Parser::new();
    let mut body = response.bytes_stream();
    loop {
        match body.next().await {
            Some(Ok(chunk)) => {
                backoff.reset();
                for event in parser.push(&chunk) {
                    on_event(event)?;
                }
            }
            Some(Err(error)) => return Ok(innermost_cause(&error)),
            None => return Ok("the data plane ended the stream".to_owned()),
        }
    }
}

fn innermost_cause(error: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

fn as_list(value: &Value) -> Vec<Value> {
    value.as_array().cloned().unwrap_or_default()
}

fn or_dash(text: String) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        text
    }
}

/// `text` on one line: line breaks, tabs and other control characters escaped.
fn one_line(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| match c {
            '\n' => "\\n".to_owned(),
            '\r' => "\\r".to_owned(),
            '\t' => "\\t".to_owned(),
            c if c.is_control() => format!("\\u{{{:x}}}", u32::from(c)),
            c => c.to_string(),
        })
        .collect()
}

/// Prints one line of a watch at once; a closed stdout (`| head`) ends the watch quietly.
fn emit(line: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{line}").and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(Exit {
                code: 0,
                message: String::new(),
            }))
        }
        Err(error) => Err(anyhow!("cannot write to stdout: {error}")),
    }
}

#[cfg(test)]
mod tests;
