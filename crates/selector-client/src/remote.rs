use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use selector_spi::{
    DataPlaneInstance, DataPlaneRegistration, ErrorCode, SelectionRequest, SelectorError,
    SelectorResult,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{with_default_strategy, SelectorClient};

/// Largest response body the client accepts, in bytes (a list of many instances fits easily).
const MAX_RESPONSE_BODY: usize = 16 * 1024 * 1024;

/// A secret that never shows in `Debug` output (logs).
#[derive(Clone)]
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Settings of a [`RemoteSelectorClient`].
#[derive(Clone)]
pub struct RemoteSelectorClientConfig {
    /// Base URL of the selector API, e.g. `http://selector:8181/api/v1`.
    pub base_url: String,
    /// Default strategy for requests that name none.
    pub strategy: Option<String>,
    /// Timeout of each call.
    pub timeout: Duration,
    /// Timeout of establishing a connection.
    pub connect_timeout: Duration,
    /// API key of the selector, sent as `Authorization: Bearer <key>` (a sensitive header)
    /// with every request, when it requires one. Never shown by `Debug`.
    pub api_key: Option<String>,
    /// An extra trusted CA (PEM) for an `https://` selector with a private certificate,
    /// trusted besides the system's trust store. The client follows no redirects.
    pub ca_pem: Option<Vec<u8>>,
    /// Accept any server certificate (`dpfctl --insecure-skip-tls-verify`): for testing only.
    pub danger_accept_invalid_certs: bool,
}

impl std::fmt::Debug for RemoteSelectorClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSelectorClientConfig")
            .field("base_url", &self.base_url)
            .field("strategy", &self.strategy)
            .field("timeout", &self.timeout)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

impl RemoteSelectorClientConfig {
    /// Defaults (10 s per call, 3 s to connect) for `base_url`.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            strategy: None,
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            api_key: None,
            ca_pem: None,
            danger_accept_invalid_certs: false,
        }
    }
}

/// [`SelectorClient`] for a standalone selector, over its REST API.
#[derive(Debug, Clone)]
pub struct RemoteSelectorClient {
    api_key: Option<Secret>,
    http: reqwest::Client,
    base_url: url::Url,
    strategy: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    code: Option<String>,
}

#[derive(Deserialize)]
struct StrategiesBody {
    strategies: Vec<String>,
}

impl RemoteSelectorClient {
    /// A client for the selector API at `config.base_url`.
    ///
    /// # Errors
    /// [`SelectorError::InvalidInput`] when the URL is not an absolute http(s) URL.
    pub fn new(config: RemoteSelectorClientConfig) -> SelectorResult<Self> {
        let mut base_url = url::Url::parse(&config.base_url).map_err(|e| {
            SelectorError::InvalidInput(format!("selector URL '{}': {e}", config.base_url))
        })?;
        if !matches!(base_url.scheme(), "http" | "https") {
            return Err(SelectorError::InvalidInput(format!(
                "selector URL '{}' must use http or https",
                config.base_url
            )));
        }
        // `Url::join` replaces the last segment unless the path ends with '/'.
        if !base_url.path().ends_with('/') {
            let path = format!("{}/", base_url.path());
            base_url.set_path(&path);
        }
        // A redirect is an error: it could take the API key to another host.
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = &config.ca_pem {
            let ca = reqwest::Certificate::from_pem(pem)
                .map_err(|e| SelectorError::InvalidInput(format!("bad CA certificate: {e}")))?;
            builder = builder.add_root_certificate(ca);
        }
        if config.danger_accept_invalid_certs {
            builder = builder.danger_accept_invalid_certs(true);
        }
        let http = builder
            .build()
            .map_err(|e| SelectorError::Internal(format!("cannot build HTTP client: {e}")))?;
        Ok(Self {
            api_key: config.api_key.map(Secret),
            http,
            base_url,
            strategy: config.strategy,
        })
    }

    /// A client with default settings for `base_url`.
    ///
    /// # Errors
    /// As [`RemoteSelectorClient::new`].
    pub fn for_url(base_url: impl Into<String>) -> SelectorResult<Self> {
        Self::new(RemoteSelectorClientConfig::new(base_url))
    }

    /// Uses `strategy` for requests that name none.
    pub fn with_strategy(mut self, strategy: impl Into<String>) -> Self {
        self.strategy = Some(strategy.into());
        self
    }

    fn url(&self, path: &str) -> SelectorResult<url::Url> {
        self.base_url
            .join(path)
            .map_err(|e| SelectorError::InvalidInput(format!("bad path '{path}': {e}")))
    }

    /// Sends one request and returns the status and the (bounded) body.
    async fn call<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> SelectorResult<(StatusCode, Vec<u8>)> {
        let mut request = self.http.request(method, self.url(path)?);
        if let Some(key) = &self.api_key {
            let mut value = reqwest::header::HeaderValue::try_from(format!("Bearer {}", key.0))
                .map_err(|_| {
                    SelectorError::InvalidInput(
                        "the selector API key contains characters a header cannot carry".into(),
                    )
                })?;
            value.set_sensitive(true);
            request = request.header(reqwest::header::AUTHORIZATION, value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(transport_error)?;
            if body.len() + chunk.len() > MAX_RESPONSE_BODY {
                return Err(SelectorError::Internal(format!(
                    "selector response exceeds {MAX_RESPONSE_BODY} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        if status.is_success() {
            Ok((status, body))
        } else {
            Err(error_from_response(status, &body))
        }
    }

    async fn call_json<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> SelectorResult<T> {
        let (_, bytes) = self.call(method, path, body).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| SelectorError::Internal(format!("unexpected response from selector: {e}")))
    }
}

fn transport_error(error: reqwest::Error) -> SelectorError {
    SelectorError::Unavailable(format!("cannot reach selector: {error}"))
}

/// Translates an error response back into the variant the server mapped it from.
fn error_from_response(status: StatusCode, body: &[u8]) -> SelectorError {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let message = parsed
        .as_ref()
        .map(|b| b.error.clone())
        .unwrap_or_else(|| format!("selector answered {status}"));
    let code = parsed
        .and_then(|b| b.code)
        .and_then(|c| serde_json::from_value::<ErrorCode>(serde_json::Value::String(c)).ok());
    match code {
        Some(ErrorCode::NotFound) => SelectorError::NotFound {
            id: quoted(&message).unwrap_or(message),
        },
        Some(ErrorCode::AlreadyExists) => SelectorError::AlreadyExists {
            id: quoted(&message).unwrap_or(message),
        },
        Some(ErrorCode::NoMatch) => SelectorError::NoMatch(
            message
                .strip_prefix("no data plane can handle ")
                .map(str::to_owned)
                .unwrap_or(message),
        ),
        Some(ErrorCode::UnknownStrategy) => {
            let name = quoted(&message).unwrap_or_default();
            let known = message
                .split_once("known strategies: ")
                .map(|(_, list)| list.split(", ").map(str::to_owned).collect())
                .unwrap_or_default();
            SelectorError::UnknownStrategy { name, known }
        }
        Some(ErrorCode::InvalidInput) => SelectorError::InvalidInput(message),
        Some(ErrorCode::Unavailable) => SelectorError::Unavailable(message),
        Some(ErrorCode::Internal) => SelectorError::Internal(message),
        None if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
            SelectorError::InvalidInput(format!(
                "the selector refused the request ({status}): {message}; check its API key"
            ))
        }
        None if status.is_client_error() => SelectorError::InvalidInput(message),
        None if status == StatusCode::SERVICE_UNAVAILABLE => SelectorError::Unavailable(message),
        None => SelectorError::Internal(message),
    }
}

/// The first `'…'`-quoted part of a message (the id or strategy name in our messages).
fn quoted(message: &str) -> Option<String> {
    let start = message.find('\'')? + 1;
    let len = message[start..].find('\'')?;
    Some(message[start..start + len].to_owned())
}

fn encode_segment(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[async_trait]
impl SelectorClient for RemoteSelectorClient {
    async fn select(&self, request: &SelectionRequest) -> SelectorResult<DataPlaneInstance> {
        let request = with_default_strategy(request, self.strategy.as_deref());
        self.call_json(Method::POST, "dataplanes/select", Some(&request))
            .await
    }

    async fn add(&self, registration: &DataPlaneRegistration) -> SelectorResult<DataPlaneInstance> {
        self.call_json(Method::POST, "dataplanes", Some(registration))
            .await
    }

    async fn register(
        &self,
        registration: &DataPlaneRegistration,
    ) -> SelectorResult<DataPlaneInstance> {
        self.call_json(Method::PUT, "dataplanes", Some(registration))
            .await
    }

    async fn get(&self, id: &str) -> SelectorResult<DataPlaneInstance> {
        self.call_json::<_, ()>(
            Method::GET,
            &format!("dataplanes/{}", encode_segment(id)),
            None,
        )
        .await
    }

    async fn list(&self) -> SelectorResult<Vec<DataPlaneInstance>> {
        self.call_json::<_, ()>(Method::GET, "dataplanes", None)
            .await
    }

    async fn remove(&self, id: &str) -> SelectorResult<()> {
        self.call::<()>(
            Method::DELETE,
            &format!("dataplanes/{}", encode_segment(id)),
            None,
        )
        .await
        .map(|_| ())
    }

    async fn strategies(&self) -> SelectorResult<Vec<String>> {
        let body: StrategiesBody = self
            .call_json::<_, ()>(Method::GET, "strategies", None)
            .await?;
        Ok(body.strategies)
    }
}
