//! The webmail's submission path (`Submitter`) on a real SQLite store: the same canonical line
//! endings, header limits and sender policy as SMTP submission (issue 14, finding 8).

use std::sync::Arc;
use std::time::Duration;

use store::{Address, Secrets, Store};
use submission::{SubmitError, Submitter};

struct Site {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    submitter: Submitter,
    bob: auth::Authenticated,
}

async fn site() -> Site {
    site_with(submission::Settings {
        hostname: "mail.localhost".into(),
        max_messages_per_hour: 1000,
        max_recipients_per_hour: 1000,
        queue_lifetime: Duration::from_secs(3600),
        ..Default::default()
    })
    .await
}

async fn site_with(settings: submission::Settings) -> Site {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(store_sqlite::SqliteStore::open(dir.path()).unwrap());
    store.add_domain("localhost").await.unwrap();
    let secrets = Secrets {
        password_hash: "unused".into(),
        scram: None,
    };
    let mut ids = Vec::new();
    for user in ["bob@localhost", "carol@localhost"] {
        ids.push(
            store
                .create_account(&Address::parse(user).unwrap(), &secrets)
                .await
                .unwrap(),
        );
    }
    store
        .add_alias("sales@localhost", &["bob@localhost".to_string()])
        .await
        .unwrap();
    let submitter = Submitter::new(
        store.clone(),
        Arc::new(submission::SendingLimits::default()),
        settings,
    );
    Site {
        _dir: dir,
        store,
        submitter,
        bob: auth::Authenticated {
            account_id: ids[0],
            address: "bob@localhost".into(),
        },
    }
}

impl Site {
    async fn submit(&self, header: &str, body: &[u8]) -> Result<Vec<u8>, SubmitError> {
        let data = [header.as_bytes(), b"\r\n\r\n", body].concat();
        self.submitter
            .submit(
                &self.bob,
                &["carol@localhost".to_string()],
                data,
                "127.0.0.1".parse().unwrap(),
            )
            .await
    }
}

#[tokio::test]
async fn every_sender_trick_is_refused_on_the_webmail_path() {
    let site = site().await;
    let tricks: [(&str, &str); 16] = [
        ("Sender", "From: bob@localhost\r\nSender: carol@localhost"),
        (
            "Resent-From",
            "From: bob@localhost\r\nResent-From: carol@localhost",
        ),
        (
            "Resent-Sender",
            "From: bob@localhost\r\nResent-Sender: carol@localhost",
        ),
        (
            "encoded word, no address",
            "From: =?utf-8?q?carol=40localhost?=",
        ),
        ("display name only", "From: Carol"),
        (
            "encoded display name",
            "From: =?utf-8?q?carol=40localhost?= <bob@localhost>",
        ),
        (
            "quoted display name",
            "From: \"carol@localhost\" <bob@localhost>",
        ),
        ("comment", "From: bob@localhost (carol@localhost)"),
        ("no From", "Subject: anonymous"),
        ("NUL", "From: carol@localhost\0<bob@localhost>"),
        (
            "two From fields",
            "From: bob@localhost\r\nFrom: carol@localhost",
        ),
        (
            "obsolete From spelling",
            "From: bob@localhost\r\nFROM : carol@localhost",
        ),
        ("second address", "From: bob@localhost, carol@localhost"),
        (
            "bare LF in the header",
            "From: bob@localhost\r\nSubject: x\nFrom: carol@localhost",
        ),
        (
            "bare LF header/body split",
            "From: bob@localhost\r\nSubject: x\n\nFrom: carol@localhost",
        ),
        (
            "bare CR in the header",
            "From: bob@localhost\rFrom: carol@localhost",
        ),
    ];
    for (what, header) in tricks {
        match site.submit(header, b"body\r\n").await {
            Err(SubmitError::NotOwned(text)) => assert!(!text.is_empty(), "{what}"),
            other => panic!("{what}: {other:?}"),
        }
    }
    let long = format!("From: bob@localhost\r\nSubject: {}", "x".repeat(990));
    match site.submit(&long, b"body\r\n").await {
        Err(SubmitError::NotOwned(text)) => assert!(text.contains("998"), "{text}"),
        other => panic!("long header line: {other:?}"),
    }
    let carol = Address::parse("carol@localhost").unwrap();
    let carol = site.store.account(&carol).await.unwrap().unwrap();
    let inbox = site.store.list_mailboxes(carol.id).await.unwrap();
    assert!(
        inbox.iter().all(|m| m.messages == 0),
        "nothing was delivered"
    );
}

#[tokio::test]
async fn own_addresses_pass_and_the_message_gets_canonical_line_endings() {
    let site = site().await;
    let sent = site
        .submit(
            "From: Bob <bob@localhost>\r\nSender: bob@localhost\r\nResent-From: sales@localhost",
            b"one\n.\ntwo\r.\rthree\r\n",
        )
        .await
        .unwrap();
    assert!(
        sent.ends_with(b"\r\n\r\none\r\n.\r\ntwo\r\n.\r\nthree\r\n"),
        "{}",
        String::from_utf8_lossy(&sent)
    );
    assert!(smtp_proto::canonical::is_canonical(&sent));
}

#[tokio::test]
async fn a_user_owns_their_address_their_aliases_and_allowed_senders() {
    let site = site_with(submission::Settings {
        hostname: "mail.localhost".into(),
        allowed_senders: [(
            "bob@localhost".to_string(),
            vec!["news@elsewhere.test".to_string(), "@bob.test".to_string()],
        )]
        .into(),
        ..Default::default()
    })
    .await;
    let owns = |address: &'static str| {
        let site = &site;
        async move { site.submitter.owns(&site.bob, address).await.unwrap() }
    };
    for mine in [
        "bob@localhost",
        "BOB@localhost",
        "sales@localhost",
        "news@elsewhere.test",
        "anyone@bob.test",
    ] {
        assert!(owns(mine).await, "{mine}");
    }
    for theirs in [
        "carol@localhost",
        "other@elsewhere.test",
        "anyone@sub.bob.test",
    ] {
        assert!(!owns(theirs).await, "{theirs}");
    }
}

#[tokio::test]
async fn hourly_limits_refuse_with_a_typed_error() {
    let site = site_with(submission::Settings {
        hostname: "mail.localhost".into(),
        max_messages_per_hour: 1,
        max_recipients_per_hour: 1000,
        ..Default::default()
    })
    .await;
    site.submit("From: bob@localhost", b"one\r\n")
        .await
        .unwrap();
    match site.submit("From: bob@localhost", b"two\r\n").await {
        Err(SubmitError::Limit(text)) => assert!(text.contains("hourly"), "{text}"),
        other => panic!("second message: {other:?}"),
    }
}

#[tokio::test]
async fn missing_date_and_message_id_are_added_and_the_message_is_signed() {
    let site = site().await;
    let key = submission::dkim::generate_key("localhost", "s1", "ed25519", 0).unwrap();
    site.store.add_dkim_key(key).await.unwrap();
    let from = ["bob@localhost".to_string()];
    let bare = b"From: bob@localhost\r\nSubject: hi\r\n\r\nbody\r\n";
    let added = site.submitter.added_headers(bare, &from, 0).await;
    let added = String::from_utf8(added).unwrap();
    assert!(added.starts_with("DKIM-Signature: "), "{added}");
    assert!(added.contains("d=localhost"), "{added}");
    assert!(
        added.contains("\r\nDate: Thu, 1 Jan 1970 00:00:00 +0000\r\n"),
        "{added}"
    );
    assert!(added.contains("\r\nMessage-ID: <"), "{added}");
    assert!(added.ends_with("@mail.localhost>\r\n"), "{added}");
    let complete = b"From: bob@localhost\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\n\
Message-ID: <m@x>\r\n\r\nbody\r\n";
    let added = site.submitter.added_headers(complete, &from, 0).await;
    let added = String::from_utf8(added).unwrap();
    // (The signature names both among its signed fields, so look at line starts.)
    let fields: Vec<&str> = added.split("\r\n").collect();
    assert!(
        !fields
            .iter()
            .any(|f| f.starts_with("Date:") || f.starts_with("Message-ID:")),
        "{added}"
    );
    assert!(added.starts_with("DKIM-Signature: "), "{added}");
    // No key for the From: domain: nothing to sign with.
    let other = ["bob@bob.test".to_string()];
    let added = site.submitter.added_headers(complete, &other, 0).await;
    assert!(added.is_empty(), "{}", String::from_utf8_lossy(&added));
}
