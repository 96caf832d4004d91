//! `dpfctl` against an HTTPS data plane whose certificate comes from a private CA (the
//! documented HTTPS set-up): `--cacert ca.pem` (or `DPF_CACERT`) makes `flow list` work;
//! without it the error names the certificate problem and what to do; the API key comes from
//! `--api-key-file`; a missing flow is exit status 3.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use system_tests::{binary, write_test_pki, Launcher};

const KEY: &str = "tls-test-administrator-key";

fn dpfctl(base: &str, args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new(binary("dpfctl"))
        .args(["--dataplane", base])
        .args(args)
        .env_remove("DPF_API_KEY")
        .env_remove("DPF_API_KEY_FILE")
        .env_remove("DPF_CACERT")
        .envs(envs.iter().copied())
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn https_data_plane(dir: &Path) -> Launcher {
    write_test_pki(dir);
    let path = |name: &str| dir.join(name).display().to_string();
    let settings = [
        format!("dpf.tls.cert={}", path("cert.pem")),
        format!("dpf.tls.key={}", path("key.pem")),
        "dpf.store.url=memory:".to_owned(),
        format!("dpf.api.auth.key={KEY}"),
        // HTTPS enforced, as in production (the harness relaxes it by default).
        "dpf.http.insecure=false".to_owned(),
    ];
    let args: Vec<&str> = settings.iter().flat_map(|s| ["-D", s.as_str()]).collect();
    let launcher = Launcher::start("dataplane-launcher", &args, &[], dir);
    assert!(
        launcher.base_url.starts_with("https://"),
        "{}",
        launcher.base_url
    );
    launcher
}

#[test]
fn dpfctl_trusts_a_private_ca_with_cacert() {
    let dir = tempfile::tempdir().unwrap();
    let launcher = https_data_plane(dir.path());
    let base = launcher.base_url.as_str();
    let ca = dir.path().join("ca.pem").display().to_string();
    let key_file = dir.path().join("api-key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let key = key_file.display().to_string();

    // --cacert and --api-key-file: works, as text and as JSON.
    let listed = dpfctl(
        base,
        &["--cacert", &ca, "--api-key-file", &key, "flow", "list"],
        &[],
    );
    assert_eq!(listed.status.code(), Some(0), "{}", stderr(&listed));
    let json = dpfctl(
        base,
        &[
            "--cacert",
            &ca,
            "--api-key-file",
            &key,
            "-o",
            "json",
            "flow",
            "list",
        ],
        &[],
    );
    assert_eq!(json.status.code(), Some(0), "{}", stderr(&json));
    let flows: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(flows.is_array(), "{flows}");

    // The same from the environment.
    let from_env = dpfctl(
        base,
        &["flow", "list"],
        &[("DPF_CACERT", &ca), ("DPF_API_KEY", KEY)],
    );
    assert_eq!(from_env.status.code(), Some(0), "{}", stderr(&from_env));

    // Without the CA: exit 1, and the error names the certificate problem and the fix.
    let untrusted = dpfctl(base, &["--api-key-file", &key, "flow", "list"], &[]);
    assert_eq!(untrusted.status.code(), Some(1));
    let message = stderr(&untrusted);
    assert!(
        message.contains("certificate") && message.contains("UnknownIssuer"),
        "{message}"
    );
    assert!(message.contains("--cacert"), "{message}");

    // Checks off, spelled out: works without the CA.
    let insecure = dpfctl(
        base,
        &[
            "--insecure-skip-tls-verify",
            "--api-key-file",
            &key,
            "flow",
            "list",
        ],
        &[],
    );
    assert_eq!(insecure.status.code(), Some(0), "{}", stderr(&insecure));

    // The key file wins over DPF_API_KEY; a wrong key is refused (401, exit 1).
    let wrong = dpfctl(
        base,
        &["--cacert", &ca, "flow", "list"],
        &[("DPF_API_KEY", "wrong")],
    );
    assert_eq!(wrong.status.code(), Some(1), "{}", stderr(&wrong));
    let file_wins = dpfctl(
        base,
        &["--cacert", &ca, "--api-key-file", &key, "flow", "list"],
        &[("DPF_API_KEY", "wrong")],
    );
    assert_eq!(file_wins.status.code(), Some(0), "{}", stderr(&file_wins));

    // Not found: exit 3.
    let missing = dpfctl(
        base,
        &[
            "--cacert",
            &ca,
            "--api-key-file",
            &key,
            "flow",
            "get",
            "no-such-flow",
        ],
        &[],
    );
    assert_eq!(missing.status.code(), Some(3), "{}", stderr(&missing));
}
