//! STATUS (RFC 9051 §6.3.11); its items are also LIST's `RETURN (STATUS (...))`.

use super::{Args, ParseError, err, mailbox_name};
use crate::command::{CommandBody, StatusItem};
use crate::token::Token;

pub(super) fn status(args: &mut Args, _uid: bool) -> Result<CommandBody, ParseError> {
    let mailbox = mailbox_name(args.astring("mailbox")?);
    let Some(Token::List(items)) = args.next() else {
        return err("STATUS needs a list of items");
    };
    Ok(CommandBody::Status {
        mailbox,
        items: status_items(items)?,
    })
}

pub(super) fn status_items(items: Vec<Token>) -> Result<Vec<StatusItem>, ParseError> {
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
