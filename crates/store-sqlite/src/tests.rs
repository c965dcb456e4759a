//! Unit tests: the write path, reopening, indexing, verify, and the conformance suite.

use super::*;
use store::prelude::*;

/// Issue 14: a panic in one write job ended the writer thread, and every later write of
/// every session failed ("the writer thread has stopped") while the process stayed up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_write_job_fails_alone_and_later_writes_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let result: Result<()> = store
        .write(|conn| {
            conn.execute(
                "INSERT INTO domains (name, created) VALUES ('half.test', 0)",
                [],
            )
            .map_err(backend)?;
            panic!("a bug in a write job");
        })
        .await;
    match result {
        Err(StoreError::Backend(e)) => assert_eq!(e.to_string(), "internal error"),
        other => panic!("expected an internal error, got {other:?}"),
    }
    // A job that panics outside the caught part (the backstop in the batch loop).
    store
        .writer
        .lock()
        .unwrap()
        .send(Job {
            grows: 0,
            run: Box::new(|conn| {
                if let Some(conn) = conn {
                    let _ = conn.execute(
                        "INSERT INTO domains (name, created) VALUES ('raw.test', 0)",
                        [],
                    );
                }
                panic!("a bug around a write job")
            }),
        })
        .unwrap();
    store.add_domain("after.test").await.unwrap();
    let domains: Vec<String> = store
        .read(|conn| {
            conn.prepare("SELECT name FROM domains ORDER BY name")
                .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
                .map_err(backend)
        })
        .await
        .unwrap();
    assert_eq!(
        domains,
        vec!["after.test".to_owned()],
        "the panicked jobs rolled back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    store::conformance::run(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_keeps_data_and_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SqliteStore::open(dir.path()).unwrap();
        store.add_domain("keep.test").await.unwrap();
    }
    let store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(store.list_domains().await.unwrap(), ["keep.test"]);
    let conn = Connection::open(dir.path().join("pigeon.db")).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, schema::MIGRATIONS.len() as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_does_not_spoil_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    // Many concurrent adds of the same domain land in shared batches: exactly one wins and
    // the others fail alone.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let store = store.clone();
        tasks.push(tokio::spawn(
            async move { store.add_domain("race.test").await },
        ));
    }
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => ok += 1,
            Err(StoreError::AlreadyExists(_)) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(store.list_domains().await.unwrap(), ["race.test"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_texts_reach_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    store.add_domain("i.test").await.unwrap();
    let id = store
        .create_account(
            &Address::parse("i@i.test").unwrap(),
            &Secrets {
                password_hash: "h".into(),
                scram: None,
            },
        )
        .await
        .unwrap();
    for i in 0..30 {
        let raw = format!("Subject: n{i}\r\n\r\nneedle{i} haystack\r\n").into_bytes();
        let summary = message_summary(&raw);
        store
            .deliver(Delivery {
                data: raw,
                recipients: vec![id],
                internal_date: 0,
                summary: Some(summary),
            })
            .await
            .unwrap();
    }
    let inbox = store.mailbox(id, "INBOX").await.unwrap().unwrap();
    // Found at once (queued or indexed)...
    assert_eq!(
        store
            .search_text(inbox.id, "NEEDLE17", TextScope::Body)
            .await
            .unwrap(),
        [18]
    );
    // ...and the idle writer drains the queue into the index.
    let conn = Connection::open(dir.path().join("pigeon.db")).unwrap();
    let mut waited = 0;
    while conn
        .query_row("SELECT COUNT(*) FROM index_queue", [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap()
        > 0
    {
        assert!(waited < 100, "the index queue drains");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        waited += 1;
    }
    let indexed: i64 = conn
        .query_row("SELECT COUNT(*) FROM search", [], |r| r.get(0))
        .unwrap();
    assert_eq!(indexed, 30);
    assert_eq!(
        store
            .search_text(inbox.id, "needle17", TextScope::Body)
            .await
            .unwrap(),
        [18]
    );
    assert_eq!(
        store
            .search_text(inbox.id, "haystack", TextScope::All)
            .await
            .unwrap()
            .len(),
        30
    );
}

fn message_summary(raw: &[u8]) -> MessageSummary {
    MessageSummary {
        envelope: b"(NIL)".to_vec(),
        body_structure: b"()".to_vec(),
        body: b"()".to_vec(),
        header: raw[..raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4].to_vec(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_detects_a_corrupted_blob() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    store.add_domain("v.test").await.unwrap();
    let id = store
        .create_account(
            &Address::parse("v@v.test").unwrap(),
            &Secrets {
                password_hash: "h".into(),
                scram: None,
            },
        )
        .await
        .unwrap();
    store
        .deliver(Delivery {
            data: b"Subject: x\r\n\r\n".to_vec(),
            recipients: vec![id],
            internal_date: 0,
            summary: None,
        })
        .await
        .unwrap();
    assert!(store.verify().await.unwrap().problems.is_empty());
    let conn = Connection::open(dir.path().join("pigeon.db")).unwrap();
    conn.execute("UPDATE blobs SET data = X'00'", []).unwrap();
    let problems = store.verify().await.unwrap().problems;
    assert!(problems.iter().any(|p| p.contains("hash")), "{problems:?}");
}
