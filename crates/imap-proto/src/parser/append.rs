//! APPEND (RFC 9051 §6.3.12).

use super::{Args, ParseError, err, mailbox_name};
use crate::command::CommandBody;
use crate::token::Token;

pub(super) fn append(args: &mut Args, _uid: bool) -> Result<CommandBody, ParseError> {
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
    Ok(CommandBody::Append {
        mailbox,
        flags,
        date,
        message,
    })
}
