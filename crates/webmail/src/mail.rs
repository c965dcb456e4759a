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
    let Some(m) = MessageParser::default().parse(raw) else {
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
    let cleaned = ammonia::Builder::empty().clean(&spaced).to_string();
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
    let m = MessageParser::default().parse(raw)?;
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
    let m = MessageParser::default().parse(raw)?;
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
        .clean(&html)
        .to_string();
    Some((cleaned, remote_seen.load(Ordering::Relaxed)))
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
}
