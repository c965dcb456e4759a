//! Mail protocol clients used by the user agent, the queue, the tests and the benchmark.
//!
//! [`smtp::SmtpClient`] speaks SMTP over plain TCP or TLS (implicit or STARTTLS) with AUTH;
//! [`tls`] builds the rustls client configurations.

pub mod imap;
pub mod pop3;
pub mod smtp;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

/// What can go wrong in the line-based clients (POP3 and IMAP).
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the server took longer than {0:?} to answer")]
    Timeout(Duration),
    #[error("the server closed the connection")]
    Closed,
    /// The server refused: POP3 `-ERR`, IMAP `NO` or `BAD`.
    #[error("server said: {0}")]
    Rejected(String),
}

impl LinkError for LineError {
    fn timed_out(after: Duration) -> Self {
        LineError::Timeout(after)
    }
}

/// The error types of the clients: each can report an I/O failure and a missed deadline.
pub(crate) trait LinkError: From<std::io::Error> {
    fn timed_out(after: Duration) -> Self;
}

/// Runs one I/O step with a deadline, so a stalled server cannot hang the caller.
pub(crate) async fn within<T, E: LinkError>(
    timeout: Duration,
    io: impl Future<Output = std::io::Result<T>>,
) -> Result<T, E> {
    match tokio::time::timeout(timeout, io).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(E::timed_out(timeout)),
    }
}

/// Connects within `timeout`, with Nagle off: commands are small and each waits for its reply.
pub(crate) async fn dial<E: LinkError>(
    addr: SocketAddr,
    timeout: Duration,
) -> Result<TcpStream, E> {
    let stream = within::<_, E>(timeout, TcpStream::connect(addr)).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}
