//! `dpfctl cluster kv ...`: reading, writing and watching the key-value store.

use anyhow::{anyhow, Context, Result};
use reqwest::{Method, StatusCode, Url};
use serde_json::{json, Value};

use crate::api::{encode_path, http_error, Api, Body};
use crate::cli::KvCommand;
use crate::output::{cell, print_json, print_object, print_table, OutputFormat};

use super::{emit, is_client_error, one_line, or_dash, read_events, Backoff, Exit};

/// `dpfctl cluster kv ...`
pub(super) async fn kv(api: &Api, command: KvCommand, output: OutputFormat) -> Result<()> {
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
pub(super) fn key_url(api: &Api, key: &str) -> Result<Url> {
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

pub(super) async fn get_key(api: &Api, key: &str) -> Result<Value> {
    let url = key_url(api, key)?;
    api.call_url(Method::GET, url, &[], Body::None)
        .await?
        .ok_or_else(|| anyhow!("the data plane answered an empty body for key '{key}'"))
}

pub(super) async fn put_key(
    api: &Api,
    key: &str,
    value: &str,
    expected: Option<u64>,
) -> Result<Value> {
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

pub(super) async fn delete_key(api: &Api, key: &str, expected: Option<u64>) -> Result<Value> {
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

pub(super) async fn list(api: &Api, prefix: &str) -> Result<Value> {
    api.get(&["cluster", "kv"], &[("prefix", prefix.to_owned())])
        .await
}

pub(super) fn entries(listing: &Value) -> Vec<Value> {
    listing
        .get("entries")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

pub(super) async fn watch_kv(
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
        let cause = read_events(response, &mut backoff, |event| match event.event.as_str() {
            "PUT" | "DELETE" => {
                let data: Value = serde_json::from_str(&event.data)
                    .with_context(|| format!("the data plane sent a bad event: {}", event.data))?;
                let revision = event
                    .id
                    .as_deref()
                    .and_then(|id| id.trim().parse::<i64>().ok())
                    .or_else(|| data.get("revision").and_then(Value::as_i64))
                    .ok_or_else(|| anyhow!("the data plane sent an event without revision"))?;
                if revision <= last {
                    return Ok(()); // seen before a reconnection
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
                Ok(())
            }
            "compacted" => {
                let oldest = serde_json::from_str::<Value>(&event.data)
                    .ok()
                    .and_then(|v| v.get("compacted").and_then(Value::as_i64));
                Err(compacted(prefix, last, oldest))
            }
            _ => Ok(()),
        })
        .await?;
        eprintln!("note: the watch was interrupted ({cause}); reconnecting from revision {last}");
    }
}

/// Exit status 4: the changes after `last` are gone.
pub(super) fn compacted(prefix: &str, last: i64, oldest: Option<i64>) -> anyhow::Error {
    let oldest = oldest
        .map(|c| format!(" (the data plane keeps none at or below revision {c})"))
        .unwrap_or_default();
    let prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!(" --prefix '{prefix}'")
    };
    anyhow::Error::new(Exit {
        code: 4,
        message: format!(
            "the changes after revision {last} were compacted away{oldest}; list the keys again \
             (dpfctl --output json cluster kv list{prefix}) and watch from the listing's \
             \"revision\" with --from-revision"
        ),
    })
}
