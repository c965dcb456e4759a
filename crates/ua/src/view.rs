//! One message as a reader sees it, built the same way for every front end: the CLI's
//! `pigeon read show` and the webmail's reading pane both call [`MessageView::parse`].
//! Pure code: no IO.

use imap_proto::token::{Token, tokenize_response};
use mail_parser::{MessageParser, MimeHeaders, PartType};
use serde::Serialize;

/// A name and an address. `email` is empty for a mailbox written without an address
/// (`To: Bob`); views that need addresses (replies, the webmail) use [`Headers::addressed`].
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Addr {
    pub name: Option<String>,
    pub email: String,
}

/// The header fields a list, a reading pane or a reply needs, decoded (RFC 2047 words,
/// RFC 2231 parameters).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Headers {
    pub from: Vec<Addr>,
    pub to: Vec<Addr>,
    pub cc: Vec<Addr>,
    pub reply_to: Vec<Addr>,
    pub subject: String,
    /// Unix seconds of `Date:`.
    pub sent_at: Option<i64>,
    /// `Date:` in RFC 3339 with the offset it was written with.
    #[serde(skip)]
    pub date: Option<String>,
    pub message_id: Option<String>,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
}

fn addresses(a: Option<&mail_parser::Address<'_>>) -> Vec<Addr> {
    let Some(a) = a else { return Vec::new() };
    a.iter()
        .map(|m| Addr {
            name: m.name().map(str::to_string),
            email: m.address().unwrap_or_default().to_string(),
        })
        .collect()
}

fn id_list(value: &mail_parser::HeaderValue<'_>) -> Vec<String> {
    match value.as_text_list() {
        Some(list) => list.iter().map(|s| s.to_string()).collect(),
        None => value
            .as_text()
            .map(|s| vec![s.to_string()])
            .unwrap_or_default(),
    }
}

impl Headers {
    /// Parses a header block (or a whole message: only its header is read). Unreadable
    /// headers give empty fields.
    pub fn parse(raw: &[u8]) -> Headers {
        MessageParser::default()
            .parse_headers(raw)
            .map(|m| Headers::of(&m))
            .unwrap_or_default()
    }

    /// The top-level header fields of a parsed message.
    pub fn of(m: &mail_parser::Message<'_>) -> Headers {
        Headers {
            from: addresses(m.from()),
            to: addresses(m.to()),
            cc: addresses(m.cc()),
            reply_to: addresses(m.reply_to()),
            subject: m.subject().unwrap_or_default().to_string(),
            sent_at: m.date().map(|d| d.to_timestamp()),
            date: m.date().map(|d| d.to_rfc3339()),
            message_id: m.message_id().map(str::to_string),
            in_reply_to: id_list(m.in_reply_to()),
            references: id_list(m.references()),
        }
    }

    /// The same fields with only the mailboxes that have an address.
    pub fn addressed(mut self) -> Headers {
        for list in [
            &mut self.from,
            &mut self.to,
            &mut self.cc,
            &mut self.reply_to,
        ] {
            list.retain(|a| !a.email.is_empty());
        }
        self
    }
}

/// Mailboxes as one line: `Name <addr>, addr, Name`.
pub fn display_addresses(list: &[Addr]) -> String {
    list.iter()
        .map(|a| match (&a.name, a.email.as_str()) {
            (Some(n), "") => n.clone(),
            (Some(n), e) => format!("{n} <{e}>"),
            (None, e) => e.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// An attachment (or inline image) of a message.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    /// The part's position in the parsed message ([`message::mime::parse`]'s part ids), for
    /// downloads.
    pub part: u32,
    /// Its file name, decoded; empty when it has none.
    pub name: String,
    /// `type/subtype` (mail-parser reads them in lower case); empty without a Content-Type.
    #[serde(rename = "type")]
    pub content_type: String,
    /// Decoded size in bytes (a message/rfc822 part: its raw message).
    pub size: usize,
    /// Its Content-ID, when HTML refers to it as `cid:`.
    pub cid: Option<String>,
}

impl Attachment {
    /// The MIME type for HTTP: lower case, `application/octet-stream` when the part has none.
    pub fn mime_type(&self) -> String {
        normalised_type(&self.content_type)
    }
}

fn normalised_type(written: &str) -> String {
    if written.is_empty() {
        "application/octet-stream".into()
    } else {
        written.to_ascii_lowercase()
    }
}

/// A part's MIME type for HTTP: lower case, `application/octet-stream` when none was written.
pub fn mime_type(part: &mail_parser::MessagePart<'_>) -> String {
    normalised_type(&written_type(part))
}

/// One message as a reader sees it.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageView {
    pub headers: Headers,
    /// The first text part, its charset decoded; HTML-only mail as readable text
    /// ([`crate::html::html_to_text`]); empty when the message has no text part.
    pub text: String,
    /// Whether the message's body is HTML (the webmail shows it, sanitised, in a frame).
    pub has_html: bool,
    pub attachments: Vec<Attachment>,
}

impl MessageView {
    /// The view of a whole message; `None` when it cannot be parsed at all. Depth-bounded
    /// (issue 14): a message nested 100,000 levels deep cannot overflow the stack.
    pub fn parse(raw: &[u8]) -> Option<MessageView> {
        let m = message::mime::parse(raw)?;
        let text = match message::text::readable_text(raw) {
            Some((text, false)) => text,
            Some((html, true)) => crate::html::html_to_text(&html),
            None => String::new(),
        };
        let attachments = m
            .attachments
            .iter()
            .filter_map(|&id| {
                let part = m.part(id)?;
                Some(Attachment {
                    part: id,
                    name: part.attachment_name().unwrap_or("").to_string(),
                    content_type: written_type(part),
                    size: part_bytes(part).len(),
                    cid: part
                        .content_id()
                        .map(|c| c.trim_matches(['<', '>']).to_string()),
                })
            })
            .collect();
        Some(MessageView {
            headers: Headers::of(&m),
            text,
            has_html: is_html_part(&m),
            attachments,
        })
    }
}

/// `type/subtype` of the part's Content-Type; empty without one.
pub fn written_type(part: &mail_parser::MessagePart<'_>) -> String {
    part.content_type()
        .map(|c| match c.subtype() {
            Some(sub) => format!("{}/{sub}", c.ctype()),
            None => c.ctype().to_string(),
        })
        .unwrap_or_default()
}

/// A part's decoded bytes; a message/rfc822 part's are its raw message.
pub fn part_bytes<'a>(part: &'a mail_parser::MessagePart<'_>) -> &'a [u8] {
    match &part.body {
        PartType::Message(m) => &m.raw_message,
        _ => part.contents(),
    }
}

/// Whether the message's first HTML body part is HTML (not a text part standing in).
pub fn is_html_part(m: &mail_parser::Message<'_>) -> bool {
    m.html_body
        .first()
        .and_then(|&id| m.part(id))
        .is_some_and(|p| matches!(p.body, PartType::Html(_)))
}

/// Whether an IMAP BODYSTRUCTURE (as our server stores and sends it) has a part whose
/// disposition is `attachment`. The one answer the webmail's lists and `pigeon read list` give.
pub fn has_attachment(body_structure: &[u8]) -> bool {
    // Most structures do not have the word at all (a 25th of the time of tokenizing): lists
    // and searches on `hasAttachment` look at every message of a mailbox.
    body_structure
        .windows(10)
        .any(|w| w.eq_ignore_ascii_case(b"attachment"))
        && tokenize_response(body_structure)
            .is_ok_and(|tokens| tokens.iter().any(structure_has_attachment))
}

/// [`has_attachment`] for a whole message (when its stored BODYSTRUCTURE is not at hand): the
/// same answer, from the BODYSTRUCTURE the server would store for it.
pub fn message_has_attachment(raw: &[u8]) -> bool {
    has_attachment(&message::summary::summarize(raw).body_structure)
}

/// [`has_attachment`] on a tokenized BODYSTRUCTURE: some list is a body disposition,
/// `("attachment" params)`. A loop over an explicit stack: the structure may come from a
/// server, and its nesting must not cost this process's stack.
pub fn structure_has_attachment(token: &Token) -> bool {
    let mut stack = vec![token];
    while let Some(token) = stack.pop() {
        if let Token::List(items) = token {
            if let [Token::String(kind), Token::List(_) | Token::Nil] = items.as_slice()
                && kind.eq_ignore_ascii_case(b"attachment")
            {
                return true;
            }
            stack.extend(items);
        }
    }
    false
}

/// Whether a header block announces a multipart/mixed message: all a POP3 list can tell of
/// attachments without downloading the message (a weaker question than [`has_attachment`]).
pub fn header_says_mixed(header: &[u8]) -> bool {
    MessageParser::default()
        .parse_headers(header)
        .as_ref()
        .and_then(|m| m.content_type())
        .is_some_and(|c| {
            c.ctype().eq_ignore_ascii_case("multipart")
                && c.subtype().is_some_and(|s| s.eq_ignore_ascii_case("mixed"))
        })
}

/// One line of a message list.
#[derive(Debug, Clone, Serialize)]
pub struct MessageSummary {
    /// The IMAP UID (over POP3: the message number).
    pub uid: u32,
    pub flags: Vec<String>,
    pub unread: bool,
    /// Display form ([`display_addresses`]).
    pub from: String,
    pub subject: String,
    /// RFC 3339; empty when missing.
    pub date: String,
    pub size: u64,
    pub attachment: bool,
}

/// From, Subject and Date (RFC 3339) of a header block, decoded; empty when missing.
pub fn from_subject_date(header: &[u8]) -> (String, String, String) {
    let h = Headers::parse(header);
    (
        display_addresses(&h.from),
        h.subject,
        h.date.unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIL: &[u8] = b"From: =?UTF-8?B?5byg5LiJ?= <zhang@example.com>\r\nTo: Bob, carol@example.org\r\n\
Subject: =?UTF-8?B?5rWL6K+V?=\r\nDate: Sat, 28 Nov 2026 10:00:00 +0100\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"B\"\r\n\r\n--B\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
<p>Hi &amp; <b>welcome</b></p><p>second</p>\r\n\
--B\r\nContent-Type: Application/PDF; name=\"r.pdf\"\r\nContent-Disposition: attachment; filename=\"r.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--B--\r\n";

    #[test]
    fn a_view_has_decoded_headers_text_and_attachments() {
        let view = MessageView::parse(MAIL).unwrap();
        assert_eq!(view.headers.subject, "测试");
        assert_eq!(
            display_addresses(&view.headers.from),
            "张三 <zhang@example.com>"
        );
        // A mailbox without an address is shown, and left out where an address is needed.
        assert_eq!(
            display_addresses(&view.headers.to),
            "Bob, carol@example.org"
        );
        assert_eq!(view.headers.clone().addressed().to.len(), 1);
        assert_eq!(
            view.headers.date.as_deref(),
            Some("2026-11-28T10:00:00+01:00")
        );
        assert_eq!(view.text, "Hi & welcome\nsecond\n");
        assert!(view.has_html);
        let [a] = view.attachments.as_slice() else {
            panic!("{:?}", view.attachments)
        };
        assert_eq!((a.name.as_str(), a.size), ("r.pdf", 3));
        assert_eq!(a.content_type, "application/pdf");
        assert_eq!(a.mime_type(), "application/pdf");
    }

    #[test]
    fn attachments_are_found_by_disposition_in_the_structure() {
        let summary = message::summary::summarize(MAIL);
        assert!(has_attachment(&summary.body_structure));
        assert!(message_has_attachment(MAIL));
        let inline = message::summary::summarize(
            b"Content-Type: multipart/related; boundary=b\r\n\r\n--b\r\nContent-Type: text/html\r\n\r\n\
              <img src=cid:x>\r\n--b\r\nContent-Type: image/png; name=attachment\r\nContent-ID: <x>\r\n\
              Content-Disposition: inline; filename=attachment\r\n\r\nxx\r\n--b--\r\n",
        );
        assert!(
            !has_attachment(&inline.body_structure),
            "a file named attachment is no attachment"
        );
        assert!(has_attachment(b"((\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 1 1 NIL NIL NIL NIL)(\"APPLICATION\" \"PDF\" NIL NIL NIL \"BASE64\" 4 NIL (\"attachment\" NIL) NIL NIL) \"MIXED\")"));
        assert!(!has_attachment(b"(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"attachment\") NIL NIL \"7BIT\" 1 1 NIL NIL NIL NIL)"));
        assert!(!has_attachment(b"(unclosed"));
    }

    #[test]
    fn a_mixed_header_is_all_pop3_can_tell() {
        assert!(header_says_mixed(
            b"Content-Type: Multipart/Mixed; boundary=x\r\n\r\n"
        ));
        assert!(!header_says_mixed(
            b"Content-Type: multipart/alternative; boundary=x\r\n\r\n"
        ));
    }
}
