//! The one home for small things every part of the server needs the same way (mox's `mox-`
//! package is the model): randomness, the clock, Message-IDs and the domain-name rule.
//!
//! **Architecture invariant:** nothing else reads the operating system's random number
//! generator or the wall clock for Unix time; a copy drifts (there were seven random helpers
//! with four ways of failing, some leaving zeros in a SCRAM nonce).
//! The sans-IO crates (`*-proto`, `message`, `sasl`) do not use [`random`] or [`clock`]: their
//! callers pass nonces, salts and times in.

pub mod clock;
pub mod domain;
pub mod random;

pub use domain::valid_domain;

/// A new Message-ID for a message made on `host` (RFC 5322 §3.6.4), without the angle
/// brackets: the time and 96 random bits, so it is unique without any state.
pub fn message_id(host: &str) -> String {
    format!("{:x}.{}@{host}", clock::now(), random::hex(12))
}

#[cfg(test)]
mod tests {
    #[test]
    fn message_ids_differ_and_name_the_host() {
        let a = super::message_id("mx.a.test");
        let b = super::message_id("mx.a.test");
        assert_ne!(a, b);
        assert!(a.ends_with("@mx.a.test"), "{a}");
        let (left, _) = a.split_once('@').unwrap();
        let (time, random) = left.split_once('.').unwrap();
        assert!(i64::from_str_radix(time, 16).unwrap() > 1_700_000_000);
        assert_eq!(random.len(), 24);
    }
}
