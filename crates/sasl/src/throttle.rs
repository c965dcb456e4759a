//! Failed-login throttling shared by every protocol, per IP address and per account.
//!
//! Each key (an IP, an account name) counts recent failed attempts. After `free_failures`,
//! every further attempt waits `base_delay * 2^(n - free)` (capped at `max_delay`) before its
//! answer. After `lockout_after` failures an IP is locked out for `lockout`: during that time
//! every attempt from it fails after the maximum delay, even with the right password, so
//! guessing gains nothing. Accounts are slowed but never locked, so an attacker cannot lock a
//! user out of their own mailbox from elsewhere. A success clears the account's counter and
//! takes back only its own count from the IP's (a success on the guesser's own account must
//! not wipe the guesses made at others). Counters of keys with no attempt for `lockout` are
//! forgotten.
//!
//! Keys: an account by its name trimmed and lowercased (`" bob@x"` and `"BOB@x"` reach one
//! account, so they are one key), an IP as its canonical form (`::ffff:192.0.2.1` is
//! `192.0.2.1`), and an IPv6 address by its /64, since one host usually holds a whole /64.
//!
//! Concurrency: an attempt counts as a failure from the moment it passes the gate
//! ([`Throttle::begin`]) until it succeeds ([`Throttle::success`]); there is no separate
//! "record a failure" step a parallel attempt could overtake. So 100 logins started at once
//! from one IP see 0, 1, 2, ... earlier failures, and those past `lockout_after` are locked
//! out before any password is checked. Delays are spaced, not just counted: a key's answers
//! are scheduled one delay after the previous answer of that key (for a client that waits
//! for each answer this is the same as "delay from now"), so parallel attempts cannot all sit
//! out one delay together. From one IP, an attempt that would have to wait more than
//! `max_delay` behind the others is failed at once (after `max_delay`, without checking its
//! password). An account's waits are capped at `max_delay` instead, never refused: refusing
//! there would let anyone keep a user out of their mailbox by guessing in parallel from a few
//! addresses; the guesses an account gets are bounded by each address's lockout instead.
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
    /// Failed attempts, counting the ones still in flight (they fail unless they succeed).
    failures: u32,
    /// When the last attempt began.
    last: Instant,
    /// When the last admitted attempt may be answered; the next one is spaced after it.
    answer_at: Instant,
    locked_until: Option<Instant>,
}

/// What an attempt must do before it may be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Wait this long before answering.
    pub delay: Duration,
    /// Fail the attempt whatever the password, without checking it: the key is locked out, or
    /// too many attempts are already waiting for it.
    pub locked: bool,
}

/// One key's view of an attempt, before it is committed.
#[derive(Debug, Clone, Copy)]
enum Admission {
    /// Admitted; may be answered at this time.
    At(Instant),
    /// Refused (locked out or backlog full).
    Refused,
}

fn delay_for(failures: u32, config: &ThrottleConfig) -> Duration {
    let over = failures.saturating_sub(config.free_failures);
    if over == 0 {
        Duration::ZERO
    } else {
        config
            .base_delay
            .saturating_mul(1u32 << (over - 1).min(16))
            .min(config.max_delay)
    }
}

#[derive(Debug, Default)]
struct Counters<K> {
    entries: HashMap<K, Entry>,
}

impl<K: Hash + Eq + Clone> Counters<K> {
    /// The key's entry as it stands at `now`: expired lockouts and stale counts forgotten.
    fn current(&mut self, key: &K, now: Instant, config: &ThrottleConfig) -> Option<Entry> {
        let entry = self.entries.get(key).copied()?;
        let locked = entry.locked_until.is_some_and(|t| now < t);
        let lock_ended = entry.locked_until.is_some_and(|t| now >= t);
        let stale = now.saturating_duration_since(entry.last) >= config.lockout
            && now >= entry.answer_at
            && !locked;
        if stale || lock_ended {
            // A lockout that ended, or a quiet key: start counting afresh.
            self.entries.remove(key);
            return None;
        }
        Some(entry)
    }

    /// `refuse_backlog`: refuse an attempt that would wait more than `max_delay` behind the
    /// others (IPs), or make it wait `max_delay` (accounts, which are never refused).
    fn admission(
        &mut self,
        key: &K,
        now: Instant,
        config: &ThrottleConfig,
        refuse_backlog: bool,
    ) -> Admission {
        let Some(entry) = self.current(key, now, config) else {
            return Admission::At(now);
        };
        if entry.locked_until.is_some_and(|t| now < t) {
            return Admission::Refused;
        }
        let at = now.max(entry.answer_at) + delay_for(entry.failures, config);
        if at.saturating_duration_since(now) <= config.max_delay {
            Admission::At(at)
        } else if !refuse_backlog {
            Admission::At(now + config.max_delay)
        } else {
            Admission::Refused
        }
    }

    /// Counts an attempt that began at `now` as a failure (until it succeeds); `answer_at` is
    /// when it will be answered if it was admitted.
    fn begin(
        &mut self,
        key: K,
        now: Instant,
        answer_at: Option<Instant>,
        config: &ThrottleConfig,
        may_lock: bool,
    ) {
        let entry = self.entries.entry(key).or_insert(Entry {
            failures: 0,
            last: now,
            answer_at: now,
            locked_until: None,
        });
        entry.failures = entry.failures.saturating_add(1);
        entry.last = now;
        if let Some(at) = answer_at {
            entry.answer_at = entry.answer_at.max(at);
        }
        if may_lock && entry.failures >= config.lockout_after && entry.locked_until.is_none() {
            entry.locked_until = Some(now + config.lockout);
        }
    }

    fn clear(&mut self, key: &K) {
        self.entries.remove(key);
    }

    /// Takes back one attempt's count (it succeeded).
    fn undo(&mut self, key: &K) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.failures = entry.failures.saturating_sub(1);
        }
    }

    fn forget_old(&mut self, now: Instant, config: &ThrottleConfig) {
        self.entries.retain(|_, e| {
            now.saturating_duration_since(e.last) < config.lockout
                || now < e.answer_at
                || e.locked_until.is_some_and(|t| now < t)
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

    /// An attempt from `ip` for `account` begins: it is counted as a failure of both keys
    /// right away (see the module doc), and the verdict says how long to wait before
    /// answering and whether it must fail unchecked. The stricter of the two keys wins.
    pub fn begin(&mut self, ip: IpAddr, account: &str, now: Instant) -> Verdict {
        self.attempts += 1;
        if self.attempts.is_multiple_of(1024) {
            self.by_ip.forget_old(now, &self.config);
            self.by_account.forget_old(now, &self.config);
        }
        let ip = ip_key(ip);
        let account = account_key(account);
        let by_ip = self.by_ip.admission(&ip, now, &self.config, true);
        let by_account = self
            .by_account
            .admission(&account, now, &self.config, false);
        let answer_at = match (by_ip, by_account) {
            (Admission::At(a), Admission::At(b)) => Some(a.max(b)),
            _ => None,
        };
        self.by_ip.begin(ip, now, answer_at, &self.config, true);
        self.by_account
            .begin(account, now, answer_at, &self.config, false);
        match answer_at {
            Some(at) => Verdict {
                delay: at.saturating_duration_since(now),
                locked: false,
            },
            None => Verdict {
                delay: self.config.max_delay,
                locked: true,
            },
        }
    }

    /// The attempt succeeded: the account starts afresh, and the IP's count loses this
    /// attempt only.
    pub fn success(&mut self, ip: IpAddr, account: &str) {
        self.by_ip.undo(&ip_key(ip));
        self.by_account.clear(&account_key(account));
    }
}

/// The key an address is counted under: canonical, and an IPv6 address's /64.
fn ip_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        v4 => v4,
    }
}

/// The key an account name is counted under: as the store finds it (trimmed, lowercased).
/// Names longer than any address share one key, so they cannot fill the table.
fn account_key(account: &str) -> String {
    let name = account.trim();
    if name.len() > 320 {
        return "\0too-long".to_string();
    }
    name.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FREE: Verdict = Verdict {
        delay: Duration::ZERO,
        locked: false,
    };

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A client that waits for each answer, then tries again at once.
    #[test]
    fn sequential_delays_grow_then_lock_out_then_expire() {
        let config = ThrottleConfig::default();
        let mut t = Throttle::new(config.clone());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let start = Instant::now();
        let mut now = start;
        let mut verdicts = Vec::new();
        for _ in 0..20 {
            let v = t.begin(ip, "bob", now);
            verdicts.push(v);
            now += v.delay + ms(30);
        }
        assert_eq!(verdicts[0], FREE);
        assert_eq!(verdicts[3].delay, Duration::ZERO, "three free failures");
        assert_eq!(verdicts[4].delay, ms(500));
        assert_eq!(verdicts[5].delay, ms(1000));
        assert_eq!(verdicts[9].delay, ms(8000), "capped");
        assert!(
            !verdicts[9].locked && verdicts[10].locked && verdicts[19].locked,
            "locked after ten failures: {verdicts:?}"
        );

        // Another IP is not locked out, not even for the attacked account, but is slowed.
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(t.begin(other, "carol", now), FREE);
        assert_eq!(
            t.begin(other, "BOB", now + ms(8000)),
            Verdict {
                delay: ms(8000),
                locked: false
            }
        );
        let later = now + config.lockout + Duration::from_secs(20);
        assert_eq!(t.begin(ip, "bob", later), FREE, "the lockout ends");
    }

    #[test]
    fn success_clears_the_account_and_its_own_count() {
        let mut t = Throttle::new(ThrottleConfig::default());
        let ip: IpAddr = "::1".parse().unwrap();
        let mut now = Instant::now();
        for _ in 0..5 {
            now += t.begin(ip, "dan", now).delay;
        }
        assert!(t.begin(ip, "dan", now).delay > Duration::ZERO);
        t.success(ip, "dan");
        // The account starts afresh: from another address it is free at once.
        assert_eq!(t.begin("192.0.2.99".parse().unwrap(), "dan", now), FREE);
        // The IP lost only the successful attempt's count: its five failures still count.
        assert_eq!(t.by_ip.entries[&ip_key(ip)].failures, 5);
    }

    /// Finding 5 of issue 14: attempts started together are counted when they start, so no
    /// more than `lockout_after` of them from one IP are ever checked, whatever their number.
    #[test]
    fn parallel_attempts_from_one_ip_are_counted_when_they_start() {
        let config = ThrottleConfig::default();
        let mut t = Throttle::new(config.clone());
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        let now = Instant::now();
        let verdicts: Vec<Verdict> = (0..100).map(|_| t.begin(ip, "erin", now)).collect();
        let admitted = verdicts.iter().filter(|v| !v.locked).count();
        assert!(
            admitted > config.free_failures as usize && admitted <= config.lockout_after as usize,
            "{admitted} admitted: {verdicts:?}"
        );
        assert!(verdicts[admitted..].iter().all(|v| v.locked));
        assert!(verdicts.iter().all(|v| v.delay <= config.max_delay));
        // The admitted ones are answered one delay after another, not all together.
        let delays: Vec<Duration> = verdicts[..admitted].iter().map(|v| v.delay).collect();
        assert_eq!(
            delays,
            [0, 0, 0, 0, 500, 1500, 3500, 7500].map(ms),
            "{verdicts:?}"
        );
        // The IP is now locked out, even for an attempt after everything was answered.
        assert!(t.begin(ip, "erin", now + Duration::from_secs(60)).locked);
        // Another IP may still log in to the account (slowed, never locked).
        let other: IpAddr = "192.0.2.10".parse().unwrap();
        let v = t.begin(other, "erin", now + Duration::from_secs(60));
        assert!(!v.locked && v.delay <= config.max_delay, "{v:?}");
    }

    /// Attempts on one account from many IPs at once are spaced by the growing delay, then
    /// wait `max_delay` each, but are never refused: guessing in parallel cannot keep the real
    /// user out (each guessing address is bounded by its own lockout).
    #[test]
    fn parallel_attempts_on_one_account_are_spaced_never_refused() {
        let config = ThrottleConfig::default();
        let mut t = Throttle::new(config.clone());
        let now = Instant::now();
        let verdicts: Vec<Verdict> = (0..100u8)
            .map(|i| t.begin(IpAddr::from([198, 51, 100, i]), "fay", now))
            .collect();
        assert!(verdicts.iter().all(|v| !v.locked), "{verdicts:?}");
        let delays: Vec<Duration> = verdicts.iter().map(|v| v.delay).collect();
        assert_eq!(delays[..8], [0, 0, 0, 0, 500, 1500, 3500, 7500].map(ms));
        assert!(delays[8..].iter().all(|&d| d == config.max_delay));
        // The real user, from their own address, waits at most `max_delay`.
        let v = t.begin("192.0.2.77".parse().unwrap(), "fay", now + ms(100));
        assert!(!v.locked && v.delay <= config.max_delay, "{v:?}");
    }

    /// A success on the guesser's own account takes back only that attempt's count, so it
    /// cannot wipe the guesses made at someone else's (the IP still locks out).
    #[test]
    fn a_success_elsewhere_does_not_reset_an_ips_guesses() {
        let config = ThrottleConfig::default();
        let mut t = Throttle::new(config.clone());
        let ip: IpAddr = "192.0.2.50".parse().unwrap();
        let mut now = Instant::now();
        let mut locked = false;
        for _ in 0..20 {
            for _ in 0..3 {
                let v = t.begin(ip, "victim", now);
                locked |= v.locked;
                now += v.delay;
            }
            now += t.begin(ip, "attacker", now).delay;
            t.success(ip, "attacker");
        }
        assert!(locked, "the guessing IP was never locked out");
    }

    /// Spellings of one account are one key; an IPv6 /64 and IPv4-mapped addresses too.
    #[test]
    fn keys_are_normalised() {
        let config = ThrottleConfig::default();
        let mut t = Throttle::new(config.clone());
        let now = Instant::now();
        for (i, name) in ["bob@x.test", " bob@x.test", "BOB@x.test\t", "  Bob@X.test "]
            .iter()
            .enumerate()
        {
            t.begin(IpAddr::from([192, 0, 2, i as u8]), name, now);
        }
        assert_eq!(t.by_account.entries.len(), 1);
        assert_eq!(t.by_account.entries["bob@x.test"].failures, 4);
        t.begin("2001:db8::1".parse().unwrap(), "a", now);
        t.begin("2001:db8::ffff:2".parse().unwrap(), "a", now);
        t.begin("::ffff:192.0.2.0".parse().unwrap(), "a", now);
        assert_eq!(t.by_ip.entries.len(), 5, "{:?}", t.by_ip.entries.keys());
        assert_eq!(
            t.by_ip.entries[&"2001:db8::".parse::<IpAddr>().unwrap()].failures,
            2
        );
        assert_eq!(t.by_ip.entries[&IpAddr::from([192, 0, 2, 0])].failures, 2);
        t.begin(IpAddr::from([1; 4]), &"a".repeat(10_000), now);
        t.begin(IpAddr::from([1; 4]), &"b".repeat(10_000), now);
        assert_eq!(t.by_account.entries.len(), 3);
    }

    #[test]
    fn counters_are_forgotten() {
        let config = ThrottleConfig::default();
        let mut t = Throttle::new(config.clone());
        let now = Instant::now();
        for i in 0..2000u16 {
            t.begin(IpAddr::from([10, 0, (i >> 8) as u8, i as u8]), "gil", now);
        }
        let later = now + config.lockout + config.max_delay + Duration::from_secs(1);
        for _ in 0..1024 {
            t.begin("10.9.9.9".parse().unwrap(), "someone", later);
        }
        assert!(t.by_ip.entries.len() <= 2, "{}", t.by_ip.entries.len());
        assert!(t.by_account.entries.len() <= 2);
    }
}
