//! `dpfctl baseline ...`: the data plane's baseline topology (`/cluster/baseline`).
//!
//! `show` (and every change, which prints the baseline it leads to) is laid out like Apache
//! Ignite's `control.sh --baseline`:
//!
//! ```text
//! Cluster ID: 6f1c…
//! Cluster state: ACTIVE
//! Current topology version: 2
//! Baseline auto adjustment disabled: softTimeout=0
//!
//! Current topology version: 2 (Coordinator: r0)
//!
//! Baseline nodes:
//!     ConsistentId=r0, State=ONLINE
//!     ConsistentId=r1, State=OFFLINE
//! --------------------------------------------------------------------------------
//! Number of baseline nodes: 2
//!
//! Other nodes:
//!     ConsistentId=r3
//! Number of other nodes: 1
//! ```
//!
//! The topology version is the baseline version (0: no baseline, every replica may own work),
//! the coordinator the replica that leads the cluster (`-` when none does right now). With
//! `--output json` the data plane's view is printed as it is.

use std::fmt::Write as _;

use anyhow::{anyhow, Result};
use reqwest::Method;
use serde_json::{json, Value};

use crate::api::{Api, Body};
use crate::cli::{AutoAdjustCommand, BaselineChangeArgs, BaselineCommand};
use crate::output::{cell, print_json, OutputFormat};

const SEPARATOR: &str =
    "--------------------------------------------------------------------------------";

/// `dpfctl baseline ...` (`show` without a subcommand).
pub async fn baseline(
    api: &Api,
    command: Option<BaselineCommand>,
    output: OutputFormat,
) -> Result<()> {
    let view = match command.unwrap_or(BaselineCommand::Show) {
        BaselineCommand::Show => view(api).await?,
        BaselineCommand::Set(args) => change(api, "set", args).await?,
        BaselineCommand::Add(args) => change(api, "add", args).await?,
        BaselineCommand::Remove(args) => change(api, "remove", args).await?,
        BaselineCommand::Version => {
            let answer = api.get(&["cluster", "baseline", "version"], &[]).await?;
            match output {
                OutputFormat::Json => print_json(&answer),
                OutputFormat::Text => println!("{}", version_line(&answer)),
            }
            return Ok(());
        }
        BaselineCommand::Activate => post(api, "activate").await?,
        BaselineCommand::Deactivate => post(api, "deactivate").await?,
        BaselineCommand::AutoAdjust(command) => auto_adjust(api, command).await?,
    };
    match output {
        OutputFormat::Json => print_json(&view),
        OutputFormat::Text => {
            let coordinator = coordinator(api).await;
            print!("{}", render(&view, &coordinator));
        }
    }
    Ok(())
}

async fn view(api: &Api) -> Result<Value> {
    api.get(&["cluster", "baseline"], &[]).await
}

/// `set`, `add` or `remove` the replicas of `args`.
async fn change(api: &Api, op: &str, args: BaselineChangeArgs) -> Result<Value> {
    let members: Vec<String> = args
        .members
        .iter()
        .map(|name| name.trim().to_owned())
        .collect();
    if members.iter().any(String::is_empty) {
        return Err(anyhow!(
            "replica names must not be blank (give them as NAME,NAME,...)"
        ));
    }
    let mut body = json!({"members": members});
    if let (Some(version), Some(map)) = (args.expected_version, body.as_object_mut()) {
        map.insert("expectedVersion".into(), version.into());
    }
    let answer = if op == "set" {
        api.call(
            Method::PUT,
            &["cluster", "baseline"],
            &[],
            Body::Json(&body),
        )
        .await?
    } else {
        api.call(
            Method::POST,
            &["cluster", "baseline", op],
            &[],
            Body::Json(&body),
        )
        .await?
    };
    match answer {
        Some(view) => Ok(view),
        None => view(api).await,
    }
}

/// `POST /cluster/baseline/{activate,deactivate}`.
async fn post(api: &Api, action: &str) -> Result<Value> {
    let answer = api
        .call(
            Method::POST,
            &["cluster", "baseline", action],
            &[],
            Body::None,
        )
        .await?;
    match answer {
        Some(view) => Ok(view),
        None => view(api).await,
    }
}

async fn auto_adjust(api: &Api, command: AutoAdjustCommand) -> Result<Value> {
    let current = view(api).await?;
    let current_timeout = current
        .get("autoAdjust")
        .and_then(|a| a.get("timeoutMs"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let body = match command {
        AutoAdjustCommand::Enable { timeout } => {
            let timeout = match timeout {
                Some(timeout) => timeout,
                None if current_timeout > 0 => current_timeout,
                None => {
                    return Err(anyhow!(
                        "give the timeout: dpfctl baseline auto-adjust enable --timeout MS"
                    ))
                }
            };
            json!({"enabled": true, "timeoutMs": timeout})
        }
        AutoAdjustCommand::Disable => json!({"enabled": false, "timeoutMs": current_timeout}),
    };
    let answer = api
        .call(
            Method::PUT,
            &["cluster", "baseline", "auto-adjust"],
            &[],
            Body::Json(&body),
        )
        .await?;
    match answer {
        Some(view) => Ok(view),
        None => view(api).await,
    }
}

/// The leader's name, `-` when there is none (or it cannot be asked).
async fn coordinator(api: &Api) -> String {
    match api.get(&["cluster", "leader"], &[]).await {
        Ok(answer) => {
            let name = cell(answer.get("leader"));
            if name.is_empty() {
                "-".to_owned()
            } else {
                name
            }
        }
        Err(_) => "-".to_owned(),
    }
}

fn version_line(answer: &Value) -> String {
    let version = answer.get("version").and_then(Value::as_u64).unwrap_or(0);
    match answer.get("history").and_then(Value::as_str) {
        Some(history) if version > 0 => {
            format!("Baseline version: {version} (history {history})")
        }
        _ => format!("Baseline version: {version} (no baseline: every replica may own work)"),
    }
}

/// A baseline view as Ignite's `control.sh --baseline` shows one.
fn render(view: &Value, coordinator: &str) -> String {
    let mut text = String::new();
    let version = view.get("version").and_then(Value::as_u64).unwrap_or(0);
    let auto = view.get("autoAdjust");
    let enabled = auto
        .and_then(|a| a.get("enabled"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let timeout = auto
        .and_then(|a| a.get("timeoutMs"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let cluster_id = cell(view.get("clusterId"));
    let mut line = |l: String| {
        let _ = writeln!(text, "{l}");
    };
    if !cluster_id.is_empty() {
        line(format!("Cluster ID: {cluster_id}"));
    }
    line(format!("Cluster state: {}", cell(view.get("state"))));
    line(format!("Current topology version: {version}"));
    line(format!(
        "Baseline auto adjustment {}: softTimeout={timeout}",
        if enabled { "enabled" } else { "disabled" }
    ));
    line(String::new());
    line(format!(
        "Current topology version: {version} (Coordinator: {coordinator})"
    ));
    line(String::new());
    let members = list(view.get("members"));
    line("Baseline nodes:".to_owned());
    if version == 0 {
        line("    (none: without a baseline every replica may own work)".to_owned());
    }
    for member in &members {
        let online = member
            .get("online")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        line(format!(
            "    ConsistentId={}, State={}",
            cell(member.get("name")),
            if online { "ONLINE" } else { "OFFLINE" }
        ));
    }
    line(SEPARATOR.to_owned());
    line(format!("Number of baseline nodes: {}", members.len()));
    line(String::new());
    let others = list(view.get("others"));
    if !others.is_empty() {
        line("Other nodes:".to_owned());
        for other in &others {
            line(format!("    ConsistentId={}", cell(Some(other))));
        }
    }
    line(format!("Number of other nodes: {}", others.len()));
    text
}

fn list(value: Option<&Value>) -> Vec<Value> {
    value.and_then(Value::as_array).cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_baseline_is_shown_like_ignite_does() {
        let view = json!({
            "clusterId": "c1",
            "state": "ACTIVE",
            "version": 2,
            "history": "00ff",
            "members": [{"name": "r0", "online": true}, {"name": "r1", "online": false}],
            "others": ["r3"],
            "autoAdjust": {"enabled": true, "timeoutMs": 2000},
        });
        assert_eq!(
            render(&view, "r0"),
            format!(
                "Cluster ID: c1\n\
                 Cluster state: ACTIVE\n\
                 Current topology version: 2\n\
                 Baseline auto adjustment enabled: softTimeout=2000\n\
                 \n\
                 Current topology version: 2 (Coordinator: r0)\n\
                 \n\
                 Baseline nodes:\n    \
                 ConsistentId=r0, State=ONLINE\n    \
                 ConsistentId=r1, State=OFFLINE\n\
                 {SEPARATOR}\n\
                 Number of baseline nodes: 2\n\
                 \n\
                 Other nodes:\n    \
                 ConsistentId=r3\n\
                 Number of other nodes: 1\n"
            )
        );
    }

    #[test]
    fn no_baseline_and_no_others_are_said_so() {
        let view = json!({
            "clusterId": "",
            "state": "ACTIVE",
            "version": 0,
            "members": [],
            "others": [],
            "autoAdjust": {"enabled": false, "timeoutMs": 0},
        });
        let text = render(&view, "-");
        assert!(text.starts_with("Cluster state: ACTIVE\n"), "{text}");
        assert!(
            text.contains("Baseline auto adjustment disabled: softTimeout=0\n"),
            "{text}"
        );
        assert!(text.contains("(Coordinator: -)"), "{text}");
        assert!(text.contains("Number of baseline nodes: 0\n"), "{text}");
        assert!(!text.contains("Other nodes:"), "{text}");
        assert!(text.ends_with("Number of other nodes: 0\n"), "{text}");
    }

    #[test]
    fn versions_name_their_history() {
        assert_eq!(
            version_line(&json!({"version": 3, "history": "ab"})),
            "Baseline version: 3 (history ab)"
        );
        assert_eq!(
            version_line(&json!({"version": 0})),
            "Baseline version: 0 (no baseline: every replica may own work)"
        );
    }
}
