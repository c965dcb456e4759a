//! One SMTP client session to a next hop, reused for every message waiting for that
//! destination, and the classification of each recipient's result.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use client::smtp::{AnyStream, Error as SmtpError, SmtpClient};
use smtp_proto::client::ServerReply;
use store::{QueueEntry, Recipient, dsn_notify};

/// What happened to one recipient in one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The next hop took responsibility (its 250 after the content).
    Delivered { reply: String, dsn_passed_on: bool },
    /// Worth trying again later.
    Temporary { status: String, error: String },
    /// Will never work: bounce.
    Permanent { status: String, error: String },
}

impl Outcome {
    pub(crate) fn temporary(status: &str, error: impl Into<String>) -> Outcome {
        Outcome::Temporary {
            status: status.into(),
            error: error.into(),
        }
    }
    pub(crate) fn permanent(status: &str, error: impl Into<String>) -> Outcome {
        Outcome::Permanent {
            status: status.into(),
            error: error.into(),
        }
    }

    /// From a server's refusal: 5xx is permanent, anything else temporary.
    fn from_reply(reply: &ServerReply, host: &str) -> Outcome {
        let status = enhanced_status(reply)
            .unwrap_or_else(|| if reply.code >= 500 { "5.0.0" } else { "4.0.0" }.to_string());
        let error = format!("{host} said: {}", one_line(reply));
        if reply.code >= 500 {
            Outcome::Permanent { status, error }
        } else {
            Outcome::Temporary { status, error }
        }
    }
}

/// A reply on one line, for logs and DSNs.
pub(crate) fn one_line(reply: &ServerReply) -> String {
    format!("{} {}", reply.code, reply.lines.join(" "))
}

/// The enhanced status code (RFC 3463) at the start of a reply's text, if any.
fn enhanced_status(reply: &ServerReply) -> Option<String> {
    let first = reply.lines.first()?.split_whitespace().next()?;
    let mut parts = first.split('.');
    let class = parts.next()?;
    let ok = matches!(class, "2" | "4" | "5")
        && parts.clone().count() == 2
        && parts.all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
    ok.then(|| first.to_string())
}

/// How to treat TLS on a hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsPolicy {
    /// STARTTLS when offered; plain text otherwise (RFC 3207 opportunistic TLS).
    Opportunistic,
    /// Never send in the clear: without STARTTLS the mail waits.
    Require,
}

/// Where to connect: a host name (for TLS and messages) and its addresses in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub name: String,
    pub addrs: Vec<SocketAddr>,
}

/// Credentials for a smarthost.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// Settings of outgoing sessions.
#[derive(Clone)]
pub struct SessionSettings {
    pub hostname: String,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub tls: Arc<rustls::ClientConfig>,
}

/// An open session with a next hop.
pub struct Session {
    client: SmtpClient<AnyStream>,
    /// `name[ip]`, for messages.
    pub peer: String,
    /// The last transaction failed half way: RSET before the next.
    dirty: bool,
}

/// Why no session could be opened: a message for the recipients' status.
#[derive(Debug)]
pub struct ConnectFailure {
    pub outcome: Outcome,
}

impl Session {
    /// Opens a session with the first hop address that works: greeting, EHLO (HELO if EHLO is
    /// refused), STARTTLS per `policy`, AUTH with `credentials`.
    pub async fn open(
        hops: &[Hop],
        settings: &SessionSettings,
        policy: TlsPolicy,
        credentials: Option<&Credentials>,
    ) -> Result<Session, ConnectFailure> {
        let mut last = Outcome::temporary("4.4.1", "no address to connect to");
        for hop in hops {
            for addr in &hop.addrs {
                match Session::open_one(hop, *addr, settings, policy, credentials).await {
                    Ok(session) => return Ok(session),
                    Err(outcome) => {
                        tracing::debug!(host = %hop.name, %addr, ?outcome, "next hop failed");
                        let permanent = matches!(outcome, Outcome::Permanent { .. });
                        last = outcome;
                        // A 5xx after connecting (e.g. AUTH refused) is an answer, not an outage.
                        if permanent {
                            return Err(ConnectFailure { outcome: last });
                        }
                    }
                }
            }
        }
        Err(ConnectFailure { outcome: last })
    }

    async fn open_one(
        hop: &Hop,
        addr: SocketAddr,
        settings: &SessionSettings,
        policy: TlsPolicy,
        credentials: Option<&Credentials>,
    ) -> Result<Session, Outcome> {
        let peer = format!("{}[{}]", hop.name, addr.ip());
        let io_error = |e: SmtpError| Outcome::temporary("4.4.1", format!("{peer}: {e}"));
        let stream = tokio::time::timeout(
            settings.connect_timeout,
            tokio::net::TcpStream::connect(addr),
        )
        .await
        .map_err(|_| Outcome::temporary("4.4.1", format!("{peer}: connection timed out")))?
        .map_err(|e| Outcome::temporary("4.4.1", format!("{peer}: {e}")))?;
        let _ = stream.set_nodelay(true);
        let boxed: AnyStream = Box::new(stream);
        let mut client = match SmtpClient::start(boxed, settings.command_timeout).await {
            Ok(client) => client,
            // A refusing greeting (RFC 5321 §3.1: 554) means "try elsewhere", not a bounce.
            Err(SmtpError::Rejected(reply)) => {
                return Err(Outcome::temporary(
                    "4.4.1",
                    format!("{peer} greeted with {}", one_line(&reply)),
                ));
            }
            Err(e) => return Err(io_error(e)),
        };
        hello(&mut client, &settings.hostname, &peer).await?;
        if client.has_extension("STARTTLS") {
            match client.starttls(&hop.name, settings.tls.clone()).await {
                Ok(tls) => {
                    client = tls.boxed();
                    hello(&mut client, &settings.hostname, &peer).await?;
                }
                Err(e) => {
                    // The session is unusable after a failed handshake; with opportunistic TLS
                    // the next attempt of this address could go plain, but a server whose TLS
                    // is broken is better skipped for another hop.
                    return Err(Outcome::temporary(
                        "4.7.5",
                        format!("{peer}: STARTTLS failed: {e}"),
                    ));
                }
            }
        } else if policy == TlsPolicy::Require {
            let _ = client.command("QUIT").await;
            return Err(Outcome::temporary(
                "4.7.4",
                format!("{peer} does not offer STARTTLS, and TLS is required for this destination"),
            ));
        }
        if let Some(credentials) = credentials
            && let Err(e) = client
                .authenticate(&credentials.username, &credentials.password)
                .await
        {
            return Err(match e {
                SmtpError::Rejected(reply) => Outcome::from_reply(&reply, &peer),
                other => io_error(other),
            });
        }
        Ok(Session {
            client,
            peer,
            dirty: false,
        })
    }

    /// Sends one message to `recipients`; returns each recipient's outcome in order. An error
    /// means the connection is gone: its recipients get `Temporary` outcomes, and the caller
    /// drops the session.
    pub async fn send(
        &mut self,
        job: &QueueEntry,
        recipients: &[Recipient],
        message: &[u8],
    ) -> (Vec<Outcome>, bool) {
        let peer = self.peer.clone();
        let all = |o: Outcome| (vec![o; recipients.len()], true);
        // Mail is stored with canonical line endings since it is received that way; one queued
        // before that (or by a bug) is made canonical here, so SIZE counts what is sent and no
        // bare CR or LF ever reaches a peer (the client's DATA writer enforces it again).
        let canonical = smtp_proto::canonical::canonicalize(message);
        if let std::borrow::Cow::Owned(_) = canonical {
            tracing::warn!(%peer, "queued message had bare CR or LF; sending it with CRLF");
        }
        let message = &canonical[..];
        let needs_utf8 = job.envelope.smtputf8
            || !job.envelope.sender.is_ascii()
            || recipients.iter().any(|r| !r.address.is_ascii());
        if needs_utf8 && !self.client.has_extension("SMTPUTF8") {
            return all(Outcome::permanent(
                "5.6.7",
                format!("{peer} does not support SMTPUTF8, which this message needs"),
            ));
        }
        if let Some(limit) = self.client.size_limit()
            && limit > 0
            && message.len() as u64 > limit
        {
            return all(Outcome::permanent(
                "5.3.4",
                format!(
                    "message too big for {peer} ({} > {limit} bytes)",
                    message.len()
                ),
            ));
        }
        if self.dirty {
            match self.client.command("RSET").await {
                Ok(r) if r.is_positive() => self.dirty = false,
                Ok(r) => {
                    return (
                        vec![Outcome::from_reply(&r, &peer); recipients.len()],
                        false,
                    );
                }
                Err(e) => {
                    return (
                        vec![Outcome::temporary("4.4.2", format!("{peer}: {e}")); recipients.len()],
                        false,
                    );
                }
            }
        }
        let dsn = self.client.has_extension("DSN");
        let mut mail_params = String::new();
        if self.client.has_extension("SIZE") {
            mail_params.push_str(&format!(" SIZE={}", message.len()));
        }
        if !message.is_ascii() && self.client.has_extension("8BITMIME") {
            mail_params.push_str(" BODY=8BITMIME");
        }
        if needs_utf8 {
            mail_params.push_str(" SMTPUTF8");
        }
        if dsn {
            if let Some(ret) = job.envelope.ret {
                mail_params.push_str(&format!(" RET={}", ret.as_str()));
            }
            if let Some(envid) = &job.envelope.envid {
                mail_params.push_str(&format!(" ENVID={}", xtext(envid)));
            }
        }
        let rcpts: Vec<(String, String)> = recipients
            .iter()
            .map(|r| {
                let mut params = String::new();
                if dsn {
                    if r.notify != 0 {
                        params.push_str(&format!(" NOTIFY={}", notify_list(r.notify)));
                    }
                    if let Some(orcpt) = &r.orcpt {
                        params.push_str(&format!(" ORCPT={}", orcpt_param(orcpt)));
                    }
                }
                (r.address.clone(), params)
            })
            .collect();
        let chunking = self.client.has_extension("CHUNKING");
        let tx = match self
            .client
            .transaction(
                &job.envelope.sender,
                &mail_params,
                &rcpts,
                message,
                chunking,
            )
            .await
        {
            Ok(tx) => tx,
            Err(e) => {
                return (
                    vec![Outcome::temporary("4.4.2", format!("{peer}: {e}")); recipients.len()],
                    false,
                );
            }
        };
        let Some(mail) = &tx.mail else {
            return all(Outcome::temporary(
                "4.4.2",
                format!("{peer}: no reply to MAIL"),
            ));
        };
        if !mail.is_positive() {
            self.dirty = true;
            let outcome = Outcome::from_reply(mail, &peer);
            return (vec![outcome; recipients.len()], true);
        }
        let data_outcome = match &tx.data {
            Some(reply) if reply.is_positive() => Outcome::Delivered {
                reply: format!("{peer} said: {}", one_line(reply)),
                dsn_passed_on: dsn,
            },
            Some(reply) => {
                self.dirty = true;
                Outcome::from_reply(reply, &peer)
            }
            None => {
                self.dirty = true;
                Outcome::temporary("4.4.2", format!("{peer}: no recipient accepted"))
            }
        };
        let outcomes = recipients
            .iter()
            .enumerate()
            .map(|(i, _)| match tx.recipients.get(i) {
                Some(r) if r.is_positive() => data_outcome.clone(),
                Some(r) => Outcome::from_reply(r, &peer),
                None => Outcome::temporary("4.4.2", format!("{peer}: no reply to RCPT")),
            })
            .collect();
        (outcomes, true)
    }

    /// QUIT, politely; errors do not matter any more.
    pub async fn close(mut self) {
        let _ = self.client.command("QUIT").await;
    }
}

async fn hello(
    client: &mut SmtpClient<AnyStream>,
    hostname: &str,
    peer: &str,
) -> Result<(), Outcome> {
    match client.ehlo(hostname).await {
        Ok(_) => Ok(()),
        Err(SmtpError::Rejected(_)) => {
            // RFC 5321 §3.2: fall back to HELO for servers that do not know EHLO.
            match client.command(&format!("HELO {hostname}")).await {
                Ok(r) if r.is_positive() => Ok(()),
                Ok(r) => Err(Outcome::from_reply(&r, peer)),
                Err(e) => Err(Outcome::temporary("4.4.2", format!("{peer}: {e}"))),
            }
        }
        Err(e) => Err(Outcome::temporary("4.4.2", format!("{peer}: {e}"))),
    }
}

fn notify_list(bits: u8) -> String {
    if bits & dsn_notify::NEVER != 0 {
        return "NEVER".into();
    }
    let mut list = Vec::new();
    for (bit, name) in [
        (dsn_notify::SUCCESS, "SUCCESS"),
        (dsn_notify::FAILURE, "FAILURE"),
        (dsn_notify::DELAY, "DELAY"),
    ] {
        if bits & bit != 0 {
            list.push(name);
        }
    }
    list.join(",")
}

/// ORCPT as `addr-type;xtext` (RFC 3461 §4.2); a bare address gets `rfc822;`.
fn orcpt_param(orcpt: &str) -> String {
    match orcpt.split_once(';') {
        Some((kind, addr)) => format!("{kind};{}", xtext(addr)),
        None => format!("rfc822;{}", xtext(orcpt)),
    }
}

/// RFC 3461 §4 xtext: `+`, `=`, controls, space and non-ASCII as `+XX`.
fn xtext(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (33..=126).contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16, text: &str) -> ServerReply {
        ServerReply {
            code,
            lines: vec![text.into()],
        }
    }

    #[test]
    fn replies_classify_by_code_and_keep_the_enhanced_status() {
        assert_eq!(
            Outcome::from_reply(&reply(550, "5.1.1 no such user"), "mx"),
            Outcome::permanent("5.1.1", "mx said: 550 5.1.1 no such user")
        );
        assert_eq!(
            Outcome::from_reply(&reply(451, "try later"), "mx"),
            Outcome::temporary("4.0.0", "mx said: 451 try later")
        );
        assert_eq!(
            Outcome::from_reply(&reply(552, "5.3.4.9 odd"), "mx"),
            Outcome::permanent("5.0.0", "mx said: 552 5.3.4.9 odd")
        );
    }

    #[test]
    fn dsn_parameters_are_xtext() {
        assert_eq!(xtext("a+b=c d"), "a+2Bb+3Dc+20d");
        assert_eq!(orcpt_param("rfc822;bob+x@b.test"), "rfc822;bob+2Bx@b.test");
        assert_eq!(orcpt_param("bob@b.test"), "rfc822;bob@b.test");
        assert_eq!(
            notify_list(dsn_notify::SUCCESS | dsn_notify::DELAY),
            "SUCCESS,DELAY"
        );
        assert_eq!(notify_list(dsn_notify::NEVER), "NEVER");
    }
}
