//! `pigeon bench pop3`: a maildrop of N messages (delivered over SMTP first), then on one
//! connection the time of LIST and UIDL and the rate of RETR of every message; then the
//! memory each idle POP3 connection costs the server.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use client::pop3::Pop3Client;
use client::smtp::SmtpClient;
use indicatif::{ProgressBar, ProgressStyle};

use crate::{BenchServer, parse_size};

#[derive(clap::Args)]
pub struct Options {
    /// Messages in the maildrop.
    #[arg(long, default_value_t = 10_000)]
    messages: usize,
    /// Size of each message, e.g. 10k.
    #[arg(long, default_value = "10k", value_parser = parse_size)]
    size: usize,
    /// Idle connections to open for the memory figure.
    #[arg(long, default_value_t = 1_000)]
    idle: usize,
}

const CONFIG: &str = "[[listener]]\nprotocol = \"smtp\"\nbind = \"127.0.0.1:0\"\n\n\
    [[listener]]\nprotocol = \"pop3\"\nbind = \"127.0.0.1:0\"\n\n\
    [auth]\nallow_plaintext_on_loopback = true\n";

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

pub async fn run(options: Options, exe: PathBuf) -> anyhow::Result<()> {
    let user = "reader@localhost";
    let password = "bench-password";
    let server = BenchServer::start(&exe, &[user], password, CONFIG)?;
    let smtp_addr = server.addr("smtp")?;
    let pop3_addr = server.addr("pop3")?;
    println!(
        "pigeon bench pop3: {} messages of {} bytes, {} idle connections",
        options.messages, options.size, options.idle
    );

    let progress = ProgressBar::new(options.messages as u64);
    progress.set_style(
        ProgressStyle::with_template("filling {bar:40} {pos}/{len}").expect("valid template"),
    );
    let mut tasks = Vec::new();
    let per_task = options.messages.div_ceil(10);
    for t in 0..10 {
        let (progress, size) = (progress.clone(), options.size);
        let range = (t * per_task)..((t + 1) * per_task).min(options.messages);
        tasks.push(tokio::spawn(async move {
            let mut smtp = SmtpClient::connect(smtp_addr, Duration::from_secs(60)).await?;
            smtp.ehlo("bench.localhost").await?;
            for n in range {
                smtp.send(
                    "bench@remote.example",
                    &[user],
                    &crate::smtp::make_message(size, n),
                )
                .await?;
                progress.inc(1);
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await.context("fill task panicked")??;
    }
    progress.finish_and_clear();

    // One connection, one request at a time: a single-threaded client runtime on its own
    // thread, so that the client adds no cross-thread wake-ups to what is measured.
    let expected = options.messages;
    let (login, list_time, uidl_time, retr_time, count, bytes) = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            let mut pop = Pop3Client::connect(pop3_addr, Duration::from_secs(60)).await?;
            let t = Instant::now();
            pop.login(user, password).await?;
            let login = t.elapsed();
            let t = Instant::now();
            let list = pop.list().await?;
            let list_time = t.elapsed();
            let t = Instant::now();
            let uidl = pop.uidl().await?;
            let uidl_time = t.elapsed();
            anyhow::ensure!(
                list.len() == expected && uidl.len() == expected,
                "maildrop incomplete"
            );
            let t = Instant::now();
            let mut bytes = 0;
            for n in 1..=list.len() {
                bytes += pop.retr(n).await?.len();
            }
            let retr_time = t.elapsed();
            pop.quit().await?;
            anyhow::Ok((login, list_time, uidl_time, retr_time, list.len(), bytes))
        })
    })
    .join()
    .map_err(|_| anyhow::anyhow!("client thread panicked"))??;
    println!("login (snapshot of {} messages) {}", count, ms(login));
    println!("LIST {}; UIDL {}", ms(list_time), ms(uidl_time));
    println!(
        "RETR of all {} messages on one connection: {:.2} s = {:.0} messages/s ({:.1} MB/s)",
        count,
        retr_time.as_secs_f64(),
        count as f64 / retr_time.as_secs_f64(),
        bytes as f64 / 1_048_576.0 / retr_time.as_secs_f64()
    );

    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = server.rss_bytes().unwrap_or(0);
    let mut idle = Vec::with_capacity(options.idle);
    for _ in 0..options.idle {
        idle.push(Pop3Client::connect(pop3_addr, Duration::from_secs(60)).await?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = server.rss_bytes().unwrap_or(0);
    println!(
        "{} idle POP3 connections: server RSS {:.1} MB -> {:.1} MB = {:.1} KB per connection",
        options.idle,
        before as f64 / 1_048_576.0,
        after as f64 / 1_048_576.0,
        after.saturating_sub(before) as f64 / 1024.0 / options.idle as f64
    );
    drop(idle);
    Ok(())
}
