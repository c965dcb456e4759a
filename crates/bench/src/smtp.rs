//! `pigeon bench smtp`: many connections delivering messages to one local user; every 250 is a
//! durable delivery (the server fsyncs before answering).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use client::smtp::SmtpClient;
use indicatif::{ProgressBar, ProgressStyle};

use crate::{BenchServer, Summary, parse_size};

#[derive(clap::Args)]
pub struct Options {
    /// Concurrent SMTP connections.
    #[arg(long, default_value_t = 20)]
    connections: usize,
    /// Messages to deliver in total.
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// Size of each message, e.g. 10k.
    #[arg(long, default_value = "10k", value_parser = parse_size)]
    size: usize,
}

pub(crate) fn make_message(size: usize, n: usize) -> Vec<u8> {
    let mut message = format!(
        "From: bench@localhost\r\nTo: sink@localhost\r\nSubject: bench {n}\r\n\
         Message-ID: <bench-{n}@localhost>\r\n\r\n"
    )
    .into_bytes();
    let line =
        b"The quick brown fox jumps over the lazy dog. 0123456789 abcdefghijklmnopqrstuv\r\n";
    while message.len() < size {
        let take = line.len().min(size - message.len());
        message.extend_from_slice(&line[..take]);
    }
    if !message.ends_with(b"\r\n") {
        message.truncate(message.len().saturating_sub(2));
        message.extend_from_slice(b"\r\n");
    }
    message
}

pub async fn run(options: Options, exe: PathBuf) -> anyhow::Result<()> {
    let server = BenchServer::start(&exe, &["sink@localhost"], "bench-password", "")?;
    let addr = server.addr("smtp")?;
    println!(
        "pigeon bench smtp: {} connections, {} messages of {} bytes -> {addr}",
        options.connections, options.messages, options.size
    );
    let summary = ingest(&[addr], options.connections, options.messages, options.size).await?;
    println!("delivered {summary}");
    match server.peak_rss_bytes() {
        Some(rss) => println!("server peak RSS {:.1} MB", rss as f64 / 1_048_576.0),
        None => println!("server peak RSS unknown (no /proc)"),
    }
    Ok(())
}

/// Delivers `messages` messages of `size` bytes to sink@localhost over `connections` SMTP
/// connections (spread over `addrs`); every 250 is durable.
pub(crate) async fn ingest(
    addrs: &[std::net::SocketAddr],
    connections: usize,
    messages: usize,
    size: usize,
) -> anyhow::Result<Summary> {
    let progress = ProgressBar::new(messages as u64);
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} eta {eta}")
            .expect("valid template"),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let next = next.clone();
        let progress = progress.clone();
        let addr = addrs[c % addrs.len()];
        tasks.push(tokio::spawn(async move {
            let mut client = SmtpClient::connect(addr, Duration::from_secs(60)).await?;
            client.ehlo("bench.localhost").await?;
            let mut latencies = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= messages {
                    break;
                }
                let message = make_message(size, n);
                let t = Instant::now();
                client
                    .send("bench@remote.example", &["sink@localhost"], &message)
                    .await?;
                latencies.push(t.elapsed());
                progress.inc(1);
            }
            client.quit().await?;
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(messages);
    for task in tasks {
        latencies.extend(task.await.context("load task panicked")??);
    }
    let elapsed = started.elapsed();
    progress.finish_and_clear();
    Ok(Summary::new(latencies, elapsed))
}
