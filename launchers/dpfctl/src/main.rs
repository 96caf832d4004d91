//! `dpfctl`: a command-line client for every dpf API, and a minimal DPS control plane.
//!
//! ```text
//! dpfctl [--dataplane URL] [--selector URL] [--output text|json] <command>
//!
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
//! Results go to stdout as text or JSON (`--output json`). Failures print `error: <message>`
//! on stderr (the API's own message for its `{"error": ..., "code": ...}` answers, the URL for
//! connection failures) and exit with status 1 (`cluster kv watch`: 2 when the changes to
//! watch were compacted away).

mod api;
mod baseline;
mod cli;
mod cluster;
mod commands;
mod output;
mod sse;
mod transfer;
mod watch;

use std::process::ExitCode;

use clap::Parser;

use crate::api::Api;
use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
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
        Err(error) => match error.downcast_ref::<cluster::Exit>() {
            Some(exit) => {
                if !exit.message.is_empty() {
                    eprintln!("error: {}", exit.message);
                }
                ExitCode::from(exit.code)
            }
            None => {
                eprintln!("error: {error:#}");
                ExitCode::FAILURE
            }
        },
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
    }
}
