//! Delivery status notifications (bounces): RFC 3464 reports in an RFC 6522
//! `multipart/report`, with RFC 6533 `utf-8` address types for international recipients.
//!
//! The report has three parts: a `text/plain` explanation for people, the
//! `message/delivery-status` fields for programs, and the original message
//! (`message/rfc822`) or only its header block (`text/rfc822-headers`).
//!
//! Implementation notes:
//! - Everything in a report that came from outside (addresses, ORCPT, ENVID, the remote
//!   reply, host names) is sanitised: control characters, CR and LF first, become spaces,
//!   so a hostile remote reply cannot start a header field or a status field of its own.
//! - The `message/delivery-status` part is 7-bit, as its registration requires: non-ASCII
//!   addresses use the RFC 6533 `utf-8-addr-xtext` form (`\x{F6}`), other non-ASCII text
//!   becomes `?`. The text part is quoted-printable when it is not ASCII.
//!   So the body is 8-bit only when the returned original (or its header block) is, and
//!   then says so with `Content-Transfer-Encoding: 8bit`; the header is 8-bit only for a
//!   non-ASCII sender (RFC 6532, which needs SMTPUTF8 anyway). The caller sends the report
//!   with `BODY=8BITMIME` when it contains a byte above 0x7f.
//! - Field values are cut at [`MAX_VALUE`] bytes and folded at spaces, so no line
//!   exceeds RFC 5322's 998 octets.
//! - The original is returned byte for byte (bare CR or LF become CRLF; a CRLF message
//!   is unchanged).
//!
//! The caller sends the report with a null reverse path (`MAIL FROM:<>`, RFC 3464 §2,
//! RFC 5321 §4.5.5) and never reports on a message that itself had a null sender.

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::date::format_rfc5322;

/// What happened to a recipient (RFC 3464 §2.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Gave up: the message will not be delivered.
    Failed,
    /// Not delivered yet; still being retried.
    Delayed,
    /// Delivered to the recipient's mailbox.
    Delivered,
    /// Handed to a system that does not send DSNs itself.
    Relayed,
}

impl Action {
    /// The `Action:` keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
            Action::Delivered => "delivered",
            Action::Relayed => "relayed",
        }
    }

    /// The status to report when the caller's is not a valid enhanced status code.
    fn default_status(self) -> &'static str {
        match self {
            Action::Failed => "5.0.0",
            Action::Delayed => "4.0.0",
            Action::Delivered | Action::Relayed => "2.0.0",
        }
    }
}

/// One recipient's outcome: one per-recipient field group.
#[derive(Debug, Clone)]
pub struct RecipientReport {
    /// The address we tried (`Final-Recipient:`).
    pub address: String,
    /// The ORCPT value as the client gave it, xtext-decoded: `rfc822;addr`,
    /// `utf-8;addr`, or a bare address (taken as `rfc822`).
    pub original: Option<String>,
    pub action: Action,
    /// Enhanced status code (RFC 3463), e.g. `5.1.1`; an invalid one becomes the
    /// action's generic code (`5.0.0`, `4.0.0`, `2.0.0`).
    pub status: String,
    /// Host name of the server that answered (`Remote-MTA:`).
    pub remote_mta: Option<String>,
    /// The remote reply, e.g. `550 5.1.1 <bob@b.test>: no such user` (`Diagnostic-Code:`).
    pub diagnostic: Option<String>,
    /// Unix seconds (`Last-Attempt-Date:`).
    pub last_attempt: Option<i64>,
    /// Unix seconds (`Will-Retry-Until:`); written only for [`Action::Delayed`].
    pub will_retry_until: Option<i64>,
}

/// Everything a report says about one message.
#[derive(Debug, Clone)]
pub struct Report<'a> {
    /// Our host name (`Reporting-MTA:`, and the `From:` domain).
    pub reporting_mta: &'a str,
    /// The ENVID the client gave, xtext-decoded (`Original-Envelope-Id:`).
    pub envid: Option<&'a str>,
    /// Unix seconds the message was queued (`Arrival-Date:`).
    pub arrival_date: i64,
    /// The envelope sender of the original: the report's `To:`.
    pub sender: &'a str,
    pub recipients: Vec<RecipientReport>,
    /// The original message.
    pub original: &'a [u8],
    /// Return only the original's header block (RET=HDRS, or the message is too big).
    pub headers_only: bool,
    /// Now, unix seconds (`Date:`).
    pub date: i64,
    /// The report's own Message-ID, without angle brackets.
    pub message_id: String,
}

/// The longest field value kept, in bytes: with a field name it stays well under
/// RFC 5322's 998 octets a line even when it is one unbreakable word.
pub const MAX_VALUE: usize = 900;

/// Header fields are folded at spaces to this width.
const WIDTH: usize = 76;

/// Text lines are wrapped at spaces to this width, short enough that quoted-printable
/// needs no soft line breaks for ASCII lines.
const TEXT_WIDTH: usize = 72;

/// Builds the complete report message, CRLF line ends.
pub fn build(report: &Report<'_>) -> Vec<u8> {
    let text = explanation(report);
    let status = delivery_status(report);
    let returned: Cow<'_, [u8]> = if report.headers_only {
        crlf(header_block(report.original))
    } else {
        crlf(report.original)
    };
    let eight_bit = !returned.is_ascii();
    let boundary = boundary(
        &report.message_id,
        &[text.as_bytes(), status.as_bytes(), &returned],
    );

    let mut head = String::new();
    field(
        &mut head,
        "From",
        &format!(
            "Mail Delivery System <MAILER-DAEMON@{}>",
            clean_angle(report.reporting_mta)
        ),
    );
    field(
        &mut head,
        "To",
        &format!("<{}>", clean_angle(report.sender)),
    );
    field(&mut head, "Subject", subject(&report.recipients));
    field(&mut head, "Date", &format_rfc5322(report.date));
    field(
        &mut head,
        "Message-ID",
        &format!("<{}>", clean_angle(&report.message_id).replace(' ', "")),
    );
    // RFC 3834 §5: keeps auto-responders from answering the report.
    field(&mut head, "Auto-Submitted", "auto-replied");
    field(&mut head, "MIME-Version", "1.0");
    field(
        &mut head,
        "Content-Type",
        &format!("multipart/report; report-type=delivery-status; boundary=\"{boundary}\""),
    );
    if eight_bit {
        // RFC 2045 §6.4: a multipart is 8bit when one of its parts is.
        field(&mut head, "Content-Transfer-Encoding", "8bit");
    }
    head.push_str("\r\nThis is a MIME-encapsulated message.\r\n");

    let mut out = head.into_bytes();
    out.reserve(text.len() + status.len() + returned.len() + 512);
    out.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
    out.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\n");
    if !text.is_ascii() {
        out.extend_from_slice(b"Content-Transfer-Encoding: quoted-printable\r\n\r\n");
        out.extend_from_slice(quoted_printable(&text).as_bytes());
    } else {
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(text.as_bytes());
    }
    out.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
    out.extend_from_slice(b"Content-Type: message/delivery-status\r\n\r\n");
    out.extend_from_slice(status.as_bytes());
    out.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
    out.extend_from_slice(if report.headers_only {
        b"Content-Type: text/rfc822-headers\r\n".as_slice()
    } else {
        b"Content-Type: message/rfc822\r\n".as_slice()
    });
    if eight_bit {
        out.extend_from_slice(b"Content-Transfer-Encoding: 8bit\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&returned);
    // RFC 2046 §5.1.1: the CRLF before a boundary belongs to the boundary, so the part
    // is exactly `returned`.
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// The subject names the worst outcome in the report.
fn subject(recipients: &[RecipientReport]) -> &'static str {
    let any = |action| recipients.iter().any(|r| r.action == action);
    if any(Action::Failed) {
        "Undelivered Mail Returned to Sender"
    } else if any(Action::Delayed) {
        "Delayed Mail (still being retried)"
    } else {
        "Successful Mail Delivery Report"
    }
}

/// The human-readable first part, CRLF line ends, UTF-8.
fn explanation(report: &Report<'_>) -> String {
    let mut lines = vec![
        format!(
            "This is the mail system at host {}.",
            clean(report.reporting_mta)
        ),
        String::new(),
    ];
    let groups = [
        (
            Action::Failed,
            "Your message could not be delivered to the following recipients. \
             The mail system has given up; no further attempts will be made.",
        ),
        (
            Action::Delayed,
            "Your message has not been delivered yet to the following recipients. \
             The mail system will keep trying; you do not need to send it again.",
        ),
        (
            Action::Delivered,
            "Your message was delivered to the following recipients.",
        ),
        (
            Action::Relayed,
            "Your message was passed on to the following recipients' mail systems, \
             which may not report on it further.",
        ),
    ];
    for (action, intro) in groups {
        let recipients: Vec<_> = report
            .recipients
            .iter()
            .filter(|r| r.action == action)
            .collect();
        if recipients.is_empty() {
            continue;
        }
        wrap(&mut lines, "", intro);
        lines.push(String::new());
        for recipient in recipients {
            wrap(
                &mut lines,
                "  ",
                &format!("<{}>", cut(&clean(&recipient.address))),
            );
            let host = recipient.remote_mta.as_deref().map(|h| cut(&clean(h)));
            match (host, &recipient.diagnostic) {
                (Some(host), Some(_)) => lines.push(format!("    {host} said:")),
                (Some(host), None) => wrap(&mut lines, "    ", &format!("Last tried {host}.")),
                (None, _) => {}
            }
            if let Some(diagnostic) = &recipient.diagnostic {
                // A multiline reply keeps its lines here; the status field joins them.
                for reply_line in cut(diagnostic).split('\n') {
                    let reply_line = clean(reply_line);
                    if !reply_line.is_empty() {
                        wrap(&mut lines, "    ", &reply_line);
                    }
                }
            }
            if let (Action::Delayed, Some(until)) = (action, recipient.will_retry_until) {
                wrap(
                    &mut lines,
                    "    ",
                    &format!("Will retry until {}.", format_rfc5322(until)),
                );
            }
            lines.push(String::new());
        }
    }
    lines.push(if report.headers_only {
        "The header of your message is attached.".to_owned()
    } else {
        "Your message is attached.".to_owned()
    });
    let mut text = lines.join("\r\n");
    text.push_str("\r\n");
    text
}

/// The `message/delivery-status` body: the per-message group, then one group per
/// recipient, each ended by a blank line except the last (RFC 3464 §2.1).
fn delivery_status(report: &Report<'_>) -> String {
    let mut out = String::new();
    field(
        &mut out,
        "Reporting-MTA",
        &format!("dns; {}", clean_ascii(report.reporting_mta)),
    );
    if let Some(envid) = report.envid {
        field(&mut out, "Original-Envelope-Id", &clean_ascii(envid));
    }
    field(
        &mut out,
        "Arrival-Date",
        &format_rfc5322(report.arrival_date),
    );
    for recipient in &report.recipients {
        out.push_str("\r\n");
        if let Some(original) = &recipient.original {
            field(
                &mut out,
                "Original-Recipient",
                &original_recipient(original),
            );
        }
        field(
            &mut out,
            "Final-Recipient",
            &typed_address(&recipient.address),
        );
        field(&mut out, "Action", recipient.action.as_str());
        field(
            &mut out,
            "Status",
            if valid_status(&recipient.status) {
                &recipient.status
            } else {
                recipient.action.default_status()
            },
        );
        if let Some(host) = &recipient.remote_mta {
            field(
                &mut out,
                "Remote-MTA",
                &format!("dns; {}", clean_ascii(host)),
            );
        }
        if let Some(diagnostic) = &recipient.diagnostic {
            field(
                &mut out,
                "Diagnostic-Code",
                &format!("smtp; {}", clean_ascii(diagnostic)),
            );
        }
        if let Some(at) = recipient.last_attempt {
            field(&mut out, "Last-Attempt-Date", &format_rfc5322(at));
        }
        if let (Action::Delayed, Some(until)) = (recipient.action, recipient.will_retry_until) {
            field(&mut out, "Will-Retry-Until", &format_rfc5322(until));
        }
    }
    out
}

/// RFC 3463 §2: `class.subject.detail`, class 2, 4 or 5, the others one to three digits.
fn valid_status(status: &str) -> bool {
    let mut parts = status.split('.');
    let digits = |part: Option<&str>| {
        part.is_some_and(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
    };
    matches!(parts.next(), Some("2" | "4" | "5"))
        && digits(parts.next())
        && digits(parts.next())
        && parts.next().is_none()
}

/// `rfc822; addr` for an ASCII address, else RFC 6533's `utf-8; ` with the address in
/// the 7-bit `utf-8-addr-xtext` form.
fn typed_address(address: &str) -> String {
    let address = address.trim();
    if address.is_ascii() {
        format!("rfc822; {}", clean_ascii(address))
    } else {
        format!("utf-8; {}", utf8_addr_xtext(address, true))
    }
}

/// The ORCPT value as `addr-type; address`. A bare address is `rfc822`; a non-ASCII
/// one becomes `utf-8` in xtext form (a `utf-8` value given in the 8-bit unitext form
/// keeps its `\x{..}` escapes and has its raw non-ASCII escaped too).
fn original_recipient(orcpt: &str) -> String {
    let (addr_type, value) = match orcpt.split_once(';') {
        Some((addr_type, value))
            if !addr_type.trim().is_empty()
                && addr_type
                    .trim()
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
        {
            (addr_type.trim(), value.trim())
        }
        _ => ("rfc822", orcpt.trim()),
    };
    if value.is_ascii() {
        format!("{addr_type}; {}", clean_ascii(value))
    } else if addr_type.eq_ignore_ascii_case("utf-8") {
        format!("utf-8; {}", utf8_addr_xtext(value, false))
    } else {
        format!("utf-8; {}", utf8_addr_xtext(value, true))
    }
}

/// RFC 6533 §3 `utf-8-addr-xtext`: QCHARs as they are, anything else as
/// `\x{HEXPOINT}`. With `escape_ascii` false only non-ASCII is escaped (for a value
/// that may already hold escapes). Control characters become `?`.
fn utf8_addr_xtext(value: &str, escape_ascii: bool) -> String {
    let mut out = String::with_capacity(value.len() + 16);
    for c in value.chars() {
        match c {
            c if c.is_control() => out.push('?'),
            '!'..='~' if !escape_ascii || !matches!(c, '+' | '=' | '\\') => out.push(c),
            c if c.is_ascii() => {
                let _ = write!(out, "\\x{{{:02X}}}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\x{{{:X}}}", u32::from(c));
            }
        }
    }
    out
}

/// Appends `name: value` CRLF, the value cut at [`MAX_VALUE`] bytes and folded before
/// spaces to about [`WIDTH`] columns (RFC 5322 §2.2.3). Values must be `clean` already.
fn field(out: &mut String, name: &str, value: &str) {
    let line = format!("{name}: {}", cut(value));
    let mut first = true;
    for piece in split_at_spaces(&line, WIDTH) {
        if !first {
            out.push_str("\r\n");
        }
        first = false;
        out.push_str(piece);
    }
    out.push_str("\r\n");
}

/// Word-wraps `text` into `lines`, every line starting with `indent`.
fn wrap(lines: &mut Vec<String>, indent: &str, text: &str) {
    for piece in split_at_spaces(text, TEXT_WIDTH - indent.len()) {
        lines.push(format!("{indent}{}", piece.trim_start()));
    }
}

/// Splits `text` before spaces so pieces are at most `width` bytes where a space allows;
/// a word longer than that stays whole. Every piece but the first starts with its space,
/// so the pieces concatenate back to `text`; `clean` text (no runs of spaces, no
/// leading or trailing space) gives no piece that is only whitespace.
fn split_at_spaces(text: &str, width: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while rest.len() > width {
        let bytes = rest.as_bytes();
        let cut = bytes[1..=width]
            .iter()
            .rposition(|&b| b == b' ')
            .or_else(|| {
                bytes[width + 1..]
                    .iter()
                    .position(|&b| b == b' ')
                    .map(|i| i + width)
            })
            .map(|i| i + 1);
        let Some(cut) = cut else { break };
        pieces.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    pieces.push(rest);
    pieces
}

/// Outside text made safe for a header or text line: control characters (CR and LF
/// among them) become spaces, runs of whitespace one space, and the ends are trimmed.
fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = if c.is_control() || c.is_whitespace() {
            ' '
        } else {
            c
        };
        if c != ' ' || !out.ends_with(' ') {
            out.push(c);
        }
    }
    out.trim().to_owned()
}

/// [`clean`] for the 7-bit delivery-status part: non-ASCII becomes `?`.
fn clean_ascii(s: &str) -> String {
    clean(s)
        .chars()
        .map(|c| if c.is_ascii() { c } else { '?' })
        .collect()
}

/// [`clean`] for text inside `<...>`: angle brackets would end it early.
fn clean_angle(s: &str) -> String {
    clean(s).replace(['<', '>'], "?")
}

/// `s` cut to at most [`MAX_VALUE`] bytes on a character boundary, marked with `...`.
fn cut(s: &str) -> String {
    if s.len() <= MAX_VALUE {
        return s.to_owned();
    }
    let mut end = MAX_VALUE - 3;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// The header block of `raw`: everything before the first empty line (which is not
/// included), or all of `raw` when there is no body (`headers::header_section`).
fn header_block(raw: &[u8]) -> &[u8] {
    &raw[..crate::headers::header_section(raw).end]
}

/// `raw` with CRLF line ends: bare LF and bare CR become CRLF. Borrowed when it already
/// has only CRLF (the usual case: the queue stores what SMTP DATA carried).
fn crlf(raw: &[u8]) -> Cow<'_, [u8]> {
    let bare = |i: usize| match raw[i] {
        b'\n' => i == 0 || raw[i - 1] != b'\r',
        b'\r' => raw.get(i + 1) != Some(&b'\n'),
        _ => false,
    };
    if !(0..raw.len()).any(bare) {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32);
    for (i, &b) in raw.iter().enumerate() {
        match b {
            b'\n' if bare(i) => out.extend_from_slice(b"\r\n"),
            b'\r' if bare(i) => out.extend_from_slice(b"\r\n"),
            _ => out.push(b),
        }
    }
    Cow::Owned(out)
}

/// The boundary derived from the report's Message-ID: `=_` and the id's boundary-safe
/// characters (`=_` cannot occur in quoted-printable text).
fn natural_boundary(message_id: &str) -> String {
    let id: String = message_id
        .chars()
        .filter(|c| c.is_ascii())
        .map(|c| {
            if c.is_ascii_alphanumeric() || "'()+_,-./:?".contains(c) {
                c
            } else {
                '.'
            }
        })
        .take(40)
        .collect();
    format!("=_{id}")
}

/// A boundary that occurs in none of `parts` (RFC 2046 §5.1.1): the natural one, else
/// the natural one with a hash of the contents, so a message cannot be made to contain
/// every candidate.
fn boundary(message_id: &str, parts: &[&[u8]]) -> String {
    let natural = natural_boundary(message_id);
    let free = |candidate: &str| {
        !parts
            .iter()
            .any(|part| contains(part, candidate.as_bytes()))
    };
    if free(&natural) {
        return natural;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325; // FNV-1a
    for part in parts {
        for &b in *part {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    (0u64..)
        .map(|attempt| {
            let h = (hash ^ attempt).wrapping_mul(0x0100_0000_01b3);
            format!("{natural}.{h:016x}")
        })
        .find(|candidate| free(candidate))
        .expect("some 64-bit suffix is free")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    let Some(&first) = needle.first() else {
        return true;
    };
    haystack
        .windows(needle.len())
        .any(|window| window[0] == first && window == needle)
}

/// RFC 2045 §6.7 quoted-printable of CRLF-separated `text`, lines at most 76 columns.
fn quoted_printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    let body = text.strip_suffix("\r\n").unwrap_or(text);
    for line in body.split("\r\n") {
        let bytes = line.as_bytes();
        let mut column = 0;
        for (i, &b) in bytes.iter().enumerate() {
            // Rule 3: a space at the end of a line is encoded.
            let literal =
                (b == b' ' && i + 1 < bytes.len()) || ((b'!'..=b'~').contains(&b) && b != b'=');
            let len = if literal { 1 } else { 3 };
            if column + len > 75 {
                out.push_str("=\r\n");
                column = 0;
            }
            if literal {
                out.push(char::from(b));
            } else {
                let _ = write!(out, "={b:02X}");
            }
            column += len;
        }
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests;
