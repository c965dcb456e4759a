//! `Email/get`: emails by id, with their body when asked.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Value, json};
use store::MailboxId;

use super::super::state::account_state;
use super::super::{Call, MethodError, MethodResult, email_id};
use super::{iso, keywords, thread_key};
use crate::mail;

/// `Email/get`'s arguments (RFC 8620 §5.1, RFC 8621 §4.2).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(in crate::api) struct GetArgs {
    /// The emails; none when null or absent (RFC 8620 §5.1 allows refusing "all").
    #[serde(default)]
    ids: Option<Vec<String>>,
    /// Every property is returned, whatever is listed (more than RFC 8620 §5.1 asks, which
    /// the page relies on); `body` (text, attachments, HTML flags) only when listed.
    #[serde(default)]
    properties: Option<Vec<String>>,
    /// RFC 8621 §4.2: accepted, not honoured (no `bodyStructure`, `textBody` or `bodyValues`
    /// are returned; the page reads `body`). Likewise the four below.
    #[serde(default)]
    #[allow(dead_code)]
    body_properties: Option<Vec<String>>,
    #[serde(default)]
    #[allow(dead_code)]
    fetch_text_body_values: Option<bool>,
    #[serde(default, rename = "fetchHTMLBodyValues")]
    #[allow(dead_code)]
    fetch_html_body_values: Option<bool>,
    #[serde(default)]
    #[allow(dead_code)]
    fetch_all_body_values: Option<bool>,
    /// RFC 8621 §4.2: "MUST be greater than 0" (0 is `invalidArguments`).
    #[serde(default)]
    #[allow(dead_code)]
    max_body_value_bytes: Option<std::num::NonZeroU64>,
}

pub(in crate::api) async fn get(call: &Call<'_>, args: GetArgs) -> MethodResult {
    let ids = args.ids.unwrap_or_default();
    let with_body = args
        .properties
        .is_some_and(|p| p.iter().any(|v| v == "body"));
    // Bodies are parsed and sanitised one by one: fewer of them per call.
    let most = if with_body { 50 } else { 500 };
    if ids.len() > most {
        return Err(MethodError::new(
            "requestTooLarge",
            format!("at most {most} ids"),
        ));
    }
    let store = call.store();
    let mut by_mailbox: HashMap<MailboxId, Vec<u32>> = HashMap::new();
    let mut not_found = Vec::new();
    for id in &ids {
        match call.email(id) {
            Ok((mailbox, uid)) => by_mailbox.entry(mailbox).or_default().push(uid),
            Err(_) => not_found.push(id.clone()),
        }
    }
    let mut found: HashMap<String, Value> = HashMap::new();
    for (mailbox, uids) in by_mailbox {
        let metas: HashMap<u32, store::MessageFlags> = store
            .message_meta(mailbox, &uids)
            .await?
            .into_iter()
            .map(|m| (m.uid, m))
            .collect();
        let summaries: HashMap<u32, store::MessageSummary> =
            store.summaries(mailbox, &uids).await?.into_iter().collect();
        for uid in uids {
            let Some(meta) = metas.get(&uid) else {
                not_found.push(email_id(mailbox, uid));
                continue;
            };
            let raw = if with_body || !summaries.contains_key(&uid) {
                Some(store.read_message(mailbox, uid).await?)
            } else {
                None
            };
            let (h, has_attachment) = match (summaries.get(&uid), &raw) {
                (Some(s), _) => (
                    mail::headers(&s.header),
                    mail::has_attachment(&s.body_structure),
                ),
                (None, Some(raw)) => (mail::headers(raw), mail::message_has_attachment(raw)),
                (None, None) => Default::default(),
            };
            let id = email_id(mailbox, uid);
            let mut email = json!({
                "id": id,
                "threadId": thread_key(&h),
                "mailboxIds": { mailbox.to_string(): true },
                "keywords": keywords(meta.flags, &meta.keywords),
                "size": meta.size,
                "receivedAt": iso(meta.internal_date),
                "sentAt": h.sent_at.map(iso),
                "from": h.from, "to": h.to, "cc": h.cc, "replyTo": h.reply_to,
                "subject": h.subject,
                "messageId": h.message_id.iter().collect::<Vec<_>>(),
                "inReplyTo": h.in_reply_to, "references": h.references,
                "hasAttachment": has_attachment,
            });
            if let (true, Some(raw)) = (with_body, &raw) {
                let body = mail::body(raw);
                let attachments: Vec<Value> = body
                    .attachments
                    .iter()
                    .map(|a| {
                        json!({
                            "blobId": format!("{id}-{}", a.part),
                            "name": a.name, "type": a.content_type, "size": a.size, "cid": a.cid,
                        })
                    })
                    .collect();
                let remote =
                    body.has_html && mail::safe_html(raw, false).is_some_and(|(_, remote)| remote);
                email["body"] = json!({
                    "text": body.text, "hasHtml": body.has_html, "attachments": attachments,
                    "hasRemoteImages": remote,
                });
            }
            found.insert(id, email);
        }
    }
    let list: Vec<Value> = ids.iter().filter_map(|id| found.remove(id)).collect();
    Ok(json!({
        "accountId": call.account_id(),
        // RFC 8620 §5.1: the state Email/changes starts from.
        "state": account_state(&call.mailboxes),
        "list": list, "notFound": not_found,
    }))
}
