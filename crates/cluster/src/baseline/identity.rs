//! The replica's local record of the cluster it belongs to (`cluster.json` in `dpf.data.dir`)
//! and the start-up identity check against the cluster's id and baseline history.

use std::path::{Path, PathBuf};

use dataplane_spi::{CoordinationError, Coordinator, Expected};

use super::model::{read_baseline, Baseline, LocalRecord, CLUSTER_ID_KEY};
use crate::{ClusterError, Result};

/// Where a replica with data directory `data_dir` records its cluster.
pub fn record_path(data_dir: &Path) -> PathBuf {
    data_dir.join("cluster.json")
}

/// Records `baseline` (with the cluster's id) in the data directory, owner-only, unless the
/// record already says so. Failures are logged, never returned.
pub(crate) async fn record_locally(
    coordinator: &dyn Coordinator,
    data_dir: &Path,
    baseline: &Baseline,
) {
    let Ok(Some(id)) = coordinator.kv_get(CLUSTER_ID_KEY).await else {
        return;
    };
    let record = LocalRecord {
        cluster_id: id.value,
        baseline_version: baseline.version,
        history: baseline.history.clone(),
    };
    let path = record_path(data_dir);
    let current = tokio::fs::read_to_string(&path)
        .await
        .ok()
        .and_then(|t| serde_json::from_str::<LocalRecord>(&t).ok());
    if current.as_ref() == Some(&record) {
        return;
    }
    if let Ok(text) = serde_json::to_string_pretty(&record) {
        // Owner-only: the data directory 0700, the record 0600.
        let written = tokio::task::spawn_blocking({
            let path = path.clone();
            move || {
                if let Some(parent) = path.parent() {
                    dataplane_spi::secrets::create_private_dir(parent)?;
                }
                dataplane_spi::secrets::write_private_file(&path, text.as_bytes())
            }
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        if let Err(error) = written {
            tracing::warn!(%error, path = %path.display(), "cannot record the cluster identity");
        }
    }
}

/// The cluster's id, created (a fresh UUID) by the first replica to ask.
///
/// # Errors
/// Store failures.
pub(crate) async fn cluster_id(coordinator: &dyn Coordinator) -> Result<String> {
    let id = uuid::Uuid::new_v4().to_string();
    match coordinator
        .kv_put(CLUSTER_ID_KEY, &id, Expected::Absent, None)
        .await
    {
        Ok(entry) => Ok(entry.value),
        Err(CoordinationError::Conflict { .. }) => Ok(coordinator
            .kv_get(CLUSTER_ID_KEY)
            .await?
            .map(|e| e.value)
            .unwrap_or(id)),
        Err(other) => Err(other.into()),
    }
}

/// Refuses a data directory that belongs to another cluster, or to a baseline history ahead
/// of or diverged from this cluster's (creating the cluster's id first if there is none).
///
/// # Errors
/// [`ClusterError::IdentityMismatch`] (the message ends with the advice to clean persistent
/// storage), [`ClusterError::InvalidInput`] for a record that is not one, store failures.
pub(crate) async fn check(coordinator: &dyn Coordinator, data_dir: &Path) -> Result<()> {
    let cluster_id = cluster_id(coordinator).await?;
    let baseline = read_baseline(coordinator).await?;
    let path = record_path(data_dir);
    let Ok(text) = tokio::fs::read_to_string(&path).await else {
        return Ok(());
    };
    let record: LocalRecord = serde_json::from_str(&text).map_err(|e| {
        ClusterError::InvalidInput(format!(
            "{} is not a cluster record ({e}); remove it to join afresh",
            path.display()
        ))
    })?;
    let clean = format!(
        "Consider cleaning persistent storage: remove {} (and only then restart) to join cluster {cluster_id} as a new replica, or point dpf.store.url at the cluster this replica belongs to",
        path.display()
    );
    if record.cluster_id != cluster_id {
        return Err(ClusterError::IdentityMismatch(format!(
            "this replica belongs to cluster {} but the store belongs to cluster {cluster_id}. {clean}",
            record.cluster_id
        )));
    }
    let (version, history) = baseline
        .as_ref()
        .map_or((0, String::new()), |(b, _)| (b.version, b.history.clone()));
    if record.baseline_version > version {
        return Err(ClusterError::IdentityMismatch(format!(
            "this replica saw baseline version {} but the cluster is at version {version}: its history is ahead of the cluster's. {clean}",
            record.baseline_version
        )));
    }
    if record.baseline_version == version && version > 0 && record.history != history {
        return Err(ClusterError::IdentityMismatch(format!(
            "this replica's baseline version {version} has history {} but the cluster's has {history}: the histories diverged. {clean}",
            record.history
        )));
    }
    Ok(())
}
