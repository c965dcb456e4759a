//! Commands without arguments (CAPABILITY, NOOP, LOGOUT, STARTTLS, CHECK, CLOSE, UNSELECT,
//! IDLE, NAMESPACE), ID, whose argument is ignored, and EXPUNGE, which takes a set only after
//! UID. The dispatcher checks that nothing follows.

use super::{Args, ParseError};
use crate::command::CommandBody;

pub(super) fn capability(_: &mut Args, _uid: bool) -> Result<CommandBody, ParseError> {
    Ok(CommandBody::Capability)
}

pub(super) fn noop(_: &mut Args, _uid: bool) -> Result<CommandBody, ParseError> {
    Ok(CommandBody::Noop)
}

pub(super) fn logout(_: &mut Args, _uid: bool) -> Result<CommandBody, ParseError> {
    Ok(CommandBody::Logout)
}

pub(super) fn starttls(_: &mut Args, _uid: bool) -> Result<CommandBody, ParseError> {
    Ok(CommandBody::StartTls)
}

pub(super) fn check(_: &mut Args, _uid: bool) -> Result<CommandBody, ParseError> {
    Ok(CommandBody::Check)
}

pub(super) fn close(_: &mut Args, _uid: bool) -> Result<CommandBody, ParseError> {
    Ok(CommandBody::Close)
}

pub(super) fn unselect(_: &mut Args, _uid: bool) -> Result<CommandBody, ParseError> {
    Ok(CommandBody::Unselect)
}

pub(super) fn idle(_: &mut Args, _uid: bool) -> Result<CommandBody, ParseError> {
    Ok(CommandBody::Idle)
}

pub(super) fn namespace(_: &mut Args, _uid: bool) -> Result<CommandBody, ParseError> {
    Ok(CommandBody::Namespace)
}

pub(super) fn id(args: &mut Args, _uid: bool) -> Result<CommandBody, ParseError> {
    // The client's ID is accepted and ignored (RFC 2971).
    let _ = args.next();
    Ok(CommandBody::Id)
}

pub(super) fn expunge(args: &mut Args, uid: bool) -> Result<CommandBody, ParseError> {
    Ok(CommandBody::Expunge {
        uids: if uid { Some(args.set()?) } else { None },
    })
}
