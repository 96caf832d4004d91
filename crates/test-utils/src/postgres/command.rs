//! Running commands: `psql`, and the error messages of failed commands.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use super::{redact_password, unique_database_name};

/// Runs `cmd` to completion with no stdin, capturing its output; an error (with the output) when
/// it cannot be started or exits unsuccessfully.
pub(super) fn run(cmd: &mut Command, what: &str) -> Result<Output, String> {
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: cannot run {}: {e}", describe(cmd)))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(format!(
            "{what} failed ({}): {}\n{}{}",
            output.status,
            describe(cmd),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// `cmd` as a line for error messages, with passwords in connection URLs hidden.
pub(super) fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|arg| {
            let arg = arg.to_string_lossy();
            if arg.contains("://") {
                redact_password(&arg)
            } else {
                arg.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A `psql` invocation that reads no `~/.psqlrc`, stops at the first error and gives up
/// connecting after 10 s.
pub(super) fn psql_command(psql: &Path) -> Command {
    let mut cmd = Command::new(psql);
    cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
        .env("PGCONNECT_TIMEOUT", "10");
    cmd
}

/// `CREATE DATABASE` on the server `connect` points `psql` at, retrying with a new name should
/// the name already be taken. Returns the name created.
pub(super) fn create_database(psql: &Path, connect: &[&str]) -> Result<String, String> {
    let mut last_error = String::new();
    for _ in 0..5 {
        let name = unique_database_name();
        let result = run(
            psql_command(psql)
                .args(connect)
                .args(["-c", &format!("CREATE DATABASE {name}")]),
            "CREATE DATABASE",
        );
        match result {
            Ok(_) => return Ok(name),
            Err(e) if e.contains("already exists") => last_error = e,
            Err(e) => return Err(e),
        }
    }
    Err(last_error)
}
