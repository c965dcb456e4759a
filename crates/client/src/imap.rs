//! A small async IMAP client: tagged commands, responses read up to the tagged completion
//! with literals honoured. Enough for the user agent, the tests and the benchmark.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// What can go wrong; shared with the other line-based client.
pub use crate::LineError as Error;

pub type Result<T> = std::result::Result<T, Error>;

/// The complete response to one command.
#[derive(Debug, Clone)]
pub struct Response {
    /// Untagged data, literals included, in wire form.
    pub untagged: Vec<u8>,
    /// The tagged completion line, e.g. `OK [READ-WRITE] SELECT completed`.
    pub status: String,
}

/// An IMAP session.
pub struct ImapClient<S = TcpStream> {
    stream: BufReader<S>,
    timeout: Duration,
    next_tag: u32,
}

impl ImapClient<TcpStream> {
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<ImapClient<TcpStream>> {
        let stream = crate::dial::<Error>(addr, timeout).await?;
        ImapClient::start(stream, timeout).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> ImapClient<S> {
    /// Reads the greeting.
    pub async fn start(stream: S, timeout: Duration) -> Result<ImapClient<S>> {
        let mut client = ImapClient {
            stream: BufReader::with_capacity(64 * 1024, stream),
            timeout,
            next_tag: 1,
        };
        let mut line = Vec::new();
        client.read_line(&mut line).await?;
        if !line.starts_with(b"* OK") && !line.starts_with(b"* PREAUTH") {
            return Err(Error::Rejected(String::from_utf8_lossy(&line).into_owned()));
        }
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

    async fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let stream = self.stream.get_mut();
        crate::within(self.timeout, async {
            stream.write_all(bytes).await?;
            stream.flush().await
        })
        .await
    }

    /// Sends `command` (without tag and CRLF) and reads everything up to its completion.
    /// NO and BAD are errors.
    pub async fn command(&mut self, command: &str) -> Result<Response> {
        let tag = format!("c{}", self.next_tag);
        self.next_tag += 1;
        self.write(format!("{tag} {command}\r\n").as_bytes())
            .await?;
        self.read_response(&tag).await
    }

    /// APPEND with a synchronizing literal.
    pub async fn append(&mut self, mailbox: &str, flags: &str, message: &[u8]) -> Result<Response> {
        let tag = format!("c{}", self.next_tag);
        self.next_tag += 1;
        self.write(
            format!("{tag} APPEND {mailbox} ({flags}) {{{}}}\r\n", message.len()).as_bytes(),
        )
        .await?;
        let mut line = Vec::new();
        self.read_line(&mut line).await?;
        if !line.starts_with(b"+") {
            return Err(Error::Rejected(String::from_utf8_lossy(&line).into_owned()));
        }
        self.write(message).await?;
        self.write(b"\r\n").await?;
        self.read_response(&tag).await
    }

    async fn read_response(&mut self, tag: &str) -> Result<Response> {
        let mut untagged = Vec::new();
        let mut line = Vec::new();
        loop {
            self.read_line(&mut line).await?;
            if let Some(rest) = line
                .strip_prefix(tag.as_bytes())
                .and_then(|r| r.strip_prefix(b" "))
            {
                let status = String::from_utf8_lossy(rest).trim_end().to_string();
                if status.starts_with("OK") {
                    return Ok(Response { untagged, status });
                }
                return Err(Error::Rejected(status));
            }
            untagged.extend_from_slice(&line);
            // A literal at the end of the line: read its bytes, then the rest of the line.
            if let Some(len) = literal_length(&line) {
                let mut data = vec![0; len];
                crate::within::<_, Error>(self.timeout, self.stream.read_exact(&mut data)).await?;
                untagged.extend_from_slice(&data);
                self.read_line(&mut line).await?;
                untagged.extend_from_slice(&line);
                while let Some(len) = literal_length(&line) {
                    let mut data = vec![0; len];
                    self.stream.read_exact(&mut data).await?;
                    untagged.extend_from_slice(&data);
                    self.read_line(&mut line).await?;
                    untagged.extend_from_slice(&line);
                }
            }
        }
    }

    /// LOGIN.
    pub async fn login(&mut self, user: &str, password: &str) -> Result<()> {
        self.command(&format!("LOGIN {} {}", quote(user), quote(password)))
            .await
            .map(drop)
    }

    /// IDLE: sends the command and waits for the continuation; the caller then reads with
    /// [`ImapClient::read_untagged_line`] and ends with [`ImapClient::done`].
    pub async fn idle(&mut self) -> Result<String> {
        let tag = format!("c{}", self.next_tag);
        self.next_tag += 1;
        self.write(format!("{tag} IDLE\r\n").as_bytes()).await?;
        let mut line = Vec::new();
        self.read_line(&mut line).await?;
        if !line.starts_with(b"+") {
            return Err(Error::Rejected(String::from_utf8_lossy(&line).into_owned()));
        }
        Ok(tag)
    }

    /// One line from the server (during IDLE).
    pub async fn read_untagged_line(&mut self) -> Result<String> {
        let mut line = Vec::new();
        self.read_line(&mut line).await?;
        Ok(String::from_utf8_lossy(&line).trim_end().to_string())
    }

    /// Ends IDLE.
    pub async fn done(&mut self, tag: &str) -> Result<Response> {
        self.write(b"DONE\r\n").await?;
        self.read_response(tag).await
    }
}

fn literal_length(line: &[u8]) -> Option<usize> {
    let line = line
        .strip_suffix(b"\r\n")
        .or_else(|| line.strip_suffix(b"\n"))?;
    let line = line.strip_suffix(b"}")?;
    let open = line.iter().rposition(|&b| b == b'{')?;
    std::str::from_utf8(&line[open + 1..]).ok()?.parse().ok()
}

/// A quoted IMAP string.
pub fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Splits untagged response data into single responses (each a line, continued across
/// literals), without their final CRLF.
pub fn split_responses(data: &[u8]) -> Vec<&[u8]> {
    let mut responses = Vec::new();
    let mut start = 0;
    let mut pos = 0;
    while pos < data.len() {
        let Some(end) = data[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|e| pos + e + 1)
        else {
            break;
        };
        match literal_length(&data[pos..end]) {
            Some(len) => pos = (end + len).min(data.len()),
            None => {
                let line = &data[start..end];
                responses.push(line.strip_suffix(b"\r\n").unwrap_or(line));
                start = end;
                pos = end;
            }
        }
    }
    responses
}
