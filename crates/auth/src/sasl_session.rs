//! A SASL exchange on any protocol: drives `sasl::ServerExchange`, answering its questions
//! (password checks, SCRAM keys) with the [`Authenticator`], throttled like every login.
//!
//! SCRAM's server signature is sent as a last challenge and the client's empty answer
//! completes the login, which is how SMTP (RFC 4954 §4), POP3 (RFC 5034 §4) and IMAP
//! (RFC 9051 §6.2.2) carry "additional data with success".

use std::net::IpAddr;

use sasl::exchange::ChannelBindings;
use sasl::{Mechanism, Outcome, ServerExchange};
use tracing::error;

use crate::{Authenticated, Authenticator};

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
    /// SCRAM succeeded; waiting for the empty answer to the server signature.
    confirmed: Option<Authenticated>,
}

impl SaslSession {
    /// `None` if the mechanism is unknown. `plus_offered`: SCRAM-SHA-256-PLUS was advertised.
    pub fn new(
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
                    let keys = if auth.gate(self.ip, &username).await {
                        match auth.scram_keys(&username).await {
                            Ok(found) => found.map(|(keys, user)| {
                                self.scram_user = Some(user);
                                keys
                            }),
                            Err(e) => {
                                error!(error = %e, "credential lookup failed");
                                return SaslStep::Temporary;
                            }
                        }
                    } else {
                        None
                    };
                    if keys.is_none() {
                        self.exchange.set_decoy_key(auth.decoy_key());
                    }
                    self.exchange.scram_keys(keys)
                }
                Outcome::Success { final_data, .. } => {
                    let user = self.scram_user.take();
                    auth.record(self.ip, &self.username, user.is_some());
                    let Some(user) = user else {
                        return SaslStep::Invalid;
                    };
                    return match final_data {
                        Some(data) => {
                            self.confirmed = Some(user);
                            SaslStep::Challenge(data)
                        }
                        None => SaslStep::Success(user),
                    };
                }
                Outcome::Failure => {
                    if !self.username.is_empty() {
                        auth.record(self.ip, &self.username, false);
                    }
                    return SaslStep::Invalid;
                }
                Outcome::Malformed(why) => return SaslStep::Malformed(why),
            };
        }
    }
}
