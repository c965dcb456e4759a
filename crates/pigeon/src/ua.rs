//! `pigeon account` and `pigeon send`: arguments and printing. Accounts, drafts, submission
//! and the Sent copy are the `ua` crate's.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use message::compose::Mailbox;
use ua::Account;
use ua::send::{Compose, read_file};

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
            let path = ua::account::add_account(&name, account, default)?;
            println!("saved account {name} in {}", path.display());
        }
        AccountAction::List => {
            let accounts = ua::account::load_accounts(&ua::account::accounts_path()?)?;
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

fn mailboxes(list: &[String]) -> anyhow::Result<Vec<Mailbox>> {
    list.iter()
        .map(|a| Mailbox::parse(a).map_err(anyhow::Error::msg))
        .collect()
}

pub async fn send(args: SendArgs) -> anyhow::Result<()> {
    let (_, account) = ua::account::pick_account(args.account.as_deref())?;
    let mut compose = Compose {
        to: mailboxes(&args.to)?,
        subject: args.subject.clone(),
        in_reply_to: args
            .in_reply_to
            .as_ref()
            .map(|id| id.trim_matches(['<', '>']).to_string()),
        ..Compose::default()
    };
    if let Some(uid) = args.reply_to_msg {
        compose.reply_to(ua::imap::original_headers(&account, &args.folder, uid).await?)?;
    }
    compose.cc = mailboxes(&args.cc)?;
    let bcc = mailboxes(&args.bcc)?;
    compose.text = match (&args.body, &args.body_file) {
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
    compose.html = match &args.html {
        Some(path) => Some(
            String::from_utf8(read_file(path)?)
                .with_context(|| format!("{} is not UTF-8", path.display()))?,
        ),
        None => None,
    };
    for path in &args.attach {
        compose.attachments.push(ua::send::attachment(path, None)?);
    }
    for spec in &args.inline {
        let (file, cid) = spec
            .rsplit_once('=')
            .with_context(|| format!("--inline {spec:?}: expected FILE=CONTENT-ID"))?;
        compose.attachments.push(ua::send::attachment(
            Path::new(file),
            Some(cid.to_string()),
        )?);
    }
    let draft = compose.draft(&account);
    let message = message::compose::build(&draft);
    if args.dry_run {
        use std::io::Write;
        std::io::stdout().write_all(&message)?;
        return Ok(());
    }
    let recipients = ua::send::recipients(&draft, &bcc);
    let password = ua::account::password(&account)?;
    let submitted = ua::send::submit(&account, &password, &recipients, &message).await?;
    for (rcpt, reply) in &submitted.refused {
        eprintln!("warning: {rcpt} refused: {reply}");
    }
    println!("sent to {}", recipients.join(", "));
    if let Some(port) = account.imap_port {
        ua::send::save_sent(&account, port, &password, &message)
            .await
            .context("sent, but the copy to the Sent folder failed")?;
    }
    Ok(())
}
