//! The authentication service every protocol shares: password checks against the store with
//! the failed-login throttle (`sasl::Throttle`), SCRAM key lookup, and a cache of recently
//! verified passwords.
//!
//! Why a crate of its own: `sasl` must stay free of IO and clocks, and SMTP, IMAP, POP3 and
//! webmail must all throttle and verify the same way.
//!
//! Argon2 verification is deliberately slow (tens of milliseconds), so it runs on the blocking
//! pool, and a successful check is remembered for [`CACHE_TTL`] as a keyed SHA-256 of the
//! password bound to the stored hash: a repeated login costs a hash, and a password change
//! (a new stored hash) invalidates the entry at once. At most one Argon2 check per CPU runs at
//! a time (each takes ~19 MiB), so a login storm cannot exhaust memory; a check that waited
//! looks at the cache again first, so a burst of logins for one user costs one Argon2 run.
//! Passwords are never logged.

mod sasl_session;

pub use sasl_session::{SaslSession, SaslStep};

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sasl::{ScramKeys, Throttle, ThrottleConfig};
use store::{AccountId, Address, Store, StoreError};
use tracing::{info, warn};

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

/// Shared by every session of every protocol.
pub struct Authenticator {
    store: Arc<dyn Store>,
    throttle: Mutex<Throttle>,
    cache: Mutex<HashMap<AccountId, CacheEntry>>,
    argon2_permits: tokio::sync::Semaphore,
    /// Random key for the cache digests, so a memory dump does not reveal plain SHA-256s.
    cache_key: [u8; 32],
}

impl Authenticator {
    /// `cache_key` must be random bytes (the binary reads them from the OS).
    pub fn new(
        store: Arc<dyn Store>,
        throttle: ThrottleConfig,
        cache_key: [u8; 32],
    ) -> Authenticator {
        Authenticator {
            store,
            throttle: Mutex::new(Throttle::new(throttle)),
            cache: Mutex::new(HashMap::new()),
            argon2_permits: tokio::sync::Semaphore::new(
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(2),
            ),
            cache_key,
        }
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

    /// Waits out the throttle's delay for this attempt; returns false if the attempt must fail
    /// whatever its credentials (lockout).
    pub async fn gate(&self, ip: IpAddr, username: &str) -> bool {
        let verdict = self.throttle.lock().expect("throttle lock poisoned").check(
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

    /// Records the outcome of an attempt that passed [`Authenticator::gate`].
    pub fn record(&self, ip: IpAddr, username: &str, success: bool) {
        let mut throttle = self.throttle.lock().expect("throttle lock poisoned");
        if success {
            throttle.success(ip, username);
            info!(%ip, user = %username, "login");
        } else {
            throttle.failure(ip, username, Instant::now());
            warn!(%ip, user = %username, "failed login");
        }
    }

    /// PLAIN, LOGIN, IMAP LOGIN, POP3 USER/PASS, webmail: checks a password, with throttling.
    /// `Ok(None)` means the credentials are wrong (or the IP is locked out).
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
        let Ok(address) = Address::parse(username) else {
            return Ok(None);
        };
        let Some(credentials) = self.store.credentials(&address).await? else {
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
        let _permit = self
            .argon2_permits
            .acquire()
            .await
            .map_err(|e| StoreError::Backend(Box::new(e)))?;
        if self.cached(user.account_id, &stored, &digest) {
            return Ok(Some(user));
        }
        let password = password.to_owned();
        let hash = stored.clone();
        let ok = tokio::task::spawn_blocking(move || sasl::verify_password(&password, &hash))
            .await
            .map_err(|e| StoreError::Backend(Box::new(e)))?;
        if !ok {
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
}
