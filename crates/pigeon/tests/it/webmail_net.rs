//! The webmail's listeners are admitted by `net` like every protocol: `[limits]`'s per-IP
//! count is shared with IMAP, SMTP and POP3 (one more HTTP connection is answered 503 and
//! closed), a freed place is usable again, and SIGTERM closes idle HTTP connections at once.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use test_support::TestServer;

use crate::exe;

fn connect(server: &TestServer, protocol: &str) -> TcpStream {
    let stream = TcpStream::connect(server.addr(protocol)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
}

/// One keep-alive request for `/app.css` on `stream`; returns the status line and leaves the
/// connection open.
fn get(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /app.css HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().unwrap();
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).unwrap();
    status.trim_end().to_string()
}

/// Everything the server sends until it closes the connection.
fn rest(stream: &mut TcpStream) -> String {
    let mut all = Vec::new();
    stream.read_to_end(&mut all).unwrap();
    String::from_utf8_lossy(&all).into_owned()
}

#[test]
fn http_connections_count_in_the_per_ip_limit_shared_with_every_protocol() {
    let mut server = TestServer::new(exe(), "[limits]\nmax_connections_per_ip = 2\n");
    server.admin_ok(&["domain", "add", "localhost", "--no-dkim"]);
    server.start();

    let mut first = connect(&server, "http");
    let mut second = connect(&server, "http");
    assert_eq!(get(&mut first), "HTTP/1.1 200 OK");
    assert_eq!(get(&mut second), "HTTP/1.1 200 OK");

    // A third HTTP connection from this address is refused with a 503...
    let mut third = connect(&server, "http");
    let refused = rest(&mut third);
    assert!(
        refused.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{refused}"
    );
    assert!(refused.ends_with("too many connections\r\n"), "{refused}");
    // ...and so is IMAP: the two HTTP connections use up the address's places.
    let mut imap = connect(&server, "imap");
    let greeting = rest(&mut imap);
    assert!(greeting.starts_with("* BYE"), "{greeting}");
    // An implicit-TLS HTTP listener closes at once (a TLS client could not read a 503).
    let mut https = connect(&server, "http+tls");
    assert_eq!(rest(&mut https), "");

    // A freed place is usable again.
    drop(first);
    std::thread::sleep(Duration::from_millis(300));
    let mut fourth = connect(&server, "http");
    assert_eq!(get(&mut fourth), "HTTP/1.1 200 OK");
    assert_eq!(
        get(&mut second),
        "HTTP/1.1 200 OK",
        "keep-alive still works"
    );
}

#[test]
fn sigterm_closes_idle_http_connections_and_the_server_stops_at_once() {
    let mut server = TestServer::new(exe(), "[limits]\nshutdown_grace_secs = 20\n");
    server.admin_ok(&["domain", "add", "localhost", "--no-dkim"]);
    server.start();
    let mut idle = connect(&server, "http");
    assert_eq!(get(&mut idle), "HTTP/1.1 200 OK");
    let mut silent = connect(&server, "http");
    let started = Instant::now();
    let status = server.stop();
    assert!(status.success(), "clean exit after SIGTERM: {status}");
    // Well within the 20 s grace: idle connections do not hold the shutdown up.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(rest(&mut idle), "");
    assert_eq!(rest(&mut silent), "");
}
