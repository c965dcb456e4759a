//! `Email/query`: one mailbox's emails, newest first, filtered and paged.

use std::collections::{HashMap, HashSet};

use serde::Deserialize;
use serde_json::json;
use store::TextScope;

use super::super::{Call, MethodError, MethodResult, email_id};
use crate::mail::{self, Addr};

/// `Email/query`'s arguments (RFC 8621 §4.4, without sorting, anchors or thread collapsing).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(in crate::api) struct QueryArgs {
    #[serde(default)]
    filter: Option<Filter>,
    /// The first result returned, from 0.
    #[serde(default)]
    position: Option<u64>,
    /// At most this many ids (50 by default, 500 at most).
    #[serde(default)]
    limit: Option<u64>,
}

/// A FilterCondition (RFC 8621 §4.4.1), the ones the search form sets; all must match.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Filter {
    /// The mailbox searched; INBOX when absent.
    in_mailbox: Option<String>,
    /// Received on or after this RFC 3339 date or date-time.
    after: Option<String>,
    /// Received before this date.
    before: Option<String>,
    /// In the headers or the body.
    text: Option<String>,
    body: Option<String>,
    from: Option<String>,
    /// In To or Cc.
    to: Option<String>,
    subject: Option<String>,
    has_attachment: Option<bool>,
}

/// Parses an RFC 3339 date (`2026-11-28` or `2026-11-28T10:00:00Z`) to Unix seconds.
fn parse_date(value: Option<&str>) -> Result<Option<i64>, MethodError> {
    let Some(text) = value.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let full = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.to_string()
    };
    message::date::parse_rfc3339(&full)
        .map(Some)
        .ok_or_else(|| MethodError::new("invalidArguments", format!("bad date {text:?}")))
}

pub(in crate::api) async fn query(call: &Call<'_>, args: QueryArgs) -> MethodResult {
    let filter = args.filter.unwrap_or_default();
    let mailbox = match &filter.in_mailbox {
        Some(id) => call.mailbox_named(id)?.id,
        None => call
            .mailboxes
            .iter()
            .find(|m| m.name == "INBOX")
            .map(|m| m.id)
            .unwrap_or(-1),
    };
    let store = call.store();
    let all = store.message_flags(mailbox, 0).await?;
    let after = parse_date(filter.after.as_deref())?;
    let before = parse_date(filter.before.as_deref())?;
    // Newest first by arrival (a message moved here keeps its date), then by UID.
    let mut dated: Vec<(i64, u32)> = all
        .iter()
        .filter(|m| after.is_none_or(|a| m.internal_date >= a))
        .filter(|m| before.is_none_or(|b| m.internal_date < b))
        .map(|m| (m.internal_date, m.uid))
        .collect();
    dated.sort_unstable_by(|a, b| b.cmp(a));
    let mut candidates: Vec<u32> = dated.into_iter().map(|(_, uid)| uid).collect();
    let mut keep = |found: Vec<u32>| {
        let found: HashSet<u32> = found.into_iter().collect();
        candidates.retain(|u| found.contains(u));
    };
    for (needle, scope) in [
        (&filter.text, TextScope::All),
        (&filter.body, TextScope::Body),
    ] {
        if let Some(needle) = needle.as_deref().filter(|n| !n.trim().is_empty()) {
            keep(store.search_text(mailbox, needle.trim(), scope).await?);
        }
    }
    // Header fields: the index narrows, the parsed header decides.
    let fields: Vec<(&str, String)> = [
        ("from", &filter.from),
        ("to", &filter.to),
        ("subject", &filter.subject),
    ]
    .into_iter()
    .filter_map(|(k, v)| {
        let v = v.as_deref()?.trim().to_lowercase();
        (!v.is_empty()).then_some((k, v))
    })
    .collect();
    for (_, needle) in &fields {
        keep(
            store
                .search_text(mailbox, needle, TextScope::Headers)
                .await?,
        );
    }
    let want_attachment = filter.has_attachment;
    if !fields.is_empty() || want_attachment.is_some() {
        let summaries: HashMap<u32, store::MessageSummary> = store
            .summaries(mailbox, &candidates)
            .await?
            .into_iter()
            .collect();
        candidates.retain(|uid| {
            let Some(summary) = summaries.get(uid) else {
                return false;
            };
            if let Some(want) = want_attachment
                && mail::has_attachment(&summary.body_structure) != want
            {
                return false;
            }
            if fields.is_empty() {
                return true;
            }
            let h = mail::headers(&summary.header);
            let addresses = |list: &[Addr]| {
                list.iter()
                    .map(|a| format!("{} {}", a.name.as_deref().unwrap_or(""), a.email))
                    .collect::<Vec<_>>()
                    .join(" ")
                    .to_lowercase()
            };
            fields.iter().all(|(key, needle)| match *key {
                "from" => addresses(&h.from).contains(needle),
                "to" => addresses(&[h.to.clone(), h.cc.clone()].concat()).contains(needle),
                _ => h.subject.to_lowercase().contains(needle),
            })
        });
    }
    let total = candidates.len();
    let position = args.position.unwrap_or(0) as usize;
    let limit = args.limit.unwrap_or(50).min(500) as usize;
    let ids: Vec<String> = candidates
        .iter()
        .skip(position)
        .take(limit)
        .map(|&uid| email_id(mailbox, uid))
        .collect();
    Ok(json!({
        "accountId": call.account_id(),
        "ids": ids, "total": total, "position": position,
        "queryState": all.last().map(|m| m.modseq).unwrap_or(0).to_string(),
    }))
}
