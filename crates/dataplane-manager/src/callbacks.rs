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

    /// Queues a callback and returns at once.
    pub fn send(&self, event: CallbackEvent) {
        let dispatcher = self.clone();
        tokio::spawn(async move { dispatcher.deliver(event).await });
    }

    /// Delivers one callback with retries; returns whether the control plane accepted it.
    pub async fn deliver(&self, event: CallbackEvent) -> bool {
        let Some(control_plane) = self
            .registry
            .for_participant(event.participant_id.as_deref())
        else {
            tracing::info!(
                process_id = %event.process_id,
                event = event.event,
                "no control plane registered for the flow's participant; callback skipped"
            );
            return false;
        };
        let url = format!(
            "{}/transfers/{}/dataflow/{}",
            control_plane.endpoint.trim_end_matches('/'),
            event.process_id,
            event.event
        );
        let mut delay = self.first_backoff;
        for attempt in 1..=self.max_attempts {
            let outcome = self.http.post(&url).json(&event.message).send().await;
            let retryable = match outcome {
                Ok(response) if response.status().is_success() => {
                    tracing::debug!(%url, attempt, "callback delivered");
                    return true;
                }
                Ok(response) => {
                    let status = response.status();
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
