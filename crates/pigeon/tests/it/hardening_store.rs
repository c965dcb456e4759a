//! Issue 14 (hardening) regression tests for the store: the full-text indexer always makes
//! progress (finding 3), interrupted APPENDs are freed and reported, and EXPUNGE works on a
//! full disk (finding 11).

use std::io::Write;
use std::time::{Duration, Instant};

use client::imap::ImapClient;
use test_support::{LOOPBACK_LISTENERS, NO_DNS, TestServer, require_tool};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::exe;

const BOB: &str = "bob@localhost";
const PW: &str = "store secret";
/// The tests log in over plain IMAP on loopback.
const PLAIN_LOGIN: &str = "[auth]\nallow_plaintext_on_loopback = true\n";

fn text(out: Vec<u8>) -> String {
    String::from_utf8(out).expect("utf-8 output")
}

/// The number after `label: ` in `pigeon status`.
fn status_value(server: &TestServer, label: &str) -> u64 {
    let status = text(server.admin_ok(&["status"]));
    status
        .lines()
        .find_map(|l| l.strip_prefix(label)?.strip_prefix(": ")?.parse().ok())
        .unwrap_or_else(|| panic!("no {label:?} in {status}"))
}

/// Waits until nothing awaits indexing; panics after `limit`.
fn wait_indexed(server: &TestServer, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let backlog = status_value(server, "awaiting indexing");
        if backlog == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the index backlog does not drain ({backlog} left): {}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// UIDs that `UID SEARCH <criteria>` finds in bob's INBOX (RFC 9051 §6.4.4).
async fn search(server: &TestServer, criteria: &str) -> Vec<u32> {
    let mut imap = ImapClient::connect(server.addr("imap"), Duration::from_secs(60))
        .await
        .unwrap();
    imap.login(BOB, PW).await.unwrap();
    imap.command("SELECT INBOX").await.unwrap();
    let response = imap
        .command(&format!("UID SEARCH {criteria}"))
        .await
        .unwrap();
    let untagged = String::from_utf8_lossy(&response.untagged).into_owned();
    untagged
        .lines()
        .filter_map(|l| l.strip_prefix("* SEARCH"))
        .flat_map(|l| l.split_whitespace().map(|n| n.parse().unwrap()))
        .collect()
}

/// Finding 3: a message of 40 MB or more livelocked the indexer (each step loaded it whole and
/// ran out of its time budget before indexing it), for good and across restarts, holding the
/// write lock so admin commands failed with "the writer thread dropped a job". Now a message
/// is indexed by its first bytes (`store::index`), the backlog drains, later mail is indexed,
/// and admin commands work all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_mb_message_is_indexed_while_admin_commands_work() {
    let server = TestServer::with_config(exe(), PLAIN_LOGIN, &[BOB], PW);
    let mut big = format!(
        "From: alice@example.org\r\nTo: {BOB}\r\nSubject: fifty megabytes\r\n\r\n\
         wordnearthestart\r\n"
    )
    .into_bytes();
    let line = b"0123456789 abcdefghijklmnopqrstuvwxyz 0123456789 abcdefghijklmnopqrstuvwxyz\r\n";
    while big.len() < 50_000_000 {
        big.extend_from_slice(line);
    }
    crate::deliver(&server, "alice@example.org", BOB, &big).await;
    drop(big);
    // Admin commands are other processes writing to the same database while it indexes.
    server.admin_ok(&["user", "add", "carol@localhost", "--password", "pw"]);
    let status = text(server.admin_ok(&["status"]));
    assert!(status.contains("accounts: 2\n"), "{status}");
    server.admin_ok(&["alias", "add", "c@localhost", "carol@localhost"]);
    crate::deliver(
        &server,
        "alice@example.org",
        BOB,
        format!(
            "From: alice@example.org\r\nTo: {BOB}\r\nSubject: small\r\n\r\nwordofthesmallone\r\n"
        )
        .as_bytes(),
    )
    .await;
    wait_indexed(&server, Duration::from_secs(180));
    assert_eq!(status_value(&server, "could not be indexed"), 0);
    assert_eq!(search(&server, "BODY wordnearthestart").await, [1]);
    assert_eq!(search(&server, "BODY wordofthesmallone").await, [2]);
    assert_eq!(search(&server, "TEXT fifty").await, [1]);
    let verify = text(server.admin_ok(&["verify"]));
    assert!(verify.ends_with("ok\n"), "{verify}");
}

/// Finding 3: a message that fails to index is skipped and recorded (`status`, `verify`),
/// never retried in a loop, and does not hold up later mail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_fails_to_index_is_skipped_and_reported() {
    if !require_tool("python3") {
        return;
    }
    let mut server = TestServer::new(exe(), PLAIN_LOGIN);
    server.admin_ok(&["domain", "add", "localhost", "--no-dkim"]);
    server.admin_ok(&["user", "add", BOB, "--password", PW]);
    // The database refuses one message's index entry, as a damaged index would.
    let db = server.data_dir().join("pigeon.db");
    crate::python(
        "import sqlite3, sys\n\
         c = sqlite3.connect(sys.argv[1])\n\
         c.execute(\"CREATE TRIGGER poison BEFORE UPDATE OF search_rowid ON summaries \
         WHEN instr(OLD.header, 'X-Poison') > 0 BEGIN SELECT RAISE(ABORT, 'poisoned'); END\")\n\
         c.commit()\n",
        &[db.to_str().unwrap()],
    );
    server.start();
    let message = |extra: &str, word: &str| {
        format!("From: alice@example.org\r\nTo: {BOB}\r\nSubject: s\r\n{extra}\r\n{word}\r\n")
            .into_bytes()
    };
    crate::deliver(
        &server,
        "alice@example.org",
        BOB,
        &message("X-Poison: yes\r\n", "poisonword"),
    )
    .await;
    for _ in 0..2 {
        crate::deliver(&server, "alice@example.org", BOB, &message("", "goodword")).await;
    }
    wait_indexed(&server, Duration::from_secs(60));
    assert_eq!(status_value(&server, "could not be indexed"), 1);
    let verify = text(server.admin_ok(&["verify"]));
    assert!(
        verify.contains("\n1 messages could not be indexed") && verify.ends_with("ok\n"),
        "{verify}"
    );
    assert_eq!(search(&server, "BODY goodword").await, [2, 3]);
    // Later mail is indexed; the failure is not tried again.
    crate::deliver(&server, "alice@example.org", BOB, &message("", "laterword")).await;
    wait_indexed(&server, Duration::from_secs(60));
    assert_eq!(search(&server, "BODY laterword").await, [4]);
    assert_eq!(status_value(&server, "could not be indexed"), 1);
    assert!(
        server.log().matches("cannot be indexed").count() == 1,
        "logged once: {}",
        server.log()
    );
}

/// The `unfinished uploads` line of `pigeon verify`: (count, bytes), or None.
fn verify_uploads(server: &TestServer) -> Option<(u64, u64)> {
    let verify = text(server.admin_ok(&["verify"]));
    assert!(verify.ends_with("ok\n"), "{verify}");
    let line = verify.lines().find(|l| l.contains("unfinished uploads"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    Some((words[0].parse().unwrap(), words[4].parse().unwrap()))
}

/// Finding 11: an APPEND interrupted by a crash left its pieces in the store for a day
/// (263 MB after 7 crashes), and `verify` did not see them. Now `verify` reports unfinished
/// uploads and the server frees its previous run's when it starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_appends_are_reported_and_freed_at_restart() {
    let mut server = TestServer::with_config(exe(), PLAIN_LOGIN, &[BOB], PW);
    for _ in 0..2 {
        // A big APPEND (RFC 9051 §6.3.12) with a synchronizing literal, cut off part way.
        let mut imap = tokio::net::TcpStream::connect(server.addr("imap"))
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let _ = imap.read(&mut buf).await.unwrap();
        imap.write_all(
            format!("a LOGIN {BOB} \"{PW}\"\r\nb APPEND INBOX {{20000000}}\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut got = Vec::new();
        while !got.windows(3).any(|w| w == b"\n+ ") {
            let n = imap.read(&mut buf).await.unwrap();
            assert!(n > 0, "{}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        imap.write_all(&vec![b'x'; 3 << 20]).await.unwrap();
        // The pieces reach the store as they arrive.
        let deadline = Instant::now() + Duration::from_secs(30);
        while verify_uploads(&server).is_none_or(|(_, bytes)| bytes < 2 << 20) {
            assert!(Instant::now() < deadline, "the upload reaches the store");
            std::thread::sleep(Duration::from_millis(50));
        }
        server.kill();
        let (count, bytes) = verify_uploads(&server).expect("verify reports the upload");
        assert_eq!(count, 1);
        assert!((2 << 20..=3 << 20).contains(&bytes), "{bytes} bytes");
        server.start();
        assert_eq!(verify_uploads(&server), None, "freed at start");
    }
}

/// Text of pseudo-random words (what makes a full-text index big, and deleting from it
/// costly), `size` bytes.
fn words(seed: u64, size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 16);
    let mut x = seed.wrapping_mul(7919) + 1;
    while out.len() < size {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        for k in 0..(x >> 61) + 2 {
            out.push(b'a' + ((x >> ((k % 11) * 5 + 3)) % 26) as u8);
        }
        out.push(if x & 0xF == 0 { b'\n' } else { b' ' });
    }
    out
}

/// Sends one message to bob on the MX port; false if the server refused it.
async fn try_deliver(server: &TestServer, message: &[u8]) -> bool {
    let mut smtp = client::smtp::SmtpClient::connect(server.addr("smtp"), Duration::from_secs(60))
        .await
        .unwrap();
    smtp.ehlo("sender.test").await.unwrap();
    let sent = smtp
        .send("alice@example.org", &[BOB], message)
        .await
        .is_ok();
    let _ = smtp.quit().await;
    sent
}

/// Finding 11: on a full disk EXPUNGE failed (SQLite needs room even to delete, and deleting
/// an indexed text writes more than the delete), so users could not free space. Now new mail
/// is refused before the disk is full, a reserve file gives deletions room when something
/// else fills it, and index entries of deleted mail are deleted later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expunge_works_on_a_full_disk() {
    let mut server = TestServer::new(exe(), "");
    let Some(_disk) = test_support::Tmpfs::mount(server.data_dir(), "128m") else {
        return;
    };
    // The tmpfs hides the config file TestServer wrote: the same again.
    std::fs::write(
        server.data_dir().join("pigeon.toml"),
        format!("{LOOPBACK_LISTENERS}\n{NO_DNS}\n{PLAIN_LOGIN}"),
    )
    .unwrap();
    server.admin_ok(&["domain", "add", "localhost", "--no-dkim"]);
    server.admin_ok(&["user", "add", BOB, "--password", PW]);
    server.start();
    let message = |n: u64, size: usize| {
        let mut m =
            format!("From: alice@example.org\r\nTo: {BOB}\r\nSubject: {n}\r\n\r\n").into_bytes();
        m.extend(words(n, size));
        m.extend_from_slice(b"\r\n");
        m
    };
    for n in 0..20 {
        assert!(try_deliver(&server, &message(n, 512 << 10)).await);
    }
    wait_indexed(&server, Duration::from_secs(180));
    // Mail is refused (451, RFC 5321 §4.2.5) before the disk is full.
    let mut n = 20;
    while try_deliver(&server, &message(n, 2 << 20)).await {
        n += 1;
        assert!(n < 100, "deliveries stop before the disk is full");
    }
    // Something else fills the rest, to the last block.
    let filler = server.data_dir().join("filler");
    {
        let mut file = std::fs::File::create(&filler).unwrap();
        let block = vec![0xA5u8; 64 << 10];
        while file.write_all(&block).is_ok() {}
        while file.write_all(&[0u8; 512]).is_ok() {}
    }
    let mut imap = ImapClient::connect(server.addr("imap"), Duration::from_secs(60))
        .await
        .unwrap();
    imap.login(BOB, PW).await.unwrap();
    imap.command("SELECT INBOX").await.unwrap();
    imap.command("UID STORE 1:5 +FLAGS (\\Deleted)")
        .await
        .expect("STORE on a full disk");
    imap.command("EXPUNGE")
        .await
        .expect("EXPUNGE on a full disk");
    imap.command("STORE 1:* +FLAGS (\\Deleted)").await.unwrap();
    imap.command("EXPUNGE").await.unwrap();
    let status = imap.command("STATUS INBOX (MESSAGES)").await.unwrap();
    assert!(
        String::from_utf8_lossy(&status.untagged).contains("MESSAGES 0"),
        "{status:?}"
    );
    // With space again, mail comes in and is indexed.
    std::fs::remove_file(&filler).unwrap();
    assert!(try_deliver(&server, &message(1000, 1000)).await);
    wait_indexed(&server, Duration::from_secs(60));
    server.kill();
    let verify = text(server.admin_ok(&["verify"]));
    assert!(verify.ends_with("ok\n"), "{verify}");
}
