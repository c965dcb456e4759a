//! Random bytes, tokens and ids from the operating system's generator.
//!
//! Every function panics if the generator fails: that is not a condition a mail server can
//! recover from, and going on with zeros (a SCRAM nonce, a session token, a salt) or with the
//! time would be a silent security bug. A panic in a connection task closes only that
//! connection (`net` catches it) and is logged.

use ring::rand::{SecureRandom, SystemRandom};

/// Fills `buf` with random bytes.
pub fn fill(buf: &mut [u8]) {
    if let Err(e) = SystemRandom::new().fill(buf) {
        panic!(
            "the operating system's random number generator failed ({e}); refusing to go on without randomness"
        );
    }
}

/// `N` random bytes.
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    fill(&mut out);
    out
}

/// `n` random bytes as `2 * n` lowercase hex digits: tokens, ids, nonces in text.
pub fn hex(n: usize) -> String {
    let mut raw = vec![0u8; n];
    fill(&mut raw);
    let mut out = String::with_capacity(2 * n);
    for b in raw {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

/// A random `u64`.
pub fn u64() -> u64 {
    u64::from_le_bytes(bytes())
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_has_the_length_asked_for() {
        for n in [0, 1, 12, 32] {
            let token = hex(n);
            assert_eq!(token.len(), 2 * n);
            assert!(token.bytes().all(|b| HEX.contains(&b)), "{token}");
        }
    }

    #[test]
    fn values_are_not_zero_or_repeated() {
        // 2^-256 chance of a false failure.
        assert_ne!(bytes::<32>(), [0; 32]);
        assert_ne!(bytes::<32>(), bytes::<32>());
        assert_ne!(hex(16), hex(16));
    }
}
