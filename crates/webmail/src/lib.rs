//! Webmail: the user agent in the browser, served over HTTP by the same binary and talking to
//! the store directly (not through IMAP).
//!
//! The server is a JSON API shaped after JMAP (RFC 8620/8621: a session resource, `Mailbox`,
//! `Email`, `Thread` and `EmailSubmission` methods in batched method calls, blob upload and
//! download, an event source for push) plus a plain-JavaScript front end embedded in the binary
//! (`static/`). Sessions are cookies (HttpOnly, SameSite=Strict, Secure under TLS) with a CSRF
//! token every state change must carry in `X-CSRF-Token`; every response has a strict
//! Content-Security-Policy. HTML mail is sanitised (ammonia) and shown in a sandboxed iframe
//! whose own CSP blocks remote content until the user allows it for that message.
//!
//! Layout: `api/` answers the JMAP methods, one file per object and method family, each
//! method with a typed arguments struct; `session.rs` logs in and out; `uploads.rs` takes
//! uploads into the store; `mail.rs` reads messages for the page. Connections come through
//! `net`'s accept loop ([`serve`]), so `[limits]`, connection ids and graceful shutdown are
//! the same as every protocol's; this crate only speaks HTTP/1.1 on them.

mod api;
mod mail;
mod session;
mod uploads;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use store::{AccountId, Store};

pub use session::Sessions;

/// What the webmail needs from the rest of the server.
pub struct Webmail {
    pub store: Arc<dyn Store>,
    pub login: Arc<auth::Authenticator>,
    pub submitter: Arc<submission::Submitter>,
    /// Shared by every listener of the webmail.
    pub sessions: Arc<Sessions>,
    pub settings: Settings,
}

/// Webmail settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Our host name (for Message-IDs).
    pub hostname: String,
    /// Largest message (and so upload) accepted, in bytes.
    pub max_message_size: usize,
    /// Whether the site is served over TLS (cookies get `Secure`).
    pub secure: bool,
    /// Without TLS, whether logins from loopback are taken (`[auth]`'s policy for HTTP);
    /// from elsewhere a password in clear never is.
    pub allow_plaintext_on_loopback: bool,
    /// Most sessions of one account; a further login ends the one unused longest.
    pub max_sessions_per_account: usize,
}

/// The state every handler gets.
pub type Shared = Arc<Webmail>;

#[allow(clippy::result_large_err)]
impl Webmail {
    /// The request's live session, if any (the cookie this listener uses).
    pub(crate) fn session_of(&self, headers: &HeaderMap) -> Option<Arc<session::WebSession>> {
        self.sessions.from_headers(headers, self.settings.secure)
    }

    /// The session of a request that only reads: 401 without one.
    pub(crate) fn for_read(
        &self,
        headers: &HeaderMap,
    ) -> Result<Arc<session::WebSession>, Response> {
        self.sessions.for_read(headers, self.settings.secure)
    }

    /// The session of a state change: 401 without one, 403 without its CSRF token.
    pub(crate) fn for_change(
        &self,
        headers: &HeaderMap,
    ) -> Result<Arc<session::WebSession>, Response> {
        self.sessions.for_change(headers, self.settings.secure)
    }
}

/// The whole site.
pub fn router(webmail: Shared) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/app.js", get(app_js))
        .route("/app.css", get(app_css))
        .route("/api/login", post(session::login))
        .route("/api/logout", post(session::logout))
        .route("/jmap/session", get(api::session_resource))
        .route("/jmap/api", post(api::api))
        .route("/jmap/upload/{account}/", post(uploads::upload))
        .route("/jmap/download/{account}/{blob}/{name}", get(api::download))
        .route("/jmap/html/{email}", get(api::html))
        .route("/jmap/raw/{email}", get(api::raw))
        .route("/jmap/eventsource", get(events))
        .fallback(not_found)
        .layer(axum::middleware::map_response(security_headers))
        .with_state(webmail)
}

/// A request's head must arrive within this long (slow or idle clients are dropped).
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a connection refused by the limits is told before it is closed (plain HTTP only: a
/// TLS client could not read it).
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\
    Content-Type: text/plain; charset=utf-8\r\nContent-Length: 22\r\nRetry-After: 5\r\n\r\n\
    too many connections\r\n";

/// Serves the site on `listener` until `server` shuts down, over HTTPS (TLS from the first
/// byte) when `tls` is given. Connections are admitted by `server` like every protocol's
/// (`[limits]`: per-IP count and rate, the global count; one more is answered 503 and
/// closed), and on shutdown each finishes the request in flight within the grace period.
pub async fn serve(
    server: Arc<net::Server>,
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    webmail: Shared,
) {
    let app = router(webmail);
    let busy = if tls.is_some() { &[][..] } else { BUSY };
    let name = if tls.is_some() { "https" } else { "http" };
    let signal = server.clone();
    server
        .accept_loop(
            listener,
            name,
            false,
            || busy.to_vec(),
            move |stream, conn| {
                let (tls, app, shutdown) = (tls.clone(), app.clone(), signal.shutdown_signal());
                async move {
                    match tls {
                        Some(acceptor) => {
                            let stream =
                                tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                                    .await
                                    .map_err(|_| {
                                        std::io::Error::new(
                                            std::io::ErrorKind::TimedOut,
                                            "TLS handshake timed out",
                                        )
                                    })??;
                            serve_connection(stream, conn.peer, app, shutdown).await
                        }
                        None => serve_connection(stream, conn.peer, app, shutdown).await,
                    }
                }
            },
        )
        .await
}

/// Serves one connection over HTTP/1.1 (keep-alive, upgrades), with a deadline for every
/// request head. Runs in the connection's span (`cid`): at `trace` level each request is
/// logged there with its method, path (never the query, which may carry the CSRF token),
/// status and duration; never cookies or bodies.
async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    app: Router,
    mut shutdown: net::Shutdown,
) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use tower::ServiceExt;
    // Whether the last response is an event stream: it never ends on its own, and cutting it
    // loses nothing (the page reconnects), so shutdown does not wait for it.
    let streaming = Arc::new(AtomicBool::new(false));
    let streams = streaming.clone();
    let service =
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let streams = streams.clone();
            let traced = tracing::enabled!(tracing::Level::TRACE)
                .then(|| (request.method().clone(), request.uri().path().to_owned()));
            let started = std::time::Instant::now();
            let response = app.clone().oneshot(request.map(axum::body::Body::new));
            async move {
                let response = response.await;
                if let Ok(response) = &response {
                    let events = response
                        .headers()
                        .get(header::CONTENT_TYPE)
                        .is_some_and(|t| t.as_bytes().starts_with(b"text/event-stream"));
                    streams.store(events, Ordering::Relaxed);
                }
                if let (Some((method, path)), Ok(response)) = (traced, &response) {
                    tracing::trace!(
                        %method,
                        path,
                        status = response.status().as_u16(),
                        micros = started.elapsed().as_micros() as u64,
                        "request"
                    );
                }
                response
            }
        });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        done = connection.as_mut() => return done.map_err(std::io::Error::other),
        _ = shutdown.requested() => {}
    }
    if streaming.load(Ordering::Relaxed) {
        return Ok(());
    }
    // Stopping: an idle keep-alive connection closes now, a request in flight may finish
    // within the grace period.
    connection.as_mut().graceful_shutdown();
    match tokio::time::timeout(shutdown.grace(), connection).await {
        Ok(done) => done.map_err(std::io::Error::other),
        Err(_) => Ok(()),
    }
}

/// The policy of the application's own pages: scripts and styles only from us, no framing,
/// no plugins, mail HTML only in frames from us.
const APP_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; frame-src 'self'; form-action 'self'; base-uri 'none'; \
     frame-ancestors 'none'";

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(APP_CSP),
        );
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !headers.contains_key(header::X_FRAME_OPTIONS) {
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn index() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("../static/index.html"),
    )
}

async fn app_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../static/app.js"),
    )
}

async fn app_css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../static/app.css"),
    )
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not found")
}

/// A JSON error body: `{"error": "..."}`.
pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

/// The peer's address (for login throttling); loopback when unknown (in-process tests).
pub(crate) fn peer(connect: Option<axum::Extension<ConnectInfo<SocketAddr>>>) -> IpAddr {
    connect
        .map(|axum::Extension(ConnectInfo(addr))| addr.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

#[derive(Deserialize)]
struct EventQuery {
    /// `EventSource` cannot send headers: the CSRF token comes as a parameter instead (the
    /// stream only reads, but it should not be openable by another site either).
    csrf: Option<String>,
}

/// Push (RFC 8620 §7.3 shape): a `state` event whenever the account changes, so the page
/// fetches what changed; a ping keeps proxies from closing the stream.
async fn events(
    State(webmail): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<EventQuery>,
) -> Response {
    let session = match webmail.session_of(&headers) {
        Some(session) => session,
        None => return error(StatusCode::UNAUTHORIZED, "not logged in"),
    };
    if !session::same(query.csrf.as_deref().unwrap_or(""), &session.csrf) {
        return error(StatusCode::FORBIDDEN, "bad CSRF token");
    }
    let account: AccountId = session.account;
    let mut changes = webmail.store.subscribe(account);
    let stream = async_stream(move |tx| async move {
        loop {
            let event = match changes.recv().await {
                Ok(change) => api::change_event(account, &change),
                // Fell behind: tell the page to reload everything.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    api::change_event(account, &store::Change::MailboxesChanged)
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            };
            if tx
                .send(Ok(Event::default().event("state").data(event)))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(20)))
        .into_response()
}

/// A stream fed by a task (tokio channels without the tokio-stream crate).
fn async_stream<F, Fut>(
    producer: F,
) -> impl futures_util::Stream<Item = Result<Event, std::convert::Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Event, std::convert::Infallible>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    // Bounded: a page that stops reading holds up its own stream, not the server's memory.
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let task = tokio::spawn(producer(tx));
    let guard = AbortOnDrop(task);
    futures_util::stream::poll_fn(move |cx| {
        let _ = &guard;
        rx.poll_recv(cx)
    })
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Path parameter of routes on one email.
#[derive(Deserialize)]
pub(crate) struct EmailPath {
    pub email: String,
}

pub(crate) type EmailParam = Path<EmailPath>;
