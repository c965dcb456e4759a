//! Messages: delivery, flags, expunge, summaries, full-text search and indexing.

use super::*;

pub(super) async fn delivery(store: &dyn Store) {
    store.add_domain("d4.test").await.unwrap();
    let dave = store
        .create_account(&addr("dave@d4.test"), &secrets("h"))
        .await
        .unwrap();
    let erin = store
        .create_account(&addr("erin@d4.test"), &secrets("h"))
        .await
        .unwrap();
    let before = store.verify().await.unwrap().blobs;

    let data = b"Subject: one\r\n\r\nbody \xe4\xbd\xa0\xe5\xa5\xbd\r\n".to_vec();
    let delivered = store
        .deliver(Delivery {
            data: data.clone(),
            recipients: vec![dave, erin, dave],
            internal_date: 1_700_000_000,
            summary: None,
        })
        .await
        .unwrap();
    assert_eq!(delivered.len(), 2, "duplicate recipients get one copy");
    assert!(delivered.iter().all(|d| d.uid == 1));
    assert_eq!(
        store.verify().await.unwrap().blobs,
        before + 1,
        "the bytes are stored once for both mailboxes"
    );

    let second = store
        .deliver(Delivery {
            data: b"Subject: two\r\n\r\n".to_vec(),
            recipients: vec![dave],
            internal_date: 1_700_000_100,
            summary: None,
        })
        .await
        .unwrap();
    assert_eq!(second[0].uid, 2);

    let inbox = store.mailbox(dave, "INBOX").await.unwrap().unwrap();
    assert_eq!(inbox.uid_next, 3);
    assert_eq!(inbox.messages, 2);
    assert_eq!(inbox.unseen, 2);
    let messages = store.list_messages(inbox.id).await.unwrap();
    assert_eq!(messages.iter().map(|m| m.uid).collect::<Vec<_>>(), [1, 2]);
    let after = store.messages_after(inbox.id, 1).await.unwrap();
    assert_eq!(after.iter().map(|m| m.uid).collect::<Vec<_>>(), [2]);
    let light = store.message_flags(inbox.id, 0).await.unwrap();
    assert_eq!(light.len(), 2);
    assert_eq!(
        (light[1].uid, light[1].modseq, light[1].flags, light[1].size),
        (2, messages[1].modseq, messages[1].flags, messages[1].size)
    );
    assert_eq!(light[0].internal_date, 1_700_000_000);
    assert!(messages[0].modseq < messages[1].modseq);
    assert!(inbox.highest_modseq >= messages[1].modseq);
    assert_eq!(messages[0].size, data.len() as u64);
    assert_eq!(messages[0].internal_date, 1_700_000_000);
    assert_eq!(messages[0].flags & flags::SEEN, 0);
    assert_eq!(store.read_message(inbox.id, 1).await.unwrap(), data);
    assert!(matches!(
        store.read_message(inbox.id, 99).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(store.mailbox(dave, "No Such Box").await.unwrap().is_none());

    // Deleting one account keeps the shared bytes for the other.
    store.delete_account(&addr("erin@d4.test")).await.unwrap();
    assert_eq!(store.read_message(inbox.id, 1).await.unwrap(), data);
}

pub(super) async fn concurrent_delivery(store: Arc<dyn Store>) {
    store.add_domain("d5.test").await.unwrap();
    let fay = store
        .create_account(&addr("fay@d5.test"), &secrets("h"))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .deliver(Delivery {
                    data: format!("Subject: {i}\r\n\r\n{i}\r\n").into_bytes(),
                    recipients: vec![fay],
                    internal_date: 1_700_000_000 + i,
                    summary: None,
                })
                .await
                .unwrap()[0]
                .uid
        }));
    }
    let mut uids = Vec::new();
    for task in tasks {
        uids.push(task.await.unwrap());
    }
    uids.sort_unstable();
    assert_eq!(
        uids,
        (1..=50).collect::<Vec<u32>>(),
        "UIDs are unique and dense"
    );
    let inbox = store.mailbox(fay, "INBOX").await.unwrap().unwrap();
    let messages = store.list_messages(inbox.id).await.unwrap();
    let mut modseqs: Vec<u64> = messages.iter().map(|m| m.modseq).collect();
    modseqs.dedup();
    assert_eq!(modseqs.len(), 50, "every change has its own MODSEQ");
}

pub(super) async fn flags_and_expunge(store: &dyn Store) {
    store.add_domain("d7.test").await.unwrap();
    let ida = store
        .create_account(&addr("ida@d7.test"), &secrets("h"))
        .await
        .unwrap();
    for i in 0..3 {
        store
            .deliver(Delivery {
                data: format!("Subject: {i}\r\n\r\nbare\nlf").into_bytes(),
                recipients: vec![ida],
                internal_date: i,
                summary: None,
            })
            .await
            .unwrap();
    }
    let inbox = store.mailbox(ida, "INBOX").await.unwrap().unwrap();
    let messages = store.list_messages(inbox.id).await.unwrap();
    assert_eq!(messages[0].size, 21);
    assert_eq!(
        messages[0].crlf_size,
        21 + 1 + 2,
        "bare LF and the missing final CRLF are counted"
    );
    let mut changes = store.subscribe(ida);

    let changed = store
        .set_flags(inbox.id, &[1, 2, 99], flags::SEEN | flags::FLAGGED, 0)
        .await
        .unwrap();
    assert_eq!(changed.len(), 2, "unknown UIDs are skipped");
    assert!(changed[0].1 > inbox.highest_modseq && changed[1].1 > changed[0].1);
    assert_eq!(changed[0].2, flags::SEEN | flags::FLAGGED);
    assert!(
        store
            .set_flags(inbox.id, &[1], flags::SEEN, 0)
            .await
            .unwrap()
            .is_empty(),
        "no change, no MODSEQ"
    );
    let changed = store
        .set_flags(inbox.id, &[1], 0, flags::FLAGGED)
        .await
        .unwrap();
    assert_eq!(changed[0].2, flags::SEEN);
    let after = store.mailbox(ida, "INBOX").await.unwrap().unwrap();
    assert_eq!(after.unseen, 1);
    // The first flag change is heard first. A backend whose notifications travel through the
    // database (PostgreSQL's NOTIFY) may still bring the MessageAdded of the deliveries above,
    // made before subscribing: those are skipped.
    loop {
        match changes.recv().await.unwrap() {
            Change::FlagsChanged { uid, .. } => {
                assert_eq!(uid, 1);
                break;
            }
            Change::MessageAdded { .. } => continue,
            other => panic!("unexpected change {other:?}"),
        }
    }

    let before_expunge = store
        .mailbox(ida, "INBOX")
        .await
        .unwrap()
        .unwrap()
        .highest_modseq;
    let removed = store.expunge(inbox.id, &[2, 3, 42]).await.unwrap();
    assert_eq!(removed, [2, 3]);
    assert_eq!(
        store
            .expunged_since(inbox.id, before_expunge)
            .await
            .unwrap(),
        [2, 3]
    );
    assert!(
        store
            .expunged_since(inbox.id, before_expunge + 1)
            .await
            .unwrap()
            .is_empty()
    );
    let left = store.list_messages(inbox.id).await.unwrap();
    assert_eq!(left.iter().map(|m| m.uid).collect::<Vec<_>>(), [1]);
    assert!(store.expunge(inbox.id, &[2]).await.unwrap().is_empty());
    loop {
        match changes.recv().await.unwrap() {
            Change::Expunged { uids, .. } => {
                assert_eq!(uids, [2, 3]);
                break;
            }
            _ => continue,
        }
    }
    // UIDs are never reused after an expunge.
    let next = store
        .deliver(Delivery {
            data: b"Subject: again\r\n\r\n".to_vec(),
            recipients: vec![ida],
            internal_date: 9,
            summary: None,
        })
        .await
        .unwrap();
    assert_eq!(next[0].uid, 4);
}

pub(super) async fn summaries_and_search(store: &dyn Store) {
    store.add_domain("d9.test").await.unwrap();
    let kim = store
        .create_account(&addr("kim@d9.test"), &secrets("h"))
        .await
        .unwrap();
    // The index reads the message's own text; the summary carries the IMAP views.
    let summary = |subject: &str| MessageSummary {
        envelope: format!("(NIL \"{subject}\")").into_bytes(),
        body_structure: b"(\"TEXT\" \"PLAIN\")".to_vec(),
        body: b"(\"TEXT\")".to_vec(),
        header: format!("Subject: {subject}\r\n\r\n").into_bytes(),
    };
    for (subject, body) in [
        ("Zebra crossing", "hello 世界 WORLD"),
        ("Lunch", "zebras everywhere"),
        ("x", "nothing"),
    ] {
        store
            .deliver(Delivery {
                data: format!("Subject: {subject}\r\n\r\n{body}\r\n").into_bytes(),
                recipients: vec![kim],
                internal_date: 0,
                summary: Some(summary(subject)),
            })
            .await
            .unwrap();
    }
    let inbox = store.mailbox(kim, "INBOX").await.unwrap().unwrap();
    let got = store.summaries(inbox.id, &[1, 3, 9]).await.unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].0, 1);
    assert_eq!(got[0].1.envelope, b"(NIL \"Zebra crossing\")");
    assert_eq!(got[0].1.header, b"Subject: Zebra crossing\r\n\r\n");
    let search = |needle: &'static str, scope| async move {
        store.search_text(inbox.id, needle, scope).await.unwrap()
    };
    assert_eq!(
        search("world", TextScope::Body).await,
        [1],
        "case-insensitive"
    );
    assert_eq!(search("zebra", TextScope::Body).await, [2]);
    assert_eq!(search("zebra", TextScope::Headers).await, [1]);
    assert_eq!(search("ZEBRA", TextScope::All).await, [1, 2]);
    assert_eq!(
        search("世界", TextScope::Body).await,
        [1],
        "short needles work too"
    );
    assert!(search("absent", TextScope::All).await.is_empty());
    assert_eq!(
        search("a\"b", TextScope::All).await,
        Vec::<u32>::new(),
        "quotes are escaped"
    );
    // Copies share the summary; expunging the last copy drops it.
    let other = store.create_mailbox(kim, "Other", None).await.unwrap();
    store.copy(inbox.id, &[1], other, false).await.unwrap();
    assert_eq!(
        store
            .search_text(other, "world", TextScope::Body)
            .await
            .unwrap(),
        [1]
    );
    store.expunge(inbox.id, &[1]).await.unwrap();
    assert_eq!(
        store
            .search_text(other, "world", TextScope::Body)
            .await
            .unwrap(),
        [1]
    );
    store.expunge(other, &[1]).await.unwrap();
    assert!(search("world", TextScope::Body).await.is_empty());
    let report = store.verify().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

/// The indexer always makes progress (issue 14): a message far bigger than what the index
/// reads of it is indexed by its first bytes (`crate::index`), the backlog drains, and later
/// mail is indexed too. Searching before and after indexing gives the same answers.
pub(super) async fn big_message_indexing(store: &dyn Store) {
    use crate::index::{BODY_TEXT_LIMIT, READ_LIMIT};
    store.add_domain("d11.test").await.unwrap();
    let lou = store
        .create_account(&addr("lou@d11.test"), &secrets("h"))
        .await
        .unwrap();
    let mut big = b"Subject: big\r\n\r\nearlyword\r\n".to_vec();
    let line = b"the quick brown fox jumps over the lazy dog 0123456789\r\n";
    while big.len() < READ_LIMIT + BODY_TEXT_LIMIT {
        big.extend_from_slice(line);
    }
    big.extend_from_slice(b"lateword\r\n");
    let summary = |subject: &str| MessageSummary {
        envelope: format!("(NIL \"{subject}\")").into_bytes(),
        body_structure: b"(\"TEXT\" \"PLAIN\")".to_vec(),
        body: b"(\"TEXT\")".to_vec(),
        header: format!("Subject: {subject}\r\n\r\n").into_bytes(),
    };
    store
        .deliver(Delivery {
            data: big,
            recipients: vec![lou],
            internal_date: 0,
            summary: Some(summary("big")),
        })
        .await
        .unwrap();
    let inbox = store.mailbox(lou, "INBOX").await.unwrap().unwrap();
    let search = |needle: &'static str| async move {
        store
            .search_text(inbox.id, needle, TextScope::Body)
            .await
            .unwrap()
    };
    assert_eq!(search("earlyword").await, [1], "found while queued");
    assert!(
        search("lateword").await.is_empty(),
        "text past what the index reads is not found, queued or not"
    );
    store
        .deliver(Delivery {
            data: b"Subject: small\r\n\r\nsmallword after the big one\r\n".to_vec(),
            recipients: vec![lou],
            internal_date: 0,
            summary: Some(summary("small")),
        })
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while store.index_backlog().await.unwrap() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the index backlog drains (still {})",
            store.index_backlog().await.unwrap()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(search("earlyword").await, [1], "found once indexed");
    assert!(search("lateword").await.is_empty());
    assert_eq!(search("smallword").await, [2], "later mail is indexed too");
    assert_eq!(store.index_failures().await.unwrap(), 0);
    let report = store.verify().await.unwrap();
    assert_eq!((report.index_backlog, report.index_failures), (0, 0));
}
