//! STATUS (RFC 9051 §6.3.11, STATUS=SIZE RFC 8438); its items are also LIST-STATUS's.

use imap_proto::command::StatusItem;
use store::Mailbox;

use super::Ctx;
use crate::reply::{CommandResult, ok, quote_name};
use crate::state::Account;

pub(crate) async fn status(
    cx: &mut Ctx<'_>,
    account: &Account,
    name: &str,
    items: &[StatusItem],
) -> CommandResult {
    let mailbox = super::mailbox(cx, account, name).await?;
    let line = format!(
        "* STATUS {} ({})\r\n",
        quote_name(&account.name_to_client(&mailbox.name)),
        status_items(&mailbox, items)
    );
    cx.out().extend_from_slice(line.as_bytes());
    Ok(ok("STATUS completed"))
}

pub(crate) fn status_items(mailbox: &Mailbox, items: &[StatusItem]) -> String {
    items
        .iter()
        .map(|item| match item {
            StatusItem::Messages => format!("MESSAGES {}", mailbox.messages),
            StatusItem::UidNext => format!("UIDNEXT {}", mailbox.uid_next),
            StatusItem::UidValidity => format!("UIDVALIDITY {}", mailbox.uid_validity),
            StatusItem::Unseen => format!("UNSEEN {}", mailbox.unseen),
            StatusItem::Deleted => format!("DELETED {}", mailbox.deleted),
            StatusItem::Size => format!("SIZE {}", mailbox.size),
            StatusItem::Recent => "RECENT 0".to_string(),
            StatusItem::HighestModSeq => format!("HIGHESTMODSEQ {}", mailbox.highest_modseq),
        })
        .collect::<Vec<_>>()
        .join(" ")
}
