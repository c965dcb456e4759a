//! Login sessions: a random token in an HttpOnly, SameSite=Strict cookie, a CSRF token each
//! state-changing request must repeat in `X-CSRF-Token`, an idle timeout and an absolute
//! lifetime. Sessions live in this node's memory (a load balancer keeps a user on one node).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use store::AccountId;

use crate::{Shared, error, uploads};

/// The cookie's name; under TLS with the `__Host-` prefix, which browsers accept only from a
/// secure origin for the whole host, so no sibling site can plant one.
fn cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-pigeon_session"
    } else {
        "pigeon_session"
    }
}
/// However active, a session ends after this long.
const LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// One logged-in browser.
pub struct WebSession {
    token: String,
    pub account: AccountId,
    pub address: String,
    pub csrf: String,
    created: Instant,
    last: Mutex<Instant>,
    /// Uploads by token, until sent or removed; they go with the session.
    pub(crate) uploads: uploads::Uploads,
    /// This session's share of its account's upload bytes.
    pub(crate) quota: uploads::Quota,
}

/// Every session of this node.
pub struct Sessions {
    inner: Arc<Inner>,
    /// Whether the task that ends expired sessions runs.
    sweeping: OnceLock<()>,
}

struct Inner {
    map: Mutex<HashMap<String, Arc<WebSession>>>,
    /// Each account's shared upload count, alive while one of its sessions is.
    ledgers: Mutex<HashMap<AccountId, Weak<uploads::Ledger>>>,
    idle: Duration,
}

/// 32 random bytes as hex (a session or CSRF token).
fn random_token() -> String {
    common::random::hex(32)
}

/// Compares without an early exit, so the time taken says nothing about the token.
pub(crate) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Inner {
    fn expired(&self, session: &WebSession, now: Instant) -> bool {
        let last = *session.last.lock().expect("session lock");
        now.duration_since(last) > self.idle || now.duration_since(session.created) > LIFETIME
    }

    /// Takes the expired sessions out of `map`.
    fn take_expired(
        &self,
        map: &mut HashMap<String, Arc<WebSession>>,
        now: Instant,
    ) -> Vec<Arc<WebSession>> {
        let expired: Vec<String> = map
            .iter()
            .filter(|(_, s)| self.expired(s, now))
            .map(|(token, _)| token.clone())
            .collect();
        expired.iter().filter_map(|t| map.remove(t)).collect()
    }

    /// Ends expired sessions (their uploads go with them); returns the uploads of live ones
    /// the store should be told are still in use.
    fn sweep(&self) -> Vec<Arc<uploads::Upload>> {
        let now = Instant::now();
        let mut map = self.map.lock().expect("sessions lock");
        let ended = self.take_expired(&mut map, now);
        let stale = map
            .values()
            .flat_map(|s| {
                let uploads = s.uploads.lock().expect("uploads lock");
                uploads
                    .values()
                    .filter(|u| u.stale(now))
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect();
        drop(map);
        // Dropped (uploads freed) outside the lock.
        drop(ended);
        stale
    }
}

impl Sessions {
    pub fn new(idle: Duration) -> Sessions {
        Sessions {
            inner: Arc::new(Inner {
                map: Mutex::new(HashMap::new()),
                ledgers: Mutex::new(HashMap::new()),
                idle,
            }),
            sweeping: OnceLock::new(),
        }
    }

    /// A new session; past `max_per_account` sessions of the account, the one unused longest
    /// ends (friendlier than refusing the login: the user who forgot to log out elsewhere gets
    /// in, and someone who knows the password could log in anyway).
    fn create(
        &self,
        account: AccountId,
        address: String,
        max_per_account: usize,
    ) -> Arc<WebSession> {
        self.start_sweeping();
        let now = Instant::now();
        let ledger = {
            let mut ledgers = self.inner.ledgers.lock().expect("ledgers lock");
            ledgers.retain(|_, l| l.strong_count() > 0);
            match ledgers.get(&account).and_then(Weak::upgrade) {
                Some(ledger) => ledger,
                None => {
                    let ledger = Arc::new(uploads::Ledger::default());
                    ledgers.insert(account, Arc::downgrade(&ledger));
                    ledger
                }
            }
        };
        let session = Arc::new(WebSession {
            token: random_token(),
            account,
            address,
            csrf: random_token(),
            created: now,
            last: Mutex::new(now),
            uploads: Default::default(),
            quota: uploads::Quota::new(ledger),
        });
        let ended = {
            let mut map = self.inner.map.lock().expect("sessions lock");
            // Expired sessions go whenever a new one comes.
            let mut ended = self.inner.take_expired(&mut map, now);
            let mut mine: Vec<(Instant, String)> = map
                .values()
                .filter(|s| s.account == account)
                .map(|s| (*s.last.lock().expect("session lock"), s.token.clone()))
                .collect();
            mine.sort();
            let surplus = (mine.len() + 1).saturating_sub(max_per_account.max(1));
            for (_, token) in mine.into_iter().take(surplus) {
                ended.extend(map.remove(&token));
            }
            map.insert(session.token.clone(), session.clone());
            ended
        };
        if !ended.is_empty() {
            tracing::debug!(ended = ended.len(), %account, "webmail: sessions ended at login");
        }
        session
    }

    /// Starts the task that ends expired sessions (and so frees their uploads) even when no
    /// request comes, and keeps the uploads of live ones from looking abandoned to the store;
    /// it stops when these sessions are dropped.
    fn start_sweeping(&self) {
        self.sweeping.get_or_init(|| {
            let inner = Arc::downgrade(&self.inner);
            let every =
                (self.inner.idle / 2).clamp(Duration::from_secs(1), Duration::from_secs(60));
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    match inner.upgrade() {
                        Some(inner) => {
                            let stale = inner.sweep();
                            drop(inner);
                            for upload in stale {
                                upload.keep_alive().await;
                            }
                        }
                        None => return,
                    }
                }
            });
        });
    }

    /// The session the request's cookie names, if it is alive.
    pub fn from_headers(&self, headers: &HeaderMap, secure: bool) -> Option<Arc<WebSession>> {
        let token = cookie(headers, secure)?;
        let now = Instant::now();
        let mut map = self.inner.map.lock().expect("sessions lock");
        let session = map.get(&token)?.clone();
        if self.inner.expired(&session, now) {
            map.remove(&token);
            return None;
        }
        *session.last.lock().expect("session lock") = now;
        Some(session)
    }

    /// The session of a state-changing request: 401 without a live session, 403 without the
    /// session's CSRF token in `X-CSRF-Token`.
    #[allow(clippy::result_large_err)]
    pub fn for_change(
        &self,
        headers: &HeaderMap,
        secure: bool,
    ) -> Result<Arc<WebSession>, Response> {
        let session = self
            .from_headers(headers, secure)
            .ok_or_else(|| error(StatusCode::UNAUTHORIZED, "not logged in or session expired"))?;
        let sent = headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !same(sent, &session.csrf) {
            return Err(error(StatusCode::FORBIDDEN, "bad or missing CSRF token"));
        }
        Ok(session)
    }

    /// The session of a request that only reads: 401 without one.
    #[allow(clippy::result_large_err)]
    pub fn for_read(&self, headers: &HeaderMap, secure: bool) -> Result<Arc<WebSession>, Response> {
        self.from_headers(headers, secure)
            .ok_or_else(|| error(StatusCode::UNAUTHORIZED, "not logged in or session expired"))
    }

    fn remove(&self, session: &WebSession) {
        let ended = self
            .inner
            .map
            .lock()
            .expect("sessions lock")
            .remove(&session.token);
        drop(ended);
    }

    /// Live sessions (for tests and status).
    pub fn len(&self) -> usize {
        self.inner.map.lock().expect("sessions lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn cookie(headers: &HeaderMap, secure: bool) -> Option<String> {
    let wanted = cookie_name(secure);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == wanted)
        .map(|(_, value)| value.to_string())
}

fn set_cookie(value: &str, max_age: u64, secure: bool) -> HeaderValue {
    let name = cookie_name(secure);
    let flag = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{flag}"
    ))
    .expect("cookie is ASCII")
}

/// The listeners' auth policy (`[auth] allow_plaintext_on_loopback`), as for every protocol:
/// a password over TLS, or in clear only from this machine and only if allowed.
fn password_allowed(settings: &crate::Settings, peer: std::net::IpAddr) -> bool {
    let loopback = peer.to_canonical().is_loopback();
    settings.secure || (settings.allow_plaintext_on_loopback && loopback)
}

#[derive(Deserialize)]
pub struct LoginRequest {
    username: String,
    password: String,
}

/// `POST /api/login` with `{"username", "password"}`: the same accounts and throttling as
/// every other protocol.
pub async fn login(
    State(webmail): State<Shared>,
    connect: Option<axum::Extension<ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    Json(request): Json<LoginRequest>,
) -> Response {
    let ip = crate::peer(connect);
    // Refused before the password is checked, so it does not count against the throttle.
    if !password_allowed(&webmail.settings, ip) {
        return error(
            StatusCode::FORBIDDEN,
            "this server does not take passwords over plain HTTP: open the webmail at its https:// address",
        );
    }
    let user = match webmail
        .login
        .check_password(ip, request.username.trim(), &request.password)
        .await
    {
        Ok(Some(user)) => user,
        Ok(None) => return error(StatusCode::UNAUTHORIZED, "wrong username or password"),
        Err(e) => {
            tracing::error!(error = %e, "webmail login failed");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server cannot check passwords now; try again later",
            );
        }
    };
    // A new login ends the session this browser had: no token outlives a login.
    if let Some(old) = webmail.session_of(&headers) {
        webmail.sessions.remove(&old);
    }
    let session = webmail.sessions.create(
        user.account_id,
        user.address.clone(),
        webmail.settings.max_sessions_per_account,
    );
    let mut response = Json(serde_json::json!({
        "username": user.address,
        "accountId": user.account_id.to_string(),
        "csrfToken": session.csrf,
    }))
    .into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(&session.token, LIFETIME.as_secs(), webmail.settings.secure),
    );
    response
}

/// `POST /api/logout`: ends the session and clears the cookie.
pub async fn logout(State(webmail): State<Shared>, headers: HeaderMap) -> Response {
    let session = match webmail.for_change(&headers) {
        Ok(session) => session,
        Err(response) => return response,
    };
    webmail.sessions.remove(&session);
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie("", 0, webmail.settings.secure),
    );
    response
}
