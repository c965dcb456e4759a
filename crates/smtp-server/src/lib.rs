//! SMTP sessions: the inbound MX service (port 25, 2525 by default) and submission (RFC 6409:
//! 587 with STARTTLS, 465 with implicit TLS; 2587 and 2465 by default).
//!
//! A session wraps the sans-IO [`smtp_proto::ServerMachine`] and answers its events:
//! - MX: any sender; recipients must be ours (aliases, subaddresses and catch-alls resolved),
//!   otherwise 550 5.1.1 / 550 5.7.1 (never an open relay).
//! - Submission: AUTH first (only inside TLS unless configured for loopback); the envelope
//!   sender and every address of `From:`, `Sender:`, `Resent-From:` and `Resent-Sender:` must
//!   belong to the user (553 5.7.1), and the header must be clean: one `From:` with addresses,
//!   no NUL, no bare CR or LF (554 5.6.0; [`submission::originator`]); local recipients are
//!   delivered, remote ones queued; `Message-ID:` and `Date:` are added when missing; hourly
//!   sending limits give 451/452. The policy is the `submission` crate's [`Submitter`]; this
//!   crate runs it step by step through the SMTP dialogue and words its outcomes as replies.
//!
//! Either way the message has canonical line endings (the machine turned every bare CR or LF
//! into CRLF before anything here parses, signs or stores it, so IMAP, POP3 and the relayed
//! copy are the same bytes), gets `Return-Path:` and `Received:` in front, and `250` is sent
//! only when the store has committed it (fsync).
//!
//! At `trace` level every command and reply is logged inside the connection's span (`cid`),
//! from the machine's transcript: never AUTH data or message content, only their sizes.
//!
//! **Architecture invariant:** sees `dyn Store`, never a backend.

pub mod mailauth;
mod sasl_flow;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use auth::{Authenticated, Authenticator};
use message::trace::{Received, trace_headers};
use net::{ConnInfo, Flow, TlsInfo};
use smtp_proto::canonical::Findings;
use smtp_proto::{Event, MailParams, RcptParams, Reply, ServerConfig, ServerMachine, replies};
use store::{Address, Envelope, Outbound, Recipient, Resolution, Store, Target};
use submission::{Destinations, Refusal, SendingLimits, Submitter, store_accepted, transaction_id};
use tracing::{Level, error, info, trace, warn};

/// Which service a listener runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Mail from other servers, for our domains only.
    Mx,
    /// Mail from our users, authenticated.
    Submission,
}

/// Submission policy of a submission listener (the `submission` crate's settings, and AUTH
/// without TLS).
#[derive(Debug, Clone, Default)]
pub struct SubmissionPolicy {
    /// Extra sender addresses per user (lowercase); `@domain` allows a whole domain.
    pub allowed_senders: std::collections::BTreeMap<String, Vec<String>>,
    pub max_messages_per_hour: u32,
    pub max_recipients_per_hour: u32,
    /// Accept AUTH without TLS from loopback addresses.
    pub allow_plaintext_on_loopback: bool,
}

/// Settings of one SMTP service.
#[derive(Clone)]
pub struct Settings {
    pub machine: ServerConfig,
    pub command_timeout: Duration,
    pub data_timeout: Duration,
    pub mode: Mode,
    pub submission: SubmissionPolicy,
    /// How long queued mail is tried before it bounces.
    pub queue_lifetime: Duration,
    /// Development only: recipients named `permfail@`, `tempfail@` and `timeout@` get a
    /// permanent error, a temporary error, or no answer, to exercise senders' queues.
    pub dev_failures: bool,
    /// Checks SPF/DKIM/DMARC of mail from other servers (MX mode) when set.
    pub authenticator: Option<Arc<mail_auth::MessageAuthenticator>>,
    /// Refuse mail failing DMARC whose domain asks for `p=reject`.
    pub dmarc_reject: bool,
}

/// A submission listener's settings are its policy's: [`Submitter::new`] takes either, so the
/// webmail's `Submitter` can be built from the same settings as the listeners.
impl From<&Settings> for submission::Settings {
    fn from(settings: &Settings) -> submission::Settings {
        submission::Settings {
            hostname: settings.machine.hostname.clone(),
            allowed_senders: settings.submission.allowed_senders.clone(),
            max_messages_per_hour: settings.submission.max_messages_per_hour,
            max_recipients_per_hour: settings.submission.max_recipients_per_hour,
            queue_lifetime: settings.queue_lifetime,
        }
    }
}

impl From<Settings> for submission::Settings {
    fn from(settings: Settings) -> submission::Settings {
        (&settings).into()
    }
}

/// An SMTP service, one per listener.
pub struct Smtp {
    store: Arc<dyn Store>,
    auth: Arc<Authenticator>,
    submitter: Arc<Submitter>,
    settings: Arc<Settings>,
}

impl Smtp {
    /// `limits` is shared by all submission listeners so that a user's hourly budget is one.
    pub fn new(
        store: Arc<dyn Store>,
        auth: Arc<Authenticator>,
        limits: Arc<SendingLimits>,
        settings: Settings,
    ) -> Smtp {
        Smtp {
            submitter: Arc::new(Submitter::new(store.clone(), limits, &settings)),
            store,
            auth,
            settings: Arc::new(settings),
        }
    }
}

impl net::Protocol for Smtp {
    type Session = Session;

    fn session(&self, conn: ConnInfo) -> Session {
        let mut config = self.settings.machine.clone();
        config.starttls = conn.starttls_available;
        match self.settings.mode {
            Mode::Mx => {
                config.auth_mechanisms.clear();
                config.require_auth = false;
            }
            Mode::Submission => {
                config.auth_mechanisms = ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "PLAIN", "LOGIN"]
                    .map(String::from)
                    .to_vec();
                config.require_auth = true;
                config.auth_requires_tls = !(self.settings.submission.allow_plaintext_on_loopback
                    && conn.peer.ip().is_loopback());
            }
        }
        Session {
            machine: ServerMachine::new(config),
            store: self.store.clone(),
            auth: self.auth.clone(),
            submitter: self.submitter.clone(),
            settings: self.settings.clone(),
            conn,
            tls: None,
            user: None,
            sasl: None,
            tx: Transaction::default(),
        }
    }

    fn busy_message(&self) -> Vec<u8> {
        replies::too_busy(&self.settings.machine.hostname).to_bytes()
    }

    fn name(&self) -> &'static str {
        match self.settings.mode {
            Mode::Mx => "smtp",
            Mode::Submission => "submission",
        }
    }
}

/// The envelope collected so far.
#[derive(Debug, Default)]
struct Transaction {
    from: String,
    params: MailParams,
    destinations: Destinations,
    /// Accepted recipient addresses as given, for the `Received: ... for` clause.
    accepted: Vec<String>,
}

/// One SMTP connection.
pub struct Session {
    machine: ServerMachine,
    store: Arc<dyn Store>,
    auth: Arc<Authenticator>,
    submitter: Arc<Submitter>,
    settings: Arc<Settings>,
    conn: ConnInfo,
    tls: Option<TlsInfo>,
    user: Option<Authenticated>,
    sasl: Option<auth::SaslSession>,
    tx: Transaction,
}

fn not_owned() -> Reply {
    Reply::new(
        553,
        "5.7.1",
        "Sender address not owned by the authenticated user",
    )
}

/// The SMTP reply to a message the sender policy refused.
fn refusal_reply(refusal: Refusal) -> Reply {
    match refusal {
        Refusal::Format(text) => Reply::new(554, "5.6.0", text),
        Refusal::NotOwned { field, .. } => Reply::new(
            553,
            "5.7.1",
            format!("{field}: address not owned by the authenticated user"),
        ),
        Refusal::Temporary => replies::local_error(),
    }
}

impl Session {
    fn peer_ip(&self) -> IpAddr {
        self.conn.peer.ip()
    }

    async fn mail(&mut self, from: String, params: MailParams) -> Reply {
        self.tx = Transaction {
            from,
            params,
            ..Transaction::default()
        };
        let Some(user) = self.user.clone() else {
            return replies::sender_ok();
        };
        match self.submitter.owns(&user, &self.tx.from).await {
            Ok(true) => {}
            Ok(false) => {
                warn!(user = %user.address, from = %self.tx.from, "sender not owned");
                return not_owned();
            }
            Err(e) => {
                error!(error = %e, "sender lookup failed");
                return replies::local_error();
            }
        }
        if !self.submitter.take_message(&user) {
            return Reply::new(
                451,
                "4.7.1",
                "Hourly sending limit reached, try again later",
            );
        }
        replies::sender_ok()
    }

    async fn rcpt(&mut self, to: String, params: RcptParams) -> Reply {
        if self.settings.dev_failures
            && let Some(reply) = injected_failure(&to).await
        {
            return reply;
        }
        let address = match Address::parse(&to) {
            Ok(address) => address,
            Err(_) => return Reply::new(501, "5.1.3", "Bad recipient address syntax"),
        };
        let resolution = match store::resolve(&*self.store, &address).await {
            Ok(r) => r,
            Err(e) => {
                error!(error = %e, "recipient lookup failed");
                return replies::local_error();
            }
        };
        let targets = match (resolution, &self.user) {
            (Resolution::Deliver(targets), _) => targets,
            (Resolution::NoSuchUser, _) => return replies::unknown_user(),
            (Resolution::NotLocal, None) => return replies::relay_denied(),
            // An authenticated user may send anywhere: the queue takes it out.
            (Resolution::NotLocal, Some(_)) => vec![Target::Remote(address.as_str().to_owned())],
        };
        if let Some(user) = &self.user
            && !self.submitter.take_recipient(user)
        {
            return Reply::new(
                452,
                "4.5.3",
                "Hourly recipient limit reached, try again later",
            );
        }
        self.tx.destinations.add(targets, |address| Recipient {
            address,
            notify: params.notify as u8,
            orcpt: params.orcpt.clone(),
            ..Default::default()
        });
        self.tx.accepted.push(to);
        replies::recipient_ok()
    }

    async fn message(&mut self, mut data: Vec<u8>, findings: Findings) -> Reply {
        let tx = std::mem::take(&mut self.tx);
        let id = transaction_id();
        let now = common::clock::now();
        let mut added = Vec::new();
        if let Some(user) = self.user.clone() {
            let from = match self
                .submitter
                .check_originators(&user, &data, &findings)
                .await
            {
                Ok(from) => from,
                Err(refusal) => {
                    warn!(user = %user.address, ?refusal, "message refused by the sender policy");
                    return refusal_reply(refusal);
                }
            };
            added = self.submitter.added_headers(&data, &from, now).await;
        }
        if self.user.is_none()
            && let Some(authenticator) = &self.settings.authenticator
        {
            let verdict = mailauth::verify(
                authenticator,
                &data,
                self.peer_ip(),
                self.machine.helo().unwrap_or("unknown"),
                &tx.from,
                &self.settings.machine.hostname,
            )
            .await;
            // Results that arrived claiming our name are forgeries (RFC 8601 §5).
            if let Some(clean) = message::headers::strip_authentication_results(
                &data,
                &self.settings.machine.hostname,
            ) {
                data = clean;
            }
            if verdict.dmarc_reject && self.settings.dmarc_reject {
                info!(from = %tx.from, "refused: DMARC policy reject");
                return Reply::new(
                    550,
                    "5.7.1",
                    "Message rejected: it fails the sender domain's DMARC policy",
                );
            }
            added.extend_from_slice(verdict.header.as_bytes());
        }
        let for_recipient = (tx.accepted.len() == 1).then(|| tx.accepted[0].as_str());
        let tls = self.tls.as_ref().map(TlsInfo::describe);
        let mut stored = trace_headers(
            &tx.from,
            &Received {
                helo: self.machine.helo().unwrap_or("unknown"),
                peer: self.peer_ip(),
                by: &self.settings.machine.hostname,
                with: self.machine.protocol_name(),
                tls: tls.as_deref(),
                id: &id,
                for_recipient,
                date: now,
            },
        );
        stored.extend_from_slice(&added);
        stored.extend_from_slice(&data);
        drop(data);
        let size = stored.len();

        let outbound = (!tx.destinations.remote.is_empty()).then(|| Outbound {
            envelope: Envelope {
                envid: tx.params.envid.clone(),
                ret: tx.params.ret.map(|r| match r {
                    smtp_proto::server::Ret::Full => store::Ret::Full,
                    smtp_proto::server::Ret::Headers => store::Ret::Headers,
                }),
                smtputf8: tx.params.smtputf8,
                ..self.submitter.envelope(&tx.from, now)
            },
            recipients: tx.destinations.remote.clone(),
            data: stored.clone(),
        });
        if let Err(e) =
            store_accepted(&*self.store, &tx.destinations.local, outbound, stored, now).await
        {
            error!(error = %e, "storing an accepted message failed");
            return replies::local_error();
        }
        info!(
            id,
            from = %tx.from,
            user = self.user.as_ref().map(|u| u.address.as_str()).unwrap_or("-"),
            local = tx.destinations.local.len(),
            remote = tx.destinations.remote.len(),
            size,
            "message accepted"
        );
        Reply::new(250, "2.0.0", format!("OK queued as {id}"))
    }
}

/// The development failure injection: the local part names the failure.
async fn injected_failure(to: &str) -> Option<Reply> {
    let local = to.rsplit_once('@')?.0.to_ascii_lowercase();
    match local.as_str() {
        "permfail" => Some(Reply::new(550, "5.1.1", "Injected permanent failure")),
        "tempfail" => Some(Reply::new(451, "4.3.0", "Injected temporary failure")),
        "timeout" => {
            // Longer than any sender waits for a RCPT reply (RFC 5321 §4.5.3.2: 5 minutes).
            tokio::time::sleep(Duration::from_secs(600)).await;
            Some(Reply::new(451, "4.4.2", "Injected timeout"))
        }
        _ => None,
    }
}

impl Session {
    /// Logs the exchange so far at `trace`, inside the connection's span (its `cid`): the
    /// machine notes every command and reply, redacted ([`ServerMachine::take_transcript`]).
    fn trace_exchange(&mut self) {
        for line in self.machine.take_transcript() {
            trace!("{line}");
        }
    }

    /// Hands what the machine wrote to `net`, once traced.
    fn write(&mut self, out: &mut Vec<u8>) {
        self.trace_exchange();
        out.extend(self.machine.take_output());
    }
}

impl net::Session for Session {
    fn greet(&mut self, out: &mut Vec<u8>) {
        // Asked here, inside the connection's span, so a per-span filter applies too.
        self.machine
            .record_transcript(tracing::enabled!(Level::TRACE));
        self.machine.greet();
        self.write(out);
    }

    async fn input(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Flow {
        self.machine.feed(bytes);
        let flow = loop {
            let Some(event) = self.machine.next() else {
                break Flow::Continue;
            };
            // The command before what the session logs about it.
            self.trace_exchange();
            match event {
                Event::Mail { from, params } => {
                    let reply = self.mail(from, params).await;
                    self.machine.reply(reply);
                }
                Event::Rcpt { to, params } => {
                    let reply = self.rcpt(to, params).await;
                    self.machine.reply(reply);
                }
                Event::Message { data, findings } => {
                    let reply = self.message(data, findings).await;
                    self.machine.reply(reply);
                }
                Event::Auth { mechanism, initial } => self.auth_start(&mechanism, initial).await,
                Event::AuthResponse(data) => self.auth_step(&data).await,
                Event::StartTls => break Flow::StartTls,
                Event::Close => break Flow::Close,
            }
        };
        self.write(out);
        flow
    }

    fn idle_timeout(&self) -> Duration {
        if self.machine.in_data() {
            self.settings.data_timeout
        } else {
            self.settings.command_timeout
        }
    }

    fn timed_out(&mut self, out: &mut Vec<u8>) {
        warn!("idle timeout");
        self.machine.timeout();
        self.write(out);
    }

    fn is_idle(&self) -> bool {
        self.machine.is_idle()
    }

    fn shutting_down(&mut self, out: &mut Vec<u8>) {
        self.machine.shutdown();
        self.write(out);
    }

    fn tls_established(&mut self, info: TlsInfo) {
        self.machine.tls_started();
        self.user = None;
        self.sasl = None;
        self.tx = Transaction::default();
        self.tls = Some(info);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The submission policy's refusals as SMTP words them (RFC 6409 §8, RFC 3463 codes).
    #[test]
    fn refusals_become_replies() {
        let reply = refusal_reply(Refusal::Format("Message has no From: field".into()));
        assert_eq!((reply.code, reply.status), (554, "5.6.0"));
        assert_eq!(reply.lines, ["Message has no From: field"]);
        let reply = refusal_reply(Refusal::NotOwned {
            field: "Sender",
            address: "carol@localhost".into(),
        });
        assert_eq!((reply.code, reply.status), (553, "5.7.1"));
        assert_eq!(
            reply.lines,
            ["Sender: address not owned by the authenticated user"]
        );
        let temporary = refusal_reply(Refusal::Temporary);
        assert_eq!(temporary, replies::local_error());
        assert_eq!((not_owned().code, not_owned().status), (553, "5.7.1"));
    }
}
