//! SEARCH (RFC 9051 §6.4.4) with ESEARCH (RFC 4731) and SEARCHRES (RFC 5182).

use std::collections::{HashMap, HashSet};

use imap_proto::command::{SearchKey, SearchReturn};
use message::search::Searchable;
use store::TextScope;

use super::Ctx;
use crate::reply::{CommandError, CommandResult, compress, ok};
use crate::state::{Account, Selected};
use crate::view::Meta;

/// What the store's indexes answered for the content keys of one SEARCH.
#[derive(Default)]
struct Prepared {
    /// Full-text hits per (scope, needle).
    hits: HashMap<(u8, String), HashSet<u32>>,
    /// Header blocks of the messages header keys must look at.
    headers: HashMap<u32, Vec<u8>>,
    /// Every message's header block was loaded (no index preselection).
    scanned: bool,
    /// The clock for OLDER/YOUNGER, read once so every message sees the same instant.
    now: i64,
}

fn scope_key(scope: TextScope) -> u8 {
    match scope {
        TextScope::Headers => 0,
        TextScope::Body => 1,
        TextScope::All => 2,
    }
}

/// Mailboxes up to this size answer header keys by reading their stored header blocks; the
/// full-text index is global, so for small mailboxes a direct scan is cheaper.
const HEADER_SCAN_LIMIT: usize = 5000;

/// Collects the full-text queries a key tree needs; `all_headers` is set when some key needs
/// every message's header block (short header needles, SENT* dates, small mailboxes).
/// Recursive, like [`matches()`]: a parsed key nests at most `imap_proto::token::MAX_DEPTH`
/// (100) levels deep, lists, NOT and OR together (the parser refuses deeper ones with BAD).
fn queries(
    key: &SearchKey,
    small: bool,
    out: &mut Vec<(TextScope, String)>,
    all_headers: &mut bool,
) {
    match key {
        SearchKey::Body(s) => out.push((TextScope::Body, s.clone())),
        SearchKey::Text(s) => out.push((TextScope::All, s.clone())),
        SearchKey::Header { value, .. } => {
            if value.chars().count() >= 3 && !small {
                out.push((TextScope::Headers, value.clone()));
            } else {
                *all_headers = true;
            }
        }
        SearchKey::SentBefore(_) | SearchKey::SentOn(_) | SearchKey::SentSince(_) => {
            *all_headers = true
        }
        SearchKey::Not(k) => queries(k, small, out, all_headers),
        SearchKey::Or(a, b) => {
            queries(a, small, out, all_headers);
            queries(b, small, out, all_headers);
        }
        SearchKey::And(keys) => keys
            .iter()
            .for_each(|k| queries(k, small, out, all_headers)),
        _ => {}
    }
}

struct Candidate<'a> {
    seq: u32,
    max_seq: u32,
    max_uid: u32,
    meta: &'a Meta,
    prepared: &'a Prepared,
}

impl Candidate<'_> {
    fn hit(&self, scope: TextScope, needle: &str) -> bool {
        self.prepared
            .hits
            .get(&(scope_key(scope), needle.to_string()))
            .is_some_and(|set| set.contains(&self.meta.uid))
    }

    fn header(&self) -> Option<Searchable<'_>> {
        self.prepared
            .headers
            .get(&self.meta.uid)
            .map(|h| Searchable::new(h))
    }
}

/// Whether the candidate matches `key`; recursion at most `MAX_DEPTH` deep (see [`queries`]).
fn matches(key: &SearchKey, c: &Candidate<'_>, saved: &[u32]) -> bool {
    let day = c.meta.internal_date().div_euclid(86_400);
    let sent_day = || c.header().and_then(|h| h.sent_day());
    match key {
        SearchKey::All => true,
        SearchKey::Flag { flag, set } => (c.meta.flags & flag != 0) == *set,
        SearchKey::Keyword { keyword, set } => {
            c.meta
                .keywords
                .iter()
                .any(|k| k.eq_ignore_ascii_case(keyword))
                == *set
        }
        // No \Recent in IMAP4rev2: nothing is new or recent, everything is old.
        SearchKey::New | SearchKey::Recent => false,
        SearchKey::Old => true,
        SearchKey::Header { name, value } => {
            let candidate = c.prepared.scanned || c.hit(TextScope::Headers, value);
            candidate && c.header().is_some_and(|h| h.header(name, value))
        }
        SearchKey::Body(text) => c.hit(TextScope::Body, text),
        SearchKey::Text(text) => c.hit(TextScope::All, text),
        SearchKey::Before(d) => day < *d,
        SearchKey::On(d) => day == *d,
        SearchKey::Since(d) => day >= *d,
        SearchKey::SentBefore(d) => sent_day().is_some_and(|s| s < *d),
        SearchKey::SentOn(d) => sent_day().is_some_and(|s| s == *d),
        SearchKey::SentSince(d) => sent_day().is_some_and(|s| s >= *d),
        SearchKey::Older(n) => c.meta.internal_date() <= c.prepared.now - i64::from(*n),
        SearchKey::Younger(n) => c.meta.internal_date() > c.prepared.now - i64::from(*n),
        SearchKey::Larger(n) => u64::from(c.meta.size) > *n,
        SearchKey::Smaller(n) => u64::from(c.meta.size) < *n,
        SearchKey::Uid(set) => match set {
            imap_proto::command::SequenceSet::Saved => saved.contains(&c.meta.uid),
            _ => set.contains(c.meta.uid, c.max_uid),
        },
        SearchKey::Sequence(set) => match set {
            imap_proto::command::SequenceSet::Saved => saved.contains(&c.meta.uid),
            _ => set.contains(c.seq, c.max_seq),
        },
        SearchKey::ModSeq(m) => c.meta.modseq >= *m,
        SearchKey::Not(k) => !matches(k, c, saved),
        SearchKey::Or(a, b) => matches(a, c, saved) || matches(b, c, saved),
        SearchKey::And(keys) => keys.iter().all(|k| matches(k, c, saved)),
    }
}

// One parameter per argument of the command.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn search(
    cx: &mut Ctx<'_>,
    account: &Account,
    selected: &mut Selected,
    tag: &str,
    uid: bool,
    charset: Option<&str>,
    key: &SearchKey,
    ret: Option<&SearchReturn>,
) -> CommandResult {
    // Text is indexed as UTF-8, of which US-ASCII is a subset (RFC 9051 §6.4.4: an
    // unsupported charset gets NO, not BAD).
    if !matches!(charset, None | Some("UTF-8" | "US-ASCII")) {
        return Err(CommandError::no(
            Some("BADCHARSET (UTF-8 US-ASCII)"),
            "unsupported charset",
        ));
    }
    let view = &selected.view;
    let mailbox = view.mailbox.id;
    // Content keys are answered by the store's full-text index and the stored header
    // blocks, never by re-reading and re-parsing every message.
    let mut wanted = Vec::new();
    let mut all_headers = false;
    queries(
        key,
        view.len() <= HEADER_SCAN_LIMIT,
        &mut wanted,
        &mut all_headers,
    );
    let mut prepared = Prepared {
        now: common::clock::now(),
        scanned: all_headers,
        ..Prepared::default()
    };
    let mut header_uids: HashSet<u32> = HashSet::new();
    for (scope, needle) in wanted {
        let slot = (scope_key(scope), needle.clone());
        if prepared.hits.contains_key(&slot) {
            continue;
        }
        let hits: HashSet<u32> = cx
            .store
            .search_text(mailbox, &needle, scope)
            .await?
            .into_iter()
            .collect();
        if scope == TextScope::Headers {
            header_uids.extend(&hits);
        }
        prepared.hits.insert(slot, hits);
    }
    let header_list: Vec<u32> = if all_headers {
        view.messages().iter().map(|m| m.uid).collect()
    } else {
        let mut list: Vec<u32> = header_uids.into_iter().collect();
        list.sort_unstable();
        list
    };
    if !header_list.is_empty() {
        for (uid, summary) in cx.store.summaries(mailbox, &header_list).await? {
            prepared.headers.insert(uid, summary.header);
        }
    }
    let max_seq = view.len() as u32;
    let max_uid = view.max_uid();
    let mut found: Vec<(u32, u32)> = Vec::new();
    for (i, meta) in view.messages().iter().enumerate() {
        let candidate = Candidate {
            seq: i as u32 + 1,
            max_seq,
            max_uid,
            meta,
            prepared: &prepared,
        };
        if matches(key, &candidate, &selected.saved) {
            found.push((candidate.seq, meta.uid));
        }
    }
    let numbers: Vec<u32> = found
        .iter()
        .map(|&(seq, u)| if uid { u } else { seq })
        .collect();
    let extended = ret.is_some() || account.enabled.rev2;
    let out = if extended {
        let ret = ret.cloned().unwrap_or(SearchReturn {
            all: true,
            ..SearchReturn::default()
        });
        if ret.save {
            selected.saved = found.iter().map(|&(_, u)| u).collect();
        }
        let mut line = format!("* ESEARCH (TAG \"{tag}\")");
        if uid {
            line.push_str(" UID");
        }
        if !numbers.is_empty() {
            if ret.min {
                line.push_str(&format!(" MIN {}", numbers[0]));
            }
            if ret.max {
                line.push_str(&format!(" MAX {}", numbers[numbers.len() - 1]));
            }
            if ret.all {
                line.push_str(&format!(" ALL {}", compress(&numbers)));
            }
        }
        if ret.count {
            line.push_str(&format!(" COUNT {}", numbers.len()));
        }
        // RFC 5182 §2.1: SAVE alone (no other option) returns no ESEARCH response.
        let only_save = ret.save && !ret.min && !ret.max && !ret.all && !ret.count;
        if only_save {
            String::new()
        } else {
            format!("{line}\r\n")
        }
    } else {
        let list: Vec<String> = numbers.iter().map(u32::to_string).collect();
        if list.is_empty() {
            "* SEARCH\r\n".to_string()
        } else {
            format!("* SEARCH {}\r\n", list.join(" "))
        }
    };
    cx.out().extend_from_slice(out.as_bytes());
    Ok(ok("SEARCH completed"))
}
