//! APPEND (RFC 9051 §6.3.12, UIDPLUS RFC 4315, APPENDLIMIT RFC 7889). Big messages arrive
//! streamed through the store first (see `Session::finish_upload`).

use super::Ctx;
use crate::reply::{CommandError, CommandResult, ok_code};
use crate::state::Account;

pub(crate) async fn append(
    cx: &mut Ctx<'_>,
    account: &Account,
    name: &str,
    flag_names: &[String],
    date: Option<&str>,
    message: Vec<u8>,
) -> CommandResult {
    let mailbox = match super::mailbox(cx, account, name).await {
        Ok(m) => m,
        Err(e) => {
            e.log_if_server("APPEND mailbox lookup");
            return Err(CommandError::no(Some("TRYCREATE"), "No such mailbox"));
        }
    };
    let (bits, keywords) = super::parse_flags(flag_names)?;
    let date = match date {
        Some(d) => imap_proto::write::parse_date_time(d)
            .ok_or_else(|| CommandError::syntax("invalid date-time"))?,
        None => common::clock::now(),
    };
    if message.is_empty() {
        return Err(CommandError::no(None, "empty message"));
    }
    let summary = message::summary::summarize(&message);
    let uid = cx
        .store
        .append(mailbox.id, message, bits, keywords, date, Some(summary))
        .await?;
    Ok(ok_code(
        format!("APPENDUID {} {uid}", mailbox.uid_validity),
        "APPEND completed",
    ))
}
