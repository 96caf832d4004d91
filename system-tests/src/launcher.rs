//! [`Launcher`]: a launcher process under test, with its log and signals.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::binary;

/// A running launcher process, killed on drop.
#[derive(Debug)]
pub struct Launcher {
    child: Child,
    /// `http://127.0.0.1:PORT/api/v1`.
    pub base_url: String,
    /// Where its stderr goes.
    pub log: PathBuf,
}

impl Launcher {
    /// Starts `bin` on a given port (`-D web.http.port=PORT`) in `dir`.
    pub fn start_with_port(bin: &str, port: u16, dir: &Path) -> Self {
        Self::spawn(bin, &["-D", &format!("web.http.port={port}")], &[], dir)
    }

    /// Starts `bin` with `args` plus `-D web.http.port=0` in `dir`, and waits for its address.
    pub fn start(bin: &str, args: &[&str], envs: &[(&str, &str)], dir: &Path) -> Self {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["-D", "web.http.port=0"]);
        Self::spawn(bin, &all, envs, dir)
    }

    /// Starts `bin` with `args` plus `-D web.http.port=0` in `dir` **without** the test
    /// relaxations [`Launcher::start`] adds (plain HTTP, loopback peers, files anywhere under
    /// `dir`): the launcher's own defaults apply, as an attacker would find them.
    pub fn start_strict(bin: &str, args: &[&str], envs: &[(&str, &str)], dir: &Path) -> Self {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["-D", "web.http.port=0"]);
        Self::spawn_with(bin, &all, envs, dir, false)
    }

    fn spawn(bin: &str, args: &[&str], envs: &[(&str, &str)], dir: &Path) -> Self {
        Self::spawn_with(bin, args, envs, dir, true)
    }

    fn spawn_with(
        bin: &str,
        args: &[&str],
        envs: &[(&str, &str)],
        dir: &Path,
        relaxed: bool,
    ) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let log = dir.join(format!(
            "{bin}-{}.log",
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        // Tests talk plain HTTP to local fakes on loopback and name files anywhere in their
        // temporary directory; a test that wants a stricter policy passes its own `-D` flags
        // (later flags win) or uses `start_strict`.
        let root = format!("dpf.transfer.file.root={}", dir.display());
        let relaxations: Vec<&str> = match (relaxed, bin) {
            (true, "dataplane-launcher") => vec![
                "-D",
                "dpf.http.insecure=true",
                "-D",
                "dpf.transfer.denied-networks=",
                "-D",
                &root,
            ],
            (true, "embedded-launcher") => vec!["-D", "dpf.transfer.denied-networks=", "-D", &root],
            (true, "selector-launcher") => vec!["-D", "dpf.http.insecure=true"],
            _ => Vec::new(),
        };
        let mut child = Command::new(binary(bin))
            .args(&relaxations)
            .args(args)
            .envs(envs.iter().copied())
            .env("RUST_LOG", "info")
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let base_url = line
            .trim()
            .rsplit(" on ")
            .next()
            .filter(|url| url.starts_with("http://") || url.starts_with("https://"))
            .unwrap_or_else(|| {
                panic!(
                    "{bin} did not start: {line:?}; log: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })
            .to_owned();
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in reader.lines() {});
        Self {
            child,
            base_url,
            log,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident set size (VmHWM) in KiB, from `/proc`.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// The stderr log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal (`STOP`, `CONT`, `TERM`, `KILL`) with the `kill` command.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    /// Whether the process is still running (not killed, not exited).
    pub fn signal_alive(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .map(|s| {
                !s.lines().any(|l| {
                    l.starts_with("State:") && (l.contains("zombie") || l.contains("dead"))
                })
            })
            .unwrap_or(false)
    }

    /// Waits for the process to exit (after a signal); returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "process did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGKILL and waits.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        self.kill();
    }
}
