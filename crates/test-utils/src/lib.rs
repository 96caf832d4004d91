//! Test support for the dpf workspace.
//!
//! This crate is meant to be used as a `[dev-dependencies]` entry only. It provides:
//!
//! - [`postgres_database`]: a fresh, empty PostgreSQL database for one test. By default each test
//!   binary (process) lazily starts its own throwaway PostgreSQL server from the locally installed
//!   binaries (`initdb`, `pg_ctl`, `psql`, looked up on `PATH` and then in
//!   `/usr/lib/postgresql/<version>/bin`), in a temporary data directory under `/tmp`, listening on
//!   `127.0.0.1` on a free port, tuned for speed (no fsync). Every call then creates a new
//!   database on that server, so tests never see each other's data. When the environment variable
//!   `TEST_DATABASE_URL` is set (`postgres://user@host:port/db`, with a user allowed to create
//!   databases), the databases are created on that server instead and no local server is started.
//!   When neither is possible the call panics with instructions: tests needing PostgreSQL are never
//!   skipped silently.
//! - [`free_port`]: a currently free TCP port on `127.0.0.1`.
//! - [`wait_for`]: poll a condition until it holds or a timeout passes.
//! - [`dps`]: validate JSON messages against the Eclipse Data Plane Signaling JSON schemas
//!   ([`dps::validate`], [`dps::assert_valid`]), offline.
//! - [`fakes`]: fault-injecting sources and sinks for in-process transfer tests (failing,
//!   flaky, stalling and slow sources; a recording sink that can refuse writes).
//!
//! # Cleanup
//!
//! The throwaway server is removed even if the test binary is killed: when it is started, a
//! detached watchdog shell process is spawned that waits for the test process to disappear, then
//! stops the server (`pg_ctl stop -m immediate`) and deletes the data directory. The watchdog does
//! not hold the test's stdout/stderr, so `cargo test` and `cargo nextest` do not wait for it.
//!
//! # Running as root
//!
//! PostgreSQL refuses to run as root. When the tests run as root (as in CI containers), `initdb`
//! and the server are run as the `postgres` system user through `runuser`, and the data directory
//! is handed to that user.
//!
//! # Example
//!
//! ```no_run
//! let db = test_utils::postgres_database();
//! // e.g. postgres://postgres@127.0.0.1:41234/dpf_test_0_1234_5f3a
//! println!("connect to {} (database {})", db.url(), db.name());
//! ```

pub mod dps;
pub mod fakes;
mod postgres;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

pub use postgres::{postgres_database, TestDatabase};

/// How often [`wait_for`] evaluates its condition.
const WAIT_FOR_POLL: Duration = Duration::from_millis(10);

/// A free TCP port on 127.0.0.1.
///
/// The port is found by binding port 0 and reading the port the OS picked; the socket is closed
/// before returning, so another process could in principle take the port in between. Bind it
/// soon.
///
/// The probe socket has `SO_REUSEADDR` set and is never put into the listening state. This
/// matters in tests: while another thread of the test process spawns a child (e.g. `psql`), the
/// child briefly holds copies of all the parent's sockets until it execs, so a closed *listening*
/// probe could still occupy the port when the caller binds it. A bound, non-listening
/// `SO_REUSEADDR` socket does not stop a later `SO_REUSEADDR` bind and listen (which is what
/// `std`, Tokio, actix and PostgreSQL do).
pub fn free_port() -> u16 {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))
        .expect("test-utils: cannot create a TCP socket");
    socket
        .set_reuse_address(true)
        .expect("test-utils: cannot set SO_REUSEADDR on a TCP socket");
    socket
        .bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
        .expect("test-utils: cannot bind an ephemeral TCP port on 127.0.0.1");
    socket
        .local_addr()
        .ok()
        .and_then(|addr| addr.as_socket())
        .expect("test-utils: cannot read the local address of a bound TCP socket")
        .port()
}

/// Poll `cond` every 10 ms until it returns true or `timeout` has passed; returns whether it
/// became true.
///
/// `cond` is always evaluated at least once, and once more at the deadline. Uses the Tokio timer,
/// so it must be awaited inside a Tokio runtime.
pub async fn wait_for<F: FnMut() -> bool>(timeout: Duration, mut cond: F) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return false;
        }
        tokio::time::sleep((deadline - now).min(WAIT_FOR_POLL)).await;
    }
}
