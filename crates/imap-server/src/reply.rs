//! Building responses: the tagged completion, the typed command error with its three kinds,
//! and the small pieces several commands write (mailbox names as strings, compressed UID sets).

use store::StoreError;
use tracing::{error, trace};

/// A tagged `OK`: an optional response code and the text.
pub(crate) struct Completed {
    pub code: Option<String>,
    pub text: String,
}

/// What a command handler returns; the dispatcher writes the tagged line.
pub(crate) type CommandResult = Result<Completed, CommandError>;

pub(crate) fn ok(text: impl Into<String>) -> Completed {
    Completed {
        code: None,
        text: text.into(),
    }
}

pub(crate) fn ok_code(code: impl Into<String>, text: impl Into<String>) -> Completed {
    Completed {
        code: Some(code.into()),
        text: text.into(),
    }
}

/// Why a command failed. The three kinds every IMAP server needs (mox's
/// `imapserver/error.go`), each with its answer.
#[derive(Debug)]
pub(crate) enum CommandError {
    /// Malformed, or not valid here: `BAD` (RFC 9051 §7.1.5).
    Syntax(String),
    /// Understood, but refused: `NO`, with a response code when one applies (RFC 9051 §7.1).
    User { code: Option<String>, text: String },
    /// Our fault (a store backend failure, a broken invariant): `NO [SERVERBUG]`; the
    /// dispatcher logs it at error level with the connection, the command and this text.
    Server(String),
}

impl CommandError {
    pub(crate) fn syntax(text: impl Into<String>) -> CommandError {
        CommandError::Syntax(text.into())
    }

    pub(crate) fn no(code: Option<&str>, text: impl Into<String>) -> CommandError {
        CommandError::User {
            code: code.map(String::from),
            text: text.into(),
        }
    }

    /// For a handler that answers a failure its own way (APPEND and COPY answer TRYCREATE
    /// when the target cannot be looked up): a server error is still logged.
    pub(crate) fn log_if_server(&self, context: &str) {
        if let CommandError::Server(why) = self {
            error!(error = %why, "{context}");
        }
    }

    /// A command reached a handler in a state the command table does not allow: a bug,
    /// answered as one instead of a panic.
    pub(crate) fn wrong_state(command: &str) -> CommandError {
        CommandError::Server(format!("{command} handled outside its states"))
    }
}

/// Store errors as clients have always seen them: the user kinds with their response codes
/// (RFC 5530), a backend failure as a server error.
impl From<StoreError> for CommandError {
    fn from(e: StoreError) -> CommandError {
        match e {
            StoreError::NotFound(what) => {
                CommandError::no(Some("NONEXISTENT"), format!("{what} not found"))
            }
            StoreError::AlreadyExists(what) => {
                CommandError::no(Some("ALREADYEXISTS"), format!("{what} already exists"))
            }
            StoreError::Invalid(why) => CommandError::no(Some("CANNOT"), why),
            StoreError::InUse(why) => CommandError::no(Some("INUSE"), why),
            StoreError::Backend(e) => CommandError::Server(format!("store failure: {e}")),
        }
    }
}

/// The text of a server error's answer: the details stay in the log.
pub(crate) const SERVER_ERROR_TEXT: &str = "Internal error, try again later";

/// Writes `tag STATUS [code] text`, and traces it.
pub(crate) fn tagged(out: &mut Vec<u8>, tag: &str, status: &str, code: Option<&str>, text: &str) {
    let code = code.map(|c| format!("[{c}] ")).unwrap_or_default();
    let line = format!("{tag} {status} {code}{text}\r\n");
    trace!("S: {}", line.trim_end());
    out.extend_from_slice(line.as_bytes());
}

/// A mailbox name as an IMAP string.
pub(crate) fn quote_name(name: &str) -> String {
    let mut out = Vec::new();
    imap_proto::write::string(&mut out, name.as_bytes(), true);
    String::from_utf8(out).unwrap_or_default()
}

/// `1:3,5` from a sorted list of numbers.
pub(crate) fn compress(numbers: &[u32]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < numbers.len() {
        let start = numbers[i];
        let mut end = start;
        while i + 1 < numbers.len() && numbers[i + 1] == end + 1 {
            i += 1;
            end = numbers[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}:{end}")
        });
        i += 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compress_ranges() {
        assert_eq!(compress(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(compress(&[]), "");
    }

    #[test]
    fn store_errors_keep_their_codes() {
        let answer = |e: StoreError| match CommandError::from(e) {
            CommandError::User { code, text } => (code, text),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            answer(StoreError::NotFound("mailbox X".into())),
            (Some("NONEXISTENT".into()), "mailbox X not found".into())
        );
        assert_eq!(
            answer(StoreError::AlreadyExists("mailbox INBOX".into())),
            (
                Some("ALREADYEXISTS".into()),
                "mailbox INBOX already exists".into()
            )
        );
        assert_eq!(
            answer(StoreError::Invalid("bad name".into())),
            (Some("CANNOT".into()), "bad name".into())
        );
        assert_eq!(
            answer(StoreError::InUse("busy".into())),
            (Some("INUSE".into()), "busy".into())
        );
        assert!(matches!(
            CommandError::from(StoreError::Backend("disk".into())),
            CommandError::Server(why) if why.contains("disk")
        ));
    }

    #[test]
    fn tagged_lines() {
        let mut out = Vec::new();
        tagged(&mut out, "a1", "NO", Some("TRYCREATE"), "No such mailbox");
        tagged(&mut out, "a2", "OK", None, "NOOP completed");
        assert_eq!(
            out,
            b"a1 NO [TRYCREATE] No such mailbox\r\na2 OK NOOP completed\r\n"
        );
    }
}
