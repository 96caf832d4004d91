//! `build_data_plane` applies every documented data-plane setting: a configured limit is never
//! silently unlimited.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::sync::Arc;
use std::time::Duration;

use dataplane_store_memory::MemoryStore;
use dpf_config::{Config, Source};

fn config(dir: &std::path::Path, pairs: &[(&str, &str)]) -> Config {
    let mut config = Config::new();
    for (key, value) in dpf_launch::DATA_PLANE_DEFAULTS {
        config.set(key, value, Source::Default);
    }
    config.set(
        "dpf.data.dir",
        &dir.join("data").display().to_string(),
        Source::Flag,
    );
    config.set(
        "dpf.transfer.file.root",
        &dir.join("files").display().to_string(),
        Source::Flag,
    );
    for (key, value) in pairs {
        config.set(key, value, Source::Flag);
    }
    config
}

fn build(config: &Config) -> anyhow::Result<Arc<dataplane_manager::DataPlane>> {
    let store = Arc::new(MemoryStore::new());
    dpf_launch::build_data_plane(config, store.clone(), store, "http://127.0.0.1:1/api/v1")
        .map(|(plane, _services)| plane)
}

#[tokio::test]
async fn limits_checkpoints_and_retention_come_from_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let plane = build(&config(
        dir.path(),
        &[
            ("dpf.dataplane.max-concurrent-flows", "3"),
            ("dpf.checkpoint.bytes", "4096"),
            ("dpf.checkpoint.interval", "250"),
            ("dpf.retention.age", "60000"),
            ("dpf.transfer.max-bytes", "1000000"),
        ],
    ))
    .unwrap();
    let settings = plane.config();
    assert_eq!(settings.max_concurrent_flows, 3);
    assert_eq!(settings.checkpoints.bytes, 4096);
    assert_eq!(settings.checkpoints.interval, Duration::from_millis(250));
    assert_eq!(settings.retention, Duration::from_secs(60));
    assert_eq!(settings.max_bytes, Some(1_000_000));
}

#[tokio::test]
async fn the_defaults_are_the_documented_ones() {
    let dir = tempfile::tempdir().unwrap();
    let plane = build(&config(dir.path(), &[])).unwrap();
    let settings = plane.config();
    assert_eq!(settings.max_concurrent_flows, 0);
    assert_eq!(settings.checkpoints.bytes, 64 * 1024 * 1024);
    assert_eq!(settings.checkpoints.interval, Duration::from_secs(5));
    assert_eq!(settings.retention, Duration::from_secs(7 * 24 * 3600));
    assert_eq!(settings.max_bytes, None);
}

#[tokio::test]
async fn bad_values_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (key, value) in [
        ("dpf.checkpoint.interval", "0"),
        ("dpf.dataplane.max-concurrent-flows", "many"),
        ("dpf.transfer.max-bytes", "-1"),
    ] {
        let error = build(&config(dir.path(), &[(key, value)])).unwrap_err();
        assert!(format!("{error:#}").contains(key), "{key}: {error:#}");
    }
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_dir_is_created_and_kept_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    build(&config(dir.path(), &[])).unwrap();
    let mode = || std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(), 0o700);
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    build(&config(dir.path(), &[])).unwrap();
    assert_eq!(mode(), 0o700);
}

#[tokio::test]
async fn a_configured_control_plane_gets_its_authorization() {
    let dir = tempfile::tempdir().unwrap();
    let plane = build(&config(
        dir.path(),
        &[
            ("dpf.http.insecure", "true"),
            (
                "dpf.controlplane.cp1.endpoint",
                "https://cp.example/signaling",
            ),
            ("dpf.controlplane.cp1.authorization.type", "bearer"),
            ("dpf.controlplane.cp1.authorization.token", "cp-token"),
            (
                "dpf.controlplane.cp2.endpoint",
                "https://cp2.example/signaling",
            ),
        ],
    ))
    .unwrap();
    let cp1 = plane
        .control_planes()
        .for_participant(Some("cp1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        cp1.authorization,
        serde_json::json!({"type": "bearer", "token": "cp-token"})
    );
    let cp2 = plane
        .control_planes()
        .for_participant(Some("cp2"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cp2.authorization, serde_json::json!({"type": "none"}));
}
