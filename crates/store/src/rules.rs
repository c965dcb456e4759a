//! Rules every backend applies the same way, kept here so the backends cannot drift apart.

use sha2::{Digest, Sha256};

use crate::address::normalise_domain;
use crate::{Address, FlagMode, Result, StoreError};

/// Unix seconds now (from `common`, the one clock).
pub use common::clock::now;

/// The content address of a message's bytes: SHA-256 in lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

/// Keywords as stored: one space-separated text (IMAP atoms hold no spaces).
pub fn parse_keywords(text: &str) -> Vec<String> {
    text.split(' ')
        .filter(|k| !k.is_empty())
        .map(String::from)
        .collect()
}

/// The longest mailbox name, in bytes (Dovecot allows 4,096 in all; clients show far less).
/// It bounds LIST's pattern matching, which costs pattern × name per mailbox.
pub const MAX_MAILBOX_NAME: usize = 1024;

/// Mailbox names the store accepts: not empty, at most [`MAX_MAILBOX_NAME`] bytes, no empty
/// hierarchy level, no control characters, no LIST wildcards.
pub fn valid_mailbox_name(name: &str) -> Result<()> {
    if name.len() > MAX_MAILBOX_NAME {
        return Err(StoreError::Invalid(format!(
            "mailbox name longer than {MAX_MAILBOX_NAME} bytes"
        )));
    }
    if name.is_empty()
        || name.starts_with('/')
        || name.ends_with('/')
        || name.contains("//")
        || name.chars().any(|c| c.is_control() || c == '*' || c == '%')
    {
        return Err(StoreError::Invalid(format!(
            "invalid mailbox name {name:?}"
        )));
    }
    Ok(())
}

/// A domain name as looked up: without a final dot, lowercase. Unlike
/// [`normalise_domain`] it does not judge the name: a malformed one is simply not found.
pub fn domain_key(name: &str) -> String {
    name.trim_end_matches('.').to_lowercase()
}

/// A mailbox name as looked up: INBOX in any case is INBOX (RFC 9051 §5.1); other names are
/// exact.
pub fn mailbox_key(name: &str) -> &str {
    if name.eq_ignore_ascii_case("INBOX") {
        "INBOX"
    } else {
        name
    }
}

/// The name of a mailbox being created or renamed: valid, and not INBOX, which every account
/// has.
pub fn new_mailbox_name(name: &str) -> Result<()> {
    valid_mailbox_name(name)?;
    if name.eq_ignore_ascii_case("INBOX") {
        return Err(StoreError::AlreadyExists("mailbox INBOX".into()));
    }
    Ok(())
}

/// UIDs in ascending order without duplicates: what the backends' message methods take, so
/// each handles (and locks) messages once and in one order, and answers in UID order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UidSet(Vec<u32>);

impl UidSet {
    pub fn new(uids: &[u32]) -> UidSet {
        let mut uids = uids.to_vec();
        uids.sort_unstable();
        uids.dedup();
        UidSet(uids)
    }

    pub fn into_vec(self) -> Vec<u32> {
        self.0
    }
}

impl IntoIterator for UidSet {
    type Item = u32;
    type IntoIter = std::vec::IntoIter<u32>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl std::ops::Deref for UidSet {
    type Target = [u32];
    fn deref(&self) -> &[u32] {
        &self.0
    }
}

/// An alias being added: its normalised source (`@domain` or an address), its domain, and
/// its targets as addresses; at least one.
pub fn alias_entry(address: &str, targets: &[String]) -> Result<(String, String, Vec<String>)> {
    let (source, domain) = normalise_alias_source(address)?;
    let mut clean = Vec::with_capacity(targets.len());
    for target in targets {
        clean.push(Address::parse(target)?.as_str().to_owned());
    }
    if clean.is_empty() {
        return Err(StoreError::Invalid(
            "an alias needs at least one target".into(),
        ));
    }
    Ok((source, domain, clean))
}

/// `@domain` (catch-all) or a full address, normalised, with its domain.
pub fn normalise_alias_source(address: &str) -> Result<(String, String)> {
    if let Some(domain) = address.trim().strip_prefix('@') {
        let domain = normalise_domain(domain)?;
        return Ok((format!("@{domain}"), domain));
    }
    let parsed = Address::parse(address)?;
    Ok((parsed.as_str().to_owned(), parsed.domain().to_owned()))
}

/// A message's flags and keywords after IMAP STORE's `FLAGS`, `+FLAGS` or `-FLAGS`; keywords
/// compare case-insensitively.
pub fn apply_flags(
    old_flags: u32,
    old_keywords: &[String],
    mode: FlagMode,
    flags: u32,
    keywords: &[String],
) -> (u32, Vec<String>) {
    match mode {
        FlagMode::Replace => (flags, keywords.to_vec()),
        FlagMode::Add => {
            let mut k = old_keywords.to_vec();
            for kw in keywords {
                if !k.iter().any(|x| x.eq_ignore_ascii_case(kw)) {
                    k.push(kw.clone());
                }
            }
            (old_flags | flags, k)
        }
        FlagMode::Remove => (
            old_flags & !flags,
            old_keywords
                .iter()
                .filter(|x| !keywords.iter().any(|kw| kw.eq_ignore_ascii_case(x)))
                .cloned()
                .collect(),
        ),
    }
}

/// A UIDVALIDITY for a new mailbox: larger than `last` (the largest given before), so a
/// re-created mailbox never reuses one, and the time where that allows.
pub fn uid_validity_after(last: i64) -> u32 {
    let now = now().clamp(1, u32::MAX as i64);
    now.max(last + 1).min(u32::MAX as i64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_add_and_remove_case_insensitively() {
        let old = vec!["$Work".to_string()];
        let (flags, keywords) =
            apply_flags(1, &old, FlagMode::Add, 4, &["$work".into(), "x".into()]);
        assert_eq!(
            (flags, keywords),
            (5, vec!["$Work".to_string(), "x".into()])
        );
        let (flags, keywords) = apply_flags(5, &old, FlagMode::Remove, 1, &["$WORK".into()]);
        assert_eq!((flags, keywords), (4, vec![]));
    }

    #[test]
    fn uid_validity_grows_past_the_clock_and_saturates() {
        assert!(uid_validity_after(0) as i64 >= now().min(u32::MAX as i64));
        let ahead = now() + 1000;
        assert_eq!(uid_validity_after(ahead) as i64, ahead + 1);
        assert_eq!(uid_validity_after(u32::MAX as i64), u32::MAX);
    }

    #[test]
    fn mailbox_names() {
        assert!(valid_mailbox_name(&"a".repeat(MAX_MAILBOX_NAME)).is_ok());
        assert!(valid_mailbox_name(&"a".repeat(MAX_MAILBOX_NAME + 1)).is_err());
        for bad in ["", "/a", "a/", "a//b", "a*", "a%b", "a\u{7}"] {
            assert!(valid_mailbox_name(bad).is_err(), "{bad:?}");
        }
        valid_mailbox_name("Projects/2026/中文").unwrap();
    }

    #[test]
    fn names_as_looked_up_and_created() {
        assert_eq!(domain_key("Example.TEST."), "example.test");
        assert_eq!(mailbox_key("inBox"), "INBOX");
        assert_eq!(mailbox_key("Inbox/Sub"), "Inbox/Sub");
        assert!(matches!(
            new_mailbox_name("inbox"),
            Err(StoreError::AlreadyExists(_))
        ));
        assert!(matches!(
            new_mailbox_name("a//b"),
            Err(StoreError::Invalid(_))
        ));
        new_mailbox_name("Lists").unwrap();
    }

    #[test]
    fn uid_sets_are_sorted_once() {
        assert_eq!(&*UidSet::new(&[5, 1, 5, 3, 1]), &[1, 3, 5]);
        assert!(UidSet::new(&[]).is_empty());
    }

    #[test]
    fn alias_entries() {
        let (source, domain, targets) =
            alias_entry("Sales@Example.TEST", &["Bob@Example.test".into()]).unwrap();
        assert_eq!(
            (source.as_str(), domain.as_str(), targets),
            (
                "sales@example.test",
                "example.test",
                vec!["bob@example.test".to_string()]
            )
        );
        let (source, _, _) = alias_entry("@Example.test", &["b@example.test".into()]).unwrap();
        assert_eq!(source, "@example.test");
        assert!(matches!(
            alias_entry("a@example.test", &[]),
            Err(StoreError::Invalid(_))
        ));
        assert!(alias_entry("a@example.test", &["not an address".into()]).is_err());
    }
}
