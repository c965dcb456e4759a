//! A small async POP3 client (RFC 1939): enough for the user agent's download-and-keep /
//! download-and-delete modes, and for the benchmark.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// What can go wrong; shared with the other line-based client.
pub use crate::LineError as Error;

pub type Result<T> = std::result::Result<T, Error>;

/// A POP3 session.
pub struct Pop3Client<S = TcpStream> {
    stream: BufReader<S>,
    timeout: Duration,
}

impl Pop3Client<TcpStream> {
    /// Connects and reads the greeting.
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Pop3Client<TcpStream>> {
        let stream = crate::dial::<Error>(addr, timeout).await?;
        Pop3Client::start(stream, timeout).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Pop3Client<S> {
    /// Reads the greeting on a connected stream.
    pub async fn start(stream: S, timeout: Duration) -> Result<Pop3Client<S>> {
        let mut client = Pop3Client {
            stream: BufReader::with_capacity(64 * 1024, stream),
            timeout,
        };
        client.status_line().await?;
        Ok(client)
    }

    async fn read_line(&mut self, line: &mut Vec<u8>) -> Result<()> {
        line.clear();
        let n =
            crate::within::<_, Error>(self.timeout, self.stream.read_until(b'\n', line)).await?;
        if n == 0 {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// Reads a `+OK`/`-ERR` line; returns the text after `+OK `.
    async fn status_line(&mut self) -> Result<String> {
        let mut line = Vec::new();
        self.read_line(&mut line).await?;
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        match text.strip_prefix("+OK") {
            Some(rest) => Ok(rest.trim_start().to_string()),
            None => Err(Error::Rejected(text)),
        }
    }

    /// Reads a multi-line body up to the lone ".", undoing byte-stuffing.
    async fn body(&mut self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut line = Vec::new();
        loop {
            self.read_line(&mut line).await?;
            if line == b".\r\n" || line == b".\n" {
                return Ok(out);
            }
            let start = usize::from(line.first() == Some(&b'.'));
            out.extend_from_slice(&line[start..]);
        }
    }

    /// Sends one command and reads its status line.
    pub async fn command(&mut self, line: &str) -> Result<String> {
        let write = async {
            self.stream
                .get_mut()
                .write_all(format!("{line}\r\n").as_bytes())
                .await?;
            self.stream.get_mut().flush().await
        };
        crate::within::<_, Error>(self.timeout, write).await?;
        self.status_line().await
    }

    /// USER and PASS.
    pub async fn login(&mut self, user: &str, password: &str) -> Result<()> {
        self.command(&format!("USER {user}")).await?;
        self.command(&format!("PASS {password}")).await?;
        Ok(())
    }

    /// STAT: (messages, octets).
    pub async fn stat(&mut self) -> Result<(usize, u64)> {
        let text = self.command("STAT").await?;
        let mut words = text.split_whitespace();
        let count = words.next().and_then(|w| w.parse().ok());
        let size = words.next().and_then(|w| w.parse().ok());
        match (count, size) {
            (Some(c), Some(s)) => Ok((c, s)),
            _ => Err(Error::Rejected(format!("bad STAT answer {text:?}"))),
        }
    }

    /// LIST: (number, octets) per message.
    pub async fn list(&mut self) -> Result<Vec<(usize, u64)>> {
        self.command("LIST").await?;
        let body = String::from_utf8_lossy(&self.body().await?).into_owned();
        Ok(body
            .lines()
            .filter_map(|l| {
                let (n, s) = l.split_once(' ')?;
                Some((n.parse().ok()?, s.trim().parse().ok()?))
            })
            .collect())
    }

    /// UIDL: (number, unique id) per message.
    pub async fn uidl(&mut self) -> Result<Vec<(usize, String)>> {
        self.command("UIDL").await?;
        let body = String::from_utf8_lossy(&self.body().await?).into_owned();
        Ok(body
            .lines()
            .filter_map(|l| {
                let (n, u) = l.split_once(' ')?;
                Some((n.parse().ok()?, u.trim().to_string()))
            })
            .collect())
    }

    /// RETR: the message bytes.
    pub async fn retr(&mut self, number: usize) -> Result<Vec<u8>> {
        self.command(&format!("RETR {number}")).await?;
        self.body().await
    }

    /// TOP: the header and the first `lines` body lines, unstuffed.
    pub async fn top(&mut self, number: usize, lines: usize) -> Result<Vec<u8>> {
        self.command(&format!("TOP {number} {lines}")).await?;
        self.body().await
    }

    /// DELE (takes effect at QUIT).
    pub async fn dele(&mut self, number: usize) -> Result<()> {
        self.command(&format!("DELE {number}")).await.map(drop)
    }

    /// QUIT: the server deletes what was marked.
    pub async fn quit(mut self) -> Result<()> {
        self.command("QUIT").await.map(drop)?;
        let mut rest = Vec::new();
        let _ = self.stream.read_to_end(&mut rest).await;
        Ok(())
    }
}
