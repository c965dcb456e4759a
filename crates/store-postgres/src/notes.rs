//! Changes crossing nodes: LISTEN/NOTIFY payloads, one change per text line.
//!
//! Lines: `q` (queue work is due), `m ACCOUNT` (mailboxes changed), `a ACCOUNT MAILBOX UID
//! MODSEQ` (message added), `f ACCOUNT MAILBOX UID MODSEQ FLAGS [KEYWORD...]` (flags changed),
//! `x ACCOUNT MAILBOX MODSEQ UID,UID,...` (expunged), `r ACCOUNT` (reload: a change too big
//! to describe in one payload). PostgreSQL caps a payload below 8000
//! bytes, so long batches are split over several notifications and long UID lists over
//! several lines.

use std::sync::Arc;
use std::time::Duration;

use store::{AccountId, Change, Notifier};
use tokio_postgres::{AsyncMessage, NoTls};

use crate::pool::{Tx, execute};

/// Something another node (or this one) must hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    Change(AccountId, Change),
    /// Queued work became due.
    Queue,
}

/// The most bytes in one payload (PostgreSQL's limit is 8000).
const MAX_PAYLOAD: usize = 7800;
/// The most UIDs in one `x` line (each at most 11 bytes).
const MAX_UIDS_PER_LINE: usize = 500;

fn lines(note: &Note, out: &mut Vec<String>) {
    let start = out.len();
    describe(note, out);
    // A line no payload can carry (a flag change with kilobytes of keywords) becomes "reload".
    if let Note::Change(account, _) = note
        && out[start..].iter().any(|line| line.len() > MAX_PAYLOAD)
    {
        out.truncate(start);
        out.push(format!("r {account}"));
    }
}

fn describe(note: &Note, out: &mut Vec<String>) {
    match note {
        Note::Change(account, Change::Resync) => out.push(format!("r {account}")),
        Note::Queue => out.push("q".into()),
        Note::Change(account, Change::MailboxesChanged) => out.push(format!("m {account}")),
        Note::Change(
            account,
            Change::MessageAdded {
                mailbox_id,
                uid,
                modseq,
            },
        ) => out.push(format!("a {account} {mailbox_id} {uid} {modseq}")),
        Note::Change(
            account,
            Change::FlagsChanged {
                mailbox_id,
                uid,
                modseq,
                flags,
                keywords,
            },
        ) => {
            let mut line = format!("f {account} {mailbox_id} {uid} {modseq} {flags}");
            for keyword in keywords {
                line.push(' ');
                line.push_str(keyword);
            }
            out.push(line);
        }
        Note::Change(
            account,
            Change::Expunged {
                mailbox_id,
                uids,
                modseq,
            },
        ) => {
            for chunk in uids.chunks(MAX_UIDS_PER_LINE) {
                let list: Vec<String> = chunk.iter().map(u32::to_string).collect();
                out.push(format!(
                    "x {account} {mailbox_id} {modseq} {}",
                    list.join(",")
                ));
            }
        }
    }
}

/// The payloads that carry `notes`.
pub(crate) fn encode(notes: &[Note]) -> Vec<String> {
    let mut all = Vec::new();
    for note in notes {
        lines(note, &mut all);
    }
    let mut payloads: Vec<String> = Vec::new();
    for line in all {
        match payloads.last_mut() {
            Some(last) if last.len() + 1 + line.len() <= MAX_PAYLOAD => {
                last.push('\n');
                last.push_str(&line);
            }
            _ => payloads.push(line),
        }
    }
    payloads
}

/// The notes in a payload; lines this version does not understand are skipped.
pub(crate) fn decode(payload: &str) -> Vec<Note> {
    payload.lines().filter_map(decode_line).collect()
}

fn decode_line(line: &str) -> Option<Note> {
    let mut words = line.split(' ');
    let kind = words.next()?;
    if kind == "q" {
        return Some(Note::Queue);
    }
    let account: AccountId = words.next()?.parse().ok()?;
    let change = match kind {
        "m" => Change::MailboxesChanged,
        "r" => Change::Resync,
        "a" => Change::MessageAdded {
            mailbox_id: words.next()?.parse().ok()?,
            uid: words.next()?.parse().ok()?,
            modseq: words.next()?.parse().ok()?,
        },
        "f" => Change::FlagsChanged {
            mailbox_id: words.next()?.parse().ok()?,
            uid: words.next()?.parse().ok()?,
            modseq: words.next()?.parse().ok()?,
            flags: words.next()?.parse().ok()?,
            keywords: words.map(String::from).collect(),
        },
        "x" => Change::Expunged {
            mailbox_id: words.next()?.parse().ok()?,
            modseq: words.next()?.parse().ok()?,
            uids: words
                .next()?
                .split(',')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?,
        },
        _ => return None,
    };
    Some(Note::Change(account, change))
}

/// Listens on its own connection for as long as the store lives, reconnecting after errors,
/// and republishes every note locally. `ready` is notified once LISTEN is in place.
pub(crate) async fn listen(
    config: tokio_postgres::Config,
    notifier: Arc<Notifier>,
    queue_signal: Arc<tokio::sync::Notify>,
    ready: Arc<tokio::sync::Notify>,
) {
    let mut first = true;
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
                let driver = tokio::spawn(async move {
                    loop {
                        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                            Some(Ok(AsyncMessage::Notification(n))) => {
                                if tx.send(n.payload().to_owned()).is_err() {
                                    break;
                                }
                            }
                            Some(Ok(_)) => {}
                            Some(Err(e)) => {
                                tracing::warn!(error = %e, "postgres: the LISTEN connection failed");
                                break;
                            }
                            None => break,
                        }
                    }
                });
                if let Err(e) = client.batch_execute("LISTEN pigeon").await {
                    tracing::warn!(error = %e, "postgres: LISTEN failed");
                    driver.abort();
                } else {
                    if first {
                        ready.notify_one();
                        first = false;
                    } else {
                        tracing::warn!(
                            "postgres: listening again; open sessions reload what they show"
                        );
                        // Changes made meanwhile were not heard: every session reloads.
                        notifier.publish_all(Change::Resync);
                        // Anything queued meanwhile is due now.
                        queue_signal.notify_one();
                    }
                    while let Some(payload) = rx.recv().await {
                        for note in decode(&payload) {
                            match note {
                                Note::Queue => queue_signal.notify_one(),
                                Note::Change(account, change) => notifier.publish(account, change),
                            }
                        }
                    }
                    driver.abort();
                }
                drop(client);
            }
            Err(e) => tracing::warn!(error = %e, "postgres: cannot connect to LISTEN"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Publishes changes when the transaction commits.
pub(crate) async fn notify(tx: &Tx<'_>, notes: &[Note]) -> store::Result<()> {
    for payload in encode(notes) {
        execute(tx, "SELECT pg_notify('pigeon', $1)", &[&payload]).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_change_survives_the_trip() {
        let notes = vec![
            Note::Queue,
            Note::Change(7, Change::MailboxesChanged),
            Note::Change(
                7,
                Change::MessageAdded {
                    mailbox_id: 3,
                    uid: 9,
                    modseq: 44,
                },
            ),
            Note::Change(
                8,
                Change::FlagsChanged {
                    mailbox_id: 3,
                    uid: 9,
                    modseq: 45,
                    flags: 5,
                    keywords: vec!["$Junk".into(), "work".into()],
                },
            ),
            Note::Change(
                8,
                Change::FlagsChanged {
                    mailbox_id: 3,
                    uid: 10,
                    modseq: 46,
                    flags: 0,
                    keywords: vec![],
                },
            ),
            Note::Change(
                9,
                Change::Expunged {
                    mailbox_id: 4,
                    uids: vec![1, 2, 3],
                    modseq: 50,
                },
            ),
        ];
        let payloads = encode(&notes);
        assert_eq!(payloads.len(), 1);
        assert_eq!(decode(&payloads[0]), notes);
    }

    #[test]
    fn big_batches_split_under_the_payload_limit() {
        let uids: Vec<u32> = (4_000_000_000..4_000_002_000).collect();
        let mut notes = vec![Note::Change(
            1,
            Change::Expunged {
                mailbox_id: 2,
                uids: uids.clone(),
                modseq: 3,
            },
        )];
        for uid in 0..300 {
            notes.push(Note::Change(
                1,
                Change::MessageAdded {
                    mailbox_id: 2,
                    uid,
                    modseq: 9_000_000_000,
                },
            ));
        }
        let payloads = encode(&notes);
        assert!(payloads.len() > 2);
        assert!(payloads.iter().all(|p| p.len() <= MAX_PAYLOAD));
        let decoded: Vec<Note> = payloads.iter().flat_map(|p| decode(p)).collect();
        let mut expunged = Vec::new();
        let mut added = 0;
        for note in decoded {
            match note {
                Note::Change(
                    1,
                    Change::Expunged {
                        uids, modseq: 3, ..
                    },
                ) => expunged.extend(uids),
                Note::Change(1, Change::MessageAdded { .. }) => added += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(expunged, uids);
        assert_eq!(added, 300);
    }

    #[test]
    fn a_change_too_big_for_a_payload_becomes_a_reload() {
        let keywords: Vec<String> = (0..100).map(|i| format!("{i:0>100}")).collect();
        let notes = vec![
            Note::Change(
                4,
                Change::FlagsChanged {
                    mailbox_id: 1,
                    uid: 2,
                    modseq: 3,
                    flags: 0,
                    keywords,
                },
            ),
            Note::Queue,
        ];
        let payloads = encode(&notes);
        assert!(payloads.iter().all(|p| p.len() <= MAX_PAYLOAD));
        let decoded: Vec<Note> = payloads.iter().flat_map(|p| decode(p)).collect();
        assert_eq!(decoded, [Note::Change(4, Change::Resync), Note::Queue]);
    }

    #[test]
    fn garbage_is_skipped() {
        assert_eq!(
            decode("z 1 2\na x\nm 5\nx 1 2 3 4,five"),
            [Note::Change(5, Change::MailboxesChanged)]
        );
    }
}
