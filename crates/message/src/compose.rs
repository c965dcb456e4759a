//! Composing messages for the user agent, on mail-builder: non-ASCII headers as RFC 2047
//! encoded words, attachment names as RFC 2231 parameters, text and HTML as
//! multipart/alternative, attachments and inline (`cid:`) images, threading headers.

use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::message_id::MessageId;

/// A display name and an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub name: Option<String>,
    pub address: String,
}

impl Mailbox {
    /// `Name <addr>`, `"Name" <addr>`, `<addr>` or `addr`.
    pub fn parse(text: &str) -> Result<Mailbox, String> {
        let text = text.trim();
        let (name, address) = match (text.rfind('<'), text.ends_with('>')) {
            (Some(open), true) => {
                let name = text[..open].trim().trim_matches('"').trim();
                (
                    (!name.is_empty()).then(|| name.to_string()),
                    &text[open + 1..text.len() - 1],
                )
            }
            _ => (None, text),
        };
        let address = address.trim();
        let valid = address.rsplit_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && (domain.contains('.') || domain == "localhost")
        }) && !address
            .chars()
            .any(|c| c.is_whitespace() || c == '<' || c == '>' || c.is_control());
        if !valid {
            return Err(format!("{text:?} is not an email address"));
        }
        Ok(Mailbox {
            name,
            address: address.to_string(),
        })
    }

    fn to_address(&self) -> Address<'static> {
        Address::new_address(self.name.clone(), self.address.clone())
    }
}

/// A file to attach, or an image to show inline (with a Content-ID).
#[derive(Debug, Clone)]
pub struct Attachment {
    pub filename: String,
    pub content_type: String,
    pub data: Vec<u8>,
    /// Shown inline and referred to as `cid:<content_id>` from the HTML.
    pub content_id: Option<String>,
}

/// A message to build.
#[derive(Debug, Clone)]
pub struct Draft {
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub subject: String,
    pub text: Option<String>,
    pub html: Option<String>,
    pub attachments: Vec<Attachment>,
    /// Message-IDs without angle brackets.
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    pub message_id: String,
    /// Unix seconds.
    pub date: i64,
}

fn address_list(list: &[Mailbox]) -> Address<'static> {
    Address::new_list(list.iter().map(Mailbox::to_address).collect())
}

/// The message, CRLF line ends. Bcc recipients are not in it: they are envelope only.
pub fn build(draft: &Draft) -> Vec<u8> {
    let mut builder = MessageBuilder::new()
        .from(draft.from.to_address())
        .subject(draft.subject.clone())
        .message_id(draft.message_id.clone())
        .date(draft.date);
    if !draft.to.is_empty() {
        builder = builder.to(address_list(&draft.to));
    }
    if !draft.cc.is_empty() {
        builder = builder.cc(address_list(&draft.cc));
    }
    let mut references: Vec<String> = draft
        .references
        .iter()
        .filter(|r| valid_message_id(r))
        .cloned()
        .collect();
    if let Some(parent) = draft.in_reply_to.as_ref().filter(|p| valid_message_id(p)) {
        builder = builder.in_reply_to(parent.clone());
        if !references.contains(parent) {
            references.push(parent.clone());
        }
    }
    if !references.is_empty() {
        builder = builder.references(MessageId::new_list(
            references.into_iter().map(std::borrow::Cow::<str>::from),
        ));
    }
    match (&draft.text, &draft.html) {
        (None, None) => builder = builder.text_body(String::new()),
        (text, html) => {
            if let Some(text) = text {
                builder = builder.text_body(text.clone());
            }
            if let Some(html) = html {
                builder = builder.html_body(html.clone());
            }
        }
    }
    for a in &draft.attachments {
        // mail-builder writes the type as given: only a plain `type/subtype` may pass.
        let kind = if valid_content_type(&a.content_type) {
            a.content_type.clone()
        } else {
            "application/octet-stream".to_string()
        };
        builder = match &a.content_id {
            Some(cid) if valid_message_id(cid) => builder.inline(kind, cid.clone(), a.data.clone()),
            _ => builder.attachment(kind, a.filename.clone(), a.data.clone()),
        };
    }
    builder.write_to_vec().unwrap_or_default()
}

/// A message id (without angle brackets) safe to write into a header: no whitespace, no
/// brackets, no control characters (mail-builder writes ids as given).
pub fn valid_message_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 250
        && id
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>')
}

/// `type/subtype` made of RFC 2045 token characters.
pub fn valid_content_type(kind: &str) -> bool {
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    kind.len() <= 127
        && kind
            .split_once('/')
            .is_some_and(|(a, b)| token(a) && token(b))
}

/// A MIME type for a file, from its first bytes, else its name.
pub fn guess_type(filename: &str, data: &[u8]) -> &'static str {
    const MAGIC: [(&[u8], &str); 8] = [
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"GIF87a", "image/gif"),
        (b"GIF89a", "image/gif"),
        (b"%PDF-", "application/pdf"),
        (b"PK\x03\x04", "application/zip"),
        (b"\x1f\x8b", "application/gzip"),
        (b"RIFF", "application/octet-stream"),
    ];
    for (magic, kind) in MAGIC {
        if data.starts_with(magic) && kind != "application/octet-stream" {
            return kind;
        }
    }
    let extension = filename
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "txt" | "text" | "log" | "md" => "text/plain",
        "html" | "htm" => "text/html",
        "csv" => "text/csv",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "json" => "application/json",
        "ics" => "text/calendar",
        "eml" => "message/rfc822",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hostile_ids_and_types_stay_out_of_the_headers() {
        let draft = super::Draft {
            from: super::Mailbox::parse("me@mine.test").unwrap(),
            to: vec![super::Mailbox::parse("you@yours.test").unwrap()],
            cc: vec![],
            subject: "s".into(),
            text: Some("t".into()),
            html: None,
            attachments: vec![super::Attachment {
                filename: "a.bin".into(),
                content_type: "text/plain\r\nFrom: evil@x.test".into(),
                data: b"x".to_vec(),
                content_id: None,
            }],
            in_reply_to: Some("x>\r\nFrom: evil@x.test\r\nX: <y".into()),
            references: vec!["ok@id".into(), "bad id".into()],
            message_id: "m@mine.test".into(),
            date: 0,
        };
        let built = String::from_utf8(super::build(&draft)).unwrap();
        assert!(!built.contains("evil@x.test"), "{built}");
        assert!(
            built.contains("References: <ok@id>"),
            "forwards keep references: {built}"
        );
        assert!(!built.contains("In-Reply-To"), "{built}");
        assert!(built.contains("application/octet-stream"), "{built}");
    }

    use super::*;
    use mail_parser::{MessageParser, MimeHeaders};

    fn draft() -> Draft {
        Draft {
            from: Mailbox::parse("Zoë Writer <zoe@example.com>").unwrap(),
            to: vec![Mailbox::parse("李雷 <li@example.cn>").unwrap()],
            cc: vec![Mailbox::parse("cc@example.org").unwrap()],
            subject: "电子邮件 测试".into(),
            text: Some("你好，世界！\r\nÇa va ?\r\n".into()),
            html: Some("<p>你好，<b>世界</b>！<img src=\"cid:logo@x\"></p>".into()),
            attachments: vec![
                Attachment {
                    filename: "résumé 2026.pdf".into(),
                    content_type: "application/pdf".into(),
                    data: (0..=255u8).cycle().take(5000).collect(),
                    content_id: None,
                },
                Attachment {
                    filename: "logo.png".into(),
                    content_type: "image/png".into(),
                    data: b"\x89PNG\r\n\x1a\nrest".to_vec(),
                    content_id: Some("logo@x".into()),
                },
            ],
            in_reply_to: Some("parent@example.cn".into()),
            references: vec!["root@example.cn".into()],
            message_id: "new@example.com".into(),
            date: 1_800_000_000,
        }
    }

    #[test]
    fn a_built_message_parses_back_part_for_part() {
        let bytes = build(&draft());
        assert!(bytes.is_ascii(), "8-bit text is encoded for transport");
        let parsed = MessageParser::default().parse(&bytes).unwrap();
        assert_eq!(parsed.subject(), Some("电子邮件 测试"));
        assert_eq!(
            parsed.from().unwrap().first().unwrap().name(),
            Some("Zoë Writer")
        );
        assert_eq!(parsed.to().unwrap().first().unwrap().name(), Some("李雷"));
        assert_eq!(parsed.message_id(), Some("new@example.com"));
        assert_eq!(parsed.in_reply_to().as_text(), Some("parent@example.cn"));
        assert_eq!(
            parsed.body_text(0).unwrap().replace("\r\n", "\n"),
            "你好，世界！\nÇa va ?\n"
        );
        assert!(parsed.body_html(0).unwrap().contains("<b>世界</b>"));
        let files: Vec<_> = parsed.attachments().collect();
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].attachment_name(), Some("résumé 2026.pdf"));
        assert_eq!(files[0].contents(), draft().attachments[0].data.as_slice());
        assert_eq!(files[1].content_id(), Some("logo@x"));
        assert_eq!(files[1].contents(), b"\x89PNG\r\n\x1a\nrest");
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.contains("References: <root@example.cn> <parent@example.cn>"),
            "{text}"
        );
        assert!(!text.contains("Bcc"));
    }

    #[test]
    fn addresses_and_types() {
        assert_eq!(
            Mailbox::parse("\"Bob B\" <bob@example.com>").unwrap(),
            Mailbox {
                name: Some("Bob B".into()),
                address: "bob@example.com".into()
            }
        );
        assert_eq!(Mailbox::parse("bob@localhost").unwrap().name, None);
        assert!(Mailbox::parse("not an address").is_err());
        assert!(Mailbox::parse("a b@example.com").is_err());
        assert_eq!(guess_type("x.bin", b"\x89PNG\r\n\x1a\n..."), "image/png");
        assert_eq!(guess_type("notes.TXT", b"hello"), "text/plain");
        assert_eq!(guess_type("data", b"\x00\x01"), "application/octet-stream");
    }
}
