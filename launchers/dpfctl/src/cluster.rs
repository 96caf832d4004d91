//! `dpfctl cluster ...`: the members, the leader, the key-value store and the live settings of
//! the data plane's cluster API (`/cluster/...`).
//!
//! The two watches read server-sent events. `kv watch` survives disconnections: it reconnects
//! with `fromRevision` = the last revision it printed and drops anything at or below it, so every
//! change is printed once and in order; when the data plane no longer has the changes it needs
//! (compacted), it says so and exits with status 2. `members --watch` reconnects too, comparing
//! what it gets with what it printed so that it prints only real changes.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use futures::StreamExt;
use reqwest::{Method, StatusCode, Url};
use serde_json::{json, Value};

use crate::api::{encode_path, http_error, Api, Body};
use crate::cli::{ClusterCommand, ConfigCommand, KvCommand};
use crate::output::{cell, print_json, print_object, print_table, OutputFormat};
use crate::sse;

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

async fn members(api: &Api, output: OutputFormat) -> Result<()> {
    let answer = api.get(&["cluster", "members"], &[]).await?;
    match output {
        OutputFormat::Json => print_json(&answer),
        OutputFormat::Text => {
            let rows: Vec<Vec<String>> = as_list(&answer)
                .iter()
                .map(|m| {
                    vec![
                        cell(m.get("name")),
                        cell(m.get("state")),
                        or_dash(cell(m.get("configRevision"))),
                        cell(m.get("leaseExpiresAt")),
                    ]
                })
                .collect();
            print_table(
                &["NAME", "STATE", "CONFIG-REVISION", "LEASE-EXPIRES"],
                &rows,
            );
        }
    }
    Ok(())
}

/// Members by name, as last printed.
type Known = BTreeMap<String, Value>;

async fn watch_members(api: &Api, output: OutputFormat) -> Result<()> {
    let mut known = Known::new();
    let mut connected = false;
    let mut backoff = Backoff::new();
    loop {
        if connected {
            // What changed while disconnected: a fresh listing against what was printed.
            let listing = match api.get(&["cluster", "members"], &[]).await {
                Ok(listing) => listing,
                Err(error) if is_client_error(&error) => return Err(error),
                Err(error) => {
                    backoff.wait(&error).await;
                    continue;
                }
            };
            let fresh = as_list(&listing);
            let gone: Vec<String> = known
                .keys()
                .filter(|name| !fresh.iter().any(|m| cell(m.get("name")) == **name))
                .cloned()
                .collect();
            for name in gone {
                if let Some(member) = known.remove(&name) {
                    print_member_event("leave", &member, output)?;
                }
            }
            for member in fresh {
                for (kind, member) in apply_member_event(&mut known, "join", member) {
                    print_member_event(kind, &member, output)?;
                }
            }
        }
        let query = [("watch", "true".to_owned())];
        let response = match api.open_stream(&["cluster", "members"], &query).await {
            Ok(response) => response,
            Err(error) if !connected || is_client_error(&error) => return Err(error),
            Err(error) => {
                backoff.wait(&error).await;
                continue;
            }
        };
        connected = true;
        let mut parser = sse::Parser::new();
        let mut body = response.bytes_stream();
        let cause = loop {
            match body.next().await {
                Some(Ok(chunk)) => {
                    backoff.reset();
                    for event in parser.push(&chunk) {
                        let Ok(member) = serde_json::from_str::<Value>(&event.data) else {
                            continue;
                        };
                        for (kind, member) in apply_member_event(&mut known, &event.event, member) {
                            print_member_event(kind, &member, output)?;
                        }
                    }
                }
                Some(Err(error)) => break innermost_cause(&error),
                None => break "the data plane ended the stream".to_owned(),
            }
        };
        eprintln!("note: the members watch was interrupted ({cause}); reconnecting");
    }
}

/// Records a `join`, `update` or `leave` of `member` in `known`; returns what to print: nothing
/// when it tells nothing new (a reconnection's listing), else the event (a `leave` of the old
/// incarnation first when the member restarted unnoticed).
fn apply_member_event(known: &mut Known, kind: &str, member: Value) -> Vec<(&'static str, Value)> {
    let name = cell(member.get("name"));
    match kind {
        "leave" => match known.remove(&name) {
            Some(_) => vec![("leave", member)],
            None => Vec::new(),
        },
        "join" | "update" => match known.insert(name, member.clone()) {
            None => vec![("join", member)],
            Some(old) if old.get("incarnation") != member.get("incarnation") => {
                vec![("leave", old), ("join", member)]
            }
            Some(old) if old.get("state") != member.get("state") => vec![("update", member)],
            Some(_) => Vec::new(),
        },
        _ => Vec::new(),
    }
}

fn print_member_event(kind: &str, member: &Value, output: OutputFormat) -> Result<()> {
    match output {
        OutputFormat::Json => emit(&json!({"event": kind, "member": member}).to_string()),
        OutputFormat::Text => emit(&format!(
            "{kind:<6} {}  {}  incarnation {}",
            cell(member.get("name")),
            cell(member.get("state")),
            cell(member.get("incarnation"))
        )),
    }
}

async fn leader(api: &Api, output: OutputFormat) -> Result<()> {
    let answer = match api.get(&["cluster", "leader"], &[]).await {
        Ok(answer) => answer,
        Err(error) if status_of(&error) == Some(StatusCode::NOT_FOUND) => {
            return Err(anyhow!("no leader right now"));
        }
        Err(error) => return Err(error),
    };
    match output {
        OutputFormat::Json => print_json(&answer),
        OutputFormat::Text => println!(
            "{}  term {}  expires {}",
            cell(answer.get("leader")),
            cell(answer.get("term")),
            cell(answer.get("expiresAt"))
        ),
    }
    Ok(())
}

/// `dpfctl cluster kv ...`
async fn kv(api: &Api, command: KvCommand, output: OutputFormat) -> Result<()> {
    match command {
        KvCommand::Get { key } => {
            let entry = get_key(api, &key).await?;
            match output {
                OutputFormat::Json => print_json(&entry),
                OutputFormat::Text => print_object(&entry),
            }
        }
        KvCommand::Put {
            key,
            value,
            expected_version,
        } => {
            let entry = put_key(api, &key, &value, expected_version).await?;
            match output {
                OutputFormat::Json => print_json(&entry),
                OutputFormat::Text => println!(
                    "put {} (version {}, revision {})",
                    one_line(&key),
                    cell(entry.get("version")),
                    cell(entry.get("modRevision"))
                ),
            }
        }
        KvCommand::Delete {
            key,
            expected_version,
        } => {
            let event = delete_key(api, &key, expected_version).await?;
            match output {
                OutputFormat::Json => print_json(&event),
                OutputFormat::Text => println!(
                    "deleted {} (revision {})",
                    one_line(&key),
                    cell(event.get("revision"))
                ),
            }
        }
        KvCommand::List { prefix } => {
            let listing = list(api, &prefix).await?;
            match output {
                OutputFormat::Json => print_json(&listing),
                OutputFormat::Text => {
                    let rows: Vec<Vec<String>> = entries(&listing)
                        .iter()
                        .map(|e| {
                            vec![
                                one_line(&cell(e.get("key"))),
                                cell(e.get("version")),
                                cell(e.get("modRevision")),
                                or_dash(cell(e.get("session"))),
                                one_line(&cell(e.get("value"))),
                            ]
                        })
                        .collect();
                    print_table(
                        &["KEY", "VERSION", "MOD-REVISION", "SESSION", "VALUE"],
                        &rows,
                    );
                }
            }
        }
        KvCommand::Watch {
            prefix,
            from_revision,
        } => watch_kv(api, &prefix, from_revision, output).await?,
    }
    Ok(())
}

/// The URL of `key` under `/cluster/kv/`: its `/` stay path separators (the data plane's route
/// takes the rest of the path as the key) and everything but unreserved characters is
/// percent-encoded. A key with a `.` or `..` segment, which a URL would resolve away, travels
/// with its `/` encoded too: the data plane decodes both alike.
fn key_url(api: &Api, key: &str) -> Result<Url> {
    if key.is_empty() {
        return Err(anyhow!("a key must not be empty"));
    }
    if key == "." || key == ".." {
        return Err(anyhow!("'{key}' cannot be a key: URLs resolve it away"));
    }
    let mut encoded = encode_path(key);
    if key
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        encoded = encoded.replace('/', "%2F");
    }
    Ok(api.url_with_encoded_path(&format!("cluster/kv/{encoded}")))
}

async fn get_key(api: &Api, key: &str) -> Result<Value> {
    let url = key_url(api, key)?;
    api.call_url(Method::GET, url, &[], Body::None)
        .await?
        .ok_or_else(|| anyhow!("the data plane answered an empty body for key '{key}'"))
}

async fn put_key(api: &Api, key: &str, value: &str, expected: Option<u64>) -> Result<Value> {
    let url = key_url(api, key)?;
    let mut body = json!({"value": value});
    if let (Some(version), Some(map)) = (expected, body.as_object_mut()) {
        map.insert("expectedVersion".into(), version.into());
    }
    let answer = api
        .call_url(Method::PUT, url, &[], Body::Json(&body))
        .await?;
    Ok(answer.unwrap_or(body))
}

async fn delete_key(api: &Api, key: &str, expected: Option<u64>) -> Result<Value> {
    let url = key_url(api, key)?;
    let query: Vec<(&str, String)> = expected
        .map(|v| ("expectedVersion", v.to_string()))
        .into_iter()
        .collect();
    let answer = api
        .call_url(Method::DELETE, url, &query, Body::None)
        .await?;
    Ok(answer.unwrap_or_else(|| json!({"key": key})))
}

async fn list(api: &Api, prefix: &str) -> Result<Value> {
    api.get(&["cluster", "kv"], &[("prefix", prefix.to_owned())])
        .await
}

fn entries(listing: &Value) -> Vec<Value> {
    listing
        .get("entries")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

async fn watch_kv(
    api: &Api,
    prefix: &str,
    from_revision: Option<u64>,
    output: OutputFormat,
) -> Result<()> {
    // Without --from-revision: from the current revision, so that a reconnection knows where
    // to go on from even before the first change.
    let mut last: i64 = match from_revision {
        Some(revision) => i64::try_from(revision).context("--from-revision is too large")?,
        None => list(api, prefix)
            .await?
            .get("revision")
            .and_then(Value::as_i64)
            .ok_or_else(|| anyhow!("the data plane's listing has no revision"))?,
    };
    let mut connected = false;
    let mut backoff = Backoff::new();
    loop {
        let query = [
            ("watch", "true".to_owned()),
            ("prefix", prefix.to_owned()),
            ("fromRevision", last.to_string()),
        ];
        let response = match api.open_stream(&["cluster", "kv"], &query).await {
            Ok(response) => response,
            Err(error) => {
                if let Some(http) = http_error(&error) {
                    if http.status == StatusCode::BAD_REQUEST && http.message.contains("compacted")
                    {
                        return Err(compacted(prefix, last, None));
                    }
                }
                if !connected || is_client_error(&error) {
                    return Err(error);
                }
                backoff.wait(&error).await;
                continue;
            }
        };
        connected = true;
        let mut parser = sse::Parser::new();
        let mut body = response.bytes_stream();
        let cause = loop {
            match body.next().await {
                Some(Ok(chunk)) => {
                    backoff.reset();
                    for event in parser.push(&chunk) {
                        match event.event.as_str() {
                            "PUT" | "DELETE" => {
                                let data: Value =
                                    serde_json::from_str(&event.data).with_context(|| {
                                        format!("the data plane sent a bad event: {}", event.data)
                                    })?;
                                let revision = event
                                    .id
                                    .as_deref()
                                    .and_then(|id| id.trim().parse::<i64>().ok())
                                    .or_else(|| data.get("revision").and_then(Value::as_i64))
                                    .ok_or_else(|| {
                                        anyhow!("the data plane sent an event without revision")
                                    })?;
                                if revision <= last {
                                    continue; // seen before a reconnection
                                }
                                match output {
                                    OutputFormat::Json => emit(&data.to_string())?,
                                    OutputFormat::Text => emit(&format!(
                                        "{revision} {} {} {}",
                                        event.event,
                                        one_line(&cell(data.get("key"))),
                                        one_line(&cell(data.get("value")))
                                    ))?,
                                }
                                last = revision;
                            }
                            "compacted" => {
                                let oldest = serde_json::from_str::<Value>(&event.data)
                                    .ok()
                                    .and_then(|v| v.get("compacted").and_then(Value::as_i64));
                                return Err(compacted(prefix, last, oldest));
                            }
                            _ => {}
                        }
                    }
                }
                Some(Err(error)) => break innermost_cause(&error),
                None => break "the data plane ended the stream".to_owned(),
            }
        };
        eprintln!("note: the watch was interrupted ({cause}); reconnecting from revision {last}");
    }
}

/// Exit status 2: the changes after `last` are gone.
fn compacted(prefix: &str, last: i64, oldest: Option<i64>) -> anyhow::Error {
    let oldest = oldest
        .map(|c| format!(" (the data plane keeps none at or below revision {c})"))
        .unwrap_or_default();
    let prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!(" --prefix '{prefix}'")
    };
    anyhow::Error::new(Exit {
        code: 2,
        message: format!(
            "the changes after revision {last} were compacted away{oldest}; list the keys again \
             (dpfctl --output json cluster kv list{prefix}) and watch from the listing's \
             \"revision\" with --from-revision"
        ),
    })
}

/// `dpfctl cluster config ...`
async fn config(api: &Api, command: ConfigCommand, output: OutputFormat) -> Result<()> {
    match command {
        ConfigCommand::Set { name, value } => {
            let entry = put_key(api, &setting_key(&name), &value, None).await?;
            match output {
                OutputFormat::Json => print_json(&entry),
                OutputFormat::Text => println!(
                    "{} = {} (revision {})",
                    setting_name(&name),
                    one_line(&value),
                    cell(entry.get("modRevision"))
                ),
            }
        }
        ConfigCommand::Get { name } => {
            let entry = get_key(api, &setting_key(&name))
                .await
                .map_err(|e| not_set(&name, e))?;
            match output {
                OutputFormat::Json => print_json(&entry),
                OutputFormat::Text => println!("{}", cell(entry.get("value"))),
            }
        }
        ConfigCommand::List => {
            let listing = list(api, CONFIG_PREFIX).await?;
            match output {
                OutputFormat::Json => print_json(&listing),
                OutputFormat::Text => {
                    let rows: Vec<Vec<String>> = entries(&listing)
                        .iter()
                        .map(|e| {
                            vec![
                                setting_name(&cell(e.get("key"))).to_owned(),
                                cell(e.get("modRevision")),
                                one_line(&cell(e.get("value"))),
                            ]
                        })
                        .collect();
                    print_table(&["NAME", "MOD-REVISION", "VALUE"], &rows);
                }
            }
        }
        ConfigCommand::Unset { name } => {
            let event = delete_key(api, &setting_key(&name), None)
                .await
                .map_err(|e| not_set(&name, e))?;
            match output {
                OutputFormat::Json => print_json(&event),
                OutputFormat::Text => println!(
                    "unset {} (revision {})",
                    setting_name(&name),
                    cell(event.get("revision"))
                ),
            }
        }
    }
    Ok(())
}

/// `dpf/config/NAME` (a NAME given as its full key stays as it is).
fn setting_key(name: &str) -> String {
    if name.starts_with(CONFIG_PREFIX) {
        name.to_owned()
    } else {
        format!("{CONFIG_PREFIX}{name}")
    }
}

/// NAME of `dpf/config/NAME`.
fn setting_name(key: &str) -> &str {
    key.strip_prefix(CONFIG_PREFIX).unwrap_or(key)
}

fn not_set(name: &str, error: anyhow::Error) -> anyhow::Error {
    if status_of(&error) == Some(StatusCode::NOT_FOUND) {
        anyhow!(
            "setting '{}' is not set (the replicas use their own configuration)",
            setting_name(name)
        )
    } else {
        error
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
mod tests {
    use super::*;

    #[test]
    fn keys_keep_their_slashes_and_encode_the_rest() {
        let api = Api::new("http://h:1/api/v1").unwrap();
        assert_eq!(
            key_url(&api, "dpf/config/dataplane.max-concurrent-flows")
                .unwrap()
                .as_str(),
            "http://h:1/api/v1/cluster/kv/dpf/config/dataplane.max-concurrent-flows"
        );
        assert_eq!(
            key_url(&api, "a b/c?d#e%f").unwrap().as_str(),
            "http://h:1/api/v1/cluster/kv/a%20b/c%3Fd%23e%25f"
        );
        assert_eq!(
            key_url(&api, "a/../b").unwrap().as_str(),
            "http://h:1/api/v1/cluster/kv/a%2F..%2Fb"
        );
        assert!(key_url(&api, "").is_err());
        assert!(key_url(&api, "..").is_err());
    }

    #[test]
    fn settings_are_named_with_or_without_their_prefix() {
        assert_eq!(
            setting_key("checkpoint.bytes"),
            "dpf/config/checkpoint.bytes"
        );
        assert_eq!(
            setting_key("dpf/config/checkpoint.bytes"),
            "dpf/config/checkpoint.bytes"
        );
        assert_eq!(
            setting_name("dpf/config/checkpoint.bytes"),
            "checkpoint.bytes"
        );
    }

    #[test]
    fn member_events_print_only_what_is_new() {
        let mut known = Known::new();
        let a1 = json!({"name": "a", "incarnation": "1", "state": "IDLE"});
        let a1_healthy = json!({"name": "a", "incarnation": "1", "state": "HEALTHY"});
        let a2 = json!({"name": "a", "incarnation": "2", "state": "IDLE"});
        let kinds = |events: Vec<(&'static str, Value)>| {
            events.into_iter().map(|(k, _)| k).collect::<Vec<_>>()
        };
        assert_eq!(
            kinds(apply_member_event(&mut known, "join", a1.clone())),
            ["join"]
        );
        assert!(apply_member_event(&mut known, "join", a1).is_empty());
        assert_eq!(
            kinds(apply_member_event(&mut known, "update", a1_healthy)),
            ["update"]
        );
        assert_eq!(
            kinds(apply_member_event(&mut known, "join", a2.clone())),
            ["leave", "join"]
        );
        assert_eq!(
            kinds(apply_member_event(&mut known, "leave", a2.clone())),
            ["leave"]
        );
        assert!(apply_member_event(&mut known, "leave", a2).is_empty());
    }

    #[test]
    fn values_print_on_one_line() {
        assert_eq!(one_line("plain value"), "plain value");
        assert_eq!(one_line("a\nb\tc\u{1}"), "a\\nb\\tc\\u{1}");
    }
}
