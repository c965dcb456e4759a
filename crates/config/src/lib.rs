//! Typed configuration for `pigeon serve` and the admin commands.
//!
//! The file is TOML; every section has defaults so that an empty file (or no file) runs a complete
//! system for the domain `localhost` with data in `./pigeon-data` (DESIGN.md, "The binary and its
//! defaults"). Unknown keys are errors (`deny_unknown_fields`), and [`Config::validate`] reports
//! every problem at once rather than the first one.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

/// The whole configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The name this server gives itself in greetings and `Received:` headers.
    pub hostname: String,
    /// The primary mail domain; created on first start if the store has no domain yet.
    pub domain: String,
    /// Where the embedded store and generated files live.
    pub data_dir: PathBuf,
    /// Network listeners; empty means the defaults of [`Config::default_listeners`].
    #[serde(rename = "listener")]
    pub listeners: Vec<Listener>,
    pub smtp: Smtp,
    pub submission: Submission,
    pub pop3: Pop3,
    pub imap: Imap,
    pub tls: Tls,
    pub auth: Auth,
    pub limits: Limits,
    pub queue: Queue,
    pub dns: Dns,
    pub store: StoreConfig,
    pub webmail: Webmail,
}

/// Webmail settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Webmail {
    /// A browser session ends after this many seconds without a request.
    pub idle_timeout_secs: u64,
    /// Most logged-in browsers per account; a further login ends the one unused longest.
    pub max_sessions_per_account: usize,
}

impl Default for Webmail {
    fn default() -> Self {
        Webmail {
            idle_timeout_secs: 30 * 60,
            max_sessions_per_account: 20,
        }
    }
}

/// One listening socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// Which protocol speaks on this socket.
    pub protocol: Protocol,
    /// Address to bind; a port of 0 binds an ephemeral port (see `listening.json`).
    pub bind: SocketAddr,
    /// `starttls` (offered on the plain connection, the default), `implicit` (TLS from the
    /// first byte: 465, 993, 995) or `none`.
    #[serde(default)]
    pub tls: TlsMode,
}

/// How a listener uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    #[default]
    Starttls,
    Implicit,
    None,
}

/// Protocols a listener can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// SMTP from other mail servers (port 25 in production, 2525 by default).
    Smtp,
    /// Mail submission from users' mail programs (RFC 6409: 587 and, with implicit TLS, 465).
    Submission,
    /// POP3 (RFC 1939: 110 and, with implicit TLS, 995).
    Pop3,
    /// IMAP (RFC 9051: 143 and, with implicit TLS, 993).
    Imap,
    /// The webmail over HTTP (8080 by default; 443 with implicit TLS in production).
    Http,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Smtp => "smtp",
            Protocol::Submission => "submission",
            Protocol::Pop3 => "pop3",
            Protocol::Imap => "imap",
            Protocol::Http => "http",
        }
    }
}

/// POP3 settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pop3 {
    /// Idle timeout in seconds (RFC 1939 §3: at least 600).
    pub timeout_secs: u64,
    /// Delete INBOX messages older than this many days at login, advertised as EXPIRE.
    pub expire_days: Option<u32>,
    /// Minimum seconds between two logins of one user, advertised as LOGIN-DELAY.
    pub login_delay_secs: Option<u32>,
}

impl Default for Pop3 {
    fn default() -> Self {
        Pop3 {
            timeout_secs: 600,
            expire_days: None,
            login_delay_secs: None,
        }
    }
}

/// IMAP settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Imap {
    /// Autologout after this many idle seconds once logged in (RFC 9051 §5.4: at least 1800).
    pub idle_timeout_secs: u64,
    /// Autologout before login, in seconds.
    pub preauth_timeout_secs: u64,
    /// Largest APPEND in bytes (advertised as APPENDLIMIT).
    pub max_append: usize,
}

impl Default for Imap {
    fn default() -> Self {
        Imap {
            idle_timeout_secs: 1800,
            preauth_timeout_secs: 60,
            max_append: 50 * 1024 * 1024,
        }
    }
}

/// Certificates. Without `cert` and `key`, a self-signed certificate for `hostname` is made on
/// first start and kept in `<data_dir>/tls/`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    /// PEM file with the certificate chain, leaf first.
    pub cert: Option<PathBuf>,
    /// PEM file with the private key.
    pub key: Option<PathBuf>,
}

/// Authentication policy shared by every protocol.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    /// Allow password authentication without TLS on loopback connections (never elsewhere),
    /// for every protocol when set. Unset, only the webmail's plain-HTTP logins from loopback
    /// are allowed (see [`Auth::plaintext_on_loopback`]); mail protocols need TLS.
    pub allow_plaintext_on_loopback: Option<bool>,
    /// Failed attempts before logins from an IP or for an account are slowed down.
    pub free_failures: u32,
    /// Failed attempts after which an IP address is locked out.
    pub lockout_after: u32,
    /// How long a lockout lasts, in seconds.
    pub lockout_secs: u64,
    /// First delay after the free failures, in milliseconds; it doubles with each failure.
    pub base_delay_ms: u64,
    /// Longest delay before a failed attempt is answered, in milliseconds.
    pub max_delay_ms: u64,
    /// Threads that check passwords (Argon2, 19 MiB of memory each, taken at start and reused);
    /// 0 means one per CPU, at most 4.
    pub hash_workers: usize,
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            allow_plaintext_on_loopback: None,
            free_failures: 3,
            lockout_after: 10,
            lockout_secs: 900,
            base_delay_ms: 500,
            max_delay_ms: 8000,
            hash_workers: 0,
        }
    }
}

impl Auth {
    /// Whether `protocol` takes a password without TLS from a loopback peer (a peer elsewhere
    /// never sends one in clear). `allow_plaintext_on_loopback` decides when set; unset, only
    /// the webmail does: browsers count `http://localhost` as a secure context (W3C Secure
    /// Contexts §3.1) so the development webmail (`http://localhost:8080`, bound to loopback
    /// only) works out of the box, and a TLS-terminating proxy on the same host can forward to
    /// a loopback HTTP listener.
    pub fn plaintext_on_loopback(&self, protocol: Protocol) -> bool {
        self.allow_plaintext_on_loopback
            .unwrap_or(protocol == Protocol::Http)
    }
}

/// Submission policy (RFC 6409).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Submission {
    /// Messages one user may submit per hour; more get 451 4.7.1.
    pub max_messages_per_hour: u32,
    /// Recipients one user may address per hour; more get 452 4.5.3.
    pub max_recipients_per_hour: u32,
    /// Extra sender addresses per user, besides their own and aliases pointing to them.
    /// `"@example.com"` allows any address in that domain.
    pub allowed_senders: std::collections::BTreeMap<String, Vec<String>>,
}

impl Default for Submission {
    fn default() -> Self {
        Submission {
            max_messages_per_hour: 1000,
            max_recipients_per_hour: 5000,
            allowed_senders: Default::default(),
        }
    }
}

/// SMTP session settings, shared by every SMTP listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Smtp {
    /// Largest message accepted, in bytes (advertised as SIZE).
    pub max_message_size: usize,
    /// Most recipients in one transaction (RFC 5321 §4.5.3.1.8 asks for at least 100).
    pub max_recipients: usize,
    /// Longest command line, in bytes, CRLF included.
    pub max_line_length: usize,
    /// Longest header line of a received message, in bytes without CRLF (RFC 5322 §2.1.1:
    /// 998); longer ones are refused with 554 5.6.0. Raise it to take mail from senders that
    /// break the rule; the header section as a whole stays bounded at 256 KiB.
    pub max_header_line: usize,
    /// Idle timeout while waiting for a command, in seconds (RFC 5321 §4.5.3.2.7: 5 minutes).
    pub command_timeout_secs: u64,
    /// Idle timeout while receiving DATA or BDAT content, in seconds (§4.5.3.2.6: 3 minutes).
    pub data_timeout_secs: u64,
    /// Development only: recipients `permfail@`, `tempfail@` and `timeout@` (any domain) get a
    /// permanent error, a temporary error, or no answer, to exercise a sender's queue.
    pub dev_failures: bool,
    /// Check SPF, DKIM and DMARC of mail from other servers and record the results in an
    /// `Authentication-Results:` header (RFC 8601).
    pub verify_inbound: bool,
    /// Refuse (550 5.7.1) mail that fails DMARC when the sender's domain asks for `p=reject`.
    pub dmarc_reject: bool,
}

impl Default for Smtp {
    fn default() -> Self {
        Smtp {
            max_message_size: 50 * 1024 * 1024,
            max_recipients: 100,
            max_line_length: 2048,
            max_header_line: 998,
            command_timeout_secs: 300,
            data_timeout_secs: 180,
            dev_failures: false,
            verify_inbound: true,
            dmarc_reject: true,
        }
    }
}

impl Smtp {
    pub fn command_timeout(&self) -> Duration {
        Duration::from_secs(self.command_timeout_secs)
    }
    pub fn data_timeout(&self) -> Duration {
        Duration::from_secs(self.data_timeout_secs)
    }
}

/// The outbound queue: how mail for other servers leaves.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Queue {
    /// Run delivery workers in this process.
    pub enabled: bool,
    /// Waits between attempts, in seconds; the last one repeats until the message expires.
    pub retry_schedule_secs: Vec<u64>,
    /// How long a message is tried before it bounces, in seconds (default 5 days).
    pub lifetime_secs: u64,
    /// Port to connect to on MX hosts (25; tests move it).
    pub mx_port: u16,
    /// Static routes: domain -> `host:port`, bypassing MX lookup.
    pub routes: std::collections::BTreeMap<String, String>,
    /// Send everything (not routed statically) through this `host:port`.
    pub smarthost: Option<String>,
    pub smarthost_username: Option<String>,
    pub smarthost_password: Option<String>,
    /// Domains that must only be reached over TLS: without STARTTLS the mail waits.
    pub require_tls: Vec<String>,
    /// Most outgoing connections at once, and per destination domain.
    pub max_connections: usize,
    pub max_connections_per_domain: usize,
    pub connect_timeout_secs: u64,
    /// Wait for each reply, in seconds (RFC 5321 §4.5.3.2 asks for minutes).
    pub command_timeout_secs: u64,
    /// Seconds between looks at the queue when nothing wakes it.
    pub poll_secs: u64,
    /// How long a node's claim on queued mail lasts, in seconds: if the node dies, other
    /// nodes on the same database deliver its claimed mail after this.
    pub lease_secs: u64,
    /// Send a delay notice (DSN `delayed`) once mail has waited this long, if the sender
    /// asked (NOTIFY=DELAY); 0 turns them off.
    pub delay_warning_secs: u64,
}

impl Default for Queue {
    fn default() -> Self {
        Queue {
            enabled: true,
            retry_schedule_secs: vec![300, 600, 1200, 2400, 3600, 7200, 14400],
            lifetime_secs: 5 * 24 * 3600,
            mx_port: 25,
            routes: Default::default(),
            smarthost: None,
            smarthost_username: None,
            smarthost_password: None,
            require_tls: Vec::new(),
            max_connections: 100,
            max_connections_per_domain: 10,
            connect_timeout_secs: 30,
            command_timeout_secs: 300,
            poll_secs: 30,
            delay_warning_secs: 4 * 3600,
            lease_secs: 1800,
        }
    }
}

/// DNS resolution for MX lookups and SPF/DKIM/DMARC.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dns {
    /// Name servers (`ip:port`); empty means the system's (`/etc/resolv.conf`).
    pub servers: Vec<SocketAddr>,
    /// No DNS at all (an isolated machine, or tests): inbound mail is not checked for
    /// SPF/DKIM/DMARC and only static routes and the smarthost deliver.
    pub offline: bool,
}

/// Which store backend holds the mail.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite` (the embedded default, in `data_dir`) or `postgres` (several nodes on one
    /// database).
    pub backend: Backend,
    /// For `postgres`: `postgres://user:password@host:port/database`.
    pub url: Option<String>,
    /// For `postgres`: connections this node keeps open.
    pub pool_size: usize,
    /// For `postgres`: this node's name (its queue claims carry it, so a restarted node frees
    /// only its own). Must differ between nodes; defaults to the hostname and data directory.
    pub node: Option<String>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: Backend::Sqlite,
            url: None,
            pool_size: 16,
            node: None,
        }
    }
}

/// Store backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    #[default]
    Sqlite,
    Postgres,
}

/// Connection limits enforced by the `net` driver for every listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Most open connections over all listeners.
    pub max_connections: usize,
    /// Most open connections from one IP address.
    pub max_connections_per_ip: usize,
    /// How long shutdown waits for sessions in the middle of a transaction, in seconds.
    pub shutdown_grace_secs: u64,
    /// New connections one IP address may open per minute; more are refused with the
    /// protocol's "too busy" reply.
    pub max_connection_rate_per_ip: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            max_connections_per_ip: 100,
            shutdown_grace_secs: 10,
            max_connection_rate_per_ip: 600,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hostname: "localhost".into(),
            domain: "localhost".into(),
            data_dir: PathBuf::from("./pigeon-data"),
            listeners: Vec::new(),
            smtp: Smtp::default(),
            submission: Submission::default(),
            pop3: Pop3::default(),
            imap: Imap::default(),
            tls: Tls::default(),
            auth: Auth::default(),
            limits: Limits::default(),
            queue: Queue::default(),
            dns: Dns::default(),
            store: StoreConfig::default(),
            webmail: Webmail::default(),
        }
    }
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys or wrong types.
    #[error("parse {path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// The values parse but do not make sense together; every problem is listed.
    #[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config = Config::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text without validating it.
    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The listeners of DESIGN.md on unprivileged ports, used when the config names none.
    pub fn default_listeners() -> Vec<Listener> {
        let listener = |protocol, bind: &str, tls| Listener {
            protocol,
            bind: bind.parse().expect("literal address"),
            tls,
        };
        vec![
            listener(Protocol::Smtp, "0.0.0.0:2525", TlsMode::Starttls),
            listener(Protocol::Submission, "0.0.0.0:2587", TlsMode::Starttls),
            listener(Protocol::Submission, "0.0.0.0:2465", TlsMode::Implicit),
            listener(Protocol::Pop3, "0.0.0.0:2110", TlsMode::Starttls),
            listener(Protocol::Pop3, "0.0.0.0:2995", TlsMode::Implicit),
            listener(Protocol::Imap, "0.0.0.0:2143", TlsMode::Starttls),
            listener(Protocol::Imap, "0.0.0.0:2993", TlsMode::Implicit),
            // Plain HTTP carries passwords in clear: loopback only (a browser on this machine,
            // or a TLS-terminating proxy in front of it).
            listener(Protocol::Http, "127.0.0.1:8080", TlsMode::None),
        ]
    }

    /// The listeners to open: the configured ones, or the defaults.
    pub fn effective_listeners(&self) -> Vec<Listener> {
        if self.listeners.is_empty() {
            Config::default_listeners()
        } else {
            self.listeners.clone()
        }
    }

    /// Checks values that parse but cannot work, reporting all problems together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.hostname.trim().is_empty() || self.hostname.contains(char::is_whitespace) {
            problems.push(format!("hostname {:?} is not a host name", self.hostname));
        }
        if !valid_domain(&self.domain) {
            problems.push(format!("domain {:?} is not a domain name", self.domain));
        }
        if self.smtp.max_message_size < 1024 {
            problems.push("smtp.max_message_size must be at least 1024 bytes".into());
        }
        if self.smtp.max_recipients == 0 {
            problems.push("smtp.max_recipients must be at least 1".into());
        }
        if self.smtp.max_line_length < 512 {
            problems.push("smtp.max_line_length must be at least 512 (RFC 5321 §4.5.3.1.4)".into());
        }
        if !(998..=256 * 1024).contains(&self.smtp.max_header_line) {
            problems.push(
                "smtp.max_header_line must be between 998 (RFC 5322 §2.1.1) and 262144".into(),
            );
        }
        if self.smtp.command_timeout_secs == 0 || self.smtp.data_timeout_secs == 0 {
            problems.push("smtp timeouts must be at least 1 second".into());
        }
        if self.limits.max_connections == 0 || self.limits.max_connections_per_ip == 0 {
            problems.push(
                "limits.max_connections and max_connections_per_ip must be at least 1".into(),
            );
        }
        if self.store.backend == Backend::Postgres
            && !self
                .store
                .url
                .as_deref()
                .is_some_and(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
        {
            problems.push(
                "store.backend = \"postgres\" needs store.url = \"postgres://user@host:port/db\""
                    .into(),
            );
        }
        if self.queue.lease_secs < 5 {
            problems.push("queue.lease_secs must be at least 5".into());
        }
        for listener in self.effective_listeners() {
            if listener.protocol == Protocol::Http && listener.tls == TlsMode::Starttls {
                problems.push(format!(
                    "the http listener on {} has tls = \"starttls\"; HTTP has no STARTTLS: use \"none\" or \"implicit\"",
                    listener.bind
                ));
            }
        }
        if self.store.pool_size == 0 {
            problems.push("store.pool_size must be at least 1".into());
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            problems.push("tls.cert and tls.key must be given together".into());
        }
        if self.queue.retry_schedule_secs.is_empty() || self.queue.retry_schedule_secs.contains(&0)
        {
            problems
                .push("queue.retry_schedule_secs needs at least one wait of 1 s or more".into());
        }
        if self.queue.max_connections == 0 || self.queue.max_connections_per_domain == 0 {
            problems.push(
                "queue.max_connections and max_connections_per_domain must be at least 1".into(),
            );
        }
        for (domain, target) in &self.queue.routes {
            if !target.contains(':') {
                problems.push(format!(
                    "queue.routes.{domain}: {target:?} is not host:port"
                ));
            }
        }
        if let Some(host) = &self.queue.smarthost
            && !host.contains(':')
        {
            problems.push(format!("queue.smarthost: {host:?} is not host:port"));
        }
        if self.limits.max_connection_rate_per_ip == 0 {
            problems.push("limits.max_connection_rate_per_ip must be at least 1".into());
        }
        if self.pop3.timeout_secs < 600 {
            problems.push("pop3.timeout_secs must be at least 600 (RFC 1939 §3)".into());
        }
        if self.imap.idle_timeout_secs < 1800 {
            problems.push("imap.idle_timeout_secs must be at least 1800 (RFC 9051 §5.4)".into());
        }
        if self.imap.preauth_timeout_secs == 0 {
            problems.push("imap.preauth_timeout_secs must be at least 1".into());
        }
        if self.webmail.max_sessions_per_account == 0 {
            problems.push("webmail.max_sessions_per_account must be at least 1".into());
        }
        if self.auth.lockout_after == 0 {
            problems.push("auth.lockout_after must be at least 1".into());
        }
        let mut seen = std::collections::HashSet::new();
        for listener in &self.listeners {
            if listener.bind.port() != 0 && !seen.insert(listener.bind) {
                problems.push(format!("two listeners bind {}", listener.bind));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }
}

/// The domain-name rule the store applies too (`common::domain`), so a configured domain the
/// store would refuse fails validation instead of the first start.
pub use common::valid_domain;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let config = Config::parse("").unwrap();
        config.validate().unwrap();
        assert_eq!(config.domain, "localhost");
        assert_eq!(config.effective_listeners()[0].bind.port(), 2525);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = Config::parse("domian = \"x\"").unwrap_err();
        assert!(err.contains("unknown field"), "{err}");
    }

    #[test]
    fn listeners_parse() {
        let config = Config::parse(
            "[[listener]]\nprotocol = \"smtp\"\nbind = \"127.0.0.1:0\"\n[smtp]\nmax_recipients = 5\n",
        )
        .unwrap();
        assert_eq!(config.listeners.len(), 1);
        assert_eq!(config.smtp.max_recipients, 5);
    }

    #[test]
    fn validation_reports_every_problem() {
        let mut config = Config {
            domain: "bad domain".into(),
            ..Config::default()
        };
        config.smtp.max_recipients = 0;
        config.smtp.max_line_length = 10;
        config.smtp.max_header_line = 100;
        let ConfigError::Invalid(problems) = config.validate().unwrap_err() else {
            panic!("expected Invalid");
        };
        assert_eq!(problems.len(), 4, "{problems:?}");
    }

    #[test]
    fn the_default_webmail_listens_on_loopback_only() {
        // Issue 14: plain HTTP on 0.0.0.0 invited passwords in clear from the network.
        let http: Vec<Listener> = Config::default()
            .effective_listeners()
            .into_iter()
            .filter(|l| l.protocol == Protocol::Http)
            .collect();
        assert_eq!(http.len(), 1, "{http:?}");
        assert_eq!(http[0].bind, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(http[0].tls, TlsMode::None);
        // Configured listeners replace the defaults entirely.
        let config = Config::parse(
            "[[listener]]\nprotocol = \"http\"\nbind = \"0.0.0.0:443\"\ntls = \"implicit\"\n",
        )
        .unwrap();
        assert_eq!(config.effective_listeners(), config.listeners);
    }

    #[test]
    fn plaintext_on_loopback_unset_is_for_the_webmail_only_and_set_applies_to_all() {
        let unset = Config::parse("").unwrap().auth;
        assert!(unset.plaintext_on_loopback(Protocol::Http));
        for mail in [
            Protocol::Smtp,
            Protocol::Submission,
            Protocol::Pop3,
            Protocol::Imap,
        ] {
            assert!(!unset.plaintext_on_loopback(mail), "{mail:?}");
        }
        let off = Config::parse("[auth]\nallow_plaintext_on_loopback = false\n")
            .unwrap()
            .auth;
        let on = Config::parse("[auth]\nallow_plaintext_on_loopback = true\n")
            .unwrap()
            .auth;
        for protocol in [Protocol::Http, Protocol::Submission, Protocol::Imap] {
            assert!(!off.plaintext_on_loopback(protocol), "{protocol:?}");
            assert!(on.plaintext_on_loopback(protocol), "{protocol:?}");
        }
    }

    #[test]
    fn webmail_sessions_per_account() {
        assert_eq!(Config::default().webmail.max_sessions_per_account, 20);
        let config = Config::parse("[webmail]\nmax_sessions_per_account = 0\n").unwrap();
        let ConfigError::Invalid(problems) = config.validate().unwrap_err() else {
            panic!("expected Invalid");
        };
        assert!(
            problems[0].contains("max_sessions_per_account"),
            "{problems:?}"
        );
    }

    #[test]
    fn domains() {
        assert!(valid_domain("a.test"));
        assert!(valid_domain("例子.测试"));
        assert!(!valid_domain("a..test"));
        assert!(!valid_domain("-a.test"));
        assert!(!valid_domain(""));
    }

    /// Domains the config used to accept and the store refused (`pigeon serve` then failed
    /// at its first start, adding the primary domain): now refused by validation.
    #[test]
    fn domains_the_store_refuses_fail_validation() {
        for domain in [
            "例子。测试",
            "a\u{a0}b.test",
            "pay\u{200b}pal.com",
            "a\u{202e}b.test",
        ] {
            let config = Config {
                domain: domain.into(),
                ..Config::default()
            };
            let Err(ConfigError::Invalid(problems)) = config.validate() else {
                panic!("{domain:?} accepted");
            };
            assert!(problems[0].contains("is not a domain name"), "{problems:?}");
        }
        // And one the store refused although it is a real IDN (a Devanagari virama).
        let config = Config {
            domain: "हिन्दी.भारत".into(),
            ..Config::default()
        };
        assert!(config.validate().is_ok());
    }
}
