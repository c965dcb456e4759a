//! Issue 14 (hardening) regression tests: hardening_imap.
//!
//! Finding 1: one IMAP line of nested parentheses (or `NOT NOT ...`, `OR OR ...` in SEARCH)
//! overflowed the stack and aborted the whole server, every protocol with it. Here every
//! command family gets deep nesting over TCP, before and after login: 10,000 levels, 100,000
//! levels, and as many as fit in one line. A line up to 64 KiB is parsed and must be answered
//! `BAD` for its nesting (RFC 9051 §7.1.5: a command the server cannot parse); a longer one is
//! `* BAD Line too long`; lines joined by literals are `Command too long`. After each, the
//! same connection goes on, and at the end the server's other protocols still answer.

use std::time::Duration;

use test_support::TestServer;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::{exe, fixtures};

const BOB: &str = "bob@localhost";
const PW: &str = "imap secret";
/// The server's longest command line, CRLF included (imap-proto's `Config::max_line`).
const MAX_LINE: usize = 64 * 1024;
/// The deepest nesting the server parses (imap-proto's `token::MAX_DEPTH`).
const MAX_DEPTH: usize = imap_proto::token::MAX_DEPTH;
const TIMEOUT: Duration = Duration::from_secs(60);

/// A raw IMAP connection: commands are written as given, answers read line by line.
struct Conn {
    stream: BufReader<TcpStream>,
}

impl Conn {
    async fn open(server: &TestServer) -> Conn {
        let stream = TcpStream::connect(server.addr("imap")).await.unwrap();
        let mut conn = Conn {
            stream: BufReader::new(stream),
        };
        let greeting = conn.line().await;
        assert!(greeting.starts_with("* OK"), "{greeting}");
        conn
    }

    async fn logged_in(server: &TestServer) -> Conn {
        let mut conn = Conn::open(server).await;
        let ok = conn.command("l", &format!("LOGIN {BOB} \"{PW}\"")).await;
        assert!(ok.starts_with("l OK"), "{ok}");
        let ok = conn.command("s", "SELECT INBOX").await;
        assert!(ok.starts_with("s OK"), "{ok}");
        conn
    }

    async fn send(&mut self, bytes: &[u8]) {
        tokio::time::timeout(TIMEOUT, self.stream.get_mut().write_all(bytes))
            .await
            .expect("write in time")
            .expect("the server is still there to write to");
    }

    /// One line, without CRLF; the test fails if the server closed the connection.
    async fn line(&mut self) -> String {
        let mut line = Vec::new();
        let n = tokio::time::timeout(TIMEOUT, self.stream.read_until(b'\n', &mut line))
            .await
            .expect("an answer in time")
            .expect("read");
        assert!(n > 0, "the server closed the connection");
        String::from_utf8_lossy(&line).trim_end().to_string()
    }

    /// Lines up to the one tagged `tag`: (untagged lines, tagged line).
    async fn until(&mut self, tag: &str) -> (Vec<String>, String) {
        let mut untagged = Vec::new();
        loop {
            let line = self.line().await;
            if line.starts_with(&format!("{tag} ")) {
                return (untagged, line);
            }
            untagged.push(line);
        }
    }

    async fn command(&mut self, tag: &str, command: &str) -> String {
        self.send(format!("{tag} {command}\r\n").as_bytes()).await;
        self.until(tag).await.1
    }

    /// The connection still works: NOOP is OK.
    async fn still_usable(&mut self, what: &str) {
        let ok = self.command("z", "NOOP").await;
        assert!(ok.starts_with("z OK"), "{what}: then NOOP: {ok}");
    }
}

/// One command family: the command text (after the tag) with `n` levels of nesting.
type Family = (&'static str, fn(usize) -> String);

fn open(n: usize) -> String {
    "(".repeat(n)
}

fn close(n: usize) -> String {
    ")".repeat(n)
}

/// Families answered before login (the parser runs before any state check).
const BEFORE_LOGIN: &[Family] = &[
    ("unknown command", |n| format!("XYZZY {}", open(n))),
    ("unknown command, closed", |n| {
        format!("XYZZY {}{}", open(n), close(n))
    }),
    ("CAPABILITY", |n| format!("CAPABILITY {}", open(n))),
    ("NOOP", |n| format!("NOOP {}x{}", open(n), close(n))),
    ("LOGIN", |n| format!("LOGIN {}x{} pass", open(n), close(n))),
    ("ID", |n| {
        format!("ID {}\"name\" \"x\"{}", open(n), close(n))
    }),
    ("ID, unclosed", |n| format!("ID {}", open(n))),
    ("AUTHENTICATE", |n| {
        format!("AUTHENTICATE PLAIN {}{}", open(n), close(n))
    }),
    ("STARTTLS", |n| format!("STARTTLS {}", open(n))),
    ("SEARCH before login", |n| {
        format!("SEARCH {}ALL", "NOT ".repeat(n))
    }),
];

/// Families of a logged-in session with a selected mailbox.
const AFTER_LOGIN: &[Family] = &[
    ("SELECT", |n| {
        format!("SELECT INBOX {}CONDSTORE{}", open(n), close(n))
    }),
    ("EXAMINE QRESYNC", |n| {
        format!("EXAMINE INBOX (QRESYNC {}1 1{})", open(n), close(n))
    }),
    ("CREATE", |n| {
        format!("CREATE x (USE {}\\Sent{})", open(n), close(n))
    }),
    ("LIST", |n| {
        format!("LIST {}SUBSCRIBED{} \"\" *", open(n), close(n))
    }),
    ("LIST RETURN", |n| {
        format!(
            "LIST \"\" * RETURN (STATUS {}MESSAGES{})",
            open(n),
            close(n)
        )
    }),
    ("LSUB", |n| format!("LSUB \"\" {}", open(n))),
    ("STATUS", |n| {
        format!("STATUS INBOX {}MESSAGES{}", open(n), close(n))
    }),
    ("ENABLE", |n| format!("ENABLE {}", open(n))),
    ("FETCH", |n| {
        format!("FETCH 1:* {}FLAGS{}", open(n), close(n))
    }),
    ("UID FETCH modifiers", |n| {
        format!("UID FETCH 1:* FLAGS {}CHANGEDSINCE 1{}", open(n), close(n))
    }),
    ("STORE", |n| {
        format!("STORE 1 +FLAGS {}\\Seen{}", open(n), close(n))
    }),
    ("UID STORE modifiers", |n| {
        format!(
            "UID STORE 1 {}UNCHANGEDSINCE 1{} FLAGS x",
            open(n),
            close(n)
        )
    }),
    ("COPY", |n| format!("COPY 1 {}x{}", open(n), close(n))),
    ("MOVE", |n| format!("MOVE 1 {}", open(n))),
    ("IDLE", |n| format!("IDLE {}", open(n))),
    ("SEARCH parens", |n| {
        format!("SEARCH {}ALL{}", open(n), close(n))
    }),
    ("SEARCH parens, unclosed", |n| {
        format!("SEARCH {}ALL", open(n))
    }),
    ("SEARCH NOT chain", |n| {
        format!("SEARCH {}ALL", "NOT ".repeat(n))
    }),
    ("SEARCH OR chain", |n| {
        format!("SEARCH {}ALL{}", "OR ".repeat(n), " ALL".repeat(n))
    }),
    ("SEARCH OR chain, right-nested", |n| {
        format!("SEARCH {}ALL", "OR ALL ".repeat(n))
    }),
    ("SEARCH NOT (", |n| {
        format!("SEARCH {}ALL{}", "NOT (".repeat(n / 2), close(n / 2))
    }),
    ("SEARCH RETURN", |n| {
        format!("SEARCH RETURN {}MIN{} ALL", open(n), close(n))
    }),
    ("UID SEARCH parens", |n| {
        format!("UID SEARCH {}ALL{}", open(n), close(n))
    }),
    ("UID SEARCH NOT chain", |n| {
        format!("UID SEARCH {}ALL", "NOT ".repeat(n))
    }),
    ("UID SEARCH OR chain", |n| {
        format!("UID SEARCH {}ALL{}", "OR ".repeat(n), " ALL".repeat(n))
    }),
    ("APPEND flags", |n| {
        format!("APPEND INBOX {}\\Seen{} {{3+}}\r\nabc", open(n), close(n))
    }),
];

/// The deepest `n` whose command still fits in one line: the parser, not the line bound,
/// must refuse it.
fn deepest_in_a_line(family: fn(usize) -> String) -> usize {
    let (mut lo, mut hi) = (0, MAX_LINE);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        // `a ` + command + CRLF, counting APPEND's 3 literal octets too (the lines of a
        // command together are bounded like one line).
        if 2 + family(mid).len() + 2 <= MAX_LINE {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

/// Sends `family` at depths 10,000, 100,000 and the deepest that fits in a line; each is BAD
/// (for its nesting, or as too long a line), and the connection goes on.
async fn refused_at_every_depth(conn: &mut Conn, (what, family): &Family) {
    let deepest = deepest_in_a_line(*family);
    assert!(deepest > 8_000, "{what}: {deepest} levels fit in a line");
    for n in [10_000, 100_000, deepest] {
        let command = family(n);
        let octets = 2 + command.len() + 2;
        conn.send(format!("a {command}\r\n").as_bytes()).await;
        conn.send(b"z NOOP\r\n").await;
        let (untagged, noop) = conn.until("z").await;
        assert!(noop.starts_with("z OK"), "{what} at {n}: then NOOP: {noop}");
        if octets > MAX_LINE {
            assert!(
                untagged.iter().any(|l| l == "* BAD Line too long"),
                "{what} at {n} ({octets} octets): {untagged:.300?}"
            );
        } else {
            let answer = untagged.iter().find(|l| l.starts_with("a "));
            assert!(
                answer.is_some_and(|a| a.starts_with("a BAD ") && a.contains("nested")),
                "{what} at {n}: {answer:?} in {untagged:.300?}"
            );
        }
    }
}

/// The server's other protocols answer (it is one process: an abort took them all).
async fn every_protocol_answers(server: &TestServer) {
    for (protocol, greeting) in [("smtp", "220 "), ("submission", "220 "), ("pop3", "+OK")] {
        let mut stream = TcpStream::connect(server.addr(protocol))
            .await
            .unwrap_or_else(|e| panic!("{protocol}: {e}"));
        let mut buf = [0u8; 512];
        let n = tokio::time::timeout(TIMEOUT, stream.read(&mut buf))
            .await
            .expect("greeting in time")
            .unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.starts_with(greeting), "{protocol}: {text}");
    }
    let mut conn = Conn::logged_in(server).await;
    conn.still_usable("a new IMAP session").await;
}

fn server() -> TestServer {
    TestServer::with_config(
        exe(),
        "[auth]\nallow_plaintext_on_loopback = true\n",
        &[BOB],
        PW,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_nesting_before_login_is_bad_and_harmless() {
    let server = server();
    // The reproducers, exactly: each one aborted the server.
    let mut conn = Conn::open(&server).await;
    for (command, levels) in [
        ("XYZZY", 7_000),
        ("ID", 8_000),
        ("CAPABILITY", 32_000),
        ("LOGIN", 32_000),
    ] {
        let answer = conn
            .command("a", &format!("{command} {}", open(levels)))
            .await;
        assert!(
            answer.starts_with("a BAD ") && answer.contains("nested"),
            "{command} with {levels} (: {answer}"
        );
    }
    conn.still_usable("after the issue's lines").await;
    // Every family at every depth, each on a fresh connection (the error budget is 50 BADs).
    for family in BEFORE_LOGIN {
        let mut conn = Conn::open(&server).await;
        refused_at_every_depth(&mut conn, family).await;
        // Still usable for what comes after: a login.
        let ok = conn.command("l", &format!("LOGIN {BOB} \"{PW}\"")).await;
        assert!(ok.starts_with("l OK"), "{}: then LOGIN: {ok}", family.0);
    }
    every_protocol_answers(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_nesting_after_login_is_bad_and_harmless() {
    let server = server();
    crate::deliver(
        &server,
        "alice@example.org",
        BOB,
        &fixtures::ascii(BOB, "deep"),
    )
    .await;
    for family in AFTER_LOGIN {
        let mut conn = Conn::logged_in(&server).await;
        refused_at_every_depth(&mut conn, family).await;
        let ok = conn.command("f", "FETCH 1 (FLAGS)").await;
        assert!(ok.starts_with("f OK"), "{}: then FETCH: {ok}", family.0);
    }
    // The SEARCH: 3,000 levels after login.
    let mut conn = Conn::logged_in(&server).await;
    let answer = conn
        .command("a", &format!("SEARCH {}ALL{}", open(3_000), close(3_000)))
        .await;
    assert!(answer.starts_with("a BAD "), "{answer}");
    conn.still_usable("after SEARCH 3,000 deep").await;
    every_protocol_answers(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_joined_by_literals_cannot_build_a_deeper_command() {
    // 100,000 parentheses in lines of 10,000 joined by empty synchronizing literals: the
    // lines of one command together are bounded like one line, so the seventh line is refused
    // (no `+` for its literal) and the session goes on.
    let server = server();
    for mut conn in [Conn::open(&server).await, Conn::logged_in(&server).await] {
        let mut refused = None;
        for i in 0..10 {
            let head = if i == 0 { "a SEARCH " } else { "" };
            conn.send(format!("{head}{}{{0}}\r\n", open(10_000)).as_bytes())
                .await;
            let answer = conn.line().await;
            if answer.starts_with('+') {
                continue;
            }
            refused = Some((i, answer));
            break;
        }
        let (i, answer) = refused.expect("refused before 100,000 levels");
        assert_eq!(
            i, 6,
            "the line that takes the command past 64 KiB: {answer}"
        );
        assert_eq!(answer, "a BAD Command too long");
        conn.still_usable("after the joined lines").await;
    }
    // With non-synchronizing literals the rest is already on its way: the server says BYE and
    // closes this connection, and only this one.
    let mut conn = Conn::open(&server).await;
    let mut joined = b"a SEARCH ".to_vec();
    for _ in 0..10 {
        joined.extend_from_slice(format!("{}{{0+}}\r\n", open(10_000)).as_bytes());
    }
    conn.send(&joined).await;
    assert_eq!(conn.line().await, "* BYE Command too long");
    every_protocol_answers(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legitimate_nesting_is_searched() {
    // Up to the limit, nesting is a search like any other: the server evaluates it.
    let server = server();
    for tag in ["deep", "other"] {
        crate::deliver(
            &server,
            "alice@example.org",
            BOB,
            &fixtures::ascii(BOB, tag),
        )
        .await;
    }
    let mut conn = Conn::logged_in(&server).await;
    let wanted = "SUBJECT deep";
    for (what, keys) in [
        ("20 NOTs", format!("{}{wanted}", "NOT ".repeat(20))),
        (
            "20 levels of OR and parentheses",
            format!(
                "{}{wanted}{}",
                "OR (SUBJECT nothing) (".repeat(20),
                close(20)
            ),
        ),
        (
            "the limit in parentheses",
            format!("{}{wanted}{}", open(MAX_DEPTH), close(MAX_DEPTH)),
        ),
        (
            "the limit in NOT (",
            format!(
                "{}{wanted}{}",
                "NOT (".repeat(MAX_DEPTH / 2),
                close(MAX_DEPTH / 2)
            ),
        ),
        (
            "the limit in ORs",
            format!(
                "{}{wanted}{}",
                "OR ".repeat(MAX_DEPTH),
                " SUBJECT nothing".repeat(MAX_DEPTH)
            ),
        ),
    ] {
        conn.send(format!("a SEARCH {keys}\r\n").as_bytes()).await;
        let (untagged, done) = conn.until("a").await;
        assert!(done.starts_with("a OK"), "{what}: {done}");
        assert_eq!(untagged, ["* SEARCH 1"], "{what}");
    }
    // One level more is BAD.
    let answer = conn
        .command(
            "b",
            &format!("SEARCH {}{wanted}", "NOT ".repeat(MAX_DEPTH + 1)),
        )
        .await;
    assert!(
        answer.starts_with("b BAD SEARCH nested too deeply"),
        "{answer}"
    );
    conn.still_usable("after the limit").await;
}
