//! `pigeon bench`: load generators that start a real server, drive it over loopback with the
//! `client` crate, and report throughput, latency percentiles and the server's peak RSS.
//!
//! Timings live here and nowhere else: tests assert behaviour, benchmarks measure it.

pub mod idle;
mod imap;
mod pop3;
mod queue;
mod server;
mod smtp;
mod stores;
mod submission;
mod webmail;

use std::path::PathBuf;
use std::time::Duration;

pub use server::BenchServer;

/// Which benchmark to run.
#[derive(clap::Subcommand)]
pub enum Kind {
    /// SMTP ingest on the MX port: durable deliveries per second.
    Smtp(smtp::Options),
    /// Submission: new TLS connection + AUTH + one message each time.
    Submission(submission::Options),
    /// POP3: LIST/UIDL time and RETR rate on a big maildrop; memory per idle connection.
    Pop3(pop3::Options),
    /// IMAP: big-mailbox SELECT/FETCH/SEARCH, a mixed load, memory of IDLE connections.
    Imap(imap::Options),
    /// The outbound queue: a full queue delivered to a second pigeon over loopback.
    Queue(queue::Options),
    /// SQLite against PostgreSQL with one and two nodes: SMTP ingest and IMAP commands/s.
    Stores(stores::Options),
    /// The webmail API on a big mailbox: list page, body search, opening a message.
    Webmail(webmail::Options),
    /// Idle connections on every protocol at once: memory, and whether the server still answers.
    Idle(idle::Options),
}

pub async fn run(kind: Kind, exe: PathBuf) -> anyhow::Result<()> {
    match kind {
        Kind::Smtp(options) => smtp::run(options, exe).await,
        Kind::Submission(options) => submission::run(options, exe).await,
        Kind::Pop3(options) => pop3::run(options, exe).await,
        Kind::Imap(options) => imap::run(options, exe).await,
        Kind::Queue(options) => queue::run(options, exe).await,
        Kind::Stores(options) => stores::run(options, exe).await,
        Kind::Webmail(options) => webmail::run(options, exe).await,
        Kind::Idle(options) => idle::run(options, exe).await,
    }
}

/// Parses sizes like `10k`, `1m`, `512`.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim().to_ascii_lowercase();
    let (number, unit) = match s.strip_suffix(['k', 'm']) {
        Some(n) if s.ends_with('k') => (n, 1024),
        Some(n) => (n, 1024 * 1024),
        None => (s.as_str(), 1),
    };
    number
        .parse::<usize>()
        .map(|n| n * unit)
        .map_err(|_| format!("bad size {s:?}: use a number with an optional k or m suffix"))
}

/// Latency summary of a run.
pub struct Summary {
    pub count: usize,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Summary {
    pub fn new(mut latencies: Vec<Duration>, elapsed: Duration) -> Summary {
        latencies.sort_unstable();
        let pick = |q: f64| {
            if latencies.is_empty() {
                Duration::ZERO
            } else {
                latencies[((latencies.len() - 1) as f64 * q).round() as usize]
            }
        };
        Summary {
            count: latencies.len(),
            elapsed,
            p50: pick(0.50),
            p99: pick(0.99),
            max: latencies.last().copied().unwrap_or_default(),
        }
    }

    pub fn per_second(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} in {:.2} s = {:.0}/s; latency p50 {}, p99 {}, max {}",
            self.count,
            self.elapsed.as_secs_f64(),
            self.per_second(),
            ms(self.p50),
            ms(self.p99),
            ms(self.max)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10k"), Ok(10240));
        assert_eq!(parse_size("2M"), Ok(2 * 1024 * 1024));
        assert_eq!(parse_size("512"), Ok(512));
        assert!(parse_size("ten").is_err());
    }

    #[test]
    fn percentiles() {
        let latencies = (1..=100).map(Duration::from_millis).collect();
        let s = Summary::new(latencies, Duration::from_secs(1));
        assert_eq!(s.p50, Duration::from_millis(51));
        assert_eq!(s.p99, Duration::from_millis(99));
        assert_eq!(s.max, Duration::from_millis(100));
        assert_eq!(s.per_second(), 100.0);
    }
}
