//! Submission (RFC 6409) end to end: TLS both ways, SASL, sender policy, limits, throttling,
//! certificate reload; with our client, Python smtplib, curl, swaks and openssl.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use client::smtp::{Error, SmtpClient};
use client::tls::{Trust, client_config};
use test_support::{TestServer, require_tool};

use crate::exe;

const BOB: &str = "bob@localhost";
const CAROL: &str = "carol@localhost";
const PW: &str = "correct horse";

fn server(extra: &str) -> TestServer {
    let server = TestServer::with_config(exe(), extra, &[BOB, CAROL], PW);
    server.admin_ok(&["alias", "add", "sales@localhost", BOB]);
    server
}

fn trust(server: &TestServer) -> std::sync::Arc<rustls::ClientConfig> {
    client_config(&Trust::PemFile(server.cert_pem())).unwrap()
}

async fn starttls_client(
    server: &TestServer,
) -> SmtpClient<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut smtp = SmtpClient::connect(server.addr("submission"), Duration::from_secs(20))
        .await
        .unwrap();
    let ehlo = smtp.ehlo("laptop.test").await.unwrap();
    assert!(ehlo.lines.iter().any(|l| l == "STARTTLS"), "{ehlo}");
    assert!(
        !ehlo.lines.iter().any(|l| l.starts_with("AUTH")),
        "no AUTH before TLS: {ehlo}"
    );
    let mut smtp = smtp.starttls("localhost", trust(server)).await.unwrap();
    let ehlo = smtp.ehlo("laptop.test").await.unwrap();
    assert!(
        ehlo.lines
            .iter()
            .any(|l| l == "AUTH SCRAM-SHA-256-PLUS SCRAM-SHA-256 PLAIN LOGIN"),
        "{ehlo}"
    );
    assert!(!ehlo.lines.iter().any(|l| l == "STARTTLS"));
    smtp
}

fn message(from: &str, to: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\nMessage-ID: <{subject}@laptop.test>\r\n\
         Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n\r\nHello.\r\n"
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_and_every_mechanism_then_local_and_remote_delivery() {
    let server = server("");
    for mechanism in ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "PLAIN", "LOGIN"] {
        let mut smtp = starttls_client(&server).await;
        assert_eq!(smtp.tls_version().as_deref(), Some("TLSv1_3"));
        match mechanism {
            "SCRAM-SHA-256-PLUS" => smtp.auth_scram_plus(BOB, PW).await.unwrap(),
            "SCRAM-SHA-256" => smtp.auth_scram(BOB, PW).await.unwrap(),
            "PLAIN" => smtp.auth_plain(BOB, PW).await.unwrap(),
            _ => smtp.auth_login(BOB, PW).await.unwrap(),
        }
        let reply = smtp
            .send(
                BOB,
                &[CAROL, "friend@remote.example"],
                &message(BOB, CAROL, mechanism),
            )
            .await
            .unwrap();
        assert_eq!(reply.reply.code, 250);
        smtp.quit().await.unwrap();
    }
    assert_eq!(server.uids(CAROL), [1, 2, 3, 4]);
    let stored = String::from_utf8(server.stored(CAROL, 1)).unwrap();
    assert!(stored.contains("with ESMTPSA"), "{stored}");
    assert!(stored.contains("(using TLSv1.3 with cipher"), "{stored}");
    let queue = String::from_utf8(server.admin_ok(&["queue", "list"])).unwrap();
    assert_eq!(
        queue.matches("friend@remote.example pending").count()
            + queue.matches("friend@remote.example deferred").count(),
        4,
        "{queue}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_on_the_465_listener() {
    let server = server("");
    let mut smtp = SmtpClient::connect_tls(
        server.addr("submission+tls"),
        "localhost",
        trust(&server),
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    let ehlo = smtp.ehlo("laptop.test").await.unwrap();
    assert!(!ehlo.lines.iter().any(|l| l == "STARTTLS"));
    smtp.authenticate(BOB, PW).await.unwrap();
    smtp.send(BOB, &[CAROL], &message(BOB, CAROL, "implicit"))
        .await
        .unwrap();
    assert_eq!(server.uids(CAROL), [1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_refusals() {
    let server = server("[submission]\nmax_messages_per_hour = 3\nmax_recipients_per_hour = 4\n");
    // No TLS: AUTH is refused and MAIL needs AUTH.
    let mut plain = SmtpClient::connect(server.addr("submission"), Duration::from_secs(20))
        .await
        .unwrap();
    plain.ehlo("laptop.test").await.unwrap();
    let reply = plain
        .command("AUTH PLAIN AGJvYkBsb2NhbGhvc3QAY29ycmVjdCBob3JzZQ==")
        .await
        .unwrap();
    assert_eq!(
        reply.to_string(),
        "538 5.7.11 Encryption required for requested authentication mechanism"
    );
    let reply = plain.command("MAIL FROM:<bob@localhost>").await.unwrap();
    assert_eq!(reply.to_string(), "530 5.7.0 Authentication required");

    let mut smtp = starttls_client(&server).await;
    assert!(
        matches!(smtp.auth_plain(BOB, "wrong").await, Err(Error::Rejected(r)) if r.to_string() == "535 5.7.8 Authentication credentials invalid")
    );
    assert!(
        matches!(smtp.auth_scram(BOB, "wrong").await, Err(Error::Rejected(r)) if r.code == 535)
    );
    let reply = smtp.command("MAIL FROM:<bob@localhost>").await.unwrap();
    assert_eq!(reply.code, 530);
    smtp.authenticate(BOB, PW).await.unwrap();

    // Envelope sender not owned.
    let reply = smtp.command("MAIL FROM:<carol@localhost>").await.unwrap();
    assert_eq!(
        reply.to_string(),
        "553 5.7.1 Sender address not owned by the authenticated user"
    );
    let reply = smtp.command("MAIL FROM:<>").await.unwrap();
    assert_eq!(reply.code, 553);
    // From: header not owned, envelope fine: refused at the end of data.
    let err = smtp
        .send(BOB, &[CAROL], &message(CAROL, CAROL, "spoof"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Rejected(ref r) if r.code == 553),
        "{err}"
    );
    // An alias pointing to bob is his; no Date or Message-ID: the server adds them.
    smtp.send(
        "sales@localhost",
        &[CAROL],
        b"From: Sales <sales@localhost>\r\nSubject: no ids\r\n\r\nhi\r\n",
    )
    .await
    .unwrap();
    let stored = String::from_utf8(server.stored(CAROL, 1)).unwrap();
    assert!(stored.contains("\r\nDate: "), "{stored}");
    assert!(stored.contains("\r\nMessage-ID: <"), "{stored}");
    assert!(stored.ends_with("From: Sales <sales@localhost>\r\nSubject: no ids\r\n\r\nhi\r\n"));
    // Hourly limits: 3 messages (two used: the spoof attempt counted at MAIL), 4 recipients.
    smtp.send(
        BOB,
        &[CAROL, "a@remote.example"],
        &message(BOB, CAROL, "third"),
    )
    .await
    .unwrap();
    let reply = smtp.command("MAIL FROM:<bob@localhost>").await.unwrap();
    assert_eq!(
        reply.to_string(),
        "451 4.7.1 Hourly sending limit reached, try again later"
    );
    assert_eq!(server.uids(CAROL), [1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipient_limit_gives_452() {
    let server = server("[submission]\nmax_recipients_per_hour = 2\n");
    let mut smtp = starttls_client(&server).await;
    smtp.authenticate(BOB, PW).await.unwrap();
    assert_eq!(
        smtp.command("MAIL FROM:<bob@localhost>")
            .await
            .unwrap()
            .code,
        250
    );
    assert_eq!(
        smtp.command("RCPT TO:<carol@localhost>")
            .await
            .unwrap()
            .code,
        250
    );
    assert_eq!(
        smtp.command("RCPT TO:<x@remote.example>")
            .await
            .unwrap()
            .code,
        250
    );
    let reply = smtp.command("RCPT TO:<y@remote.example>").await.unwrap();
    assert_eq!(
        reply.to_string(),
        "452 4.5.3 Hourly recipient limit reached, try again later"
    );
}

#[test]
fn python_smtplib_starttls_login_and_smtp_ssl() {
    if !require_tool("python3") {
        return;
    }
    let server = server("");
    let script = format!(
        r#"
import smtplib, ssl
ctx = ssl.create_default_context(cafile={cert:?})
s = smtplib.SMTP('localhost', {port})
s.ehlo('py.test')
s.starttls(context=ctx)
s.ehlo('py.test')
s.login({bob:?}, {pw:?})
s.sendmail({bob:?}, [{carol:?}], b'From: bob@localhost\r\nSubject: py starttls\r\n\r\nhi\r\n')
s.quit()
s = smtplib.SMTP_SSL('localhost', {tls_port}, context=ctx)
s.login({bob:?}, {pw:?})
s.sendmail({bob:?}, [{carol:?}], b'From: bob@localhost\r\nSubject: py implicit\r\n\r\nhi\r\n')
try:
    s.sendmail('carol@localhost', [{bob:?}], b'Subject: spoof\r\n\r\nx\r\n')
    raise SystemExit('spoofed sender accepted')
except smtplib.SMTPSenderRefused as e:
    assert e.smtp_code == 553, e
s.quit()
print('ok')
"#,
        cert = server.cert_pem().display().to_string(),
        port = server.addr("submission").port(),
        tls_port = server.addr("submission+tls").port(),
        bob = BOB,
        carol = CAROL,
        pw = PW,
    );
    crate::python(&script, &[]);
    assert_eq!(server.uids(CAROL), [1, 2]);
}

#[test]
fn curl_ssl_reqd_and_smtps() {
    if !require_tool("curl") {
        return;
    }
    let server = server("");
    let dir = tempfile::tempdir().unwrap();
    let mail = dir.path().join("m.eml");
    std::fs::write(&mail, b"From: bob@localhost\r\nSubject: curl\r\n\r\nhi\r\n").unwrap();
    for (scheme, port, extra) in [
        ("smtp", server.addr("submission").port(), "--ssl-reqd"),
        ("smtps", server.addr("submission+tls").port(), "--ssl-reqd"),
    ] {
        let out = Command::new("curl")
            .args(["-sS", extra, "--cacert"])
            .arg(server.cert_pem())
            .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
            .arg("--url")
            .arg(format!("{scheme}://localhost:{port}/curl.test"))
            .args([
                "--user",
                &format!("{BOB}:{PW}"),
                "--mail-from",
                BOB,
                "--mail-rcpt",
                CAROL,
                "--upload-file",
            ])
            .arg(&mail)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{scheme}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Wrong password: curl fails, nothing is stored.
    let out = Command::new("curl")
        .args(["-sS", "--ssl-reqd", "--cacert"])
        .arg(server.cert_pem())
        .args([
            "--resolve",
            &format!("localhost:{0}:127.0.0.1", server.addr("submission").port()),
        ])
        .arg("--url")
        .arg(format!(
            "smtp://localhost:{}/curl.test",
            server.addr("submission").port()
        ))
        .args([
            "--user",
            &format!("{BOB}:nope"),
            "--mail-from",
            BOB,
            "--mail-rcpt",
            CAROL,
            "--upload-file",
        ])
        .arg(&mail)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(server.uids(CAROL), [1, 2]);
}

#[test]
fn swaks_tls_auth() {
    if !require_tool("swaks") {
        return;
    }
    let server = server("");
    for (port, tls_flag) in [
        (server.addr("submission").port(), "--tls"),
        (server.addr("submission+tls").port(), "--tls-on-connect"),
    ] {
        let out = Command::new("swaks")
            .args([
                "--server",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                tls_flag,
            ])
            .args(["--auth", "PLAIN", "--auth-user", BOB, "--auth-password", PW])
            .args([
                "--from",
                BOB,
                "--to",
                CAROL,
                "--header",
                "From: bob@localhost",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(server.uids(CAROL), [1, 2]);
}

/// Runs `openssl s_client` with `input` on stdin and returns what it printed.
fn openssl(args: &[&str], input: &str) -> String {
    let mut child = Command::new("openssl")
        .arg("s_client")
        .args(args)
        .args(["-quiet", "-ign_eof"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn openssl_s_client_starttls_and_implicit() {
    if !require_tool("openssl") {
        return;
    }
    let server = server("");
    // bob@localhost / correct horse
    let session = "EHLO openssl.test\r\nAUTH PLAIN AGJvYkBsb2NhbGhvc3QAY29ycmVjdCBob3JzZQ==\r\n\
                   MAIL FROM:<bob@localhost>\r\nRCPT TO:<carol@localhost>\r\nDATA\r\n\
                   From: bob@localhost\r\nSubject: openssl\r\n\r\nhi\r\n.\r\nQUIT\r\n";
    let starttls = openssl(
        &[
            "-starttls",
            "smtp",
            "-connect",
            &server.addr("submission").to_string(),
            "-CAfile",
            server.cert_pem().to_str().unwrap(),
        ],
        session,
    );
    assert!(
        starttls.contains("235 2.7.0 Authentication successful"),
        "{starttls}"
    );
    assert!(starttls.contains("250 2.0.0 OK queued as"), "{starttls}");
    let implicit = openssl(
        &[
            "-connect",
            &server.addr("submission+tls").to_string(),
            "-CAfile",
            server.cert_pem().to_str().unwrap(),
        ],
        session,
    );
    assert!(implicit.contains("220 localhost ESMTP"), "{implicit}");
    assert!(implicit.contains("250 2.0.0 OK queued as"), "{implicit}");
    assert_eq!(server.uids(CAROL), [1, 2]);
}

#[test]
fn port_25_offers_starttls_but_not_auth() {
    if !require_tool("openssl") {
        return;
    }
    let server = server("");
    let out = openssl(
        &[
            "-starttls",
            "smtp",
            "-connect",
            &server.addr("smtp").to_string(),
            "-CAfile",
            server.cert_pem().to_str().unwrap(),
        ],
        "EHLO mx.test\r\nAUTH PLAIN AGJvYkBsb2NhbGhvc3QAY29ycmVjdCBob3JzZQ==\r\nMAIL FROM:<x@remote.example>\r\nRCPT TO:<carol@localhost>\r\nDATA\r\nSubject: over tls\r\n\r\nhi\r\n.\r\nQUIT\r\n",
    );
    assert!(!out.contains("AUTH PLAIN"), "{out}");
    assert!(
        out.contains("502 5.5.1"),
        "AUTH is not a port 25 command: {out}"
    );
    assert!(out.contains("250 2.0.0 OK queued"), "{out}");
    let stored = String::from_utf8(server.stored(CAROL, 1)).unwrap();
    assert!(stored.contains("with ESMTPS"), "{stored}");
}

#[test]
fn brute_force_is_slowed_then_locked_out_but_other_ips_log_in() {
    if !require_tool("python3") {
        return;
    }
    let server = server(
        "[auth]\nallow_plaintext_on_loopback = true\nfree_failures = 3\nbase_delay_ms = 100\nmax_delay_ms = 400\nlockout_after = 10\n",
    );
    let script = format!(
        r#"
import smtplib, time, json
def attempt(password, source='127.0.0.1'):
    s = smtplib.SMTP('127.0.0.1', {port}, source_address=(source, 0))
    s.ehlo('brute.test')
    t = time.monotonic()
    s.user, s.password = {bob:?}, password
    try:
        # One AUTH PLAIN per attempt (login() would go on to try LOGIN as well).
        s.auth('PLAIN', s.auth_plain)
        ok = True
    except smtplib.SMTPAuthenticationError:
        ok = False
    took = time.monotonic() - t
    s.close()
    return ok, took
results = [attempt('guess%d' % i) for i in range(20)]
after = attempt({pw:?})
other = attempt({pw:?}, '127.0.0.2')
print(json.dumps({{"results": results, "after": after, "other": other}}))
"#,
        port = server.addr("submission").port(),
        bob = BOB,
        pw = PW,
    );
    let report: serde_json::Value = serde_json::from_slice(&crate::python(&script, &[])).unwrap();
    let results = report["results"].as_array().unwrap();
    assert!(results.iter().all(|r| r[0] == false), "every guess failed");
    let took = |i: usize| results[i][1].as_f64().unwrap();
    // Three failures are free; the attempts after them wait 100 ms, then 200, then 400 (cap).
    // Lower bounds only: each attempt also costs an Argon2 check of varying length.
    assert!(
        took(4) >= 0.1,
        "slowed after the free failures: {}",
        took(4)
    );
    assert!(took(6) >= 0.4, "the delay grows: {}", took(6));
    assert!(
        took(15) >= 0.4,
        "locked out attempts wait too: {}",
        took(15)
    );
    let log = server.log();
    for delay in ["delay_ms=100", "delay_ms=200", "delay_ms=400"] {
        assert!(log.contains(delay), "the throttle logged {delay}");
    }
    assert!(log.contains("login refused: locked out"));
    assert_eq!(
        report["after"][0], false,
        "the right password fails while this IP is locked out"
    );
    assert_eq!(report["other"][0], true, "another IP still logs in");
    assert!(server.log().contains("failed login"));
    assert!(
        !server.log().contains("guess1"),
        "passwords never reach the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_without_dropping_connections() {
    if !require_tool("openssl") {
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    let make = |name: &str| {
        let status = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "2",
            ])
            .args([
                "-subj",
                &format!("/CN={name}"),
                "-addext",
                "subjectAltName=DNS:localhost",
            ])
            .arg("-keyout")
            .arg(certs.path().join(format!("{name}.key")))
            .arg("-out")
            .arg(certs.path().join(format!("{name}.pem")))
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    };
    make("first");
    make("second");
    let live_cert = certs.path().join("live.pem");
    let live_key = certs.path().join("live.key");
    std::fs::copy(certs.path().join("first.pem"), &live_cert).unwrap();
    std::fs::copy(certs.path().join("first.key"), &live_key).unwrap();
    let server = server(&format!(
        "[tls]\ncert = {:?}\nkey = {:?}\n",
        live_cert.display().to_string(),
        live_key.display().to_string()
    ));

    let trust_all = client_config(&Trust::Insecure).unwrap();
    let mut before = SmtpClient::connect(server.addr("submission"), Duration::from_secs(20))
        .await
        .unwrap();
    before.ehlo("a.test").await.unwrap();
    let mut before = before
        .starttls("localhost", trust_all.clone())
        .await
        .unwrap();
    let first_der = before.peer_certificate().unwrap();

    std::fs::copy(certs.path().join("second.pem"), &live_cert).unwrap();
    std::fs::copy(certs.path().join("second.key"), &live_key).unwrap();
    server.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    let second_der = loop {
        let mut after = SmtpClient::connect(server.addr("submission"), Duration::from_secs(20))
            .await
            .unwrap();
        after.ehlo("b.test").await.unwrap();
        let after = after
            .starttls("localhost", trust_all.clone())
            .await
            .unwrap();
        let der = after.peer_certificate().unwrap();
        if der != first_der || Instant::now() > deadline {
            break der;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_ne!(
        first_der, second_der,
        "new connections get the new certificate"
    );
    // The connection made before the reload still works.
    before.ehlo("a.test").await.unwrap();
    before.authenticate(BOB, PW).await.unwrap();
    before
        .send(BOB, &[CAROL], &message(BOB, CAROL, "still-here"))
        .await
        .unwrap();
    assert_eq!(server.uids(CAROL), [1]);
}
