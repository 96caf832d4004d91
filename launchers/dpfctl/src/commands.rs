//! Every command but `transfer`: thin wrappers around one API call each.

use anyhow::{anyhow, Context, Result};
use reqwest::Method;
use selector_client::{RemoteSelectorClient, SelectorClient, SelectorError};
use selector_spi::{DataPlaneRegistration, SelectionRequest};
use serde_json::{json, Value};

use crate::api::{Api, Body};
use crate::cli::{
    expand_profile, ControlplaneCommand, DataplaneCommand, DatasetCommand, FlowCommand,
    RegisterArgs, SelectArgs,
};
use crate::output::{
    cell, load_cells, print_json, print_object, print_table, short_profile, OutputFormat,
};
use crate::watch::{watch, Watched};

/// A new DPS message id.
pub fn message_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The selector client for `--selector`.
pub fn selector(url: &str) -> Result<RemoteSelectorClient> {
    let settings = crate::connection::current().selector_settings(url);
    RemoteSelectorClient::new(settings).map_err(|e| selector_error(url, e))
}

/// A selector error as a message; an unreachable selector names its URL.
pub fn selector_error(url: &str, error: SelectorError) -> anyhow::Error {
    match error {
        SelectorError::Unavailable(message) => {
            match message.strip_prefix("cannot reach selector: ") {
                Some(cause) => anyhow!("cannot reach the selector at {url}: {cause}"),
                None => anyhow!("selector at {url} unavailable: {message}"),
            }
        }
        // Exit status 3, like a data-plane 404.
        SelectorError::NotFound { .. } => anyhow::Error::new(crate::api::HttpError {
            status: reqwest::StatusCode::NOT_FOUND,
            message: error.to_string(),
        }),
        other => anyhow!("{other}"),
    }
}

fn to_value<T: serde::Serialize>(value: &T) -> Result<Value> {
    serde_json::to_value(value).context("cannot encode the answer as JSON")
}

/// `dpfctl dataset ...`
pub async fn dataset(api: &Api, command: DatasetCommand, output: OutputFormat) -> Result<()> {
    match command {
        DatasetCommand::Put { id, file, http } => {
            let body = match (file, http) {
                (Some(path), _) => {
                    let path = std::path::absolute(&path)
                        .with_context(|| format!("cannot make '{}' absolute", path.display()))?;
                    json!({"type": "File", "path": path.to_string_lossy()})
                }
                (None, Some(url)) => json!({"type": "HttpData", "baseUrl": url}),
                (None, None) => return Err(anyhow!("give --file PATH or --http URL")),
            };
            let answer = api
                .call(Method::PUT, &["datasets", &id], &[], Body::Json(&body))
                .await?
                .unwrap_or(body);
            match output {
                OutputFormat::Json => print_json(&answer),
                OutputFormat::Text => println!("dataset '{id}' → {}", dataset_location(&answer)),
            }
        }
        DatasetCommand::List => {
            let answer = api.get(&["datasets"], &[]).await?;
            match output {
                OutputFormat::Json => print_json(&answer),
                OutputFormat::Text => {
                    let rows: Vec<Vec<String>> = as_list(&answer)
                        .iter()
                        .map(|d| vec![cell(d.get("id")), cell(d.get("type")), dataset_location(d)])
                        .collect();
                    print_table(&["ID", "TYPE", "LOCATION"], &rows);
                }
            }
        }
        DatasetCommand::Get { id } => {
            let answer = api.get(&["datasets", &id], &[]).await?;
            show(&answer, output);
        }
        DatasetCommand::Delete { id } => {
            api.call(Method::DELETE, &["datasets", &id], &[], Body::None)
                .await?;
            deleted("dataset", &id, output);
        }
    }
    Ok(())
}

/// `path` of files, `baseUrl` of HTTP datasets, else the other properties.
fn dataset_location(dataset: &Value) -> String {
    if let Some(location) = ["path", "baseUrl"]
        .iter()
        .find_map(|k| dataset.get(*k).and_then(Value::as_str))
    {
        return location.to_owned();
    }
    match dataset {
        Value::Object(map) => {
            let rest: serde_json::Map<String, Value> = map
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "id" | "type"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            Value::Object(rest).to_string()
        }
        other => other.to_string(),
    }
}

fn as_list(value: &Value) -> Vec<Value> {
    value.as_array().cloned().unwrap_or_default()
}

fn show(value: &Value, output: OutputFormat) {
    match output {
        OutputFormat::Json => print_json(value),
        OutputFormat::Text => print_object(value),
    }
}

fn deleted(what: &str, id: &str, output: OutputFormat) {
    match output {
        OutputFormat::Json => print_json(&json!({"deleted": id})),
        OutputFormat::Text => println!("deleted {what} '{id}'"),
    }
}

/// `dpfctl dataplane ...`
pub async fn dataplane(url: &str, command: DataplaneCommand, output: OutputFormat) -> Result<()> {
    let client = selector(url)?;
    let fail = |e| selector_error(url, e);
    match command {
        DataplaneCommand::List => {
            let instances = client.list().await.map_err(fail)?;
            let value = to_value(&instances)?;
            match output {
                OutputFormat::Json => print_json(&value),
                OutputFormat::Text => {
                    let rows: Vec<Vec<String>> = as_list(&value)
                        .iter()
                        .map(|i| {
                            let (load, age) = load_cells(i.get("load"));
                            vec![
                                cell(i.get("id")),
                                cell(i.get("state")),
                                load,
                                age,
                                cell(i.get("endpoint")),
                                cell(i.get("profiles")),
                                cell(i.get("labels")),
                            ]
                        })
                        .collect();
                    print_table(
                        &[
                            "ID", "STATE", "LOAD", "REPORTED", "ENDPOINT", "PROFILES", "LABELS",
                        ],
                        &rows,
                    );
                }
            }
        }
        DataplaneCommand::Get { id } => {
            let instance = client.get(&id).await.map_err(fail)?;
            show(&to_value(&instance)?, output);
        }
        DataplaneCommand::Delete { id } => {
            client.remove(&id).await.map_err(fail)?;
            deleted("data plane", &id, output);
        }
        DataplaneCommand::Register(args) => register(&client, url, args, output).await?,
    }
    Ok(())
}

async fn register(
    client: &RemoteSelectorClient,
    url: &str,
    args: RegisterArgs,
    output: OutputFormat,
) -> Result<()> {
    let profiles = args.profiles.iter().map(|p| expand_profile(p)).collect();
    let mut registration = DataPlaneRegistration::new(&args.id, &args.endpoint, profiles)
        .with_labels(args.labels)
        .with_source_types(args.source_types);
    registration.authorization = Some(DataPlaneRegistration::no_authorization());
    let instance = if args.create {
        client.add(&registration).await
    } else {
        client.register(&registration).await
    }
    .map_err(|e| selector_error(url, e))?;
    match output {
        OutputFormat::Json => print_json(&to_value(&instance)?),
        OutputFormat::Text => println!(
            "registered data plane '{}' at {} ({})",
            instance.id.as_str(),
            instance.endpoint,
            instance
                .profiles
                .iter()
                .map(|p| short_profile(p))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
    Ok(())
}

/// `dpfctl select ...`
pub async fn select(url: &str, args: SelectArgs, output: OutputFormat) -> Result<()> {
    let client = selector(url)?;
    let mut request =
        SelectionRequest::for_profile(expand_profile(&args.profile)).with_labels(args.labels);
    if let Some(source_type) = args.source_type {
        request = request.with_source_type(source_type);
    }
    if let Some(strategy) = args.strategy {
        request = request.with_strategy(strategy);
    }
    request.dataset_id = args.dataset;
    let instance = client
        .select(&request)
        .await
        .map_err(|e| selector_error(url, e))?;
    match output {
        OutputFormat::Json => print_json(&to_value(&instance)?),
        OutputFormat::Text => match &instance.load {
            Some(load) if load.at_capacity => println!(
                "{}  {}  (every candidate is at capacity: {}/{} running)",
                instance.id.as_str(),
                instance.endpoint,
                load.running,
                load.capacity
            ),
            _ => println!("{}  {}", instance.id.as_str(), instance.endpoint),
        },
    }
    Ok(())
}

/// `dpfctl strategies`
pub async fn strategies(url: &str, output: OutputFormat) -> Result<()> {
    let names = selector(url)?
        .strategies()
        .await
        .map_err(|e| selector_error(url, e))?;
    match output {
        OutputFormat::Json => print_json(&json!({"strategies": names})),
        OutputFormat::Text => names.iter().for_each(|n| println!("{n}")),
    }
    Ok(())
}

/// `dpfctl flow ...`
pub async fn flow(api: &Api, command: FlowCommand, output: OutputFormat) -> Result<()> {
    match command {
        FlowCommand::List { state, limit } => {
            let mut query = vec![("limit", limit.to_string())];
            if let Some(state) = state {
                query.push(("state", state));
            }
            let answer = api.get(&["dataflows"], &query).await?;
            match output {
                OutputFormat::Json => print_json(&answer),
                OutputFormat::Text => {
                    let rows: Vec<Vec<String>> = as_list(&answer)
                        .iter()
                        .map(|f| {
                            vec![
                                cell(f.get("id")),
                                cell(f.get("kind")),
                                cell(f.get("state")),
                                progress_cell(f),
                                cell(f.get("runtimeId")),
                                cell(f.get("processId")),
                            ]
                        })
                        .collect();
                    print_table(
                        &["ID", "KIND", "STATE", "BYTES", "RUNTIME", "PROCESS"],
                        &rows,
                    );
                }
            }
        }
        FlowCommand::Get { id } => show(&api.get(&["dataflows", &id], &[]).await?, output),
        FlowCommand::Status { id } => {
            let answer = api
                .get(&["signaling", "dataflows", &id, "status"], &[])
                .await?;
            signal_answer(&id, &answer, output);
        }
        FlowCommand::Suspend { id, reason } => {
            let body = reason_message(reason);
            let answer = api
                .post(&["signaling", "dataflows", &id, "suspend"], &body)
                .await?;
            signal_answer(&id, &answer, output);
        }
        FlowCommand::Resume { id } => {
            let body = json!({"messageId": message_id()});
            let answer = api
                .post(&["signaling", "dataflows", &id, "resume"], &body)
                .await?;
            signal_answer(&id, &answer, output);
        }
        FlowCommand::Terminate { id, reason } => {
            let body = reason_message(reason);
            let answer = api
                .post(&["signaling", "dataflows", &id, "terminate"], &body)
                .await?;
            signal_answer(&id, &answer, output);
        }
        FlowCommand::Completed { id } => {
            let answer = api
                .call(
                    Method::POST,
                    &["signaling", "dataflows", &id, "completed"],
                    &[],
                    Body::None,
                )
                .await?
                .unwrap_or_else(|| json!({"dataFlowId": id, "state": "COMPLETED"}));
            signal_answer(&id, &answer, output);
        }
        FlowCommand::Watch { id, timeout } => {
            let watched = watch(api, &id, timeout, true).await?;
            match output {
                OutputFormat::Json => print_json(&watched.view),
                OutputFormat::Text => println!("{}", watched_summary(&id, &watched)),
            }
        }
    }
    Ok(())
}

fn watched_summary(id: &str, watched: &Watched) -> String {
    format!(
        "data flow {id} COMPLETED: {} bytes in {:.2} s",
        watched.bytes,
        watched.elapsed.as_secs_f64()
    )
}

fn reason_message(reason: Option<String>) -> Value {
    let mut body = json!({"messageId": message_id()});
    if let (Some(reason), Some(map)) = (reason, body.as_object_mut()) {
        map.insert("reason".into(), reason.into());
    }
    body
}

/// `transferred/total` of a management view.
fn progress_cell(flow: &Value) -> String {
    let done = flow
        .get("bytesTransferred")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    match flow.get("bytesTotal").and_then(Value::as_u64) {
        Some(total) => format!("{done}/{total}"),
        None => done.to_string(),
    }
}

/// Prints a DPS status message: `<id>  <STATE>` (plus an error, if any).
fn signal_answer(id: &str, answer: &Value, output: OutputFormat) {
    match output {
        OutputFormat::Json => print_json(answer),
        OutputFormat::Text => {
            let flow = answer
                .get("dataFlowId")
                .and_then(Value::as_str)
                .unwrap_or(id);
            let state = cell(answer.get("state"));
            match answer.get("error").and_then(Value::as_str) {
                Some(error) => println!("{flow}  {state}  ({error})"),
                None => println!("{flow}  {state}"),
            }
        }
    }
}

/// `dpfctl controlplane ...`
pub async fn controlplane(
    api: &Api,
    command: ControlplaneCommand,
    output: OutputFormat,
) -> Result<()> {
    match command {
        ControlplaneCommand::Register { id, endpoint } => {
            let body = json!({
                "controlplaneId": id,
                "endpoint": endpoint,
                "authorization": {"type": "none"},
            });
            api.call(
                Method::PUT,
                &["signaling", "controlplanes"],
                &[],
                Body::Json(&body),
            )
            .await?;
            match output {
                OutputFormat::Json => print_json(&body),
                OutputFormat::Text => println!("registered control plane '{id}' at {endpoint}"),
            }
        }
        ControlplaneCommand::Delete { id } => {
            api.call(
                Method::DELETE,
                &["signaling", "controlplanes", &id],
                &[],
                Body::None,
            )
            .await?;
            deleted("control plane", &id, output);
        }
    }
    Ok(())
}

/// `dpfctl health`: both APIs must answer; fails if either does not.
pub async fn health(dataplane: &Api, selector_url: &str, output: OutputFormat) -> Result<()> {
    let selector = Api::new(selector_url)?;
    let mut report = serde_json::Map::new();
    let mut failures = Vec::new();
    for (name, api) in [("dataplane", dataplane), ("selector", &selector)] {
        match api.get(&["health"], &[]).await {
            Ok(answer) => {
                let status = cell(answer.get("status"));
                report.insert(name.into(), json!({"url": api.base(), "status": status}));
            }
            Err(error) => {
                report.insert(
                    name.into(),
                    json!({"url": api.base(), "status": "DOWN", "error": format!("{error:#}")}),
                );
                failures.push(format!("{name}: {error:#}"));
            }
        }
    }
    let report = Value::Object(report);
    match output {
        OutputFormat::Json => print_json(&report),
        OutputFormat::Text => {
            for name in ["dataplane", "selector"] {
                let entry = report.get(name);
                println!(
                    "{name:<10} {:<5} {}",
                    cell(entry.and_then(|e| e.get("status"))),
                    cell(entry.and_then(|e| e.get("url")))
                );
            }
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(anyhow!("{}", failures.join("; ")))
    }
}
