//! `dpfctl transfer`: a minimal DPS control plane for both sides of one transfer.
//!
//! http-push: prepare (consumer) → start with the consumer's address (provider) → started
//! (consumer) → watch the provider flow → completed (consumer).
//!
//! http-pull: prepare (consumer) → start (provider) answers the pull address → started with
//! it (consumer) → watch the consumer flow → completed (provider).
//!
//! When a step fails, the flows created so far are terminated (best effort) so nothing is
//! left waiting.

use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use dataplane_spi::{DataAddress, DataFlowMessage, DataFlowStatusMessage};
use reqwest::Method;
use selector_client::SelectorClient;
use selector_spi::SelectionRequest;
use serde_json::{json, Value};

use crate::api::{Api, Body};
use crate::cli::{TransferArgs, TransferProfile};
use crate::commands::{message_id, selector, selector_error};
use crate::output::{print_json, OutputFormat};
use crate::watch::{watch_at, Source};

/// Participant id of the consumer side.
pub const CONSUMER_PARTICIPANT: &str = "dpfctl-consumer";
/// Participant id of the provider side.
pub const PROVIDER_PARTICIPANT: &str = "dpfctl-provider";
/// The `dataspaceContext` of dpfctl's messages.
pub const DATASPACE_CONTEXT: &str = "dpfctl";

/// One side of a transfer: its DPS signaling API and, when known, its management API.
#[derive(Debug)]
struct Side {
    signaling: Api,
    management: Option<Api>,
}

impl Side {
    /// From `--consumer`/`--provider`/`--dataplane`: a signaling base (`…/signaling`) or an
    /// API base (`…/api/v1`).
    fn from_flag(url: &str) -> Result<Self> {
        let url = url.trim().trim_end_matches('/');
        match url.strip_suffix("/signaling") {
            Some(base) => Ok(Self {
                signaling: Api::new(url)?,
                management: Some(Api::new(base)?),
            }),
            None => Ok(Self {
                signaling: Api::new(&format!("{url}/signaling"))?,
                management: Some(Api::new(url)?),
            }),
        }
    }

    /// From a selected instance's `endpoint`, a DPS signaling base URL. Its management API
    /// is known only when the endpoint is dpf's usual `…/api/v1/signaling`.
    fn from_endpoint(endpoint: &str) -> Result<Self> {
        let url = endpoint.trim().trim_end_matches('/');
        match url.strip_suffix("/signaling") {
            Some(_) => Self::from_flag(url),
            None => Ok(Self {
                signaling: Api::new(url)?,
                management: None,
            }),
        }
    }

    fn url(&self) -> &str {
        self.signaling.base()
    }

    fn source(&self) -> Source<'_> {
        match &self.management {
            Some(api) => Source::Management(api),
            None => Source::Signaling(&self.signaling),
        }
    }

    async fn send(&self, what: &str, path: &[&str], body: &Value) -> Result<DataFlowStatusMessage> {
        let answer = self
            .signaling
            .post(path, body)
            .await
            .with_context(|| format!("{what} at {}", self.url()))?;
        serde_json::from_value(answer)
            .with_context(|| format!("unexpected answer to {what} from {}", self.url()))
    }

    async fn completed(&self, flow_id: &str) -> Result<()> {
        self.signaling
            .call(
                Method::POST,
                &["dataflows", flow_id, "completed"],
                &[],
                Body::None,
            )
            .await
            .with_context(|| format!("DPS completed at {}", self.url()))?;
        Ok(())
    }

    /// Terminates a flow, ignoring failures (it may have ended already).
    async fn terminate_quietly(&self, flow_id: &str, reason: &str) {
        let body = json!({"messageId": message_id(), "reason": reason});
        let _ = self
            .signaling
            .post(&["dataflows", flow_id, "terminate"], &body)
            .await;
    }
}

/// The DPS message for one side; `provider` chooses participant and counterparty.
fn dps_message(
    args: &TransferArgs,
    transfer_id: &str,
    provider: bool,
    destination: Option<&Path>,
    data_address: Option<DataAddress>,
) -> Result<Value> {
    let (participant, counter_party, role) = if provider {
        (PROVIDER_PARTICIPANT, CONSUMER_PARTICIPANT, "provider")
    } else {
        (CONSUMER_PARTICIPANT, PROVIDER_PARTICIPANT, "consumer")
    };
    let metadata = destination.map(|path| {
        let mut map = serde_json::Map::new();
        map.insert(
            "destination".into(),
            json!({"type": "File", "path": path.to_string_lossy()}),
        );
        map
    });
    let message = DataFlowMessage {
        message_id: message_id(),
        participant_id: participant.into(),
        counter_party_id: counter_party.into(),
        dataspace_context: DATASPACE_CONTEXT.into(),
        process_id: format!("{transfer_id}-{role}"),
        agreement_id: format!("dpfctl-agreement-{transfer_id}"),
        dataset_id: args.dataset.clone(),
        profile: args.profile.url().into(),
        claims: serde_json::Map::new(),
        data_address,
        labels: None,
        metadata,
    };
    serde_json::to_value(message).context("cannot encode a DPS message")
}

/// Flows of a transfer, for reports.
#[derive(Debug, Default)]
struct Flows {
    consumer: Option<String>,
    provider: Option<String>,
}

/// `dpfctl transfer ...`
pub async fn transfer(
    dataplane: &str,
    selector_url: &str,
    args: TransferArgs,
    output: OutputFormat,
) -> Result<()> {
    let step = |text: String| {
        if output == OutputFormat::Text {
            eprintln!("{text}");
        }
    };
    let consumer = Side::from_flag(args.consumer.as_deref().unwrap_or(dataplane))?;
    let provider = if args.select {
        let client = selector(selector_url)?;
        let request =
            SelectionRequest::for_profile(args.profile.url()).with_labels(args.labels.clone());
        let request = match &args.strategy {
            Some(strategy) => request.with_strategy(strategy),
            None => request,
        };
        let mut request = request;
        request.dataset_id = Some(args.dataset.clone());
        let instance = client
            .select(&request)
            .await
            .map_err(|e| selector_error(selector_url, e))?;
        step(format!(
            "selected data plane '{}' ({})",
            instance.id.as_str(),
            instance.endpoint
        ));
        Side::from_endpoint(&instance.endpoint)?
    } else {
        Side::from_flag(args.provider.as_deref().unwrap_or(dataplane))?
    };
    // Sent as given: the consumer data plane resolves it beneath its file root
    // (dpf.transfer.file.root) and refuses anything outside it.
    let destination = args.to_file.clone();
    let transfer_id = uuid::Uuid::new_v4().to_string();
    let clock = Instant::now();
    let mut flows = Flows::default();

    let outcome = run(
        &args,
        &transfer_id,
        &destination,
        &consumer,
        &provider,
        &mut flows,
        &step,
    )
    .await;
    let watched = match outcome {
        Ok(watched) => watched,
        Err(error) => {
            let reason = format!("dpfctl transfer failed: {error:#}");
            if let Some(id) = &flows.consumer {
                consumer.terminate_quietly(id, &reason).await;
            }
            if let Some(id) = &flows.provider {
                provider.terminate_quietly(id, &reason).await;
            }
            return Err(error);
        }
    };
    let consumer_flow = flows.consumer.clone().unwrap_or_default();
    let provider_flow = flows.provider.clone().unwrap_or_default();
    let mut report = json!({
        "dataset": args.dataset,
        "profile": args.profile.url(),
        "destination": destination.to_string_lossy(),
        "consumer": {"endpoint": consumer.url(), "flowId": consumer_flow,
                     "processId": format!("{transfer_id}-consumer")},
        "provider": {"endpoint": provider.url(), "flowId": provider_flow,
                     "processId": format!("{transfer_id}-provider")},
    });
    let Some(bytes) = watched else {
        report["state"] = "STARTED".into();
        match output {
            OutputFormat::Json => print_json(&report),
            OutputFormat::Text => {
                let watched_flow = match args.profile {
                    TransferProfile::Push => &provider_flow,
                    TransferProfile::Pull => &consumer_flow,
                };
                println!("transfer started; consumer flow {consumer_flow}, provider flow {provider_flow}");
                println!("follow it with: dpfctl flow watch {watched_flow}");
            }
        }
        return Ok(());
    };
    let bytes = match bytes {
        0 => std::fs::metadata(&destination).map_or(0, |m| m.len()),
        n => n,
    };
    let seconds = clock.elapsed().as_secs_f64();
    let mb_per_second = if seconds > 0.0 {
        bytes as f64 / 1e6 / seconds
    } else {
        0.0
    };
    report["state"] = "COMPLETED".into();
    report["bytes"] = bytes.into();
    report["seconds"] = json!((seconds * 1000.0).round() / 1000.0);
    report["mbPerSecond"] = json!((mb_per_second * 100.0).round() / 100.0);
    match output {
        OutputFormat::Json => print_json(&report),
        OutputFormat::Text => {
            println!(
                "transferred {} ({bytes} bytes) of dataset '{}' to {} in {seconds:.2} s ({mb_per_second:.2} MB/s) over {}",
                indicatif::HumanBytes(bytes),
                args.dataset,
                destination.display(),
                crate::output::short_profile(args.profile.url()),
            );
            println!("consumer flow {consumer_flow}, provider flow {provider_flow}");
        }
    }
    Ok(())
}

/// The signalling; `Ok(None)` with `--no-wait`, else the bytes moved.
async fn run(
    args: &TransferArgs,
    transfer_id: &str,
    destination: &Path,
    consumer: &Side,
    provider: &Side,
    flows: &mut Flows,
    step: &dyn Fn(String),
) -> Result<Option<u64>> {
    let prepare = dps_message(args, transfer_id, false, Some(destination), None)?;
    let prepared = consumer
        .send("DPS prepare", &["dataflows", "prepare"], &prepare)
        .await?;
    let consumer_id = prepared.data_flow_id.clone();
    flows.consumer = Some(consumer_id.clone());
    step(format!(
        "consumer flow {consumer_id} {} at {}",
        prepared.state,
        consumer.url()
    ));

    let start_address = match args.profile {
        TransferProfile::Push => Some(prepared.data_address.ok_or_else(|| {
            anyhow!("the consumer answered prepare without a dataAddress to push to")
        })?),
        TransferProfile::Pull => None,
    };
    let start = dps_message(args, transfer_id, true, None, start_address)?;
    let started = provider
        .send("DPS start", &["dataflows", "start"], &start)
        .await?;
    let provider_id = started.data_flow_id.clone();
    flows.provider = Some(provider_id.clone());
    step(format!(
        "provider flow {provider_id} {} at {}",
        started.state,
        provider.url()
    ));

    let mut notification = json!({"messageId": message_id()});
    if args.profile == TransferProfile::Pull {
        let address = started.data_address.ok_or_else(|| {
            anyhow!("the provider answered a pull start without a dataAddress to pull from")
        })?;
        notification["dataAddress"] =
            serde_json::to_value(address).context("cannot encode the data address")?;
    }
    consumer
        .send(
            "DPS started",
            &["dataflows", &consumer_id, "started"],
            &notification,
        )
        .await?;
    if args.no_wait {
        return Ok(None);
    }

    let (watched_side, watched_id, other_side, other_id) = match args.profile {
        TransferProfile::Push => (provider, &provider_id, consumer, &consumer_id),
        TransferProfile::Pull => (consumer, &consumer_id, provider, &provider_id),
    };
    let watched = watch_at(watched_side.source(), watched_id, args.timeout, true).await?;
    other_side.completed(other_id).await?;
    Ok(Some(watched.bytes))
}
