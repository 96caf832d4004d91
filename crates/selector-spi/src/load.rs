use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The load an instance last reported (with its cluster heartbeat), as the selector shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceLoad {
    /// Transfers running on the instance.
    pub running: u64,
    /// Most transfers it runs at once; 0 = unlimited.
    pub capacity: u64,
    /// Bytes per second it moved over its last reporting interval.
    pub bytes_per_second: u64,
    /// When it reported (store clock).
    pub reported_at: DateTime<Utc>,
    /// Age of the report when the instance was read, in milliseconds.
    pub age_ms: u64,
    /// Whether the report is older than three heartbeats: its numbers count as unknown.
    pub stale: bool,
    /// Whether a fresh report says it runs as many transfers as it may. A selection answer
    /// with `atCapacity: true` means every candidate was at capacity.
    pub at_capacity: bool,
}

impl InstanceLoad {
    /// A load read at an age of `age_ms`, stale from `stale_after_ms`.
    pub fn new(
        running: u64,
        capacity: u64,
        bytes_per_second: u64,
        reported_at: DateTime<Utc>,
        age_ms: u64,
        stale_after_ms: u64,
    ) -> Self {
        let stale = age_ms > stale_after_ms;
        Self {
            running,
            capacity,
            bytes_per_second,
            reported_at,
            age_ms,
            stale,
            at_capacity: !stale && capacity > 0 && running >= capacity,
        }
    }

    /// Running transfers over capacity; for an unlimited instance the running count scaled
    /// down (so unlimited instances rank by what they run, before busy limited ones).
    pub fn ratio(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
        let (running, capacity) = (self.running as f64, self.capacity as f64);
        if self.capacity == 0 {
            running / 1.0e9
        } else {
            running / capacity
        }
    }
}

/// dpf extension of a registration: the load a data plane reports when it registers with a
/// selector that does not share its cluster's store (`load` of the registration). The
/// selector stamps it with its own clock when it stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisteredLoad {
    /// Transfers running on the data plane.
    #[serde(default)]
    pub running: u64,
    /// Most transfers it runs at once; 0 = unlimited.
    #[serde(default)]
    pub capacity: u64,
    /// Bytes per second it moved over its last reporting interval.
    #[serde(default)]
    pub bytes_per_second: u64,
}

/// Age (ms) from which a load reported with a registration without `ttlSeconds` is stale.
pub const REGISTERED_LOAD_STALE_AFTER_MS: u64 = 90_000;

impl RegisteredLoad {
    /// This report as the selector shows it at `now`, reported at `reported_at`: stale once
    /// older than the registration's `ttl_seconds` (or [`REGISTERED_LOAD_STALE_AFTER_MS`]).
    pub fn at(
        &self,
        reported_at: DateTime<Utc>,
        now: DateTime<Utc>,
        ttl_seconds: Option<u64>,
    ) -> InstanceLoad {
        let age = u64::try_from((now - reported_at).num_milliseconds().max(0)).unwrap_or(0);
        let stale_after = ttl_seconds.map_or(REGISTERED_LOAD_STALE_AFTER_MS, |ttl| {
            ttl.saturating_mul(1000)
        });
        InstanceLoad::new(
            self.running,
            self.capacity,
            self.bytes_per_second,
            reported_at,
            age,
            stale_after,
        )
    }
}

impl InstanceLoad {
    /// The numbers of this load, without its timing.
    pub fn registered(&self) -> RegisteredLoad {
        RegisteredLoad {
            running: self.running,
            capacity: self.capacity,
            bytes_per_second: self.bytes_per_second,
        }
    }
}
