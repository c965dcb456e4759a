//! The outbound queue: enqueue, claim with leases, attempts, retries, DSN options.

use super::*;

pub(super) async fn queue(store: &dyn Store) {
    let signal = store.queue_signal();
    let woken = signal.notified();
    let id = store
        .enqueue(Outbound {
            envelope: Envelope {
                sender: "hal@d6.test".into(),
                created: 1_700_000_000,
                expires: 1_700_432_000,
                envid: Some("env-1".into()),
                ret: Some(Ret::Headers),
                smtputf8: false,
            },
            recipients: vec![
                "x@remote.test".into(),
                Recipient {
                    address: "y@remote.test".into(),
                    notify: dsn_notify::SUCCESS | dsn_notify::FAILURE,
                    orcpt: Some("rfc822;Y@remote.test".into()),
                    ..Default::default()
                },
            ],
            data: b"Subject: out\r\n\r\n".to_vec(),
        })
        .await
        .unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(1), woken)
        .await
        .expect("enqueue wakes the queue");
    let entries = store.list_queue().await.unwrap();
    let entry = entries.iter().find(|e| e.id == id).expect("queued");
    assert_eq!(entry.envelope.sender, "hal@d6.test");
    assert_eq!(entry.size, 16);
    assert_eq!(entry.envelope.envid.as_deref(), Some("env-1"));
    assert_eq!(entry.envelope.ret, Some(Ret::Headers));
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
    assert_eq!(job.envelope.expires, 1_700_432_000);
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
    // A claim shows the message and recipient exactly as a listing does.
    assert_eq!(
        (&jobs[0].envelope, jobs[0].size),
        (&entry.envelope, entry.size)
    );
    assert_eq!(
        jobs[0].recipients[0],
        Recipient {
            next_attempt: 1_700_000_800,
            ..y.clone()
        }
    );
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
            envelope: Envelope {
                sender: String::new(),
                created: 1_700_000_000,
                ..Default::default()
            },
            recipients: vec!["z@remote.test".into()],
            data: b"Subject: bounce\r\n\r\n".to_vec(),
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
