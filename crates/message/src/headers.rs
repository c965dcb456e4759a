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
    // Every header of the name, not the last one only: a second `From:` must not slip an
    // unchecked address past the sender policy.
    let addresses = |name: HeaderName<'_>| -> Vec<String> {
        message
            .headers()
            .iter()
            .filter(|h| h.name == name)
            .filter_map(|h| h.value.as_address())
            .flat_map(|a| {
                a.iter()
                    .filter_map(|addr| addr.address.as_ref())
                    .map(|s| s.to_lowercase())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    HeaderSummary {
        from: addresses(HeaderName::From),
        sender: addresses(HeaderName::Sender),
        has_message_id: message.header(HeaderName::MessageId).is_some(),
        has_date: message.header(HeaderName::Date).is_some(),
    }
}

/// Where a message's header section ends (see [`header_section`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderSection {
    /// End of the header fields, their last line end included: `raw[..end]` is the header
    /// block without the empty line.
    pub end: usize,
    /// Start of the body, after the empty line: `raw[..body]` is the header block with it.
    pub body: usize,
}

/// The one "end of header" rule (RFC 5322 §2.1: the header fields, then an empty line, then
/// the body): the first empty line, ended by CRLF or by a bare LF, as mail-parser (and so
/// BODYSTRUCTURE) reads bare-LF mail. A message without an empty line is all header.
/// Every reader of stored bytes uses this: IMAP's `BODY[HEADER]`/`TEXT`, the summary's header
/// block, search, the submission policy, DSNs, POP3's TOP, `pigeon queue show`.
pub fn header_section(raw: &[u8]) -> HeaderSection {
    let mut start = 0;
    while start < raw.len() {
        let Some(lf) = raw[start..].iter().position(|&b| b == b'\n') else {
            break;
        };
        let line_end = start + lf + 1;
        if matches!(&raw[start..line_end], b"\n" | b"\r\n") {
            return HeaderSection {
                end: start,
                body: line_end,
            };
        }
        start = line_end;
    }
    HeaderSection {
        end: raw.len(),
        body: raw.len(),
    }
}

/// Length of the header block including the empty line that ends it (or the whole message if
/// it has no body).
pub fn header_len(raw: &[u8]) -> usize {
    header_section(raw).body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_section_edges() {
        let section = |raw: &[u8]| {
            let s = header_section(raw);
            (s.end, s.body)
        };
        assert_eq!(section(b"A: 1\r\nB: 2\r\n\r\nbody\r\n"), (12, 14));
        assert_eq!(section(b"A: 1\nB: 2\n\nbody\n"), (10, 11), "bare LF");
        assert_eq!(section(b"A: 1\r\n\nbody"), (6, 7), "mixed");
        assert_eq!(section(b"A: 1\n\r\nbody"), (5, 7), "mixed the other way");
        assert_eq!(section(b"A: 1\r\n"), (6, 6), "no body");
        assert_eq!(section(b"A: 1"), (4, 4));
        assert_eq!(section(b"\r\nbody"), (0, 2), "no header");
        assert_eq!(section(b""), (0, 0));
        assert_eq!(
            section(b"A: 1\r\n \r\nB: 2\r\n\r\n"),
            (15, 17),
            "a blank continuation"
        );
        assert_eq!(
            section(b"A: 1\r\r\nB\r\n\r\n"),
            (10, 12),
            "CR CR LF is no empty line"
        );
        // The rules that used to differ: `\r\n\r\n` only, and `\n\n` only after that.
        let lf_then_crlf = b"A: 1\n\nbody\r\n\r\nmore";
        assert_eq!(header_len(lf_then_crlf), 6);
    }

    #[test]
    fn every_from_header_counts() {
        let raw = b"From: victim@bank.test\r\nSubject: x\r\nFrom: me@mine.test\r\n\r\nbody\r\n";
        assert_eq!(summarize(raw).from, ["victim@bank.test", "me@mine.test"]);
    }

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

/// Removes `Authentication-Results:` fields that claim `authserv_id` (RFC 8601 §5: a receiving
/// server deletes results in its own name that arrived from outside, so its users can trust
/// them). Only the header block is touched; None when nothing was removed.
pub fn strip_authentication_results(raw: &[u8], authserv_id: &str) -> Option<Vec<u8>> {
    let header_end = header_section(raw).end;
    let mut out = Vec::with_capacity(raw.len());
    let mut removed = false;
    let mut pos = 0;
    while pos < header_end {
        // One field: its first line plus continuation lines (starting with space or tab).
        let mut end = pos;
        loop {
            end = match raw[end..header_end].iter().position(|&b| b == b'\n') {
                Some(p) => end + p + 1,
                None => header_end,
            };
            if end >= header_end || !matches!(raw[end], b' ' | b'\t') {
                break;
            }
        }
        let field = &raw[pos..end];
        if claims(field, authserv_id) {
            removed = true;
        } else {
            out.extend_from_slice(field);
        }
        pos = end;
    }
    out.extend_from_slice(&raw[header_end..]);
    removed.then_some(out)
}

fn claims(field: &[u8], authserv_id: &str) -> bool {
    let name = b"authentication-results:";
    if field.len() < name.len() || !field[..name.len()].eq_ignore_ascii_case(name) {
        return false;
    }
    let value = String::from_utf8_lossy(&field[name.len()..]);
    let id = value
        .trim_start()
        .split(|c: char| c == ';' || c.is_whitespace())
        .next()
        .unwrap_or("");
    id.eq_ignore_ascii_case(authserv_id)
}

#[cfg(test)]
mod strip_tests {
    use super::*;

    #[test]
    fn forged_results_in_our_name_go_others_stay() {
        let raw = b"Received: x\r\nAuthentication-Results: MX.B.TEST;\r\n\tdkim=pass header.d=bank.test\r\n\
                    Authentication-Results: other.example; spf=fail\r\nSubject: hi\r\n\r\n\
                    Authentication-Results: mx.b.test; body line stays\r\n";
        let clean = strip_authentication_results(raw, "mx.b.test").unwrap();
        assert_eq!(
            clean,
            b"Received: x\r\nAuthentication-Results: other.example; spf=fail\r\nSubject: hi\r\n\r\n\
              Authentication-Results: mx.b.test; body line stays\r\n"
        );
        assert_eq!(
            strip_authentication_results(b"Subject: x\r\n\r\nbody", "mx.b.test"),
            None
        );
        assert_eq!(
            strip_authentication_results(
                b"Authentication-Results: mx.b.test.evil; x\r\n\r\n",
                "mx.b.test"
            ),
            None,
            "only the exact authserv-id"
        );
    }
}
