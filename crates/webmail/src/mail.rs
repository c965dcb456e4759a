//! Reading messages for the browser: header fields for lists, text and attachments for the
//! reading pane, parts for downloads, and HTML made safe to show.
//!
//! The message view (headers, text, attachments) and the HTML-to-text conversion are the
//! `ua` crate's, shared with `pigeon read`; this module shapes them for the JSON API.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine;
use mail_parser::MimeHeaders;
use ua::html::bounded_html;
use ua::view::{MessageView, is_html_part, mime_type, part_bytes};

pub use ua::view::{Addr, Headers, has_attachment, message_has_attachment};

/// Parses a header block (or a whole message): the mailboxes with an address.
pub fn headers(raw: &[u8]) -> Headers {
    Headers::parse(raw).addressed()
}

/// The reading pane's view of a message: [`MessageView::parse`], as `pigeon read show` has
/// it, with attachment types as HTTP wants them ([`ua::view::Attachment::mime_type`]); a
/// message that cannot be parsed at all shows as its bytes.
pub fn body(raw: &[u8]) -> MessageView {
    let Some(mut view) = MessageView::parse(raw) else {
        return MessageView {
            text: String::from_utf8_lossy(raw).into_owned(),
            ..MessageView::default()
        };
    };
    for a in &mut view.attachments {
        a.content_type = a.mime_type();
    }
    view
}

/// One part's name, type and decoded bytes.
pub fn part(raw: &[u8], id: u32) -> Option<(String, String, Vec<u8>)> {
    let m = message::mime::parse(raw)?;
    let part = m.part(id)?;
    Some((
        part.attachment_name().unwrap_or("").to_string(),
        mime_type(part),
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
            let kind = mime_type(part);
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

#[cfg(test)]
mod tests {
    use super::*;
    use ua::html::{MAX_HTML_DEPTH, VOID};

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

    /// The reading pane shows HTML-only mail as `pigeon read show` prints it: both are
    /// [`MessageView::parse`] with the one HTML-to-text conversion.
    #[test]
    fn html_only_mail_reads_as_in_the_cli() {
        let raw = html_mail(
            "<div><p>Hello&nbsp;<b>world</b> &amp; caf&eacute;</p><ul><li>one<li>two</ul>\
             <script>steal()</script><a href=\"https://example.com/\">link</a></div>",
        );
        let pane = body(&raw);
        assert_eq!(pane.text, "Hello world & café\none\ntwo\nlink\n");
        assert_eq!(pane.text, MessageView::parse(&raw).unwrap().text);
        assert!(pane.has_html);
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
