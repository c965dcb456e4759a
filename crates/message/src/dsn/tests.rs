use super::*;
use mail_parser::{HeaderName, MessageParser, MimeHeaders};

const ORIGINAL: &[u8] = b"From: alice@a.test\r\nTo: bob@b.test\r\nSubject: hello\r\n\
Message-ID: <orig@a.test>\r\n\r\nHi Bob,\r\n\r\nthe body line.\r\n";

fn failed(address: &str) -> RecipientReport {
    RecipientReport {
        address: address.to_owned(),
        original: Some(format!("rfc822;{address}")),
        action: Action::Failed,
        status: "5.1.1".to_owned(),
        remote_mta: Some("mx.b.test".to_owned()),
        diagnostic: Some(format!("550 5.1.1 <{address}>: no such user")),
        last_attempt: Some(1_795_813_800),
        will_retry_until: None,
    }
}

fn report(recipients: Vec<RecipientReport>, original: &[u8], headers_only: bool) -> Report<'_> {
    Report {
        reporting_mta: "mx.a.test",
        envid: Some("env-42"),
        arrival_date: 1_795_813_700,
        sender: "alice@a.test",
        recipients,
        original,
        headers_only,
        date: 1_795_813_886,
        message_id: "dsn.1234@mx.a.test".to_owned(),
    }
}

/// The three parts of a built report: (content type, subtype, body bytes as sent).
fn parts(raw: &[u8]) -> Vec<(String, String, Vec<u8>)> {
    let message = MessageParser::default().parse(raw).expect("parses");
    let root = message.root_part();
    let ctype = root.content_type().expect("content type");
    assert_eq!(ctype.ctype(), "multipart");
    assert_eq!(ctype.subtype(), Some("report"));
    assert_eq!(ctype.attribute("report-type"), Some("delivery-status"));
    let ids = root.sub_parts().expect("multipart");
    assert_eq!(ids.len(), 3);
    ids.iter()
        .map(|&id| {
            let part = &message.parts[id as usize];
            let ctype = part.content_type().expect("part content type");
            let raw_body =
                raw[part.raw_body_offset() as usize..part.raw_end_offset() as usize].to_vec();
            (
                ctype.ctype().to_owned(),
                ctype.subtype().unwrap_or_default().to_owned(),
                if part.is_text() {
                    part.contents().to_vec()
                } else {
                    raw_body
                },
            )
        })
        .collect()
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).expect("utf-8")
}

#[test]
fn structure_and_fields() {
    let raw = build(&report(vec![failed("bob@b.test")], ORIGINAL, false));
    let message = MessageParser::default().parse(&raw).unwrap();
    assert_eq!(
        message.subject(),
        Some("Undelivered Mail Returned to Sender")
    );
    assert_eq!(message.message_id(), Some("dsn.1234@mx.a.test"));
    assert_eq!(
        message.header_raw("Auto-Submitted").map(str::trim),
        Some("auto-replied")
    );
    let from = message.from().and_then(|a| a.first()).unwrap();
    assert_eq!(from.address.as_deref(), Some("MAILER-DAEMON@mx.a.test"));
    let to = message.to().and_then(|a| a.first()).unwrap();
    assert_eq!(to.address.as_deref(), Some("alice@a.test"));
    assert!(raw.ends_with(b"--\r\n"));

    let parts = parts(&raw);
    assert_eq!(
        (parts[0].0.as_str(), parts[0].1.as_str()),
        ("text", "plain")
    );
    let human = text(&parts[0].2);
    assert!(human.contains("<bob@b.test>"), "{human}");
    assert!(
        human.contains("    mx.b.test said:\r\n    550 5.1.1 <bob@b.test>: no such user\r\n"),
        "{human}"
    );

    assert_eq!(
        (parts[1].0.as_str(), parts[1].1.as_str()),
        ("message", "delivery-status")
    );
    assert_eq!(
        text(&parts[1].2),
        "Reporting-MTA: dns; mx.a.test\r\n\
         Original-Envelope-Id: env-42\r\n\
         Arrival-Date: Fri, 27 Nov 2026 21:08:20 +0000\r\n\
         \r\n\
         Original-Recipient: rfc822; bob@b.test\r\n\
         Final-Recipient: rfc822; bob@b.test\r\n\
         Action: failed\r\n\
         Status: 5.1.1\r\n\
         Remote-MTA: dns; mx.b.test\r\n\
         Diagnostic-Code: smtp; 550 5.1.1 <bob@b.test>: no such user\r\n\
         Last-Attempt-Date: Fri, 27 Nov 2026 21:10:00 +0000\r\n"
    );

    assert_eq!(
        (parts[2].0.as_str(), parts[2].1.as_str()),
        ("message", "rfc822")
    );
    // The whole original, byte for byte.
    assert_eq!(parts[2].2, ORIGINAL);
    assert!(!contains(&raw, b"Content-Transfer-Encoding"));
}

#[test]
fn several_recipients_are_separate_groups() {
    let mut delayed = failed("carol@c.test");
    delayed.action = Action::Delayed;
    delayed.status = "4.4.1".to_owned();
    delayed.original = None;
    delayed.diagnostic = None;
    delayed.will_retry_until = Some(1_796_000_000);
    let raw = build(&report(
        vec![failed("bob@b.test"), delayed],
        ORIGINAL,
        false,
    ));
    let parts = parts(&raw);
    let status = text(&parts[1].2);
    let groups: Vec<&str> = status.split("\r\n\r\n").collect();
    assert_eq!(groups.len(), 3, "{status}");
    assert!(groups[1].contains("Final-Recipient: rfc822; bob@b.test"));
    assert!(!groups[1].contains("Will-Retry-Until"));
    assert!(groups[2].starts_with("Final-Recipient: rfc822; carol@c.test\r\n"));
    assert!(groups[2].contains("Action: delayed\r\nStatus: 4.4.1\r\n"));
    let until = format_rfc5322(1_796_000_000);
    assert!(groups[2].contains(&format!("Will-Retry-Until: {until}\r\n")));
    let human = text(&parts[0].2);
    assert!(human.contains("has not been delivered yet"), "{human}");
    assert!(
        human.contains(&format!("Will retry until {until}.")),
        "{human}"
    );
}

#[test]
fn subject_follows_the_worst_action() {
    let mut delayed = failed("bob@b.test");
    delayed.action = Action::Delayed;
    let mut delivered = failed("bob@b.test");
    delivered.action = Action::Delivered;
    let mut relayed = failed("bob@b.test");
    relayed.action = Action::Relayed;
    assert_eq!(
        subject(&[delivered.clone(), failed("x@b.test")]),
        "Undelivered Mail Returned to Sender"
    );
    assert_eq!(
        subject(&[delivered.clone(), delayed]),
        "Delayed Mail (still being retried)"
    );
    assert_eq!(
        subject(&[delivered, relayed]),
        "Successful Mail Delivery Report"
    );
}

#[test]
fn invalid_status_becomes_the_generic_code() {
    assert!(valid_status("5.1.1") && valid_status("4.4.7") && valid_status("2.0.0"));
    assert!(valid_status("5.123.456"));
    for bad in [
        "", "5", "5.1", "3.1.1", "5.1.1.1", "5.1234.1", "5.a.1", " 5.1.1",
    ] {
        assert!(!valid_status(bad), "{bad:?}");
    }
    let mut recipient = failed("bob@b.test");
    recipient.status = "5.1.1\r\nBcc: evil".to_owned();
    let raw = build(&report(vec![recipient], ORIGINAL, false));
    assert!(text(&parts(&raw)[1].2).contains("\r\nStatus: 5.0.0\r\n"));
}

#[test]
fn headers_only_returns_the_header_block() {
    let raw = build(&report(vec![failed("bob@b.test")], ORIGINAL, true));
    let parts = parts(&raw);
    assert_eq!(
        (parts[2].0.as_str(), parts[2].1.as_str()),
        ("text", "rfc822-headers")
    );
    let headers = text(&parts[2].2);
    assert!(headers.contains("Subject: hello\r\n"), "{headers}");
    assert!(headers.contains("Message-ID: <orig@a.test>"), "{headers}");
    assert!(!contains(&raw, b"the body line"));
    assert!(text(&parts[0].2).contains("The header of your message is attached."));
}

#[test]
fn header_block_edges() {
    assert_eq!(
        header_block(b"A: 1\r\nB: 2\r\n\r\nbody\r\n"),
        b"A: 1\r\nB: 2\r\n"
    );
    assert_eq!(header_block(b"A: 1\nB: 2\n\nbody\n"), b"A: 1\nB: 2\n");
    assert_eq!(header_block(b"A: 1\r\n"), b"A: 1\r\n");
    assert_eq!(header_block(b"\r\nbody"), b"");
    assert_eq!(header_block(b""), b"");
    assert_eq!(&*crlf(b"a\nb\r\nc\rd"), b"a\r\nb\r\nc\r\nd");
    assert!(matches!(crlf(ORIGINAL), Cow::Borrowed(_)));
}

#[test]
fn hostile_reply_injects_no_header() {
    let mut recipient = failed("bob@b.test");
    recipient.diagnostic = Some("550 no\r\nBcc: evil@x.test\r\n\r\nbody".to_owned());
    recipient.remote_mta = Some("mx\r\nX-Evil: 1".to_owned());
    let mut report = report(vec![recipient], ORIGINAL, false);
    report.sender = "alice@a.test>\r\nBcc: evil@x.test";
    report.envid = Some("e\nReporting-MTA: dns; evil");
    let raw = build(&report);
    let message = MessageParser::default().parse(&raw).unwrap();
    assert!(message.header(HeaderName::Bcc).is_none());
    for needle in [&b"\nBcc:"[..], b"\nX-Evil", b"\nReporting-MTA: dns; evil"] {
        assert!(!contains(&raw, needle), "{}", String::from_utf8_lossy(&raw));
    }
    let status = text(&parts(&raw)[1].2).to_owned();
    assert!(status.contains("Diagnostic-Code: smtp; 550 no Bcc: evil@x.test body\r\n"));
    assert!(status.contains("Remote-MTA: dns; mx X-Evil: 1\r\n"));
}

#[test]
fn long_diagnostic_is_folded_and_cut() {
    let mut recipient = failed("bob@b.test");
    let words = "word ".repeat(1000);
    recipient.diagnostic = Some(format!("550 {words}{}", "x".repeat(5000)));
    let mut unbroken = failed("carol@c.test");
    unbroken.diagnostic = Some("y".repeat(5000));
    let raw = build(&report(vec![recipient, unbroken], ORIGINAL, false));
    for line in raw.split(|&b| b == b'\n') {
        assert!(line.len() <= 998, "line of {} bytes", line.len());
    }
    let status = text(&parts(&raw)[1].2).to_owned();
    // Folded lines unfold to the cut value.
    let unfolded = status.replace("\r\n ", " ");
    let diagnostic = unfolded
        .lines()
        .find(|l| l.starts_with("Diagnostic-Code: smtp; 550 word word"))
        .expect("diagnostic");
    assert!(diagnostic.ends_with("..."));
    assert!(diagnostic.len() <= "Diagnostic-Code: ".len() + MAX_VALUE);
    assert!(unfolded.contains("\r\nDiagnostic-Code: smtp; yyy"));
}

#[test]
fn boundary_avoids_the_original() {
    let natural = natural_boundary("dsn.1234@mx.a.test");
    assert_eq!(natural, "=_dsn.1234.mx.a.test");
    let mut original = ORIGINAL.to_vec();
    original.extend_from_slice(format!("--{natural}\r\n--{natural}--\r\n").as_bytes());
    let raw = build(&report(vec![failed("bob@b.test")], &original, false));
    let message = MessageParser::default().parse(&raw).unwrap();
    let boundary = message
        .root_part()
        .content_type()
        .and_then(|c| c.attribute("boundary"))
        .unwrap()
        .to_owned();
    assert_ne!(boundary, natural);
    assert!(boundary.starts_with(&natural));
    assert!(!contains(&original, boundary.as_bytes()));
    assert_eq!(parts(&raw)[2].2, original);

    // The boundary also stays out of text a remote server chose.
    let mut recipient = failed("bob@b.test");
    recipient.diagnostic = Some(format!("550 --{natural}"));
    let raw = build(&report(vec![recipient], ORIGINAL, false));
    assert!(!contains(
        &raw,
        format!("boundary=\"{natural}\"").as_bytes()
    ));
    assert_eq!(parts(&raw).len(), 3);
}

#[test]
fn international_recipient_uses_the_utf8_type() {
    let mut recipient = failed("jörg@b.test");
    recipient.original = Some("utf-8;j\\x{F6}rg+tag@b.test".to_owned());
    let mut bare = failed("zoë@c.test");
    bare.original = Some("zoë+x@c.test".to_owned());
    let raw = build(&report(vec![recipient, bare], ORIGINAL, false));
    let parts = parts(&raw);
    let status = text(&parts[1].2);
    assert!(status.is_ascii());
    assert!(
        status.contains("Final-Recipient: utf-8; j\\x{F6}rg@b.test\r\n"),
        "{status}"
    );
    assert!(
        status.contains("Original-Recipient: utf-8; j\\x{F6}rg+tag@b.test\r\n"),
        "{status}"
    );
    assert!(
        status.contains("Original-Recipient: utf-8; zo\\x{EB}\\x{2B}x@c.test\r\n"),
        "{status}"
    );
    assert!(
        status.contains("Final-Recipient: utf-8; zo\\x{EB}@c.test\r\n"),
        "{status}"
    );
    assert!(
        status.contains("Diagnostic-Code: smtp; 550 5.1.1 <j?rg@b.test>"),
        "{status}"
    );
    // The text part says it in UTF-8, quoted-printable on the wire.
    assert!(text(&parts[0].2).contains("<jörg@b.test>"));
    assert!(contains(
        &raw,
        b"Content-Transfer-Encoding: quoted-printable"
    ));
    assert!(raw.is_ascii());
}

#[test]
fn eight_bit_original_is_marked() {
    let original = "Subject: caf\u{e9}\r\n\r\nna\u{ef}ve\r\n".as_bytes();
    let raw = build(&report(vec![failed("bob@b.test")], original, false));
    let header_end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    assert!(contains(
        &raw[..header_end],
        b"Content-Transfer-Encoding: 8bit"
    ));
    assert!(contains(
        &raw,
        b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    ));
    assert_eq!(parts(&raw)[2].2, original);
}

#[test]
fn quoted_printable_lines() {
    assert_eq!(quoted_printable("a=b \r\nc\r\n"), "a=3Db=20\r\nc\r\n");
    let long = "\u{e9}".repeat(40);
    let encoded = quoted_printable(&format!("{long}\r\n"));
    assert!(encoded.lines().all(|l| l.len() <= 76), "{encoded}");
    assert_eq!(
        encoded.replace("=\r\n", ""),
        format!("{}\r\n", "=C3=A9".repeat(40))
    );
}

#[test]
fn folding_keeps_the_value() {
    let value = (0..40)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut out = String::new();
    field(&mut out, "Diagnostic-Code", &value);
    assert!(out.lines().all(|l| l.len() <= WIDTH), "{out}");
    assert!(out.lines().skip(1).all(|l| l.starts_with(' ')));
    assert_eq!(
        out.replace("\r\n ", " "),
        format!("Diagnostic-Code: {value}\r\n")
    );
}
