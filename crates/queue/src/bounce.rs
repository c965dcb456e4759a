//! Delivery status notifications (RFC 3464) to the sender of queued mail: into the sender's
//! INBOX when the sender is local, otherwise queued with the null sender `<>` so that a DSN
//! never causes another (RFC 5321 §6.1 / RFC 3461 §6.2).

use message::dsn::{Action, RecipientReport, Report};
use store::{
    Delivery, Envelope, Outbound, QueueEntry, Recipient, Resolution, Store, Target, resolve,
};

/// Which DSN a recipient's outcome calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Failed,
    Delayed,
    Relayed,
}

/// One recipient's line in a DSN.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    kind: Kind,
    address: String,
    orcpt: Option<String>,
    status: String,
    diagnostic: String,
    at: i64,
    pub(crate) retry_until: Option<i64>,
}

impl Line {
    pub(crate) fn new(r: &Recipient, kind: Kind, status: &str, diagnostic: &str, at: i64) -> Line {
        Line {
            kind,
            address: r.address.clone(),
            orcpt: r.orcpt.clone(),
            status: status.to_string(),
            diagnostic: diagnostic.to_string(),
            at,
            retry_until: None,
        }
    }
}

/// Messages bigger than this are returned as headers only, whatever RET asked.
const RETURN_FULL_LIMIT: usize = 512 * 1024;

/// Builds and sends the DSNs for `lines` (one per kind) to the job's sender.
pub(crate) async fn send(
    store: &dyn Store,
    hostname: &str,
    job: &QueueEntry,
    lines: Vec<Line>,
    original: &[u8],
    now: i64,
) -> store::Result<()> {
    for kind in [Kind::Failed, Kind::Delayed, Kind::Relayed] {
        let recipients: Vec<RecipientReport> = lines
            .iter()
            .filter(|l| l.kind == kind)
            .map(|l| RecipientReport {
                address: l.address.clone(),
                original: l.orcpt.clone(),
                action: match kind {
                    Kind::Failed => Action::Failed,
                    Kind::Delayed => Action::Delayed,
                    Kind::Relayed => Action::Relayed,
                },
                status: l.status.clone(),
                remote_mta: remote_mta(&l.diagnostic),
                diagnostic: Some(l.diagnostic.clone()),
                last_attempt: Some(l.at),
                will_retry_until: l.retry_until,
            })
            .collect();
        if recipients.is_empty() {
            continue;
        }
        let headers_only = job.envelope.ret == Some(store::Ret::Headers)
            || kind != Kind::Failed
            || original.len() > RETURN_FULL_LIMIT;
        let message_id = format!("dsn.{}.{}.{}@{hostname}", job.id, now, kind as u8);
        let dsn = message::dsn::build(&Report {
            reporting_mta: hostname,
            envid: job.envelope.envid.as_deref(),
            arrival_date: job.envelope.created,
            sender: &job.envelope.sender,
            recipients,
            original,
            headers_only,
            date: now,
            message_id,
        });
        deliver(store, &job.envelope.sender, dsn, now).await?;
    }
    Ok(())
}

/// The host in a diagnostic of the form `host[ip] said: ...`.
fn remote_mta(diagnostic: &str) -> Option<String> {
    let (host, _) = diagnostic.split_once("[")?;
    (!host.is_empty() && !host.contains(' ')).then(|| host.to_string())
}

/// Hands a DSN to `to`: local mailboxes directly, others through the queue from `<>`.
async fn deliver(store: &dyn Store, to: &str, dsn: Vec<u8>, now: i64) -> store::Result<()> {
    let Ok(address) = store::Address::parse(to) else {
        tracing::warn!(to, "DSN recipient is not an address; dropped");
        return Ok(());
    };
    let mut data = b"Return-Path: <>\r\n".to_vec();
    data.extend_from_slice(&dsn);
    match resolve(store, &address).await? {
        Resolution::Deliver(targets) => {
            let mut local = Vec::new();
            let mut remote = Vec::new();
            for target in targets {
                match target {
                    Target::Local(id) => local.push(id),
                    Target::Remote(addr) => remote.push(addr.as_str().into()),
                }
            }
            if !local.is_empty() {
                let summary = message::summary::summarize(&data);
                store
                    .deliver(Delivery {
                        data: data.clone(),
                        recipients: local,
                        internal_date: now,
                        summary: Some(summary),
                    })
                    .await?;
            }
            if !remote.is_empty() {
                enqueue(store, remote, dsn, now).await?;
            }
        }
        Resolution::NotLocal => enqueue(store, vec![to.into()], dsn, now).await?,
        Resolution::NoSuchUser => tracing::warn!(to, "DSN for an unknown local sender; dropped"),
    }
    Ok(())
}

async fn enqueue(
    store: &dyn Store,
    recipients: Vec<store::Recipient>,
    dsn: Vec<u8>,
    now: i64,
) -> store::Result<()> {
    store
        .enqueue(Outbound {
            envelope: Envelope {
                sender: String::new(),
                created: now,
                expires: now + 5 * 24 * 3600,
                ..Default::default()
            },
            recipients,
            data: dsn,
        })
        .await
        .map(|_| ())
}
