//! Admin commands: domains, users, aliases, the queue, and `verify`. They work directly on the
//! store in the data directory, also while a server runs on it.

use std::io::Read;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Subcommand;
use config::Config;
use store::{Address, Store};

#[derive(Subcommand)]
pub enum DomainAction {
    /// Add a domain, with new DKIM signing keys (Ed25519 and RSA-2048).
    Add {
        name: String,
        /// Make no DKIM keys.
        #[arg(long)]
        no_dkim: bool,
    },
    /// Print the DNS records to publish for a domain: MX, SPF, DKIM, DMARC, SRV (RFC 6186).
    Dns { name: String },
    /// List domains.
    List,
    /// Delete a domain (it must have no users or aliases left).
    Del { name: String },
}

#[derive(Subcommand)]
pub enum UserAction {
    /// Create a user; the password comes from a prompt, --password-stdin or --password.
    Add {
        address: String,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// List users.
    List,
    /// Change a user's password.
    Passwd {
        address: String,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// Delete a user with all their mail.
    Del { address: String },
}

#[derive(clap::Args)]
pub struct PasswordSource {
    /// Read the password from the first line of standard input.
    #[arg(long, conflicts_with = "password")]
    password_stdin: bool,
    /// The password itself (visible to other local users in the process list; prefer the prompt).
    #[arg(long)]
    password: Option<String>,
}

#[derive(Subcommand)]
pub enum AliasAction {
    /// Add an alias: mail to ADDRESS goes to every TARGET. ADDRESS `@domain` catches all.
    Add {
        address: String,
        #[arg(required = true)]
        targets: Vec<String>,
    },
    /// List aliases.
    List,
    /// Delete an alias.
    Del { address: String },
}

#[derive(Subcommand)]
pub enum MailAction {
    /// List the messages in a user's mailbox.
    List {
        address: String,
        #[arg(long, default_value = "INBOX")]
        mailbox: String,
    },
    /// Write one message's stored bytes, exactly, to standard output.
    Cat {
        address: String,
        uid: u32,
        #[arg(long, default_value = "INBOX")]
        mailbox: String,
    },
}

#[derive(Subcommand)]
pub enum QueueAction {
    /// List queued messages and their recipients.
    List,
    /// Show one queued message: envelope, each recipient's state, and the message's headers.
    Show { id: i64 },
    /// Try a message (or, without an id, every message) again now.
    Retry { id: Option<i64> },
    /// Remove a message from the queue without delivering it or telling the sender.
    Drop { id: i64 },
}

/// Opens the configured store backend for a server.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    open_store_as(config, store::Role::Server).await
}

/// Opens the configured store backend; an admin command opens it as [`store::Role::Admin`]
/// (no background indexing, and a running server's uploads are left alone).
pub async fn open_store_as(config: &Config, role: store::Role) -> anyhow::Result<Arc<dyn Store>> {
    match config.store.backend {
        config::Backend::Sqlite => {
            let store = store_sqlite::SqliteStore::open_as(&config.data_dir, role)
                .with_context(|| format!("open store in {}", config.data_dir.display()))?;
            Ok(Arc::new(store))
        }
        config::Backend::Postgres => {
            let url = config
                .store
                .url
                .as_deref()
                .context("store.url is not set")?;
            let node = match &config.store.node {
                Some(node) => node.clone(),
                None => format!("{}:{}", config.hostname, config.data_dir.display()),
            };
            let store =
                store_postgres::PostgresStore::connect_as(url, config.store.pool_size, &node, role)
                    .await
                    .with_context(|| format!("open PostgreSQL store {}", redact_url(url)))?;
            Ok(Arc::new(store))
        }
    }
}

/// A database URL without its password, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

fn read_password(source: &PasswordSource) -> anyhow::Result<String> {
    let password = if let Some(password) = &source.password {
        password.clone()
    } else if source.password_stdin {
        let mut input = String::new();
        std::io::stdin()
            .read_to_string(&mut input)
            .context("read password from stdin")?;
        input.lines().next().unwrap_or("").to_string()
    } else {
        let first = rpassword::prompt_password("Password: ").context("read password")?;
        let second = rpassword::prompt_password("Again: ").context("read password")?;
        if first != second {
            bail!("the passwords do not match");
        }
        first
    };
    if password.is_empty() {
        bail!("empty password");
    }
    Ok(password)
}

/// The stored secrets for a password: Argon2id and SCRAM-SHA-256 keys, each with its own salt.
pub fn make_secrets(password: &str) -> anyhow::Result<store::Secrets> {
    let salt = common::random::bytes::<{ sasl::SALT_LEN }>();
    let scram_salt = common::random::bytes::<16>();
    Ok(store::Secrets {
        password_hash: sasl::hash_password(password, &salt)?,
        scram: Some(
            sasl::ScramKeys::derive(password, &scram_salt, sasl::scram::DEFAULT_ITERATIONS)
                .to_stored(),
        ),
    })
}

pub async fn run(command: crate::Command, config: &Config) -> anyhow::Result<ExitCode> {
    let store = open_store_as(config, store::Role::Admin).await?;
    match command {
        crate::Command::Domain { action } => domain(&*store, action, config).await?,
        crate::Command::User { action } => user(&*store, action).await?,
        crate::Command::Alias { action } => alias(&*store, action).await?,
        crate::Command::Queue { action } => queue(&*store, action).await?,
        crate::Command::Mail { action } => mail(&*store, action).await?,
        crate::Command::Verify => return verify(&*store).await,
        crate::Command::Status => {
            println!("domains: {}", store.list_domains().await?.join(", "));
            println!("accounts: {}", store.list_accounts().await?.len());
            println!("queued messages: {}", store.list_queue().await?.len());
            println!("awaiting indexing: {}", store.index_backlog().await?);
            println!("could not be indexed: {}", store.index_failures().await?);
        }
        crate::Command::Serve { .. }
        | crate::Command::Bench { .. }
        | crate::Command::Account { .. }
        | crate::Command::Send(_)
        | crate::Command::Read(_)
        | crate::Command::Migrate { .. } => {
            unreachable!("handled in main")
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn domain(store: &dyn Store, action: DomainAction, config: &Config) -> anyhow::Result<()> {
    match action {
        DomainAction::Add { name, no_dkim } => {
            store.add_domain(&name).await?;
            println!("added domain {}", name.to_lowercase());
            if !no_dkim {
                for (selector, algorithm) in [("ed1", "ed25519"), ("rsa1", "rsa")] {
                    let key = submission::dkim::generate_key(
                        &name,
                        selector,
                        algorithm,
                        common::clock::now(),
                    )
                    .map_err(|e| anyhow::anyhow!("DKIM key: {e}"))?;
                    store.add_dkim_key(key).await?;
                }
                println!(
                    "made DKIM keys; `pigeon domain dns {}` shows the records to publish",
                    name.to_lowercase()
                );
            }
        }
        DomainAction::Dns { name } => {
            let name = name.trim_end_matches('.').to_lowercase();
            if !store.has_domain(&name).await? {
                bail!("unknown domain {name}");
            }
            let host = config.hostname.trim_end_matches('.');
            let mut records = vec![
                (name.clone(), "MX".to_string(), format!("10 {host}.")),
                (name.clone(), "TXT".into(), "\"v=spf1 mx -all\"".into()),
            ];
            for key in store.dkim_keys(&name).await? {
                records.push((
                    format!("{}._domainkey.{name}", key.selector),
                    "TXT".into(),
                    quote_txt(&submission::dkim::dns_record(&key)),
                ));
            }
            records.push((
                format!("_dmarc.{name}"),
                "TXT".into(),
                format!("\"v=DMARC1; p=reject; rua=mailto:postmaster@{name}\""),
            ));
            // RFC 6186: where mail programs find submission, IMAP and POP3.
            for listener in config.effective_listeners() {
                let implicit = listener.tls == config::TlsMode::Implicit;
                let service = match (listener.protocol, implicit) {
                    (config::Protocol::Submission, false) => "_submission",
                    (config::Protocol::Submission, true) => "_submissions",
                    (config::Protocol::Imap, false) => "_imap",
                    (config::Protocol::Imap, true) => "_imaps",
                    (config::Protocol::Pop3, false) => "_pop3",
                    (config::Protocol::Pop3, true) => "_pop3s",
                    (config::Protocol::Smtp | config::Protocol::Http, _) => continue,
                };
                records.push((
                    format!("{service}._tcp.{name}"),
                    "SRV".into(),
                    format!("0 1 {} {host}.", listener.bind.port()),
                ));
            }
            let width = records.iter().map(|r| r.0.len()).max().unwrap_or(0) + 1;
            for (owner, kind, value) in records {
                println!("{:<width$} 3600 IN {kind:<4} {value}", format!("{owner}."));
            }
        }
        DomainAction::List => {
            for name in store.list_domains().await? {
                println!("{name}");
            }
        }
        DomainAction::Del { name } => {
            store.delete_domain(&name).await?;
            println!("deleted domain {}", name.to_lowercase());
        }
    }
    Ok(())
}

async fn user(store: &dyn Store, action: UserAction) -> anyhow::Result<()> {
    match action {
        UserAction::Add { address, password } => {
            let address = Address::parse(&address)?;
            if !store.has_domain(address.domain()).await? {
                bail!(
                    "unknown domain {}: add it first with `pigeon domain add {}`",
                    address.domain(),
                    address.domain()
                );
            }
            if store.account(&address).await?.is_some() {
                bail!("user {address} already exists");
            }
            let secrets = make_secrets(&read_password(&password)?)?;
            store.create_account(&address, &secrets).await?;
            println!("added user {address}");
        }
        UserAction::List => {
            for account in store.list_accounts().await? {
                println!("{}", account.address);
            }
        }
        UserAction::Passwd { address, password } => {
            let address = Address::parse(&address)?;
            if store.account(&address).await?.is_none() {
                bail!("no such user {address}");
            }
            let secrets = make_secrets(&read_password(&password)?)?;
            store.set_password(&address, &secrets).await?;
            println!("changed password of {address}");
        }
        UserAction::Del { address } => {
            let address = Address::parse(&address)?;
            store.delete_account(&address).await?;
            println!("deleted user {address}");
        }
    }
    Ok(())
}

async fn alias(store: &dyn Store, action: AliasAction) -> anyhow::Result<()> {
    match action {
        AliasAction::Add { address, targets } => {
            store.add_alias(&address, &targets).await?;
            println!("{} -> {}", address.to_lowercase(), targets.join(", "));
        }
        AliasAction::List => {
            for alias in store.list_aliases().await? {
                println!("{} -> {}", alias.address, alias.targets.join(", "));
            }
        }
        AliasAction::Del { address } => {
            store.delete_alias(&address).await?;
            println!("deleted alias {}", address.to_lowercase());
        }
    }
    Ok(())
}

async fn find_mailbox(
    store: &dyn Store,
    address: &str,
    mailbox: &str,
) -> anyhow::Result<store::Mailbox> {
    let address = Address::parse(address)?;
    let account = store
        .account(&address)
        .await?
        .with_context(|| format!("no such user {address}"))?;
    store
        .mailbox(account.id, mailbox)
        .await?
        .with_context(|| format!("{address} has no mailbox {mailbox:?}"))
}

async fn mail(store: &dyn Store, action: MailAction) -> anyhow::Result<()> {
    match action {
        MailAction::List { address, mailbox } => {
            let mailbox = find_mailbox(store, &address, &mailbox).await?;
            println!(
                "{}: {} messages, {} unseen, UIDVALIDITY {}, UIDNEXT {}",
                mailbox.name,
                mailbox.messages,
                mailbox.unseen,
                mailbox.uid_validity,
                mailbox.uid_next
            );
            for m in store.list_messages(mailbox.id).await? {
                println!(
                    "{:>6}  {:>9} bytes  {}",
                    m.uid,
                    m.size,
                    message::date::format_rfc5322(m.internal_date)
                );
            }
        }
        MailAction::Cat {
            address,
            uid,
            mailbox,
        } => {
            let mailbox = find_mailbox(store, &address, &mailbox).await?;
            let data = store.read_message(mailbox.id, uid).await?;
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&data)?;
            stdout.flush()?;
        }
    }
    Ok(())
}

async fn queue(store: &dyn Store, action: QueueAction) -> anyhow::Result<()> {
    match action {
        QueueAction::List => {
            let entries = store.list_queue().await?;
            if entries.is_empty() {
                println!("queue is empty");
            }
            for entry in entries {
                let sender = if entry.envelope.sender.is_empty() {
                    "<>"
                } else {
                    &entry.envelope.sender
                };
                println!(
                    "{} from {sender} ({} bytes, queued {})",
                    entry.id,
                    entry.size,
                    message::date::format_rfc5322(entry.envelope.created)
                );
                for r in entry.recipients {
                    let error = r.last_error.map(|e| format!(": {e}")).unwrap_or_default();
                    println!(
                        "    {} {} (attempts {}){error}",
                        r.address,
                        r.status.as_str(),
                        r.attempts
                    );
                }
            }
        }
        QueueAction::Show { id } => {
            let Some(entry) = store.queue_entry(id).await? else {
                bail!("no queued message {id}");
            };
            let data = store.queue_data(id).await?;
            let sender = if entry.envelope.sender.is_empty() {
                "<>"
            } else {
                &entry.envelope.sender
            };
            println!("id: {}", entry.id);
            println!("sender: {sender}");
            println!("size: {} bytes", entry.size);
            println!(
                "queued: {}",
                message::date::format_rfc5322(entry.envelope.created)
            );
            if entry.envelope.expires > 0 {
                println!(
                    "expires: {}",
                    message::date::format_rfc5322(entry.envelope.expires)
                );
            }
            if let Some(envid) = &entry.envelope.envid {
                println!("envid: {envid}");
            }
            if let Some(ret) = entry.envelope.ret {
                println!("ret: {}", ret.as_str());
            }
            for r in entry.recipients {
                println!("recipient: {} {}", r.address, r.status.as_str());
                println!("    attempts: {}", r.attempts);
                if matches!(
                    r.status,
                    store::RecipientStatus::Pending | store::RecipientStatus::Deferred
                ) {
                    println!(
                        "    next attempt: {}",
                        message::date::format_rfc5322(r.next_attempt)
                    );
                }
                if let Some(error) = r.last_error {
                    println!("    last error: {error}");
                }
            }
            let header_end = message::headers::header_section(&data).end;
            println!();
            print!("{}", String::from_utf8_lossy(&data[..header_end]));
        }
        QueueAction::Retry { id } => {
            let n = store.retry_queue(id, common::clock::now()).await?;
            if let Some(id) = id
                && store.queue_entry(id).await?.is_none()
            {
                bail!("no queued message {id}");
            }
            println!("{n} recipient(s) due now");
        }
        QueueAction::Drop { id } => {
            if !store.drop_queue(id).await? {
                bail!("no queued message {id}");
            }
            println!("dropped {id}");
        }
    }
    Ok(())
}

/// A TXT value as zone-file strings of at most 255 octets each.
fn quote_txt(text: &str) -> String {
    text.as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect::<Vec<_>>()
        .join(" ")
}

async fn verify(store: &dyn Store) -> anyhow::Result<ExitCode> {
    let report = store.verify().await?;
    println!(
        "{} accounts, {} mailboxes, {} messages, {} stored message bodies, {} awaiting indexing",
        report.accounts, report.mailboxes, report.messages, report.blobs, report.index_backlog
    );
    if report.index_failures > 0 {
        println!(
            "{} messages could not be indexed: text searches do not find them (the server log \
             says why)",
            report.index_failures
        );
    }
    if report.uploads > 0 {
        println!(
            "{} unfinished uploads hold {} bytes: big APPENDs in progress or interrupted (a \
             server frees its previous run's when it starts)",
            report.uploads, report.upload_bytes
        );
    }
    if report.problems.is_empty() {
        println!("ok");
        return Ok(ExitCode::SUCCESS);
    }
    for problem in &report.problems {
        println!("problem: {problem}");
    }
    Ok(ExitCode::FAILURE)
}
