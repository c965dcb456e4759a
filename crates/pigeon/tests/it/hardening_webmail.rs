//! Issue 14 (hardening) regression tests: hardening_webmail. The real server over HTTP on
//! loopback: uploads go to the store and are bounded per account, sessions are capped per
//! account, plain-HTTP logins follow `[auth]`, and the self-signed certificate names the host.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use test_support::TestServer;

const ALICE: &str = "alice@localhost";
const PW: &str = "webmail hardening";
const MB: usize = 1024 * 1024;

/// An HTTP/1.1 answer.
struct Reply {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// Sends one request on a new connection. With `body_after_answer` false the body is not
/// sent at all: the server must answer from the head alone.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
    send_body: bool,
) -> Reply {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    if send_body {
        stream.write_all(body).unwrap();
    }
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(&raw)));
    let headers = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = headers[9..12].parse().unwrap();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line]).unwrap().trim(), 16).unwrap();
        data = &data[line + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// A logged-in browser: its cookie and CSRF token.
struct Session {
    addr: SocketAddr,
    cookie: String,
    csrf: String,
    account: String,
}

fn login_reply(addr: SocketAddr, user: &str) -> Reply {
    http(
        addr,
        "POST",
        "/api/login",
        &[("Content-Type", "application/json".into())],
        serde_json::json!({ "username": user, "password": PW })
            .to_string()
            .as_bytes(),
        true,
    )
}

fn login(addr: SocketAddr, user: &str) -> Session {
    let reply = login_reply(addr, user);
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
    let json = reply.json();
    Session {
        addr,
        cookie,
        csrf: json["csrfToken"].as_str().unwrap().into(),
        account: json["accountId"].as_str().unwrap().into(),
    }
}

impl Session {
    fn headers(&self) -> Vec<(&'static str, String)> {
        vec![
            ("Cookie", self.cookie.clone()),
            ("X-CSRF-Token", self.csrf.clone()),
        ]
    }

    fn get(&self, path: &str) -> Reply {
        http(self.addr, "GET", path, &self.headers(), b"", true)
    }

    fn upload(&self, data: &[u8], send_body: bool) -> Reply {
        let mut headers = self.headers();
        headers.push(("Content-Type", "application/octet-stream".into()));
        let path = format!("/jmap/upload/{}/?name=f.bin", self.account);
        http(self.addr, "POST", &path, &headers, data, send_body)
    }

    fn logout(&self) {
        let reply = http(self.addr, "POST", "/api/logout", &self.headers(), b"", true);
        assert_eq!(reply.status, 204);
    }
}

/// The server's resident memory, from `/proc`.
fn rss(server: &TestServer) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let kb: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

/// What `pigeon verify` says of unfinished uploads (empty when there are none).
fn uploads_line(server: &TestServer) -> String {
    let out = String::from_utf8(server.admin_ok(&["verify"])).unwrap();
    out.lines()
        .find(|l| l.contains("unfinished uploads"))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn uploads_go_to_the_store_not_memory_and_are_bounded_over_an_accounts_sessions() {
    // Issue 14: each session could hold 50 MB of uploads in memory, and sessions were
    // unlimited (8 sessions = +400 MB).
    let server = TestServer::with_users(super::exe(), &[ALICE], PW);
    let addr = server.addr("http");
    let tabs: Vec<Session> = (0..3).map(|_| login(addr, ALICE)).collect();
    let before = rss(&server);
    let file = vec![0x5a; 40 * MB];
    for tab in &tabs[..2] {
        let reply = tab.upload(&file, true);
        assert_eq!(
            reply.status,
            201,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(reply.json()["size"], 40 * MB);
    }
    // 80 MB uploaded: the server did not keep them (it held 80 MB and more before).
    let grown = rss(&server).saturating_sub(before);
    eprintln!("server RSS grew by {} MB for 80 MB of uploads", grown / MB);
    assert!(
        grown < 40 * MB,
        "the server grew by {} MB for 80 MB of uploads",
        grown / MB
    );
    // They are in the store's upload area.
    assert_eq!(
        uploads_line(&server)
            .split_whitespace()
            .take(5)
            .collect::<Vec<_>>(),
        ["2", "unfinished", "uploads", "hold", &(80 * MB).to_string()]
    );
    // The account may hold twice the 50 MB message limit over all its sessions: a third file
    // of 30 MB in another session is refused from its declared size, before it is sent.
    let refused = tabs[2].upload(&vec![1; 30 * MB], false);
    assert_eq!(refused.status, 413);
    assert!(
        refused.error().contains("all your open sessions") && refused.error().contains("100 MB"),
        "{}",
        refused.error()
    );
    // One session alone may not pass a message's size either.
    let refused = tabs[0].upload(&vec![1; 11 * MB], false);
    assert_eq!(refused.status, 413);
    assert!(
        refused.error().contains("larger than a message may be"),
        "{}",
        refused.error()
    );
    // Logging out frees the files, in the store too.
    tabs[0].logout();
    let ok = tabs[2].upload(&vec![2; 30 * MB], true);
    assert_eq!(ok.status, 201, "{}", String::from_utf8_lossy(&ok.body));
    for tab in &tabs[1..] {
        tab.logout();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while !uploads_line(&server).is_empty() {
        assert!(Instant::now() < deadline, "{}", uploads_line(&server));
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sessions_per_account_are_capped() {
    let server = TestServer::with_config(
        super::exe(),
        "[webmail]\nmax_sessions_per_account = 2\n",
        &[ALICE],
        PW,
    );
    let addr = server.addr("http");
    let first = login(addr, ALICE);
    let second = login(addr, ALICE);
    assert_eq!(first.get("/jmap/session").status, 200);
    // A third login ends the session unused longest (the second, since the first was used).
    let third = login(addr, ALICE);
    assert_eq!(second.get("/jmap/session").status, 401);
    assert_eq!(first.get("/jmap/session").status, 200);
    assert_eq!(third.get("/jmap/session").status, 200);
    for _ in 0..5 {
        login(addr, ALICE);
    }
    let alive = [&first, &second, &third]
        .iter()
        .filter(|s| s.get("/jmap/session").status == 200)
        .count();
    assert_eq!(alive, 0, "eight logins, a cap of two: the old ones ended");
}

#[test]
fn plain_http_logins_follow_the_auth_policy_and_https_always_works() {
    // Issue 14: webmail passwords over plain HTTP were taken whatever `[auth]` said.
    let strict = TestServer::with_config(
        super::exe(),
        "[auth]\nallow_plaintext_on_loopback = false\n",
        &[ALICE],
        PW,
    );
    let refused = login_reply(strict.addr("http"), ALICE);
    assert_eq!(refused.status, 403);
    assert!(
        refused.error().contains("plain HTTP") && refused.error().contains("https://"),
        "{}",
        refused.error()
    );
    assert!(!refused.headers.to_ascii_lowercase().contains("set-cookie"));
    // The same server over HTTPS, checked by curl against the server's certificate.
    if test_support::require_tool("curl") {
        let port = strict.addr("http+tls").port();
        let out = std::process::Command::new("curl")
            .args(["-sS", "-i", "--cacert"])
            .arg(strict.cert_pem())
            .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
            .args(["-H", "Content-Type: application/json", "--data"])
            .arg(format!(
                "{{\"username\":\"{ALICE}\",\"password\":\"{PW}\"}}"
            ))
            .arg(format!("https://localhost:{port}/api/login"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.starts_with("HTTP/1.1 200"),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Unset (the development default) or allowed, a browser on this machine logs in over
    // plain HTTP (`http://localhost:8080`).
    for extra in ["", "[auth]\nallow_plaintext_on_loopback = true\n"] {
        let server = TestServer::with_config(super::exe(), extra, &[ALICE], PW);
        let session = login(server.addr("http"), ALICE);
        assert_eq!(session.get("/jmap/session").status, 200, "{extra}");
    }
}

#[test]
fn the_self_signed_certificate_names_the_host_and_lasts_a_year() {
    // Issue 14: it said CN "rcgen self signed cert" and was valid until 4096.
    if !test_support::require_tool("openssl") {
        return;
    }
    let mut server = TestServer::with_toml(
        super::exe(),
        &format!(
            "hostname = \"mail.pigeon.test\"\n{}\n{}",
            test_support::LOOPBACK_LISTENERS,
            test_support::NO_DNS
        ),
    );
    server.admin_ok(&["domain", "add", "localhost", "--no-dkim"]);
    server.start();
    let openssl = |args: &[&str]| {
        std::process::Command::new("openssl")
            .args(["x509", "-noout", "-in"])
            .arg(server.cert_pem())
            .args(args)
            .output()
            .unwrap()
    };
    let text = String::from_utf8_lossy(&openssl(&["-subject", "-ext", "subjectAltName"]).stdout)
        .replace(' ', "");
    assert!(text.contains("subject=CN=mail.pigeon.test"), "{text}");
    assert!(
        text.contains("DNS:mail.pigeon.test,DNS:localhost"),
        "{text}"
    );
    let days = |n: u64| (n * 86_400).to_string();
    assert!(openssl(&["-checkend", &days(360)]).status.success());
    assert!(
        !openssl(&["-checkend", &days(366)]).status.success(),
        "valid for more than a year"
    );
    // The HTTPS listener serves it, and a client checking the name against it accepts it.
    if test_support::require_tool("curl") {
        let port = server.addr("http+tls").port();
        let out = std::process::Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(server.cert_pem())
            .args(["--resolve", &format!("mail.pigeon.test:{port}:127.0.0.1")])
            .arg(format!("https://mail.pigeon.test:{port}/"))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "200",
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A restart keeps it; it is made again only when it would no longer do.
    let before = std::fs::read(server.cert_pem()).unwrap();
    assert!(server.stop().success());
    server.start();
    assert_eq!(std::fs::read(server.cert_pem()).unwrap(), before);
}
