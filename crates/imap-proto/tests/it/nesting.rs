//! Issue 14, finding 1: nesting chosen by the client can never overflow the stack. Every
//! command family gets 10,000 and 100,000 levels of parentheses (and SEARCH also `NOT` and `OR`
//! chains, which nest without any parenthesis); each is answered `BAD` (RFC 9051 §7.1.5: a
//! command the server cannot parse), and the session goes on. All of it runs on a thread with
//! a small stack, so passing here leaves a wide margin on the server's worker threads.

use imap_proto::command::SearchKey;
use imap_proto::token::{MAX_DEPTH, TOO_DEEP, Token, tokenize, tokenize_response};
use imap_proto::{CommandBody, Config, Event, Machine};

/// Far less than any runtime's worker stack (tokio and std threads: 2 MiB).
const SMALL_STACK: usize = 256 * 1024;

fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(SMALL_STACK)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("no panic")
}

/// Feeds `command` (a full line, literals included) then `z NOOP`, with lines long enough
/// that the nesting, not the line length, is what the machine sees. Returns the output and
/// whether `z NOOP` came out as a command after it.
fn run(command: Vec<u8>) -> (String, Vec<Event>) {
    on_small_stack(move || {
        let mut machine = Machine::new(Config {
            max_line: 4 * 1024 * 1024,
            ..Config::default()
        });
        machine.feed(&command);
        machine.feed(b"z NOOP\r\n");
        let mut events = Vec::new();
        while let Some(event) = machine.next() {
            events.push(event);
        }
        (
            String::from_utf8_lossy(&machine.take_output()).into_owned(),
            events,
        )
    })
}

fn repeat(s: &str, n: usize) -> String {
    s.repeat(n)
}

/// Every command family with `n` levels of nesting.
fn deep_commands(n: usize) -> Vec<(&'static str, String)> {
    let open = repeat("(", n);
    let close = repeat(")", n);
    vec![
        ("unknown command", format!("a XYZZY {open}")),
        ("unknown command, closed", format!("a XYZZY {open}{close}")),
        ("CAPABILITY", format!("a CAPABILITY {open}")),
        ("LOGIN", format!("a LOGIN {open}x{close} pass")),
        ("ID", format!("a ID {open}\"name\" \"x\"{close}")),
        ("ID, unclosed", format!("a ID {open}")),
        (
            "AUTHENTICATE",
            format!("a AUTHENTICATE PLAIN {open}{close}"),
        ),
        ("SELECT", format!("a SELECT INBOX {open}CONDSTORE{close}")),
        ("EXAMINE", format!("a EXAMINE INBOX ({open}QRESYNC{close})")),
        ("CREATE", format!("a CREATE x (USE {open}\\Sent{close})")),
        ("LIST", format!("a LIST {open}SUBSCRIBED{close} \"\" *")),
        (
            "LIST RETURN",
            format!("a LIST \"\" * RETURN (STATUS {open}MESSAGES{close})"),
        ),
        ("STATUS", format!("a STATUS INBOX {open}MESSAGES{close}")),
        ("ENABLE", format!("a ENABLE {open}CONDSTORE{close}")),
        ("FETCH", format!("a FETCH 1:* {open}FLAGS{close}")),
        (
            "FETCH modifiers",
            format!("a UID FETCH 1:* FLAGS {open}CHANGEDSINCE 1{close}"),
        ),
        ("STORE", format!("a STORE 1 +FLAGS {open}\\Seen{close}")),
        (
            "STORE modifiers",
            format!("a STORE 1 {open}UNCHANGEDSINCE 1{close} FLAGS x"),
        ),
        ("COPY", format!("a COPY 1 {open}x{close}")),
        ("SEARCH parens", format!("a SEARCH {open}ALL{close}")),
        ("SEARCH parens, unclosed", format!("a SEARCH {open}")),
        (
            "SEARCH NOT chain",
            format!("a SEARCH {}ALL", repeat("NOT ", n)),
        ),
        (
            "SEARCH OR chain",
            format!("a SEARCH {}ALL{}", repeat("OR ", n), repeat(" ALL", n)),
        ),
        (
            "SEARCH OR chain, right-nested",
            format!("a SEARCH {}ALL", repeat("OR ALL ", n)),
        ),
        (
            "SEARCH NOT and parens",
            // n levels in all: NOT and the list each count.
            format!(
                "a SEARCH {}{}ALL{}",
                repeat("NOT (", n / 2),
                repeat("NOT ", n % 2),
                repeat(")", n / 2)
            ),
        ),
        (
            "SEARCH NOT without a key",
            format!("a SEARCH {}", repeat("NOT ", n)),
        ),
        (
            "SEARCH RETURN",
            format!("a SEARCH RETURN {open}MIN{close} ALL"),
        ),
        (
            "UID SEARCH parens",
            format!("a UID SEARCH {open}ALL{close}"),
        ),
        (
            "UID SEARCH NOT chain",
            format!("a UID SEARCH {}ALL", repeat("NOT ", n)),
        ),
        (
            "UID SEARCH OR chain",
            format!("a UID SEARCH {}ALL{}", repeat("OR ", n), repeat(" ALL", n)),
        ),
        (
            "APPEND flags",
            format!("a APPEND INBOX {open}\\Seen{close} {{3+}}\r\nabc"),
        ),
        (
            "APPEND flags, synchronizing",
            format!("a APPEND INBOX {open}\\Seen{close} {{3}}\r\nabc"),
        ),
    ]
}

fn assert_bad_and_usable(what: &str, n: usize, command: String) {
    let mut line = command.into_bytes();
    line.extend_from_slice(b"\r\n");
    let (out, events) = run(line);
    let answer = out
        .lines()
        .find(|l| l.starts_with("a "))
        .unwrap_or_default();
    assert!(
        answer.starts_with("a BAD ") && answer.contains("nested"),
        "{what} at {n}: {answer:?} (all output: {:.200})",
        out
    );
    assert!(
        matches!(events.last(), Some(Event::Command(c)) if c.tag == "z" && c.body == CommandBody::Noop),
        "{what} at {n}: the session goes on: {events:?}"
    );
    assert_eq!(events.len(), 1, "{what} at {n}: {events:?}");
}

#[test]
fn ten_thousand_levels_are_bad_in_every_command() {
    for (what, command) in deep_commands(10_000) {
        assert_bad_and_usable(what, 10_000, command);
    }
}

#[test]
fn a_hundred_thousand_levels_are_bad_in_every_command() {
    for (what, command) in deep_commands(100_000) {
        assert_bad_and_usable(what, 100_000, command);
    }
}

#[test]
fn one_level_past_the_limit_is_bad() {
    for (what, command) in deep_commands(MAX_DEPTH + 1) {
        assert_bad_and_usable(what, MAX_DEPTH + 1, command);
    }
}

/// Parses `SEARCH <keys>` through the machine, on the small stack.
fn search(keys: String) -> Result<SearchKey, String> {
    let (out, events) = run(format!("a SEARCH {keys}\r\n").into_bytes());
    match events.first() {
        Some(Event::Command(c)) if c.tag == "a" => match &c.body {
            CommandBody::Search { key, .. } => Ok(key.clone()),
            other => panic!("{other:?}"),
        },
        _ => Err(out),
    }
}

/// How deep a key nests: lists, NOT and OR each add a level.
fn depth(key: &SearchKey) -> usize {
    match key {
        SearchKey::Not(k) => 1 + depth(k),
        SearchKey::Or(a, b) => 1 + depth(a).max(depth(b)),
        SearchKey::And(keys) => 1 + keys.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[test]
fn legitimate_nesting_still_works() {
    // Twenty levels, the way clients build them: OR chains for "any of", NOT, parentheses.
    let key = search(format!(
        "{}FROM a{} SEEN",
        repeat("OR (NOT SUBJECT x) (", 20),
        repeat(")", 20)
    ))
    .unwrap_or_else(|out| panic!("{out}"));
    assert!(depth(&key) >= 20, "{key:?}");
    let key = search(format!("{}FLAGGED", repeat("OR SEEN ", 20))).unwrap();
    assert_eq!(depth(&key), 20, "{key:?}");
    // The limit itself, each way, is accepted.
    for keys in [
        format!("{}ALL{}", repeat("(", MAX_DEPTH), repeat(")", MAX_DEPTH)),
        format!("{}ALL", repeat("NOT ", MAX_DEPTH)),
        format!(
            "{}ALL{}",
            repeat("OR ", MAX_DEPTH),
            repeat(" ALL", MAX_DEPTH)
        ),
        format!("{}ALL", repeat("OR ALL ", MAX_DEPTH)),
        format!(
            "{}ALL{}",
            repeat("NOT (", MAX_DEPTH / 2),
            repeat(")", MAX_DEPTH / 2)
        ),
    ] {
        let key = search(keys.clone()).unwrap_or_else(|out| panic!("{keys:.40}: {out}"));
        assert!(depth(&key) <= MAX_DEPTH + 1, "{keys:.40}");
    }
    // Other commands at the limit, too.
    let (out, events) = run(format!(
        "a FETCH 1 {}FLAGS{}\r\n",
        repeat("(", MAX_DEPTH),
        repeat(")", MAX_DEPTH)
    )
    .into_bytes());
    assert!(!out.contains("nested"), "{out}");
    assert_eq!(
        events.len(),
        1,
        "FETCH answers its own BAD (nested lists are not items), then NOOP: {events:?} {out}"
    );
}

#[test]
fn the_texts_name_the_limit() {
    assert!(TOO_DEEP.contains(&MAX_DEPTH.to_string()));
    let (out, _) = run(format!("a SEARCH {}ALL\r\n", repeat("NOT ", MAX_DEPTH + 1)).into_bytes());
    assert!(out.contains(&MAX_DEPTH.to_string()), "{out}");
}

#[test]
fn lines_joined_by_literals_are_bounded_too() {
    // `{0}` literals join lines into one command; together they are bounded like one line
    // (64 KiB), so 100,000 parentheses over many lines are "Command too long", not a parse.
    let mut machine = Machine::new(Config::default());
    let mut out = String::new();
    for _ in 0..10 {
        machine.feed(format!("{}{{0+}}\r\n", repeat("(", 10_000)).as_bytes());
        while machine.next().is_some() {}
        out.push_str(&String::from_utf8_lossy(&machine.take_output()));
    }
    assert!(out.contains("BYE Command too long"), "{out}");
    // A synchronizing literal gets no `+` but a tagged BAD, and the session goes on.
    let mut machine = Machine::new(Config::default());
    let mut events = Vec::new();
    // The seventh line takes the command past 64 KiB.
    for _ in 0..7 {
        machine.feed(format!("a SEARCH {}{{0}}\r\n", repeat("(", 10_000)).as_bytes());
    }
    machine.feed(b"z NOOP\r\n");
    while let Some(e) = machine.next() {
        events.push(e);
    }
    let out = String::from_utf8_lossy(&machine.take_output()).into_owned();
    assert!(out.contains("a BAD Command too long"), "{out:.300}");
    assert!(
        matches!(events.last(), Some(Event::Command(c)) if c.tag == "z"),
        "{events:?}"
    );
}

#[test]
fn responses_read_past_deep_lists() {
    // A hostile server's BODYSTRUCTURE 100,000 levels deep: the client keeps the rest.
    on_small_stack(|| {
        let deep = format!(
            "(UID 7 BODYSTRUCTURE {}\"TEXT\"{} FLAGS (\\Seen))",
            repeat("(", 100_000),
            repeat(")", 100_000)
        );
        assert_eq!(
            tokenize(deep.as_bytes()),
            Err(imap_proto::token::TokenError(TOO_DEEP))
        );
        let tokens = tokenize_response(deep.as_bytes()).unwrap();
        let [Token::List(items)] = &tokens[..] else {
            panic!("{tokens:?}")
        };
        assert_eq!(items[0], Token::Atom("UID".into()));
        assert_eq!(items[4], Token::Atom("FLAGS".into()));
        assert_eq!(items[5], Token::List(vec![Token::Atom("\\Seen".into())]));
        // MAX_DEPTH levels are kept (the FETCH list and 99 of the body's), and the 101st
        // stands as an empty list for everything below it.
        let mut depth = 0;
        let mut t = &items[3];
        while let Token::List(inner) = t {
            depth += 1;
            match inner.first() {
                Some(next) => t = next,
                None => break,
            }
        }
        assert_eq!(
            depth + 1,
            MAX_DEPTH + 1,
            "the FETCH list plus the body's levels"
        );
    });
}
