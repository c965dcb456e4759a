//! `pigeon bench imap`: the big-mailbox figures (SELECT, UID FETCH 1:* (UID FLAGS), UID SEARCH
//! TEXT), a mixed client load (commands/s, p99), and the memory of many IDLE connections.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use client::imap::ImapClient;
use client::smtp::SmtpClient;
use indicatif::{ProgressBar, ProgressStyle};

use crate::{BenchServer, Summary, parse_size};

#[derive(clap::Args)]
pub struct Options {
    /// Messages in the big mailbox.
    #[arg(long, default_value_t = 100_000)]
    messages: usize,
    /// Size of each message, e.g. 2k.
    #[arg(long, default_value = "2k", value_parser = parse_size)]
    size: usize,
    /// Clients in the mixed load.
    #[arg(long, default_value_t = 20)]
    clients: usize,
    /// Seconds of mixed load.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// IDLE connections for the memory figure.
    #[arg(long, default_value_t = 10_000)]
    idle: usize,
}

pub(crate) const CONFIG: &str = "[[listener]]\nprotocol = \"smtp\"\nbind = \"127.0.0.1:0\"\n\n\
    [[listener]]\nprotocol = \"imap\"\nbind = \"127.0.0.1:0\"\n\n\
    [auth]\nallow_plaintext_on_loopback = true\n";

pub(crate) const PASSWORD: &str = "bench-password";

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

pub(crate) async fn fill(
    addr: std::net::SocketAddr,
    user: &'static str,
    count: usize,
    size: usize,
    label: &str,
) -> anyhow::Result<()> {
    let progress = ProgressBar::new(count as u64);
    progress.set_style(
        ProgressStyle::with_template(&format!("{label} {{bar:40}} {{pos}}/{{len}}"))
            .expect("valid template"),
    );
    let per_task = count.div_ceil(16);
    let mut tasks = Vec::new();
    for t in 0..16 {
        let progress = progress.clone();
        let range = (t * per_task)..((t + 1) * per_task).min(count);
        tasks.push(tokio::spawn(async move {
            let mut smtp = SmtpClient::connect(addr, Duration::from_secs(60)).await?;
            smtp.ehlo("bench.localhost").await?;
            for n in range {
                let mut message = crate::smtp::make_message(size, n);
                if n % 100 == 0 {
                    // One message in a hundred has the word the search looks for.
                    message.extend_from_slice(b"zebracorn\r\n");
                }
                smtp.send("bench@remote.example", &[user], &message).await?;
                progress.inc(1);
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await.context("fill task panicked")??;
    }
    progress.finish_and_clear();
    Ok(())
}

async fn timed(client: &mut ImapClient, command: &str) -> anyhow::Result<(Duration, usize)> {
    let t = Instant::now();
    let response = client.command(command).await?;
    Ok((t.elapsed(), response.untagged.len()))
}

pub async fn run(options: Options, exe: PathBuf) -> anyhow::Result<()> {
    let big = "big@localhost";
    let load = "load@localhost";
    let idle = "idle@localhost";
    let server = BenchServer::start(&exe, &[big, load, idle], PASSWORD, CONFIG)?;
    let smtp = server.addr("smtp")?;
    let imap = server.addr("imap")?;
    println!(
        "pigeon bench imap: {} messages of {} bytes; {} clients for {} s; {} IDLE connections",
        options.messages, options.size, options.clients, options.seconds, options.idle
    );
    fill(smtp, big, options.messages, options.size, "filling").await?;
    fill(smtp, load, 1000, options.size, "filling load mailbox").await?;
    fill(smtp, idle, 100, options.size, "filling idle mailbox").await?;
    // The full-text index catches up when the server is idle; measure it caught up.
    let started = Instant::now();
    while server.index_backlog(&exe)? > 0 && started.elapsed() < Duration::from_secs(600) {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "index caught up {:.1} s after the fill",
        started.elapsed().as_secs_f64()
    );

    // Big-mailbox figures on one connection.
    let mut c = ImapClient::connect(imap, Duration::from_secs(300)).await?;
    c.login(big, PASSWORD).await?;
    let (select, _) = timed(&mut c, "SELECT INBOX").await?;
    let (fetch, bytes) = timed(&mut c, "UID FETCH 1:* (UID FLAGS)").await?;
    let t = Instant::now();
    let found = c.command("UID SEARCH TEXT \"zebracorn\"").await?;
    let search = t.elapsed();
    let hits = String::from_utf8_lossy(&found.untagged)
        .split_whitespace()
        .count()
        .saturating_sub(2);
    println!("{} messages: SELECT {}", options.messages, ms(select));
    println!(
        "UID FETCH 1:* (UID FLAGS): {} ({:.1} MB of responses)",
        ms(fetch),
        bytes as f64 / 1_048_576.0
    );
    println!(
        "UID SEARCH TEXT \"zebracorn\": {} ({hits} hits)",
        ms(search)
    );
    c.command("LOGOUT").await.ok();

    // Mixed load.
    let (tagged, elapsed) = mixed_load(
        &[imap],
        load,
        options.clients,
        options.seconds,
        options.size,
    )
    .await?;
    print_mixed(tagged, elapsed);

    // IDLE memory.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = server.rss_bytes().unwrap_or(0);
    let progress = ProgressBar::new(options.idle as u64);
    progress.set_style(
        ProgressStyle::with_template("idling {bar:40} {pos}/{len}").expect("valid template"),
    );
    let mut idlers = Vec::with_capacity(options.idle);
    for _ in 0..options.idle {
        let mut c = ImapClient::connect(imap, Duration::from_secs(60)).await?;
        c.login(idle, PASSWORD).await?;
        c.command("SELECT INBOX").await?;
        let tag = c.idle().await?;
        idlers.push((c, tag));
        progress.inc(1);
    }
    progress.finish_and_clear();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = server.rss_bytes().unwrap_or(0);
    println!(
        "{} IDLE connections (INBOX of 100 messages): server RSS {:.1} MB -> {:.1} MB ({:.1} MB for the connections, {:.1} KB each)",
        options.idle,
        before as f64 / 1_048_576.0,
        after as f64 / 1_048_576.0,
        after.saturating_sub(before) as f64 / 1_048_576.0,
        after.saturating_sub(before) as f64 / 1024.0 / options.idle.max(1) as f64
    );
    if let Some(peak) = server.peak_rss_bytes() {
        println!("server peak RSS {:.1} MB", peak as f64 / 1_048_576.0);
    }
    Ok(())
}

/// The mixed load: `clients` sessions (spread over `addrs`) on `user`'s mailbox for
/// `seconds`, each looping SELECT, FETCH, STORE, SEARCH, APPEND and EXPUNGE. Returns each
/// command's kind and latency, and the time the load ran.
pub(crate) async fn mixed_load(
    addrs: &[std::net::SocketAddr],
    load: &'static str,
    clients: usize,
    seconds: u64,
    size: usize,
) -> anyhow::Result<(Vec<(usize, Duration)>, Duration)> {
    let addrs = addrs.to_vec();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for client_no in 0..clients {
        let stop = stop.clone();
        let addrs = addrs.clone();
        tasks.push(tokio::spawn(async move {
            let imap = addrs[client_no % addrs.len()];
            let mut c = ImapClient::connect(imap, Duration::from_secs(60)).await?;
            c.login(load, PASSWORD).await?;
            let mut latencies = Vec::new();
            let mut n = client_no * 7919;
            let message = crate::smtp::make_message(size, client_no);
            while !stop.load(Ordering::Relaxed) {
                n = n.wrapping_mul(31).wrapping_add(17);
                let a = n % 950 + 1;
                let commands = [
                    "SELECT INBOX".to_string(),
                    format!("FETCH {a}:{} (UID FLAGS ENVELOPE)", a + 20),
                    format!("FETCH {} (BODY.PEEK[])", a + 3),
                    format!("STORE {} +FLAGS (\\Seen)", a + 5),
                    "SEARCH UNSEEN".to_string(),
                    format!("UID SEARCH SUBJECT \"bench {}\"", a),
                ];
                for (i, command) in commands.iter().enumerate() {
                    let t = Instant::now();
                    c.command(command).await?;
                    latencies.push((i, t.elapsed()));
                }
                let t = Instant::now();
                c.append("INBOX", "\\Deleted", &message).await?;
                latencies.push((6, t.elapsed()));
                let t = Instant::now();
                c.command("EXPUNGE").await?;
                latencies.push((7, t.elapsed()));
            }
            anyhow::Ok(latencies)
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut tagged = Vec::new();
    for task in tasks {
        tagged.extend(task.await.context("load task panicked")??);
    }
    Ok((tagged, started.elapsed()))
}

/// Prints per-command percentiles and the overall rate; returns commands per second.
pub(crate) fn print_mixed(tagged: Vec<(usize, Duration)>, elapsed: Duration) -> f64 {
    let names = [
        "SELECT",
        "FETCH envelopes",
        "FETCH body",
        "STORE",
        "SEARCH UNSEEN",
        "SEARCH SUBJECT",
        "APPEND",
        "EXPUNGE",
    ];
    for (i, name) in names.iter().enumerate() {
        let these: Vec<Duration> = tagged
            .iter()
            .filter(|(k, _)| *k == i)
            .map(|(_, d)| *d)
            .collect();
        let s = Summary::new(these, elapsed);
        println!("  {name:<16} p50 {} p99 {}", ms(s.p50), ms(s.p99));
    }
    let latencies: Vec<Duration> = tagged.into_iter().map(|(_, d)| d).collect();
    let summary = Summary::new(latencies, elapsed);
    println!(
        "mixed load: {}",
        summary.to_string().replace("/s;", " commands/s;")
    );
    summary.count as f64 / elapsed.as_secs_f64()
}
