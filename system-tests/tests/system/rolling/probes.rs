//! The kubelet's probes, taken more often than it takes them, and what they saw.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::manifest::{self, StatefulSet};
use super::pods::{ready_path, Status};

/// The kubelet does not check the certificate of an HTTPS probe.
pub(super) fn probe_client() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap()
}

pub(super) async fn probe_status(
    client: &reqwest::Client,
    url: &str,
    probe: &manifest::Probe,
) -> Option<u16> {
    client
        .get(url)
        .timeout(Duration::from_secs(probe.timeout_seconds))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// What the probes saw during the roll.
#[derive(Debug, Default)]
pub struct Report {
    pub samples: usize,
    pub violations: Vec<String>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} probe rounds, {} violations",
            self.samples,
            self.violations.len()
        )?;
        for violation in self.violations.iter().take(20) {
            write!(f, "\n  {violation}")?;
        }
        Ok(())
    }
}

/// The probing task.
#[derive(Debug)]
pub struct Monitor {
    pub(super) stop: Arc<AtomicBool>,
    pub(super) task: tokio::task::JoinHandle<Report>,
}

impl Monitor {
    pub async fn stop(self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

/// Every 250 ms: liveness of every running pod must be 200; a pod that was ready in this
/// incarnation must not fail readiness `failureThreshold` times in a row while it runs; at
/// most one pod is unavailable (maxUnavailable: 1).
pub(super) async fn probe_loop(
    set: StatefulSet,
    status: Arc<Mutex<Vec<Status>>>,
    stop: Arc<AtomicBool>,
) -> Report {
    let client = probe_client();
    let mut report = Report::default();
    // Per pod: (incarnation, was ready, consecutive readiness failures).
    let mut seen: Vec<(u32, bool, u32)> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let snapshot = status.lock().unwrap().clone();
        seen.resize(snapshot.len(), (0, false, 0));
        let mut available = 0;
        for (index, pod) in snapshot.iter().enumerate() {
            if !pod.running {
                continue;
            }
            if seen[index].0 != pod.incarnation {
                seen[index] = (pod.incarnation, false, 0);
            }
            let health = format!(
                "{}{}",
                pod.base_url,
                set.liveness.path.trim_start_matches("/api/v1")
            );
            let live = probe_status(&client, &health, &set.liveness).await;
            if live != Some(200) {
                report
                    .violations
                    .push(format!("liveness of pod {index} answered {live:?}"));
            }
            let ready = format!("{}{}", pod.base_url, ready_path(&set));
            if probe_status(&client, &ready, &set.readiness).await == Some(200) {
                seen[index].1 = true;
                seen[index].2 = 0;
                available += 1;
            } else if seen[index].1 {
                seen[index].2 += 1;
                if seen[index].2 >= set.readiness.failure_threshold {
                    report.violations.push(format!(
                        "pod {index} dropped out of readiness ({} failures in a row)",
                        seen[index].2
                    ));
                }
            }
        }
        if available + 1 < snapshot.len() {
            report.violations.push(format!(
                "only {available} of {} pods available",
                snapshot.len()
            ));
        }
        report.samples += 1;
        // More often than the kubelet (periodSeconds), to see every dip.
        let period = Duration::from_secs(
            set.readiness
                .period_seconds
                .min(set.liveness.period_seconds),
        );
        tokio::time::sleep(Duration::from_millis(250).min(period)).await;
    }
    report
}
