//! A panic in one session closes that connection only (issue 14): the other connections, the
//! listener and the limits' counters carry on.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use net::{ConnInfo, Flow, Limits, Protocol, Server, Session, TlsInfo, TlsMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Echoes every read back; panics when the peer sends `panic`.
struct Echo;

struct EchoSession;

impl Session for EchoSession {
    fn greet(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"hello\n");
    }
    async fn input(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Flow {
        if bytes.starts_with(b"panic") {
            panic!("a session bug, on purpose");
        }
        out.extend_from_slice(bytes);
        Flow::Continue
    }
    fn idle_timeout(&self) -> Duration {
        Duration::from_secs(60)
    }
    fn timed_out(&mut self, _out: &mut Vec<u8>) {}
    fn is_idle(&self) -> bool {
        true
    }
    fn shutting_down(&mut self, _out: &mut Vec<u8>) {}
    fn tls_established(&mut self, _info: TlsInfo) {}
}

impl Protocol for Echo {
    type Session = EchoSession;
    fn session(&self, _conn: ConnInfo) -> EchoSession {
        EchoSession
    }
    fn busy_message(&self) -> Vec<u8> {
        b"busy\n".to_vec()
    }
    fn name(&self) -> &'static str {
        "echo"
    }
}

async fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut greeting = [0u8; 6];
    stream.read_exact(&mut greeting).await.unwrap();
    assert_eq!(&greeting, b"hello\n");
    stream
}

async fn echo(stream: &mut TcpStream, text: &[u8]) {
    stream.write_all(text).await.unwrap();
    let mut back = vec![0u8; text.len()];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut back))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    assert_eq!(back, text);
}

/// Collects what the log says, to check that a panic is logged with its connection id.
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

#[tokio::test]
async fn a_panicking_session_closes_only_its_connection() {
    let log = Log::default();
    let writer = log.clone();
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish(),
    );
    let limits = Limits {
        max_connections: 10,
        max_connections_per_ip: 10,
        shutdown_grace: Duration::from_secs(1),
        max_connection_rate_per_ip: 1000,
    };
    let server = Server::new(limits, None);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        server
            .clone()
            .serve(listener, Arc::new(Echo), TlsMode::None),
    );

    let mut bystander = connect(addr).await;
    echo(&mut bystander, b"before\n").await;

    // Several panics in a row, so the log and the counters are exercised more than once.
    for _ in 0..3 {
        let mut victim = connect(addr).await;
        victim.write_all(b"panic\n").await.unwrap();
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(10), victim.read_to_end(&mut rest))
            .await
            .expect("the panicked connection is closed");
        // Closed by the dropped socket: either a clean EOF or a reset, never an answer.
        assert!(closed.is_err() || rest.is_empty(), "got {rest:?}");
    }

    echo(&mut bystander, b"after\n").await;
    let mut newcomer = connect(addr).await;
    echo(&mut newcomer, b"new\n").await;

    let logged = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let panics: Vec<&str> = logged
        .lines()
        .filter(|line| line.contains("session panicked"))
        .collect();
    assert_eq!(panics.len(), 3, "log:\n{logged}");
    for line in panics {
        assert!(
            line.contains("cid=") && line.contains("a session bug, on purpose"),
            "{line}"
        );
    }

    // The panicked connections gave their slots back: only the two live ones count.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.open_connections() != 2 {
        assert!(
            Instant::now() < deadline,
            "open connections stayed at {}",
            server.open_connections()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
