//! The command line and configuration loading every launcher shares.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use dpf_config::Config;

/// Key prefixes shown by `--dump-config`.
pub const DUMP_PREFIXES: &[&str] = &["web.", "dpf.", "edc."];

/// The command line of every launcher. `--version` prints `dpf <version>` (the workspace's
/// version, shared by every launcher); usage lines name the binary that runs.
#[derive(Debug, Parser)]
#[command(name = "dpf", version)]
pub struct Cli {
    /// A Java .properties file with configuration keys.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Set a configuration key (highest precedence); repeatable.
    #[arg(short = 'D', long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Print the effective configuration and exit.
    #[arg(long)]
    pub dump_config: bool,
    /// What to do instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending store migrations and exit.
    Migrate,
}

/// Loads the configuration: `defaults`, the `--config` file, the environment, `-D` flags.
///
/// # Errors
/// Unreadable file or malformed entries.
pub fn load_config(cli: &Cli, defaults: &[(&str, &str)]) -> anyhow::Result<Config> {
    Ok(Config::load(defaults, cli.config.as_deref(), &cli.set)?)
}
