//! Issue 14: no MIME nesting overflows the stack. 10,000 and 100,000 nested multiparts,
//! nested `message/rfc822`, both mixed, digests and a base64-encoded nested message, through
//! every view pigeon computes from a message (summary, BODYSTRUCTURE, sections, search,
//! readable text, DSN), each on a thread with tokio's 2 MiB worker stack.
//!
//! The structure is kept down to `mime::MAX_DEPTH` (64) levels; a multipart or message at
//! that depth is one opaque `APPLICATION/OCTET-STREAM` leaf holding its raw bytes.

use message::mime::{self, MAX_DEPTH};
use message::{dsn, imap, search, summary, text};

const HEAD: &str = "From: Mallory <m@evil.test>\r\nTo: bob@b.test\r\nSubject: deep\r\n\
    Date: Fri, 27 Nov 2026 10:00:00 +0000\r\nMessage-ID: <deep@evil.test>\r\nMIME-Version: 1.0\r\n";

/// `n` multiparts, each the only part of its parent, around a text leaf. Boundaries have a
/// fixed width: none may begin another (RFC 2046 §5.1.1).
fn nested_multiparts(n: usize) -> Vec<u8> {
    let mut s = String::from(HEAD);
    for i in 0..n {
        s.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{i:06}\"\r\n\r\n--b{i:06}\r\n"
        ));
    }
    s.push_str("Content-Type: text/plain\r\n\r\nthe needle at the bottom\r\n");
    for i in (0..n).rev() {
        s.push_str(&format!("--b{i:06}--\r\n"));
    }
    s.into_bytes()
}

/// `n` nested message/rfc822 bodies around a text message.
fn nested_messages(n: usize) -> Vec<u8> {
    let mut s = String::from(HEAD);
    for _ in 0..n {
        s.push_str("Content-Type: message/rfc822\r\n\r\n");
    }
    s.push_str("Subject: inner\r\n\r\nthe needle at the bottom\r\n");
    s.into_bytes()
}

/// Alternating: a multipart whose first part is a message whose body is the next multipart.
fn nested_mixed(n: usize) -> Vec<u8> {
    let mut s = String::from(HEAD);
    for i in 0..n {
        s.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"m{i:06}\"\r\n\r\n--m{i:06}\r\n\
             Content-Type: message/rfc822\r\n\r\nSubject: level {i}\r\n"
        ));
    }
    s.push_str("\r\nthe needle at the bottom\r\n");
    for i in (0..n).rev() {
        s.push_str(&format!(
            "--m{i:06}\r\nContent-Type: text/plain\r\n\r\nafter {i}\r\n--m{i:06}--\r\n"
        ));
    }
    s.into_bytes()
}

/// Digests: a part without Content-Type in a multipart/digest is a message (RFC 2046
/// §5.1.5), whose header opens the next digest.
fn nested_digests(n: usize) -> Vec<u8> {
    let mut s = String::from(HEAD);
    for i in 0..n {
        s.push_str(&format!(
            "Content-Type: multipart/digest; boundary=\"d{i:06}\"\r\n\r\n--d{i:06}\r\n\r\n"
        ));
    }
    s.push_str("Subject: inner\r\n\r\nthe needle at the bottom\r\n");
    for i in (0..n).rev() {
        s.push_str(&format!("--d{i:06}--\r\n"));
    }
    s.into_bytes()
}

fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for (i, c) in bytes.chunks(3).enumerate() {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for j in 0..4 {
            out.push(if j <= c.len() {
                T[(n >> (18 - 6 * j) & 63) as usize] as char
            } else {
                '='
            });
        }
        if i % 19 == 18 {
            out.push_str("\r\n");
        }
    }
    out
}

/// A base64 message/rfc822 (forbidden by RFC 2046 §5.2.1, decoded anyway) wrapping `n`
/// plain nested messages: mail-parser's own `into_owned` recursed on these.
fn encoded_nested(n: usize) -> Vec<u8> {
    format!(
        "{HEAD}Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n",
        base64(&nested_messages(n))
    )
    .into_bytes()
}

/// Runs `f` on a thread with the stack of a tokio worker (2 MiB): a recursion per level
/// would overflow it long before 10,000 levels.
fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .expect("no panic");
}

/// The deepest parenthesis nesting of an IMAP structure (outside quoted strings).
fn paren_depth(s: &[u8]) -> usize {
    let (mut depth, mut max, mut quoted, mut escaped) = (0usize, 0, false, false);
    for &b in s {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'(' if !quoted => {
                depth += 1;
                max = max.max(depth);
            }
            b')' if !quoted => depth = depth.checked_sub(1).expect("balanced"),
            _ => {}
        }
    }
    assert_eq!(depth, 0, "balanced");
    max
}

/// The deepest part of a parsed message (iteratively).
fn parsed_depth(raw: &[u8]) -> usize {
    use mail_parser::PartType;
    let message = mime::parse(raw).unwrap();
    let mut max = 0;
    let mut stack = vec![(&message, 0usize, 0usize)];
    while let Some((m, part, depth)) = stack.pop() {
        max = max.max(depth);
        match &m.parts[part].body {
            PartType::Multipart(children) => {
                stack.extend(children.iter().map(|&c| (m, c as usize, depth + 1)))
            }
            PartType::Message(nested) => stack.push((nested, 0, depth + 1)),
            _ => {}
        }
    }
    max
}

/// Every view of `raw`, checked where the expected answer is known.
fn all_views(raw: Vec<u8>) {
    on_small_stack(move || {
        let s = summary::summarize(&raw);
        assert!(s.envelope.starts_with(b"(\"Fri, 27 Nov 2026"), "envelope");
        assert!(s.header.starts_with(b"From: Mallory"));
        for structure in [&s.body_structure, &s.body] {
            // One parenthesis per level, plus at the bottom an ENVELOPE's address list or a
            // leaf's disposition: well inside what IMAP clients (and imap-proto's tokenizer,
            // 100 levels) read.
            let depth = paren_depth(structure);
            assert!(depth <= MAX_DEPTH + 4, "{depth}");
        }
        assert_eq!(s.body_structure, imap::body_structure(&raw, true, false));
        assert_eq!(s.body, imap::body_structure(&raw, false, false));
        let (headers, _body) = summary::texts(&raw);
        assert!(headers.contains("deep"), "{headers}");

        assert!(parsed_depth(&raw) <= MAX_DEPTH);

        // Sections: the whole message, the first part, a path to the depth limit, and paths
        // past it (absent: NO/NIL, never a crash).
        let whole = imap::part_range(&raw, &[]).unwrap();
        assert_eq!(whole.body.end, raw.len());
        assert!(imap::part_range(&raw, &[1]).is_some());
        assert!(imap::part_range(&raw, &[0]).is_none());
        assert!(imap::part_range(&raw, &[u32::MAX]).is_none());
        let deep_path = vec![1; 10_000];
        assert!(imap::part_range(&raw, &deep_path).is_none());
        for len in [
            2,
            MAX_DEPTH / 2,
            MAX_DEPTH + 1,
            MAX_DEPTH + 2,
            3 * MAX_DEPTH,
        ] {
            // Whatever exists, its range lies in the message.
            if let Some(range) = imap::part_range(&raw, &deep_path[..len]) {
                assert!(range.body.end <= raw.len() && range.header.end <= range.body.start);
            }
        }

        let searchable = search::Searchable::new(&raw);
        assert!(searchable.header("subject", "deep"));
        assert!(searchable.text("deep"));
        let _ = searchable.body("needle");
        let _ = text::readable_text(&raw);

        // A bounce of it carries it whole, and the bounce is as safe to read.
        let report = dsn::build(&dsn::Report {
            reporting_mta: "mx.b.test",
            envid: None,
            arrival_date: 1_795_813_800,
            sender: "m@evil.test",
            recipients: vec![dsn::RecipientReport {
                address: "bob@b.test".into(),
                original: None,
                action: dsn::Action::Failed,
                status: "5.1.1".into(),
                remote_mta: None,
                diagnostic: Some("smtp; 550 5.1.1 no such user".into()),
                last_attempt: None,
                will_retry_until: None,
            }],
            original: &raw,
            headers_only: false,
            date: 1_795_813_886,
            message_id: "bounce@b.test".into(),
        });
        assert!(report.windows(raw.len()).any(|w| w == raw.as_slice()));
        let bounced = summary::summarize(&report);
        assert!(paren_depth(&bounced.body_structure) <= MAX_DEPTH + 4);
        let _ = summary::texts(&report);
        assert!(imap::part_range(&report, &[3]).is_some());
    });
}

#[test]
fn ten_thousand_nested_multiparts() {
    all_views(nested_multiparts(10_000));
}

#[test]
fn hundred_thousand_nested_multiparts() {
    all_views(nested_multiparts(100_000));
}

#[test]
fn ten_thousand_nested_messages() {
    all_views(nested_messages(10_000));
}

#[test]
fn hundred_thousand_nested_messages() {
    all_views(nested_messages(100_000));
}

#[test]
fn ten_thousand_nested_multiparts_and_messages() {
    all_views(nested_mixed(10_000));
}

#[test]
fn hundred_thousand_nested_multiparts_and_messages() {
    all_views(nested_mixed(100_000));
}

#[test]
fn ten_thousand_nested_digests() {
    all_views(nested_digests(10_000));
}

#[test]
fn base64_message_around_ten_thousand_nested_messages() {
    all_views(encoded_nested(10_000));
}

#[test]
fn base64_message_around_hundred_thousand_nested_messages() {
    all_views(encoded_nested(100_000));
}

/// Down to the limit the structure is exact; the part at the limit is one opaque leaf that
/// holds the rest of the nesting byte for byte.
#[test]
fn structure_down_to_the_limit_then_one_opaque_leaf() {
    on_small_stack(|| {
        let raw = nested_multiparts(10_000);
        let bs = String::from_utf8(imap::body_structure(&raw, true, false)).unwrap();
        assert_eq!(bs.matches("\"MIXED\"").count(), MAX_DEPTH, "{bs}");
        assert_eq!(
            bs.matches("(\"APPLICATION\" \"OCTET-STREAM\" (\"BOUNDARY\" \"b000064\")")
                .count(),
            1,
            "{bs}"
        );
        // BODY[1.1. ... .1] with MAX_DEPTH numbers is that leaf: everything below it, raw.
        let leaf = imap::part_range(&raw, &vec![1; MAX_DEPTH]).unwrap();
        let bytes = &raw[leaf.body.clone()];
        assert!(
            bytes.starts_with(b"--b000064\r\nContent-Type: multipart/mixed; boundary=\"b000065\"")
        );
        assert!(
            bytes.ends_with(b"--b000064--"),
            "ends before its parent's boundary"
        );
        assert!(bytes.windows(24).any(|w| w == b"the needle at the bottom"));
        assert_eq!(
            &raw[leaf.header],
            b"Content-Type: multipart/mixed; boundary=\"b000064\"\r\n\r\n"
        );
        // One more number goes inside the opaque leaf: no such part.
        assert!(imap::part_range(&raw, &vec![1; MAX_DEPTH + 1]).is_none());

        // Nested messages: each level's ENVELOPE is there down to the limit.
        let raw = nested_mixed(10_000);
        let bs = String::from_utf8(imap::body_structure(&raw, true, false)).unwrap();
        assert!(bs.contains("\"level 30\""), "{bs}");
        assert!(!bs.contains("\"level 40\""), "{bs}");
        assert!(bs.contains("\"APPLICATION\" \"OCTET-STREAM\""), "{bs}");
    });
}

/// Below the limit nothing changes: 60 nested levels are all there, the text at the bottom
/// is found, and the section at the bottom is the text.
#[test]
fn sixty_levels_are_parsed_completely() {
    on_small_stack(|| {
        let raw = nested_multiparts(60);
        assert_eq!(parsed_depth(&raw), 60);
        let bs = String::from_utf8(imap::body_structure(&raw, true, false)).unwrap();
        assert_eq!(bs.matches("\"MIXED\"").count(), 60);
        assert!(!bs.contains("OCTET-STREAM"), "{bs}");
        assert!(search::Searchable::new(&raw).body("needle at the bottom"));
        assert_eq!(
            text::readable_text(&raw).unwrap().0,
            "the needle at the bottom"
        );
        let leaf = imap::part_range(&raw, &vec![1; 60]).unwrap();
        assert_eq!(&raw[leaf.body], b"the needle at the bottom");

        let raw = nested_messages(60);
        assert_eq!(parsed_depth(&raw), 60);
        let (_, body) = summary::texts(&raw);
        assert!(
            body.is_empty(),
            "nested messages' text is not the outer message's"
        );
        let leaf = imap::part_range(&raw, &vec![1; 61]).unwrap();
        assert_eq!(&raw[leaf.body], b"the needle at the bottom\r\n");
    });
}
