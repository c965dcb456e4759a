//! COPY and MOVE, with UID variants (RFC 9051 §6.4.7–6.4.8, MOVE RFC 6851, COPYUID RFC 4315).

use imap_proto::command::SequenceSet;

use super::Ctx;
use crate::reply::{CommandError, CommandResult, compress, ok, ok_code};
use crate::state::{Account, Selected};

pub(crate) async fn copy(
    cx: &mut Ctx<'_>,
    account: &mut Account,
    selected: &mut Selected,
    uid: bool,
    set: &SequenceSet,
    target: &str,
    move_them: bool,
) -> CommandResult {
    let destination = match super::mailbox(cx, account, target).await {
        Ok(m) => m,
        Err(e) => {
            e.log_if_server("COPY target lookup");
            return Err(CommandError::no(Some("TRYCREATE"), "No such mailbox"));
        }
    };
    let view = &selected.view;
    if move_them && view.read_only {
        return Err(CommandError::no(Some("READ-ONLY"), "Mailbox is read-only"));
    }
    let uids = view.resolve(set, uid, &selected.saved);
    if uids.is_empty() {
        return Ok(ok(if move_them {
            "MOVE completed"
        } else {
            "COPY completed"
        }));
    }
    let pairs = cx
        .store
        .copy(view.mailbox.id, &uids, destination.id, move_them)
        .await?;
    let sources: Vec<u32> = pairs.iter().map(|p| p.0).collect();
    let targets: Vec<u32> = pairs.iter().map(|p| p.1).collect();
    let code = format!(
        "COPYUID {} {} {}",
        destination.uid_validity,
        compress(&sources),
        compress(&targets)
    );
    if move_them {
        // RFC 6851 §4.3: COPYUID goes in an untagged OK, then the EXPUNGEs.
        cx.out()
            .extend_from_slice(format!("* OK [{code}] Moved\r\n").as_bytes());
        crate::session::sync(cx, account, Some(selected), true).await;
        Ok(ok("MOVE completed"))
    } else {
        Ok(ok_code(code, "COPY completed"))
    }
}
