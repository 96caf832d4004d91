//! The arguments of `dpfctl baseline ...`.

use clap::{Args, Subcommand};

/// `dpfctl baseline [...]`
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  dpfctl baseline
  dpfctl baseline set r0,r1,r2 --expected-version 3
  dpfctl baseline add r3
  dpfctl baseline remove r1
  dpfctl baseline auto-adjust enable --timeout 2000")]
pub struct BaselineArgs {
    #[command(subcommand)]
    pub command: Option<BaselineCommand>,
}

/// `dpfctl baseline ...`
#[derive(Debug, Subcommand)]
pub enum BaselineCommand {
    /// Cluster state, baseline version, auto-adjust, the baseline members (ONLINE/OFFLINE)
    /// and the live replicas outside the baseline.
    Show,
    /// Replace the baseline with these replicas (the first baseline activates the cluster).
    Set(BaselineChangeArgs),
    /// Add replicas to the baseline.
    Add(BaselineChangeArgs),
    /// Remove replicas from the baseline (only offline ones).
    Remove(BaselineChangeArgs),
    /// The baseline version (0: no baseline) and its history hash.
    Version,
    /// Activate the cluster: baseline members own work again.
    Activate,
    /// Deactivate the cluster: no replica takes new work.
    Deactivate,
    /// Let the leader adjust the baseline to the live replicas by itself.
    #[command(subcommand)]
    AutoAdjust(AutoAdjustCommand),
}

/// Replicas of a baseline change.
#[derive(Debug, Args)]
pub struct BaselineChangeArgs {
    /// Replica names, comma-separated (e.g. r0,r1,r2).
    #[arg(
        value_name = "NAMES",
        value_delimiter = ',',
        num_args = 1..,
        required = true
    )]
    pub members: Vec<String>,
    /// Only if the baseline is at this version (0: only if there is none); else fail with a
    /// version conflict.
    #[arg(long, value_name = "N")]
    pub expected_version: Option<u64>,
}

/// `dpfctl baseline auto-adjust ...`
#[derive(Debug, Subcommand)]
pub enum AutoAdjustCommand {
    /// Adjust the baseline once membership has been stable for the timeout.
    Enable {
        /// How long membership must be stable first, in milliseconds (default: the timeout
        /// set before, if any).
        #[arg(long, value_name = "MS")]
        timeout: Option<u64>,
    },
    /// Stop adjusting the baseline (the timeout is kept for a later `enable`).
    Disable,
}
