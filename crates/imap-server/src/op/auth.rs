//! Logging in: CAPABILITY (its answer changes with the login), STARTTLS, LOGIN and
//! AUTHENTICATE (RFC 9051 §6.1–6.2, SASL-IR RFC 4959).

use auth::{SaslSession, SaslStep};
use net::Flow;

use crate::Session;
use crate::reply::{CommandError, CommandResult, Completed, ok, ok_code};
use crate::state::{Sasl, State, Verb};

impl Session {
    /// LOGIN and AUTHENTICATE need TLS, or a loopback peer when the settings allow that.
    pub(crate) fn login_allowed(&self) -> bool {
        self.tls.is_some() || (self.settings.allow_plaintext_on_loopback && self.ip().is_loopback())
    }

    pub(crate) fn capabilities(&self) -> String {
        let mut caps = vec!["IMAP4rev1", "IMAP4rev2"];
        if !self.state.is_authenticated() {
            if self.starttls_offered() {
                caps.push("STARTTLS");
            }
            if self.login_allowed() {
                caps.extend(["AUTH=PLAIN", "AUTH=SCRAM-SHA-256"]);
                if self.tls.is_some() {
                    caps.push("AUTH=SCRAM-SHA-256-PLUS");
                }
            } else {
                caps.push("LOGINDISABLED");
            }
        }
        caps.extend([
            "SASL-IR",
            "LITERAL+",
            "ENABLE",
            "ID",
            "IDLE",
            "NAMESPACE",
            "UNSELECT",
            "UIDPLUS",
            "MOVE",
            "CHILDREN",
            "SPECIAL-USE",
            "CREATE-SPECIAL-USE",
            "LIST-EXTENDED",
            "LIST-STATUS",
            "ESEARCH",
            "SEARCHRES",
            "WITHIN",
            "STATUS=SIZE",
            "BINARY",
            "CONDSTORE",
            "UTF8=ACCEPT",
            "QRESYNC",
        ]);
        let mut text = caps.join(" ");
        text.push_str(&format!(" APPENDLIMIT={}", self.settings.max_append));
        text
    }

    /// CAPABILITY.
    pub(crate) fn capability(&mut self) -> Completed {
        let caps = self.capabilities();
        self.machine
            .out()
            .extend_from_slice(format!("* CAPABILITY {caps}\r\n").as_bytes());
        ok("CAPABILITY completed")
    }

    /// STARTTLS: the completion is written here, and the driver starts TLS.
    pub(crate) fn starttls(&mut self, tag: &str) -> Result<Flow, CommandError> {
        if !self.starttls_offered() {
            return Err(CommandError::syntax("STARTTLS not available"));
        }
        self.complete(tag, Verb::StartTls, Ok(ok("Begin TLS negotiation now")));
        // RFC 9051 §6.2.1: nothing pipelined after STARTTLS is read as TLS data.
        self.machine.tls_started();
        Ok(Flow::StartTls)
    }

    pub(crate) async fn login(&mut self, username: &str, password: &str) -> CommandResult {
        if !self.login_allowed() {
            return Err(CommandError::no(
                Some("PRIVACYREQUIRED"),
                "Use STARTTLS first",
            ));
        }
        let checked = self
            .auth
            .check_password(self.ip(), username, password)
            .await;
        // Not checked (store down, Argon2 queue full, too many logins in flight from this
        // address): a temporary failure, so clients do not take it for a wrong password and
        // drop the saved one (RFC 5530 §3, UNAVAILABLE).
        let Ok(checked) = checked else {
            return Err(CommandError::no(
                Some("UNAVAILABLE"),
                "Authentication unavailable, try again later",
            ));
        };
        match checked {
            Some(user) => {
                self.after_login(user);
                Ok(ok_code(
                    format!("CAPABILITY {}", self.capabilities()),
                    "LOGIN completed",
                ))
            }
            None => Err(CommandError::no(
                Some("AUTHENTICATIONFAILED"),
                "Invalid credentials",
            )),
        }
    }

    /// AUTHENTICATE: starts the exchange; its completion is written when it ends.
    pub(crate) async fn authenticate_start(
        &mut self,
        tag: &str,
        mechanism: &str,
        initial: Option<Vec<u8>>,
    ) {
        if !self.login_allowed() {
            let refused = CommandError::no(Some("PRIVACYREQUIRED"), "Use STARTTLS first");
            self.complete(tag, Verb::Authenticate, Err(refused));
            return;
        }
        let begun = SaslSession::begin(
            &self.auth,
            mechanism,
            self.ip(),
            self.tls.as_ref(),
            initial.as_deref(),
        )
        .await;
        let Some((session, step)) = begun else {
            let refused = CommandError::no(None, "Unsupported authentication mechanism");
            self.complete(tag, Verb::Authenticate, Err(refused));
            return;
        };
        self.state = State::NotAuthenticated {
            sasl: Some(Box::new(Sasl {
                tag: tag.to_string(),
                session,
            })),
        };
        self.sasl_answer(step);
    }

    /// Sends the next challenge, or ends the exchange with its completion.
    pub(crate) fn sasl_answer(&mut self, step: SaslStep) {
        let outcome = match step {
            SaslStep::Challenge(challenge) => {
                self.machine.auth_continue(&challenge);
                return;
            }
            SaslStep::Success(user) => Ok(user),
            SaslStep::Invalid => Err(CommandError::no(
                Some("AUTHENTICATIONFAILED"),
                "Invalid credentials",
            )),
            SaslStep::Malformed(why) => Err(CommandError::syntax(why)),
            SaslStep::Temporary => Err(CommandError::no(
                Some("UNAVAILABLE"),
                "Authentication unavailable, try again later",
            )),
        };
        let State::NotAuthenticated { sasl } = &mut self.state else {
            return;
        };
        let Some(tag) = sasl.take().map(|sasl| sasl.tag) else {
            return;
        };
        let result = outcome.map(|user| {
            self.after_login(user);
            ok_code(
                format!("CAPABILITY {}", self.capabilities()),
                "AUTHENTICATE completed",
            )
        });
        self.complete(&tag, Verb::Authenticate, result);
    }
}
