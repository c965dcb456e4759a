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

// "Has an attachment": one answer for the IMAP and webmail lists, `hasAttachment` searches
// and Email/get. RFC 8621 §4.1.4: true when the attachments list (what the reading pane,
// [`MessageView`], lists: mail-parser's non-body parts) "contains at least one item that does
// not have Content-Disposition: inline"; the server MAY ignore images embedded in the HTML.
// Two paths give it: [`structure_has_attachment`] on the stored BODYSTRUCTURE (cheap: list
// pages ask it of every message) and [`message_has_attachment`] on the raw message (when no
// summary is stored), which asks the first of the structure the server would store, so the
// two cannot differ. The structure path replays mail-parser's body/attachment choice; a test
// asks [`counts_as_attachment`] of the pane's own list and compares, over the corpus. A
// BODYSTRUCTURE has no HTML, so "embedded" is read from the structure (RFC 2387): an image
// with a Content-ID in a multipart/related.

/// What the attachment answer needs to know of one part the reading pane lists.
#[derive(Debug, Clone, Copy)]
struct PartFacts {
    is_image: bool,
    /// Its Content-Disposition type, when it has one.
    disposition: Option<Disposition>,
    /// A non-empty file name (the disposition's `filename`, else the type's `name`: as
    /// mail-parser's `attachment_name`).
    has_filename: bool,
    has_content_id: bool,
    /// Its parent is a multipart/related.
    in_related: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Disposition {
    Attachment,
    Inline,
    Other,
}

impl Disposition {
    fn of(kind: &[u8]) -> Disposition {
        if kind.eq_ignore_ascii_case(b"attachment") {
            Disposition::Attachment
        } else if kind.eq_ignore_ascii_case(b"inline") {
            Disposition::Inline
        } else {
            Disposition::Other
        }
    }
}

/// Whether a listed part makes the message "have an attachment" (RFC 8621 §4.1.4): any part
/// not marked inline, except an image embedded in the HTML; an inline part only when it has
/// a file name (Apple Mail sends documents as `inline; filename=x.pdf`) and is not embedded.
fn counts_as_attachment(p: PartFacts) -> bool {
    let embedded = p.is_image && p.has_content_id && p.in_related;
    match p.disposition {
        Some(Disposition::Attachment) => true,
        _ if embedded => false,
        Some(Disposition::Inline) => p.has_filename,
        Some(Disposition::Other) | None => true,
    }
}

/// Whether an IMAP BODYSTRUCTURE (as our server stores and sends it) has a part that counts
/// as an attachment (see [`counts_as_attachment`]). The one answer the webmail's lists and
/// `pigeon read list` give.
pub fn has_attachment(body_structure: &[u8]) -> bool {
    // Most mail is one text part: no need to tokenize it (lists and `hasAttachment` searches
    // look at every message of a mailbox). Such a part is the body unless it is an attachment.
    let single_text = [&b"(\"TEXT\" \"PLAIN\" "[..], b"(\"TEXT\" \"HTML\" "]
        .iter()
        .any(|p| body_structure.starts_with(p));
    if single_text
        && !body_structure
            .windows(10)
            .any(|w| w.eq_ignore_ascii_case(b"attachment"))
    {
        return false;
    }
    tokenize_response(body_structure)
        .is_ok_and(|tokens| tokens.iter().any(structure_has_attachment))
}

/// [`has_attachment`] for a whole message (when its stored BODYSTRUCTURE is not at hand): the
/// same answer by construction, from the BODYSTRUCTURE the server stores for it. (A test checks
/// that answer against the reading pane's own list, [`MessageView`], on the corpus.)
pub fn message_has_attachment(raw: &[u8]) -> bool {
    has_attachment(&message::summary::summarize(raw).body_structure)
}

fn content_id_empty(id: &[u8]) -> bool {
    id.iter()
        .all(|&b| b.is_ascii_whitespace() || b == b'<' || b == b'>')
}

/// mail-parser's kinds of container, as far as they decide what is a body part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Message,
    Alternative,
    Related,
    Digest,
    /// Mixed, or any other multipart.
    Other,
}

/// A container being walked, with mail-parser's state for it (`message::mime::parse_at`).
struct Walk<'t> {
    kind: Container,
    in_alternative: bool,
    need_html: bool,
    need_text: bool,
    /// Parts seen so far, the current one included.
    parts: usize,
    children: std::slice::Iter<'t, Token>,
}

fn string_of(token: Option<&Token>) -> Option<&[u8]> {
    match token {
        Some(Token::String(s)) => Some(s),
        Some(Token::Atom(a)) => Some(a.as_bytes()),
        _ => None,
    }
}

/// The value of parameter `name` in a body-fld-param list.
fn param<'t>(list: Option<&'t Token>, name: &[u8]) -> Option<&'t [u8]> {
    let Some(Token::List(items)) = list else {
        return None;
    };
    items
        .chunks(2)
        .find(|kv| string_of(kv.first()).is_some_and(|k| k.eq_ignore_ascii_case(name)))
        .and_then(|kv| string_of(kv.get(1)))
}

/// [`has_attachment`] on a tokenized BODYSTRUCTURE (RFC 9051 §7.5.2). Which parts the
/// reading pane lists is mail-parser's choice (non-text parts always, text parts when they
/// are not taken as a body), replayed here from the structure. Nested messages are one
/// listed part and not looked into, as in the pane. A loop over an explicit stack: the
/// structure may come from a server, and its nesting must not cost this process's stack.
pub fn structure_has_attachment(token: &Token) -> bool {
    let root = std::slice::from_ref(token);
    let mut stack = vec![Walk {
        kind: Container::Message,
        in_alternative: false,
        need_html: true,
        need_text: true,
        parts: 0,
        children: root.iter(),
    }];
    while let Some(walk) = stack.last_mut() {
        let Some(child) = walk.children.next() else {
            stack.pop();
            continue;
        };
        let Token::List(items) = child else {
            // The end of a multipart's children: its subtype and extension data follow.
            stack.pop();
            continue;
        };
        walk.parts += 1;
        if let Some(Token::List(_)) = items.first() {
            // A multipart: its children, then its subtype.
            let subtype = items.iter().find_map(|t| string_of(Some(t))).unwrap_or(b"");
            let kind = match subtype.to_ascii_lowercase().as_slice() {
                b"alternative" => Container::Alternative,
                b"related" => Container::Related,
                b"digest" => Container::Digest,
                _ => Container::Other,
            };
            let next = Walk {
                kind,
                in_alternative: walk.in_alternative || kind == Container::Alternative,
                need_html: walk.need_html,
                need_text: walk.need_text,
                parts: 0,
                children: items.iter(),
            };
            stack.push(next);
            continue;
        }
        if leaf_counts(walk, items) {
            return true;
        }
    }
    false
}

/// Whether one leaf body (`type subtype params id description encoding size ...`) is listed
/// by the reading pane and counts as an attachment. Updates mail-parser's state of `walk`.
fn leaf_counts(walk: &mut Walk<'_>, items: &[Token]) -> bool {
    let media = string_of(items.first()).unwrap_or(b"");
    let subtype = string_of(items.get(1)).unwrap_or(b"");
    let params = items.get(2);
    let is = |a: &[u8], b: &[u8]| media.eq_ignore_ascii_case(a) && subtype.eq_ignore_ascii_case(b);
    // Extension data follows the type-specific fields: a text part's line count, a message
    // part's envelope, body and line count (RFC 9051 body-type-text, body-type-msg).
    let message_fields =
        media.eq_ignore_ascii_case(b"message") && matches!(items.get(8), Some(Token::List(_)));
    let extra = if message_fields {
        3
    } else if media.eq_ignore_ascii_case(b"text") {
        1
    } else {
        0
    };
    let (disposition, disposition_params) = match items.get(7 + extra + 1) {
        Some(Token::List(d)) => (string_of(d.first()).map(Disposition::of), d.get(1)),
        _ => (None, None),
    };
    // A part without a Content-Type is shown as text/plain with the charset US-ASCII; in a
    // digest mail-parser reads it as a message (RFC 2046 §5.1.5).
    let digest_default = walk.kind == Container::Digest
        && is(b"text", b"plain")
        && matches!(params, Some(Token::List(p)) if matches!(p.as_slice(),
            [Token::String(k), Token::String(v)] if k == b"CHARSET" && v == b"US-ASCII"));
    let name = param(params, b"name");
    let listed = if !media.eq_ignore_ascii_case(b"text") || digest_default {
        true
    } else {
        // mail-parser's rule for text parts: inline (a body candidate) when text/plain or
        // text/html, not an attachment by disposition, and the first part or (outside a
        // multipart/related) one without a `name`.
        let plain = subtype.eq_ignore_ascii_case(b"plain");
        let html = subtype.eq_ignore_ascii_case(b"html");
        let is_inline = (plain || html)
            && disposition != Some(Disposition::Attachment)
            && (walk.parts == 1 || walk.kind != Container::Related && name.is_none());
        let (to_html, to_text) = if walk.kind == Container::Alternative {
            (html, plain)
        } else if is_inline {
            if walk.in_alternative && (walk.need_text || walk.need_html) {
                if html {
                    walk.need_text = false;
                } else if plain {
                    walk.need_html = false;
                }
            }
            (walk.need_html, walk.need_text)
        } else {
            (false, false)
        };
        if html { !to_html } else { !to_text }
    };
    if !listed {
        return false;
    }
    let filename = match param(disposition_params, b"filename") {
        Some(f) => Some(f),
        None => name,
    };
    counts_as_attachment(PartFacts {
        is_image: media.eq_ignore_ascii_case(b"image"),
        disposition,
        has_filename: filename.is_some_and(|f| !f.is_empty()),
        has_content_id: string_of(items.get(3)).is_some_and(|c| !content_id_empty(c)),
        in_related: walk.kind == Container::Related,
    })
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

    /// The answer from the reading pane's own list (mail-parser's attachments, as
    /// [`MessageView`] shows them), and whether the message was parsed without damage.
    fn pane_answer(raw: &[u8]) -> (bool, bool) {
        let Some(m) = message::mime::parse(raw) else {
            return (false, true);
        };
        let mut parent = std::collections::HashMap::new();
        for (id, part) in m.parts.iter().enumerate() {
            if let PartType::Multipart(children) = &part.body {
                for &child in children {
                    parent.insert(child, id);
                }
            }
        }
        // A part cut short or a second Content-Type: the stored structure cannot show what
        // mail-parser made of it.
        let sound = m.parts.iter().all(|p| {
            !p.is_encoding_problem
                && p.headers
                    .iter()
                    .filter(|h| h.name == mail_parser::HeaderName::ContentType)
                    .count()
                    <= 1
        });
        let answer = m.attachments.iter().any(|&id| {
            let Some(part) = m.part(id) else {
                return false;
            };
            let in_related = parent
                .get(&id)
                .and_then(|&p| m.parts.get(p))
                .and_then(|p| p.content_type())
                .is_some_and(|c| {
                    c.subtype()
                        .is_some_and(|s| s.eq_ignore_ascii_case("related"))
                });
            counts_as_attachment(PartFacts {
                is_image: part
                    .content_type()
                    .is_some_and(|c| c.ctype().eq_ignore_ascii_case("image")),
                disposition: part
                    .content_disposition()
                    .map(|d| Disposition::of(d.ctype().as_bytes())),
                has_filename: part.attachment_name().is_some_and(|n| !n.is_empty()),
                has_content_id: part
                    .content_id()
                    .is_some_and(|c| !content_id_empty(c.as_bytes())),
                in_related,
            })
        });
        (answer, sound)
    }

    /// The stored BODYSTRUCTURE's answer, asserted equal to the raw message's and, for a
    /// message parsed without damage, to the reading pane's.
    #[track_caller]
    fn both(raw: &[u8]) -> bool {
        let stored = has_attachment(&message::summary::summarize(raw).body_structure);
        assert_eq!(stored, message_has_attachment(raw));
        let (pane, sound) = pane_answer(raw);
        if sound {
            assert_eq!(stored, pane, "{}", String::from_utf8_lossy(raw));
        }
        stored
    }

    fn mixed(parts: &str) -> Vec<u8> {
        format!(
            "From: a@example.com\r\nSubject: s\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"M\"\r\n\r\n\
             --M\r\nContent-Type: text/plain\r\n\r\nHello\r\n{parts}--M--\r\n"
        )
        .into_bytes()
    }

    const HTML_WITH_IMAGE: &str = "--R\r\nContent-Type: text/html\r\n\r\n<img src=\"cid:logo@x\">\r\n\
        --R\r\nContent-Type: image/png; name=\"logo.png\"\r\nContent-ID: <logo@x>\r\n\
        Content-Disposition: inline; filename=\"logo.png\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
        iVBORw0KGgo=\r\n--R--\r\n";

    // RFC 8621 §4.1.4: hasAttachment is true when the attachments list (the parts that are
    // not the text/html bodies) has a part not marked inline; embedded images may be ignored.
    #[test]
    fn has_attachment_follows_rfc_8621() {
        // A PDF named only by its Content-Type (no Content-Disposition).
        assert!(both(&mixed(
            "--M\r\nContent-Type: application/pdf; name=\"x.pdf\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n"
        )));
        // Apple Mail's documents: `inline` with a file name.
        assert!(both(&mixed(
            "--M\r\nContent-Type: application/pdf\r\n\
             Content-Disposition: inline; filename=x.pdf\r\n\r\n%PDF\r\n"
        )));
        // An inline image the HTML refers to by cid: part of the body.
        let related =
            format!("Content-Type: multipart/related; boundary=R\r\n\r\n{HTML_WITH_IMAGE}");
        assert!(!both(related.as_bytes()));
        // The same image without a disposition, as some senders write it.
        assert!(!both(
            related
                .replace("Content-Disposition: inline; filename=\"logo.png\"\r\n", "")
                .as_bytes()
        ));
        // Text and HTML alternatives: bodies only.
        assert!(!both(
            b"Content-Type: multipart/alternative; boundary=A\r\n\r\n\
              --A\r\nContent-Type: text/plain\r\n\r\nHi\r\n\
              --A\r\nContent-Type: text/html\r\n\r\n<p>Hi</p>\r\n--A--\r\n"
        ));
        // A forwarded message without a disposition.
        assert!(both(&mixed(
            "--M\r\nContent-Type: message/rfc822\r\n\r\n\
             From: b@example.com\r\nSubject: inner\r\n\r\nInner body\r\n"
        )));
        // An attachment inside nested multiparts.
        assert!(both(
            format!(
                "Content-Type: multipart/mixed; boundary=M\r\n\r\n\
                 --M\r\nContent-Type: multipart/alternative; boundary=A\r\n\r\n\
                 --A\r\nContent-Type: text/plain\r\n\r\nHi\r\n\
                 --A\r\nContent-Type: multipart/related; boundary=R\r\n\r\n{HTML_WITH_IMAGE}\
                 --A--\r\n\
                 --M\r\nContent-Type: application/zip\r\n\
                 Content-Disposition: attachment; filename=a.zip\r\n\r\nPK\r\n--M--\r\n"
            )
            .as_bytes()
        ));
        // Inline parts without a file name, and plain text after the body, are no files.
        assert!(!both(&mixed(
            "--M\r\nContent-Type: application/octet-stream\r\n\
             Content-Disposition: inline\r\n\r\nxx\r\n\
             --M\r\nContent-Type: text/plain\r\n\r\nSignature\r\n"
        )));
        // A text file named by its Content-Type is one.
        assert!(both(&mixed(
            "--M\r\nContent-Type: text/plain; name=notes.txt\r\n\r\nnotes\r\n"
        )));
        // A photo shown inline but not embedded in a related HTML (Apple Mail's photos).
        assert!(both(&mixed(
            "--M\r\nContent-Type: image/jpeg; name=IMG_1.jpg\r\nContent-ID: <p1>\r\n\
             Content-Disposition: inline; filename=IMG_1.jpg\r\n\r\nxx\r\n"
        )));
        // A digest's parts are messages (RFC 2046 §5.1.5).
        assert!(both(
            b"Content-Type: multipart/digest; boundary=D\r\n\r\n\
              --D\r\n\r\nFrom: c@example.com\r\nSubject: one\r\n\r\nbody\r\n--D--\r\n"
        ));
        assert!(!both(b"Subject: plain\r\n\r\nJust text.\r\n"));
    }

    /// Every message of the shared corpus (mail-parser's test messages, the generated
    /// charset/encoding/nesting set), whole and cut short: the stored structure's answer is
    /// the raw message's and the reading pane's.
    #[test]
    fn the_structure_and_the_message_agree_on_the_corpus() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../pigeon/tests/data");
        let mut dirs = vec![std::path::PathBuf::from(root)];
        let (mut messages, mut with, mut sound) = (0, 0, 0);
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                if path.extension().is_none_or(|e| e != "eml") {
                    continue;
                }
                let raw = std::fs::read(&path).unwrap();
                let lf: Vec<u8> = raw.iter().copied().filter(|&b| b != b'\r').collect();
                let cut = &raw[..raw.len() * 2 / 3];
                for variant in [&raw[..], &lf, cut] {
                    messages += 1;
                    with += usize::from(both(variant));
                    sound += usize::from(pane_answer(variant).1);
                }
            }
        }
        assert!(messages > 300, "corpus not found");
        assert!(with > 10 && with < messages, "{with} of {messages}");
        // Most are compared with the pane too (the others, mostly the cut ones, are damaged:
        // see `pane_answer`).
        assert!(sound * 10 > messages * 7, "{sound} of {messages}");
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
