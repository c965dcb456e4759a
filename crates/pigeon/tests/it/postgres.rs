//! Several `pigeon serve` nodes on one PostgreSQL database (a throwaway cluster started by the
//! test): mail taken on one node is read on another at once, IDLE hears other nodes, UIDs stay
//! dense and ascending under concurrent deliveries, the queue is shared without double
//! delivery, and a SIGKILLed node loses nothing it acknowledged.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::prelude::*;

use client::imap::ImapClient;
use client::smtp::SmtpClient;
use store::Address;
use store_postgres::PostgresStore;
use test_support::{PgCluster, TestServer};

use crate::{deliver, exe};

const PW: &str = "many nodes";
const BOB: &str = "bob@localhost";
const ALICE: &str = "alice@localhost";

/// A node on the database at `url`; not started.
fn node(url: &str, extra: &str) -> TestServer {
    TestServer::new(
        exe(),
        &format!(
            "[auth]\nallow_plaintext_on_loopback = true\n\n[store]\nbackend = \"postgres\"\n\
             url = \"{url}\"\npool_size = 8\n\n{extra}"
        ),
    )
}

/// A cluster, a database with domain `localhost`, alice and bob, and `n` started nodes.
fn nodes(n: usize, extra: &str) -> Option<(PgCluster, String, Vec<TestServer>)> {
    let cluster = PgCluster::start()?;
    let url = cluster.create_database();
    let mut nodes: Vec<TestServer> = (0..n).map(|_| node(&url, extra)).collect();
    nodes[0].admin_ok(&["domain", "add", "localhost", "--no-dkim"]);
    for user in [ALICE, BOB] {
        nodes[0].admin_ok(&["user", "add", user, "--password", PW]);
    }
    for node in &mut nodes {
        node.start();
    }
    Some((cluster, url, nodes))
}

fn message(subject: &str) -> Vec<u8> {
    format!(
        "From: <{ALICE}>\r\nTo: <{BOB}>\r\nSubject: {subject}\r\nMessage-ID: <{subject}@localhost>\r\n\
         Date: Sat, 28 Nov 2026 10:00:00 +0000\r\n\r\nOne database, {subject}.\r\n"
    )
    .into_bytes()
}

async fn imap(server: &TestServer, user: &str) -> ImapClient {
    let mut imap = ImapClient::connect(server.addr("imap"), Duration::from_secs(20))
        .await
        .unwrap();
    imap.login(user, PW).await.unwrap();
    imap
}

/// UIDs of `user`'s INBOX from the store itself.
async fn inbox_subjects(store: &PostgresStore, user: &str) -> Vec<(u32, String)> {
    let account = store
        .account(&Address::parse(user).unwrap())
        .await
        .unwrap()
        .unwrap();
    let inbox = store.mailbox(account.id, "INBOX").await.unwrap().unwrap();
    let mut out = Vec::new();
    for m in store.list_messages(inbox.id).await.unwrap() {
        let data = store.read_message(inbox.id, m.uid).await.unwrap();
        let text = String::from_utf8_lossy(&data).into_owned();
        let subject = text
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .unwrap_or("")
            .to_string();
        out.push((m.uid, subject));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_taken_on_one_node_is_read_and_pushed_on_the_other() {
    let Some((_cluster, _url, nodes)) = nodes(2, "") else {
        return;
    };
    let mut watcher = imap(&nodes[1], BOB).await;
    let selected = watcher.command("SELECT INBOX").await.unwrap();
    assert!(selected.status.starts_with("OK"), "{selected:?}");
    let tag = watcher.idle().await.unwrap();

    let sent = Instant::now();
    deliver(&nodes[0], ALICE, BOB, &message("cross-node")).await;
    let line = tokio::time::timeout(Duration::from_secs(1), watcher.read_untagged_line())
        .await
        .expect("IDLE on node 2 hears node 1's delivery within a second")
        .unwrap();
    assert_eq!(line, "* 1 EXISTS");
    eprintln!("node 1 SMTP to node 2 IDLE: {:?}", sent.elapsed());
    watcher.done(&tag).await.unwrap();

    // The bytes node 1 stored are what node 2 serves over IMAP and POP3.
    let stored = nodes[0].stored(BOB, 1);
    let fetched = watcher.command("UID FETCH 1 BODY.PEEK[]").await.unwrap();
    assert!(fetched.status.starts_with("OK"));
    let body = &fetched.untagged;
    let start = body.windows(3).position(|w| w == b"}\r\n").unwrap() + 3;
    assert_eq!(&body[start..start + stored.len()], &stored[..]);

    let script = format!(
        "import poplib\np = poplib.POP3('127.0.0.1', {})\np.user({BOB:?})\np.pass_({PW:?})\n\
         import sys\nsys.stdout.buffer.write(b'\\r\\n'.join(p.retr(1)[1]) + b'\\r\\n')\np.quit()\n",
        nodes[1].addr("pop3").port()
    );
    let popped = crate::python(&script, &[]);
    assert_eq!(popped, stored, "POP3 on node 2 gives node 1's bytes");

    // Flags set on node 2 are seen on node 1.
    let stored = watcher
        .command("UID STORE 1 +FLAGS (\\Flagged)")
        .await
        .unwrap();
    assert!(stored.status.starts_with("OK"));
    let mut other = imap(&nodes[0], BOB).await;
    other.command("SELECT INBOX").await.unwrap();
    let flags = other.command("UID FETCH 1 FLAGS").await.unwrap();
    assert!(
        String::from_utf8_lossy(&flags.untagged).contains("\\Flagged"),
        "{flags:?}"
    );
    // And node 2's webmail lists it.
    let script = format!(
        "import json, urllib.request\n\
         base = 'http://{}'\n\
         def post(path, body, headers={{}}):\n\
         \x20   r = urllib.request.Request(base + path, data=json.dumps(body).encode(), headers={{'Content-Type': 'application/json', **headers}})\n\
         \x20   return urllib.request.urlopen(r)\n\
         login = post('/api/login', {{'username': {BOB:?}, 'password': {PW:?}}})\n\
         cookie = login.headers['Set-Cookie'].split(';')[0]\n\
         csrf = json.load(login)['csrfToken']\n\
         r = post('/jmap/api', {{'methodCalls': [['Email/query', {{}}, 'q'], ['Email/get', {{'#ids': {{'resultOf': 'q', 'path': '/ids'}}}}, 'g']]}}, {{'Cookie': cookie, 'X-CSRF-Token': csrf}})\n\
         print(json.load(r)['methodResponses'][1][1]['list'][0]['subject'])\n",
        nodes[1].addr("http")
    );
    let subject = crate::python(&script, &[]);
    assert_eq!(String::from_utf8(subject).unwrap().trim(), "cross-node");
    // One POP3 session per maildrop, whichever node it is on.
    let script = format!(
        "import poplib\n\
         first = poplib.POP3('127.0.0.1', {})\n\
         first.user({BOB:?}); first.pass_({PW:?})\n\
         second = poplib.POP3('127.0.0.1', {})\n\
         second.user({BOB:?})\n\
         try:\n\
         \x20   second.pass_({PW:?}); print('granted')\n\
         except poplib.error_proto as e:\n\
         \x20   print(e)\n\
         first.quit()\n\
         import time\n\
         for _ in range(50):\n\
         \x20   try:\n\
         \x20       third = poplib.POP3('127.0.0.1', {}); third.user({BOB:?}); third.pass_({PW:?}); print('then granted'); third.quit(); break\n\
         \x20   except poplib.error_proto:\n\
         \x20       time.sleep(0.1)\n",
        nodes[0].addr("pop3").port(),
        nodes[1].addr("pop3").port(),
        nodes[1].addr("pop3").port(),
    );
    let out = String::from_utf8(crate::python(&script, &[])).unwrap();
    assert!(
        out.contains("[IN-USE]"),
        "node 2 refuses while node 1 holds it: {out}"
    );
    assert!(
        out.contains("then granted"),
        "and grants it after QUIT: {out}"
    );
    let verify = String::from_utf8(nodes[1].admin_ok(&["verify"])).unwrap();
    assert!(verify.lines().any(|l| l == "ok"), "{verify}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uids_stay_dense_and_ascending_under_deliveries_from_two_nodes() {
    let Some((_cluster, url, nodes)) = nodes(2, "") else {
        return;
    };
    const SENDERS: usize = 6;
    const EACH: usize = 50;
    let nodes = Arc::new(nodes);
    let mut reader = imap(&nodes[1], BOB).await;
    reader.command("SELECT INBOX").await.unwrap();
    let mut tasks = Vec::new();
    for s in 0..SENDERS {
        let nodes = nodes.clone();
        tasks.push(tokio::spawn(async move {
            let node = &nodes[s % 2];
            let mut smtp = SmtpClient::connect(node.addr("smtp"), Duration::from_secs(20))
                .await
                .unwrap();
            smtp.ehlo("sender.test").await.unwrap();
            for i in 0..EACH {
                if let Err(e) = smtp
                    .send(ALICE, &[BOB], &message(&format!("s{s}-{i}")))
                    .await
                {
                    panic!(
                        "{e}: {}",
                        node.log()
                            .lines()
                            .filter(|l| l.contains("ERROR") || l.contains("WARN"))
                            .collect::<Vec<_>>()
                            .join("\n")
                    );
                }
            }
            smtp.quit().await.unwrap();
        }));
    }
    // Meanwhile a session on node 2 keeps looking: every view it gets must be 1..=n, never
    // a later UID before an earlier one (a client that saw it would skip the earlier forever).
    let mut views = 0;
    let total = (SENDERS * EACH) as u32;
    loop {
        let found = reader.command("UID SEARCH ALL").await.unwrap();
        let text = String::from_utf8_lossy(&found.untagged).into_owned();
        // Only the SEARCH line: an EXISTS for mail that arrived meanwhile may follow it.
        let uids: Vec<u32> = text
            .lines()
            .find_map(|l| l.strip_prefix("* SEARCH"))
            .unwrap_or("")
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        assert_eq!(
            uids,
            (1..=uids.len() as u32).collect::<Vec<_>>(),
            "view {views} is not dense"
        );
        views += 1;
        if uids.len() as u32 == total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert!(views > 1, "the reader looked while mail arrived");
    let store = PostgresStore::connect(&url, 2, "reader").await.unwrap();
    let subjects: BTreeSet<String> = inbox_subjects(&store, BOB)
        .await
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    assert_eq!(subjects.len(), SENDERS * EACH, "every message once");
}

/// A TCP relay for the queue's route: while `hang` is set it accepts connections and never
/// answers (a stuck next hop); otherwise it joins them to `target`.
async fn relay(target: std::net::SocketAddr, hang: Arc<Mutex<bool>>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            if *hang.lock().unwrap() {
                held.push(socket);
                continue;
            }
            held.clear();
            tokio::spawn(async move {
                if let Ok(mut upstream) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut socket, &mut upstream).await;
                }
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_is_shared_and_a_dead_nodes_claims_come_back() {
    let Some(cluster) = PgCluster::start() else {
        return;
    };
    // The far side: a SQLite pigeon for remote.test.
    let mut remote = TestServer::new(exe(), "");
    remote.admin_ok(&["domain", "add", "remote.test", "--no-dkim"]);
    remote.admin_ok(&["user", "add", "carol@remote.test", "--password", PW]);
    remote.start();
    let hang = Arc::new(Mutex::new(true));
    let port = relay(remote.addr("smtp"), hang.clone()).await;
    let url = cluster.create_database();
    let extra = format!(
        "[queue]\nlease_secs = 5\npoll_secs = 1\nretry_schedule_secs = [1]\n\
         command_timeout_secs = 3\nconnect_timeout_secs = 3\n\n\
         [queue.routes]\n\"remote.test\" = \"127.0.0.1:{port}\"\n"
    );
    let mut n1 = node(&url, &extra);
    let mut n2 = node(&url, &extra);
    n1.admin_ok(&["domain", "add", "localhost", "--no-dkim"]);
    n1.admin_ok(&["user", "add", ALICE, "--password", PW]);
    n1.start();

    // Node 1 takes 20 messages and claims them; its sessions hang at the stuck next hop.
    for i in 0..20 {
        let mut smtp = SmtpClient::connect(n1.addr("submission"), Duration::from_secs(20))
            .await
            .unwrap();
        smtp.ehlo("laptop").await.unwrap();
        smtp.auth_plain(ALICE, PW).await.unwrap();
        let mut m = message(&format!("queued-{i}"));
        m = String::from_utf8(m)
            .unwrap()
            .replace(BOB, "carol@remote.test")
            .into_bytes();
        smtp.send(ALICE, &["carol@remote.test"], &m).await.unwrap();
        smtp.quit().await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // SIGKILL in the middle of delivering; then the next hop recovers and node 2 comes up.
    n1.kill();
    *hang.lock().unwrap() = false;
    n2.start();
    let store = PostgresStore::connect(&url, 2, "reader").await.unwrap();
    let start = Instant::now();
    loop {
        let got = remote.uids("carol@remote.test").len();
        let queued = store.list_queue().await.unwrap().len();
        if got >= 20 && queued == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "carol has {got} of 20, {queued} still queued\nnode 2 log: {}",
            n2.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Node 1 comes back: both nodes now share the queue; nothing is sent twice.
    n1.start();
    for i in 0..30 {
        let node = if i % 2 == 0 { &n1 } else { &n2 };
        let mut smtp = SmtpClient::connect(node.addr("submission"), Duration::from_secs(20))
            .await
            .unwrap();
        smtp.ehlo("laptop").await.unwrap();
        smtp.auth_plain(ALICE, PW).await.unwrap();
        let m = String::from_utf8(message(&format!("shared-{i}")))
            .unwrap()
            .replace(BOB, "carol@remote.test")
            .into_bytes();
        smtp.send(ALICE, &["carol@remote.test"], &m).await.unwrap();
        smtp.quit().await.unwrap();
    }
    let start = Instant::now();
    while remote.uids("carol@remote.test").len() < 50
        || !store.list_queue().await.unwrap().is_empty()
    {
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "carol has {} of 50",
            remote.uids("carol@remote.test").len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let uids = remote.uids("carol@remote.test");
    let mut subjects = BTreeSet::new();
    for uid in &uids {
        let data = String::from_utf8_lossy(&remote.stored("carol@remote.test", *uid)).into_owned();
        let subject = data
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .unwrap()
            .to_string();
        assert!(subjects.insert(subject.clone()), "{subject} arrived twice");
    }
    assert_eq!(subjects.len(), 50);
    assert!(
        n1.log().contains("delivered") && n2.log().contains("delivered"),
        "both nodes delivered part of the shared queue"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_under_load_loses_no_acknowledged_message() {
    let Some((_cluster, url, mut nodes)) = nodes(2, "") else {
        return;
    };
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut tasks = Vec::new();
    for s in 0..4 {
        let addr = nodes[0].addr("smtp");
        let acknowledged = acknowledged.clone();
        tasks.push(tokio::spawn(async move {
            let Ok(mut smtp) = SmtpClient::connect(addr, Duration::from_secs(20)).await else {
                return;
            };
            if smtp.ehlo("sender.test").await.is_err() {
                return;
            }
            for i in 0.. {
                let subject = format!("load-{s}-{i}");
                match smtp.send(ALICE, &[BOB], &message(&subject)).await {
                    Ok(_) => acknowledged.lock().unwrap().push(subject),
                    Err(_) => return,
                }
            }
        }));
    }
    let start = Instant::now();
    while acknowledged.lock().unwrap().len() < 100 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "load is too slow"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    nodes[0].kill();
    for task in tasks {
        task.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    // Node 2 still serves, and has every message node 1 acknowledged.
    deliver(&nodes[1], ALICE, BOB, &message("after-the-kill")).await;
    let store = PostgresStore::connect(&url, 2, "reader").await.unwrap();
    let stored: BTreeSet<String> = inbox_subjects(&store, BOB)
        .await
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    for subject in &acknowledged {
        assert!(
            stored.contains(subject),
            "{subject} was acknowledged but lost"
        );
    }
    assert!(stored.contains("after-the-kill"));
    let report = store.verify().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    nodes[1].stop();
}

/// What a client can see of bob's mail: per mailbox its STATUS and every message's UID,
/// flags, MODSEQ, internal date, size and bytes.
async fn what_bob_sees(server: &TestServer) -> String {
    let mut imap = imap(server, BOB).await;
    let mut seen = String::new();
    imap.command("ENABLE QRESYNC").await.unwrap();
    let list = imap.command("LIST \"\" \"*\"").await.unwrap();
    seen.push_str(&String::from_utf8_lossy(&list.untagged));
    for mailbox in ["INBOX", "Projects/2026"] {
        let status = imap
            .command(&format!(
                "STATUS {mailbox} (MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ UNSEEN)"
            ))
            .await
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&status.untagged));
        imap.command(&format!("EXAMINE {mailbox}")).await.unwrap();
        let fetched = imap
            .command("UID FETCH 1:* (FLAGS INTERNALDATE RFC822.SIZE MODSEQ BODY.PEEK[])")
            .await
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&fetched.untagged));
        let vanished = imap
            .command("UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)")
            .await
            .unwrap();
        assert!(vanished.status.starts_with("OK"), "{vanished:?}");
        seen.push_str(&String::from_utf8_lossy(&vanished.untagged));
    }
    seen
}

fn migrate(from: &str, to: &str) -> std::process::Output {
    std::process::Command::new(exe())
        .args(["migrate", "--from", from, "--to", to])
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_installation_moves_to_postgres_and_back() {
    let Some(cluster) = PgCluster::start() else {
        return;
    };
    let plain = "[auth]\nallow_plaintext_on_loopback = true\n\n[queue]\nenabled = false\n";
    let mut old = TestServer::new(exe(), plain);
    old.admin_ok(&["domain", "add", "localhost"]);
    for user in [ALICE, BOB] {
        old.admin_ok(&["user", "add", user, "--password", PW]);
    }
    old.admin_ok(&["alias", "add", "info@localhost", BOB]);
    old.start();
    for i in 0..4 {
        deliver(&old, ALICE, BOB, &message(&format!("old-{i}"))).await;
    }
    deliver(&old, ALICE, BOB, &crate::fixtures::utf8(BOB, "迁移")).await;
    let mut imap = imap(&old, BOB).await;
    imap.command("SELECT INBOX").await.unwrap();
    for command in [
        "UID STORE 2 +FLAGS (\\Seen \\Flagged $Work)",
        "CREATE Projects/2026",
        "UID COPY 3 Projects/2026",
        "UID STORE 4 +FLAGS (\\Deleted)",
        "EXPUNGE",
        "DELETE Junk",
    ] {
        let done = imap.command(command).await.unwrap();
        assert!(done.status.starts_with("OK"), "{command}: {done:?}");
    }
    // A message waiting in the queue (workers are off).
    let mut smtp = SmtpClient::connect(old.addr("submission"), Duration::from_secs(20))
        .await
        .unwrap();
    smtp.ehlo("laptop").await.unwrap();
    smtp.auth_plain(ALICE, PW).await.unwrap();
    smtp.send(ALICE, &["far@away.test"], &message("queued"))
        .await
        .unwrap();
    smtp.quit().await.unwrap();
    let before = what_bob_sees(&old).await;
    assert!(before.contains("* VANISHED (EARLIER) 4"), "{before}");
    let queue_before = old.admin_ok(&["queue", "list"]);
    let dns_before = old.admin_ok(&["domain", "dns", "localhost"]);
    old.stop();

    let url = cluster.create_database();
    let out = migrate(&format!("sqlite:{}", old.data_dir().display()), &url);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("copied 1 domains, 2 accounts") && text.ends_with("ok\n"),
        "{text}"
    );

    let mut pg = node(&url, "[queue]\nenabled = false\n");
    pg.start();
    assert_eq!(
        what_bob_sees(&pg).await,
        before,
        "IMAP clients see the same mail"
    );
    assert_eq!(pg.admin_ok(&["queue", "list"]), queue_before);
    assert_eq!(pg.admin_ok(&["domain", "dns", "localhost"]), dns_before);
    // Aliases moved, and new mail continues after the old UIDNEXT.
    deliver(&pg, ALICE, "info@localhost", &message("new-on-postgres")).await;
    assert_eq!(pg.uids(BOB), [1, 2, 3, 5, 6]);
    let after = what_bob_sees(&pg).await;
    pg.stop();

    // A store that is not empty is refused.
    let out = migrate(&format!("sqlite:{}", old.data_dir().display()), &url);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the target store is not empty"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // And back to SQLite.
    let mut back = TestServer::new(exe(), plain);
    let out = migrate(&url, &format!("sqlite:{}", back.data_dir().display()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    back.start();
    assert_eq!(what_bob_sees(&back).await, after);
    assert_eq!(back.admin_ok(&["queue", "list"]), queue_before);
    let verify = String::from_utf8(back.admin_ok(&["verify"])).unwrap();
    assert!(verify.ends_with("ok\n"), "{verify}");
}
