//! The command-line user agent: accounts (`pigeon account`) and sending (`pigeon send`).
//!
//! Accounts live in `accounts.toml` under `$PIGEON_HOME`, else `$XDG_CONFIG_HOME/pigeon`, else
//! `~/.config/pigeon`. Passwords are never stored there: they come from `PIGEON_PASSWORD`, a
//! configured command (a keyring helper, say), or a prompt.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use client::smtp::SmtpClient;
use client::tls::{Trust, client_config};
use message::compose::{Attachment, Draft, Mailbox};
use serde::{Deserialize, Serialize};

const TIMEOUT: Duration = Duration::from_secs(60);

/// One mail account of the user agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub email: String,
    pub name: Option<String>,
    pub host: String,
    /// Submission port (587 with STARTTLS, or 465 with `implicit_tls`).
    pub submission_port: u16,
    #[serde(default)]
    pub implicit_tls: bool,
    /// IMAP over TLS (993): the Sent copy, and reading.
    pub imap_port: Option<u16>,
    /// POP3 over TLS (995): `pigeon read pop3`.
    #[serde(default)]
    pub pop3_port: Option<u16>,
    pub username: String,
    /// A command whose first output line is the password.
    pub password_command: Option<String>,
    /// Trust any certificate (self-signed test servers).
    #[serde(default)]
    pub insecure: bool,
    /// Trust the certificates in this PEM file.
    pub ca: Option<PathBuf>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Accounts {
    default: Option<String>,
    #[serde(default)]
    accounts: BTreeMap<String, Account>,
}

fn accounts_path() -> anyhow::Result<PathBuf> {
    if let Some(home) = std::env::var_os("PIGEON_HOME") {
        return Ok(PathBuf::from(home).join("accounts.toml"));
    }
    let base = match std::env::var_os("XDG_CONFIG_HOME") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".config"),
    };
    Ok(base.join("pigeon").join("accounts.toml"))
}

fn load_accounts(path: &Path) -> anyhow::Result<Accounts> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).with_context(|| format!("read {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Accounts::default()),
        Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
    }
}

#[derive(Subcommand)]
pub enum AccountAction {
    /// Add (or replace) an account.
    Add {
        /// A short name for the account.
        name: String,
        #[arg(long)]
        email: String,
        /// The display name on mail you send.
        #[arg(long = "display-name")]
        display_name: Option<String>,
        /// The mail server's host name.
        #[arg(long)]
        host: String,
        #[arg(long, default_value_t = 587)]
        submission_port: u16,
        /// Submission over implicit TLS (port 465) instead of STARTTLS.
        #[arg(long)]
        implicit_tls: bool,
        /// IMAP over TLS, for the Sent copy (and reading).
        #[arg(long)]
        imap_port: Option<u16>,
        /// POP3 over TLS, for `pigeon read pop3`.
        #[arg(long)]
        pop3_port: Option<u16>,
        /// Login name; the email address by default.
        #[arg(long)]
        username: Option<String>,
        /// A command printing the password (instead of a prompt or PIGEON_PASSWORD).
        #[arg(long)]
        password_command: Option<String>,
        /// Accept any server certificate (self-signed test servers only).
        #[arg(long)]
        insecure: bool,
        /// Trust the certificates in this PEM file.
        #[arg(long)]
        ca: Option<PathBuf>,
        /// Make it the default account.
        #[arg(long)]
        default: bool,
    },
    /// List accounts.
    List,
}

pub fn account(action: AccountAction) -> anyhow::Result<()> {
    let path = accounts_path()?;
    let mut accounts = load_accounts(&path)?;
    match action {
        AccountAction::Add {
            name,
            email,
            display_name,
            host,
            submission_port,
            implicit_tls,
            imap_port,
            pop3_port,
            username,
            password_command,
            insecure,
            ca,
            default,
        } => {
            Mailbox::parse(&email).map_err(anyhow::Error::msg)?;
            let account = Account {
                username: username.unwrap_or_else(|| email.clone()),
                email,
                name: display_name,
                host,
                submission_port,
                implicit_tls,
                imap_port,
                pop3_port,
                password_command,
                insecure,
                ca,
            };
            accounts.accounts.insert(name.clone(), account);
            if default || accounts.default.is_none() {
                accounts.default = Some(name.clone());
            }
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("create {}", dir.display()))?;
            }
            std::fs::write(&path, toml::to_string_pretty(&accounts)?)
                .with_context(|| format!("write {}", path.display()))?;
            println!("saved account {name} in {}", path.display());
        }
        AccountAction::List => {
            for (name, a) in &accounts.accounts {
                let mark = if accounts.default.as_ref() == Some(name) {
                    "*"
                } else {
                    " "
                };
                println!(
                    "{mark} {name}: {} via {}:{}",
                    a.email, a.host, a.submission_port
                );
            }
        }
    }
    Ok(())
}

pub fn pick_account(name: Option<&str>) -> anyhow::Result<(String, Account)> {
    let path = accounts_path()?;
    let accounts = load_accounts(&path)?;
    let name = match name.or(accounts.default.as_deref()) {
        Some(n) => n.to_string(),
        None => bail!("no account yet: add one with `pigeon account add`"),
    };
    let account = accounts
        .accounts
        .get(&name)
        .cloned()
        .with_context(|| format!("no account named {name} in {}", path.display()))?;
    Ok((name, account))
}

pub fn password(account: &Account) -> anyhow::Result<String> {
    if let Ok(password) = std::env::var("PIGEON_PASSWORD") {
        return Ok(password);
    }
    if let Some(command) = &account.password_command {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .output()
            .with_context(|| format!("run password command {command:?}"))?;
        if !out.status.success() {
            bail!("password command {command:?} failed");
        }
        let text = String::from_utf8(out.stdout).context("password is not UTF-8")?;
        return Ok(text.lines().next().unwrap_or_default().to_string());
    }
    rpassword::prompt_password(format!("password for {}: ", account.username))
        .context("read the password")
}

pub fn tls(account: &Account) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let trust = if account.insecure {
        Trust::Insecure
    } else if let Some(ca) = &account.ca {
        Trust::PemFile(ca.clone())
    } else {
        Trust::System
    };
    client_config(&trust).map_err(|e| {
        anyhow::anyhow!(
            "TLS: {e}; trust the server's certificate with --ca FILE, or use --insecure for a self-signed test server"
        )
    })
}

#[derive(Args)]
pub struct SendArgs {
    /// The account to send from (default: the default account).
    #[arg(long)]
    account: Option<String>,
    /// Recipients, `Name <addr>` or `addr`; repeatable.
    #[arg(long, required_unless_present = "reply_to_msg")]
    to: Vec<String>,
    #[arg(long)]
    cc: Vec<String>,
    /// Blind copies: in the envelope only.
    #[arg(long)]
    bcc: Vec<String>,
    #[arg(long, default_value = "")]
    subject: String,
    /// The text body (else --body-file, else standard input).
    #[arg(long, conflicts_with = "body_file")]
    body: Option<String>,
    #[arg(long)]
    body_file: Option<PathBuf>,
    /// An HTML version of the body (sent as multipart/alternative).
    #[arg(long)]
    html: Option<PathBuf>,
    /// Files to attach; repeatable.
    #[arg(long)]
    attach: Vec<PathBuf>,
    /// Images shown inline, as FILE=CONTENT-ID (refer to them as cid:CONTENT-ID in the HTML).
    #[arg(long)]
    inline: Vec<String>,
    /// The Message-ID this replies to (threading: In-Reply-To and References).
    #[arg(long, conflicts_with = "reply_to_msg")]
    in_reply_to: Option<String>,
    /// Reply to this message (UID in --folder, over IMAP): threading headers from it, its
    /// sender as recipient unless --to is given, and "Re: " + its subject unless --subject.
    #[arg(long)]
    reply_to_msg: Option<u32>,
    /// The folder of --reply-to-msg.
    #[arg(long, default_value = "INBOX")]
    folder: String,
    /// Print the message instead of sending it.
    #[arg(long)]
    dry_run: bool,
}

fn read_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("read {}", path.display()))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "attachment".into())
}

/// A file as an attachment (inline with a Content-ID when given).
fn attachment(path: &Path, content_id: Option<String>) -> anyhow::Result<Attachment> {
    let data = read_file(path)?;
    let filename = file_name(path);
    Ok(Attachment {
        content_type: message::compose::guess_type(&filename, &data).into(),
        filename,
        data,
        content_id,
    })
}

/// A TLS connection to the account's host on `port` (IMAP or POP3 over implicit TLS).
pub async fn tls_stream(
    account: &Account,
    port: u16,
) -> anyhow::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let addr = resolve(&account.host, port).await?;
    let tcp = tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| anyhow::anyhow!("cannot reach {}:{port}: timed out", account.host))?
        .with_context(|| format!("cannot reach {}:{port}", account.host))?;
    let name = rustls_pki_types::ServerName::try_from(account.host.clone())?;
    tokio_rustls::TlsConnector::from(tls(account)?)
        .connect(name, tcp)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "TLS with {}:{port}: {e}; use --ca FILE, or --insecure for a self-signed test server",
                account.host
            )
        })
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub async fn send(args: SendArgs) -> anyhow::Result<()> {
    let (_, account) = pick_account(args.account.as_deref())?;
    let parse = |list: &[String]| -> anyhow::Result<Vec<Mailbox>> {
        list.iter()
            .map(|a| Mailbox::parse(a).map_err(anyhow::Error::msg))
            .collect()
    };
    let mut to = parse(&args.to)?;
    let mut subject = args.subject.clone();
    let mut in_reply_to = args
        .in_reply_to
        .as_ref()
        .map(|id| id.trim_matches(['<', '>']).to_string());
    let mut references = Vec::new();
    if let Some(uid) = args.reply_to_msg {
        let original = crate::read::original_headers(&account, &args.folder, uid).await?;
        if to.is_empty() {
            to.push(
                original
                    .reply_to
                    .context("the message has no sender to reply to")?,
            );
        }
        if subject.is_empty() {
            subject = if original.subject.to_ascii_lowercase().starts_with("re:") {
                original.subject.clone()
            } else {
                format!("Re: {}", original.subject)
            };
        }
        references = original.references;
        in_reply_to = original.message_id;
    }
    let cc = parse(&args.cc)?;
    let bcc = parse(&args.bcc)?;
    let text = match (&args.body, &args.body_file) {
        (Some(body), _) => body.clone(),
        (None, Some(path)) => String::from_utf8(read_file(path)?)
            .with_context(|| format!("{} is not UTF-8 text", path.display()))?,
        (None, None) if !std::io::stdin().is_terminal() => {
            let mut body = String::new();
            std::io::stdin()
                .read_to_string(&mut body)
                .context("read the body from standard input (it must be UTF-8)")?;
            body
        }
        (None, None) => String::new(),
    };
    let html = match &args.html {
        Some(path) => Some(
            String::from_utf8(read_file(path)?)
                .with_context(|| format!("{} is not UTF-8", path.display()))?,
        ),
        None => None,
    };
    let mut attachments = Vec::new();
    for path in &args.attach {
        attachments.push(attachment(path, None)?);
    }
    for spec in &args.inline {
        let (file, cid) = spec
            .rsplit_once('=')
            .with_context(|| format!("--inline {spec:?}: expected FILE=CONTENT-ID"))?;
        attachments.push(attachment(Path::new(file), Some(cid.to_string()))?);
    }
    let domain = account
        .email
        .rsplit_once('@')
        .map(|(_, d)| d.to_string())
        .unwrap_or_else(|| "localhost".into());
    let unique: u64 = rand_u64();
    let draft = Draft {
        from: Mailbox {
            name: account.name.clone(),
            address: account.email.clone(),
        },
        to,
        cc,
        subject,
        text: Some(text),
        html,
        attachments,
        in_reply_to,
        references,
        message_id: format!("{:x}.{unique:016x}@{domain}", unix_now()),
        date: unix_now(),
    };
    let message = message::compose::build(&draft);
    if args.dry_run {
        use std::io::Write;
        std::io::stdout().write_all(&message)?;
        return Ok(());
    }
    let recipients: Vec<String> = draft
        .to
        .iter()
        .chain(&draft.cc)
        .chain(&bcc)
        .map(|m| m.address.clone())
        .collect();
    let password = password(&account)?;
    submit(&account, &password, &recipients, &message).await?;
    println!("sent to {}", recipients.join(", "));
    if let Some(port) = account.imap_port {
        save_sent(&account, port, &password, &message)
            .await
            .context("sent, but the copy to the Sent folder failed")?;
    }
    Ok(())
}

fn rand_u64() -> u64 {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

async fn resolve(host: &str, port: u16) -> anyhow::Result<std::net::SocketAddr> {
    tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("cannot resolve {host}"))?
        .next()
        .with_context(|| format!("{host} has no address"))
}

async fn submit(
    account: &Account,
    password: &str,
    recipients: &[String],
    message: &[u8],
) -> anyhow::Result<()> {
    let addr = resolve(&account.host, account.submission_port).await?;
    let tls = tls(account)?;
    let unreachable = || format!("cannot reach {}:{}", account.host, account.submission_port);
    let mut smtp = if account.implicit_tls {
        SmtpClient::connect_tls(addr, &account.host, tls, TIMEOUT)
            .await
            .map_err(explain)
            .with_context(unreachable)?
            .boxed()
    } else {
        let mut plain = SmtpClient::connect(addr, TIMEOUT)
            .await
            .map_err(explain)
            .with_context(unreachable)?;
        plain.ehlo("pigeon-ua").await.map_err(explain)?;
        if !plain.has_extension("STARTTLS") {
            bail!(
                "{} does not offer STARTTLS; refusing to send the password in the clear",
                account.host
            );
        }
        plain
            .starttls(&account.host, tls)
            .await
            .map_err(explain)?
            .boxed()
    };
    smtp.ehlo("pigeon-ua").await.map_err(explain)?;
    if let Some(limit) = smtp.size_limit()
        && limit > 0
        && message.len() as u64 > limit
    {
        bail!(
            "the message is {} bytes; {} accepts at most {limit}",
            message.len(),
            account.host
        );
    }
    smtp.authenticate(&account.username, password)
        .await
        .map_err(explain)
        .context("authentication failed")?;
    let to: Vec<&str> = recipients.iter().map(String::as_str).collect();
    let delivery = smtp
        .send(&account.email, &to, message)
        .await
        .map_err(explain)
        .context("the server refused the message")?;
    for (rcpt, reply) in &delivery.refused {
        eprintln!("warning: {rcpt} refused: {reply}");
    }
    let _ = smtp.quit().await;
    Ok(())
}

async fn save_sent(
    account: &Account,
    port: u16,
    password: &str,
    message: &[u8],
) -> anyhow::Result<()> {
    let stream = tls_stream(account, port).await?;
    let mut imap = client::imap::ImapClient::start(stream, TIMEOUT).await?;
    imap.login(&account.username, password).await?;
    imap.append("Sent", "(\\Seen)", message).await?;
    let _ = imap.command("LOGOUT").await;
    Ok(())
}

/// Client errors in words a user can act on.
fn explain(e: client::smtp::Error) -> anyhow::Error {
    match e {
        client::smtp::Error::Tls(text) if text.contains("certificate") => anyhow::anyhow!(
            "TLS: the server's certificate is not trusted ({text}); use --ca FILE, or --insecure for a self-signed test server"
        ),
        other => anyhow::Error::new(other),
    }
}
