//! The exchange as a trace log shows it: `C: ` lines the client sent, `S: ` lines we answered.
//!
//! The machine notes each line where it reads or writes it, so nothing is missed, and it
//! knows what a line is: an AUTH initial response and SASL data (they carry passwords) and
//! message content are replaced by placeholders, never copied. Nothing is kept unless a
//! session asked for it (trace logging on).

/// The lines noted since the last [`Transcript::take`], while recording.
#[derive(Debug, Default)]
pub(crate) struct Transcript {
    lines: Option<Vec<String>>,
}

impl Transcript {
    pub(crate) fn record(&mut self, on: bool) {
        self.lines = on.then(Vec::new);
    }

    pub(crate) fn take(&mut self) -> Vec<String> {
        self.lines.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Adds a line, if recording (`line` is only made then).
    pub(crate) fn note(&mut self, line: impl FnOnce() -> String) {
        if let Some(lines) = &mut self.lines {
            lines.push(line());
        }
    }

    /// A command line (without its CRLF).
    pub(crate) fn command(&mut self, body: &[u8]) {
        self.note(|| format!("C: {}", logged_command(body)));
    }

    /// A line too long to read as a command (it is discarded).
    pub(crate) fn overlong(&mut self, length: usize) {
        self.note(|| format!("C: <line too long, {length} octets>"));
    }

    /// The client's line in answer to an AUTH challenge: `*` (cancel) or SASL data.
    pub(crate) fn sasl_response(&mut self, line: &str) {
        self.note(|| match line {
            "*" => "C: *".into(),
            _ => "C: <SASL data redacted>".into(),
        });
    }

    /// DATA content, by its size.
    pub(crate) fn message(&mut self, size: usize) {
        self.note(|| format!("C: <message, {size} octets>"));
    }

    /// Replies as written to the wire, one `S: ` line per reply line.
    pub(crate) fn replies(&mut self, written: &[u8]) {
        if let Some(lines) = &mut self.lines {
            let written = String::from_utf8_lossy(written);
            lines.extend(written.lines().map(|line| format!("S: {line}")));
        }
    }
}

/// A command line as the transcript shows it: AUTH's initial response, which may carry a
/// password, is replaced by a placeholder; control characters are escaped, so a line of the
/// log is one line of the exchange.
fn logged_command(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut words = text.split_ascii_whitespace();
    if words
        .next()
        .is_some_and(|verb| verb.eq_ignore_ascii_case("AUTH"))
    {
        let mechanism = words.next().unwrap_or("").escape_debug();
        return match words.next() {
            Some(_) => format!("AUTH {mechanism} <initial response redacted>"),
            None => format!("AUTH {mechanism}"),
        };
    }
    text.escape_debug().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_logged_without_auth_data() {
        assert_eq!(
            logged_command(b"MAIL FROM:<a@b.example>"),
            "MAIL FROM:<a@b.example>"
        );
        assert_eq!(
            logged_command(b"auth\tPLAIN AGJvYgBodW50ZXIy"),
            "AUTH PLAIN <initial response redacted>"
        );
        assert_eq!(logged_command(b"AUTH LOGIN"), "AUTH LOGIN");
        assert_eq!(logged_command(b"EHLO a\rb\x00"), "EHLO a\\rb\\0");
    }

    #[test]
    fn nothing_is_kept_unless_recording() {
        let mut transcript = Transcript::default();
        transcript.command(b"NOOP");
        assert!(transcript.take().is_empty());
        transcript.record(true);
        transcript.command(b"NOOP");
        transcript.replies(b"250-a\r\n250 b\r\n");
        assert_eq!(transcript.take(), ["C: NOOP", "S: 250-a", "S: 250 b"]);
        assert!(transcript.take().is_empty());
    }
}
