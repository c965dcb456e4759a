//! `pigeon bench submission`: every message is a new connection with a full TLS handshake
//! (STARTTLS, no session resumption), AUTH PLAIN and one message, as a mail program sends.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use client::smtp::SmtpClient;
use client::tls::{Trust, client_config};
use indicatif::{ProgressBar, ProgressStyle};

use crate::{BenchServer, Summary, parse_size};

#[derive(clap::Args)]
pub struct Options {
    /// Concurrent clients.
    #[arg(long, default_value_t = 20)]
    connections: usize,
    /// Submissions in total.
    #[arg(long, default_value_t = 5_000)]
    messages: usize,
    /// Size of each message, e.g. 10k.
    #[arg(long, default_value = "10k", value_parser = parse_size)]
    size: usize,
    /// Use implicit TLS (port 465 style) instead of STARTTLS.
    #[arg(long)]
    implicit: bool,
}

const CONFIG: &str = "[[listener]]\nprotocol = \"submission\"\nbind = \"127.0.0.1:0\"\n\n\
    [[listener]]\nprotocol = \"submission\"\nbind = \"127.0.0.1:0\"\ntls = \"implicit\"\n\n\
    [submission]\nmax_messages_per_hour = 100000000\nmax_recipients_per_hour = 100000000\n";

pub async fn run(options: Options, exe: PathBuf) -> anyhow::Result<()> {
    let user = "sender@localhost";
    let password = "bench-password";
    let server = BenchServer::start(&exe, &[user, "sink@localhost"], password, CONFIG)?;
    let addr = server.addr(if options.implicit {
        "submission+tls"
    } else {
        "submission"
    })?;
    let mut tls = (*client_config(&Trust::PemFile(server.data_dir().join("tls/cert.pem")))
        .map_err(anyhow::Error::msg)?)
    .clone();
    tls.resumption = rustls::client::Resumption::disabled();
    let tls = Arc::new(tls);
    println!(
        "pigeon bench submission: {} clients, {} submissions of {} bytes, {} -> {addr}",
        options.connections,
        options.messages,
        options.size,
        if options.implicit {
            "implicit TLS"
        } else {
            "STARTTLS"
        }
    );
    let progress = ProgressBar::new(options.messages as u64);
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} eta {eta}")
            .expect("valid template"),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..options.connections {
        let (next, progress, tls) = (next.clone(), progress.clone(), tls.clone());
        let (total, size, implicit) = (options.messages, options.size, options.implicit);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    break;
                }
                let message = crate::smtp::make_message(size, n).replace_from(user);
                let t = Instant::now();
                let timeout = Duration::from_secs(60);
                let mut smtp = if implicit {
                    SmtpClient::connect_tls(addr, "localhost", tls.clone(), timeout).await?
                } else {
                    let mut plain = SmtpClient::connect(addr, timeout).await?;
                    plain.ehlo("bench.localhost").await?;
                    plain.starttls("localhost", tls.clone()).await?
                };
                smtp.ehlo("bench.localhost").await?;
                smtp.auth_plain(user, password).await?;
                smtp.send(user, &["sink@localhost"], &message).await?;
                smtp.quit().await?;
                latencies.push(t.elapsed());
                progress.inc(1);
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(options.messages);
    for task in tasks {
        latencies.extend(task.await.context("load task panicked")??);
    }
    let elapsed = started.elapsed();
    progress.finish_and_clear();
    println!("submitted {}", Summary::new(latencies, elapsed));
    if let Some(rss) = server.peak_rss_bytes() {
        println!("server peak RSS {:.1} MB", rss as f64 / 1_048_576.0);
    }
    Ok(())
}

/// Rewrites the benchmark message's From: header for an authenticated sender.
trait ReplaceFrom {
    fn replace_from(self, user: &str) -> Vec<u8>;
}

impl ReplaceFrom for Vec<u8> {
    fn replace_from(self, user: &str) -> Vec<u8> {
        let rest = self
            .splitn(2, |&b| b == b'\n')
            .nth(1)
            .unwrap_or_default()
            .to_vec();
        [format!("From: {user}\r\n").into_bytes(), rest].concat()
    }
}
