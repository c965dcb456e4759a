//! Uploads: messages arriving in pieces.

use super::*;

pub(super) async fn uploads(store: &dyn Store) {
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
