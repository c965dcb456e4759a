//! IMAP end to end: Python imaplib over STARTTLS and TLS, IDLE hearing SMTP deliveries and
//! POP3 deletions, MIME structure and decoded parts, curl, mbsync.

use std::process::Command;
use std::time::Duration;
use store::prelude::*;

use test_support::{TestServer, require_tool};

use crate::{exe, fixtures};

const BOB: &str = "bob@localhost";
const PW: &str = "imap secret";

async fn deliver(server: &TestServer, to: &str, message: &[u8]) {
    crate::deliver(server, "alice@example.org", to, message).await;
}

/// Runs `script`; its last output line is JSON.
fn python(script: &str) -> serde_json::Value {
    let stdout = crate::python(script, &[]);
    let stdout = String::from_utf8_lossy(&stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("bad json {last:?}: {e}"))
}

fn preamble(server: &TestServer) -> String {
    format!(
        "import imaplib, ssl, json, time, re, base64\n\
         ctx = ssl.create_default_context(cafile={:?})\n\
         def connect():\n\
         \x20   m = imaplib.IMAP4('localhost', {})\n\
         \x20   m.starttls(ssl_context=ctx)\n\
         \x20   m.login({BOB:?}, {PW:?})\n\
         \x20   return m\n",
        server.cert_pem().display().to_string(),
        server.addr("imap").port()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imaplib_commands() {
    if !require_tool("python3") {
        return;
    }
    let server = TestServer::with_users(exe(), &[BOB], PW);
    deliver(&server, BOB, &fixtures::ascii(BOB, "imap1")).await;
    deliver(&server, BOB, &fixtures::utf8(BOB, "imap2")).await;
    let script = preamble(&server)
        + &format!(
            r#"
r = {{}}
plain = imaplib.IMAP4('localhost', {port})
r['pre_caps'] = list(plain.capabilities)
try:
    plain.login({BOB:?}, {PW:?})
    r['plain_login'] = 'accepted'
except imaplib.IMAP4.error as e:
    r['plain_login'] = str(e)
plain.logout()
tls = imaplib.IMAP4_SSL('localhost', {tls_port}, ssl_context=ctx)
r['tls_login'] = tls.login({BOB:?}, {PW:?})[0]
tls.logout()
m = connect()
r['caps'] = list(m.capabilities)
r['list'] = [x.decode() for x in m.list()[1]]
r['select'] = m.select('INBOX')[1][0].decode()
r['fetch'] = m.fetch('1:2', '(UID FLAGS RFC822.SIZE ENVELOPE)')[1]
r['fetch'] = [x.decode('utf-8', 'replace') if isinstance(x, bytes) else [y.decode('utf-8', 'replace') for y in x] for x in r['fetch']]
r['header'] = m.fetch('2', '(BODY.PEEK[HEADER.FIELDS (Subject)])')[1][0][1].decode()
r['text'] = m.fetch('2', '(BODY[TEXT])')[1][0][1].decode('utf-8')
r['flags_after_body'] = m.fetch('2', '(FLAGS)')[1][0].decode()
r['search_unseen'] = m.search(None, 'UNSEEN')[1][0].decode()
r['search_subject'] = m.uid('SEARCH', 'SUBJECT', 'imap1')[1][0].decode()
r['search_body'] = m.search('UTF-8', 'BODY', '世界'.encode())[1][0].decode()
r['store'] = m.store('1', '+FLAGS', '(\\Flagged $Important)')[1][0].decode()
r['create'] = m.create('Archive/2026')[0]
r['copy'] = m.copy('1', 'Archive/2026')[1][0].decode()
r['move'] = m.uid('MOVE', '2', 'Archive')
r['after_move'] = m.select('INBOX')[1][0].decode()
r['append'] = m.append('INBOX', '(\\Seen)', imaplib.Time2Internaldate(time.time()), b'Subject: appended\r\n\r\nliteral body\r\n')[1][0].decode()
r['status'] = m.status('Archive/2026', '(MESSAGES UIDNEXT UNSEEN SIZE)')[1][0].decode()
m.store('1', '+FLAGS', '\\Deleted')
r['expunge'] = m.expunge()[1]
r['expunge'] = [x.decode() if x else None for x in r['expunge']]
r['rename'] = m.rename('Archive/2026', 'Projects')[0]
r['lsub'] = [x.decode() for x in m.lsub()[1]]
imaplib.Commands['FROB'] = ('AUTH', 'SELECTED')
try:
    m._simple_command('FROB')
    r['bad'] = 'accepted'
except imaplib.IMAP4.error as e:
    r['bad'] = str(e)
m.logout()
print(json.dumps(r, default=str))
"#,
            port = server.addr("imap").port(),
            tls_port = server.addr("imap+tls").port(),
        );
    let r = python(&script);
    assert!(
        r["pre_caps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "STARTTLS")
    );
    assert!(
        r["pre_caps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "LOGINDISABLED"),
        "{}",
        r["pre_caps"]
    );
    assert!(
        r["plain_login"]
            .as_str()
            .unwrap()
            .contains("PRIVACYREQUIRED"),
        "{}",
        r["plain_login"]
    );
    assert_eq!(r["tls_login"], "OK");
    for cap in [
        "IMAP4REV2",
        "IDLE",
        "UIDPLUS",
        "MOVE",
        "SPECIAL-USE",
        "ESEARCH",
        "CONDSTORE",
    ] {
        assert!(
            r["caps"].as_array().unwrap().iter().any(|c| c == cap),
            "{cap}: {}",
            r["caps"]
        );
    }
    let list = r["list"].to_string();
    assert!(
        list.contains("\\\\Sent") && list.contains("\\\\Trash"),
        "{list}"
    );
    assert_eq!(r["select"], "2");
    let fetch = r["fetch"].to_string();
    assert!(
        fetch.contains("UID 1") && fetch.contains("UID 2") && fetch.contains("RFC822.SIZE"),
        "{fetch}"
    );
    assert!(
        fetch.contains("\\\"Alice\\\" NIL \\\"alice\\\" \\\"example.org\\\""),
        "{fetch}"
    );
    assert!(
        r["header"]
            .as_str()
            .unwrap()
            .starts_with("Subject: =?UTF-8?B?55S15a2Q6YKu5Lu25rWL6K+V?=")
    );
    assert!(
        r["text"].as_str().unwrap().contains("你好，世界！"),
        "{}",
        r["text"]
    );
    assert!(
        r["flags_after_body"].as_str().unwrap().contains("\\Seen"),
        "BODY[] sets \\Seen"
    );
    assert_eq!(r["search_unseen"], "1");
    assert_eq!(r["search_subject"], "1");
    assert_eq!(
        r["search_body"], "2",
        "body search decodes the 8-bit UTF-8 text"
    );
    assert!(
        r["store"].as_str().unwrap().contains("\\Flagged")
            && r["store"].as_str().unwrap().contains("$Important")
    );
    assert_eq!(r["create"], "OK");
    assert!(
        r["copy"].as_str().unwrap().starts_with("[COPYUID "),
        "{}",
        r["copy"]
    );
    assert_eq!(r["move"][0], "OK");
    assert_eq!(r["after_move"], "1");
    assert!(
        r["append"].as_str().unwrap().starts_with("[APPENDUID "),
        "{}",
        r["append"]
    );
    assert!(
        r["status"].as_str().unwrap().contains("MESSAGES 1"),
        "{}",
        r["status"]
    );
    assert_eq!(r["expunge"][0], "1", "EXPUNGE response for message 1");
    assert_eq!(r["rename"], "OK");
    assert!(
        r["bad"].as_str().unwrap().contains("unknown command FROB"),
        "{}",
        r["bad"]
    );
    assert_eq!(
        server.uids(BOB),
        [3],
        "only the appended message is left in INBOX"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_hears_smtp_delivery_and_pop3_deletion() {
    if !require_tool("python3") {
        return;
    }
    let server = TestServer::with_users(exe(), &[BOB], PW);
    deliver(&server, BOB, &fixtures::ascii(BOB, "one")).await;
    deliver(&server, BOB, &fixtures::ascii(BOB, "two")).await;
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let script = preamble(&server)
        + &format!(
            r#"
m = connect()
m.select('INBOX')
tag = m._new_tag().decode()
m.send(('%s IDLE\r\n' % tag).encode())
assert m.readline().startswith(b'+')
open({ready:?}, 'w').close()
seen = []
start = time.monotonic()
first_exists = None
while time.monotonic() - start < 20 and not any(b'EXPUNGE' in l for l in seen):
    line = m.readline()
    if not line:
        break
    seen.append(line)
    if b'EXISTS' in line and first_exists is None:
        first_exists = time.monotonic() - start
m.send(b'DONE\r\n')
while True:
    line = m.readline()
    if line.startswith(tag.encode()):
        break
m.logout()
print(json.dumps({{"lines": [l.decode().strip() for l in seen]}}))
"#,
            ready = ready.display().to_string()
        );
    let child = std::thread::spawn(move || python(&script));
    let start = std::time::Instant::now();
    while !ready.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "IDLE did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent = std::time::Instant::now();
    deliver(&server, BOB, &fixtures::ascii(BOB, "three")).await;
    // POP3 deletes message 1 while the IMAP session has INBOX selected and idles.
    let report = pop3_delete_first(&server).await;
    assert!(report, "POP3 deleted message 1");
    let elapsed = sent.elapsed();
    let r = child.join().unwrap();
    let lines: Vec<String> = r["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    assert!(
        lines.contains(&"* 3 EXISTS".to_string()),
        "IDLE saw the delivery: {lines:?}"
    );
    assert!(
        lines.contains(&"* 1 EXPUNGE".to_string()),
        "IDLE saw the POP3 deletion: {lines:?}"
    );
    assert!(elapsed < Duration::from_secs(20));
    assert_eq!(server.uids(BOB), [2, 3]);
}

/// Deletes message 1 over POP3 with STLS, as a mail client would.
async fn pop3_delete_first(server: &TestServer) -> bool {
    let script = format!(
        "import poplib, ssl\nctx = ssl.create_default_context(cafile={:?})\n\
         p = poplib.POP3('localhost', {})\np.stls(context=ctx)\np.user({BOB:?})\np.pass_({PW:?})\n\
         p.dele(1)\np.quit()\nprint('{{}}')\n",
        server.cert_pem().display().to_string(),
        server.addr("pop3").port()
    );
    crate::python(&script, &[]);
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sees_new_mail_within_a_second() {
    if !require_tool("python3") {
        return;
    }
    let server = TestServer::with_users(exe(), &[BOB], PW);
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let script = preamble(&server)
        + &format!(
            r#"
m = connect()
m.select('INBOX')
m.send(b'i1 IDLE\r\n')
assert m.readline().startswith(b'+')
open({ready:?}, 'w').close()
line = m.readline()
t = time.time()
m.send(b'DONE\r\n')
print(json.dumps({{"line": line.decode().strip(), "at": t}}))
"#,
            ready = ready.display().to_string()
        );
    let child = std::thread::spawn(move || python(&script));
    while !ready.exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    deliver(&server, BOB, &fixtures::ascii(BOB, "push")).await;
    let r = child.join().unwrap();
    assert_eq!(r["line"], "* 1 EXISTS");
    let latency = r["at"].as_f64().unwrap() - before;
    assert!(
        latency < 1.0,
        "new mail reached IDLE in {latency:.3} s (SMTP included)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodystructure_and_decoded_attachment() {
    if !require_tool("python3") {
        return;
    }
    let server = TestServer::with_users(exe(), &[BOB], PW);
    let attachment = fixtures::noise(100_000, 7);
    let message = [
        b"From: alice@example.org\r\nTo: bob@localhost\r\nSubject: with attachment\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee the file.\r\n\
--XX\r\nContent-Type: application/octet-stream; name=\"noise.bin\"\r\nContent-Disposition: attachment; filename=\"noise.bin\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\n"
            .to_vec(),
        fixtures::base64(&attachment),
        b"--XX--\r\n".to_vec(),
    ]
    .concat();
    deliver(&server, BOB, &message).await;
    let dir = tempfile::tempdir().unwrap();
    let script = preamble(&server)
        + &format!(
            r#"
m = connect()
m.select('INBOX', readonly=True)
bs = m.fetch('1', '(BODYSTRUCTURE)')[1][0].decode()
encoded = m.fetch('1', '(BODY.PEEK[2])')[1][0][1]
binary = m.fetch('1', '(BINARY.PEEK[2])')[1][0][1]
size = m.fetch('1', '(BINARY.SIZE[2])')[1][0].decode()
mime = m.fetch('1', '(BODY.PEEK[2.MIME])')[1][0][1].decode()
partial = m.fetch('1', '(BODY.PEEK[1]<0.3>)')[1][0][1].decode()
open({out:?}, 'wb').write(base64.b64decode(encoded))
open({out2:?}, 'wb').write(binary)
print(json.dumps({{"bs": bs, "size": size, "mime": mime, "partial": partial}}))
"#,
            out = dir.path().join("decoded").display().to_string(),
            out2 = dir.path().join("binary").display().to_string(),
        );
    let r = python(&script);
    let bs = r["bs"].as_str().unwrap();
    assert!(
        bs.contains("(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\")"),
        "{bs}"
    );
    assert!(
        bs.contains(
            "(\"APPLICATION\" \"OCTET-STREAM\" (\"NAME\" \"noise.bin\") NIL NIL \"BASE64\""
        ),
        "{bs}"
    );
    assert!(bs.contains("\"MIXED\""), "{bs}");
    assert!(
        bs.contains("BODYSTRUCTURE ((\"TEXT\"") && bs.matches(")(\"").count() == 1,
        "exactly two parts: {bs}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("decoded")).unwrap(),
        attachment,
        "BODY[2] decodes to the attachment"
    );
    assert_eq!(
        std::fs::read(dir.path().join("binary")).unwrap(),
        attachment,
        "BINARY[2] is the attachment"
    );
    assert!(
        r["size"]
            .as_str()
            .unwrap()
            .contains(&format!("BINARY.SIZE[2] {}", attachment.len()))
    );
    assert!(
        r["mime"]
            .as_str()
            .unwrap()
            .contains("Content-Disposition: attachment")
    );
    assert_eq!(r["partial"], "See");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_lists_and_fetches() {
    if !require_tool("curl") {
        return;
    }
    let server = TestServer::with_users(exe(), &[BOB], PW);
    let message = fixtures::dotted(BOB, "curl");
    deliver(&server, BOB, &message).await;
    let port = server.addr("imap").port();
    let curl = |url: &str| {
        let out = Command::new("curl")
            .args(["-sS", "--ssl-reqd", "--cacert"])
            .arg(server.cert_pem())
            .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
            .args(["--user", &format!("{BOB}:{PW}")])
            .arg(url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "curl {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let list = String::from_utf8(curl(&format!("imap://localhost:{port}/"))).unwrap();
    assert!(
        list.contains("\"INBOX\"") && list.contains("\\Sent"),
        "{list}"
    );
    let fetched = curl(&format!("imap://localhost:{port}/INBOX;UID=1"));
    assert_eq!(fetched, server.stored(BOB, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mbsync_two_way_sync() {
    if !require_tool("mbsync") {
        return;
    }
    let server = TestServer::with_users(exe(), &[BOB], PW);
    // 1,000 messages over one SMTP connection.
    let mut smtp = client::smtp::SmtpClient::connect(server.addr("smtp"), Duration::from_secs(20))
        .await
        .unwrap();
    smtp.ehlo("bulk.test").await.unwrap();
    for i in 0..1000 {
        smtp.send(
            "alice@example.org",
            &[BOB],
            &fixtures::ascii(BOB, &format!("bulk{i}")),
        )
        .await
        .unwrap();
    }
    smtp.quit().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("mail");
    std::fs::create_dir_all(&maildir).unwrap();
    let rc = dir.path().join("mbsyncrc");
    std::fs::write(
        &rc,
        format!(
            "IMAPAccount pigeon\nHost localhost\nPort {}\nUser {BOB}\nPass \"{PW}\"\nSSLType IMAPS\nCertificateFile {}\n\n\
             IMAPStore remote\nAccount pigeon\n\n\
             MaildirStore local\nPath {}/\nInbox {}/INBOX\n\n\
             Channel sync\nFar :remote:\nNear :local:\nPatterns INBOX\nCreate Both\nSync All\nExpunge Both\nSyncState *\n",
            server.addr("imap+tls").port(),
            server.cert_pem().display(),
            maildir.display(),
            maildir.display()
        ),
    )
    .unwrap();
    let mbsync = || {
        let out = Command::new("mbsync")
            .arg("-c")
            .arg(&rc)
            .arg("-a")
            .arg("-V")
            .env("HOME", dir.path())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "mbsync failed: {text}");
        text
    };
    mbsync();
    let cur = maildir.join("INBOX").join("cur");
    let new = maildir.join("INBOX").join("new");
    let count = |d: &std::path::Path| std::fs::read_dir(d).map(|r| r.count()).unwrap_or(0);
    assert_eq!(count(&cur) + count(&new), 1000, "all messages synced down");

    // Flag changes on both sides: a local file gets the F (flagged) flag, and the server
    // marks message 2 \Seen.
    let mut files: Vec<_> = std::fs::read_dir(&new)
        .unwrap()
        .chain(std::fs::read_dir(&cur).unwrap())
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let first = files[0].clone();
    let name = first.file_name().unwrap().to_string_lossy().into_owned();
    let flagged = if name.contains(":2,") {
        format!("{name}F")
    } else {
        format!("{name}:2,F")
    };
    std::fs::rename(&first, cur.join(flagged)).unwrap();
    let store = store_sqlite::SqliteStore::open(server.data_dir()).unwrap();

    let bob = store
        .account(&store::Address::parse(BOB).unwrap())
        .await
        .unwrap()
        .unwrap();
    let inbox = store.mailbox(bob.id, "INBOX").await.unwrap().unwrap();
    store
        .set_flags(inbox.id, &[2], store::flags::SEEN, 0)
        .await
        .unwrap();
    mbsync();
    let flagged_on_server = store
        .list_messages(inbox.id)
        .await
        .unwrap()
        .iter()
        .filter(|m| m.flags & store::flags::FLAGGED != 0)
        .count();
    assert_eq!(flagged_on_server, 1, "the local flag reached the server");
    let seen_locally = std::fs::read_dir(&cur)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(":2,S")
        })
        .count();
    assert!(seen_locally >= 1, "the server's \\Seen reached the maildir");
    // A third run has nothing to do: no file changes locally, no change on the server.
    let snapshot = |d: &std::path::Path| {
        let mut names: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let (cur_before, new_before) = (snapshot(&cur), snapshot(&new));
    let server_before = store.mailbox(bob.id, "INBOX").await.unwrap().unwrap();
    let text = mbsync();
    assert_eq!(
        (snapshot(&cur), snapshot(&new)),
        (cur_before, new_before),
        "nothing changed locally: {text}"
    );
    let server_after = store.mailbox(bob.id, "INBOX").await.unwrap().unwrap();
    assert_eq!(
        (
            server_after.highest_modseq,
            server_after.uid_next,
            server_after.messages
        ),
        (
            server_before.highest_modseq,
            server_before.uid_next,
            server_before.messages
        ),
        "nothing changed on the server: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn condstore_and_qresync() {
    if !require_tool("python3") {
        return;
    }
    let server = TestServer::with_users(exe(), &[BOB], PW);
    for tag in ["q1", "q2", "q3"] {
        deliver(&server, BOB, &fixtures::ascii(BOB, tag)).await;
    }
    let script = preamble(&server)
        + r#"
r = {}
a = connect()
r['enable'] = a._simple_command('ENABLE', 'QRESYNC')[0]
r['enabled'] = [x.decode() for x in a.untagged_responses.pop('ENABLED', [])]
typ, data = a.select('INBOX')
validity = int(a.untagged_responses['UIDVALIDITY'][0])
modseq = int(a.untagged_responses['HIGHESTMODSEQ'][0])
b = connect()
b.select('INBOX')
b.store('2', '+FLAGS', '\\Flagged')
b.store('1', '+FLAGS', '\\Deleted')
b.expunge()
b.logout()
typ, data = a.noop()
r['vanished_noop'] = [x.decode() for x in a.untagged_responses.pop('VANISHED', [])]
r['expunge_noop'] = [x.decode() for x in a.untagged_responses.pop('EXPUNGE', [])]
a.logout()
c = connect()
c._simple_command('ENABLE', 'QRESYNC')
typ, data = c._simple_command('SELECT', 'INBOX (QRESYNC (%d %d))' % (validity, modseq))
r['select'] = typ
c.state = 'SELECTED'
r['vanished_select'] = [x.decode() for x in c.untagged_responses.pop('VANISHED', [])]
r['fetch_select'] = [x.decode() if isinstance(x, bytes) else str(x) for x in c.untagged_responses.pop('FETCH', [])]
typ, data = c._simple_command('UID', 'FETCH', '1:*', '(FLAGS)', '(CHANGEDSINCE %d VANISHED)' % modseq)
r['vanished_fetch'] = [x.decode() for x in c.untagged_responses.pop('VANISHED', [])]
r['fetch_changed'] = [x.decode() if isinstance(x, bytes) else str(x) for x in c.untagged_responses.pop('FETCH', [])]
c.logout()
print(json.dumps(r))
"#;
    let r = python(&script);
    assert_eq!(r["enable"], "OK");
    assert!(
        r["enabled"].to_string().contains("QRESYNC"),
        "{}",
        r["enabled"]
    );
    assert_eq!(
        r["vanished_noop"][0], "1",
        "with QRESYNC the expunge shows as VANISHED: {r}"
    );
    assert!(r["expunge_noop"].as_array().unwrap().is_empty(), "{r}");
    assert_eq!(r["select"], "OK");
    assert_eq!(r["vanished_select"][0], "(EARLIER) 1", "{r}");
    let changed = r["fetch_select"].to_string();
    assert!(
        changed.contains("UID 2 FLAGS (\\\\Flagged) MODSEQ"),
        "{changed}"
    );
    assert!(
        !changed.contains("UID 3 "),
        "unchanged messages are not sent: {changed}"
    );
    assert_eq!(r["vanished_fetch"][0], "(EARLIER) 1", "{r}");
    assert!(r["fetch_changed"].to_string().contains("UID 2"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_appends_stream_into_the_store_byte_for_byte() {
    if !require_tool("python3") {
        return;
    }
    let server = TestServer::with_users(exe(), &[BOB], PW);
    // 6 MB with every byte value in the body (8-bit, CR and LF alone included), appended with a
    // synchronizing literal (imaplib) and read back whole and in part.
    let script = preamble(&server)
        + r#"
body = bytes(range(256)) * (6 * 1024 * 1024 // 256)
message = b'Subject: big one\r\nMIME-Version: 1.0\r\n\r\n' + body
# imaplib sends bare CR and LF as CRLF; that is what the server must keep.
message = imaplib.MapCRLF.sub(imaplib.CRLF, message)
r = {'sent': len(message), 'expected': list(message[message.index(b'\r\n\r\n') + 4:][3000000:3000010])}
m = connect()
r['append'] = m.append('INBOX', '(\\Flagged)', None, message)[1][0].decode()
m.select('INBOX')
typ, data = m.fetch('1', '(RFC822.SIZE FLAGS BODY.PEEK[])')
r['size'] = re.search(rb'RFC822.SIZE (\d+)', data[0][0]).group(1).decode()
r['flags'] = re.search(rb'FLAGS \(([^)]*)\)', data[0][0]).group(1).decode()
r['same'] = data[0][1] == message
typ, data = m.fetch('1', '(BODY.PEEK[TEXT]<3000000.10>)')
r['partial'] = list(data[0][1])
# Junk after the literal: BAD, the message is not kept, the session goes on.
tag = m._new_tag().decode()
m.send(('%s APPEND INBOX {300000+}\r\n' % tag).encode() + b'x' * 300000 + b' junk\r\n')
r['junk'] = m.readline().decode().strip()
r['noop'] = m.noop()[0]
r['count'] = m.select('INBOX')[1][0].decode()
m.logout()
print(json.dumps(r))
"#;
    let r = python(&script);
    assert!(
        r["append"].as_str().unwrap().starts_with("[APPENDUID "),
        "{r}"
    );
    assert!(r["sent"].as_u64().unwrap() > 6 * 1024 * 1024);
    assert_eq!(r["size"], r["sent"].to_string());
    assert!(r["flags"].as_str().unwrap().contains("\\Flagged"), "{r}");
    assert_eq!(r["same"], true, "the message comes back byte for byte");
    assert_eq!(r["partial"], r["expected"]);
    assert_eq!(r["partial"].as_array().unwrap().len(), 10);
    assert!(r["junk"].as_str().unwrap().contains("BAD"), "{r}");
    assert_eq!(r["noop"], "OK");
    assert_eq!(r["count"], "1", "the refused APPEND left nothing");
    assert!(
        server.log().contains("APPEND streamed through the store"),
        "the big literal took the streaming path"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelope_keeps_groups_and_source_routes() {
    if !require_tool("python3") {
        return;
    }
    let server = TestServer::with_users(exe(), &[BOB], PW);
    let script = preamble(&server)
        + r#"
m = connect()
msg = (b'From: <@route1,@route2:user@host>\r\n'
       b'To: A Group: a@b.c, "Bee" <b@c.d>;, z@y.x\r\n'
       b'Cc: undisclosed-recipients:;\r\n'
       b'Subject: groups\r\n\r\nbody\r\n')
m.append('INBOX', None, None, msg)
m.select('INBOX', readonly=True)
print(json.dumps({"env": m.fetch('1', '(ENVELOPE)')[1][0].decode()}))
"#;
    let r = python(&script);
    // RFC 3501 §7.4.2 / RFC 9051 §7.5.2: address structures are (name adl mailbox host); the
    // RFC 5322 §4.4 source route is adl; Sender and Reply-To default to From; an RFC 5322 §3.4
    // group is (NIL NIL name NIL), its members, then (NIL NIL NIL NIL), even when empty.
    let from = "((NIL \"@route1,@route2\" \"user\" \"host\"))";
    let to = "((NIL NIL \"A Group\" NIL)(NIL NIL \"a\" \"b.c\")(\"Bee\" NIL \"b\" \"c.d\")\
(NIL NIL NIL NIL)(NIL NIL \"z\" \"y.x\"))";
    let cc = "((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL))";
    assert_eq!(
        r["env"],
        format!("1 (ENVELOPE (NIL \"groups\" {from} {from} {from} {to} {cc} NIL NIL NIL))")
    );
}
