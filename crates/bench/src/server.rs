//! Starts a `pigeon serve` child on a temporary data directory with ephemeral ports.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A server process for a benchmark; killed on drop.
pub struct BenchServer {
    child: Child,
    pub dir: tempfile::TempDir,
    pub listening: HashMap<String, Vec<SocketAddr>>,
}

impl BenchServer {
    /// Creates `users` (with password `password`) and starts the server with `extra_config`,
    /// which may start with `[[listener]]` blocks; without them an SMTP listener on an
    /// ephemeral loopback port is used.
    pub fn start(
        exe: &Path,
        users: &[&str],
        password: &str,
        extra_config: &str,
    ) -> anyhow::Result<BenchServer> {
        BenchServer::launch(exe, Some((users, password)), extra_config)
    }

    /// Starts another node on a store that is set up already (a shared PostgreSQL database).
    pub fn join(exe: &Path, extra_config: &str) -> anyhow::Result<BenchServer> {
        BenchServer::launch(exe, None, extra_config)
    }

    fn launch(
        exe: &Path,
        setup: Option<(&[&str], &str)>,
        extra_config: &str,
    ) -> anyhow::Result<BenchServer> {
        let (listeners, rest) = if extra_config.starts_with("[[listener]]") {
            let end = extra_config
                .find("\n[submission]")
                .unwrap_or(extra_config.len());
            (&extra_config[..end], &extra_config[end..])
        } else {
            (
                "[[listener]]\nprotocol = \"smtp\"\nbind = \"127.0.0.1:0\"\n",
                extra_config,
            )
        };
        let dir = tempfile::tempdir().context("create a temporary data directory")?;
        let config = dir.path().join("pigeon.toml");
        std::fs::write(
            &config,
            format!(
                "{listeners}\n[limits]\nmax_connections = 100000\nmax_connections_per_ip = 100000\n\
                 max_connection_rate_per_ip = 100000000\n\n\
                 [dns]\noffline = true\n\n{rest}"
            ),
        )?;
        let admin = |args: &[&str]| -> anyhow::Result<()> {
            let status = Command::new(exe)
                .arg("--config")
                .arg(&config)
                .arg("--data")
                .arg(dir.path())
                .args(args)
                .stdout(Stdio::null())
                .status()?;
            if !status.success() {
                bail!("pigeon {} failed", args.join(" "));
            }
            Ok(())
        };
        if let Some((users, password)) = setup {
            admin(&["domain", "add", "localhost"])?;
            for user in users {
                admin(&["user", "add", user, "--password", password])?;
            }
        }
        let child = spawn_serve(exe, dir.path())?;
        let mut server = BenchServer {
            child,
            dir,
            listening: HashMap::new(),
        };
        server.listening =
            wait_for_listening(&server.dir.path().join("listening.json"), &mut server.child)?;
        Ok(server)
    }

    /// Runs an admin command on this server's data directory.
    pub fn admin(&self, exe: &Path, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(exe)
            .arg("--config")
            .arg(self.dir.path().join("pigeon.toml"))
            .arg("--data")
            .arg(self.dir.path())
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!(
                "pigeon {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Stops the server (SIGKILL), edits its config with `edit`, and starts it again.
    pub fn restart(&mut self, exe: &Path, edit: impl Fn(String) -> String) -> anyhow::Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let config = self.dir.path().join("pigeon.toml");
        std::fs::write(&config, edit(std::fs::read_to_string(&config)?))?;
        let _ = std::fs::remove_file(self.dir.path().join("listening.json"));
        self.child = spawn_serve(exe, self.dir.path())?;
        self.listening =
            wait_for_listening(&self.dir.path().join("listening.json"), &mut self.child)?;
        Ok(())
    }

    pub fn addr(&self, protocol: &str) -> anyhow::Result<SocketAddr> {
        self.listening
            .get(protocol)
            .and_then(|a| a.first().copied())
            .with_context(|| format!("the server has no {protocol} listener"))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident set size of the server so far, from /proc (Linux).
    pub fn peak_rss_bytes(&self) -> Option<u64> {
        proc_status_kib(self.child.id(), "VmHWM:").map(|kib| kib * 1024)
    }

    /// Current resident set size.
    pub fn rss_bytes(&self) -> Option<u64> {
        proc_status_kib(self.child.id(), "VmRSS:").map(|kib| kib * 1024)
    }

    /// Messages not yet in the full-text index (from `pigeon status`).
    pub fn index_backlog(&self, exe: &Path) -> anyhow::Result<u64> {
        let out = Command::new(exe)
            .arg("--config")
            .arg(self.dir.path().join("pigeon.toml"))
            .arg("--data")
            .arg(self.dir.path())
            .arg("status")
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| l.strip_prefix("awaiting indexing: "))
            .and_then(|n| n.trim().parse().ok())
            .with_context(|| format!("unexpected status output: {text}"))
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }
}

impl Drop for BenchServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `pigeon serve` on `dir` (with `dir/pigeon.toml`), logging warnings to `dir/server.log`.
fn spawn_serve(exe: &Path, dir: &Path) -> anyhow::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))?;
    Command::new(exe)
        .arg("--config")
        .arg(dir.join("pigeon.toml"))
        .arg("--data")
        .arg(dir)
        .arg("serve")
        .env("PIGEON_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("start pigeon serve")
}

fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn wait_for_listening(
    path: &Path,
    child: &mut Child,
) -> anyhow::Result<HashMap<String, Vec<SocketAddr>>> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if let Some(status) = child.try_wait()? {
            bail!("pigeon serve exited early with {status}");
        }
        if let Ok(text) = std::fs::read_to_string(path) {
            return Ok(serde_json::from_str(&text)?);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("pigeon serve did not write {} within 30 s", path.display())
}
