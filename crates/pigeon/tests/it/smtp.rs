//! SMTP delivery through the real server with four different clients, and the protocol's
//! error paths, limits, timeouts and shutdown over real sockets.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use client::smtp::SmtpClient;
use test_support::{TestServer, require_tool, strip_trace};

use crate::exe;
use crate::fixtures;

const BOB: &str = "bob@localhost";
const UTF8_USER: &str = "用户@localhost";

fn server() -> TestServer {
    TestServer::with_users(exe(), &[BOB, UTF8_USER], "secret")
}

/// The four messages every client must deliver byte for byte: (recipient, message).
fn messages(tag: &str, utf8_rcpt: &'static str) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (BOB, fixtures::ascii(BOB, tag)),
        (utf8_rcpt, fixtures::utf8(utf8_rcpt, tag)),
        (BOB, fixtures::big(BOB, tag)),
        (BOB, fixtures::dotted(BOB, tag)),
    ]
}

#[track_caller]
fn assert_stored(server: &TestServer, sent: &[(&str, Vec<u8>)]) {
    let mut next_uid = std::collections::HashMap::new();
    for (user, message) in sent {
        let uid = next_uid.entry(*user).or_insert(0u32);
        *uid += 1;
        let stored = server.stored(user, *uid);
        let body = strip_trace(&stored);
        assert!(
            body == &message[..],
            "message {uid} for {user} differs: stored {} bytes, sent {} bytes; first bytes stored {:?}",
            body.len(),
            message.len(),
            String::from_utf8_lossy(&body[..body.len().min(200)])
        );
        let trace = &stored[..stored.len() - body.len()];
        let trace = String::from_utf8_lossy(trace);
        assert!(trace.starts_with("Return-Path: <"), "{trace}");
        assert!(trace.contains("Received: from "), "{trace}");
        assert!(trace.contains("by localhost (pigeon) with "), "{trace}");
    }
}

fn write_temp(dir: &std::path::Path, name: &str, data: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_delivers_exact_bytes() {
    let server = server();
    let sent = messages("own", UTF8_USER);
    let mut client = SmtpClient::connect(server.addr("smtp"), Duration::from_secs(30))
        .await
        .unwrap();
    client.ehlo("client.test").await.unwrap();
    for (rcpt, message) in &sent {
        let delivery = client
            .send("alice@example.org", &[rcpt], message)
            .await
            .unwrap();
        assert_eq!(delivery.reply.code, 250, "{}", delivery.reply);
    }
    // The same again over BDAT (RFC 3030), in odd-sized chunks.
    let chunked = fixtures::dotted(BOB, "bdat");
    let reply = client
        .send_bdat("alice@example.org", &[BOB], &chunked, 7)
        .await
        .unwrap();
    assert_eq!(reply.code, 250);
    client.quit().await.unwrap();
    let mut all = sent.clone();
    all.push((BOB, chunked));
    assert_stored(&server, &all);
}

#[test]
fn python_smtplib_delivers_exact_bytes() {
    if !require_tool("python3") {
        return;
    }
    let server = server();
    let sent = messages("python", UTF8_USER);
    let dir = tempfile::tempdir().unwrap();
    let mut script = String::from("import smtplib, sys\n");
    script.push_str(&format!(
        "s = smtplib.SMTP('127.0.0.1', {})\ns.ehlo('python.test')\n",
        server.addr("smtp").port()
    ));
    for (i, (rcpt, message)) in sent.iter().enumerate() {
        let path = write_temp(dir.path(), &format!("m{i}.eml"), message);
        let options = if rcpt.is_ascii() {
            "[]"
        } else {
            "['SMTPUTF8']"
        };
        script.push_str(&format!(
            "r = s.sendmail('alice@example.org', [{rcpt:?}], open({:?}, 'rb').read(), mail_options={options})\n\
             assert r == {{}}, r\n",
            path.to_str().unwrap()
        ));
    }
    script.push_str("s.quit()\nprint('sent')\n");
    crate::python(&script, &[]);
    assert_stored(&server, &sent);
}

#[test]
fn curl_delivers_exact_bytes() {
    if !require_tool("curl") {
        return;
    }
    let server = server();
    let sent = messages("curl", UTF8_USER);
    let dir = tempfile::tempdir().unwrap();
    for (i, (rcpt, message)) in sent.iter().enumerate() {
        let path = write_temp(dir.path(), &format!("m{i}.eml"), message);
        let out = Command::new("curl")
            .args(["-sS", "--url"])
            .arg(format!(
                "smtp://127.0.0.1:{}/client.test",
                server.addr("smtp").port()
            ))
            .args([
                "--mail-from",
                "alice@example.org",
                "--mail-rcpt",
                rcpt,
                "--upload-file",
            ])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "curl failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_stored(&server, &sent);
}

#[test]
fn swaks_delivers_exact_bytes() {
    if !require_tool("swaks") {
        return;
    }
    let server = server();
    // swaks (20201014) has no SMTPUTF8 option, so its UTF-8 message goes to an ASCII address;
    // the UTF-8 recipient is covered by the other clients.
    let sent = messages("swaks", BOB);
    let dir = tempfile::tempdir().unwrap();
    for (i, (rcpt, message)) in sent.iter().enumerate() {
        // swaks always ends the data with CRLF "." CRLF, adding a line end of its own, so its
        // input file is the message without the final CRLF.
        let unterminated = message.strip_suffix(b"\r\n").unwrap();
        let path = write_temp(dir.path(), &format!("m{i}.eml"), unterminated);
        let out = Command::new("swaks")
            .args(["--server", "127.0.0.1", "--port"])
            .arg(server.addr("smtp").port().to_string())
            .args([
                "--helo",
                "swaks.test",
                "--from",
                "alice@example.org",
                "--to",
                rcpt,
            ])
            .arg("--data")
            .arg(format!("@{}", path.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "swaks failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_stored(&server, &sent);
}

/// A line-oriented raw SMTP conversation for error-path tests.
struct Raw {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Raw {
    fn connect(server: &TestServer) -> Raw {
        let stream = TcpStream::connect(server.addr("smtp")).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Raw {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    /// Reads one (possibly multi-line) reply and returns its last line.
    fn reply(&mut self) -> String {
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).unwrap();
            assert!(n > 0, "connection closed while waiting for a reply");
            if line.as_bytes().get(3) != Some(&b'-') {
                return line.trim_end().to_string();
            }
        }
    }

    fn send(&mut self, line: &str) -> String {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap();
        self.reply()
    }

    fn at_eof(&mut self) -> bool {
        let mut rest = Vec::new();
        matches!(self.reader.read_to_end(&mut rest), Ok(0))
    }
}

#[test]
fn routing_and_error_replies_over_the_wire() {
    let server = server();
    server.admin_ok(&[
        "alias",
        "add",
        "team@localhost",
        BOB,
        "friend@remote.example",
    ]);
    let mut smtp = Raw::connect(&server);
    assert!(smtp.reply().starts_with("220 localhost"));
    assert!(smtp.send("EHLO c.test").starts_with("250 "));
    assert_eq!(
        smtp.send("RCPT TO:<bob@localhost>"),
        "503 5.5.1 Need MAIL before RCPT"
    );
    assert!(
        smtp.send("MAIL FROM:<a@example.org>")
            .starts_with("250 2.1.0")
    );
    assert_eq!(
        smtp.send("RCPT TO:<nobody@localhost>"),
        "550 5.1.1 No such user here"
    );
    assert_eq!(
        smtp.send("RCPT TO:<victim@elsewhere.example>"),
        "550 5.7.1 Relaying denied: we do not serve this domain"
    );
    assert!(
        smtp.send("RCPT TO:<Bob+Lists@LOCALHOST>")
            .starts_with("250 2.1.5")
    );
    assert!(
        smtp.send("RCPT TO:<team@localhost>")
            .starts_with("250 2.1.5")
    );
    assert!(smtp.send("DATA").starts_with("354"));
    let reply = smtp.send("Subject: routed\r\n\r\nhi\r\n.");
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
    assert_eq!(
        smtp.send("QUIT"),
        "221 2.0.0 localhost Service closing transmission channel"
    );

    // Bob got one copy although two recipients led to him; the remote alias target is queued.
    assert_eq!(server.uids(BOB), [1]);
    let queue = String::from_utf8(server.admin_ok(&["queue", "list"])).unwrap();
    // Queued; the queue may have tried already (no DNS in tests: deferred).
    assert!(
        queue.contains("friend@remote.example pending")
            || queue.contains("friend@remote.example deferred"),
        "{queue}"
    );
    let stored = server.stored(BOB, 1);
    assert!(
        !String::from_utf8_lossy(&stored).contains("\tfor <"),
        "no `for` with several recipients"
    );
}

#[test]
fn a_client_dropping_mid_data_leaves_nothing() {
    let server = server();
    let mut smtp = Raw::connect(&server);
    smtp.reply();
    smtp.send("EHLO c.test");
    smtp.send("MAIL FROM:<a@example.org>");
    smtp.send("RCPT TO:<bob@localhost>");
    assert!(smtp.send("DATA").starts_with("354"));
    smtp.writer
        .write_all(b"Subject: partial\r\n\r\nhalf a message")
        .unwrap();
    drop(smtp);
    // A full message afterwards proves the server is fine and gives the store a commit.
    let mut smtp = Raw::connect(&server);
    smtp.reply();
    smtp.send("HELO c.test");
    smtp.send("MAIL FROM:<a@example.org>");
    smtp.send("RCPT TO:<bob@localhost>");
    smtp.send("DATA");
    assert!(
        smtp.send("Subject: whole\r\n\r\nbody\r\n.")
            .starts_with("250")
    );
    assert_eq!(server.uids(BOB), [1]);
    assert!(String::from_utf8_lossy(&server.stored(BOB, 1)).contains("Subject: whole"));
}

#[test]
fn connection_limit_per_ip_answers_421() {
    let mut server = TestServer::new(exe(), "[limits]\nmax_connections_per_ip = 2\n");
    server.admin_ok(&["domain", "add", "localhost"]);
    server.start();
    let mut first = Raw::connect(&server);
    let mut second = Raw::connect(&server);
    assert!(first.reply().starts_with("220"));
    assert!(second.reply().starts_with("220"));
    let mut third = Raw::connect(&server);
    assert_eq!(
        third.reply(),
        "421 4.7.0 localhost Too many connections, try again later"
    );
    assert!(third.at_eof());
    drop(first);
    // The freed slot is usable again.
    std::thread::sleep(Duration::from_millis(200));
    let mut fourth = Raw::connect(&server);
    assert!(fourth.reply().starts_with("220"));
}

#[test]
fn idle_client_times_out_with_421() {
    let mut server = TestServer::new(exe(), "[smtp]\ncommand_timeout_secs = 1\n");
    server.admin_ok(&["domain", "add", "localhost"]);
    server.start();
    let mut smtp = Raw::connect(&server);
    smtp.reply();
    smtp.send("EHLO c.test");
    let started = std::time::Instant::now();
    assert_eq!(
        smtp.reply(),
        "421 4.4.2 localhost Timeout, closing connection"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(smtp.at_eof());
}

#[test]
fn graceful_shutdown_finishes_the_transaction_in_flight() {
    let mut server = server();
    let mut idle = Raw::connect(&server);
    idle.reply();
    let mut busy = Raw::connect(&server);
    busy.reply();
    busy.send("EHLO c.test");
    busy.send("MAIL FROM:<a@example.org>");
    busy.send("RCPT TO:<bob@localhost>");

    let pid = server.pid();
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    // The idle connection is told at once.
    assert_eq!(idle.reply(), "421 4.3.2 localhost Service shutting down");
    // The one in a transaction may finish it, then is told.
    assert!(busy.send("DATA").starts_with("354"));
    assert!(
        busy.send("Subject: last\r\n\r\nmade it\r\n.")
            .starts_with("250")
    );
    assert_eq!(busy.reply(), "421 4.3.2 localhost Service shutting down");
    let status = server.stop();
    assert!(status.success(), "clean exit after SIGTERM: {status}");
    assert!(String::from_utf8_lossy(&server.stored(BOB, 1)).contains("made it"));
}
