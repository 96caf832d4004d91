//! The per-process throwaway server.

use std::env;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::binaries::{find_server_binaries, major_version};
use super::command::{create_database, psql_command, run};
use super::{
    log_line, TestDatabase, FIX_HINT, PG_SUPERUSER, PG_SYSTEM_USER, STARTUP_TIMEOUT, START_ATTEMPTS,
};

/// The running throwaway server of this process.
#[derive(Debug)]
pub(super) struct LocalServer {
    pub(super) port: u16,
    pub(super) psql: PathBuf,
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

pub(super) fn local_database() -> TestDatabase {
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
pub(super) fn running_as_root() -> bool {
    match Command::new("id").arg("-u").stdin(Stdio::null()).output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim() == "0",
        _ => env::var("USER").is_ok_and(|user| user == "root"),
    }
}

/// How to run the server binaries: directly, or as the `postgres` user when we are root.
#[derive(Debug, Clone, Copy)]
pub(super) struct RunAs {
    pub(super) postgres_user: bool,
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
pub(super) fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Creates a new, empty directory `/tmp/dpf-test-pg-<pid>-<stamp>` with mode 700.
pub(super) fn make_temp_dir() -> Result<PathBuf, String> {
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
pub(super) fn spawn_watchdog(
    pg_ctl: &Path,
    run_as: RunAs,
    dir: &Path,
    data_dir: &Path,
) -> Result<(), String> {
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

pub(super) fn read_log(log: &Path) -> String {
    fs::read_to_string(log)
        .unwrap_or_else(|e| format!("(cannot read server log {}: {e})", log.display()))
}

pub(super) fn start_local_server() -> Result<LocalServer, String> {
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
