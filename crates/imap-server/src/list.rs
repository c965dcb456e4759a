//! LIST / LSUB (RFC 9051 §6.3.9, RFC 5258 LIST-EXTENDED, RFC 6154 SPECIAL-USE, RFC 5819
//! LIST-STATUS) and STATUS items.

use imap_proto::command::{ListOptions, StatusItem};
use store::Mailbox;

use crate::{Outcome, Session, internal, ok};

/// A mailbox name as an IMAP string.
pub(crate) fn quote_name(name: &str) -> String {
    let mut out = Vec::new();
    imap_proto::write::string(&mut out, name.as_bytes(), true);
    String::from_utf8(out).unwrap_or_default()
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

/// IMAP wildcard match: `*` matches anything, `%` anything but the delimiter `/`.
fn wildcard(pattern: &[char], name: &[char]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some(('*', rest)) => (0..=name.len()).any(|i| wildcard(rest, &name[i..])),
        Some(('%', rest)) => {
            let limit = name.iter().position(|&c| c == '/').unwrap_or(name.len());
            (0..=limit).any(|i| wildcard(rest, &name[i..]))
        }
        Some((c, rest)) => name.first() == Some(c) && wildcard(rest, &name[1..]),
    }
}

fn matches(pattern: &str, name: &str) -> bool {
    // INBOX is case-insensitive (RFC 9051 §5.1).
    let pattern = if pattern.len() >= 5 && pattern[..5].eq_ignore_ascii_case("INBOX") {
        format!("INBOX{}", &pattern[5..])
    } else {
        pattern.to_string()
    };
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    wildcard(&p, &n)
}

impl Session {
    pub(crate) async fn list(
        &mut self,
        reference: &str,
        patterns: &[String],
        options: &ListOptions,
    ) -> Outcome {
        let user = self.user.clone().expect("checked by the dispatcher");
        let command = if options.lsub { "LSUB" } else { "LIST" };
        if !options.lsub && patterns.iter().all(|p| p.is_empty()) {
            // RFC 9051 §6.3.9: an empty pattern asks for the delimiter.
            self.machine
                .out()
                .extend_from_slice(b"* LIST (\\Noselect) \"/\" \"\"\r\n");
            return Ok(ok("LIST completed"));
        }
        let reference = self.name_from_client(reference)?;
        let mut patterns_utf8 = Vec::new();
        for p in patterns {
            patterns_utf8.push(format!("{reference}{}", self.name_from_client(p)?));
        }
        let mailboxes = self
            .store
            .list_mailboxes(user.account_id)
            .await
            .map_err(internal)?;
        let mut out = Vec::new();
        for mailbox in &mailboxes {
            if !patterns_utf8.iter().any(|p| matches(p, &mailbox.name)) {
                continue;
            }
            if options.subscribed && !mailbox.subscribed {
                continue;
            }
            if options.special_use && mailbox.special_use.is_none() {
                continue;
            }
            let mut attributes: Vec<&str> = Vec::new();
            if !options.lsub {
                let prefix = format!("{}/", mailbox.name);
                let children = mailboxes.iter().any(|m| m.name.starts_with(&prefix));
                attributes.push(if children {
                    "\\HasChildren"
                } else {
                    "\\HasNoChildren"
                });
                if let Some(usage) = mailbox.special_use {
                    attributes.push(usage.attribute());
                }
                if (options.subscribed || options.return_subscribed) && mailbox.subscribed {
                    attributes.push("\\Subscribed");
                }
            }
            let name = quote_name(&self.name_to_client(&mailbox.name));
            out.extend_from_slice(
                format!("* {command} ({}) \"/\" {name}\r\n", attributes.join(" ")).as_bytes(),
            );
            if !options.return_status.is_empty() {
                out.extend_from_slice(
                    format!(
                        "* STATUS {name} ({})\r\n",
                        status_items(mailbox, &options.return_status)
                    )
                    .as_bytes(),
                );
            }
        }
        self.machine.out().extend_from_slice(&out);
        Ok(ok(format!("{command} completed")))
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn wildcards() {
        assert!(matches("*", "Work/2026"));
        assert!(matches("%", "Work"));
        assert!(!matches("%", "Work/2026"));
        assert!(matches("Work/%", "Work/2026"));
        assert!(matches("inbox", "INBOX"));
        assert!(!matches("Wo", "Work"));
    }
}
