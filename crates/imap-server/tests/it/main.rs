//! IMAP session transcripts against a real store (SQLite in a temp dir), driven through the
//! same `net::Session` interface the connection driver uses. Each transcript is fed whole and
//! then one byte at a time, and the server's bytes must match.
//!
//! `C:` lines are sent with CRLF; `S:` lines are expected, where `{}` in a line matches any
//! run of characters (UIDVALIDITY, dates). The mailbox starts with the three messages below,
//! for bob@t.test, password "pw".

use std::sync::Arc;

use net::{ConnInfo, Protocol, Session};
use store::{Address, Delivery, Secrets, Store};

const MESSAGES: [&str; 3] = [
    "From: Alice <alice@a.test>\r\nTo: bob@t.test\r\nSubject: first\r\nDate: Mon, 7 Feb 1994 21:52:25 -0800\r\nMessage-ID: <1@a.test>\r\n\r\nhello one\r\n",
    "From: carol@c.test\r\nSubject: second\r\n\r\nzebra text\r\n",
    "From: Alice <alice@a.test>\r\nSubject: third\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\npart one\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--b--\r\n",
];

async fn setup() -> (tempfile::TempDir, Arc<dyn Store>, Arc<auth::Authenticator>) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(store_sqlite::SqliteStore::open(dir.path()).unwrap());
    store.add_domain("t.test").await.unwrap();
    let secrets = Secrets {
        password_hash: sasl::hash_password("pw", &[3; 16]).unwrap(),
        scram: None,
    };
    let bob = store
        .create_account(&Address::parse("bob@t.test").unwrap(), &secrets)
        .await
        .unwrap();
    for (i, m) in MESSAGES.iter().enumerate() {
        store
            .deliver(Delivery {
                data: m.as_bytes().to_vec(),
                recipients: vec![bob],
                internal_date: 1_700_000_000 + i as i64,
                summary: Some(message::summary::summarize(m.as_bytes())),
            })
            .await
            .unwrap();
    }
    let auth = Arc::new(auth::Authenticator::new(
        store.clone(),
        sasl::ThrottleConfig::default(),
        [1; 32],
    ));
    (dir, store, auth)
}

/// Transcripts whose responses imap-codec knows: not `search`, as imap-codec has no ESEARCH
/// (imap-codec#379).
const ORACLE: [&str; 3] = ["select_fetch", "mailboxes", "errors"];

async fn run(store: Arc<dyn Store>, auth: Arc<auth::Authenticator>, chunks: &[&[u8]]) -> String {
    let imap = imap_server::Imap::new(
        store,
        auth,
        imap_server::Settings {
            allow_plaintext_on_loopback: true,
            max_append: 1 << 20,
            idle_timeout: std::time::Duration::from_secs(1800),
            preauth_timeout: std::time::Duration::from_secs(60),
        },
    );
    let mut session = imap.session(ConnInfo {
        id: 1,
        peer: "127.0.0.1:40000".parse().unwrap(),
        local: "127.0.0.1:143".parse().unwrap(),
        starttls_available: false,
    });
    let mut out = Vec::new();
    session.greet(&mut out);
    for chunk in chunks {
        if session.input(chunk, &mut out).await == net::Flow::Close {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Matches `actual` against an expected line with `{}` wildcards.
fn line_matches(expected: &str, actual: &str) -> bool {
    let parts: Vec<&str> = expected.split("{}").collect();
    if parts.len() == 1 {
        return expected == actual;
    }
    let mut rest = actual;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(pos) = rest.find(part) else {
                return false;
            };
            rest = &rest[pos + part.len()..];
        }
    }
    true
}

#[track_caller]
fn compare(name: &str, mode: &str, expected: &[String], actual: &str) {
    let actual: Vec<&str> = actual.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(
        actual.len(),
        expected.len(),
        "{name} ({mode}): line count\nactual:\n{}",
        actual.join("\n")
    );
    for (e, a) in expected.iter().zip(&actual) {
        assert!(
            line_matches(e, a),
            "{name} ({mode}):\nexpected {e}\nactual   {a}\nall:\n{}",
            actual.join("\n")
        );
    }
}

/// imap-codec, an independent IMAP implementation, must decode everything the server sent
/// (DEPS.md §4: used as a test oracle).
fn oracle_decodes(name: &str, output: &[u8]) {
    use imap_codec::decode::Decoder;
    let (mut rest, _) = imap_codec::GreetingCodec::default()
        .decode(output)
        .unwrap_or_else(|e| panic!("{name}: greeting does not decode: {e:?}"));
    while !rest.is_empty() {
        match imap_codec::ResponseCodec::default().decode(rest) {
            Ok((remaining, _)) => rest = remaining,
            Err(e) => {
                let line_end = rest
                    .iter()
                    .position(|&b| b == b'\n')
                    .map(|p| p + 1)
                    .unwrap_or(rest.len());
                panic!(
                    "{name}: imap-codec cannot decode {:?}: {e:?}",
                    String::from_utf8_lossy(&rest[..line_end])
                );
            }
        }
    }
}

async fn check(name: &str) {
    let text = std::fs::read_to_string(format!(
        "{}/tests/data/{name}.txt",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let mut client = Vec::new();
    let mut expected = Vec::new();
    for line in text.lines() {
        if let Some(c) = line.strip_prefix("C: ") {
            client.extend_from_slice(c.as_bytes());
            client.extend_from_slice(b"\r\n");
        } else if let Some(s) = line.strip_prefix("S: ") {
            expected.push(s.to_string());
        }
    }
    let (_dir, store, auth) = setup().await;
    let whole = run(store, auth, &[&client]).await;
    compare(name, "whole", &expected, &whole);
    if ORACLE.contains(&name) {
        oracle_decodes(name, whole.as_bytes());
    }
    let (_dir, store, auth) = setup().await;
    let bytes: Vec<&[u8]> = client.chunks(1).collect();
    let split = run(store, auth, &bytes).await;
    compare(name, "byte by byte", &expected, &split);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_fetch_store_expunge() {
    check("select_fetch").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_and_esearch() {
    check("search").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailboxes_list_status_copy_move() {
    check("mailboxes").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_and_states() {
    check("errors").await;
}
