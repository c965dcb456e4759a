//! `pigeon read`: arguments and printing. The work (IMAP and POP3 sessions, the message view,
//! saving attachments) is the `ua` crate's.

use std::path::PathBuf;

use anyhow::bail;
use clap::{Args, Subcommand};
use ua::imap::{Deleted, FlagChange, Session};
use ua::view::{MessageView, display_addresses};

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

/// `pigeon read show --json`.
#[derive(serde::Serialize)]
struct Shown<'a> {
    uid: u32,
    from: String,
    to: String,
    cc: String,
    date: &'a str,
    subject: &'a str,
    text: &'a str,
    attachments: Vec<AttachmentInfo<'a>>,
}

#[derive(serde::Serialize)]
struct AttachmentInfo<'a> {
    name: &'a str,
    content_type: &'a str,
    size: usize,
}

pub async fn run(args: ReadArgs) -> anyhow::Result<()> {
    let (_, account) = ua::account::pick_account(args.account.as_deref())?;
    if let ReadAction::Pop3 { dir, delete } = &args.action {
        let delete = *delete || args.delete;
        let saved = ua::pop3::download(&account, dir, delete).await?;
        if args.json {
            println!("{}", serde_json::to_string(&displayed(&saved))?);
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
        return Ok(());
    }
    if args.pop3 {
        return pop3_read(&account, &args).await;
    }
    let mut imap = Session::connect(&account).await?;
    match args.action {
        ReadAction::Flag {
            uid,
            seen,
            unseen,
            flagged,
            unflagged,
        } => {
            let asked: Vec<FlagChange> = [
                (seen, true, "\\Seen"),
                (unseen, false, "\\Seen"),
                (flagged, true, "\\Flagged"),
                (unflagged, false, "\\Flagged"),
            ]
            .into_iter()
            .filter(|(on, _, _)| *on)
            .map(|(_, add, flag)| FlagChange { add, flag })
            .collect();
            let changes = imap.flag(&args.folder, uid, &asked).await?;
            if changes.is_empty() {
                bail!("say what to change: --seen, --unseen, --flagged or --unflagged");
            }
            println!("message {uid}: {}", changes.join(" "));
        }
        ReadAction::Move { uid, to } => {
            imap.move_to(&args.folder, uid, &to).await?;
            println!("moved {uid} to {to}");
        }
        ReadAction::Delete { uid } => match imap.delete(&args.folder, uid).await? {
            Deleted::Expunged => println!("deleted {uid}"),
            Deleted::MovedToTrash => println!("moved {uid} to Trash"),
        },
        ReadAction::Pop3 { .. } => unreachable!("handled above"),
        ReadAction::Watch { max } => {
            let mut watch = imap.watch(&args.folder).await?;
            if !args.json {
                eprintln!("watching {}; ctrl-c to stop", args.folder);
            }
            let mut seen = 0;
            'watching: loop {
                for s in imap.wait_new(&mut watch).await? {
                    if args.json {
                        println!("{}", serde_json::to_string(&s)?);
                    } else {
                        println!("{:>6} {} — {}", s.uid, truncate(&s.from, 40), s.subject);
                    }
                    use std::io::Write;
                    std::io::stdout().flush()?;
                    seen += 1;
                    if max.is_some_and(|m| seen >= m) {
                        break 'watching;
                    }
                }
            }
        }
        ReadAction::Folders => {
            let names = imap.folders().await?;
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
            let listed = imap.list(&args.folder, page, per_page, unread).await?;
            if args.json {
                println!("{}", serde_json::to_string(&listed.messages)?);
            } else {
                println!(
                    "{} — {} messages, page {page} of {}",
                    args.folder,
                    listed.total,
                    listed.total.div_ceil(per_page.max(1)).max(1)
                );
                for s in &listed.messages {
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
            let raw = imap.fetch(&args.folder, uid, false).await?;
            show(uid, &raw, args.json)?;
        }
        ReadAction::Save { uid, dir } => {
            let raw = imap.fetch(&args.folder, uid, true).await?;
            save(uid, &raw, &dir, args.json)?;
        }
    }
    imap.logout().await;
    Ok(())
}

/// list, show and save over POP3 (the maildrop is the INBOX; numbers are POP3's).
async fn pop3_read(account: &ua::Account, args: &ReadArgs) -> anyhow::Result<()> {
    let mut pop3 = ua::pop3::Session::connect(account).await?;
    match &args.action {
        ReadAction::List { page, per_page, .. } => {
            let summaries = pop3.list(*page, *per_page).await?;
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
            let raw = pop3.retrieve(*uid).await?;
            match &args.action {
                ReadAction::Save { dir, .. } => save(*uid, &raw, dir, args.json)?,
                _ => show(*uid, &raw, args.json)?,
            }
            if args.delete {
                pop3.delete(*uid).await?;
            }
        }
        _ => bail!("over POP3 only list, show, save and pop3 work: POP3 has no folders or flags"),
    }
    pop3.quit().await?;
    Ok(())
}

/// Prints a message: headers, text (HTML as text), attachments.
fn show(uid: u32, raw: &[u8], json: bool) -> anyhow::Result<()> {
    use anyhow::Context;
    let view = MessageView::parse(raw).context("the message cannot be parsed")?;
    let h = &view.headers;
    let shown = Shown {
        uid,
        from: display_addresses(&h.from),
        to: display_addresses(&h.to),
        cc: display_addresses(&h.cc),
        date: h.date.as_deref().unwrap_or_default(),
        subject: &h.subject,
        text: &view.text,
        attachments: view
            .attachments
            .iter()
            .map(|a| AttachmentInfo {
                name: &a.name,
                content_type: &a.content_type,
                size: a.size,
            })
            .collect(),
    };
    if json {
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

/// Saves a message's attachments into `dir` and says where.
fn save(uid: u32, raw: &[u8], dir: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let saved = displayed(&ua::files::save_attachments(raw, dir)?);
    if json {
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

fn displayed(paths: &[PathBuf]) -> Vec<String> {
    paths.iter().map(|p| p.display().to_string()).collect()
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).collect::<String>() + "…"
    }
}
