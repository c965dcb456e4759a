//! `pigeon bench queue`: fill one pigeon's outbound queue (its delivery workers off), then turn
//! the workers on and time until a second pigeon, fsyncing every delivery, has every message.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use client::smtp::SmtpClient;

use crate::smtp::make_message;
use crate::{BenchServer, parse_size};

#[derive(clap::Args)]
pub struct Options {
    /// Messages to queue and deliver.
    #[arg(long, default_value_t = 10_000)]
    messages: usize,
    /// Size of each message, e.g. 10k.
    #[arg(long, default_value = "10k", value_parser = parse_size)]
    size: usize,
    /// Connections the sender's queue may open to the receiver.
    #[arg(long, default_value_t = 10)]
    connections: usize,
}

const PASSWORD: &str = "bench-password";

pub async fn run(options: Options, exe: PathBuf) -> anyhow::Result<()> {
    let receiver = BenchServer::start(&exe, &["sink@localhost"], PASSWORD, "")?;
    receiver.admin(&exe, &["domain", "add", "dest.test", "--no-dkim"])?;
    receiver.admin(
        &exe,
        &["user", "add", "sink@dest.test", "--password", PASSWORD],
    )?;
    let target = receiver.addr("smtp")?;
    let config = format!(
        "[[listener]]\nprotocol = \"submission\"\nbind = \"127.0.0.1:0\"\n\n\
         [submission]\nmax_messages_per_hour = 100000000\nmax_recipients_per_hour = 100000000\n\n\
         [auth]\nallow_plaintext_on_loopback = true\n\n\
         [queue]\nenabled = false\nmax_connections_per_domain = {}\n\n\
         [queue.routes]\n\"dest.test\" = \"{target}\"\n",
        options.connections
    );
    let mut sender = BenchServer::start(&exe, &["bench@localhost"], PASSWORD, &config)?;
    let submission = sender.addr("submission")?;
    println!(
        "pigeon bench queue: {} messages of {} bytes queued, then delivered over {} connections -> {target}",
        options.messages, options.size, options.connections
    );

    // Fill the queue through submission (workers off, so nothing leaves yet).
    let filled = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let next = next.clone();
        let size = options.size;
        let total = options.messages;
        tasks.push(tokio::spawn(async move {
            let mut smtp = SmtpClient::connect(submission, Duration::from_secs(30)).await?;
            smtp.ehlo("bench.localhost").await?;
            smtp.auth_plain("bench@localhost", PASSWORD).await?;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    break;
                }
                let message = make_message(size, n);
                smtp.send("bench@localhost", &["sink@dest.test"], &message)
                    .await?;
            }
            smtp.quit().await?;
            Ok::<_, client::smtp::Error>(())
        }));
    }
    for task in tasks {
        task.await?.context("fill the queue")?;
    }
    let queued = queue_length(&sender, &exe)?;
    if queued != options.messages {
        bail!("{queued} messages queued, expected {}", options.messages);
    }
    println!(
        "  queued {} messages in {:.1} s",
        queued,
        filled.elapsed().as_secs_f64()
    );

    // Workers on: time until the queue is empty.
    let started = Instant::now();
    sender.restart(&exe, |config| {
        config.replace("enabled = false", "enabled = true")
    })?;
    loop {
        let left = queue_length(&sender, &exe)?;
        if left == 0 {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("{left} messages still queued after 10 minutes");
        }
        // Each look is a separate admin process reading the queue: not too often.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let elapsed = started.elapsed();
    let delivered = receiver
        .admin(&exe, &["mail", "list", "sink@dest.test"])?
        .lines()
        .skip(1)
        .count();
    if delivered != options.messages {
        bail!(
            "the receiver has {delivered} messages, expected {}",
            options.messages
        );
    }
    println!(
        "  delivered {delivered} in {:.2} s: {:.0} msgs/s end to end (receiver fsyncs each 250)",
        elapsed.as_secs_f64(),
        delivered as f64 / elapsed.as_secs_f64()
    );
    if let (Some(s), Some(r)) = (sender.peak_rss_bytes(), receiver.peak_rss_bytes()) {
        println!(
            "  peak RSS: sender {:.1} MB, receiver {:.1} MB",
            s as f64 / 1e6,
            r as f64 / 1e6
        );
    }
    Ok(())
}

fn queue_length(server: &BenchServer, exe: &std::path::Path) -> anyhow::Result<usize> {
    let status = server.admin(exe, &["status"])?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("queued messages: "))
        .and_then(|n| n.trim().parse().ok())
        .with_context(|| format!("unexpected status output: {status}"))
}
