//! AUTH (RFC 4954) on an SMTP session, on the shared [`auth::SaslSession`].

use auth::{SaslSession, SaslStep};
use smtp_proto::Reply;

use crate::Session;

impl Session {
    pub(crate) async fn auth_start(&mut self, mechanism: &str, initial: Option<Vec<u8>>) {
        let begun = SaslSession::begin(
            &self.auth,
            mechanism,
            self.peer_ip(),
            self.tls.as_ref(),
            initial.as_deref(),
        )
        .await;
        let Some((session, step)) = begun else {
            self.machine.auth_done(
                None,
                Reply::new(504, "5.5.4", "Unrecognized authentication type"),
            );
            return;
        };
        self.sasl = Some(session);
        self.auth_answer(step);
    }

    pub(crate) async fn auth_step(&mut self, data: &[u8]) {
        let Some(session) = self.sasl.as_mut() else {
            self.machine
                .auth_done(None, Reply::new(503, "5.5.1", "No AUTH in progress"));
            return;
        };
        let step = session.step(&self.auth, data).await;
        self.auth_answer(step);
    }

    fn auth_answer(&mut self, step: SaslStep) {
        if !matches!(step, SaslStep::Challenge(_)) {
            self.sasl = None;
        }
        match step {
            SaslStep::Challenge(challenge) => self.machine.auth_challenge(&challenge),
            SaslStep::Success(user) => {
                self.machine.auth_done(
                    Some(user.address.clone()),
                    Reply::new(235, "2.7.0", "Authentication successful"),
                );
                self.user = Some(user);
            }
            SaslStep::Invalid => self.machine.auth_done(
                None,
                Reply::new(535, "5.7.8", "Authentication credentials invalid"),
            ),
            SaslStep::Malformed(why) => self.machine.auth_done(None, Reply::new(501, "5.5.2", why)),
            SaslStep::Temporary => self.machine.auth_done(
                None,
                Reply::new(454, "4.7.0", "Temporary authentication failure"),
            ),
        }
    }
}
