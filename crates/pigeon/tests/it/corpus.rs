//! The MIME corpus (real-world, RFC and malformed messages, `tests/data/mime`) through the whole
//! server: each is delivered over SMTP and stored byte for byte; IMAP answers ENVELOPE,
//! BODYSTRUCTURE and body sections for it with consistent sizes; POP3 returns it; and
//! `pigeon read show` displays it without failing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use client::imap::{ImapClient, split_responses};
use client::pop3::Pop3Client;
use imap_proto::token::{Token, tokenize};
use test_support::{TestServer, strip_trace};

use crate::exe;

const BOB: &str = "bob@localhost";
const PW: &str = "corpus secret";

fn corpus() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/mime");
    let mut files: Vec<PathBuf> = ["legacy", "rfc", "malformed"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(root.join(dir)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    files
}

/// Bare LF as CRLF, what POP3 sends (a CR inside a line stays content).
fn crlf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 32);
    for (i, &b) in data.iter().enumerate() {
        if b == b'\n' && (i == 0 || data[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_corpus_message_survives_smtp_imap_pop3_and_the_user_agent() {
    let server = TestServer::with_config(
        exe(),
        "[auth]\nallow_plaintext_on_loopback = true\n",
        &[BOB],
        PW,
    );
    let files = corpus();
    assert!(files.len() >= 80, "the corpus is there: {}", files.len());

    let mut smtp = client::smtp::SmtpClient::connect(server.addr("smtp"), Duration::from_secs(20))
        .await
        .unwrap();
    smtp.ehlo("corpus.example.org").await.unwrap();
    let mut originals = Vec::new();
    for file in &files {
        let data = std::fs::read(file).unwrap();
        smtp.send("sender@example.org", &[BOB], &data)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        originals.push(data);
    }
    smtp.quit().await.unwrap();

    // Stored exactly (a message not ending in a line break gets one: SMTP needs it), with
    // canonical line ends: the bare LFs of the corpus's LF-only files became CRLF on the way
    // (RFC 5321 §2.3.8; our client sends them so, and the server would make them so).
    let uids = server.uids(BOB);
    assert_eq!(uids.len(), files.len());
    let mut stored_all = Vec::new();
    for ((uid, original), file) in uids.iter().zip(&originals).zip(&files) {
        let original = &smtp_proto::canonical::canonicalize(original).into_owned();
        let stored = server.stored(BOB, *uid);
        // Our trace headers, then the message as sent (some carry their own Return-Path:).
        let trace = stored.len() - strip_trace(&stored).len();
        assert!(trace > 0, "{}: trace headers", file.display());
        assert!(
            stored.ends_with(original)
                || stored.ends_with(&[original.as_slice(), b"\r\n"].concat()),
            "{} is stored as sent",
            file.display()
        );
        stored_all.push(stored);
    }

    // IMAP: every view of every message answers, with sizes that agree.
    let mut imap = ImapClient::connect(server.addr("imap"), Duration::from_secs(20))
        .await
        .unwrap();
    imap.login(BOB, PW).await.unwrap();
    imap.command("EXAMINE INBOX").await.unwrap();
    for ((uid, stored), file) in uids.iter().zip(&stored_all).zip(&files) {
        let response = imap
            .command(&format!(
                "UID FETCH {uid} (RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY.PEEK[] BODY.PEEK[HEADER] BODY.PEEK[TEXT] BODY.PEEK[1] BODY.PEEK[1.MIME])"
            ))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let lines = split_responses(&response.untagged);
        let fetch = lines
            .iter()
            .find_map(|l| {
                l.strip_prefix(b"* ")
                    .and_then(|l| l.splitn(2, |&b| b == b' ').nth(1))
            })
            .and_then(|l| l.strip_prefix(b"FETCH "))
            .unwrap_or_else(|| panic!("{}: no FETCH response", file.display()));
        let Some(Token::List(items)) = tokenize(fetch)
            .unwrap_or_else(|e| panic!("{}: unreadable FETCH response: {e:?}", file.display()))
            .pop()
        else {
            panic!("{}: FETCH is not a list", file.display());
        };
        let value = |name: &str| {
            items
                .chunks(2)
                .find_map(|p| match p {
                    [Token::Atom(n), v] if n.eq_ignore_ascii_case(name) => Some(v.clone()),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("{}: no {name}", file.display()))
        };
        let Token::Atom(size) = value("RFC822.SIZE") else {
            panic!("{}: RFC822.SIZE", file.display())
        };
        let Token::String(whole) = value("BODY[]") else {
            panic!("{}: BODY[]", file.display())
        };
        assert_eq!(
            whole,
            *stored,
            "{}: BODY[] is the stored message",
            file.display()
        );
        assert_eq!(
            size.parse::<usize>().unwrap(),
            whole.len(),
            "{}",
            file.display()
        );
        let (Token::String(header), Token::String(text)) =
            (value("BODY[HEADER]"), value("BODY[TEXT]"))
        else {
            panic!("{}: HEADER/TEXT", file.display())
        };
        assert_eq!(
            [header.as_slice(), text.as_slice()].concat(),
            whole,
            "{}: HEADER and TEXT make the whole",
            file.display()
        );
        assert!(
            matches!(value("BODYSTRUCTURE"), Token::List(_)),
            "{}",
            file.display()
        );
        assert!(
            matches!(value("ENVELOPE"), Token::List(_)),
            "{}",
            file.display()
        );
    }
    let _ = imap.command("LOGOUT").await;

    // POP3 sends each with CRLF line ends.
    let mut pop3 = Pop3Client::connect(server.addr("pop3"), Duration::from_secs(20))
        .await
        .unwrap();
    pop3.login(BOB, PW).await.unwrap();
    for (i, (stored, file)) in stored_all.iter().zip(&files).enumerate() {
        let retrieved = pop3.retr(i + 1).await.unwrap();
        assert_eq!(retrieved, crlf(stored), "{}: POP3 RETR", file.display());
    }
    pop3.quit().await.unwrap();

    // The user agent shows every one.
    let home = crate::ua::imap_reader(&server);
    let run = |args: &[&str]| crate::ua::ua(home.path(), args, PW);
    for (uid, file) in uids.iter().zip(&files) {
        let out = run(&["read", "--json", "show", &uid.to_string()]);
        assert!(
            out.status.success(),
            "{}: pigeon read show: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let shown: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!(shown["uid"], *uid);
    }
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The one FETCH response's items.
fn fetched_items(untagged: &[u8]) -> Vec<Token> {
    split_responses(untagged)
        .iter()
        .find_map(|l| {
            let rest = l.strip_prefix(b"* ")?;
            let rest = &rest[rest.iter().position(|&b| b == b' ')? + 1..];
            match tokenize(rest.strip_prefix(b"FETCH ")?).ok()?.pop()? {
                Token::List(items) => Some(items),
                _ => None,
            }
        })
        .unwrap_or_default()
}

/// Generated messages (`tests/data/generated`, made by its `generate.py`): text in a dozen
/// charsets, quoted-printable and base64, nested multiparts, inline images, forwarded messages,
/// RFC 2231 and encoded-word names, and malformed ones. Every leaf part fetched over IMAP with
/// BINARY[part] has exactly the decoded bytes the generator recorded, and `pigeon read show`
/// gives the text decoded to UTF-8.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_messages_come_back_part_for_part() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/generated");
    let expected: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&std::fs::read(root.join("expected.json")).unwrap()).unwrap();
    assert!(expected.len() >= 40);
    let server = TestServer::with_config(
        exe(),
        "[auth]\nallow_plaintext_on_loopback = true\n",
        &[BOB],
        PW,
    );
    let mut smtp = client::smtp::SmtpClient::connect(server.addr("smtp"), Duration::from_secs(20))
        .await
        .unwrap();
    smtp.ehlo("gen.example.org").await.unwrap();
    let names: Vec<&String> = expected.keys().collect();
    for name in &names {
        let data = std::fs::read(root.join(name)).unwrap();
        smtp.send("sender@example.org", &[BOB], &data)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    smtp.quit().await.unwrap();
    let uids = server.uids(BOB);
    assert_eq!(uids.len(), names.len());

    let mut imap = ImapClient::connect(server.addr("imap"), Duration::from_secs(20))
        .await
        .unwrap();
    imap.login(BOB, PW).await.unwrap();
    imap.command("EXAMINE INBOX").await.unwrap();
    let mut checked = 0;
    for (uid, name) in uids.iter().zip(&names) {
        let parts = expected[*name]["parts"].as_object().unwrap();
        for (part, sha) in parts {
            let response = imap
                .command(&format!("UID FETCH {uid} (BINARY.PEEK[{part}])"))
                .await
                .unwrap_or_else(|e| panic!("{name} part {part}: {e}"));
            let items = fetched_items(&response.untagged);
            let data = items
                .chunks(2)
                .find_map(|p| match p {
                    [Token::Atom(n), Token::String(d)] if n.starts_with("BINARY[") => {
                        Some(d.clone())
                    }
                    _ => None,
                })
                .unwrap_or_else(|| panic!("{name} part {part}: no BINARY data"));
            assert_eq!(
                sha256_hex(&data),
                sha.as_str().unwrap(),
                "{name} part {part}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 45, "{checked} parts checked");
    let _ = imap.command("LOGOUT").await;

    let home = crate::ua::imap_reader(&server);
    let run = |args: &[&str]| crate::ua::ua(home.path(), args, PW);
    for (uid, name) in uids.iter().zip(&names) {
        let out = run(&["read", "--json", "show", &uid.to_string()]);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        // Encoded words across charsets, and RFC 2231 continued, encoded file names.
        if name.as_str() == "h00.eml" {
            assert_eq!(shown["subject"], "split café 电子");
        }
        if name.as_str() == "h03.eml" {
            assert_eq!(shown["attachments"][0]["name"], "年度报告.pdf");
        }
        if let Some(text) = expected[*name]["text"].as_str() {
            assert_eq!(
                shown["text"]
                    .as_str()
                    .unwrap()
                    .replace("\r\n", "\n")
                    .trim_end(),
                text.trim_end(),
                "{name}: the text, decoded to UTF-8"
            );
        }
    }
}

/// A 30 MB attachment goes in through submission's SIZE check and comes back byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thirty_megabyte_attachment_round_trips() {
    let server = TestServer::with_config(
        exe(),
        "[auth]\nallow_plaintext_on_loopback = true\n",
        &[BOB],
        PW,
    );
    let data: Vec<u8> = (0..30 * 1024 * 1024u32)
        .map(|i| (i ^ (i >> 11) ^ (i >> 19)) as u8)
        .collect();
    let files = tempfile::tempdir().unwrap();
    let path = files.path().join("big.bin");
    std::fs::write(&path, &data).unwrap();
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(exe())
            .args(args)
            .env("PIGEON_HOME", home.path())
            .env("PIGEON_PASSWORD", PW)
            .output()
            .unwrap()
    };
    assert!(
        run(&[
            "account",
            "add",
            "bob",
            "--email",
            BOB,
            "--host",
            "localhost",
            "--submission-port",
            &server.addr("submission").port().to_string(),
            "--imap-port",
            &server.addr("imap+tls").port().to_string(),
            "--insecure",
        ])
        .status
        .success()
    );
    let out = run(&[
        "send",
        "--to",
        BOB,
        "--subject",
        "big",
        "--body",
        "30 MB",
        "--attach",
        path.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let saved = files.path().join("saved");
    let out = run(&["read", "save", "1", "--dir", saved.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let back = std::fs::read(saved.join("big.bin")).unwrap();
    assert!(back == data, "30 MB back byte for byte");
}
