//! The webmail's submission path (`Submitter`) on a real SQLite store: the same canonical line
//! endings, header limits and sender policy as SMTP submission (issue 14, finding 8).

use std::sync::Arc;
use std::time::Duration;

use smtp_server::{SubmitError, Submitter};
use store::{Address, Secrets, Store};

struct Site {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    submitter: Submitter,
    bob: auth::Authenticated,
}

async fn site() -> Site {
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
        Arc::new(smtp_server::SendingLimits::default()),
        smtp_server::Settings {
            machine: smtp_proto::ServerConfig {
                hostname: "mail.localhost".into(),
                ..Default::default()
            },
            command_timeout: Duration::from_secs(60),
            data_timeout: Duration::from_secs(60),
            mode: smtp_server::Mode::Submission,
            submission: smtp_server::SubmissionPolicy {
                max_messages_per_hour: 1000,
                max_recipients_per_hour: 1000,
                ..Default::default()
            },
            queue_lifetime: Duration::from_secs(3600),
            dev_failures: false,
            authenticator: None,
            dmarc_reject: false,
        },
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
