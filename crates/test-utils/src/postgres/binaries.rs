//! Finding the PostgreSQL binaries.

use std::env;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::DEBIAN_PG_ROOT;

/// Directories to search for PostgreSQL binaries: `PATH` first, then
/// `/usr/lib/postgresql/<version>/bin`, highest version first.
pub(super) fn search_dirs() -> Vec<PathBuf> {
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

pub(super) fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

pub(super) fn find_binary(dirs: &[PathBuf], name: &str) -> Option<PathBuf> {
    dirs.iter()
        .map(|dir| dir.join(name))
        .find(|path| is_executable(path))
}

/// The server-side binaries, all from one installation.
#[derive(Debug)]
pub(super) struct ServerBinaries {
    pub(super) initdb: PathBuf,
    pub(super) pg_ctl: PathBuf,
    pub(super) psql: PathBuf,
}

pub(super) fn find_server_binaries() -> Result<ServerBinaries, String> {
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
pub(super) fn major_version(pg_ctl: &Path) -> String {
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
