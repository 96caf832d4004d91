//! What every incoming DPS message passes: field checks, the address policy, the metadata kept,
//! duplicate process ids.

use dataplane_spi::{
    DataAddress, DataFlow, DataFlowMessage, NewDataFlow, ResourceAddress, StoreError,
};

use super::TOKEN_KEY;
use crate::datasets::{check_address, check_with_transfers};
use crate::{DataPlane, DataPlaneError};

type Result<T> = std::result::Result<T, DataPlaneError>;

impl DataPlane {
    /// The resource a DPS data address names, through the address policy: `file://` only
    /// when allowed and beneath the file root; HTTP URLs parsed once and checked (HTTPS,
    /// denied networks, allow-list).
    pub(crate) fn resource_of(&self, address: &DataAddress) -> Result<ResourceAddress> {
        let policy = &self.config.address_policy;
        if address
            .endpoint
            .get(..7)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("file://"))
        {
            let relative = policy
                .check_file_url(&address.endpoint)
                .map_err(|e| DataPlaneError::InvalidInput(format!("dataAddress: {e}")))?;
            return Ok(ResourceAddress::file(relative.to_string_lossy()));
        }
        self.check_address(&address.to_resource())
            .map_err(|e| DataPlaneError::InvalidInput(format!("dataAddress: {e}")))
    }

    /// Checks a transfer address (its type's properties, then the address policy) and returns
    /// it as it is stored and used.
    pub(crate) fn check_address(&self, address: &ResourceAddress) -> Result<ResourceAddress> {
        check_address(address, &self.known_types(), &self.config.address_policy)
    }

    /// Has the transfer registry create the source (`as_sink` false) or sink of `address` once,
    /// which sends nothing: for the types it checks itself (object storage: bucket, key,
    /// endpoint and the address policy), a bad address is refused before any flow exists.
    pub(crate) fn check_transfer(&self, address: &ResourceAddress, as_sink: bool) -> Result<()> {
        check_with_transfers(&self.transfers, address, as_sink)
    }

    pub(crate) fn check_message(&self, msg: &DataFlowMessage) -> Result<()> {
        for (field, value) in [
            ("messageId", &msg.message_id),
            ("processId", &msg.process_id),
            ("participantId", &msg.participant_id),
            ("datasetId", &msg.dataset_id),
            ("profile", &msg.profile),
        ] {
            if value.trim().is_empty() {
                return Err(DataPlaneError::InvalidInput(format!(
                    "{field} must not be blank"
                )));
            }
        }
        Ok(())
    }

    pub(crate) async fn check_new_process(&self, process_id: &str) -> Result<()> {
        if self.store.find_by_process_id(process_id).await?.is_some() {
            return Err(DataPlaneError::Conflict(format!(
                "a data flow for process '{process_id}' exists already"
            )));
        }
        Ok(())
    }

    /// The flow metadata kept from a DPS message. Only the digest of `token` is stored, and
    /// the counterparty's destination (with its credentials) is not copied: it is the flow's
    /// destination already.
    pub(crate) fn metadata_of(msg: &DataFlowMessage, token: Option<&str>) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        map.insert("messageId".into(), msg.message_id.clone().into());
        map.insert("agreementId".into(), msg.agreement_id.clone().into());
        map.insert("datasetId".into(), msg.dataset_id.clone().into());
        map.insert("counterPartyId".into(), msg.counter_party_id.clone().into());
        map.insert(
            "dataspaceContext".into(),
            msg.dataspace_context.clone().into(),
        );
        map.insert(
            "claims".into(),
            serde_json::Value::Object(msg.claims.clone()),
        );
        if let Some(labels) = &msg.labels {
            map.insert("labels".into(), serde_json::json!(labels));
        }
        if let Some(metadata) = &msg.metadata {
            let mut metadata = metadata.clone();
            metadata.remove("destination");
            map.insert("metadata".into(), serde_json::Value::Object(metadata));
        }
        if let Some(token) = token {
            map.insert(
                TOKEN_KEY.into(),
                dataplane_spi::secrets::token_digest(token).into(),
            );
        }
        serde_json::Value::Object(map)
    }

    pub(crate) async fn create(&self, new: NewDataFlow) -> Result<DataFlow> {
        self.store.create(&new).await.map_err(|error| match error {
            StoreError::AlreadyExists { .. } => DataPlaneError::Conflict(format!(
                "a data flow for process '{}' exists already",
                new.process_id
            )),
            other => other.into(),
        })
    }
}
