//! `Server::accept_loop` for protocols that drive their own connections (HTTP): the same
//! limits as `serve`, connection ids, and the stop signal with its grace period.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use net::{Limits, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn limits(per_ip: usize, rate: u32) -> Limits {
    Limits {
        max_connections: 100,
        max_connections_per_ip: per_ip,
        shutdown_grace: Duration::from_secs(5),
        max_connection_rate_per_ip: rate,
    }
}

/// A server whose connections write their id, then hold until the peer closes or the server
/// stops (then write `bye`).
async fn start(limits: Limits) -> (Arc<Server>, std::net::SocketAddr, Arc<Mutex<Vec<u64>>>) {
    let server = Server::new(limits, None);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let ids = Arc::new(Mutex::new(Vec::new()));
    let seen = ids.clone();
    let signal = server.clone();
    tokio::spawn(server.clone().accept_loop(
        listener,
        "test",
        false,
        || b"busy\n".to_vec(),
        move |mut stream: TcpStream, conn| {
            seen.lock().unwrap().push(conn.id);
            let mut shutdown = signal.shutdown_signal();
            async move {
                stream
                    .write_all(format!("{}\n", conn.id).as_bytes())
                    .await?;
                let mut byte = [0u8; 1];
                tokio::select! {
                    _ = stream.read(&mut byte) => {}
                    _ = shutdown.requested() => stream.write_all(b"bye\n").await?,
                }
                Ok(())
            }
        },
    ));
    (server, addr, ids)
}

async fn first_line(stream: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte))
        .await
        .expect("an answer within 10 s")
        .unwrap()
        == 1
        && byte[0] != b'\n'
    {
        line.push(byte[0]);
    }
    String::from_utf8(line).unwrap()
}

#[tokio::test]
async fn the_per_ip_cap_and_rate_apply_and_slots_are_released() {
    let (server, addr, ids) = start(limits(2, 1000)).await;
    let mut first = TcpStream::connect(addr).await.unwrap();
    let mut second = TcpStream::connect(addr).await.unwrap();
    assert_eq!(first_line(&mut first).await, "1");
    assert_eq!(first_line(&mut second).await, "2");
    assert_eq!(server.open_connections(), 2);
    let mut third = TcpStream::connect(addr).await.unwrap();
    assert_eq!(first_line(&mut third).await, "busy");
    assert_eq!(
        *ids.lock().unwrap(),
        [1, 2],
        "refused connections get no id"
    );
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server.open_connections(), 1);
    let mut fourth = TcpStream::connect(addr).await.unwrap();
    assert_eq!(first_line(&mut fourth).await, "3");

    let (_server, addr, _) = start(limits(10, 2)).await;
    let mut kept = Vec::new();
    for expected in ["1", "2", "busy"] {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        assert_eq!(first_line(&mut stream).await, expected);
        kept.push(stream);
    }
}

#[tokio::test]
async fn shutdown_is_signalled_and_waits_for_the_connections() {
    let (server, addr, _) = start(limits(10, 1000)).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    assert_eq!(first_line(&mut stream).await, "1");
    assert!(server.shutdown_signal().grace() == Duration::from_secs(5));
    tokio::time::timeout(Duration::from_secs(5), server.shutdown())
        .await
        .expect("the connection ends when asked, well within the grace period");
    assert_eq!(first_line(&mut stream).await, "bye");
    assert_eq!(server.open_connections(), 0);
    // The listener is closed: nothing answers any more.
    if let Ok(mut late) = TcpStream::connect(addr).await {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), late.read(&mut byte)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    }
}
