//! Reading the header block of a message (on mail-parser), for policy checks such as
//! submission's "the From: must be yours".

use mail_parser::{HeaderName, MessageParser};

/// What submission needs to know about a message's headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderSummary {
    /// Addresses in `From:` (lowercased), in order.
    pub from: Vec<String>,
    /// Addresses in `Sender:`, if present.
    pub sender: Vec<String>,
    pub has_message_id: bool,
    pub has_date: bool,
}

/// Parses only the headers of `raw`. Malformed headers give a best-effort summary.
pub fn summarize(raw: &[u8]) -> HeaderSummary {
    let Some(message) = MessageParser::default().parse_headers(raw) else {
        return HeaderSummary::default();
    };
    let addresses = |name: HeaderName<'_>| -> Vec<String> {
        message
            .header(name)
            .and_then(|h| h.as_address())
            .map(|a| {
                a.iter()
                    .filter_map(|addr| addr.address.as_ref())
                    .map(|s| s.to_lowercase())
                    .collect()
            })
            .unwrap_or_default()
    };
    HeaderSummary {
        from: addresses(HeaderName::From),
        sender: addresses(HeaderName::Sender),
        has_message_id: message.header(HeaderName::MessageId).is_some(),
        has_date: message.header(HeaderName::Date).is_some(),
    }
}

/// Length of the header block including the blank line that ends it (or the whole message if
/// it has no body).
pub fn header_len(raw: &[u8]) -> usize {
    raw.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .unwrap_or(raw.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_and_presence() {
        let raw = b"From: \"Alice A.\" <Alice@Example.ORG>, bob@b.test\r\nSubject: x\r\n\r\nbody\r\nFrom: fake@x\r\n";
        let s = summarize(raw);
        assert_eq!(s.from, ["alice@example.org", "bob@b.test"]);
        assert!(!s.has_message_id);
        assert!(!s.has_date);
        let raw = b"Message-ID: <a@b>\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\nFrom: =?UTF-8?B?5byg5LiJ?= <zhang@example.org>\r\n\r\n";
        let s = summarize(raw);
        assert_eq!(s.from, ["zhang@example.org"]);
        assert!(s.has_message_id && s.has_date);
        assert_eq!(header_len(raw), raw.len());
        assert_eq!(
            summarize(b"garbage without headers"),
            HeaderSummary::default()
        );
    }
}
