//! `dpfctl`: a command-line client for every dpf API, and a minimal DPS control plane.
//!
//! ```text
//! dpfctl [--dataplane URL] [--selector URL] [--output text|json] <command>
//!
//! completion bash|zsh|fish
//! dataset put ID (--file PATH | --http URL) | list | get ID | delete ID
//! dataplane list | get ID | delete ID | register --id ID --endpoint URL --profile P...
//! select --profile P [--source-type T] [--label L]... [--strategy S]
//! strategies
//! flow list [--state S] | get ID | status ID | suspend ID [--reason R] | resume ID
//!      | terminate ID [--reason R] | completed ID | watch ID
//! controlplane register --id ID --endpoint URL | delete ID
//! transfer --dataset ID --to-file PATH [--profile push|pull] [--consumer URL]
//!          [--provider URL] [--select] [--no-wait]
//! health
//! cluster members [--watch] | leader
//!         | kv get KEY | put KEY VALUE [--expected-version N] | delete KEY [--expected-version N]
//!         | kv list [--prefix P] | watch [--prefix P] [--from-revision R]
//!         | config set NAME VALUE | get NAME | list | unset NAME
//! baseline [show] | set NAMES [--expected-version N] | add NAMES [..] | remove NAMES [..]
//!          | version | activate | deactivate | auto-adjust enable [--timeout MS] | disable
//! ```
//!
//! `--dataplane` defaults to `$DPF_DATAPLANE_URL` or `http://127.0.0.1:8080/api/v1`, and
//! `--selector` to `$DPF_SELECTOR_URL` or `http://127.0.0.1:8080/api/v1/selector`: the data
//! plane and the selector of `cargo run -p embedded-launcher`.
//!
//! `transfer` plays the control plane of both sides of a DPS transfer (by default on the same
//! data plane) and moves a dataset into a file with `http-push` or `http-pull`, showing a
//! progress bar; see [`transfer`] for the message sequence.
//!
//! `cluster` talks to the data plane's cluster API (see [`cluster`]): members, leader, the
//! key-value store and the live settings under `dpf/config/`.
//!
//! `baseline` shows and changes the baseline topology (see [`baseline`]), its `show` laid out
//! like Apache Ignite's `control.sh --baseline`.
//!
//! Results go to stdout as text or JSON (`-o json`, every command). Failures print
//! `error: <message>` on stderr (the API's own message for its `{"error": ..., "code": ...}`
//! answers, the URL and the cause for connection and certificate failures).
//!
//! Exit status ([`exit_code`]): 0 success; 1 failure; 2 usage (clap's own status for a wrong
//! command line); 3 not found (an API answered 404); 4 `cluster kv watch` cannot go on because
//! the changes to watch were compacted away.
//!
//! TLS and keys ([`connection`]): `--cacert FILE` / `DPF_CACERT` adds a private CA to the
//! system's trust store; `--insecure-skip-tls-verify` (no short form, no variable) turns
//! certificate checks off; the API key comes from `--api-key-file FILE` /
//! `DPF_API_KEY_FILE`, else `DPF_API_KEY`.

mod api;
mod baseline;
mod cli;
mod cluster;
mod commands;
mod connection;
mod output;
mod sse;
mod transfer;
mod watch;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::api::Api;
use crate::cli::{Cli, Command, CompletionShell};
use crate::output::{print_json, OutputFormat};

/// Exit status of a failure: 3 for an API's 404, else 1.
const NOT_FOUND: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Completion { shell } = cli.command {
        completion(shell, cli.output);
        return ExitCode::SUCCESS;
    }
    let settings = connection::ConnectionArgs {
        cacert: cli.cacert.clone(),
        insecure: cli.insecure_skip_tls_verify,
        api_key_file: cli.api_key_file.clone(),
    };
    if let Err(error) = connection::init(&settings) {
        eprintln!("error: {error:#}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let code = exit_code(&error);
            match error.downcast_ref::<cluster::Exit>() {
                Some(exit) if exit.message.is_empty() => {}
                Some(exit) => eprintln!("error: {}", exit.message),
                None => eprintln!("error: {error:#}"),
            }
            ExitCode::from(code)
        }
    }
}

/// The exit status of a failed command: its own ([`cluster::Exit`]), 3 when an API answered
/// 404, else 1.
fn exit_code(error: &anyhow::Error) -> u8 {
    if let Some(exit) = error.downcast_ref::<cluster::Exit>() {
        return exit.code;
    }
    match api::http_error(error) {
        Some(http) if http.status == reqwest::StatusCode::NOT_FOUND => NOT_FOUND,
        _ => 1,
    }
}

/// `dpfctl completion SHELL`: the script on stdout (`-o json`: `{"shell", "script"}`).
fn completion(shell: CompletionShell, output: OutputFormat) {
    let shell = match shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "dpfctl", &mut script);
    match output {
        OutputFormat::Text => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            // A closed pipe (`| head`) is not worth an error.
            let _ = out.write_all(&script).and_then(|()| out.flush());
        }
        OutputFormat::Json => print_json(&serde_json::json!({
            "shell": shell.to_string(),
            "script": String::from_utf8_lossy(&script),
        })),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let output = cli.output;
    match cli.command {
        Command::Dataset(command) => {
            commands::dataset(&Api::new(&cli.dataplane)?, command, output).await
        }
        Command::Dataplane(command) => commands::dataplane(&cli.selector, command, output).await,
        Command::Select(args) => commands::select(&cli.selector, args, output).await,
        Command::Strategies => commands::strategies(&cli.selector, output).await,
        Command::Flow(command) => commands::flow(&Api::new(&cli.dataplane)?, command, output).await,
        Command::Controlplane(command) => {
            commands::controlplane(&Api::new(&cli.dataplane)?, command, output).await
        }
        Command::Transfer(args) => {
            transfer::transfer(&cli.dataplane, &cli.selector, args, output).await
        }
        Command::Health => {
            commands::health(&Api::new(&cli.dataplane)?, &cli.selector, output).await
        }
        Command::Cluster(command) => {
            cluster::cluster(&Api::new(&cli.dataplane)?, command, output).await
        }
        Command::Baseline(args) => {
            baseline::baseline(&Api::new(&cli.dataplane)?, args.command, output).await
        }
        Command::Completion { shell } => {
            completion(shell, output);
            Ok(())
        }
    }
}
