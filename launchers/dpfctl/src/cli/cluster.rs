//! The arguments of `dpfctl cluster ...`.

use clap::Subcommand;

/// `dpfctl cluster ...`
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// The live replicas (valid lease).
    Members {
        /// Keep printing one line per change (join, update, leave) until interrupted.
        #[arg(long)]
        watch: bool,
    },
    /// The replica that leads the cluster right now (exit 1 when none does).
    Leader,
    /// The cluster's key-value store (keys may contain `/`).
    #[command(subcommand)]
    Kv(KvCommand),
    /// Cluster-wide settings every replica applies without restart (keys under dpf/config/).
    #[command(subcommand)]
    Config(ConfigCommand),
}

/// `dpfctl cluster kv ...`
#[derive(Debug, Subcommand)]
pub enum KvCommand {
    /// Show a key: value, version and revisions.
    Get {
        /// The key.
        key: String,
    },
    /// Create or replace a key.
    Put {
        /// The key.
        key: String,
        /// The value.
        #[arg(allow_hyphen_values = true)]
        value: String,
        /// Only if the key is at this version (0: only if it does not exist); else fail with a
        /// version conflict.
        #[arg(long, value_name = "N")]
        expected_version: Option<u64>,
    },
    /// Delete a key.
    Delete {
        /// The key.
        key: String,
        /// Only if the key is at this version; else fail with a version conflict.
        #[arg(long, value_name = "N")]
        expected_version: Option<u64>,
    },
    /// List the keys (under a prefix).
    List {
        /// Only keys starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// Print every change (`<revision> <PUT|DELETE> <key> <value>`) until interrupted,
    /// reconnecting by itself from the last revision seen. Exits with 2 when the changes to
    /// watch from were compacted away.
    Watch {
        /// Only keys starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Print the changes after this revision (0: all the retained history); default: from
        /// now on.
        #[arg(long, value_name = "REVISION")]
        from_revision: Option<u64>,
    },
}

/// `dpfctl cluster config ...`
#[derive(Debug, Subcommand)]
#[command(after_help = "\
Settings: dataplane.max-concurrent-flows, checkpoint.bytes, checkpoint.interval (ms), \
state-machine.batch-size, selector.strategy. A NAME may also be given as its full key \
(dpf/config/NAME).")]
pub enum ConfigCommand {
    /// Set a setting (the data plane checks the value first).
    Set {
        /// The setting, e.g. dataplane.max-concurrent-flows.
        name: String,
        /// Its value.
        #[arg(allow_hyphen_values = true)]
        value: String,
    },
    /// Print a setting's value.
    Get {
        /// The setting.
        name: String,
    },
    /// List the settings that are set.
    List,
    /// Remove a setting: the replicas go back to their own configuration.
    Unset {
        /// The setting.
        name: String,
    },
}
