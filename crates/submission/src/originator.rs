//! The submission sender policy on a message's originator fields (RFC 5322 §3.6.2, §3.6.6;
//! RFC 6409 §8): who a recipient will believe the message is from.
//!
//! - The header must be clean: no bare CR or LF (whatever the conversion to CRLF made of them,
//!   the sender meant something else than some reader will see) and no NUL.
//! - Exactly one `From:` (RFC 5322 §3.6: one From field, at most one Sender field); a missing
//!   `From:` is refused rather than completed (RFC 6409 §8.1 would allow adding one; a client
//!   that omits it is broken, and refusing tells its user).
//! - `From:`, `Sender:`, `Resent-From:` and `Resent-Sender:`: every entry must carry an address
//!   (a display name alone, however it decodes, is refused), and every address must be the
//!   user's (their own, an alias of theirs, or allowed by the policy).
//! - Parsers differ on odd syntax, so besides what mail-parser reads as the addresses, every
//!   address-looking token in these fields (raw, and in the decoded display names and
//!   comments) must be the user's too: `"victim@bank.test" <me@ours>` and
//!   `=?utf-8?q?victim=40bank.test?= <me@ours>` are refused, since a reader shows that name.
//!
//! The message is already canonical (CRLF only) when it gets here.

use auth::Authenticated;
use mail_parser::{Address, HeaderName, MessageParser};
use smtp_proto::canonical::Findings;

use crate::Submitter;

/// Why the sender policy refused a message; each front end words it (SMTP as the reply codes
/// below).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The header is malformed: 554 5.6.0.
    Format(String),
    /// An originator field names an address the user does not own: 553 5.7.1.
    NotOwned {
        field: &'static str,
        address: String,
    },
    /// The store could not answer: 451.
    Temporary,
}

/// The originator fields we police, by their canonical names.
const FIELDS: [&str; 4] = ["From", "Sender", "Resent-From", "Resent-Sender"];

/// One originator field as found in the header: its canonical name and raw value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Field {
    pub name: &'static str,
    pub value: String,
}

/// What the policy needs from one originator field.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Parsed {
    /// Addresses of the mailboxes (lowercased).
    pub addresses: Vec<String>,
    /// Entries without an address (a display name or a comment only).
    pub nameless: usize,
    /// Every address-looking token of the field: in the raw value and the decoded names.
    pub tokens: Vec<String>,
}

/// Checks `data` (canonical) against the policy for `user`; returns the `From:` addresses.
pub(crate) async fn check(
    submitter: &Submitter,
    user: &Authenticated,
    data: &[u8],
    findings: &Findings,
) -> Result<Vec<String>, Refusal> {
    let fields = static_check(data, findings)?;
    let mut from = Vec::new();
    for (field, parsed) in &fields {
        if field.name == "From" {
            from.extend(parsed.addresses.iter().cloned());
        }
        for address in parsed.addresses.iter().chain(&parsed.tokens) {
            match submitter.owns(user, address).await {
                Ok(true) => {}
                Ok(false) => {
                    return Err(Refusal::NotOwned {
                        field: field.name,
                        address: address.clone(),
                    });
                }
                Err(e) => {
                    tracing::error!(error = %e, "sender lookup failed");
                    return Err(Refusal::Temporary);
                }
            }
        }
    }
    Ok(from)
}

/// Everything the policy can decide without the store; returns the originator fields.
pub(crate) fn static_check(
    data: &[u8],
    findings: &Findings,
) -> Result<Vec<(Field, Parsed)>, Refusal> {
    let format = |text: &str| Err(Refusal::Format(text.to_string()));
    if findings.bare_line_end_in_header {
        return format("Bare CR or LF in the message header: header lines end with CRLF");
    }
    if findings.nul_in_header {
        return format("NUL character in the message header");
    }
    let fields = originator_fields(data);
    match fields.iter().filter(|f| f.name == "From").count() {
        0 => return format("Message has no From: field (RFC 5322 section 3.6)"),
        1 => {}
        _ => return format("Message has more than one From: field (RFC 5322 section 3.6)"),
    }
    if fields.iter().filter(|f| f.name == "Sender").count() > 1 {
        return format("Message has more than one Sender: field (RFC 5322 section 3.6)");
    }
    let mut checked = Vec::with_capacity(fields.len());
    for field in fields {
        let parsed = parse(&field);
        if parsed.addresses.is_empty() || parsed.nameless > 0 {
            return Err(Refusal::Format(format!(
                "Every {}: entry needs an address",
                field.name
            )));
        }
        checked.push((field, parsed));
    }
    Ok(checked)
}

/// The originator fields of the header section of `data`, unfolded, in order. A field name is
/// matched without case and with spaces before the colon (RFC 5322 §4.5.3's obsolete syntax,
/// which some readers still accept).
pub(crate) fn originator_fields(data: &[u8]) -> Vec<Field> {
    let header = &data[..message::headers::header_len(data)];
    let mut fields: Vec<Field> = Vec::new();
    // Whether the last line began a field we keep, so continuation lines join it.
    let mut current = false;
    for line in header.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if current && let Some(field) = fields.last_mut() {
                field.value.push_str("\r\n");
                field.value.push_str(&String::from_utf8_lossy(line));
            }
            continue;
        }
        current = false;
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = String::from_utf8_lossy(&line[..colon]);
        let name = name.trim_end_matches([' ', '\t']);
        if let Some(known) = FIELDS.iter().find(|f| f.eq_ignore_ascii_case(name)) {
            fields.push(Field {
                name: known,
                value: String::from_utf8_lossy(&line[colon + 1..]).into_owned(),
            });
            current = true;
        }
    }
    fields
}

/// Reads one originator field's mailboxes with mail-parser and collects address-looking tokens.
pub(crate) fn parse(field: &Field) -> Parsed {
    let mut parsed = Parsed::default();
    let raw = format!("From:{}\r\n\r\n", field.value);
    let mut names = Vec::new();
    if let Some(message) = MessageParser::default().parse_headers(raw.as_bytes()) {
        let entries: Vec<&mail_parser::Addr<'_>> = match message
            .header(HeaderName::From)
            .and_then(|v| v.as_address())
        {
            Some(Address::List(list)) => list.iter().collect(),
            Some(Address::Group(groups)) => {
                // A group's display name (RFC 6854 allows groups in From) is shown by readers
                // like a mailbox's, so its decoded text is policed too.
                names.extend(
                    groups
                        .iter()
                        .filter_map(|g| g.name.as_deref())
                        .map(str::to_string),
                );
                groups.iter().flat_map(|g| g.addresses.iter()).collect()
            }
            None => Vec::new(),
        };
        for entry in entries {
            match entry.address.as_deref().map(str::trim) {
                Some(address) if !address.is_empty() => {
                    parsed.addresses.push(address.to_lowercase())
                }
                _ => parsed.nameless += 1,
            }
            if let Some(name) = &entry.name {
                names.push(name.to_string());
            }
        }
    }
    for text in std::iter::once(field.value.as_str()).chain(names.iter().map(String::as_str)) {
        for token in address_tokens(text) {
            if !parsed.tokens.contains(&token) && !parsed.addresses.contains(&token) {
                parsed.tokens.push(token);
            }
        }
    }
    parsed
}

/// Substrings of `text` that read as `local@domain`, lowercased: what a person (or a lenient
/// parser) would take for an address.
pub(crate) fn address_tokens(text: &str) -> Vec<String> {
    let local_char =
        |c: char| c.is_alphanumeric() || !c.is_ascii() || "!#$%&'*+-/=?^_`{|}~.\"\\".contains(c);
    let domain_char = |c: char| c.is_alphanumeric() || !c.is_ascii() || "-.[]:".contains(c);
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    for (at, _) in chars.iter().enumerate().filter(|(_, c)| **c == '@') {
        let start = (0..at)
            .rev()
            .take_while(|&i| local_char(chars[i]))
            .last()
            .unwrap_or(at);
        let end = (at + 1..chars.len())
            .take_while(|&i| domain_char(chars[i]))
            .last()
            .map(|i| i + 1)
            .unwrap_or(at + 1);
        let local: String = chars[start..at].iter().collect();
        let domain: String = chars[at + 1..end].iter().collect();
        let mut local = local.trim_start_matches('.');
        // A quote opens a quoted local part (`"v"@bank.test`) only if it also closes it;
        // otherwise it belongs to a quoted display name (`"v@bank.test" <...>`).
        if !(local.len() >= 2 && local.starts_with('"') && local.ends_with('"')) {
            local = local.trim_start_matches(['"', '.']);
        }
        let domain = domain.trim_end_matches(['.', ':']);
        if local.is_empty() || domain.is_empty() {
            continue;
        }
        tokens.push(format!("{local}@{domain}").to_lowercase());
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(header: &str) -> Result<Vec<Parsed>, Refusal> {
        let data = format!("{header}\r\nbody\r\n");
        let (data, findings) = smtp_proto::canonical::inspect(data.as_bytes());
        static_check(&data, &findings).map(|fields| fields.into_iter().map(|(_, p)| p).collect())
    }

    fn format_error(header: &str) -> String {
        match check(header) {
            Err(Refusal::Format(text)) => text,
            other => panic!("{header:?} was not refused: {other:?}"),
        }
    }

    #[test]
    fn originator_fields_are_found_however_spelled() {
        let data = b"FROM : a@x.test\r\nsender:\r\n b@x.test\r\nResent-From: c@x.test\r\nX-From: z@y.test\r\n\r\nFrom: body@y.test\r\n";
        let fields = originator_fields(data);
        assert_eq!(
            fields,
            [
                Field {
                    name: "From",
                    value: " a@x.test".into()
                },
                Field {
                    name: "Sender",
                    value: "\r\n b@x.test".into()
                },
                Field {
                    name: "Resent-From",
                    value: " c@x.test".into()
                },
            ]
        );
    }

    #[test]
    fn addresses_and_tokens() {
        let parsed = check("From: \"Alice A.\" <Alice@X.test>, bob@x.test").unwrap();
        assert_eq!(parsed[0].addresses, ["alice@x.test", "bob@x.test"]);
        assert!(parsed[0].tokens.is_empty(), "{:?}", parsed[0].tokens);
        // A display name that reads as another address, plain or encoded.
        let parsed = check("From: \"victim@bank.test\" <me@x.test>").unwrap();
        assert_eq!(parsed[0].tokens, ["victim@bank.test"]);
        let parsed = check("From: =?utf-8?q?victim=40bank=2Etest?= <me@x.test>").unwrap();
        assert_eq!(parsed[0].tokens, ["victim@bank.test"]);
        let parsed = check("From: me@x.test (victim@bank.test)").unwrap();
        assert_eq!(parsed[0].addresses, ["me@x.test"]);
        assert_eq!(parsed[0].tokens, ["victim@bank.test"]);
        // A group's encoded display name that reads as another address (RFC 6854 groups).
        let parsed = check("From: =?utf-8?q?ceo=40bank.test?=: me@x.test;").unwrap();
        assert_eq!(parsed[0].addresses, ["me@x.test"]);
        assert_eq!(parsed[0].tokens, ["ceo@bank.test"]);
        // Two angle addresses: whichever a reader picks must be ours.
        let parsed = check("From: <me@x.test> <victim@bank.test>").unwrap();
        let all: Vec<_> = parsed[0]
            .addresses
            .iter()
            .chain(&parsed[0].tokens)
            .collect();
        assert!(all.contains(&&"victim@bank.test".to_string()), "{all:?}");
        assert_eq!(
            address_tokens("mail \"v\"@bank.test, a@[127.0.0.1] or x@localhost"),
            ["\"v\"@bank.test", "a@[127.0.0.1]", "x@localhost"]
        );
    }

    #[test]
    fn sender_tricks_are_refused() {
        assert!(format_error("Subject: none").contains("no From:"));
        assert!(format_error("From: a@x.test\r\nFrom: b@x.test").contains("more than one From:"));
        assert!(
            format_error("From: a@x.test\r\nSender: a@x.test\r\nSender: b@x.test")
                .contains("more than one Sender:")
        );
        assert!(format_error("From: =?utf-8?q?victim=40bank=2Etest?=").contains("address"));
        assert!(format_error("From: Victim Name").contains("address"));
        assert!(format_error("From: a@x.test, Victim").contains("address"));
        assert!(format_error("From: undisclosed:;").contains("address"));
        assert!(format_error("From: a@x.test\r\nResent-From: ").contains("Resent-From"));
        assert!(format_error("From: a\0@x.test").contains("NUL"));
        assert!(format_error("From: a@x.test\nX: y").contains("Bare CR or LF"));
        assert!(format_error("From: a@x.test\rX: y").contains("Bare CR or LF"));
        assert!(check("From: a@x.test\r\nSender: s@x.test\r\nResent-From: r@x.test").is_ok());
    }
}
