//! `pigeon bench idle`: N idle connections on every protocol at once (SMTP, submission, IMAP,
//! POP3 and the webmail's HTTP), then whether the server still answers: probe latencies before
//! and while the connections are held, the server's memory per connection, and how many held
//! connections are still open at the end (issue 14: "holds 10,000 idle connections on every
//! protocol at once and stays responsive").

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::BenchServer;

#[derive(clap::Args)]
pub struct Options {
    /// Idle connections per protocol.
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// Seconds to hold them before checking that they are still open.
    #[arg(long, default_value_t = 10)]
    pub hold_secs: u64,
    /// Probes per protocol for the latency figures.
    #[arg(long, default_value_t = 50)]
    pub probes: usize,
    /// Only these protocols (smtp, submission, imap, pop3, http); all of them by default.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
}

const CONFIG: &str = "[[listener]]\nprotocol = \"smtp\"\nbind = \"127.0.0.1:0\"\n\n\
    [[listener]]\nprotocol = \"submission\"\nbind = \"127.0.0.1:0\"\ntls = \"starttls\"\n\n\
    [[listener]]\nprotocol = \"imap\"\nbind = \"127.0.0.1:0\"\n\n\
    [[listener]]\nprotocol = \"pop3\"\nbind = \"127.0.0.1:0\"\n\n\
    [[listener]]\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\ntls = \"none\"\n";

/// One protocol's part in the benchmark: what a client says first and what ends each answer.
#[derive(Clone, Copy)]
pub struct Probe {
    pub protocol: &'static str,
    /// The server speaks first (a one-line greeting); otherwise (HTTP) a connection becomes
    /// idle after one exchange of `command`.
    greeting: bool,
    /// A cheap command and the text that ends its answer.
    command: &'static [u8],
    answer_end: &'static [u8],
}

pub const PROBES: [Probe; 5] = [
    Probe {
        protocol: "smtp",
        greeting: true,
        command: b"NOOP\r\n",
        answer_end: b"\r\n",
    },
    Probe {
        protocol: "submission",
        greeting: true,
        command: b"NOOP\r\n",
        answer_end: b"\r\n",
    },
    Probe {
        protocol: "imap",
        greeting: true,
        command: b"p NOOP\r\n",
        answer_end: b"p OK",
    },
    Probe {
        protocol: "pop3",
        greeting: true,
        command: b"CAPA\r\n",
        answer_end: b"\r\n.\r\n",
    },
    // HTTP has no greeting: an idle connection is a kept-alive one after its first request.
    Probe {
        protocol: "http",
        greeting: false,
        command: b"GET /jmap/session HTTP/1.1\r\nHost: localhost\r\n\r\n",
        answer_end: b"\r\n\r\n",
    },
];

const TIMEOUT: Duration = Duration::from_secs(30);

/// Reads until `end` has arrived after `start` bytes of `buf`; an HTTP answer also reads its
/// body (Content-Length).
async fn read_until(stream: &mut TcpStream, buf: &mut Vec<u8>, end: &[u8]) -> anyhow::Result<()> {
    let start = buf.len();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(at) = find(&buf[start..], end) {
            let head_end = start + at + end.len();
            if end == b"\r\n\r\n" {
                let body = content_length(&buf[start..head_end]);
                while buf.len() < head_end + body {
                    let n = stream.read(&mut chunk).await?;
                    if n == 0 {
                        bail!("connection closed in an HTTP body");
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
            }
            return Ok(());
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!(
                "connection closed; got {:?}",
                String::from_utf8_lossy(&buf[start..])
            );
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn content_length(head: &[u8]) -> usize {
    String::from_utf8_lossy(head)
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0)
}

impl Probe {
    /// Opens a connection and brings it to its idle state.
    pub async fn open(&self, addr: SocketAddr) -> anyhow::Result<TcpStream> {
        tokio::time::timeout(TIMEOUT, async {
            let mut stream = TcpStream::connect(addr).await?;
            let mut buf = Vec::new();
            if self.greeting {
                read_until(&mut stream, &mut buf, b"\r\n").await?;
            } else {
                stream.write_all(self.command).await?;
                read_until(&mut stream, &mut buf, self.answer_end).await?;
            }
            anyhow::Ok(stream)
        })
        .await
        .with_context(|| format!("{}: no greeting within {TIMEOUT:?}", self.protocol))?
    }

    /// One full round trip on a new connection: connect, greeting, one command.
    pub async fn round_trip(&self, addr: SocketAddr) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let mut stream = self.open(addr).await?;
        if self.greeting {
            tokio::time::timeout(TIMEOUT, async {
                stream.write_all(self.command).await?;
                read_until(&mut stream, &mut Vec::new(), self.answer_end).await
            })
            .await
            .with_context(|| format!("{}: no answer within {TIMEOUT:?}", self.protocol))??;
        }
        Ok(started.elapsed())
    }
}

/// Opens `count` idle connections to `addr`, at most 256 handshakes at a time.
pub async fn open_many(
    probe: Probe,
    addr: SocketAddr,
    count: usize,
) -> anyhow::Result<Vec<TcpStream>> {
    let gate = Arc::new(tokio::sync::Semaphore::new(256));
    let mut tasks = Vec::with_capacity(count);
    for _ in 0..count {
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await?;
            probe.open(addr).await
        }));
    }
    let mut streams = Vec::with_capacity(count);
    for task in tasks {
        streams.push(task.await??);
    }
    Ok(streams)
}

/// True if the peer has not closed `stream` (nothing to read, no EOF).
pub fn still_open(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// Raises this process's open-files limit so it can hold `needed` descriptors: the soft limit to
/// the hard one, and the hard one too where the process may (root).
pub fn raise_open_files_limit(needed: u64) -> anyhow::Result<()> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    let wanted = if hard >= needed {
        Rlimit {
            current: Some(needed.max(limit.current.unwrap_or(0))),
            maximum: limit.maximum,
        }
    } else {
        Rlimit {
            current: Some(needed),
            maximum: Some(needed),
        }
    };
    setrlimit(Resource::Nofile, wanted).with_context(|| {
        format!(
            "the open-files limit is {hard}; {needed} are needed (run as root, or raise it with \
             `ulimit -Hn`)"
        )
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn probe_all(
    server: &BenchServer,
    protocols: &[Probe],
    probes: usize,
) -> anyhow::Result<Vec<(Duration, Duration)>> {
    let mut figures = Vec::new();
    for probe in protocols {
        let addr = server.addr(probe.protocol)?;
        let mut times = Vec::with_capacity(probes);
        for _ in 0..probes {
            times.push(probe.round_trip(addr).await?);
        }
        times.sort();
        figures.push((percentile(&times, 0.5), percentile(&times, 0.99)));
    }
    Ok(figures)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

pub async fn run(options: Options, exe: PathBuf) -> anyhow::Result<()> {
    let n = options.connections;
    let probes: Vec<Probe> = PROBES
        .into_iter()
        .filter(|p| options.only.is_empty() || options.only.iter().any(|o| o == p.protocol))
        .collect();
    if probes.is_empty() {
        bail!("--only names no protocol of smtp, submission, imap, pop3, http");
    }
    let total = n * probes.len();
    // Each held connection is a descriptor here and one in the server, which inherits the
    // raised limit (and raises its own soft limit to it).
    raise_open_files_limit(total as u64 + 1024)?;
    let server = BenchServer::start(&exe, &[], "", CONFIG)?;
    println!(
        "pigeon bench idle: {n} idle connections on each of {} ({total} in all), held {} s",
        probes
            .iter()
            .map(|p| p.protocol)
            .collect::<Vec<_>>()
            .join(", "),
        options.hold_secs
    );
    let before_probes = probe_all(&server, &probes, options.probes).await?;
    let rss_before = server.rss_bytes().unwrap_or(0);

    let started = Instant::now();
    let mut held = Vec::new();
    for &probe in &probes {
        let streams = open_many(probe, server.addr(probe.protocol)?, n).await?;
        held.push(streams);
    }
    let open_time = started.elapsed();
    let rss_held = server.rss_bytes().unwrap_or(0);
    let during_probes = probe_all(&server, &probes, options.probes).await?;
    tokio::time::sleep(Duration::from_secs(options.hold_secs)).await;

    println!(
        "opened {total} connections in {:.1} s ({:.0}/s); server RSS {:.1} MB -> {:.1} MB = \
         {:.2} KB per connection",
        open_time.as_secs_f64(),
        total as f64 / open_time.as_secs_f64(),
        rss_before as f64 / 1e6,
        rss_held as f64 / 1e6,
        rss_held.saturating_sub(rss_before) as f64 / 1024.0 / total as f64,
    );
    println!(
        "{:<11} {:>12} {:>12} {:>14} {:>14} {:>10}",
        "protocol", "probe p50", "probe p99", "held: p50", "held: p99", "still open"
    );
    for (i, probe) in probes.iter().enumerate() {
        let open = held[i].iter().filter(|s| still_open(s)).count();
        println!(
            "{:<11} {:>12} {:>12} {:>14} {:>14} {:>10}",
            probe.protocol,
            ms(before_probes[i].0),
            ms(before_probes[i].1),
            ms(during_probes[i].0),
            ms(during_probes[i].1),
            format!("{open}/{n}"),
        );
    }
    Ok(())
}
