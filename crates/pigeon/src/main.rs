//! `pigeon`: the mail server and its admin and user-agent commands, in one binary.
//!
//! Wiring only: this crate parses the command line, loads the config, opens the store backend
//! and hands them to the service crates. It is the only crate that names a backend.

mod admin;
mod migrate;
mod read;
mod serve;
mod ua;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "pigeon",
    version,
    about = "A complete mail system in one binary: the mail server, its admin commands and a user agent"
)]
struct Cli {
    /// Configuration file (TOML). Without it, built-in defaults are used.
    #[arg(long, global = true, env = "PIGEON_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory; overrides `data_dir` from the config.
    #[arg(long, global = true, env = "PIGEON_DATA")]
    data: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the mail server.
    Serve {
        /// The primary mail domain; created on start if missing (overrides the config).
        #[arg(long)]
        domain: Option<String>,
    },
    /// Manage the domains we receive mail for.
    Domain {
        #[command(subcommand)]
        action: admin::DomainAction,
    },
    /// Manage user accounts.
    User {
        #[command(subcommand)]
        action: admin::UserAction,
    },
    /// Manage aliases (address -> one or more addresses; `@domain` is a catch-all).
    Alias {
        #[command(subcommand)]
        action: admin::AliasAction,
    },
    /// Look at stored mail exactly as stored (an admin view; users read with `pigeon read`).
    Mail {
        #[command(subcommand)]
        action: admin::MailAction,
    },
    /// Inspect and steer the outbound queue (list, show, retry, drop).
    Queue {
        #[command(subcommand)]
        action: admin::QueueAction,
    },
    /// Check the store's integrity; exits non-zero if anything is wrong.
    Verify,
    /// Show what the store holds, cheaply (no integrity checks).
    Status,
    /// Copy a whole installation into another, empty store: SQLite to PostgreSQL or back.
    /// Stop every node first; the source is only read.
    Migrate {
        /// The store to copy: `sqlite:DIR` (a data directory) or `postgres://user@host/db`.
        #[arg(long)]
        from: String,
        /// The empty store to fill, in the same forms.
        #[arg(long)]
        to: String,
    },
    /// User agent: the accounts you send and read mail with.
    Account {
        #[command(subcommand)]
        action: ua::AccountAction,
    },
    /// User agent: compose and send a message through your account's server.
    Send(ua::SendArgs),
    /// User agent: read mail over IMAP or POP3 (list, show, save, flag, move, delete, watch).
    Read(read::ReadArgs),
    /// Measure the server (starts its own server on a temporary data directory).
    Bench {
        #[command(subcommand)]
        kind: bench::Kind,
    },
}

fn load_config(cli: &Cli) -> anyhow::Result<config::Config> {
    let mut config = match &cli.config {
        Some(path) => config::Config::load(path)?,
        None => config::Config::default(),
    };
    if let Some(data) = &cli.data {
        config.data_dir = data.clone();
    }
    Ok(config)
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pigeon: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Stack size of the runtime's threads (workers and the blocking pool).
const WORKER_STACK_SIZE: usize = 8 * 1024 * 1024;

fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    let mut config = load_config(&cli)?;
    // Store reads run on the blocking pool; a bounded pool keeps the number of threads (and
    // their malloc arenas) small under load.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(16)
        // Tokio's default is 2 MiB. No code recurses to a depth a peer chooses (ARCHITECTURE.md
        // lists each recursion and its bound); 8 MiB, the main thread's usual size, leaves room
        // for the deepest bounded recursion in dependencies (HTML parsing, regexes) with a wide
        // margin. Only touched pages cost memory, so idle threads cost no more.
        .thread_stack_size(WORKER_STACK_SIZE)
        .build()
        .context("start the async runtime")?;
    match cli.command {
        Command::Serve { domain } => {
            if let Some(domain) = domain {
                config.domain = domain;
            }
            config.validate()?;
            runtime.block_on(serve::run(config))?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Account { action } => {
            ua::account(action)?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Read(args) => {
            runtime.block_on(read::run(args))?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Send(args) => {
            runtime.block_on(ua::send(args))?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Bench { kind } => {
            let exe = std::env::current_exe().context("find the pigeon executable")?;
            runtime.block_on(bench::run(kind, exe))?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Migrate { from, to } => runtime.block_on(migrate::run(&from, &to)),
        command => runtime.block_on(admin::run(command, &config)),
    }
}
