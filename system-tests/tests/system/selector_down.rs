//! A data plane starts and serves while its selector is down, and registers once it is up.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use system_tests::{get, Launcher};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_plane_serves_without_selector_and_registers_when_it_comes_up() {
    let dir = tempfile::tempdir().unwrap();
    let port = test_utils::free_port();
    let selector_url = format!("http://127.0.0.1:{port}/api/v1");
    let plane = Launcher::start(
        "dataplane-launcher",
        &[
            "-D",
            &format!("edc.dpf.selector.url={selector_url}"),
            "-D",
            "edc.runtime.id=dp-late",
        ],
        &[],
        dir.path(),
    );
    let (status, _) = get(&format!("{}/health", plane.base_url)).await;
    assert_eq!(status, 200, "serves although the selector is down");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        plane
            .log_text()
            .contains("cannot register with the selector"),
        "{}",
        plane.log_text()
    );

    let selector_dir = dir.path().join("selector");
    std::fs::create_dir_all(&selector_dir).unwrap();
    let _selector = Launcher::start_with_port("selector-launcher", port, &selector_dir);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, instances) = get(&format!("{selector_url}/dataplanes")).await;
        if status == 200
            && instances
                .as_array()
                .is_some_and(|a| a.iter().any(|i| i["id"] == "dp-late"))
        {
            let instance = &instances.as_array().unwrap()[0];
            assert_eq!(
                instance["endpoint"],
                format!("{}/signaling", plane.base_url)
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not registered: {instances}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
