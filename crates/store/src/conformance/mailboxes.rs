//! Mailboxes: create, rename, delete, subscribe; APPEND, COPY and MOVE between them.

use super::*;

pub(super) async fn mailboxes_append_copy(store: &dyn Store) {
    store.add_domain("d8.test").await.unwrap();
    let jo = store
        .create_account(&addr("jo@d8.test"), &secrets("h"))
        .await
        .unwrap();
    let inbox = store.mailbox(jo, "INBOX").await.unwrap().unwrap();

    // Create, duplicate, bad names.
    let work = store.create_mailbox(jo, "Work", None).await.unwrap();
    let child = store.create_mailbox(jo, "Work/2026", None).await.unwrap();
    assert!(matches!(
        store.create_mailbox(jo, "Work", None).await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert!(matches!(
        store.create_mailbox(jo, "inbox", None).await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert!(matches!(
        store.create_mailbox(jo, "bad/", None).await,
        Err(StoreError::Invalid(_))
    ));
    let work_box = store.mailbox_by_id(work).await.unwrap().unwrap();
    assert_eq!(work_box.name, "Work");
    assert!(!work_box.subscribed, "CREATE does not subscribe");
    assert!(
        work_box.uid_validity > inbox.uid_validity,
        "a new mailbox gets a new UIDVALIDITY"
    );
    store.set_subscribed(work, true).await.unwrap();
    assert!(store.mailbox_by_id(work).await.unwrap().unwrap().subscribed);

    // Append with flags, keywords and a date.
    let data = b"Subject: appended\r\n\r\nhello\r\n".to_vec();
    let uid = store
        .append(
            work,
            data.clone(),
            flags::SEEN | flags::DRAFT,
            vec!["$Forwarded".into()],
            1_600_000_000,
            None,
        )
        .await
        .unwrap();
    assert_eq!(uid, 1);
    let m = &store.list_messages(work).await.unwrap()[0];
    assert_eq!(
        (m.flags, m.keywords.clone(), m.internal_date),
        (
            flags::SEEN | flags::DRAFT,
            vec!["$Forwarded".to_string()],
            1_600_000_000
        )
    );
    assert_eq!(store.read_message(work, 1).await.unwrap(), data);

    // Keywords and UNCHANGEDSINCE.
    let modseq = m.modseq;
    let (updated, failed) = store
        .store_flags(
            work,
            &[1],
            FlagMode::Add,
            flags::FLAGGED,
            &["Work".into(), "$forwarded".into()],
            Some(modseq),
        )
        .await
        .unwrap();
    assert!(failed.is_empty());
    assert_eq!(
        updated[0].keywords,
        ["$Forwarded", "Work"],
        "keywords compare case-insensitively"
    );
    let (updated, failed) = store
        .store_flags(work, &[1], FlagMode::Replace, 0, &[], Some(modseq))
        .await
        .unwrap();
    assert!(updated.is_empty());
    assert_eq!(failed, [1], "modified since: refused");
    let (updated, _) = store
        .store_flags(
            work,
            &[1],
            FlagMode::Remove,
            flags::DRAFT,
            &["work".into()],
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        (updated[0].flags, updated[0].keywords.clone()),
        (flags::SEEN | flags::FLAGGED, vec!["$Forwarded".to_string()])
    );

    // Copy shares the bytes; move removes from the source.
    let pairs = store.copy(work, &[1, 7], inbox.id, false).await.unwrap();
    assert_eq!(pairs, [(1, 1)]);
    assert_eq!(store.read_message(inbox.id, 1).await.unwrap(), data);
    assert_eq!(
        store.list_messages(inbox.id).await.unwrap()[0].flags,
        flags::SEEN | flags::FLAGGED
    );
    let moved = store.copy(inbox.id, &[1], child, true).await.unwrap();
    assert_eq!(moved, [(1, 1)]);
    assert!(store.list_messages(inbox.id).await.unwrap().is_empty());

    // Rename carries children; INBOX rename moves the messages out.
    store.rename_mailbox(work, "Projects").await.unwrap();
    let names: Vec<String> = store
        .list_mailboxes(jo)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert!(
        names.contains(&"Projects".to_string()) && names.contains(&"Projects/2026".to_string()),
        "{names:?}"
    );
    assert!(matches!(
        store.rename_mailbox(work, "Sent").await,
        Err(StoreError::AlreadyExists(_))
    ));
    store
        .append(inbox.id, data.clone(), 0, vec![], 0, None)
        .await
        .unwrap();
    store.rename_mailbox(inbox.id, "Old Inbox").await.unwrap();
    let old = store.mailbox(jo, "Old Inbox").await.unwrap().unwrap();
    assert_eq!(old.messages, 1);
    let inbox_now = store.mailbox(jo, "INBOX").await.unwrap().unwrap();
    assert_eq!(inbox_now.messages, 0);
    assert_eq!(inbox_now.uid_next, 3, "INBOX keeps its UID counter");

    // Delete.
    assert!(matches!(
        store.delete_mailbox(inbox.id).await,
        Err(StoreError::Invalid(_))
    ));
    store.delete_mailbox(work).await.unwrap();
    assert!(store.mailbox_by_id(work).await.unwrap().is_none());
    let status = store.mailbox_by_id(child).await.unwrap().unwrap();
    assert_eq!((status.messages, status.size), (1, data.len() as u64));
}
