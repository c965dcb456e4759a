//! The readable text of a message for a user agent: the first text/plain part (else the HTML
//! part, as markup), its transfer encoding removed and its charset decoded to UTF-8 with
//! encoding_rs, which knows every WHATWG label (mail-parser alone misses some, e.g. `shift_jis`).

use mail_parser::{MimeHeaders, PartType};

/// The text and whether it is HTML; None when the message has no text part.
pub fn readable_text(raw: &[u8]) -> Option<(String, bool)> {
    let message = crate::mime::parse(raw)?;
    // mail-parser may list one part as both text and HTML body; the part's type decides.
    let index = *message.text_body.first().or(message.html_body.first())?;
    let part = message.parts.get(index as usize)?;
    let html = matches!(part.body, PartType::Html(_));
    let body = raw.get(part.offset_body as usize..part.offset_end as usize)?;
    // An encoding pigeon cannot undo (RFC 2045 §6.4): the text as written is the best there is.
    let bytes = crate::imap::transfer_decoded(part, body).unwrap_or_else(|_| body.to_vec());
    let label = part
        .content_type()
        .and_then(|c| c.attribute("charset"))
        .unwrap_or("us-ascii");
    let text = match encoding_rs::Encoding::for_label(label.trim().as_bytes()) {
        Some(encoding) => encoding.decode_without_bom_handling(&bytes).0.into_owned(),
        // An unknown charset: what mail-parser made of it.
        None => match &part.body {
            PartType::Text(t) | PartType::Html(t) => t.to_string(),
            _ => String::from_utf8_lossy(&bytes).into_owned(),
        },
    };
    Some((text, html))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charsets_mail_parser_lacks_decode_too() {
        let raw = b"Subject: x\r\nContent-Type: text/plain; charset=\"shift_jis\"\r\n\
                    Content-Transfer-Encoding: base64\r\n\r\ngrGC8YLJgr+CzYFB\r\n";
        assert_eq!(
            readable_text(raw),
            Some(("こんにちは、".to_string(), false))
        );
        let raw =
            b"Subject: x\r\nContent-Type: text/html; charset=big5\r\n\r\n<p>\xb9q\xa4l</p>\r\n";
        assert_eq!(
            readable_text(raw),
            Some(("<p>電子</p>\r\n".to_string(), true))
        );
        let raw = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../pigeon/tests/data/generated/012.eml"
        ))
        .unwrap();
        assert_eq!(
            readable_text(&raw).unwrap().0.replace("\r\n", "\n"),
            "こんにちは、世界！\n"
        );
    }
}
