//! Content tests for IMAP SEARCH: case-insensitive substring matches on decoded headers and
//! text bodies (RFC 9051 §6.4.4), on mail-parser.

use mail_parser::HeaderValue;

fn contains(haystack: &str, needle: &str) -> bool {
    needle.is_empty() || haystack.to_lowercase().contains(&needle.to_lowercase())
}

fn value_text(value: &HeaderValue<'_>) -> String {
    match value {
        HeaderValue::Address(a) => a
            .iter()
            .map(|addr| {
                format!(
                    "{} <{}>",
                    addr.name.as_deref().unwrap_or(""),
                    addr.address.as_deref().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
        HeaderValue::Text(t) => t.to_string(),
        HeaderValue::TextList(list) => list.join(", "),
        HeaderValue::DateTime(d) => d.to_rfc822(),
        HeaderValue::ContentType(c) => {
            format!("{}/{}", c.c_type, c.c_subtype.as_deref().unwrap_or(""))
        }
        _ => String::new(),
    }
}

/// A message parsed once for several tests.
pub struct Searchable<'a> {
    raw: &'a [u8],
    message: Option<mail_parser::Message<'a>>,
}

impl<'a> Searchable<'a> {
    pub fn new(raw: &'a [u8]) -> Searchable<'a> {
        Searchable {
            raw,
            message: crate::mime::parse(raw),
        }
    }

    /// HEADER name value (and FROM, TO, CC, BCC, SUBJECT): the decoded value or the raw line
    /// contains `needle`; an empty needle matches any message that has the field.
    pub fn header(&self, name: &str, needle: &str) -> bool {
        let Some(message) = &self.message else {
            return false;
        };
        message.root_part().headers.iter().any(|h| {
            if !h.name.as_str().eq_ignore_ascii_case(name) {
                return false;
            }
            let raw = self
                .raw
                .get(h.offset_start as usize..h.offset_end as usize)
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            contains(&value_text(&h.value), needle) || contains(&raw, needle)
        })
    }

    /// BODY: the decoded text of the message's text parts contains `needle`.
    pub fn body(&self, needle: &str) -> bool {
        let Some(message) = &self.message else {
            return contains(&String::from_utf8_lossy(self.raw), needle);
        };
        (0..message.text_body_count())
            .any(|i| message.body_text(i).is_some_and(|t| contains(&t, needle)))
            || (0..message.html_body_count())
                .any(|i| message.body_html(i).is_some_and(|t| contains(&t, needle)))
    }

    /// TEXT: the header or the body contains `needle`.
    pub fn text(&self, needle: &str) -> bool {
        let header_end = crate::headers::header_len(self.raw);
        contains(&String::from_utf8_lossy(&self.raw[..header_end]), needle)
            || self.message.as_ref().is_some_and(|m| {
                m.root_part()
                    .headers
                    .iter()
                    .any(|h| contains(&value_text(&h.value), needle))
            })
            || self.body(needle)
    }

    /// Days since the epoch of the Date: header, in UTC.
    pub fn sent_day(&self) -> Option<i64> {
        let date = self.message.as_ref()?.date()?;
        Some(date.to_timestamp().div_euclid(86_400))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches() {
        let raw = "From: =?UTF-8?B?5byg5LiJ?= <zhang@example.org>\r\nSubject: Re: Café\r\nDate: Fri, 27 Nov 2026 23:00:00 -0500\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n5L2g5aW9IHdvcmxk\r\n";
        let s = Searchable::new(raw.as_bytes());
        assert!(s.header("from", "张三"), "decoded name");
        assert!(s.header("FROM", "ZHANG@"), "address, any case");
        assert!(s.header("subject", "café"));
        assert!(!s.header("to", ""), "no To: header");
        assert!(s.body("你好 WORLD"), "decoded base64 body");
        assert!(!s.body("zhang"));
        assert!(s.text("zhang") && s.text("world"));
        assert_eq!(
            s.sent_day(),
            Some((1_795_813_886 + 36_000) / 86_400),
            "Date: in UTC is the next day"
        );
    }
}
