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
use test_support::transcript::{Escapes, Transcript, assert_lines};

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
    // IMAP transcripts are raw (flags like `\Recent` have backslashes of their own).
    let transcript = Transcript::load(
        format!("{}/tests/data/{name}.txt", env!("CARGO_MANIFEST_DIR")),
        Escapes::Off,
        &[],
    );
    let client = transcript.client();
    let expected: Vec<String> = transcript
        .server_lines
        .iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    // Whole and byte by byte (not every split: each run needs a fresh store).
    let (_dir, store, auth) = setup().await;
    let whole = run(store, auth, &[&client]).await;
    assert_lines(name, "whole", &expected, &whole);
    if ORACLE.contains(&name) {
        oracle_decodes(name, whole.as_bytes());
    }
    let (_dir, store, auth) = setup().await;
    let bytes: Vec<&[u8]> = client.chunks(1).collect();
    let split = run(store, auth, &bytes).await;
    assert_lines(name, "byte by byte", &expected, &split);
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

/// Every command in every state the command table allows it in reaches its handler: none is
/// refused (`BAD`) or answered as a server bug (`[SERVERBUG]`, what the dispatcher says when
/// the table lets through a command it has no handler for in that state).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_runs_in_its_states() {
    let any = ["CAPABILITY", "NOOP", "CHECK", "ID NIL"];
    let authenticated = [
        "ENABLE CONDSTORE",
        "CREATE Box",
        "RENAME Box Box2",
        "SUBSCRIBE Box2",
        "UNSUBSCRIBE Box2",
        "DELETE Box2",
        "LIST \"\" *",
        "LSUB \"\" *",
        "NAMESPACE",
        "STATUS INBOX (MESSAGES)",
        "APPEND INBOX {5+}\r\nhello",
        "IDLE\r\nDONE",
    ];
    let selected = [
        "FETCH 1 FLAGS",
        "UID FETCH 1 FLAGS",
        "STORE 1 +FLAGS (\\Seen)",
        "UID STORE 1 -FLAGS (\\Seen)",
        "SEARCH ALL",
        "UID SEARCH ALL",
        "COPY 1 INBOX",
        "UID COPY 1 INBOX",
        "MOVE 1 INBOX",
        "UID MOVE 2 INBOX",
        "EXPUNGE",
        "UID EXPUNGE 1",
        "UNSELECT",
        "EXAMINE INBOX",
        "CLOSE",
    ];
    let mut lines: Vec<String> = any.iter().map(|c| c.to_string()).collect();
    lines.push("LOGIN bob@t.test pw".into());
    lines.extend(any.iter().chain(&authenticated).map(|c| c.to_string()));
    lines.push("SELECT INBOX".into());
    lines.extend(
        any.iter()
            .chain(&authenticated)
            .chain(&["SELECT INBOX"])
            .chain(&selected)
            .map(|c| c.to_string()),
    );
    lines.push("LOGOUT".into());
    let mut client = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        client.extend_from_slice(format!("t{i} {line}\r\n").as_bytes());
    }
    let (_dir, store, auth) = setup().await;
    let output = run(store, auth, &[&client]).await;
    for (i, line) in lines.iter().enumerate() {
        let done = output
            .lines()
            .find(|l| l.starts_with(&format!("t{i} ")))
            .unwrap_or_else(|| panic!("no completion for {line}:\n{output}"));
        assert!(
            done.starts_with(&format!("t{i} OK")) || done.starts_with(&format!("t{i} NO")),
            "{line}: {done}"
        );
        assert!(!done.contains("SERVERBUG"), "{line}: {done}");
    }
}
