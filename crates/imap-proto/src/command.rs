//! Typed IMAP commands (RFC 9051 §6, RFC 3501): what the parser (`crate::parser`, one file per
//! verb family) makes of a command's tokens, and what the server acts on.

pub use crate::parser::{parse, parse_date};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
