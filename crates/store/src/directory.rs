//! The directory's values: accounts and their secrets, aliases, DKIM keys.

use crate::AccountId;

/// A mail account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    /// The login and primary address, lowercased: `local@domain`.
    pub address: String,
    /// Unix seconds.
    pub created: i64,
}

/// What the store keeps to check a password: an Argon2id PHC string, and SCRAM-SHA-256 keys
/// (in `sasl::ScramKeys::to_stored` form) derived from the same password.
#[derive(Clone, PartialEq, Eq)]
pub struct Secrets {
    pub password_hash: String,
    pub scram: Option<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(..)")
    }
}

/// An account's login data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub account_id: AccountId,
    /// The account's address (its canonical login name).
    pub address: String,
    pub secrets: Secrets,
}

/// An alias: mail to `address` goes to each target. `address` may be `@domain` (catch-all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    pub address: String,
    pub targets: Vec<String>,
}

/// A DKIM signing key of a local domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimKey {
    pub domain: String,
    pub selector: String,
    /// `ed25519` or `rsa`.
    pub algorithm: String,
    /// PKCS#8 DER.
    pub private_key: Vec<u8>,
    /// The `p=` value of the DNS record: base64 of the public key.
    pub public_key: String,
    pub created: i64,
}
