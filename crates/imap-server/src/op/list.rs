//! LIST / LSUB (RFC 9051 §6.3.9, RFC 5258 LIST-EXTENDED, RFC 6154 SPECIAL-USE, RFC 5819
//! LIST-STATUS) and NAMESPACE (RFC 2342).

use imap_proto::command::ListOptions;

use super::Ctx;
use super::status::status_items;
use crate::reply::{CommandResult, Completed, ok, quote_name};
use crate::state::Account;

/// IMAP wildcard match: `*` matches anything, `%` anything but the delimiter `/`
/// (RFC 9051 §6.3.9).
///
/// Dynamic programming over the name, one pattern element at a time: O(pattern × name) time
/// and O(name) memory, no recursion. A recursive backtracking matcher went as deep as the
/// pattern is long (a 60,000-character LIST pattern is one line) and took exponential time on
/// patterns like `*a*a*a*a…b`.
fn wildcard(pattern: &[char], name: &[char]) -> bool {
    if pattern.iter().filter(|&&c| c != '*' && c != '%').count() > name.len() {
        return false;
    }
    // reachable[i]: the pattern so far can match exactly the first i characters of the name.
    let mut reachable = vec![false; name.len() + 1];
    reachable[0] = true;
    let mut last = None;
    for &p in pattern {
        // A run of wildcards matches what its widest member matches: `*%` and `%*` are `*`.
        if let (Some('*' | '%'), '*' | '%') = (last, p) {
            if last == Some('%') && p == '*' {
                widen_star(&mut reachable);
                last = Some('*');
            }
            continue;
        }
        match p {
            '*' => widen_star(&mut reachable),
            '%' => {
                // From each reachable position, extend through any run without a delimiter.
                let mut open = false;
                for i in 0..=name.len() {
                    open = reachable[i] || (open && name[i - 1] != '/');
                    reachable[i] = open;
                }
            }
            c => {
                for i in (1..=name.len()).rev() {
                    reachable[i] = reachable[i - 1] && name[i - 1] == c;
                }
                reachable[0] = false;
            }
        }
        last = Some(p);
        if !reachable.contains(&true) {
            return false;
        }
    }
    reachable[name.len()]
}

/// `*` after the pattern so far: every position from the first reachable one on is reachable.
fn widen_star(reachable: &mut [bool]) {
    if let Some(first) = reachable.iter().position(|&r| r) {
        reachable[first..].iter_mut().for_each(|r| *r = true);
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

/// NAMESPACE: one personal namespace, `/` as the delimiter.
pub(crate) fn namespace(cx: &mut Ctx<'_>) -> Completed {
    cx.out()
        .extend_from_slice(b"* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n");
    ok("NAMESPACE completed")
}

/// LIST and LSUB.
pub(crate) async fn list(
    cx: &mut Ctx<'_>,
    account: &Account,
    reference: &str,
    patterns: &[String],
    options: &ListOptions,
) -> CommandResult {
    let command = if options.lsub { "LSUB" } else { "LIST" };
    if !options.lsub && patterns.iter().all(|p| p.is_empty()) {
        // RFC 9051 §6.3.9: an empty pattern asks for the delimiter.
        cx.out()
            .extend_from_slice(b"* LIST (\\Noselect) \"/\" \"\"\r\n");
        return Ok(ok("LIST completed"));
    }
    let reference = account.name_from_client(reference)?;
    let mut patterns_utf8 = Vec::new();
    for p in patterns {
        patterns_utf8.push(format!("{reference}{}", account.name_from_client(p)?));
    }
    let mailboxes = cx.store.list_mailboxes(account.user.account_id).await?;
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
        let name = quote_name(&account.name_to_client(&mailbox.name));
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
    cx.out().extend_from_slice(&out);
    Ok(ok(format!("{command} completed")))
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
        assert!(matches("W%k/%6", "Work/2026"));
        assert!(matches("%/*", "Work/2026/Q1"));
        assert!(!matches("%/%", "Work/2026/Q1"));
        assert!(matches("*%", "a/b"));
        assert!(matches("%*", "a/b"));
        assert!(!matches("%%", "a/b"));
        assert!(matches("", ""));
        assert!(!matches("", "a"));
    }

    /// Hostile patterns (a LIST line is up to 64 KiB): no deep recursion, no exponential time.
    #[test]
    fn long_and_backtracking_patterns() {
        let long = "a".repeat(60_000);
        assert!(!matches(&long, "a"));
        assert!(!matches(
            &format!("{}%", "a".repeat(30_000)),
            &"a".repeat(1024)
        ));
        let backtracking = format!("{}b", "*a".repeat(30_000));
        assert!(!matches(&backtracking, &"a".repeat(1024)));
        assert!(matches(&"%".repeat(60_000), "Work"));
        let name = "a/".repeat(511) + "b";
        assert!(matches(&"*".repeat(60_000), &name));
        assert!(!matches(&format!("{}c", "*a".repeat(500)), &name));
    }
}
