//! What the store keeps about a message besides its bytes, computed once at delivery so that
//! IMAP FETCH ENVELOPE/BODYSTRUCTURE and SEARCH never re-parse the message (issue: "computed
//! once at delivery and stored").

/// Precomputed views of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// IMAP ENVELOPE (7-bit form: non-ASCII strings as literals).
    pub envelope: Vec<u8>,
    /// IMAP BODYSTRUCTURE with extension data.
    pub body_structure: Vec<u8>,
    /// IMAP BODY (no extension data).
    pub body: Vec<u8>,
    /// The raw header block (for header searches and HEADER.FIELDS).
    pub header: Vec<u8>,
}

/// Computes the summary of `raw`. Malformed messages give a best-effort result.
pub fn summarize(raw: &[u8]) -> Summary {
    let header_end = crate::headers::header_len(raw);
    // One parse serves every view; depth-bounded (crate::mime), so no message can make the
    // views below recurse without limit.
    let parsed = crate::mime::parse(raw);
    let (envelope, body, body_structure) = crate::imap::structures(raw, parsed.as_ref());
    Summary {
        envelope,
        body_structure,
        body,
        header: raw[..header_end].to_vec(),
    }
}

/// The decoded header values and text-body text of `raw`, for the full-text index (computed
/// when the store indexes, not at delivery).
pub fn texts(raw: &[u8]) -> (String, String) {
    crate::mime::parse(raw)
        .as_ref()
        .map(texts_of)
        .unwrap_or_default()
}

fn texts_of(message: &mail_parser::Message<'_>) -> (String, String) {
    let mut header_text = String::new();
    let mut body_text = String::new();
    {
        for header in message.root_part().headers.iter() {
            if let Some(text) = header.value.as_text() {
                header_text.push_str(text);
                header_text.push('\n');
            } else if let Some(list) = header.value.as_address() {
                for addr in list.iter() {
                    if let Some(name) = &addr.name {
                        header_text.push_str(name);
                        header_text.push(' ');
                    }
                    if let Some(address) = &addr.address {
                        header_text.push_str(address);
                    }
                    header_text.push('\n');
                }
            }
        }
        for i in 0..message.text_body_count() {
            if let Some(text) = message.body_text(i) {
                body_text.push_str(&text);
                body_text.push('\n');
            }
        }
        for i in 0..message.html_body_count() {
            if message.text_body_count() > 0 {
                break;
            }
            if let Some(text) = message.body_html(i) {
                body_text.push_str(&text);
                body_text.push('\n');
            }
        }
    }
    (header_text, body_text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_a_simple_message() {
        let raw = "Subject: =?UTF-8?B?5L2g5aW9?=\r\nFrom: Zoë <z@x.test>\r\n\r\nbody text\r\n";
        let s = summarize(raw.as_bytes());
        let (header_text, body_text) = texts(raw.as_bytes());
        assert!(
            header_text.contains("你好") && header_text.contains("Zoë z@x.test"),
            "{header_text}"
        );
        assert_eq!(body_text, "body text\r\n\n");
        assert!(s.envelope.starts_with(b"(NIL \"=?UTF-8?B?5L2g5aW9?=\""));
        assert_eq!(
            s.header,
            b"Subject: =?UTF-8?B?5L2g5aW9?=\r\nFrom: Zo\xc3\xab <z@x.test>\r\n\r\n"
        );
    }
}
