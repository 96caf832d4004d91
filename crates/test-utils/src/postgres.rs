//! Throwaway PostgreSQL servers and per-test databases.

use std::env;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Once, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
// Running commands
// ---------------------------------------------------------------------------------------------

/// Runs `cmd` to completion with no stdin, capturing its output; an error (with the output) when
/// it cannot be started or exits unsuccessfully.
fn run(cmd: &mut Command, what: &str) -> Result<Output, String> {
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
fn describe(cmd: &Command) -> String {
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
fn psql_command(psql: &Path) -> Command {
    let mut cmd = Command::new(psql);
    cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
        .env("PGCONNECT_TIMEOUT", "10");
    cmd
}

/// `CREATE DATABASE` on the server `connect` points `psql` at, retrying with a new name should
/// the name already be taken. Returns the name created.
fn create_database(psql: &Path, connect: &[&str]) -> Result<String, String> {
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

// ---------------------------------------------------------------------------------------------
// Finding the PostgreSQL binaries
// ---------------------------------------------------------------------------------------------

/// Directories to search for PostgreSQL binaries: `PATH` first, then
/// `/usr/lib/postgresql/<version>/bin`, highest version first.
fn search_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = env::var_os("PATH")
        .map(|path| env::split_paths(&path).collect())
        .unwrap_or_default();
    let mut versioned: Vec<(Vec<u32>, PathBuf)> = fs::read_dir(DEBIAN_PG_ROOT)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry
                .file_name()
                .to_str()?
                .split('.')
                .map(|part| part.parse::<u32>().ok())
                .collect::<Option<Vec<u32>>>()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versioned.sort_by(|a, b| b.0.cmp(&a.0));
    dirs.extend(versioned.into_iter().map(|(_, dir)| dir));
    dirs
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn find_binary(dirs: &[PathBuf], name: &str) -> Option<PathBuf> {
    dirs.iter()
        .map(|dir| dir.join(name))
        .find(|path| is_executable(path))
}

/// The server-side binaries, all from one installation.
#[derive(Debug)]
struct ServerBinaries {
    initdb: PathBuf,
    pg_ctl: PathBuf,
    psql: PathBuf,
}

fn find_server_binaries() -> Result<ServerBinaries, String> {
    let dirs = search_dirs();
    let initdb = find_binary(&dirs, "initdb").ok_or_else(|| {
        format!(
            "no `initdb` found on PATH or in {DEBIAN_PG_ROOT}/<version>/bin, so no throwaway \
             PostgreSQL server can be started"
        )
    })?;
    // `initdb` on PATH may be a symlink into the real installation: take its siblings from there
    // so that pg_ctl/postgres/psql match its version.
    let install_dir = fs::canonicalize(&initdb)
        .ok()
        .and_then(|real| real.parent().map(Path::to_path_buf));
    let sibling = |name: &str| {
        install_dir
            .as_ref()
            .map(|dir| dir.join(name))
            .filter(|path| is_executable(path))
            .or_else(|| find_binary(&dirs, name))
    };
    let pg_ctl = sibling("pg_ctl").ok_or_else(|| {
        format!(
            "found {} but no `pg_ctl` next to it, on PATH or in {DEBIAN_PG_ROOT}/<version>/bin",
            initdb.display()
        )
    })?;
    let psql = sibling("psql").ok_or_else(|| {
        format!(
            "found {} but no `psql` next to it, on PATH or in {DEBIAN_PG_ROOT}/<version>/bin",
            initdb.display()
        )
    })?;
    Ok(ServerBinaries {
        initdb,
        pg_ctl,
        psql,
    })
}

/// The major version reported by `pg_ctl --version` (`pg_ctl (PostgreSQL) 15.18 (...)`).
fn major_version(pg_ctl: &Path) -> String {
    Command::new(pg_ctl)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()
        .and_then(|out| {
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let (_, after) = text.split_once("(PostgreSQL)")?;
            let version = after.split_whitespace().next()?;
            Some(version.split('.').next().unwrap_or(version).to_owned())
        })
        .unwrap_or_else(|| "(unknown version)".to_owned())
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

// ---------------------------------------------------------------------------------------------
// The per-process throwaway server
// ---------------------------------------------------------------------------------------------

/// The running throwaway server of this process.
#[derive(Debug)]
struct LocalServer {
    port: u16,
    psql: PathBuf,
}

impl LocalServer {
    fn connect_args(&self) -> [String; 8] {
        [
            "-h".to_owned(),
            "127.0.0.1".to_owned(),
            "-p".to_owned(),
            self.port.to_string(),
            "-U".to_owned(),
            PG_SUPERUSER.to_owned(),
            "-d".to_owned(),
            "postgres".to_owned(),
        ]
    }
}

fn local_database() -> TestDatabase {
    static SERVER: OnceLock<Result<LocalServer, String>> = OnceLock::new();
    let server = match SERVER.get_or_init(start_local_server) {
        Ok(server) => server,
        Err(e) => panic!(
            "test-utils: no PostgreSQL available for tests: {e}\n{FIX_HINT}\n\
             (A server cannot be started as root unless a `{PG_SYSTEM_USER}` system user and \
             `runuser` exist; installing the postgresql package creates that user.)"
        ),
    };
    let args = server.connect_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let name = create_database(&server.psql, &args).unwrap_or_else(|e| {
        panic!(
            "test-utils: cannot create a test database on the throwaway PostgreSQL at \
             127.0.0.1:{}: {e}",
            server.port
        )
    });
    TestDatabase {
        url: format!("postgres://{PG_SUPERUSER}@127.0.0.1:{}/{name}", server.port),
        name,
    }
}

/// Whether this process runs as root (effective uid 0), found without `unsafe` via `id -u`.
fn running_as_root() -> bool {
    match Command::new("id").arg("-u").stdin(Stdio::null()).output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim() == "0",
        _ => env::var("USER").is_ok_and(|user| user == "root"),
    }
}

/// How to run the server binaries: directly, or as the `postgres` user when we are root.
#[derive(Debug, Clone, Copy)]
struct RunAs {
    postgres_user: bool,
}

impl RunAs {
    /// A command running `program`; its working directory is `cwd`, which the server user can
    /// enter (our own working directory may not be accessible to it).
    fn command(self, program: &Path, cwd: &Path) -> Command {
        let mut cmd = if self.postgres_user {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", PG_SYSTEM_USER, "--"]).arg(program);
            cmd
        } else {
            Command::new(program)
        };
        cmd.current_dir(cwd);
        cmd
    }

    /// The same, as a shell command line prefix for the watchdog.
    fn shell_prefix(self, program: &Path) -> String {
        let program = sh_quote(&program.to_string_lossy());
        if self.postgres_user {
            format!("runuser -u {PG_SYSTEM_USER} -- {program}")
        } else {
            program
        }
    }
}

/// `s` quoted for `sh`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Creates a new, empty directory `/tmp/dpf-test-pg-<pid>-<stamp>` with mode 700.
fn make_temp_dir() -> Result<PathBuf, String> {
    let pid = std::process::id();
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
        & 0xffff_ffff_ffff;
    for attempt in 0..100 {
        let dir = PathBuf::from(format!("/tmp/dpf-test-pg-{pid}-{stamp:x}-{attempt}"));
        match fs::create_dir(&dir) {
            Ok(()) => {
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
                    .map_err(|e| format!("cannot chmod 700 {}: {e}", dir.display()))?;
                return Ok(dir);
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
        }
    }
    Err("cannot create a unique temporary directory under /tmp".to_owned())
}

/// Spawns a detached shell that waits for this process to exit, then stops the server in
/// `data_dir` and removes `dir`.
///
/// The watchdog is in a process group of its own (so a Ctrl-C aimed at the test does not kill it
/// before it has cleaned up) and has its stdio on /dev/null (so nobody waits for it to close the
/// test's output).
fn spawn_watchdog(pg_ctl: &Path, run_as: RunAs, dir: &Path, data_dir: &Path) -> Result<(), String> {
    let pid = std::process::id();
    let data = sh_quote(&data_dir.to_string_lossy());
    let script = format!(
        "trap '' HUP INT\n\
         while kill -0 {pid} 2>/dev/null; do sleep 1; done\n\
         if [ -f {data}/postmaster.pid ]; then\n\
         \x20 {stop} stop -D {data} -m immediate -w -t 10 || {{\n\
         \x20   pm=$(head -n 1 {data}/postmaster.pid 2>/dev/null) && [ -n \"$pm\" ] && kill -9 \"$pm\"\n\
         \x20 }}\n\
         fi\n\
         rm -rf {dir}\n",
        stop = run_as.shell_prefix(pg_ctl),
        dir = sh_quote(&dir.to_string_lossy()),
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map(drop)
        .map_err(|e| format!("cannot spawn the cleanup watchdog (sh): {e}"))
}

fn read_log(log: &Path) -> String {
    fs::read_to_string(log)
        .unwrap_or_else(|e| format!("(cannot read server log {}: {e})", log.display()))
}

fn start_local_server() -> Result<LocalServer, String> {
    let bins = find_server_binaries()?;
    let run_as = RunAs {
        postgres_user: running_as_root(),
    };
    let dir = make_temp_dir()?;
    let data_dir = dir.join("data");
    let log = dir.join("server.log");
    // Before anything else, so the directory goes away whatever happens next.
    spawn_watchdog(&bins.pg_ctl, run_as, &dir, &data_dir)?;

    if run_as.postgres_user {
        run(
            Command::new("chown").args(["-R", PG_SYSTEM_USER]).arg(&dir),
            "handing the data directory to the postgres user (running as root)",
        )?;
    }

    run(
        run_as
            .command(&bins.initdb, &dir)
            .arg("-D")
            .arg(&data_dir)
            .args(["-A", "trust", "-U", PG_SUPERUSER, "--no-sync", "-E", "UTF8"])
            .arg("--locale=C"),
        "initdb",
    )?;

    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let mut port = 0;
    for attempt in 1..=START_ATTEMPTS {
        port = crate::free_port();
        let options = format!(
            "-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={} \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
             -c max_connections=300",
            sh_quote(&dir.to_string_lossy())
        );
        let timeout_secs = deadline
            .saturating_duration_since(Instant::now())
            .as_secs()
            .max(1);
        let started = run(
            run_as
                .command(&bins.pg_ctl, &dir)
                .arg("start")
                .arg("-D")
                .arg(&data_dir)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", &timeout_secs.to_string(), "-o", &options]),
            "pg_ctl start",
        );
        match started {
            Ok(_) => break,
            Err(e) => {
                let server_log = read_log(&log);
                // Make sure nothing half-started is left before retrying or giving up.
                let _ = run(
                    run_as
                        .command(&bins.pg_ctl, &dir)
                        .arg("stop")
                        .arg("-D")
                        .arg(&data_dir)
                        .args(["-m", "immediate"]),
                    "pg_ctl stop",
                );
                let port_taken = server_log.contains("could not bind")
                    || server_log.contains("Address already in use");
                if !(port_taken && attempt < START_ATTEMPTS) {
                    return Err(format!(
                        "the throwaway PostgreSQL server did not start: {e}\n\
                         --- server log {} ---\n{server_log}",
                        log.display()
                    ));
                }
            }
        }
    }

    let server = LocalServer {
        port,
        psql: bins.psql.clone(),
    };
    let args = server.connect_args();
    loop {
        let probe = run(
            psql_command(&server.psql)
                .args(&args)
                .args(["-c", "select 1"]),
            "psql select 1",
        );
        match probe {
            Ok(_) => break,
            Err(e) if Instant::now() >= deadline => {
                return Err(format!(
                    "the throwaway PostgreSQL server at 127.0.0.1:{port} does not accept \
                     connections after {}s: {e}\n--- server log {} ---\n{}",
                    STARTUP_TIMEOUT.as_secs(),
                    log.display(),
                    read_log(&log)
                ));
            }
            Err(_) => thread::sleep(Duration::from_millis(100)),
        }
    }

    log_line(&format!(
        "test-utils: throwaway PostgreSQL {} at 127.0.0.1:{port} (data dir {}{})",
        major_version(&bins.pg_ctl),
        data_dir.display(),
        if run_as.postgres_user {
            ", running as the postgres user"
        } else {
            ""
        }
    ));
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_database_replaces_path_and_keeps_the_rest() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h:5432", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h:5432/", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_database("postgresql://u:p@h/db?sslmode=disable", "x"),
            "postgresql://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://u@h?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
    }

    #[test]
    fn redact_password_hides_only_the_password() {
        assert_eq!(
            redact_password("postgres://u:secret@h:1/db"),
            "postgres://u:***@h:1/db"
        );
        assert_eq!(
            redact_password("postgres://u@h:1/db"),
            "postgres://u@h:1/db"
        );
        assert_eq!(redact_password("postgres://h:1/db"), "postgres://h:1/db");
    }

    #[test]
    fn database_names_are_unique_and_valid_identifiers() {
        let a = unique_database_name();
        let b = unique_database_name();
        assert_ne!(a, b);
        for name in [a, b] {
            assert!(name.len() < 64, "{name}");
            assert!(name.starts_with("dpf_test_"), "{name}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{name}"
            );
        }
    }

    #[test]
    fn sh_quote_survives_quotes() {
        assert_eq!(sh_quote("a'b"), r"'a'\''b'");
    }
}
