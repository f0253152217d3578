//! The real `lanyard` binary as a child process, for tests that must kill it (SIGKILL) and
//! start it again on the same data.
//!
//! Unlike [`super::TestServer`] (the server inside the test process), the child is a process
//! of its own: a SIGKILL ends it mid-request and mid-transaction, as a power cut or the OOM
//! killer would end the server (the operating system keeps what the process wrote).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use super::{ADMIN_PASSWORD, Backend};

/// The environment a `lanyard` child runs with: its data directory under `dir`, the backend's
/// database, plain HTTP on `addr`, and never Apple's push service.
pub fn lanyard_env(dir: &Path, backend: &Backend, addr: SocketAddr) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for (k, v) in [
        ("LANYARD_DATA_DIR", dir.join("data").display().to_string()),
        ("LANYARD_DATABASE_URL", backend.database_url(dir)),
        ("LANYARD_LISTEN", addr.to_string()),
        ("LANYARD_TLS", "false".into()),
        ("LANYARD_HOSTNAME", "localhost".into()),
        ("LANYARD_ADMIN_PASSWORD", ADMIN_PASSWORD.into()),
        ("LANYARD_ORGANIZATION", "Test Primary School".into()),
        // A closed local port: the tests never reach Apple.
        ("LANYARD_APNS_URL", "https://127.0.0.1:9".into()),
    ] {
        env.insert(k.to_owned(), v);
    }
    env
}

/// A loopback address free just now, on a port below the kernel's ephemeral range: a port
/// from `bind(0)` could, while the server is down between a kill and its restart, be handed to
/// some process's outgoing connection as its local port, and the restart could not listen.
pub fn free_addr() -> SocketAddr {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let ephemeral_low: u16 = range.split_whitespace().next().and_then(|p| p.parse().ok()).unwrap_or(32768);
    let low = 10_000u16.min(ephemeral_low / 2);
    let span = (ephemeral_low - low) as u32;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let start = (std::process::id().wrapping_mul(7919) ^ nanos) % span;
    (0..span)
        .map(|i| low + ((start + i) % span) as u16)
        .find_map(|port| std::net::TcpListener::bind(("127.0.0.1", port)).ok().map(|l| l.local_addr().unwrap()))
        .expect("a free loopback port below the ephemeral range")
}

/// `lanyard serve`, started, killed and restarted on the same data directory and database.
pub struct ServerChild {
    exe: PathBuf,
    /// The child's working directory (no `lanyard.toml` in it) and where its logs go.
    dir: PathBuf,
    env: BTreeMap<String, String>,
    pub addr: SocketAddr,
    child: Option<Child>,
    /// How many times it has been started: each start logs to `server-N.log`.
    pub starts: u32,
}

impl ServerChild {
    /// Not started yet: see [`ServerChild::start`].
    pub fn new(dir: &Path, env: BTreeMap<String, String>, addr: SocketAddr) -> ServerChild {
        ServerChild { exe: PathBuf::from(env!("CARGO_BIN_EXE_lanyard")), dir: dir.to_owned(), env, addr, child: None, starts: 0 }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The command `lanyard ARGS` with exactly this environment (none of the test's own
    /// `LANYARD_*` variables, which are the test harness's, not the server's).
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.args(args).current_dir(&self.dir).stdin(Stdio::null());
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("LANYARD_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(&self.env);
        cmd
    }

    fn log_path(&self, start: u32) -> PathBuf {
        self.dir.join(format!("server-{start}.log"))
    }

    /// Start `lanyard serve` (not waiting for it: see [`ServerChild::wait_ready`]).
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "the server is already running");
        self.starts += 1;
        let log = std::fs::File::create(self.log_path(self.starts)).unwrap();
        let child = self.command(&["serve"]).stdout(log.try_clone().unwrap()).stderr(log).spawn().expect("start lanyard serve");
        self.child = Some(child);
    }

    /// Wait until `/readyz` answers 200 (the database is usable and migrated). Err with the
    /// log's tail if the child exits first or `timeout` passes. Returns how long it took.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<Duration, String> {
        let started = Instant::now();
        let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
        let url = format!("{}/readyz", self.base());
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                return Err(format!("start {}: the server exited ({status}) before it was ready\n{}", self.starts, self.log_tail(30)));
            }
            if let Ok(r) = client.get(&url).send().await
                && r.status() == reqwest::StatusCode::OK
            {
                return Ok(started.elapsed());
            }
            if started.elapsed() > timeout {
                return Err(format!("start {}: the server was not ready within {timeout:?}\n{}", self.starts, self.log_tail(30)));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL (what `Child::kill` sends on Unix): no drain, no shutdown hook, no flush.
    /// Returns once the process is gone.
    pub fn kill(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the server is not running");
        child.kill().expect("SIGKILL the server");
        child.wait().expect("reap the server")
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Run `lanyard ARGS` (e.g. `audit verify`) on the same data and database.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run lanyard")
    }

    /// Every line of every start's log that contains `needle`, with the start's number.
    pub fn logs_containing(&self, needle: &str) -> Vec<String> {
        (1..=self.starts)
            .flat_map(|start| {
                let text = std::fs::read_to_string(self.log_path(start)).unwrap_or_default();
                text.lines().filter(|l| l.contains(needle)).map(|l| format!("start {start}: {l}")).collect::<Vec<_>>()
            })
            .collect()
    }

    /// The last `n` lines of the current (or last) start's log.
    pub fn log_tail(&self, n: usize) -> String {
        let path = self.log_path(self.starts);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!("{} (last {n} lines):\n{}", path.display(), lines[lines.len().saturating_sub(n)..].join("\n"))
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
