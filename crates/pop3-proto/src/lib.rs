//! Sans-IO POP3: RFC 1939 (the protocol), RFC 2449 (CAPA, response codes, PIPELINING),
//! RFC 2595 (STLS), RFC 5034 (AUTH), RFC 6856 (UTF8).
//!
//! **Architecture invariant:** no IO, no async runtime, no clock, no RNG.
//!
//! The machine owns the session's maildrop snapshot (message numbers, sizes, UIDLs, deletion
//! marks), so it answers STAT, LIST, UIDL, DELE, RSET and NOOP itself. It asks the session
//! ([`Event`]) to check logins, to fetch message bytes for RETR and TOP, and to carry out the
//! deletions at QUIT. Call contract as in `smtp-proto`: `feed`, then `next` until `None`,
//! answering each question-event before calling `next` again, then write `take_output`.
//!
//! For trace logs the machine can keep a transcript ([`Machine::record_transcript`]): each
//! client line and status line where it is read or written, with placeholders for PASS's
//! password, APOP's digest, SASL data and message content.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

/// Settings of one session.
#[derive(Debug, Clone)]
pub struct Config {
    /// Offer STLS on this (plain) connection.
    pub stls: bool,
    /// Allow USER/PASS and AUTH without TLS (for loopback).
    pub plaintext_login: bool,
    /// SASL mechanisms offered (only while login is allowed).
    pub mechanisms: Vec<String>,
    /// RFC 2449 EXPIRE, advertised when set: days after which the server deletes messages.
    pub expire_days: Option<u32>,
    /// RFC 2449 LOGIN-DELAY, advertised when set: seconds between logins.
    pub login_delay_secs: Option<u32>,
    /// Longest command line accepted (RFC 2449 §4: 255 octets).
    pub max_line: usize,
    /// Errors tolerated before the connection is closed.
    pub max_errors: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            stls: false,
            plaintext_login: false,
            mechanisms: Vec::new(),
            expire_days: None,
            login_delay_secs: None,
            max_line: 255,
            max_errors: 20,
        }
    }
}

/// One message of the maildrop as the session sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The store's UID, for the session to fetch or delete it.
    pub uid: u32,
    /// Octets RETR sends before byte-stuffing (RFC 1939 §11).
    pub size: u64,
    /// Unique id (RFC 1939 §7), stable across sessions.
    pub uidl: String,
}

/// What the session must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// USER and PASS: check them, then call [`Machine::login_ok`], [`Machine::login_failed`]
    /// or [`Machine::in_use`].
    Login { user: String, password: String },
    /// AUTH (RFC 5034): start a SASL exchange; answer with [`Machine::auth_challenge`] or end
    /// it with `login_ok` / `login_failed`.
    Auth {
        mechanism: String,
        initial: Option<Vec<u8>>,
    },
    /// The client's decoded answer to the last challenge.
    AuthResponse(Vec<u8>),
    /// Send message `uid`: answer with [`Machine::message`] (whole, or only the header and
    /// `top` body lines when `top` is set), or [`Machine::temp_error`].
    Retrieve { uid: u32, top: Option<u32> },
    /// QUIT in the TRANSACTION state: delete `deleted` for good, then call
    /// [`Machine::update_done`] (RFC 1939 §6).
    Update { deleted: Vec<u32> },
    /// The +OK to STLS is in the output: write it, handshake, then call [`Machine::tls_started`].
    StartTls,
    /// Close once the output is written.
    Close,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Authorization { user: Option<String> },
    Auth,
    Transaction,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    None,
    Login,
    Retrieve,
    Update,
    StartTls,
}

/// The sans-IO POP3 server.
#[derive(Debug)]
pub struct Machine {
    config: Config,
    state: State,
    pending: Pending,
    input: Vec<u8>,
    output: Vec<u8>,
    tls: bool,
    maildrop: Vec<Entry>,
    deleted: Vec<bool>,
    errors: usize,
    close_emitted: bool,
    /// Skipping the rest of an overlong line.
    skipping: bool,
    /// The exchange for a trace log, while recording ([`Machine::record_transcript`]).
    transcript: Option<Vec<String>>,
}

/// RFC 5034 §4: AUTH responses may be long.
const MAX_AUTH_LINE: usize = 12288;

impl Machine {
    pub fn new(config: Config) -> Machine {
        Machine {
            config,
            state: State::Authorization { user: None },
            pending: Pending::None,
            input: Vec::new(),
            output: Vec::new(),
            tls: false,
            maildrop: Vec::new(),
            deleted: Vec::new(),
            errors: 0,
            close_emitted: false,
            skipping: false,
            transcript: None,
        }
    }

    /// Starts (or stops) keeping a transcript of the exchange for [`Machine::take_transcript`].
    /// Off by default: it costs a string per line.
    pub fn record_transcript(&mut self, on: bool) {
        self.transcript = on.then(Vec::new);
    }

    /// The exchange since the last call, one line each: `C: ` what the client sent, `S: ` the
    /// status lines we answered (`+OK`/`-ERR`, challenges), in order. Never in it: PASS's
    /// password, APOP's digest, SASL data (as placeholders), and message content (its size).
    /// Empty unless recording.
    pub fn take_transcript(&mut self) -> Vec<String> {
        self.transcript
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Adds a line to the transcript, if recording (`line` is only made then).
    fn note(&mut self, line: impl FnOnce() -> String) {
        if let Some(transcript) = &mut self.transcript {
            transcript.push(line());
        }
    }

    pub fn greet(&mut self) {
        self.ok("pigeon POP3 server ready");
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        if self.state != State::Closed {
            self.input.extend_from_slice(bytes);
        }
    }

    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// True in the AUTHORIZATION state or while idle in TRANSACTION: closing loses nothing
    /// (deletions only happen at QUIT).
    pub fn is_idle(&self) -> bool {
        self.pending == Pending::None
    }

    pub fn is_authenticated(&self) -> bool {
        self.state == State::Transaction
    }

    fn ok(&mut self, text: &str) {
        self.status(b"+OK ", text);
    }

    fn err(&mut self, text: &str) {
        self.status(b"-ERR ", text);
    }

    /// Every status line goes out here, so every reply is in the transcript.
    fn status(&mut self, indicator: &[u8], text: &str) {
        let start = self.output.len();
        self.output.extend_from_slice(indicator);
        self.output.extend(
            text.bytes()
                .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
        if let Some(transcript) = &mut self.transcript {
            let line = String::from_utf8_lossy(&self.output[start..]);
            transcript.push(format!("S: {line}"));
        }
        self.output.extend_from_slice(b"\r\n");
    }

    fn error(&mut self, text: &str) {
        self.err(text);
        self.errors += 1;
        if self.errors >= self.config.max_errors {
            self.close("too many errors, closing connection", false);
        }
    }

    fn close(&mut self, text: &str, ok: bool) {
        if ok {
            self.ok(text);
        } else {
            self.err(text);
        }
        self.state = State::Closed;
        self.input.clear();
    }

    /// The client was idle too long (RFC 1939 §3: autologout, no UPDATE).
    pub fn timeout(&mut self) {
        self.close("autologout: idle too long", false);
    }

    /// The server is stopping; nothing is deleted.
    pub fn shutdown(&mut self) {
        self.close("[SYS/TEMP] server shutting down", false);
    }

    fn login_allowed(&self) -> bool {
        self.tls || self.config.plaintext_login
    }

    /// The SASL mechanisms offered now: channel-binding ones (`-PLUS`) only under TLS, the
    /// channel they bind to (RFC 5802 §6).
    fn mechanisms(&self) -> Vec<String> {
        let tls = self.tls;
        self.config
            .mechanisms
            .iter()
            .filter(|m| tls || !m.ends_with("-PLUS"))
            .cloned()
            .collect()
    }

    /// TLS is active: implicit TLS (before `greet`) or after STLS. The state restarts.
    pub fn tls_started(&mut self) {
        self.tls = true;
        self.input.clear();
        self.state = State::Authorization { user: None };
        if self.pending == Pending::StartTls {
            self.pending = Pending::None;
        }
    }

    /// Login succeeded: the maildrop snapshot for this session, in message-number order.
    pub fn login_ok(&mut self, maildrop: Vec<Entry>) {
        self.pending = Pending::None;
        let total: u64 = maildrop.iter().map(|e| e.size).sum();
        self.deleted = vec![false; maildrop.len()];
        let count = maildrop.len();
        self.maildrop = maildrop;
        self.state = State::Transaction;
        self.ok(&format!("maildrop has {count} messages ({total} octets)"));
    }

    /// Login failed: back to AUTHORIZATION with `-ERR [AUTH] text`.
    pub fn login_failed(&mut self, text: &str) {
        self.pending = Pending::None;
        self.state = State::Authorization { user: None };
        self.error(&format!("[AUTH] {text}"));
    }

    /// Credentials were right but the maildrop is locked by another session (RFC 2449 §8.1.1).
    pub fn in_use(&mut self) {
        self.pending = Pending::None;
        self.state = State::Authorization { user: None };
        self.err("[IN-USE] maildrop already locked by another session");
    }

    /// A temporary failure (store error, LOGIN-DELAY...): `-ERR [code] text`.
    pub fn temp_error(&mut self, code: &str, text: &str) {
        match self.pending {
            Pending::Login => self.state = State::Authorization { user: None },
            Pending::Update => self.state = State::Closed,
            _ => {}
        }
        self.pending = Pending::None;
        self.err(&format!("[{code}] {text}"));
    }

    /// Sends a SASL challenge (`+ base64`).
    pub fn auth_challenge(&mut self, challenge: &[u8]) {
        self.pending = Pending::None;
        self.state = State::Auth;
        self.output.extend_from_slice(b"+ ");
        self.output.extend(B64.encode(challenge).into_bytes());
        self.output.extend_from_slice(b"\r\n");
        self.note(|| "S: + <SASL data redacted>".into());
    }

    /// Answers [`Event::Retrieve`]: the message bytes as stored. Bare LFs become CRLF, the
    /// last line is terminated, and lines starting with "." are byte-stuffed.
    pub fn message(&mut self, data: &[u8], top: Option<u32>) {
        self.pending = Pending::None;
        match top {
            None => {
                let size = message::lines::crlf_size(data);
                self.ok(&format!("{size} octets"));
            }
            Some(_) => self.ok("top of message follows"),
        }
        self.output.reserve(data.len() + data.len() / 32 + 8);
        let start = self.output.len();
        let limit = top.unwrap_or(u32::MAX);
        // TOP sends the header section, the empty line and `n` body lines (RFC 1939 §7).
        let body = message::headers::header_section(data).body;
        let mut body_lines = 0u32;
        let mut offset = 0;
        // Line by line, copying slices: far faster than byte by byte on big messages.
        while offset < data.len() {
            let in_body = offset >= body;
            if in_body && body_lines >= limit {
                break;
            }
            let rest = &data[offset..];
            let (line, length) = match rest.iter().position(|&b| b == b'\n') {
                Some(pos) => (&rest[..pos], pos + 1),
                None => (rest, rest.len()),
            };
            let content = line.strip_suffix(b"\r").unwrap_or(line);
            if content.first() == Some(&b'.') {
                self.output.push(b'.');
            }
            self.output.extend_from_slice(content);
            self.output.extend_from_slice(b"\r\n");
            if in_body {
                body_lines += 1;
            }
            offset += length;
        }
        self.output.extend_from_slice(b".\r\n");
        let sent = self.output.len() - start;
        self.note(|| format!("S: <message, {sent} octets on the wire>"));
    }

    /// Answers [`Event::Update`]: the deletions are done (`true`) or failed.
    pub fn update_done(&mut self, ok: bool) {
        self.pending = Pending::None;
        let left = self.deleted.iter().filter(|d| !**d).count();
        if ok {
            self.close(
                &format!("pigeon POP3 server signing off ({left} messages left)"),
                true,
            );
        } else {
            // RFC 1939 §6: -ERR if some deleted messages were not removed.
            self.close("[SYS/TEMP] some deleted messages not removed", false);
        }
    }

    /// Advances until an event needs the session, or more input is needed.
    pub fn next(&mut self) -> Option<Event> {
        if self.pending != Pending::None {
            return None;
        }
        loop {
            if self.state == State::Closed {
                if self.close_emitted {
                    return None;
                }
                self.close_emitted = true;
                return Some(Event::Close);
            }
            let limit = if self.state == State::Auth {
                MAX_AUTH_LINE
            } else {
                self.config.max_line
            };
            let Some(pos) = self.input.iter().position(|&b| b == b'\n') else {
                if self.input.len() > limit {
                    self.input.clear();
                    if !self.skipping {
                        self.skipping = true;
                        self.error("line too long");
                    }
                }
                return None;
            };
            let line: Vec<u8> = self.input.drain(..=pos).collect();
            if std::mem::take(&mut self.skipping) {
                continue;
            }
            if line.len() > limit {
                self.note(|| format!("C: <line too long, {} octets>", line.len()));
                self.error("line too long");
                continue;
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\r', '\n']).to_string();
            let sasl = self.state == State::Auth;
            self.note(|| format!("C: {}", logged_line(&text, sasl)));
            if let Some(event) = self.line(&text) {
                return Some(event);
            }
        }
    }

    fn line(&mut self, text: &str) -> Option<Event> {
        if self.state == State::Auth {
            self.state = State::Authorization { user: None };
            if text == "*" {
                self.error("[AUTH] authentication cancelled");
                return None;
            }
            return match B64.decode(text) {
                Ok(data) => {
                    self.pending = Pending::Login;
                    self.state = State::Auth;
                    Some(Event::AuthResponse(data))
                }
                Err(_) => {
                    self.error("invalid base64");
                    None
                }
            };
        }
        let (command, args) = match text.split_once(' ') {
            Some((c, a)) => (c, a),
            None => (text, ""),
        };
        let command = command.to_ascii_uppercase();
        let arguments: Vec<&str> = args.split(' ').filter(|a| !a.is_empty()).collect();
        match (&self.state, command.as_str()) {
            (_, "CAPA") => {
                self.capa();
                None
            }
            (_, "QUIT") => self.quit(),
            (State::Authorization { .. }, "STLS") => {
                if !self.config.stls || self.tls {
                    self.error("STLS not available");
                    return None;
                }
                self.ok("begin TLS negotiation");
                self.input.clear();
                self.pending = Pending::StartTls;
                Some(Event::StartTls)
            }
            (State::Authorization { .. }, "UTF8") => {
                // RFC 6856: we already send messages unchanged and accept UTF-8 user names.
                self.ok("UTF8 enabled");
                None
            }
            (State::Authorization { .. }, "USER") => {
                if !self.login_allowed() {
                    self.error("[AUTH] TLS required: use STLS first");
                    return None;
                }
                if args.is_empty() {
                    self.error("USER needs a name");
                    return None;
                }
                self.state = State::Authorization {
                    user: Some(args.to_string()),
                };
                self.ok("send PASS");
                None
            }
            (State::Authorization { user }, "PASS") => {
                let Some(user) = user.clone() else {
                    self.error("USER first");
                    return None;
                };
                if args.is_empty() {
                    self.error("PASS needs a password");
                    return None;
                }
                self.pending = Pending::Login;
                // RFC 1939 §7: the password may contain spaces; take the rest of the line.
                Some(Event::Login {
                    user,
                    password: args.to_string(),
                })
            }
            (State::Authorization { .. }, "AUTH") => self.auth(&arguments),
            (State::Authorization { .. }, "APOP") => {
                self.error("APOP not supported; use AUTH or USER/PASS over TLS");
                None
            }
            (State::Authorization { .. }, _) => {
                self.error("command not valid before login");
                None
            }
            (State::Transaction, "STAT") => {
                if !arguments.is_empty() {
                    self.error("STAT takes no argument");
                    return None;
                }
                let (count, octets) = self.totals();
                self.ok(&format!("{count} {octets}"));
                None
            }
            (State::Transaction, "LIST") => {
                self.listing(&arguments, |e| e.size.to_string());
                None
            }
            (State::Transaction, "UIDL") => {
                self.listing(&arguments, |e| e.uidl.clone());
                None
            }
            (State::Transaction, "RETR") => {
                let [n] = arguments[..] else {
                    self.error("RETR needs one message number");
                    return None;
                };
                let index = self.message_index(n)?;
                self.pending = Pending::Retrieve;
                Some(Event::Retrieve {
                    uid: self.maildrop[index].uid,
                    top: None,
                })
            }
            (State::Transaction, "TOP") => {
                let [n, lines] = arguments[..] else {
                    self.error("TOP needs a message number and a line count");
                    return None;
                };
                let Ok(lines) = lines.parse::<u32>() else {
                    self.error("invalid line count");
                    return None;
                };
                let index = self.message_index(n)?;
                self.pending = Pending::Retrieve;
                Some(Event::Retrieve {
                    uid: self.maildrop[index].uid,
                    top: Some(lines),
                })
            }
            (State::Transaction, "DELE") => {
                let [n] = arguments[..] else {
                    self.error("DELE needs one message number");
                    return None;
                };
                let index = self.message_index(n)?;
                self.deleted[index] = true;
                self.ok(&format!("message {} deleted", index + 1));
                None
            }
            (State::Transaction, "RSET") => {
                self.deleted.iter_mut().for_each(|d| *d = false);
                let (count, octets) = self.totals();
                self.ok(&format!("maildrop has {count} messages ({octets} octets)"));
                None
            }
            (State::Transaction, "NOOP") => {
                self.ok("");
                None
            }
            (State::Transaction, "USER" | "PASS" | "AUTH" | "STLS" | "APOP") => {
                self.error("already logged in");
                None
            }
            _ => {
                self.error("unknown command");
                None
            }
        }
    }

    fn auth(&mut self, arguments: &[&str]) -> Option<Event> {
        if !self.login_allowed() {
            self.error("[AUTH] TLS required: use STLS first");
            return None;
        }
        let (mechanism, initial) = match arguments {
            [m] => (*m, None),
            [m, i] => (*m, Some(*i)),
            [] => {
                // RFC 5034 §4 allows AUTH alone to list mechanisms, like CAPA's SASL line.
                self.ok("");
                for mechanism in self.mechanisms() {
                    self.output.extend_from_slice(mechanism.as_bytes());
                    self.output.extend_from_slice(b"\r\n");
                }
                self.output.extend_from_slice(b".\r\n");
                return None;
            }
            _ => {
                self.error("AUTH takes a mechanism and an optional initial response");
                return None;
            }
        };
        let mechanism = mechanism.to_ascii_uppercase();
        if !self.mechanisms().contains(&mechanism) {
            self.error("unsupported SASL mechanism");
            return None;
        }
        let initial = match initial {
            None => None,
            Some("=") => Some(Vec::new()),
            Some(text) => match B64.decode(text) {
                Ok(data) => Some(data),
                Err(_) => {
                    self.error("invalid base64");
                    return None;
                }
            },
        };
        self.pending = Pending::Login;
        self.state = State::Auth;
        Some(Event::Auth { mechanism, initial })
    }

    fn quit(&mut self) -> Option<Event> {
        if self.state != State::Transaction {
            self.close("pigeon POP3 server signing off", true);
            return None;
        }
        let deleted: Vec<u32> = self
            .maildrop
            .iter()
            .zip(&self.deleted)
            .filter(|(_, d)| **d)
            .map(|(e, _)| e.uid)
            .collect();
        self.pending = Pending::Update;
        Some(Event::Update { deleted })
    }

    fn capa(&mut self) {
        self.ok("Capability list follows");
        let mut lines: Vec<String> = vec![
            "TOP".into(),
            "UIDL".into(),
            "RESP-CODES".into(),
            "AUTH-RESP-CODE".into(),
            "PIPELINING".into(),
        ];
        if self.state != State::Transaction && self.login_allowed() {
            lines.push("USER".into());
            let mechanisms = self.mechanisms();
            if !mechanisms.is_empty() {
                lines.push(format!("SASL {}", mechanisms.join(" ")));
            }
        }
        if self.config.stls && !self.tls && self.state != State::Transaction {
            lines.push("STLS".into());
        }
        if let Some(days) = self.config.expire_days {
            lines.push(format!("EXPIRE {days}"));
        }
        if let Some(secs) = self.config.login_delay_secs {
            lines.push(format!("LOGIN-DELAY {secs}"));
        }
        lines.push("UTF8".into());
        lines.push("IMPLEMENTATION pigeon".into());
        for line in lines {
            self.output.extend_from_slice(line.as_bytes());
            self.output.extend_from_slice(b"\r\n");
        }
        self.output.extend_from_slice(b".\r\n");
    }

    fn totals(&self) -> (usize, u64) {
        self.maildrop
            .iter()
            .zip(&self.deleted)
            .filter(|(_, d)| !**d)
            .fold((0, 0), |(n, o), (e, _)| (n + 1, o + e.size))
    }

    /// The index of message number `arg`, or an error reply (`None`).
    fn message_index(&mut self, arg: &str) -> Option<usize> {
        let number = match arg.parse::<usize>() {
            Ok(n) if n >= 1 && n <= self.maildrop.len() => n,
            Ok(_) => {
                self.error("no such message");
                return None;
            }
            Err(_) => {
                self.error("invalid message number");
                return None;
            }
        };
        if self.deleted[number - 1] {
            self.error("message already deleted");
            return None;
        }
        Some(number - 1)
    }

    fn listing(&mut self, arguments: &[&str], value: impl Fn(&Entry) -> String) {
        match arguments {
            [] => {
                let (count, octets) = self.totals();
                self.ok(&format!("{count} messages ({octets} octets)"));
                let mut text = Vec::new();
                for (i, (entry, deleted)) in self.maildrop.iter().zip(&self.deleted).enumerate() {
                    if !deleted {
                        text.extend_from_slice(
                            format!("{} {}\r\n", i + 1, value(entry)).as_bytes(),
                        );
                    }
                }
                self.output.extend_from_slice(&text);
                self.output.extend_from_slice(b".\r\n");
            }
            [n] => {
                if let Some(index) = self.message_index(n) {
                    let line = format!("{} {}", index + 1, value(&self.maildrop[index]));
                    self.ok(&line);
                }
            }
            _ => self.error("too many arguments"),
        }
    }
}

/// A client line as the transcript shows it: a SASL response (`sasl`), PASS's password,
/// APOP's digest and AUTH's initial response are replaced by placeholders; control characters
/// are escaped, so a line of the log is one line of the exchange.
fn logged_line(text: &str, sasl: bool) -> String {
    if sasl {
        return if text == "*" {
            "*"
        } else {
            "<SASL data redacted>"
        }
        .into();
    }
    let mut words = text.split(' ').filter(|w| !w.is_empty());
    let verb = words.next().unwrap_or("").to_ascii_uppercase();
    let first = words.next().map(str::escape_debug);
    let more = words.next().is_some();
    match (verb.as_str(), first) {
        ("PASS", Some(_)) => "PASS <redacted>".into(),
        ("APOP", Some(user)) => format!("APOP {user} <digest redacted>"),
        ("AUTH", Some(mechanism)) if more => {
            format!("AUTH {mechanism} <initial response redacted>")
        }
        _ => text.escape_debug().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_never_logged() {
        assert_eq!(logged_line("USER bob", false), "USER bob");
        assert_eq!(
            logged_line("pass hunter2 with spaces", false),
            "PASS <redacted>"
        );
        assert_eq!(logged_line("PASS", false), "PASS");
        assert_eq!(
            logged_line("APOP bob c4c9334bac560ecc979e58001b3e22fb", false),
            "APOP bob <digest redacted>"
        );
        assert_eq!(
            logged_line("AUTH PLAIN AGJvYgBodW50ZXIy", false),
            "AUTH PLAIN <initial response redacted>"
        );
        assert_eq!(logged_line("AUTH PLAIN", false), "AUTH PLAIN");
        assert_eq!(
            logged_line("AGJvYgBodW50ZXIy", true),
            "<SASL data redacted>"
        );
        assert_eq!(logged_line("*", true), "*");
        assert_eq!(logged_line("NOOP\r\0", false), "NOOP\\r\\0");
    }

    #[test]
    fn the_transcript_has_status_lines_and_sizes_only() {
        let mut m = Machine::new(Config {
            plaintext_login: true,
            ..Config::default()
        });
        m.record_transcript(true);
        m.greet();
        m.feed(b"USER bob\r\nPASS hunter2\r\n");
        assert!(matches!(m.next(), Some(Event::Login { .. })));
        m.login_ok(vec![Entry {
            uid: 1,
            size: 22,
            uidl: "1.1".into(),
        }]);
        m.feed(b"RETR 1\r\n");
        assert!(matches!(m.next(), Some(Event::Retrieve { .. })));
        m.message(b"Subject: x\r\n\r\nsecret\r\n", None);
        assert_eq!(
            m.take_transcript(),
            [
                "S: +OK pigeon POP3 server ready",
                "C: USER bob",
                "S: +OK send PASS",
                "C: PASS <redacted>",
                "S: +OK maildrop has 1 messages (22 octets)",
                "C: RETR 1",
                "S: +OK 22 octets",
                "S: <message, 25 octets on the wire>",
            ]
        );
    }

    fn retr(data: &[u8], top: Option<u32>) -> String {
        let mut m = Machine::new(Config::default());
        m.message(data, top);
        String::from_utf8(m.take_output()).unwrap()
    }

    #[test]
    fn retr_normalises_and_stuffs() {
        assert_eq!(
            retr(b"A: b\r\n\r\n.dot\r\nend\r\n", None),
            "+OK 19 octets\r\nA: b\r\n\r\n..dot\r\nend\r\n.\r\n"
        );
        assert_eq!(
            retr(b"A: b\n\nbare lf", None),
            "+OK 17 octets\r\nA: b\r\n\r\nbare lf\r\n.\r\n"
        );
    }

    /// LIST and STAT announce the store's `crlf_size` (`message::lines`); RETR must send
    /// exactly that many octets before byte-stuffing, whatever the line ends.
    #[test]
    fn retr_sends_the_announced_size() {
        for data in [
            &b""[..],
            b"a",
            b"A: b\r\n\r\nbody\r\n",
            b"A: b\n\nbare lf",
            b"\n\n\n",
            b"a\rb\r\n\rc",
            b"x\r\n\r\n.dot\n..two\r\n.",
            b"\r\n",
        ] {
            let out = retr(data, None);
            let (status, rest) = out.split_once("\r\n").unwrap();
            let sent = rest.strip_suffix(".\r\n").unwrap();
            let unstuffed =
                sent.replace("\r\n.", "\r\n").len() - usize::from(sent.starts_with('.'));
            let size = message::lines::crlf_size(data);
            assert_eq!(status, format!("+OK {size} octets"), "{data:?}");
            assert_eq!(unstuffed as u64, size, "{data:?}");
        }
    }

    #[test]
    fn top_finds_the_header_end_in_bare_lf_mail() {
        let msg = b"A: 1\nB: 2\n\nl1\nl2\n";
        assert_eq!(
            retr(msg, Some(1)),
            "+OK top of message follows\r\nA: 1\r\nB: 2\r\n\r\nl1\r\n.\r\n"
        );
        assert_eq!(
            retr(b"A: 1\r\n", Some(0)),
            "+OK top of message follows\r\nA: 1\r\n.\r\n",
            "no body"
        );
    }

    #[test]
    fn top_sends_header_and_n_lines() {
        let msg = b"A: 1\r\nB: 2\r\n\r\nl1\r\n.l2\r\nl3\r\n";
        assert_eq!(
            retr(msg, Some(0)),
            "+OK top of message follows\r\nA: 1\r\nB: 2\r\n\r\n.\r\n"
        );
        assert_eq!(
            retr(msg, Some(2)),
            "+OK top of message follows\r\nA: 1\r\nB: 2\r\n\r\nl1\r\n..l2\r\n.\r\n"
        );
        assert_eq!(
            retr(msg, Some(99)),
            "+OK top of message follows\r\nA: 1\r\nB: 2\r\n\r\nl1\r\n..l2\r\nl3\r\n.\r\n"
        );
    }
}
