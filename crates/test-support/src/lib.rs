//! Dev-only helpers for end-to-end tests: start the real `pigeon` binary on ephemeral loopback
//! ports with a fresh data directory, run its admin commands, and find outside tools.
//!
//! A test that needs a missing outside program calls [`require_tool`]: locally it skips with a
//! loud message; with `PIGEON_REQUIRE_ALL=1` (set by `.ci/run`) it fails.

pub mod transcript;
pub mod webdriver;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// True if `tool` is on PATH. If it is not: panics under `PIGEON_REQUIRE_ALL=1`, otherwise
/// prints a loud skip notice and returns false.
pub fn require_tool(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false);
    if found {
        return true;
    }
    skip(&format!("{tool} is not installed"));
    false
}

/// True when required tools must be present (`PIGEON_REQUIRE_ALL=1`, set by `.ci/run`).
pub fn require_all() -> bool {
    std::env::var("PIGEON_REQUIRE_ALL").as_deref() == Ok("1")
}

/// Reports that the calling test cannot run here, and why: under `PIGEON_REQUIRE_ALL=1` it
/// panics (CI must run everything); otherwise it prints a notice naming the test. The notice
/// is written to the process's stderr directly, not through `eprintln!`, which the test
/// harness captures and shows only for failing tests: a skip must be seen in the default
/// output of a passing run.
pub fn skip(reason: &str) {
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    if require_all() {
        panic!("{test} cannot run (PIGEON_REQUIRE_ALL=1): {reason}");
    }
    use std::io::Write;
    let _ = std::io::stderr().lock().write_all(
        format!("\n!!! SKIPPED {test}: {reason}; this test did not run !!!\n").as_bytes(),
    );
}

/// True when the tests run as root (mounting, starting Postfix as its own users).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A small tmpfs mounted on a directory (root only), lazily unmounted when dropped: a disk
/// that really fills up, for the disk-full tests.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// None (after [`skip`]) where mounting is impossible: not root, or a container that may
    /// not mount.
    pub fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        if !is_root() {
            skip("not root, cannot mount a small tmpfs to fill");
            return None;
        }
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        if !out.status.success() {
            skip(&format!(
                "cannot mount a tmpfs: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            return None;
        }
        Some(Tmpfs(dir.to_owned()))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A running `pigeon serve`, killed when dropped.
pub struct TestServer {
    exe: PathBuf,
    dir: tempfile::TempDir,
    config: PathBuf,
    child: Option<Child>,
    listening: HashMap<String, Vec<SocketAddr>>,
    /// `PIGEON_LOG` for the server: `debug` unless a test asks for more.
    log_filter: String,
}

/// Listener block binding every implemented protocol to an ephemeral loopback port.
pub const LOOPBACK_LISTENERS: &str = "[[listener]]\nprotocol = \"smtp\"\nbind = \"127.0.0.1:0\"\n\n\
    [[listener]]\nprotocol = \"submission\"\nbind = \"127.0.0.1:0\"\n\n\
    [[listener]]\nprotocol = \"submission\"\nbind = \"127.0.0.1:0\"\ntls = \"implicit\"\n\n\
    [[listener]]\nprotocol = \"pop3\"\nbind = \"127.0.0.1:0\"\n\n\
    [[listener]]\nprotocol = \"pop3\"\nbind = \"127.0.0.1:0\"\ntls = \"implicit\"\n\n\
    [[listener]]\nprotocol = \"imap\"\nbind = \"127.0.0.1:0\"\n\n\
    [[listener]]\nprotocol = \"imap\"\nbind = \"127.0.0.1:0\"\ntls = \"implicit\"\n\n\
    [[listener]]\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\ntls = \"none\"\n\n\
    [[listener]]\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\ntls = \"implicit\"\n";

/// Tests have no DNS unless they start a [`DnsServer`]: no waiting on the system resolver.
pub const NO_DNS: &str = "[dns]\noffline = true\n";

impl TestServer {
    /// A new data directory with `extra_config` appended to the loopback listeners; the server
    /// is not started yet, so admin commands can prepare the store.
    pub fn new(exe: &Path, extra_config: &str) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("pigeon.toml");
        std::fs::write(
            &config,
            format!("{LOOPBACK_LISTENERS}\n{NO_DNS}\n{extra_config}"),
        )
        .expect("write config");
        TestServer {
            exe: exe.to_owned(),
            dir,
            config,
            child: None,
            listening: HashMap::new(),
            log_filter: "debug".into(),
        }
    }

    /// The log filter (`PIGEON_LOG`) the next [`TestServer::start`] uses, e.g. `trace`.
    pub fn set_log_filter(&mut self, filter: &str) {
        self.log_filter = filter.into();
    }

    /// A new data directory with exactly `config` as the config file (top-level keys such as
    /// `hostname` must come before any table, so they cannot follow the loopback listeners).
    pub fn with_toml(exe: &Path, config: &str) -> TestServer {
        let server = TestServer::new(exe, "");
        std::fs::write(&server.config, config).expect("write config");
        server
    }

    /// A started server with domain `localhost` and the given users (all with `password`).
    pub fn with_users(exe: &Path, users: &[&str], password: &str) -> TestServer {
        TestServer::with_config(exe, "", users, password)
    }

    /// Like [`TestServer::with_users`], with `extra_config` appended to the config file.
    pub fn with_config(
        exe: &Path,
        extra_config: &str,
        users: &[&str],
        password: &str,
    ) -> TestServer {
        let mut server = TestServer::new(exe, extra_config);
        server.admin_ok(&["domain", "add", "localhost", "--no-dkim"]);
        for user in users {
            server.admin_ok(&["user", "add", user, "--password", password]);
        }
        server.start();
        server
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs an admin command on this server's data directory.
    pub fn admin(&self, args: &[&str]) -> Output {
        Command::new(&self.exe)
            .arg("--config")
            .arg(&self.config)
            .arg("--data")
            .arg(self.dir.path())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run pigeon")
    }

    /// Runs an admin command that must succeed; returns its stdout.
    #[track_caller]
    pub fn admin_ok(&self, args: &[&str]) -> Vec<u8> {
        let out = self.admin(args);
        assert!(
            out.status.success(),
            "pigeon {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Starts `pigeon serve` and waits until `listening.json` appears.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let listening = self.dir.path().join("listening.json");
        let _ = std::fs::remove_file(&listening);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("log file");
        let mut child = Command::new(&self.exe)
            .arg("--config")
            .arg(&self.config)
            .arg("--data")
            .arg(self.dir.path())
            .arg("serve")
            .env("PIGEON_LOG", &self.log_filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn pigeon serve");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!("pigeon serve exited with {status}: {}", self.log());
            }
            if let Ok(text) = std::fs::read_to_string(&listening) {
                self.listening = serde_json::from_str(&text).expect("listening.json");
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "server did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        self.child = Some(child);
    }

    /// The PEM file of the server's self-signed certificate (for clients to trust).
    pub fn cert_pem(&self) -> PathBuf {
        self.dir.path().join("tls").join("cert.pem")
    }

    /// Sends a signal (`HUP`, `TERM`...) to the server.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The first address of a protocol's listener.
    pub fn addr(&self, protocol: &str) -> SocketAddr {
        self.listening[protocol][0]
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL: the crash case.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            if start.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                panic!("server did not stop on SIGTERM: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The stored bytes of message `uid` in `user`'s INBOX (through `pigeon mail cat`).
    pub fn stored(&self, user: &str, uid: u32) -> Vec<u8> {
        self.admin_ok(&["mail", "cat", user, &uid.to_string()])
    }

    /// UIDs in `user`'s INBOX.
    pub fn uids(&self, user: &str) -> Vec<u32> {
        let out = String::from_utf8(self.admin_ok(&["mail", "list", user])).expect("utf-8");
        out.lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The message after the trace headers this server adds (`Return-Path:` and `Received:` with
/// its folded continuation lines).
pub fn strip_trace(stored: &[u8]) -> &[u8] {
    let mut rest = stored;
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|p| p + 2)
            .unwrap_or(rest.len());
        let line = &rest[..line_end];
        let is_trace = line.starts_with(b"Return-Path:")
            || line.starts_with(b"Received:")
            || (line.starts_with(b"\t") && !std::ptr::eq(rest, stored));
        if !is_trace {
            return rest;
        }
        rest = &rest[line_end..];
    }
}

/// A real DNS server (dnsmasq) on a loopback port, authoritative for `.test`, serving the
/// records it was started with; killed when dropped.
pub struct DnsServer {
    child: Child,
    pub addr: SocketAddr,
}

/// A record for [`DnsServer::start`].
#[derive(Clone)]
pub enum Record {
    /// `domain` has an MX `host` with `preference`.
    Mx(String, String, u16),
    /// `host` has the IPv4 address.
    A(String, std::net::Ipv4Addr),
    /// `name` has a TXT record; long text is split into 255-octet strings.
    Txt(String, String),
}

/// A free loopback port (TCP and UDP were free a moment ago) for a test to bind later.
///
/// Tests keep such ports by number only (a receiver that is down, a server started later), so
/// they come from below the kernel's ephemeral range (which `:0` binds and outgoing connections
/// use) and are never handed out twice in one test binary: otherwise a test's down receiver's
/// port could become another test's listener, and mail would cross between tests.
pub fn free_port() -> u16 {
    const FIRST: u16 = 20_000;
    const LAST: u16 = 32_000;
    static GIVEN: std::sync::Mutex<Option<(u16, std::collections::HashSet<u16>)>> =
        std::sync::Mutex::new(None);
    let mut given = GIVEN.lock().expect("free_port lock");
    let (next, seen) = given.get_or_insert_with(|| {
        // Test binaries run one after another; spread them anyway.
        let start = FIRST + (std::process::id() % u32::from(LAST - FIRST)) as u16;
        (start, std::collections::HashSet::new())
    });
    loop {
        let port = *next;
        *next = if *next >= LAST { FIRST } else { *next + 1 };
        if !seen.insert(port) {
            assert!(seen.len() < usize::from(LAST - FIRST), "out of test ports");
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
}

impl DnsServer {
    /// The dnsmasq binary, or None (skipped loudly, or a failure under PIGEON_REQUIRE_ALL).
    pub fn binary() -> Option<PathBuf> {
        let sbin = Path::new("/usr/sbin/dnsmasq");
        if sbin.is_file() {
            return Some(sbin.to_owned());
        }
        require_tool("dnsmasq").then(|| PathBuf::from("dnsmasq"))
    }

    /// Starts dnsmasq on `port` with `records`; waits until it answers.
    pub fn start(binary: &Path, port: u16, records: &[Record]) -> DnsServer {
        DnsServer::try_start(binary, port, records).expect("dnsmasq did not start")
    }

    /// Like [`DnsServer::start`], but an error if dnsmasq exits (say, because another test took
    /// the port meanwhile) or does not answer, so the caller can try another port.
    pub fn try_start(binary: &Path, port: u16, records: &[Record]) -> Result<DnsServer, String> {
        let mut args = vec![
            "--keep-in-foreground".to_string(),
            "--conf-file=/dev/null".into(),
            "--no-resolv".into(),
            "--no-hosts".into(),
            "--bind-interfaces".into(),
            "--listen-address=127.0.0.1".into(),
            format!("--port={port}"),
            "--user=root".into(),
            "--pid-file=".into(),
            // Authoritative for .test: unknown names are NXDOMAIN, not forwarded.
            "--local=/test/".into(),
        ];
        for record in records {
            args.push(match record {
                Record::Mx(domain, host, pref) => format!("--mx-host={domain},{host},{pref}"),
                Record::A(host, ip) => format!("--host-record={host},{ip}"),
                Record::Txt(name, text) => {
                    let chunks: Vec<String> = text
                        .as_bytes()
                        .chunks(255)
                        .map(|c| String::from_utf8_lossy(c).into_owned())
                        .collect();
                    format!("--txt-record={name},{}", chunks.join(","))
                }
            });
        }
        let child = Command::new(binary)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn dnsmasq");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut server = DnsServer { child, addr };
        // Ready when it answers a query (any answer).
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let query = [
            0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 4, b'r', b'e', b'a', b'd', 4, b't', b'e',
            b's', b't', 0, 0, 1, 0, 1,
        ];
        let start = Instant::now();
        let mut buf = [0u8; 512];
        loop {
            let _ = socket.send_to(&query, addr);
            if socket.recv_from(&mut buf).is_ok() {
                return Ok(server);
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("dnsmasq on port {port} exited: {status}"));
            }
            if start.elapsed() > Duration::from_secs(10) {
                return Err(format!("dnsmasq on port {port} does not answer"));
            }
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A throwaway PostgreSQL cluster: `initdb` into a temp dir, `postgres` on a loopback port with
/// its socket in that dir, trust authentication for user `pigeon`; stopped and deleted when
/// dropped. As root it runs as the `postgres` user (PostgreSQL refuses to run as root).
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    child: Child,
    pub port: u16,
    databases: std::sync::atomic::AtomicU32,
}

impl PgCluster {
    /// The directory with `initdb` and `postgres` (Debian: `/usr/lib/postgresql/N/bin`, the
    /// newest N), or None (skipped loudly, or a failure under PIGEON_REQUIRE_ALL).
    pub fn binaries() -> Option<PathBuf> {
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let version = e.file_name().to_str()?.parse().ok()?;
                let bin = e.path().join("bin");
                bin.join("postgres").is_file().then_some((version, bin))
            })
            .collect();
        versions.sort();
        if let Some((_, bin)) = versions.pop() {
            return Some(bin);
        }
        if require_tool("postgres") && require_tool("initdb") {
            let path = std::env::var_os("PATH")?;
            return std::env::split_paths(&path).find(|dir| dir.join("postgres").is_file());
        }
        None
    }

    /// Starts a cluster, or None if PostgreSQL is not installed (see [`PgCluster::binaries`]).
    pub fn start() -> Option<PgCluster> {
        let bin = PgCluster::binaries()?;
        let dir = tempfile::tempdir().expect("temp dir");
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout.trim_ascii() == b"0")
            .unwrap_or(false);
        let run_as = root.then(|| "postgres".to_string());
        if let Some(user) = &run_as {
            let status = Command::new("chown")
                .args(["-R", user])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown the cluster dir to {user}");
        }
        let data = dir.path().join("data");
        let out = PgCluster::command(&run_as, &bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "pigeon",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The port may be taken between free_port and the bind: try a few.
        for _ in 0..5 {
            let port = free_port();
            let log = std::fs::File::create(dir.path().join("postgres.log")).expect("log");
            let child = PgCluster::command(&run_as, &bin.join("postgres"))
                .arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
                .arg("-c")
                .arg(format!("unix_socket_directories={}", dir.path().display()))
                .args(["-c", "max_connections=200", "-c", "shared_buffers=64MB"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn postgres");
            let mut child = child;
            let started = Instant::now();
            let exited = loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break true;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                    && psql_at(&bin, port, "postgres", "SELECT 1").is_ok()
                {
                    break false;
                }
                if started.elapsed() > Duration::from_secs(30) {
                    let _ = child.kill();
                    break true;
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            let log = std::fs::read_to_string(dir.path().join("postgres.log")).unwrap_or_default();
            if exited {
                eprintln!("postgres on port {port} did not start; trying another: {log}");
                continue;
            }
            return Some(PgCluster {
                dir,
                bin,
                child,
                port,
                databases: std::sync::atomic::AtomicU32::new(0),
            });
        }
        panic!("postgres did not start on any of 5 ports");
    }

    fn command(run_as: &Option<String>, program: &Path) -> Command {
        match run_as {
            Some(user) => {
                // setpriv execs the program itself, so killing the child kills postgres.
                let mut command = Command::new("setpriv");
                command
                    .arg(format!("--reuid={user}"))
                    .arg(format!("--regid={user}"))
                    .arg("--init-groups")
                    .arg("--")
                    .arg(program);
                command
            }
            None => Command::new(program),
        }
    }

    /// Runs SQL with psql as `pigeon` on `database`; returns its unaligned output.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, String> {
        psql_at(&self.bin, self.port, database, sql)
    }

    /// The URL of database `name`.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://pigeon@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates a fresh database; returns its URL.
    pub fn create_database(&self) -> String {
        let n = self
            .databases
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("pigeon{n}");
        self.psql("postgres", &format!("CREATE DATABASE {name}"))
            .expect("create database");
        self.url(&name)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }
}

fn psql_at(bin: &Path, port: u16, database: &str, sql: &str) -> Result<String, String> {
    let out = Command::new(bin.join("psql"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "pigeon"])
        .args([
            "-d",
            database,
            "-X",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // SIGINT is PostgreSQL's fast shutdown: sessions end, no checkpoint wait.
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_only_the_trace_block() {
        let stored = b"Return-Path: <a@b>\r\nReceived: from x\r\n\tby y;\r\n\tdate\r\nSubject: s\r\n\r\n\tbody\r\n";
        assert_eq!(strip_trace(stored), b"Subject: s\r\n\r\n\tbody\r\n");
    }
}
