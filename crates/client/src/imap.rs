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
            // Literals at the end of the line: read their bytes, then the rest of the line.
            while let Some(len) = literal_length(&line) {
                self.read_literal(len, &mut untagged).await?;
                self.read_line(&mut line).await?;
                untagged.extend_from_slice(&line);
            }
        }
    }

    /// Appends a literal's `len` octets to `out`. Memory grows with what arrives, not with the
    /// announced length: a hostile server's `{18446744073709551615}` is no allocation failure.
    async fn read_literal(&mut self, len: usize, out: &mut Vec<u8>) -> Result<()> {
        let start = out.len();
        let mut limited = (&mut self.stream).take(len as u64);
        crate::within::<_, Error>(self.timeout, limited.read_to_end(out)).await?;
        if out.len() - start < len {
            return Err(Error::Closed);
        }
        Ok(())
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
            Some(len) => pos = end.saturating_add(len).min(data.len()),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that greets, then answers whatever is asked with `reply`.
    async fn session(
        reply: Vec<u8>,
    ) -> (
        ImapClient<tokio::io::DuplexStream>,
        tokio::task::JoinHandle<()>,
    ) {
        let (ours, mut theirs) = tokio::io::duplex(1 << 20);
        let server = tokio::spawn(async move {
            theirs.write_all(b"* OK hostile\r\n").await.unwrap();
            let mut command = [0u8; 64];
            let _ = theirs.read(&mut command).await;
            let _ = theirs.write_all(&reply).await;
        });
        let client = ImapClient::start(ours, Duration::from_secs(10))
            .await
            .unwrap();
        (client, server)
    }

    #[tokio::test]
    async fn a_huge_announced_literal_is_no_allocation() {
        // The server announces 2^64-1 octets and sends three: the read ends, nothing aborts.
        let (mut client, server) =
            session(b"* 1 FETCH (BODY[] {18446744073709551615}\r\nabc".to_vec()).await;
        assert!(matches!(
            client.command("FETCH 1 BODY[]").await,
            Err(Error::Closed)
        ));
        server.await.unwrap();
        assert_eq!(
            split_responses(b"* 1 FETCH (BODY[] {18446744073709551615}\r\nabc\r\n"),
            Vec::<&[u8]>::new(),
            "an unfinished literal is no response"
        );
    }

    #[tokio::test]
    async fn deep_responses_are_read_and_split_without_recursion() {
        let deep = format!(
            "* 1 FETCH (UID 1 BODYSTRUCTURE {}\"TEXT\"{})\r\nc1 OK done\r\n",
            "(".repeat(100_000),
            ")".repeat(100_000)
        );
        let (mut client, server) = session(deep.clone().into_bytes()).await;
        let response = client.command("FETCH 1 BODYSTRUCTURE").await.unwrap();
        server.await.unwrap();
        let lines = split_responses(&response.untagged);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].len(), deep.find("\r\n").unwrap());
    }
}
