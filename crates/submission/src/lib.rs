//! Submission policy: what happens to a message one of our users sends, whichever front end
//! took it (SMTP submission in `smtp-server`, the webmail's `EmailSubmission/set`).
//!
//! - Sender ownership ([`Submitter::owns`]): a user sends as their own address, an alias that
//!   lists them, or an address `[submission] allowed_senders` gives them.
//! - The originator policy ([`originator`]): `From:`, `Sender:`, `Resent-From:` and
//!   `Resent-Sender:` name only addresses the user owns, and the header is clean.
//! - Hourly limits ([`SendingLimits`]) on messages and recipients, one budget per user for all
//!   front ends.
//! - Header completion ([`Submitter::added_headers`]): `Date:` and `Message-ID:` (pigeon's one
//!   generator, [`common::message_id`]) when missing, DKIM signatures ([`dkim`]) by the keys of
//!   the `From:` domain.
//! - Local delivery and the queue ([`store_accepted`], [`Destinations`]).
//!
//! SMTP runs these steps one by one as its dialogue reaches them (MAIL, RCPT, DATA) and words
//! their typed outcomes as reply codes; [`Submitter::submit`] runs them all for front ends
//! without SMTP.
//!
//! **Architecture invariant:** sees `dyn Store`, never a backend, and knows no SMTP session:
//! errors are typed ([`Refusal`], [`SubmitError`]), never reply codes.

pub mod dkim;
mod limits;
pub mod originator;
mod submit;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use auth::Authenticated;
use smtp_proto::canonical::Findings;
use store::{AccountId, Delivery, Envelope, Outbound, Recipient, Store, Target};
use tracing::warn;

pub use limits::SendingLimits;
pub use originator::Refusal;
pub use submit::SubmitError;

/// The submission policy's settings.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Our host name: the right side of the Message-IDs we add, `by` in `Received:`.
    pub hostname: String,
    /// Extra sender addresses per user (lowercase); `@domain` allows a whole domain.
    pub allowed_senders: BTreeMap<String, Vec<String>>,
    pub max_messages_per_hour: u32,
    pub max_recipients_per_hour: u32,
    /// How long queued mail is tried before it bounces.
    pub queue_lifetime: Duration,
}

/// The submission policy over a store: one per front end, sharing one [`SendingLimits`].
pub struct Submitter {
    store: Arc<dyn Store>,
    limits: Arc<SendingLimits>,
    settings: Settings,
}

impl Submitter {
    /// `limits` should be shared by every front end (the submission listeners and the
    /// webmail), so a user has one hourly budget.
    pub fn new(
        store: Arc<dyn Store>,
        limits: Arc<SendingLimits>,
        settings: impl Into<Settings>,
    ) -> Submitter {
        Submitter {
            store,
            limits,
            settings: settings.into(),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// True if the authenticated user may send as `address`: their own address, an alias that
    /// lists them, or an address the policy allows them.
    pub async fn owns(
        &self,
        user: &Authenticated,
        address: &str,
    ) -> Result<bool, store::StoreError> {
        let address = address.to_lowercase();
        if address == user.address {
            return Ok(true);
        }
        if let Some(extra) = self.settings.allowed_senders.get(&user.address) {
            let domain = address.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
            if extra
                .iter()
                .any(|a| *a == address || a.strip_prefix('@') == Some(domain))
            {
                return Ok(true);
            }
        }
        Ok(self
            .store
            .alias_sources(&user.address)
            .await?
            .contains(&address))
    }

    /// Counts one message against the user's hourly budget; false if it is spent.
    pub fn take_message(&self, user: &Authenticated) -> bool {
        self.limits
            .take_message(user.account_id, self.settings.max_messages_per_hour)
    }

    /// Counts one recipient against the user's hourly budget; false if it is spent.
    pub fn take_recipient(&self, user: &Authenticated) -> bool {
        self.limits
            .take_recipient(user.account_id, self.settings.max_recipients_per_hour)
    }

    /// The queue envelope of a message from `sender` accepted at `now`: it expires after the
    /// policy's queue lifetime; no DSN options, no SMTPUTF8 (the caller sets those it has).
    pub fn envelope(&self, sender: &str, now: i64) -> Envelope {
        Envelope {
            sender: sender.to_owned(),
            created: now,
            expires: now + self.settings.queue_lifetime.as_secs() as i64,
            envid: None,
            ret: None,
            smtputf8: false,
        }
    }

    /// The originator policy on `data` (canonical, with the `findings` of making it so);
    /// returns the `From:` addresses as the policy read them.
    pub async fn check_originators(
        &self,
        user: &Authenticated,
        data: &[u8],
        findings: &Findings,
    ) -> Result<Vec<String>, Refusal> {
        originator::check(self, user, data, findings).await
    }

    /// The headers a submission server adds above a user's message (RFC 6409 §8.3, §8.4):
    /// `Date:` and `Message-ID:` when missing, and DKIM signatures by the `From:` domain's
    /// keys. `from` is what [`Submitter::check_originators`] returned: the policy's reading of
    /// `From:` picks the DKIM keys (the same addresses when mail-parser sees the field; also
    /// when only the obsolete `From :` spelling names it).
    pub async fn added_headers(&self, data: &[u8], from: &[String], now: i64) -> Vec<u8> {
        let summary = message::headers::summarize(data);
        let mut added = Vec::new();
        if !summary.has_date {
            added.extend_from_slice(
                format!("Date: {}\r\n", message::date::format_rfc5322(now)).as_bytes(),
            );
        }
        if !summary.has_message_id {
            let id = common::message_id(&self.settings.hostname);
            added.extend_from_slice(format!("Message-ID: <{id}>\r\n").as_bytes());
        }
        // Sign what the recipient will see below our trace headers.
        if let Some(domain) = from.first().and_then(|f| f.rsplit_once('@')) {
            match self.store.dkim_keys(&domain.1.to_lowercase()).await {
                Ok(keys) if !keys.is_empty() => {
                    let mut unsigned = added.clone();
                    unsigned.extend_from_slice(data);
                    let mut signed = dkim::sign(&keys, &unsigned);
                    signed.extend_from_slice(&added);
                    added = signed;
                }
                Ok(_) => {}
                Err(e) => warn!(error = %e, "DKIM keys unavailable; sending unsigned"),
            }
        }
        added
    }
}

/// Where an accepted message goes: local accounts and remote addresses, each once.
#[derive(Debug, Default, Clone)]
pub struct Destinations {
    pub local: Vec<AccountId>,
    pub remote: Vec<Recipient>,
}

impl Destinations {
    /// Adds one recipient's resolved targets; `remote` makes the queue's recipient for a
    /// remote address (with the recipient's DSN options).
    pub fn add(&mut self, targets: Vec<Target>, remote: impl Fn(String) -> Recipient) {
        for target in targets {
            match target {
                Target::Local(id) if !self.local.contains(&id) => self.local.push(id),
                Target::Remote(address) if !self.remote.iter().any(|r| r.address == address) => {
                    self.remote.push(remote(address))
                }
                _ => {}
            }
        }
    }
}

/// Hands an accepted message to the queue (remote recipients) and the local INBOXes. Mail
/// from other servers takes this way too (`smtp-server`'s MX mode).
pub async fn store_accepted(
    store: &dyn Store,
    local: &[AccountId],
    outbound: Option<Outbound>,
    stored: Vec<u8>,
    now: i64,
) -> Result<(), store::StoreError> {
    if let Some(outbound) = outbound {
        store.enqueue(outbound).await?;
    }
    if !local.is_empty() {
        let summary = message::summary::summarize(&stored);
        store
            .deliver(Delivery {
                data: stored,
                recipients: local.to_vec(),
                internal_date: now,
                summary: Some(summary),
            })
            .await?;
    }
    Ok(())
}

/// A transaction id unique within this process, for `Received: ... id` and `250 OK queued
/// as`: time and a counter.
pub fn transaction_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:x}{n:04x}", common::clock::now_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_ids_differ_within_a_process() {
        assert_ne!(transaction_id(), transaction_id());
    }

    #[test]
    fn destinations_keep_each_target_once() {
        let mut destinations = Destinations::default();
        let remote = |address: String| Recipient {
            address,
            notify: 1,
            ..Default::default()
        };
        destinations.add(
            vec![Target::Local(1), Target::Remote("x@far.test".into())],
            remote,
        );
        destinations.add(
            vec![
                Target::Local(1),
                Target::Local(2),
                Target::Remote("x@far.test".into()),
            ],
            remote,
        );
        assert_eq!(destinations.local, [1, 2]);
        assert_eq!(destinations.remote.len(), 1);
        assert_eq!(destinations.remote[0].notify, 1);
    }
}
