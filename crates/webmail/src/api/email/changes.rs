//! `Email/changes`.

use serde_json::json;

use super::super::state::{ChangesArgs, account_state, since_state};
use super::super::{Call, MethodError, MethodResult, email_id};

/// Emails created, changed and destroyed since a state, from MODSEQs, UIDNEXTs and the
/// expunge history every mailbox keeps for QRESYNC.
pub(in crate::api) async fn changes(call: &Call<'_>, args: ChangesArgs) -> MethodResult {
    let old = since_state(&args, &call.mailboxes)?;
    if old
        .iter()
        .any(|(id, _, _)| !call.mailboxes.iter().any(|m| m.id == *id))
    {
        return Err(MethodError::new(
            "cannotCalculateChanges",
            "a mailbox was deleted since; fetch everything again",
        ));
    }
    let store = call.store();
    let (mut created, mut updated, mut destroyed) = (Vec::new(), Vec::new(), Vec::new());
    for m in &call.mailboxes {
        let (modseq, uid_next) = match old.iter().find(|(id, _, _)| *id == m.id) {
            Some(&(_, modseq, uid_next)) => (modseq, uid_next),
            None => (0, 1),
        };
        if modseq == m.highest_modseq && uid_next == m.uid_next {
            continue;
        }
        for message in store.message_flags(m.id, 0).await? {
            if message.uid >= uid_next {
                created.push(email_id(m.id, message.uid));
            } else if message.modseq > modseq {
                updated.push(email_id(m.id, message.uid));
            }
        }
        for uid in store.expunged_since(m.id, modseq).await? {
            if uid < uid_next {
                destroyed.push(email_id(m.id, uid));
            }
        }
    }
    args.fits(created.len() + updated.len() + destroyed.len())?;
    Ok(json!({
        "accountId": call.account_id(),
        "oldState": args.since_state, "newState": account_state(&call.mailboxes), "hasMoreChanges": false,
        "created": created, "updated": updated, "destroyed": destroyed,
    }))
}
