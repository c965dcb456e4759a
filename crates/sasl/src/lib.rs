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

use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, PasswordHasher, Version};

/// Length of the salt [`hash_password`] expects (the PHC recommendation).
pub const SALT_LEN: usize = 16;

/// Largest Argon2 memory cost (KiB) a stored hash may ask for: 256 MiB. More is refused
/// rather than allocated, so one odd stored hash cannot balloon a worker's memory.
pub const MAX_MEMORY_KIB: u32 = 256 * 1024;

/// Why a password could not be hashed, or a stored hash cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Argon2 refused the input (an absurdly long password, say).
    #[error("cannot hash password: {0}")]
    Argon2(String),
    /// The stored hash is not an Argon2 PHC string we can check.
    #[error("unusable password hash: {0}")]
    Unusable(String),
}

/// Hashes `password` with Argon2id (the crate defaults: m=19456 KiB, t=2, p=1) into a PHC string.
pub fn hash_password(password: &str, salt: &[u8; SALT_LEN]) -> Result<String, HashError> {
    Argon2::default()
        .hash_password_with_salt(password.as_bytes(), salt)
        .map(|hash| hash.to_string())
        .map_err(|e| HashError::Argon2(e.to_string()))
}

/// Checks `password` against a PHC string made by [`hash_password`]. A malformed stored hash
/// never matches. Allocates Argon2's memory for this one check: servers use
/// [`verify_password_in`] with memory they keep.
pub fn verify_password(password: &str, phc: &str) -> bool {
    verify_password_in(&mut Argon2Memory::default(), password, phc).unwrap_or(false)
}

/// Argon2's working memory (19 MiB for our parameters), kept by the caller and reused for
/// every check. The argon2 crate's own `PasswordVerifier` allocates and frees it on each call,
/// and glibc keeps such freed buffers in per-thread arenas: a server that verified on many
/// threads grew by hundreds of megabytes (issue 14, finding 7).
#[derive(Default)]
pub struct Argon2Memory {
    blocks: Vec<Block>,
}

impl std::fmt::Debug for Argon2Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Argon2Memory")
            .field("bytes", &self.bytes())
            .finish()
    }
}

impl Argon2Memory {
    /// Memory sized for [`hash_password`]'s parameters.
    pub fn for_default_params() -> Argon2Memory {
        Argon2Memory {
            blocks: vec![Block::new(); Params::DEFAULT.block_count()],
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.blocks.len() * Block::SIZE
    }

    /// At least `count` blocks; grows (and then keeps the larger size) for a stored hash with a
    /// bigger memory cost than ours.
    fn blocks(&mut self, count: usize) -> &mut [Block] {
        if self.blocks.len() < count {
            self.blocks.resize(count, Block::new());
        }
        &mut self.blocks[..count]
    }
}

/// Checks `password` against an Argon2 PHC string (any variant, version and parameters up to
/// [`MAX_MEMORY_KIB`]) in `memory`, comparing in constant time. `Ok(false)` is a wrong
/// password; `Err` a stored hash that cannot be checked.
pub fn verify_password_in(
    memory: &mut Argon2Memory,
    password: &str,
    phc: &str,
) -> Result<bool, HashError> {
    let unusable = |e: &dyn std::fmt::Display| HashError::Unusable(e.to_string());
    let hash = PasswordHash::new(phc).map_err(|e| unusable(&e))?;
    let algorithm = Algorithm::new(hash.algorithm.as_str()).map_err(|e| unusable(&e))?;
    let version = match hash.version {
        Some(v) => Version::try_from(v).map_err(|e| unusable(&e))?,
        None => Version::default(),
    };
    let params = Params::try_from(&hash).map_err(|e| unusable(&e))?;
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return Err(HashError::Unusable("no salt or no hash".into()));
    };
    if params.m_cost() > MAX_MEMORY_KIB {
        return Err(HashError::Unusable(format!(
            "memory cost {} KiB is over {MAX_MEMORY_KIB}",
            params.m_cost()
        )));
    }
    let blocks = params.block_count();
    let expected = expected.as_bytes();
    let mut out = [0u8; 64];
    let out = out
        .get_mut(..expected.len())
        .ok_or_else(|| HashError::Unusable("hash longer than 64 bytes".into()))?;
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, out, memory.blocks(blocks))
        .map_err(|e| HashError::Argon2(e.to_string()))?;
    Ok(constant_time_eq(out, expected))
}

/// A PHC string with [`hash_password`]'s parameters that no password matches (its hash is
/// all zeros, which Argon2 output is with probability 2^-256). Checking a password for an
/// unknown user against it costs what a real check costs, so the answer time does not tell
/// who exists (issue 14, finding 6).
pub fn dummy_hash() -> String {
    format!(
        "$argon2id$v=19$m={},t={},p={}$ZHVtbXktc2FsdC1waWdlb24$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        Params::DEFAULT_M_COST,
        Params::DEFAULT_T_COST,
        Params::DEFAULT_P_COST
    )
}

/// Equal lengths and bytes, in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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

    #[test]
    fn memory_is_reused_across_checks_and_parameters() {
        let mut memory = Argon2Memory::default();
        let hash = hash_password("pw", &[1; SALT_LEN]).unwrap();
        assert!(verify_password_in(&mut memory, "pw", &hash).unwrap());
        let size = memory.bytes();
        assert_eq!(size, 19456 * 1024);
        assert!(!verify_password_in(&mut memory, "px", &hash).unwrap());
        assert!(verify_password_in(&mut memory, "pw", &hash).unwrap());
        assert_eq!(memory.bytes(), size, "no growth for the same parameters");

        // Other parameters and variants still verify: smaller ones in a prefix of the memory,
        // bigger ones after growing it.
        for (algorithm, m, t, p) in [
            (Algorithm::Argon2id, 64, 1, 1),
            (Algorithm::Argon2i, 4096, 3, 2),
            (Algorithm::Argon2d, 32 * 1024, 1, 4),
        ] {
            let params = Params::new(m, t, p, Some(32)).unwrap();
            let other = Argon2::new(algorithm, Version::V0x13, params)
                .hash_password_with_salt(b"pw", &[5; SALT_LEN])
                .unwrap()
                .to_string();
            assert!(
                verify_password_in(&mut memory, "pw", &other).unwrap(),
                "{other}"
            );
            assert!(!verify_password_in(&mut memory, "pW", &other).unwrap());
            assert!(verify_password("pw", &other), "the allocating path agrees");
        }
        assert_eq!(memory.bytes(), 32 * 1024 * 1024);
        assert!(verify_password_in(&mut memory, "pw", &hash).unwrap());

        let huge = "$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHQ$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        assert!(matches!(
            verify_password_in(&mut memory, "pw", huge),
            Err(HashError::Unusable(_))
        ));
        assert!(verify_password_in(&mut memory, "pw", "").is_err());
        assert!(verify_password_in(&mut memory, "pw", "$argon2id$v=19$m=19456,t=2,p=1").is_err());
    }

    #[test]
    fn dummy_hash_has_the_real_parameters_and_matches_nothing() {
        let real = hash_password("x", &[2; SALT_LEN]).unwrap();
        let dummy = dummy_hash();
        let params = |s: &str| s.rsplitn(3, '$').nth(2).unwrap().to_string();
        assert_eq!(params(&real), params(&dummy));
        let mut memory = Argon2Memory::for_default_params();
        for password in ["", "x", "dummy", "password"] {
            assert!(!verify_password_in(&mut memory, password, &dummy).unwrap());
        }
    }
}
