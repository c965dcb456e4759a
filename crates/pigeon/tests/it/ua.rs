//! The command-line user agent end to end: `pigeon account add` and `pigeon send` against a
//! real server; what arrives is checked with Python's `email` package.

use std::path::Path;
use std::process::{Command, Output};

use test_support::{TestServer, require_tool};

use crate::exe;

const BOB: &str = "bob@localhost";
const CAROL: &str = "carol@localhost";
const PW: &str = "ua secret";

/// A user directory with one account, `work`, reading bob's mail over IMAP (any certificate).
pub(crate) fn imap_reader(server: &TestServer) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    ok(ua(
        home.path(),
        &[
            "account",
            "add",
            "work",
            "--email",
            BOB,
            "--host",
            "localhost",
            "--submission-port",
            "1",
            "--imap-port",
            &server.addr("imap+tls").port().to_string(),
            "--insecure",
        ],
        "",
    ));
    home
}

/// Runs `pigeon` as a user with its own account directory.
pub(crate) fn ua(home: &Path, args: &[&str], password: &str) -> Output {
    Command::new(exe())
        .args(args)
        .env("PIGEON_HOME", home)
        .env("PIGEON_PASSWORD", password)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run pigeon")
}

#[track_caller]
pub(crate) fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "pigeon failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn python_parse(path: &Path) -> serde_json::Value {
    let script = r#"
import email, email.policy, json, sys, hashlib
m = email.message_from_binary_file(open(sys.argv[1], 'rb'), policy=email.policy.default)
parts = []
for p in m.walk():
    if p.is_multipart():
        parts.append({'type': p.get_content_type()})
        continue
    data = p.get_payload(decode=True)
    parts.append({'type': p.get_content_type(), 'filename': p.get_filename(), 'cid': p.get('Content-ID'),
                  'sha256': hashlib.sha256(data).hexdigest(), 'text': data.decode('utf-8') if p.get_content_maintype() == 'text' else None})
print(json.dumps({'subject': str(m['Subject']), 'from': str(m['From']), 'to': str(m['To']), 'bcc': m['Bcc'],
                  'in_reply_to': m['In-Reply-To'], 'message_id': m['Message-ID'], 'parts': parts}))
"#;
    serde_json::from_slice(&crate::python(script, &[path.to_str().unwrap()])).unwrap()
}

fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn send_with_chinese_html_attachments_and_an_inline_image() {
    if !require_tool("python3") {
        return;
    }
    let server = TestServer::with_users(exe(), &[BOB, CAROL], PW);
    let home = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let submission = server.addr("submission").port().to_string();
    let imaps = server.addr("imap+tls").port().to_string();
    let ca = server.cert_pem();
    ok(ua(
        home.path(),
        &[
            "account",
            "add",
            "work",
            "--email",
            BOB,
            "--display-name",
            "Bob Builder",
            "--host",
            "localhost",
            "--submission-port",
            &submission,
            "--imap-port",
            &imaps,
            "--ca",
            ca.to_str().unwrap(),
        ],
        "",
    ));
    assert!(ok(ua(home.path(), &["account", "list"], "")).contains("* work: bob@localhost"));

    let binary: Vec<u8> = (0..200_000u32).map(|i| (i * 7 + i / 256) as u8).collect();
    let png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR fake image data".to_vec();
    std::fs::write(files.path().join("data.bin"), &binary).unwrap();
    let second: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8 ^ 0x5a).collect();
    std::fs::write(files.path().join("second.bin"), &second).unwrap();
    std::fs::write(files.path().join("说明.txt"), "第一行\n第二行\n").unwrap();
    std::fs::write(files.path().join("logo.png"), &png).unwrap();
    std::fs::write(
        files.path().join("body.html"),
        "<p>你好，<b>世界</b>！<img src=\"cid:logo@pigeon\"></p>",
    )
    .unwrap();
    let path = |name: &str| files.path().join(name).to_str().unwrap().to_string();
    let out = ok(ua(
        home.path(),
        &[
            "send",
            "--to",
            "Carol <carol@localhost>",
            "--bcc",
            BOB,
            "--subject",
            "电子邮件 测试",
            "--body",
            "你好，世界！\nÇa va ?\n",
            "--html",
            &path("body.html"),
            "--attach",
            &path("data.bin"),
            "--attach",
            &path("second.bin"),
            "--attach",
            &path("说明.txt"),
            "--inline",
            &format!("{}=logo@pigeon", path("logo.png")),
            "--in-reply-to",
            "<parent@example.cn>",
        ],
        PW,
    ));
    assert!(
        out.contains("sent to carol@localhost, bob@localhost"),
        "{out}"
    );

    // Carol has it; Python's email package sees every part as sent.
    let stored = server.stored(CAROL, 1);
    let file = files.path().join("received.eml");
    std::fs::write(&file, test_support::strip_trace(&stored)).unwrap();
    let m = python_parse(&file);
    assert_eq!(m["subject"], "电子邮件 测试");
    assert_eq!(m["from"], "Bob Builder <bob@localhost>");
    assert_eq!(m["to"], "Carol <carol@localhost>");
    assert_eq!(
        m["bcc"],
        serde_json::Value::Null,
        "Bcc stays in the envelope"
    );
    assert_eq!(m["in_reply_to"], "<parent@example.cn>");
    let parts = m["parts"].as_array().unwrap();
    let find = |pred: &dyn Fn(&serde_json::Value) -> bool| parts.iter().find(|p| pred(p)).cloned();
    let text = find(&|p| p["type"] == "text/plain" && p["filename"].is_null()).unwrap();
    assert_eq!(
        text["text"].as_str().unwrap().replace("\r\n", "\n"),
        "你好，世界！\nÇa va ?\n"
    );
    let html = find(&|p| p["type"] == "text/html").unwrap();
    assert!(html["text"].as_str().unwrap().contains("<b>世界</b>"));
    let data = find(&|p| p["filename"] == "data.bin").unwrap();
    assert_eq!(
        data["sha256"],
        sha256(&binary),
        "binary attachment byte for byte"
    );
    let notes = find(&|p| p["filename"] == "说明.txt").unwrap();
    assert_eq!(
        notes["text"].as_str().unwrap().replace("\r\n", "\n"),
        "第一行\n第二行\n"
    );
    let logo = find(&|p| p["cid"] == "<logo@pigeon>").unwrap();
    assert_eq!(logo["type"], "image/png");
    assert_eq!(logo["sha256"], sha256(&png));
    assert!(parts.iter().any(|p| p["type"] == "multipart/alternative"));

    // Carol reads it with `pigeon read` over IMAP.
    let carol_home = tempfile::tempdir().unwrap();
    ok(ua(
        carol_home.path(),
        &[
            "account",
            "add",
            "home",
            "--email",
            CAROL,
            "--host",
            "localhost",
            "--submission-port",
            &submission,
            "--imap-port",
            &imaps,
            "--ca",
            ca.to_str().unwrap(),
        ],
        "",
    ));
    let read = |args: &[&str]| ok(ua(carol_home.path(), &[&["read"], args].concat(), PW));
    let list: serde_json::Value = serde_json::from_str(&read(&["--json", "list"])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["subject"], "电子邮件 测试");
    assert_eq!(list[0]["from"], "Bob Builder <bob@localhost>");
    assert_eq!(list[0]["unread"], true);
    assert_eq!(list[0]["attachment"], true);
    let human = read(&["list"]);
    assert!(
        human.contains("电子邮件 测试") && human.contains("INBOX — 1 messages"),
        "{human}"
    );
    let shown: serde_json::Value = serde_json::from_str(&read(&["--json", "show", "1"])).unwrap();
    assert_eq!(
        shown["text"].as_str().unwrap().replace("\r\n", "\n"),
        "你好，世界！\nÇa va ?\n"
    );
    let names: Vec<&str> = shown["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"data.bin") && names.contains(&"说明.txt"),
        "{shown}"
    );
    let list: serde_json::Value = serde_json::from_str(&read(&["--json", "list"])).unwrap();
    assert_eq!(list[0]["unread"], false, "show marks it read");
    let saved_dir = files.path().join("saved");
    read(&["save", "1", "--dir", saved_dir.to_str().unwrap()]);
    assert_eq!(std::fs::read(saved_dir.join("data.bin")).unwrap(), binary);
    assert_eq!(std::fs::read(saved_dir.join("second.bin")).unwrap(), second);
    assert_eq!(
        std::fs::read_to_string(saved_dir.join("说明.txt"))
            .unwrap()
            .replace("\r\n", "\n"),
        "第一行\n第二行\n"
    );
    assert!(read(&["folders"]).lines().any(|l| l == "Sent"));

    // The same over POP3: download-and-keep, then download-and-delete.
    ok(ua(
        carol_home.path(),
        &[
            "account",
            "add",
            "pop",
            "--email",
            CAROL,
            "--host",
            "localhost",
            "--submission-port",
            &submission,
            "--pop3-port",
            &server.addr("pop3+tls").port().to_string(),
            "--ca",
            ca.to_str().unwrap(),
            "--default",
        ],
        "",
    ));
    let listed: serde_json::Value =
        serde_json::from_str(&read(&["--pop3", "--json", "list"])).unwrap();
    assert_eq!(listed[0]["subject"], "电子邮件 测试");
    let shown: serde_json::Value =
        serde_json::from_str(&read(&["--pop3", "--json", "show", "1"])).unwrap();
    assert_eq!(
        shown["text"].as_str().unwrap().replace("\r\n", "\n"),
        "你好，世界！\nÇa va ?\n"
    );
    let pop_dir = files.path().join("pop3-saved");
    read(&[
        "--pop3",
        "--keep",
        "save",
        "1",
        "--dir",
        pop_dir.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(pop_dir.join("second.bin")).unwrap(), second);
    assert_eq!(std::fs::read(pop_dir.join("data.bin")).unwrap(), binary);
    assert_eq!(server.uids(CAROL).len(), 1, "kept");
    read(&["--pop3", "--delete", "show", "1"]);
    assert!(server.uids(CAROL).is_empty(), "deleted after reading");

    // The Bcc copy reached bob, and bob's Sent folder has the message.
    assert_eq!(server.uids(BOB).len(), 1);
    let sent =
        String::from_utf8(server.admin_ok(&["mail", "list", BOB, "--mailbox", "Sent"])).unwrap();
    assert_eq!(sent.lines().skip(1).count(), 1, "{sent}");
}

#[test]
fn dry_runs_and_clear_errors() {
    if !require_tool("python3") {
        return;
    }
    let server = TestServer::with_users(exe(), &[BOB], PW);
    let home = tempfile::tempdir().unwrap();
    let submission = server.addr("submission").port().to_string();
    let ca = server.cert_pem();
    // No account yet.
    let out = ua(home.path(), &["send", "--to", BOB, "--body", "x"], PW);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no account yet"));
    ok(ua(
        home.path(),
        &[
            "account",
            "add",
            "work",
            "--email",
            BOB,
            "--host",
            "localhost",
            "--submission-port",
            &submission,
            "--ca",
            ca.to_str().unwrap(),
        ],
        "",
    ));
    // A dry run prints the message, Bcc-free, without sending.
    let out = ok(ua(
        home.path(),
        &[
            "send",
            "--to",
            BOB,
            "--bcc",
            "x@localhost",
            "--subject",
            "Grüße",
            "--body",
            "hi",
            "--dry-run",
        ],
        "",
    ));
    assert!(out.contains("Subject: =?utf-8?"), "{out}");
    assert!(!out.contains("Bcc"), "{out}");
    assert!(server.uids(BOB).is_empty());
    // Bad input and a wrong password are explained.
    let out = ua(
        home.path(),
        &["send", "--to", "not an address", "--body", "x"],
        PW,
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an email address"));
    let out = ua(
        home.path(),
        &["send", "--to", BOB, "--body", "x"],
        "wrong password",
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("authentication failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // An untrusted certificate, and an unreachable server.
    ok(ua(
        home.path(),
        &[
            "account",
            "add",
            "untrusting",
            "--email",
            BOB,
            "--host",
            "localhost",
            "--submission-port",
            &submission,
        ],
        "",
    ));
    let out = ua(
        home.path(),
        &[
            "send",
            "--account",
            "untrusting",
            "--to",
            BOB,
            "--body",
            "x",
        ],
        PW,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("certificate") && err.contains("--insecure"),
        "{err}"
    );
    let closed = test_support::free_port().to_string();
    ok(ua(
        home.path(),
        &[
            "account",
            "add",
            "gone",
            "--email",
            BOB,
            "--host",
            "127.0.0.1",
            "--submission-port",
            &closed,
        ],
        "",
    ));
    let out = ua(
        home.path(),
        &["send", "--account", "gone", "--to", BOB, "--body", "x"],
        PW,
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach 127.0.0.1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saved_attachment_names_cannot_escape_the_directory() {
    let server = TestServer::with_users(exe(), &[BOB], PW);
    let hostile = "From: x@example.org\r\nTo: bob@localhost\r\nSubject: names\r\nMIME-Version: 1.0\r\n\
        Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee files\r\n\
        --b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=\"../../evil.txt\"\r\n\r\nevil\r\n\
        --b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=\"/etc/passwd\"\r\n\r\nroot\r\n--b--\r\n";
    crate::deliver(&server, "x@example.org", BOB, hostile.as_bytes()).await;
    let home = imap_reader(&server);
    let out_dir = tempfile::tempdir().unwrap();
    let target = out_dir.path().join("inbox-files");
    let saved = ok(ua(
        home.path(),
        &["read", "save", "1", "--dir", target.to_str().unwrap()],
        PW,
    ));
    assert!(target.join("evil.txt").is_file(), "{saved}");
    assert!(target.join("passwd").is_file(), "{saved}");
    assert!(!out_dir.path().join("evil.txt").exists());
    assert_eq!(
        std::fs::read_to_string(target.join("evil.txt")).unwrap(),
        "evil"
    );
}

async fn deliver(server: &TestServer, subject: &str) {
    let message = format!(
        "From: Alice <alice@example.org>\r\nTo: bob@localhost\r\nSubject: {subject}\r\n\r\nhello\r\n"
    );
    crate::deliver(server, "alice@example.org", BOB, message.as_bytes()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flag_move_delete_watch_and_both_pop3_modes() {
    let server = TestServer::with_users(exe(), &[BOB], PW);
    deliver(&server, "first").await;
    deliver(&server, "second").await;
    let home = tempfile::tempdir().unwrap();
    ok(ua(
        home.path(),
        &[
            "account",
            "add",
            "work",
            "--email",
            BOB,
            "--host",
            "localhost",
            "--submission-port",
            "1",
            "--imap-port",
            &server.addr("imap+tls").port().to_string(),
            "--pop3-port",
            &server.addr("pop3+tls").port().to_string(),
            "--ca",
            server.cert_pem().to_str().unwrap(),
        ],
        "",
    ));
    let read = |args: &[&str]| ok(ua(home.path(), &[&["read"], args].concat(), PW));
    let list = |folder: &str| -> serde_json::Value {
        serde_json::from_str(&read(&["--folder", folder, "--json", "list"])).unwrap()
    };

    read(&["flag", "1", "--flagged", "--seen"]);
    let inbox = list("INBOX");
    let first = inbox
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["uid"] == 1)
        .unwrap();
    assert!(
        first["flags"].to_string().contains("\\\\Flagged"),
        "{first}"
    );
    assert_eq!(first["unread"], false);
    read(&["flag", "1", "--unseen"]);
    assert_eq!(list("INBOX")[1]["unread"], true);

    // Delete goes to Trash; in Trash it is gone for good.
    read(&["delete", "2"]);
    assert_eq!(list("INBOX").as_array().unwrap().len(), 1);
    let trash = list("Trash");
    assert_eq!(trash.as_array().unwrap().len(), 1);
    assert_eq!(trash[0]["subject"], "second");
    let trash_uid = trash[0]["uid"].to_string();
    read(&["--folder", "Trash", "delete", &trash_uid]);
    assert!(list("Trash").as_array().unwrap().is_empty());
    // Move, and a clear error for a folder that does not exist.
    read(&["move", "1", "Archive"]);
    assert_eq!(list("Archive")[0]["subject"], "first");
    let out = ua(
        home.path(),
        &["read", "--folder", "Archive", "move", "1", "Nowhere"],
        PW,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Nowhere"));

    // watch prints new mail as it arrives.
    let mut watcher = std::process::Command::new(exe())
        .args(["read", "--json", "watch", "--max", "1"])
        .env("PIGEON_HOME", home.path())
        .env("PIGEON_PASSWORD", PW)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    deliver(&server, "live").await;
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = watcher.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > std::time::Duration::from_secs(15) {
            let _ = watcher.kill();
            panic!("watch did not report the new message");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(status.success());
    let mut printed = String::new();
    std::io::Read::read_to_string(&mut watcher.stdout.take().unwrap(), &mut printed).unwrap();
    let event: serde_json::Value = serde_json::from_str(printed.trim()).unwrap();
    assert_eq!(event["subject"], "live");

    // POP3: download and keep (twice: nothing new the second time), then download and delete.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let first: Vec<String> = serde_json::from_str(&read(&["--json", "pop3", "--dir", d])).unwrap();
    assert_eq!(first.len(), 1, "INBOX holds the live message");
    assert!(
        std::fs::read_to_string(&first[0])
            .unwrap()
            .contains("Subject: live")
    );
    let again: Vec<String> = serde_json::from_str(&read(&["--json", "pop3", "--dir", d])).unwrap();
    assert!(again.is_empty());
    assert_eq!(server.uids(BOB).len(), 1, "kept on the server");
    read(&["pop3", "--dir", d, "--delete"]);
    assert!(server.uids(BOB).is_empty(), "deleted from the server");
}

#[test]
fn mail_built_by_python_reads_correctly() {
    if !require_tool("python3") {
        return;
    }
    let server = TestServer::with_users(exe(), &[BOB], PW);
    // Python's email package builds (ISO-8859-1 and UTF-8 text, an RFC 2231 file name, base64
    // binary) and smtplib sends.
    let script = format!(
        r#"
import smtplib
from email.message import EmailMessage
m = EmailMessage()
m['From'] = 'Zoë <zoe@example.org>'
m['To'] = 'bob@localhost'
m['Subject'] = 'Café – 電郵'
m.set_content('Voilà le café.\n', charset='iso-8859-1')
m.add_alternative('<p>Voilà le <i>café</i>.</p>', subtype='html')
m.add_attachment(bytes(range(256)) * 40, maintype='application', subtype='octet-stream', filename='données été.bin')
s = smtplib.SMTP('127.0.0.1', {port})
s.send_message(m)
s.quit()
"#,
        port = server.addr("smtp").port()
    );
    crate::python(&script, &[]);
    let home = imap_reader(&server);
    let shown: serde_json::Value =
        serde_json::from_str(&ok(ua(home.path(), &["read", "--json", "show", "1"], PW))).unwrap();
    assert_eq!(shown["subject"], "Café – 電郵");
    assert_eq!(shown["from"], "Zoë <zoe@example.org>");
    assert_eq!(shown["text"].as_str().unwrap().trim(), "Voilà le café.");
    assert_eq!(shown["attachments"][0]["name"], "données été.bin");
    let dir = tempfile::tempdir().unwrap();
    ok(ua(
        home.path(),
        &["read", "save", "1", "--dir", dir.path().to_str().unwrap()],
        PW,
    ));
    let expected: Vec<u8> = (0..40).flat_map(|_| 0..=255u8).collect();
    assert_eq!(
        std::fs::read(dir.path().join("données été.bin")).unwrap(),
        expected
    );
    let human = ok(ua(home.path(), &["read", "show", "1"], PW));
    assert!(
        human.contains("Subject: Café – 電郵") && human.contains("Voilà le café."),
        "{human}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_thread_on_the_original() {
    let server = TestServer::with_users(exe(), &[BOB], PW);
    let original = "From: Alice <alice@example.org>\r\nReply-To: Lists <list@example.org>\r\n\
                    To: bob@localhost\r\nSubject: plans\r\nMessage-ID: <orig@example.org>\r\n\
                    References: <root@example.org>\r\n\r\nShall we?\r\n";
    crate::deliver(&server, "alice@example.org", BOB, original.as_bytes()).await;
    let home = imap_reader(&server);
    let reply = ok(ua(
        home.path(),
        &["send", "--reply-to-msg", "1", "--body", "Yes.", "--dry-run"],
        PW,
    ));
    assert!(reply.contains("In-Reply-To: <orig@example.org>"), "{reply}");
    assert!(
        reply.contains("References: <root@example.org> <orig@example.org>"),
        "{reply}"
    );
    assert!(reply.contains("Subject: Re: plans"), "{reply}");
    assert!(
        reply.contains("To: \"Lists\" <list@example.org>")
            || reply.contains("To: Lists <list@example.org>"),
        "{reply}"
    );
}

#[test]
fn mail_sent_by_swaks_reads_correctly() {
    if !require_tool("swaks") {
        return;
    }
    let server = TestServer::with_users(exe(), &[BOB], PW);
    let files = tempfile::tempdir().unwrap();
    let attachment: Vec<u8> = (0..10_000u32).map(|i| (i * 13 % 256) as u8).collect();
    let file = files.path().join("report.bin");
    std::fs::write(&file, &attachment).unwrap();
    let out = Command::new("swaks")
        .args(["--to", BOB, "--from", "swaks@example.org", "--server"])
        .arg(server.addr("smtp").to_string())
        .args([
            "--header",
            "Subject: from swaks",
            "--body",
            "Sent by swaks.",
            "--attach-type",
            "application/octet-stream",
            "--attach",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let home = imap_reader(&server);
    let shown: serde_json::Value =
        serde_json::from_str(&ok(ua(home.path(), &["read", "--json", "show", "1"], PW))).unwrap();
    assert_eq!(shown["subject"], "from swaks");
    assert!(
        shown["text"].as_str().unwrap().contains("Sent by swaks."),
        "{shown}"
    );
    let dir = tempfile::tempdir().unwrap();
    ok(ua(
        home.path(),
        &["read", "save", "1", "--dir", dir.path().to_str().unwrap()],
        PW,
    ));
    assert_eq!(
        std::fs::read(dir.path().join("report.bin")).unwrap(),
        attachment
    );
}

/// `pigeon read show` and the webmail's reading pane give HTML-only mail the same text: both
/// are `ua::MessageView` with the one HTML-to-text conversion (issue 15; they used to differ).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_only_mail_reads_the_same_in_the_cli_and_the_webmail() {
    use crate::hardening_mime::{Browser, PW as WEB_PW, server};
    let server = server();
    let mail = "From: News <news@example.org>\r\nTo: bob@localhost\r\nSubject: html only\r\n\
                MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
                <html><head><style>p { color: red }</style></head><body><h1>News</h1>\r\n\
                <p>Caf&eacute; &amp; <b>cr&egrave;me</b><br>second   line</p>\r\n\
                <ul><li>one<li>two</ul><table><tr><td>a<td>b</table><script>alert(1)</script>\r\n\
                <!-- <p>hidden</p> --><p><a href=\"https://example.com/\">a link</a></p></body></html>\r\n";
    crate::deliver(&server, "news@example.org", BOB, mail.as_bytes()).await;
    let home = imap_reader(&server);
    let shown: serde_json::Value = serde_json::from_str(&ok(ua(
        home.path(),
        &["read", "--json", "show", "1"],
        WEB_PW,
    )))
    .unwrap();
    let browser = Browser::login(&server);
    let inbox = browser.inbox();
    let email = browser.open(&inbox[0].0);
    assert_eq!(email["body"]["text"], shown["text"]);
    assert_eq!(
        shown["text"],
        "News\nCafé & crème\nsecond line\none\ntwo\na b\na link\n"
    );
}

/// `pigeon read list` marks attachments as RFC 8621 §4.1.4 counts them (hasAttachment): the
/// parts the reading pane lists that are not inline, an inline one with a file name, but no
/// image embedded in the HTML; read from the BODYSTRUCTURE the server sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_marks_attachments_as_rfc_8621_counts_them() {
    let server = TestServer::with_users(exe(), &[BOB], PW);
    let mixed = |second: &str| {
        format!(
            "Content-Type: multipart/mixed; boundary=M\r\n\r\n\
             --M\r\nContent-Type: text/plain\r\n\r\nHello\r\n--M\r\n{second}\r\n--M--\r\n"
        )
    };
    let cases = [
        (
            "name-only pdf",
            mixed("Content-Type: application/pdf; name=\"x.pdf\"\r\n\r\n%PDF"),
            true,
        ),
        (
            "inline pdf",
            mixed(
                "Content-Type: application/pdf\r\nContent-Disposition: inline; filename=x.pdf\r\n\r\n%PDF",
            ),
            true,
        ),
        (
            "forwarded",
            mixed(
                "Content-Type: message/rfc822\r\n\r\nFrom: c@example.org\r\nSubject: inner\r\n\r\nhi",
            ),
            true,
        ),
        (
            "embedded image",
            "Content-Type: multipart/related; boundary=R\r\n\r\n\
             --R\r\nContent-Type: text/html\r\n\r\n<img src=\"cid:i@x\">\r\n\
             --R\r\nContent-Type: image/png\r\nContent-ID: <i@x>\r\n\
             Content-Disposition: inline; filename=i.png\r\n\r\nxx\r\n--R--\r\n"
                .to_string(),
            false,
        ),
        (
            "alternative",
            "Content-Type: multipart/alternative; boundary=A\r\n\r\n\
             --A\r\nContent-Type: text/plain\r\n\r\nHi\r\n\
             --A\r\nContent-Type: text/html\r\n\r\n<p>Hi</p>\r\n--A--\r\n"
                .to_string(),
            false,
        ),
    ];
    for (subject, body, _) in &cases {
        let message = format!(
            "From: x@example.org\r\nTo: bob@localhost\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n{body}"
        );
        crate::deliver(&server, "x@example.org", BOB, message.as_bytes()).await;
    }
    let home = imap_reader(&server);
    let list: serde_json::Value =
        serde_json::from_str(&ok(ua(home.path(), &["read", "--json", "list"], PW))).unwrap();
    for (subject, _, want) in &cases {
        let line = list
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["subject"] == *subject)
            .unwrap_or_else(|| panic!("{subject} missing: {list}"));
        assert_eq!(line["attachment"], *want, "{subject}");
    }
}
