//! The authentication service every protocol shares: password checks against the store with
//! the failed-login throttle (`sasl::Throttle`), SCRAM key lookup, and a cache of recently
//! verified passwords.
//!
//! Why a crate of its own: `sasl` must stay free of IO and clocks, and SMTP, IMAP, POP3 and
//! webmail must all throttle and verify the same way.
//!
//! Every attempt passes the throttle's gate first, which counts it as a failure from that
//! moment until it succeeds, so parallel attempts cannot slip past a lockout (issue 14,
//! finding 5; see `sasl::throttle`).
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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sasl::{ScramKeys, Throttle, ThrottleConfig};
use store::{AccountId, Address, Store, StoreError};
use tracing::{info, warn};

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

/// Shared by every session of every protocol.
pub struct Authenticator {
    store: Arc<dyn Store>,
    throttle: Mutex<Throttle>,
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
            throttle: Mutex::new(Throttle::new(throttle)),
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

    /// An attempt begins: it is counted as a failure until [`Authenticator::record`] says it
    /// succeeded. Waits out the throttle's delay; returns false if the attempt must fail
    /// whatever its credentials (lockout, or too many attempts already waiting).
    pub async fn gate(&self, ip: IpAddr, username: &str) -> bool {
        let verdict = self.throttle.lock().expect("throttle lock poisoned").begin(
            ip,
            username,
            Instant::now(),
        );
        if !verdict.delay.is_zero() {
            tracing::debug!(%ip, user = %username, delay_ms = verdict.delay.as_millis() as u64, locked = verdict.locked, "login attempt throttled");
            tokio::time::sleep(verdict.delay).await;
        }
        !verdict.locked
    }

    /// Records the outcome of an attempt that passed [`Authenticator::gate`]: a success clears
    /// the counters; a failure was counted when the attempt began.
    pub fn record(&self, ip: IpAddr, username: &str, success: bool) {
        if success {
            self.throttle
                .lock()
                .expect("throttle lock poisoned")
                .success(ip, username);
            info!(%ip, user = %username, "login");
        } else {
            warn!(%ip, user = %username, "failed login");
        }
    }

    /// PLAIN, LOGIN, IMAP LOGIN, POP3 USER/PASS, webmail: checks a password, with throttling.
    /// `Ok(None)` means the credentials are wrong (or the IP is locked out); `Err` that the
    /// check could not be made (store failure, Argon2 queue full): answer "try again later".
    pub async fn check_password(
        &self,
        ip: IpAddr,
        username: &str,
        password: &str,
    ) -> Result<Option<Authenticated>, StoreError> {
        if !self.gate(ip, username).await {
            warn!(%ip, user = %username, "login refused: locked out");
            return Ok(None);
        }
        let verified = self.verify(username, password).await?;
        self.record(ip, username, verified.is_some());
        Ok(verified)
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
    /// one. Each attempt is counted when it starts, so the right one finds the IP locked out.
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
                auth.check_password(ip, "u@a.test", &format!("guess{i}"))
                    .await
                    .unwrap()
            }));
        }
        // Every guess has passed the gate (it is the first thing each does) and most are
        // still waiting for their answer.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let right = auth.check_password(ip, "u@a.test", "right").await.unwrap();
        assert!(right.is_none(), "the right password got past the lockout");
        for guess in guesses {
            assert!(guess.await.unwrap().is_none());
        }
        // The account itself is not locked: from elsewhere the right password works.
        let other: IpAddr = "192.0.2.21".parse().unwrap();
        let mut answer = None;
        for _ in 0..50 {
            // Slowed by the account's failures; retried as a user would.
            answer = auth
                .check_password(other, "u@a.test", "right")
                .await
                .unwrap();
            if answer.is_some() {
                break;
            }
        }
        assert!(answer.is_some());
    }

    /// Unknown users, malformed names and accounts without a usable hash are checked against
    /// the dummy hash and fail; a password change invalidates the cache.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unknown_users_and_unusable_hashes_fail() {
        let (_dir, auth) = setup(ThrottleConfig::default()).await;
        let ip: IpAddr = "192.0.2.30".parse().unwrap();
        for user in ["nobody@a.test", "", "not an address", "u@unknown.test"] {
            assert!(
                auth.check_password(ip, user, "right")
                    .await
                    .unwrap()
                    .is_none()
            );
            auth.record(ip, user, true); // keep the throttle out of the way
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
        auth.record(ip, "u@a.test", true);
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
