//! SELECT and EXAMINE (RFC 9051 §6.3.2–6.3.3, with CONDSTORE and QRESYNC, RFC 7162), CLOSE
//! and UNSELECT (RFC 3691): the commands that enter and leave the selected state.

use imap_proto::command::Qresync;

use super::Ctx;
use crate::reply::{CommandError, CommandResult, compress, ok, ok_code, quote_name};
use crate::state::{Selected, State};
use crate::view::View;

pub(crate) async fn select(
    cx: &mut Ctx<'_>,
    state: &mut State,
    name: &str,
    read_only: bool,
    condstore: bool,
    qresync: Option<&Qresync>,
) -> CommandResult {
    let command = if read_only { "EXAMINE" } else { "SELECT" };
    if qresync.is_some() && !state.account(command)?.enabled.qresync {
        return Err(CommandError::syntax("ENABLE QRESYNC first"));
    }
    // Selecting closes the previous mailbox without expunging (RFC 9051 §6.3.2).
    if state.leave_mailbox().is_some() {
        cx.out()
            .extend_from_slice(b"* OK [CLOSED] Previous mailbox closed\r\n");
    }
    let account = state.account(command)?;
    if condstore {
        account.enabled.condstore = true;
    }
    let enabled = account.enabled;
    let mailbox = super::mailbox(cx, account, name).await?;
    // Drop notifications older than the snapshot we are about to take.
    account.changes = account.changes.resubscribe();
    let view = View::open(cx.store, mailbox.clone(), read_only).await?;
    let out = cx.out();
    out.extend_from_slice(b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n");
    if read_only {
        out.extend_from_slice(b"* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n");
    } else {
        out.extend_from_slice(b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted\r\n");
    }
    out.extend_from_slice(format!("* {} EXISTS\r\n", view.len()).as_bytes());
    if !enabled.rev2 {
        out.extend_from_slice(b"* 0 RECENT\r\n");
    }
    out.extend_from_slice(
        format!("* OK [UIDVALIDITY {}] UIDs valid\r\n", mailbox.uid_validity).as_bytes(),
    );
    out.extend_from_slice(
        format!("* OK [UIDNEXT {}] Predicted next UID\r\n", mailbox.uid_next).as_bytes(),
    );
    if enabled.condstore {
        out.extend_from_slice(
            format!(
                "* OK [HIGHESTMODSEQ {}] Highest\r\n",
                mailbox.highest_modseq
            )
            .as_bytes(),
        );
    }
    if enabled.rev2 {
        let line = format!(
            "* LIST () \"/\" {}\r\n",
            quote_name(&account.name_to_client(&mailbox.name))
        );
        out.extend_from_slice(line.as_bytes());
    }
    if let Some(q) = qresync
        && q.uid_validity == mailbox.uid_validity
    {
        // RFC 7162 §3.2.5.1: what vanished and what changed since the client's MODSEQ.
        let mut vanished = cx.store.expunged_since(mailbox.id, q.modseq).await?;
        if let Some(known) = &q.known_uids {
            let max = mailbox.uid_next.saturating_sub(1);
            vanished.retain(|u| known.contains(*u, max));
        }
        let mut out = Vec::new();
        if !vanished.is_empty() {
            out.extend_from_slice(
                format!("* VANISHED (EARLIER) {}\r\n", compress(&vanished)).as_bytes(),
            );
        }
        for (i, m) in view.messages().iter().enumerate() {
            if m.modseq > q.modseq {
                out.extend_from_slice(
                    format!("* {} FETCH (UID {} FLAGS ", i + 1, m.uid).as_bytes(),
                );
                imap_proto::write::flag_list(&mut out, m.flags, &m.keywords);
                out.extend_from_slice(format!(" MODSEQ ({}))\r\n", m.modseq).as_bytes());
            }
        }
        cx.out().extend_from_slice(&out);
    }
    state.enter_mailbox(Selected::new(view));
    let code = if read_only { "READ-ONLY" } else { "READ-WRITE" };
    Ok(ok_code(code, format!("{command} completed")))
}

/// CLOSE (`expunge`: removes `\Deleted` messages first, unless read-only) and UNSELECT.
pub(crate) async fn close(cx: &mut Ctx<'_>, state: &mut State, expunge: bool) -> CommandResult {
    let command = if expunge { "CLOSE" } else { "UNSELECT" };
    let Some(Selected { view, .. }) = state.leave_mailbox() else {
        return Err(CommandError::wrong_state(command));
    };
    if expunge && !view.read_only {
        let deleted = view.deleted_uids();
        if !deleted.is_empty() {
            cx.store.expunge(view.mailbox.id, &deleted).await?;
        }
    }
    Ok(ok(format!("{command} completed")))
}
