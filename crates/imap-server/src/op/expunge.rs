//! EXPUNGE and UID EXPUNGE (RFC 9051 §6.4.3, UIDPLUS RFC 4315 §2.1).

use imap_proto::command::SequenceSet;

use super::Ctx;
use crate::reply::{CommandError, CommandResult, ok};
use crate::state::Selected;

/// Removes the `\Deleted` messages (only those in `uids`, for UID EXPUNGE); the EXPUNGE
/// responses come from the store's notification, as for anyone else's expunge.
pub(crate) async fn expunge(
    cx: &mut Ctx<'_>,
    selected: &Selected,
    uids: Option<&SequenceSet>,
) -> CommandResult {
    let view = &selected.view;
    if view.read_only {
        return Err(CommandError::no(Some("READ-ONLY"), "Mailbox is read-only"));
    }
    let mut deleted = view.deleted_uids();
    if let Some(set) = uids {
        let max = view.max_uid();
        let saved = &selected.saved;
        deleted.retain(|&u| match set {
            SequenceSet::Saved => saved.contains(&u),
            _ => set.contains(u, max),
        });
    }
    if !deleted.is_empty() {
        cx.store.expunge(view.mailbox.id, &deleted).await?;
    }
    Ok(ok("EXPUNGE completed"))
}
