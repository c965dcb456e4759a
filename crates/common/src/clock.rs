//! The wall clock as Unix time: stored dates, expiry, leases and `Date:` headers all use it.
//!
//! A clock set before 1970 reads as 0 (the epoch), never as a panic.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    since_epoch().as_secs() as i64
}

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    since_epoch().as_millis() as i64
}

/// Microseconds since the Unix epoch (ids that must differ within a second).
pub fn now_micros() -> u64 {
    since_epoch().as_micros() as u64
}

fn since_epoch() -> std::time::Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn units_agree() {
        let (s, ms, us) = (super::now(), super::now_millis(), super::now_micros());
        assert!(s > 1_700_000_000);
        assert!((ms / 1000 - s).abs() <= 1);
        assert!((us as i64 / 1_000_000 - s).abs() <= 1);
    }
}
