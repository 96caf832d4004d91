//! The command line itself, without a server: shell completions, exit status 2 for usage
//! errors, the spelled-out `--insecure-skip-tls-verify`, and unusable `--cacert` and
//! `--api-key-file` files named before anything is sent. (TLS against a real HTTPS data plane:
//! `system-tests/tests/system/dpfctl_tls.rs`.)

#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

fn dpfctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dpfctl"))
        .args(args)
        .env_remove("DPF_API_KEY")
        .env_remove("DPF_API_KEY_FILE")
        .env_remove("DPF_CACERT")
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn completion_scripts_for_bash_zsh_and_fish() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef dpfctl"),
        ("fish", "complete -c dpfctl"),
    ] {
        let output = dpfctl(&["completion", shell]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{shell}: {}",
            stderr(&output)
        );
        let script = stdout(&output);
        assert!(script.contains(marker), "{shell}: {script}");
        // Subcommands and the global options are completed.
        assert!(script.contains("baseline"), "{shell}");
        assert!(script.contains("insecure-skip-tls-verify"), "{shell}");
    }
    let json = dpfctl(&["-o", "json", "completion", "bash"]);
    assert_eq!(json.status.code(), Some(0));
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["shell"], "bash");
    assert!(value["script"].as_str().unwrap().contains("complete -F"));
    let unknown = dpfctl(&["completion", "tcsh"]);
    assert_eq!(unknown.status.code(), Some(2));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["no-such-command"][..],
        &["flow"][..],
        &["flow", "get"][..],
        &["--output", "yaml", "flow", "list"][..],
    ] {
        let output = dpfctl(args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn skipping_tls_verification_must_be_spelled_out() {
    for abbreviated in ["--insecure", "--insecure-skip", "-k", "--skip-tls-verify"] {
        let output = dpfctl(&[
            abbreviated,
            "--dataplane",
            "https://127.0.0.1:1/api/v1",
            "flow",
            "list",
        ]);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{abbreviated}: {}",
            stderr(&output)
        );
    }
    // Spelled out, it is accepted (and the request then fails on the closed port: 1).
    let output = dpfctl(&[
        "--insecure-skip-tls-verify",
        "--dataplane",
        "https://127.0.0.1:1/api/v1",
        "flow",
        "list",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("cannot reach"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn unusable_cacert_and_key_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let output = dpfctl(&["--cacert", missing.to_str().unwrap(), "flow", "list"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("cannot read --cacert"),
        "{}",
        stderr(&output)
    );

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_dpfctl"))
        .args(["flow", "list"])
        .env("DPF_CACERT", &garbage)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("--cacert"), "{}", stderr(&output));

    let empty = dir.path().join("key");
    std::fs::write(&empty, "\n").unwrap();
    let output = dpfctl(&["--api-key-file", empty.to_str().unwrap(), "flow", "list"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("is empty"), "{}", stderr(&output));
}

#[test]
fn the_help_documents_the_exit_status() {
    let output = dpfctl(&["--help"]);
    assert_eq!(output.status.code(), Some(0));
    let help = stdout(&output);
    for needle in [
        "0 success",
        "1 failure",
        "2 usage",
        "3 not found",
        "--cacert",
        "--api-key-file",
        "--insecure-skip-tls-verify",
        "-o, --output",
    ] {
        assert!(help.contains(needle), "{needle}: {help}");
    }
}
