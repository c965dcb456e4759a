//! COPY (RFC 9051 §6.4.7) and MOVE (RFC 6851).

use super::{Args, ParseError, mailbox_name};
use crate::command::CommandBody;

pub(super) fn copy(args: &mut Args, uid: bool) -> Result<CommandBody, ParseError> {
    copy_or_move(args, uid, false)
}

pub(super) fn move_(args: &mut Args, uid: bool) -> Result<CommandBody, ParseError> {
    copy_or_move(args, uid, true)
}

fn copy_or_move(args: &mut Args, uid: bool, move_them: bool) -> Result<CommandBody, ParseError> {
    Ok(CommandBody::Copy {
        uid,
        set: args.set()?,
        mailbox: mailbox_name(args.astring("mailbox")?),
        move_them,
    })
}
