//! Sans-IO IMAP (RFC 9051 IMAP4rev2, RFC 3501 IMAP4rev1): command framing with literals
//! (synchronizing, LITERAL+ and LITERAL-, RFC 7888), tokenizing, typed command parsing, and
//! the byte-level response writer helpers.
//!
//! **Architecture invariant:** no IO, no async runtime, no clock, no RNG.
//!
//! The machine frames commands (a command may span lines joined by literals), sends the `+`
//! continuation for synchronizing literals, bounds lines and literals, and answers malformed
//! commands with `BAD`. Complete commands come out as [`Event::Command`]; the session answers
//! them by writing into [`Machine::out`]. IDLE and AUTHENTICATE continuation lines are read by
//! the machine after the session calls [`Machine::start_idle`] or [`Machine::auth_continue`].
//!
//! Literals are held in memory until the command is complete (bounded), except the message
//! literal of an APPEND of `stream_threshold` octets or more: that one is handed to the session
//! piece by piece as it arrives (`AppendBegin`, `AppendData`, `AppendEnd`), so the session can
//! stream it into the store.

pub mod command;
mod parser;
pub mod token;
pub mod utf7;
pub mod write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

pub use command::{Command, CommandBody};
use parser::head;

/// System flag bits; the same values as `store::flags` (imap-server checks that).
pub mod flags {
    pub const SEEN: u32 = 1 << 0;
    pub const ANSWERED: u32 = 1 << 1;
    pub const FLAGGED: u32 = 1 << 2;
    pub const DELETED: u32 = 1 << 3;
    pub const DRAFT: u32 = 1 << 4;

    /// The bit of a system flag name such as `\Seen`, case-insensitively.
    pub fn from_name(name: &str) -> Option<u32> {
        Some(match name.to_ascii_lowercase().as_str() {
            "\\seen" => SEEN,
            "\\answered" => ANSWERED,
            "\\flagged" => FLAGGED,
            "\\deleted" => DELETED,
            "\\draft" => DRAFT,
            _ => return None,
        })
    }

    pub const NAMES: [(u32, &str); 5] = [
        (ANSWERED, "\\Answered"),
        (FLAGGED, "\\Flagged"),
        (DELETED, "\\Deleted"),
        (SEEN, "\\Seen"),
        (DRAFT, "\\Draft"),
    ];
}

/// Limits of one session.
#[derive(Debug, Clone)]
pub struct Config {
    /// Longest line (between literals), in octets.
    pub max_line: usize,
    /// Largest literal (APPENDLIMIT).
    pub max_literal: usize,
    /// Largest literal in commands other than APPEND.
    pub max_small_literal: usize,
    /// BAD replies tolerated before the connection is closed.
    pub max_errors: usize,
    /// APPEND message literals this big or bigger are streamed (see the module docs).
    pub stream_threshold: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_line: 64 * 1024,
            max_literal: 50 * 1024 * 1024,
            max_small_literal: 64 * 1024,
            max_errors: 50,
            stream_threshold: 256 * 1024,
        }
    }
}

/// What the session must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A complete, parsed command.
    Command(Command),
    /// The client's decoded answer to an AUTHENTICATE challenge.
    AuthResponse(Vec<u8>),
    /// An APPEND whose message literal is streamed: `command` is the APPEND with an empty
    /// message; `size` octets follow as `AppendData`, then `AppendEnd`.
    AppendBegin { command: Command, size: usize },
    /// The next piece of the streamed message.
    AppendData(Vec<u8>),
    /// The streamed APPEND is complete. If `ok` is false the command line after the literal
    /// was malformed: the machine has answered BAD and the message must be dropped.
    AppendEnd { ok: bool },
    /// The client cancelled AUTHENTICATE with `*` (answer `tag BAD`).
    AuthCancelled,
    /// `DONE` ended IDLE (answer `tag OK`).
    IdleDone,
    /// Close after writing the output.
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading command lines.
    Line,
    /// Reading `remaining` literal octets of the current command.
    Literal {
        remaining: usize,
    },
    /// Passing `remaining` octets of a streamed APPEND message to the session.
    Stream {
        remaining: usize,
    },
    /// After a streamed message: the rest of the APPEND line must be empty.
    StreamEnd,
    /// Discarding up to the end of an overlong line.
    Skip,
    /// In IDLE: waiting for DONE.
    Idle,
    /// Waiting for the answer to an AUTHENTICATE challenge.
    AuthLine,
    Closed,
}

/// The sans-IO IMAP server framing.
#[derive(Debug)]
pub struct Machine {
    config: Config,
    input: Vec<u8>,
    output: Vec<u8>,
    phase: Phase,
    /// The command being assembled (lines and literals).
    command: Vec<u8>,
    /// The tag of the APPEND being streamed.
    stream_tag: String,
    /// Literal octets accepted for the current command.
    literal_total: usize,
    errors: usize,
    close_emitted: bool,
    /// The first `scanned` octets of `input` hold no LF (see [`Machine::newline`]).
    scanned: usize,
}

/// A literal announced at the end of `line` (before CRLF): (length, synchronizing).
fn literal_at_end(line: &[u8]) -> Option<(usize, bool)> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = line.strip_suffix(b"}")?;
    let open = line.iter().rposition(|&b| b == b'{')?;
    let spec = std::str::from_utf8(&line[open + 1..]).ok()?;
    let (digits, sync) = match spec.strip_suffix(['+', '-']) {
        Some(d) => (d, false),
        None => (spec, true),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 10 {
        return None;
    }
    Some((digits.parse().ok()?, sync))
}

impl Machine {
    pub fn new(config: Config) -> Machine {
        Machine {
            config,
            input: Vec::new(),
            output: Vec::new(),
            phase: Phase::Line,
            command: Vec::new(),
            stream_tag: String::new(),
            literal_total: 0,
            errors: 0,
            close_emitted: false,
            scanned: 0,
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        if self.phase != Phase::Closed {
            self.input.extend_from_slice(bytes);
        }
    }

    /// Where the session writes its responses.
    pub fn out(&mut self) -> &mut Vec<u8> {
        &mut self.output
    }

    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    pub fn is_idle_command(&self) -> bool {
        self.phase == Phase::Idle
    }

    /// True when nothing is half-received (graceful shutdown may close now).
    pub fn is_quiet(&self) -> bool {
        self.phase == Phase::Line && self.command.is_empty() && self.input.is_empty()
    }

    /// Discards buffered input: after STARTTLS (RFC 9051 §6.2.1: no plaintext leaks into TLS).
    pub fn tls_started(&mut self) {
        self.input.clear();
        self.scanned = 0;
        self.command.clear();
        self.phase = Phase::Line;
    }

    /// The session accepted IDLE and wrote `+ idling`: read until DONE.
    pub fn start_idle(&mut self) {
        self.phase = Phase::Idle;
    }

    /// Sends an AUTHENTICATE challenge and reads the answer line next.
    pub fn auth_continue(&mut self, challenge: &[u8]) {
        self.output.extend_from_slice(b"+ ");
        self.output.extend(B64.encode(challenge).into_bytes());
        self.output.extend_from_slice(b"\r\n");
        self.phase = Phase::AuthLine;
    }

    /// Writes `* BYE text` and stops reading.
    pub fn bye(&mut self, text: &str) {
        self.output
            .extend_from_slice(format!("* BYE {text}\r\n").as_bytes());
        self.close();
    }

    /// Stops reading (after LOGOUT's BYE, say).
    pub fn close(&mut self) {
        self.phase = Phase::Closed;
        self.input.clear();
        self.scanned = 0;
    }

    /// The position of the next LF in the input. It remembers how far it looked, so a line
    /// arriving an octet at a time costs linear time, not quadratic.
    fn newline(&mut self) -> Option<usize> {
        let from = self.scanned.min(self.input.len());
        match self.input[from..].iter().position(|&b| b == b'\n') {
            Some(at) => {
                // The caller takes the line: what follows has not been looked at.
                self.scanned = 0;
                Some(from + at)
            }
            None => {
                self.scanned = self.input.len();
                None
            }
        }
    }

    fn bad(&mut self, tag: Option<&str>, text: &str) {
        let tag = tag.unwrap_or("*");
        self.output
            .extend_from_slice(format!("{tag} BAD {text}\r\n").as_bytes());
        self.errors += 1;
        if self.errors >= self.config.max_errors {
            self.bye("Too many errors");
        }
    }

    /// Advances until a command or other event is ready, or more input is needed.
    pub fn next(&mut self) -> Option<Event> {
        loop {
            match self.phase {
                Phase::Closed => {
                    if self.close_emitted {
                        return None;
                    }
                    self.close_emitted = true;
                    return Some(Event::Close);
                }
                Phase::Literal { remaining } => {
                    if self.input.is_empty() {
                        return None;
                    }
                    let take = remaining.min(self.input.len());
                    self.command.extend(self.input.drain(..take));
                    self.scanned = 0;
                    let remaining = remaining - take;
                    if remaining > 0 {
                        self.phase = Phase::Literal { remaining };
                        return None;
                    }
                    self.phase = Phase::Line;
                }
                Phase::Stream { remaining } => {
                    if self.input.is_empty() {
                        return None;
                    }
                    let take = remaining.min(self.input.len());
                    let piece: Vec<u8> = self.input.drain(..take).collect();
                    self.scanned = 0;
                    let remaining = remaining - take;
                    self.phase = if remaining > 0 {
                        Phase::Stream { remaining }
                    } else {
                        Phase::StreamEnd
                    };
                    return Some(Event::AppendData(piece));
                }
                Phase::StreamEnd => {
                    let Some(pos) = self.newline() else {
                        if self.input.len() > self.config.max_line {
                            self.input.clear();
                            self.scanned = 0;
                            self.phase = Phase::Skip;
                            let tag = std::mem::take(&mut self.stream_tag);
                            self.bad(Some(&tag), "Line too long");
                            return Some(Event::AppendEnd { ok: false });
                        }
                        return None;
                    };
                    let line: Vec<u8> = self.input.drain(..=pos).collect();
                    self.phase = Phase::Line;
                    let tag = std::mem::take(&mut self.stream_tag);
                    if line == b"\r\n" || line == b"\n" {
                        return Some(Event::AppendEnd { ok: true });
                    }
                    // More after the message: MULTIAPPEND (not offered) or junk.
                    self.bad(Some(&tag), "Expected the end of APPEND after the message");
                    return Some(Event::AppendEnd { ok: false });
                }
                Phase::Skip => match self.newline() {
                    Some(pos) => {
                        self.input.drain(..=pos);
                        self.phase = Phase::Line;
                    }
                    None => {
                        self.input.clear();
                        self.scanned = 0;
                        return None;
                    }
                },
                Phase::Idle | Phase::AuthLine => {
                    let Some(pos) = self.newline() else {
                        if self.input.len() > self.config.max_line {
                            self.input.clear();
                            self.scanned = 0;
                            self.bye("Line too long");
                        }
                        return None;
                    };
                    let line: Vec<u8> = self.input.drain(..=pos).collect();
                    let text = String::from_utf8_lossy(&line);
                    let text = text.trim_end_matches(['\r', '\n']);
                    let phase = self.phase;
                    self.phase = Phase::Line;
                    if phase == Phase::Idle {
                        if text.eq_ignore_ascii_case("DONE") {
                            return Some(Event::IdleDone);
                        }
                        // RFC 9051 §6.3.13: anything but DONE is a protocol error.
                        self.phase = Phase::Idle;
                        self.output.extend_from_slice(b"* BAD Expected DONE\r\n");
                        continue;
                    }
                    if text == "*" {
                        return Some(Event::AuthCancelled);
                    }
                    match B64.decode(text) {
                        Ok(data) => return Some(Event::AuthResponse(data)),
                        Err(_) => {
                            // Treat undecodable answers as a cancelled exchange.
                            return Some(Event::AuthCancelled);
                        }
                    }
                }
                Phase::Line => {
                    let Some(pos) = self.newline() else {
                        if self.input.len() > self.config.max_line {
                            self.input.clear();
                            self.scanned = 0;
                            self.command.clear();
                            self.phase = Phase::Skip;
                            self.bad(None, "Line too long");
                        }
                        return None;
                    };
                    if pos + 1 > self.config.max_line {
                        self.input.drain(..=pos);
                        self.command.clear();
                        self.bad(None, "Line too long");
                        continue;
                    }
                    let line: Vec<u8> = self.input.drain(..=pos).collect();
                    if self.command.is_empty() && (line == b"\r\n" || line == b"\n") {
                        // Empty lines between commands are ignored.
                        continue;
                    }
                    self.command.extend_from_slice(&line);
                    // The lines of one command together are bounded like a single line:
                    // otherwise `{0}` literals would join lines into a command of any size.
                    if self.command.len() - self.literal_total > self.config.max_line {
                        let tag = head(&self.command).map(|h| h.0);
                        self.command.clear();
                        self.literal_total = 0;
                        if matches!(literal_at_end(&line), Some((_, false))) {
                            // A non-synchronizing literal is already on its way.
                            self.bye("Command too long");
                        } else {
                            // No `+` is sent for a synchronizing literal: the client waits
                            // for this BAD instead.
                            self.bad(tag.as_deref(), "Command too long");
                        }
                        continue;
                    }
                    if let Some((len, sync)) = literal_at_end(&line) {
                        let is_append = head(&self.command)
                            .is_some_and(|(_, name, _)| name.eq_ignore_ascii_case("APPEND"));
                        let limit = if is_append {
                            self.config.max_literal
                        } else {
                            self.config.max_small_literal
                        };
                        self.literal_total += len;
                        if self.literal_total > limit {
                            let tag = head(&self.command).map(|h| h.0);
                            self.command.clear();
                            self.literal_total = 0;
                            if sync {
                                // RFC 7888 §4: refuse before the client sends the literal.
                                let tag = tag.unwrap_or_else(|| "*".into());
                                self.output.extend_from_slice(
                                    format!("{tag} NO [TOOBIG] Literal too large\r\n").as_bytes(),
                                );
                                continue;
                            }
                            // A non-synchronizing literal is already on its way.
                            self.bye("Literal too large");
                            continue;
                        }
                        if sync {
                            self.output
                                .extend_from_slice(b"+ Ready for literal data\r\n");
                        }
                        if is_append
                            && len >= self.config.stream_threshold
                            && let Some(command) = self.append_head()
                        {
                            self.command.clear();
                            self.literal_total = 0;
                            self.stream_tag = command.tag.clone();
                            self.phase = Phase::Stream { remaining: len };
                            return Some(Event::AppendBegin { command, size: len });
                        }
                        self.phase = Phase::Literal { remaining: len };
                        continue;
                    }
                    let command = std::mem::take(&mut self.command);
                    self.literal_total = 0;
                    if let Some(event) = self.parse(&command) {
                        return Some(event);
                    }
                }
            }
        }
    }

    /// The APPEND assembled so far (ending with its message literal's announcement) parsed with
    /// an empty message; None if it does not parse (it is then buffered and answered BAD).
    fn append_head(&self) -> Option<Command> {
        let open = self.command.iter().rposition(|&b| b == b'{')?;
        let mut probe = self.command[..open].to_vec();
        probe.extend_from_slice(b"{0}\r\n\r\n");
        let (tag, name, end) = head(&probe)?;
        let tokens = token::tokenize(&probe[end..]).ok()?;
        match command::parse(&name, tokens).ok()? {
            body @ CommandBody::Append { .. } => Some(Command { tag, body }),
            _ => None,
        }
    }

    fn parse(&mut self, command: &[u8]) -> Option<Event> {
        let Some((tag, name, end)) = head(command) else {
            let tag = command
                .split(|&b| b == b' ')
                .next()
                .and_then(|t| std::str::from_utf8(t).ok())
                .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
                .map(str::to_string);
            self.bad(tag.as_deref(), "Missing or invalid tag or command");
            return None;
        };
        let tokens = match token::tokenize(&command[end..]) {
            Ok(tokens) => tokens,
            Err(e) => {
                self.bad(Some(&tag), e.0);
                return None;
            }
        };
        match command::parse(&name, tokens) {
            Ok(body) => Some(Event::Command(Command { tag, body })),
            Err(e) => {
                self.bad(Some(&tag), &e.0);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[&[u8]]) -> (Vec<Event>, String) {
        let mut m = Machine::new(Config {
            max_small_literal: 100,
            max_literal: 1000,
            ..Config::default()
        });
        let mut events = Vec::new();
        for chunk in input {
            m.feed(chunk);
            while let Some(e) = m.next() {
                events.push(e);
            }
        }
        (events, String::from_utf8(m.take_output()).unwrap())
    }

    /// Feeds `input` split into `step`-octet pieces to a machine that streams APPENDs of 10
    /// octets or more.
    fn run_streaming(input: &[u8], step: usize) -> (Vec<Event>, String) {
        let mut m = Machine::new(Config {
            stream_threshold: 10,
            ..Config::default()
        });
        let mut events = Vec::new();
        for piece in input.chunks(step) {
            m.feed(piece);
            while let Some(e) = m.next() {
                events.push(e);
            }
        }
        (events, String::from_utf8(m.take_output()).unwrap())
    }

    #[test]
    fn big_appends_are_streamed_in_pieces() {
        let message = b"Subject: big\r\n\r\nA body of some length.\r\n";
        let mut input = format!("a1 APPEND Drafts (\\Seen) {{{}}}\r\n", message.len()).into_bytes();
        input.extend_from_slice(message);
        input.extend_from_slice(b"\r\na2 NOOP\r\n");
        for step in [1, 2, 7, input.len()] {
            let (events, out) = run_streaming(&input, step);
            assert_eq!(out, "+ Ready for literal data\r\n", "step {step}");
            let Event::AppendBegin { command, size } = &events[0] else {
                panic!("step {step}: {events:?}");
            };
            assert_eq!(*size, message.len());
            assert_eq!(command.tag, "a1");
            assert_eq!(
                command.body,
                CommandBody::Append {
                    mailbox: "Drafts".into(),
                    flags: vec!["\\Seen".into()],
                    date: None,
                    message: Vec::new(),
                }
            );
            let data: Vec<u8> = events
                .iter()
                .filter_map(|e| match e {
                    Event::AppendData(d) => Some(d.clone()),
                    _ => None,
                })
                .flatten()
                .collect();
            assert_eq!(data, message, "step {step}");
            let rest: Vec<&Event> = events
                .iter()
                .filter(|e| !matches!(e, Event::AppendBegin { .. } | Event::AppendData(_)))
                .collect();
            assert!(matches!(rest[0], Event::AppendEnd { ok: true }), "{rest:?}");
            assert!(
                matches!(rest[1], Event::Command(Command { tag, body: CommandBody::Noop }) if tag == "a2"),
                "{rest:?}"
            );
        }
        // Small ones, and unparsable heads, are buffered as before.
        let (events, _) = run_streaming(b"a1 APPEND INBOX {3+}\r\nabc\r\n", 1);
        assert!(
            matches!(&events[0], Event::Command(Command { body: CommandBody::Append { message, .. }, .. }) if message == b"abc")
        );
        let (events, out) = run_streaming(b"a1 APPEND INBOX (\\Seen {12+}\r\n0123456789ab\r\n", 3);
        assert!(events.is_empty(), "{events:?}");
        assert!(out.starts_with("a1 BAD"), "{out}");
    }

    #[test]
    fn junk_after_a_streamed_message_is_bad() {
        let (events, out) = run_streaming(
            b"a1 APPEND INBOX {10+}\r\n0123456789 {3+}\r\nabc\r\na2 NOOP\r\n",
            4,
        );
        assert!(
            events.contains(&Event::AppendEnd { ok: false }),
            "{events:?}"
        );
        assert!(out.contains("a1 BAD Expected the end of APPEND"), "{out}");
        assert!(
            matches!(
                events.last(),
                Some(Event::Command(Command {
                    body: CommandBody::Noop,
                    ..
                }))
            ),
            "the session goes on: {events:?}"
        );
    }

    #[test]
    fn literals_sync_and_plus() {
        let (events, out) = run(&[b"a1 LOGIN {3}\r\n", b"bob {6+}\r\nsecret\r\n"]);
        assert_eq!(out, "+ Ready for literal data\r\n");
        assert_eq!(
            events,
            vec![Event::Command(Command {
                tag: "a1".into(),
                body: CommandBody::Login {
                    user: "bob".into(),
                    password: "secret".into()
                }
            })]
        );
    }

    #[test]
    fn bad_commands_get_bad() {
        let (events, out) =
            run(&[b"\r\nnotag\r\na2 FROB x\r\na3 LOGIN\r\n+tag NOOP\r\na4 NOOP\r\n"]);
        assert_eq!(events.len(), 1);
        assert_eq!(
            out,
            "* BAD Missing or invalid tag or command\r\na2 BAD unknown command FROB\r\na3 BAD missing user name\r\n+tag BAD Missing or invalid tag or command\r\n"
        );
    }

    #[test]
    fn literal_limits() {
        let (events, out) = run(&[b"a1 LOGIN {101}\r\n", b"a2 NOOP\r\n"]);
        assert_eq!(out, "a1 NO [TOOBIG] Literal too large\r\n");
        assert_eq!(events.len(), 1, "the session continues");
        let (events, out) = run(&[b"a1 APPEND INBOX {1001+}\r\nxxxx"]);
        assert_eq!(out, "* BYE Literal too large\r\n");
        assert_eq!(events, vec![Event::Close]);
    }

    #[test]
    fn idle_and_auth_lines() {
        let mut m = Machine::new(Config::default());
        m.feed(b"a IDLE\r\n");
        assert!(matches!(m.next(), Some(Event::Command(_))));
        m.start_idle();
        m.feed(b"x\r\ndone\r\n");
        assert_eq!(m.next(), Some(Event::IdleDone));
        assert_eq!(m.take_output(), b"* BAD Expected DONE\r\n");
        m.feed(b"b AUTHENTICATE PLAIN\r\n");
        assert!(matches!(m.next(), Some(Event::Command(_))));
        m.auth_continue(b"");
        m.feed(b"*\r\n");
        assert_eq!(m.next(), Some(Event::AuthCancelled));
    }
}
