//! Throwaway PostgreSQL servers and per-test databases.

use std::env;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod binaries;
mod command;
mod server;

use binaries::{find_binary, search_dirs};
use command::create_database;
use server::local_database;

/// Environment variable naming an existing server to create the test databases on.
const TEST_DATABASE_URL: &str = "TEST_DATABASE_URL";

/// Where Debian (and Ubuntu) install the server binaries, one directory per major version.
const DEBIAN_PG_ROOT: &str = "/usr/lib/postgresql";

/// The system user that owns and runs the server when the tests run as root.
const PG_SYSTEM_USER: &str = "postgres";

/// The database superuser created by `initdb -U`.
const PG_SUPERUSER: &str = "postgres";

/// How long the server may take to accept connections.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// How often to try binding a new port when the chosen one was taken in the meantime.
const START_ATTEMPTS: u32 = 3;

/// Appended to every "no PostgreSQL" panic.
const FIX_HINT: &str = "To fix this, either install PostgreSQL locally \
(`apt-get install -y postgresql`; initdb, pg_ctl and psql are looked up on PATH and in \
/usr/lib/postgresql/<version>/bin), or set TEST_DATABASE_URL=postgres://user@host:port/db to a \
server where that user may CREATE DATABASE (psql must then be installed too).";

/// A fresh, empty PostgreSQL database for one test.
///
/// The database is not dropped when this value is dropped: on the throwaway server everything goes
/// away with the server; on a `TEST_DATABASE_URL` server the `dpf_test_*` databases stay behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestDatabase {
    url: String,
    name: String,
}

impl TestDatabase {
    /// Connection URL of the database, e.g. `postgres://postgres@127.0.0.1:41234/dpf_test_0_99_1a2b`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Name of the database (`dpf_test_<n>_<pid>_<stamp>`).
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Returns a fresh empty database (`CREATE DATABASE dpf_test_<n>_<pid>_<stamp>`) on the
/// per-process throwaway server, or on `TEST_DATABASE_URL`'s server when that env var is set.
///
/// Blocks while the server starts (the first call in a process, typically one to three seconds)
/// and while `psql` creates the database.
///
/// # Panics
///
/// When no PostgreSQL can be had: neither local PostgreSQL binaries nor a usable
/// `TEST_DATABASE_URL`. The message says how to fix that.
pub fn postgres_database() -> TestDatabase {
    match env::var(TEST_DATABASE_URL) {
        Ok(url) if !url.trim().is_empty() => external_database(url.trim()),
        _ => local_database(),
    }
}

// ---------------------------------------------------------------------------------------------
// Database names and URLs
// ---------------------------------------------------------------------------------------------

/// A database name unique within this process (counter) and, with high probability, across
/// processes and runs (pid and clock), so leftovers on a shared server do not collide.
fn unique_database_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or_default()
        & 0xff_ffff_ffff;
    format!("dpf_test_{n}_{}_{stamp:x}", std::process::id())
}

/// `url` with its database (path) replaced by `name`, keeping user, host, port and query.
fn with_database(url: &str, name: &str) -> String {
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let authority_end = url[authority_start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| authority_start + i);
    let tail = &url[authority_end..];
    let suffix = tail.find(['?', '#']).map_or("", |i| &tail[i..]);
    format!("{}/{name}{suffix}", &url[..authority_end])
}

/// `url` without its password, for logs.
fn redact_password(url: &str) -> String {
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let authority_end = url[authority_start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| authority_start + i);
    let authority = &url[authority_start..authority_end];
    match authority.rfind('@') {
        Some(at) => match authority[..at].find(':') {
            Some(colon) => format!(
                "{}{}:***{}",
                &url[..authority_start],
                &authority[..colon],
                &url[authority_start + at..]
            ),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Writes `line` to the process's stderr directly, bypassing the test harness's output capture
/// (which only intercepts `eprintln!`), so test output always shows which server was used.
fn log_line(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

// ---------------------------------------------------------------------------------------------
// TEST_DATABASE_URL
// ---------------------------------------------------------------------------------------------

fn external_database(url: &str) -> TestDatabase {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        panic!(
            "test-utils: {TEST_DATABASE_URL} must be a URL of the form \
             postgres://user@host:port/db, got {:?}. {FIX_HINT}",
            redact_password(url)
        );
    }
    let psql = find_binary(&search_dirs(), "psql").unwrap_or_else(|| {
        panic!(
            "test-utils: {TEST_DATABASE_URL} is set but no `psql` was found on PATH or in \
             {DEBIAN_PG_ROOT}/<version>/bin to create test databases with. \
             Install the PostgreSQL client (`apt-get install -y postgresql-client`)."
        )
    });
    static LOGGED: Once = Once::new();
    LOGGED.call_once(|| {
        log_line(&format!(
            "test-utils: PostgreSQL from {TEST_DATABASE_URL} at {} (test databases dpf_test_* \
             are left behind)",
            redact_password(&with_database(url, ""))
        ));
    });
    let name = create_database(&psql, &["-d", url]).unwrap_or_else(|e| {
        panic!(
            "test-utils: cannot create a test database on the server of {TEST_DATABASE_URL} \
             ({}): {e}\n{FIX_HINT}",
            redact_password(url)
        )
    });
    TestDatabase {
        url: with_database(url, &name),
        name,
    }
}

#[cfg(test)]
mod tests;
