//! Unit tests that need a PostgreSQL server (each skips, loudly, without one).

use std::sync::Arc;

use store::prelude::*;
use store::{AccountId, Address, Secrets};
use test_support::PgCluster;

use crate::PostgresStore;

/// Test set-up: a throwaway cluster, a store on a fresh database, domain `t.test` and the
/// account `u@t.test` (None when PostgreSQL is not installed and the test is skipped).
pub(crate) async fn test_store() -> Option<(PgCluster, PostgresStore, AccountId)> {
    let cluster = PgCluster::start()?;
    let store = PostgresStore::connect(&cluster.create_database(), 4, "test")
        .await
        .unwrap();
    store.add_domain("t.test").await.unwrap();
    let id = store
        .create_account(
            &Address::parse("u@t.test").unwrap(),
            &Secrets {
                password_hash: "h".into(),
                scram: None,
            },
        )
        .await
        .unwrap();
    Some((cluster, store, id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    let Some(cluster) = PgCluster::start() else {
        return;
    };
    let store = PostgresStore::connect(&cluster.create_database(), 8, "test")
        .await
        .unwrap();
    store::conformance::run(Arc::new(store)).await;
}

mod nodes {
    use std::sync::Arc;

    use store::prelude::*;
    use store::{Address, Delivery, Secrets};
    use test_support::PgCluster;

    use crate::PostgresStore;

    /// Two stores on one database (two nodes): deliveries from both into one INBOX, and a
    /// reader that follows them incrementally, as an IMAP session does, never sees a gap.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_deliveries_become_visible_in_uid_order() {
        let Some(cluster) = PgCluster::start() else {
            return;
        };
        let url = cluster.create_database();
        let a = Arc::new(PostgresStore::connect(&url, 8, "a").await.unwrap());
        let b = Arc::new(PostgresStore::connect(&url, 8, "b").await.unwrap());
        a.add_domain("n.test").await.unwrap();
        let secrets = Secrets {
            password_hash: "h".into(),
            scram: None,
        };
        let id = a
            .create_account(&Address::parse("u@n.test").unwrap(), &secrets)
            .await
            .unwrap();
        let inbox = a.mailbox(id, "INBOX").await.unwrap().unwrap().id;
        let mut tasks = Vec::new();
        for t in 0..8 {
            let store = if t % 2 == 0 { a.clone() } else { b.clone() };
            tasks.push(tokio::spawn(async move {
                for i in 0..40 {
                    store
                        .deliver(Delivery {
                            data: format!("Subject: {t}-{i}\r\n\r\nx\r\n").into_bytes(),
                            recipients: vec![id],
                            internal_date: 0,
                            summary: None,
                        })
                        .await
                        .unwrap();
                }
            }));
        }
        let mut seen: Vec<u32> = Vec::new();
        while seen.len() < 320 {
            let last = seen.last().copied().unwrap_or(0);
            for m in b.message_flags(inbox, last).await.unwrap() {
                seen.push(m.uid);
            }
            assert_eq!(seen, (1..=seen.len() as u32).collect::<Vec<_>>());
        }
        for task in tasks {
            task.await.unwrap();
        }
    }
}

mod errors {
    use store::StoreError;

    use crate::PostgresStore;
    use crate::pool::{backend, retryable};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn errors_say_what_the_server_said_and_races_are_retried() {
        let Some(cluster) = test_support::PgCluster::start() else {
            return;
        };
        let store = PostgresStore::connect(&cluster.create_database(), 2, "e")
            .await
            .unwrap();
        let client = store.client().await.unwrap();
        let error = backend(
            client
                .batch_execute("SELECT * FROM nowhere")
                .await
                .unwrap_err(),
        );
        let text = error.to_string();
        assert!(
            text.contains("relation \"nowhere\" does not exist") && text.contains("42P01"),
            "{text}"
        );
        assert!(!retryable(&error));
        let error = backend(
            client
                .batch_execute("DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '40P01'; END $$")
                .await
                .unwrap_err(),
        );
        assert!(retryable(&error), "a deadlock is run again: {error}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bad_url_or_a_missing_server_is_a_clear_error() {
        let Err(StoreError::Invalid(text)) =
            PostgresStore::connect("postgres://localhost:notaport/db", 2, "n").await
        else {
            panic!("a malformed URL is refused");
        };
        assert!(text.contains("bad PostgreSQL URL"), "{text}");
        let port = test_support::free_port();
        let Err(error) =
            PostgresStore::connect(&format!("postgres://u@127.0.0.1:{port}/db"), 2, "n").await
        else {
            panic!("nobody listens there");
        };
        assert!(
            error.to_string().contains("cannot connect to PostgreSQL"),
            "{error}"
        );
    }
}

mod index {
    use std::time::Duration;

    use store::prelude::*;
    use store::{Delivery, TextScope};

    use super::test_store;
    use crate::pool::query_one;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_texts_reach_the_index_and_are_found_before_and_after() {
        let Some((_cluster, store, id)) = test_store().await else {
            return;
        };
        for i in 0..30 {
            store
                .deliver(Delivery {
                    data: format!("Subject: n{i}\r\n\r\nneedle{i} Straße 草\r\n").into_bytes(),
                    recipients: vec![id],
                    internal_date: 0,
                    summary: None,
                })
                .await
                .unwrap();
        }
        let inbox = store.mailbox(id, "INBOX").await.unwrap().unwrap().id;
        assert_eq!(
            store
                .search_text(inbox, "NEEDLE17", TextScope::Body)
                .await
                .unwrap(),
            [18],
            "found at once, indexed or not"
        );
        let mut waited = 0;
        while store.index_backlog().await.unwrap() > 0 {
            assert!(waited < 200, "the index queue drains");
            tokio::time::sleep(Duration::from_millis(50)).await;
            waited += 1;
        }
        let client = store.client().await.unwrap();
        let indexed: i64 = query_one(&client, "SELECT COUNT(*) FROM search", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(indexed, 30);
        assert_eq!(
            store
                .search_text(inbox, "needle17", TextScope::Body)
                .await
                .unwrap(),
            [18]
        );
        assert_eq!(
            store
                .search_text(inbox, "STRASSE", TextScope::All)
                .await
                .unwrap()
                .len(),
            0,
            "a substring match, not a stemmer"
        );
        assert_eq!(
            store
                .search_text(inbox, "STRAßE 草", TextScope::Body)
                .await
                .unwrap()
                .len(),
            30,
            "case-insensitive beyond ASCII"
        );
        assert_eq!(
            store
                .search_text(inbox, "n2", TextScope::Headers)
                .await
                .unwrap(),
            [3, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30],
            "n2 and n20..n29"
        );
    }
}

mod listen {
    use std::time::Duration;

    use store::prelude::*;
    use store::{Change, Delivery};

    use super::test_store;
    use crate::pool::query_one;

    /// A node whose LISTEN connection dies (a database restart, a network cut) listens again
    /// and goes on hearing changes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lost_listen_connection_comes_back() {
        let Some((_cluster, store, id)) = test_store().await else {
            return;
        };
        let mut changes = store.subscribe(id);
        let client = store.client().await.unwrap();
        let killed: i64 = query_one(
            &client,
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE query = 'LISTEN pigeon' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
        assert_eq!(killed, 1, "the node's one listening connection");
        // Deliver until the listener is back (it retries every second).
        let deliver = || {
            store.deliver(Delivery {
                data: b"Subject: again\r\n\r\n".to_vec(),
                recipients: vec![id],
                internal_date: 0,
                summary: None,
            })
        };
        let started = std::time::Instant::now();
        let mut resync = false;
        loop {
            deliver().await.unwrap();
            match tokio::time::timeout(Duration::from_millis(500), changes.recv()).await {
                Ok(Ok(Change::MessageAdded { .. })) => {
                    assert!(resync, "sessions are told to reload first");
                    break;
                }
                // What was missed while not listening: sessions reload.
                Ok(Ok(Change::Resync)) => resync = true,
                Ok(other) => panic!("unexpected {other:?}"),
                Err(_) => assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "no notification 10 s after the LISTEN connection died"
                ),
            }
        }
    }
}

mod maildrop {
    use store::prelude::*;
    use store::rules::now;

    use super::test_store;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_pop3_session_per_maildrop_across_nodes() {
        let Some((_cluster, store, id)) = test_store().await else {
            return;
        };
        let later = now() + 600;
        assert!(store.lock_maildrop(id, "node1-a", later).await.unwrap());
        assert!(
            !store.lock_maildrop(id, "node2-b", later).await.unwrap(),
            "held"
        );
        assert!(
            store
                .lock_maildrop(id, "node1-a", later + 60)
                .await
                .unwrap(),
            "renewed"
        );
        store.unlock_maildrop(id, "node2-b").await.unwrap();
        assert!(
            !store.lock_maildrop(id, "node2-b", later).await.unwrap(),
            "only the holder unlocks"
        );
        store.unlock_maildrop(id, "node1-a").await.unwrap();
        assert!(store.lock_maildrop(id, "node2-b", now() - 1).await.unwrap());
        // A dead holder's lock lapses at its time.
        assert!(
            store.lock_maildrop(id, "node1-c", later).await.unwrap(),
            "lapsed"
        );
    }
}
