//! Submission without SMTP: the webmail hands a logged-in user's message here, and it takes the
//! path SMTP submission takes: canonical line endings, the header limits and the sender policy
//! on every originator field ([`crate::originator`]), hourly limits, `Date:` and `Message-ID:`
//! when missing, DKIM signatures, a trace header, local INBOXes and the queue.

use std::net::IpAddr;
use std::sync::Arc;

use auth::Authenticated;
use message::trace::{Received, trace_headers};
use store::{Address, Outbound, OutboundRecipient, Resolution, Store, Target};
use tracing::{error, info};

use crate::originator::{self, Refusal};
use crate::{SendingLimits, Settings, store_accepted, submitted_headers};

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

/// Submits messages for logged-in users of other front ends (the webmail).
pub struct Submitter {
    store: Arc<dyn Store>,
    limits: Arc<SendingLimits>,
    settings: Arc<Settings>,
}

impl Submitter {
    /// `limits` should be the submission listeners' own, so a user has one hourly budget.
    pub fn new(store: Arc<dyn Store>, limits: Arc<SendingLimits>, settings: Settings) -> Submitter {
        Submitter {
            store,
            limits,
            settings: Arc::new(settings),
        }
    }

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
        let from =
            match originator::check(&*self.store, &self.settings, user, &data, &findings).await {
                Ok(from) => from,
                Err(Refusal::Format(text)) => return Err(SubmitError::NotOwned(text)),
                Err(Refusal::NotOwned { field, address }) => {
                    return Err(SubmitError::NotOwned(format!(
                        "you may not send as {address} ({field}:)"
                    )));
                }
                Err(Refusal::Temporary) => return Err(SubmitError::Temporary),
            };
        let mut summary = message::headers::summarize(&data);
        summary.from = from;
        let Some(from) = summary.from.first().cloned() else {
            return Err(SubmitError::NotOwned(
                "the message has no From: address".into(),
            ));
        };
        if recipients.is_empty() {
            return Err(SubmitError::Recipient(
                "the message has no recipient".into(),
            ));
        }
        let policy = &self.settings.submission;
        if !self
            .limits
            .take_message(user.account_id, policy.max_messages_per_hour)
        {
            return Err(SubmitError::Limit(
                "hourly sending limit reached; try again later",
            ));
        }
        let mut local = Vec::new();
        let mut remote: Vec<OutboundRecipient> = Vec::new();
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
            if !self
                .limits
                .take_recipient(user.account_id, policy.max_recipients_per_hour)
            {
                return Err(SubmitError::Limit(
                    "hourly recipient limit reached; try again later",
                ));
            }
            for target in targets {
                match target {
                    Target::Local(id) if !local.contains(&id) => local.push(id),
                    Target::Remote(address) if !remote.iter().any(|r| r.address == address) => {
                        remote.push(address.as_str().into())
                    }
                    _ => {}
                }
            }
        }
        let now = crate::unix_now();
        let id = crate::transaction_id();
        let hostname = &self.settings.machine.hostname;
        let added = submitted_headers(&*self.store, hostname, &data, &summary, now, &id).await;
        let mut sent = added;
        sent.extend_from_slice(&data);
        let for_recipient = (recipients.len() == 1).then(|| recipients[0].as_str());
        let mut stored = trace_headers(
            &from,
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
        let outbound = (!remote.is_empty()).then(|| Outbound {
            sender: from.clone(),
            recipients: remote.clone(),
            data: stored.clone(),
            created: now,
            expires: now + self.settings.queue_lifetime.as_secs() as i64,
            envid: None,
            ret: None,
            smtputf8: !from.is_ascii() || recipients.iter().any(|r| !r.is_ascii()),
        });
        store_accepted(&*self.store, &local, outbound, stored, now)
            .await
            .map_err(temporary)?;
        info!(id, from = %from, user = %user.address, local = local.len(), remote = remote.len(), "webmail message accepted");
        Ok(sent)
    }
}
