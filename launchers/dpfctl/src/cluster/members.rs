//! `dpfctl cluster members` (with `--watch`) and `dpfctl cluster leader`.

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::api::Api;
use crate::output::{cell, print_json, print_table, OutputFormat};

use super::{as_list, emit, is_client_error, or_dash, read_events, status_of, Backoff};

pub(super) async fn members(api: &Api, output: OutputFormat) -> Result<()> {
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
pub(super) type Known = BTreeMap<String, Value>;

pub(super) async fn watch_members(api: &Api, output: OutputFormat) -> Result<()> {
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
        let cause = read_events(response, &mut backoff, |event| {
            let Ok(member) = serde_json::from_str::<Value>(&event.data) else {
                return Ok(());
            };
            for (kind, member) in apply_member_event(&mut known, &event.event, member) {
                print_member_event(kind, &member, output)?;
            }
            Ok(())
        })
        .await?;
        eprintln!("note: the members watch was interrupted ({cause}); reconnecting");
    }
}

/// Records a `join`, `update` or `leave` of `member` in `known`; returns what to print: nothing
/// when it tells nothing new (a reconnection's listing), else the event (a `leave` of the old
/// incarnation first when the member restarted unnoticed).
pub(super) fn apply_member_event(
    known: &mut Known,
    kind: &str,
    member: Value,
) -> Vec<(&'static str, Value)> {
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

pub(super) fn print_member_event(kind: &str, member: &Value, output: OutputFormat) -> Result<()> {
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

pub(super) async fn leader(api: &Api, output: OutputFormat) -> Result<()> {
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
