//! `dpfctl cluster config ...`: the live settings under [`CONFIG_PREFIX`].

use anyhow::Result;
use reqwest::StatusCode;

use crate::api::Api;
use crate::cli::ConfigCommand;
use crate::output::{cell, print_json, print_table, OutputFormat};

use super::kv::{delete_key, entries, get_key, list, put_key};
use super::{one_line, status_of, CONFIG_PREFIX};

/// `dpfctl cluster config ...`
pub(super) async fn config(api: &Api, command: ConfigCommand, output: OutputFormat) -> Result<()> {
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
pub(super) fn setting_key(name: &str) -> String {
    if name.starts_with(CONFIG_PREFIX) {
        name.to_owned()
    } else {
        format!("{CONFIG_PREFIX}{name}")
    }
}

/// NAME of `dpf/config/NAME`.
pub(super) fn setting_name(key: &str) -> &str {
    key.strip_prefix(CONFIG_PREFIX).unwrap_or(key)
}

pub(super) fn not_set(name: &str, error: anyhow::Error) -> anyhow::Error {
    if status_of(&error) == Some(StatusCode::NOT_FOUND) {
        // Still a 404 underneath: exit status 3.
        anyhow::Error::new(crate::api::HttpError {
            status: StatusCode::NOT_FOUND,
            message: format!(
                "setting '{}' is not set (the replicas use their own configuration)",
                setting_name(name)
            ),
        })
    } else {
        error
    }
}
