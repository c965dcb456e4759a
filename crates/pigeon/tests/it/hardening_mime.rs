//! Issue 14 (hardening) regression tests: hardening_mime.
//!
//! Finding 2: one 0.73 MB email to the MX port (10,000 nested multiparts, or 10,000 nested
//! message/rfc822) overflowed the stack at the end of DATA and took the whole server down.
//! Now MIME is parsed down to `message::mime::MAX_DEPTH` (64) levels and a multipart or
//! message part at that depth is one opaque part: such mail is accepted (250), stored byte for
//! byte, and every view of it answers (IMAP BODYSTRUCTURE and sections, POP3, the webmail),
//! over SMTP and IMAP APPEND alike, at 10,000 and 100,000 levels. HTML nested 100,000 levels
//! deep opens in the webmail too (its sanitiser took minutes per view on it).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use client::imap::{ImapClient, split_responses};
use imap_proto::token::{Token, tokenize_response};
use message::mime::MAX_DEPTH;
use test_support::{TestServer, strip_trace};
use tokio::io::AsyncReadExt;

use super::{deliver, exe};

const BOB: &str = "bob@localhost";
pub(crate) const PW: &str = "mime hardening";
const TIMEOUT: Duration = Duration::from_secs(120);

const HEAD: &str = "From: Mallory <mallory@evil.test>\r\nTo: bob@localhost\r\n\
    Date: Fri, 27 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n";

/// `n` nested multiparts around a text part (fixed-width boundaries: none begins another).
fn nested_multiparts(n: usize) -> Vec<u8> {
    let mut s = format!("{HEAD}Subject: {n} nested multiparts\r\n");
    for i in 0..n {
        s.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{i:06}\"\r\n\r\n--b{i:06}\r\n"
        ));
    }
    s.push_str("Content-Type: text/plain\r\n\r\nat the bottom\r\n");
    for i in (0..n).rev() {
        s.push_str(&format!("--b{i:06}--\r\n"));
    }
    s.into_bytes()
}

/// `n` nested message/rfc822 bodies around a text message.
fn nested_messages(n: usize) -> Vec<u8> {
    let mut s = format!("{HEAD}Subject: {n} nested messages\r\n");
    for _ in 0..n {
        s.push_str("Content-Type: message/rfc822\r\n\r\n");
    }
    s.push_str("Subject: inner\r\n\r\nat the bottom\r\n");
    s.into_bytes()
}

/// An HTML-only message whose HTML nests `n` elements deep.
fn deep_html(n: usize, tag: &str) -> Vec<u8> {
    format!(
        "{HEAD}Subject: {n} nested {tag}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
         {}deep html text{}\r\n",
        format!("<{tag}>").repeat(n),
        format!("</{tag}>").repeat(n)
    )
    .into_bytes()
}

pub(crate) fn server() -> TestServer {
    TestServer::with_config(
        exe(),
        "[auth]\nallow_plaintext_on_loopback = true\n",
        &[BOB],
        PW,
    )
}

async fn imap(server: &TestServer) -> ImapClient {
    let mut imap = ImapClient::connect(server.addr("imap"), TIMEOUT)
        .await
        .unwrap();
    imap.login(BOB, PW).await.unwrap();
    imap
}

/// The server is one process: had a message aborted it, no protocol would answer.
async fn every_protocol_answers(server: &TestServer) {
    for (protocol, greeting) in [("smtp", "220 "), ("submission", "220 "), ("pop3", "+OK")] {
        let mut stream = tokio::net::TcpStream::connect(server.addr(protocol))
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
    let mut imap = imap(server).await;
    imap.command("NOOP").await.unwrap();
    let reply = http(server.addr("http"), "GET", "/", &[], b"");
    assert_eq!(reply.status, 200, "webmail");
}

/// The items of the one FETCH response to `command`.
async fn fetch(imap: &mut ImapClient, command: &str) -> Vec<Token> {
    let response = imap.command(command).await.unwrap();
    let line = split_responses(&response.untagged)
        .into_iter()
        .find(|l| l.starts_with(b"* ") && l.windows(7).any(|w| w == b" FETCH "))
        .unwrap_or_else(|| panic!("no FETCH for {command}"));
    let at = line.windows(7).position(|w| w == b" FETCH ").unwrap() + 7;
    match tokenize_response(&line[at..]).unwrap().pop() {
        Some(Token::List(items)) => items,
        other => panic!("FETCH is not a list: {other:?}"),
    }
}

fn item<'a>(items: &'a [Token], name: &str) -> &'a Token {
    items
        .chunks(2)
        .find_map(|p| match p {
            [Token::Atom(n), v] if n.eq_ignore_ascii_case(name) => Some(v),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no {name} in the FETCH response"))
}

/// Flattens a structure (iteratively) into its strings, upper-cased.
fn strings(token: &Token) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![token];
    while let Some(t) = stack.pop() {
        match t {
            Token::List(items) => stack.extend(items.iter().rev()),
            Token::String(s) => out.push(String::from_utf8_lossy(s).to_ascii_uppercase()),
            _ => {}
        }
    }
    out
}

/// The deepest list nesting of a token (iteratively).
fn depth(token: &Token) -> usize {
    let mut max = 0;
    let mut stack = vec![(token, 0)];
    while let Some((t, d)) = stack.pop() {
        if let Token::List(items) = t {
            max = max.max(d + 1);
            stack.extend(items.iter().map(|i| (i, d + 1)));
        }
    }
    max
}

/// Every IMAP view of message `uid`, which must be `sent` byte for byte (after the trace
/// headers when it came over SMTP).
async fn imap_views(server: &TestServer, uid: u32, sent: &[u8], deep: bool) {
    let mut imap = imap(server).await;
    imap.command("EXAMINE INBOX").await.unwrap();
    let items = fetch(
        &mut imap,
        &format!("UID FETCH {uid} (RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY BODY.PEEK[])"),
    )
    .await;
    let Token::String(whole) = item(&items, "BODY[]") else {
        panic!("BODY[] is not a string");
    };
    assert!(strip_trace(whole) == sent, "BODY[] is the message as sent");
    let Token::Atom(size) = item(&items, "RFC822.SIZE") else {
        panic!("RFC822.SIZE");
    };
    assert_eq!(size.parse::<usize>().unwrap(), whole.len());
    assert!(matches!(item(&items, "ENVELOPE"), Token::List(_)));
    let structure = item(&items, "BODYSTRUCTURE");
    assert!(matches!(structure, Token::List(_)));
    assert!(matches!(item(&items, "BODY"), Token::List(_)));
    // One list level per MIME level, down to the limit (RFC 9051 §7.5.2).
    assert!(depth(structure) <= MAX_DEPTH + 4, "{}", depth(structure));
    if deep {
        // The part at the limit is opaque: shown as application/octet-stream.
        assert!(
            strings(structure)
                .windows(2)
                .any(|w| w == ["APPLICATION", "OCTET-STREAM"])
        );
        // A section past the limit does not exist (NIL), one at the limit is its raw bytes.
        let path = |n: usize| vec!["1"; n].join(".");
        let beyond = path(MAX_DEPTH + 2);
        let items = fetch(
            &mut imap,
            &format!("UID FETCH {uid} (BODY.PEEK[{beyond}] BODY.PEEK[1])"),
        )
        .await;
        assert_eq!(item(&items, &format!("BODY[{beyond}]")), &Token::Nil);
        let Token::String(first) = item(&items, "BODY[1]") else {
            panic!("BODY[1]");
        };
        assert!(!first.is_empty());
        let very_deep = path(10_000);
        let items = fetch(
            &mut imap,
            &format!("UID FETCH {uid} (BODY.PEEK[{very_deep}])"),
        )
        .await;
        assert_eq!(item(&items, &format!("BODY[{very_deep}]")), &Token::Nil);
    }
    // SEARCH reads the stored views and the index: it answers too.
    imap.command("UID SEARCH TEXT bottom").await.unwrap();
    imap.command("LOGOUT").await.unwrap();
}

/// An HTTP/1.1 answer on a new connection (`Connection: close`).
struct Reply {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(&raw)));
    let headers = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = headers[9..12].parse().unwrap();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let (mut data, mut out) = (&body[..], Vec::new());
        loop {
            let line = data.windows(2).position(|w| w == b"\r\n").unwrap();
            let size =
                usize::from_str_radix(std::str::from_utf8(&data[..line]).unwrap().trim(), 16)
                    .unwrap();
            data = &data[line + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(&data[..size]);
            data = &data[size + 2..];
        }
        body = out;
    }
    Reply {
        status,
        headers,
        body,
    }
}

/// A webmail login: the cookie and the CSRF token.
pub(crate) struct Browser {
    addr: SocketAddr,
    cookie: String,
    csrf: String,
    account: String,
}

impl Browser {
    pub(crate) fn login(server: &TestServer) -> Browser {
        let addr = server.addr("http");
        let body = serde_json::json!({ "username": BOB, "password": PW }).to_string();
        let reply = http(
            addr,
            "POST",
            "/api/login",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        let cookie = reply
            .headers
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .starts_with("set-cookie:")
                    .then(|| l[11..].trim().split(';').next().unwrap().to_string())
            })
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        Browser {
            addr,
            cookie,
            csrf: json["csrfToken"].as_str().unwrap().into(),
            account: json["accountId"].as_str().unwrap().into(),
        }
    }

    fn get(&self, path: &str) -> Reply {
        http(self.addr, "GET", path, &[("Cookie", &self.cookie)], b"")
    }

    /// Runs JMAP method calls; returns the responses by call id.
    fn api(
        &self,
        calls: serde_json::Value,
    ) -> std::collections::HashMap<String, serde_json::Value> {
        let body = serde_json::json!({ "methodCalls": calls }).to_string();
        let reply = http(
            self.addr,
            "POST",
            "/jmap/api",
            &[
                ("Cookie", &self.cookie),
                ("X-CSRF-Token", &self.csrf),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        );
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        json["methodResponses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r[2].as_str().unwrap().to_string(), r[1].clone()))
            .collect()
    }

    /// The INBOX's emails, newest first: (id, subject).
    pub(crate) fn inbox(&self) -> Vec<(String, String)> {
        let boxes = self.api(serde_json::json!([["Mailbox/get", {}, "m"]]));
        let inbox = boxes["m"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["role"] == "inbox")
            .unwrap()["id"]
            .clone();
        let r = self.api(serde_json::json!([
            ["Email/query", {"filter": {"inMailbox": inbox}}, "q"],
            ["Email/get", {"#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                "properties": ["subject"]}, "g"]
        ]));
        r["g"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["id"].as_str().unwrap().to_string(),
                    e["subject"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// Opens an email as the reading pane does (Email/get with its body), then every part.
    pub(crate) fn open(&self, id: &str) -> serde_json::Value {
        let r = self.api(serde_json::json!([["Email/get", {"ids": [id], "properties": ["subject", "body", "hasAttachment"]}, "g"]]));
        let email = r["g"]["list"][0].clone();
        assert!(email.is_object(), "{}", r["g"]);
        email
    }
}

/// Delivers every message over SMTP, then reads each back over IMAP and the webmail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_mime_over_smtp_is_accepted_stored_and_readable() {
    let server = server();
    let messages = [
        (nested_multiparts(10_000), true),
        (nested_messages(10_000), true),
        (nested_multiparts(100_000), true),
        (nested_messages(100_000), true),
        (nested_multiparts(40), false),
    ];
    for (i, (message, deep)) in messages.iter().enumerate() {
        // Our client fails the test on anything but 250 at the end of DATA.
        deliver(&server, "mallory@evil.test", BOB, message).await;
        every_protocol_answers(&server).await;
        let uid = i as u32 + 1;
        assert_eq!(server.uids(BOB).last(), Some(&uid));
        assert!(
            strip_trace(&server.stored(BOB, uid)) == message.as_slice(),
            "stored as sent"
        );
        imap_views(&server, uid, message, *deep).await;
    }
    let browser = Browser::login(&server);
    let inbox = browser.inbox();
    assert_eq!(inbox.len(), messages.len());
    for (id, subject) in &inbox {
        let email = browser.open(id);
        assert_eq!(&email["subject"], subject.as_str());
        let raw = browser.get(&format!("/jmap/raw/{id}"));
        assert_eq!(raw.status, 200, "{subject}");
        for a in email["body"]["attachments"].as_array().unwrap() {
            let blob = a["blobId"].as_str().unwrap();
            let path = format!("/jmap/download/{}/{blob}/x", browser.account);
            let reply = browser.get(&path);
            assert_eq!(reply.status, 200, "{subject}: {blob}");
        }
        // No HTML at the top of these: not found, not a failure.
        let html = browser.get(&format!("/jmap/html/{id}"));
        assert!(html.status < 500, "{subject}: {}", html.status);
    }
    // 40 levels are below the limit: the text at the bottom is the reading pane's text.
    let (id, _) = inbox
        .iter()
        .find(|(_, s)| s == "40 nested multiparts")
        .unwrap();
    let email = browser.open(id);
    assert_eq!(email["body"]["text"], "at the bottom");
    every_protocol_answers(&server).await;
}

/// The same messages through IMAP APPEND (RFC 9051 §6.3.12), big ones streamed to the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_mime_over_imap_append_is_stored_and_readable() {
    let server = server();
    let messages = [
        nested_multiparts(10_000),
        nested_messages(10_000),
        nested_multiparts(100_000),
        nested_messages(100_000),
    ];
    for (i, message) in messages.iter().enumerate() {
        let mut imap = imap(&server).await;
        let reply = imap.append("INBOX", "", message).await.unwrap();
        assert!(reply.status.contains("APPENDUID"), "{}", reply.status);
        imap.command("LOGOUT").await.unwrap();
        every_protocol_answers(&server).await;
        let uid = i as u32 + 1;
        assert!(server.stored(BOB, uid) == *message, "stored byte for byte");
        imap_views(&server, uid, message, true).await;
    }
    let browser = Browser::login(&server);
    for (id, _) in browser.inbox() {
        browser.open(&id);
    }
    every_protocol_answers(&server).await;
}

/// HTML nested 100,000 levels deep opens in the webmail, its text intact: the sanitiser's
/// HTML parser takes time in proportion to tags times depth, so this took minutes per view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_html_opens_in_the_webmail() {
    let server = server();
    for (n, tag) in [(100_000, "div"), (100_000, "b"), (30_000, "blockquote")] {
        deliver(&server, "mallory@evil.test", BOB, &deep_html(n, tag)).await;
    }
    let browser = Browser::login(&server);
    let inbox = browser.inbox();
    assert_eq!(inbox.len(), 3);
    for (id, subject) in &inbox {
        let email = browser.open(id);
        let text = email["body"]["text"].as_str().unwrap();
        assert!(text.contains("deep html text"), "{subject}: {text:.200}");
        let html = browser.get(&format!("/jmap/html/{id}"));
        assert_eq!(html.status, 200, "{subject}");
        assert!(
            html.body.windows(14).any(|w| w == b"deep html text"),
            "{subject}"
        );
    }
    every_protocol_answers(&server).await;
}

/// The user agent (`pigeon read`) lists, shows and saves deeply nested mail from the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_mime_reads_in_the_user_agent() {
    use crate::ua::{imap_reader, ok, ua};
    let server = server();
    let messages = [
        nested_multiparts(100_000),
        nested_messages(100_000),
        deep_html(100_000, "div"),
    ];
    for message in &messages {
        deliver(&server, "mallory@evil.test", BOB, message).await;
    }
    let home = imap_reader(&server);
    let list: serde_json::Value =
        serde_json::from_str(&ok(ua(home.path(), &["read", "--json", "list"], PW))).unwrap();
    assert_eq!(list.as_array().unwrap().len(), messages.len(), "{list}");
    for uid in 1..=messages.len() {
        let uid = uid.to_string();
        let shown: serde_json::Value =
            serde_json::from_str(&ok(ua(home.path(), &["read", "--json", "show", &uid], PW)))
                .unwrap();
        assert!(
            shown["subject"].as_str().unwrap().contains("nested"),
            "{shown:.300}"
        );
        let dir = tempfile::tempdir().unwrap();
        ok(ua(
            home.path(),
            &["read", "save", &uid, "--dir", dir.path().to_str().unwrap()],
            PW,
        ));
    }
    let shown = ok(ua(home.path(), &["read", "show", "3"], PW));
    assert!(shown.contains("deep html text"), "{shown:.300}");
    every_protocol_answers(&server).await;
}
