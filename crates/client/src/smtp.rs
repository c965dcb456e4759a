//! An async SMTP client over any byte stream, on the sans-IO reply parser of `smtp-proto`.
//!
//! It sends message content exactly: dot-stuffing is applied on the wire and undone by the
//! server, and a message that already ends with CRLF gets no extra line (mail-send's DATA adds
//! one, which is why this client exists). Pipelining (RFC 2920) is used when offered.

use std::net::SocketAddr;
use std::time::Duration;

use smtp_proto::client::{ReplyError, ReplyParser, ServerReply};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// What can go wrong talking to a server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the server took longer than {0:?} to answer")]
    Timeout(Duration),
    #[error("the server closed the connection")]
    Closed,
    #[error("bad reply from server: {0}")]
    Protocol(#[from] ReplyError),
    /// The server answered, but not with what the step needed.
    #[error("server said: {0}")]
    Rejected(ServerReply),
}

pub type Result<T> = std::result::Result<T, Error>;

/// An SMTP client session.
pub struct SmtpClient<S = TcpStream> {
    stream: S,
    parser: ReplyParser,
    buf: Vec<u8>,
    timeout: Duration,
    extensions: Vec<String>,
}

impl SmtpClient<TcpStream> {
    /// Connects and reads the greeting, which must be 220.
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<SmtpClient<TcpStream>> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| Error::Timeout(timeout))??;
        stream.set_nodelay(true)?;
        SmtpClient::start(stream, timeout).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> SmtpClient<S> {
    /// Reads the greeting on an already connected stream.
    pub async fn start(stream: S, timeout: Duration) -> Result<SmtpClient<S>> {
        let mut client = SmtpClient {
            stream,
            parser: ReplyParser::default(),
            buf: vec![0; 8192],
            timeout,
            extensions: Vec::new(),
        };
        let greeting = client.read_reply().await?;
        if greeting.code != 220 {
            return Err(Error::Rejected(greeting));
        }
        Ok(client)
    }

    /// Reads one reply.
    pub async fn read_reply(&mut self) -> Result<ServerReply> {
        loop {
            if let Some(reply) = self.parser.next()? {
                return Ok(reply);
            }
            let n = tokio::time::timeout(self.timeout, self.stream.read(&mut self.buf))
                .await
                .map_err(|_| Error::Timeout(self.timeout))??;
            if n == 0 {
                return Err(Error::Closed);
            }
            self.parser.feed(&self.buf[..n]);
        }
    }

    /// Writes raw bytes.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<()> {
        tokio::time::timeout(self.timeout, async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await
        .map_err(|_| Error::Timeout(self.timeout))??;
        Ok(())
    }

    /// Sends one command line (CRLF is added) and reads its reply, whatever the code.
    pub async fn command(&mut self, line: &str) -> Result<ServerReply> {
        self.write(format!("{line}\r\n").as_bytes()).await?;
        self.read_reply().await
    }

    /// EHLO; remembers the extensions the server offers.
    pub async fn ehlo(&mut self, name: &str) -> Result<ServerReply> {
        let reply = self.command(&format!("EHLO {name}")).await?;
        if !reply.is_positive() {
            return Err(Error::Rejected(reply));
        }
        self.extensions = reply
            .lines
            .iter()
            .skip(1)
            .map(|l| l.to_ascii_uppercase())
            .collect();
        Ok(reply)
    }

    /// True if the last EHLO offered `keyword` (e.g. `PIPELINING`, `SIZE`).
    pub fn has_extension(&self, keyword: &str) -> bool {
        self.extensions
            .iter()
            .any(|l| l.split_whitespace().next() == Some(keyword))
    }

    /// The SIZE limit the server announced, if any.
    pub fn size_limit(&self) -> Option<u64> {
        self.extensions.iter().find_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("SIZE"))
                .then(|| words.next()?.parse().ok())
                .flatten()
        })
    }

    /// Sends one message: MAIL, RCPT for each recipient, DATA, content. Pipelined when the
    /// server offers PIPELINING. Returns the final reply (250 means the server has it).
    /// Fails if the sender or every recipient is refused; refused recipients among accepted
    /// ones are reported in `Delivery::refused`.
    pub async fn send(&mut self, from: &str, to: &[&str], message: &[u8]) -> Result<Delivery> {
        let utf8 = !from.is_ascii() || to.iter().any(|t| !t.is_ascii());
        let mut mail = format!("MAIL FROM:<{from}>");
        if self.has_extension("SIZE") {
            mail.push_str(&format!(" SIZE={}", message.len()));
        }
        if utf8 && self.has_extension("SMTPUTF8") {
            mail.push_str(" SMTPUTF8");
        }
        if !message.is_ascii() && self.has_extension("8BITMIME") {
            mail.push_str(" BODY=8BITMIME");
        }
        let mut envelope = format!("{mail}\r\n");
        for rcpt in to {
            envelope.push_str(&format!("RCPT TO:<{rcpt}>\r\n"));
        }
        envelope.push_str("DATA\r\n");

        let replies = if self.has_extension("PIPELINING") {
            self.write(envelope.as_bytes()).await?;
            let mut replies = Vec::with_capacity(to.len() + 2);
            for _ in 0..to.len() + 2 {
                replies.push(self.read_reply().await?);
            }
            replies
        } else {
            let mut replies = Vec::new();
            for line in envelope.split_terminator("\r\n") {
                let reply = self.command(line).await?;
                let stop = !reply.is_positive() && line.starts_with("MAIL");
                replies.push(reply);
                if stop {
                    break;
                }
            }
            replies
        };
        let mail_reply = &replies[0];
        if !mail_reply.is_positive() {
            let reply = mail_reply.clone();
            if self.has_extension("PIPELINING") && replies.last().is_some_and(|r| r.code == 354) {
                self.write(b".\r\n").await?;
                self.read_reply().await?;
            }
            return Err(Error::Rejected(reply));
        }
        let refused: Vec<(String, ServerReply)> = to
            .iter()
            .zip(&replies[1..])
            .filter(|(_, r)| !r.is_positive())
            .map(|(t, r)| (t.to_string(), r.clone()))
            .collect();
        let data_reply = replies.last().expect("at least MAIL's reply").clone();
        if data_reply.code != 354 {
            return Err(Error::Rejected(
                refused
                    .first()
                    .map(|(_, r)| r.clone())
                    .unwrap_or(data_reply),
            ));
        }
        let mut wire = Vec::new();
        smtp_proto::data::dot_stuff(message, &mut wire);
        self.write(&wire).await?;
        let reply = self.read_reply().await?;
        if !reply.is_positive() {
            return Err(Error::Rejected(reply));
        }
        Ok(Delivery { reply, refused })
    }

    /// Sends the message with BDAT (RFC 3030) in chunks of `chunk` bytes.
    pub async fn send_bdat(
        &mut self,
        from: &str,
        to: &[&str],
        message: &[u8],
        chunk: usize,
    ) -> Result<ServerReply> {
        let reply = self.command(&format!("MAIL FROM:<{from}>")).await?;
        if !reply.is_positive() {
            return Err(Error::Rejected(reply));
        }
        for rcpt in to {
            let reply = self.command(&format!("RCPT TO:<{rcpt}>")).await?;
            if !reply.is_positive() {
                return Err(Error::Rejected(reply));
            }
        }
        let chunks: Vec<&[u8]> = message.chunks(chunk.max(1)).collect();
        if chunks.is_empty() {
            return self.command("BDAT 0 LAST").await;
        }
        let last = chunks.len() - 1;
        for (i, part) in chunks.into_iter().enumerate() {
            let mut bytes = format!(
                "BDAT {}{}\r\n",
                part.len(),
                if i == last { " LAST" } else { "" }
            )
            .into_bytes();
            bytes.extend_from_slice(part);
            self.write(&bytes).await?;
            let reply = self.read_reply().await?;
            if !reply.is_positive() {
                return Err(Error::Rejected(reply));
            }
            if i == last {
                return Ok(reply);
            }
        }
        unreachable!("the loop returns on the last chunk")
    }

    /// QUIT and close.
    pub async fn quit(mut self) -> Result<()> {
        let reply = self.command("QUIT").await?;
        if reply.code != 221 {
            return Err(Error::Rejected(reply));
        }
        Ok(())
    }
}

/// The outcome of [`SmtpClient::send`].
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The reply to the end of data.
    pub reply: ServerReply,
    /// Recipients the server refused, with its replies.
    pub refused: Vec<(String, ServerReply)>,
}
