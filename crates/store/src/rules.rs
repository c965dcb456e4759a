//! Rules every backend applies the same way, kept here so the backends cannot drift apart.

use sha2::{Digest, Sha256};

use crate::address::normalise_domain;
use crate::{Address, FlagMode, Result, StoreError};

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

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
}
