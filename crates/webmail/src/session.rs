//! Login sessions: a random token in an HttpOnly, SameSite=Strict cookie, a CSRF token each
//! state-changing request must repeat in `X-CSRF-Token`, an idle timeout and an absolute
//! lifetime. Sessions live in this node's memory (a load balancer keeps a user on one node).

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use store::AccountId;

use crate::{Shared, error};

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

/// A file uploaded for a message being written.
pub struct Upload {
    pub name: String,
    pub content_type: String,
    pub data: Vec<u8>,
}

/// One logged-in browser.
pub struct WebSession {
    token: String,
    pub account: AccountId,
    pub address: String,
    pub csrf: String,
    created: Instant,
    last: Mutex<Instant>,
    /// Uploads by blob id, until sent or the session ends.
    pub uploads: Mutex<HashMap<String, Upload>>,
}

impl WebSession {}

/// Every session of this node.
pub struct Sessions {
    map: Mutex<HashMap<String, Arc<WebSession>>>,
    idle: Duration,
}

/// 32 random bytes as hex.
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("read /dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares without an early exit, so the time taken says nothing about the token.
pub(crate) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Sessions {
    pub fn new(idle: Duration) -> Sessions {
        Sessions {
            map: Mutex::new(HashMap::new()),
            idle,
        }
    }

    fn create(&self, account: AccountId, address: String) -> Arc<WebSession> {
        let now = Instant::now();
        let session = Arc::new(WebSession {
            token: random_token(),
            account,
            address,
            csrf: random_token(),
            created: now,
            last: Mutex::new(now),
            uploads: Mutex::new(HashMap::new()),
        });
        let mut map = self.map.lock().expect("sessions lock");
        // Expired sessions go whenever a new one comes.
        map.retain(|_, s| !self.expired(s, now));
        map.insert(session.token.clone(), session.clone());
        session
    }

    fn expired(&self, session: &WebSession, now: Instant) -> bool {
        let last = *session.last.lock().expect("session lock");
        now.duration_since(last) > self.idle || now.duration_since(session.created) > LIFETIME
    }

    /// The session the request's cookie names, if it is alive.
    pub fn from_headers(&self, headers: &HeaderMap, secure: bool) -> Option<Arc<WebSession>> {
        let token = cookie(headers, secure)?;
        let now = Instant::now();
        let mut map = self.map.lock().expect("sessions lock");
        let session = map.get(&token)?.clone();
        if self.expired(&session, now) {
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
        self.map
            .lock()
            .expect("sessions lock")
            .remove(&session.token);
    }

    /// Live sessions (for tests and status).
    pub fn len(&self) -> usize {
        self.map.lock().expect("sessions lock").len()
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
    let session = webmail
        .sessions
        .create(user.account_id, user.address.clone());
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
