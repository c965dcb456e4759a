//! The conformance suite: the behaviour every [`Store`] backend must show.
//!
//! A backend's tests call [`run`] with a fresh, empty store. Each part uses its own domain so
//! the parts cannot disturb each other. Failures panic with a message naming the rule.

use std::sync::Arc;

use crate::{
    Address, AttemptResult, Change, Delivery, DkimKey, FlagMode, ImportedMessage, Mailbox, Message,
    MessageSummary, Outbound, OutboundRecipient, QueueEntry, QueueRecipient, RecipientStatus,
    Resolution, Ret, Secrets, SpecialUse, Store, StoreError, Target, TextScope, dsn_notify, flags,
    resolve,
};

/// Fixed secrets; the store treats them as opaque text.
fn secrets(tag: &str) -> Secrets {
    Secrets {
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ${tag}"),
        scram: Some(format!("SCRAM-SHA-256$4096:c2FsdA==${tag}:{tag}")),
    }
}

fn addr(s: &str) -> Address {
    Address::parse(s).expect("test address")
}

/// Runs every part of the suite against `store`, which must be empty.
pub async fn run(store: Arc<dyn Store>) {
    domains(&*store).await;
    accounts(&*store).await;
    aliases_and_routing(&*store).await;
    delivery(&*store).await;
    concurrent_delivery(store.clone()).await;
    notifications(&*store).await;
    flags_and_expunge(&*store).await;
    mailboxes_append_copy(&*store).await;
    summaries_and_search(&*store).await;
    big_message_indexing(&*store).await;
    queue(&*store).await;
    uploads(&*store).await;
    import(&*store).await;
    let report = store.verify().await.expect("verify");
    assert!(
        report.problems.is_empty(),
        "verify found problems: {:?}",
        report.problems
    );
}

async fn domains(store: &dyn Store) {
    store.add_domain("D1.Test").await.expect("add domain");
    assert!(
        store.has_domain("d1.test").await.unwrap(),
        "domains are case-insensitive"
    );
    assert!(matches!(
        store.add_domain("d1.test").await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert!(matches!(
        store.add_domain("bad domain").await,
        Err(StoreError::Invalid(_))
    ));
    assert!(
        store
            .list_domains()
            .await
            .unwrap()
            .contains(&"d1.test".to_string())
    );
    store
        .create_account(&addr("u@d1.test"), &secrets("h"))
        .await
        .expect("create account");
    assert!(
        matches!(
            store.delete_domain("d1.test").await,
            Err(StoreError::InUse(_))
        ),
        "a domain with users cannot be deleted"
    );
    store.delete_account(&addr("u@d1.test")).await.unwrap();
    store
        .delete_domain("d1.test")
        .await
        .expect("delete empty domain");
    assert!(!store.has_domain("d1.test").await.unwrap());
    assert!(matches!(
        store.delete_domain("d1.test").await,
        Err(StoreError::NotFound(_))
    ));
}

async fn accounts(store: &dyn Store) {
    assert!(
        matches!(
            store
                .create_account(&addr("a@unknown.test"), &secrets("h"))
                .await,
            Err(StoreError::Invalid(_))
        ),
        "accounts need a known domain"
    );
    store.add_domain("d2.test").await.unwrap();
    let id = store
        .create_account(&addr("Alice@D2.test"), &secrets("h"))
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_account(&addr("alice@d2.test"), &secrets("h"))
            .await,
        Err(StoreError::AlreadyExists(_))
    ));
    let account = store
        .account(&addr("alice@d2.test"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(account.id, id);
    assert_eq!(account.address, "alice@d2.test");
    let credentials = store
        .credentials(&addr("ALICE@d2.test"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(credentials.account_id, id);
    assert_eq!(credentials.address, "alice@d2.test");
    assert_eq!(credentials.secrets, secrets("h"));
    store
        .set_password(&addr("alice@d2.test"), &secrets("new"))
        .await
        .unwrap();
    assert_eq!(
        store
            .credentials(&addr("alice@d2.test"))
            .await
            .unwrap()
            .unwrap()
            .secrets,
        secrets("new")
    );
    assert!(matches!(
        store
            .set_password(&addr("nobody@d2.test"), &secrets("x"))
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store.credentials(&addr("nobody@d2.test")).await.unwrap(),
        None
    );

    let mailboxes = store.list_mailboxes(id).await.unwrap();
    let inbox = mailboxes
        .iter()
        .find(|m| m.name == "INBOX")
        .expect("INBOX exists");
    assert_eq!(inbox.special_use, None);
    assert_eq!(inbox.uid_next, 1);
    assert!(inbox.uid_validity > 0);
    for usage in SpecialUse::ALL {
        let mailbox = mailboxes
            .iter()
            .find(|m| m.special_use == Some(usage))
            .unwrap_or_else(|| panic!("{usage:?} mailbox exists"));
        assert_eq!(mailbox.name, usage.default_name());
    }
    assert!(
        store
            .list_accounts()
            .await
            .unwrap()
            .iter()
            .any(|a| a.id == id)
    );

    store.delete_account(&addr("alice@d2.test")).await.unwrap();
    assert_eq!(store.account(&addr("alice@d2.test")).await.unwrap(), None);
    assert!(
        store.list_mailboxes(id).await.unwrap().is_empty(),
        "mailboxes go with the account"
    );
    assert!(matches!(
        store.delete_account(&addr("alice@d2.test")).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn aliases_and_routing(store: &dyn Store) {
    store.add_domain("d3.test").await.unwrap();
    let bob = store
        .create_account(&addr("bob@d3.test"), &secrets("h"))
        .await
        .unwrap();
    let carol = store
        .create_account(&addr("carol@d3.test"), &secrets("h"))
        .await
        .unwrap();
    let route = |s: &'static str| async move { resolve(store, &addr(s)).await.unwrap() };

    assert_eq!(
        route("bob@d3.test").await,
        Resolution::Deliver(vec![Target::Local(bob)])
    );
    assert_eq!(
        route("BOB@D3.TEST").await,
        Resolution::Deliver(vec![Target::Local(bob)])
    );
    assert_eq!(
        route("bob+lists@d3.test").await,
        Resolution::Deliver(vec![Target::Local(bob)]),
        "subaddress delivers to the user"
    );
    assert_eq!(route("nobody@d3.test").await, Resolution::NoSuchUser);
    assert_eq!(route("bob@elsewhere.test").await, Resolution::NotLocal);

    store
        .add_alias(
            "team@d3.test",
            &[
                "bob@d3.test".into(),
                "carol@d3.test".into(),
                "x@remote.test".into(),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        route("team@d3.test").await,
        Resolution::Deliver(vec![
            Target::Local(bob),
            Target::Local(carol),
            Target::Remote("x@remote.test".into())
        ])
    );
    // An alias of an alias, and a loop that must terminate.
    store
        .add_alias("all@d3.test", &["team@d3.test".into()])
        .await
        .unwrap();
    assert!(matches!(route("all@d3.test").await, Resolution::Deliver(t) if t.len() == 3));
    store
        .add_alias("loop1@d3.test", &["loop2@d3.test".into()])
        .await
        .unwrap();
    store
        .add_alias(
            "loop2@d3.test",
            &["loop1@d3.test".into(), "bob@d3.test".into()],
        )
        .await
        .unwrap();
    assert_eq!(
        route("loop1@d3.test").await,
        Resolution::Deliver(vec![Target::Local(bob)])
    );

    store
        .add_alias("@d3.test", &["carol@d3.test".into()])
        .await
        .unwrap();
    assert_eq!(
        route("anything@d3.test").await,
        Resolution::Deliver(vec![Target::Local(carol)]),
        "catch-all"
    );
    assert_eq!(
        route("bob@d3.test").await,
        Resolution::Deliver(vec![Target::Local(bob)]),
        "a real user wins over the catch-all"
    );
    let mut sources = store.alias_sources("bob@d3.test").await.unwrap();
    sources.sort();
    assert_eq!(sources, ["loop2@d3.test", "team@d3.test"]);
    let aliases = store.list_aliases().await.unwrap();
    let team = aliases
        .iter()
        .find(|a| a.address == "team@d3.test")
        .unwrap();
    assert_eq!(team.targets.len(), 3);

    assert!(matches!(
        store
            .add_alias("x@unknown.test", &["bob@d3.test".into()])
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.delete_domain("d3.test").await,
        Err(StoreError::InUse(_))
    ));
    store.delete_alias("@d3.test").await.unwrap();
    assert_eq!(route("anything@d3.test").await, Resolution::NoSuchUser);
    assert!(matches!(
        store.delete_alias("@d3.test").await,
        Err(StoreError::NotFound(_))
    ));
}

async fn delivery(store: &dyn Store) {
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

async fn concurrent_delivery(store: Arc<dyn Store>) {
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

async fn notifications(store: &dyn Store) {
    store.add_domain("d6.test").await.unwrap();
    let gus = store
        .create_account(&addr("gus@d6.test"), &secrets("h"))
        .await
        .unwrap();
    let mut changes = store.subscribe(gus);
    let delivered = store
        .deliver(Delivery {
            data: b"Subject: hi\r\n\r\n".to_vec(),
            recipients: vec![gus],
            internal_date: 0,
            summary: None,
        })
        .await
        .unwrap();
    let change = tokio::time::timeout(std::time::Duration::from_secs(5), changes.recv())
        .await
        .expect("a notification arrives")
        .unwrap();
    assert!(
        matches!(change, Change::MessageAdded { mailbox_id, uid: 1, .. } if mailbox_id == delivered[0].mailbox_id)
    );
}

async fn flags_and_expunge(store: &dyn Store) {
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
    assert!(matches!(
        changes.recv().await.unwrap(),
        Change::FlagsChanged { uid: 1, .. }
    ));

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

async fn mailboxes_append_copy(store: &dyn Store) {
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

async fn summaries_and_search(store: &dyn Store) {
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
async fn big_message_indexing(store: &dyn Store) {
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

async fn queue(store: &dyn Store) {
    let signal = store.queue_signal();
    let woken = signal.notified();
    let id = store
        .enqueue(Outbound {
            sender: "hal@d6.test".into(),
            recipients: vec![
                "x@remote.test".into(),
                OutboundRecipient {
                    address: "y@remote.test".into(),
                    notify: dsn_notify::SUCCESS | dsn_notify::FAILURE,
                    orcpt: Some("rfc822;Y@remote.test".into()),
                },
            ],
            data: b"Subject: out\r\n\r\n".to_vec(),
            created: 1_700_000_000,
            expires: 1_700_432_000,
            envid: Some("env-1".into()),
            ret: Some(Ret::Headers),
            smtputf8: false,
        })
        .await
        .unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(1), woken)
        .await
        .expect("enqueue wakes the queue");
    let entries = store.list_queue().await.unwrap();
    let entry = entries.iter().find(|e| e.id == id).expect("queued");
    assert_eq!(entry.sender, "hal@d6.test");
    assert_eq!(entry.size, 16);
    assert_eq!(entry.envid.as_deref(), Some("env-1"));
    assert_eq!(entry.ret, Some(Ret::Headers));
    assert_eq!(entry.recipients.len(), 2);
    assert!(
        entry
            .recipients
            .iter()
            .all(|r| r.status == RecipientStatus::Pending && r.attempts == 0)
    );
    assert_eq!(store.queue_entry(id).await.unwrap().as_ref(), Some(entry));
    assert_eq!(store.queue_data(id).await.unwrap(), b"Subject: out\r\n\r\n");
    assert_eq!(store.next_queue_due().await.unwrap(), Some(1_700_000_000));

    // Not due yet: nothing to claim.
    assert!(
        store
            .claim_queue(1_699_999_999, 1_700_000_100, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Due: claimed once, with the DSN options; a second claim during the lease gets nothing.
    let jobs = store
        .claim_queue(1_700_000_000, 1_700_000_600, 10)
        .await
        .unwrap();
    let job = jobs.iter().find(|j| j.id == id).expect("claimed");
    assert_eq!(job.expires, 1_700_432_000);
    assert_eq!(job.recipients.len(), 2);
    let y = job
        .recipients
        .iter()
        .find(|r| r.address == "y@remote.test")
        .unwrap();
    assert_eq!(y.notify, dsn_notify::SUCCESS | dsn_notify::FAILURE);
    assert_eq!(y.orcpt.as_deref(), Some("rfc822;Y@remote.test"));
    assert!(
        store
            .claim_queue(1_700_000_001, 1_700_000_600, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Released leases (the node restarted) make them due again at once.
    store.release_queue_leases().await.unwrap();
    assert_eq!(
        store
            .claim_queue(1_700_000_001, 1_700_000_600, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    // A lapsed lease (the worker died) makes them due again.
    assert_eq!(
        store
            .claim_queue(1_700_000_600, 1_700_001_200, 10)
            .await
            .unwrap()
            .len(),
        1
    );

    // One delivered, one deferred: the entry stays with the deferred recipient.
    store
        .record_attempt(
            id,
            vec![
                AttemptResult {
                    address: "x@remote.test".into(),
                    status: RecipientStatus::Delivered,
                    error: None,
                    next_attempt: 0,
                },
                AttemptResult {
                    address: "y@remote.test".into(),
                    status: RecipientStatus::Deferred,
                    error: Some("451 4.3.0 try later".into()),
                    next_attempt: 1_700_000_900,
                },
            ],
        )
        .await
        .unwrap();
    let entry = store.queue_entry(id).await.unwrap().expect("still queued");
    let y = entry
        .recipients
        .iter()
        .find(|r| r.address == "y@remote.test")
        .unwrap();
    assert_eq!(y.status, RecipientStatus::Deferred);
    assert_eq!(y.attempts, 1);
    assert_eq!(y.last_error.as_deref(), Some("451 4.3.0 try later"));
    assert_eq!(store.next_queue_due().await.unwrap(), Some(1_700_000_900));
    // Only the deferred recipient comes back, and only when due (or retried by hand).
    assert!(
        store
            .claim_queue(1_700_000_800, 1_700_001_400, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.retry_queue(Some(id), 1_700_000_800).await.unwrap(), 1);
    let jobs = store
        .claim_queue(1_700_000_800, 1_700_001_400, 10)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].recipients.len(), 1);
    assert_eq!(jobs[0].recipients[0].attempts, 1);
    // All final: the entry leaves the queue.
    store
        .record_attempt(
            id,
            vec![AttemptResult {
                address: "y@remote.test".into(),
                status: RecipientStatus::Failed,
                error: Some("550 5.1.1 no such user".into()),
                next_attempt: 0,
            }],
        )
        .await
        .unwrap();
    assert_eq!(store.queue_entry(id).await.unwrap(), None);
    assert!(store.queue_data(id).await.is_err());
    assert_eq!(store.next_queue_due().await.unwrap(), None);

    // Dropping by hand.
    let id = store
        .enqueue(Outbound {
            sender: String::new(),
            recipients: vec!["z@remote.test".into()],
            data: b"Subject: bounce\r\n\r\n".to_vec(),
            created: 1_700_000_000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(store.drop_queue(id).await.unwrap());
    assert!(!store.drop_queue(id).await.unwrap());
    assert!(store.list_queue().await.unwrap().is_empty());

    // DKIM keys belong to a known domain.
    let key = DkimKey {
        domain: "d10.test".into(),
        selector: "s1".into(),
        algorithm: "ed25519".into(),
        private_key: vec![1, 2, 3],
        public_key: "AAAA".into(),
        created: 1_700_000_000,
    };
    assert!(matches!(
        store
            .add_dkim_key(DkimKey {
                domain: "unknown.test".into(),
                ..key.clone()
            })
            .await,
        Err(StoreError::NotFound(_))
    ));
    store.add_domain("d10.test").await.unwrap();
    store.add_dkim_key(key.clone()).await.unwrap();
    assert!(matches!(
        store.add_dkim_key(key.clone()).await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert_eq!(store.dkim_keys("D10.test").await.unwrap(), vec![key]);
}

async fn uploads(store: &dyn Store) {
    let first = store.begin_upload().await.unwrap();
    let second = store.begin_upload().await.unwrap();
    assert_ne!(first, second);
    let big = vec![b'x'; 300_000];
    store
        .upload_chunk(first, b"Subject: big\r\n\r\n".to_vec())
        .await
        .unwrap();
    store.upload_chunk(second, b"other".to_vec()).await.unwrap();
    store.upload_chunk(first, big.clone()).await.unwrap();
    store.upload_chunk(first, b"\r\n".to_vec()).await.unwrap();
    // Unfinished uploads are visible to `pigeon verify` (issue 14).
    let report = store.verify().await.unwrap();
    assert_eq!(report.uploads, 2, "both uploads are counted");
    assert_eq!(
        report.upload_bytes,
        (16 + big.len() + 2 + 5) as u64,
        "with their bytes"
    );
    let mut expected = b"Subject: big\r\n\r\n".to_vec();
    expected.extend_from_slice(&big);
    expected.extend_from_slice(b"\r\n");
    assert_eq!(
        store.take_upload(first).await.unwrap(),
        expected,
        "pieces in order"
    );
    assert!(
        matches!(store.take_upload(first).await, Err(StoreError::NotFound(_))),
        "taken once"
    );
    assert!(matches!(
        store.upload_chunk(first, b"late".to_vec()).await,
        Err(StoreError::NotFound(_))
    ));
    store.discard_upload(second).await.unwrap();
    assert!(matches!(
        store.take_upload(second).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store
            .take_upload(store.begin_upload().await.unwrap())
            .await
            .unwrap(),
        b""
    );
    let report = store.verify().await.unwrap();
    assert_eq!(
        (report.uploads, report.upload_bytes),
        (0, 0),
        "taken and discarded uploads are gone"
    );
}

/// What `pigeon migrate` relies on: mailboxes, messages, expunge records and queue entries
/// come back exactly as they were imported.
async fn import(store: &dyn Store) {
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
        sender: "kim@d21.test".into(),
        size: 0,
        created: 1_700_000_000,
        expires: 1_700_400_000,
        envid: Some("e10".into()),
        ret: Some(Ret::Full),
        smtputf8: true,
        recipients: vec![
            QueueRecipient {
                address: "a@far.test".into(),
                status: RecipientStatus::Deferred,
                attempts: 3,
                next_attempt: 1_700_000_900,
                last_error: Some("451 later".into()),
                notify: dsn_notify::DELAY,
                orcpt: Some("rfc822;A@far.test".into()),
            },
            QueueRecipient {
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
