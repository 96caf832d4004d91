//! object_store's HTTP client, built from the data plane's address policy.

use std::time::Duration;

use address_policy::AddressPolicy;
use async_trait::async_trait;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse, HttpService,
};
use object_store::ClientOptions;

/// Builds object_store's client from [`AddressPolicy::client_builder`]: the policy's DNS
/// resolver (denied networks and allow-list checked on every resolved address), no redirects,
/// no proxies from the environment. object_store's own client options (timeouts, proxies) are
/// not used.
#[derive(Debug, Clone)]
pub(crate) struct PolicyConnector {
    policy: AddressPolicy,
}

impl PolicyConnector {
    pub(crate) fn new(policy: AddressPolicy) -> Self {
        Self { policy }
    }
}

impl HttpConnector for PolicyConnector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        let client = self
            .policy
            .client_builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(120))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| object_store::Error::Generic {
                store: "dpf",
                source: Box::new(e),
            })?;
        Ok(HttpClient::new(PolicyService {
            client,
            policy: self.policy.clone(),
        }))
    }
}

/// Checks every request URL against the policy (IP literals never reach the resolver: the
/// endpoints of instance-metadata credential providers are such literals), then sends it.
#[derive(Debug)]
struct PolicyService {
    client: reqwest::Client,
    policy: AddressPolicy,
}

/// A request the policy refused.
#[derive(Debug, thiserror::Error)]
#[error("refused by the address policy: {0}")]
struct Refused(String);

#[async_trait]
impl HttpService for PolicyService {
    async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let uri = request.uri().to_string();
        if let Err(error) = self.policy.check_url(&uri) {
            return Err(HttpError::new(HttpErrorKind::Unknown, Refused(error.0)));
        }
        HttpService::call(&self.client, request).await
    }
}
