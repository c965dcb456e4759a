//! Transcript tests for the POP3 machine (`test_support::transcript`: `S:` server lines, `C:`
//! client lines, `c:` raw client bytes, escapes). Fed whole, split in two at every offset
//! (never across an STLS line, a sync point), and byte by byte.
//!
//! A transcript starting with `# mode: tls-required` runs with STLS offered and plaintext login
//! refused; otherwise plaintext login is allowed. Logins: mrose/secret (maildrop of two
//! messages), busy/secret (maildrop in use); anything else fails.

use pop3_proto::{Config, Entry, Event, Machine};
use test_support::transcript::{Escapes, Transcript};

const MESSAGE_1: &[u8] = b"Subject: one\r\n\r\nfirst message\r\n.hidden dot\r\n";
const MESSAGE_2: &[u8] = b"Subject: two\r\nFrom: x@y\r\n\r\nline 1\r\nline 2\r\nline 3\r\n";

fn config(tls_required: bool) -> Config {
    Config {
        stls: tls_required,
        plaintext_login: !tls_required,
        mechanisms: vec!["PLAIN".into(), "LOGIN".into()],
        ..Config::default()
    }
}

fn maildrop() -> Vec<Entry> {
    vec![
        Entry {
            uid: 7,
            size: MESSAGE_1.len() as u64,
            uidl: "1700000000.7".into(),
        },
        Entry {
            uid: 9,
            size: MESSAGE_2.len() as u64,
            uidl: "1700000000.9".into(),
        },
    ]
}

fn check_login(machine: &mut Machine, user: &str, password: &str) {
    match (user, password) {
        ("mrose", "secret") => machine.login_ok(maildrop()),
        ("busy", "secret") => machine.in_use(),
        _ => machine.login_failed("invalid user name or password"),
    }
}

fn answer(
    machine: &mut Machine,
    exchange: &mut Option<sasl::ServerExchange>,
    outcome: sasl::Outcome,
) {
    let outcome = match outcome {
        sasl::Outcome::CheckPassword {
            username, password, ..
        } => {
            let ok = username == "mrose" && password == "secret";
            exchange.as_mut().unwrap().password_checked(ok)
        }
        other => other,
    };
    match outcome {
        sasl::Outcome::Challenge(c) => machine.auth_challenge(&c),
        sasl::Outcome::Success { .. } => machine.login_ok(maildrop()),
        _ => machine.login_failed("authentication failed"),
    }
}

fn run(tls_required: bool, chunks: &[&[u8]]) -> (String, Vec<Vec<u32>>) {
    let mut machine = Machine::new(config(tls_required));
    machine.greet();
    let mut out = machine.take_output();
    let mut updates = Vec::new();
    let mut exchange = None;
    'chunks: for chunk in chunks {
        machine.feed(chunk);
        while let Some(event) = machine.next() {
            match event {
                Event::Login { user, password } => check_login(&mut machine, &user, &password),
                Event::Auth { mechanism, initial } => {
                    let mut ex = sasl::ServerExchange::new(
                        sasl::Mechanism::parse(&mechanism).unwrap(),
                        Default::default(),
                        false,
                        b"n",
                    );
                    let outcome = ex.start(initial.as_deref());
                    exchange = Some(ex);
                    answer(&mut machine, &mut exchange, outcome);
                }
                Event::AuthResponse(data) => {
                    let outcome = exchange.as_mut().unwrap().step(&data);
                    answer(&mut machine, &mut exchange, outcome);
                }
                Event::Retrieve { uid, top } => {
                    let data = if uid == 7 { MESSAGE_1 } else { MESSAGE_2 };
                    machine.message(data, top);
                }
                Event::Update { deleted } => {
                    updates.push(deleted);
                    machine.update_done(true);
                }
                Event::StartTls => {
                    out.extend(machine.take_output());
                    machine.tls_started();
                }
                Event::Close => {
                    out.extend(machine.take_output());
                    break 'chunks;
                }
            }
        }
        out.extend(machine.take_output());
    }
    (String::from_utf8(out).unwrap(), updates)
}

#[track_caller]
fn check(name: &str, expected_updates: &[&[u32]]) {
    let t = Transcript::load(
        format!("{}/tests/data/{name}.txt", env!("CARGO_MANIFEST_DIR")),
        Escapes::On,
        &["STLS"],
    );
    let tls_required = t.option("mode") == Some("tls-required");
    let server = String::from_utf8(t.server()).unwrap();
    let updates: Vec<Vec<u32>> = expected_updates.iter().map(|u| u.to_vec()).collect();
    t.assert_every_chunking(name, &(server, updates), |chunks| run(tls_required, chunks));
}

#[test]
fn rfc1939_example_session() {
    check("rfc1939_session", &[&[7, 9]]);
}

#[test]
fn errors_never_crash() {
    check("errors", &[]);
}

#[test]
fn download_and_keep() {
    check("keep", &[&[]]);
}

#[test]
fn stls_required_before_login() {
    check("stls", &[]);
}

#[test]
fn sasl_auth() {
    check("auth", &[]);
}

#[test]
fn pipelined_commands() {
    check("pipelining", &[&[9]]);
}

/// RFC 2595 §4: plaintext pipelined after STLS must not be executed inside TLS.
#[test]
fn stls_discards_pipelined_plaintext() {
    let mut m = Machine::new(config(true));
    m.greet();
    m.take_output();
    m.feed(b"STLS\r\nUSER mrose\r\nPASS secret\r\n");
    assert_eq!(m.next(), Some(Event::StartTls));
    m.tls_started();
    assert_eq!(m.next(), None);
    assert_eq!(
        String::from_utf8(m.take_output()).unwrap(),
        "+OK pigeon POP3 server ready\r\n"
            .replace("pigeon POP3 server ready", "begin TLS negotiation")
    );
    m.feed(b"PASS secret\r\n");
    assert_eq!(m.next(), None);
    assert_eq!(
        String::from_utf8(m.take_output()).unwrap(),
        "-ERR USER first\r\n"
    );
}

#[test]
fn timeout_closes_without_update() {
    let mut m = Machine::new(config(false));
    m.greet();
    m.feed(b"USER mrose\r\nPASS secret\r\n");
    let Some(Event::Login { .. }) = m.next() else {
        panic!()
    };
    m.login_ok(maildrop());
    m.feed(b"DELE 1\r\n");
    assert_eq!(m.next(), None);
    m.timeout();
    assert_eq!(
        m.next(),
        Some(Event::Close),
        "no Update: a dropped session deletes nothing"
    );
    assert!(
        String::from_utf8(m.take_output())
            .unwrap()
            .ends_with("-ERR autologout: idle too long\r\n")
    );
}
