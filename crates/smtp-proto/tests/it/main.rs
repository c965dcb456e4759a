//! Transcript tests for the SMTP server machine.
//!
//! Each file in `tests/data` is a conversation (`test_support::transcript`): `S:` lines are what
//! the server must send, `C:` lines what the client sends (CRLF appended), `c:` raw client
//! bytes (nothing appended), and `M:` the content of a message the session must receive.
//! Escapes: `\r`, `\n`, `\\`, `\xNN`. Every transcript is fed whole, then split in two at
//! every byte offset, then one byte at a time; the server's output and the messages must be
//! the same each time.
//!
//! The session policy here is a small stand-in for `smtp-server`: senders containing `reject`
//! are refused, recipients `green@`/`unknown@` do not exist, `@other.example` is not ours.
//! A transcript whose first line is `# mode: submission` runs with STARTTLS and AUTH offered
//! and required; `STARTTLS` is a sync point (the harness "handshakes" there, and splits never
//! cross it, as a real client waits for the handshake). The only login is alice/secret.
//! A first line `# header limits: LINE SIZE` sets `max_header_line` and `max_header_size`.

use smtp_proto::{Event, Reply, ServerConfig, ServerMachine};
use test_support::transcript::{Escapes, Transcript};

fn config() -> ServerConfig {
    ServerConfig {
        hostname: "mx.example".into(),
        max_message_size: 300,
        max_recipients: 3,
        max_line_length: 512,
        max_errors: 10,
        ..ServerConfig::default()
    }
}

fn submission_config() -> ServerConfig {
    ServerConfig {
        starttls: true,
        auth_mechanisms: vec!["PLAIN".into(), "LOGIN".into()],
        auth_requires_tls: true,
        require_auth: true,
        ..config()
    }
}

/// Drives a machine over `chunks`, answering events with the test policy.
fn run_with(config: ServerConfig, chunks: &[&[u8]]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut machine = ServerMachine::new(config);
    let mut exchange: Option<sasl::ServerExchange> = None;
    machine.greet();
    let mut output = machine.take_output();
    let mut messages = Vec::new();
    let mut closed = false;
    for chunk in chunks {
        if closed {
            break;
        }
        machine.feed(chunk);
        while let Some(event) = machine.next() {
            match event {
                Event::Mail { from, .. } => machine.reply(if from.contains("reject") {
                    Reply::new(550, "5.7.1", "Sender refused")
                } else {
                    smtp_proto::replies::sender_ok()
                }),
                Event::Rcpt { to, .. } => {
                    let lower = to.to_lowercase();
                    machine.reply(if lower.ends_with("@other.example") {
                        smtp_proto::replies::relay_denied()
                    } else if lower.starts_with("green@") || lower.starts_with("unknown@") {
                        smtp_proto::replies::unknown_user()
                    } else {
                        smtp_proto::replies::recipient_ok()
                    })
                }
                Event::Message { data, .. } => {
                    messages.push(data);
                    machine.reply(Reply::new(250, "2.0.0", "Message accepted"));
                }
                Event::Close => closed = true,
                Event::StartTls => {
                    // The handshake would happen here; what follows in later chunks is "TLS".
                    output.extend(machine.take_output());
                    machine.tls_started();
                }
                Event::Auth { mechanism, initial } => {
                    let mechanism = sasl::Mechanism::parse(&mechanism).unwrap();
                    let mut ex = sasl::ServerExchange::new(
                        mechanism,
                        Default::default(),
                        false,
                        b"0123456789abcdefgh",
                    );
                    let outcome = ex.start(initial.as_deref());
                    exchange = Some(ex);
                    answer_auth(&mut machine, &mut exchange, outcome);
                }
                Event::AuthResponse(data) => {
                    let outcome = exchange.as_mut().unwrap().step(&data);
                    answer_auth(&mut machine, &mut exchange, outcome);
                }
            }
        }
        output.extend(machine.take_output());
    }
    (output, messages)
}

fn answer_auth(
    machine: &mut ServerMachine,
    exchange: &mut Option<sasl::ServerExchange>,
    outcome: sasl::Outcome,
) {
    let outcome = match outcome {
        sasl::Outcome::CheckPassword {
            username, password, ..
        } => exchange
            .as_mut()
            .unwrap()
            .password_checked(username == "alice" && password == "secret"),
        other => other,
    };
    match outcome {
        sasl::Outcome::Challenge(c) => machine.auth_challenge(&c),
        sasl::Outcome::Success { username, .. } => machine.auth_done(
            Some(username),
            Reply::new(235, "2.7.0", "Authentication successful"),
        ),
        sasl::Outcome::Failure => machine.auth_done(
            None,
            Reply::new(535, "5.7.8", "Authentication credentials invalid"),
        ),
        sasl::Outcome::Malformed(why) => machine.auth_done(None, Reply::new(501, "5.5.2", why)),
        sasl::Outcome::CheckPassword { .. } | sasl::Outcome::NeedScramKeys { .. } => unreachable!(),
    }
}

#[track_caller]
fn check(name: &str) {
    let t = Transcript::load(
        format!("{}/tests/data/{name}.txt", env!("CARGO_MANIFEST_DIR")),
        Escapes::On,
        &["STARTTLS"],
    );
    for (kind, _) in &t.other {
        assert_eq!(kind, "M", "{name}: unknown line kind {kind}:");
    }
    let mut config = if t.option("mode") == Some("submission") {
        submission_config()
    } else {
        config()
    };
    if let Some(limits) = t.option("header limits") {
        let (line, size) = limits.split_once(' ').expect("two numbers");
        config.max_header_line = line.parse().unwrap();
        config.max_header_size = size.parse().unwrap();
    }
    let show = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let expected = (show(&t.server()), t.others("M"));
    t.assert_every_chunking(name, &expected, |chunks| {
        let (out, messages) = run_with(config.clone(), chunks);
        (show(&out), messages)
    });
}

#[test]
fn rfc5321_d1_typical_transaction() {
    check("rfc5321_d1");
}
#[test]
fn rfc5321_d2_aborted_transaction() {
    check("rfc5321_d2");
}
#[test]
fn rfc5321_d4_verify() {
    check("rfc5321_d4");
}
#[test]
fn helo_without_extensions() {
    check("helo");
}
#[test]
fn pipelining_rfc2920() {
    check("pipelining");
}
#[test]
fn bdat_chunking() {
    check("bdat");
}
#[test]
fn sequence_errors() {
    check("sequence_errors");
}
#[test]
fn syntax_errors() {
    check("syntax_errors");
}
#[test]
fn limits() {
    check("limits");
}
#[test]
fn smuggling() {
    check("smuggling");
}
#[test]
fn canonical_line_endings() {
    check("canonical");
}
#[test]
fn header_limits() {
    check("header_limits");
}
#[test]
fn bare_cr_and_controls_in_commands() {
    check("bare_cr");
}
#[test]
fn smtputf8() {
    check("smtputf8");
}
#[test]
fn too_many_errors_closes() {
    check("too_many_errors");
}

#[test]
fn timeout_and_shutdown_replies() {
    let mut machine = ServerMachine::new(config());
    machine.greet();
    machine.take_output();
    machine.feed(b"EHLO a\r\nMAIL FROM:<a@b>\r\n");
    assert!(matches!(machine.next(), Some(Event::Mail { .. })));
    machine.reply(smtp_proto::replies::sender_ok());
    assert!(!machine.is_idle(), "a transaction is open");
    machine.timeout();
    let out = String::from_utf8(machine.take_output()).unwrap();
    assert!(
        out.ends_with("421 4.4.2 mx.example Timeout, closing connection\r\n"),
        "{out}"
    );
    assert_eq!(machine.next(), Some(Event::Close));
    machine.feed(b"NOOP\r\n");
    assert_eq!(machine.next(), None, "nothing is read after close");
    assert!(!machine.has_output());
}

#[test]
fn rfc5321_d3_relayed_mail() {
    check("rfc5321_d3");
}

#[test]
fn submission_starttls_and_auth_plain() {
    check("submission_plain");
}

#[test]
fn submission_auth_login_cancel_and_plain_continuation() {
    check("submission_login");
}

/// RFC 3207 §4.2 / CVE-2011-0411: commands pipelined after STARTTLS in the same packet are
/// plaintext an attacker may have injected; they must never be executed inside TLS.
#[test]
fn starttls_discards_pipelined_plaintext() {
    let mut machine = ServerMachine::new(submission_config());
    machine.greet();
    machine.take_output();
    machine
        .feed(b"EHLO x\r\nSTARTTLS\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nMAIL FROM:<evil@x>\r\n");
    assert_eq!(machine.next(), Some(Event::StartTls));
    let out = String::from_utf8(machine.take_output()).unwrap();
    assert!(
        out.ends_with("250 STARTTLS\r\n220 2.0.0 Ready to start TLS\r\n"),
        "{out}"
    );
    // Bytes that were in flight arrive before the handshake: also plaintext, also dropped.
    machine.feed(b"RCPT TO:<victim@x>\r\n");
    machine.tls_started();
    assert_eq!(machine.next(), None);
    assert!(
        !machine.has_output(),
        "nothing of the injected commands was answered"
    );
    machine.feed(b"MAIL FROM:<alice@x>\r\n");
    assert_eq!(machine.next(), None);
    assert_eq!(
        String::from_utf8(machine.take_output()).unwrap(),
        "503 5.5.1 Send EHLO or HELO first\r\n",
        "the session restarted: no EHLO, no AUTH carried over"
    );
    assert_eq!(machine.user(), None);
}

/// SCRAM-SHA-256 through the machine, with the client side computed here.
#[test]
fn auth_scram_sha256_success_and_failure() {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as B64;

    let keys = sasl::ScramKeys::derive("secret", b"0123456789abcdef", 4096);
    let run_scram = |password: &str| -> String {
        let mut machine = ServerMachine::new(ServerConfig {
            auth_mechanisms: vec!["SCRAM-SHA-256".into()],
            auth_requires_tls: false,
            ..submission_config()
        });
        machine.greet();
        machine.feed(b"EHLO x\r\n");
        assert_eq!(machine.next(), None);
        let first = "n,,n=alice,r=clientnonce123";
        machine.feed(format!("AUTH SCRAM-SHA-256 {}\r\n", B64.encode(first)).as_bytes());
        let Some(Event::Auth { initial, .. }) = machine.next() else {
            panic!("auth event")
        };
        let mut ex = sasl::ServerExchange::new(
            sasl::Mechanism::ScramSha256,
            Default::default(),
            false,
            b"servernonce-servernonce",
        );
        assert!(matches!(
            ex.start(initial.as_deref()),
            sasl::Outcome::NeedScramKeys { .. }
        ));
        let sasl::Outcome::Challenge(server_first) = ex.scram_keys(Some(keys.clone())) else {
            panic!()
        };
        machine.auth_challenge(&server_first);
        let server_first = String::from_utf8(server_first).unwrap();
        let nonce = &server_first[2..server_first.find(',').unwrap()];
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("n=alice,r=clientnonce123,{server_first},{without_proof}");
        let (proof, _) =
            sasl::scram::client_proof(password, b"0123456789abcdef", 4096, auth_message.as_bytes());
        let final_msg = format!("{without_proof},p={}", B64.encode(proof));
        machine.feed(format!("{}\r\n", B64.encode(final_msg)).as_bytes());
        let Some(Event::AuthResponse(data)) = machine.next() else {
            panic!("response event")
        };
        match ex.step(&data) {
            sasl::Outcome::Success {
                username,
                final_data,
            } => {
                let v = String::from_utf8(final_data.unwrap()).unwrap();
                assert!(v.starts_with("v="));
                machine.auth_done(
                    Some(username),
                    Reply::new(235, "2.7.0", "Authentication successful"),
                );
            }
            sasl::Outcome::Failure => machine.auth_done(
                None,
                Reply::new(535, "5.7.8", "Authentication credentials invalid"),
            ),
            other => panic!("{other:?}"),
        }
        let out = String::from_utf8(machine.take_output()).unwrap();
        out.lines().last().unwrap().to_string()
    };
    assert_eq!(run_scram("secret"), "235 2.7.0 Authentication successful");
    assert_eq!(
        run_scram("wrong"),
        "535 5.7.8 Authentication credentials invalid"
    );
}

/// The transcript for a trace log has every command and reply in order, but never the AUTH
/// initial response, a SASL response, or the message's content (only its size).
#[test]
fn transcript_hides_auth_data_and_message_content() {
    let mut machine = ServerMachine::new(ServerConfig {
        auth_requires_tls: false,
        ..submission_config()
    });
    machine.record_transcript(true);
    machine.greet();
    // AUTH PLAIN with alice/secret, then AUTH LOGIN's response lines.
    machine.feed(b"EHLO c\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n");
    let mut exchange = None;
    let mut answer = |machine: &mut ServerMachine| match machine.next() {
        Some(Event::Auth { mechanism, initial }) => {
            let mechanism = sasl::Mechanism::parse(&mechanism).unwrap();
            let mut ex =
                sasl::ServerExchange::new(mechanism, Default::default(), false, b"0123456789ab");
            let outcome = ex.start(initial.as_deref());
            exchange = Some(ex);
            answer_auth(machine, &mut exchange, outcome);
        }
        other => panic!("{other:?}"),
    };
    answer(&mut machine);
    machine.feed(b"MAIL FROM:<alice@a.example>\r\nRCPT TO:<bob@a.example>\r\nDATA\r\n");
    assert!(matches!(machine.next(), Some(Event::Mail { .. })));
    machine.reply(smtp_proto::replies::sender_ok());
    assert!(matches!(machine.next(), Some(Event::Rcpt { .. })));
    machine.reply(smtp_proto::replies::recipient_ok());
    assert_eq!(machine.next(), None);
    machine.feed(b"Subject: x\r\n\r\nthe secret body\r\n.\r\n");
    assert!(matches!(machine.next(), Some(Event::Message { .. })));
    machine.reply(Reply::new(250, "2.0.0", "OK queued as 1"));
    let transcript = machine.take_transcript();
    assert_eq!(
        transcript,
        [
            "S: 220 mx.example ESMTP pigeon ready",
            "C: EHLO c",
            "S: 250-mx.example Hello c",
            "S: 250-PIPELINING",
            "S: 250-SIZE 300",
            "S: 250-8BITMIME",
            "S: 250-SMTPUTF8",
            "S: 250-ENHANCEDSTATUSCODES",
            "S: 250-CHUNKING",
            "S: 250-DSN",
            "S: 250-STARTTLS",
            "S: 250 AUTH PLAIN LOGIN",
            "C: AUTH PLAIN <initial response redacted>",
            "S: 235 2.7.0 Authentication successful",
            "C: MAIL FROM:<alice@a.example>",
            "S: 250 2.1.0 Sender OK",
            "C: RCPT TO:<bob@a.example>",
            "S: 250 2.1.5 Recipient OK",
            "C: DATA",
            "S: 354 Start mail input; end with <CRLF>.<CRLF>",
            "C: <message, 31 octets>",
            "S: 250 2.0.0 OK queued as 1",
        ]
    );
    // A SASL response line and its challenge are placeholders too.
    let mut login = ServerMachine::new(ServerConfig {
        auth_requires_tls: false,
        ..submission_config()
    });
    login.record_transcript(true);
    login.feed(b"EHLO c\r\nAUTH LOGIN\r\n");
    answer(&mut login);
    login.feed(b"YWxpY2U=\r\n");
    assert!(matches!(login.next(), Some(Event::AuthResponse(_))));
    login.auth_challenge(b"Password:");
    let transcript = login.take_transcript();
    assert_eq!(
        transcript[transcript.len() - 4..],
        [
            "C: AUTH LOGIN",
            "S: 334 <SASL data redacted>",
            "C: <SASL data redacted>",
            "S: 334 <SASL data redacted>",
        ]
    );
}
