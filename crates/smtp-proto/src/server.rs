//! The SMTP server state machine (RFC 5321, RFC 2920 PIPELINING, RFC 3030 CHUNKING,
//! RFC 1870 SIZE, RFC 6152 8BITMIME, RFC 6531 SMTPUTF8, RFC 2034 ENHANCEDSTATUSCODES).
//!
//! Call contract: the driver calls [`ServerMachine::greet`] once, then [`ServerMachine::feed`]
//! with bytes from the peer and [`ServerMachine::next`] until it returns `None`, writing
//! [`ServerMachine::take_output`] to the peer before it waits for more input. An event that asks
//! for a decision ([`Event::Mail`], [`Event::Rcpt`], [`Event::Message`]) must be answered with
//! [`ServerMachine::reply`] before `next` is called again; until then `next` returns `None`.
//!
//! The machine owns syntax and sequencing (no RCPT before MAIL, size and recipient limits, line
//! limits, dot-stuffing); the session owns meaning (is this recipient ours).

use std::borrow::Cow;

use smtp_codec::{Error as CodecError, Request};

use crate::canonical::{self, Canonicalizer, Findings};
use crate::data::{DataProgress, DataReceiver};
use crate::reply::{Reply, replies};
use crate::transcript::Transcript;

/// Fixed settings of one session.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Our host name, used in the greeting and EHLO reply.
    pub hostname: String,
    pub max_message_size: usize,
    pub max_recipients: usize,
    /// Longest command line accepted, CRLF included.
    pub max_line_length: usize,
    /// Errors (syntax or sequence) tolerated before the connection is closed with 421.
    pub max_errors: usize,
    /// Offer STARTTLS (RFC 3207) while the connection is plain.
    pub starttls: bool,
    /// SASL mechanisms to offer with AUTH (RFC 4954); empty means no AUTH.
    pub auth_mechanisms: Vec<String>,
    /// Offer AUTH only once TLS is active (RFC 4954 §4 and RFC 8314 practice).
    pub auth_requires_tls: bool,
    /// Submission: MAIL needs a successful AUTH first (530 5.7.0 otherwise).
    pub require_auth: bool,
    /// Longest header line of a message, CRLF excluded (RFC 5322 §2.1.1: 998).
    pub max_header_line: usize,
    /// Largest header section of a message.
    pub max_header_size: usize,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            hostname: "localhost".into(),
            max_message_size: 10 * 1024 * 1024,
            max_recipients: 100,
            max_line_length: 2048,
            max_errors: 20,
            starttls: false,
            auth_mechanisms: Vec::new(),
            auth_requires_tls: true,
            require_auth: false,
            max_header_line: canonical::MAX_HEADER_LINE,
            max_header_size: canonical::MAX_HEADER_SIZE,
        }
    }
}

/// Parameters of MAIL FROM that the session may need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    /// SIZE= as declared by the client (RFC 1870), 0 when absent.
    pub size: usize,
    /// BODY=8BITMIME was given.
    pub eight_bit: bool,
    /// SMTPUTF8 was given (RFC 6531).
    pub smtputf8: bool,
    /// RET=FULL or RET=HDRS (RFC 3461), kept raw for the queue.
    pub ret: Option<Ret>,
    /// ENVID= (RFC 3461), xtext-decoded.
    pub envid: Option<String>,
}

/// RFC 3461 RET parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ret {
    Full,
    Headers,
}

/// Parameters of RCPT TO that the session may need (RFC 3461 DSN).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RcptParams {
    /// NOTIFY flags as smtp-proto's `RCPT_NOTIFY_*` bits; 0 when absent.
    pub notify: u64,
    /// ORCPT=, xtext-decoded.
    pub orcpt: Option<String>,
}

/// What the session must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// MAIL FROM: the session checks the sender and answers with [`ServerMachine::reply`].
    /// An empty `from` is the null reverse-path `<>`.
    Mail { from: String, params: MailParams },
    /// RCPT TO: the session checks the recipient and answers with [`ServerMachine::reply`].
    Rcpt { to: String, params: RcptParams },
    /// The whole message arrived (DATA ended or BDAT LAST): the session stores it and answers
    /// with [`ServerMachine::reply`]; a positive reply means "it is on stable storage".
    /// `data` has canonical line endings (no bare CR or LF, [`crate::canonical`]); `findings`
    /// says what the conversion found, for a session that refuses sloppy headers. A header
    /// over the limits never gets here: the machine answers 554 5.6.0 itself.
    Message { data: Vec<u8>, findings: Findings },
    /// AUTH: start a SASL exchange. `initial` is the decoded initial response (SASL-IR);
    /// answer with [`ServerMachine::auth_challenge`] or [`ServerMachine::auth_done`].
    Auth {
        mechanism: String,
        initial: Option<Vec<u8>>,
    },
    /// The client's (decoded) answer to the last AUTH challenge.
    AuthResponse(Vec<u8>),
    /// The 220 to STARTTLS is in the output: write it, run the TLS handshake, then call
    /// [`ServerMachine::tls_started`]. Anything the client sent after STARTTLS was discarded.
    StartTls,
    /// The connection must close once the output is written (QUIT, timeout, too many errors).
    Close,
}

#[derive(Debug)]
enum Phase {
    /// Reading command lines.
    Command,
    /// Discarding the rest of an overlong command line.
    SkipLine,
    /// Reading DATA content.
    Data(DataReceiver),
    /// Reading the client's answer to an AUTH challenge (one base64 line).
    AuthLine,
    /// Reading a BDAT chunk; `discard` when the chunk is refused but must still be consumed.
    Chunk {
        remaining: usize,
        last: bool,
        discard: Option<Reply>,
    },
    /// After QUIT or a fatal error: nothing more is read.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    None,
    Mail,
    Rcpt,
    Message,
    Auth,
    StartTls,
}

/// The transaction in progress (RFC 5321 §3.3).
#[derive(Debug, Default)]
struct Transaction {
    /// MAIL was accepted.
    active: bool,
    /// RCPT commands seen, and how many were accepted.
    rcpt_seen: usize,
    rcpt_accepted: usize,
    /// BDAT chunks received so far, in order, with canonical line endings.
    chunks: Vec<u8>,
    /// Converts BDAT chunks to canonical line endings as they arrive (chunks may split a CRLF).
    canon: Canonicalizer,
    /// A BDAT chunk was refused (size, header limits); later chunks get the same reply until
    /// RSET or MAIL.
    chunk_failed: Option<Reply>,
    bdat: bool,
}

/// The sans-IO SMTP server.
#[derive(Debug)]
pub struct ServerMachine {
    config: ServerConfig,
    input: Vec<u8>,
    output: Vec<u8>,
    phase: Phase,
    pending: Pending,
    helo: Option<String>,
    esmtp: bool,
    smtputf8: bool,
    tx: Transaction,
    /// Message content while DATA is being received.
    data: Vec<u8>,
    errors: usize,
    /// [`Event::Close`] has been returned.
    close_emitted: bool,
    tls: bool,
    /// The authenticated user, after a successful AUTH.
    user: Option<String>,
    /// The exchange for a trace log, while recording ([`ServerMachine::record_transcript`]).
    transcript: Transcript,
}

/// RFC 4954 §4: an AUTH response line may be up to 12288 octets.
const MAX_AUTH_LINE: usize = 12288;

impl ServerMachine {
    pub fn new(config: ServerConfig) -> ServerMachine {
        ServerMachine {
            config,
            input: Vec::new(),
            output: Vec::new(),
            phase: Phase::Command,
            pending: Pending::None,
            helo: None,
            esmtp: false,
            smtputf8: false,
            tx: Transaction::default(),
            data: Vec::new(),
            errors: 0,
            close_emitted: false,
            tls: false,
            user: None,
            transcript: Transcript::default(),
        }
    }

    /// Starts (or stops) keeping a transcript for [`ServerMachine::take_transcript`] (off by
    /// default: it costs a string per line).
    pub fn record_transcript(&mut self, on: bool) {
        self.transcript.record(on);
    }

    /// The exchange since the last call, one line each: `C: ` what the client sent, `S: ` what
    /// the machine answered, in order. Never in it: AUTH's initial response and SASL data (they
    /// carry passwords) and message content (only its size). Empty unless recording.
    pub fn take_transcript(&mut self) -> Vec<String> {
        self.transcript.take()
    }

    /// TLS is active: implicit TLS before the greeting, or after STARTTLS. The session restarts
    /// from scratch (RFC 3207 §4.2): no HELO, no transaction, no AUTH.
    pub fn tls_started(&mut self) {
        self.tls = true;
        self.helo = None;
        self.esmtp = false;
        self.user = None;
        self.reset_transaction();
        self.input.clear();
        if self.pending == Pending::StartTls {
            self.pending = Pending::None;
        }
    }

    /// True once TLS is active.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The authenticated user, if any.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The mechanisms offered now: channel-binding ones (`-PLUS`) only under TLS, the channel
    /// they bind to (RFC 5802 §6).
    fn mechanisms(&self) -> impl Iterator<Item = &str> {
        let tls = self.tls;
        self.config
            .auth_mechanisms
            .iter()
            .map(String::as_str)
            .filter(move |m| tls || !m.ends_with("-PLUS"))
    }

    fn auth_offered(&self) -> bool {
        !self.config.auth_mechanisms.is_empty()
            && (self.tls || !self.config.auth_requires_tls)
            && self.user.is_none()
    }

    /// Answers [`Event::Auth`] or [`Event::AuthResponse`] with a `334` challenge.
    pub fn auth_challenge(&mut self, challenge: &[u8]) {
        debug_assert_eq!(self.pending, Pending::Auth);
        self.pending = Pending::None;
        let mut line = b"334 ".to_vec();
        line.extend(base64_encode(challenge).into_bytes());
        line.extend_from_slice(b"\r\n");
        self.output.extend_from_slice(&line);
        self.transcript
            .note(|| "S: 334 <SASL data redacted>".into());
        self.phase = Phase::AuthLine;
    }

    /// Ends the AUTH exchange: `Some(user)` with a 235 reply on success, `None` with the
    /// failure reply (535, 501, 454...).
    pub fn auth_done(&mut self, user: Option<String>, reply: Reply) {
        debug_assert_eq!(self.pending, Pending::Auth);
        self.pending = Pending::None;
        self.phase = Phase::Command;
        if user.is_none() {
            self.errors += 1;
        }
        self.user = user;
        self.send(reply);
    }

    /// Writes the 220 greeting.
    pub fn greet(&mut self) {
        let text = format!("{} ESMTP pigeon ready", self.config.hostname);
        self.send(Reply::new(220, "", text));
    }

    /// Bytes received from the peer.
    pub fn feed(&mut self, bytes: &[u8]) {
        if !matches!(self.phase, Phase::Closed) {
            self.input.extend_from_slice(bytes);
        }
    }

    /// Bytes to send to the peer.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// True if output is waiting to be sent.
    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// The name the client gave in HELO/EHLO.
    pub fn helo(&self) -> Option<&str> {
        self.helo.as_deref()
    }

    /// The `with` protocol name for a `Received:` header (RFC 3848, RFC 6531 §3.7.3).
    pub fn protocol_name(&self) -> &'static str {
        match (self.esmtp, self.smtputf8, self.tls, self.user.is_some()) {
            (false, _, false, _) => "SMTP",
            (false, _, true, _) => "SMTPS",
            (true, false, false, false) => "ESMTP",
            (true, false, false, true) => "ESMTPA",
            (true, false, true, false) => "ESMTPS",
            (true, false, true, true) => "ESMTPSA",
            (true, true, false, false) => "UTF8SMTP",
            (true, true, false, true) => "UTF8SMTPA",
            (true, true, true, false) => "UTF8SMTPS",
            (true, true, true, true) => "UTF8SMTPSA",
        }
    }

    /// True while message content is being received (the DATA timeout applies).
    pub fn in_data(&self) -> bool {
        matches!(self.phase, Phase::Data(_) | Phase::Chunk { .. })
    }

    /// True when no transaction is under way, so the connection can be closed without losing
    /// work (used by graceful shutdown).
    pub fn is_idle(&self) -> bool {
        !self.tx.active && self.pending == Pending::None && !self.in_data()
    }

    /// True after QUIT or a fatal error.
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// The client was idle too long (RFC 5321 §4.5.3.2): say so and close.
    pub fn timeout(&mut self) {
        let reply = replies::timeout(&self.config.hostname);
        self.close_with(reply);
    }

    /// The server is shutting down: say so and close.
    pub fn shutdown(&mut self) {
        let reply = replies::shutting_down(&self.config.hostname);
        self.close_with(reply);
    }

    fn close_with(&mut self, reply: Reply) {
        self.send(reply);
        self.phase = Phase::Closed;
        self.input.clear();
    }

    /// Every reply goes out here (the AUTH challenge aside), so every reply is in the transcript.
    fn send(&mut self, reply: Reply) {
        let start = self.output.len();
        reply.write_to(&mut self.output);
        self.transcript.replies(&self.output[start..]);
    }

    /// Answers the pending decision. For [`Event::Mail`] and [`Event::Rcpt`] a positive reply
    /// accepts the sender or recipient; for [`Event::Message`] the transaction ends either way.
    pub fn reply(&mut self, reply: Reply) {
        let positive = reply.is_positive();
        match self.pending {
            Pending::None => debug_assert!(false, "reply without a pending decision"),
            Pending::Mail => {
                self.tx = Transaction {
                    active: positive,
                    ..Transaction::default()
                };
            }
            Pending::Rcpt => {
                if positive {
                    self.tx.rcpt_accepted += 1;
                }
            }
            Pending::Message => self.reset_transaction(),
            Pending::Auth | Pending::StartTls => {
                debug_assert!(false, "use auth_challenge/auth_done or tls_started")
            }
        }
        self.pending = Pending::None;
        self.send(reply);
    }

    fn reset_transaction(&mut self) {
        self.tx = Transaction::default();
        self.data = Vec::new();
    }

    fn error(&mut self, reply: Reply) {
        self.errors += 1;
        self.send(reply);
        if self.errors >= self.config.max_errors {
            let text = format!(
                "{} Too many errors, closing connection",
                self.config.hostname
            );
            self.close_with(Reply::new(421, "4.7.0", text));
        }
    }

    /// Advances until an event needs the session or more input is needed (`None`).
    pub fn next(&mut self) -> Option<Event> {
        if self.pending != Pending::None {
            return None;
        }
        loop {
            match &mut self.phase {
                Phase::Closed => {
                    if self.close_emitted {
                        return None;
                    }
                    self.close_emitted = true;
                    return Some(Event::Close);
                }
                Phase::Command => {
                    let Some(pos) = self.input.iter().position(|&b| b == b'\n') else {
                        if self.input.len() > self.config.max_line_length {
                            self.input.clear();
                            self.phase = Phase::SkipLine;
                            self.error(replies::line_too_long());
                            continue;
                        }
                        return None;
                    };
                    let line: Vec<u8> = self.input.drain(..=pos).collect();
                    if line.len() > self.config.max_line_length {
                        self.transcript.overlong(line.len());
                        self.error(replies::line_too_long());
                        continue;
                    }
                    if let Some(event) = self.command(&line) {
                        return Some(event);
                    }
                }
                Phase::AuthLine => {
                    let Some(pos) = self.input.iter().position(|&b| b == b'\n') else {
                        if self.input.len() > MAX_AUTH_LINE {
                            self.input.clear();
                            self.phase = Phase::SkipLine;
                            self.error(replies::line_too_long());
                        }
                        return None;
                    };
                    let line: Vec<u8> = self.input.drain(..=pos).collect();
                    let text = String::from_utf8_lossy(&line);
                    let text = text.trim_end_matches(['\r', '\n']);
                    self.phase = Phase::Command;
                    self.transcript.sasl_response(text);
                    if text == "*" {
                        // RFC 4954 §4: the client cancelled.
                        self.pending = Pending::None;
                        self.error(Reply::new(501, "5.0.0", "Authentication cancelled"));
                        continue;
                    }
                    match base64_decode(text) {
                        Some(data) => {
                            self.pending = Pending::Auth;
                            return Some(Event::AuthResponse(data));
                        }
                        None => {
                            self.error(Reply::new(501, "5.5.2", "Invalid base64 in AUTH response"));
                            continue;
                        }
                    }
                }
                Phase::SkipLine => match self.input.iter().position(|&b| b == b'\n') {
                    Some(pos) => {
                        self.input.drain(..=pos);
                        self.phase = Phase::Command;
                    }
                    None => {
                        self.input.clear();
                        return None;
                    }
                },
                Phase::Data(receiver) => {
                    if self.input.is_empty() {
                        return None;
                    }
                    match receiver.ingest(&self.input, &mut self.data) {
                        DataProgress::NeedMore => {
                            self.input.clear();
                            return None;
                        }
                        DataProgress::Done { consumed } => {
                            let exceeded = receiver.exceeded();
                            let findings = receiver.findings();
                            self.transcript.message(receiver.size());
                            self.input.drain(..consumed);
                            self.phase = Phase::Command;
                            if exceeded || findings.over_limit() {
                                self.reset_transaction();
                                self.send(if exceeded {
                                    replies::message_too_big()
                                } else {
                                    replies::header_over_limit(&findings)
                                });
                                continue;
                            }
                            self.pending = Pending::Message;
                            return Some(Event::Message {
                                data: std::mem::take(&mut self.data),
                                findings,
                            });
                        }
                    }
                }
                Phase::Chunk {
                    remaining,
                    last,
                    discard,
                } => {
                    let take = (*remaining).min(self.input.len());
                    if discard.is_none() {
                        let Transaction { chunks, canon, .. } = &mut self.tx;
                        canon.push(&self.input[..take], &mut |piece| {
                            chunks.extend_from_slice(piece)
                        });
                        if *remaining == take && *last {
                            canon.finish(&mut |piece| chunks.extend_from_slice(piece));
                        }
                        // BDAT's size check counts wire octets; canonical line ends can add
                        // some, and the header limits apply here as in DATA.
                        let findings = canon.findings();
                        let refusal = if chunks.len() > self.config.max_message_size {
                            Some(replies::message_too_big())
                        } else if findings.over_limit() {
                            Some(replies::header_over_limit(&findings))
                        } else {
                            None
                        };
                        if let Some(reply) = refusal {
                            *chunks = Vec::new();
                            self.tx.chunk_failed = Some(reply.clone());
                            *discard = Some(reply);
                        }
                    }
                    self.input.drain(..take);
                    *remaining -= take;
                    if *remaining > 0 {
                        return None;
                    }
                    let last = *last;
                    let discard = discard.take();
                    self.phase = Phase::Command;
                    if let Some(reply) = discard {
                        if last && self.tx.chunk_failed.is_some() {
                            self.reset_transaction();
                        }
                        self.send(reply);
                        continue;
                    }
                    if !last {
                        let text = format!("{} octets received", self.tx.chunks.len());
                        self.send(Reply::new(250, "2.0.0", text));
                        continue;
                    }
                    self.pending = Pending::Message;
                    let findings = self.tx.canon.findings();
                    return Some(Event::Message {
                        data: std::mem::take(&mut self.tx.chunks),
                        findings,
                    });
                }
            }
        }
    }

    /// Handles one complete command line.
    fn command(&mut self, line: &[u8]) -> Option<Event> {
        // RFC 5321 §2.3.8: CR only as part of the line's CRLF. The parser would skip a bare CR
        // inside a word (`EHLO a\rb` read as `ab`); a peer that sends one is refused instead.
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        self.transcript.command(body);
        if body.contains(&b'\r') {
            self.error(replies::syntax("Bare CR in command line"));
            return None;
        }
        // smtp-proto's parser wants the line to end in LF; we always pass a whole line.
        let parsed = Request::parse(&mut line.iter());
        let request = match parsed {
            Ok(request) => request,
            Err(err) => {
                let reply = match err {
                    CodecError::UnknownCommand => replies::unrecognized(),
                    CodecError::InvalidSenderAddress => {
                        Reply::new(501, "5.1.7", "Bad sender address syntax")
                    }
                    CodecError::InvalidRecipientAddress => {
                        Reply::new(501, "5.1.3", "Bad recipient address syntax")
                    }
                    CodecError::SyntaxError { syntax } => {
                        replies::syntax(format!("Syntax: {syntax}"))
                    }
                    CodecError::InvalidParameter { param } => {
                        Reply::new(501, "5.5.4", format!("Invalid value for parameter {param}"))
                    }
                    CodecError::UnsupportedParameter { param } => Reply::new(
                        555,
                        "5.5.4",
                        format!("Parameter {param} not recognized or not implemented"),
                    ),
                    // The line is complete, so "needs more data" means it ended too early.
                    _ => replies::syntax("Syntax error"),
                };
                self.error(reply);
                return None;
            }
        };
        match request {
            Request::Ehlo { host } => {
                self.hello(host, true);
                None
            }
            Request::Helo { host } => {
                self.hello(host, false);
                None
            }
            Request::Mail { from } => self.mail(from),
            Request::Rcpt { to } => self.rcpt(to),
            Request::Data => {
                self.data_command();
                None
            }
            Request::Bdat {
                chunk_size,
                is_last,
            } => {
                self.bdat(chunk_size, is_last);
                None
            }
            Request::Rset => {
                self.reset_transaction();
                self.send(replies::ok());
                None
            }
            Request::Noop { .. } => {
                self.send(replies::ok());
                None
            }
            // RFC 5321 §3.5.3: 252 when we will not verify but will accept mail.
            Request::Vrfy { .. } => {
                self.send(Reply::new(
                    252,
                    "2.5.0",
                    "Cannot VRFY user, but will accept message and attempt delivery",
                ));
                None
            }
            Request::Help { .. } => {
                self.send(Reply::new(
                    214,
                    "2.0.0",
                    "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP VRFY HELP QUIT",
                ));
                None
            }
            Request::Quit => {
                let text = format!(
                    "{} Service closing transmission channel",
                    self.config.hostname
                );
                self.close_with(Reply::new(221, "2.0.0", text));
                None
            }
            Request::StartTls => self.starttls(),
            Request::Auth {
                mechanism,
                initial_response,
            } => self.auth(mechanism, &initial_response),
            Request::Expn { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. }
            | Request::Lhlo { .. } => {
                self.error(replies::not_implemented());
                None
            }
        }
    }

    fn starttls(&mut self) -> Option<Event> {
        if !self.config.starttls || self.tls {
            self.error(replies::not_implemented());
            return None;
        }
        if self.tx.active {
            self.error(replies::bad_sequence(
                "STARTTLS not allowed during a transaction",
            ));
            return None;
        }
        self.send(Reply::new(220, "2.0.0", "Ready to start TLS"));
        // RFC 3207 §4.2: anything pipelined after STARTTLS is plaintext the client must not
        // have sent; it is thrown away, never read inside TLS.
        self.input.clear();
        self.pending = Pending::StartTls;
        Some(Event::StartTls)
    }

    fn auth(&mut self, mechanism: u64, initial: &str) -> Option<Event> {
        if self.user.is_some() {
            self.error(replies::bad_sequence("Already authenticated"));
            return None;
        }
        if self.config.auth_mechanisms.is_empty() {
            self.error(replies::not_implemented());
            return None;
        }
        if !self.auth_offered() {
            // RFC 4954 §6: 538 when the mechanism needs encryption.
            self.error(Reply::new(
                538,
                "5.7.11",
                "Encryption required for requested authentication mechanism",
            ));
            return None;
        }
        if self.tx.active {
            self.error(replies::bad_sequence(
                "AUTH not allowed during a transaction",
            ));
            return None;
        }
        let name = mechanism_name(mechanism);
        let Some(name) = name.filter(|n| self.mechanisms().any(|m| m == *n)) else {
            self.error(Reply::new(504, "5.5.4", "Unrecognized authentication type"));
            return None;
        };
        let initial = match initial {
            "" => None,
            // RFC 4954 §4: "=" is an empty initial response.
            "=" => Some(Vec::new()),
            text => match base64_decode(text) {
                Some(data) => Some(data),
                None => {
                    self.error(Reply::new(
                        501,
                        "5.5.2",
                        "Invalid base64 in initial response",
                    ));
                    return None;
                }
            },
        };
        self.pending = Pending::Auth;
        Some(Event::Auth {
            mechanism: name.to_string(),
            initial,
        })
    }

    fn hello(&mut self, host: Cow<'_, str>, extended: bool) {
        // RFC 5321 §4.1.1.1: the argument is a domain or an address literal; control
        // characters (NUL, TAB, DEL...) are neither, and would end up in our Received: header.
        if host.bytes().any(|b| b.is_ascii_control()) {
            self.error(Reply::new(501, "5.5.4", "Invalid domain name in HELO/EHLO"));
            return;
        }
        // RFC 5321 §4.1.4: EHLO/HELO resets any transaction in progress.
        self.reset_transaction();
        self.helo = Some(host.into_owned());
        self.esmtp = extended;
        let greeting = format!(
            "{} Hello {}",
            self.config.hostname,
            host_or_dash(&self.helo)
        );
        if !extended {
            self.send(Reply::new(250, "", greeting));
            return;
        }
        let mut lines: Vec<Cow<'static, str>> = vec![
            greeting.into(),
            "PIPELINING".into(),
            format!("SIZE {}", self.config.max_message_size).into(),
            "8BITMIME".into(),
            "SMTPUTF8".into(),
            "ENHANCEDSTATUSCODES".into(),
            "CHUNKING".into(),
            "DSN".into(),
        ];
        if self.config.starttls && !self.tls {
            lines.push("STARTTLS".into());
        }
        if self.auth_offered() {
            lines.push(format!("AUTH {}", self.mechanisms().collect::<Vec<_>>().join(" ")).into());
        }
        self.send(Reply::multiline(250, "", lines));
    }

    fn mail(&mut self, from: smtp_codec::MailFrom<Cow<'_, str>>) -> Option<Event> {
        if self.helo.is_none() {
            self.error(replies::bad_sequence("Send EHLO or HELO first"));
            return None;
        }
        if self.tx.active {
            self.error(replies::bad_sequence("Nested MAIL command"));
            return None;
        }
        if self.config.require_auth && self.user.is_none() {
            self.error(Reply::new(530, "5.7.0", "Authentication required"));
            return None;
        }
        if from.flags & smtp_codec::MAIL_BODY_BINARYMIME != 0 {
            self.error(Reply::new(555, "5.5.4", "BODY=BINARYMIME is not supported"));
            return None;
        }
        let smtputf8 = from.flags & smtp_codec::MAIL_SMTPUTF8 != 0;
        if !from.address.is_ascii() && !smtputf8 {
            // RFC 6531 §3.4: a non-ASCII address needs the SMTPUTF8 parameter.
            self.error(Reply::new(
                553,
                "5.6.7",
                "Non-ASCII address requires SMTPUTF8",
            ));
            return None;
        }
        if from.size > self.config.max_message_size {
            self.send(replies::message_too_big());
            return None;
        }
        self.smtputf8 = smtputf8;
        let ret = if from.flags & smtp_codec::MAIL_RET_FULL != 0 {
            Some(Ret::Full)
        } else if from.flags & smtp_codec::MAIL_RET_HDRS != 0 {
            Some(Ret::Headers)
        } else {
            None
        };
        let params = MailParams {
            size: from.size,
            eight_bit: from.flags & smtp_codec::MAIL_BODY_8BITMIME != 0,
            smtputf8,
            ret,
            envid: from.env_id.map(Cow::into_owned),
        };
        self.pending = Pending::Mail;
        Some(Event::Mail {
            from: from.address.into_owned(),
            params,
        })
    }

    fn rcpt(&mut self, to: smtp_codec::RcptTo<Cow<'_, str>>) -> Option<Event> {
        if !self.tx.active {
            self.error(replies::bad_sequence("Need MAIL before RCPT"));
            return None;
        }
        if self.tx.bdat {
            self.error(replies::bad_sequence("RCPT not allowed after BDAT"));
            return None;
        }
        if to.address.is_empty() {
            self.error(Reply::new(501, "5.1.3", "Empty recipient address"));
            return None;
        }
        if !to.address.is_ascii() && !self.smtputf8 {
            self.error(Reply::new(
                553,
                "5.6.7",
                "Non-ASCII address requires SMTPUTF8",
            ));
            return None;
        }
        self.tx.rcpt_seen += 1;
        if self.tx.rcpt_accepted >= self.config.max_recipients {
            self.send(replies::too_many_recipients());
            return None;
        }
        self.pending = Pending::Rcpt;
        Some(Event::Rcpt {
            to: to.address.into_owned(),
            params: RcptParams {
                notify: to.flags,
                orcpt: to.orcpt.map(Cow::into_owned),
            },
        })
    }

    fn transaction_ready(&mut self) -> Result<(), Reply> {
        if !self.tx.active {
            return Err(replies::bad_sequence("Need MAIL command"));
        }
        if self.tx.rcpt_seen == 0 {
            return Err(replies::bad_sequence("Need RCPT command"));
        }
        if self.tx.rcpt_accepted == 0 {
            // RFC 2920 §3.1: DATA after all recipients failed gets 554, not 354.
            return Err(Reply::new(554, "5.5.1", "No valid recipients"));
        }
        Ok(())
    }

    fn data_command(&mut self) {
        if let Err(reply) = self.transaction_ready() {
            self.error(reply);
            return;
        }
        if self.tx.bdat {
            self.error(replies::bad_sequence("DATA not allowed after BDAT"));
            return;
        }
        self.send(replies::start_data());
        self.data = Vec::new();
        self.phase = Phase::Data(DataReceiver::with_canonicalizer(
            self.config.max_message_size,
            Canonicalizer::new(self.config.max_header_line, self.config.max_header_size),
        ));
    }

    fn bdat(&mut self, chunk_size: usize, last: bool) {
        // RFC 3030 §2: the chunk follows the command at once, so it is consumed even when the
        // command is refused.
        let discard = if let Err(reply) = self.transaction_ready() {
            self.errors += 1;
            Some(reply)
        } else if let Some(reply) = &self.tx.chunk_failed {
            Some(reply.clone())
        } else if self.tx.chunks.len().saturating_add(chunk_size) > self.config.max_message_size {
            self.tx.chunk_failed = Some(replies::message_too_big());
            self.tx.chunks = Vec::new();
            Some(replies::message_too_big())
        } else {
            if !self.tx.bdat {
                self.tx.canon =
                    Canonicalizer::new(self.config.max_header_line, self.config.max_header_size);
            }
            self.tx.bdat = true;
            self.tx.chunks.reserve(chunk_size.min(1 << 20));
            None
        };
        self.phase = Phase::Chunk {
            remaining: chunk_size,
            last,
            discard,
        };
    }
}

fn mechanism_name(bits: u64) -> Option<&'static str> {
    Some(match bits {
        smtp_codec::AUTH_PLAIN => "PLAIN",
        smtp_codec::AUTH_LOGIN => "LOGIN",
        smtp_codec::AUTH_SCRAM_SHA_256 => "SCRAM-SHA-256",
        smtp_codec::AUTH_SCRAM_SHA_256_PLUS => "SCRAM-SHA-256-PLUS",
        _ => return None,
    })
}

/// Standard base64 with padding (RFC 4648 §4), as SMTP AUTH uses.
pub fn base64_encode(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Decodes standard base64; `None` on any malformed input.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

fn host_or_dash(helo: &Option<String>) -> &str {
    helo.as_deref().unwrap_or("-")
}
