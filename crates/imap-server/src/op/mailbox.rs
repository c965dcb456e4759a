//! Mailbox management: CREATE (with CREATE-SPECIAL-USE, RFC 6154), DELETE, RENAME,
//! SUBSCRIBE and UNSUBSCRIBE (RFC 9051 §6.3.4–6.3.8).

use store::SpecialUse;

use super::Ctx;
use crate::reply::{CommandError, CommandResult, ok};
use crate::state::{Account, State};

pub(crate) async fn create(
    cx: &mut Ctx<'_>,
    account: &Account,
    name: &str,
    special_use: Option<&str>,
) -> CommandResult {
    let name = account.name_from_client(name)?;
    let name = name.trim_end_matches('/');
    let usage = match special_use {
        None => None,
        Some(attr) => Some(SpecialUse::from_attribute(attr).ok_or_else(|| {
            CommandError::no(Some("USEATTR"), "Unsupported special-use attribute")
        })?),
    };
    let account_id = account.user.account_id;
    cx.store.create_mailbox(account_id, name, usage).await?;
    // Subscribed by default, as clients expect new folders to show up.
    if let Ok(Some(mailbox)) = cx.store.mailbox(account_id, name).await {
        let _ = cx.store.set_subscribed(mailbox.id, true).await;
    }
    Ok(ok("CREATE completed"))
}

/// DELETE; deleting the selected mailbox leaves the selected state.
pub(crate) async fn delete(cx: &mut Ctx<'_>, state: &mut State, name: &str) -> CommandResult {
    let mailbox = super::mailbox(cx, state.account("DELETE")?, name).await?;
    if mailbox.name == "INBOX" {
        return Err(CommandError::no(Some("CANNOT"), "INBOX cannot be deleted"));
    }
    if let State::Selected(_, selected) = state
        && selected.view.mailbox.id == mailbox.id
    {
        state.leave_mailbox();
    }
    cx.store.delete_mailbox(mailbox.id).await?;
    Ok(ok("DELETE completed"))
}

pub(crate) async fn rename(
    cx: &mut Ctx<'_>,
    account: &Account,
    from: &str,
    to: &str,
) -> CommandResult {
    let mailbox = super::mailbox(cx, account, from).await?;
    let to = account.name_from_client(to)?;
    cx.store.rename_mailbox(mailbox.id, &to).await?;
    Ok(ok("RENAME completed"))
}

/// SUBSCRIBE (`subscribed`) and UNSUBSCRIBE.
pub(crate) async fn subscribe(
    cx: &mut Ctx<'_>,
    account: &Account,
    name: &str,
    subscribed: bool,
) -> CommandResult {
    let mailbox = super::mailbox(cx, account, name).await?;
    cx.store.set_subscribed(mailbox.id, subscribed).await?;
    Ok(ok(if subscribed {
        "SUBSCRIBE completed"
    } else {
        "UNSUBSCRIBE completed"
    }))
}
