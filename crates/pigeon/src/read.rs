//! `pigeon read`: the user agent's reading side over IMAP (implicit TLS): list a folder, show
//! a message as text, save its attachments, list folders. `--json` for scripts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use client::imap::{ImapClient, quote, split_responses};
use imap_proto::token::{Token, tokenize_response};
use mail_parser::{MessageParser, MimeHeaders};
use serde::Serialize;

use crate::ua::{Account, password, pick_account, tls_stream};

const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Args)]
pub struct ReadArgs {
    /// The account (default: the default account).
    #[arg(long, global = true)]
    account: Option<String>,
    /// The folder.
    #[arg(long, global = true, default_value = "INBOX")]
    folder: String,
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
    /// Read over POP3 instead of IMAP (list, show and save; message numbers instead of UIDs).
    #[arg(long, global = true)]
    pop3: bool,
    /// With --pop3: delete what was shown or saved from the server (download-and-delete);
    /// without it the mail stays there (download-and-keep).
    #[arg(long, global = true, requires = "pop3", conflicts_with = "keep")]
    delete: bool,
    /// With --pop3: leave the mail on the server (download-and-keep; the default).
    #[arg(long, global = true, requires = "pop3")]
    keep: bool,
    #[command(subcommand)]
    action: ReadAction,
}

#[derive(Subcommand)]
pub enum ReadAction {
    /// Messages, newest first.
    List {
        /// Page number, from 1.
        #[arg(long, default_value_t = 1)]
        page: usize,
        #[arg(long, default_value_t = 20)]
        per_page: usize,
        /// Only unread messages.
        #[arg(long)]
        unread: bool,
    },
    /// One message: headers, its text (HTML turned to text), its attachments. Marks it read.
    Show { uid: u32 },
    /// Save a message's attachments under their own (sanitised) names.
    Save {
        uid: u32,
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// The folders.
    Folders,
    /// Mark a message read or unread, flagged or not.
    Flag {
        uid: u32,
        #[arg(long)]
        seen: bool,
        #[arg(long, conflicts_with = "seen")]
        unseen: bool,
        #[arg(long)]
        flagged: bool,
        #[arg(long, conflicts_with = "flagged")]
        unflagged: bool,
    },
    /// Move a message to another folder.
    Move { uid: u32, to: String },
    /// Move a message to Trash; in Trash, delete it for good.
    Delete { uid: u32 },
    /// Download every message over POP3 into a folder of .eml files: download-and-keep (the
    /// default; messages already downloaded are skipped), or download-and-delete.
    Pop3 {
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Delete the messages from the server once downloaded.
        #[arg(long)]
        delete: bool,
    },
    /// Wait for new mail (IMAP IDLE) and print each message as it arrives.
    Watch {
        /// Stop after this many new messages.
        #[arg(long)]
        max: Option<usize>,
    },
}

type Session = ImapClient<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

async fn connect(account: &Account) -> anyhow::Result<Session> {
    let port = account
        .imap_port
        .context("the account has no IMAP port: `pigeon account add ... --imap-port 993`")?;
    let stream = tls_stream(account, port).await?;
    let mut imap = ImapClient::start(stream, TIMEOUT).await?;
    imap.login(&account.username, &password(account)?)
        .await
        .context("login failed")?;
    Ok(imap)
}

/// The items of each `* n FETCH (...)` response.
fn fetch_items(untagged: &[u8]) -> Vec<Vec<Token>> {
    split_responses(untagged)
        .into_iter()
        .filter_map(|line| {
            let text = line.strip_prefix(b"* ")?;
            let space = text.iter().position(|&b| b == b' ')?;
            let rest = text[space + 1..].strip_prefix(b"FETCH ")?;
            match tokenize_response(rest).ok()?.pop()? {
                Token::List(items) => Some(items),
                _ => None,
            }
        })
        .collect()
}

/// The value after the item named `name` (case-insensitive; `BODY[...]` by prefix).
fn item<'a>(items: &'a [Token], name: &str) -> Option<&'a Token> {
    items.chunks(2).find_map(|pair| match pair {
        [Token::Atom(n), value] if n.eq_ignore_ascii_case(name) || n.starts_with(name) => {
            Some(value)
        }
        _ => None,
    })
}

fn atom_u64(token: Option<&Token>) -> Option<u64> {
    match token? {
        Token::Atom(a) => a.parse().ok(),
        _ => None,
    }
}

fn flag_list(token: Option<&Token>) -> Vec<String> {
    match token {
        Some(Token::List(flags)) => flags.iter().filter_map(Token::as_astring).collect(),
        _ => Vec::new(),
    }
}

/// Whether a BODYSTRUCTURE has a part with an attachment disposition.
/// Whether a BODYSTRUCTURE names an attachment. A loop over an explicit stack: the
/// structure comes from the server, and its nesting must not cost this process's stack.
fn has_attachment(token: &Token) -> bool {
    let mut stack = vec![token];
    while let Some(token) = stack.pop() {
        match token {
            Token::List(items) => stack.extend(items),
            Token::String(s) if s.eq_ignore_ascii_case(b"attachment") => return true,
            _ => {}
        }
    }
    false
}

#[derive(Serialize)]
struct Summary {
    uid: u32,
    flags: Vec<String>,
    unread: bool,
    from: String,
    subject: String,
    date: String,
    size: u64,
    attachment: bool,
}

#[derive(Serialize)]
struct Shown {
    uid: u32,
    from: String,
    to: String,
    cc: String,
    date: String,
    subject: String,
    text: String,
    attachments: Vec<AttachmentInfo>,
}

#[derive(Serialize)]
struct AttachmentInfo {
    name: String,
    content_type: String,
    size: usize,
}

fn addresses(a: Option<&mail_parser::Address<'_>>) -> String {
    a.map(|a| {
        a.iter()
            .map(|m| match (m.name(), m.address()) {
                (Some(n), Some(addr)) => format!("{n} <{addr}>"),
                (None, Some(addr)) => addr.to_string(),
                (Some(n), None) => n.to_string(),
                (None, None) => String::new(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    })
    .unwrap_or_default()
}

/// HTML to readable text: block ends become line breaks, tags go, common entities decode.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    let mut skip_until: Option<&str> = None;
    while let Some(open) = rest.find('<') {
        if skip_until.is_none() {
            out.push_str(&rest[..open]);
        }
        let Some(close) = rest[open..].find('>') else {
            rest = "";
            break;
        };
        let tag = rest[open + 1..open + close].trim().to_ascii_lowercase();
        let name = tag
            .trim_start_matches('/')
            .split([' ', '/'])
            .next()
            .unwrap_or("");
        if let Some(end) = skip_until {
            if tag == end {
                skip_until = None;
            }
        } else if name == "style" || name == "script" {
            skip_until = Some(if name == "style" { "/style" } else { "/script" });
        } else if matches!(
            name,
            "br" | "p" | "div" | "tr" | "li" | "h1" | "h2" | "h3" | "h4" | "table"
        ) && (tag.starts_with('/') || name == "br")
        {
            out.push('\n');
        }
        rest = &rest[open + close + 1..];
    }
    if skip_until.is_none() {
        out.push_str(rest);
    }
    let decoded = out
        .replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    let mut text = String::new();
    for line in decoded.lines() {
        let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
        if line.is_empty() && text.ends_with("\n\n") {
            continue;
        }
        text.push_str(&line);
        text.push('\n');
    }
    text.trim().to_string() + "\n"
}

/// A file name that stays inside the target directory: no path, no control characters, no
/// leading dots.
pub fn safe_file_name(name: &str, index: usize) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = base
        .chars()
        .map(|c| if c.is_control() || c == ':' { '_' } else { c })
        .collect();
    let cleaned = cleaned.trim().trim_start_matches('.').to_string();
    if cleaned.is_empty() {
        format!("attachment-{index}")
    } else {
        cleaned
    }
}

/// `dir/name`, with `-1`, `-2`... before the extension if it exists already.
fn unused_path(dir: &Path, name: &str) -> PathBuf {
    let first = dir.join(name);
    if !first.exists() {
        return first;
    }
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s, format!(".{e}")),
        _ => (name, String::new()),
    };
    (1..)
        .map(|i| dir.join(format!("{stem}-{i}{ext}")))
        .find(|p| !p.exists())
        .expect("some free name")
}

pub async fn run(args: ReadArgs) -> anyhow::Result<()> {
    let (_, account) = pick_account(args.account.as_deref())?;
    if let ReadAction::Pop3 { dir, delete } = &args.action {
        return pop3_download(&account, dir, *delete || args.delete, args.json).await;
    }
    if args.pop3 {
        return pop3_read(&account, &args).await;
    }
    let mut imap = connect(&account).await?;
    match args.action {
        ReadAction::Flag {
            uid,
            seen,
            unseen,
            flagged,
            unflagged,
        } => {
            select(&mut imap, &args.folder).await?;
            let mut changes = Vec::new();
            for (on, sign, flag) in [
                (seen, '+', "\\Seen"),
                (unseen, '-', "\\Seen"),
                (flagged, '+', "\\Flagged"),
                (unflagged, '-', "\\Flagged"),
            ] {
                if on {
                    imap.command(&format!("UID STORE {uid} {sign}FLAGS.SILENT ({flag})"))
                        .await?;
                    changes.push(format!("{sign}{flag}"));
                }
            }
            if changes.is_empty() {
                bail!("say what to change: --seen, --unseen, --flagged or --unflagged");
            }
            println!("message {uid}: {}", changes.join(" "));
        }
        ReadAction::Move { uid, to } => {
            select(&mut imap, &args.folder).await?;
            imap.command(&format!("UID MOVE {uid} {}", quote(&to)))
                .await
                .with_context(|| format!("move {uid} to {to}"))?;
            println!("moved {uid} to {to}");
        }
        ReadAction::Delete { uid } => {
            select(&mut imap, &args.folder).await?;
            if args.folder.eq_ignore_ascii_case("Trash") {
                imap.command(&format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)"))
                    .await?;
                imap.command(&format!("UID EXPUNGE {uid}")).await?;
                println!("deleted {uid}");
            } else {
                imap.command(&format!("UID MOVE {uid} Trash"))
                    .await
                    .with_context(|| format!("move {uid} to Trash"))?;
                println!("moved {uid} to Trash");
            }
        }
        ReadAction::Pop3 { .. } => unreachable!("handled above"),
        ReadAction::Watch { max } => {
            watch(&mut imap, &args.folder, args.json, max).await?;
        }
        ReadAction::Folders => {
            let list = imap.command("LIST \"\" \"*\"").await?;
            let mut names = Vec::new();
            for line in split_responses(&list.untagged) {
                if let Some(rest) = line.strip_prefix(b"* LIST ")
                    && let Ok(tokens) = tokenize_response(rest)
                    && let Some(name) = tokens.get(2).and_then(Token::as_astring)
                {
                    names.push(name);
                }
            }
            if args.json {
                println!("{}", serde_json::to_string(&names)?);
            } else {
                for name in names {
                    println!("{name}");
                }
            }
        }
        ReadAction::List {
            page,
            per_page,
            unread,
        } => {
            imap.command(&format!("EXAMINE {}", quote(&args.folder)))
                .await
                .with_context(|| format!("no folder {}", args.folder))?;
            let search = imap
                .command(if unread {
                    "UID SEARCH UNSEEN"
                } else {
                    "UID SEARCH ALL"
                })
                .await?;
            let mut uids: Vec<u32> = String::from_utf8_lossy(&search.untagged)
                .lines()
                .filter_map(|l| l.strip_prefix("* SEARCH"))
                .flat_map(|l| {
                    l.split_whitespace()
                        .filter_map(|n| n.parse().ok())
                        .collect::<Vec<_>>()
                })
                .collect();
            uids.sort_unstable_by(|a, b| b.cmp(a));
            let shown: Vec<u32> = uids
                .iter()
                .skip(page.saturating_sub(1) * per_page)
                .take(per_page)
                .copied()
                .collect();
            let mut summaries = Vec::new();
            if !shown.is_empty() {
                let set = shown
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(",");
                let fetched = imap
                    .command(&format!(
                        "UID FETCH {set} (UID FLAGS RFC822.SIZE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])"
                    ))
                    .await?;
                for items in fetch_items(&fetched.untagged) {
                    summaries.push(summarize(&items));
                }
                summaries.sort_by_key(|s| std::cmp::Reverse(s.uid));
            }
            if args.json {
                println!("{}", serde_json::to_string(&summaries)?);
            } else {
                println!(
                    "{} — {} messages, page {page} of {}",
                    args.folder,
                    uids.len(),
                    uids.len().div_ceil(per_page.max(1)).max(1)
                );
                for s in &summaries {
                    println!(
                        "{:>6} {}{} {:<28} {:<40} {:>8} {}",
                        s.uid,
                        if s.unread { "N" } else { " " },
                        if s.attachment { "@" } else { " " },
                        truncate(&s.from, 28),
                        truncate(&s.subject, 40),
                        s.size,
                        s.date
                    );
                }
            }
        }
        ReadAction::Show { uid } => {
            let raw = fetch_message(&mut imap, &args.folder, uid, false).await?;
            show(uid, &raw, args.json)?;
        }
        ReadAction::Save { uid, dir } => {
            let raw = fetch_message(&mut imap, &args.folder, uid, true).await?;
            save(uid, &raw, &dir, args.json)?;
        }
    }
    let _ = imap.command("LOGOUT").await;
    Ok(())
}

/// What a reply needs from the message it answers.
pub struct Original {
    pub message_id: Option<String>,
    pub references: Vec<String>,
    pub subject: String,
    /// Reply-To, else From.
    pub reply_to: Option<message::compose::Mailbox>,
}

/// The threading headers of message `uid` in `folder`.
pub async fn original_headers(
    account: &Account,
    folder: &str,
    uid: u32,
) -> anyhow::Result<Original> {
    let mut imap = connect(account).await?;
    select(&mut imap, folder).await?;
    let fetched = imap
        .command(&format!(
            "UID FETCH {uid} (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID REFERENCES SUBJECT FROM REPLY-TO)])"
        ))
        .await?;
    let _ = imap.command("LOGOUT").await;
    let header = fetch_items(&fetched.untagged)
        .into_iter()
        .find_map(|items| match item(&items, "BODY[") {
            Some(Token::String(h)) => Some(h.clone()),
            _ => None,
        })
        .with_context(|| format!("no message {uid} in {folder}"))?;
    let parsed = MessageParser::default()
        .parse_headers(&header)
        .context("unreadable headers")?;
    let first = |a: Option<&mail_parser::Address<'_>>| {
        a.and_then(|a| a.first()).and_then(|m| {
            Some(message::compose::Mailbox {
                name: m.name().map(str::to_string),
                address: m.address()?.to_string(),
            })
        })
    };
    Ok(Original {
        message_id: parsed.message_id().map(str::to_string),
        references: parsed
            .references()
            .as_text_list()
            .map(|l| l.iter().map(|r| r.to_string()).collect())
            .unwrap_or_else(|| {
                parsed
                    .references()
                    .as_text()
                    .map(|r| vec![r.to_string()])
                    .unwrap_or_default()
            }),
        subject: parsed.subject().unwrap_or_default().to_string(),
        reply_to: first(parsed.reply_to()).or_else(|| first(parsed.from())),
    })
}

/// Prints a message: headers, text (HTML as text), attachments.
fn show(uid: u32, raw: &[u8], json: bool) -> anyhow::Result<()> {
    let args_json = json;
    // Depth-bounded (issue 14): a message nested 100,000 levels deep cannot overflow.
    let m = message::mime::parse(raw).context("the message cannot be parsed")?;
    let text = match message::text::readable_text(raw) {
        Some((html, true)) => html_to_text(&html),
        Some((text, false)) => text,
        None => String::new(),
    };
    let shown = Shown {
        uid,
        from: addresses(m.from()),
        to: addresses(m.to()),
        cc: addresses(m.cc()),
        date: m.date().map(|d| d.to_rfc3339()).unwrap_or_default(),
        subject: m.subject().unwrap_or_default().to_string(),
        text,
        attachments: m
            .attachments()
            .map(|a| AttachmentInfo {
                name: a.attachment_name().unwrap_or("").to_string(),
                content_type: a
                    .content_type()
                    .map(|c| match c.subtype() {
                        Some(sub) => format!("{}/{sub}", c.ctype()),
                        None => c.ctype().to_string(),
                    })
                    .unwrap_or_default(),
                size: a.contents().len(),
            })
            .collect(),
    };
    if args_json {
        println!("{}", serde_json::to_string(&shown)?);
    } else {
        println!("From: {}", shown.from);
        println!("To: {}", shown.to);
        if !shown.cc.is_empty() {
            println!("Cc: {}", shown.cc);
        }
        println!("Date: {}", shown.date);
        println!("Subject: {}", shown.subject);
        println!();
        print!("{}", shown.text);
        if !shown.text.ends_with('\n') {
            println!();
        }
        for a in &shown.attachments {
            println!(
                "[attachment] {} ({}, {} bytes)",
                a.name, a.content_type, a.size
            );
        }
    }
    Ok(())
}

/// Saves a message's attachments into `dir`.
fn save(uid: u32, raw: &[u8], dir: &Path, json: bool) -> anyhow::Result<()> {
    let args_json = json;
    let dir = dir.to_path_buf();
    // Depth-bounded (issue 14): a message nested 100,000 levels deep cannot overflow.
    let m = message::mime::parse(raw).context("the message cannot be parsed")?;
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let mut saved = Vec::new();
    for (i, a) in m.attachments().enumerate() {
        let name = safe_file_name(a.attachment_name().unwrap_or(""), i + 1);
        let path = unused_path(&dir, &name);
        std::fs::write(&path, a.contents()).with_context(|| format!("write {}", path.display()))?;
        saved.push(path.display().to_string());
    }
    if args_json {
        println!("{}", serde_json::to_string(&saved)?);
    } else if saved.is_empty() {
        println!("message {uid} has no attachments");
    } else {
        for path in saved {
            println!("saved {path}");
        }
    }
    Ok(())
}

type Pop3Session = client::pop3::Pop3Client<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

async fn pop3_connect(account: &Account) -> anyhow::Result<Pop3Session> {
    let port = account
        .pop3_port
        .context("the account has no POP3 port: `pigeon account add ... --pop3-port 995`")?;
    let stream = tls_stream(account, port).await?;
    let mut pop3 = client::pop3::Pop3Client::start(stream, TIMEOUT).await?;
    pop3.login(&account.username, &password(account)?)
        .await
        .context("login failed")?;
    Ok(pop3)
}

/// list, show and save over POP3 (the maildrop is the INBOX; numbers are POP3's).
async fn pop3_read(account: &Account, args: &ReadArgs) -> anyhow::Result<()> {
    let mut pop3 = pop3_connect(account).await?;
    match &args.action {
        ReadAction::List { page, per_page, .. } => {
            let sizes = pop3.list().await?;
            let mut summaries = Vec::new();
            for &(number, size) in sizes
                .iter()
                .rev()
                .skip(page.saturating_sub(1) * per_page)
                .take(*per_page)
            {
                let header = pop3.top(number, 0).await?;
                let parsed = MessageParser::default().parse_headers(&header);
                let (from, subject, date) = from_subject_date(&header);
                summaries.push(Summary {
                    uid: number as u32,
                    flags: Vec::new(),
                    unread: true,
                    from,
                    subject,
                    date,
                    size,
                    attachment: parsed
                        .as_ref()
                        .and_then(|m| m.content_type())
                        .is_some_and(|c| {
                            c.ctype().eq_ignore_ascii_case("multipart")
                                && c.subtype().is_some_and(|s| s.eq_ignore_ascii_case("mixed"))
                        }),
                });
            }
            if args.json {
                println!("{}", serde_json::to_string(&summaries)?);
            } else {
                for s in &summaries {
                    println!(
                        "{:>6} {:<28} {:<40} {:>8} {}",
                        s.uid,
                        truncate(&s.from, 28),
                        truncate(&s.subject, 40),
                        s.size,
                        s.date
                    );
                }
            }
        }
        ReadAction::Show { uid } | ReadAction::Save { uid, .. } => {
            let raw = pop3
                .retr(*uid as usize)
                .await
                .with_context(|| format!("no message {uid}"))?;
            match &args.action {
                ReadAction::Save { dir, .. } => save(*uid, &raw, dir, args.json)?,
                _ => show(*uid, &raw, args.json)?,
            }
            if args.delete {
                pop3.dele(*uid as usize).await?;
            }
        }
        _ => bail!("over POP3 only list, show, save and pop3 work: POP3 has no folders or flags"),
    }
    pop3.quit().await?;
    Ok(())
}

/// POP3 over TLS: every message to `dir/<UIDL>.eml`; with `delete`, removed from the server
/// (at QUIT, so an interrupted download deletes nothing).
async fn pop3_download(
    account: &Account,
    dir: &Path,
    delete: bool,
    json: bool,
) -> anyhow::Result<()> {
    let mut pop3 = pop3_connect(account).await?;
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let mut saved = Vec::new();
    for (number, uidl) in pop3.uidl().await? {
        let path = dir.join(format!("{}.eml", safe_file_name(&uidl, number)));
        if !path.exists() {
            let message = pop3.retr(number).await?;
            std::fs::write(&path, &message).with_context(|| format!("write {}", path.display()))?;
            saved.push(path.display().to_string());
        }
        if delete {
            pop3.dele(number).await?;
        }
    }
    pop3.quit().await?;
    if json {
        println!("{}", serde_json::to_string(&saved)?);
    } else {
        println!(
            "downloaded {} new message(s){}",
            saved.len(),
            if delete {
                "; deleted from the server"
            } else {
                "; kept on the server"
            }
        );
    }
    Ok(())
}

async fn select(imap: &mut Session, folder: &str) -> anyhow::Result<String> {
    let response = imap
        .command(&format!("SELECT {}", quote(folder)))
        .await
        .with_context(|| format!("no folder {folder}"))?;
    Ok(String::from_utf8_lossy(&response.untagged).into_owned())
}

/// The summaries of messages with UIDs above `after`.
async fn new_messages(imap: &mut Session, after: u32) -> anyhow::Result<Vec<Summary>> {
    let fetched = imap
        .command(&format!(
            "UID FETCH {}:* (UID FLAGS RFC822.SIZE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])",
            after + 1
        ))
        .await?;
    let mut out: Vec<Summary> = fetch_items(&fetched.untagged)
        .iter()
        .map(|items| summarize(items))
        .filter(|s| s.uid > after)
        .collect();
    out.sort_by_key(|s| s.uid);
    Ok(out)
}

/// Waits in IDLE and prints new messages; IDLE is renewed well within the server's timeout.
async fn watch(
    imap: &mut Session,
    folder: &str,
    json: bool,
    max: Option<usize>,
) -> anyhow::Result<()> {
    let selected = select(imap, folder).await?;
    let uidnext: u32 = selected
        .split("UIDNEXT ")
        .nth(1)
        .and_then(|r| r.split(']').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(1);
    let mut last = uidnext.saturating_sub(1);
    let mut seen = 0;
    if !json {
        eprintln!("watching {folder}; ctrl-c to stop");
    }
    loop {
        let tag = imap.idle().await?;
        let started = std::time::Instant::now();
        loop {
            match imap.read_untagged_line().await {
                Ok(line) if line.ends_with("EXISTS") => break,
                Ok(_) => {}
                Err(client::LineError::Timeout(_)) => {
                    if started.elapsed() > Duration::from_secs(20 * 60) {
                        break;
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        imap.done(&tag).await?;
        for s in new_messages(imap, last).await? {
            last = last.max(s.uid);
            if json {
                println!("{}", serde_json::to_string(&s)?);
            } else {
                println!("{:>6} {} — {}", s.uid, truncate(&s.from, 40), s.subject);
            }
            use std::io::Write;
            std::io::stdout().flush()?;
            seen += 1;
            if max.is_some_and(|m| seen >= m) {
                return Ok(());
            }
        }
    }
}

fn summarize(items: &[Token]) -> Summary {
    let header = match item(items, "BODY[") {
        Some(Token::String(h)) => h.clone(),
        _ => Vec::new(),
    };
    let (from, subject, date) = from_subject_date(&header);
    let flags = flag_list(item(items, "FLAGS"));
    Summary {
        uid: atom_u64(item(items, "UID")).unwrap_or(0) as u32,
        unread: !flags.iter().any(|f| f.eq_ignore_ascii_case("\\Seen")),
        flags,
        from,
        subject,
        date,
        size: atom_u64(item(items, "RFC822.SIZE")).unwrap_or(0),
        attachment: item(items, "BODYSTRUCTURE").is_some_and(has_attachment),
    }
}

/// From, Subject and Date (RFC 3339) of a header block, decoded; empty when missing.
fn from_subject_date(header: &[u8]) -> (String, String, String) {
    let Some(m) = MessageParser::default().parse_headers(header) else {
        return Default::default();
    };
    (
        addresses(m.from()),
        m.subject().unwrap_or_default().to_string(),
        m.date().map(|d| d.to_rfc3339()).unwrap_or_default(),
    )
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).collect::<String>() + "…"
    }
}

async fn fetch_message(
    imap: &mut Session,
    folder: &str,
    uid: u32,
    peek: bool,
) -> anyhow::Result<Vec<u8>> {
    select(imap, folder).await?;
    let item = if peek { "BODY.PEEK[]" } else { "BODY[]" };
    let fetched = imap.command(&format!("UID FETCH {uid} ({item})")).await?;
    for items in fetch_items(&fetched.untagged) {
        if let Some(Token::String(raw)) = self::item(&items, "BODY[") {
            return Ok(raw.clone());
        }
    }
    bail!("no message {uid} in {folder}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_becomes_text() {
        assert_eq!(
            html_to_text("<style>p{}</style><p>Hello&nbsp;<b>world</b></p><p>a &lt; b &amp; c</p>"),
            "Hello world\na < b & c\n"
        );
    }

    #[test]
    fn file_names_cannot_escape() {
        assert_eq!(safe_file_name("../../etc/passwd", 1), "passwd");
        assert_eq!(safe_file_name("..\\..\\boot.ini", 1), "boot.ini");
        assert_eq!(safe_file_name(".hidden", 1), "hidden");
        assert_eq!(safe_file_name("", 3), "attachment-3");
        assert_eq!(safe_file_name("..", 2), "attachment-2");
        assert_eq!(safe_file_name("a\nb.txt", 1), "a_b.txt");
        assert_eq!(safe_file_name("说明.txt", 1), "说明.txt");
    }

    #[test]
    fn fetch_responses_with_literals_split_into_items() {
        let data = b"* 1 FETCH (UID 7 FLAGS (\\Seen) BODY[] {5}\r\nab\r\nc)\r\n* 2 FETCH (UID 8 FLAGS ())\r\n";
        let all = fetch_items(data);
        assert_eq!(all.len(), 2);
        assert_eq!(atom_u64(item(&all[0], "UID")), Some(7));
        assert_eq!(
            item(&all[0], "BODY["),
            Some(&Token::String(b"ab\r\nc".to_vec()))
        );
        assert_eq!(flag_list(item(&all[0], "FLAGS")), ["\\Seen"]);
        assert_eq!(atom_u64(item(&all[1], "UID")), Some(8));
    }
}
