//! SELECT, EXAMINE, CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE (RFC 9051 §6.3).

use super::{Args, ParseError, err, mailbox_name};
use crate::command::{CommandBody, Qresync, SequenceSet};
use crate::token::Token;

pub(super) fn select(args: &mut Args, _uid: bool) -> Result<CommandBody, ParseError> {
    select_or_examine(args, false)
}

pub(super) fn examine(args: &mut Args, _uid: bool) -> Result<CommandBody, ParseError> {
    select_or_examine(args, true)
}

fn select_or_examine(args: &mut Args, read_only: bool) -> Result<CommandBody, ParseError> {
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
                    let (Some(v), Some(m)) = (number(values.first()), number(values.get(1))) else {
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
    Ok(CommandBody::Select {
        mailbox,
        read_only,
        condstore,
        qresync,
    })
}

pub(super) fn create(args: &mut Args, _uid: bool) -> Result<CommandBody, ParseError> {
    let mailbox = mailbox_name(args.astring("mailbox")?);
    let mut special_use = None;
    if let Some(Token::List(params)) = args.next() {
        // RFC 6154 §3: CREATE name (USE (\Sent)).
        let mut it = params.into_iter();
        while let Some(t) = it.next() {
            match (t, it.next()) {
                (Token::Atom(a), Some(Token::List(uses))) if a.eq_ignore_ascii_case("USE") => {
                    special_use = uses.first().and_then(Token::as_astring);
                }
                _ => return err("unsupported CREATE parameter"),
            }
        }
    }
    Ok(CommandBody::Create {
        mailbox,
        special_use,
    })
}

pub(super) fn delete(args: &mut Args, _uid: bool) -> Result<CommandBody, ParseError> {
    Ok(CommandBody::Delete {
        mailbox: mailbox_name(args.astring("mailbox")?),
    })
}

pub(super) fn rename(args: &mut Args, _uid: bool) -> Result<CommandBody, ParseError> {
    Ok(CommandBody::Rename {
        from: mailbox_name(args.astring("mailbox")?),
        to: mailbox_name(args.astring("new name")?),
    })
}

pub(super) fn subscribe(args: &mut Args, _uid: bool) -> Result<CommandBody, ParseError> {
    Ok(CommandBody::Subscribe {
        mailbox: mailbox_name(args.astring("mailbox")?),
    })
}

pub(super) fn unsubscribe(args: &mut Args, _uid: bool) -> Result<CommandBody, ParseError> {
    Ok(CommandBody::Unsubscribe {
        mailbox: mailbox_name(args.astring("mailbox")?),
    })
}
