//! LIST and LSUB (RFC 9051 §6.3.9, RFC 3501 §6.3.9) with LIST-EXTENDED selection and return
//! options (RFC 5258, RFC 6154, RFC 5819).

use super::status::status_items;
use super::{Args, ParseError, err};
use crate::command::{CommandBody, ListOptions};
use crate::token::Token;

pub(super) fn list(args: &mut Args, _uid: bool) -> Result<CommandBody, ParseError> {
    list_or_lsub(args, false)
}

pub(super) fn lsub(args: &mut Args, _uid: bool) -> Result<CommandBody, ParseError> {
    list_or_lsub(args, true)
}

fn list_or_lsub(args: &mut Args, lsub: bool) -> Result<CommandBody, ParseError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::StatusItem;
    use crate::parser::tests::p;

    #[test]
    fn list() {
        assert!(
            matches!(p("LIST", "(SUBSCRIBED) \"\" * RETURN (CHILDREN STATUS (MESSAGES))").unwrap(), CommandBody::List { options, .. } if options.subscribed && options.return_children && options.return_status == [StatusItem::Messages])
        );
    }
}
