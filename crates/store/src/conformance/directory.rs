//! The directory: domains, accounts, aliases and routing, DKIM keys.

use super::*;

pub(super) async fn domains(store: &dyn Store) {
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

pub(super) async fn accounts(store: &dyn Store) {
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

pub(super) async fn aliases_and_routing(store: &dyn Store) {
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
