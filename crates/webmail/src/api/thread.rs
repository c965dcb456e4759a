//! `Thread/get`: the conversation of an email.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::json;
use store::{MailboxId, SpecialUse};

use super::email::thread_key;
use super::state::account_state;
use super::{Call, MethodError, MethodResult, email_id};
use crate::mail;

/// Messages a thread search looks back over in each of INBOX, Sent and the email's mailbox.
const THREAD_WINDOW: usize = 5000;
/// Most threads in one call: each reads up to three mailboxes' recent headers.
const MAX_THREADS: usize = 20;

/// `Thread/get`'s arguments (RFC 8620 §5.1, RFC 8621 §3.1). Ids are **email** ids (the page
/// opens a thread from one of its emails); the reply's thread ids are thread keys.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct GetArgs {
    /// None when null or absent (RFC 8620 §5.1 allows refusing "all" for a large type).
    #[serde(default)]
    ids: Option<Vec<String>>,
    /// `id` and `emailIds` are all a Thread has; `id` is always returned.
    #[serde(default)]
    properties: Option<Vec<String>>,
}

/// Every Thread property (RFC 8621 §3).
const PROPERTIES: [&str; 2] = ["id", "emailIds"];

/// The conversation of each email: messages in INBOX, Sent and its own mailbox linked to it by
/// Message-ID, In-Reply-To and References, oldest first.
pub(super) async fn get(call: &Call<'_>, args: GetArgs) -> MethodResult {
    let mut list = Vec::new();
    let mut not_found = Vec::new();
    if let Some(bad) = args
        .properties
        .iter()
        .flatten()
        .find(|p| !PROPERTIES.contains(&p.as_str()))
    {
        // RFC 8620 §5.1: a property the type does not have.
        return Err(MethodError::new(
            "invalidArguments",
            format!("no Thread property {bad}"),
        ));
    }
    let with_emails = args
        .properties
        .as_ref()
        .is_none_or(|p| p.iter().any(|p| p == "emailIds"));
    let ids = args.ids.unwrap_or_default();
    if ids.len() > MAX_THREADS {
        return Err(MethodError::new(
            "requestTooLarge",
            "at most 20 threads at once",
        ));
    }
    for id in &ids {
        let Ok((mailbox, uid)) = call.email(id) else {
            not_found.push(id.to_string());
            continue;
        };
        let mut boxes: Vec<MailboxId> = vec![mailbox];
        for m in &call.mailboxes {
            if (m.name == "INBOX" || m.special_use == Some(SpecialUse::Sent)) && m.id != mailbox {
                boxes.push(m.id);
            }
        }
        let mut all: Vec<(MailboxId, u32, mail::Headers)> = Vec::new();
        for b in boxes {
            let metas = call.store().message_flags(b, 0).await?;
            let uids: Vec<u32> = metas
                .iter()
                .rev()
                .take(THREAD_WINDOW)
                .map(|m| m.uid)
                .collect();
            for (u, s) in call.store().summaries(b, &uids).await? {
                all.push((b, u, mail::headers(&s.header)));
            }
        }
        let Some(start) = all.iter().find(|(b, u, _)| *b == mailbox && *u == uid) else {
            not_found.push(id.to_string());
            continue;
        };
        let mut known: BTreeSet<String> = start.2.message_id.iter().cloned().collect();
        known.extend(start.2.references.iter().cloned());
        known.extend(start.2.in_reply_to.iter().cloned());
        let mut members: BTreeSet<(MailboxId, u32)> = BTreeSet::new();
        // Two rounds catch replies to replies that name only their parent.
        for _ in 0..3 {
            for (b, u, h) in &all {
                let linked = h.message_id.as_ref().is_some_and(|m| known.contains(m))
                    || h.references
                        .iter()
                        .chain(&h.in_reply_to)
                        .any(|r| known.contains(r));
                if linked && members.insert((*b, *u)) {
                    known.extend(h.message_id.iter().cloned());
                    known.extend(h.references.iter().cloned());
                }
            }
        }
        members.insert((mailbox, uid));
        // Oldest first; within one second a reply (which names more ancestors) comes after
        // what it answers.
        let mut ordered: Vec<(i64, usize, String)> = all
            .iter()
            .filter(|(b, u, _)| members.contains(&(*b, *u)))
            .map(|(b, u, h)| {
                let depth = h.references.len().max(h.in_reply_to.len());
                (h.sent_at.unwrap_or(0), depth, email_id(*b, *u))
            })
            .collect();
        ordered.sort();
        let mut thread = json!({ "id": thread_key(&start.2) });
        if with_emails {
            thread["emailIds"] = json!(ordered.into_iter().map(|o| o.2).collect::<Vec<_>>());
        }
        list.push(thread);
    }
    Ok(json!({
        "accountId": call.account_id(), "list": list, "notFound": not_found,
        "state": account_state(&call.mailboxes),
    }))
}
