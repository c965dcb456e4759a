//! SMTP replies (RFC 5321 §4.2) with enhanced status codes (RFC 3463, RFC 2034).

use std::borrow::Cow;

/// One SMTP reply: a three-digit code, an enhanced status code and one or more text lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// Enhanced status code such as `5.1.1`; empty for replies that carry none (220, 221, 354).
    pub status: &'static str,
    pub lines: Vec<Cow<'static, str>>,
}

impl Reply {
    pub fn new(code: u16, status: &'static str, text: impl Into<Cow<'static, str>>) -> Reply {
        Reply {
            code,
            status,
            lines: vec![text.into()],
        }
    }

    /// A reply spread over several lines (`250-...` continuation lines, RFC 5321 §4.2.1).
    pub fn multiline(code: u16, status: &'static str, lines: Vec<Cow<'static, str>>) -> Reply {
        Reply {
            code,
            status,
            lines,
        }
    }

    /// 2xx: the command succeeded.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// Writes the reply in wire form. CR and LF inside text are replaced so a reply can never
    /// inject a second line.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            out.extend_from_slice(self.code.to_string().as_bytes());
            out.push(if i == last { b' ' } else { b'-' });
            if !self.status.is_empty() {
                out.extend_from_slice(self.status.as_bytes());
                out.push(b' ');
            }
            out.extend(
                line.bytes()
                    .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
            );
            out.extend_from_slice(b"\r\n");
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

/// The replies the machine and sessions send, named after what they mean.
pub mod replies {
    use super::Reply;

    pub fn ok() -> Reply {
        Reply::new(250, "2.0.0", "OK")
    }
    pub fn sender_ok() -> Reply {
        Reply::new(250, "2.1.0", "Sender OK")
    }
    pub fn recipient_ok() -> Reply {
        Reply::new(250, "2.1.5", "Recipient OK")
    }
    pub fn start_data() -> Reply {
        Reply::new(354, "", "Start mail input; end with <CRLF>.<CRLF>")
    }
    /// RFC 5321 §4.5.3.2: too many recipients is a temporary failure, 452 (RFC 3463 4.5.3).
    pub fn too_many_recipients() -> Reply {
        Reply::new(452, "4.5.3", "Too many recipients")
    }
    pub fn message_too_big() -> Reply {
        Reply::new(
            552,
            "5.3.4",
            "Message size exceeds fixed maximum message size",
        )
    }
    pub fn bad_sequence(text: &'static str) -> Reply {
        Reply::new(503, "5.5.1", text)
    }
    pub fn unrecognized() -> Reply {
        Reply::new(500, "5.5.2", "Command unrecognized")
    }
    pub fn syntax(text: impl Into<std::borrow::Cow<'static, str>>) -> Reply {
        Reply::new(501, "5.5.2", text)
    }
    pub fn line_too_long() -> Reply {
        Reply::new(500, "5.5.6", "Line too long")
    }
    /// A message whose header breaks RFC 5322 §2.1.1 (or our bound on the header section).
    pub fn header_over_limit(findings: &crate::canonical::Findings) -> Reply {
        if findings.long_header_line {
            Reply::new(
                554,
                "5.6.0",
                "Message header line too long (RFC 5322 section 2.1.1: at most 998 octets)",
            )
        } else {
            Reply::new(554, "5.6.0", "Message header section too big")
        }
    }
    pub fn not_implemented() -> Reply {
        Reply::new(502, "5.5.1", "Command not implemented")
    }
    pub fn unknown_user() -> Reply {
        Reply::new(550, "5.1.1", "No such user here")
    }
    pub fn relay_denied() -> Reply {
        Reply::new(550, "5.7.1", "Relaying denied: we do not serve this domain")
    }
    pub fn local_error() -> Reply {
        Reply::new(451, "4.3.0", "Local error in processing, try again later")
    }
    pub fn timeout(host: &str) -> Reply {
        Reply::new(421, "4.4.2", format!("{host} Timeout, closing connection"))
    }
    pub fn shutting_down(host: &str) -> Reply {
        Reply::new(421, "4.3.2", format!("{host} Service shutting down"))
    }
    pub fn too_busy(host: &str) -> Reply {
        Reply::new(
            421,
            "4.7.0",
            format!("{host} Too many connections, try again later"),
        )
    }
}
