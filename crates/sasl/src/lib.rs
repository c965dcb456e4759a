//! Authentication without IO: password hashing (Argon2id), SCRAM keys, the SASL server
//! mechanisms PLAIN (RFC 4616), LOGIN and SCRAM-SHA-256[-PLUS] (RFC 5802, RFC 7677) as sans-IO
//! exchanges, and the failed-login throttle shared by every protocol.
//!
//! **Architecture invariant:** no IO, no clock, no RNG here. Salts and nonces are passed in by
//! the caller, and so is the time (`Instant`) for the throttle.

pub mod exchange;
pub mod scram;
pub mod throttle;

pub use exchange::{Mechanism, Outcome, ServerExchange};
pub use scram::ScramKeys;
pub use throttle::{Throttle, ThrottleConfig};

use argon2::{Argon2, PasswordHasher, PasswordVerifier};

/// Length of the salt [`hash_password`] expects (the PHC recommendation).
pub const SALT_LEN: usize = 16;

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Argon2 refused the input (an absurdly long password, say).
    #[error("cannot hash password: {0}")]
    Argon2(String),
}

/// Hashes `password` with Argon2id (the crate defaults: m=19456 KiB, t=2, p=1) into a PHC string.
pub fn hash_password(password: &str, salt: &[u8; SALT_LEN]) -> Result<String, HashError> {
    Argon2::default()
        .hash_password_with_salt(password.as_bytes(), salt)
        .map(|hash| hash.to_string())
        .map_err(|e| HashError::Argon2(e.to_string()))
}

/// Checks `password` against a PHC string made by [`hash_password`]. A malformed stored hash
/// never matches.
pub fn verify_password(password: &str, phc: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), phc)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let hash = hash_password("correct horse", &[7; SALT_LEN]).unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
        let other_salt = hash_password("correct horse", &[8; SALT_LEN]).unwrap();
        assert_ne!(hash, other_salt, "the salt changes the hash");
    }
}
