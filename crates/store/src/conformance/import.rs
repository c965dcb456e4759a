//! Migration: mailboxes, messages, expunge records and queue entries imported exactly.

use super::*;

/// What `pigeon migrate` relies on: mailboxes, messages, expunge records and queue entries
/// come back exactly as they were imported.
pub(super) async fn import(store: &dyn Store) {
    store.add_domain("d21.test").await.unwrap();
    let kim = store
        .create_account(&addr("kim@d21.test"), &secrets("h"))
        .await
        .unwrap();
    let inbox = store.mailbox(kim, "INBOX").await.unwrap().unwrap();
    let wanted = Mailbox {
        id: 0,
        account_id: kim,
        name: "INBOX".into(),
        special_use: None,
        uid_validity: 1_234_567,
        uid_next: 90,
        highest_modseq: 777,
        subscribed: true,
        messages: 2,
        unseen: 1,
        deleted: 0,
        size: 0,
    };
    let id = store.import_mailbox(kim, &wanted).await.unwrap();
    assert_eq!(id, inbox.id, "an existing mailbox is updated in place");
    let archive = Mailbox {
        name: "Old/2019".into(),
        special_use: Some(SpecialUse::Archive),
        subscribed: false,
        uid_validity: 99,
        uid_next: 5,
        highest_modseq: 8,
        ..wanted.clone()
    };
    let archive_id = store.import_mailbox(kim, &archive).await.unwrap();
    let message = |uid: u32, modseq: u64, flag_bits: u32, text: &str| ImportedMessage {
        message: Message {
            mailbox_id: 0,
            uid,
            modseq,
            flags: flag_bits,
            keywords: if uid == 40 {
                vec!["$Work".into()]
            } else {
                vec![]
            },
            internal_date: 1_600_000_000 + uid as i64,
            size: 0,
            crlf_size: 0,
            blob_id: String::new(),
        },
        data: text.as_bytes().to_vec(),
        summary: None,
    };
    store
        .import_messages(
            inbox.id,
            vec![
                message(
                    40,
                    700,
                    flags::SEEN,
                    "Subject: forty\r\n\r\nimported body\n",
                ),
                message(89, 777, 0, "Subject: last\r\n\r\n"),
            ],
            vec![(3, 12), (41, 701)],
        )
        .await
        .unwrap();
    let got = store.mailbox_by_id(inbox.id).await.unwrap().unwrap();
    assert_eq!(
        (got.uid_validity, got.uid_next, got.highest_modseq),
        (1_234_567, 90, 777)
    );
    assert_eq!(
        (got.messages, got.unseen),
        (2, 1),
        "counts follow the messages"
    );
    let messages = store.list_messages(inbox.id).await.unwrap();
    assert_eq!(
        messages
            .iter()
            .map(|m| (m.uid, m.modseq, m.flags, m.internal_date))
            .collect::<Vec<_>>(),
        [
            (40, 700, flags::SEEN, 1_600_000_040),
            (89, 777, 0, 1_600_000_089)
        ]
    );
    assert_eq!(messages[0].keywords, ["$Work"]);
    assert_eq!(
        messages[0].crlf_size,
        messages[0].size + 1,
        "sizes are computed"
    );
    assert_eq!(
        store.read_message(inbox.id, 40).await.unwrap(),
        b"Subject: forty\r\n\r\nimported body\n"
    );
    let meta = store
        .message_meta(inbox.id, &[89, 3, 40, 40])
        .await
        .unwrap();
    assert_eq!(
        meta.iter()
            .map(|m| (m.uid, m.modseq, m.flags))
            .collect::<Vec<_>>(),
        [(40, 700, flags::SEEN), (89, 777, 0)],
        "existing UIDs, in order, once"
    );
    assert_eq!(meta[0].keywords, ["$Work"]);
    assert_eq!(
        store.expunged_records(inbox.id).await.unwrap(),
        [(3, 12), (41, 701)]
    );
    assert_eq!(store.expunged_since(inbox.id, 100).await.unwrap(), [41]);
    assert_eq!(
        store
            .search_text(inbox.id, "IMPORTED", TextScope::Body)
            .await
            .unwrap(),
        [40],
        "imported text is searchable"
    );
    // New mail continues after the imported UIDNEXT.
    let delivered = store
        .deliver(Delivery {
            data: b"Subject: new\r\n\r\n".to_vec(),
            recipients: vec![kim],
            internal_date: 0,
            summary: None,
        })
        .await
        .unwrap();
    assert_eq!(delivered[0].uid, 90);
    let archived = store.mailbox_by_id(archive_id).await.unwrap().unwrap();
    assert_eq!(archived.special_use, Some(SpecialUse::Archive));
    assert!(!archived.subscribed);
    assert_eq!((archived.uid_validity, archived.uid_next), (99, 5));

    let entry = QueueEntry {
        id: 0,
        envelope: Envelope {
            sender: "kim@d21.test".into(),
            created: 1_700_000_000,
            expires: 1_700_400_000,
            envid: Some("e10".into()),
            ret: Some(Ret::Full),
            smtputf8: true,
        },
        size: 0,
        recipients: vec![
            Recipient {
                address: "a@far.test".into(),
                status: RecipientStatus::Deferred,
                attempts: 3,
                next_attempt: 1_700_000_900,
                last_error: Some("451 later".into()),
                notify: dsn_notify::DELAY,
                orcpt: Some("rfc822;A@far.test".into()),
            },
            Recipient {
                address: "b@far.test".into(),
                status: RecipientStatus::Delivered,
                attempts: 1,
                next_attempt: 1_700_000_000,
                last_error: None,
                notify: 0,
                orcpt: None,
            },
        ],
    };
    let queued = store
        .import_queued(entry.clone(), b"Subject: queued\r\n\r\n".to_vec())
        .await
        .unwrap();
    let got = store.queue_entry(queued).await.unwrap().unwrap();
    assert_eq!(
        got,
        QueueEntry {
            id: queued,
            size: 19,
            ..entry
        }
    );
    assert_eq!(
        store.queue_data(queued).await.unwrap(),
        b"Subject: queued\r\n\r\n"
    );
    assert!(store.drop_queue(queued).await.unwrap());
}
