//! Issue 14 (hardening) regression tests: hardening_smtp.
//!
//! - Outbound SMTP smuggling (finding 4): 13 sequences that some receivers take for the end of
//!   data, submitted and relayed to a peer without CHUNKING, arrive as one message with CRLF
//!   line ends only, equal to the submitted content with its line ends made canonical
//!   (RFC 5321 §2.3.8, §4.5.2).
//! - The submission sender policy (finding 8): every trick refused, one by one.
//! - A bare CR or a control character in the EHLO argument is 501 (RFC 5321 §4.1.1.1, §2.3.8);
//!   a 10 MB header line is refused (RFC 5322 §2.1.1) and the server stays fine.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use client::smtp::{AnyStream, SmtpClient};
use smtp_proto::client::ServerReply;
use test_support::{LOOPBACK_LISTENERS, TestServer};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader as AsyncBufReader};

use crate::exe;

const PW: &str = "correct horse";
const ALICE: &str = "alice@a.test";
const BOB: &str = "bob@localhost";
const CAROL: &str = "carol@localhost";

/// The sequences of the SMTP smuggling literature (SEC Consult, CVE-2023-51764/5/6): each is an
/// "end of data" to some receiver. One starting with a dot goes at the start of the body.
const SEQUENCES: [(&str, &[u8]); 13] = [
    ("LF.LF", b"\n.\n"),
    ("LF.CRLF", b"\n.\r\n"),
    ("CRLF.LF", b"\r\n.\n"),
    ("CRLF.CR", b"\r\n.\r"),
    ("CR.CR", b"\r.\r"),
    ("CR.CRLF", b"\r.\r\n"),
    ("LF.CR", b"\n.\r"),
    ("CRLF.LF CRLF", b"\r\n.\n\r\n"),
    (".LF at the start of the body", b".\n"),
    ("bare CR", b"\r"),
    ("bare LF", b"\n"),
    ("CR CRLF.CR CRLF", b"\r\r\n.\r\r\n"),
    ("LF LF.LF LF", b"\n\n.\n\n"),
];

/// What the smuggled second message would be.
const SMUGGLED: &[u8] = b"MAIL FROM:<ceo@a.test>\r\nRCPT TO:<victim@c.test>\r\nDATA\r\n\
    From: ceo@a.test\r\nSubject: smuggled\r\n\r\nwire the money\r\n";

/// RFC 5321 §4.5.2 as a conforming client does it: a dot at the start of a CRLF line is doubled
/// (nothing else is touched: the bare CRs and LFs go to the server as they are).
fn rfc_stuff(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 8);
    for (i, &b) in content.iter().enumerate() {
        let line_start = i == 0 || (i >= 2 && &content[i - 2..i] == b"\r\n");
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
    }
    out
}

/// Undoes [`rfc_stuff`].
fn unstuff(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len());
    for (i, &b) in content.iter().enumerate() {
        let line_start = i == 0 || (i >= 2 && &content[i - 2..i] == b"\r\n");
        if !(line_start && b == b'.') {
            out.push(b);
        }
    }
    out
}

/// The content with every line end as CRLF, computed independently of the server's code the
/// way Python's smtplib does it: `\r\n`, `\n` and a `\r` not before `\n` are each one line end.
fn normalised(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 16);
    let mut i = 0;
    while i < content.len() {
        match (content[i], content.get(i + 1)) {
            (b'\r', Some(b'\n')) => {
                out.extend_from_slice(b"\r\n");
                i += 2;
            }
            (b'\r' | b'\n', _) => {
                out.extend_from_slice(b"\r\n");
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// No CR without LF after it, no LF without CR before it.
fn crlf_only(bytes: &[u8]) -> bool {
    bytes.iter().enumerate().all(|(i, &b)| match b {
        b'\r' => bytes.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && bytes[i - 1] == b'\r',
        _ => true,
    })
}

/// What a scripted peer saw: every command line, and the raw DATA bytes of each message up to
/// and including the `CRLF.CRLF` that ended it.
#[derive(Default)]
struct Seen {
    commands: Vec<String>,
    data: Vec<Vec<u8>>,
}

/// An SMTP peer without CHUNKING (and without STARTTLS): the queue must use DATA. It ends the
/// data only at `CRLF.CRLF`, as RFC 5321 says, and records the raw bytes.
async fn recording_peer() -> (u16, Arc<Mutex<Seen>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let shared = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = shared.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut reader = AsyncBufReader::new(read);
                if write.write_all(b"220 peer.c.test ESMTP\r\n").await.is_err() {
                    return;
                }
                let mut line = Vec::new();
                loop {
                    line.clear();
                    if reader.read_until(b'\n', &mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let text = String::from_utf8_lossy(&line).trim_end().to_string();
                    let verb = text.get(..4).unwrap_or("").to_ascii_uppercase();
                    seen.lock().unwrap().commands.push(text);
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" => b"250-peer.c.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
                        "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 2.0.0 ok\r\n",
                        "DATA" => {
                            if write.write_all(b"354 go ahead\r\n").await.is_err() {
                                return;
                            }
                            let mut data = Vec::new();
                            loop {
                                let mut piece = Vec::new();
                                if reader.read_until(b'\n', &mut piece).await.unwrap_or(0) == 0 {
                                    return;
                                }
                                data.extend_from_slice(&piece);
                                if data == b".\r\n" || data.ends_with(b"\r\n.\r\n") {
                                    break;
                                }
                            }
                            seen.lock().unwrap().data.push(data);
                            b"250 2.0.0 queued\r\n"
                        }
                        "QUIT" => {
                            let _ = write.write_all(b"221 bye\r\n").await;
                            return;
                        }
                        _ => b"502 5.5.2 no\r\n",
                    };
                    if write.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, seen)
}

/// `a.test` with a static route for `c.test` to the peer on `port`.
fn sender_with_route(port: u16) -> TestServer {
    let config = format!(
        "hostname = \"mx.a.test\"\ndomain = \"a.test\"\n\n{LOOPBACK_LISTENERS}\n\
         [auth]\nallow_plaintext_on_loopback = true\n\n[dns]\noffline = true\n\n\
         [queue]\nretry_schedule_secs = [1]\npoll_secs = 1\n\n\
         [queue.routes]\n\"c.test\" = \"127.0.0.1:{port}\"\n"
    );
    let mut server = TestServer::with_toml(exe(), &config);
    server.admin_ok(&["domain", "add", "a.test", "--no-dkim"]);
    server.admin_ok(&["user", "add", ALICE, "--password", PW]);
    server.start();
    server
}

async fn submission_client(server: &TestServer, user: &str) -> SmtpClient<AnyStream> {
    let mut smtp = SmtpClient::connect(server.addr("submission"), Duration::from_secs(30))
        .await
        .unwrap()
        .boxed();
    smtp.ehlo("laptop.test").await.unwrap();
    smtp.auth_plain(user, PW).await.unwrap();
    smtp
}

/// One transaction whose content goes on the wire exactly as `content`, stuffed as RFC 5321
/// says (the client's own `send` would make the line ends canonical first). Returns the reply
/// to the end of data.
async fn send_raw(
    smtp: &mut SmtpClient<AnyStream>,
    from: &str,
    to: &str,
    content: &[u8],
) -> ServerReply {
    let reply = smtp.command(&format!("MAIL FROM:<{from}>")).await.unwrap();
    assert_eq!(reply.code, 250, "{reply:?}");
    let reply = smtp.command(&format!("RCPT TO:<{to}>")).await.unwrap();
    assert_eq!(reply.code, 250, "{reply:?}");
    let reply = smtp.command("DATA").await.unwrap();
    assert_eq!(reply.code, 354, "{reply:?}");
    let mut wire = rfc_stuff(content);
    wire.extend_from_slice(b".\r\n");
    smtp.write(&wire).await.unwrap();
    smtp.read_reply().await.unwrap()
}

fn smuggling_message(n: usize, name: &str, sequence: &[u8]) -> Vec<u8> {
    let header = format!(
        "From: Alice <{ALICE}>\r\nTo: <carol@c.test>\r\nSubject: smuggling {n} ({name})\r\n\
         Message-ID: <smuggling-{n}@a.test>\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\n\r\n"
    );
    let before: &[u8] = if sequence.starts_with(b".") {
        b""
    } else {
        b"Hello Carol,"
    };
    [header.as_bytes(), before, sequence, SMUGGLED, b"Bye.\r\n"].concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_sequences_are_relayed_as_one_message_with_crlf_only() {
    let (port, seen) = recording_peer().await;
    let server = sender_with_route(port);
    let mut smtp = submission_client(&server, ALICE).await;
    let mut sent = Vec::new();
    for (n, (name, sequence)) in SEQUENCES.iter().enumerate() {
        let content = smuggling_message(n, name, sequence);
        let reply = send_raw(&mut smtp, ALICE, "carol@c.test", &content).await;
        assert_eq!(reply.code, 250, "{name}: {reply:?}");
        sent.push((*name, content));
    }
    smtp.quit().await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.lock().unwrap().data.len() < sent.len() {
        assert!(
            Instant::now() < deadline,
            "the peer got {} of {} messages\nlog: {}",
            seen.lock().unwrap().data.len(),
            sent.len(),
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Anything smuggled would arrive as a later transaction: give the queue a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen.data.len(), sent.len(), "one message per submission");
    let mails: Vec<&String> = seen
        .commands
        .iter()
        .filter(|c| c.to_ascii_uppercase().starts_with("MAIL"))
        .collect();
    assert_eq!(mails.len(), sent.len(), "{:?}", seen.commands);
    assert!(
        mails
            .iter()
            .all(|m| m.starts_with(&format!("MAIL FROM:<{ALICE}>"))),
        "{mails:?}"
    );
    assert!(
        !seen.commands.iter().any(|c| c.contains("victim@")),
        "a smuggled command reached the peer: {:?}",
        seen.commands
    );
    // The queue may relay them in any order: each is known by its subject.
    for (n, (name, content)) in sent.iter().enumerate() {
        let subject = format!("Subject: smuggling {n} (");
        let found: Vec<&Vec<u8>> = seen
            .data
            .iter()
            .filter(|raw| raw.windows(subject.len()).any(|w| w == subject.as_bytes()))
            .collect();
        assert_eq!(found.len(), 1, "{name}: relayed once");
        let raw = found[0];
        assert!(crlf_only(raw), "{name}: a bare CR or LF went out: {raw:?}");
        let body = raw.strip_suffix(b".\r\n").unwrap();
        assert!(
            !body[..body.len() - 2].windows(5).any(|w| w == b"\r\n.\r\n"),
            "{name}: a line with a single dot inside the data"
        );
        let relayed = unstuff(body);
        let expected = normalised(content);
        assert!(
            relayed.ends_with(&expected),
            "{name}: relayed {:?}\nexpected it to end with {:?}",
            String::from_utf8_lossy(&relayed),
            String::from_utf8_lossy(&expected)
        );
        // Only our trace headers come before it.
        let added = &relayed[..relayed.len() - expected.len()];
        assert!(
            added.starts_with(b"Return-Path:") || added.starts_with(b"Received:"),
            "{name}: {:?}",
            String::from_utf8_lossy(added)
        );
        assert!(!added.windows(4).any(|w| w == b"\r\n\r\n"), "{name}");
    }
}

/// A submission server with bob, carol and an alias of bob's.
fn policy_server() -> TestServer {
    let server = TestServer::with_config(
        exe(),
        "[auth]\nallow_plaintext_on_loopback = true\n",
        &[BOB, CAROL],
        PW,
    );
    server.admin_ok(&["alias", "add", "sales@localhost", BOB]);
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sender_trick_is_refused_at_submission() {
    let server = policy_server();
    let mut smtp = submission_client(&server, BOB).await;
    // (what, header lines, the reply code and enhanced status expected)
    let tricks: [(&str, &str, &str); 17] = [
        (
            "Sender of another user",
            "From: bob@localhost\r\nSender: carol@localhost",
            "553 5.7.1",
        ),
        (
            "Resent-From of another user",
            "From: bob@localhost\r\nResent-From: carol@localhost",
            "553 5.7.1",
        ),
        (
            "Resent-Sender of another user",
            "From: bob@localhost\r\nResent-Sender: carol@localhost",
            "553 5.7.1",
        ),
        (
            "From without an address: an encoded word",
            "From: =?utf-8?q?carol=40localhost?=",
            "554 5.6.0",
        ),
        (
            "From without an address: a name",
            "From: Carol Example",
            "554 5.6.0",
        ),
        (
            "an encoded display name that reads as another address",
            "From: =?utf-8?q?carol=40localhost?= <bob@localhost>",
            "553 5.7.1",
        ),
        (
            "a quoted display name that reads as another address",
            "From: \"carol@localhost\" <bob@localhost>",
            "553 5.7.1",
        ),
        (
            "another address in a comment",
            "From: bob@localhost (carol@localhost)",
            "553 5.7.1",
        ),
        ("no From at all", "Subject: who am I", "554 5.6.0"),
        (
            "NUL in From",
            "From: carol@localhost\0<bob@localhost>",
            "554 5.6.0",
        ),
        (
            "two From fields",
            "From: bob@localhost\r\nFrom: carol@localhost",
            "554 5.6.0",
        ),
        (
            "a second From in the obsolete spelling",
            "From: bob@localhost\r\nfrom : carol@localhost",
            "554 5.6.0",
        ),
        (
            "a second address in From",
            "From: bob@localhost, carol@localhost",
            "553 5.7.1",
        ),
        ("an empty group", "From: undisclosed:;", "554 5.6.0"),
        (
            "a bare LF hiding a From in another field",
            "From: bob@localhost\r\nSubject: hi\nFrom: carol@localhost",
            "554 5.6.0",
        ),
        (
            "a bare-LF header/body split",
            "From: bob@localhost\r\nSubject: hi\n\nFrom: carol@localhost",
            "554 5.6.0",
        ),
        (
            "a bare CR in the header",
            "From: bob@localhost\rFrom: carol@localhost",
            "554 5.6.0",
        ),
    ];
    for (what, header, expected) in tricks {
        let content = format!("{header}\r\nTo: <{CAROL}>\r\n\r\nPlease pay.\r\n");
        let reply = send_raw(&mut smtp, BOB, CAROL, content.as_bytes()).await;
        let got = format!("{} {}", reply.code, reply.lines.join(" "));
        assert!(got.starts_with(expected), "{what}: {got}");
    }
    // A header line over 998 octets (RFC 5322 §2.1.1) is refused at submission too.
    let long = format!("From: {BOB}\r\nSubject: {}\r\n\r\nx\r\n", "y".repeat(2000));
    let reply = send_raw(&mut smtp, BOB, CAROL, long.as_bytes()).await;
    assert_eq!((reply.code, reply.lines[0].get(..5)), (554, Some("5.6.0")));
    // What is allowed still goes: own addresses and an alias in every originator field.
    let ok = format!(
        "From: Bob <{BOB}>\r\nSender: {BOB}\r\nResent-From: sales@localhost\r\n\
         Resent-Sender: {BOB}\r\nTo: <{CAROL}>\r\nSubject: fine\r\n\r\nHello.\r\n"
    );
    let reply = send_raw(&mut smtp, BOB, CAROL, ok.as_bytes()).await;
    assert_eq!(reply.code, 250, "{reply:?}");
    smtp.quit().await.unwrap();
    assert_eq!(
        server.uids(CAROL).len(),
        1,
        "only the allowed message arrived"
    );
}

/// Reads one SMTP reply (all its lines) from a blocking stream.
fn read_reply(reader: &mut BufReader<TcpStream>) -> String {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "connection closed; got {all:?}");
        all.push_str(&line);
        if line.as_bytes().get(3) != Some(&b'-') {
            return all;
        }
    }
}

#[test]
fn a_bare_cr_or_a_control_character_in_ehlo_is_501() {
    let server = policy_server();
    for port in ["smtp", "submission"] {
        let stream = TcpStream::connect(server.addr(port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        assert!(read_reply(&mut reader).starts_with("220 "));
        for bad in [
            &b"EHLO evil\rexample.test\r\n"[..],
            b"EHLO evil.test\r\r\n",
            b"HELO evil\x00.test\r\n",
            b"EHLO evil\x09.test\r\n",
        ] {
            writer.write_all(bad).unwrap();
            let reply = read_reply(&mut reader);
            assert!(reply.starts_with("501 "), "{port} {bad:?}: {reply}");
        }
        // Refused EHLOs leave no greeting behind (RFC 5321 §4.1.4).
        writer.write_all(b"MAIL FROM:<a@b.test>\r\n").unwrap();
        let reply = read_reply(&mut reader);
        assert!(reply.starts_with("503 "), "{port}: {reply}");
        writer.write_all(b"EHLO client.test\r\n").unwrap();
        assert!(read_reply(&mut reader).starts_with("250-"), "{port}");
        writer.write_all(b"QUIT\r\n").unwrap();
        assert!(read_reply(&mut reader).starts_with("221 "));
    }
}

#[test]
fn a_10_mb_header_line_is_refused_on_the_mx_and_the_server_stays_fine() {
    let server = policy_server();
    let stream = TcpStream::connect(server.addr("smtp")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    assert!(read_reply(&mut reader).starts_with("220 "));
    writer.write_all(b"EHLO sender.test\r\n").unwrap();
    read_reply(&mut reader);
    let transaction = format!("MAIL FROM:<a@sender.test>\r\nRCPT TO:<{BOB}>\r\nDATA\r\n");
    writer.write_all(transaction.as_bytes()).unwrap();
    for expected in ["250 ", "250 ", "354"] {
        let reply = read_reply(&mut reader);
        assert!(reply.starts_with(expected), "{reply}");
    }
    let mut huge = b"From: a@sender.test\r\nX-Long: ".to_vec();
    huge.resize(huge.len() + 10 * 1024 * 1024, b'a');
    huge.extend_from_slice(b"\r\nSubject: long\r\n\r\nbody\r\n.\r\n");
    writer.write_all(&huge).unwrap();
    let reply = read_reply(&mut reader);
    assert!(reply.starts_with("554 5.6.0 "), "{reply}");

    // The same connection goes on, and a normal message is taken.
    writer.write_all(transaction.as_bytes()).unwrap();
    for expected in ["250 ", "250 ", "354"] {
        let reply = read_reply(&mut reader);
        assert!(reply.starts_with(expected), "{reply}");
    }
    writer
        .write_all(b"From: a@sender.test\r\nSubject: short\r\n\r\nfine\r\n.\r\nQUIT\r\n")
        .unwrap();
    let reply = read_reply(&mut reader);
    assert!(reply.starts_with("250 "), "{reply}");
    assert!(read_reply(&mut reader).starts_with("221 "));
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);

    // A new connection is served too, and only the short message was stored.
    let stream = TcpStream::connect(server.addr("smtp")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut reader = BufReader::new(stream);
    assert!(read_reply(&mut reader).starts_with("220 "));
    let uids = server.uids(BOB);
    assert_eq!(uids.len(), 1);
    let stored = String::from_utf8(server.stored(BOB, uids[0])).unwrap();
    assert!(stored.contains("Subject: short"), "{stored}");
}
