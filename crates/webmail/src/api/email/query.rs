//! `Email/query`: one mailbox's emails, newest first, filtered and paged.

use std::collections::{HashMap, HashSet};

use serde::Deserialize;
use serde_json::json;
use store::TextScope;

use super::super::{Call, MethodError, MethodResult, email_id};
use super::{keyword_bit, thread_key};
use crate::mail::{self, Addr};

/// The most ids one query returns.
const MAX_LIMIT: u64 = 500;

/// `Email/query`'s arguments (RFC 8620 §5.5, RFC 8621 §4.4).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(in crate::api) struct QueryArgs {
    #[serde(default)]
    filter: Option<Filter>,
    /// Newest first when null or absent.
    #[serde(default)]
    sort: Option<Vec<Comparator>>,
    /// The first result returned, from 0; a negative one counts from the end.
    #[serde(default)]
    position: Option<i64>,
    /// When given, the result at `anchorOffset` from this id comes first (`position` is
    /// ignored).
    #[serde(default)]
    anchor: Option<String>,
    #[serde(default)]
    anchor_offset: Option<i64>,
    /// At most this many ids (50 by default, 500 at most).
    #[serde(default)]
    limit: Option<u64>,
    /// `total` is always returned (the page reads it without asking).
    #[serde(default)]
    #[allow(dead_code)]
    calculate_total: Option<bool>,
    /// Only the first email of each thread (by the thread key `threadId` is).
    #[serde(default)]
    collapse_threads: Option<bool>,
}

/// A FilterCondition (RFC 8621 §4.4.1); all that are given must match. A FilterOperator
/// (RFC 8620 §5.5: `operator`, `conditions`) and the conditions marked below parse but are
/// `unsupportedFilter`.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Filter {
    /// The mailbox searched; INBOX when absent.
    in_mailbox: Option<String>,
    /// Received on or after this RFC 3339 date or date-time.
    after: Option<String>,
    /// Received before this date.
    before: Option<String>,
    min_size: Option<u64>,
    max_size: Option<u64>,
    has_keyword: Option<String>,
    not_keyword: Option<String>,
    /// In the headers or the body.
    text: Option<String>,
    body: Option<String>,
    from: Option<String>,
    /// In To or Cc.
    to: Option<String>,
    subject: Option<String>,
    has_attachment: Option<bool>,
    // Unsupported (one mailbox is searched; thread keywords and other headers are not
    // indexed): any of these given is `unsupportedFilter`.
    in_mailbox_other_than: Option<Vec<String>>,
    all_in_thread_have_keyword: Option<String>,
    some_in_thread_have_keyword: Option<String>,
    none_in_thread_have_keyword: Option<String>,
    cc: Option<String>,
    bcc: Option<String>,
    header: Option<Vec<String>>,
    operator: Option<String>,
    conditions: Option<Vec<serde_json::Value>>,
}

impl Filter {
    /// The first condition given that is not implemented.
    fn unsupported(&self) -> Option<&'static str> {
        [
            ("inMailboxOtherThan", self.in_mailbox_other_than.is_some()),
            (
                "allInThreadHaveKeyword",
                self.all_in_thread_have_keyword.is_some(),
            ),
            (
                "someInThreadHaveKeyword",
                self.some_in_thread_have_keyword.is_some(),
            ),
            (
                "noneInThreadHaveKeyword",
                self.none_in_thread_have_keyword.is_some(),
            ),
            ("cc", self.cc.is_some()),
            ("bcc", self.bcc.is_some()),
            ("header", self.header.is_some()),
            ("operator", self.operator.is_some()),
            ("conditions", self.conditions.is_some()),
        ]
        .into_iter()
        .find(|(_, given)| *given)
        .map(|(name, _)| name)
    }
}

/// A Comparator (RFC 8620 §5.5, RFC 8621 §4.4.2).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Comparator {
    /// `receivedAt` or `size`; any other is `unsupportedSort`.
    property: String,
    /// True when absent (RFC 8620 §5.5).
    #[serde(default)]
    is_ascending: Option<bool>,
    /// Neither property compares text: a collation changes nothing.
    #[serde(default)]
    #[allow(dead_code)]
    collation: Option<String>,
    /// For the keyword sorts, which are unsupported.
    #[serde(default)]
    #[allow(dead_code)]
    keyword: Option<String>,
}

/// What a comparator compares.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SortKey {
    ReceivedAt,
    Size,
}

/// The comparators as keys and directions (true: ascending); newest first when none.
fn sort_order(sort: Option<&[Comparator]>) -> Result<Vec<(SortKey, bool)>, MethodError> {
    let Some(sort) = sort.filter(|s| !s.is_empty()) else {
        return Ok(vec![(SortKey::ReceivedAt, false)]);
    };
    sort.iter()
        .map(|c| {
            let key = match c.property.as_str() {
                "receivedAt" => SortKey::ReceivedAt,
                "size" => SortKey::Size,
                other => {
                    return Err(MethodError::new(
                        "unsupportedSort",
                        format!("cannot sort by {other}"),
                    ));
                }
            };
            Ok((key, c.is_ascending.unwrap_or(true)))
        })
        .collect()
}

/// Whether a message has a keyword (RFC 8621 §4.1.1: case-insensitive).
fn has_keyword(message: &store::MessageFlags, keyword: &str) -> bool {
    match keyword_bit(keyword) {
        Some(bit) => message.flags & bit != 0,
        None => message
            .keywords
            .iter()
            .any(|k| k.eq_ignore_ascii_case(keyword)),
    }
}

/// Where the page starts (RFC 8620 §5.5): at the anchor plus its offset when an anchor is
/// given (`anchorNotFound` if it is not among the results), else at `position`, a negative
/// one counted from the end; clamped to 0.
/// `ids` are made lazily: a mailbox's whole list of ids is only formatted as far as the
/// anchor (a list page would otherwise format 20,000 ids to show 50).
fn start<S: AsRef<str>>(
    mut ids: impl ExactSizeIterator<Item = S>,
    position: i64,
    anchor: Option<(&str, i64)>,
) -> Result<usize, MethodError> {
    let len = ids.len() as i64;
    let index = match anchor {
        Some((anchor, offset)) => {
            let at = ids.position(|id| id.as_ref() == anchor).ok_or_else(|| {
                MethodError::new("anchorNotFound", format!("{anchor} is not in the results"))
            })?;
            (at as i64).saturating_add(offset)
        }
        None if position < 0 => len.saturating_add(position),
        None => position,
    };
    Ok(usize::try_from(index.max(0)).unwrap_or(usize::MAX))
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
    if let Some(condition) = filter.unsupported() {
        return Err(MethodError::new(
            "unsupportedFilter",
            format!("cannot filter by {condition}"),
        ));
    }
    let order = sort_order(args.sort.as_deref())?;
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
    let matching: Vec<&store::MessageFlags> = all
        .iter()
        .filter(|m| after.is_none_or(|a| m.internal_date >= a))
        .filter(|m| before.is_none_or(|b| m.internal_date < b))
        .filter(|m| filter.min_size.is_none_or(|s| m.size >= s))
        .filter(|m| filter.max_size.is_none_or(|s| m.size < s))
        .filter(|m| {
            filter
                .has_keyword
                .as_ref()
                .is_none_or(|k| has_keyword(m, k))
        })
        .filter(|m| {
            filter
                .not_keyword
                .as_ref()
                .is_none_or(|k| !has_keyword(m, k))
        })
        .collect();
    // By the comparators, then by UID in the first one's direction: newest first by default,
    // by arrival (a message moved here keeps its date). Each message's sort key is computed
    // once, descending keys negated, so the sort compares plain integers (a list page sorts
    // the whole mailbox).
    let ascending = order.first().is_some_and(|&(_, ascending)| ascending);
    let signed = |v: i64, ascending: bool| if ascending { v } else { v.saturating_neg() };
    let mut keyed: Vec<([i64; 2], i64, u32)> = matching
        .iter()
        .map(|m| {
            // A key compared again later never breaks a tie the first time left (equal
            // values stay equal), so only each key's first comparator counts: two at most.
            let mut keys = [0i64; 2];
            let mut seen = Vec::with_capacity(2);
            for &(key, ascending) in &order {
                if seen.contains(&key) {
                    continue;
                }
                let v = match key {
                    SortKey::ReceivedAt => m.internal_date,
                    SortKey::Size => i64::try_from(m.size).unwrap_or(i64::MAX),
                };
                keys[seen.len()] = signed(v, ascending);
                seen.push(key);
            }
            (keys, signed(i64::from(m.uid), ascending), m.uid)
        })
        .collect();
    keyed.sort_unstable();
    let mut candidates: Vec<u32> = keyed.into_iter().map(|(_, _, uid)| uid).collect();
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
    if args.collapse_threads == Some(true) {
        let summaries: HashMap<u32, store::MessageSummary> = store
            .summaries(mailbox, &candidates)
            .await?
            .into_iter()
            .collect();
        let mut threads = HashSet::new();
        // A message without a key (no Message-ID or references) is a thread of its own.
        candidates.retain(|uid| {
            let key = summaries
                .get(uid)
                .map(|s| thread_key(&mail::headers(&s.header)))
                .unwrap_or_default();
            key.is_empty() || threads.insert(key)
        });
    }
    let anchor = args
        .anchor
        .as_deref()
        .map(|a| (a, args.anchor_offset.unwrap_or(0)));
    let position = start(
        candidates.iter().map(|&uid| email_id(mailbox, uid)),
        args.position.unwrap_or(0),
        anchor,
    )?;
    let limit = args.limit.unwrap_or(50).min(MAX_LIMIT);
    let ids: Vec<String> = candidates
        .iter()
        .skip(position)
        .take(limit as usize)
        .map(|&uid| email_id(mailbox, uid))
        .collect();
    let mut reply = json!({
        "accountId": call.account_id(),
        "ids": ids, "total": candidates.len(), "position": position,
        "queryState": all.last().map(|m| m.modseq).unwrap_or(0).to_string(),
        // There is no Email/queryChanges.
        "canCalculateChanges": false,
    });
    if args.limit.is_some_and(|l| l > MAX_LIMIT) {
        // RFC 8620 §5.5: a limit the server lowered is returned.
        reply["limit"] = json!(MAX_LIMIT);
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_starts_at_the_position_or_the_anchor() {
        let ids: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        let at = |position, anchor| start(ids.iter(), position, anchor).ok();
        assert_eq!(at(0, None), Some(0));
        assert_eq!(at(3, None), Some(3));
        assert_eq!(at(9, None), Some(9), "past the end: no ids");
        // RFC 8620 §5.5: a negative position counts from the end, clamped to 0.
        assert_eq!(at(-1, None), Some(3));
        assert_eq!(at(-4, None), Some(0));
        assert_eq!(at(-9, None), Some(0));
        assert_eq!(at(i64::MIN, None), Some(0));
        // An anchor overrides the position; its offset may go back, clamped to 0.
        assert_eq!(at(3, Some(("b", 0))), Some(1));
        assert_eq!(at(0, Some(("c", -1))), Some(1));
        assert_eq!(at(0, Some(("a", -5))), Some(0));
        assert_eq!(at(0, Some(("d", 1))), Some(4), "past the end: no ids");
        let missing = start(ids.iter(), 0, Some(("z", 0))).err().map(|e| e.kind);
        assert_eq!(missing, Some("anchorNotFound"));
    }

    #[test]
    fn sorts_by_arrival_or_size_and_refuses_others() {
        let parse = |v: serde_json::Value| {
            serde_json::from_value::<Vec<Comparator>>(v).map(|c| sort_order(Some(&c)).is_ok())
        };
        assert!(matches!(
            sort_order(None).as_deref(),
            Ok([(SortKey::ReceivedAt, false)])
        ));
        assert_eq!(
            parse(json!([{"property": "receivedAt", "isAscending": false}])).ok(),
            Some(true)
        );
        assert_eq!(
            parse(json!([{"property": "size", "collation": "i;unicode-casemap"}])).ok(),
            Some(true)
        );
        assert_eq!(parse(json!([{"property": "subject"}])).ok(), Some(false));
        assert!(parse(json!([{"property": "size", "descending": true}])).is_err());
        let kind = sort_order(Some(&[Comparator {
            property: "from".into(),
            is_ascending: None,
            collation: None,
            keyword: None,
        }]))
        .err()
        .map(|e| e.kind);
        assert_eq!(kind, Some("unsupportedSort"));
    }
}
