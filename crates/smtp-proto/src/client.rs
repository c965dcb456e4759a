//! The client side: an incremental parser for server replies (RFC 5321 §4.2), including
//! multi-line replies and pipelined batches of replies.

/// A reply as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerReply {
    pub code: u16,
    /// Text lines without the code and separator (the enhanced status code, if any, is kept).
    pub lines: Vec<String>,
}

impl ServerReply {
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }
    /// The text of all lines joined by newlines.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }
}

impl std::fmt::Display for ServerReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.lines.join(" / "))
    }
}

/// Why a reply could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// A line does not start with a three-digit code followed by space, dash or line end.
    #[error("malformed reply line: {0:?}")]
    Malformed(String),
    /// A continuation line carries a different code than the first line.
    #[error("reply code changed within a multi-line reply")]
    CodeMismatch,
    /// A line or reply is longer than the parser accepts.
    #[error("reply too long")]
    TooLong,
}

/// Incremental reply parser.
#[derive(Debug, Default)]
pub struct ReplyParser {
    input: Vec<u8>,
    code: Option<u16>,
    lines: Vec<String>,
}

const MAX_REPLY_LINE: usize = 64 * 1024;
const MAX_REPLY_LINES: usize = 1000;

impl ReplyParser {
    pub fn feed(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
    }

    /// Returns the next complete reply, `Ok(None)` if more input is needed.
    pub fn next(&mut self) -> Result<Option<ServerReply>, ReplyError> {
        loop {
            let Some(pos) = self.input.iter().position(|&b| b == b'\n') else {
                if self.input.len() > MAX_REPLY_LINE {
                    return Err(ReplyError::TooLong);
                }
                return Ok(None);
            };
            let raw: Vec<u8> = self.input.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&raw);
            let line = line.trim_end_matches(['\r', '\n']);
            let bytes = line.as_bytes();
            if bytes.len() < 3 || !bytes[..3].iter().all(u8::is_ascii_digit) {
                return Err(ReplyError::Malformed(line.into()));
            }
            let code: u16 = line[..3]
                .parse()
                .map_err(|_| ReplyError::Malformed(line.into()))?;
            let (more, text) = match bytes.get(3) {
                None => (false, ""),
                Some(b' ') => (false, &line[4..]),
                Some(b'-') => (true, &line[4..]),
                Some(_) => return Err(ReplyError::Malformed(line.into())),
            };
            if let Some(first) = self.code
                && first != code
            {
                return Err(ReplyError::CodeMismatch);
            }
            self.code = Some(code);
            self.lines.push(text.to_string());
            if self.lines.len() > MAX_REPLY_LINES {
                return Err(ReplyError::TooLong);
            }
            if !more {
                self.code = None;
                return Ok(Some(ServerReply {
                    code,
                    lines: std::mem::take(&mut self.lines),
                }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_multiline_and_pipelined_replies() {
        let mut parser = ReplyParser::default();
        parser.feed(b"250-host Hello\r\n250-PIPE");
        assert_eq!(parser.next(), Ok(None));
        parser.feed(b"LINING\r\n250 SIZE 10\r\n250 2.1.0 OK\r\n354\r\n");
        let ehlo = parser.next().unwrap().unwrap();
        assert_eq!(ehlo.code, 250);
        assert_eq!(ehlo.lines, ["host Hello", "PIPELINING", "SIZE 10"]);
        assert_eq!(parser.next().unwrap().unwrap().lines, ["2.1.0 OK"]);
        assert_eq!(parser.next().unwrap().unwrap().code, 354);
        assert_eq!(parser.next(), Ok(None));
    }

    #[test]
    fn rejects_garbage() {
        let mut parser = ReplyParser::default();
        parser.feed(b"hello\r\n");
        assert!(matches!(parser.next(), Err(ReplyError::Malformed(_))));
        let mut parser = ReplyParser::default();
        parser.feed(b"250-a\r\n251 b\r\n");
        assert_eq!(parser.next(), Err(ReplyError::CodeMismatch));
    }
}
