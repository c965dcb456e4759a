//! `Mailbox/get`, `Mailbox/set`, `Mailbox/changes` and `pigeon:Mailbox/empty`.

use serde::Deserialize;
use serde_json::{Value, json};
use store::SpecialUse;

use super::state::{ChangesArgs, account_state, check_if_in_state, since_state};
use super::{Call, MethodError, MethodResult, Objects, SetReply};

/// `Mailbox/get` (RFC 8620 §5.1, RFC 8621 §2.1): the mailboxes named, or all of them.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct GetArgs {
    /// The mailboxes; every one when null or absent.
    #[serde(default)]
    ids: Option<Vec<String>>,
    /// The properties returned (and `id`); every one when null or absent.
    #[serde(default)]
    properties: Option<Vec<String>>,
}

/// Every Mailbox property of RFC 8621 §2: what `properties` may name. `parentId`, `myRights`
/// and the thread counts are not returned (folders do not nest; threads are not counted).
const RFC_PROPERTIES: [&str; 11] = [
    "id",
    "name",
    "parentId",
    "role",
    "sortOrder",
    "totalEmails",
    "unreadEmails",
    "totalThreads",
    "unreadThreads",
    "myRights",
    "isSubscribed",
];

/// `Mailbox/set` (RFC 8620 §5.3, RFC 8621 §2.5): folders made, renamed and deleted.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct SetArgs {
    #[serde(default)]
    if_in_state: Option<String>,
    #[serde(default)]
    create: Objects<NameOnly>,
    #[serde(default)]
    update: Objects<NameOnly>,
    #[serde(default)]
    destroy: Option<Vec<String>>,
    /// RFC 8621 §2.5: accepted, not honoured: a deleted folder's emails always go with it,
    /// as the page expects (never `mailboxHasEmail`).
    #[serde(default)]
    #[allow(dead_code)]
    on_destroy_remove_emails: Option<bool>,
}

/// A mailbox as created or renamed: its name is all the page sets. `parentId` may be given
/// as null (a top-level folder, what JMAP clients send); folders here do not nest.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct NameOnly {
    name: String,
    #[serde(default)]
    parent_id: Option<String>,
}

impl NameOnly {
    /// The name, trimmed; a parent is `invalidProperties`.
    fn name(&self) -> Result<&str, MethodError> {
        if self.parent_id.is_some() {
            let mut e = MethodError::new("invalidProperties", "folders do not nest");
            e.properties = vec!["parentId".into()];
            return Err(e);
        }
        Ok(self.name.trim())
    }
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

pub(super) fn get(call: &Call<'_>, args: GetArgs) -> MethodResult {
    if let Some(bad) = args
        .properties
        .iter()
        .flatten()
        .find(|p| !RFC_PROPERTIES.contains(&p.as_str()))
    {
        // RFC 8620 §5.1: a property the type does not have.
        return Err(MethodError::new(
            "invalidArguments",
            format!("no Mailbox property {bad}"),
        ));
    }
    let mut not_found = Vec::new();
    let mailboxes: Vec<&store::Mailbox> = match &args.ids {
        None => call.mailboxes.iter().collect(),
        Some(ids) => ids
            .iter()
            .filter_map(|id| {
                let found = call.mailbox_named(id).ok();
                if found.is_none() {
                    not_found.push(id.clone());
                }
                found
            })
            .collect(),
    };
    let list: Vec<Value> = mailboxes
        .into_iter()
        .map(|m| {
            let mut mailbox = json!({
                "id": m.id.to_string(),
                "name": m.name,
                "role": role_name(m.special_use, &m.name),
                "totalEmails": m.messages,
                "unreadEmails": m.unseen,
                "isSubscribed": m.subscribed,
                "sortOrder": if m.name == "INBOX" { 0 } else if m.special_use.is_some() { 1 } else { 2 },
            });
            if let (Some(wanted), Some(object)) = (&args.properties, mailbox.as_object_mut()) {
                // RFC 8620 §5.1: only those asked for, and always the id.
                object.retain(|k, _| k == "id" || wanted.contains(k));
            }
            mailbox
        })
        .collect();
    Ok(json!({
        "accountId": call.account_id(), "list": list, "notFound": not_found,
        "state": account_state(&call.mailboxes),
    }))
}

pub(super) async fn set(call: &Call<'_>, args: SetArgs) -> MethodResult {
    check_if_in_state(args.if_in_state.as_deref(), &call.mailboxes)?;
    let mut reply = SetReply::default();
    let store = call.store();
    for (key, value) in args.create.0 {
        let result = async {
            let value = value.map_err(MethodError::invalid_properties)?;
            let name = value.name()?;
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
            Err(e) => reply.not_created(key, &e),
        }
    }
    for (id, value) in args.update.0 {
        let result = async {
            let mailbox = call.mailbox_named(&id)?;
            if mailbox.name == "INBOX" {
                return Err(MethodError::new("forbidden", "INBOX keeps its name"));
            }
            let value = value.map_err(MethodError::invalid_properties)?;
            store.rename_mailbox(mailbox.id, value.name()?).await?;
            Ok::<_, MethodError>(())
        }
        .await;
        match result {
            Ok(()) => {
                reply.updated.insert(id, Value::Null);
            }
            Err(e) => reply.not_updated(id, &e),
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
    Ok(reply.into_json(call).await)
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
    args.fits(created.len() + updated.len() + destroyed.len())?;
    Ok(json!({
        "accountId": call.account_id(),
        "oldState": args.since_state, "newState": account_state(&call.mailboxes), "hasMoreChanges": false,
        "created": created, "updated": updated, "destroyed": destroyed,
        // RFC 8621 §2.2: null is "any property may have changed".
        "updatedProperties": null,
    }))
}
