//! Live configuration: cluster-wide settings kept in the coordinator's key-value store under
//! [`CONFIG_PREFIX`], watched by every replica and applied without restart.
//!
//! | key | value | effect |
//! |---|---|---|
//! | `dpf/config/dataplane.max-concurrent-flows` | integer ≥ 0 (0 = unlimited) | transfers a replica runs at once; excess flows wait, unowned, for a replica with room |
//! | `dpf/config/checkpoint.bytes` | integer ≥ 0 (0 = no checkpoints) | most bytes between checkpoints |
//! | `dpf/config/checkpoint.interval` | integer > 0 (milliseconds) | most time between checkpoints |
//! | `dpf/config/state-machine.batch-size` | 1 … 1000 | flows claimed per statement |
//! | `dpf/config/selector.strategy` | `random`, `round-robin`, `oldest-next` | default selection strategy of selectors on the cluster |

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::pipeline::CheckpointPolicy;
use crate::{DataPlaneConfig, DataPlaneError};

/// Where cluster-wide settings live in the key-value store.
pub const CONFIG_PREFIX: &str = "dpf/config/";
/// Transfers a replica runs at once (0 = unlimited).
pub const MAX_CONCURRENT_FLOWS: &str = "dpf/config/dataplane.max-concurrent-flows";
/// Bytes between checkpoints.
pub const CHECKPOINT_BYTES: &str = "dpf/config/checkpoint.bytes";
/// Milliseconds between checkpoints.
pub const CHECKPOINT_INTERVAL: &str = "dpf/config/checkpoint.interval";
/// Flows claimed per statement.
pub const BATCH_SIZE: &str = "dpf/config/state-machine.batch-size";
/// Default selection strategy.
pub const SELECTOR_STRATEGY: &str = "dpf/config/selector.strategy";

/// Every setting, sorted.
pub const SETTINGS: [&str; 5] = [
    BATCH_SIZE,
    CHECKPOINT_BYTES,
    CHECKPOINT_INTERVAL,
    MAX_CONCURRENT_FLOWS,
    SELECTOR_STRATEGY,
];

/// Checks a setting before it is written: the key must be known and the value valid.
///
/// # Errors
/// [`DataPlaneError::InvalidInput`] saying what is accepted.
pub fn validate_setting(key: &str, value: &str) -> Result<(), DataPlaneError> {
    let number = || {
        value.trim().parse::<u64>().map_err(|_| {
            DataPlaneError::InvalidInput(format!(
                "{key} takes a non-negative integer, got '{value}'"
            ))
        })
    };
    match key {
        MAX_CONCURRENT_FLOWS | CHECKPOINT_BYTES => number().map(|_| ()),
        CHECKPOINT_INTERVAL => match number()? {
            0 => Err(DataPlaneError::InvalidInput(format!(
                "{key} must be at least 1 millisecond"
            ))),
            _ => Ok(()),
        },
        BATCH_SIZE => match number()? {
            1..=1000 => Ok(()),
            _ => Err(DataPlaneError::InvalidInput(format!(
                "{key} must be between 1 and 1000"
            ))),
        },
        SELECTOR_STRATEGY => match value {
            "random" | "round-robin" | "oldest-next" => Ok(()),
            _ => Err(DataPlaneError::InvalidInput(format!(
                "{key} must be one of random, round-robin, oldest-next; got '{value}'"
            ))),
        },
        _ => Err(DataPlaneError::InvalidInput(format!(
            "unknown setting '{key}'; settings under {CONFIG_PREFIX}: {}",
            SETTINGS.join(", ")
        ))),
    }
}

/// The settings a replica currently applies (initially from its own configuration).
#[derive(Debug)]
pub struct LiveSettings {
    max_concurrent: AtomicU64,
    checkpoint_bytes: AtomicU64,
    checkpoint_interval_ms: AtomicU64,
    batch_size: AtomicU64,
    /// Revision of the last applied change (0 = none yet).
    pub applied_revision: AtomicU64,
    strategy: std::sync::Mutex<Option<String>>,
}

impl LiveSettings {
    /// Settings from a replica's configuration.
    pub fn from_config(config: &DataPlaneConfig) -> Self {
        Self {
            max_concurrent: AtomicU64::new(config.max_concurrent_flows),
            checkpoint_bytes: AtomicU64::new(config.checkpoints.bytes),
            checkpoint_interval_ms: AtomicU64::new(
                u64::try_from(config.checkpoints.interval.as_millis()).unwrap_or(u64::MAX),
            ),
            batch_size: AtomicU64::new(config.claim_batch as u64),
            applied_revision: AtomicU64::new(0),
            strategy: std::sync::Mutex::new(None),
        }
    }

    /// Applies one setting (already validated when written; invalid ones are ignored here).
    /// Returns whether it was a known, valid setting.
    pub fn apply(&self, key: &str, value: Option<&str>, defaults: &DataPlaneConfig) -> bool {
        let parsed = value.and_then(|v| v.trim().parse::<u64>().ok());
        match key {
            MAX_CONCURRENT_FLOWS => self.max_concurrent.store(
                parsed.unwrap_or(defaults.max_concurrent_flows),
                Ordering::Relaxed,
            ),
            CHECKPOINT_BYTES => self.checkpoint_bytes.store(
                parsed.unwrap_or(defaults.checkpoints.bytes),
                Ordering::Relaxed,
            ),
            CHECKPOINT_INTERVAL => self.checkpoint_interval_ms.store(
                parsed.filter(|v| *v > 0).unwrap_or(
                    u64::try_from(defaults.checkpoints.interval.as_millis()).unwrap_or(5000),
                ),
                Ordering::Relaxed,
            ),
            BATCH_SIZE => self.batch_size.store(
                parsed
                    .filter(|v| (1..=1000).contains(v))
                    .unwrap_or(defaults.claim_batch as u64),
                Ordering::Relaxed,
            ),
            SELECTOR_STRATEGY => {
                if let Ok(mut strategy) = self.strategy.lock() {
                    *strategy = value.map(str::to_owned);
                }
            }
            _ => return false,
        }
        true
    }

    /// Transfers to run at once (0 = unlimited).
    pub fn max_concurrent(&self) -> u64 {
        self.max_concurrent.load(Ordering::Relaxed)
    }

    /// The checkpoint policy.
    pub fn checkpoints(&self) -> CheckpointPolicy {
        CheckpointPolicy {
            bytes: self.checkpoint_bytes.load(Ordering::Relaxed),
            interval: Duration::from_millis(self.checkpoint_interval_ms.load(Ordering::Relaxed)),
        }
    }

    /// Flows per claim statement.
    pub fn batch_size(&self) -> usize {
        usize::try_from(self.batch_size.load(Ordering::Relaxed))
            .unwrap_or(20)
            .max(1)
    }

    /// The cluster's default selection strategy, when set.
    pub fn strategy(&self) -> Option<String> {
        self.strategy.lock().ok().and_then(|s| s.clone())
    }
}
