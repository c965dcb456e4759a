//! `webmail::serve` on a real socket, admitted by `net`: the per-IP limit applies to HTTP,
//! and at `trace` level each request is logged in its connection's span (`cid`) with method,
//! path, status and duration, and never a query, cookie, password or body.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use store::{Address, Secrets, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PW: &str = "pw-secret-8c1f";

/// What the log says, from every test of this binary.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn log() -> &'static Log {
    static LOG: OnceLock<Log> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Log::default();
        let writer = log.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        log
    })
}

/// The site on a loopback port behind a `net::Server` with these per-IP limits.
async fn start(per_ip: usize) -> (tempfile::TempDir, Arc<net::Server>, std::net::SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(store_sqlite::SqliteStore::open(dir.path()).unwrap());
    store.add_domain("localhost").await.unwrap();
    let secrets = Secrets {
        password_hash: sasl::hash_password(PW, &[7; sasl::SALT_LEN]).unwrap(),
        scram: None,
    };
    store
        .create_account(&Address::parse("alice@localhost").unwrap(), &secrets)
        .await
        .unwrap();
    let webmail = Arc::new(webmail::Webmail {
        store: store.clone(),
        login: Arc::new(auth::Authenticator::new(
            store.clone(),
            sasl::ThrottleConfig::default(),
            [9; 32],
        )),
        submitter: Arc::new(submission::Submitter::new(
            store.clone(),
            Arc::new(submission::SendingLimits::default()),
            submission::Settings::default(),
        )),
        sessions: Arc::new(webmail::Sessions::new(Duration::from_secs(600))),
        settings: webmail::Settings {
            hostname: "mail.localhost".into(),
            max_message_size: 1 << 20,
            secure: false,
            allow_plaintext_on_loopback: true,
            max_sessions_per_account: 10,
        },
    });
    let server = net::Server::new(
        net::Limits {
            max_connections: 100,
            max_connections_per_ip: per_ip,
            shutdown_grace: Duration::from_secs(5),
            max_connection_rate_per_ip: 1000,
        },
        None,
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(webmail::serve(server.clone(), listener, None, webmail));
    (dir, server, addr)
}

/// Sends `request` on a new connection and reads until the server closes it.
async fn exchange(addr: std::net::SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer))
        .await
        .expect("an answer within 20 s")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn requests_are_traced_per_connection_without_secrets() {
    let log = log();
    let (_dir, _server, addr) = start(10).await;
    let answer = exchange(
        addr,
        "GET /jmap/eventsource?csrf=query-secret-77 HTTP/1.1\r\nHost: localhost\r\n\
         Cookie: pigeon_session=cookie-secret-42\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    let body = format!(r#"{{"username": "alice@localhost", "password": "{PW}"}}"#);
    let answer = exchange(
        addr,
        &format!(
            "POST /api/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let text = String::from_utf8_lossy(&log.0.lock().unwrap()).into_owned();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("request") && l.contains("proto=\"http\""))
        .collect();
    // The other tests of this binary log to the same place: this one's stream was refused.
    let events = lines
        .iter()
        .find(|l| l.contains("/jmap/eventsource") && l.contains("status=401"));
    let events = events.unwrap_or_else(|| panic!("no trace of the request in:\n{text}"));
    assert!(events.contains("TRACE"), "{events}");
    assert!(events.contains("cid="), "{events}");
    assert!(events.contains("method=GET"), "{events}");
    assert!(events.contains("status=401"), "{events}");
    assert!(events.contains("micros="), "{events}");
    let login = lines.iter().find(|l| l.contains("/api/login"));
    let login = login.unwrap_or_else(|| panic!("no trace of the login in:\n{text}"));
    assert!(
        login.contains("method=POST") && login.contains("status=200"),
        "{login}"
    );
    for secret in ["query-secret-77", "cookie-secret-42", PW, "pigeon_session"] {
        assert!(!text.contains(secret), "{secret} logged:\n{text}");
    }
}

#[tokio::test]
async fn the_per_ip_limit_applies_to_http() {
    let _ = log();
    let (_dir, server, addr) = start(1).await;
    let mut held = TcpStream::connect(addr).await.unwrap();
    held.write_all(b"GET /app.css HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    held.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let refused = exchange(addr, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert_eq!(server.open_connections(), 1);
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let answer = exchange(
        addr,
        "GET /app.css HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Shutdown closes the site's connections and waits for them.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    tokio::time::timeout(Duration::from_secs(4), server.shutdown())
        .await
        .expect("idle HTTP connections close at once");
    let mut rest = Vec::new();
    idle.read_to_end(&mut rest).await.unwrap();
    assert_eq!(server.open_connections(), 0);
}

#[tokio::test]
async fn shutdown_does_not_wait_for_event_streams() {
    let _ = log();
    let (_dir, server, addr) = start(10).await;
    let body = format!(r#"{{"username": "alice@localhost", "password": "{PW}"}}"#);
    let login = exchange(
        addr,
        &format!(
            "POST /api/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    let cookie = login
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("no cookie in {login}"));
    let csrf = login
        .split("\"csrfToken\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no CSRF token in {login}"));
    let mut events = TcpStream::connect(addr).await.unwrap();
    events
        .write_all(
            format!(
                "GET /jmap/eventsource?csrf={csrf} HTTP/1.1\r\nHost: localhost\r\nCookie: {cookie}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut head = [0u8; 12];
    events.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let started = std::time::Instant::now();
    server.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "shutdown waited {:?} for an event stream (grace 5 s)",
        started.elapsed()
    );
    assert_eq!(server.open_connections(), 0);
}
