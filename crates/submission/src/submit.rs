//! Submission without SMTP: the webmail hands a logged-in user's message here, and it takes the
//! path SMTP submission takes: canonical line endings, the header limits and the sender policy
//! on every originator field ([`crate::originator`]), hourly limits, `Date:` and `Message-ID:`
//! when missing, DKIM signatures, a trace header, local INBOXes and the queue.

use std::net::IpAddr;

use auth::Authenticated;
use message::trace::{Received, trace_headers};
use store::{Address, Envelope, Outbound, Resolution, Target};
use tracing::{error, info};

use crate::originator::Refusal;
use crate::{Destinations, Submitter, store_accepted};

/// Why a message was not sent; the text is for the user.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The sender policy refused the message: an originator field names an address the user
    /// does not own, or the header is malformed (no `From:`, an entry without an address, a
    /// NUL, a line over 998 octets). The text says which.
    #[error("{0}")]
    NotOwned(String),
    #[error("{0}")]
    Limit(&'static str),
    #[error("{0}")]
    Recipient(String),
    #[error("the server could not take the message now; try again later")]
    Temporary,
}

impl Submitter {
    /// Sends `data` from `user` to `recipients` (the envelope; Bcc included). Returns the
    /// message as sent (what the Sent folder keeps: with the added headers, without trace).
    pub async fn submit(
        &self,
        user: &Authenticated,
        recipients: &[String],
        data: Vec<u8>,
        peer: IpAddr,
    ) -> Result<Vec<u8>, SubmitError> {
        let temporary = |e: store::StoreError| {
            error!(error = %e, "webmail submission failed");
            SubmitError::Temporary
        };
        // What SMTP's DATA receiver does: canonical line endings, then the header limits.
        let (canonical, findings) = smtp_proto::canonical::inspect(&data);
        let data = match canonical {
            std::borrow::Cow::Borrowed(_) => data,
            std::borrow::Cow::Owned(canonical) => canonical,
        };
        if findings.over_limit() {
            let reply = smtp_proto::replies::header_over_limit(&findings);
            return Err(SubmitError::NotOwned(reply.lines.join(" ")));
        }
        let from = match self.check_originators(user, &data, &findings).await {
            Ok(from) => from,
            Err(Refusal::Format(text)) => return Err(SubmitError::NotOwned(text)),
            Err(Refusal::NotOwned { field, address }) => {
                return Err(SubmitError::NotOwned(format!(
                    "you may not send as {address} ({field}:)"
                )));
            }
            Err(Refusal::Temporary) => return Err(SubmitError::Temporary),
        };
        let Some(sender) = from.first().cloned() else {
            return Err(SubmitError::NotOwned(
                "the message has no From: address".into(),
            ));
        };
        if recipients.is_empty() {
            return Err(SubmitError::Recipient(
                "the message has no recipient".into(),
            ));
        }
        if !self.take_message(user) {
            return Err(SubmitError::Limit(
                "hourly sending limit reached; try again later",
            ));
        }
        let mut destinations = Destinations::default();
        for recipient in recipients {
            let address = Address::parse(recipient)
                .map_err(|_| SubmitError::Recipient(format!("{recipient:?} is not an address")))?;
            let targets = match store::resolve(&*self.store, &address)
                .await
                .map_err(temporary)?
            {
                Resolution::Deliver(targets) => targets,
                Resolution::NoSuchUser => {
                    return Err(SubmitError::Recipient(format!("no such user: {address}")));
                }
                Resolution::NotLocal => vec![Target::Remote(address.as_str().to_owned())],
            };
            if !self.take_recipient(user) {
                return Err(SubmitError::Limit(
                    "hourly recipient limit reached; try again later",
                ));
            }
            destinations.add(targets, |address| address.as_str().into());
        }
        let now = common::clock::now();
        let id = crate::transaction_id();
        let hostname = &self.settings.hostname;
        let mut sent = self.added_headers(&data, &from, now).await;
        sent.extend_from_slice(&data);
        let for_recipient = (recipients.len() == 1).then(|| recipients[0].as_str());
        let mut stored = trace_headers(
            &sender,
            &Received {
                helo: "webmail",
                peer,
                by: hostname,
                with: "HTTP",
                tls: None,
                id: &id,
                for_recipient,
                date: now,
            },
        );
        stored.extend_from_slice(&sent);
        let outbound = (!destinations.remote.is_empty()).then(|| Outbound {
            envelope: Envelope {
                smtputf8: !sender.is_ascii() || recipients.iter().any(|r| !r.is_ascii()),
                ..self.envelope(&sender, now)
            },
            recipients: destinations.remote.clone(),
            data: stored.clone(),
        });
        store_accepted(&*self.store, &destinations.local, outbound, stored, now)
            .await
            .map_err(temporary)?;
        info!(id, from = %sender, user = %user.address, local = destinations.local.len(), remote = destinations.remote.len(), "webmail message accepted");
        Ok(sent)
    }
}
