//! A message as the page writes it ([`Composition`]), built into MIME for `Email/set` (drafts)
//! and `EmailSubmission/set` (sending).

use serde::Deserialize;

use super::blob::blob;
use super::{Call, MethodError};

/// What a message being written consists of.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub(super) struct Composition {
    /// The sender; the session's address when absent.
    pub from: Option<String>,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    pub attachments: Vec<AttachmentRef>,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    /// The email this replies to, marked answered once sent.
    pub replying_to: Option<String>,
    /// A saved draft this replaces.
    pub draft_id: Option<String>,
}

/// An attachment: an upload (`u<token>`) or a part of a stored message (forwarding).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct AttachmentRef {
    pub blob_id: String,
    /// The file name; the blob's own when absent.
    pub name: Option<String>,
    /// The media type; the blob's own (or a guess) when absent or empty.
    #[serde(rename = "type")]
    pub content_type: Option<String>,
}

/// The addresses of a field; with `lenient` (drafts) ones that do not parse yet are left out
/// rather than refused, since the user may be half-way through typing them.
fn mailboxes_of(
    list: &[String],
    lenient: bool,
) -> Result<Vec<message::compose::Mailbox>, MethodError> {
    let mut out = Vec::new();
    for text in list.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        match message::compose::Mailbox::parse(text) {
            Ok(mailbox) => out.push(mailbox),
            Err(_) if lenient => {}
            Err(e) => return Err(MethodError::new("invalidRecipients", e)),
        }
    }
    Ok(out)
}

/// Builds the message; returns it and its envelope recipients.
pub(super) async fn compose(
    call: &Call<'_>,
    c: &Composition,
    lenient: bool,
) -> Result<(Vec<u8>, Vec<String>), MethodError> {
    let from = message::compose::Mailbox::parse(c.from.as_deref().unwrap_or(&call.session.address))
        .map_err(|e| MethodError::new("invalidArguments", e))?;
    let (to, cc, bcc) = (
        mailboxes_of(&c.to, lenient)?,
        mailboxes_of(&c.cc, lenient)?,
        mailboxes_of(&c.bcc, lenient)?,
    );
    let mut attachments = Vec::new();
    for a in &c.attachments {
        let (name, stored_type, data) = blob(call, &a.blob_id).await?;
        let name = a.name.clone().unwrap_or(name);
        let kind = a
            .content_type
            .clone()
            .filter(|t| !t.is_empty())
            .or(Some(stored_type).filter(|t| t != "application/octet-stream"))
            .unwrap_or_else(|| message::compose::guess_type(&name, &data).to_string());
        attachments.push(message::compose::Attachment {
            filename: name,
            content_type: kind,
            data,
            content_id: None,
        });
    }
    let now = common::clock::now();
    let draft = message::compose::Draft {
        from,
        to: to.clone(),
        cc: cc.clone(),
        subject: c.subject.clone(),
        text: Some(c.text.clone()),
        html: c.html.clone(),
        attachments,
        in_reply_to: c
            .in_reply_to
            .clone()
            .map(|i| i.trim_matches(['<', '>']).to_string()),
        references: c
            .references
            .iter()
            .map(|r| r.trim_matches(['<', '>']).to_string())
            .collect(),
        message_id: common::message_id(&call.webmail.settings.hostname),
        date: now,
    };
    let data = message::compose::build(&draft);
    if data.len() > call.webmail.settings.max_message_size {
        return Err(MethodError::new(
            "tooLarge",
            format!(
                "the message is {} KB; the limit is {} KB",
                data.len() / 1024,
                call.webmail.settings.max_message_size / 1024
            ),
        ));
    }
    let recipients = to
        .iter()
        .chain(&cc)
        .chain(&bcc)
        .map(|m| m.address.clone())
        .collect();
    Ok((data, recipients))
}
