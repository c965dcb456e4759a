//! Reading messages for the browser: header fields for lists, text and attachments for the
//! reading pane, parts for downloads, and HTML made safe to show.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine;
use mail_parser::{MessageParser, MimeHeaders, PartType};
use serde::Serialize;

/// A name and an address.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Addr {
    pub name: Option<String>,
    pub email: String,
}

/// The header fields a list or a reply needs.
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
    pub message_id: Option<String>,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
}

fn addresses(a: Option<&mail_parser::Address<'_>>) -> Vec<Addr> {
    let Some(a) = a else { return Vec::new() };
    a.iter()
        .filter_map(|m| {
            Some(Addr {
                name: m.name().map(str::to_string),
                email: m.address()?.to_string(),
            })
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

/// Parses a header block (or a whole message).
pub fn headers(raw: &[u8]) -> Headers {
    let Some(m) = MessageParser::default().parse_headers(raw) else {
        return Headers::default();
    };
    Headers {
        from: addresses(m.from()),
        to: addresses(m.to()),
        cc: addresses(m.cc()),
        reply_to: addresses(m.reply_to()),
        subject: m.subject().unwrap_or_default().to_string(),
        sent_at: m.date().map(|d| d.to_timestamp()),
        message_id: m.message_id().map(str::to_string),
        in_reply_to: id_list(m.in_reply_to()),
        references: id_list(m.references()),
    }
}

/// Whether a stored BODYSTRUCTURE names an attachment.
pub fn has_attachment(body_structure: &[u8]) -> bool {
    body_structure
        .windows(12)
        .any(|w| w.eq_ignore_ascii_case(b"\"attachment\""))
}

/// An attachment (or inline image) of a message.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    /// The part's position in the message, for downloads.
    pub part: u32,
    pub name: String,
    #[serde(rename = "type")]
    pub content_type: String,
    pub size: usize,
    /// Its Content-ID, when HTML refers to it as `cid:`.
    pub cid: Option<String>,
}

/// What the reading pane shows.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Body {
    /// The text (HTML-only mail as readable text).
    pub text: String,
    /// Whether there is an HTML version to show in the frame.
    pub has_html: bool,
    pub attachments: Vec<Attachment>,
}

fn content_type(part: &mail_parser::MessagePart<'_>) -> String {
    part.content_type()
        .map(|c| match c.subtype() {
            Some(sub) => format!("{}/{sub}", c.ctype()),
            None => c.ctype().to_string(),
        })
        .unwrap_or_else(|| "application/octet-stream".into())
        .to_ascii_lowercase()
}

fn part_bytes<'a>(part: &'a mail_parser::MessagePart<'_>) -> &'a [u8] {
    match &part.body {
        PartType::Message(m) => &m.raw_message,
        _ => part.contents(),
    }
}

fn is_html_part(m: &mail_parser::Message<'_>) -> bool {
    m.html_body
        .first()
        .and_then(|&id| m.part(id))
        .is_some_and(|p| matches!(p.body, PartType::Html(_)))
}

/// The reading pane's view of a message.
pub fn body(raw: &[u8]) -> Body {
    let Some(m) = message::mime::parse(raw) else {
        return Body {
            text: String::from_utf8_lossy(raw).into_owned(),
            ..Body::default()
        };
    };
    let has_html = is_html_part(&m);
    let text = match message::text::readable_text(raw) {
        Some((text, false)) => text,
        Some((html, true)) => html_to_text(&html),
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
                content_type: content_type(part),
                size: part_bytes(part).len(),
                cid: part
                    .content_id()
                    .map(|c| c.trim_matches(['<', '>']).to_string()),
            })
        })
        .collect();
    Body {
        text,
        has_html,
        attachments,
    }
}

/// Very plain text from HTML, for previews and HTML-only mail in text views.
pub fn html_to_text(html: &str) -> String {
    // Block ends and line breaks become newlines before the tags go.
    let mut spaced = String::with_capacity(html.len() + 64);
    let lower = html.to_ascii_lowercase();
    let mut last = 0;
    for (i, _) in lower.match_indices('<') {
        let tag = &lower[i..];
        let breaks = [
            "<br",
            "</p",
            "</div",
            "<li",
            "</li",
            "</tr",
            "</h1",
            "</h2",
            "</h3",
            "</blockquote",
        ]
        .iter()
        .any(|t| tag.starts_with(t));
        if breaks {
            spaced.push_str(&html[last..i]);
            spaced.push('\n');
            last = i;
        }
    }
    spaced.push_str(&html[last..]);
    let cleaned = ammonia::Builder::empty()
        .clean(&bounded_html(&spaced))
        .to_string();
    let mut text = String::with_capacity(cleaned.len());
    let mut chars = cleaned.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '&' {
            let entity: String = std::iter::from_fn(|| chars.next_if(|&c| c != ';')).collect();
            chars.next();
            text.push_str(match entity.as_str() {
                "amp" => "&",
                "lt" => "<",
                "gt" => ">",
                "quot" => "\"",
                "#39" => "'",
                "nbsp" => " ",
                _ => "",
            });
        } else {
            text.push(c);
        }
    }
    text
}

/// One part's name, type and decoded bytes.
pub fn part(raw: &[u8], id: u32) -> Option<(String, String, Vec<u8>)> {
    let m = message::mime::parse(raw)?;
    let part = m.part(id)?;
    Some((
        part.attachment_name().unwrap_or("").to_string(),
        content_type(part),
        part_bytes(part).to_vec(),
    ))
}

/// The message's HTML, sanitised: no scripts, event handlers, forms, frames, `<base>`,
/// `<meta>` or non-web URLs; `cid:` images inlined as `data:` URLs; remote images dropped unless
/// `allow_remote`. Returns the HTML and whether it referred to remote images.
pub fn safe_html(raw: &[u8], allow_remote: bool) -> Option<(String, bool)> {
    let m = message::mime::parse(raw)?;
    if !is_html_part(&m) {
        return None;
    }
    let html = m.body_html(0)?.into_owned();
    let mut inline: HashMap<String, String> = HashMap::new();
    for part in &m.parts {
        if let Some(cid) = part.content_id() {
            let kind = content_type(part);
            if kind.starts_with("image/") {
                let data = base64::engine::general_purpose::STANDARD.encode(part_bytes(part));
                inline.insert(
                    cid.trim_matches(['<', '>']).to_string(),
                    format!("data:{kind};base64,{data}"),
                );
            }
        }
    }
    let remote_seen = Arc::new(AtomicBool::new(false));
    let seen = remote_seen.clone();
    let cleaned = ammonia::Builder::default()
        // Relative links would point into the webmail itself.
        .url_relative(ammonia::UrlRelative::Deny)
        .add_url_schemes(["cid"])
        .add_generic_attributes(["style", "align", "valign", "bgcolor", "width", "height"])
        .link_rel(Some("noopener noreferrer"))
        .set_tag_attribute_value("a", "target", "_blank")
        .attribute_filter(move |_element, attribute, value| {
            let lower = value.trim().to_ascii_lowercase();
            let loads = matches!(attribute, "src" | "srcset" | "background" | "poster")
                || (attribute == "style" && lower.contains("url("));
            if !loads {
                return Some(value.into());
            }
            if let Some(cid) = lower.strip_prefix("cid:") {
                let key = value.trim()[4..].trim_matches(['<', '>']);
                return inline
                    .get(key)
                    .or_else(|| inline.get(cid))
                    .map(|data| data.clone().into());
            }
            if lower.contains("http:") || lower.contains("https:") || lower.contains("//") {
                seen.store(true, Ordering::Relaxed);
                return allow_remote.then(|| value.into());
            }
            Some(value.into())
        })
        .clean(&bounded_html(&html))
        .to_string();
    Some((cleaned, remote_seen.load(Ordering::Relaxed)))
}

/// Documents with at most this many tags go to the HTML parser as they are.
const HTML_TAGS_AS_IS: usize = 4096;

/// The deepest element nesting a re-written document has.
const MAX_HTML_DEPTH: usize = 256;

/// HTML the sanitiser can parse in about linear time.
///
/// html5ever builds the tree an HTML5 browser would, and for many start tags it looks through
/// the stack of open elements (is a `p` open in button scope?), so its time grows with the
/// number of tags times the nesting: 100,000 nested `<div>`s (1.1 MB) took minutes. It never
/// recursed (tested to 300,000 levels), so this is about time, not the stack.
///
/// A document with at most [`HTML_TAGS_AS_IS`] tags is cleaned as it is. A bigger one is
/// written again first, by a single pass with its own stack of open elements: well nested
/// (every end tag closes the element it follows, missing ones are added), at most
/// [`MAX_HTML_DEPTH`] elements deep (deeper tags are dropped, their text kept), text with `<`
/// escaped and comments, `<script>` and `<style>` left out (the sanitiser drops them too).
/// html5ever then only ever sees the tags written here, nested at most that deep, plus the
/// few it adds itself (`tbody`, re-opened formatting elements). Misnested formatting such as
/// `<b><p>x</b>y</p>` may look a little different than in a browser.
fn bounded_html(html: &str) -> std::borrow::Cow<'_, str> {
    let bytes = html.as_bytes();
    let tags = bytes
        .windows(2)
        .filter(|w| w[0] == b'<' && (w[1].is_ascii_alphabetic() || w[1] == b'/'))
        .count();
    if tags <= HTML_TAGS_AS_IS {
        return std::borrow::Cow::Borrowed(html);
    }
    std::borrow::Cow::Owned(rewrite_html(html))
}

/// Elements without content: never open.
const VOID: &[&str] = &[
    "area", "base", "basefont", "bgsound", "br", "col", "embed", "frame", "hr", "img", "input",
    "keygen", "link", "meta", "param", "source", "track", "wbr",
];

/// Elements whose content is not markup: dropped with it.
const DROPPED_WITH_CONTENT: &[&str] = &["script", "style", "template"];

/// Elements whose content is text up to their end tag: the content is kept as text.
const TEXT_CONTENT: &[&str] = &[
    "iframe",
    "noembed",
    "noframes",
    "noscript",
    "plaintext",
    "textarea",
    "title",
    "xmp",
];

/// Elements a start tag `name` closes when one of them is the current element, as HTML's
/// tree construction does (a new `<p>` ends the open `p`, a new `<li>` the open `li`).
fn closes(name: &str) -> &'static [&'static str] {
    match name {
        "li" => &["p", "li"],
        "dd" | "dt" => &["p", "dd", "dt"],
        "td" | "th" => &["p", "td", "th"],
        "tr" => &["p", "td", "th", "tr"],
        "tbody" | "thead" | "tfoot" => &["p", "td", "th", "tr", "tbody", "thead", "tfoot"],
        "option" => &["option"],
        "optgroup" => &["option", "optgroup"],
        "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => &["p", "h1", "h2", "h3", "h4", "h5", "h6"],
        "address" | "article" | "aside" | "blockquote" | "center" | "details" | "dialog"
        | "dir" | "div" | "dl" | "fieldset" | "figcaption" | "figure" | "footer" | "form"
        | "header" | "hgroup" | "main" | "menu" | "nav" | "ol" | "p" | "pre" | "section"
        | "summary" | "table" | "ul" => &["p"],
        _ => &[],
    }
}

/// One tag: its lower-case name, whether it is an end tag, its attributes as written (from
/// the first byte after the name to before `>`), and where the input continues.
struct Tag<'a> {
    name: String,
    end: bool,
    attributes: &'a str,
    next: usize,
}

/// Reads the tag at `at` (a `<` followed by a letter, or `</` and a letter). Attribute values
/// in quotes may hold `>`. `None` when the input ends inside the tag (HTML drops such a tag).
fn read_tag(html: &str, at: usize) -> Option<Tag<'_>> {
    let bytes = html.as_bytes();
    let end = bytes.get(at + 1) == Some(&b'/');
    let name_start = at + 1 + usize::from(end);
    let mut i = name_start;
    while i < bytes.len()
        && !matches!(
            bytes[i],
            b'\t' | b'\n' | b'\x0c' | b'\r' | b' ' | b'/' | b'>'
        )
    {
        i += 1;
    }
    let name = html[name_start..i].to_ascii_lowercase();
    let attributes_start = i;
    let mut quote = None;
    while i < bytes.len() {
        match (bytes[i], quote) {
            (q, Some(open)) if q == open => quote = None,
            (_, Some(_)) => {}
            (b'>', None) => {
                return Some(Tag {
                    name,
                    end,
                    attributes: &html[attributes_start..i],
                    next: i + 1,
                });
            }
            // A quote opens a value only right after `=` (and spaces).
            (b'"' | b'\'', None) => {
                let before = html[attributes_start..i].trim_end();
                if before.ends_with('=') {
                    quote = Some(bytes[i]);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Where markup that is not a tag ends: a comment (`<!--...-->`, HTML's rules for its ends),
/// a doctype or other `<!...>`, `<?...>` or `</` and no letter.
fn skip_markup(html: &str, at: usize) -> usize {
    let rest = &html[at..];
    if let Some(comment) = rest.strip_prefix("<!--") {
        if comment.starts_with('>') {
            return at + 5;
        }
        if comment.starts_with("->") {
            return at + 6;
        }
        let ends = [
            comment.find("-->").map(|p| p + 3),
            comment.find("--!>").map(|p| p + 4),
        ];
        return match ends.into_iter().flatten().min() {
            Some(end) => at + 4 + end,
            None => html.len(),
        };
    }
    match rest.find('>') {
        Some(end) => at + end + 1,
        None => html.len(),
    }
}

/// Where the end tag of `name` (any case) starts, from `from` on.
fn find_end_tag(html: &str, from: usize, name: &str) -> Option<usize> {
    let bytes = html.as_bytes();
    let mut at = from;
    while let Some(p) = html[at..].find("</").map(|p| at + p) {
        let after = p + 2 + name.len();
        if bytes
            .get(p + 2..after)
            .is_some_and(|n| n.eq_ignore_ascii_case(name.as_bytes()))
            && bytes
                .get(after)
                .is_none_or(|b| matches!(b, b'\t' | b'\n' | b'\x0c' | b'\r' | b' ' | b'/' | b'>'))
        {
            return Some(p);
        }
        at = p + 2;
    }
    None
}

/// Writes attributes again with every value in double quotes, so nothing in them can end
/// the tag early or differently than read.
fn write_attributes(out: &mut String, attributes: &str) {
    let bytes = attributes.as_bytes();
    let mut i = 0;
    let is_space = |b: u8| matches!(b, b'\t' | b'\n' | b'\x0c' | b'\r' | b' ');
    while i < bytes.len() {
        while i < bytes.len() && (is_space(bytes[i]) || bytes[i] == b'/') {
            i += 1;
        }
        let name_start = i;
        while i < bytes.len() && !is_space(bytes[i]) && !matches!(bytes[i], b'/' | b'=' | b'>')
            || i == name_start && i < bytes.len() && bytes[i] == b'='
        {
            i += 1;
        }
        let name = &attributes[name_start..i];
        if name.is_empty() {
            i += 1;
            continue;
        }
        while i < bytes.len() && is_space(bytes[i]) {
            i += 1;
        }
        let mut value = None;
        if bytes.get(i) == Some(&b'=') {
            i += 1;
            while i < bytes.len() && is_space(bytes[i]) {
                i += 1;
            }
            match bytes.get(i) {
                Some(&q @ (b'"' | b'\'')) => {
                    let start = i + 1;
                    let end = attributes[start..]
                        .find(q as char)
                        .map_or(bytes.len(), |e| start + e);
                    value = Some(&attributes[start..end]);
                    i = end + 1;
                }
                _ => {
                    let start = i;
                    while i < bytes.len() && !is_space(bytes[i]) {
                        i += 1;
                    }
                    value = Some(&attributes[start..i]);
                }
            }
        }
        out.push(' ');
        out.push_str(&name.replace(['"', '\'', '<'], ""));
        if let Some(value) = value {
            out.push_str("=\"");
            out.push_str(&value.replace('"', "&quot;"));
            out.push('"');
        }
    }
}

/// The rewrite [`bounded_html`] describes: one pass, linear in the input.
fn rewrite_html(html: &str) -> String {
    let bytes = html.as_bytes();
    let mut out = String::with_capacity(html.len() + html.len() / 8);
    // Open elements, whether each was written, and how many of each name are open: an end
    // tag without an open element of its name is dropped without looking through the stack.
    let mut open: Vec<(String, bool)> = Vec::new();
    let mut open_names: HashMap<String, usize> = HashMap::new();
    let mut written = 0usize;
    let close_top = |out: &mut String,
                     open: &mut Vec<(String, bool)>,
                     open_names: &mut HashMap<String, usize>,
                     written: &mut usize| {
        if let Some((name, was_written)) = open.pop() {
            if let Some(n) = open_names.get_mut(&name) {
                *n -= 1;
            }
            if was_written {
                out.push_str("</");
                out.push_str(&name);
                out.push('>');
                *written -= 1;
            }
        }
    };
    let mut at = 0;
    while at < bytes.len() {
        let Some(lt) = html[at..].find('<').map(|p| at + p) else {
            out.push_str(&html[at..]);
            break;
        };
        out.push_str(&html[at..lt]);
        let next = bytes.get(lt + 1).copied().unwrap_or(0);
        let after = bytes.get(lt + 2).copied().unwrap_or(0);
        let is_tag = next.is_ascii_alphabetic() || next == b'/' && after.is_ascii_alphabetic();
        if !is_tag {
            if matches!(next, b'!' | b'?' | b'/') {
                at = skip_markup(html, lt);
            } else {
                out.push_str("&lt;");
                at = lt + 1;
            }
            continue;
        }
        let Some(tag) = read_tag(html, lt) else {
            break;
        };
        at = tag.next;
        let name = tag.name.as_str();
        if matches!(name, "html" | "head" | "body") {
            continue;
        }
        if tag.end {
            if open_names.get(name).copied().unwrap_or(0) > 0 {
                loop {
                    let top_is_it = open.last().is_some_and(|(n, _)| n == name);
                    close_top(&mut out, &mut open, &mut open_names, &mut written);
                    if top_is_it {
                        break;
                    }
                }
            }
            continue;
        }
        if DROPPED_WITH_CONTENT.contains(&name) || TEXT_CONTENT.contains(&name) {
            // The content runs to the matching end tag (all of the rest for plaintext).
            let end = if name == "plaintext" {
                None
            } else {
                find_end_tag(html, at, name)
            };
            let content = &html[at..end.unwrap_or(html.len())];
            if TEXT_CONTENT.contains(&name) {
                out.push_str(&content.replace('<', "&lt;"));
            }
            at = match end {
                Some(e) => read_tag(html, e).map_or(html.len(), |t| t.next),
                None => html.len(),
            };
            continue;
        }
        while open
            .last()
            .is_some_and(|(n, _)| closes(name).contains(&n.as_str()))
        {
            close_top(&mut out, &mut open, &mut open_names, &mut written);
        }
        let void = VOID.contains(&name);
        let write = void || written < MAX_HTML_DEPTH;
        if write {
            out.push('<');
            out.push_str(name);
            write_attributes(&mut out, tag.attributes);
            out.push('>');
        }
        if !void {
            *open_names.entry(tag.name.clone()).or_default() += 1;
            open.push((tag.name, write));
            written += usize::from(write);
        }
    }
    while !open.is_empty() {
        close_top(&mut out, &mut open, &mut open_names, &mut written);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIL: &[u8] = b"From: =?UTF-8?B?5byg5LiJ?= <zhang@example.com>\r\nTo: bob@localhost\r\n\
Subject: =?UTF-8?B?5rWL6K+V?=\r\nMessage-ID: <a@b>\r\nReferences: <r1@x> <r2@x>\r\n\
Date: Sat, 28 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/related; boundary=\"B\"\r\n\r\n--B\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
<p onclick=\"x()\">Hi<script>alert(1)</script><img src=\"cid:logo\"><img src=\"https://track.example/p.gif\">\
<a href=\"javascript:alert(1)\">j</a><a href=\"https://ok.example/\">ok</a></p>\r\n\
--B\r\nContent-Type: image/png\r\nContent-ID: <logo>\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--B--\r\n";

    #[test]
    fn headers_decode_words_and_thread_ids() {
        let h = headers(MAIL);
        assert_eq!(h.subject, "测试");
        assert_eq!(h.from[0].name.as_deref(), Some("张三"));
        assert_eq!(h.message_id.as_deref(), Some("a@b"));
        assert_eq!(h.references, ["r1@x", "r2@x"]);
        assert!(h.sent_at.is_some());
    }

    #[test]
    fn html_is_cleaned_cid_inlined_remote_blocked() {
        let (html, remote) = safe_html(MAIL, false).unwrap();
        assert!(remote);
        assert!(
            !html.contains("script") && !html.contains("onclick"),
            "{html}"
        );
        assert!(!html.contains("javascript:"), "{html}");
        assert!(!html.contains("track.example"), "{html}");
        assert!(
            html.contains("src=\"data:image/png;base64,iVBORw0KGgo=\""),
            "{html}"
        );
        assert!(html.contains("https://ok.example/"), "{html}");
        let (html, _) = safe_html(MAIL, true).unwrap();
        assert!(html.contains("track.example"), "allowed: {html}");
    }

    /// Runs `f` on a thread with a tokio worker's 2 MiB stack.
    fn on_small_stack(f: impl FnOnce() + Send + 'static) {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(f)
            .unwrap()
            .join()
            .expect("no panic");
    }

    fn html_mail(html: &str) -> Vec<u8> {
        format!(
            "From: a@b.test\r\nSubject: deep html\r\nMIME-Version: 1.0\r\n\
             Content-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n"
        )
        .into_bytes()
    }

    /// The deepest element nesting of cleaned (well-formed) HTML, voids aside.
    fn depth(html: &str) -> usize {
        let (mut depth, mut max) = (0usize, 0);
        for (i, _) in html.match_indices('<') {
            let rest = &html[i + 1..];
            let name: String = rest
                .trim_start_matches('/')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            if name.is_empty() || VOID.contains(&name.as_str()) {
                continue;
            }
            if rest.starts_with('/') {
                depth = depth.saturating_sub(1);
            } else {
                depth += 1;
                max = max.max(depth);
            }
        }
        max
    }

    /// Issue 14: 100,000 levels of HTML nesting are cleaned in one pass over a bounded tree
    /// (the HTML parser's time grows with tags times depth: this took minutes), the text kept.
    #[test]
    fn deeply_nested_html_is_cleaned_with_bounded_depth() {
        on_small_stack(|| {
            let n = 100_000;
            let cases = [
                format!("{}deep text{}", "<div>".repeat(n), "</div>".repeat(n)),
                format!("{}deep text{}", "<b>".repeat(n), "</b>".repeat(n)),
                format!("{}deep text", "<table><tr><td>".repeat(n / 3)),
                format!("{}deep text", "<div/>".repeat(n)),
                // Misnested so that a browser's tree grows while the end tags seem to close.
                format!("<div>{}deep text", "<span><div></span>".repeat(n / 2)),
                format!("{}deep text", "<blockquote><font size=1>".repeat(n / 2)),
            ];
            for html in cases {
                let raw = html_mail(&html);
                let (clean, _) = safe_html(&raw, false).unwrap();
                assert!(clean.contains("deep text"));
                assert!(depth(&clean) <= 4 * MAX_HTML_DEPTH + 4, "{}", depth(&clean));
                let b = body(&raw);
                assert!(b.text.contains("deep text"));
                assert!(b.has_html);
            }
            // Unclosed paragraphs and list items do not nest: all 100,000 stay.
            let raw = html_mail(&"<p>para".repeat(n));
            let (clean, _) = safe_html(&raw, false).unwrap();
            assert_eq!(clean.matches("<p>para").count(), n);
            assert_eq!(depth(&clean), 1);
            let raw = html_mail(&format!("<ul>{}</ul>", "<li>item".repeat(n)));
            let (clean, _) = safe_html(&raw, false).unwrap();
            assert_eq!(clean.matches("<li>item").count(), n);
            assert_eq!(depth(&clean), 2);
        });
    }

    /// A big document that is well nested comes out of the sanitiser exactly as it would
    /// without the rewrite: quoted `>` and `"` in attributes, comments, entities, voids,
    /// tables, implied ends of `p`, `li` and `td`, scripts and styles.
    #[test]
    fn rewriting_a_big_document_changes_nothing_the_sanitiser_keeps() {
        let block = "<!--[if mso]><table><tr><td><![endif]-->\
            <table width=\"100%\" style='font-family: \"Segoe UI\"' data-x=\"a>b\">\
            <tr><td class=c1>Caf&eacute; &amp; <b>bold <i>it</i></b><br/>line\
            <td><a href=\"https://example.com/?a=1&amp;b=2\" title='say \"hi\"'>link</a>\
            <tr><td><img src=\"cid:logo\" alt=\"x > y\"><ul><li>one<li>two</ul>\
            <p>first<p>second 3 &lt; 4</td></tr></table>\
            <script>if (a < b) { document.write('<div>') }</script><style>p > b {}</style>\
            <div><p>para <span>span</span></p></div><?php x ?><!DOCTYPE html>";
        let html = format!(
            "<html><head><title>T &lt;</title></head><body>{}</body></html>",
            block.repeat(300)
        );
        assert!(html.matches('<').count() > HTML_TAGS_AS_IS);
        let clean = |h: &str| ammonia::Builder::default().clean(h).to_string();
        assert_eq!(clean(&rewrite_html(&html)), clean(&html));
    }

    /// A hostile document big enough to be rewritten is cleaned as well as a small one.
    #[test]
    fn a_big_hostile_document_is_cleaned_too() {
        let html = String::from_utf8_lossy(MAIL);
        let html = &html[html.find("<p onclick").unwrap()
            ..html.find("\r\n--B\r\nContent-Type: image").unwrap()];
        let big = html_mail(&format!(
            "{}<svg><script>alert(2)</script></svg><a href=\"java&#x09;script:alert(3)\">x</a>\
             <img src=x onerror=alert(4)><iframe src=\"https://evil.example/\"></iframe>\
             <div style=\"background:url(https://track.example/b.gif)\">bg</div>",
            html.repeat(1000)
        ));
        let (clean, remote) = safe_html(&big, false).unwrap();
        assert!(remote);
        for bad in [
            "script",
            "onclick",
            "onerror",
            "javascript",
            "alert",
            "track.example",
            "evil.example",
            "<iframe",
        ] {
            assert!(!clean.contains(bad), "{bad}");
        }
        assert!(clean.contains("https://ok.example/"));
    }

    /// Every view of a message nested 100,000 levels deep (issue 14), on a worker's stack.
    #[test]
    fn deeply_nested_mime_opens() {
        on_small_stack(|| {
            for n in [10_000, 100_000] {
                let mut raw = String::from("From: a@b.test\r\nSubject: deep\r\n");
                for i in 0..n {
                    raw.push_str(&format!(
                        "Content-Type: multipart/mixed; boundary=\"b{i:06}\"\r\n\r\n--b{i:06}\r\n\
                         Content-Type: message/rfc822\r\n\r\n"
                    ));
                }
                raw.push_str("Content-Type: text/html\r\n\r\n<p>bottom</p>\r\n");
                for i in (0..n).rev() {
                    raw.push_str(&format!("--b{i:06}--\r\n"));
                }
                let raw = raw.into_bytes();
                assert_eq!(headers(&raw).subject, "deep");
                let b = body(&raw);
                assert!(!b.attachments.is_empty());
                for a in &b.attachments {
                    assert!(part(&raw, a.part).is_some());
                }
                assert!(part(&raw, u32::MAX).is_none());
                assert!(safe_html(&raw, false).is_none(), "no HTML at the top");
            }
        });
    }
}
