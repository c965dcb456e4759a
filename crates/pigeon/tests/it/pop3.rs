//! POP3 end to end: Python poplib, curl, fetchmail (keep and delete), our own checks of
//! exact bytes, the maildrop lock, UPDATE semantics and `\Seen`.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use test_support::{TestServer, require_tool, strip_trace};

use crate::{exe, fixtures};

const BOB: &str = "bob@localhost";
const PW: &str = "pop secret";

/// A server with bob and three messages delivered over SMTP; returns the stored bytes.
async fn server_with_mail(extra: &str) -> (TestServer, Vec<Vec<u8>>) {
    let server = TestServer::with_config(exe(), extra, &[BOB], PW);
    let mut smtp = client::smtp::SmtpClient::connect(server.addr("smtp"), Duration::from_secs(20))
        .await
        .unwrap();
    smtp.ehlo("sender.test").await.unwrap();
    for message in [
        fixtures::ascii(BOB, "pop"),
        fixtures::utf8(BOB, "pop"),
        fixtures::dotted(BOB, "pop"),
    ] {
        smtp.send("alice@example.org", &[BOB], &message)
            .await
            .unwrap();
    }
    let stored = (1..=3).map(|uid| server.stored(BOB, uid)).collect();
    (server, stored)
}

fn unseen(server: &TestServer) -> u32 {
    let out = String::from_utf8(server.admin_ok(&["mail", "list", BOB])).unwrap();
    let first = out.lines().next().unwrap();
    first
        .split(", ")
        .find_map(|p| p.strip_suffix(" unseen"))
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_poplib_over_stls_and_ssl() {
    if !require_tool("python3") {
        return;
    }
    let (server, stored) = server_with_mail("").await;
    let dir = tempfile::tempdir().unwrap();
    let script = format!(
        r#"
import poplib, ssl, json, sys
ctx = ssl.create_default_context(cafile={cert:?})
p = poplib.POP3('localhost', {port})
caps = p.capa()
assert 'STLS' in caps and 'USER' not in caps, caps
p.stls(context=ctx)
caps = p.capa()
assert 'USER' in caps and 'UIDL' in caps and 'TOP' in caps and 'PIPELINING' in caps, caps
p.user({bob:?}); p.pass_({pw:?})
count, size = p.stat()
listing = p.list()[1]
uidls = p.uidl()[1]
top = p.top(2, 0)[1]
messages = [b'\r\n'.join(p.retr(i)[1]) + b'\r\n' for i in range(1, count + 1)]
p.dele(1)
try:
    p.retr(1)
    raise SystemExit('deleted message retrieved')
except poplib.error_proto as e:
    assert b'deleted' in e.args[0], e
p.rset()
p.dele(3)
p.quit()
for i, m in enumerate(messages):
    open({dir:?} + '/m%d' % (i + 1), 'wb').write(m)
s = poplib.POP3_SSL('localhost', {tls_port}, context=ctx)
s.user({bob:?}); s.pass_({pw:?})
after = s.stat()
s.quit()
print(json.dumps({{"count": count, "size": size, "listing": [l.decode() for l in listing],
    "uidls": [u.decode() for u in uidls], "top": [l.decode('utf-8') for l in top], "after": after}}))
"#,
        cert = server.cert_pem().display().to_string(),
        port = server.addr("pop3").port(),
        tls_port = server.addr("pop3+tls").port(),
        bob = BOB,
        pw = PW,
        dir = dir.path().display().to_string(),
    );
    let report: serde_json::Value = serde_json::from_slice(&crate::python(&script, &[])).unwrap();
    assert_eq!(report["count"], 3);
    let total: usize = stored.iter().map(Vec::len).sum();
    assert_eq!(
        report["size"], total,
        "STAT counts exactly the octets RETR sends"
    );
    assert_eq!(report["listing"][1], format!("2 {}", stored[1].len()));
    let uidls = report["uidls"].as_array().unwrap();
    assert!(
        uidls[0].as_str().unwrap().ends_with(".1"),
        "UIDL is UIDVALIDITY.UID: {uidls:?}"
    );
    assert!(
        report["top"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().starts_with("Subject: =?UTF-8?B?"))
    );
    for (i, expected) in stored.iter().enumerate() {
        let retrieved = std::fs::read(dir.path().join(format!("m{}", i + 1))).unwrap();
        assert_eq!(
            &retrieved,
            expected,
            "RETR {} gives the stored bytes",
            i + 1
        );
    }
    // DELE 1 was undone by RSET; DELE 3 happened at QUIT.
    assert_eq!(report["after"][0], 2);
    assert_eq!(server.uids(BOB), [1, 2]);
    assert_eq!(unseen(&server), 0, "RETR marked the messages \\Seen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_lists_and_retrieves() {
    if !require_tool("curl") {
        return;
    }
    let (server, stored) = server_with_mail("").await;
    let port = server.addr("pop3").port();
    let curl = |path: &str| {
        let out = Command::new("curl")
            .args(["-sS", "--ssl-reqd", "--cacert"])
            .arg(server.cert_pem())
            .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
            .args(["--user", &format!("{BOB}:{PW}")])
            .arg(format!("pop3://localhost:{port}/{path}"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "curl {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let list = String::from_utf8(curl("")).unwrap();
    assert_eq!(
        list,
        format!(
            "1 {}\r\n2 {}\r\n3 {}\r\n",
            stored[0].len(),
            stored[1].len(),
            stored[2].len()
        )
    );
    assert_eq!(curl("2"), stored[1]);
    assert_eq!(
        curl("3"),
        stored[2],
        "dot-stuffed lines come back unstuffed"
    );
}

fn fetchmail(server: &TestServer, dir: &std::path::Path, keep: bool) -> String {
    let rc = dir.join("fetchmailrc");
    let mbox = dir.join("mbox");
    std::fs::write(
        &rc,
        format!(
            "set no bouncemail\nset no syslog\nset invisible\n\
             poll localhost via 127.0.0.1 protocol pop3 port {} uidl\n\
             user '{BOB}' there with password '{PW}' is 'root' here\n\
             ssl sslcertck sslcertfile '{}' sslcommonname localhost\n\
             {} mda \"/bin/sh -c 'cat >> {}'\"\n",
            server.addr("pop3+tls").port(),
            server.cert_pem().display(),
            if keep { "keep" } else { "nokeep" },
            mbox.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&rc, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = Command::new("fetchmail")
        .arg("--fetchmailrc")
        .arg(&rc)
        .arg("--idfile")
        .arg(dir.join("ids"))
        .arg("--pidfile")
        .arg(dir.join("pid"))
        .env("HOME", dir)
        .output()
        .unwrap();
    // Exit 0: mail fetched; 1: no mail.
    let code = out.status.code().unwrap_or(-1);
    assert!(
        code == 0 || code == 1,
        "fetchmail exit {code}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(&mbox).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetchmail_keep_then_delete() {
    if !require_tool("fetchmail") {
        return;
    }
    let (server, stored) = server_with_mail("").await;
    let dir = tempfile::tempdir().unwrap();
    let first = fetchmail(&server, dir.path(), true);
    for message in &stored {
        // fetchmail hands the MDA LF line ends.
        let lf = String::from_utf8(strip_trace(message).to_vec())
            .unwrap()
            .replace("\r\n", "\n");
        assert!(first.contains(&lf), "fetched: {first}");
    }
    assert_eq!(
        server.uids(BOB),
        [1, 2, 3],
        "keep mode leaves the mail on the server"
    );
    let second = fetchmail(&server, dir.path(), true);
    assert_eq!(second, first, "a second keep run fetches nothing new");

    let other = tempfile::tempdir().unwrap();
    let fetched = fetchmail(&server, other.path(), false);
    assert_eq!(fetched.matches("Message-ID: <").count(), 3, "{fetched}");
    assert!(
        server.uids(BOB).is_empty(),
        "delete mode empties the maildrop"
    );
}

/// A raw POP3 line conversation.
struct Raw {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Raw {
    fn connect(server: &TestServer) -> Raw {
        let stream = TcpStream::connect(server.addr("pop3")).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut raw = Raw {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        };
        assert!(raw.line().starts_with("+OK"));
        raw
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        line.trim_end().to_string()
    }

    fn send(&mut self, command: &str) -> String {
        self.writer
            .write_all(format!("{command}\r\n").as_bytes())
            .unwrap();
        self.line()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maildrop_lock_and_update_only_at_quit() {
    let (server, _) = server_with_mail("[auth]\nallow_plaintext_on_loopback = true\n").await;
    let mut first = Raw::connect(&server);
    assert_eq!(first.send(&format!("USER {BOB}")), "+OK send PASS");
    assert!(
        first
            .send(&format!("PASS {PW}"))
            .starts_with("+OK maildrop has 3 messages")
    );
    let mut second = Raw::connect(&server);
    second.send(&format!("USER {BOB}"));
    assert_eq!(
        second.send(&format!("PASS {PW}")),
        "-ERR [IN-USE] maildrop already locked by another session"
    );
    second.send(&format!("USER {BOB}"));
    assert_eq!(
        second.send("PASS wrong"),
        "-ERR [AUTH] invalid user name or password"
    );

    // DELE then drop the connection: nothing is deleted, and the lock is released.
    assert_eq!(first.send("DELE 1"), "+OK message 1 deleted");
    drop(first);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server.uids(BOB), [1, 2, 3]);
    second.send(&format!("USER {BOB}"));
    assert!(second.send(&format!("PASS {PW}")).starts_with("+OK"));
    assert_eq!(second.send("DELE 2"), "+OK message 2 deleted");
    assert_eq!(
        second.send("QUIT"),
        "+OK pigeon POP3 server signing off (2 messages left)"
    );
    assert_eq!(server.uids(BOB), [1, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expire_and_login_delay_when_configured() {
    let (server, _) = server_with_mail("[auth]\nallow_plaintext_on_loopback = true\n[pop3]\nexpire_days = 0\nlogin_delay_secs = 3600\n").await;
    let mut pop = Raw::connect(&server);
    assert_eq!(pop.send("CAPA"), "+OK Capability list follows");
    let mut caps = Vec::new();
    loop {
        let line = pop.line();
        if line == "." {
            break;
        }
        caps.push(line);
    }
    assert!(
        caps.contains(&"EXPIRE 0".to_string()) && caps.contains(&"LOGIN-DELAY 3600".to_string()),
        "{caps:?}"
    );
    pop.send(&format!("USER {BOB}"));
    // EXPIRE 0: everything delivered before this login is removed at login.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        pop.send(&format!("PASS {PW}")),
        "+OK maildrop has 0 messages (0 octets)"
    );
    assert_eq!(
        pop.send("QUIT"),
        "+OK pigeon POP3 server signing off (0 messages left)"
    );
    assert!(server.uids(BOB).is_empty());
    let mut again = Raw::connect(&server);
    again.send(&format!("USER {BOB}"));
    assert_eq!(
        again.send(&format!("PASS {PW}")),
        "-ERR [LOGIN-DELAY] minimum time between logins not reached"
    );
}
