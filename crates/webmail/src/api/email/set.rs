//! `Email/set`: keyword changes and moves (update), expunges (destroy) and drafts (create).

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Value, json};
use store::{FlagMode, MailboxId, SpecialUse, flags};

use super::super::compose::{Composition, compose};
use super::super::state::check_if_in_state;
use super::super::{Call, MethodError, MethodResult, Objects, SetReply, email_id};
use super::{keyword_bit, valid_keyword};

/// `Email/set`'s arguments (RFC 8620 §5.3, RFC 8621 §4.6), run in the order update,
/// destroy, create.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(in crate::api) struct SetArgs {
    #[serde(default)]
    if_in_state: Option<String>,
    /// Drafts saved into Drafts.
    #[serde(default)]
    create: Objects<Composition>,
    /// Patches by email id: `keywords/<keyword>` set or unset, `mailboxIds` (a move).
    #[serde(default)]
    update: Objects<PatchObject>,
    #[serde(default)]
    destroy: Option<Vec<String>>,
}

/// A PatchObject (RFC 8620 §5.3): JSON pointers to new values.
type PatchObject = serde_json::Map<String, Value>;

/// What a patch asks of one email.
#[derive(Default)]
struct EmailPatch {
    add: u32,
    remove: u32,
    add_keywords: Vec<String>,
    remove_keywords: Vec<String>,
    move_to: Option<MailboxId>,
}

impl EmailPatch {
    /// Reads a patch, in its own order: the first path that cannot be applied is the error.
    fn parse(call: &Call<'_>, patch: &PatchObject) -> Result<EmailPatch, MethodError> {
        let mut out = EmailPatch::default();
        for (path, value) in patch {
            if let Some(keyword) = path.strip_prefix("keywords/") {
                if !valid_keyword(keyword) {
                    return Err(MethodError::new(
                        "invalidPatch",
                        format!("{keyword:?} is not a keyword"),
                    ));
                }
                let keyword = &keyword.to_ascii_lowercase();
                let on = value.as_bool() == Some(true);
                match (keyword_bit(keyword), on) {
                    (Some(bit), true) => out.add |= bit,
                    (Some(bit), false) => out.remove |= bit,
                    (None, true) => out.add_keywords.push(keyword.to_string()),
                    (None, false) => out.remove_keywords.push(keyword.to_string()),
                }
            } else if path == "mailboxIds" {
                let target = value
                    .as_object()
                    .filter(|m| m.len() == 1)
                    .and_then(|m| m.iter().next())
                    .filter(|(_, on)| **on == Value::Bool(true))
                    .and_then(|(k, _)| k.parse().ok())
                    .ok_or_else(|| {
                        MethodError::new(
                            "invalidPatch",
                            "mailboxIds names one mailbox, set to true",
                        )
                    })?;
                out.move_to = Some(call.mailbox(target)?.id);
            } else {
                return Err(MethodError::new(
                    "invalidPatch",
                    format!("cannot change {path}"),
                ));
            }
        }
        Ok(out)
    }
}

pub(in crate::api) async fn set(call: &Call<'_>, args: SetArgs) -> MethodResult {
    check_if_in_state(args.if_in_state.as_deref(), &call.mailboxes)?;
    let mut reply = SetReply::default();
    let store = call.store();
    for (id, patch) in args.update.0 {
        let patch = patch.map_err(|_| MethodError::new("invalidPatch", "a patch is an object"));
        match update_email(call, &id, patch).await {
            Ok(new_id) => {
                reply
                    .updated
                    .insert(id, new_id.map(|n| json!({"id": n})).unwrap_or(Value::Null));
            }
            Err(e) => reply.not_updated(id, &e),
        }
    }
    let mut by_mailbox: HashMap<MailboxId, Vec<(u32, String)>> = HashMap::new();
    for id in args.destroy.into_iter().flatten() {
        match call.email(&id) {
            Ok((mailbox, uid)) => by_mailbox.entry(mailbox).or_default().push((uid, id)),
            Err(e) => {
                reply.not_destroyed.insert(id, e.to_json());
            }
        }
    }
    for (mailbox, items) in by_mailbox {
        let uids: Vec<u32> = items.iter().map(|i| i.0).collect();
        let removed = store.expunge(mailbox, &uids).await?;
        for (uid, id) in items {
            if removed.contains(&uid) {
                reply.destroyed.push(id);
            } else {
                reply.not_destroyed.insert(id, json!({"type": "notFound"}));
            }
        }
    }
    for (key, draft) in args.create.0 {
        let saved = match draft {
            Ok(draft) => save_draft(call, draft).await,
            Err(e) => Err(MethodError::invalid_properties(e)),
        };
        match saved {
            Ok(id) => {
                reply.created.insert(key, json!({ "id": id }));
            }
            Err(e) => reply.not_created(key, &e),
        }
    }
    Ok(reply.into_json(call).await)
}

/// Applies `keywords/<k>` patches and a `mailboxIds` move; returns the new id after a move.
async fn update_email(
    call: &Call<'_>,
    id: &str,
    patch: Result<PatchObject, MethodError>,
) -> Result<Option<String>, MethodError> {
    let (mailbox, uid) = call.email(id)?;
    let store = call.store();
    let patch = EmailPatch::parse(call, &patch?)?;
    if patch.add != 0 || !patch.add_keywords.is_empty() {
        store
            .store_flags(
                mailbox,
                &[uid],
                FlagMode::Add,
                patch.add,
                &patch.add_keywords,
                None,
            )
            .await?;
    }
    if patch.remove != 0 || !patch.remove_keywords.is_empty() {
        store
            .store_flags(
                mailbox,
                &[uid],
                FlagMode::Remove,
                patch.remove,
                &patch.remove_keywords,
                None,
            )
            .await?;
    }
    match patch.move_to {
        Some(target) if target != mailbox => {
            let moved = store.copy(mailbox, &[uid], target, true).await?;
            let (_, new_uid) = moved
                .first()
                .ok_or_else(|| MethodError::new("notFound", format!("no email {id}")))?;
            Ok(Some(email_id(target, *new_uid)))
        }
        _ => Ok(None),
    }
}

/// Saves a draft into Drafts (replacing `draftId`); returns its id.
async fn save_draft(call: &Call<'_>, c: Composition) -> Result<String, MethodError> {
    let _composing = call.session.quota.composing().await;
    let (data, _) = compose(call, &c, true).await?;
    let drafts = call.role(SpecialUse::Drafts)?.id;
    let summary = message::summary::summarize(&data);
    let uid = call
        .store()
        .append(
            drafts,
            data,
            flags::DRAFT | flags::SEEN,
            Vec::new(),
            common::clock::now(),
            Some(summary),
        )
        .await?;
    if let Some(old) = &c.draft_id
        && let Ok((mailbox, old_uid)) = call.email(old)
        && mailbox == drafts
    {
        call.store().expunge(drafts, &[old_uid]).await?;
    }
    Ok(email_id(drafts, uid))
}
