//! Failed-login throttling shared by every protocol, per IP address and per account.
//!
//! Each key (an IP, an account name) counts recent failures. After `free_failures`, every
//! further attempt waits `base_delay * 2^(n - free)` (capped at `max_delay`) before its answer.
//! After `lockout_after` failures an IP is locked out for `lockout`: during that time every
//! attempt from it fails after the maximum delay, even with the right password, so guessing
//! gains nothing. Accounts are slowed but never locked, so an attacker cannot lock a user out
//! of their own mailbox from elsewhere. A success clears the account's and the IP's counters.
//! Counters of keys with no failure for `lockout` are forgotten.
//!
//! Time is passed in, so this is plain, testable code; sessions do the sleeping.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct ThrottleConfig {
    pub free_failures: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    pub lockout_after: u32,
    pub lockout: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> ThrottleConfig {
        ThrottleConfig {
            free_failures: 3,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
            lockout_after: 10,
            lockout: Duration::from_secs(15 * 60),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

/// What an attempt must do before it may be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Wait this long before answering.
    pub delay: Duration,
    /// The key is locked out: fail the attempt whatever the password.
    pub locked: bool,
}

#[derive(Debug, Default)]
struct Counters<K> {
    entries: HashMap<K, Entry>,
}

impl<K: Hash + Eq + Clone> Counters<K> {
    fn verdict(&mut self, key: &K, now: Instant, config: &ThrottleConfig) -> Verdict {
        let Some(entry) = self.entries.get(key).copied() else {
            return Verdict {
                delay: Duration::ZERO,
                locked: false,
            };
        };
        if now.duration_since(entry.last) >= config.lockout
            && entry.locked_until.is_none_or(|t| now >= t)
        {
            self.entries.remove(key);
            return Verdict {
                delay: Duration::ZERO,
                locked: false,
            };
        }
        if let Some(until) = entry.locked_until
            && now < until
        {
            return Verdict {
                delay: config.max_delay,
                locked: true,
            };
        }
        let over = entry.failures.saturating_sub(config.free_failures);
        let delay = if over == 0 {
            Duration::ZERO
        } else {
            config
                .base_delay
                .saturating_mul(1u32 << (over - 1).min(16))
                .min(config.max_delay)
        };
        Verdict {
            delay,
            locked: false,
        }
    }

    fn failure(&mut self, key: K, now: Instant, config: &ThrottleConfig, may_lock: bool) {
        let entry = self.entries.entry(key).or_insert(Entry {
            failures: 0,
            last: now,
            locked_until: None,
        });
        if entry.locked_until.is_some_and(|t| now >= t) {
            // The lockout ended; start counting afresh.
            entry.failures = 0;
            entry.locked_until = None;
        }
        entry.failures += 1;
        entry.last = now;
        if may_lock && entry.failures >= config.lockout_after && entry.locked_until.is_none() {
            entry.locked_until = Some(now + config.lockout);
        }
    }

    fn clear(&mut self, key: &K) {
        self.entries.remove(key);
    }

    fn forget_old(&mut self, now: Instant, config: &ThrottleConfig) {
        self.entries.retain(|_, e| {
            now.duration_since(e.last) < config.lockout || e.locked_until.is_some_and(|t| now < t)
        });
    }
}

/// The throttle: one set of counters per IP, one per account name.
#[derive(Debug)]
pub struct Throttle {
    config: ThrottleConfig,
    by_ip: Counters<IpAddr>,
    by_account: Counters<String>,
    attempts: u64,
}

impl Throttle {
    pub fn new(config: ThrottleConfig) -> Throttle {
        Throttle {
            config,
            by_ip: Counters {
                entries: HashMap::new(),
            },
            by_account: Counters {
                entries: HashMap::new(),
            },
            attempts: 0,
        }
    }

    /// What an attempt from `ip` for `account` must do; the stricter of the two keys wins.
    pub fn check(&mut self, ip: IpAddr, account: &str, now: Instant) -> Verdict {
        self.attempts += 1;
        if self.attempts.is_multiple_of(1024) {
            self.by_ip.forget_old(now, &self.config);
            self.by_account.forget_old(now, &self.config);
        }
        let account = account.to_lowercase();
        let a = self.by_ip.verdict(&ip, now, &self.config);
        let b = self.by_account.verdict(&account, now, &self.config);
        Verdict {
            delay: a.delay.max(b.delay),
            locked: a.locked || b.locked,
        }
    }

    pub fn failure(&mut self, ip: IpAddr, account: &str, now: Instant) {
        self.by_ip.failure(ip, now, &self.config, true);
        self.by_account
            .failure(account.to_lowercase(), now, &self.config, false);
    }

    pub fn success(&mut self, ip: IpAddr, account: &str) {
        self.by_ip.clear(&ip);
        self.by_account.clear(&account.to_lowercase());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_then_lock_out_then_expire() {
        let config = ThrottleConfig::default();
        let mut t = Throttle::new(config.clone());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let now = Instant::now();
        let mut delays = Vec::new();
        for i in 0..20 {
            let at = now + Duration::from_secs(i);
            let v = t.check(ip, "bob", at);
            delays.push(v);
            if !v.locked {
                t.failure(ip, "bob", at);
            }
        }
        assert_eq!(
            delays[0],
            Verdict {
                delay: Duration::ZERO,
                locked: false
            }
        );
        assert_eq!(delays[3].delay, Duration::ZERO, "three free failures");
        assert_eq!(delays[4].delay, Duration::from_millis(500));
        assert_eq!(delays[5].delay, Duration::from_secs(1));
        assert_eq!(delays[9].delay, Duration::from_secs(8), "capped");
        assert!(
            delays[10].locked && delays[19].locked,
            "locked after ten failures"
        );

        // Another IP is not locked out, not even for the attacked account, but is slowed.
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(
            t.check(other, "carol", now + Duration::from_secs(30)),
            Verdict {
                delay: Duration::ZERO,
                locked: false
            }
        );
        assert_eq!(
            t.check(other, "BOB", now + Duration::from_secs(30)),
            Verdict {
                delay: Duration::from_secs(8),
                locked: false
            }
        );
        let later = now + Duration::from_secs(10) + config.lockout + Duration::from_secs(1);
        assert_eq!(
            t.check(ip, "bob", later),
            Verdict {
                delay: Duration::ZERO,
                locked: false
            }
        );
    }

    #[test]
    fn success_clears() {
        let mut t = Throttle::new(ThrottleConfig::default());
        let ip: IpAddr = "::1".parse().unwrap();
        let now = Instant::now();
        for _ in 0..5 {
            t.failure(ip, "dan", now);
        }
        assert!(t.check(ip, "dan", now).delay > Duration::ZERO);
        t.success(ip, "dan");
        assert_eq!(t.check(ip, "dan", now).delay, Duration::ZERO);
    }
}
