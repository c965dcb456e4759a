//! The `trace` log level (`PIGEON_LOG=trace`): every SMTP, submission and POP3 exchange is
//! logged line by line inside its connection's span (`cid=`), but never a password, SASL
//! data or a message's content (only its size).

use std::time::Duration;

use client::pop3::Pop3Client;
use client::smtp::SmtpClient;
use smtp_proto::server::base64_encode;
use test_support::TestServer;

use crate::exe;

const BOB: &str = "bob@localhost";
const PW: &str = "Tr4ce-never-logged";
/// In every message body: must never reach the log.
const MARKER: &str = "body-marker-never-logged";

/// A server logging at `trace`, taking passwords in clear on loopback (so the exchanges
/// are plain text and every line of them reaches the session).
fn traced_server() -> TestServer {
    let mut server = TestServer::new(exe(), "[auth]\nallow_plaintext_on_loopback = true\n");
    server.admin_ok(&["domain", "add", "localhost", "--no-dkim"]);
    server.admin_ok(&["user", "add", BOB, "--password", PW]);
    server.set_log_filter("trace");
    server.start();
    server
}

fn message(subject: &str) -> Vec<u8> {
    format!(
        "From: <{BOB}>\r\nTo: <{BOB}>\r\nSubject: {subject}\r\nMessage-ID: <{subject}@t.test>\r\n\
         Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n\r\n{MARKER}\r\n"
    )
    .into_bytes()
}

/// The log's lines that contain `text`; each must name its connection.
#[track_caller]
fn traced(log: &str, text: &str) -> usize {
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(text)).collect();
    assert!(!lines.is_empty(), "{text:?} is not in the log:\n{log}");
    for line in &lines {
        assert!(line.contains("TRACE") && line.contains("cid="), "{line}");
    }
    lines.len()
}

/// No password, SASL data or message content anywhere in the log, in any form a client sent.
#[track_caller]
fn no_secrets(log: &str) {
    for secret in [
        PW.to_string(),
        base64_encode(PW.as_bytes()),
        base64_encode(format!("\0{BOB}\0{PW}").as_bytes()),
        base64_encode(BOB.as_bytes()),
        MARKER.to_string(),
    ] {
        assert!(!log.contains(&secret), "{secret:?} is in the log:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_and_submission_exchanges_are_traced_without_secrets() {
    let server = traced_server();
    let timeout = Duration::from_secs(20);
    // Port 25: DATA, then BDAT.
    let mut mx = SmtpClient::connect(server.addr("smtp"), timeout)
        .await
        .unwrap();
    mx.ehlo("sender.test").await.unwrap();
    mx.send("alice@example.org", &[BOB], &message("mx"))
        .await
        .unwrap();
    mx.send_bdat("alice@example.org", &[BOB], &message("bdat"), 40)
        .await
        .unwrap();
    mx.quit().await.unwrap();
    // Submission: AUTH PLAIN with an initial response, and AUTH LOGIN's SASL lines.
    for login in [false, true] {
        let mut submission = SmtpClient::connect(server.addr("submission"), timeout)
            .await
            .unwrap();
        submission.ehlo("laptop.test").await.unwrap();
        if login {
            submission.auth_login(BOB, PW).await.unwrap();
        } else {
            submission.auth_plain(BOB, PW).await.unwrap();
        }
        submission.send(BOB, &[BOB], &message("sub")).await.unwrap();
        submission.quit().await.unwrap();
    }
    let log = server.log();
    traced(&log, "C: EHLO sender.test");
    traced(&log, "S: 220 ");
    traced(&log, "C: MAIL FROM:<alice@example.org>");
    traced(&log, "C: RCPT TO:<bob@localhost>");
    traced(&log, "C: DATA");
    traced(&log, "S: 354 ");
    assert_eq!(traced(&log, "C: <message, "), 3, "one per DATA");
    traced(&log, "C: BDAT ");
    assert_eq!(
        traced(&log, "OK queued as"),
        4,
        "each message's final reply"
    );
    traced(&log, "C: QUIT");
    traced(&log, "S: 221 ");
    traced(&log, "C: AUTH PLAIN <initial response redacted>");
    traced(&log, "C: AUTH LOGIN");
    assert_eq!(traced(&log, "S: 334 <SASL data redacted>"), 2);
    assert_eq!(traced(&log, "C: <SASL data redacted>"), 2);
    assert_eq!(traced(&log, "S: 235 2.7.0"), 2);
    // Each protocol's connections carry their own names and ids.
    for proto in ["smtp", "submission"] {
        assert!(
            log.lines()
                .any(|l| l.contains("C: EHLO") && l.contains(proto) && l.contains("cid=")),
            "{proto}: {log}"
        );
    }
    no_secrets(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pop3_exchange_is_traced_without_secrets() {
    let server = traced_server();
    let timeout = Duration::from_secs(20);
    let mut smtp = SmtpClient::connect(server.addr("smtp"), timeout)
        .await
        .unwrap();
    smtp.ehlo("sender.test").await.unwrap();
    smtp.send("alice@example.org", &[BOB], &message("pop"))
        .await
        .unwrap();
    smtp.quit().await.unwrap();
    let mut pop = Pop3Client::connect(server.addr("pop3"), timeout)
        .await
        .unwrap();
    pop.login(BOB, PW).await.unwrap();
    let retrieved = pop.retr(1).await.unwrap();
    assert!(String::from_utf8_lossy(&retrieved).contains(MARKER));
    pop.top(1, 5).await.unwrap();
    pop.command(&format!(
        "AUTH PLAIN {}",
        base64_encode(format!("\0{BOB}\0{PW}").as_bytes())
    ))
    .await
    .unwrap_err();
    pop.quit().await.unwrap();
    let log = server.log();
    traced(&log, "S: +OK pigeon POP3 server ready");
    traced(&log, &format!("C: USER {BOB}"));
    traced(&log, "C: PASS <redacted>");
    traced(&log, "S: +OK maildrop has 1 messages");
    traced(&log, "C: RETR 1");
    traced(&log, "C: TOP 1 5");
    assert_eq!(traced(&log, "S: <message, "), 2, "RETR and TOP: sizes only");
    traced(&log, "C: AUTH PLAIN <initial response redacted>");
    traced(&log, "S: -ERR already logged in");
    traced(&log, "C: QUIT");
    assert!(
        log.lines()
            .any(|l| l.contains("C: RETR 1") && l.contains("pop3")),
        "{log}"
    );
    no_secrets(&log);
}
