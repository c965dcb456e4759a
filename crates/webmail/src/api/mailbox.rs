//! `Mailbox/get`, `Mailbox/set`, `Mailbox/changes` and `pigeon:Mailbox/empty`.

use serde::Deserialize;
use serde_json::{Value, json};
use store::SpecialUse;

use super::state::{ChangesArgs, account_state, since_state};
use super::{Call, MethodError, MethodResult, Objects, SetReply};

/// `Mailbox/get`: every mailbox of the account (no `ids` or `properties`: the page shows
/// them all, with every property).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GetArgs {}

/// `Mailbox/set`: folders made, renamed and deleted.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct SetArgs {
    #[serde(default)]
    create: Objects<NameOnly>,
    #[serde(default)]
    update: Objects<NameOnly>,
    #[serde(default)]
    destroy: Option<Vec<String>>,
}

/// A mailbox as created or renamed: its name is all the page sets.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NameOnly {
    name: String,
}

/// `pigeon:Mailbox/empty`: expunges every message of Trash or Junk.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct EmptyArgs {
    mailbox_id: String,
}

fn role_name(role: Option<SpecialUse>, name: &str) -> Option<&'static str> {
    if name == "INBOX" {
        return Some("inbox");
    }
    role.map(|r| match r {
        SpecialUse::Sent => "sent",
        SpecialUse::Drafts => "drafts",
        SpecialUse::Trash => "trash",
        SpecialUse::Junk => "junk",
        SpecialUse::Archive => "archive",
    })
}

pub(super) fn get(call: &Call<'_>, _args: GetArgs) -> MethodResult {
    let list: Vec<Value> = call
        .mailboxes
        .iter()
        .map(|m| {
            json!({
                "id": m.id.to_string(),
                "name": m.name,
                "role": role_name(m.special_use, &m.name),
                "totalEmails": m.messages,
                "unreadEmails": m.unseen,
                "isSubscribed": m.subscribed,
                "sortOrder": if m.name == "INBOX" { 0 } else if m.special_use.is_some() { 1 } else { 2 },
            })
        })
        .collect();
    Ok(json!({
        "accountId": call.account_id(), "list": list, "notFound": [],
        "state": account_state(&call.mailboxes),
    }))
}

pub(super) async fn set(call: &Call<'_>, args: SetArgs) -> MethodResult {
    let mut reply = SetReply::default();
    let store = call.store();
    for (key, value) in args.create.0 {
        let result = async {
            let value = value.map_err(MethodError::invalid_arguments)?;
            let name = value.name.trim();
            Ok::<_, MethodError>(
                store
                    .create_mailbox(call.session.account, name, None)
                    .await?,
            )
        }
        .await;
        match result {
            Ok(id) => {
                reply.created.insert(key, json!({ "id": id.to_string() }));
            }
            Err(e) => {
                reply.not_created.insert(key, e.to_json());
            }
        }
    }
    for (id, value) in args.update.0 {
        let result = async {
            let mailbox = call.mailbox_named(&id)?;
            if mailbox.name == "INBOX" {
                return Err(MethodError::new("forbidden", "INBOX keeps its name"));
            }
            let value = value.map_err(MethodError::invalid_arguments)?;
            store.rename_mailbox(mailbox.id, value.name.trim()).await?;
            Ok::<_, MethodError>(())
        }
        .await;
        match result {
            Ok(()) => {
                reply.updated.insert(id, Value::Null);
            }
            Err(e) => {
                reply.not_updated.insert(id, e.to_json());
            }
        }
    }
    for id in args.destroy.into_iter().flatten() {
        let result = async {
            let mailbox = call.mailbox_named(&id)?;
            if mailbox.name == "INBOX" || mailbox.special_use.is_some() {
                return Err(MethodError::new(
                    "forbidden",
                    format!("{} is a standard folder and stays", mailbox.name),
                ));
            }
            store.delete_mailbox(mailbox.id).await?;
            Ok(())
        }
        .await;
        match result {
            Ok(()) => reply.destroyed.push(id),
            Err(e) => {
                reply.not_destroyed.insert(id, e.to_json());
            }
        }
    }
    Ok(reply.into_json(call))
}

pub(super) async fn empty(call: &Call<'_>, args: EmptyArgs) -> MethodResult {
    let mailbox = call.mailbox_named(&args.mailbox_id)?;
    if !matches!(
        mailbox.special_use,
        Some(SpecialUse::Trash | SpecialUse::Junk)
    ) {
        return Err(MethodError::new(
            "forbidden",
            "only Trash and Junk are emptied",
        ));
    }
    let uids: Vec<u32> = call
        .store()
        .message_flags(mailbox.id, 0)
        .await?
        .iter()
        .map(|m| m.uid)
        .collect();
    let removed = call.store().expunge(mailbox.id, &uids).await?;
    Ok(json!({ "removed": removed.len() }))
}

/// Mailboxes created, changed (counters moved) and destroyed since a state.
pub(super) fn changes(call: &Call<'_>, args: ChangesArgs) -> MethodResult {
    let old = since_state(&args, &call.mailboxes)?;
    let mut created = Vec::new();
    let mut updated = Vec::new();
    for m in &call.mailboxes {
        match old.iter().find(|(id, _, _)| *id == m.id) {
            None => created.push(m.id.to_string()),
            Some(&(_, modseq, uid_next))
                if modseq != m.highest_modseq || uid_next != m.uid_next =>
            {
                updated.push(m.id.to_string())
            }
            Some(_) => {}
        }
    }
    let destroyed: Vec<String> = old
        .iter()
        .filter(|(id, _, _)| !call.mailboxes.iter().any(|m| m.id == *id))
        .map(|(id, _, _)| id.to_string())
        .collect();
    Ok(json!({
        "accountId": call.account_id(),
        "oldState": args.since_state, "newState": account_state(&call.mailboxes), "hasMoreChanges": false,
        "created": created, "updated": updated, "destroyed": destroyed,
    }))
}
