//! Integration tests: a real throwaway PostgreSQL (or TEST_DATABASE_URL's server).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use test_utils::{free_port, postgres_database, wait_for};

/// `psql` on PATH or in /usr/lib/postgresql/<version>/bin.
fn psql() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    let mut versioned: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .collect();
    versioned.sort();
    versioned.reverse();
    dirs.extend(versioned);
    dirs.into_iter()
        .map(|d| d.join("psql"))
        .find(|p| p.is_file())
        .expect("psql not found")
}

fn psql_query(url: &str, sql: &str) -> String {
    let out = Command::new(psql())
        .args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            sql,
        ])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql -c {sql:?} on {url} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn two_databases_are_distinct_and_usable() {
    let a = postgres_database();
    let b = postgres_database();
    assert_ne!(a.name(), b.name());
    assert_ne!(a.url(), b.url());
    for db in [&a, &b] {
        let without_query = db.url().split(['?', '#']).next().unwrap();
        assert!(
            without_query.ends_with(&format!("/{}", db.name())),
            "{}",
            db.url()
        );
    }

    assert_eq!(psql_query(a.url(), "select 1"), "1");
    assert_eq!(psql_query(b.url(), "select 1"), "1");
    assert_eq!(psql_query(a.url(), "select current_database()"), a.name());
    assert_eq!(psql_query(b.url(), "select current_database()"), b.name());

    // Fresh and isolated: a table made in one is not visible in the other.
    psql_query(a.url(), "create table only_in_a (id int)");
    assert_eq!(
        psql_query(
            a.url(),
            "select count(*) from pg_tables where tablename = 'only_in_a'"
        ),
        "1"
    );
    assert_eq!(
        psql_query(
            b.url(),
            "select count(*) from pg_tables where tablename = 'only_in_a'"
        ),
        "0"
    );
}

#[test]
fn databases_from_many_threads() {
    let handles: Vec<_> = (0..8)
        .map(|_| std::thread::spawn(postgres_database))
        .collect();
    let mut names: Vec<String> = handles
        .into_iter()
        .map(|h| h.join().expect("thread panicked").name().to_owned())
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 8);
}

#[test]
fn free_port_is_bindable() {
    let port = free_port();
    assert_ne!(port, 0);
    let listener = TcpListener::bind(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("free port {port} should be bindable: {e}"));
    assert_eq!(listener.local_addr().unwrap().port(), port);
}

/// While another thread spawns processes, forked children briefly hold copies of the parent's
/// sockets; the port from `free_port` must still be bindable right away.
#[test]
fn free_port_is_bindable_while_processes_spawn() {
    let stop = Arc::new(AtomicBool::new(false));
    let spawner = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = Command::new("true").current_dir("/").status();
            }
        })
    };
    let failures: Vec<String> = (0..5000)
        .filter_map(|_| {
            let port = free_port();
            TcpListener::bind(("127.0.0.1", port))
                .err()
                .map(|e| format!("{port}: {e}"))
        })
        .collect();
    stop.store(true, Ordering::Relaxed);
    spawner.join().unwrap();
    assert!(failures.is_empty(), "ports not bindable: {failures:?}");
}

#[tokio::test]
async fn wait_for_reports_success_and_timeout() {
    let mut calls = 0;
    assert!(
        wait_for(Duration::from_secs(5), || {
            calls += 1;
            calls >= 3
        })
        .await
    );
    assert_eq!(calls, 3);
    let start = std::time::Instant::now();
    assert!(!wait_for(Duration::from_millis(50), || false).await);
    assert!(start.elapsed() >= Duration::from_millis(50));
}
