//! Failed-login throttling shared by every protocol, per IP address and per account.
//!
//! Each key (an IP, an account name) counts its recent *failures* (attempts answered "wrong",
//! or abandoned before their answer) and its *pending* attempts (admitted, outcome not yet
//! reported). An attempt asks [`Throttle::begin`] before its password is checked; the
//! [`Verdict`] is one of:
//! - `Admit { delay }`: counted as pending for both keys; answer no sooner than `delay` from
//!   now, and report the outcome exactly once: [`Throttle::success`], [`Throttle::failure`],
//!   or [`Throttle::unchecked`] if the credentials could not be checked at all (store failure).
//! - `Wait { retry }`: nothing counted; ask again after `retry`, or as soon as an attempt of
//!   the same address ends.
//! - `Locked`: the address is locked out; fail the attempt whatever the password, without
//!   checking it, `max_delay` after it began.
//!
//! The rules:
//! - **Slots.** From one IP, `failures + pending` never exceeds `lockout_after`; an attempt
//!   beyond that waits for one in flight to end. A wrong password keeps its slot (its pending
//!   count becomes a failure), a right one frees it. So however many attempts arrive at once,
//!   at most `lockout_after` passwords from one address are checked before the lockout, while
//!   parallel logins with the right password (an office behind one NAT address, a webmail
//!   proxy, a client opening several connections for several accounts) only take turns,
//!   and are neither delayed nor locked out for being parallel.
//! - **Lockout.** Confirmed failures only: the `lockout_after`-th failure locks the IP out
//!   for `lockout`; meanwhile every attempt from it fails unchecked, even with the right
//!   password, so guessing gains nothing. When the lockout ends, the IP starts afresh.
//!   Accounts are never locked, so an attacker cannot lock a user out of their mailbox from
//!   elsewhere.
//! - **Delays**, from confirmed failures only (so parallel logins with the right password are
//!   not slowed): an attempt that finds `n > free_failures` failures on a key waits
//!   `base_delay * 2^(n - free_failures - 1)`, capped at `max_delay`; the stricter of the two
//!   keys wins. Delays are spaced, not just counted: a key's answers are scheduled one delay
//!   after its previous answer (for a client that waits for each answer this is "delay from
//!   now"), so parallel attempts after a few failures cannot all sit out one delay together.
//!   From one IP, an attempt whose answer would be more than `max_delay` away gets `Wait`
//!   until the schedule has room. An account's waits are capped at `max_delay` instead, never
//!   refused: refusing there would let anyone keep a user out of their mailbox by guessing in
//!   parallel from a few addresses; the guesses an account gets are bounded by each address's
//!   slots and lockout instead.
//! - **Success**: the IP's pending count goes down by one (its failures stay: a success on
//!   the guesser's own account must not wipe the guesses made at others), and the account
//!   starts afresh. **Failure**: pending down by one and failures up by one, for both keys.
//! - **Every admitted attempt is reported**, or its slot would never be freed and the address
//!   would wait forever: callers hold an admitted attempt as a guard that reports a failure
//!   if it is dropped unreported (`auth::Attempt`: a connection dropped mid-check, a SCRAM
//!   exchange abandoned between its first and last step). An abandoned attempt counts as a
//!   failure because its password may have been checked.
//! - **Failures leak away**, one per `lockout / lockout_after` (90 s by default): a busy
//!   address that keeps logging in never goes quiet, and its occasional typos must not add
//!   up to a lockout over hours. The rate of guesses this lets through, `lockout_after` per
//!   `lockout`, is the rate a guesser gets anyway by waiting out each lockout.
//! - Counters of keys with nothing pending and no attempt begun or ended for `lockout` are
//!   forgotten.
//!
//! Keys: an account by its name trimmed and lowercased (`" bob@x"` and `"BOB@x"` reach one
//! account, so they are one key), an IP as its canonical form (`::ffff:192.0.2.1` is
//! `192.0.2.1`), and an IPv6 address by its /64, since one host usually holds a whole /64.
//!
//! Time is passed in, so this is plain, testable code; callers do the sleeping and the asking
//! again (`auth::Authenticator::gate` retries a `Wait` for up to `max_delay` in all, then fails
//! the attempt unchecked).

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

/// How long a `Wait` for a slot lasts at most before asking again; callers also ask again as
/// soon as an attempt ends.
pub const SLOT_RETRY: Duration = Duration::from_millis(25);

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Attempts answered "wrong" or abandoned.
    failures: u32,
    /// Admitted attempts whose outcome is not reported yet.
    pending: u32,
    /// When an attempt last began or ended.
    last: Instant,
    /// Failures leak away one per `lockout / lockout_after`; decay is applied up to here.
    decayed_at: Instant,
    /// When the last admitted attempt may be answered; the next one is spaced after it.
    answer_at: Instant,
    locked_until: Option<Instant>,
}

impl Entry {
    fn fresh(now: Instant) -> Entry {
        Entry {
            failures: 0,
            pending: 0,
            last: now,
            decayed_at: now,
            answer_at: now,
            locked_until: None,
        }
    }

    /// Lets failures leak away, one per `lockout / lockout_after` (90 s by default), so
    /// occasional typos behind one busy address (an office NAT, whose logins never let the
    /// key go quiet) do not add up to a lockout over hours. A guesser gains nothing: the rate
    /// this lets through, `lockout_after` per `lockout`, is what waiting out a lockout gives.
    fn decay(&mut self, now: Instant, config: &ThrottleConfig) {
        if self.locked(now) || config.lockout_after == 0 {
            return;
        }
        let interval = config.lockout / config.lockout_after;
        if self.failures == 0 || interval.is_zero() {
            self.decayed_at = now;
            return;
        }
        let elapsed = now.saturating_duration_since(self.decayed_at);
        let leaked = (elapsed.as_nanos() / interval.as_nanos()).min(u32::MAX as u128) as u32;
        if leaked >= self.failures {
            self.failures = 0;
            self.decayed_at = now;
        } else if leaked > 0 {
            self.failures -= leaked;
            self.decayed_at += interval * leaked;
        }
    }

    fn locked(&self, now: Instant) -> bool {
        self.locked_until.is_some_and(|t| now < t)
    }

    /// Nothing about the key is worth keeping at `now`.
    fn forgettable(&self, now: Instant, config: &ThrottleConfig) -> bool {
        self.pending == 0
            && now.saturating_duration_since(self.last) >= config.lockout
            && now >= self.answer_at
            && !self.locked(now)
    }
}

/// What an attempt must do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Admitted and counted as pending: check the password, answer no sooner than `delay`
    /// from now, and report the outcome.
    Admit { delay: Duration },
    /// Not admitted, nothing counted: the address has `lockout_after` attempts failed or in
    /// flight, or its answers are booked `max_delay` ahead. Ask again after `retry`.
    Wait { retry: Duration },
    /// The address is locked out: fail the attempt without checking its password.
    Locked,
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

#[derive(Debug)]
struct Counters<K> {
    entries: HashMap<K, Entry>,
}

impl<K: Hash + Eq + Clone> Counters<K> {
    fn new() -> Counters<K> {
        Counters {
            entries: HashMap::new(),
        }
    }

    /// The key's entry as it stands at `now`: a quiet key forgotten, an ended lockout over
    /// (the key starts afresh, keeping only its attempts in flight).
    fn current(&mut self, key: &K, now: Instant, config: &ThrottleConfig) -> Option<&mut Entry> {
        let entry = self.entries.get_mut(key)?;
        if entry.locked_until.is_some_and(|t| now >= t) {
            *entry = Entry {
                pending: entry.pending,
                ..Entry::fresh(now)
            };
        }
        entry.decay(now, config);
        if entry.forgettable(now, config) {
            self.entries.remove(key);
            return None;
        }
        self.entries.get_mut(key)
    }

    /// When an attempt on this key could be answered: one delay after the key's last
    /// scheduled answer.
    fn answer_at(&mut self, key: &K, now: Instant, config: &ThrottleConfig) -> Instant {
        match self.current(key, now, config) {
            Some(entry) => now.max(entry.answer_at) + delay_for(entry.failures, config),
            None => now,
        }
    }

    /// Counts an admitted attempt as pending, answered at `answer_at`.
    fn admit(&mut self, key: K, now: Instant, answer_at: Instant, config: &ThrottleConfig) {
        self.current(&key, now, config);
        let entry = self.entries.entry(key).or_insert_with(|| Entry::fresh(now));
        entry.pending = entry.pending.saturating_add(1);
        entry.last = now;
        entry.answer_at = entry.answer_at.max(answer_at);
    }

    /// An admitted attempt ended: no longer pending; a failure if `failed`, and then the key
    /// is locked out at `lock_at` failures, if given.
    fn end(
        &mut self,
        key: K,
        now: Instant,
        failed: bool,
        lock_at: Option<u32>,
        config: &ThrottleConfig,
    ) {
        self.current(&key, now, config);
        let entry = self.entries.entry(key).or_insert_with(|| Entry::fresh(now));
        entry.pending = entry.pending.saturating_sub(1);
        entry.last = now;
        if failed {
            if entry.failures == 0 {
                entry.decayed_at = now;
            }
            entry.failures = entry.failures.saturating_add(1);
            if lock_at.is_some_and(|n| entry.failures >= n) && entry.locked_until.is_none() {
                entry.locked_until = Some(now + config.lockout);
            }
        }
    }

    fn forget_old(&mut self, now: Instant, config: &ThrottleConfig) {
        self.entries.retain(|_, e| !e.forgettable(now, config));
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
            by_ip: Counters::new(),
            by_account: Counters::new(),
            attempts: 0,
        }
    }

    pub fn config(&self) -> &ThrottleConfig {
        &self.config
    }

    /// An attempt from `ip` for `account` asks to be checked (see the module doc). If it is
    /// admitted, its outcome must be reported with the same `ip` and `account`.
    pub fn begin(&mut self, ip: IpAddr, account: &str, now: Instant) -> Verdict {
        self.attempts += 1;
        if self.attempts.is_multiple_of(1024) {
            self.by_ip.forget_old(now, &self.config);
            self.by_account.forget_old(now, &self.config);
        }
        let config = &self.config;
        let ip = ip_key(ip);
        if let Some(entry) = self.by_ip.current(&ip, now, config) {
            if entry.locked(now) {
                return Verdict::Locked;
            }
            if entry.failures.saturating_add(entry.pending) >= config.lockout_after.max(1) {
                return Verdict::Wait { retry: SLOT_RETRY };
            }
        }
        let by_ip = self.by_ip.answer_at(&ip, now, config);
        let booked = by_ip.saturating_duration_since(now);
        if booked > config.max_delay {
            // Answers are scheduled further ahead than any attempt waits: come back when the
            // schedule has room.
            return Verdict::Wait {
                retry: (booked - config.max_delay).max(SLOT_RETRY),
            };
        }
        let account = account_key(account);
        let by_account = self
            .by_account
            .answer_at(&account, now, config)
            .min(now + config.max_delay);
        let answer_at = by_ip.max(by_account);
        self.by_ip.admit(ip, now, answer_at, config);
        self.by_account.admit(account, now, answer_at, config);
        Verdict::Admit {
            delay: answer_at.saturating_duration_since(now),
        }
    }

    /// The admitted attempt succeeded: the IP's slot is free again (its failures stay), and
    /// the account starts afresh.
    pub fn success(&mut self, ip: IpAddr, account: &str, now: Instant) {
        self.by_ip.end(ip_key(ip), now, false, None, &self.config);
        self.by_account.entries.remove(&account_key(account));
    }

    /// The admitted attempt failed (or was abandoned): a failure of both keys, which locks the
    /// IP out if it is its `lockout_after`-th.
    pub fn failure(&mut self, ip: IpAddr, account: &str, now: Instant) {
        let lock_at = Some(self.config.lockout_after.max(1));
        self.by_ip.end(ip_key(ip), now, true, lock_at, &self.config);
        self.by_account
            .end(account_key(account), now, true, None, &self.config);
    }

    /// The admitted attempt ended without its credentials being checked (the store or the
    /// password checker failed): its slot is free, and nothing else changes.
    pub fn unchecked(&mut self, ip: IpAddr, account: &str, now: Instant) {
        self.by_ip.end(ip_key(ip), now, false, None, &self.config);
        self.by_account
            .end(account_key(account), now, false, None, &self.config);
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

    const FREE: Verdict = Verdict::Admit {
        delay: Duration::ZERO,
    };

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn admit(delay: Duration) -> Verdict {
        Verdict::Admit { delay }
    }

    /// A small deterministic generator, to mix the order in which parallel attempts end.
    struct Mix(u64);

    impl Mix {
        fn below(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) % n as u64) as usize
        }
    }

    /// A client that waits for each answer (a wrong password), then tries again at once.
    #[test]
    fn sequential_delays_grow_then_lock_out_then_expire() {
        let config = ThrottleConfig::default();
        let mut t = Throttle::new(config.clone());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut now = Instant::now();
        let mut verdicts = Vec::new();
        for _ in 0..20 {
            let v = t.begin(ip, "bob", now);
            verdicts.push(v);
            if let Verdict::Admit { delay } = v {
                now += delay;
                t.failure(ip, "bob", now);
            }
            now += ms(30);
        }
        assert_eq!(verdicts[0], FREE);
        assert_eq!(verdicts[3], FREE, "three free failures");
        assert_eq!(verdicts[4], admit(ms(500)));
        assert_eq!(verdicts[5], admit(ms(1000)));
        assert_eq!(verdicts[9], admit(ms(8000)), "capped");
        assert!(
            verdicts[10..].iter().all(|v| *v == Verdict::Locked),
            "locked after ten failures: {verdicts:?}"
        );

        // Another IP is not locked out, not even for the attacked account, but is slowed.
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(t.begin(other, "carol", now), FREE);
        t.success(other, "carol", now);
        let at = now + ms(8000);
        assert_eq!(t.begin(other, "BOB", at), admit(ms(8000)));
        t.failure(other, "bob", at + ms(8000));
        let later = now + config.lockout + Duration::from_secs(20);
        assert_eq!(t.begin(ip, "bob", later), FREE, "the lockout ends");
    }

    #[test]
    fn success_frees_the_slot_and_clears_the_account() {
        let mut t = Throttle::new(ThrottleConfig::default());
        let ip: IpAddr = "::1".parse().unwrap();
        let mut now = Instant::now();
        for _ in 0..5 {
            let Verdict::Admit { delay } = t.begin(ip, "dan", now) else {
                panic!("not admitted");
            };
            now += delay;
            t.failure(ip, "dan", now);
        }
        assert_eq!(t.begin(ip, "dan", now), admit(ms(1000)));
        t.success(ip, "dan", now + ms(1000));
        // The account starts afresh: from another address it is free at once.
        assert_eq!(t.begin("192.0.2.99".parse().unwrap(), "dan", now), FREE);
        // The IP's slot is free again, and its five failures still count.
        let entry = t.by_ip.entries[&ip_key(ip)];
        assert_eq!((entry.failures, entry.pending), (5, 0));
    }

    /// The bug after issue 14: every attempt in flight counted as a failure, so 20 clients
    /// logging in at once from one address (`pigeon bench imap`, an office behind NAT, a
    /// webmail proxy) were delayed from the 4th and locked out from the 10th. Now the right
    /// passwords take turns for `lockout_after` slots and are neither delayed nor locked,
    /// whatever the order in which they end.
    #[test]
    fn parallel_right_passwords_from_one_ip_take_turns_never_delayed_never_locked() {
        let config = ThrottleConfig::default();
        let slots = config.lockout_after as usize;
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        for seed in 0..20 {
            let mut t = Throttle::new(config.clone());
            let mut mix = Mix(seed);
            let mut now = Instant::now();
            let users: Vec<String> = (0..50).map(|i| format!("user{}", i % 7)).collect();
            let mut waiting: Vec<usize> = (0..50).collect();
            let mut in_flight: Vec<usize> = Vec::new();
            let mut done = 0;
            while done < 50 {
                // Some of the waiting ask (again), in a mixed order.
                let asking = mix.below(waiting.len() + 1);
                for _ in 0..asking {
                    let i = waiting.remove(mix.below(waiting.len()));
                    match t.begin(ip, &users[i], now) {
                        Verdict::Admit { delay } => {
                            assert_eq!(delay, Duration::ZERO, "seed {seed}: a login delayed");
                            in_flight.push(i);
                        }
                        Verdict::Wait { retry } => {
                            assert_eq!(retry, SLOT_RETRY);
                            assert_eq!(in_flight.len(), slots, "seed {seed}: waits for nothing");
                            waiting.push(i);
                        }
                        Verdict::Locked => panic!("seed {seed}: locked out after {done} logins"),
                    }
                }
                assert!(in_flight.len() <= slots);
                // One of those in flight succeeds.
                now += ms(1 + mix.below(40) as u64);
                if !in_flight.is_empty() {
                    let i = in_flight.swap_remove(mix.below(in_flight.len()));
                    t.success(ip, &users[i], now);
                    done += 1;
                }
            }
            let entry = t.by_ip.entries[&ip_key(ip)];
            assert_eq!((entry.failures, entry.pending), (0, 0), "seed {seed}");
            assert!(t.by_account.entries.is_empty(), "seed {seed}");
        }
    }

    /// Issue 14, finding 5: wrong passwords in flight at once from one IP. Only
    /// `lockout_after` are checked; the others wait for a slot, which no failure frees, then
    /// find the IP locked out. Whatever order the answers come in.
    #[test]
    fn parallel_wrong_passwords_from_one_ip_get_at_most_lockout_after_checks() {
        let config = ThrottleConfig::default();
        let ip: IpAddr = "192.0.2.10".parse().unwrap();
        for seed in 0..20 {
            let mut t = Throttle::new(config.clone());
            let mut mix = Mix(seed);
            let start = Instant::now();
            let mut now = start;
            let mut waiting = 50;
            let mut in_flight = 0;
            let mut checked = 0;
            let mut refused = 0;
            while waiting > 0 || in_flight > 0 {
                let asking = mix.below(waiting + 1).max(usize::from(in_flight == 0));
                for _ in 0..asking {
                    match t.begin(ip, "erin", now) {
                        Verdict::Admit { delay } => {
                            assert_eq!(delay, Duration::ZERO, "no failure known yet");
                            waiting -= 1;
                            in_flight += 1;
                        }
                        Verdict::Wait { .. } => {}
                        Verdict::Locked => {
                            waiting -= 1;
                            refused += 1;
                        }
                    }
                }
                now += ms(1 + mix.below(40) as u64);
                if in_flight > 0 {
                    in_flight -= 1;
                    checked += 1;
                    t.failure(ip, "erin", now);
                }
            }
            assert_eq!(checked, config.lockout_after, "seed {seed}");
            assert_eq!(refused, 50 - checked, "seed {seed}");
            // Still locked out, even for an attempt after everything was answered.
            assert_eq!(
                t.begin(ip, "erin", now + Duration::from_secs(60)),
                Verdict::Locked
            );
            // Another IP may still log in to the account (slowed, never locked).
            let other: IpAddr = "192.0.2.11".parse().unwrap();
            assert_eq!(t.begin(other, "erin", now), admit(config.max_delay));
        }
    }

    /// After a few failures, parallel attempts from one IP are answered one delay after
    /// another, not all together, and never more than `max_delay` ahead.
    #[test]
    fn parallel_attempts_after_failures_are_spaced() {
        let config = ThrottleConfig::default();
        let mut t = Throttle::new(config.clone());
        let ip: IpAddr = "192.0.2.12".parse().unwrap();
        let mut now = Instant::now();
        for _ in 0..5 {
            let Verdict::Admit { delay } = t.begin(ip, "gus", now) else {
                panic!("not admitted");
            };
            now += delay;
            t.failure(ip, "gus", now);
        }
        // Five failures: five slots left, each answer a second after the previous.
        let verdicts: Vec<Verdict> = (0..7).map(|_| t.begin(ip, "gus", now)).collect();
        assert_eq!(
            verdicts,
            [
                admit(ms(1000)),
                admit(ms(2000)),
                admit(ms(3000)),
                admit(ms(4000)),
                admit(ms(5000)),
                Verdict::Wait { retry: SLOT_RETRY },
                Verdict::Wait { retry: SLOT_RETRY },
            ]
        );
        // Three more failures: 8 s each, so the second of two parallel ones waits for the
        // schedule to have room.
        for i in 1..=3 {
            t.failure(ip, "gus", now + ms(1000 * i));
        }
        now += ms(5000);
        t.success(ip, "gus", now);
        t.success(ip, "gus", now);
        assert_eq!(t.begin(ip, "nia", now), admit(ms(8000)));
        assert_eq!(t.begin(ip, "nia", now), Verdict::Wait { retry: ms(8000) });
    }

    /// Attempts on one account from many IPs at once are spaced by the growing delay, then
    /// wait `max_delay` each, but are never refused: guessing in parallel cannot keep the real
    /// user out (each guessing address is bounded by its own slots and lockout).
    #[test]
    fn parallel_attempts_on_one_account_are_spaced_never_refused() {
        let config = ThrottleConfig::default();
        let mut t = Throttle::new(config.clone());
        let mut now = Instant::now();
        for i in 0..5u8 {
            let ip = IpAddr::from([198, 51, 100, i]);
            let Verdict::Admit { delay } = t.begin(ip, "fay", now) else {
                panic!("not admitted");
            };
            now += delay;
            t.failure(ip, "fay", now);
        }
        let verdicts: Vec<Verdict> = (0..100u8)
            .map(|i| t.begin(IpAddr::from([203, 0, 113, i]), "fay", now))
            .collect();
        let delays: Vec<Duration> = verdicts
            .iter()
            .map(|v| match v {
                Verdict::Admit { delay } => *delay,
                v => panic!("{v:?}"),
            })
            .collect();
        assert_eq!(
            delays[..7],
            [1000, 2000, 3000, 4000, 5000, 6000, 7000].map(ms)
        );
        assert!(delays[7..].iter().all(|&d| d == config.max_delay));
        // The real user, from their own address, waits at most `max_delay`.
        assert_eq!(
            t.begin("192.0.2.77".parse().unwrap(), "fay", now + ms(100)),
            admit(config.max_delay)
        );
    }

    /// A success on the guesser's own account frees only that attempt's slot, so it cannot
    /// wipe the guesses made at someone else's (the IP still locks out).
    #[test]
    fn a_success_elsewhere_does_not_reset_an_ips_guesses() {
        let mut t = Throttle::new(ThrottleConfig::default());
        let ip: IpAddr = "192.0.2.50".parse().unwrap();
        let mut now = Instant::now();
        let mut locked = false;
        for _ in 0..20 {
            for account in ["victim", "victim", "victim", "attacker"] {
                match t.begin(ip, account, now) {
                    Verdict::Admit { delay } => {
                        now += delay;
                        if account == "attacker" {
                            t.success(ip, account, now);
                        } else {
                            t.failure(ip, account, now);
                        }
                    }
                    Verdict::Wait { .. } => panic!("nothing in flight"),
                    Verdict::Locked => locked = true,
                }
            }
        }
        assert!(locked, "the guessing IP was never locked out");
    }

    /// Typos spread over hours behind one busy address (logins every minute) leak away
    /// instead of adding up to delays and a lockout; a burst of guesses still locks out.
    #[test]
    fn occasional_failures_leak_away_a_burst_still_locks_out() {
        let config = ThrottleConfig::default();
        let mut t = Throttle::new(config.clone());
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let mut now = Instant::now();
        for minute in 0..180u32 {
            let account = format!("user{}", minute % 7);
            assert_eq!(t.begin(ip, &account, now), FREE, "minute {minute}");
            if minute % 10 == 0 {
                t.failure(ip, &account, now);
            } else {
                t.success(ip, &account, now);
            }
            now += Duration::from_secs(60);
        }
        // Eighteen typos in three hours, never delayed or locked; and a burst still locks.
        let mut verdicts = Vec::new();
        for _ in 0..12 {
            let v = t.begin(ip, "victim", now);
            verdicts.push(v);
            if let Verdict::Admit { delay } = v {
                now += delay;
                t.failure(ip, "victim", now);
            }
        }
        assert_eq!(verdicts.last(), Some(&Verdict::Locked), "{verdicts:?}");
    }

    /// An attempt whose credentials could not be checked frees its slot and counts as
    /// nothing.
    #[test]
    fn unchecked_attempts_count_as_nothing() {
        let config = ThrottleConfig::default();
        let mut t = Throttle::new(config.clone());
        let ip: IpAddr = "192.0.2.60".parse().unwrap();
        let now = Instant::now();
        for _ in 0..config.lockout_after {
            assert_eq!(t.begin(ip, "hal", now), FREE);
        }
        assert_eq!(t.begin(ip, "hal", now), Verdict::Wait { retry: SLOT_RETRY });
        for _ in 0..config.lockout_after {
            t.unchecked(ip, "hal", now);
        }
        assert_eq!(t.begin(ip, "hal", now), FREE);
        let entry = t.by_ip.entries[&ip_key(ip)];
        assert_eq!((entry.failures, entry.pending), (0, 1));
        assert_eq!(t.by_account.entries["hal"].failures, 0);
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
            let ip = IpAddr::from([192, 0, 2, i as u8]);
            t.begin(ip, name, now);
            t.failure(ip, name, now);
        }
        assert_eq!(t.by_account.entries.len(), 1);
        assert_eq!(t.by_account.entries["bob@x.test"].failures, 4);
        t.begin("2001:db8::1".parse().unwrap(), "a", now);
        t.begin("2001:db8::ffff:2".parse().unwrap(), "a", now);
        t.begin("::ffff:192.0.2.0".parse().unwrap(), "a", now);
        assert_eq!(t.by_ip.entries.len(), 5, "{:?}", t.by_ip.entries.keys());
        assert_eq!(
            t.by_ip.entries[&"2001:db8::".parse::<IpAddr>().unwrap()].pending,
            2
        );
        let v4 = t.by_ip.entries[&IpAddr::from([192, 0, 2, 0])];
        assert_eq!((v4.failures, v4.pending), (1, 1));
        t.begin(IpAddr::from([1; 4]), &"a".repeat(10_000), now);
        t.begin(IpAddr::from([1; 4]), &"b".repeat(10_000), now);
        assert_eq!(t.by_account.entries.len(), 3);
    }

    /// Quiet keys are forgotten; a key with an attempt in flight never is (its slot must
    /// still be taken back when the attempt ends).
    #[test]
    fn counters_are_forgotten_unless_pending() {
        let config = ThrottleConfig::default();
        let mut t = Throttle::new(config.clone());
        let now = Instant::now();
        for i in 0..2000u16 {
            let ip = IpAddr::from([10, 0, (i >> 8) as u8, i as u8]);
            t.begin(ip, "gil", now);
            t.failure(ip, "gil", now);
        }
        let slow: IpAddr = "10.8.8.8".parse().unwrap();
        t.begin(slow, "ida", now);
        let later = now + config.lockout + config.max_delay + Duration::from_secs(1);
        for _ in 0..1024 {
            let ip = "10.9.9.9".parse().unwrap();
            t.begin(ip, "someone", later);
            t.success(ip, "someone", later);
        }
        assert_eq!(t.by_ip.entries.len(), 2, "{:?}", t.by_ip.entries.keys());
        assert_eq!(t.by_ip.entries[&slow].pending, 1);
        assert_eq!(t.by_account.entries.len(), 1);
        t.failure(slow, "ida", later);
        assert_eq!(t.by_ip.entries[&slow].failures, 1);
    }
}
