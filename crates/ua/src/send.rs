//! Sending: a draft from the account and what the user wrote (a reply takes its recipient,
//! subject and threading from the original), built with `message::compose`, submitted over
//! STARTTLS or implicit TLS with the best SASL mechanism offered (SIZE checked first), and
//! copied to Sent over IMAP.

use std::path::Path;

use anyhow::{Context, bail};
use client::smtp::SmtpClient;
use message::compose::{Attachment, Draft, Mailbox};

use crate::Account;
use crate::connect::{TIMEOUT, resolve, tls, tls_stream};
use crate::imap::Original;

/// What the user wrote; the account and the clock supply the rest of the [`Draft`].
#[derive(Debug, Clone, Default)]
pub struct Compose {
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    pub attachments: Vec<Attachment>,
    /// A Message-ID without angle brackets.
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
}

impl Compose {
    /// Makes this a reply to `original`: its sender (Reply-To first) as the recipient unless
    /// there is one, "Re: " and its subject unless there is a subject, and its threading.
    pub fn reply_to(&mut self, original: Original) -> anyhow::Result<()> {
        if self.to.is_empty() {
            self.to.push(
                original
                    .reply_to
                    .context("the message has no sender to reply to")?,
            );
        }
        if self.subject.is_empty() {
            self.subject = if original.subject.to_ascii_lowercase().starts_with("re:") {
                original.subject.clone()
            } else {
                format!("Re: {}", original.subject)
            };
        }
        self.references = original.references;
        self.in_reply_to = original.message_id;
        Ok(())
    }

    /// The draft, from the account, dated now, with a new Message-ID in the account's domain.
    pub fn draft(self, account: &Account) -> Draft {
        let domain = account
            .email
            .rsplit_once('@')
            .map(|(_, d)| d.to_string())
            .unwrap_or_else(|| "localhost".into());
        Draft {
            from: Mailbox {
                name: account.name.clone(),
                address: account.email.clone(),
            },
            to: self.to,
            cc: self.cc,
            subject: self.subject,
            text: Some(self.text),
            html: self.html,
            attachments: self.attachments,
            in_reply_to: self.in_reply_to,
            references: self.references,
            message_id: common::message_id(&domain),
            date: common::clock::now(),
        }
    }
}

/// A file as an attachment (inline with a Content-ID when given), its type guessed from its
/// bytes and name.
pub fn attachment(path: &Path, content_id: Option<String>) -> anyhow::Result<Attachment> {
    let data = read_file(path)?;
    let filename = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "attachment".into());
    Ok(Attachment {
        content_type: message::compose::guess_type(&filename, &data).into(),
        filename,
        data,
        content_id,
    })
}

/// A file's bytes, the error naming it.
pub fn read_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("read {}", path.display()))
}

/// The envelope recipients of a draft: To, Cc and the blind copies.
pub fn recipients(draft: &Draft, bcc: &[Mailbox]) -> Vec<String> {
    draft
        .to
        .iter()
        .chain(&draft.cc)
        .chain(bcc)
        .map(|m| m.address.clone())
        .collect()
}

/// What the submission server said.
#[derive(Debug, Clone, Default)]
pub struct Submitted {
    /// Recipients it refused (the message went to the others), with its replies.
    pub refused: Vec<(String, String)>,
}

/// Submits `message` to `recipients` through the account's submission port: TLS always
/// (refuses a server without STARTTLS rather than send the password in the clear), the
/// message size checked against SIZE before AUTH, then the best mechanism offered.
pub async fn submit(
    account: &Account,
    password: &str,
    recipients: &[String],
    message: &[u8],
) -> anyhow::Result<Submitted> {
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
    let _ = smtp.quit().await;
    Ok(Submitted {
        refused: delivery
            .refused
            .iter()
            .map(|(rcpt, reply)| (rcpt.clone(), reply.to_string()))
            .collect(),
    })
}

/// Appends `message` to the account's Sent folder, marked read.
pub async fn save_sent(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> Account {
        Account {
            email: "bob@example.org".into(),
            name: Some("Bob".into()),
            host: "mail.example.org".into(),
            submission_port: 587,
            implicit_tls: false,
            imap_port: None,
            pop3_port: None,
            username: "bob".into(),
            password_command: None,
            insecure: false,
            ca: None,
        }
    }

    fn original(subject: &str) -> Original {
        Original {
            message_id: Some("orig@example.com".into()),
            references: vec!["root@example.com".into()],
            subject: subject.into(),
            reply_to: Some(Mailbox::parse("Lists <list@example.com>").unwrap()),
        }
    }

    #[test]
    fn a_reply_takes_sender_subject_and_threading_unless_given() {
        let mut reply = Compose::default();
        reply.reply_to(original("plans")).unwrap();
        assert_eq!(reply.to[0].address, "list@example.com");
        assert_eq!(reply.subject, "Re: plans");
        assert_eq!(reply.in_reply_to.as_deref(), Some("orig@example.com"));
        assert_eq!(reply.references, ["root@example.com"]);

        let mut reply = Compose {
            to: vec![Mailbox::parse("carol@example.net").unwrap()],
            subject: "my own".into(),
            ..Compose::default()
        };
        reply.reply_to(original("RE: plans")).unwrap();
        assert_eq!(reply.to.len(), 1);
        assert_eq!(reply.to[0].address, "carol@example.net");
        assert_eq!(reply.subject, "my own");
        let mut reply = Compose::default();
        reply.reply_to(original("RE: plans")).unwrap();
        assert_eq!(reply.subject, "RE: plans");
    }

    #[test]
    fn a_draft_is_from_the_account_with_an_id_in_its_domain() {
        let draft = Compose {
            to: vec![Mailbox::parse("carol@example.net").unwrap()],
            ..Compose::default()
        }
        .draft(&account());
        assert_eq!(draft.from.address, "bob@example.org");
        assert_eq!(draft.from.name.as_deref(), Some("Bob"));
        assert!(
            draft.message_id.ends_with("@example.org"),
            "{}",
            draft.message_id
        );
        let bcc = [Mailbox::parse("dave@example.net").unwrap()];
        assert_eq!(
            recipients(&draft, &bcc),
            ["carol@example.net", "dave@example.net"]
        );
    }
}
