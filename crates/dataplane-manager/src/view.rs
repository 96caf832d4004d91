//! What operators see of a flow: [`DataFlowView`], with secrets redacted ([`redact`]).

use dataplane_spi::{Checkpoint, DataFlow, DataFlowState, FlowKind};
use serde::Serialize;

use crate::runner::checkpointer::TransferCounters;
use crate::{DataPlane, DataPlaneError};

type Result<T> = std::result::Result<T, DataPlaneError>;

/// Everything an operator wants to know about a flow (`GET /api/v1/dataflows/{id}`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DataFlowView {
    /// Flow id.
    pub id: String,
    /// Transfer process id.
    pub process_id: String,
    /// Role.
    pub kind: FlowKind,
    /// Transfer profile.
    pub profile: String,
    /// Internal state (may be SUSPENDING/TERMINATING).
    pub state: DataFlowState,
    /// State as the DPS API shows it.
    pub dps_state: &'static str,
    /// Times the current state was entered (retries increase it).
    pub state_count: i32,
    /// Retries of the current transfer attempt series.
    pub retries: i32,
    /// When the state was entered.
    pub state_timestamp: chrono::DateTime<chrono::Utc>,
    /// Creation time.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Last change.
    pub updated_at: chrono::DateTime<chrono::Utc>,
    /// Owning replica.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime_id: Option<String>,
    /// Fencing epoch.
    pub epoch: i64,
    /// Bytes moved so far (live when this replica runs the flow, else the last recorded).
    pub bytes_transferred: u64,
    /// Total bytes, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_total: Option<u64>,
    /// Bytes covered by the last checkpoint (durably at the destination).
    pub bytes_checkpointed: u64,
    /// Times the transfer continued from a checkpoint (retry, takeover, resume).
    pub resumes: u64,
    /// Times a later attempt had to start from zero (the destination or the source cannot
    /// continue where the last attempt stopped).
    pub restarts: u64,
    /// Why the transfer last restarted from zero.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_reason: Option<String>,
    /// Last recorded position.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Checkpoint>,
    /// Last error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_detail: Option<String>,
    /// Participant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub participant_id: Option<String>,
    /// Source address (tokens removed).
    pub source: serde_json::Value,
    /// Destination address (tokens removed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<serde_json::Value>,
    /// Message metadata (agreement, dataset, labels, ...; the flow token removed).
    pub metadata: serde_json::Value,
}

/// A flow's addresses and metadata as management views show them: at any depth, the value of
/// every property whose name looks secret (the rule of `dpf_config::is_secret_key`: `key`,
/// `secret`, `password`, `token`, `credential`, `auth`, `signature`, but not the object keys
/// `keyName`/`keyPrefix`; plus `claims` and `headers`) is masked, and so are the userinfo and
/// the query of every URL string.
pub fn redact(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(name, value)| {
                    let secret = dpf_config::is_secret_key(&name)
                        || name.eq_ignore_ascii_case("claims")
                        || name.eq_ignore_ascii_case("headers");
                    let value = if secret && !value.is_null() {
                        Value::String(dpf_config::MASK.into())
                    } else {
                        redact(value)
                    };
                    (name, value)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(redact).collect()),
        Value::String(text) => Value::String(redact_url_credentials(&text)),
        other => other,
    }
}

/// `text` with the userinfo and the query of a URL masked (`https://***@host/p?***`); anything
/// that is not a URL with an authority is returned unchanged.
fn redact_url_credentials(text: &str) -> String {
    let Ok(mut url) = url::Url::parse(text) else {
        return text.to_owned();
    };
    if !text.contains("://") || !url.has_host() {
        return text.to_owned();
    }
    let mut changed = false;
    if !url.username().is_empty() || url.password().is_some() {
        let _ = url.set_password(None);
        let _ = url.set_username(dpf_config::MASK);
        changed = true;
    }
    if url.query().is_some_and(|q| !q.is_empty()) {
        url.set_query(Some(dpf_config::MASK));
        changed = true;
    }
    if changed {
        url.to_string()
    } else {
        text.to_owned()
    }
}

impl DataPlane {
    /// The management view of one flow.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn view(&self, id: &str) -> Result<DataFlowView> {
        Ok(self.view_of(self.resolve(id).await?))
    }

    /// The management view of flows, optionally in one state, oldest first.
    ///
    /// # Errors
    /// Store failures.
    pub async fn views(
        &self,
        state: Option<DataFlowState>,
        limit: usize,
    ) -> Result<Vec<DataFlowView>> {
        let states: Vec<DataFlowState> = state.into_iter().collect();
        Ok(self
            .store
            .list(&states, limit)
            .await?
            .into_iter()
            .map(|f| self.view_of(f))
            .collect())
    }

    /// [`DataPlane::views`] restricted to the flows of one participant (what a control plane
    /// with a per-participant key may see). Scans the listing, so it costs as much as listing
    /// every flow in that state.
    ///
    /// # Errors
    /// Store failures.
    pub async fn participant_views(
        &self,
        participant: &str,
        state: Option<DataFlowState>,
        limit: usize,
    ) -> Result<Vec<DataFlowView>> {
        let states: Vec<DataFlowState> = state.into_iter().collect();
        Ok(self
            .store
            .list(&states, usize::MAX)
            .await?
            .into_iter()
            .filter(|f| f.participant_id.as_deref() == Some(participant))
            .take(limit)
            .map(|f| self.view_of(f))
            .collect())
    }

    pub(crate) fn view_of(&self, flow: DataFlow) -> DataFlowView {
        let live = self.runner.progress(&flow.id);
        let recorded = flow
            .checkpoint
            .as_ref()
            .map_or(0, |c| u64::try_from(c.bytes).unwrap_or(0));
        let (bytes_transferred, bytes_total) = match &live {
            Some(progress) => (progress.bytes().max(recorded), progress.total()),
            None => (recorded, None),
        };
        let counters = TransferCounters::of(&flow.metadata);
        let bytes_total = bytes_total.or_else(|| {
            flow.metadata
                .pointer("/transfer/bytesTotal")
                .and_then(serde_json::Value::as_u64)
        });
        DataFlowView {
            dps_state: flow.state.dps_name(),
            // A consumer-push flow records each upload with a same-state write: no retries.
            retries: if flow.state == DataFlowState::Started
                && flow.kind != dataplane_spi::FlowKind::ConsumerPush
            {
                flow.state_count - 1
            } else {
                0
            },
            id: flow.id,
            process_id: flow.process_id,
            kind: flow.kind,
            profile: flow.profile,
            state: flow.state,
            state_count: flow.state_count,
            state_timestamp: flow.state_timestamp,
            created_at: flow.created_at,
            updated_at: flow.updated_at,
            runtime_id: flow.runtime_id,
            epoch: flow.epoch,
            bytes_transferred,
            bytes_total,
            bytes_checkpointed: recorded,
            resumes: counters.resumes,
            restarts: counters.restarts,
            restart_reason: counters.restart_reason,
            checkpoint: flow.checkpoint,
            error_detail: flow.error_detail,
            participant_id: flow.participant_id,
            source: redact(flow.source),
            destination: flow.destination.map(redact),
            metadata: redact(flow.metadata),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn object_locators_are_shown_and_credentials_masked() {
        let shown = redact(serde_json::json!({
            "type": "AmazonS3", "bucketName": "sales", "keyName": "2026/q4.parquet",
            "keyPrefix": "exports/", "accessKeyId": "AKIA", "secretAccessKey": "s",
            "sessionToken": "t", "nested": {"blobName": "b", "blobPrefix": "p/",
            "container": "c", "accountKey": "k", "sasToken": "sv=1", "sharedAccessSignature": "sig",
            "dbPassword": "pw"},
        }));
        assert_eq!(shown["bucketName"], "sales");
        assert_eq!(shown["keyName"], "2026/q4.parquet");
        assert_eq!(shown["keyPrefix"], "exports/");
        assert_eq!(shown["nested"]["blobName"], "b");
        assert_eq!(shown["nested"]["blobPrefix"], "p/");
        assert_eq!(shown["nested"]["container"], "c");
        for secret in [
            &shown["accessKeyId"],
            &shown["secretAccessKey"],
            &shown["sessionToken"],
            &shown["nested"]["accountKey"],
            &shown["nested"]["sasToken"],
            &shown["nested"]["sharedAccessSignature"],
            &shown["nested"]["dbPassword"],
        ] {
            assert_eq!(secret, dpf_config::MASK);
        }
    }
}
