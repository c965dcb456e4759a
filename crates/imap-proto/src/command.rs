//! Typed IMAP commands (RFC 9051 §6, RFC 3501) parsed from tokens.

use crate::token::{MAX_DEPTH, Token};

/// A sequence set such as `1:3,7,10:*` (RFC 9051 §9 `sequence-set`), or `$` (SEARCHRES).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SequenceSet {
    Ranges(Vec<(Bound, Bound)>),
    /// `$`: the result of the last SEARCH ... RETURN (SAVE) (RFC 5182).
    Saved,
}

/// One end of a range: a number or `*` (the largest number in use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Value(u32),
    Star,
}

impl SequenceSet {
    pub fn parse(text: &str) -> Option<SequenceSet> {
        if text == "$" {
            return Some(SequenceSet::Saved);
        }
        let mut ranges = Vec::new();
        for part in text.split(',') {
            let bound = |s: &str| -> Option<Bound> {
                if s == "*" {
                    Some(Bound::Star)
                } else {
                    let v: u32 = s.parse().ok()?;
                    (v > 0).then_some(Bound::Value(v))
                }
            };
            let range = match part.split_once(':') {
                Some((a, b)) => (bound(a)?, bound(b)?),
                None => {
                    let b = bound(part)?;
                    (b, b)
                }
            };
            ranges.push(range);
        }
        (!ranges.is_empty()).then_some(SequenceSet::Ranges(ranges))
    }

    /// True if `n` is in the set, where `*` means `max`.
    pub fn contains(&self, n: u32, max: u32) -> bool {
        match self {
            SequenceSet::Saved => false,
            SequenceSet::Ranges(ranges) => ranges.iter().any(|&(a, b)| {
                let v = |x: Bound| match x {
                    Bound::Value(v) => v,
                    Bound::Star => max,
                };
                let (lo, hi) = (v(a).min(v(b)), v(a).max(v(b)));
                lo <= n && n <= hi
            }),
        }
    }
}

/// STORE's action on flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    Replace,
    Add,
    Remove,
}

/// A FETCH data item (RFC 9051 §6.4.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchItem {
    Uid,
    Flags,
    InternalDate,
    Rfc822Size,
    Envelope,
    Body,
    BodyStructure,
    ModSeq,
    /// RFC822 (= BODY[]), RFC822.HEADER (= BODY.PEEK[HEADER]), RFC822.TEXT (= BODY[TEXT]).
    Rfc822(Option<&'static str>),
    /// BODY[section]<partial>, BODY.PEEK[...], BINARY[...], BINARY.PEEK[...].
    Section {
        section: Section,
        partial: Option<(u32, u32)>,
        peek: bool,
        binary: bool,
    },
    /// BINARY.SIZE[part].
    BinarySize(Vec<u32>),
}

/// A body section spec: part numbers and what of the part.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Section {
    pub part: Vec<u32>,
    pub text: SectionText,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SectionText {
    /// The whole part (or message).
    #[default]
    Full,
    Header,
    Text,
    Mime,
    HeaderFields {
        not: bool,
        fields: Vec<String>,
    },
}

impl Section {
    /// The spec as it appears in the response, e.g. `1.2.HEADER.FIELDS (FROM)`.
    pub fn spec(&self) -> String {
        let mut out: Vec<String> = self.part.iter().map(u32::to_string).collect();
        let text = match &self.text {
            SectionText::Full => None,
            SectionText::Header => Some("HEADER".to_string()),
            SectionText::Text => Some("TEXT".to_string()),
            SectionText::Mime => Some("MIME".to_string()),
            SectionText::HeaderFields { not, fields } => Some(format!(
                "HEADER.FIELDS{} ({})",
                if *not { ".NOT" } else { "" },
                fields.join(" ")
            )),
        };
        out.extend(text);
        out.join(".")
    }
}

/// A SEARCH key (RFC 9051 §6.4.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchKey {
    All,
    /// A system flag bit that must be set (`SEEN`) or clear (`UNSEEN`).
    Flag {
        flag: u32,
        set: bool,
    },
    Keyword {
        keyword: String,
        set: bool,
    },
    New,
    Old,
    Recent,
    /// Header substring: FROM, TO, CC, BCC, SUBJECT, or HEADER name value.
    Header {
        name: String,
        value: String,
    },
    Body(String),
    Text(String),
    /// Internal date comparisons, as days since the epoch.
    Before(i64),
    On(i64),
    Since(i64),
    /// Date: header comparisons.
    SentBefore(i64),
    SentOn(i64),
    SentSince(i64),
    /// WITHIN (RFC 5032): internal date at least / less than this many seconds ago.
    Older(u32),
    Younger(u32),
    Larger(u64),
    Smaller(u64),
    Uid(SequenceSet),
    Sequence(SequenceSet),
    ModSeq(u64),
    Not(Box<SearchKey>),
    Or(Box<SearchKey>, Box<SearchKey>),
    And(Vec<SearchKey>),
}

/// ESEARCH return options (RFC 4731, RFC 5182).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchReturn {
    pub min: bool,
    pub max: bool,
    pub all: bool,
    pub count: bool,
    pub save: bool,
}

impl SearchReturn {
    pub fn is_empty(&self) -> bool {
        !(self.min || self.max || self.all || self.count || self.save)
    }
}

/// STATUS items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusItem {
    Messages,
    UidNext,
    UidValidity,
    Unseen,
    Deleted,
    Size,
    Recent,
    HighestModSeq,
}

/// LIST options (RFC 5258 LIST-EXTENDED, RFC 6154, RFC 5819).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    pub subscribed: bool,
    pub special_use: bool,
    pub return_subscribed: bool,
    pub return_children: bool,
    pub return_special_use: bool,
    pub return_status: Vec<StatusItem>,
    /// LSUB (IMAP4rev1).
    pub lsub: bool,
}

/// SELECT's QRESYNC parameter (RFC 7162 §3.2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qresync {
    pub uid_validity: u32,
    pub modseq: u64,
    pub known_uids: Option<SequenceSet>,
}

/// Parsed command bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandBody {
    Capability,
    Noop,
    Logout,
    StartTls,
    Authenticate {
        mechanism: String,
        initial: Option<Vec<u8>>,
    },
    Login {
        user: String,
        password: String,
    },
    Enable(Vec<String>),
    Select {
        mailbox: String,
        read_only: bool,
        condstore: bool,
        qresync: Option<Qresync>,
    },
    Create {
        mailbox: String,
        special_use: Option<String>,
    },
    Delete {
        mailbox: String,
    },
    Rename {
        from: String,
        to: String,
    },
    Subscribe {
        mailbox: String,
    },
    Unsubscribe {
        mailbox: String,
    },
    List {
        reference: String,
        patterns: Vec<String>,
        options: ListOptions,
    },
    Namespace,
    Status {
        mailbox: String,
        items: Vec<StatusItem>,
    },
    Append {
        mailbox: String,
        flags: Vec<String>,
        date: Option<String>,
        message: Vec<u8>,
    },
    Idle,
    Check,
    Close,
    Unselect,
    Expunge {
        uids: Option<SequenceSet>,
    },
    Search {
        uid: bool,
        /// `CHARSET`, upper-cased; whether it is supported is the server's answer (NO, not BAD).
        charset: Option<String>,
        key: SearchKey,
        ret: Option<SearchReturn>,
    },
    Fetch {
        uid: bool,
        set: SequenceSet,
        items: Vec<FetchItem>,
        changed_since: Option<u64>,
        vanished: bool,
    },
    Store {
        uid: bool,
        set: SequenceSet,
        mode: StoreMode,
        silent: bool,
        flags: Vec<String>,
        unchanged_since: Option<u64>,
    },
    Copy {
        uid: bool,
        set: SequenceSet,
        mailbox: String,
        move_them: bool,
    },
    Id,
}

/// A complete command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub tag: String,
    pub body: CommandBody,
}

/// A parse failure, answered with `BAD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

fn err<T>(text: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(text.into()))
}

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
    let body = match (uid, verb.as_str()) {
        (false, "CAPABILITY") => CommandBody::Capability,
        (false, "NOOP") => CommandBody::Noop,
        (false, "LOGOUT") => CommandBody::Logout,
        (false, "STARTTLS") => CommandBody::StartTls,
        (false, "CHECK") => CommandBody::Check,
        (false, "CLOSE") => CommandBody::Close,
        (false, "UNSELECT") => CommandBody::Unselect,
        (false, "IDLE") => CommandBody::Idle,
        (false, "NAMESPACE") => CommandBody::Namespace,
        (false, "ID") => {
            // The client's ID is accepted and ignored (RFC 2971).
            let _ = args.next();
            CommandBody::Id
        }
        (false, "AUTHENTICATE") => {
            let mechanism = args.atom("mechanism")?.to_ascii_uppercase();
            let initial = match args.next() {
                None => None,
                Some(Token::Atom(a)) if a == "=" => Some(Vec::new()),
                Some(t) => {
                    let text = t
                        .as_astring()
                        .ok_or_else(|| ParseError("bad initial response".into()))?;
                    use base64::Engine;
                    Some(
                        base64::engine::general_purpose::STANDARD
                            .decode(text)
                            .map_err(|_| ParseError("initial response is not base64".into()))?,
                    )
                }
            };
            CommandBody::Authenticate { mechanism, initial }
        }
        (false, "LOGIN") => CommandBody::Login {
            user: args.astring("user name")?,
            password: args.astring("password")?,
        },
        (false, "ENABLE") => {
            let mut caps = Vec::new();
            while let Some(t) = args.next() {
                caps.push(
                    t.as_astring()
                        .ok_or_else(|| ParseError("bad capability".into()))?
                        .to_ascii_uppercase(),
                );
            }
            if caps.is_empty() {
                return err("ENABLE needs capabilities");
            }
            CommandBody::Enable(caps)
        }
        (false, "SELECT" | "EXAMINE") => {
            let mailbox = mailbox_name(args.astring("mailbox")?);
            let mut condstore = false;
            let mut qresync = None;
            if let Some(Token::List(params)) = args.next() {
                let mut it = params.into_iter();
                while let Some(p) = it.next() {
                    match p {
                        Token::Atom(a) if a.eq_ignore_ascii_case("CONDSTORE") => condstore = true,
                        Token::Atom(a) if a.eq_ignore_ascii_case("QRESYNC") => {
                            let Some(Token::List(values)) = it.next() else {
                                return err("QRESYNC needs (uidvalidity modseq [known-uids])");
                            };
                            let number = |t: Option<&Token>| match t {
                                Some(Token::Atom(a)) => a.parse::<u64>().ok(),
                                _ => None,
                            };
                            let (Some(v), Some(m)) =
                                (number(values.first()), number(values.get(1)))
                            else {
                                return err("QRESYNC needs (uidvalidity modseq [known-uids])");
                            };
                            let known_uids = match values.get(2) {
                                Some(Token::Atom(a)) => Some(
                                    SequenceSet::parse(a)
                                        .ok_or_else(|| ParseError("bad known-uids".into()))?,
                                ),
                                _ => None,
                            };
                            qresync = Some(Qresync {
                                uid_validity: u32::try_from(v)
                                    .map_err(|_| ParseError("bad UIDVALIDITY".into()))?,
                                modseq: m,
                                known_uids,
                            });
                        }
                        _ => return err("unsupported SELECT parameter"),
                    }
                }
            }
            CommandBody::Select {
                mailbox,
                read_only: verb == "EXAMINE",
                condstore,
                qresync,
            }
        }
        (false, "CREATE") => {
            let mailbox = mailbox_name(args.astring("mailbox")?);
            let mut special_use = None;
            if let Some(Token::List(params)) = args.next() {
                // RFC 6154 §3: CREATE name (USE (\Sent)).
                let mut it = params.into_iter();
                while let Some(t) = it.next() {
                    match (t, it.next()) {
                        (Token::Atom(a), Some(Token::List(uses)))
                            if a.eq_ignore_ascii_case("USE") =>
                        {
                            special_use = uses.first().and_then(Token::as_astring);
                        }
                        _ => return err("unsupported CREATE parameter"),
                    }
                }
            }
            CommandBody::Create {
                mailbox,
                special_use,
            }
        }
        (false, "DELETE") => CommandBody::Delete {
            mailbox: mailbox_name(args.astring("mailbox")?),
        },
        (false, "RENAME") => CommandBody::Rename {
            from: mailbox_name(args.astring("mailbox")?),
            to: mailbox_name(args.astring("new name")?),
        },
        (false, "SUBSCRIBE") => CommandBody::Subscribe {
            mailbox: mailbox_name(args.astring("mailbox")?),
        },
        (false, "UNSUBSCRIBE") => CommandBody::Unsubscribe {
            mailbox: mailbox_name(args.astring("mailbox")?),
        },
        (false, "LIST" | "LSUB") => parse_list(&mut args, verb == "LSUB")?,
        (false, "STATUS") => {
            let mailbox = mailbox_name(args.astring("mailbox")?);
            let Some(Token::List(items)) = args.next() else {
                return err("STATUS needs a list of items");
            };
            CommandBody::Status {
                mailbox,
                items: status_items(items)?,
            }
        }
        (false, "APPEND") => {
            let mailbox = mailbox_name(args.astring("mailbox")?);
            let mut flags = Vec::new();
            let mut date = None;
            let mut next = args.next();
            if let Some(Token::List(list)) = &next {
                flags = list.iter().filter_map(Token::as_astring).collect();
                next = args.next();
            }
            if let Some(Token::String(s)) = &next
                && s.len() < 64
                && s.iter().all(|b| b.is_ascii_graphic() || *b == b' ')
                && args.tokens.len() > 0
            {
                date = Some(String::from_utf8_lossy(s).into_owned());
                next = args.next();
            }
            let Some(Token::String(message)) = next else {
                return err("APPEND needs a message literal");
            };
            CommandBody::Append {
                mailbox,
                flags,
                date,
                message,
            }
        }
        (_, "EXPUNGE") => CommandBody::Expunge {
            uids: if uid { Some(args.set()?) } else { None },
        },
        (_, "SEARCH") => parse_search(&mut args, uid)?,
        (_, "FETCH") => {
            let set = args.set()?;
            let items = match args.next() {
                Some(Token::List(list)) => {
                    let mut items = Vec::new();
                    for t in list {
                        let Token::Atom(a) = t else {
                            return err("bad fetch item");
                        };
                        items.extend(fetch_item(&a)?);
                    }
                    items
                }
                Some(Token::Atom(a)) => fetch_item(&a)?,
                _ => return err("FETCH needs items"),
            };
            let mut changed_since = None;
            let mut vanished = false;
            if let Some(Token::List(modifiers)) = args.next() {
                let mut it = modifiers.into_iter();
                while let Some(t) = it.next() {
                    match t {
                        Token::Atom(a) if a.eq_ignore_ascii_case("VANISHED") => vanished = true,
                        Token::Atom(a) if a.eq_ignore_ascii_case("CHANGEDSINCE") => {
                            let Some(Token::Atom(v)) = it.next() else {
                                return err("bad CHANGEDSINCE");
                            };
                            changed_since = Some(
                                v.parse()
                                    .map_err(|_| ParseError("bad CHANGEDSINCE".into()))?,
                            );
                        }
                        _ => return err("unsupported FETCH modifier"),
                    }
                }
            }
            if vanished && (!uid || changed_since.is_none()) {
                // RFC 7162 §3.2.6: VANISHED only with UID FETCH and CHANGEDSINCE.
                return err("VANISHED needs UID FETCH with CHANGEDSINCE");
            }
            CommandBody::Fetch {
                uid,
                set,
                items,
                changed_since,
                vanished,
            }
        }
        (_, "STORE") => {
            let set = args.set()?;
            let mut next = args.next();
            let mut unchanged_since = None;
            if let Some(Token::List(modifiers)) = &next {
                match &modifiers[..] {
                    [Token::Atom(a), Token::Atom(v)]
                        if a.eq_ignore_ascii_case("UNCHANGEDSINCE") =>
                    {
                        unchanged_since = Some(
                            v.parse()
                                .map_err(|_| ParseError("bad UNCHANGEDSINCE".into()))?,
                        );
                    }
                    _ => return err("unsupported STORE modifier"),
                }
                next = args.next();
            }
            let Some(Token::Atom(action)) = next else {
                return err("STORE needs FLAGS, +FLAGS or -FLAGS");
            };
            let action = action.to_ascii_uppercase();
            let (mode, rest) = match action.as_bytes().first() {
                Some(b'+') => (StoreMode::Add, &action[1..]),
                Some(b'-') => (StoreMode::Remove, &action[1..]),
                _ => (StoreMode::Replace, &action[..]),
            };
            let silent = match rest {
                "FLAGS" => false,
                "FLAGS.SILENT" => true,
                _ => return err("STORE needs FLAGS, +FLAGS or -FLAGS"),
            };
            let mut flags = Vec::new();
            for t in args.tokens.by_ref() {
                match t {
                    Token::List(list) => flags.extend(list.iter().filter_map(Token::as_astring)),
                    Token::Atom(a) => flags.push(a),
                    _ => return err("bad flag"),
                }
            }
            CommandBody::Store {
                uid,
                set,
                mode,
                silent,
                flags,
                unchanged_since,
            }
        }
        (_, "COPY" | "MOVE") => CommandBody::Copy {
            uid,
            set: args.set()?,
            mailbox: mailbox_name(args.astring("mailbox")?),
            move_them: verb == "MOVE",
        },
        _ => return err(format!("unknown command {name}")),
    };
    if !matches!(body, CommandBody::Store { .. }) {
        args.end()?;
    }
    Ok(body)
}

fn status_items(items: Vec<Token>) -> Result<Vec<StatusItem>, ParseError> {
    items
        .into_iter()
        .map(|t| {
            let Token::Atom(a) = t else {
                return err("bad status item");
            };
            Ok(match a.to_ascii_uppercase().as_str() {
                "MESSAGES" => StatusItem::Messages,
                "UIDNEXT" => StatusItem::UidNext,
                "UIDVALIDITY" => StatusItem::UidValidity,
                "UNSEEN" => StatusItem::Unseen,
                "DELETED" => StatusItem::Deleted,
                "SIZE" => StatusItem::Size,
                "RECENT" => StatusItem::Recent,
                "HIGHESTMODSEQ" => StatusItem::HighestModSeq,
                _ => return err(format!("unknown status item {a}")),
            })
        })
        .collect()
}

fn parse_list(args: &mut Args, lsub: bool) -> Result<CommandBody, ParseError> {
    let mut options = ListOptions {
        lsub,
        subscribed: lsub,
        ..ListOptions::default()
    };
    let mut first = args
        .next()
        .ok_or_else(|| ParseError("missing reference".into()))?;
    if let Token::List(selection) = &first {
        for t in selection {
            match t.as_astring().map(|s| s.to_ascii_uppercase()).as_deref() {
                Some("SUBSCRIBED") => options.subscribed = true,
                Some("SPECIAL-USE") => options.special_use = true,
                Some("REMOTE") | Some("RECURSIVEMATCH") => {}
                _ => return err("unknown LIST selection option"),
            }
        }
        first = args
            .next()
            .ok_or_else(|| ParseError("missing reference".into()))?;
    }
    let reference = first
        .as_astring()
        .ok_or_else(|| ParseError("bad reference".into()))?;
    let patterns = match args.next() {
        Some(Token::List(list)) => list.iter().filter_map(Token::as_astring).collect(),
        Some(t) => vec![
            t.as_astring()
                .ok_or_else(|| ParseError("bad pattern".into()))?,
        ],
        None => return err("missing mailbox pattern"),
    };
    if let Some(Token::Atom(a)) = args.next() {
        if !a.eq_ignore_ascii_case("RETURN") {
            return err("expected RETURN");
        }
        let Some(Token::List(ret)) = args.next() else {
            return err("RETURN needs a list");
        };
        let mut it = ret.into_iter();
        while let Some(t) = it.next() {
            match t.as_astring().map(|s| s.to_ascii_uppercase()).as_deref() {
                Some("SUBSCRIBED") => options.return_subscribed = true,
                Some("CHILDREN") => options.return_children = true,
                Some("SPECIAL-USE") => options.return_special_use = true,
                Some("STATUS") => match it.next() {
                    Some(Token::List(items)) => options.return_status = status_items(items)?,
                    _ => return err("STATUS needs items"),
                },
                _ => return err("unknown LIST return option"),
            }
        }
    }
    Ok(CommandBody::List {
        reference,
        patterns,
        options,
    })
}

fn fetch_item(text: &str) -> Result<Vec<FetchItem>, ParseError> {
    let upper = text.to_ascii_uppercase();
    Ok(match upper.as_str() {
        "ALL" => vec![
            FetchItem::Flags,
            FetchItem::InternalDate,
            FetchItem::Rfc822Size,
            FetchItem::Envelope,
        ],
        "FAST" => vec![
            FetchItem::Flags,
            FetchItem::InternalDate,
            FetchItem::Rfc822Size,
        ],
        "FULL" => vec![
            FetchItem::Flags,
            FetchItem::InternalDate,
            FetchItem::Rfc822Size,
            FetchItem::Envelope,
            FetchItem::Body,
        ],
        "UID" => vec![FetchItem::Uid],
        "FLAGS" => vec![FetchItem::Flags],
        "INTERNALDATE" => vec![FetchItem::InternalDate],
        "RFC822.SIZE" => vec![FetchItem::Rfc822Size],
        "ENVELOPE" => vec![FetchItem::Envelope],
        "BODY" => vec![FetchItem::Body],
        "BODYSTRUCTURE" => vec![FetchItem::BodyStructure],
        "MODSEQ" => vec![FetchItem::ModSeq],
        "RFC822" => vec![FetchItem::Rfc822(None)],
        "RFC822.HEADER" => vec![FetchItem::Rfc822(Some("HEADER"))],
        "RFC822.TEXT" => vec![FetchItem::Rfc822(Some("TEXT"))],
        _ => {
            let (name, _) = upper
                .split_once('[')
                .ok_or_else(|| ParseError(format!("unknown fetch item {text}")))?;
            let (peek, binary, size) = match name {
                "BODY" => (false, false, false),
                "BODY.PEEK" => (true, false, false),
                "BINARY" => (false, true, false),
                "BINARY.PEEK" => (true, true, false),
                "BINARY.SIZE" => (true, true, true),
                _ => return err(format!("unknown fetch item {text}")),
            };
            // Keep the original case of header field names.
            let original_rest = &text[name.len() + 1..];
            let close = original_rest
                .rfind(']')
                .ok_or_else(|| ParseError("missing ]".into()))?;
            let section = parse_section(&original_rest[..close])?;
            let after = &original_rest[close + 1..];
            let partial = if after.is_empty() {
                None
            } else {
                let inner = after
                    .strip_prefix('<')
                    .and_then(|s| s.strip_suffix('>'))
                    .ok_or_else(|| ParseError("bad partial".into()))?;
                let (start, len) = inner
                    .split_once('.')
                    .ok_or_else(|| ParseError("bad partial".into()))?;
                Some((
                    start
                        .parse()
                        .map_err(|_| ParseError("bad partial".into()))?,
                    len.parse().map_err(|_| ParseError("bad partial".into()))?,
                ))
            };
            if size {
                if partial.is_some() || section.text != SectionText::Full {
                    return err("BINARY.SIZE takes only part numbers");
                }
                vec![FetchItem::BinarySize(section.part)]
            } else {
                if binary && section.text != SectionText::Full {
                    return err("BINARY takes only part numbers");
                }
                vec![FetchItem::Section {
                    section,
                    partial,
                    peek,
                    binary,
                }]
            }
        }
    })
}

fn parse_section(text: &str) -> Result<Section, ParseError> {
    let mut section = Section::default();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if !c.is_ascii_digit() {
            break;
        }
        let end = rest.find('.').unwrap_or(rest.len());
        let n: u32 = rest[..end]
            .parse()
            .map_err(|_| ParseError("bad section part".into()))?;
        if n == 0 {
            return err("section parts start at 1");
        }
        section.part.push(n);
        rest = rest.get(end + 1..).unwrap_or("");
    }
    let upper = rest.to_ascii_uppercase();
    section.text = match upper.as_str() {
        "" => SectionText::Full,
        "HEADER" => SectionText::Header,
        "TEXT" => SectionText::Text,
        "MIME" if !section.part.is_empty() => SectionText::Mime,
        _ if upper.starts_with("HEADER.FIELDS") => {
            let not = upper.starts_with("HEADER.FIELDS.NOT");
            let open = rest
                .find('(')
                .ok_or_else(|| ParseError("HEADER.FIELDS needs a list".into()))?;
            let close = rest
                .rfind(')')
                .ok_or_else(|| ParseError("HEADER.FIELDS needs a list".into()))?;
            let fields: Vec<String> = rest[open + 1..close]
                .split_whitespace()
                .map(|f| f.trim_matches('"').to_string())
                .collect();
            if fields.is_empty() {
                return err("HEADER.FIELDS needs field names");
            }
            SectionText::HeaderFields { not, fields }
        }
        _ => return err(format!("bad section {text}")),
    };
    Ok(section)
}

fn parse_search(args: &mut Args, uid: bool) -> Result<CommandBody, ParseError> {
    let mut tokens: Vec<Token> = args.tokens.by_ref().collect();
    let mut ret = None;
    let mut charset = None;
    if matches!(tokens.first(), Some(Token::Atom(a)) if a.eq_ignore_ascii_case("RETURN")) {
        tokens.remove(0);
        let Some(Token::List(options)) = (!tokens.is_empty()).then(|| tokens.remove(0)) else {
            return err("RETURN needs a list");
        };
        let mut r = SearchReturn::default();
        for o in options {
            match o.as_astring().map(|s| s.to_ascii_uppercase()).as_deref() {
                Some("MIN") => r.min = true,
                Some("MAX") => r.max = true,
                Some("ALL") => r.all = true,
                Some("COUNT") => r.count = true,
                Some("SAVE") => r.save = true,
                _ => return err("unknown SEARCH return option"),
            }
        }
        if r.is_empty() {
            r.all = true;
        }
        ret = Some(r);
    }
    if matches!(tokens.first(), Some(Token::Atom(a)) if a.eq_ignore_ascii_case("CHARSET")) {
        tokens.remove(0);
        let name = (!tokens.is_empty())
            .then(|| tokens.remove(0))
            .and_then(|t| t.as_astring())
            .ok_or_else(|| ParseError("CHARSET needs a charset name".into()))?;
        charset = Some(name.to_ascii_uppercase());
    }
    let mut keys = search_keys(tokens)?;
    if keys.is_empty() {
        return err("SEARCH needs search keys");
    }
    let key = if keys.len() == 1 {
        keys.remove(0)
    } else {
        SearchKey::And(keys)
    };
    Ok(CommandBody::Search {
        uid,
        charset,
        key,
        ret,
    })
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

/// A search key being read, waiting for the keys it holds.
enum Pending {
    /// A list: its keys so far (its tokens are the innermost iterator).
    List(Vec<SearchKey>),
    Not,
    /// OR before its first key, and after it.
    Or,
    OrWith(SearchKey),
}

/// The search keys in `tokens` (RFC 9051 §6.4.4 `search-key`, several in a row).
///
/// Without recursion: keys that hold keys (lists, `NOT`, `OR`) wait on a heap stack for
/// theirs. `NOT NOT NOT ...` and `OR OR OR ...` nest without any parenthesis, so the
/// tokenizer's bound on lists is not enough: at most [`MAX_DEPTH`] of the three together,
/// which bounds the recursive walks over the result (evaluation, `Drop`, `Debug`).
fn search_keys(tokens: Vec<Token>) -> Result<Vec<SearchKey>, ParseError> {
    // pending[0] is the command's own list of keys; tokens[n] is read by the innermost list.
    let mut pending = vec![Pending::List(Vec::new())];
    let mut tokens = vec![tokens.into_iter()];
    loop {
        let Some(it) = tokens.last_mut() else {
            return err("bad search key");
        };
        let token = it.next();
        let mut key = match token {
            None => {
                // The innermost list ends; a NOT or OR inside it lacks its key.
                let keys = match pending.pop() {
                    Some(Pending::List(keys)) => keys,
                    Some(Pending::Not) => return err("NOT needs a key"),
                    _ => return err("OR needs two keys"),
                };
                tokens.pop();
                if pending.is_empty() {
                    return Ok(keys);
                }
                SearchKey::And(keys)
            }
            Some(Token::Atom(a))
                if !a.eq_ignore_ascii_case("NOT") && !a.eq_ignore_ascii_case("OR") =>
            {
                leaf_key(a, it)?
            }
            Some(Token::List(_) | Token::Atom(_)) => {
                if pending.len() > MAX_DEPTH {
                    return err(format!(
                        "SEARCH nested too deeply: at most {MAX_DEPTH} levels of parentheses, NOT and OR"
                    ));
                }
                match token {
                    Some(Token::List(list)) => {
                        pending.push(Pending::List(Vec::new()));
                        tokens.push(list.into_iter());
                    }
                    Some(Token::Atom(a)) if a.eq_ignore_ascii_case("NOT") => {
                        pending.push(Pending::Not)
                    }
                    _ => pending.push(Pending::Or),
                }
                continue;
            }
            Some(_) => return err("bad search key"),
        };
        // A key is complete: it completes the keys waiting for it.
        loop {
            match pending.pop() {
                Some(Pending::Not) => key = SearchKey::Not(Box::new(key)),
                Some(Pending::Or) => {
                    pending.push(Pending::OrWith(key));
                    break;
                }
                Some(Pending::OrWith(first)) => key = SearchKey::Or(Box::new(first), Box::new(key)),
                Some(Pending::List(mut keys)) => {
                    keys.push(key);
                    pending.push(Pending::List(keys));
                    break;
                }
                None => return err("bad search key"),
            }
        }
    }
}

/// A search key that holds no other key.
fn leaf_key(atom: String, it: &mut std::vec::IntoIter<Token>) -> Result<SearchKey, ParseError> {
    let mut string = |what: &str| -> Result<String, ParseError> {
        it.next()
            .and_then(|t| t.as_astring())
            .ok_or_else(|| ParseError(format!("{what} needs an argument")))
    };
    use crate::flags::*;
    let upper = atom.to_ascii_uppercase();
    let flag = |flag, set| SearchKey::Flag { flag, set };
    let key = match upper.as_str() {
        "ALL" => SearchKey::All,
        "ANSWERED" => flag(ANSWERED, true),
        "UNANSWERED" => flag(ANSWERED, false),
        "DELETED" => flag(DELETED, true),
        "UNDELETED" => flag(DELETED, false),
        "DRAFT" => flag(DRAFT, true),
        "UNDRAFT" => flag(DRAFT, false),
        "FLAGGED" => flag(FLAGGED, true),
        "UNFLAGGED" => flag(FLAGGED, false),
        "SEEN" => flag(SEEN, true),
        "UNSEEN" => flag(SEEN, false),
        "NEW" => SearchKey::New,
        "OLD" => SearchKey::Old,
        "RECENT" => SearchKey::Recent,
        "KEYWORD" => SearchKey::Keyword {
            keyword: string("KEYWORD")?,
            set: true,
        },
        "UNKEYWORD" => SearchKey::Keyword {
            keyword: string("UNKEYWORD")?,
            set: false,
        },
        "FROM" | "TO" | "CC" | "BCC" | "SUBJECT" => SearchKey::Header {
            name: upper.clone(),
            value: string(&upper)?,
        },
        "HEADER" => SearchKey::Header {
            name: string("HEADER")?.to_ascii_uppercase(),
            value: string("HEADER")?,
        },
        "BODY" => SearchKey::Body(string("BODY")?),
        "TEXT" => SearchKey::Text(string("TEXT")?),
        "BEFORE" | "ON" | "SINCE" | "SENTBEFORE" | "SENTON" | "SENTSINCE" => {
            let day = parse_date(&string(&upper)?).ok_or_else(|| ParseError("bad date".into()))?;
            match upper.as_str() {
                "BEFORE" => SearchKey::Before(day),
                "ON" => SearchKey::On(day),
                "SINCE" => SearchKey::Since(day),
                "SENTBEFORE" => SearchKey::SentBefore(day),
                "SENTON" => SearchKey::SentOn(day),
                _ => SearchKey::SentSince(day),
            }
        }
        "LARGER" => SearchKey::Larger(
            string("LARGER")?
                .parse()
                .map_err(|_| ParseError("bad number".into()))?,
        ),
        "SMALLER" => SearchKey::Smaller(
            string("SMALLER")?
                .parse()
                .map_err(|_| ParseError("bad number".into()))?,
        ),
        "UID" => SearchKey::Uid(
            SequenceSet::parse(&string("UID")?).ok_or_else(|| ParseError("bad UID set".into()))?,
        ),
        "OLDER" | "YOUNGER" => {
            let seconds = string(&upper)?
                .parse()
                .ok()
                .filter(|&n: &u32| n > 0)
                .ok_or_else(|| ParseError("bad interval".into()))?;
            if upper == "OLDER" {
                SearchKey::Older(seconds)
            } else {
                SearchKey::Younger(seconds)
            }
        }
        "MODSEQ" => SearchKey::ModSeq(
            string("MODSEQ")?
                .parse()
                .map_err(|_| ParseError("bad MODSEQ".into()))?,
        ),
        _ => match SequenceSet::parse(&atom) {
            Some(set) => SearchKey::Sequence(set),
            None => return err(format!("unknown search key {atom}")),
        },
    };
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::tokenize;

    fn p(name: &str, args: &str) -> Result<CommandBody, ParseError> {
        parse(name, tokenize(args.as_bytes()).unwrap())
    }

    #[test]
    fn fetch_items() {
        let CommandBody::Fetch { uid, items, .. } = p("UID", "FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (From Subject)]<0.100> BODY[1.2.MIME] BINARY[2])").unwrap() else {
            panic!()
        };
        assert!(uid);
        assert_eq!(items.len(), 5);
        assert_eq!(
            items[2],
            FetchItem::Section {
                section: Section {
                    part: vec![],
                    text: SectionText::HeaderFields {
                        not: false,
                        fields: vec!["From".into(), "Subject".into()]
                    }
                },
                partial: Some((0, 100)),
                peek: true,
                binary: false
            }
        );
        assert!(p("FETCH", "1 (BODY[0])").is_err());
        assert!(p("FETCH", "x FLAGS").is_err());
    }

    #[test]
    fn search_keys() {
        let CommandBody::Search { key, ret, .. } = p(
            "SEARCH",
            "RETURN (MIN COUNT) CHARSET UTF-8 OR FROM \"bob\" NOT SEEN SINCE 1-Feb-2020 1:5",
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            ret.unwrap(),
            SearchReturn {
                min: true,
                count: true,
                ..Default::default()
            }
        );
        let SearchKey::And(keys) = key else { panic!() };
        assert_eq!(keys.len(), 3);
        assert!(matches!(
            p("SEARCH", "CHARSET koi8-r ALL"),
            Ok(CommandBody::Search { charset: Some(c), .. }) if c == "KOI8-R"
        ));
        assert!(p("SEARCH", "CHARSET").is_err());
        assert_eq!(parse_date("1-Jan-1970"), Some(0));
        assert_eq!(parse_date("29-Feb-2000"), Some(11016));
    }

    #[test]
    fn sets() {
        let s = SequenceSet::parse("1:3,7,10:*").unwrap();
        assert!(s.contains(2, 20) && s.contains(7, 20) && s.contains(15, 20) && !s.contains(5, 20));
        assert!(SequenceSet::parse("0").is_none());
        assert!(SequenceSet::parse("1:").is_none());
        assert!(
            SequenceSet::parse("*:4").unwrap().contains(5, 9),
            "ranges work either way round"
        );
    }

    #[test]
    fn store_and_list() {
        assert!(
            matches!(p("STORE", "1:2 +FLAGS.SILENT (\\Seen $Junk)").unwrap(), CommandBody::Store { mode: StoreMode::Add, silent: true, ref flags, .. } if flags.len() == 2)
        );
        assert!(
            matches!(p("LIST", "(SUBSCRIBED) \"\" * RETURN (CHILDREN STATUS (MESSAGES))").unwrap(), CommandBody::List { options, .. } if options.subscribed && options.return_children && options.return_status == [StatusItem::Messages])
        );
        assert!(p("LOGIN", "a").is_err());
        assert!(p("NOOP", "extra").is_err());
    }
}
