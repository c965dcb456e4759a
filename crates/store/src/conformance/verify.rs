//! Integrity and notifications: change events, and `verify` on what the suite left.

use super::*;

pub(super) async fn notifications(store: &dyn Store) {
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

/// What the suite leaves behind is consistent: `verify` finds no problems.
pub(super) async fn no_problems(store: &dyn Store) {
    let report = store.verify().await.expect("verify");
    assert!(
        report.problems.is_empty(),
        "verify found problems: {:?}",
        report.problems
    );
}
