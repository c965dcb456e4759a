//! `pigeon:Address/suggest`: addresses for autocomplete.

use serde::Deserialize;
use serde_json::{Value, json};
use store::SpecialUse;

use super::{Call, MethodResult};
use crate::mail::{self, Addr};

/// Messages an address suggestion looks back over.
const SUGGEST_WINDOW: usize = 500;

/// `pigeon:Address/suggest`'s arguments.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct SuggestArgs {
    /// What the user typed so far; every address when empty.
    #[serde(default)]
    prefix: String,
}

/// Addresses seen in recent mail (INBOX and Sent) whose address, name or a word of the name
/// starts with the prefix; at most 10.
pub(super) async fn suggest(call: &Call<'_>, args: SuggestArgs) -> MethodResult {
    let prefix = args.prefix.trim().to_lowercase();
    let mut seen: Vec<Addr> = Vec::new();
    for m in &call.mailboxes {
        if m.name != "INBOX" && m.special_use != Some(SpecialUse::Sent) {
            continue;
        }
        let metas = call.store().message_flags(m.id, 0).await?;
        let uids: Vec<u32> = metas
            .iter()
            .rev()
            .take(SUGGEST_WINDOW)
            .map(|m| m.uid)
            .collect();
        for (_, s) in call.store().summaries(m.id, &uids).await? {
            let h = mail::headers(&s.header);
            for a in h.from.into_iter().chain(h.to).chain(h.cc) {
                if !seen.iter().any(|s| s.email.eq_ignore_ascii_case(&a.email)) {
                    seen.push(a);
                }
            }
        }
    }
    let matches: Vec<Value> = seen
        .into_iter()
        .filter(|a| {
            prefix.is_empty()
                || a.email.to_lowercase().starts_with(&prefix)
                || a.name.as_deref().is_some_and(|n| {
                    n.to_lowercase()
                        .split_whitespace()
                        .any(|w| w.starts_with(&prefix))
                        || n.to_lowercase().starts_with(&prefix)
                })
        })
        .take(10)
        .map(|a| json!({ "name": a.name, "email": a.email }))
        .collect();
    Ok(json!({ "list": matches }))
}
