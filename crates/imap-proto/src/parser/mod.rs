//! The command parser: the tag and verb of a command ([`head`]), then the verb's arguments,
//! read from tokens into a [`CommandBody`] by that verb's parser.
//!
//! [`VERBS`] is the one place the verbs are listed: each names its parser (one file per verb
//! family beside this one) and whether it may follow `UID`. The readers shared by several
//! verbs (astring, atom, sequence set, mailbox name, date) are here. Every error is a
//! [`ParseError`] whose text is the text of the `BAD` reply, so changing one changes what
//! clients see.
//!
//! Invariants: a verb's parser reads only the arguments its grammar takes and [`parse`]
//! refuses anything left over; nothing recurses on the client's nesting (the tokenizer and
//! the SEARCH key reader keep their own heap stacks, both bounded by
//! [`MAX_DEPTH`](crate::token::MAX_DEPTH)).

mod append;
mod auth;
mod copy;
mod enable;
mod fetch;
mod list;
mod mailbox;
mod search;
mod simple;
mod status;
mod store;

use crate::command::{CommandBody, ParseError, SequenceSet};
use crate::token::Token;

/// The tag, the command name and the offset of what follows the name, at the start of a
/// command, if they are well-formed.
pub(crate) fn head(command: &[u8]) -> Option<(String, String, usize)> {
    let space = command.iter().position(|&b| b == b' ')?;
    let tag = std::str::from_utf8(&command[..space]).ok()?;
    let valid_tag = !tag.is_empty()
        && tag
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"+(){\"\\%*".contains(&b));
    if !valid_tag {
        return None;
    }
    let rest = &command[space + 1..];
    let end = rest
        .iter()
        .position(|&b| b == b' ' || b == b'\r' || b == b'\n')
        .unwrap_or(rest.len());
    let name = std::str::from_utf8(&rest[..end]).ok()?;
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    Some((tag.to_string(), name.to_string(), space + 1 + end))
}

/// Reads one verb's arguments; the flag says the verb came after `UID`.
type Parser = fn(&mut Args, bool) -> Result<CommandBody, ParseError>;

/// A verb we accept.
struct Verb {
    /// Upper case: the command's verb is upper-cased before the look-up.
    name: &'static str,
    /// Whether the verb may follow `UID` (RFC 9051 §6.4.9).
    after_uid: bool,
    parse: Parser,
}

/// A verb that never follows `UID`.
const fn plain(name: &'static str, parse: Parser) -> Verb {
    Verb {
        name,
        after_uid: false,
        parse,
    }
}

/// A verb that may follow `UID` (its parser is told whether it did).
const fn uid_too(name: &'static str, parse: Parser) -> Verb {
    Verb {
        name,
        after_uid: true,
        parse,
    }
}

/// Every verb we accept, and its parser: the one place verbs are listed.
const VERBS: &[Verb] = &[
    // Any state (RFC 9051 §6.1).
    plain("CAPABILITY", simple::capability),
    plain("NOOP", simple::noop),
    plain("LOGOUT", simple::logout),
    plain("ID", simple::id),
    // Not authenticated (§6.2).
    plain("STARTTLS", simple::starttls),
    plain("AUTHENTICATE", auth::authenticate),
    plain("LOGIN", auth::login),
    // Authenticated (§6.3).
    plain("ENABLE", enable::enable),
    plain("SELECT", mailbox::select),
    plain("EXAMINE", mailbox::examine),
    plain("CREATE", mailbox::create),
    plain("DELETE", mailbox::delete),
    plain("RENAME", mailbox::rename),
    plain("SUBSCRIBE", mailbox::subscribe),
    plain("UNSUBSCRIBE", mailbox::unsubscribe),
    plain("LIST", list::list),
    plain("LSUB", list::lsub),
    plain("NAMESPACE", simple::namespace),
    plain("STATUS", status::status),
    plain("APPEND", append::append),
    plain("IDLE", simple::idle),
    // Selected (§6.4).
    plain("CHECK", simple::check),
    plain("CLOSE", simple::close),
    plain("UNSELECT", simple::unselect),
    uid_too("EXPUNGE", simple::expunge),
    uid_too("SEARCH", search::search),
    uid_too("FETCH", fetch::fetch),
    uid_too("STORE", store::store),
    uid_too("COPY", copy::copy),
    uid_too("MOVE", copy::move_),
];

/// Parses the command `name` with its argument tokens.
pub fn parse(name: &str, tokens: Vec<Token>) -> Result<CommandBody, ParseError> {
    let mut args = Args {
        tokens: tokens.into_iter(),
    };
    let upper = name.to_ascii_uppercase();
    let (uid, verb) = match upper.as_str() {
        "UID" => (true, args.atom("UID command")?.to_ascii_uppercase()),
        other => (false, other.to_string()),
    };
    let Some(found) = VERBS
        .iter()
        .find(|v| v.name == verb && (v.after_uid || !uid))
    else {
        // `UID NOOP` is unknown as `UID`, the command the client named.
        return err(format!("unknown command {name}"));
    };
    let body = (found.parse)(&mut args, uid)?;
    args.end()?;
    Ok(body)
}

/// A parse failure with this text (the text of the `BAD` reply).
fn err<T>(text: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(text.into()))
}

/// The argument tokens of one command, read front to back by the verb's parser.
struct Args {
    tokens: std::vec::IntoIter<Token>,
}

impl Args {
    fn next(&mut self) -> Option<Token> {
        self.tokens.next()
    }
    fn astring(&mut self, what: &str) -> Result<String, ParseError> {
        match self.next() {
            Some(t) => t
                .as_astring()
                .ok_or_else(|| ParseError(format!("{what} must be a string"))),
            None => err(format!("missing {what}")),
        }
    }
    fn atom(&mut self, what: &str) -> Result<String, ParseError> {
        match self.next() {
            Some(Token::Atom(a)) => Ok(a),
            _ => err(format!("missing {what}")),
        }
    }
    fn end(&mut self) -> Result<(), ParseError> {
        match self.next() {
            None => Ok(()),
            Some(_) => err("unexpected extra arguments"),
        }
    }
    fn set(&mut self) -> Result<SequenceSet, ParseError> {
        let text = self.atom("sequence set")?;
        SequenceSet::parse(&text).ok_or_else(|| ParseError(format!("invalid sequence set {text}")))
    }
}

/// Mailbox names: `INBOX` in any case is INBOX (RFC 9051 §5.1).
fn mailbox_name(name: String) -> String {
    if name.eq_ignore_ascii_case("INBOX") {
        "INBOX".into()
    } else {
        name
    }
}

/// Days since the epoch of an IMAP date (`1-Feb-1994`).
pub fn parse_date(text: &str) -> Option<i64> {
    let mut parts = text.trim_matches('"').split('-');
    let day: i64 = parts.next()?.parse().ok()?;
    let month = parts.next()?.to_ascii_lowercase();
    let year: i64 = parts.next()?.parse().ok()?;
    let months = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let month = months.iter().position(|m| *m == month)? as i64 + 1;
    if !(1..=31).contains(&day) {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::token::tokenize;

    /// Parses `args` (command text after the name) as the arguments of `name`.
    pub(crate) fn p(name: &str, args: &str) -> Result<CommandBody, ParseError> {
        parse(name, tokenize(args.as_bytes()).unwrap())
    }

    /// A minimal valid command for every verb: its arguments, its arguments after `UID` (for
    /// the verbs that may follow it), and what the parsed body's `Debug` starts with and holds.
    const MINIMAL: &[(&str, &str, Option<&str>, &[&str])] = &[
        ("CAPABILITY", "", None, &["Capability"]),
        ("NOOP", "", None, &["Noop"]),
        ("LOGOUT", "", None, &["Logout"]),
        ("ID", "NIL", None, &["Id"]),
        ("STARTTLS", "", None, &["StartTls"]),
        ("AUTHENTICATE", "PLAIN", None, &["Authenticate {"]),
        ("LOGIN", "user secret", None, &["Login {"]),
        ("ENABLE", "CONDSTORE", None, &["Enable("]),
        ("SELECT", "INBOX", None, &["Select {", "read_only: false"]),
        (
            "EXAMINE",
            "inbox",
            None,
            &["Select {", "\"INBOX\"", "read_only: true"],
        ),
        ("CREATE", "Work", None, &["Create {"]),
        ("DELETE", "Work", None, &["Delete {"]),
        ("RENAME", "Work Play", None, &["Rename {"]),
        ("SUBSCRIBE", "Work", None, &["Subscribe {"]),
        ("UNSUBSCRIBE", "Work", None, &["Unsubscribe {"]),
        ("LIST", "\"\" *", None, &["List {", "lsub: false"]),
        ("LSUB", "\"\" *", None, &["List {", "lsub: true"]),
        ("NAMESPACE", "", None, &["Namespace"]),
        ("STATUS", "INBOX (MESSAGES)", None, &["Status {"]),
        ("APPEND", "INBOX {1}\r\nx", None, &["Append {"]),
        ("IDLE", "", None, &["Idle"]),
        ("CHECK", "", None, &["Check"]),
        ("CLOSE", "", None, &["Close"]),
        ("UNSELECT", "", None, &["Unselect"]),
        ("EXPUNGE", "", Some("1:*"), &["Expunge {"]),
        ("SEARCH", "ALL", Some("ALL"), &["Search {"]),
        ("FETCH", "1 FLAGS", Some("1 FLAGS"), &["Fetch {"]),
        (
            "STORE",
            "1 FLAGS (\\Seen)",
            Some("1 FLAGS (\\Seen)"),
            &["Store {"],
        ),
        (
            "COPY",
            "1 Work",
            Some("1 Work"),
            &["Copy {", "move_them: false"],
        ),
        (
            "MOVE",
            "1 Work",
            Some("1 Work"),
            &["Copy {", "move_them: true"],
        ),
    ];

    #[test]
    fn every_verb_parses_a_minimal_command() {
        for verb in VERBS {
            assert_eq!(
                VERBS.iter().filter(|v| v.name == verb.name).count(),
                1,
                "{} is listed once",
                verb.name
            );
            let Some(&(_, args, uid_args, holds)) = MINIMAL.iter().find(|m| m.0 == verb.name)
            else {
                panic!("no minimal {} command in the test", verb.name);
            };
            let body = p(verb.name, args).unwrap_or_else(|e| panic!("{} {args}: {e:?}", verb.name));
            let debug = format!("{body:?}");
            assert!(debug.starts_with(holds[0]), "{debug}");
            assert!(holds.iter().all(|h| debug.contains(h)), "{debug}");
            // Verbs are case-insensitive.
            assert_eq!(p(&verb.name.to_ascii_lowercase(), args), Ok(body));
            let after_uid = format!("{} {}", verb.name, uid_args.unwrap_or(args));
            match uid_args {
                Some(_) => {
                    assert!(
                        verb.after_uid,
                        "{} has UID arguments in the test",
                        verb.name
                    );
                    let body = p("uid", &after_uid).unwrap_or_else(|e| panic!("{e:?}"));
                    let debug = format!("{body:?}");
                    assert!(debug.starts_with(holds[0]), "{debug}");
                    assert!(
                        debug.contains("uid: true") || debug.contains("uids: Some("),
                        "{debug}"
                    );
                }
                None => {
                    assert!(
                        !verb.after_uid,
                        "{} needs UID arguments in the test",
                        verb.name
                    );
                    assert_eq!(
                        p("UID", &after_uid),
                        Err(ParseError("unknown command UID".into()))
                    );
                }
            }
        }
        assert_eq!(
            MINIMAL.len(),
            VERBS.len(),
            "every command in the test is a verb"
        );
    }

    #[test]
    fn unknown_verbs_and_leftovers_are_bad() {
        let bad = |text: &str| Err(ParseError(text.into()));
        assert_eq!(p("FROB", ""), bad("unknown command FROB"));
        assert_eq!(p("Frob", "1 FLAGS"), bad("unknown command Frob"));
        assert_eq!(p("UID", "FROB 1"), bad("unknown command UID"));
        assert_eq!(p("UID", "UID FETCH 1 FLAGS"), bad("unknown command UID"));
        assert_eq!(p("UID", ""), bad("missing UID command"));
        assert_eq!(p("UID", "(FETCH) 1 FLAGS"), bad("missing UID command"));
        assert_eq!(p("NOOP", "extra"), bad("unexpected extra arguments"));
        assert_eq!(
            p("FETCH", "1 FLAGS (CHANGEDSINCE 1) x"),
            bad("unexpected extra arguments")
        );
        assert_eq!(
            p("SELECT", "INBOX (CONDSTORE) x"),
            bad("unexpected extra arguments")
        );
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("1-Jan-1970"), Some(0));
        assert_eq!(parse_date("29-Feb-2000"), Some(11016));
    }
}
