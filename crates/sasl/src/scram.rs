//! SCRAM-SHA-256 keys and proofs (RFC 5802 §3, RFC 7677).
//!
//! The server never stores the password for SCRAM: it stores the salt, the iteration count,
//! StoredKey = H(ClientKey) and ServerKey, derived when the password is set.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::{digest, hmac, pbkdf2};

/// Iterations for new keys (RFC 7677 §4 asks for at least 4096).
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// What the server keeps to verify SCRAM-SHA-256 logins.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramKeys {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
}

impl std::fmt::Debug for ScramKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramKeys")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

pub(crate) fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let tag = hmac::sign(&key, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, data).as_ref());
    out
}

/// SaltedPassword = Hi(password, salt, i): PBKDF2 with HMAC-SHA-256 (RFC 5802 §3), the
/// secret both the stored keys and a client's proof come from. Zero iterations count as one.
fn salted_password(password: &str, salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut salted = [0u8; 32];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        std::num::NonZeroU32::MIN.saturating_add(iterations.saturating_sub(1)),
        salt,
        password.as_bytes(),
        &mut salted,
    );
    salted
}

impl ScramKeys {
    /// Derives the keys from a password (RFC 5802 §3). `salt` should be 16 random bytes.
    pub fn derive(password: &str, salt: &[u8], iterations: u32) -> ScramKeys {
        let salted = salted_password(password, salt, iterations);
        let client_key = hmac_sha256(&salted, b"Client Key");
        ScramKeys {
            salt: salt.to_vec(),
            iterations,
            stored_key: sha256(&client_key),
            server_key: hmac_sha256(&salted, b"Server Key"),
        }
    }

    /// Serialises for storage: `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>` (base64),
    /// the format of PostgreSQL's `pg_authid`.
    pub fn to_stored(&self) -> String {
        format!(
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }

    /// Parses [`ScramKeys::to_stored`]'s format.
    pub fn from_stored(s: &str) -> Option<ScramKeys> {
        let rest = s.strip_prefix("SCRAM-SHA-256$")?;
        let (params, keys) = rest.split_once('$')?;
        let (iterations, salt) = params.split_once(':')?;
        let (stored, server) = keys.split_once(':')?;
        Some(ScramKeys {
            salt: B64.decode(salt).ok()?,
            iterations: iterations.parse().ok()?,
            stored_key: B64.decode(stored).ok()?.try_into().ok()?,
            server_key: B64.decode(server).ok()?.try_into().ok()?,
        })
    }
}

/// Client side of the proof, for our own client and the tests: returns (proof, expected server
/// signature) for an auth message.
pub fn client_proof(
    password: &str,
    salt: &[u8],
    iterations: u32,
    auth_message: &[u8],
) -> ([u8; 32], [u8; 32]) {
    let salted = salted_password(password, salt, iterations);
    let client_key = hmac_sha256(&salted, b"Client Key");
    let stored_key = sha256(&client_key);
    let signature = hmac_sha256(&stored_key, auth_message);
    let mut proof = [0u8; 32];
    for i in 0..32 {
        proof[i] = client_key[i] ^ signature[i];
    }
    let server_key = hmac_sha256(&salted, b"Server Key");
    (proof, hmac_sha256(&server_key, auth_message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_format_round_trips() {
        let keys = ScramKeys::derive("pencil", b"0123456789abcdef", 4096);
        let text = keys.to_stored();
        assert!(text.starts_with("SCRAM-SHA-256$4096:"));
        assert_eq!(ScramKeys::from_stored(&text), Some(keys));
        assert_eq!(ScramKeys::from_stored("garbage"), None);
    }
}
