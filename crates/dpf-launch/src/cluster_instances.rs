//! A selector on the cluster's store follows the cluster: every replica that reports an endpoint
//! with its heartbeat is an instance (no registration call needed), UNAVAILABLE while its lease
//! is expired, once it is STOPPING and after it left, REGISTERED while INITIALIZING, AVAILABLE
//! when IDLE or HEALTHY, and shows its last load report. The members table is read by one background refresh, never per selection.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use dataplane_spi::{Coordinator, MemberLoad};
use selector_spi::{
    DataPlaneInstance, DataPlaneInstanceStore, DataPlaneRegistration, InstanceLoad, InstanceState,
    SelectorResult,
};

/// Property marking an instance the selector created from a member row (its runtime id).
pub const MEMBER_PROPERTY: &str = "dpf.cluster.member";

/// How a [`ClusterInstances`] store reads the members table.
#[derive(Debug, Clone, Copy)]
pub struct ClusterInstancesOptions {
    /// How often the members table is read (`dpf.selector.load.refresh-interval`).
    pub refresh_interval: Duration,
    /// Age from which a load report counts as unknown (`dpf.selector.load.stale-after`,
    /// three heartbeats by default).
    pub stale_after: Duration,
}

impl ClusterInstancesOptions {
    /// From `dpf.selector.load.refresh-interval` (ms, default 200) and
    /// `dpf.selector.load.stale-after` (ms, default 3 × the lease renewal interval).
    ///
    /// # Errors
    /// A value that is not a number of milliseconds.
    pub fn from_config(config: &dpf_config::Config) -> anyhow::Result<Self> {
        let renew: u64 =
            config.parse_or("edc.dataplane.state-machine.flow.lease.renew-interval", 500)?;
        let refresh: u64 = config.parse_or("dpf.selector.load.refresh-interval", 200)?;
        let stale: u64 = config.parse_or("dpf.selector.load.stale-after", renew * 3)?;
        Ok(Self {
            refresh_interval: Duration::from_millis(refresh.max(10)),
            stale_after: Duration::from_millis(stale),
        })
    }
}

#[derive(Debug, Default)]
struct Snapshot {
    /// The store's clock at the last read, and when (local monotonic clock) that was.
    store_now: Option<(DateTime<Utc>, Instant)>,
    /// Members by the data-plane id they report (their runtime id when they report none).
    members: BTreeMap<String, MemberLoad>,
    /// Every id ever seen as a member: one that is gone now was reaped or left.
    seen: BTreeSet<String>,
}

/// A [`DataPlaneInstanceStore`] whose instances follow the members table of the same store.
#[derive(Debug)]
pub struct ClusterInstances {
    inner: Arc<dyn DataPlaneInstanceStore>,
    coordinator: Arc<dyn Coordinator>,
    options: ClusterInstancesOptions,
    snapshot: RwLock<Snapshot>,
}

fn report_id(load: &MemberLoad) -> String {
    load.report
        .as_ref()
        .and_then(|r| r.dataplane_id.clone())
        .unwrap_or_else(|| load.member.runtime_id.clone())
}

impl ClusterInstances {
    /// The store, refreshed once now and then every `options.refresh_interval` by a task that
    /// ends when the store is dropped.
    pub async fn start(
        inner: Arc<dyn DataPlaneInstanceStore>,
        coordinator: Arc<dyn Coordinator>,
        options: ClusterInstancesOptions,
    ) -> Arc<Self> {
        let store = Arc::new(Self {
            inner,
            coordinator,
            options,
            snapshot: RwLock::new(Snapshot::default()),
        });
        store.refresh().await;
        let weak = Arc::downgrade(&store);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(options.refresh_interval).await;
                let Some(store) = weak.upgrade() else { return };
                store.refresh().await;
            }
        });
        store
    }

    /// Reads the members table once: new members become instances, the snapshot is replaced.
    pub async fn refresh(&self) {
        let loads = match self.coordinator.member_loads().await {
            Ok(loads) => loads,
            Err(error) => {
                tracing::warn!(%error, "cannot read the members' load reports");
                return;
            }
        };
        let instances: BTreeMap<String, DataPlaneInstance> = match self.inner.list().await {
            Ok(list) => list.into_iter().map(|i| (i.id.to_string(), i)).collect(),
            Err(error) => {
                tracing::warn!(%error, "cannot read the selector's instances");
                return;
            }
        };
        let mut members = BTreeMap::new();
        for load in loads.members {
            let id = report_id(&load);
            if let Err(error) = self.adopt(&id, &load, instances.get(&id)).await {
                tracing::warn!(%error, member = %id, "cannot add a cluster member as an instance");
            }
            members.insert(id, load);
        }
        let mut snapshot = self
            .snapshot
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        snapshot.seen.extend(members.keys().cloned());
        snapshot.members = members;
        snapshot.store_now = Some((loads.now, Instant::now()));
    }

    /// Creates the instance of a member that reports an endpoint and is not an instance yet, or
    /// updates one this selector created when the member's definition changed.
    async fn adopt(
        &self,
        id: &str,
        load: &MemberLoad,
        existing: Option<&DataPlaneInstance>,
    ) -> SelectorResult<()> {
        let Some(report) = &load.report else {
            return Ok(());
        };
        let Some(endpoint) = &report.endpoint else {
            return Ok(());
        };
        let mut registration = DataPlaneRegistration::new(id, endpoint, report.profiles.clone())
            .with_labels(report.labels.iter().cloned())
            .with_source_types(report.allowed_source_types.iter().cloned());
        registration.authorization = Some(DataPlaneRegistration::no_authorization());
        registration.properties.insert(
            MEMBER_PROPERTY.into(),
            serde_json::Value::String(load.member.runtime_id.clone()),
        );
        let stale_definition = existing.is_some_and(|instance| {
            instance.properties.contains_key(MEMBER_PROPERTY)
                && (instance.endpoint != registration.endpoint
                    || instance.profiles != registration.profiles
                    || instance.allowed_source_types != registration.allowed_source_types
                    || instance.labels
                        != registration.labels.iter().cloned().collect::<BTreeSet<_>>())
        });
        if existing.is_none() || stale_definition {
            registration.validate()?;
            self.inner.upsert(&registration).await?;
            tracing::info!(instance = %id, %endpoint, "cluster member added as a selector instance");
        }
        Ok(())
    }

    /// `instance` as the cluster sees it now: state from its member's lease and published
    /// state, and its load report.
    fn overlay(&self, mut instance: DataPlaneInstance) -> DataPlaneInstance {
        let snapshot = self.snapshot.read().unwrap_or_else(PoisonError::into_inner);
        let Some((store_now, read_at)) = snapshot.store_now else {
            return instance;
        };
        let elapsed = chrono::Duration::from_std(read_at.elapsed()).unwrap_or_default();
        let now = store_now + elapsed;
        let withdrawn = instance.state == InstanceState::Unregistered;
        match snapshot.members.get(instance.id.as_str()) {
            Some(load) => {
                let live = load.member.lease_expires_at > now;
                if !withdrawn {
                    instance.state = match load.member.state.as_str() {
                        _ if !live => InstanceState::Unavailable,
                        "STOPPING" => InstanceState::Unavailable,
                        // Joined, not yet looking for work: known, not yet confirmed.
                        "INITIALIZING" => InstanceState::Registered,
                        _ => InstanceState::Available,
                    };
                }
                if let (Some(report), Some(at)) = (&load.report, load.reported_at) {
                    let age = u64::try_from((now - at).num_milliseconds().max(0)).unwrap_or(0);
                    let stale_after =
                        u64::try_from(self.options.stale_after.as_millis()).unwrap_or(u64::MAX);
                    instance.load = Some(InstanceLoad::new(
                        report.running,
                        report.capacity,
                        report.bytes_per_second,
                        at,
                        age,
                        stale_after,
                    ));
                }
            }
            None => {
                let member = snapshot.seen.contains(instance.id.as_str())
                    || instance.properties.contains_key(MEMBER_PROPERTY);
                if member && !withdrawn {
                    // Left the cluster (or reaped after its lease expired).
                    instance.state = InstanceState::Unavailable;
                }
            }
        }
        instance
    }
}

#[async_trait]
impl DataPlaneInstanceStore for ClusterInstances {
    async fn create(
        &self,
        registration: &DataPlaneRegistration,
    ) -> SelectorResult<DataPlaneInstance> {
        Ok(self.overlay(self.inner.create(registration).await?))
    }

    async fn upsert(
        &self,
        registration: &DataPlaneRegistration,
    ) -> SelectorResult<(DataPlaneInstance, bool)> {
        let (instance, created) = self.inner.upsert(registration).await?;
        Ok((self.overlay(instance), created))
    }

    async fn find(&self, id: &str) -> SelectorResult<Option<DataPlaneInstance>> {
        Ok(self.inner.find(id).await?.map(|i| self.overlay(i)))
    }

    async fn list(&self) -> SelectorResult<Vec<DataPlaneInstance>> {
        Ok(self
            .inner
            .list()
            .await?
            .into_iter()
            .map(|i| self.overlay(i))
            .collect())
    }

    async fn delete(&self, id: &str) -> SelectorResult<()> {
        self.inner.delete(id).await
    }

    async fn set_state(&self, id: &str, state: InstanceState) -> SelectorResult<DataPlaneInstance> {
        Ok(self.overlay(self.inner.set_state(id, state).await?))
    }

    async fn record_selection(&self, id: &str) -> SelectorResult<DataPlaneInstance> {
        Ok(self.overlay(self.inner.record_selection(id).await?))
    }

    async fn next_sequence(&self, name: &str) -> SelectorResult<u64> {
        self.inner.next_sequence(name).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
