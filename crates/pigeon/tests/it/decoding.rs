//! Issue 16: malformed quoted-printable or base64 anywhere in a part made the whole part come
//! back still encoded, with OK: users saw `h=C3=B6h=C3=B6` instead of `höhö` in IMAP BINARY,
//! `pigeon read show` and the webmail. Now every view decodes leniently (`message::decode`,
//! RFC 2045 §6.7/§6.8), and IMAP BINARY answers `NO [UNKNOWN-CTE]` only for a transfer
//! encoding the server does not know (RFC 3516 §4.3), never for a malformed known one.

use std::time::Duration;

use client::imap::ImapClient;
use test_support::TestServer;

use super::{deliver, exe};

const BOB: &str = "bob@localhost";
const PW: &str = "ua secret";

/// Bad quoted-printable (`==` made mail-parser give up on the part), base64 with a stray
/// character, and an x-uuencode part.
const MAIL: &[u8] = b"From: Hans <hans@example.org>\r\nTo: bob@localhost\r\n\
Subject: lenient\r\nDate: Thu, 03 Dec 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
h=C3=B6h=C3=B6\r\n1+1==2\r\n--b\r\n\
Content-Type: application/pdf; name=\"r.pdf\"\r\nContent-Disposition: attachment; filename=\"r.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nJVBERi0x!LjQK\r\n--b\r\n\
Content-Type: application/octet-stream; name=\"x.uue\"\r\n\
Content-Disposition: attachment; filename=\"x.uue\"\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n\
begin 644 x\r\n#86)C\r\n`\r\nend\r\n--b--\r\n";

const TEXT: &[u8] = b"h\xc3\xb6h\xc3\xb6\r\n1+1==2";
const PDF: &[u8] = b"%PDF-1.4\n";

/// The bytes of the (only) literal in a FETCH response.
fn literal(untagged: &[u8]) -> Vec<u8> {
    let open = untagged.iter().position(|&b| b == b'{').expect("a literal");
    let close = open + untagged[open..].iter().position(|&b| b == b'}').unwrap();
    let len: usize = std::str::from_utf8(&untagged[open + 1..close])
        .unwrap()
        .parse()
        .unwrap();
    untagged[close + 3..close + 3 + len].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_parts_are_decoded_in_imap_binary_and_pigeon_read() {
    let server = TestServer::with_config(
        exe(),
        "[auth]\nallow_plaintext_on_loopback = true\n",
        &[BOB],
        PW,
    );
    deliver(&server, "hans@example.org", BOB, MAIL).await;
    let uid = server.uids(BOB)[0];

    let mut imap = ImapClient::connect(server.addr("imap"), Duration::from_secs(20))
        .await
        .unwrap();
    imap.login(BOB, PW).await.unwrap();
    imap.command("EXAMINE INBOX").await.unwrap();
    let fetch = |item: &str| format!("UID FETCH {uid} ({item})");
    // RFC 3516 §4.2: BINARY is the part with its transfer encoding removed.
    let text = imap.command(&fetch("BINARY.PEEK[1]")).await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&literal(&text.untagged)),
        String::from_utf8_lossy(TEXT),
        "bad quoted-printable, decoded"
    );
    let size = imap.command(&fetch("BINARY.SIZE[1]")).await.unwrap();
    let size = String::from_utf8_lossy(&size.untagged).into_owned();
    assert!(
        size.contains(&format!("BINARY.SIZE[1] {}", TEXT.len())),
        "{size}"
    );
    let pdf = imap.command(&fetch("BINARY.PEEK[2]")).await.unwrap();
    assert_eq!(
        literal(&pdf.untagged),
        PDF,
        "base64 with a stray '!', decoded"
    );
    // RFC 3516 §4.3: an encoding the server cannot decode fails the request.
    for item in ["BINARY.PEEK[3]", "BINARY.SIZE[3]"] {
        match imap.command(&fetch(item)).await {
            Err(client::imap::Error::Rejected(status)) => {
                assert!(status.starts_with("NO [UNKNOWN-CTE]"), "{item}: {status}")
            }
            other => panic!("{item}: {other:?}"),
        }
    }
    // BODY[3] still has the part as stored.
    let body = imap.command(&fetch("BODY.PEEK[3]")).await.unwrap();
    assert!(literal(&body.untagged).starts_with(b"begin 644 x\r\n"));
    let _ = imap.command("LOGOUT").await;

    // `pigeon read show` and `save`: the text and the attachment decoded.
    let home = crate::ua::imap_reader(&server);
    let read = |args: &[&str]| crate::ua::ok(crate::ua::ua(home.path(), args, PW));
    let shown: serde_json::Value =
        serde_json::from_str(&read(&["read", "--json", "show", &uid.to_string()])).unwrap();
    assert_eq!(
        shown["text"]
            .as_str()
            .unwrap()
            .replace("\r\n", "\n")
            .trim_end(),
        "höhö\n1+1==2",
        "{shown}"
    );
    let saved = tempfile::tempdir().unwrap();
    read(&[
        "read",
        "save",
        &uid.to_string(),
        "--dir",
        saved.path().to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(saved.path().join("r.pdf")).unwrap(), PDF);
}
