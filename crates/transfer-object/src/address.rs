//! `AmazonS3` and `AzureStorage` addresses (EDC's property names) and the object store each
//! one names.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use address_policy::AddressPolicy;
use dataplane_spi::{ResourceAddress, TransferError};
use object_store::aws::AmazonS3Builder;
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::{BackoffConfig, ObjectStore, RetryConfig};

use crate::connector::PolicyConnector;

/// Address type of Amazon S3 and S3-compatible stores.
pub const S3_TYPE: &str = "AmazonS3";
/// Address type of Azure Blob Storage.
pub const AZURE_TYPE: &str = "AzureStorage";

/// EDC's namespace: properties may come expanded (`https://w3id.org/edc/v0.0.1/ns/bucketName`).
const EDC_NAMESPACE: &str = "https://w3id.org/edc/v0.0.1/ns/";

/// What an address is used for: a source may name a prefix, a sink a key or a prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Source,
    Sink,
}

/// One object, or every object under a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Selection {
    Key(Path),
    Prefix(String),
}

/// A parsed address: the store (with the policy's HTTP client) and what in it.
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) multipart: Arc<dyn MultipartStore>,
    pub(crate) selection: Selection,
    /// `s3://bucket/key` or `azure://account/container/blob`, for messages (no credentials).
    pub(crate) shown: String,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("shown", &self.shown)
            .finish_non_exhaustive()
    }
}

fn invalid(message: String) -> TransferError {
    TransferError::InvalidAddress(message)
}

/// A non-blank string property, by any of `names`, plain or in EDC's namespace.
fn property<'a>(address: &'a ResourceAddress, names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|name| {
        address
            .get(name)
            .or_else(|| address.get(&format!("{EDC_NAMESPACE}{name}")))
            .filter(|v| !v.trim().is_empty())
    })
}

/// Retries of one request: few and short, so that bad input fails fast and a flaky store is
/// retried by the flow's own attempts (from the last checkpoint).
fn retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: 3,
        retry_timeout: Duration::from_secs(30),
    }
}

/// Checks an endpoint override against the policy; returns it normalised.
fn endpoint(policy: &AddressPolicy, raw: &str, what: &str) -> Result<String, TransferError> {
    policy
        .check_url(raw)
        .map(|url| url.as_str().trim_end_matches('/').to_owned())
        .map_err(|e| invalid(format!("{what}: {e}")))
}

fn selection(
    address: &ResourceAddress,
    role: Role,
    key_names: &[&str],
    prefix_names: &[&str],
    type_name: &str,
) -> Result<Selection, TransferError> {
    let key = property(address, key_names);
    let prefix = property(address, prefix_names);
    // EDC: on a source the prefix takes precedence; a destination names its object.
    let chosen = match (role, key, prefix) {
        (Role::Source, _, Some(prefix)) | (Role::Sink, None, Some(prefix)) => {
            Selection::Prefix(prefix.to_owned())
        }
        (_, Some(key), _) => Selection::Key(
            Path::parse(key).map_err(|e| invalid(format!("{}: {e}", key_names[0])))?,
        ),
        (_, None, None) => {
            return Err(invalid(format!(
                "an {type_name} address needs a \"{}\" (one object) or a \"{}\" (every object under it)",
                key_names[0], prefix_names[0]
            )))
        }
    };
    Ok(chosen)
}

impl Target {
    /// Parses `address` and builds its store; nothing is sent yet.
    pub(crate) fn parse(
        address: &ResourceAddress,
        policy: &AddressPolicy,
        role: Role,
    ) -> Result<Self, TransferError> {
        match address.type_name() {
            Some(S3_TYPE) => Self::s3(address, policy, role),
            Some(AZURE_TYPE) => Self::azure(address, policy, role),
            other => Err(TransferError::Unsupported(
                other.unwrap_or_default().to_owned(),
            )),
        }
    }

    fn s3(
        address: &ResourceAddress,
        policy: &AddressPolicy,
        role: Role,
    ) -> Result<Self, TransferError> {
        let bucket = property(address, &["bucketName"])
            .ok_or_else(|| invalid("an AmazonS3 address needs a \"bucketName\"".into()))?;
        let selection = selection(
            address,
            role,
            &["keyName", "objectName"],
            &["keyPrefix", "objectPrefix"],
            S3_TYPE,
        )?;
        let access_key = property(address, &["accessKeyId"]);
        let secret = property(address, &["secretAccessKey"]);
        let mut builder = match (access_key, secret) {
            (Some(id), Some(secret)) => {
                let mut builder = AmazonS3Builder::new()
                    .with_access_key_id(id)
                    .with_secret_access_key(secret);
                if let Some(token) = property(address, &["sessionToken"]) {
                    builder = builder.with_token(token);
                }
                builder
            }
            (None, None) => AmazonS3Builder::from_env(),
            _ => {
                return Err(invalid(
                    "an AmazonS3 address needs both \"accessKeyId\" and \"secretAccessKey\", or neither (the default credential chain)"
                        .into(),
                ))
            }
        };
        builder = builder
            .with_bucket_name(bucket)
            .with_region(property(address, &["region"]).unwrap_or("us-east-1"))
            .with_retry(retry())
            .with_http_connector(PolicyConnector::new(policy.clone()));
        if let Some(raw) = property(address, &["endpointOverride"]) {
            let url = endpoint(policy, raw, "endpointOverride")?;
            builder = builder
                .with_allow_http(url.starts_with("http://"))
                .with_virtual_hosted_style_request(false)
                .with_endpoint(url);
        }
        let store = Arc::new(
            builder
                .build()
                .map_err(|e| invalid(format!("AmazonS3 address: {e}")))?,
        );
        Ok(Self {
            shown: shown("s3", bucket, &selection),
            store: store.clone(),
            multipart: store,
            selection,
        })
    }

    fn azure(
        address: &ResourceAddress,
        policy: &AddressPolicy,
        role: Role,
    ) -> Result<Self, TransferError> {
        let account = property(address, &["account"])
            .ok_or_else(|| invalid("an AzureStorage address needs an \"account\"".into()))?;
        let container = property(address, &["container"])
            .ok_or_else(|| invalid("an AzureStorage address needs a \"container\"".into()))?;
        let selection = selection(address, role, &["blobName"], &["blobPrefix"], AZURE_TYPE)?;
        let mut builder = MicrosoftAzureBuilder::new()
            .with_account(account)
            .with_container_name(container)
            .with_retry(retry())
            .with_http_connector(PolicyConnector::new(policy.clone()));
        match (
            property(address, &["sasToken", "sharedAccessSignature"]),
            property(address, &["accountKey", "accessKey"]),
        ) {
            (Some(sas), _) => {
                builder = builder.with_config(AzureConfigKey::SasKey, sas.trim_start_matches('?'));
            }
            (None, Some(key)) => builder = builder.with_access_key(key),
            (None, None) => {}
        }
        if let Some(raw) = property(address, &["endpointOverride", "endpoint"]) {
            let url = endpoint(policy, raw, "endpointOverride")?;
            builder = builder
                .with_allow_http(url.starts_with("http://"))
                .with_endpoint(url);
        }
        let store = Arc::new(
            builder
                .build()
                .map_err(|e| invalid(format!("AzureStorage address: {e}")))?,
        );
        Ok(Self {
            shown: shown("azure", &format!("{account}/{container}"), &selection),
            store: store.clone(),
            multipart: store,
            selection,
        })
    }
}

fn shown(scheme: &str, bucket: &str, selection: &Selection) -> String {
    match selection {
        Selection::Key(key) => format!("{scheme}://{bucket}/{key}"),
        Selection::Prefix(prefix) => format!("{scheme}://{bucket}/{prefix}*"),
    }
}
