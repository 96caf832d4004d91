use std::sync::Arc;
use std::time::Duration;

use dataplane_spi::DataFlowStatusMessage;

use crate::ControlPlaneRegistry;

/// One callback to a control plane.
#[derive(Debug, Clone)]
pub struct CallbackEvent {
    /// The flow's transfer process id (the `:transferId` of the callback URL).
    pub process_id: String,
    /// The flow's participant (selects the control plane).
    pub participant_id: Option<String>,
    /// `prepared`, `started`, `completed` or `errored`.
    pub event: &'static str,
    /// The body.
    pub message: DataFlowStatusMessage,
}

/// Characters kept as they are in a callback URL's path segment (RFC 3986 unreserved); every
/// other byte of a process id is percent-encoded, so it stays one segment.
pub(crate) const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `<endpoint>/transfers/<processId>/dataflow/<event>` with the process id percent-encoded as
/// one path segment (`a/b?c` → `a%2Fb%3Fc`; `.` and `..` are encoded too, so they never
/// climb the endpoint's path).
pub fn callback_url(endpoint: &str, process_id: &str, event: &str) -> String {
    let segment = if process_id.chars().all(|c| c == '.') {
        process_id.replace('.', "%2E")
    } else {
        percent_encoding::utf8_percent_encode(process_id, SEGMENT).to_string()
    };
    format!(
        "{}/transfers/{segment}/dataflow/{event}",
        endpoint.trim_end_matches('/')
    )
}

/// A cached OAuth 2 access token and when to stop using it.
#[derive(Debug, Clone)]
struct CachedToken {
    token: String,
    until: std::time::Instant,
}

/// Delivers callbacks in the background: each one in its own task, retried with exponential
/// backoff on connection failures, 5xx, 408 and 429, up to a limit. [`CallbackDispatcher::send`]
/// never waits, so a slow or dead control plane never delays a flow.
#[derive(Debug, Clone)]
pub struct CallbackDispatcher {
    retried: Arc<std::sync::atomic::AtomicU64>,
    given_up: Arc<std::sync::atomic::AtomicU64>,
    http: reqwest::Client,
    registry: Arc<ControlPlaneRegistry>,
    max_attempts: u32,
    first_backoff: Duration,
    /// OAuth 2 access tokens by token endpoint and client id.
    tokens: Arc<std::sync::Mutex<std::collections::HashMap<(String, String), CachedToken>>>,
}

const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl CallbackDispatcher {
    /// A dispatcher resolving control planes in `registry`.
    pub fn new(
        registry: Arc<ControlPlaneRegistry>,
        max_attempts: u32,
        first_backoff: Duration,
    ) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap_or_default();
        Self::with_client(registry, http, max_attempts, first_backoff)
    }

    /// A dispatcher using `http` (e.g. a client that trusts a private CA).
    pub fn with_client(
        registry: Arc<ControlPlaneRegistry>,
        http: reqwest::Client,
        max_attempts: u32,
        first_backoff: Duration,
    ) -> Self {
        Self {
            retried: Arc::default(),
            given_up: Arc::default(),
            http,
            registry,
            max_attempts: max_attempts.max(1),
            first_backoff,
            tokens: Arc::default(),
        }
    }

    /// The header a callback carries for a control plane registered with `authorization` (the
    /// DPS authorization object), if any:
    /// - `none` (or no `type`): nothing;
    /// - `bearer` with `token`: `Authorization: Bearer <token>`;
    /// - `apikey`/`api-key` with `key` (and optionally `header`, default `X-Api-Key`);
    /// - `oauth2_client_credentials` with `tokenEndpoint`, `clientId`, `clientSecret`: an
    ///   access token from the token endpoint (RFC 6749 client credentials grant), cached until
    ///   shortly before it expires, as `Authorization: Bearer <access token>`.
    ///
    /// # Errors
    /// An incomplete object, an unknown type, or a token endpoint that gives no token.
    async fn credential(
        &self,
        authorization: &serde_json::Value,
    ) -> Result<Option<(String, String)>, String> {
        // Property names ignoring case: keys from the environment arrive lower-cased.
        let field = |name: &str| {
            authorization
                .as_object()?
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .and_then(|(_, v)| v.as_str())
        };
        let required = |name: &str| {
            field(name)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("the control plane's authorization has no '{name}'"))
        };
        match field("type").map(str::to_ascii_lowercase).as_deref() {
            None | Some("none" | "") => Ok(None),
            Some("bearer") => Ok(Some((
                "Authorization".into(),
                format!("Bearer {}", required("token")?),
            ))),
            Some("apikey" | "api-key" | "api_key") => Ok(Some((
                field("header").unwrap_or("X-Api-Key").to_owned(),
                required("key")?.to_owned(),
            ))),
            Some("oauth2_client_credentials") => {
                let endpoint = required("tokenEndpoint")?;
                let client_id = required("clientId")?;
                let secret = required("clientSecret")?;
                let token = self.oauth_token(endpoint, client_id, secret).await?;
                Ok(Some(("Authorization".into(), format!("Bearer {token}"))))
            }
            Some(other) => Err(format!(
                "unsupported authorization type '{other}' (supported: none, bearer, apikey, oauth2_client_credentials)"
            )),
        }
    }

    async fn oauth_token(
        &self,
        endpoint: &str,
        client_id: &str,
        secret: &str,
    ) -> Result<String, String> {
        let cache_key = (endpoint.to_owned(), client_id.to_owned());
        if let Ok(tokens) = self.tokens.lock() {
            if let Some(cached) = tokens.get(&cache_key) {
                if cached.until > std::time::Instant::now() {
                    return Ok(cached.token.clone());
                }
            }
        }
        let response = self
            .http
            .post(endpoint)
            .basic_auth(client_id, Some(secret))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
            ])
            .send()
            .await
            .map_err(|e| format!("token endpoint {endpoint}: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("token endpoint {endpoint} answered {status}"));
        }
        let body: serde_json::Value = response
            .json()
            .await
            .map_err(|e| format!("token endpoint {endpoint}: {e}"))?;
        let token = body
            .get("access_token")
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| format!("token endpoint {endpoint} returned no access_token"))?
            .to_owned();
        let lifetime = body
            .get("expires_in")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(300);
        // Renew a little early, so a token never expires on its way.
        let usable = Duration::from_secs(lifetime.saturating_sub(lifetime / 10 + 5).max(1));
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.insert(
                cache_key,
                CachedToken {
                    token: token.clone(),
                    until: std::time::Instant::now() + usable,
                },
            );
        }
        Ok(token)
    }

    fn forget_token(&self, authorization: &serde_json::Value) {
        let field = |name: &str| authorization.get(name).and_then(|v| v.as_str());
        if let (Some(endpoint), Some(client)) = (field("tokenEndpoint"), field("clientId")) {
            if let Ok(mut tokens) = self.tokens.lock() {
                tokens.remove(&(endpoint.to_owned(), client.to_owned()));
            }
        }
    }

    /// Callback deliveries retried so far.
    pub fn retries(&self) -> u64 {
        self.retried.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Callbacks given up so far.
    pub fn failures(&self) -> u64 {
        self.given_up.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The control plane a callback goes to, from the cluster-wide registry; a store that
    /// does not answer is asked again with the callbacks' backoff, up to their limit.
    async fn control_plane_for(
        &self,
        event: &CallbackEvent,
    ) -> Result<Option<dataplane_spi::ControlPlaneRegistration>, ()> {
        let mut delay = self.first_backoff;
        for attempt in 1..=self.max_attempts {
            match self
                .registry
                .for_participant(event.participant_id.as_deref())
                .await
            {
                Ok(found) => return Ok(found),
                Err(error) => {
                    tracing::warn!(process_id = %event.process_id, event = event.event, attempt, %error, "cannot read the control-plane registry for a callback");
                }
            }
            if attempt < self.max_attempts {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_BACKOFF);
            }
        }
        Err(())
    }

    /// Queues a callback and returns at once.
    pub fn send(&self, event: CallbackEvent) {
        let dispatcher = self.clone();
        tokio::spawn(async move { dispatcher.deliver(event).await });
    }

    /// Delivers one callback with retries; returns whether the control plane accepted it.
    pub async fn deliver(&self, event: CallbackEvent) -> bool {
        let control_plane = match self.control_plane_for(&event).await {
            Ok(Some(control_plane)) => control_plane,
            Ok(None) => {
                tracing::info!(
                    process_id = %event.process_id,
                    event = event.event,
                    "no control plane registered for the flow's participant; callback skipped"
                );
                return false;
            }
            Err(()) => {
                self.given_up
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::error!(process_id = %event.process_id, event = event.event, "callback given up: the control-plane registry did not answer");
                return false;
            }
        };
        let url = callback_url(&control_plane.endpoint, &event.process_id, event.event);
        let mut delay = self.first_backoff;
        for attempt in 1..=self.max_attempts {
            let request = self.http.post(&url).json(&event.message);
            let request = match self.credential(&control_plane.authorization).await {
                Ok(Some((name, value))) => request.header(name, value),
                Ok(None) => request,
                Err(error) => {
                    tracing::warn!(%url, attempt, %error, "cannot obtain the control plane's credential for a callback");
                    if attempt == self.max_attempts {
                        break;
                    }
                    self.retried
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            let outcome = request.send().await;
            let retryable = match outcome {
                Ok(response) if response.status().is_success() => {
                    tracing::debug!(%url, attempt, "callback delivered");
                    return true;
                }
                Ok(response) => {
                    let status = response.status();
                    if status.as_u16() == 401 {
                        // A cached OAuth token may have been revoked: fetch a new one next time.
                        self.forget_token(&control_plane.authorization);
                    }
                    let retryable = status.is_server_error()
                        || status.as_u16() == 408
                        || status.as_u16() == 429;
                    tracing::warn!(%url, attempt, %status, retryable, "control plane refused a callback");
                    retryable
                }
                Err(error) => {
                    tracing::warn!(%url, attempt, %error, "callback failed");
                    true
                }
            };
            if !retryable || attempt == self.max_attempts {
                break;
            }
            self.retried
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_BACKOFF);
        }
        self.given_up
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::error!(%url, attempts = self.max_attempts, "callback given up");
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_ids_stay_one_path_segment() {
        assert_eq!(
            callback_url("https://cp/signaling/", "p-1", "completed"),
            "https://cp/signaling/transfers/p-1/dataflow/completed"
        );
        assert_eq!(
            callback_url("https://cp/s", "../../admin?x=1#f", "errored"),
            "https://cp/s/transfers/..%2F..%2Fadmin%3Fx%3D1%23f/dataflow/errored"
        );
        assert_eq!(
            callback_url("https://cp/s", "..", "started"),
            "https://cp/s/transfers/%2E%2E/dataflow/started"
        );
        assert_eq!(
            callback_url("https://cp/s", "a b%c", "started"),
            "https://cp/s/transfers/a%20b%25c/dataflow/started"
        );
    }

    #[tokio::test]
    async fn credentials_by_authorization_type() {
        let dispatcher = CallbackDispatcher::new(
            Arc::new(ControlPlaneRegistry::new()),
            1,
            Duration::from_millis(1),
        );
        assert_eq!(
            dispatcher
                .credential(&serde_json::json!({"type": "none"}))
                .await,
            Ok(None)
        );
        assert_eq!(
            dispatcher
                .credential(&serde_json::json!({"type": "bearer", "token": "t0k"}))
                .await,
            Ok(Some(("Authorization".into(), "Bearer t0k".into())))
        );
        assert_eq!(
            dispatcher
                .credential(&serde_json::json!({"type": "apikey", "key": "k3y"}))
                .await,
            Ok(Some(("X-Api-Key".into(), "k3y".into())))
        );
        assert!(dispatcher
            .credential(&serde_json::json!({"type": "bearer"}))
            .await
            .is_err());
        assert!(dispatcher
            .credential(&serde_json::json!({"type": "magic"}))
            .await
            .is_err());
    }

    /// Accepts one HTTP request on `listener`, answers 200 and returns the request head.
    async fn one_request(listener: tokio::net::TcpListener) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buffer = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buffer).await.unwrap();
            assert!(n > 0, "connection closed early");
            head.extend_from_slice(&buffer[..n]);
        }
        socket
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        String::from_utf8_lossy(&head).to_ascii_lowercase()
    }

    #[tokio::test]
    async fn a_callback_carries_the_registered_credential_to_an_encoded_path() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}/signaling", listener.local_addr().unwrap());
        let server = tokio::spawn(one_request(listener));
        let registry = Arc::new(ControlPlaneRegistry::new());
        registry
            .put(dataplane_spi::ControlPlaneRegistration {
                controlplane_id: "cp".into(),
                endpoint,
                authorization: serde_json::json!({"type": "bearer", "token": "cb-t0k"}),
            })
            .await
            .unwrap();
        let dispatcher = CallbackDispatcher::new(registry, 1, Duration::from_millis(1));
        let delivered = dispatcher
            .deliver(CallbackEvent {
                process_id: "a/b?c".into(),
                participant_id: Some("cp".into()),
                event: "completed",
                message: DataFlowStatusMessage {
                    message_id: "m".into(),
                    data_flow_id: "f".into(),
                    state: "COMPLETED".into(),
                    data_address: None,
                    error: None,
                },
            })
            .await;
        assert!(delivered);
        let head = server.await.unwrap();
        assert!(
            head.starts_with("post /signaling/transfers/a%2fb%3fc/dataflow/completed http/1.1"),
            "{head}"
        );
        assert!(head.contains("authorization: bearer cb-t0k"), "{head}");
    }
}
