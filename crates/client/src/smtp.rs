//! An async SMTP client over any byte stream, on the sans-IO reply parser of `smtp-proto`.
//!
//! It sends message content exactly: dot-stuffing is applied on the wire and undone by the
//! server, and a message that already ends with CRLF gets no extra line (mail-send's DATA adds
//! one, which is why this client exists). Pipelining (RFC 2920) is used when offered.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rustls_pki_types::ServerName;
use tokio_rustls::client::TlsStream;

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
    #[error("TLS: {0}")]
    Tls(String),
    #[error("the server offers no usable authentication mechanism")]
    NoMechanism,
    #[error("the server's SCRAM signature is wrong: it does not know the password")]
    BadServerSignature,
}

pub type Result<T> = std::result::Result<T, Error>;

impl crate::LinkError for Error {
    fn timed_out(after: Duration) -> Self {
        Error::Timeout(after)
    }
}

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
        let stream = crate::dial::<Error>(addr, timeout).await?;
        SmtpClient::start(stream, timeout).await
    }
}

impl SmtpClient<TlsStream<TcpStream>> {
    /// Connects with implicit TLS (port 465) and reads the greeting.
    pub async fn connect_tls(
        addr: SocketAddr,
        server_name: &str,
        config: Arc<rustls::ClientConfig>,
        timeout: Duration,
    ) -> Result<SmtpClient<TlsStream<TcpStream>>> {
        let stream = crate::dial::<Error>(addr, timeout).await?;
        let tls = handshake(stream, server_name, config, timeout).await?;
        SmtpClient::start(tls, timeout).await
    }
}

async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    server_name: &str,
    config: Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> Result<TlsStream<S>> {
    let name =
        ServerName::try_from(server_name.to_owned()).map_err(|e| Error::Tls(e.to_string()))?;
    let connector = tokio_rustls::TlsConnector::from(config);
    tokio::time::timeout(timeout, connector.connect(name, stream))
        .await
        .map_err(|_| Error::Timeout(timeout))?
        .map_err(|e| Error::Tls(e.to_string()))
}

impl SmtpClient<TlsStream<TcpStream>> {
    /// The server's certificate (DER), leaf first.
    pub fn peer_certificate(&self) -> Option<Vec<u8>> {
        let (_, conn) = self.stream.get_ref();
        conn.peer_certificates()?
            .first()
            .map(|c| c.as_ref().to_vec())
    }

    /// AUTH SCRAM-SHA-256-PLUS with `tls-exporter` channel binding (RFC 9266): proves that no
    /// one sits between us and the server that knows our keys.
    pub async fn auth_scram_plus(&mut self, username: &str, password: &str) -> Result<()> {
        let binding = {
            let (_, conn) = self.stream.get_ref();
            conn.export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", None)
                .map_err(|e| Error::Tls(e.to_string()))?
        };
        self.scram(
            "SCRAM-SHA-256-PLUS",
            "p=tls-exporter,,",
            &binding,
            username,
            password,
        )
        .await
    }

    /// The negotiated TLS version, e.g. `TLSv1_3`.
    pub fn tls_version(&self) -> Option<String> {
        let (_, conn) = self.stream.get_ref();
        conn.protocol_version().map(|v| format!("{v:?}"))
    }
}

/// Any connection, plain or TLS: for code that decides on STARTTLS at run time.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A boxed [`Stream`].
pub type AnyStream = Box<dyn Stream>;

impl<S: Stream + 'static> SmtpClient<S> {
    /// The same session over a boxed stream.
    pub fn boxed(self) -> SmtpClient<AnyStream> {
        SmtpClient {
            stream: Box::new(self.stream),
            parser: self.parser,
            buf: self.buf,
            timeout: self.timeout,
            extensions: self.extensions,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> SmtpClient<S> {
    /// STARTTLS (RFC 3207): upgrades the connection; EHLO must be sent again afterwards.
    pub async fn starttls(
        mut self,
        server_name: &str,
        config: Arc<rustls::ClientConfig>,
    ) -> Result<SmtpClient<TlsStream<S>>> {
        let reply = self.command("STARTTLS").await?;
        if reply.code != 220 {
            return Err(Error::Rejected(reply));
        }
        let timeout = self.timeout;
        let tls = handshake(self.stream, server_name, config, timeout).await?;
        Ok(SmtpClient {
            stream: tls,
            parser: ReplyParser::default(),
            buf: self.buf,
            timeout,
            extensions: Vec::new(),
        })
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> SmtpClient<S> {
    /// The mechanisms the server offers with AUTH.
    pub fn auth_mechanisms(&self) -> Vec<String> {
        self.extensions
            .iter()
            .find_map(|l| l.strip_prefix("AUTH "))
            .map(|m| m.split_whitespace().map(String::from).collect())
            .unwrap_or_default()
    }

    /// AUTH with the best mechanism offered: SCRAM-SHA-256, else PLAIN (with an initial
    /// response), else LOGIN.
    pub async fn authenticate(&mut self, username: &str, password: &str) -> Result<()> {
        let offered = self.auth_mechanisms();
        if offered.iter().any(|m| m == "SCRAM-SHA-256") {
            self.auth_scram(username, password).await
        } else if offered.iter().any(|m| m == "PLAIN") {
            self.auth_plain(username, password).await
        } else if offered.iter().any(|m| m == "LOGIN") {
            self.auth_login(username, password).await
        } else {
            Err(Error::NoMechanism)
        }
    }

    /// AUTH PLAIN with an initial response (RFC 4616, RFC 4954).
    pub async fn auth_plain(&mut self, username: &str, password: &str) -> Result<()> {
        let token = B64.encode(format!("\0{username}\0{password}"));
        let reply = self.command(&format!("AUTH PLAIN {token}")).await?;
        if reply.code != 235 {
            return Err(Error::Rejected(reply));
        }
        Ok(())
    }

    /// AUTH LOGIN.
    pub async fn auth_login(&mut self, username: &str, password: &str) -> Result<()> {
        let reply = self.command("AUTH LOGIN").await?;
        if reply.code != 334 {
            return Err(Error::Rejected(reply));
        }
        let reply = self.command(&B64.encode(username)).await?;
        if reply.code != 334 {
            return Err(Error::Rejected(reply));
        }
        let reply = self.command(&B64.encode(password)).await?;
        if reply.code != 235 {
            return Err(Error::Rejected(reply));
        }
        Ok(())
    }

    /// AUTH SCRAM-SHA-256 (RFC 7677), checking the server's signature too.
    pub async fn auth_scram(&mut self, username: &str, password: &str) -> Result<()> {
        self.scram("SCRAM-SHA-256", "n,,", &[], username, password)
            .await
    }

    async fn scram(
        &mut self,
        mechanism: &str,
        gs2_header: &str,
        cbind: &[u8],
        username: &str,
        password: &str,
    ) -> Result<()> {
        let client_nonce =
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(common::random::bytes::<18>());
        let name = username.replace('=', "=3D").replace(',', "=2C");
        let first_bare = format!("n={name},r={client_nonce}");
        let reply = self
            .command(&format!(
                "AUTH {mechanism} {}",
                B64.encode(format!("{gs2_header}{first_bare}"))
            ))
            .await?;
        if reply.code != 334 {
            return Err(Error::Rejected(reply));
        }
        let server_first = B64
            .decode(reply.lines[0].trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| Error::Rejected(reply.clone()))?;
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for attribute in server_first.split(',') {
            if let Some(v) = attribute.strip_prefix("r=") {
                nonce = Some(v.to_string());
            } else if let Some(v) = attribute.strip_prefix("s=") {
                salt = B64.decode(v).ok();
            } else if let Some(v) = attribute.strip_prefix("i=") {
                iterations = v.parse::<u32>().ok();
            }
        }
        let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
            return Err(Error::Rejected(reply));
        };
        if !nonce.starts_with(&client_nonce) {
            return Err(Error::BadServerSignature);
        }
        let channel = B64.encode([gs2_header.as_bytes(), cbind].concat());
        let without_proof = format!("c={channel},r={nonce}");
        let auth_message = format!("{first_bare},{server_first},{without_proof}");
        let (proof, server_signature) =
            sasl::scram::client_proof(password, &salt, iterations, auth_message.as_bytes());
        let reply = self
            .command(&B64.encode(format!("{without_proof},p={}", B64.encode(proof))))
            .await?;
        if reply.code != 334 {
            return Err(Error::Rejected(reply));
        }
        let expected = format!("v={}", B64.encode(server_signature));
        let got = B64.decode(reply.lines[0].trim()).unwrap_or_default();
        if got != expected.as_bytes() {
            // Abort: never confirm to a server that could not prove it knows the keys.
            let _ = self.command("*").await;
            return Err(Error::BadServerSignature);
        }
        let reply = self.command("").await?;
        if reply.code != 235 {
            return Err(Error::Rejected(reply));
        }
        Ok(())
    }

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
            let n =
                crate::within::<_, Error>(self.timeout, self.stream.read(&mut self.buf)).await?;
            if n == 0 {
                return Err(Error::Closed);
            }
            self.parser.feed(&self.buf[..n]);
        }
    }

    /// Writes raw bytes.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let stream = &mut self.stream;
        crate::within(self.timeout, async {
            stream.write_all(bytes).await?;
            stream.flush().await
        })
        .await
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
    /// ones are reported in `Delivery::refused`. The content goes out with canonical line
    /// endings (a bare CR or LF as CRLF, RFC 5321 §2.3.8) and exact dot-stuffing.
    pub async fn send(&mut self, from: &str, to: &[&str], message: &[u8]) -> Result<Delivery> {
        let message = &smtp_proto::canonical::canonicalize(message)[..];
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

    /// Sends the message with BDAT (RFC 3030) in chunks of `chunk` bytes, with canonical line
    /// endings like [`SmtpClient::send`].
    pub async fn send_bdat(
        &mut self,
        from: &str,
        to: &[&str],
        message: &[u8],
        chunk: usize,
    ) -> Result<ServerReply> {
        let message = &smtp_proto::canonical::canonicalize(message)[..];
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

    /// One mail transaction that reports every reply instead of failing on the first refusal,
    /// for a relay that must record each recipient's fate: MAIL, RCPTs and DATA (or BDAT when
    /// `chunking`) pipelined when the server offers PIPELINING. Parameters are given ready
    /// (e.g. ` SIZE=123 BODY=8BITMIME`). After a failed transaction the caller sends RSET
    /// before the next one.
    ///
    /// The content always goes out with canonical line endings, also in BDAT where length
    /// framing would carry anything: a bare CR or LF in `message` is sent as CRLF, so no
    /// receiver can find an end of data in it (the SMTP smuggling class of CVE-2023-51764);
    /// DATA is then dot-stuffed exactly (RFC 5321 §4.5.2). A caller that declares SIZE should
    /// count the canonical form ([`smtp_proto::canonical::canonicalize`]).
    pub async fn transaction(
        &mut self,
        from: &str,
        mail_params: &str,
        recipients: &[(String, String)],
        message: &[u8],
        chunking: bool,
    ) -> Result<Transaction> {
        let message = &smtp_proto::canonical::canonicalize(message)[..];
        let pipelining = self.has_extension("PIPELINING");
        let mut envelope = format!("MAIL FROM:<{from}>{mail_params}\r\n");
        for (rcpt, params) in recipients {
            envelope.push_str(&format!("RCPT TO:<{rcpt}>{params}\r\n"));
        }
        let mut outcome = Transaction {
            mail: None,
            recipients: Vec::with_capacity(recipients.len()),
            data: None,
        };
        if pipelining {
            let mut wire = envelope.into_bytes();
            if !chunking {
                wire.extend_from_slice(b"DATA\r\n");
            }
            self.write(&wire).await?;
            outcome.mail = Some(self.read_reply().await?);
            for _ in recipients {
                outcome.recipients.push(self.read_reply().await?);
            }
        } else {
            let mail = self
                .command(envelope.lines().next().unwrap_or_default())
                .await?;
            let accepted = mail.is_positive();
            outcome.mail = Some(mail);
            if !accepted {
                return Ok(outcome);
            }
            for line in envelope.lines().skip(1) {
                let reply = self.command(line).await?;
                outcome.recipients.push(reply);
            }
        }
        let go = outcome.mail.as_ref().is_some_and(ServerReply::is_positive)
            && outcome.recipients.iter().any(ServerReply::is_positive);
        if chunking {
            if go {
                let mut wire = format!("BDAT {} LAST\r\n", message.len()).into_bytes();
                wire.extend_from_slice(message);
                self.write(&wire).await?;
                outcome.data = Some(self.read_reply().await?);
            }
            return Ok(outcome);
        }
        let data = if pipelining {
            self.read_reply().await?
        } else if go {
            self.command("DATA").await?
        } else {
            return Ok(outcome);
        };
        if data.code != 354 {
            outcome.data = Some(data);
            return Ok(outcome);
        }
        let mut wire = Vec::with_capacity(message.len() + message.len() / 64 + 8);
        smtp_proto::data::dot_stuff(message, &mut wire);
        if !go {
            // The server took DATA although nobody can receive it: send nothing but the end.
            wire.clear();
            wire.extend_from_slice(b".\r\n");
        }
        self.write(&wire).await?;
        outcome.data = Some(self.read_reply().await?);
        Ok(outcome)
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

/// Every reply of one [`SmtpClient::transaction`]; missing ones were not reached.
#[derive(Debug, Clone)]
pub struct Transaction {
    pub mail: Option<ServerReply>,
    pub recipients: Vec<ServerReply>,
    /// The reply to the end of the content (or to DATA when DATA was refused).
    pub data: Option<ServerReply>,
}

/// The outcome of [`SmtpClient::send`].
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The reply to the end of data.
    pub reply: ServerReply,
    /// Recipients the server refused, with its replies.
    pub refused: Vec<(String, ServerReply)>,
}
