//! `EmailSubmission/set`: sending through the server's submission policy (the `submission`
//! crate, shared with SMTP submission).

use ::submission::SubmitError;
use serde::Deserialize;
use serde_json::json;
use store::{FlagMode, SpecialUse, flags};

use super::compose::{Composition, compose};
use super::state::check_if_in_state;
use super::{Call, MethodError, MethodResult, Objects, SetReply, email_id};

/// `EmailSubmission/set`'s arguments (RFC 8620 §5.3, RFC 8621 §7.5): each created
/// submission is a whole [`Composition`] (the page sends a message, not an email id and an
/// envelope as RFC 8621 §7.5 does).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct SetArgs {
    #[serde(default)]
    if_in_state: Option<String>,
    #[serde(default)]
    create: Objects<Composition>,
    /// Submissions are not kept once sent: every id updated or destroyed is `notFound`.
    #[serde(default)]
    update: Objects<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    destroy: Option<Vec<String>>,
    /// RFC 8621 §7.5: accepted, not honoured; sending already marks the original answered and
    /// drops the draft a composition names.
    #[serde(default)]
    #[allow(dead_code)]
    on_success_update_email: Option<serde_json::Map<String, serde_json::Value>>,
    /// RFC 8621 §7.5: accepted, not honoured (as above).
    #[serde(default)]
    #[allow(dead_code)]
    on_success_destroy_email: Option<Vec<String>>,
}

pub(super) async fn set(call: &Call<'_>, args: SetArgs) -> MethodResult {
    check_if_in_state(args.if_in_state.as_deref(), &call.mailboxes)?;
    let mut reply = SetReply::default();
    let gone = |id: &str| MethodError::new("notFound", format!("no submission {id}"));
    for (id, _) in args.update.0 {
        let e = gone(&id);
        reply.not_updated(id, &e);
    }
    for id in args.destroy.into_iter().flatten() {
        reply.not_destroyed.insert(id.clone(), gone(&id).to_json());
    }
    for (key, value) in args.create.0 {
        let sent = match value {
            Ok(c) => send(call, c).await,
            Err(e) => Err(MethodError::invalid_properties(e)),
        };
        match sent {
            Ok(id) => {
                reply
                    .created
                    .insert(key.clone(), json!({ "id": key, "emailId": id }));
            }
            Err(e) => reply.not_created(key, &e),
        }
    }
    Ok(reply.into_json(call).await)
}

/// Sends through the submission path, keeps a copy in Sent, marks the original answered and
/// drops the draft; returns the Sent copy's id.
async fn send(call: &Call<'_>, c: Composition) -> Result<String, MethodError> {
    let _composing = call.session.quota.composing().await;
    let (data, recipients) = compose(call, &c, false).await?;
    if recipients.is_empty() {
        return Err(MethodError::new(
            "invalidRecipients",
            "add at least one recipient",
        ));
    }
    let sent_box = call.role(SpecialUse::Sent)?.id;
    let user = auth::Authenticated {
        account_id: call.session.account,
        address: call.session.address.clone(),
    };
    let sent = call
        .webmail
        .submitter
        .submit(&user, &recipients, data, call.peer)
        .await
        .map_err(|e| match e {
            SubmitError::NotOwned(_) => MethodError::new("forbiddenFrom", e.to_string()),
            SubmitError::Limit(_) => MethodError::new("overQuota", e.to_string()),
            SubmitError::Recipient(_) => MethodError::new("invalidRecipients", e.to_string()),
            SubmitError::Temporary => MethodError::new("serverFail", e.to_string()),
        })?;
    // The message is on its way: nothing after this may make the user send it again.
    let store = call.store();
    let summary = message::summary::summarize(&sent);
    let copied = store
        .append(
            sent_box,
            sent,
            flags::SEEN,
            Vec::new(),
            common::clock::now(),
            Some(summary),
        )
        .await;
    if let Some(original) = &c.replying_to
        && let Ok((mailbox, original_uid)) = call.email(original)
        && let Err(e) = store
            .store_flags(
                mailbox,
                &[original_uid],
                FlagMode::Add,
                flags::ANSWERED,
                &[],
                None,
            )
            .await
    {
        tracing::warn!(error = %e, "webmail: marking the original answered failed");
    }
    if let Some(draft) = &c.draft_id
        && let Ok((mailbox, draft_uid)) = call.email(draft)
        && call
            .mailbox(mailbox)
            .is_ok_and(|m| m.special_use == Some(SpecialUse::Drafts))
        && let Err(e) = store.expunge(mailbox, &[draft_uid]).await
    {
        tracing::warn!(error = %e, "webmail: dropping the sent draft failed");
    }
    // The uploads went out with the message.
    call.session
        .uploads
        .lock()
        .expect("uploads lock")
        .retain(|token, _| {
            !c.attachments
                .iter()
                .any(|a| a.blob_id.strip_prefix('u') == Some(token.as_str()))
        });
    match copied {
        Ok(uid) => Ok(email_id(sent_box, uid)),
        Err(e) => {
            tracing::error!(error = %e, "webmail: the Sent copy failed after sending");
            Ok(String::new())
        }
    }
}
