//! STORE and UID STORE (RFC 9051 §6.4.6, UNCHANGEDSINCE RFC 7162 §3.1.3).

use imap_proto::command::{SequenceSet, StoreMode};
use store::FlagMode;

use super::Ctx;
use crate::reply::{CommandError, CommandResult, ok, ok_code};
use crate::state::{Account, Selected};

// One parameter per argument of the command.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn store(
    cx: &mut Ctx<'_>,
    account: &mut Account,
    selected: &mut Selected,
    uid: bool,
    set: &SequenceSet,
    mode: StoreMode,
    silent: bool,
    names: &[String],
    unchanged_since: Option<u64>,
) -> CommandResult {
    let (bits, keywords) = super::parse_flags(names)?;
    let view = &mut selected.view;
    if view.read_only {
        return Err(CommandError::no(Some("READ-ONLY"), "Mailbox is read-only"));
    }
    let uids = view.resolve(set, uid, &selected.saved);
    let mode = match mode {
        StoreMode::Replace => FlagMode::Replace,
        StoreMode::Add => FlagMode::Add,
        StoreMode::Remove => FlagMode::Remove,
    };
    if unchanged_since.is_some() {
        account.enabled.condstore = true;
    }
    let (updated, failed) = cx
        .store
        .store_flags(
            view.mailbox.id,
            &uids,
            mode,
            bits,
            &keywords,
            unchanged_since,
        )
        .await?;
    let condstore = account.enabled.condstore;
    let mut out = Vec::new();
    for u in &updated {
        view.set_flags(u.uid, u.flags, u.keywords.clone(), u.modseq);
        if silent && unchanged_since.is_none() {
            continue;
        }
        if let Some(seq) = view.seq_of(u.uid) {
            out.extend_from_slice(format!("* {seq} FETCH (").as_bytes());
            let mut parts = Vec::new();
            if !silent {
                let mut f = b"FLAGS ".to_vec();
                imap_proto::write::flag_list(&mut f, u.flags, &u.keywords);
                parts.push(f);
            }
            if uid {
                parts.push(format!("UID {}", u.uid).into_bytes());
            }
            if condstore {
                parts.push(format!("MODSEQ ({})", u.modseq).into_bytes());
            }
            out.extend_from_slice(&parts.join(&b' '));
            out.extend_from_slice(b")\r\n");
        }
    }
    // Messages named but not changed still show their flags (unless silent).
    if !silent {
        for u in &uids {
            if updated.iter().any(|x| x.uid == *u) || failed.contains(u) {
                continue;
            }
            if let (Some(seq), Some(meta)) = (view.seq_of(*u), view.meta(*u)) {
                out.extend_from_slice(format!("* {seq} FETCH (FLAGS ").as_bytes());
                imap_proto::write::flag_list(&mut out, meta.flags, &meta.keywords);
                if uid {
                    out.extend_from_slice(format!(" UID {u}").as_bytes());
                }
                out.extend_from_slice(b")\r\n");
            }
        }
    }
    cx.out().extend_from_slice(&out);
    if failed.is_empty() {
        Ok(ok("STORE completed"))
    } else {
        let list: Vec<String> = if uid {
            failed.iter().map(u32::to_string).collect()
        } else {
            failed
                .iter()
                .filter_map(|u| view.seq_of(*u))
                .map(|s| s.to_string())
                .collect()
        };
        Ok(ok_code(
            format!("MODIFIED {}", list.join(",")),
            "Conditional STORE failed for some messages",
        ))
    }
}
