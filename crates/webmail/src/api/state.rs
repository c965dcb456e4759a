//! State strings (RFC 8620 §1.6.3) and the arguments of `Mailbox/changes` and `Email/changes`.

use serde::Deserialize;
use store::{Mailbox, MailboxId};

use super::MethodError;

/// `Mailbox/changes` and `Email/changes` (RFC 8620 §5.2): everything changed since a state,
/// in one reply (`hasMoreChanges` is always false).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct ChangesArgs {
    /// A state an earlier `Mailbox/get` or `*/changes` returned.
    pub since_state: String,
    /// The most ids the reply may hold. The states have no midpoints to stop at, so more
    /// changes than this are `cannotCalculateChanges` (the client fetches afresh).
    #[serde(default)]
    pub max_changes: Option<u64>,
}

impl ChangesArgs {
    /// `maxChanges` 0 is invalid (RFC 8620 §5.2: "a positive integer greater than 0").
    pub(super) fn check(&self) -> Result<(), MethodError> {
        match self.max_changes {
            Some(0) => Err(MethodError::new(
                "invalidArguments",
                "maxChanges is greater than 0",
            )),
            _ => Ok(()),
        }
    }

    /// Whether `count` changed ids fit `maxChanges` (RFC 8620 §5.2: never more).
    pub(super) fn fits(&self, count: usize) -> Result<(), MethodError> {
        match self.max_changes {
            Some(most) if count as u64 > most => Err(MethodError::new(
                "cannotCalculateChanges",
                format!("more than {most} changes; fetch everything again"),
            )),
            _ => Ok(()),
        }
    }
}

/// A `*/set`'s `ifInState` (RFC 8620 §5.3): when given, the account must be in that state,
/// else `stateMismatch` and nothing is changed.
pub(super) fn check_if_in_state(
    if_in_state: Option<&str>,
    mailboxes: &[Mailbox],
) -> Result<(), MethodError> {
    match if_in_state {
        Some(state) if state != account_state(mailboxes) => Err(MethodError::new(
            "stateMismatch",
            "the account changed since that state",
        )),
        _ => Ok(()),
    }
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
    args.check()?;
    parse_state(&args.since_state, mailboxes)
        .ok_or_else(|| MethodError::new("cannotCalculateChanges", "unknown sinceState"))
}
