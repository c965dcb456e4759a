//! Reading over POP3 with implicit TLS: the maildrop is the INBOX, numbers are POP3's.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::Account;
use crate::account::password;
use crate::connect::{TIMEOUT, tls_stream};
use crate::files::safe_file_name;
use crate::view::{MessageSummary, from_subject_date, header_says_mixed};

type Client = client::pop3::Pop3Client<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// A logged-in POP3 session.
pub struct Session {
    pop3: Client,
}

impl Session {
    /// Connects to the account's POP3 port and logs in.
    pub async fn connect(account: &Account) -> anyhow::Result<Session> {
        let port = account
            .pop3_port
            .context("the account has no POP3 port: `pigeon account add ... --pop3-port 995`")?;
        let stream = tls_stream(account, port).await?;
        let mut pop3 = client::pop3::Pop3Client::start(stream, TIMEOUT).await?;
        pop3.login(&account.username, &password(account)?)
            .await
            .context("login failed")?;
        Ok(Session { pop3 })
    }

    /// Page `page` (from 1) of the maildrop, newest first. POP3 has no flags: every message
    /// counts as unread, and an attachment is guessed from a multipart/mixed header.
    pub async fn list(
        &mut self,
        page: usize,
        per_page: usize,
    ) -> anyhow::Result<Vec<MessageSummary>> {
        let sizes = self.pop3.list().await?;
        let mut summaries = Vec::new();
        for &(number, size) in sizes
            .iter()
            .rev()
            .skip(page.saturating_sub(1) * per_page)
            .take(per_page)
        {
            let header = self.pop3.top(number, 0).await?;
            let (from, subject, date) = from_subject_date(&header);
            summaries.push(MessageSummary {
                uid: number as u32,
                flags: Vec::new(),
                unread: true,
                from,
                subject,
                date,
                size,
                attachment: header_says_mixed(&header),
            });
        }
        Ok(summaries)
    }

    /// Message `number`, whole.
    pub async fn retrieve(&mut self, number: u32) -> anyhow::Result<Vec<u8>> {
        self.pop3
            .retr(number as usize)
            .await
            .with_context(|| format!("no message {number}"))
    }

    /// Marks message `number` for deletion (done at [`Session::quit`]).
    pub async fn delete(&mut self, number: u32) -> anyhow::Result<()> {
        Ok(self.pop3.dele(number as usize).await?)
    }

    /// Ends the session; deletions take effect.
    pub async fn quit(self) -> anyhow::Result<()> {
        Ok(self.pop3.quit().await?)
    }
}

/// Every message to `dir/<UIDL>.eml` (messages already there are skipped); with `delete`,
/// removed from the server (at QUIT, so an interrupted download deletes nothing). Returns the
/// files written.
pub async fn download(account: &Account, dir: &Path, delete: bool) -> anyhow::Result<Vec<PathBuf>> {
    let mut session = Session::connect(account).await?;
    let pop3 = &mut session.pop3;
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let mut saved = Vec::new();
    for (number, uidl) in pop3.uidl().await? {
        let path = dir.join(format!("{}.eml", safe_file_name(&uidl, number)));
        if !path.exists() {
            let message = pop3.retr(number).await?;
            std::fs::write(&path, &message).with_context(|| format!("write {}", path.display()))?;
            saved.push(path);
        }
        if delete {
            pop3.dele(number).await?;
        }
    }
    session.quit().await?;
    Ok(saved)
}
