//! The IMAP views of a message (RFC 9051 §7.5.2): ENVELOPE, BODYSTRUCTURE, and the byte
//! ranges of body sections, computed with mail-parser.
//!
//! String values are written as IMAP strings (quoted or literal) by a small writer here, so
//! this module does not depend on `imap-proto`.

use mail_parser::{HeaderName, Message, MessageParser, MessagePart, PartType};

fn string(out: &mut Vec<u8>, s: &[u8], utf8: bool) {
    let quotable = s.len() < 1024
        && s.iter()
            .all(|&b| b != b'\r' && b != b'\n' && b != 0 && (utf8 || b < 0x80));
    if quotable {
        out.push(b'"');
        for &b in s {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
        out.extend_from_slice(s);
    }
}

fn nstring(out: &mut Vec<u8>, s: Option<&[u8]>, utf8: bool) {
    match s {
        Some(s) => string(out, s, utf8),
        None => out.extend_from_slice(b"NIL"),
    }
}

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

fn addresses(out: &mut Vec<u8>, message: &Message<'_>, name: HeaderName<'_>, utf8: bool) -> bool {
    let Some(list) = message.header(name).and_then(|h| h.as_address()) else {
        out.extend_from_slice(b"NIL");
        return false;
    };
    let mut any = false;
    out.push(b'(');
    for addr in list.iter() {
        let Some(address) = addr.address.as_deref() else {
            continue;
        };
        let (mailbox, host) = address.rsplit_once('@').unwrap_or((address, ""));
        out.push(b'(');
        nstring(out, addr.name.as_deref().map(str::as_bytes), utf8);
        out.extend_from_slice(b" NIL ");
        string(out, mailbox.as_bytes(), utf8);
        out.push(b' ');
        if host.is_empty() {
            out.extend_from_slice(b"NIL");
        } else {
            string(out, host.as_bytes(), utf8);
        }
        out.push(b')');
        any = true;
    }
    if !any {
        out.pop();
        out.extend_from_slice(b"NIL");
        return false;
    }
    out.push(b')');
    true
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
            part_structure(&mut body, raw, message, message.root_part(), false, false);
            part_structure(
                &mut body_structure,
                raw,
                message,
                message.root_part(),
                true,
                false,
            );
        }
        None => {
            envelope.extend_from_slice(b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
            let plain = b"(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0)";
            body.extend_from_slice(plain);
            body_structure.extend_from_slice(plain);
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

fn part_structure(
    out: &mut Vec<u8>,
    raw: &[u8],
    message: &Message<'_>,
    part: &MessagePart<'_>,
    extensible: bool,
    utf8: bool,
) {
    let content_type = content_header(part, HeaderName::ContentType);
    if let PartType::Multipart(children) = &part.body {
        out.push(b'(');
        for &child in children {
            if let Some(child) = message.parts.get(child as usize) {
                part_structure(out, raw, message, child, extensible, utf8);
            }
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
    let (ctype, subtype) = match content_type {
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
    if content_type.is_none() {
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
    // Lines of the body; a last line without a line end counts too.
    let lines = body.iter().filter(|&&b| b == b'\n').count()
        + usize::from(!body.is_empty() && !body.ends_with(b"\n"));
    match &part.body {
        PartType::Message(nested) if ctype.eq_ignore_ascii_case("message") => {
            // mail-parser's offsets in a nested message are positions in the outer raw bytes.
            out.push(b' ');
            write_envelope(out, raw, nested, utf8);
            out.push(b' ');
            part_structure(out, raw, nested, nested.root_part(), extensible, utf8);
            out.extend_from_slice(format!(" {lines}").as_bytes());
        }
        _ if ctype.eq_ignore_ascii_case("text") => {
            out.extend_from_slice(format!(" {lines}").as_bytes())
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
    match MessageParser::default().parse(raw) {
        Some(message) => part_structure(
            &mut out,
            raw,
            &message,
            message.root_part(),
            extensible,
            utf8,
        ),
        None => out.extend_from_slice(
            b"(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0)",
        ),
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
    /// The part's content with its transfer encoding removed (BINARY, RFC 3516).
    pub decoded: Vec<u8>,
}

/// Finds body part `path` (RFC 9051 §6.4.5 section numbers). An empty path is the message.
pub fn part_range(raw: &[u8], path: &[u32]) -> Option<PartRange> {
    let message = MessageParser::default().parse(raw)?;
    locate(raw, 0, &message, path)
}

fn locate(raw: &[u8], base: usize, message: &Message<'_>, path: &[u32]) -> Option<PartRange> {
    let root = message.root_part();
    let range = |a: u32, b: u32| (base + a as usize)..(base + b as usize);
    let Some((&first, rest)) = path.split_first() else {
        return Some(PartRange {
            header: range(root.offset_header, root.offset_body),
            body: range(root.offset_body, root.offset_end),
            inner: None,
            decoded: root.contents().to_vec(),
        });
    };
    let part = match &root.body {
        PartType::Multipart(children) => message
            .parts
            .get(*children.get(first as usize - 1)? as usize)?,
        // A single-part message has one part, number 1.
        _ if first == 1 => root,
        _ => return None,
    };
    let part = descend(message, part, rest)?;
    let (part, rest_path, inner_message) = part;
    if let PartType::Message(nested) = &part.body {
        // mail-parser's offsets in a nested message are positions in the outer raw bytes.
        let nested_base = base;
        if !rest_path.is_empty() {
            return locate(raw, nested_base, nested, rest_path);
        }
        let nested_root = nested.root_part();
        let inner = Some((
            (nested_base + nested_root.offset_header as usize)
                ..(nested_base + nested_root.offset_body as usize),
            (nested_base + nested_root.offset_body as usize)
                ..(nested_base + nested_root.offset_end as usize),
        ));
        return Some(PartRange {
            header: range(part.offset_header, part.offset_body),
            body: range(part.offset_body, part.offset_end),
            inner,
            decoded: raw.get(range(part.offset_body, part.offset_end))?.to_vec(),
        });
    }
    if !rest_path.is_empty() || inner_message {
        return None;
    }
    let body = range(part.offset_body, part.offset_end);
    Some(PartRange {
        header: range(part.offset_header, part.offset_body),
        decoded: transfer_decoded(part, raw.get(body.clone())?),
        body,
        inner: None,
    })
}

/// A part's content with only its transfer encoding removed (RFC 3516): mail-parser hands
/// text parts over converted to UTF-8, but BINARY must keep the part's own charset.
pub(crate) fn transfer_decoded(part: &MessagePart<'_>, body: &[u8]) -> Vec<u8> {
    use mail_parser::MimeHeaders;
    use mail_parser::decoders::{base64::base64_decode, quoted_printable::quoted_printable_decode};
    if !matches!(part.body, PartType::Text(_) | PartType::Html(_)) {
        return part.contents().to_vec();
    }
    let encoding = part
        .content_transfer_encoding()
        .unwrap_or("7bit")
        .to_ascii_lowercase();
    let decoded = match encoding.as_str() {
        "base64" => base64_decode(body),
        "quoted-printable" => quoted_printable_decode(body),
        _ => Some(body.to_vec()),
    };
    // Undecodable content is returned as it is stored: the best that can be given.
    decoded.unwrap_or_else(|| body.to_vec())
}

/// Walks down multipart children for the remaining path; stops at a nested message.
fn descend<'m, 'x>(
    message: &'m Message<'x>,
    mut part: &'m MessagePart<'x>,
    mut path: &'m [u32],
) -> Option<(&'m MessagePart<'x>, &'m [u32], bool)> {
    loop {
        if matches!(part.body, PartType::Message(_)) {
            return Some((part, path, false));
        }
        let Some((&n, rest)) = path.split_first() else {
            return Some((part, path, false));
        };
        match &part.body {
            PartType::Multipart(children) => {
                part = message.parts.get(*children.get(n as usize - 1)? as usize)?;
                path = rest;
            }
            _ => return None,
        }
    }
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
        assert_eq!(part2.decoded, [0, 1, 2]);
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
