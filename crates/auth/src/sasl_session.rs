//! A SASL exchange on any protocol: drives `sasl::ServerExchange`, answering its questions
//! (password checks, SCRAM keys) with the [`Authenticator`], throttled like every login.
//!
//! SCRAM's server signature is sent as a last challenge and the client's empty answer
//! completes the login, which is how SMTP (RFC 4954 §4), POP3 (RFC 5034 §4) and IMAP
//! (RFC 9051 §6.2.2) carry "additional data with success".

use std::net::IpAddr;

use net::TlsInfo;
use sasl::exchange::ChannelBindings;
use sasl::{Mechanism, Outcome, ServerExchange};
use tracing::error;

use crate::{Attempt, Authenticated, Authenticator};

/// What the protocol must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslStep {
    /// Send this challenge and feed the client's answer to [`SaslSession::step`].
    Challenge(Vec<u8>),
    /// Logged in.
    Success(Authenticated),
    /// Wrong credentials (SMTP 535, POP3 -ERR [AUTH], IMAP NO [AUTHENTICATIONFAILED]).
    Invalid,
    /// Malformed client data (SMTP 501, IMAP BAD).
    Malformed(&'static str),
    /// The store failed (SMTP 454, POP3 -ERR [SYS/TEMP], IMAP NO [UNAVAILABLE]).
    Temporary,
}

/// One AUTH exchange.
pub struct SaslSession {
    exchange: ServerExchange,
    ip: IpAddr,
    username: String,
    scram_user: Option<Authenticated>,
    /// SCRAM's attempt, admitted by the throttle when the keys are looked up and reported at
    /// the client's proof. Dropped unreported with the session (the client gave up between
    /// the two, or went away), it counts as a failed login.
    attempt: Option<Attempt>,
    /// SCRAM succeeded; waiting for the empty answer to the server signature.
    confirmed: Option<Authenticated>,
}

/// Bytes of the server's SCRAM nonce (RFC 5802 §5.1: at least 16 random octets advised;
/// base64, they are the 24 characters after the client's part).
const NONCE_LEN: usize = 18;

impl SaslSession {
    /// Begins an AUTH exchange on a connection, the same way for every protocol: the mechanism
    /// looked up, the exchange bound to the connection's TLS channel when there is one (every
    /// protocol advertises SCRAM-SHA-256-PLUS whenever TLS is active, so a client that could
    /// bind but says it cannot was downgraded, RFC 5802 §6), a fresh random server nonce, and
    /// the client's initial response if it sent one (throttled like every login).
    ///
    /// `None` if the mechanism is unknown, or is -PLUS without TLS: the protocol refuses it
    /// in its own words (SMTP 504, POP3 -ERR, IMAP NO).
    pub async fn begin(
        auth: &Authenticator,
        mechanism: &str,
        ip: IpAddr,
        tls: Option<&TlsInfo>,
        initial: Option<&[u8]>,
    ) -> Option<(SaslSession, SaslStep)> {
        let bindings = tls
            .map(|t| ChannelBindings {
                tls_exporter: t.exporter.clone(),
                tls_server_end_point: t.server_end_point.clone(),
            })
            .unwrap_or_default();
        let nonce = common::random::bytes::<NONCE_LEN>();
        let mut session = SaslSession::new(mechanism, ip, bindings, tls.is_some(), &nonce)?;
        let step = session.start(auth, initial).await;
        Some((session, step))
    }

    /// `None` if the mechanism is unknown. `plus_offered`: SCRAM-SHA-256-PLUS was advertised.
    /// Sessions use [`SaslSession::begin`]; this is the exchange alone, for tests.
    pub(crate) fn new(
        mechanism: &str,
        ip: IpAddr,
        bindings: ChannelBindings,
        plus_offered: bool,
        nonce: &[u8],
    ) -> Option<SaslSession> {
        let mechanism = Mechanism::parse(mechanism)?;
        // -PLUS binds the exchange to the TLS channel (RFC 5802 §6); without TLS there is no
        // channel to bind to, so it is neither offered nor accepted.
        if mechanism == Mechanism::ScramSha256Plus
            && bindings.tls_exporter.is_none()
            && bindings.tls_server_end_point.is_none()
        {
            return None;
        }
        Some(SaslSession {
            exchange: ServerExchange::new(mechanism, bindings, plus_offered, nonce),
            ip,
            username: String::new(),
            scram_user: None,
            attempt: None,
            confirmed: None,
        })
    }

    /// Starts with the optional initial response.
    pub async fn start(&mut self, auth: &Authenticator, initial: Option<&[u8]>) -> SaslStep {
        let outcome = self.exchange.start(initial);
        self.drive(auth, outcome).await
    }

    /// Feeds the client's answer to the last challenge.
    pub async fn step(&mut self, auth: &Authenticator, data: &[u8]) -> SaslStep {
        if let Some(user) = self.confirmed.take() {
            return if data.is_empty() {
                SaslStep::Success(user)
            } else {
                SaslStep::Invalid
            };
        }
        let outcome = self.exchange.step(data);
        self.drive(auth, outcome).await
    }

    async fn drive(&mut self, auth: &Authenticator, mut outcome: Outcome) -> SaslStep {
        loop {
            outcome = match outcome {
                Outcome::Challenge(challenge) => return SaslStep::Challenge(challenge),
                Outcome::CheckPassword {
                    username, password, ..
                } => {
                    self.username = username.clone();
                    return match auth.check_password(self.ip, &username, &password).await {
                        Ok(Some(user)) => SaslStep::Success(user),
                        Ok(None) => SaslStep::Invalid,
                        Err(e) => {
                            error!(error = %e, "credential lookup failed");
                            SaslStep::Temporary
                        }
                    };
                }
                Outcome::NeedScramKeys { username } => {
                    self.username = username.clone();
                    let keys = match auth.gate(self.ip, &username).await {
                        Ok(attempt) => match auth.scram_keys(&username).await {
                            Ok(found) => {
                                self.attempt = Some(attempt);
                                found.map(|(keys, user)| {
                                    self.scram_user = Some(user);
                                    keys
                                })
                            }
                            Err(e) => {
                                attempt.unchecked();
                                error!(error = %e, "credential lookup failed");
                                return SaslStep::Temporary;
                            }
                        },
                        Err(refused @ crate::Refused::Busy) => {
                            crate::log_refused(self.ip, &username, refused);
                            return SaslStep::Temporary;
                        }
                        // The exchange goes on with made-up keys and fails at the proof.
                        Err(refused) => {
                            crate::log_refused(self.ip, &username, refused);
                            None
                        }
                    };
                    if keys.is_none() {
                        self.exchange.set_decoy_key(auth.decoy_key());
                    }
                    self.exchange.scram_keys(keys)
                }
                Outcome::Success { final_data, .. } => {
                    let user = self.scram_user.take();
                    let attempt = self.attempt.take();
                    let Some((user, attempt)) = user.zip(attempt) else {
                        // Made-up keys cannot be proven; should it happen anyway, it fails.
                        self.report_failure();
                        return SaslStep::Invalid;
                    };
                    attempt.success();
                    return match final_data {
                        Some(data) => {
                            self.confirmed = Some(user);
                            SaslStep::Challenge(data)
                        }
                        None => SaslStep::Success(user),
                    };
                }
                Outcome::Failure => {
                    self.report_failure();
                    return SaslStep::Invalid;
                }
                Outcome::Malformed(why) => return SaslStep::Malformed(why),
            };
        }
    }

    /// The exchange failed: SCRAM's attempt, if the throttle admitted one, is a failure (one
    /// it refused was logged then).
    fn report_failure(&mut self) {
        if let Some(attempt) = self.attempt.take() {
            attempt.failure();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use store::{Address, Secrets, Store};

    use super::*;

    async fn authenticator() -> (tempfile::TempDir, Authenticator) {
        authenticator_with(sasl::ThrottleConfig::default()).await
    }

    async fn authenticator_with(
        throttle: sasl::ThrottleConfig,
    ) -> (tempfile::TempDir, Authenticator) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(store_sqlite::SqliteStore::open(dir.path()).unwrap());
        store.add_domain("a.test").await.unwrap();
        let secrets = Secrets {
            password_hash: sasl::hash_password("right", &[1; 16]).unwrap(),
            scram: Some(sasl::ScramKeys::derive("right", b"salt", 4096).to_stored()),
        };
        store
            .create_account(&Address::parse("u@a.test").unwrap(), &secrets)
            .await
            .unwrap();
        let auth = Authenticator::new(store, throttle, [9; 32]);
        (dir, auth)
    }

    fn tls() -> TlsInfo {
        TlsInfo {
            version: "TLSv1.3".into(),
            cipher: "TLS13_AES_256_GCM_SHA384".into(),
            exporter: Some(vec![7; 32]),
            server_end_point: None,
        }
    }

    /// The server nonce of a SCRAM server-first message.
    fn nonce(step: SaslStep) -> String {
        let SaslStep::Challenge(first) = step else {
            panic!("{step:?}");
        };
        let first = String::from_utf8(first).unwrap();
        first.split(',').next().unwrap()[2..].to_string()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn begin_looks_up_binds_and_starts() {
        let (_dir, auth) = authenticator().await;
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let begin = |mechanism: &'static str, tls: Option<TlsInfo>, initial: &'static [u8]| {
            let auth = &auth;
            async move {
                SaslSession::begin(auth, mechanism, ip, tls.as_ref(), Some(initial))
                    .await
                    .map(|(_, step)| step)
            }
        };
        assert_eq!(begin("CRAM-MD5", None, b"").await, None);
        assert_eq!(
            begin("SCRAM-SHA-256-PLUS", None, b"").await,
            None,
            "no -PLUS without TLS"
        );
        let Some(SaslStep::Success(user)) = begin("PLAIN", None, b"\0u@a.test\0right").await else {
            panic!("PLAIN with an initial response logs in at once");
        };
        assert_eq!(user.address, "u@a.test");

        // A fresh random nonce after the client's part each time.
        let first: &[u8] = b"n,,n=u@a.test,r=abc";
        let a = nonce(begin("SCRAM-SHA-256", Some(tls()), first).await.unwrap());
        let b = nonce(begin("SCRAM-SHA-256", Some(tls()), first).await.unwrap());
        assert!(a.starts_with("abc") && a.len() == 3 + 24, "{a}");
        assert_ne!(a, b);

        // On TLS -PLUS counts as offered: a client that could bind but says "y" was
        // downgraded (RFC 5802 §6); without TLS "y" is fine.
        let downgraded: &[u8] = b"y,,n=u@a.test,r=abc";
        assert_eq!(
            begin("SCRAM-SHA-256", Some(tls()), downgraded).await,
            Some(SaslStep::Invalid)
        );
        nonce(begin("SCRAM-SHA-256", None, downgraded).await.unwrap());
    }

    /// A SCRAM exchange abandoned after the keys were looked up (the client went away, or
    /// never sent its proof) counts as a failed login: otherwise its throttle slot would be
    /// taken forever, or a guesser could learn something without it counting.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn abandoned_scram_exchanges_count_as_failures() {
        let (_dir, auth) = authenticator_with(sasl::ThrottleConfig {
            lockout_after: 3,
            max_delay: std::time::Duration::from_millis(100),
            ..sasl::ThrottleConfig::default()
        })
        .await;
        let ip: IpAddr = "192.0.2.2".parse().unwrap();
        let first: &[u8] = b"n,,n=u@a.test,r=abc";
        for _ in 0..3 {
            let (session, step) = SaslSession::begin(&auth, "SCRAM-SHA-256", ip, None, Some(first))
                .await
                .unwrap();
            nonce(step);
            drop(session);
        }
        let plain: &[u8] = b"\0u@a.test\0right";
        let step = SaslSession::begin(&auth, "PLAIN", ip, None, Some(plain)).await;
        assert_eq!(
            step.map(|(_, step)| step),
            Some(SaslStep::Invalid),
            "locked out after three abandoned exchanges"
        );
    }
}
