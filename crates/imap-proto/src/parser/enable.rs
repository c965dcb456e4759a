//! ENABLE (RFC 5161).

use super::{Args, ParseError, err};
use crate::command::CommandBody;

pub(super) fn enable(args: &mut Args, _uid: bool) -> Result<CommandBody, ParseError> {
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
    Ok(CommandBody::Enable(caps))
}
