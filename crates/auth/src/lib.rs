//! The authentication service every protocol shares: password checks against the store with
//! the failed-login throttle (`sasl::Throttle`), SCRAM key lookup, and a cache of recently
//! verified passwords.
//!
//! Why a crate of its own: `sasl` must stay free of IO and clocks, and SMTP, IMAP, POP3 and
//! webmail must all throttle and verify the same way.
//!
//! Every attempt passes the throttle's gate first ([`Authenticator::gate`]): it waits for a
//! slot of its address and out its delay, and comes back as an [`Attempt`], a guard that
//! reports the outcome to the throttle exactly once, and a failure if it is dropped
//! unreported. So at most `lockout_after` passwords from one address are checked before its
//! lockout however many arrive at once (issue 14, finding 5), while parallel logins with the
//! right password only take turns (see `sasl::throttle`).
//!
//! Argon2 verification is deliberately slow (tens of milliseconds) and takes 19 MiB, so it runs
//! on a fixed pool of threads that reuse their memory ([`pool`]). A successful check is
//! remembered for [`CACHE_TTL`] as a keyed SHA-256 of the password bound to the stored hash:
//! a repeated login costs a hash, and a password change (a new stored hash) invalidates the
//! entry at once. Passwords are never logged.
//!
//! Timing (issue 14, finding 6): an unknown user, a malformed user name, or an account whose
//! stored hash cannot be used costs a full Argon2 check against a dummy hash with the same
//! parameters, so a wrong password takes as long whether or not the user exists. Only a
//! correct password can answer faster (from the cache): entries exist only after a correct
//! password was given, and a guess hits one only if it is that password, so the fast answer
//! tells a guesser nothing a success does not tell anyway. The cache is consulted only after
//! the gate, so it never lets guesses past the throttle either.

pub mod pool;
mod sasl_session;

pub use sasl_session::{SaslSession, SaslStep};

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sasl::throttle::Verdict;
use sasl::{ScramKeys, Throttle, ThrottleConfig};
use store::{AccountId, Address, Store, StoreError};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::pool::HashPool;

/// How long a verified password is remembered.
pub const CACHE_TTL: Duration = Duration::from_secs(600);

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub account_id: AccountId,
    /// The canonical address (lowercase), whatever case the user typed.
    pub address: String,
}

struct CacheEntry {
    stored_hash: String,
    digest: [u8; 32],
    expires: Instant,
}

/// Argon2 threads unless configured: one per CPU, at most 4 (76 MiB). Four already check
/// about 150 passwords a second, and repeated logins are answered from the cache.
pub fn default_hash_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(4)
}

/// The throttle, shared with the [`Attempt`]s it admitted.
struct Gate {
    throttle: Mutex<Throttle>,
    /// Wakes the attempts waiting for a slot whenever an attempt ends.
    ended: Notify,
}

impl Gate {
    fn throttle(&self) -> MutexGuard<'_, Throttle> {
        // The counters are consistent between calls (no call panics halfway), and a login
        // must not fail, nor an `Attempt`'s drop panic, because another thread panicked.
        self.throttle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Why [`Authenticator::gate`] refused an attempt: it must fail without its credentials being
/// checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The address is locked out.
    LockedOut,
    /// The address had no free slot (`lockout_after` attempts failed or in flight) for
    /// `max_delay`.
    Busy,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refused::LockedOut => "address locked out",
            Refused::Busy => "too many logins in flight from this address; try again later",
        })
    }
}

impl std::error::Error for Refused {}

/// A login attempt the throttle admitted: its credentials may be checked now. Report the
/// outcome with [`Attempt::success`], [`Attempt::failure`] or [`Attempt::unchecked`]; an
/// attempt dropped unreported (the connection went away mid-check, a SCRAM exchange abandoned
/// before the client's proof) counts as a failure, since its password may have been checked,
/// and so that its slot is never lost.
#[must_use = "an attempt dropped unreported counts as a failed login"]
pub struct Attempt {
    gate: Arc<Gate>,
    ip: IpAddr,
    username: String,
    reported: bool,
}

impl Attempt {
    /// The credentials were right.
    pub fn success(mut self) {
        self.reported = true;
        self.gate
            .throttle()
            .success(self.ip, &self.username, Instant::now());
        self.gate.ended.notify_waiters();
        info!(ip = %self.ip, user = %self.username, "login");
    }

    /// The credentials were wrong.
    pub fn failure(mut self) {
        self.reported = true;
        self.fail();
        warn!(ip = %self.ip, user = %self.username, "failed login");
    }

    /// The credentials could not be checked (the store or the password check failed; the
    /// caller logs why): the attempt counts as nothing.
    pub fn unchecked(mut self) {
        self.reported = true;
        self.gate
            .throttle()
            .unchecked(self.ip, &self.username, Instant::now());
        self.gate.ended.notify_waiters();
    }

    fn fail(&self) {
        self.gate
            .throttle()
            .failure(self.ip, &self.username, Instant::now());
        self.gate.ended.notify_waiters();
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.reported {
            self.fail();
            warn!(ip = %self.ip, user = %self.username, "login abandoned before its answer; counted as failed");
        }
    }
}

/// Shared by every session of every protocol.
pub struct Authenticator {
    store: Arc<dyn Store>,
    gate: Arc<Gate>,
    /// The longest an attempt waits for its address's turn or in a lockout.
    max_delay: Duration,
    cache: Mutex<HashMap<AccountId, CacheEntry>>,
    pool: HashPool,
    /// What unknown users are checked against (`sasl::dummy_hash`).
    dummy_hash: String,
    /// Random key for the cache digests, so a memory dump does not reveal plain SHA-256s.
    cache_key: [u8; 32],
}

impl Authenticator {
    /// `cache_key` must be random bytes (the binary reads them from the OS). Argon2 runs on
    /// [`default_hash_workers`] threads.
    pub fn new(
        store: Arc<dyn Store>,
        throttle: ThrottleConfig,
        cache_key: [u8; 32],
    ) -> Authenticator {
        Authenticator::with_hash_workers(store, throttle, cache_key, 0)
    }

    /// Like [`Authenticator::new`] with `hash_workers` Argon2 threads (0: the default), each
    /// holding 19 MiB from the start.
    pub fn with_hash_workers(
        store: Arc<dyn Store>,
        throttle: ThrottleConfig,
        cache_key: [u8; 32],
        hash_workers: usize,
    ) -> Authenticator {
        let workers = match hash_workers {
            0 => default_hash_workers(),
            n => n,
        };
        let dummy_hash = sasl::dummy_hash();
        Authenticator {
            store,
            max_delay: throttle.max_delay,
            gate: Arc::new(Gate {
                throttle: Mutex::new(Throttle::new(throttle)),
                ended: Notify::new(),
            }),
            cache: Mutex::new(HashMap::new()),
            pool: HashPool::new(workers, &dummy_hash),
            dummy_hash,
            cache_key,
        }
    }

    /// The key SCRAM derives an unknown user's made-up salt with: secret, and the same for a
    /// name for as long as this process runs.
    pub fn decoy_key(&self) -> [u8; 32] {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.cache_key);
        let mut out = [0u8; 32];
        out.copy_from_slice(ring::hmac::sign(&key, b"pigeon scram decoy salt").as_ref());
        out
    }

    fn digest(&self, stored_hash: &str, password: &str) -> [u8; 32] {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.cache_key);
        let mut ctx = ring::hmac::Context::with_key(&key);
        ctx.update(stored_hash.as_bytes());
        ctx.update(&[0]);
        ctx.update(password.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    /// An attempt begins: waits for a slot of its address (at most `max_delay` in all) and
    /// out its delay, then may check the credentials and must report the outcome on the
    /// returned [`Attempt`]. Refused attempts are answered `max_delay` after they began, and
    /// must fail whatever their credentials.
    pub async fn gate(&self, ip: IpAddr, username: &str) -> Result<Attempt, Refused> {
        let deadline = tokio::time::Instant::now() + self.max_delay;
        loop {
            // Registered before asking, so an attempt that ends in between still wakes us.
            let ended = self.gate.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            let verdict = self.gate.throttle().begin(ip, username, Instant::now());
            match verdict {
                Verdict::Admit { delay } => {
                    // Held from here: an attempt dropped during its delay counts too.
                    let attempt = Attempt {
                        gate: self.gate.clone(),
                        ip,
                        username: username.to_owned(),
                        reported: false,
                    };
                    if !delay.is_zero() {
                        debug!(%ip, user = %username, delay_ms = delay.as_millis() as u64, "login attempt throttled");
                        tokio::time::sleep(delay).await;
                    }
                    return Ok(attempt);
                }
                Verdict::Locked => {
                    tokio::time::sleep_until(deadline).await;
                    return Err(Refused::LockedOut);
                }
                Verdict::Wait { retry } => {
                    let now = tokio::time::Instant::now();
                    if now >= deadline {
                        return Err(Refused::Busy);
                    }
                    let _ = tokio::time::timeout_at((now + retry).min(deadline), ended).await;
                }
            }
        }
    }

    /// PLAIN, LOGIN, IMAP LOGIN, POP3 USER/PASS, webmail: checks a password, with throttling.
    /// `Ok(None)` means the credentials are wrong (or the IP is locked out); `Err` that the
    /// check could not be made (store failure, Argon2 queue full, too many attempts in flight
    /// from the address for too long): answer "try again later".
    pub async fn check_password(
        &self,
        ip: IpAddr,
        username: &str,
        password: &str,
    ) -> Result<Option<Authenticated>, StoreError> {
        let attempt = match self.gate(ip, username).await {
            Ok(attempt) => attempt,
            Err(refused) => {
                log_refused(ip, username, refused);
                return match refused {
                    Refused::LockedOut => Ok(None),
                    // Nothing was checked and the address is not locked out: "try again
                    // later", not "wrong password", which makes clients drop the saved one.
                    Refused::Busy => Err(StoreError::Backend(Box::new(refused))),
                };
            }
        };
        match self.verify(username, password).await {
            Ok(Some(user)) => {
                attempt.success();
                Ok(Some(user))
            }
            Ok(None) => {
                attempt.failure();
                Ok(None)
            }
            Err(e) => {
                attempt.unchecked();
                Err(e)
            }
        }
    }

    async fn verify(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<Authenticated>, StoreError> {
        let credentials = match Address::parse(username) {
            Ok(address) => self.store.credentials(&address).await?,
            Err(_) => None,
        };
        let Some(credentials) = credentials else {
            // As slow as a wrong password for a real user.
            self.argon2(password, &self.dummy_hash).await?;
            return Ok(None);
        };
        let stored = credentials.secrets.password_hash;
        let digest = self.digest(&stored, password);
        let user = Authenticated {
            account_id: credentials.account_id,
            address: credentials.address,
        };
        if self.cached(user.account_id, &stored, &digest) {
            return Ok(Some(user));
        }
        if !self.argon2(password, &stored).await? {
            return Ok(None);
        }
        let mut cache = self.cache.lock().expect("cache lock poisoned");
        if cache.len() > 100_000 {
            let now = Instant::now();
            cache.retain(|_, e| e.expires > now);
        }
        cache.insert(
            user.account_id,
            CacheEntry {
                stored_hash: stored,
                digest,
                expires: Instant::now() + CACHE_TTL,
            },
        );
        Ok(Some(user))
    }

    /// One Argon2 check on the pool; an unusable stored hash is logged and never matches.
    async fn argon2(&self, password: &str, phc: &str) -> Result<bool, StoreError> {
        match self.pool.verify(password, phc).await {
            Ok(Ok(matches)) => Ok(matches),
            Ok(Err(e)) => {
                warn!(error = %e, "stored password hash cannot be checked");
                Ok(false)
            }
            Err(e) => {
                warn!(error = %e, "password check not made");
                Err(StoreError::Backend(Box::new(e)))
            }
        }
    }

    fn cached(&self, account: AccountId, stored: &str, digest: &[u8; 32]) -> bool {
        let cache = self.cache.lock().expect("cache lock poisoned");
        cache.get(&account).is_some_and(|entry| {
            entry.stored_hash == stored && entry.digest == *digest && entry.expires > Instant::now()
        })
    }

    /// SCRAM: the stored keys and the account, or `None` for an unknown user (the exchange
    /// then fails without telling).
    pub async fn scram_keys(
        &self,
        username: &str,
    ) -> Result<Option<(ScramKeys, Authenticated)>, StoreError> {
        let Ok(address) = Address::parse(username) else {
            return Ok(None);
        };
        let Some(credentials) = self.store.credentials(&address).await? else {
            return Ok(None);
        };
        let Some(keys) = credentials
            .secrets
            .scram
            .as_deref()
            .and_then(ScramKeys::from_stored)
        else {
            return Ok(None);
        };
        Ok(Some((
            keys,
            Authenticated {
                account_id: credentials.account_id,
                address: credentials.address,
            },
        )))
    }
}

/// Logs why an attempt failed unchecked.
pub(crate) fn log_refused(ip: IpAddr, username: &str, refused: Refused) {
    match refused {
        Refused::LockedOut => warn!(%ip, user = %username, "login refused: locked out"),
        Refused::Busy => {
            warn!(%ip, user = %username, "login refused: too many logins in flight from this address")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::Secrets;

    async fn setup(throttle: ThrottleConfig) -> (tempfile::TempDir, Authenticator) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(store_sqlite::SqliteStore::open(dir.path()).unwrap());
        store.add_domain("a.test").await.unwrap();
        let secrets = Secrets {
            password_hash: sasl::hash_password("right", &[1; 16]).unwrap(),
            scram: Some(ScramKeys::derive("right", b"salt", 4096).to_stored()),
        };
        store
            .create_account(&Address::parse("u@a.test").unwrap(), &secrets)
            .await
            .unwrap();
        (dir, Authenticator::new(store, throttle, [9; 32]))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn passwords_cache_and_lockout() {
        let config = ThrottleConfig {
            free_failures: 1,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            lockout_after: 3,
            lockout: Duration::from_secs(60),
        };
        let (_dir, auth) = setup(config).await;
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let ok = auth
            .check_password(ip, "U@A.test", "right")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ok.address, "u@a.test");
        // Second time from the cache: same answer.
        assert!(
            auth.check_password(ip, "u@a.test", "right")
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            auth.check_password(ip, "u@a.test", "wrong")
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            auth.check_password(ip, "nobody@a.test", "x")
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            auth.check_password(ip, "not an address", "x")
                .await
                .unwrap()
                .is_none()
        );
        // Three failures from this IP: locked out, even with the right password.
        assert!(
            auth.check_password(ip, "u@a.test", "right")
                .await
                .unwrap()
                .is_none()
        );
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        assert!(
            auth.check_password(other, "u@a.test", "right")
                .await
                .unwrap()
                .is_some()
        );
        assert!(auth.scram_keys("u@a.test").await.unwrap().is_some());
        assert!(auth.scram_keys("nobody@a.test").await.unwrap().is_none());
    }

    /// Issue 14, finding 5: 99 wrong passwords in flight at once from one IP, then the right
    /// one. Only `lockout_after` are checked: the others, and the right one, wait for a slot
    /// that no failure frees, and are refused unchecked; then the IP is locked out.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parallel_guesses_cannot_slip_past_the_lockout() {
        let config = ThrottleConfig {
            free_failures: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(20),
            lockout_after: 10,
            lockout: Duration::from_secs(60),
        };
        let (_dir, auth) = setup(config).await;
        let auth = Arc::new(auth);
        let ip: IpAddr = "192.0.2.20".parse().unwrap();
        let mut guesses = Vec::new();
        for i in 0..99 {
            let auth = auth.clone();
            guesses.push(tokio::spawn(async move {
                // Refused for lack of a slot is `Err` ("try again later"); either way no
                // guess may succeed.
                auth.check_password(ip, "u@a.test", &format!("guess{i}"))
                    .await
                    .ok()
                    .flatten()
            }));
        }
        // Every guess has passed the gate (it is the first thing each does) and most are
        // still waiting for their answer.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let right = auth.check_password(ip, "u@a.test", "right").await;
        assert!(
            !matches!(right, Ok(Some(_))),
            "the right password got past the lockout"
        );
        for guess in guesses {
            assert!(guess.await.unwrap().is_none());
        }
        assert_eq!(
            auth.gate(ip, "u@a.test").await.err(),
            Some(Refused::LockedOut)
        );
        // The account itself is not locked: from elsewhere the right password works (slowed
        // by the account's failures).
        let other: IpAddr = "192.0.2.21".parse().unwrap();
        let answer = auth
            .check_password(other, "u@a.test", "right")
            .await
            .unwrap();
        assert!(answer.is_some());
    }

    /// The bug after issue 14: 50 logins with the right password at once from one address
    /// (an office behind NAT, a webmail proxy) were delayed, then the address locked out.
    /// Now they take turns for the address's slots and all succeed, none counted as failed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parallel_right_passwords_from_one_ip_all_succeed() {
        let (_dir, auth) = setup(ThrottleConfig::default()).await;
        let auth = Arc::new(auth);
        let ip: IpAddr = "192.0.2.40".parse().unwrap();
        let logins: Vec<_> = (0..50)
            .map(|_| {
                let auth = auth.clone();
                tokio::spawn(async move { auth.check_password(ip, "u@a.test", "right").await })
            })
            .collect();
        for login in logins {
            assert!(login.await.unwrap().unwrap().is_some());
        }
        // Nothing was counted against the address: all its slots are free, with no delay.
        let mut attempts = Vec::new();
        for _ in 0..10 {
            let start = Instant::now();
            attempts.push(auth.gate(ip, "u@a.test").await.unwrap());
            assert!(start.elapsed() < Duration::from_millis(100));
        }
        for attempt in attempts {
            attempt.success();
        }
    }

    /// An attempt dropped before its outcome was reported counts as a failure (its slot is
    /// not lost either). An address with `lockout_after` attempts in flight waits for a slot
    /// at most `max_delay`, then is refused unchecked; one whose credentials could not be
    /// checked counts as nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn abandoned_attempts_fail_and_slots_are_bounded() {
        let config = ThrottleConfig {
            free_failures: 10,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(50),
            lockout_after: 3,
            lockout: Duration::from_secs(60),
        };
        let (_dir, auth) = setup(config).await;
        let ip: IpAddr = "192.0.2.50".parse().unwrap();
        let first = auth.gate(ip, "u@a.test").await.unwrap();
        let second = auth.gate(ip, "u@a.test").await.unwrap();
        let third = auth.gate(ip, "u@a.test").await.unwrap();
        let start = Instant::now();
        assert_eq!(auth.gate(ip, "u@a.test").await.err(), Some(Refused::Busy));
        assert!(start.elapsed() >= Duration::from_millis(50));
        // A password login refused for lack of a slot is "try again later" (`Err`), never
        // "wrong credentials" (`Ok(None)`), which makes clients forget the saved password.
        assert!(auth.check_password(ip, "u@a.test", "right").await.is_err());
        // A slot freed while an attempt waits for one is taken.
        let auth = Arc::new(auth);
        let waiting = tokio::spawn({
            let auth = auth.clone();
            async move { auth.gate(ip, "u@a.test").await.is_ok() }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        first.unchecked();
        assert!(waiting.await.unwrap(), "the freed slot was not taken");
        // The attempt `waiting` took, `second` and `third` were dropped unreported: three
        // failures (`first` counted as nothing), so the address is locked out.
        drop(second);
        drop(third);
        assert_eq!(
            auth.gate(ip, "u@a.test").await.err(),
            Some(Refused::LockedOut)
        );
    }

    /// Unknown users, malformed names and accounts without a usable hash are checked against
    /// the dummy hash and fail; a password change invalidates the cache.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unknown_users_and_unusable_hashes_fail() {
        // The throttle out of the way: these are all failures from one address.
        let (_dir, auth) = setup(ThrottleConfig {
            free_failures: 1000,
            lockout_after: 1000,
            ..ThrottleConfig::default()
        })
        .await;
        let ip: IpAddr = "192.0.2.30".parse().unwrap();
        for user in ["nobody@a.test", "", "not an address", "u@unknown.test"] {
            assert!(
                auth.check_password(ip, user, "right")
                    .await
                    .unwrap()
                    .is_none()
            );
        }
        let address = Address::parse("u@a.test").unwrap();
        assert!(
            auth.check_password(ip, "u@a.test", "right")
                .await
                .unwrap()
                .is_some()
        );
        auth.store
            .set_password(
                &address,
                &Secrets {
                    password_hash: sasl::hash_password("new", &[2; 16]).unwrap(),
                    scram: None,
                },
            )
            .await
            .unwrap();
        assert!(
            auth.check_password(ip, "u@a.test", "right")
                .await
                .unwrap()
                .is_none(),
            "the cached old password no longer works"
        );
        assert!(
            auth.check_password(ip, "u@a.test", "new")
                .await
                .unwrap()
                .is_some()
        );
        auth.store
            .set_password(
                &address,
                &Secrets {
                    password_hash: String::new(),
                    scram: None,
                },
            )
            .await
            .unwrap();
        assert!(
            auth.check_password(ip, "u@a.test", "")
                .await
                .unwrap()
                .is_none()
        );
    }
}
