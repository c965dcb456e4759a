//! Files uploaded for messages being written.
//!
//! They go to the store's upload area as they arrive (`Store::begin_upload`/`upload_chunk`,
//! in pieces of [`PIECE`], as big IMAP APPENDs do), never whole into this process's memory,
//! and are bounded twice: one session's files by the message size limit (more could not go in
//! one message) and one account's files, over all its sessions, by [`ACCOUNT_FACTOR`] times
//! that. An upload is freed (discarded from the store, its bytes no longer counted) when the
//! last handle to it goes: when it is sent, removed (`pigeon:Upload/destroy`), or its session
//! ends (logout, expiry, a login past the account's session cap).
//!
//! The store hands an upload back only once (`take_upload` ends it), so using one (a draft
//! save, a send, a download) takes it and stores it again under a new id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;
use store::{Store, StoreError};

use crate::session::WebSession;
use crate::{Settings, Shared, error};

/// An account's uploads over all its sessions may hold this many times the message size limit
/// (a message being written in each of two browsers).
pub const ACCOUNT_FACTOR: usize = 2;
/// Bytes gathered before they go to the store as one piece: the most an upload in progress
/// holds in memory.
const PIECE: usize = 1 << 20;
/// What every upload is charged beyond its bytes (its store row and its entry here), so that
/// empty uploads cannot be made without bound.
const UPLOAD_OVERHEAD: usize = 256;
/// Most files one session may hold at once (a message has far fewer attachments).
const MAX_UPLOADS: usize = 500;
/// The longest file name an upload may have, in bytes.
const MAX_NAME: usize = 255;
/// The store frees uploads nobody added to for an hour (abandoned APPENDs); one still in use
/// here gets an empty piece after this long without being read.
const KEEP_ALIVE: Duration = Duration::from_secs(20 * 60);

/// What one account's sessions hold, shared by them (and freed with the last of them).
#[derive(Default)]
pub(crate) struct Ledger {
    /// Upload bytes of the account; every change happens under this lock, together with the
    /// session's own count, so parallel uploads cannot pass a bound together.
    held: Mutex<usize>,
    /// One message with attachments is built at a time per account, so composing holds at
    /// most one set of the account's attachments in memory.
    compose: tokio::sync::Mutex<()>,
}

/// A session's share of its account's [`Ledger`].
pub(crate) struct Quota {
    ledger: Arc<Ledger>,
    session: Arc<AtomicUsize>,
}

/// Which bound an upload would pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Over {
    Session,
    Account,
}

impl Over {
    /// 413 with what to do about it.
    fn response(self, settings: &Settings) -> Response {
        let message = match self {
            Over::Session => format!(
                "the files are larger than a message may be ({} in all)",
                human(settings.max_message_size)
            ),
            Over::Account => format!(
                "your uploads in all your open sessions would pass {}: send or remove \
                 attachments there first, or log out of sessions you no longer use",
                human(account_limit(settings))
            ),
        };
        error(StatusCode::PAYLOAD_TOO_LARGE, &message)
    }
}

/// `50 MB`, or `64 KB` below a megabyte.
fn human(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{} MB", bytes >> 20)
    } else {
        format!("{} KB", bytes >> 10)
    }
}

fn account_limit(settings: &Settings) -> usize {
    settings.max_message_size.saturating_mul(ACCOUNT_FACTOR)
}

impl Quota {
    pub(crate) fn new(ledger: Arc<Ledger>) -> Quota {
        Quota {
            ledger,
            session: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Whether `bytes` more would fit both bounds now.
    fn fits(&self, bytes: usize, settings: &Settings) -> Result<(), Over> {
        let held = self.ledger.held.lock().expect("ledger lock");
        check(&held, &self.session, bytes, settings)
    }

    fn charge(&self) -> Charge {
        Charge {
            ledger: self.ledger.clone(),
            session: self.session.clone(),
            bytes: 0,
        }
    }

    /// Held while a message with this account's attachments is built.
    pub(crate) async fn composing(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.ledger.compose.lock().await
    }
}

fn check(
    account: &usize,
    session: &AtomicUsize,
    bytes: usize,
    settings: &Settings,
) -> Result<(), Over> {
    if session.load(Ordering::Relaxed).saturating_add(bytes) > settings.max_message_size {
        Err(Over::Session)
    } else if account.saturating_add(bytes) > account_limit(settings) {
        Err(Over::Account)
    } else {
        Ok(())
    }
}

/// Bytes counted against a session and its account, released when dropped.
struct Charge {
    ledger: Arc<Ledger>,
    session: Arc<AtomicUsize>,
    bytes: usize,
}

impl Charge {
    fn grow(&mut self, bytes: usize, settings: &Settings) -> Result<(), Over> {
        let mut held = self.ledger.held.lock().expect("ledger lock");
        check(&held, &self.session, bytes, settings)?;
        *held += bytes;
        self.session.fetch_add(bytes, Ordering::Relaxed);
        self.bytes += bytes;
        Ok(())
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        let mut held = self.ledger.held.lock().expect("ledger lock");
        *held = held.saturating_sub(self.bytes);
        self.session.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// A file uploaded for a message being written; dropping the last handle frees it.
pub(crate) struct Upload {
    pub name: String,
    pub content_type: String,
    /// The store's id for it; `None` once lost (a failed store write).
    stored: tokio::sync::Mutex<Option<i64>>,
    /// When the store last heard of it.
    touched: Mutex<Instant>,
    store: Arc<dyn Store>,
    _charge: Charge,
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(id) = self.stored.get_mut().take() {
            discard(self.store.clone(), id);
        }
    }
}

/// Discards an upload in the background (from `Drop`, which cannot wait). Without a runtime
/// (the process is ending) the store's sweep of old uploads gets it later.
fn discard(store: Arc<dyn Store>, id: i64) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            if let Err(e) = store.discard_upload(id).await {
                tracing::warn!(error = %e, upload = id, "webmail: discarding an upload failed");
            }
        });
    }
}

/// Stores `data` as a new upload in pieces; returns its id.
async fn put(store: &dyn Store, data: &[u8]) -> Result<i64, StoreError> {
    let id = store.begin_upload().await?;
    for piece in data.chunks(PIECE) {
        if let Err(e) = store.upload_chunk(id, piece.to_vec()).await {
            let _ = store.discard_upload(id).await;
            return Err(e);
        }
    }
    Ok(id)
}

impl Upload {
    /// The file's bytes; it stays uploaded (stored again under a new id).
    async fn read(&self) -> Result<Vec<u8>, StoreError> {
        let mut stored = self.stored.lock().await;
        let id = stored
            .take()
            .ok_or_else(|| StoreError::NotFound("upload".into()))?;
        let data = self.store.take_upload(id).await?;
        match put(&*self.store, &data).await {
            Ok(again) => {
                *stored = Some(again);
                *self.touched.lock().expect("upload lock") = Instant::now();
            }
            // This use still gets the bytes; later ones find the upload gone.
            Err(e) => tracing::warn!(error = %e, "webmail: storing an upload again failed"),
        }
        Ok(data)
    }

    /// Whether the store has not heard of it for [`KEEP_ALIVE`].
    pub(crate) fn stale(&self, now: Instant) -> bool {
        now.duration_since(*self.touched.lock().expect("upload lock")) >= KEEP_ALIVE
    }

    /// Tells the store it is still in use (an empty piece adds nothing to it).
    pub(crate) async fn keep_alive(&self) {
        let mut stored = self.stored.lock().await;
        let Some(id) = *stored else {
            return;
        };
        match self.store.upload_chunk(id, Vec::new()).await {
            Ok(()) => *self.touched.lock().expect("upload lock") = Instant::now(),
            Err(StoreError::NotFound(_)) => {
                tracing::warn!(upload = id, "webmail: the store dropped an upload in use");
                *stored = None;
            }
            Err(e) => tracing::warn!(error = %e, "webmail: keeping an upload failed"),
        }
    }
}

/// The session's upload `token` (a blob id without its `u`): name, type and bytes.
pub(crate) async fn read(
    session: &WebSession,
    token: &str,
) -> Result<Option<(String, String, Vec<u8>)>, StoreError> {
    let upload = session
        .uploads
        .lock()
        .expect("uploads lock")
        .get(token)
        .cloned();
    let Some(upload) = upload else {
        return Ok(None);
    };
    match upload.read().await {
        Ok(data) => Ok(Some((
            upload.name.clone(),
            upload.content_type.clone(),
            data,
        ))),
        Err(StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Frees the session's uploads among `blob_ids`; returns those it had.
pub(crate) fn destroy<'a>(
    session: &WebSession,
    blob_ids: impl Iterator<Item = &'a str>,
) -> Vec<String> {
    let mut uploads = session.uploads.lock().expect("uploads lock");
    blob_ids
        .filter(|id| {
            id.strip_prefix('u')
                .is_some_and(|token| uploads.remove(token).is_some())
        })
        .map(str::to_string)
        .collect()
}

/// The session's uploads by token.
pub(crate) type Uploads = Mutex<HashMap<String, Arc<Upload>>>;

/// An upload being received: discarded unless it completes.
struct Receiving {
    store: Arc<dyn Store>,
    id: Option<i64>,
}

impl Drop for Receiving {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            discard(self.store.clone(), id);
        }
    }
}

#[derive(Deserialize)]
pub struct UploadQuery {
    name: Option<String>,
}

/// `POST /jmap/upload/{account}/?name=...`: a file for a message being written (RFC 8620
/// §6.1), streamed into the store; 413 past the session's or the account's bound.
pub async fn upload(
    State(webmail): State<Shared>,
    Path(account): Path<String>,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let session = match webmail.for_change(&headers) {
        Ok(session) => session,
        Err(response) => return response,
    };
    if account != session.account.to_string() {
        return error(StatusCode::NOT_FOUND, "no such account");
    }
    let settings = &webmail.settings;
    // A declared size past a bound is refused before a byte is read.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(declared) = declared
        && let Err(over) = session.quota.fits(declared, settings)
    {
        return over.response(settings);
    }
    let name = query.name.unwrap_or_default();
    if name.len() > MAX_NAME {
        return error(
            StatusCode::BAD_REQUEST,
            "the file name is too long (at most 255 bytes)",
        );
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.is_empty() && t.len() < 200)
        .unwrap_or("application/octet-stream")
        .to_string();
    let store = webmail.store.clone();
    let unavailable = |e: StoreError| {
        tracing::error!(error = %e, "webmail: storing an upload failed");
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server cannot store the file now; try again later",
        )
    };
    let mut receiving = match store.begin_upload().await {
        Ok(id) => Receiving {
            store: store.clone(),
            id: Some(id),
        },
        Err(e) => return unavailable(e),
    };
    let id = receiving.id.expect("just begun");
    if session.uploads.lock().expect("uploads lock").len() >= MAX_UPLOADS {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too many files uploaded in this session (at most 500): remove some first",
        );
    }
    let mut charge = session.quota.charge();
    if let Err(over) = charge.grow(UPLOAD_OVERHEAD + name.len(), settings) {
        return over.response(settings);
    }
    let mut size = 0;
    let mut piece = Vec::new();
    let mut frames = body.into_data_stream();
    while let Some(frame) = frames.next().await {
        let Ok(bytes) = frame else {
            return error(StatusCode::BAD_REQUEST, "the upload was interrupted");
        };
        // Counted before it is kept: reading stops at the bound.
        if let Err(over) = charge.grow(bytes.len(), settings) {
            return over.response(settings);
        }
        size += bytes.len();
        piece.extend_from_slice(&bytes);
        if piece.len() >= PIECE
            && let Err(e) = store.upload_chunk(id, std::mem::take(&mut piece)).await
        {
            return unavailable(e);
        }
    }
    if !piece.is_empty()
        && let Err(e) = store.upload_chunk(id, piece).await
    {
        return unavailable(e);
    }
    let upload = Arc::new(Upload {
        name,
        content_type: content_type.clone(),
        stored: tokio::sync::Mutex::new(receiving.id.take()),
        touched: Mutex::new(Instant::now()),
        store,
        _charge: charge,
    });
    let token = common::random::hex(16);
    session
        .uploads
        .lock()
        .expect("uploads lock")
        .insert(token.clone(), upload);
    (
        StatusCode::CREATED,
        Json(json!({
            "accountId": account, "blobId": format!("u{token}"), "type": content_type, "size": size,
        })),
    )
        .into_response()
}
