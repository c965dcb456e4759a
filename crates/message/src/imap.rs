//! The IMAP views of a message (RFC 9051 §7.5.2): ENVELOPE, BODYSTRUCTURE, and the byte
//! ranges of body sections, computed with mail-parser.
//!
//! String values are written as IMAP strings (quoted or literal) by `imap_proto::write`, the
//! one writer of IMAP syntax.

use imap_proto::write::{nstring, string};
use mail_parser::{HeaderName, Message, MessageParser, MessagePart, PartType};

use crate::mime::MAX_DEPTH;

/// The structure of an empty text part: a message without a body, or an empty multipart.
const EMPTY_TEXT: &[u8] = b"(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0)";

/// Unfolds a raw header value and trims it.
fn unfold(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    for &b in raw {
        if b != b'\r' && b != b'\n' {
            out.push(b);
        }
    }
    let start = out
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(out.len());
    let end = out
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map(|p| p + 1)
        .unwrap_or(start);
    out[start..end].to_vec()
}

/// The raw (unfolded) value of the first header called `name` in `part`.
/// Writes each header's unfolded raw value as an nstring, separated by spaces.
fn header_nstrings(
    out: &mut Vec<u8>,
    raw: &[u8],
    part: &MessagePart<'_>,
    names: &[HeaderName<'_>],
    utf8: bool,
) {
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        nstring(out, raw_header(raw, part, name.clone()).as_deref(), utf8);
    }
}

fn raw_header(raw: &[u8], part: &MessagePart<'_>, name: HeaderName<'_>) -> Option<Vec<u8>> {
    let header = part.headers.iter().find(|h| h.name == name)?;
    let value = raw.get(header.offset_start as usize..header.offset_end as usize)?;
    Some(unfold(value))
}

/// Splits an obsolete source route (RFC 5322 §4.4 `obs-route`, "@a,@b:") off an address,
/// giving the at-domain-list without its colon and the addr-spec. A colon inside a domain
/// literal (`@[IPv6:::1]:`) does not end the route.
fn split_route(address: &str) -> (Option<&str>, &str) {
    if !address.starts_with('@') {
        return (None, address);
    }
    let mut in_literal = false;
    for (i, c) in address.char_indices() {
        match c {
            '[' => in_literal = true,
            ']' => in_literal = false,
            ':' if !in_literal => return (Some(&address[..i]), &address[i + 1..]),
            _ => {}
        }
    }
    (None, address)
}

/// One mailbox as an IMAP address structure (name adl mailbox host), RFC 3501 §7.4.2 /
/// RFC 9051 §7.5.2. The source route goes in adl. A mailbox without a domain gets an empty
/// host, not NIL: a NIL host marks a group (start or end), which this is not.
fn address_structure(out: &mut Vec<u8>, name: Option<&str>, address: &str, utf8: bool) {
    let (route, addr_spec) = split_route(address);
    let (mailbox, host) = addr_spec.rsplit_once('@').unwrap_or((addr_spec, ""));
    out.push(b'(');
    nstring(out, name.map(str::as_bytes), utf8);
    out.push(b' ');
    nstring(out, route.map(str::as_bytes), utf8);
    out.push(b' ');
    string(out, mailbox.as_bytes(), utf8);
    out.push(b' ');
    string(out, host.as_bytes(), utf8);
    out.push(b')');
}

/// Writes the mailboxes of `list` as address structures; true if any was written.
fn mailboxes(out: &mut Vec<u8>, list: &[mail_parser::Addr<'_>], utf8: bool) -> bool {
    let mut any = false;
    for addr in list {
        // A name without an address (a bare phrase or comment) is no mailbox.
        if let Some(address) = addr.address.as_deref() {
            address_structure(out, addr.name.as_deref(), address, utf8);
            any = true;
        }
    }
    any
}

/// Writes the address list of header `name` (NIL when absent or empty); true if it is not NIL.
///
/// RFC 3501 §7.4.2 / RFC 9051 §7.5.2: RFC 5322 §3.4 group syntax is kept as a start-of-group
/// structure (NIL NIL "group name" NIL), the members, and an end-of-group structure
/// (NIL NIL NIL NIL) — also for an empty group such as `undisclosed-recipients:;`.
/// mail-parser gives a list holding a group as a run of groups, the ungrouped addresses
/// being groups without a name.
fn addresses(out: &mut Vec<u8>, message: &Message<'_>, name: HeaderName<'_>, utf8: bool) -> bool {
    let Some(list) = message.header(name).and_then(|h| h.as_address()) else {
        out.extend_from_slice(b"NIL");
        return false;
    };
    let mut body = Vec::new();
    let any = match list {
        mail_parser::Address::List(list) => mailboxes(&mut body, list, utf8),
        mail_parser::Address::Group(groups) => {
            let mut any = false;
            for group in groups {
                match group.name.as_deref() {
                    Some(group_name) => {
                        body.extend_from_slice(b"(NIL NIL ");
                        string(&mut body, group_name.as_bytes(), utf8);
                        body.extend_from_slice(b" NIL)");
                        mailboxes(&mut body, &group.addresses, utf8);
                        body.extend_from_slice(b"(NIL NIL NIL NIL)");
                        any = true;
                    }
                    None => any |= mailboxes(&mut body, &group.addresses, utf8),
                }
            }
            any
        }
    };
    if any {
        out.push(b'(');
        out.extend_from_slice(&body);
        out.push(b')');
    } else {
        out.extend_from_slice(b"NIL");
    }
    any
}

fn write_envelope(out: &mut Vec<u8>, raw: &[u8], message: &Message<'_>, utf8: bool) {
    let root = message.root_part();
    out.push(b'(');
    header_nstrings(
        out,
        raw,
        root,
        &[HeaderName::Date, HeaderName::Subject],
        utf8,
    );
    out.push(b' ');
    let mut from = Vec::new();
    addresses(&mut from, message, HeaderName::From, utf8);
    out.extend_from_slice(&from);
    // RFC 9051 §7.5.2: Sender and Reply-To default to From.
    for name in [HeaderName::Sender, HeaderName::ReplyTo] {
        out.push(b' ');
        let mut list = Vec::new();
        if addresses(&mut list, message, name, utf8) {
            out.extend_from_slice(&list);
        } else {
            out.extend_from_slice(&from);
        }
    }
    for name in [HeaderName::To, HeaderName::Cc, HeaderName::Bcc] {
        out.push(b' ');
        addresses(out, message, name, utf8);
    }
    out.push(b' ');
    header_nstrings(
        out,
        raw,
        root,
        &[HeaderName::InReplyTo, HeaderName::MessageId],
        utf8,
    );
    out.push(b')');
}

/// ENVELOPE, BODY and BODYSTRUCTURE from one parse of the message.
pub fn structures(raw: &[u8], message: Option<&Message<'_>>) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut envelope = Vec::new();
    let mut body = Vec::new();
    let mut body_structure = Vec::new();
    match message {
        Some(message) => {
            write_envelope(&mut envelope, raw, message, false);
            let root = message.root_part();
            let lines = Lines::new(raw);
            let mut seen = std::collections::HashSet::new();
            part_structure(&mut body, &lines, message, root, false, false, 0, &mut seen);
            seen.clear();
            part_structure(
                &mut body_structure,
                &lines,
                message,
                root,
                true,
                false,
                0,
                &mut seen,
            );
        }
        None => {
            envelope.extend_from_slice(b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
            body.extend_from_slice(EMPTY_TEXT);
            body_structure.extend_from_slice(EMPTY_TEXT);
        }
    }
    (envelope, body, body_structure)
}

/// The ENVELOPE structure of a message.
pub fn envelope(raw: &[u8], utf8: bool) -> Vec<u8> {
    let mut out = Vec::new();
    match MessageParser::default().parse_headers(raw) {
        Some(message) => write_envelope(&mut out, raw, &message, utf8),
        None => out.extend_from_slice(b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"),
    }
    out
}

fn upper_quoted(out: &mut Vec<u8>, s: &str) {
    string(out, s.to_ascii_uppercase().as_bytes(), false)
}

/// `("NAME" "value" ...)` or `NIL` (body-fld-param).
fn attribute_list(out: &mut Vec<u8>, list: Option<&[mail_parser::Attribute<'_>]>, utf8: bool) {
    match list {
        Some(list) if !list.is_empty() => {
            out.push(b'(');
            for (i, attribute) in list.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                upper_quoted(out, &attribute.name);
                out.push(b' ');
                string(out, attribute.value.as_bytes(), utf8);
            }
            out.push(b')');
        }
        _ => out.extend_from_slice(b"NIL"),
    }
}

/// A structured header (Content-Type, Content-Disposition) of a part.
fn content_header<'p>(
    part: &'p MessagePart<'_>,
    name: HeaderName<'_>,
) -> Option<&'p mail_parser::ContentType<'p>> {
    part.headers
        .iter()
        .find(|h| h.name == name)
        .and_then(|h| h.value.as_content_type())
}

fn params(out: &mut Vec<u8>, part: &MessagePart<'_>, utf8: bool) {
    attribute_list(
        out,
        content_header(part, HeaderName::ContentType).and_then(|ct| ct.attributes()),
        utf8,
    );
}

fn disposition(out: &mut Vec<u8>, part: &MessagePart<'_>, utf8: bool) {
    match content_header(part, HeaderName::ContentDisposition) {
        Some(ct) => {
            out.push(b'(');
            upper_quoted(out, &ct.c_type);
            out.push(b' ');
            attribute_list(out, ct.attributes(), utf8);
            out.push(b')');
        }
        None => out.extend_from_slice(b"NIL"),
    }
}

/// Counts the lines of byte ranges of one message. Every nested message part contains the
/// next, so counting each part's own bytes would read a message once per level: the line
/// ends before each 256-byte block are counted once, and a count reads at most two partial
/// blocks (a table of every line end would cost 4 bytes per line: 100 MB for a 50 MB
/// message of empty lines; this one costs 4 bytes per 256).
struct Lines<'r> {
    raw: &'r [u8],
    /// Line ends before each block, computed on first use.
    blocks: std::cell::OnceCell<Vec<u32>>,
}

const LINES_BLOCK: usize = 256;

impl<'r> Lines<'r> {
    fn new(raw: &'r [u8]) -> Lines<'r> {
        Lines {
            raw,
            blocks: std::cell::OnceCell::new(),
        }
    }

    /// Line ends in `raw[..end]`.
    fn before(&self, end: usize) -> usize {
        let blocks = self.blocks.get_or_init(|| {
            let mut total = 0;
            let mut blocks = Vec::with_capacity(self.raw.len() / LINES_BLOCK + 1);
            for block in self.raw.chunks(LINES_BLOCK) {
                blocks.push(total);
                total += block.iter().filter(|&&b| b == b'\n').count() as u32;
            }
            blocks.push(total);
            blocks
        });
        let block = end / LINES_BLOCK;
        let start = block * LINES_BLOCK;
        blocks.get(block).map_or(0, |&n| n as usize)
            + self.raw[start.min(end)..end]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
    }

    /// Lines in `range` (RFC 9051 body-fld-lines); a last line without a line end counts too.
    fn count(&self, range: std::ops::Range<usize>) -> usize {
        let Some(body) = self.raw.get(range.clone()) else {
            return 0;
        };
        self.before(range.end) - self.before(range.start)
            + usize::from(!body.is_empty() && !body.ends_with(b"\n"))
    }
}

/// Writes the BODY/BODYSTRUCTURE of `part` at nesting `depth`. Recursive, but over a message
/// from [`crate::mime::parse`], which is never deeper than [`MAX_DEPTH`]; the depth is
/// checked here too, so no input can make this recurse further.
// The walk's state (output, line index, message, options, depth, parts seen): a struct would
// only rename the same eight things.
#[allow(clippy::too_many_arguments)]
fn part_structure(
    out: &mut Vec<u8>,
    lines: &Lines<'_>,
    message: &Message<'_>,
    part: &MessagePart<'_>,
    extensible: bool,
    utf8: bool,
    depth: usize,
    seen: &mut std::collections::HashSet<usize>,
) {
    // Each part is written once. A parse always gives a tree, but a part reached twice (a
    // child list naming a part again) would make the output grow exponentially with depth:
    // 4 KB of input made gigabytes before this check.
    if !seen.insert(std::ptr::from_ref(part) as usize) {
        out.extend_from_slice(EMPTY_TEXT);
        return;
    }
    let raw = lines.raw;
    let content_type = content_header(part, HeaderName::ContentType);
    let deep = depth >= MAX_DEPTH;
    if let (PartType::Multipart(children), false) = (&part.body, deep) {
        out.push(b'(');
        let mut any = false;
        for &child in children {
            if let Some(child) = message.parts.get(child as usize) {
                part_structure(
                    out,
                    lines,
                    message,
                    child,
                    extensible,
                    utf8,
                    depth + 1,
                    seen,
                );
                any = true;
            }
        }
        if !any {
            // RFC 9051 body-type-mpart needs at least one part.
            out.extend_from_slice(EMPTY_TEXT);
        }
        out.push(b' ');
        upper_quoted(
            out,
            content_type.and_then(|c| c.subtype()).unwrap_or("MIXED"),
        );
        if extensible {
            out.push(b' ');
            params(out, part, utf8);
            out.push(b' ');
            disposition(out, part, utf8);
            out.extend_from_slice(b" NIL NIL");
        }
        out.push(b')');
        return;
    }
    // A multipart or message part left opaque (deeper than MAX_DEPTH, or unparsable) cannot
    // be shown as what it claims: its BODYSTRUCTURE would need children. Only containers:
    // a leaf at the limit, which parse read normally, is what it says.
    let opaque = crate::mime::is_opaque(part)
        || deep && matches!(part.body, PartType::Multipart(_) | PartType::Message(_));
    let (ctype, subtype) = match content_type {
        _ if opaque => ("APPLICATION".to_string(), "OCTET-STREAM".to_string()),
        Some(ct) => (
            ct.c_type.to_string(),
            ct.subtype().unwrap_or("PLAIN").to_string(),
        ),
        None => ("TEXT".to_string(), "PLAIN".to_string()),
    };
    let body = raw
        .get(part.offset_body as usize..part.offset_end as usize)
        .unwrap_or_default();
    out.push(b'(');
    upper_quoted(out, &ctype);
    out.push(b' ');
    upper_quoted(out, &subtype);
    out.push(b' ');
    if content_type.is_none() && !opaque {
        out.extend_from_slice(b"(\"CHARSET\" \"US-ASCII\")");
    } else {
        params(out, part, utf8);
    }
    out.push(b' ');
    header_nstrings(
        out,
        raw,
        part,
        &[HeaderName::ContentId, HeaderName::ContentDescription],
        utf8,
    );
    out.push(b' ');
    let encoding = raw_header(raw, part, HeaderName::ContentTransferEncoding)
        .map(|e| String::from_utf8_lossy(&e).to_ascii_uppercase())
        .unwrap_or_else(|| "7BIT".into());
    string(out, encoding.as_bytes(), false);
    out.extend_from_slice(format!(" {}", body.len()).as_bytes());
    let line_count = lines.count(part.offset_body as usize..part.offset_end as usize);
    match &part.body {
        PartType::Message(nested) if !opaque && ctype.eq_ignore_ascii_case("message") => {
            // mail-parser's offsets in a nested message are positions in its raw_message field: the
            // outer message, or the decoded bytes of a base64/quoted-printable one.
            let nested_raw: &[u8] = &nested.raw_message;
            out.push(b' ');
            write_envelope(out, nested_raw, nested, utf8);
            out.push(b' ');
            let root = nested.root_part();
            if std::ptr::eq(nested_raw, raw) {
                part_structure(out, lines, nested, root, extensible, utf8, depth + 1, seen);
            } else {
                let nested_lines = Lines::new(nested_raw);
                part_structure(
                    out,
                    &nested_lines,
                    nested,
                    root,
                    extensible,
                    utf8,
                    depth + 1,
                    seen,
                );
            }
            out.extend_from_slice(format!(" {line_count}").as_bytes());
        }
        _ if ctype.eq_ignore_ascii_case("text") => {
            out.extend_from_slice(format!(" {line_count}").as_bytes())
        }
        _ => {}
    }
    if extensible {
        out.extend_from_slice(b" NIL ");
        disposition(out, part, utf8);
        out.extend_from_slice(b" NIL NIL");
    }
    out.push(b')');
}

/// BODYSTRUCTURE (`extensible`) or BODY of a message.
pub fn body_structure(raw: &[u8], extensible: bool, utf8: bool) -> Vec<u8> {
    let mut out = Vec::new();
    match crate::mime::parse(raw) {
        Some(message) => {
            let root = message.root_part();
            part_structure(
                &mut out,
                &Lines::new(raw),
                &message,
                root,
                extensible,
                utf8,
                0,
                &mut std::collections::HashSet::new(),
            )
        }
        None => out.extend_from_slice(EMPTY_TEXT),
    }
    out
}

/// Where a body part lies in the raw message, and its decoded content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartRange {
    /// Its MIME header (for `n.MIME`; for a nested message, the message's header).
    pub header: std::ops::Range<usize>,
    pub body: std::ops::Range<usize>,
    /// For a message/rfc822 part: its inner header and text (for `n.HEADER`, `n.TEXT`).
    pub inner: Option<(std::ops::Range<usize>, std::ops::Range<usize>)>,
    /// The part's content with its transfer encoding removed, leniently (BINARY, RFC 3516);
    /// an error for an encoding pigeon cannot undo (`NO [UNKNOWN-CTE]`, RFC 3516 §4.3).
    pub decoded: Result<Vec<u8>, crate::decode::UnknownCte>,
}

/// Finds body part `path` (RFC 9051 §6.4.5 section numbers). An empty path is the message.
/// `None` when there is no such part, also for parts inside one left opaque by
/// [`crate::mime::parse`] (deeper than [`MAX_DEPTH`]): IMAP answers those as absent.
pub fn part_range(raw: &[u8], path: &[u32]) -> Option<PartRange> {
    let message = crate::mime::parse(raw)?;
    let root = message.root_part();
    if path.is_empty() {
        let header = span(root.offset_header, root.offset_body);
        let body = span(root.offset_body, root.offset_end);
        return Some(PartRange {
            header,
            body,
            inner: None,
            decoded: Ok(root.contents().to_vec()),
        });
    }
    // One step per section number, through multiparts and into nested messages: a loop, so
    // the path's length costs no stack.
    let mut current: &Message<'_> = &message;
    let mut part = current.root_part();
    let mut at_message_root = true;
    for &n in path {
        let index = (n as usize).checked_sub(1)?;
        part = match &part.body {
            PartType::Multipart(children) => current.parts.get(*children.get(index)? as usize)?,
            PartType::Message(nested) if !at_message_root => {
                // Only the same bytes can be addressed: not the decoded bytes of an encoded
                // nested message (its offsets are positions in those).
                if !std::ptr::eq(&*nested.raw_message, raw) {
                    return None;
                }
                current = nested;
                let nested_root = nested.root_part();
                match &nested_root.body {
                    PartType::Multipart(children) => {
                        nested.parts.get(*children.get(index)? as usize)?
                    }
                    // A single-part message has one part, number 1.
                    _ if index == 0 => nested_root,
                    _ => return None,
                }
            }
            // A single-part message has one part, number 1.
            _ if at_message_root && index == 0 => part,
            _ => return None,
        };
        at_message_root = false;
    }
    let body = span(part.offset_body, part.offset_end);
    let header = span(part.offset_header, part.offset_body);
    if let PartType::Message(nested) = &part.body {
        // n.HEADER and n.TEXT: only when the nested message's bytes are the message's own.
        let nested_root = nested.root_part();
        let inner = std::ptr::eq(&*nested.raw_message, raw).then(|| {
            (
                span(nested_root.offset_header, nested_root.offset_body),
                span(nested_root.offset_body, nested_root.offset_end),
            )
        });
        return Some(PartRange {
            // An encoded message/rfc822 (RFC 2046 §5.2.1 forbids it; it is sent) is decoded.
            decoded: transfer_decoded(part, raw.get(body.clone())?),
            header,
            body,
            inner,
        });
    }
    Some(PartRange {
        decoded: transfer_decoded(part, raw.get(body.clone())?),
        header,
        body,
        inner: None,
    })
}

fn span(start: u32, end: u32) -> std::ops::Range<usize> {
    start as usize..end as usize
}

/// A part's content with only its transfer encoding removed (RFC 3516), leniently
/// ([`crate::decode`]): mail-parser hands text parts over converted to UTF-8, but BINARY must
/// keep the part's own charset.
pub(crate) fn transfer_decoded(
    part: &MessagePart<'_>,
    body: &[u8],
) -> Result<Vec<u8>, crate::decode::UnknownCte> {
    use mail_parser::MimeHeaders;
    crate::decode::transfer_decode(part.content_transfer_encoding(), body)
        .map(std::borrow::Cow::into_owned)
}

/// The header lines of `header` whose names are (or, with `not`, are not) in `fields`,
/// followed by the blank line (RFC 9051 §6.4.5 HEADER.FIELDS).
pub fn header_fields(header: &[u8], fields: &[String], not: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut keep = false;
    for line in header.split_inclusive(|&b| b == b'\n') {
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        if !(line.starts_with(b" ") || line.starts_with(b"\t")) {
            let name = line.split(|&b| b == b':').next().unwrap_or_default();
            let name = String::from_utf8_lossy(name);
            let listed = fields.iter().any(|f| f.eq_ignore_ascii_case(name.trim()));
            keep = listed != not;
        }
        if keep {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MULTI: &[u8] = b"From: \"Alice\" <alice@a.test>\r\nTo: bob@b.test\r\nSubject: =?UTF-8?B?5L2g5aW9?=\r\n\
Date: Fri, 27 Nov 2026 10:00:00 +0000\r\nMessage-ID: <m1@a.test>\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n\
--b\r\nContent-Type: application/octet-stream; name=\"x.bin\"\r\nContent-Transfer-Encoding: base64\r\n\
Content-Disposition: attachment; filename=\"x.bin\"\r\n\r\nAAEC\r\n--b--\r\n";

    #[test]
    fn envelope_fields() {
        let env = String::from_utf8(envelope(MULTI, false)).unwrap();
        assert_eq!(
            env,
            "(\"Fri, 27 Nov 2026 10:00:00 +0000\" \"=?UTF-8?B?5L2g5aW9?=\" ((\"Alice\" NIL \"alice\" \"a.test\")) \
((\"Alice\" NIL \"alice\" \"a.test\")) ((\"Alice\" NIL \"alice\" \"a.test\")) ((NIL NIL \"bob\" \"b.test\")) NIL NIL NIL \"<m1@a.test>\")"
        );
    }

    /// The ENVELOPE of a header-only message, as text.
    fn envelope_of(header: &str) -> String {
        String::from_utf8(envelope(format!("{header}\r\n\r\n").as_bytes(), false)).unwrap()
    }

    #[test]
    fn empty_group_keeps_its_markers() {
        // RFC 3501 §7.4.2 / RFC 9051 §7.5.2: a group is a start structure with the group name as
        // mailbox and NIL host, then its members, then an end structure (NIL NIL NIL NIL); an
        // empty group (RFC 5322 §3.4 `group = display-name ":" [group-list] ";"`) keeps both.
        assert_eq!(
            envelope_of("To: undisclosed-recipients:;"),
            "(NIL NIL NIL NIL NIL ((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) NIL NIL NIL NIL)"
        );
    }

    #[test]
    fn group_members_sit_between_the_markers() {
        // RFC 3501 §7.4.2 group syntax; RFC 5322 §3.4 `address-list` mixing a group and a mailbox.
        assert_eq!(
            envelope_of("To: A Group: a@b.c, \"Bee\" <b@c.d>;, z@y.x"),
            "(NIL NIL NIL NIL NIL ((NIL NIL \"A Group\" NIL)(NIL NIL \"a\" \"b.c\")\
(\"Bee\" NIL \"b\" \"c.d\")(NIL NIL NIL NIL)(NIL NIL \"z\" \"y.x\")) NIL NIL NIL NIL)"
        );
    }

    #[test]
    fn empty_group_between_mailboxes() {
        // RFC 5322 §3.4: an empty group may stand anywhere in an address-list; RFC 3501 §7.4.2
        // keeps its markers in place between the mailboxes around it.
        assert_eq!(
            envelope_of("Cc: a@b.c, Nobody:;, d@e.f"),
            "(NIL NIL NIL NIL NIL NIL ((NIL NIL \"a\" \"b.c\")(NIL NIL \"Nobody\" NIL)\
(NIL NIL NIL NIL)(NIL NIL \"d\" \"e.f\")) NIL NIL NIL)"
        );
    }

    #[test]
    fn source_route_goes_in_adl() {
        // RFC 5322 §4.4 `obs-route = obs-domain-list ":"`; RFC 3501 §7.4.2: the address
        // structure is (name adl mailbox host), the at-domain-list (source route) being adl.
        // Sender and Reply-To default to From (RFC 3501 §7.4.2), route included.
        let route = "(NIL \"@route1,@route2\" \"user\" \"host\")";
        assert_eq!(
            envelope_of("From: <@route1,@route2:user@host>"),
            format!("(NIL NIL ({route}) ({route}) ({route}) NIL NIL NIL NIL NIL)")
        );
        // A domain literal's colons are not the end of the route.
        assert_eq!(
            split_route("@[IPv6:::1],@b:u@h"),
            (Some("@[IPv6:::1],@b"), "u@h")
        );
        assert_eq!(split_route("u@h"), (None, "u@h"));
    }

    #[test]
    fn mailbox_without_domain_is_not_a_group_marker() {
        // RFC 3501 §7.4.2: a NIL host means group syntax, so a mailbox lacking a domain gets an
        // empty host instead.
        assert_eq!(
            envelope_of("To: Bob <bob>"),
            "(NIL NIL NIL NIL NIL ((\"Bob\" NIL \"bob\" \"\")) NIL NIL NIL NIL)"
        );
    }

    #[test]
    fn structure_and_sections() {
        let bs = String::from_utf8(body_structure(MULTI, true, false)).unwrap();
        // RFC 2046 §5.1.1: the CRLF before a boundary belongs to the boundary, not the part.
        assert!(
            bs.starts_with("((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL \"7BIT\" 5 1"),
            "{bs}"
        );
        assert!(bs.contains("(\"APPLICATION\" \"OCTET-STREAM\" (\"NAME\" \"x.bin\") NIL NIL \"BASE64\" 4 NIL (\"ATTACHMENT\" (\"FILENAME\" \"x.bin\")) NIL NIL)"), "{bs}");
        assert!(
            bs.ends_with(" \"MIXED\" (\"BOUNDARY\" \"b\") NIL NIL NIL)"),
            "{bs}"
        );
        let part2 = part_range(MULTI, &[2]).unwrap();
        assert_eq!(&MULTI[part2.body.clone()], b"AAEC");
        assert_eq!(part2.decoded, Ok(vec![0, 1, 2]));
        let part1 = part_range(MULTI, &[1]).unwrap();
        assert_eq!(&MULTI[part1.body], b"hello");
        assert!(part_range(MULTI, &[3]).is_none());
        let whole = part_range(MULTI, &[]).unwrap();
        let fields = header_fields(
            &MULTI[whole.header],
            &["subject".into(), "To".into()],
            false,
        );
        assert_eq!(
            fields,
            b"To: bob@b.test\r\nSubject: =?UTF-8?B?5L2g5aW9?=\r\n\r\n"
        );
    }

    /// imap-codec (an independent IMAP implementation) decodes `structure` as a BODYSTRUCTURE.
    /// Line counts by block agree with counting the range itself, across block edges.
    #[test]
    fn line_counts_across_blocks() {
        let raw: Vec<u8> = (0..3000u32)
            .map(|i| {
                if i % 7 == 0 || i % 11 == 0 {
                    b'\n'
                } else {
                    b'x'
                }
            })
            .collect();
        let lines = Lines::new(&raw);
        for (start, end) in [
            (0, 0),
            (0, 3000),
            (5, 255),
            (255, 257),
            (256, 512),
            (300, 2999),
        ] {
            let body = &raw[start..end];
            let naive = body.iter().filter(|&&b| b == b'\n').count()
                + usize::from(!body.is_empty() && !body.ends_with(b"\n"));
            assert_eq!(lines.count(start..end), naive, "{start}..{end}");
        }
        assert_eq!(lines.count(10..4000), 0, "out of range");
    }

    fn oracle_decodes(structure: &[u8]) {
        use imap_codec::decode::Decoder;
        let response = [b"* 1 FETCH (BODYSTRUCTURE ", structure, b")\r\n"].concat();
        if let Err(e) = imap_codec::ResponseCodec::default().decode(&response) {
            panic!("{e:?}: {}", String::from_utf8_lossy(structure));
        }
    }

    fn corpus_file(name: &str) -> Vec<u8> {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../pigeon/tests/data/mime/");
        std::fs::read(format!("{root}{name}")).unwrap()
    }

    /// A multipart without its boundary, a message/rfc822 part that does not parse and an
    /// empty multipart used to come out as structures no client can read (a multipart or
    /// message type without children): they are opaque parts or get an empty text part.
    #[test]
    fn unparsed_containers_give_valid_structures() {
        for (name, expected) in [
            (
                "malformed/002.eml",
                "(\"APPLICATION\" \"OCTET-STREAM\" (\"BOUNDARY\" \"ab\")",
            ),
            (
                "malformed/022.eml",
                "(\"APPLICATION\" \"OCTET-STREAM\" NIL NIL NIL \"7BIT\" 55",
            ),
            (
                "malformed/000.eml",
                "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0) \"MIXED\"",
            ),
        ] {
            let raw = corpus_file(name);
            for extensible in [true, false] {
                let bs = body_structure(&raw, extensible, false);
                oracle_decodes(&bs);
                assert!(
                    String::from_utf8_lossy(&bs).contains(expected),
                    "{name}: {}",
                    String::from_utf8_lossy(&bs)
                );
            }
        }
    }

    /// A base64 message/rfc822 (RFC 2046 §5.2.1 forbids it, senders do it): mail-parser's
    /// offsets in it are positions in its decoded bytes, so its ENVELOPE and parts are read
    /// there (they were read from the outer message: garbage), and sections inside it, which
    /// have no bytes of their own in the message, are absent.
    #[test]
    fn encoded_nested_message() {
        let raw = corpus_file("rfc/008.eml");
        let bs = body_structure(&raw, true, false);
        oracle_decodes(&bs);
        let bs = String::from_utf8(bs).unwrap();
        assert!(
            bs.contains("(\"Tue, 14 Dec 2021 11:48:25 +0100\" \"HTML test\""),
            "{bs}"
        );
        assert!(bs.contains("\"<random-message-id@example.com>\")"), "{bs}");
        let part = part_range(&raw, &[2]).unwrap();
        // BODY[2] is the part's bytes as stored (base64); no HEADER/TEXT inside it.
        assert_eq!(part.body.len(), 1179);
        assert!(part.inner.is_none());
        assert!(part_range(&raw, &[2, 1]).is_none());
    }

    #[test]
    fn nested_message() {
        let raw = b"Subject: outer\r\nContent-Type: multipart/mixed; boundary=\"o\"\r\n\r\n--o\r\nContent-Type: text/plain\r\n\r\nouter text\r\n--o\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner body\r\n--o--\r\n";
        let p = part_range(raw, &[2]).unwrap();
        let (h, t) = p.inner.clone().unwrap();
        assert_eq!(&raw[h], b"Subject: inner\r\n\r\n");
        assert_eq!(&raw[t], b"inner body");
        let inner_text = part_range(raw, &[2, 1]).unwrap();
        assert_eq!(&raw[inner_text.body], b"inner body");
        let bs = String::from_utf8(body_structure(raw, false, false)).unwrap();
        assert!(bs.contains("\"MESSAGE\" \"RFC822\""), "{bs}");
        assert!(bs.contains("\"inner\""), "{bs}");
    }
}
