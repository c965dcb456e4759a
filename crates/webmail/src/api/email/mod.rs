//! `Email/query`, `Email/get`, `Email/set` and `Email/changes`, and what they share: keywords
//! and thread keys.

pub(super) mod changes;
pub(super) mod get;
pub(super) mod query;
pub(super) mod set;

use serde_json::Value;
use store::flags;

use crate::mail;

fn iso(unix: i64) -> String {
    message::date::format_rfc3339(unix)
}

/// An email's `keywords` (RFC 8621 §4.1.1): the system flags by their `$` names, then the
/// stored keywords.
fn keywords(flag_bits: u32, extra: &[String]) -> Value {
    let mut map = serde_json::Map::new();
    for (bit, name) in [
        (flags::SEEN, "$seen"),
        (flags::FLAGGED, "$flagged"),
        (flags::ANSWERED, "$answered"),
        (flags::DRAFT, "$draft"),
    ] {
        if flag_bits & bit != 0 {
            map.insert(name.into(), Value::Bool(true));
        }
    }
    for k in extra {
        map.insert(k.clone(), Value::Bool(true));
    }
    Value::Object(map)
}

/// RFC 8621 §4.1.1: 1-255 characters of %x21-7E, none of `( ) { ] % * " \`.
fn valid_keyword(keyword: &str) -> bool {
    !keyword.is_empty()
        && keyword.len() <= 255
        && keyword
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && !b"(){]%*\"\\".contains(&b))
}

/// The system flag a keyword stands for, if any.
fn keyword_bit(keyword: &str) -> Option<u32> {
    Some(match keyword.to_ascii_lowercase().as_str() {
        "$seen" => flags::SEEN,
        "$flagged" => flags::FLAGGED,
        "$answered" => flags::ANSWERED,
        "$draft" => flags::DRAFT,
        "$deleted" => flags::DELETED,
        _ => return None,
    })
}

/// A thread's key: the first message of the chain its references name, else its own id.
pub(in crate::api) fn thread_key(h: &mail::Headers) -> String {
    h.references
        .first()
        .or(h.in_reply_to.first())
        .or(h.message_id.as_ref())
        .cloned()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_follow_rfc_8621() {
        assert!(valid_keyword("$Work"));
        assert!(!valid_keyword("a b"));
        assert!(!valid_keyword(""));
        assert!(!valid_keyword(&"k".repeat(256)));
        assert!(!valid_keyword("a(b"));
        assert_eq!(keyword_bit("$SEEN"), Some(flags::SEEN));
        assert_eq!(keyword_bit("$work"), None);
        let k = keywords(flags::SEEN | flags::DELETED, &["$work".into()]);
        assert_eq!(k, serde_json::json!({"$seen": true, "$work": true}));
    }
}
