//! Transcript tests for the SMTP server machine.
//!
//! Each file in `tests/data` is a conversation: `S:` lines are what the server must send,
//! `C:` lines what the client sends (CRLF appended), `c:` raw client bytes (nothing appended),
//! and `M:` the content of a message the session must receive. Escapes: `\r`, `\n`, `\\`,
//! `\xNN`. Every transcript is fed whole, then split in two at every byte offset, then one byte
//! at a time; the server's output and the messages must be the same each time.
//!
//! The session policy here is a small stand-in for `smtp-server`: senders containing `reject`
//! are refused, recipients `green@`/`unknown@` do not exist, `@other.example` is not ours.

use smtp_proto::{Event, Reply, ServerConfig, ServerMachine};

struct Transcript {
    client: Vec<u8>,
    server: Vec<u8>,
    messages: Vec<Vec<u8>>,
}

fn unescape(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'r' => out.push(b'\r'),
                b'n' => out.push(b'\n'),
                b'\\' => out.push(b'\\'),
                b'x' => {
                    let hex = &text[i + 2..i + 4];
                    out.push(u8::from_str_radix(hex, 16).expect("bad \\x escape"));
                    i += 2;
                }
                other => panic!("unknown escape \\{}", other as char),
            }
            i += 2;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

fn load(text: &str) -> Transcript {
    let mut t = Transcript {
        client: Vec::new(),
        server: Vec::new(),
        messages: Vec::new(),
    };
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (kind, rest) = line.split_at(2);
        let rest = rest.strip_prefix(' ').unwrap_or(rest);
        match kind {
            "C:" => {
                t.client.extend(unescape(rest));
                t.client.extend_from_slice(b"\r\n");
            }
            "c:" => t.client.extend(unescape(rest)),
            "S:" => {
                t.server.extend(unescape(rest));
                t.server.extend_from_slice(b"\r\n");
            }
            "M:" => t.messages.push(unescape(rest)),
            _ => panic!("bad transcript line {line:?}"),
        }
    }
    t
}

fn config() -> ServerConfig {
    ServerConfig {
        hostname: "mx.example".into(),
        max_message_size: 300,
        max_recipients: 3,
        max_line_length: 512,
        max_errors: 10,
    }
}

/// Drives a machine over `chunks`, answering events with the test policy.
fn run(chunks: &[&[u8]]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut machine = ServerMachine::new(config());
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
                Event::Message { data } => {
                    messages.push(data);
                    machine.reply(Reply::new(250, "2.0.0", "Message accepted"));
                }
                Event::Close => closed = true,
            }
        }
        output.extend(machine.take_output());
    }
    (output, messages)
}

#[track_caller]
fn check(name: &str) {
    let path = format!("{}/tests/data/{name}.txt", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let t = load(&text);
    let show = |b: &[u8]| String::from_utf8_lossy(b).into_owned();

    let (out, messages) = run(&[&t.client]);
    assert_eq!(show(&out), show(&t.server), "{name}: fed whole");
    assert_eq!(messages, t.messages, "{name}: messages, fed whole");

    for split in 1..t.client.len() {
        let (a, b) = t.client.split_at(split);
        let (out, messages) = run(&[a, b]);
        assert_eq!(show(&out), show(&t.server), "{name}: split at {split}");
        assert_eq!(messages, t.messages, "{name}: messages, split at {split}");
    }

    let bytes: Vec<&[u8]> = t.client.chunks(1).collect();
    let (out, messages) = run(&bytes);
    assert_eq!(show(&out), show(&t.server), "{name}: byte by byte");
    assert_eq!(messages, t.messages, "{name}: messages, byte by byte");
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
