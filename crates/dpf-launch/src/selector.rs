//! The selector side of a replica: its registration, the remote client, self-registration and the baseline filter.

use crate::*;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use dataplane_manager::DataPlane;
use dataplane_spi::{HTTP_PULL, HTTP_PUSH};
use dpf_config::Config;
use selector_client::SelectorClient;
use selector_spi::DataPlaneRegistration;

/// The DPS registration this replica sends to the selector.
pub fn registration_for(config: &Config, plane: &DataPlane) -> DataPlaneRegistration {
    let id = config
        .get("dpf.dataplane.id")
        .map_or_else(|| plane.config().runtime_id.clone(), str::to_owned);
    let endpoint = config.get("dpf.dataplane.endpoint").map_or_else(
        || {
            format!(
                "{}/signaling",
                plane.config().public_base_url.trim_end_matches('/')
            )
        },
        str::to_owned,
    );
    let mut registration =
        DataPlaneRegistration::new(id, endpoint, vec![HTTP_PUSH.into(), HTTP_PULL.into()]);
    registration.authorization = Some(DataPlaneRegistration::no_authorization());
    registration.labels = config
        .get("dpf.dataplane.labels")
        .map(|l| {
            l.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    registration.allowed_source_types = plane.transfers().source_types();
    registration
}

/// The client a replica registers with a standalone selector at `url` through: it sends
/// `edc.dpf.selector.api-key` (as `Authorization: Bearer`) when set, trusts `dpf.tls.ca` besides
/// the system's roots, and follows no redirects. The selector's URL is operator
/// configuration, so `dpf.transfer.denied-networks` does not apply to it.
///
/// # Errors
/// A malformed URL or an unreadable or invalid `dpf.tls.ca`.
pub fn remote_selector_client(
    config: &Config,
    url: &str,
) -> anyhow::Result<selector_client::RemoteSelectorClient> {
    let mut settings = selector_client::RemoteSelectorClientConfig::new(url);
    settings.api_key = config
        .get("edc.dpf.selector.api-key")
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .map(str::to_owned);
    settings.ca_pem = extra_ca(config)?;
    if settings.api_key.is_none() {
        tracing::info!(
            "edc.dpf.selector.api-key is not set: registering with the selector without a key"
        );
    }
    selector_client::RemoteSelectorClient::new(settings)
        .context("cannot build the selector client (edc.dpf.selector.url, dpf.tls.ca)")
}

/// How often a replica renews its registration with a remote selector, and the `ttlSeconds`
/// it registers with: every 4 lease renewals but at most every 2 s, and a TTL of three
/// renewals (rounded up to whole seconds), so a replica that died is UNAVAILABLE there soon.
pub fn remote_registration_timing(renew_interval: Duration) -> (Duration, u64) {
    let interval = (renew_interval * 4).max(Duration::from_secs(2));
    let ttl = (interval * 3).as_millis().div_ceil(1000);
    (interval, u64::try_from(ttl).unwrap_or(u64::MAX).max(1))
}

/// `registration` with `ttl_seconds` and the replica's current load (the numbers its lease
/// renewals publish to the cluster), as a data plane renews it with a remote selector. Once the
/// replica reported itself IDLE or HEALTHY it registers as AVAILABLE with its load; before
/// (its numbers are not counted yet) with neither, so the selector shows no load rather than a
/// wrong one.
pub fn with_load(
    mut registration: DataPlaneRegistration,
    plane: &DataPlane,
    ttl_seconds: u64,
) -> DataPlaneRegistration {
    registration.ttl_seconds = Some(ttl_seconds);
    let membership = plane.membership();
    let counted = membership
        .reported_state()
        .is_some_and(|state| matches!(state.as_str(), "IDLE" | "HEALTHY"));
    registration.state = counted.then_some(selector_spi::InstanceState::Available);
    registration.load =
        membership
            .load()
            .filter(|_| counted)
            .map(|report| selector_spi::RegisteredLoad {
                running: report.running,
                capacity: report.capacity,
                bytes_per_second: report.bytes_per_second,
            });
    registration
}

/// Registers with the selector now and every `interval` (the DPS registration is idempotent,
/// so a selector that lost its state learns about this replica again), with the registration
/// `registration` builds at that moment (its current load, say). An unreachable selector is a
/// warning and a retry with backoff, never a crash.
pub fn spawn_self_registration(
    client: Arc<dyn SelectorClient>,
    registration: impl Fn() -> DataPlaneRegistration + Send + 'static,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(250);
        let mut registered = false;
        loop {
            match client.register(&registration()).await {
                Ok(instance) => {
                    if !registered {
                        tracing::info!(dataplane = %instance.id, endpoint = %instance.endpoint, "registered with the selector");
                    }
                    registered = true;
                    backoff = Duration::from_millis(250);
                    tokio::time::sleep(interval).await;
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "cannot register with the selector; retrying");
                    registered = false;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    })
}

/// Which selector a data-plane process talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectorMode {
    /// A standalone selector at `edc.dpf.selector.url` (optional: no registration when unset).
    Remote,
    /// A selector embedded in this process, served at `/api/v1/selector`.
    Embedded,
}

/// Offers only the data planes of the cluster's baseline (when one is set): a selector that
/// shares the cluster's store never sends work to a replica that would not run it.
#[derive(Debug)]
pub struct BaselineFilter(pub Arc<dyn dataplane_spi::Coordinator>);

#[async_trait::async_trait]
impl selector_spi::CandidateFilter for BaselineFilter {
    async fn allowed(&self) -> Option<std::collections::BTreeSet<String>> {
        let entry = self
            .0
            .kv_get(dataplane_manager::baseline::BASELINE_KEY)
            .await
            .ok()??;
        serde_json::from_str::<dataplane_manager::baseline::Baseline>(&entry.value)
            .ok()
            .map(|b| b.members)
    }
}

/// Where the embedded launcher serves the selector API.
pub const EMBEDDED_SELECTOR_PATH: &str = "/api/v1/selector";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_registrations_renew_every_few_lease_renewals_with_a_ttl_of_three() {
        let ms = Duration::from_millis;
        assert_eq!(remote_registration_timing(ms(500)), (ms(2_000), 6));
        assert_eq!(remote_registration_timing(ms(100)), (ms(2_000), 6));
        assert_eq!(remote_registration_timing(ms(1_000)), (ms(4_000), 12));
        assert_eq!(remote_registration_timing(ms(1_100)), (ms(4_400), 14));
    }
}
