//! Reading over IMAP with implicit TLS: folders, a page of a folder, one message, flags,
//! moving and deleting, and waiting for new mail (IDLE). FETCH responses are split with
//! `client::imap::split_responses` and tokenized with `imap_proto::token`.

use std::time::Duration;

use anyhow::{Context, bail};
use client::imap::{ImapClient, quote, split_responses};
use imap_proto::token::{Token, tokenize_response};
use mail_parser::MessageParser;

use crate::Account;
use crate::account::password;
use crate::connect::{TIMEOUT, tls_stream};
use crate::view::{MessageSummary, from_subject_date, structure_has_attachment};

type Client = ImapClient<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// A logged-in IMAP session.
pub struct Session {
    imap: Client,
}

/// One page of a folder, newest first.
#[derive(Debug, Clone)]
pub struct Page {
    /// How many messages the folder (or its unread part) holds.
    pub total: usize,
    pub messages: Vec<MessageSummary>,
}

/// A flag to set or clear.
#[derive(Debug, Clone, Copy)]
pub struct FlagChange<'a> {
    pub add: bool,
    /// `\Seen`, `\Flagged`, ...
    pub flag: &'a str,
}

/// What deleting did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// It was in Trash: gone for good.
    Expunged,
    MovedToTrash,
}

/// Where a watch stands: messages up to this UID have been reported.
#[derive(Debug, Clone, Copy)]
pub struct Watch {
    last: u32,
}

/// What a reply needs from the message it answers.
pub struct Original {
    pub message_id: Option<String>,
    pub references: Vec<String>,
    pub subject: String,
    /// Reply-To, else From.
    pub reply_to: Option<message::compose::Mailbox>,
}

impl Session {
    /// Connects to the account's IMAP port and logs in.
    pub async fn connect(account: &Account) -> anyhow::Result<Session> {
        let port = account
            .imap_port
            .context("the account has no IMAP port: `pigeon account add ... --imap-port 993`")?;
        let stream = tls_stream(account, port).await?;
        let mut imap = ImapClient::start(stream, TIMEOUT).await?;
        imap.login(&account.username, &password(account)?)
            .await
            .context("login failed")?;
        Ok(Session { imap })
    }

    /// Says goodbye; a failure to do so is no failure of the work done.
    pub async fn logout(mut self) {
        let _ = self.imap.command("LOGOUT").await;
    }

    /// Selects `folder`; returns the untagged responses as text.
    pub async fn select(&mut self, folder: &str) -> anyhow::Result<String> {
        let response = self
            .imap
            .command(&format!("SELECT {}", quote(folder)))
            .await
            .with_context(|| format!("no folder {folder}"))?;
        Ok(String::from_utf8_lossy(&response.untagged).into_owned())
    }

    /// Every folder's name.
    pub async fn folders(&mut self) -> anyhow::Result<Vec<String>> {
        let list = self.imap.command("LIST \"\" \"*\"").await?;
        let mut names = Vec::new();
        for line in split_responses(&list.untagged) {
            if let Some(rest) = line.strip_prefix(b"* LIST ")
                && let Ok(tokens) = tokenize_response(rest)
                && let Some(name) = tokens.get(2).and_then(Token::as_astring)
            {
                names.push(name);
            }
        }
        Ok(names)
    }

    /// Page `page` (from 1) of `folder`, newest first, read-only (EXAMINE).
    pub async fn list(
        &mut self,
        folder: &str,
        page: usize,
        per_page: usize,
        unread_only: bool,
    ) -> anyhow::Result<Page> {
        self.imap
            .command(&format!("EXAMINE {}", quote(folder)))
            .await
            .with_context(|| format!("no folder {folder}"))?;
        let search = self
            .imap
            .command(if unread_only {
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
        let mut messages = Vec::new();
        if !shown.is_empty() {
            let set = shown
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let fetched = self
                .imap
                .command(&format!(
                    "UID FETCH {set} (UID FLAGS RFC822.SIZE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])"
                ))
                .await?;
            for items in fetch_items(&fetched.untagged) {
                messages.push(summarize(&items));
            }
            messages.sort_by_key(|s| std::cmp::Reverse(s.uid));
        }
        Ok(Page {
            total: uids.len(),
            messages,
        })
    }

    /// Message `uid` of `folder`, whole; `peek` leaves it unread.
    pub async fn fetch(&mut self, folder: &str, uid: u32, peek: bool) -> anyhow::Result<Vec<u8>> {
        self.select(folder).await?;
        let item = if peek { "BODY.PEEK[]" } else { "BODY[]" };
        let fetched = self
            .imap
            .command(&format!("UID FETCH {uid} ({item})"))
            .await?;
        for items in fetch_items(&fetched.untagged) {
            if let Some(Token::String(raw)) = self::item(&items, "BODY[") {
                return Ok(raw.clone());
            }
        }
        bail!("no message {uid} in {folder}")
    }

    /// Sets and clears flags of message `uid` in `folder`; returns the changes made, as
    /// `+\Seen`, `-\Flagged`... (none when none were asked for).
    pub async fn flag(
        &mut self,
        folder: &str,
        uid: u32,
        changes: &[FlagChange<'_>],
    ) -> anyhow::Result<Vec<String>> {
        self.select(folder).await?;
        let mut made = Vec::new();
        for change in changes {
            let sign = if change.add { '+' } else { '-' };
            let flag = change.flag;
            self.imap
                .command(&format!("UID STORE {uid} {sign}FLAGS.SILENT ({flag})"))
                .await?;
            made.push(format!("{sign}{flag}"));
        }
        Ok(made)
    }

    /// Moves message `uid` from `folder` to `to`.
    pub async fn move_to(&mut self, folder: &str, uid: u32, to: &str) -> anyhow::Result<()> {
        self.select(folder).await?;
        self.imap
            .command(&format!("UID MOVE {uid} {}", quote(to)))
            .await
            .with_context(|| format!("move {uid} to {to}"))?;
        Ok(())
    }

    /// Moves message `uid` to Trash; in Trash, deletes it for good.
    pub async fn delete(&mut self, folder: &str, uid: u32) -> anyhow::Result<Deleted> {
        self.select(folder).await?;
        if folder.eq_ignore_ascii_case("Trash") {
            self.imap
                .command(&format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)"))
                .await?;
            self.imap.command(&format!("UID EXPUNGE {uid}")).await?;
            Ok(Deleted::Expunged)
        } else {
            self.imap
                .command(&format!("UID MOVE {uid} Trash"))
                .await
                .with_context(|| format!("move {uid} to Trash"))?;
            Ok(Deleted::MovedToTrash)
        }
    }

    /// Selects `folder` to watch for mail arriving from now on.
    pub async fn watch(&mut self, folder: &str) -> anyhow::Result<Watch> {
        let selected = self.select(folder).await?;
        let uidnext: u32 = selected
            .split("UIDNEXT ")
            .nth(1)
            .and_then(|r| r.split(']').next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(1);
        Ok(Watch {
            last: uidnext.saturating_sub(1),
        })
    }

    /// Waits in IDLE until mail arrives; returns the messages new since the last call, oldest
    /// first (possibly none). IDLE is renewed well within the server's timeout.
    pub async fn wait_new(&mut self, watch: &mut Watch) -> anyhow::Result<Vec<MessageSummary>> {
        let tag = self.imap.idle().await?;
        let started = std::time::Instant::now();
        loop {
            match self.imap.read_untagged_line().await {
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
        self.imap.done(&tag).await?;
        let new = self.new_messages(watch.last).await?;
        if let Some(s) = new.last() {
            watch.last = watch.last.max(s.uid);
        }
        Ok(new)
    }

    /// The summaries of messages with UIDs above `after`.
    async fn new_messages(&mut self, after: u32) -> anyhow::Result<Vec<MessageSummary>> {
        let fetched = self
            .imap
            .command(&format!(
                "UID FETCH {}:* (UID FLAGS RFC822.SIZE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])",
                after + 1
            ))
            .await?;
        let mut out: Vec<MessageSummary> = fetch_items(&fetched.untagged)
            .iter()
            .map(|items| summarize(items))
            .filter(|s| s.uid > after)
            .collect();
        out.sort_by_key(|s| s.uid);
        Ok(out)
    }
}

/// The threading headers of message `uid` in `folder`, for a reply.
pub async fn original_headers(
    account: &Account,
    folder: &str,
    uid: u32,
) -> anyhow::Result<Original> {
    let mut session = Session::connect(account).await?;
    session.select(folder).await?;
    let fetched = session
        .imap
        .command(&format!(
            "UID FETCH {uid} (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID REFERENCES SUBJECT FROM REPLY-TO)])"
        ))
        .await?;
    session.logout().await;
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

/// A list entry from one FETCH response's items.
fn summarize(items: &[Token]) -> MessageSummary {
    let header = match item(items, "BODY[") {
        Some(Token::String(h)) => h.clone(),
        _ => Vec::new(),
    };
    let (from, subject, date) = from_subject_date(&header);
    let flags = flag_list(item(items, "FLAGS"));
    MessageSummary {
        uid: atom_u64(item(items, "UID")).unwrap_or(0) as u32,
        unread: !flags.iter().any(|f| f.eq_ignore_ascii_case("\\Seen")),
        flags,
        from,
        subject,
        date,
        size: atom_u64(item(items, "RFC822.SIZE")).unwrap_or(0),
        attachment: item(items, "BODYSTRUCTURE").is_some_and(structure_has_attachment),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
