//! State strings (RFC 8620 §1.6.3) and the arguments of `Mailbox/changes` and `Email/changes`.

use serde::Deserialize;
use store::{Mailbox, MailboxId};

use super::MethodError;

/// `Mailbox/changes` and `Email/changes` (RFC 8620 §5.2): everything changed since a state,
/// in one reply (no `maxChanges`: `hasMoreChanges` is always false).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct ChangesArgs {
    /// A state an earlier `Mailbox/get` or `*/changes` returned.
    pub since_state: String,
}

/// The account's state string: each mailbox's id, UIDVALIDITY, HIGHESTMODSEQ and UIDNEXT, so
/// `*/changes` can tell what happened since.
pub(super) fn account_state(mailboxes: &[Mailbox]) -> String {
    let mut parts: Vec<String> = mailboxes
        .iter()
        .map(|m| {
            format!(
                "{}.{}.{}.{}",
                m.id, m.uid_validity, m.highest_modseq, m.uid_next
            )
        })
        .collect();
    parts.sort();
    parts.join("-")
}

/// Each mailbox's (id, HIGHESTMODSEQ, UIDNEXT) in a state string.
pub(super) type MailboxStates = Vec<(MailboxId, u64, u32)>;

/// A state string back into its mailboxes' counters.
/// A mailbox whose UIDVALIDITY differs from the state's (a new mailbox that reused the id)
/// is left out: it counts as new.
pub(super) fn parse_state(state: &str, mailboxes: &[Mailbox]) -> Option<MailboxStates> {
    if state.is_empty() {
        return Some(Vec::new());
    }
    let all = state
        .split('-')
        .map(|part| {
            let mut fields = part.split('.');
            Some((
                fields.next()?.parse::<MailboxId>().ok()?,
                fields.next()?.parse::<u32>().ok()?,
                fields.next()?.parse::<u64>().ok()?,
                fields.next()?.parse::<u32>().ok()?,
            ))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(
        all.into_iter()
            .filter(|(id, validity, _, _)| {
                mailboxes
                    .iter()
                    .all(|m| m.id != *id || m.uid_validity == *validity)
            })
            .map(|(id, _, modseq, next)| (id, modseq, next))
            .collect(),
    )
}

/// The counters of `sinceState`, or `cannotCalculateChanges`.
pub(super) fn since_state(
    args: &ChangesArgs,
    mailboxes: &[Mailbox],
) -> Result<MailboxStates, MethodError> {
    parse_state(&args.since_state, mailboxes)
        .ok_or_else(|| MethodError::new("cannotCalculateChanges", "unknown sinceState"))
}
