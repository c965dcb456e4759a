//! SEARCH (RFC 9051 §6.4.4) with ESEARCH (RFC 4731) and SEARCHRES (RFC 5182).

use imap_proto::command::{SearchKey, SearchReturn};
use message::search::Searchable;
use store::flags;

use crate::view::Meta;
use crate::{Outcome, Session, internal, ok};

/// Whether a key needs the message's bytes.
fn needs_content(key: &SearchKey) -> bool {
    match key {
        SearchKey::Header { .. }
        | SearchKey::Body(_)
        | SearchKey::Text(_)
        | SearchKey::SentBefore(_)
        | SearchKey::SentOn(_)
        | SearchKey::SentSince(_) => true,
        SearchKey::Not(k) => needs_content(k),
        SearchKey::Or(a, b) => needs_content(a) || needs_content(b),
        SearchKey::And(keys) => keys.iter().any(needs_content),
        _ => false,
    }
}

struct Candidate<'a> {
    seq: u32,
    max_seq: u32,
    max_uid: u32,
    meta: &'a Meta,
    content: Option<Searchable<'a>>,
}

fn matches(key: &SearchKey, c: &Candidate<'_>, saved: &[u32]) -> bool {
    let day = c.meta.internal_date.div_euclid(86_400);
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
            c.content.as_ref().is_some_and(|s| s.header(name, value))
        }
        SearchKey::Body(text) => c.content.as_ref().is_some_and(|s| s.body(text)),
        SearchKey::Text(text) => c.content.as_ref().is_some_and(|s| s.text(text)),
        SearchKey::Before(d) => day < *d,
        SearchKey::On(d) => day == *d,
        SearchKey::Since(d) => day >= *d,
        SearchKey::SentBefore(d) => c
            .content
            .as_ref()
            .and_then(Searchable::sent_day)
            .is_some_and(|s| s < *d),
        SearchKey::SentOn(d) => c
            .content
            .as_ref()
            .and_then(Searchable::sent_day)
            .is_some_and(|s| s == *d),
        SearchKey::SentSince(d) => c
            .content
            .as_ref()
            .and_then(Searchable::sent_day)
            .is_some_and(|s| s >= *d),
        SearchKey::Larger(n) => c.meta.size > *n,
        SearchKey::Smaller(n) => c.meta.size < *n,
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

/// `1:3,5` from a sorted list of numbers.
pub(crate) fn compress(numbers: &[u32]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < numbers.len() {
        let start = numbers[i];
        let mut end = start;
        while i + 1 < numbers.len() && numbers[i + 1] == end + 1 {
            i += 1;
            end = numbers[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}:{end}")
        });
        i += 1;
    }
    parts.join(",")
}

impl Session {
    pub(crate) async fn search(
        &mut self,
        tag: &str,
        uid: bool,
        key: &SearchKey,
        ret: Option<&SearchReturn>,
    ) -> Outcome {
        let view = self.selected.as_ref().expect("checked by the dispatcher");
        let content = needs_content(key);
        let max_seq = view.len() as u32;
        let max_uid = view.max_uid();
        let mut found: Vec<(u32, u32)> = Vec::new();
        for (i, meta) in view.messages().iter().enumerate() {
            let raw = if content {
                match self.store.read_message(view.mailbox.id, meta.uid).await {
                    Ok(raw) => Some(raw),
                    Err(store::StoreError::NotFound(_)) => continue,
                    Err(e) => return Err(internal(e)),
                }
            } else {
                None
            };
            let candidate = Candidate {
                seq: i as u32 + 1,
                max_seq,
                max_uid,
                meta,
                content: raw.as_deref().map(Searchable::new),
            };
            if matches(key, &candidate, &self.saved) {
                found.push((candidate.seq, meta.uid));
            }
        }
        let numbers: Vec<u32> = found
            .iter()
            .map(|&(seq, u)| if uid { u } else { seq })
            .collect();
        let _ = flags::SEEN;
        let extended = ret.is_some() || self.rev2;
        let out = if extended {
            let ret = ret.cloned().unwrap_or(SearchReturn {
                all: true,
                ..SearchReturn::default()
            });
            if ret.save {
                self.saved = found.iter().map(|&(_, u)| u).collect();
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
        self.machine.out().extend_from_slice(out.as_bytes());
        Ok(ok("SEARCH completed"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn compress_ranges() {
        assert_eq!(super::compress(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(super::compress(&[]), "");
    }
}
