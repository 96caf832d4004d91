//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use dataplane_spi::{HTTP_PULL, HTTP_PUSH};

use crate::output::OutputFormat;

mod baseline;
mod cluster;

pub use baseline::{AutoAdjustCommand, BaselineArgs, BaselineChangeArgs, BaselineCommand};
pub use cluster::{ClusterCommand, ConfigCommand, KvCommand};

const AFTER_HELP: &str = "\
Examples (against `cargo run -p embedded-launcher`):
  dpfctl dataset put report --file ./report.pdf
  dpfctl transfer --dataset report --to-file report-copy.pdf
  dpfctl transfer --dataset report --to-file copies/report.pdf --profile pull --select
  dpfctl flow list --state STARTED
  dpfctl flow watch 6f1c…
  dpfctl dataplane list --output json
  dpfctl cluster members --watch
  dpfctl cluster config set dataplane.max-concurrent-flows 8
  dpfctl cluster kv put app/mode blue --expected-version 0
  dpfctl cluster kv watch --prefix app/ --from-revision 0
  dpfctl baseline set r0,r1 --expected-version 0
  dpfctl baseline auto-adjust enable --timeout 2000

Errors are printed as `error: <message>` on stderr.

Exit status: 0 success; 1 failure (an API error, an unreachable server, a certificate that is
not trusted, a flow that ended TERMINATED); 2 usage (the command line is wrong); 3 not found
(the API answered 404: no such dataset, flow, data plane, key or setting); 4 `cluster kv watch`
cannot go on (the changes to watch were compacted away).

TLS: certificates are checked against the system's trust store (SSL_CERT_FILE / SSL_CERT_DIR
override it), plus --cacert FILE (or DPF_CACERT) for a private CA; --insecure-skip-tls-verify (spelled out, no short form) turns
checking off. The API key is read from --api-key-file FILE (or DPF_API_KEY_FILE), else
DPF_API_KEY, and sent as `Authorization: Bearer`.";

/// dpfctl — command-line client for the dpf data plane and selector APIs, and a minimal
/// DPS control plane that can run a whole transfer.
#[derive(Debug, Parser)]
#[command(name = "dpfctl", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// Base URL of the data-plane API.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "DPF_DATAPLANE_URL",
        default_value = "http://127.0.0.1:8080/api/v1",
        value_name = "URL"
    )]
    pub dataplane: String,

    /// Base URL of the selector API.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "DPF_SELECTOR_URL",
        default_value = "http://127.0.0.1:8080/api/v1/selector",
        value_name = "URL"
    )]
    pub selector: String,

    /// Print results as text or as JSON (every command).
    #[arg(
        short = 'o',
        long,
        global = true,
        help_heading = "Global options",
        value_enum,
        default_value_t = OutputFormat::Text
    )]
    pub output: OutputFormat,

    /// Trust the CA certificate(s) in this PEM file, besides the system's trust store (a data
    /// plane or selector whose certificate comes from a private CA).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "DPF_CACERT",
        value_name = "FILE"
    )]
    pub cacert: Option<PathBuf>,

    /// Do not check server certificates at all (testing only; prefer --cacert). Only the
    /// full spelling is accepted.
    #[arg(long, global = true, help_heading = "Global options")]
    pub insecure_skip_tls_verify: bool,

    /// Read the API key from this file (surrounding whitespace ignored); overrides
    /// DPF_API_KEY.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "DPF_API_KEY_FILE",
        value_name = "FILE"
    )]
    pub api_key_file: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

/// The shells `dpfctl completion` writes a script for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    /// `source <(dpfctl completion bash)`
    Bash,
    /// `dpfctl completion zsh > "${fpath[1]}/_dpfctl"`
    Zsh,
    /// `dpfctl completion fish > ~/.config/fish/completions/dpfctl.fish`
    Fish,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Datasets a data plane can serve (/datasets).
    #[command(subcommand)]
    Dataset(DatasetCommand),

    /// Data planes registered with the selector (/dataplanes).
    #[command(subcommand)]
    Dataplane(DataplaneCommand),

    /// Ask the selector to choose a data plane for a transfer.
    Select(SelectArgs),

    /// Names of the selector's selection strategies.
    Strategies,

    /// Data flows of a data plane: management views and DPS signals.
    #[command(subcommand)]
    Flow(FlowCommand),

    /// Control planes a data plane sends DPS callbacks to (/signaling/controlplanes).
    #[command(subcommand)]
    Controlplane(ControlplaneCommand),

    /// Move a dataset into a file, acting as the control plane of both sides.
    Transfer(TransferArgs),

    /// Check that the data plane and the selector answer.
    Health,

    /// The data plane's cluster: members, leader, key-value store and live settings
    /// (/cluster).
    #[command(subcommand)]
    Cluster(ClusterCommand),

    /// The data plane's baseline topology: which replicas own work, cluster activation and
    /// auto-adjust (/cluster/baseline). Without a subcommand: `baseline show`.
    Baseline(BaselineArgs),

    /// Print a shell completion script (bash, zsh or fish) on stdout.
    #[command(after_help = "\
Examples:
  source <(dpfctl completion bash)
  dpfctl completion zsh > \"${fpath[1]}/_dpfctl\"
  dpfctl completion fish > ~/.config/fish/completions/dpfctl.fish")]
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: CompletionShell,
    },
}

/// `dpfctl dataset ...`
#[derive(Debug, Subcommand)]
pub enum DatasetCommand {
    /// Register (or replace) a dataset: a file on the data plane's host or an HTTP URL.
    Put {
        /// Dataset id.
        id: String,
        /// A file (made absolute; it must be readable by the data plane).
        #[arg(
            long,
            value_name = "PATH",
            conflicts_with = "http",
            required_unless_present = "http"
        )]
        file: Option<PathBuf>,
        /// An HTTP(S) URL the data plane reads the data from.
        #[arg(long, value_name = "URL")]
        http: Option<String>,
    },
    /// List the datasets.
    List,
    /// Show one dataset.
    Get {
        /// Dataset id.
        id: String,
    },
    /// Remove a dataset.
    Delete {
        /// Dataset id.
        id: String,
    },
}

/// `dpfctl dataplane ...`
#[derive(Debug, Subcommand)]
pub enum DataplaneCommand {
    /// List the registered data planes.
    List,
    /// Show one data plane.
    Get {
        /// Data-plane id.
        id: String,
    },
    /// Remove a data plane.
    Delete {
        /// Data-plane id.
        id: String,
    },
    /// Register (create or replace) a data plane.
    Register(RegisterArgs),
}

/// `dpfctl dataplane register ...`
#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// Data-plane id.
    #[arg(long)]
    pub id: String,
    /// Its DPS signaling base URL, e.g. http://host:8080/api/v1/signaling.
    #[arg(long, value_name = "URL")]
    pub endpoint: String,
    /// A supported profile (repeatable; `http-push`/`push` and `http-pull`/`pull` are
    /// shorthands for the DPS profiles).
    #[arg(long = "profile", value_name = "PROFILE", required = true)]
    pub profiles: Vec<String>,
    /// A label (repeatable).
    #[arg(long = "label", value_name = "LABEL")]
    pub labels: Vec<String>,
    /// An accepted source type (repeatable; none = any).
    #[arg(long = "source-type", value_name = "TYPE")]
    pub source_types: Vec<String>,
    /// Fail if the id exists instead of replacing it.
    #[arg(long)]
    pub create: bool,
}

/// `dpfctl select ...`
#[derive(Debug, Args)]
pub struct SelectArgs {
    /// Transfer profile (`push`, `pull` or a profile URL).
    #[arg(long)]
    pub profile: String,
    /// Source type the data plane must accept (e.g. File, HttpData).
    #[arg(long, value_name = "TYPE")]
    pub source_type: Option<String>,
    /// A label the data plane must have (repeatable).
    #[arg(long = "label", value_name = "LABEL")]
    pub labels: Vec<String>,
    /// Selection strategy: random, round-robin, oldest-next, least-loaded or a custom one
    /// (default: the selector's).
    #[arg(long)]
    pub strategy: Option<String>,
    /// Dataset id, passed on to strategies.
    #[arg(long)]
    pub dataset: Option<String>,
}

/// `dpfctl flow ...`
#[derive(Debug, Subcommand)]
pub enum FlowCommand {
    /// List data flows, oldest first.
    List {
        /// Only flows in this state (e.g. STARTED, COMPLETED, TERMINATED).
        #[arg(long)]
        state: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Show a data flow's management view (id or process id).
    Get {
        /// Flow id or process id.
        id: String,
    },
    /// The DPS status of a data flow.
    Status {
        /// Flow id or process id.
        id: String,
    },
    /// Suspend a data flow (DPS suspend).
    Suspend {
        /// Flow id or process id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Resume a suspended data flow (DPS resume).
    Resume {
        /// Flow id or process id.
        id: String,
    },
    /// Terminate a data flow (DPS terminate).
    Terminate {
        /// Flow id or process id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Tell a data flow the other side completed (DPS completed).
    Completed {
        /// Flow id or process id.
        id: String,
    },
    /// Follow a data flow with a progress bar until it is COMPLETED (exit 0) or TERMINATED
    /// (exit 1).
    Watch {
        /// Flow id or process id.
        id: String,
        /// Give up after this many seconds.
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<f64>,
    },
}

/// `dpfctl controlplane ...`
#[derive(Debug, Subcommand)]
pub enum ControlplaneCommand {
    /// Register (or replace) a control plane to receive DPS callbacks.
    Register {
        /// Control-plane id (callbacks of flows whose participantId is this id go there).
        #[arg(long)]
        id: String,
        /// Base URL of its signaling API.
        #[arg(long, value_name = "URL")]
        endpoint: String,
    },
    /// Remove a control plane.
    Delete {
        /// Control-plane id.
        id: String,
    },
}

/// The DPS transfer profile of `dpfctl transfer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TransferProfile {
    /// http-push: the provider pushes the data to the consumer's ingest endpoint.
    Push,
    /// http-pull: the consumer pulls the data from the provider's public endpoint.
    Pull,
}

impl TransferProfile {
    /// The DPS profile URL.
    pub fn url(self) -> &'static str {
        match self {
            Self::Push => HTTP_PUSH,
            Self::Pull => HTTP_PULL,
        }
    }
}

/// `dpfctl transfer ...`
#[derive(Debug, Args)]
#[command(after_help = "\
--consumer and --provider take a DPS signaling base URL (…/api/v1/signaling) or an API base \
URL (…/api/v1); both default to the --dataplane URL, so one data plane serves both sides. \
The destination path is written by the consumer data plane, on its host, beneath its file root \
(dpf.transfer.file.root): a relative path is relative to that root, an absolute one must lie \
beneath it.")]
pub struct TransferArgs {
    /// Dataset id on the provider data plane.
    #[arg(long)]
    pub dataset: String,
    /// Where the consumer data plane writes the data, beneath its file root.
    #[arg(long, value_name = "PATH")]
    pub to_file: PathBuf,
    /// DPS transfer profile.
    #[arg(long, value_enum, default_value_t = TransferProfile::Push)]
    pub profile: TransferProfile,
    /// Consumer data plane (default: --dataplane).
    #[arg(long, value_name = "URL")]
    pub consumer: Option<String>,
    /// Provider data plane (default: --dataplane).
    #[arg(long, value_name = "URL", conflicts_with = "select")]
    pub provider: Option<String>,
    /// Ask the selector for the provider data plane.
    #[arg(long)]
    pub select: bool,
    /// With --select: a label the data plane must have (repeatable).
    #[arg(long = "label", value_name = "LABEL", requires = "select")]
    pub labels: Vec<String>,
    /// With --select: the selection strategy.
    #[arg(long, requires = "select")]
    pub strategy: Option<String>,
    /// Return once the transfer has started, without waiting for it to finish (the consumer
    /// flow is then not marked completed: `dpfctl flow completed` does it).
    #[arg(long)]
    pub no_wait: bool,
    /// Give up waiting after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,
}

/// A profile as given on the command line: `push`/`http-push` and `pull`/`http-pull` expand to
/// the DPS profile URLs; anything else is taken as is.
pub fn expand_profile(profile: &str) -> String {
    match profile.trim() {
        "push" | "http-push" => HTTP_PUSH.to_owned(),
        "pull" | "http-pull" => HTTP_PULL.to_owned(),
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn profiles_expand() {
        assert_eq!(expand_profile("push"), HTTP_PUSH);
        assert_eq!(expand_profile("http-pull"), HTTP_PULL);
        assert_eq!(expand_profile("urn:x"), "urn:x");
    }
}
