//! The conformance suite: the behaviour every [`Store`] backend must show.
//!
//! A backend's tests call [`run`] with a fresh, empty store. Each part uses its own domain so
//! the parts cannot disturb each other. Failures panic with a message naming the rule.

mod directory;
mod import;
mod mailboxes;
mod messages;
mod queue;
mod uploads;
mod verify;

use std::sync::Arc;

use crate::{
    Address, AttemptResult, Change, Delivery, DkimKey, Envelope, FlagMode, ImportedMessage,
    Mailbox, Message, MessageSummary, Outbound, QueueEntry, Recipient, RecipientStatus, Resolution,
    Ret, Secrets, SpecialUse, Store, StoreError, Target, TextScope, dsn_notify, flags, resolve,
};

/// Fixed secrets; the store treats them as opaque text.
fn secrets(tag: &str) -> Secrets {
    Secrets {
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ${tag}"),
        scram: Some(format!("SCRAM-SHA-256$4096:c2FsdA==${tag}:{tag}")),
    }
}

fn addr(s: &str) -> Address {
    Address::parse(s).expect("test address")
}

/// Runs every part of the suite against `store`, which must be empty.
pub async fn run(store: Arc<dyn Store>) {
    directory::domains(&*store).await;
    directory::accounts(&*store).await;
    directory::aliases_and_routing(&*store).await;
    messages::delivery(&*store).await;
    messages::concurrent_delivery(store.clone()).await;
    verify::notifications(&*store).await;
    messages::flags_and_expunge(&*store).await;
    mailboxes::mailboxes_append_copy(&*store).await;
    messages::summaries_and_search(&*store).await;
    messages::big_message_indexing(&*store).await;
    queue::queue(&*store).await;
    uploads::uploads(&*store).await;
    import::import(&*store).await;
    verify::no_problems(&*store).await;
}
