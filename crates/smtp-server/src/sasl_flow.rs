//! AUTH (RFC 4954) on an SMTP session: drives a `sasl::ServerExchange`, answering its
//! questions with the shared [`auth::Authenticator`].

use sasl::exchange::ChannelBindings;
use sasl::{Mechanism, Outcome, ServerExchange};
use smtp_proto::Reply;
use tracing::error;

use crate::Session;

/// An AUTH exchange in progress.
pub(crate) struct Flow {
    exchange: ServerExchange,
    /// The account found for SCRAM, kept until the proof checks out.
    scram_user: Option<auth::Authenticated>,
    /// SCRAM succeeded and its server signature was sent as a last 334; the client's empty
    /// answer completes the login.
    success: Option<auth::Authenticated>,
    username: String,
}

fn invalid() -> Reply {
    Reply::new(535, "5.7.8", "Authentication credentials invalid")
}

impl Session {
    pub(crate) async fn auth_start(&mut self, mechanism: &str, initial: Option<Vec<u8>>) {
        let Some(mechanism) = Mechanism::parse(mechanism) else {
            self.machine.auth_done(
                None,
                Reply::new(504, "5.5.4", "Unrecognized authentication type"),
            );
            return;
        };
        let bindings = self
            .tls
            .as_ref()
            .map(|t| ChannelBindings {
                tls_exporter: t.exporter.clone(),
                tls_server_end_point: t.server_end_point.clone(),
            })
            .unwrap_or_default();
        // -PLUS is advertised whenever TLS is active, so a client that could bind but says "y"
        // was downgraded (RFC 5802 §6).
        let plus_offered = self.tls.is_some();
        let mut exchange = ServerExchange::new(
            mechanism,
            bindings,
            plus_offered,
            &crate::random_bytes::<18>(),
        );
        let outcome = exchange.start(initial.as_deref());
        self.sasl = Some(Flow {
            exchange,
            scram_user: None,
            success: None,
            username: String::new(),
        });
        self.auth_answer(outcome).await;
    }

    pub(crate) async fn auth_step(&mut self, data: &[u8]) {
        let Some(flow) = self.sasl.as_mut() else {
            self.machine
                .auth_done(None, Reply::new(503, "5.5.1", "No AUTH in progress"));
            return;
        };
        if let Some(user) = flow.success.take() {
            // The answer to the server signature must be empty (RFC 4954 §4).
            self.sasl = None;
            if data.is_empty() {
                self.login(user);
            } else {
                self.machine.auth_done(None, invalid());
            }
            return;
        }
        let outcome = flow.exchange.step(data);
        self.auth_answer(outcome).await;
    }

    fn login(&mut self, user: auth::Authenticated) {
        self.machine.auth_done(
            Some(user.address.clone()),
            Reply::new(235, "2.7.0", "Authentication successful"),
        );
        self.user = Some(user);
    }

    async fn auth_answer(&mut self, mut outcome: Outcome) {
        let ip = self.peer_ip();
        loop {
            let Some(flow) = self.sasl.as_mut() else {
                return;
            };
            outcome = match outcome {
                Outcome::Challenge(challenge) => {
                    self.machine.auth_challenge(&challenge);
                    return;
                }
                Outcome::CheckPassword {
                    username, password, ..
                } => {
                    flow.username = username.clone();
                    match self.auth.check_password(ip, &username, &password).await {
                        Ok(Some(user)) => {
                            self.sasl = None;
                            self.login(user);
                        }
                        Ok(None) => {
                            self.sasl = None;
                            self.machine.auth_done(None, invalid());
                        }
                        Err(e) => {
                            error!(error = %e, "credential lookup failed");
                            self.sasl = None;
                            self.machine.auth_done(
                                None,
                                Reply::new(454, "4.7.0", "Temporary authentication failure"),
                            );
                        }
                    }
                    return;
                }
                Outcome::NeedScramKeys { username } => {
                    flow.username = username.clone();
                    let allowed = self.auth.gate(ip, &username).await;
                    let found = if allowed {
                        match self.auth.scram_keys(&username).await {
                            Ok(found) => found,
                            Err(e) => {
                                error!(error = %e, "credential lookup failed");
                                self.sasl = None;
                                self.machine.auth_done(
                                    None,
                                    Reply::new(454, "4.7.0", "Temporary authentication failure"),
                                );
                                return;
                            }
                        }
                    } else {
                        None
                    };
                    let flow = self.sasl.as_mut().expect("flow still present");
                    let keys = found.map(|(keys, user)| {
                        flow.scram_user = Some(user);
                        keys
                    });
                    flow.exchange.scram_keys(keys)
                }
                Outcome::Success { final_data, .. } => {
                    let username = flow.username.clone();
                    let user = flow.scram_user.take();
                    self.auth.record(ip, &username, user.is_some());
                    let Some(user) = user else {
                        self.sasl = None;
                        self.machine.auth_done(None, invalid());
                        return;
                    };
                    match final_data {
                        Some(data) => {
                            flow.success = Some(user);
                            self.machine.auth_challenge(&data);
                        }
                        None => {
                            self.sasl = None;
                            self.login(user);
                        }
                    }
                    return;
                }
                Outcome::Failure => {
                    let username = flow.username.clone();
                    if !username.is_empty() && flow.exchange.mechanism() != Mechanism::Plain {
                        self.auth.record(ip, &username, false);
                    }
                    self.sasl = None;
                    self.machine.auth_done(None, invalid());
                    return;
                }
                Outcome::Malformed(why) => {
                    self.sasl = None;
                    self.machine.auth_done(None, Reply::new(501, "5.5.2", why));
                    return;
                }
            };
        }
    }
}
