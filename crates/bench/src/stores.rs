//! `pigeon bench stores`: the same SMTP ingest and IMAP mixed load on the embedded SQLite
//! store, on PostgreSQL with one node, and on PostgreSQL with two nodes sharing the database,
//! in one run on one machine. PostgreSQL is a throwaway cluster started for the run (the
//! server binaries of Debian's `postgresql` package), with its default durability (fsync on,
//! synchronous commit), as SQLite's.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;

use crate::imap::{CONFIG, PASSWORD, fill, mixed_load, print_mixed};
use crate::{BenchServer, parse_size};

#[derive(clap::Args)]
pub struct Options {
    /// SMTP connections for the ingest (spread over the nodes).
    #[arg(long, default_value_t = 20)]
    connections: usize,
    /// Messages to deliver in each ingest run.
    #[arg(long, default_value_t = 10_000)]
    messages: usize,
    /// Size of each message, e.g. 10k.
    #[arg(long, default_value = "10k", value_parser = parse_size)]
    size: usize,
    /// IMAP clients in the mixed load (spread over the nodes).
    #[arg(long, default_value_t = 20)]
    clients: usize,
    /// Seconds of mixed load.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

const SINK: &str = "sink@localhost";
const LOAD: &str = "load@localhost";

struct Row {
    store: &'static str,
    ingest: crate::Summary,
    imap_rate: f64,
    imap_p99: std::time::Duration,
}

pub async fn run(options: Options, exe: PathBuf) -> anyhow::Result<()> {
    let cluster = test_support::PgCluster::start()
        .context("PostgreSQL's server binaries are needed (Debian: apt install postgresql)")?;
    println!(
        "pigeon bench stores: ingest {} messages of {} bytes over {} connections; IMAP mixed \
         load of {} clients for {} s",
        options.messages, options.size, options.connections, options.clients, options.seconds
    );
    let mut rows = Vec::new();

    println!("\n== SQLite, one node");
    let sqlite = BenchServer::start(&exe, &[SINK, LOAD], PASSWORD, CONFIG)?;
    rows.push(measure(&exe, "SQLite, 1 node", &[&sqlite], &options).await?);
    drop(sqlite);

    println!("\n== PostgreSQL, one node");
    let store = pg_config(&cluster.create_database());
    let one = BenchServer::start(&exe, &[SINK, LOAD], PASSWORD, &format!("{CONFIG}\n{store}"))?;
    rows.push(measure(&exe, "PostgreSQL, 1 node", &[&one], &options).await?);
    drop(one);

    println!("\n== PostgreSQL, two nodes on one database");
    let store = pg_config(&cluster.create_database());
    let config = format!("{CONFIG}\n{store}");
    let first = BenchServer::start(&exe, &[SINK, LOAD], PASSWORD, &config)?;
    let second = BenchServer::join(&exe, &config)?;
    rows.push(measure(&exe, "PostgreSQL, 2 nodes", &[&first, &second], &options).await?);

    println!("\n| Store | SMTP ingest | ingest p99 | IMAP mixed load | IMAP p99 |");
    println!("|---|---|---|---|---|");
    for row in rows {
        println!(
            "| {} | {:.0} msgs/s | {:.1} ms | {:.0} commands/s | {:.1} ms |",
            row.store,
            row.ingest.per_second(),
            row.ingest.p99.as_secs_f64() * 1000.0,
            row.imap_rate,
            row.imap_p99.as_secs_f64() * 1000.0
        );
    }
    Ok(())
}

fn pg_config(url: &str) -> String {
    format!("[store]\nbackend = \"postgres\"\nurl = \"{url}\"\npool_size = 32\n")
}

async fn measure(
    exe: &std::path::Path,
    store: &'static str,
    nodes: &[&BenchServer],
    options: &Options,
) -> anyhow::Result<Row> {
    let smtp: Vec<SocketAddr> = nodes
        .iter()
        .map(|n| n.addr("smtp"))
        .collect::<anyhow::Result<_>>()?;
    let imap: Vec<SocketAddr> = nodes
        .iter()
        .map(|n| n.addr("imap"))
        .collect::<anyhow::Result<_>>()?;
    let ingest =
        crate::smtp::ingest(&smtp, options.connections, options.messages, options.size).await?;
    println!("ingest: {ingest}");
    caught_up(exe, nodes[0], "the ingest").await?;
    fill(smtp[0], LOAD, 1000, 2048, "filling the IMAP mailbox").await?;
    caught_up(exe, nodes[0], "the fill").await?;
    let (tagged, elapsed) = mixed_load(&imap, LOAD, options.clients, options.seconds, 2048).await?;
    let imap_p99 = crate::Summary::new(tagged.iter().map(|(_, d)| *d).collect(), elapsed).p99;
    let imap_rate = print_mixed(tagged, elapsed);
    Ok(Row {
        store,
        ingest,
        imap_rate,
        imap_p99,
    })
}

/// Waits until the full-text index has every message, as the IMAP benchmark does.
async fn caught_up(exe: &std::path::Path, node: &BenchServer, after: &str) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    while node.index_backlog(exe)? > 0 && started.elapsed() < std::time::Duration::from_secs(600) {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    println!(
        "full-text index caught up {:.1} s after {after}",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
