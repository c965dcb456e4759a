//! The commands, one file per family. Handlers of the authenticated and selected states are
//! functions given a [`Ctx`] and exactly the state data they need (an [`Account`], a
//! [`Selected`](crate::state::Selected) mailbox); the not-authenticated ones, which work on
//! the connection itself (TLS, the authenticator, the protocol machine), are methods of
//! [`Session`](crate::Session).

pub(crate) mod any;
pub(crate) mod append;
pub(crate) mod auth;
pub(crate) mod copy;
pub(crate) mod enable;
pub(crate) mod expunge;
pub(crate) mod fetch;
pub(crate) mod idle;
pub(crate) mod list;
pub(crate) mod mailbox;
pub(crate) mod search;
pub(crate) mod select;
pub(crate) mod status;
pub(crate) mod store;

use ::store::{Mailbox, Store};
use imap_proto::{Machine, flags};

use crate::reply::CommandError;
use crate::state::Account;

/// What every handler may use besides its state's data: the store, and the protocol machine
/// its responses go to.
pub(crate) struct Ctx<'a> {
    pub store: &'a dyn Store,
    pub machine: &'a mut Machine,
}

impl Ctx<'_> {
    /// Where untagged responses go (before the tagged completion the dispatcher writes).
    pub(crate) fn out(&mut self) -> &mut Vec<u8> {
        self.machine.out()
    }
}

/// The account's mailbox the client names.
pub(crate) async fn mailbox(
    cx: &Ctx<'_>,
    account: &Account,
    name: &str,
) -> Result<Mailbox, CommandError> {
    let name = account.name_from_client(name)?;
    cx.store
        .mailbox(account.user.account_id, &name)
        .await?
        .ok_or_else(|| CommandError::no(Some("NONEXISTENT"), "No such mailbox"))
}

/// Flag names to system bits and keywords; `\Recent` and unknown `\` flags are refused.
pub(crate) fn parse_flags(names: &[String]) -> Result<(u32, Vec<String>), CommandError> {
    let mut bits = 0;
    let mut keywords: Vec<String> = Vec::new();
    for name in names {
        if let Some(bit) = flags::from_name(name) {
            bits |= bit;
        } else if name.starts_with('\\') {
            return Err(CommandError::syntax(format!("cannot set flag {name}")));
        } else if name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"(){%*\"\\]".contains(&b))
            && !name.is_empty()
        {
            if !keywords.iter().any(|k| k.eq_ignore_ascii_case(name)) {
                keywords.push(name.clone());
            }
        } else {
            return Err(CommandError::syntax(format!("invalid keyword {name}")));
        }
    }
    Ok((bits, keywords))
}
