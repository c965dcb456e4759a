//! Mail addresses as the store keys them: `local@domain`, lowercased, UTF-8 allowed
//! (RFC 6531), with subaddress (`user+tag`) support.

use crate::StoreError;

/// A syntactically valid `local@domain` address, normalised to lowercase.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    full: String,
    at: usize,
}

impl Address {
    /// Parses and normalises an address; the error says what is wrong.
    pub fn parse(s: &str) -> Result<Address, StoreError> {
        let s = s.trim();
        let invalid = |why: &str| StoreError::Invalid(format!("malformed address {s:?}: {why}"));
        let at = s.rfind('@').ok_or_else(|| invalid("no @"))?;
        let (local, domain) = (&s[..at], &s[at + 1..]);
        if local.is_empty() {
            return Err(invalid("empty local part"));
        }
        if local.len() > 64 {
            return Err(invalid("local part longer than 64 octets"));
        }
        if !valid_domain(domain) {
            return Err(invalid("bad domain"));
        }
        if local.chars().any(|c| {
            c.is_control()
                || c.is_whitespace()
                || matches!(
                    c,
                    '<' | '>' | '(' | ')' | ',' | ';' | ':' | '\\' | '"' | '[' | ']' | '@'
                )
        }) {
            return Err(invalid("character not allowed in local part"));
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(invalid("misplaced dot in local part"));
        }
        Ok(Address {
            full: format!("{}@{}", local.to_lowercase(), domain.to_lowercase()),
            at,
        }
        .renormalised())
    }

    // Lowercasing can change byte lengths (non-ASCII), so find the @ again.
    fn renormalised(mut self) -> Address {
        self.at = self.full.rfind('@').expect("address has @");
        self
    }

    pub fn local(&self) -> &str {
        &self.full[..self.at]
    }

    pub fn domain(&self) -> &str {
        &self.full[self.at + 1..]
    }

    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// `user@domain` for `user+tag@domain`, if the local part has a tag.
    pub fn without_subaddress(&self) -> Option<Address> {
        let local = self.local();
        let plus = local.find('+')?;
        if plus == 0 {
            return None;
        }
        Address::parse(&format!("{}@{}", &local[..plus], self.domain())).ok()
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.full)
    }
}

/// The domain-name rule, shared with the config (`common::domain`).
pub use common::valid_domain;

/// Normalises a domain name for storage.
pub fn normalise_domain(s: &str) -> Result<String, StoreError> {
    let d = s.trim().trim_end_matches('.').to_lowercase();
    if valid_domain(&d) {
        Ok(d)
    } else {
        Err(StoreError::Invalid(format!("malformed domain {s:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_lowercases() {
        let a = Address::parse("Alice+News@Example.COM").unwrap();
        assert_eq!(a.as_str(), "alice+news@example.com");
        assert_eq!(a.local(), "alice+news");
        assert_eq!(a.domain(), "example.com");
        assert_eq!(
            a.without_subaddress().unwrap().as_str(),
            "alice@example.com"
        );
        let u = Address::parse("用户@例子.测试").unwrap();
        assert_eq!(u.domain(), "例子.测试");
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "no-at",
            "@x.test",
            "a@",
            "a@b..c",
            "a b@c.test",
            ".a@c.test",
            "a<@c.test",
        ] {
            assert!(Address::parse(bad).is_err(), "{bad:?}");
        }
    }
}
