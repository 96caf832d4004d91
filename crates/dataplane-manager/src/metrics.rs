//! This replica's counters and their Prometheus text exposition.

use std::sync::atomic::Ordering;

use dataplane_spi::DataFlowState;

use crate::{DataPlane, DataPlaneError};

type Result<T> = std::result::Result<T, DataPlaneError>;

/// Counters of one replica, exposed as Prometheus metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Flows claimed (unowned work picked up).
    pub claims: AtomicU64Counter,
    /// Flows taken over from dead replicas.
    pub takeovers: AtomicU64Counter,
    /// Transfers completed by this replica.
    pub completed: AtomicU64Counter,
    /// Transfers that failed for good on this replica.
    pub failed: AtomicU64Counter,
    /// Bytes moved and when, at the last load report (for its bytes per second).
    pub(crate) load_sample: std::sync::Mutex<Option<(u64, std::time::Instant)>>,
}

impl Metrics {
    /// Bytes per second moved since the previous call (0 at the first).
    pub(crate) fn bytes_per_second(&self) -> u64 {
        let bytes = crate::runner::pipeline::BYTES_TRANSFERRED.load(Ordering::Relaxed);
        let now = std::time::Instant::now();
        let mut sample = self
            .load_sample
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let rate = match *sample {
            Some((before, at)) => {
                let seconds = now.saturating_duration_since(at).as_secs_f64();
                if seconds > 0.0 {
                    // Rounded to whole bytes per second; a negative delta cannot happen.
                    #[allow(
                        clippy::cast_possible_truncation,
                        clippy::cast_sign_loss,
                        clippy::cast_precision_loss
                    )]
                    let rate = (bytes.saturating_sub(before) as f64 / seconds) as u64;
                    rate
                } else {
                    0
                }
            }
            None => 0,
        };
        *sample = Some((bytes, now));
        rate
    }
}

/// A relaxed atomic counter.
#[derive(Debug, Default)]
pub struct AtomicU64Counter(std::sync::atomic::AtomicU64);

impl AtomicU64Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl DataPlane {
    /// Prometheus text exposition of this replica's metrics.
    ///
    /// # Errors
    /// Store failures (flows by state).
    pub async fn metrics_text(&self) -> Result<String> {
        use std::fmt::Write;
        let mut out = String::new();
        let by_state = self.store.count_by_state().await?;
        let _ = writeln!(
            out,
            "# HELP dpf_flows Data flows in the shared store by state.\n# TYPE dpf_flows gauge"
        );
        for state in DataFlowState::ALL {
            let n = by_state
                .iter()
                .find(|(s, _)| *s == state)
                .map_or(0, |(_, n)| *n);
            let _ = writeln!(out, "dpf_flows{{state=\"{}\"}} {n}", state.as_str());
        }
        let counters = [
            (
                "dpf_bytes_transferred_total",
                "Bytes moved by transfers of this replica.",
                crate::runner::pipeline::BYTES_TRANSFERRED.load(Ordering::Relaxed),
            ),
            (
                "dpf_claims_total",
                "Unowned flows claimed by this replica.",
                self.metrics.claims.get(),
            ),
            (
                "dpf_takeovers_total",
                "Flows taken over from dead replicas.",
                self.metrics.takeovers.get(),
            ),
            (
                "dpf_lease_renewals_total",
                "Lease renewals.",
                self.membership.renewals(),
            ),
            (
                "dpf_transfers_completed_total",
                "Transfers completed by this replica.",
                self.metrics.completed.get(),
            ),
            (
                "dpf_transfers_failed_total",
                "Transfers that failed for good on this replica.",
                self.metrics.failed.get(),
            ),
            (
                "dpf_callback_retries_total",
                "Callback deliveries retried.",
                self.callbacks.retries(),
            ),
            (
                "dpf_callbacks_failed_total",
                "Callbacks given up.",
                self.callbacks.failures(),
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        // Lease renewals are counted by the membership service, which renews alone on its task.
        let seconds = self.membership.renewal_micros() as f64 / 1e6;
        let _ = writeln!(
            out,
            "# HELP dpf_lease_renew_seconds Lease renewal latency.\n# TYPE dpf_lease_renew_seconds summary\ndpf_lease_renew_seconds_sum {seconds}\ndpf_lease_renew_seconds_count {}",
            self.membership.renewals()
        );
        let _ = writeln!(
            out,
            "# HELP dpf_transfers_running Transfers running on this replica.\n# TYPE dpf_transfers_running gauge\ndpf_transfers_running {}",
            self.running_transfers()
        );
        let _ = writeln!(
            out,
            "# HELP dpf_runner_entries Flows with local state on this replica (transfers, pull streams, uploads).\n# TYPE dpf_runner_entries gauge\ndpf_runner_entries {}",
            self.runner_len()
        );
        let leader = self.leadership.is_leader();
        let _ = writeln!(out, "# HELP dpf_leader Whether this replica leads the cluster.\n# TYPE dpf_leader gauge\ndpf_leader {}", u8::from(leader));
        Ok(out)
    }
}
