//! The webmail's HTTP routes, in process, on a real SQLite store with the real login,
//! submission path and sanitiser: every route and its error paths.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use serde_json::{Value, json};
use store::{Address, Delivery, Secrets, Store};
use tower::ServiceExt;

const PW: &str = "web secret";

struct Site {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    sessions: Arc<webmail::Sessions>,
    app: Router,
}

fn secrets(password: &str) -> Secrets {
    Secrets {
        password_hash: sasl::hash_password(password, &[7; sasl::SALT_LEN]).unwrap(),
        scram: None,
    }
}

/// How a test site is set up.
struct Options {
    secure: bool,
    idle: Duration,
    max_message_size: usize,
    allow_plaintext_on_loopback: bool,
    max_sessions_per_account: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            secure: false,
            idle: Duration::from_secs(600),
            max_message_size: 1 << 20,
            allow_plaintext_on_loopback: true,
            max_sessions_per_account: 20,
        }
    }
}

async fn site_with(secure: bool, idle: Duration, max_message_size: usize) -> Site {
    site_of(Options {
        secure,
        idle,
        max_message_size,
        ..Options::default()
    })
    .await
}

async fn site_of(options: Options) -> Site {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(store_sqlite::SqliteStore::open(dir.path()).unwrap());
    store.add_domain("localhost").await.unwrap();
    for user in ["alice@localhost", "bob@localhost", "carol@localhost"] {
        store
            .create_account(&Address::parse(user).unwrap(), &secrets(PW))
            .await
            .unwrap();
    }
    let login = Arc::new(auth::Authenticator::new(
        store.clone(),
        sasl::ThrottleConfig::default(),
        [9; 32],
    ));
    let submitter = Arc::new(submission::Submitter::new(
        store.clone(),
        Arc::new(submission::SendingLimits::default()),
        submission::Settings {
            hostname: "mail.localhost".into(),
            max_messages_per_hour: 100,
            max_recipients_per_hour: 100,
            queue_lifetime: Duration::from_secs(3600),
            ..Default::default()
        },
    ));
    let sessions = Arc::new(webmail::Sessions::new(options.idle));
    let webmail = Arc::new(webmail::Webmail {
        store: store.clone(),
        login,
        submitter,
        sessions: sessions.clone(),
        settings: webmail::Settings {
            hostname: "mail.localhost".into(),
            max_message_size: options.max_message_size,
            secure: options.secure,
            allow_plaintext_on_loopback: options.allow_plaintext_on_loopback,
            max_sessions_per_account: options.max_sessions_per_account,
        },
    });
    Site {
        _dir: dir,
        store,
        sessions,
        app: webmail::router(webmail),
    }
}

async fn site() -> Site {
    site_of(Options::default()).await
}

struct Response {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Response {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
    fn header(&self, name: header::HeaderName) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }
}

/// A browser: its cookie and CSRF token.
struct Browser<'a> {
    app: &'a Router,
    cookie: Option<String>,
    csrf: Option<String>,
    /// The address the server sees (as the listener would set it); loopback when `None`.
    peer: Option<std::net::SocketAddr>,
}

impl<'a> Browser<'a> {
    fn new(site: &'a Site) -> Browser<'a> {
        Browser {
            app: &site.app,
            cookie: None,
            csrf: None,
            peer: None,
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Response {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(cookie) = &self.cookie {
            request = request.header(header::COOKIE, cookie);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(peer) = self.peer {
            request = request.extension(axum::extract::ConnectInfo(peer));
        }
        let response = self
            .app
            .clone()
            .oneshot(request.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        Response {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, path: &str) -> Response {
        self.send(Method::GET, path, &[], Vec::new()).await
    }

    async fn login(&mut self, user: &str, password: &str) -> Response {
        let body = json!({ "username": user, "password": password }).to_string();
        let response = self
            .send(
                Method::POST,
                "/api/login",
                &[("content-type", "application/json")],
                body.into_bytes(),
            )
            .await;
        if response.status == StatusCode::OK {
            let cookie = response.header(header::SET_COOKIE);
            self.cookie = Some(cookie.split(';').next().unwrap().to_string());
            self.csrf = Some(response.json()["csrfToken"].as_str().unwrap().to_string());
        }
        response
    }

    async fn post_api(&self, calls: Value, csrf: Option<&str>) -> Response {
        let body = json!({ "methodCalls": calls }).to_string();
        let token = csrf
            .map(str::to_string)
            .or(self.csrf.clone())
            .unwrap_or_default();
        self.send(
            Method::POST,
            "/jmap/api",
            &[
                ("content-type", "application/json"),
                ("x-csrf-token", &token),
            ],
            body.into_bytes(),
        )
        .await
    }

    /// Runs method calls; returns the responses by call id.
    async fn api(&self, calls: Value) -> std::collections::HashMap<String, Value> {
        let response = self.post_api(calls, None).await;
        assert_eq!(
            response.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&response.body)
        );
        response.json()["methodResponses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r[2].as_str().unwrap().to_string(), r[1].clone()))
            .collect()
    }

    async fn upload(&self, name: &str, kind: &str, data: Vec<u8>) -> Response {
        let token = self.csrf.clone().unwrap_or_default();
        self.send(
            Method::POST,
            &format!("/jmap/upload/{}/?name={name}", self.account().await),
            &[("content-type", kind), ("x-csrf-token", &token)],
            data,
        )
        .await
    }

    async fn account(&self) -> String {
        self.get("/jmap/session").await.json()["primaryAccounts"]["urn:ietf:params:jmap:mail"]
            .as_str()
            .unwrap_or("0")
            .to_string()
    }

    async fn mailbox(&self, role: &str) -> String {
        let r = self.api(json!([["Mailbox/get", {}, "m"]])).await;
        r["m"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["role"] == role || m["name"] == role)
            .unwrap_or_else(|| panic!("no {role}"))["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn inbox_ids(&self) -> Vec<String> {
        let inbox = self.mailbox("inbox").await;
        let r = self
            .api(json!([["Email/query", {"filter": {"inMailbox": inbox}}, "q"]]))
            .await;
        r["q"]["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    }
}

async fn deliver(site: &Site, to: &str, message: &[u8]) {
    let account = site
        .store
        .account(&Address::parse(to).unwrap())
        .await
        .unwrap()
        .unwrap();
    site.store
        .deliver(Delivery {
            data: message.to_vec(),
            recipients: vec![account.id],
            internal_date: 1_795_800_000,
            summary: Some(message::summary::summarize(message)),
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn pages_and_headers() {
    let site = site().await;
    let b = Browser::new(&site);
    let page = b.get("/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.header(header::CONTENT_TYPE).starts_with("text/html"));
    let csp = page.header(header::CONTENT_SECURITY_POLICY);
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(page.header(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    assert_eq!(page.header(header::X_FRAME_OPTIONS), "DENY");
    assert!(String::from_utf8_lossy(&page.body).contains("/app.js"));
    let js = b.get("/app.js").await;
    assert!(
        js.header(header::CONTENT_TYPE)
            .starts_with("text/javascript")
    );
    let css = b.get("/app.css").await;
    assert!(css.header(header::CONTENT_TYPE).starts_with("text/css"));
    let missing = b.get("/nothing/here").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json()["error"], "not found");
}

#[tokio::test]
async fn login_sessions_csrf_and_logout() {
    let site = site().await;
    let mut b = Browser::new(&site);
    assert_eq!(
        b.get("/jmap/session").await.status,
        StatusCode::UNAUTHORIZED
    );
    let wrong = b.login("alice@localhost", "nope").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.json()["error"], "wrong username or password");
    assert!(wrong.header(header::SET_COOKIE).is_empty());

    let ok = b.login("Alice@LOCALHOST", PW).await;
    assert_eq!(ok.status, StatusCode::OK);
    let cookie = ok.header(header::SET_COOKIE);
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    assert_eq!(ok.json()["username"], "alice@localhost");

    let session = b.get("/jmap/session").await;
    assert_eq!(session.status, StatusCode::OK);
    let session = session.json();
    assert_eq!(session["username"], "alice@localhost");
    assert_eq!(session["csrfToken"], b.csrf.clone().unwrap());
    assert!(session["capabilities"]["urn:ietf:params:jmap:mail"].is_object());

    // State changes need the CSRF token.
    let calls = json!([["Mailbox/get", {}, "m"]]);
    assert_eq!(
        b.post_api(calls.clone(), Some("")).await.status,
        StatusCode::FORBIDDEN
    );
    let forged = b.post_api(calls.clone(), Some(&"0".repeat(64))).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(forged.json()["error"], "bad or missing CSRF token");
    assert_eq!(b.post_api(calls.clone(), None).await.status, StatusCode::OK);
    let garbage = b
        .send(
            Method::POST,
            "/jmap/api",
            &[("x-csrf-token", &b.csrf.clone().unwrap())],
            b"{not json".to_vec(),
        )
        .await;
    assert_eq!(garbage.status, StatusCode::BAD_REQUEST);
    let unknown = b.api(json!([["Nope/get", {}, "n"]])).await;
    assert_eq!(unknown["n"]["type"], "unknownMethod");

    // Logging in again replaces the browser's session: the old token is dead.
    let old = b.cookie.clone();
    assert_eq!(b.login("alice@localhost", PW).await.status, StatusCode::OK);
    assert_ne!(b.cookie, old);
    let mut stale = Browser::new(&site);
    stale.cookie = old;
    assert_eq!(
        stale.get("/jmap/session").await.status,
        StatusCode::UNAUTHORIZED
    );

    // Logout ends the session for good.
    let token = b.csrf.clone().unwrap();
    let out = b
        .send(
            Method::POST,
            "/api/logout",
            &[("x-csrf-token", "wrong")],
            Vec::new(),
        )
        .await;
    assert_eq!(
        out.status,
        StatusCode::FORBIDDEN,
        "logout needs the token too"
    );
    let out = b
        .send(
            Method::POST,
            "/api/logout",
            &[("x-csrf-token", &token)],
            Vec::new(),
        )
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert!(out.header(header::SET_COOKIE).contains("Max-Age=0"));
    assert_eq!(
        b.get("/jmap/session").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        b.post_api(calls, None).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn sessions_expire_and_tls_cookies_are_secure() {
    let site = site_with(true, Duration::from_millis(300), 1 << 20).await;
    let mut b = Browser::new(&site);
    let ok = b.login("bob@localhost", PW).await;
    let cookie = ok.header(header::SET_COOKIE);
    assert!(
        cookie.starts_with("__Host-pigeon_session=") && cookie.contains("; Secure"),
        "{cookie}"
    );
    assert_eq!(b.get("/jmap/session").await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let expired = b.get("/jmap/session").await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED);
    assert_eq!(expired.json()["error"], "not logged in or session expired");
}

#[tokio::test]
async fn send_with_chinese_subject_and_attachment_then_read_reply_and_thread() {
    let site = site().await;
    let mut alice = Browser::new(&site);
    alice.login("alice@localhost", PW).await;
    let attachment: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let up = alice
        .upload(
            "%E6%8A%A5%E5%91%8A.bin",
            "application/octet-stream",
            attachment.clone(),
        )
        .await;
    assert_eq!(up.status, StatusCode::CREATED);
    let blob = up.json()["blobId"].as_str().unwrap().to_string();
    let sent = alice
        .api(json!([["EmailSubmission/set", {"create": {"s": {
            "to": ["Bob <bob@localhost>"], "subject": "季度报告 ✓", "text": "请看附件。\nZürich",
            "attachments": [{"blobId": blob}]
        }}}, "x"]]))
        .await;
    assert!(
        sent["x"]["notCreated"].as_object().unwrap().is_empty(),
        "{}",
        sent["x"]
    );
    let sent_id = sent["x"]["created"]["s"]["emailId"]
        .as_str()
        .unwrap()
        .to_string();

    let mut bob = Browser::new(&site);
    bob.login("bob@localhost", PW).await;
    let ids = bob.inbox_ids().await;
    assert_eq!(ids.len(), 1);
    let got = bob
        .api(json!([["Email/get", {"ids": ids, "properties": ["body"]}, "g"]]))
        .await;
    let email = &got["g"]["list"][0];
    assert_eq!(email["subject"], "季度报告 ✓");
    assert_eq!(email["from"][0]["email"], "alice@localhost");
    assert_eq!(email["keywords"], json!({}), "unread");
    assert_eq!(email["hasAttachment"], true);
    assert!(
        email["body"]["text"]
            .as_str()
            .unwrap()
            .contains("请看附件。\nZürich")
    );
    let file = &email["body"]["attachments"][0];
    assert_eq!(file["name"], "报告.bin");
    assert_eq!(file["size"], 20_000);
    let account = bob.account().await;
    let download = bob
        .get(&format!(
            "/jmap/download/{account}/{}/x.bin",
            file["blobId"].as_str().unwrap()
        ))
        .await;
    assert_eq!(download.status, StatusCode::OK);
    assert_eq!(download.body, attachment, "bytes equal");
    let disposition = download.header(header::CONTENT_DISPOSITION);
    assert!(
        disposition.starts_with("attachment;") && disposition.contains("filename*=UTF-8''x.bin"),
        "{disposition}"
    );
    assert_eq!(
        download.header(header::CONTENT_TYPE),
        "application/octet-stream"
    );
    assert!(
        download
            .header(header::CONTENT_SECURITY_POLICY)
            .contains("sandbox")
    );

    // Bob forwards the attachment to carol without downloading it.
    let forwarded = bob
        .api(json!([["EmailSubmission/set", {"create": {"f": {
            "to": ["carol@localhost"], "subject": "Fwd: 季度报告 ✓", "text": "FYI",
            "attachments": [{"blobId": file["blobId"], "name": file["name"], "type": file["type"]}]
        }}}, "x"]]))
        .await;
    assert!(
        forwarded["x"]["notCreated"].as_object().unwrap().is_empty(),
        "{}",
        forwarded["x"]
    );
    let mut carol = Browser::new(&site);
    carol.login("carol@localhost", PW).await;
    let carol_ids = carol.inbox_ids().await;
    let got = carol
        .api(json!([["Email/get", {"ids": carol_ids, "properties": ["body"]}, "g"]]))
        .await;
    let part = &got["g"]["list"][0]["body"]["attachments"][0];
    assert_eq!(part["name"], "报告.bin");
    let bytes = carol
        .get(&format!(
            "/jmap/download/{}/{}/r.bin",
            carol.account().await,
            part["blobId"].as_str().unwrap()
        ))
        .await;
    assert_eq!(bytes.body, attachment, "forwarded byte for byte");

    // Bob reads and replies; the reply lands in alice's INBOX, threaded with her Sent copy.
    let id = ids[0].clone();
    bob.api(json!([["Email/set", {"update": {&id: {"keywords/$seen": true}}}, "s"]]))
        .await;
    let reply = bob
        .api(json!([["EmailSubmission/set", {"create": {"r": {
            "to": ["alice@localhost"], "subject": "Re: 季度报告 ✓", "text": "收到",
            "inReplyTo": email["messageId"][0], "references": email["messageId"], "replyingTo": id
        }}}, "x"]]))
        .await;
    assert!(
        reply["x"]["notCreated"].as_object().unwrap().is_empty(),
        "{}",
        reply["x"]
    );
    let flags = bob.api(json!([["Email/get", {"ids": [&id]}, "g"]])).await;
    assert_eq!(
        flags["g"]["list"][0]["keywords"],
        json!({"$seen": true, "$answered": true})
    );
    // RFC 8620 §5.1: a /get response carries the state to ask /changes from.
    assert!(flags["g"]["state"].is_string(), "{}", flags["g"]);

    let alice_inbox = alice.inbox_ids().await;
    assert_eq!(alice_inbox.len(), 1);
    let thread = alice
        .api(json!([["Thread/get", {"ids": [&alice_inbox[0]]}, "t"]]))
        .await;
    assert_eq!(
        thread["t"]["list"][0]["emailIds"],
        json!([sent_id, alice_inbox[0]]),
        "her sent message, then the reply"
    );
    // Addresses seen become suggestions.
    let suggest = alice
        .api(json!([["pigeon:Address/suggest", {"prefix": "bo"}, "a"]]))
        .await;
    assert_eq!(suggest["a"]["list"][0]["email"], "bob@localhost");
}

#[tokio::test]
async fn other_users_mail_is_not_found_and_senders_must_be_owned() {
    let site = site().await;
    deliver(
        &site,
        "bob@localhost",
        b"Subject: private\r\n\r\nfor bob only\r\n",
    )
    .await;
    let mut bob = Browser::new(&site);
    bob.login("bob@localhost", PW).await;
    let bob_id = bob.inbox_ids().await[0].clone();
    let bob_account = bob.account().await;

    let mut carol = Browser::new(&site);
    carol.login("carol@localhost", PW).await;
    let got = carol
        .api(json!([["Email/get", {"ids": [&bob_id]}, "g"]]))
        .await;
    assert_eq!(got["g"]["list"], json!([]));
    assert_eq!(got["g"]["notFound"], json!([&bob_id]));
    let set = carol
        .api(json!([["Email/set", {"update": {&bob_id: {"keywords/$seen": true}}, "destroy": [&bob_id]}, "s"]]))
        .await;
    assert_eq!(set["s"]["notUpdated"][&bob_id]["type"], "notFound");
    assert_eq!(set["s"]["notDestroyed"][&bob_id]["type"], "notFound");
    for path in [
        format!("/jmap/html/{bob_id}"),
        format!("/jmap/raw/{bob_id}"),
        format!("/jmap/download/{bob_account}/{bob_id}-1/x"),
        format!("/jmap/download/{}/{bob_id}-1/x", carol.account().await),
    ] {
        let r = carol.get(&path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert!(!String::from_utf8_lossy(&r.body).contains("for bob only"));
    }
    // Bob still has it, unread.
    let still = bob
        .api(json!([["Email/get", {"ids": [&bob_id]}, "g"]]))
        .await;
    assert_eq!(still["g"]["list"][0]["keywords"], json!({}));
    // Unauthenticated reads are refused.
    let anonymous = Browser::new(&site);
    assert_eq!(
        anonymous.get(&format!("/jmap/raw/{bob_id}")).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Sending as someone else is refused, nothing is delivered.
    let forged = carol
        .api(json!([["EmailSubmission/set", {"create": {"f": {
            "from": "bob@localhost", "to": ["alice@localhost"], "subject": "hi", "text": "x"
        }}}, "x"]]))
        .await;
    assert_eq!(forged["x"]["notCreated"]["f"]["type"], "forbiddenFrom");
    let unknown = carol
        .api(json!([["EmailSubmission/set", {"create": {"f": {
            "to": ["nobody@localhost"], "subject": "hi", "text": "x"
        }}}, "x"]]))
        .await;
    assert_eq!(unknown["x"]["notCreated"]["f"]["type"], "invalidRecipients");
    let bad = carol
        .api(json!([["EmailSubmission/set", {"create": {"f": {"to": ["not an address"], "text": "x"}}}, "x"]]))
        .await;
    assert_eq!(bad["x"]["notCreated"]["f"]["type"], "invalidRecipients");
    let mut alice = Browser::new(&site);
    alice.login("alice@localhost", PW).await;
    assert!(alice.inbox_ids().await.is_empty());
}

/// Empty uploads cost a store row each: their number is bounded per session, and their names.
#[tokio::test]
async fn uploads_are_bounded_in_number_and_name_length() {
    let site = site_with(false, Duration::from_secs(600), 50 * 1024 * 1024).await;
    let mut b = Browser::new(&site);
    b.login("alice@localhost", PW).await;
    let long = b
        .upload(&"n".repeat(256), "application/octet-stream", Vec::new())
        .await;
    assert_eq!(long.status, StatusCode::BAD_REQUEST);
    for i in 0..500 {
        let r = b
            .upload(&format!("e{i}"), "application/octet-stream", Vec::new())
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "upload {i}");
    }
    let more = b
        .upload("one-more", "application/octet-stream", Vec::new())
        .await;
    assert_eq!(more.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        more.json()["error"]
            .as_str()
            .unwrap()
            .contains("too many files"),
        "{}",
        more.json()
    );
}

#[tokio::test]
async fn oversized_uploads_and_messages_get_a_clear_error() {
    let site = site_with(false, Duration::from_secs(600), 64 * 1024).await;
    let mut b = Browser::new(&site);
    b.login("alice@localhost", PW).await;
    let big = b
        .upload("big.bin", "application/octet-stream", vec![1; 80 * 1024])
        .await;
    assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        big.json()["error"]
            .as_str()
            .unwrap()
            .contains("larger than a message may be")
    );
    let half = b
        .upload("a.bin", "application/octet-stream", vec![2; 40 * 1024])
        .await;
    assert_eq!(half.status, StatusCode::CREATED);
    let again = b
        .upload("b.bin", "application/octet-stream", vec![3; 40 * 1024])
        .await;
    assert_eq!(
        again.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "uploads count together"
    );
    // A removed upload frees its room.
    let other = b
        .upload("c.bin", "application/octet-stream", vec![4; 10 * 1024])
        .await;
    let other_id = other.json()["blobId"].as_str().unwrap().to_string();
    let freed = b
        .api(json!([["pigeon:Upload/destroy", {"blobIds": [&other_id]}, "d"]]))
        .await;
    assert_eq!(freed["d"]["destroyed"], json!([other_id]));
    let fits = b
        .upload("d.bin", "application/octet-stream", vec![5; 20 * 1024])
        .await;
    assert_eq!(fits.status, StatusCode::CREATED);
    // A message over the limit once encoded (base64 grows it) is refused before sending.
    let blob = half.json()["blobId"].as_str().unwrap().to_string();
    let sent = b
        .api(json!([["EmailSubmission/set", {"create": {"s": {
            "to": ["bob@localhost"], "subject": "big", "text": "x",
            "attachments": [{"blobId": blob}, {"blobId": blob}]
        }}}, "x"]]))
        .await;
    assert_eq!(sent["x"]["notCreated"]["s"]["type"], "tooLarge");
    let gone = b
        .api(json!([["EmailSubmission/set", {"create": {"s": {
            "to": ["bob@localhost"], "text": "x", "attachments": [{"blobId": "unothere"}]
        }}}, "x"]]))
        .await;
    assert_eq!(gone["x"]["notCreated"]["s"]["type"], "blobNotFound");
    let wrong_account = b
        .send(
            Method::POST,
            "/jmap/upload/999/?name=x",
            &[("x-csrf-token", &b.csrf.clone().unwrap())],
            b"x".to_vec(),
        )
        .await;
    assert_eq!(wrong_account.status, StatusCode::NOT_FOUND);
    let no_csrf = b
        .send(
            Method::POST,
            &format!("/jmap/upload/{}/", b.account().await),
            &[],
            b"x".to_vec(),
        )
        .await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn folders_flags_moves_trash_and_drafts() {
    let site = site().await;
    for i in 0..3 {
        deliver(
            &site,
            "alice@localhost",
            format!("Subject: m{i}\r\n\r\nbody {i}\r\n").as_bytes(),
        )
        .await;
    }
    let mut b = Browser::new(&site);
    b.login("alice@localhost", PW).await;
    let ids = b.inbox_ids().await;
    assert_eq!(ids.len(), 3, "newest first: {ids:?}");
    let boxes = b.api(json!([["Mailbox/get", {}, "m"]])).await;
    let inbox = &boxes["m"]["list"][0];
    assert_eq!(
        (inbox["role"].as_str(), inbox["unreadEmails"].as_u64()),
        (Some("inbox"), Some(3))
    );

    let made = b
        .api(json!([
            ["Mailbox/set", {"create": {"n": {"name": "项目"}}}, "c"],
            ["Mailbox/set", {"create": {"n": {"name": "项目"}}}, "dup"],
            ["Mailbox/set", {"create": {"n": {"name": "bad/"}}}, "bad"],
        ]))
        .await;
    let project = made["c"]["created"]["n"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(made["dup"]["notCreated"]["n"]["type"], "alreadyExists");
    // RFC 8620 §5.3: a bad property of an object is a SetError invalidProperties.
    assert_eq!(made["bad"]["notCreated"]["n"]["type"], "invalidProperties");
    let renamed = b
        .api(json!([["Mailbox/set", {"update": {&project: {"name": "Projects"}}}, "r"]]))
        .await;
    assert!(renamed["r"]["notUpdated"].as_object().unwrap().is_empty());
    let inbox_id = b.mailbox("inbox").await;
    let refuse = b
        .api(json!([["Mailbox/set", {"destroy": [&inbox_id]}, "d"]]))
        .await;
    assert_eq!(refuse["d"]["notDestroyed"][&inbox_id]["type"], "forbidden");

    // Flag, read, move to the new folder, delete to Trash, empty Trash.
    let set = b
        .api(json!([["Email/set", {"update": {
            &ids[0]: {"keywords/$flagged": true, "keywords/$seen": true},
            &ids[1]: {"mailboxIds": {&project: true}},
            &ids[2]: {"keywords/$bogus": true, "subject": "x"},
        }}, "s"]]))
        .await;
    assert_eq!(set["s"]["updated"][&ids[0]], Value::Null);
    assert!(
        set["s"]["updated"][&ids[1]]["id"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{project}-"))
    );
    assert_eq!(set["s"]["notUpdated"][&ids[2]]["type"], "invalidPatch");
    let got = b.api(json!([["Email/get", {"ids": [&ids[0]]}, "g"]])).await;
    assert_eq!(
        got["g"]["list"][0]["keywords"],
        json!({"$flagged": true, "$seen": true})
    );
    let trash = b.mailbox("trash").await;
    b.api(json!([["Email/set", {"update": {&ids[0]: {"mailboxIds": {&trash: true}}}}, "t"]]))
        .await;
    let boxes = b.api(json!([["Mailbox/get", {}, "m"]])).await;
    let count = |id: &str, key: &str| {
        boxes["m"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .unwrap()[key]
            .as_u64()
            .unwrap()
    };
    assert_eq!(
        (
            count(&inbox_id, "totalEmails"),
            count(&trash, "totalEmails"),
            count(&project, "totalEmails")
        ),
        (1, 1, 1)
    );
    let emptied = b
        .api(json!([["pigeon:Mailbox/empty", {"mailboxId": &trash}, "e"]]))
        .await;
    assert_eq!(emptied["e"]["removed"], 1);
    let destroyed = b
        .api(json!([["Mailbox/set", {"destroy": [&project]}, "d"]]))
        .await;
    assert_eq!(destroyed["d"]["destroyed"], json!([project]));

    // A draft keeps what parses of a half-typed address list.
    let half = b
        .api(json!([["Email/set", {"create": {"d": {"to": ["bob@localhost", "car"], "subject": "wip", "text": "..."}}}, "s"]]))
        .await;
    let wip = half["s"]["created"]["d"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    b.api(json!([["Email/set", {"destroy": [&wip]}, "x"]]))
        .await;

    // Drafts: saved, replaced by the next save, dropped when sent.
    let first = b
        .api(json!([["Email/set", {"create": {"d": {"to": ["bob@localhost"], "subject": "draft", "text": "v1"}}}, "s"]]))
        .await;
    let draft1 = first["s"]["created"]["d"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let second = b
        .api(json!([["Email/set", {"create": {"d": {"to": ["bob@localhost"], "subject": "draft", "text": "v2", "draftId": &draft1}}}, "s"]]))
        .await;
    let draft2 = second["s"]["created"]["d"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let drafts = b.mailbox("drafts").await;
    let listed = b
        .api(json!([["Email/query", {"filter": {"inMailbox": &drafts}}, "q"]]))
        .await;
    assert_eq!(listed["q"]["ids"], json!([&draft2]));
    let got = b
        .api(json!([["Email/get", {"ids": [&draft2], "properties": ["body"]}, "g"]]))
        .await;
    assert_eq!(got["g"]["list"][0]["keywords"]["$draft"], true);
    assert!(
        got["g"]["list"][0]["body"]["text"]
            .as_str()
            .unwrap()
            .contains("v2")
    );
    b.api(json!([["EmailSubmission/set", {"create": {"s": {"to": ["bob@localhost"], "subject": "draft", "text": "v2", "draftId": &draft2}}}, "x"]])).await;
    let listed = b
        .api(json!([["Email/query", {"filter": {"inMailbox": &drafts}}, "q"]]))
        .await;
    assert_eq!(listed["q"]["total"], 0, "the sent draft is gone");
}

#[tokio::test]
async fn search_pagination_and_filters() {
    let site = site().await;
    for i in 0..60 {
        let attachment = if i % 10 == 0 {
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nsee file\r\n--B\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\n\r\nPDF\r\n--B--\r\n"
        } else {
            "\r\nplain body\r\n"
        };
        let from = if i % 2 == 0 {
            "Zhang San <zhang@example.com>"
        } else {
            "bob@localhost"
        };
        let body = if i == 42 {
            "\r\nthe word 独角兽 appears once\r\n"
        } else {
            attachment
        };
        let message = format!("From: {from}\r\nSubject: report {i}\r\n{body}");
        deliver(&site, "alice@localhost", message.as_bytes()).await;
    }
    let mut b = Browser::new(&site);
    b.login("alice@localhost", PW).await;
    let inbox = b.mailbox("inbox").await;
    let page = |position: u64| json!([["Email/query", {"filter": {"inMailbox": &inbox}, "position": position, "limit": 25}, "q"]]);
    let first = b.api(page(0)).await;
    assert_eq!(first["q"]["total"], 60);
    assert_eq!(first["q"]["ids"][0], format!("{inbox}-60"), "newest first");
    assert_eq!(first["q"]["ids"].as_array().unwrap().len(), 25);
    let last = b.api(page(50)).await;
    assert_eq!(last["q"]["ids"].as_array().unwrap().len(), 10);
    let query = |filter: Value| json!([["Email/query", {"filter": filter}, "q"]]);
    let total = |r: &std::collections::HashMap<String, Value>| r["q"]["total"].as_u64().unwrap();
    assert_eq!(
        total(
            &b.api(query(json!({"inMailbox": &inbox, "text": "独角兽"})))
                .await
        ),
        1
    );
    assert_eq!(
        total(
            &b.api(query(json!({"inMailbox": &inbox, "body": "PLAIN BODY"})))
                .await
        ),
        53
    );
    assert_eq!(
        total(
            &b.api(query(json!({"inMailbox": &inbox, "from": "zhang"})))
                .await
        ),
        30
    );
    assert_eq!(
        total(
            &b.api(query(json!({"inMailbox": &inbox, "subject": "report 1"})))
                .await
        ),
        11
    );
    assert_eq!(
        total(
            &b.api(query(json!({"inMailbox": &inbox, "hasAttachment": true})))
                .await
        ),
        6
    );
    assert_eq!(
        total(
            &b.api(query(
                json!({"inMailbox": &inbox, "hasAttachment": true, "from": "bob"})
            ))
            .await
        ),
        0
    );
    assert_eq!(
        total(
            &b.api(query(json!({"inMailbox": &inbox, "after": "2030-01-01"})))
                .await
        ),
        0
    );
    assert_eq!(
        total(
            &b.api(query(json!({"inMailbox": &inbox, "before": "2030-01-01"})))
                .await
        ),
        60
    );
    let bad = b
        .api(query(json!({"inMailbox": &inbox, "after": "someday"})))
        .await;
    assert_eq!(bad["q"]["type"], "invalidArguments");
}

#[tokio::test]
async fn html_mail_is_sanitised_framed_and_remote_images_wait() {
    let site = site().await;
    let mail = b"From: x@example.com\r\nSubject: html\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
<p onmouseover=\"steal()\">Hello <b>\xe4\xb8\x96\xe7\x95\x8c</b></p><script>alert(1)</script><img src=\"https://tracker.example/p.gif\"><iframe src=\"https://evil.example\"></iframe><form action=\"https://evil.example\"><input name=pw></form>\r\n";
    deliver(&site, "alice@localhost", mail).await;
    let mut b = Browser::new(&site);
    b.login("alice@localhost", PW).await;
    let id = b.inbox_ids().await[0].clone();
    let got = b
        .api(json!([["Email/get", {"ids": [&id], "properties": ["body"]}, "g"]]))
        .await;
    let body = &got["g"]["list"][0]["body"];
    assert_eq!(body["hasHtml"], true);
    assert_eq!(body["hasRemoteImages"], true);
    assert!(body["text"].as_str().unwrap().contains("Hello 世界"));
    let html = b.get(&format!("/jmap/html/{id}")).await;
    assert_eq!(html.status, StatusCode::OK);
    let csp = html.header(header::CONTENT_SECURITY_POLICY);
    assert!(
        csp.contains("sandbox") && csp.contains("img-src data:;") && !csp.contains("script-src"),
        "{csp}"
    );
    assert_eq!(html.header(header::X_FRAME_OPTIONS), "SAMEORIGIN");
    let text = String::from_utf8(html.body).unwrap();
    assert!(text.contains("Hello <b>世界</b>"), "{text}");
    for banned in [
        "script",
        "onmouseover",
        "tracker.example",
        "iframe",
        "<form",
        "evil.example",
    ] {
        assert!(!text.contains(banned), "{banned} in {text}");
    }
    let allowed = b.get(&format!("/jmap/html/{id}?remote=1")).await;
    assert!(
        allowed
            .header(header::CONTENT_SECURITY_POLICY)
            .contains("img-src data: https: http:")
    );
    assert!(
        String::from_utf8(allowed.body)
            .unwrap()
            .contains("https://tracker.example/p.gif")
    );
    let raw = b.get(&format!("/jmap/raw/{id}")).await;
    assert_eq!(raw.body, mail.to_vec(), "show original: the stored bytes");
    assert!(raw.header(header::CONTENT_TYPE).starts_with("text/plain"));
    assert_eq!(
        b.get("/jmap/html/nonsense").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_event_source_pushes_changes() {
    let site = site().await;
    let mut b = Browser::new(&site);
    b.login("alice@localhost", PW).await;
    assert_eq!(
        b.get("/jmap/eventsource").await.status,
        StatusCode::FORBIDDEN
    );
    let anonymous = Browser::new(&site);
    assert_eq!(
        anonymous.get("/jmap/eventsource?csrf=x").await.status,
        StatusCode::UNAUTHORIZED
    );
    let request = Request::builder()
        .uri(format!(
            "/jmap/eventsource?csrf={}",
            b.csrf.clone().unwrap()
        ))
        .header(header::COOKIE, b.cookie.clone().unwrap())
        .body(Body::empty())
        .unwrap();
    let response = site.app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    let mut stream = response.into_body().into_data_stream();
    deliver(&site, "alice@localhost", b"Subject: pushed\r\n\r\nx\r\n").await;
    use futures_util::StreamExt;
    let chunk = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("an event arrives")
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&chunk);
    assert!(text.starts_with("event: state\ndata: "), "{text}");
    assert!(text.contains("\"kind\":\"emailAdded\""), "{text}");
}

#[tokio::test]
async fn changes_since_a_state() {
    let site = site().await;
    for i in 0..3 {
        deliver(
            &site,
            "alice@localhost",
            format!("Subject: c{i}\r\n\r\nx\r\n").as_bytes(),
        )
        .await;
    }
    let mut b = Browser::new(&site);
    b.login("alice@localhost", PW).await;
    let first = b.api(json!([["Mailbox/get", {}, "m"]])).await;
    let state = first["m"]["state"].as_str().unwrap().to_string();
    let ids = b.inbox_ids().await;
    let none = b
        .api(json!([["Email/changes", {"sinceState": &state}, "c"]]))
        .await;
    assert_eq!(none["c"]["created"], json!([]));
    assert_eq!(none["c"]["newState"], state.as_str());

    // One new, one flagged, one removed.
    deliver(&site, "alice@localhost", b"Subject: c3\r\n\r\nx\r\n").await;
    b.api(json!([["Email/set", {"update": {&ids[0]: {"keywords/$flagged": true}}, "destroy": [&ids[2]]}, "s"]])).await;
    b.api(json!([["Mailbox/set", {"create": {"n": {"name": "Later"}}}, "f"]]))
        .await;
    let changes = b
        .api(json!([
            ["Email/changes", {"sinceState": &state}, "c"],
            ["Mailbox/changes", {"sinceState": &state}, "m"],
        ]))
        .await;
    let inbox = b.mailbox("inbox").await;
    assert_eq!(changes["c"]["created"], json!([format!("{inbox}-4")]));
    assert_eq!(changes["c"]["updated"], json!([&ids[0]]));
    assert_eq!(changes["c"]["destroyed"], json!([&ids[2]]));
    assert_eq!(changes["m"]["updated"], json!([&inbox]));
    assert_eq!(changes["m"]["created"].as_array().unwrap().len(), 1);
    let later = changes["m"]["created"][0].as_str().unwrap().to_string();
    let newer = changes["c"]["newState"].as_str().unwrap().to_string();
    b.api(json!([["Mailbox/set", {"destroy": [&later]}, "d"]]))
        .await;
    let gone = b
        .api(json!([
            ["Mailbox/changes", {"sinceState": &newer}, "m"],
            ["Email/changes", {"sinceState": "nonsense"}, "bad"],
        ]))
        .await;
    assert_eq!(gone["m"]["destroyed"], json!([later]));
    assert_eq!(gone["bad"]["type"], "cannotCalculateChanges");
}

#[tokio::test]
async fn hostile_input_is_refused_or_neutralised() {
    let site = site().await;
    deliver(&site, "alice@localhost", b"Subject: x\r\n\r\nbody\r\n").await;
    let mut b = Browser::new(&site);
    b.login("alice@localhost", PW).await;
    let id = b.inbox_ids().await[0].clone();
    let inbox = b.mailbox("inbox").await;
    // Keywords that would break IMAP responses.
    let set = b
        .api(json!([["Email/set", {"update": {
            &id: {"keywords/x)\r\n* 1 EXPUNGE": true},
        }}, "s"], ["Email/set", {"update": {&id: {"keywords/a b": true}}}, "t"],
           ["Email/set", {"update": {&id: {"keywords/$Work": true, "mailboxIds": {&inbox: false}}}}, "u"]]))
        .await;
    assert_eq!(set["s"]["notUpdated"][&id]["type"], "invalidPatch");
    assert_eq!(set["t"]["notUpdated"][&id]["type"], "invalidPatch");
    assert_eq!(
        set["u"]["notUpdated"][&id]["type"], "invalidPatch",
        "a move names its target with true"
    );
    // Ids spelled another way name nothing.
    let odd = format!("{inbox}-0{}", id.rsplit('-').next().unwrap());
    let got = b.api(json!([["Email/get", {"ids": [&odd]}, "g"]])).await;
    assert_eq!(got["g"]["notFound"], json!([odd]));
    // INBOX keeps its name and its mail.
    let r = b
        .api(json!([
            ["Mailbox/set", {"update": {&inbox: {"name": "Old"}}}, "r"],
            ["pigeon:Mailbox/empty", {"mailboxId": &inbox}, "e"],
        ]))
        .await;
    assert_eq!(r["r"]["notUpdated"][&inbox]["type"], "forbidden");
    assert_eq!(r["e"]["type"], "forbidden");
    assert_eq!(b.inbox_ids().await, std::slice::from_ref(&id));
    // Header injection through threading ids and attachment types goes nowhere.
    let up = b.upload("a.txt", "text/plain", b"hello".to_vec()).await;
    let blob = up.json()["blobId"].as_str().unwrap().to_string();
    let sent = b
        .api(json!([["EmailSubmission/set", {"create": {"s": {
            "to": ["bob@localhost"], "subject": "inject", "text": "x",
            "inReplyTo": "x>\r\nFrom: ceo@localhost\r\nX-Y: <y",
            "references": ["ok@x", "bad\r\nBcc: all@localhost"],
            "attachments": [{"blobId": blob, "name": "a.txt", "type": "text/plain\r\nFrom: ceo@localhost"}]
        }}}, "x"]]))
        .await;
    assert!(
        sent["x"]["notCreated"].as_object().unwrap().is_empty(),
        "{}",
        sent["x"]
    );
    let mut bob = Browser::new(&site);
    bob.login("bob@localhost", PW).await;
    let raw = bob
        .get(&format!("/jmap/raw/{}", bob.inbox_ids().await[0]))
        .await;
    let text = String::from_utf8(raw.body).unwrap();
    assert!(
        !text.contains("ceo@localhost") && !text.contains("all@localhost"),
        "{text}"
    );
    assert!(text.contains("References: <ok@x>"), "{text}");
}

/// A peer that is not this machine (TEST-NET-2, RFC 5737): it only labels the in-process
/// request as a listener would, nothing is ever sent there.
fn remote_peer() -> std::net::SocketAddr {
    "198.51.100.7:40000".parse().unwrap()
}

#[tokio::test]
async fn plain_http_logins_follow_the_listener_auth_policy() {
    // Issue 14: passwords over plain HTTP were taken whatever `[auth]` said.
    let strict = site_of(Options {
        allow_plaintext_on_loopback: false,
        ..Options::default()
    })
    .await;
    let mut b = Browser::new(&strict);
    let refused = b.login("alice@localhost", PW).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let message = refused.json()["error"].as_str().unwrap().to_string();
    assert!(
        message.contains("plain HTTP") && message.contains("https://"),
        "{message}"
    );
    assert!(refused.header(header::SET_COOKIE).is_empty());
    assert!(strict.sessions.is_empty());
    // Refused before the password is looked at: a wrong one gets the same answer.
    let wrong = b.login("alice@localhost", "nope").await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert_eq!(wrong.json()["error"], message.as_str());

    // Allowed on loopback (the development default), never from elsewhere.
    let loopback = site().await;
    let mut local = Browser::new(&loopback);
    assert_eq!(
        local.login("alice@localhost", PW).await.status,
        StatusCode::OK
    );
    let mut mapped = Browser::new(&loopback);
    mapped.peer = Some("[::ffff:127.0.0.1]:40000".parse().unwrap());
    assert_eq!(
        mapped.login("alice@localhost", PW).await.status,
        StatusCode::OK,
        "a dual-stack listener sees loopback as ::ffff:127.0.0.1"
    );
    let mut far = Browser::new(&loopback);
    far.peer = Some(remote_peer());
    let refused = far.login("alice@localhost", PW).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(loopback.sessions.len(), 2);

    // Over HTTPS a login is taken from anywhere.
    let https = site_of(Options {
        secure: true,
        allow_plaintext_on_loopback: false,
        ..Options::default()
    })
    .await;
    let mut far = Browser::new(&https);
    far.peer = Some(remote_peer());
    assert_eq!(
        far.login("alice@localhost", PW).await.status,
        StatusCode::OK
    );
    assert_eq!(far.get("/jmap/session").await.status, StatusCode::OK);
}

#[tokio::test]
async fn sessions_per_account_are_capped_and_the_one_unused_longest_ends() {
    // Issue 14: sessions were unlimited, each holding its own uploads.
    let site = site_of(Options {
        max_sessions_per_account: 3,
        ..Options::default()
    })
    .await;
    let mut browsers = Vec::new();
    for _ in 0..3 {
        let mut b = Browser::new(&site);
        assert_eq!(b.login("alice@localhost", PW).await.status, StatusCode::OK);
        browsers.push(b);
    }
    // Another account's sessions are counted apart.
    let mut bob = Browser::new(&site);
    assert_eq!(bob.login("bob@localhost", PW).await.status, StatusCode::OK);
    // The first is used again, so the second is now the one unused longest.
    assert_eq!(
        browsers[0].get("/jmap/session").await.status,
        StatusCode::OK
    );
    let mut fourth = Browser::new(&site);
    assert_eq!(
        fourth.login("alice@localhost", PW).await.status,
        StatusCode::OK
    );
    let ended = browsers[1].get("/jmap/session").await;
    assert_eq!(ended.status, StatusCode::UNAUTHORIZED);
    assert_eq!(ended.json()["error"], "not logged in or session expired");
    for b in [&browsers[0], &browsers[2], &fourth, &bob] {
        assert_eq!(b.get("/jmap/session").await.status, StatusCode::OK);
    }
    assert_eq!(site.sessions.len(), 4);
    // However many logins come, the account never holds more than its cap.
    for _ in 0..10 {
        let mut b = Browser::new(&site);
        assert_eq!(b.login("alice@localhost", PW).await.status, StatusCode::OK);
    }
    assert_eq!(site.sessions.len(), 4);
    assert_eq!(bob.get("/jmap/session").await.status, StatusCode::OK);
}

/// Ids of the uploads in the store's upload area: an empty piece tells whether one exists
/// without changing what it holds.
async fn stored_uploads(store: &dyn Store) -> Vec<i64> {
    let mut ids = Vec::new();
    for id in 1..=64 {
        if store.upload_chunk(id, Vec::new()).await.is_ok() {
            ids.push(id);
        }
    }
    ids
}

/// Waits (up to 10 s) until the store holds `count` uploads; freeing is done in the background.
async fn wait_for_uploads(store: &dyn Store, count: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ids = stored_uploads(store).await;
        if ids.len() == count {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the store holds uploads {ids:?}, expected {count}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn uploads_go_to_the_store_are_bounded_per_account_and_freed() {
    // Issue 14: each session held up to a message's worth of uploads in memory, without a
    // bound over the account's sessions.
    const K: usize = 1024;
    let site = site_of(Options {
        max_message_size: 256 * K,
        ..Options::default()
    })
    .await;
    let store = &*site.store;
    let mut tabs = Vec::new();
    for _ in 0..4 {
        let mut b = Browser::new(&site);
        b.login("alice@localhost", PW).await;
        tabs.push(b);
    }
    let mut blobs = Vec::new();
    for (i, tab) in tabs.iter().take(3).enumerate() {
        let up = tab
            .upload(
                "f.bin",
                "application/octet-stream",
                vec![i as u8 + 1; 150 * K],
            )
            .await;
        assert_eq!(up.status, StatusCode::CREATED, "{}", up.json());
        blobs.push(up.json()["blobId"].as_str().unwrap().to_string());
    }
    // 450 KB held; the account may hold twice the 256 KB message limit over all its sessions.
    let over = tabs[3]
        .upload("g.bin", "application/octet-stream", vec![9; 100 * K])
        .await;
    assert_eq!(over.status, StatusCode::PAYLOAD_TOO_LARGE);
    let message = over.json()["error"].as_str().unwrap().to_string();
    assert!(
        message.contains("all your open sessions") && message.contains("512 KB"),
        "{message}"
    );
    // Another account has its own room.
    let mut bob = Browser::new(&site);
    bob.login("bob@localhost", PW).await;
    let bobs = bob
        .upload("b.bin", "application/octet-stream", vec![7; 200 * K])
        .await;
    assert_eq!(bobs.status, StatusCode::CREATED);
    // The files are in the store's upload area (the refused one is dropped from it).
    wait_for_uploads(store, 4).await;

    // An upload is read as often as needed: downloaded, saved in a draft twice, then sent.
    let account = tabs[0].account().await;
    let download = tabs[0]
        .get(&format!("/jmap/download/{account}/{}/f.bin", blobs[0]))
        .await;
    assert_eq!(download.status, StatusCode::OK);
    assert_eq!(download.body, vec![1; 150 * K]);
    let mut draft = Value::Null;
    for text in ["v1", "v2"] {
        let saved = tabs[0]
            .api(json!([["Email/set", {"create": {"d": {
                "to": ["bob@localhost"], "subject": "files", "text": text, "draftId": draft,
                "attachments": [{"blobId": &blobs[0]}]
            }}}, "s"]]))
            .await;
        draft = saved["s"]["created"]["d"]["id"].clone();
        assert!(draft.is_string(), "{saved:?}");
    }
    let sent = tabs[0]
        .api(json!([["EmailSubmission/set", {"create": {"s": {
            "to": ["bob@localhost"], "subject": "files", "text": "v3", "draftId": draft,
            "attachments": [{"blobId": &blobs[0]}]
        }}}, "x"]]))
        .await;
    assert!(sent["x"]["created"]["s"]["emailId"].is_string(), "{sent:?}");
    let inbox = bob.inbox_ids().await;
    let got = bob
        .api(json!([["Email/get", {"ids": [&inbox[0]], "properties": ["body"]}, "g"]]))
        .await;
    assert_eq!(
        got["g"]["list"][0]["body"]["attachments"][0]["size"],
        150 * K
    );
    // Sending freed the upload: its room is back.
    let fits = tabs[3]
        .upload("g.bin", "application/octet-stream", vec![9; 100 * K])
        .await;
    assert_eq!(fits.status, StatusCode::CREATED);
    wait_for_uploads(store, 4).await;

    // Removed, logged out, or ended by another login: each frees its files in the store.
    let destroyed = tabs[1]
        .api(json!([["pigeon:Upload/destroy", {"blobIds": [&blobs[1]]}, "d"]]))
        .await;
    assert_eq!(destroyed["d"]["destroyed"], json!([&blobs[1]]));
    wait_for_uploads(store, 3).await;
    let csrf = tabs[2].csrf.clone().unwrap();
    let logout = tabs[2]
        .send(
            Method::POST,
            "/api/logout",
            &[("x-csrf-token", &csrf)],
            Vec::new(),
        )
        .await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT);
    wait_for_uploads(store, 2).await;
    let mut again = Browser::new(&site);
    again.cookie = tabs[3].cookie.clone();
    again.login("alice@localhost", PW).await;
    wait_for_uploads(store, 1).await;
    let csrf = bob.csrf.clone().unwrap();
    bob.send(
        Method::POST,
        "/api/logout",
        &[("x-csrf-token", &csrf)],
        Vec::new(),
    )
    .await;
    wait_for_uploads(store, 0).await;
}

#[tokio::test]
async fn uploads_of_sessions_that_expire_or_are_pushed_out_are_freed() {
    let site = site_of(Options {
        idle: Duration::from_millis(500),
        max_sessions_per_account: 1,
        ..Options::default()
    })
    .await;
    let store = &*site.store;
    let mut b = Browser::new(&site);
    b.login("alice@localhost", PW).await;
    let up = b.upload("a.bin", "text/plain", b"first".to_vec()).await;
    assert_eq!(up.status, StatusCode::CREATED);
    wait_for_uploads(store, 1).await;
    // The cap is one session: a login elsewhere ends this one, and its upload goes.
    let mut other = Browser::new(&site);
    other.login("alice@localhost", PW).await;
    wait_for_uploads(store, 0).await;
    assert_eq!(
        b.get("/jmap/session").await.status,
        StatusCode::UNAUTHORIZED
    );
    // Nobody comes back: the session expires and its upload goes without any request.
    let up = other
        .upload("b.bin", "text/plain", b"second".to_vec())
        .await;
    assert_eq!(up.status, StatusCode::CREATED);
    wait_for_uploads(store, 1).await;
    wait_for_uploads(store, 0).await;
    assert!(site.sessions.is_empty());
}

#[tokio::test]
async fn deeply_nested_json_is_refused_never_a_stack_overflow() {
    // Issue 14: no recursion on attacker-controlled depth. serde_json stops at 128 levels.
    let site = site().await;
    let mut b = Browser::new(&site);
    let deep = |depth: usize| {
        format!(
            "{{\"username\": {}1{}, \"password\": \"x\"}}",
            "[".repeat(depth),
            "]".repeat(depth)
        )
    };
    let login = b
        .send(
            Method::POST,
            "/api/login",
            &[("content-type", "application/json")],
            deep(100_000).into_bytes(),
        )
        .await;
    assert!(login.status.is_client_error(), "{}", login.status);
    b.login("alice@localhost", PW).await;
    let calls = format!(
        "{{\"methodCalls\": [[\"Mailbox/get\", {{\"x\": {}1{}}}, \"m\"]]}}",
        "{\"a\":".repeat(200_000),
        "}".repeat(200_000)
    );
    let csrf = b.csrf.clone().unwrap();
    let api = b
        .send(
            Method::POST,
            "/jmap/api",
            &[
                ("content-type", "application/json"),
                ("x-csrf-token", &csrf),
            ],
            calls.into_bytes(),
        )
        .await;
    assert_eq!(api.status, StatusCode::BAD_REQUEST);
    assert!(
        api.json()["error"]
            .as_str()
            .unwrap()
            .contains("recursion limit")
    );
    assert_eq!(b.get("/jmap/session").await.status, StatusCode::OK);
}

/// Every method's arguments are a type: unknown or mistyped ones get `invalidArguments` with
/// serde's message (RFC 8620 §3.6.2), `accountId` must be the session's, the request's
/// `using` names only our capabilities, and references must name their call right.
#[tokio::test]
async fn arguments_are_typed_and_checked() {
    let site = site().await;
    let mut b = Browser::new(&site);
    b.login("alice@localhost", PW).await;
    let account = b.account().await;
    let inbox = b.mailbox("inbox").await;
    let r = b
        .api(json!([
            ["Mailbox/get", {"accountId": &account}, "ok"],
            ["Mailbox/get", {"accountId": "999999"}, "other"],
            ["Mailbox/get", {"accountId": 1}, "number"],
            ["Email/query", {"filter": {"inMailbox": &inbox}, "sortBy": []}, "sort"],
            ["Email/query", {"filter": {"inMailbox": &inbox, "hasAttachment": "yes"}}, "type"],
            ["Email/get", {"ids": "1-1"}, "ids"],
            ["Email/changes", {}, "since"],
            ["Thread/get", {"ids": [], "depth": 2}, "extra"],
            ["Email/query", {"filter": {"inMailbox": &inbox}}, "q"],
            ["Email/get", {"#ids": {"resultOf": "q", "name": "Email/get", "path": "/ids"}}, "name"],
            ["Email/get", {"#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"}}, "g"],
        ]))
        .await;
    assert!(r["ok"]["list"].is_array());
    assert_eq!(r["other"]["type"], "accountNotFound");
    assert_eq!(r["number"]["type"], "invalidArguments");
    assert_eq!(r["sort"]["type"], "invalidArguments");
    assert!(
        r["sort"]["description"]
            .as_str()
            .unwrap()
            .contains("unknown field `sortBy`"),
        "{}",
        r["sort"]
    );
    assert_eq!(r["type"]["type"], "invalidArguments");
    assert_eq!(r["ids"]["type"], "invalidArguments");
    assert_eq!(r["since"]["type"], "invalidArguments");
    assert_eq!(r["extra"]["type"], "invalidArguments");
    assert_eq!(r["name"]["type"], "invalidResultReference");
    assert!(r["g"]["list"].is_array());

    let set = b
        .api(json!([["Mailbox/set", {"create": {"a": {"name": "A"}, "b": {"name": 2}}}, "s"]]))
        .await;
    assert!(set["s"]["created"]["a"]["id"].is_string());
    assert_eq!(set["s"]["notCreated"]["b"]["type"], "invalidProperties");

    let csrf = b.csrf.clone().unwrap();
    let with_using = |using: Value| {
        json!({"using": using, "methodCalls": [["Mailbox/get", {}, "m"]]})
            .to_string()
            .into_bytes()
    };
    let headers = [
        ("content-type", "application/json"),
        ("x-csrf-token", csrf.as_str()),
    ];
    let known = b
        .send(
            Method::POST,
            "/jmap/api",
            &headers,
            with_using(json!([
                "urn:ietf:params:jmap:core",
                "urn:ietf:params:jmap:mail"
            ])),
        )
        .await;
    assert_eq!(known.status, StatusCode::OK);
    let unknown = b
        .send(
            Method::POST,
            "/jmap/api",
            &headers,
            with_using(json!(["urn:ietf:params:jmap:calendars"])),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        unknown.json()["error"],
        "unknown capability urn:ietf:params:jmap:calendars"
    );
}

/// The arguments RFC 8620 §5 and RFC 8621 define, as a third-party JMAP client sends them, get
/// normal responses: implemented where cheap (ids, properties, sort, anchors, a negative
/// position, collapseThreads, maxChanges, ifInState), accepted and ignored otherwise.
#[tokio::test]
async fn standard_jmap_arguments_get_normal_responses() {
    let site = site().await;
    for i in 0..5 {
        // Two threads: 0, 2, 4 answer <t0@x>; 1 and 3 are alone.
        let threading = if i % 2 == 0 && i > 0 {
            "In-Reply-To: <t0@x>\r\nReferences: <t0@x>\r\n".to_string()
        } else {
            String::new()
        };
        let padding = "x".repeat(100 * (5 - i));
        let message = format!(
            "From: bob@localhost\r\nMessage-ID: <t{i}@x>\r\n{threading}Subject: s{i}\r\n\r\n{padding}\r\n"
        );
        deliver(&site, "alice@localhost", message.as_bytes()).await;
    }
    let mut b = Browser::new(&site);
    b.login("alice@localhost", PW).await;
    let account = b.account().await;
    let inbox = b.mailbox("inbox").await;
    let id = |uid: u32| format!("{inbox}-{uid}");
    let r = b
        .api(json!([
            ["Mailbox/get", {"accountId": &account, "ids": null, "properties": ["name", "role", "totalEmails"]}, "m"],
            ["Mailbox/get", {"ids": [&inbox, "999"], "properties": null}, "m2"],
            ["Mailbox/get", {"properties": ["colour"]}, "m3"],
            ["Email/query", {
                "accountId": &account, "filter": {"inMailbox": &inbox},
                "sort": [{"property": "receivedAt", "isAscending": false}],
                "position": 0, "limit": 10, "calculateTotal": true, "collapseThreads": false,
            }, "q"],
            ["Email/get", {
                "accountId": &account, "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                "properties": ["id", "threadId", "subject", "receivedAt"],
                "bodyProperties": ["partId", "type"], "fetchTextBodyValues": true,
                "fetchHTMLBodyValues": true, "fetchAllBodyValues": false, "maxBodyValueBytes": 1024,
            }, "g"],
            ["Thread/get", {"ids": [id(1)], "properties": ["emailIds"]}, "t"],
            ["Thread/get", {"ids": [id(1)], "properties": ["id"]}, "t2"],
        ]))
        .await;
    let m = r["m"]["list"].as_array().unwrap();
    assert!(!m.is_empty());
    for mailbox in m {
        let mut keys: Vec<&str> = mailbox
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        keys.sort();
        assert_eq!(keys, ["id", "name", "role", "totalEmails"], "{mailbox}");
    }
    assert_eq!(r["m2"]["list"].as_array().unwrap().len(), 1);
    assert_eq!(r["m2"]["list"][0]["id"], inbox.as_str());
    assert!(r["m2"]["list"][0]["unreadEmails"].is_number());
    assert_eq!(r["m2"]["notFound"], json!(["999"]));
    assert_eq!(r["m3"]["type"], "invalidArguments");
    assert_eq!(r["q"]["ids"], json!([id(5), id(4), id(3), id(2), id(1)]));
    assert_eq!(r["q"]["total"], 5);
    assert_eq!(r["q"]["position"], 0);
    assert_eq!(r["q"]["canCalculateChanges"], false);
    assert_eq!(r["g"]["list"].as_array().unwrap().len(), 5);
    assert_eq!(r["g"]["list"][0]["subject"], "s4");
    assert_eq!(r["t"]["list"][0]["emailIds"], json!([id(1), id(3), id(5)]));
    assert!(r["t"]["state"].is_string());
    assert!(r["t2"]["list"][0]["id"].is_string());
    assert!(r["t2"]["list"][0].get("emailIds").is_none());

    // Paging from the end, by anchor, other orders, collapsed threads.
    let query = |extra: Value| {
        let mut args = json!({"filter": {"inMailbox": &inbox}});
        args.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        json!([["Email/query", args, "q"]])
    };
    let ids = |r: &std::collections::HashMap<String, Value>| r["q"]["ids"].clone();
    let last = b.api(query(json!({"position": -2}))).await;
    assert_eq!(ids(&last), json!([id(2), id(1)]));
    assert_eq!(last["q"]["position"], 3, "the index the page starts at");
    assert_eq!(last["q"]["total"], 5);
    let clamped = b.api(query(json!({"position": -99, "limit": 1}))).await;
    assert_eq!(ids(&clamped), json!([id(5)]));
    assert_eq!(clamped["q"]["position"], 0);
    let anchored = b
        .api(query(
            json!({"anchor": id(3), "anchorOffset": -1, "limit": 2, "position": 4}),
        ))
        .await;
    assert_eq!(ids(&anchored), json!([id(4), id(3)]));
    assert_eq!(anchored["q"]["position"], 1);
    let lost = b.api(query(json!({"anchor": "no-such"}))).await;
    assert_eq!(lost["q"]["type"], "anchorNotFound");
    let oldest = b
        .api(query(json!({"sort": [{"property": "receivedAt"}]})))
        .await;
    assert_eq!(ids(&oldest), json!([id(1), id(2), id(3), id(4), id(5)]));
    let smallest = b
        .api(query(
            json!({"sort": [{"property": "size", "isAscending": true}]}),
        ))
        .await;
    assert_eq!(ids(&smallest), json!([id(5), id(4), id(3), id(2), id(1)]));
    let collapsed = b.api(query(json!({"collapseThreads": true}))).await;
    assert_eq!(ids(&collapsed), json!([id(5), id(4), id(2)]));
    assert_eq!(collapsed["q"]["total"], 3);
    let capped = b.api(query(json!({"limit": 100000}))).await;
    assert_eq!(capped["q"]["limit"], 500);
    let unsorted = b
        .api(query(json!({"sort": [{"property": "subject"}]})))
        .await;
    assert_eq!(unsorted["q"]["type"], "unsupportedSort");
    let unfiltered = b
        .api(json!([["Email/query", {"filter": {"operator": "OR", "conditions": []}}, "q"]]))
        .await;
    assert_eq!(unfiltered["q"]["type"], "unsupportedFilter");

    // Changes within and beyond maxChanges; sets with ifInState, right and stale.
    let state = b.api(json!([["Mailbox/get", {}, "m"]])).await["m"]["state"]
        .as_str()
        .unwrap()
        .to_string();
    let set = b
        .api(json!([
            ["Email/set", {"ifInState": &state, "update": {id(1): {"keywords/$seen": true}, id(2): {"keywords/$seen": true}}}, "s"],
            ["Email/set", {"ifInState": &state, "update": {id(3): {"keywords/$seen": true}}}, "stale"],
        ]))
        .await;
    assert_eq!(set["s"]["updated"].as_object().unwrap().len(), 2);
    assert_eq!(set["s"]["oldState"], state.as_str());
    let new_state = set["s"]["newState"].as_str().unwrap().to_string();
    assert_ne!(new_state, state);
    assert_eq!(set["stale"]["type"], "stateMismatch");
    let changes = b
        .api(json!([
            ["Email/changes", {"sinceState": &state, "maxChanges": 5}, "c"],
            ["Email/changes", {"sinceState": &state, "maxChanges": 1}, "few"],
            ["Email/changes", {"sinceState": &state, "maxChanges": 0}, "zero"],
            ["Mailbox/changes", {"sinceState": &state, "maxChanges": 10}, "m"],
        ]))
        .await;
    assert_eq!(changes["c"]["updated"], json!([id(1), id(2)]));
    assert_eq!(changes["c"]["newState"], new_state.as_str());
    assert_eq!(changes["few"]["type"], "cannotCalculateChanges");
    assert_eq!(changes["zero"]["type"], "invalidArguments");
    assert_eq!(changes["m"]["updated"], json!([&inbox]));
    assert_eq!(changes["m"]["updatedProperties"], Value::Null);
    let folders = b
        .api(json!([
            ["Mailbox/set", {
                "ifInState": &new_state, "onDestroyRemoveEmails": true,
                "create": {
                    "a": {"name": "Standard", "parentId": null},
                    "b": {"name": "Nested", "parentId": &inbox},
                    "c": {"name": "Red", "colour": "red"},
                },
            }, "f"],
            ["EmailSubmission/set", {"ifInState": null, "destroy": ["sub1"], "update": {"sub2": {}}}, "e"],
        ]))
        .await;
    assert!(folders["f"]["created"]["a"]["id"].is_string());
    assert_eq!(folders["f"]["notCreated"]["b"]["type"], "invalidProperties");
    assert_eq!(
        folders["f"]["notCreated"]["b"]["properties"],
        json!(["parentId"])
    );
    assert_eq!(folders["f"]["notCreated"]["c"]["type"], "invalidProperties");
    assert_eq!(
        folders["f"]["notCreated"]["c"]["properties"],
        json!(["colour"])
    );
    assert_eq!(folders["e"]["notDestroyed"]["sub1"]["type"], "notFound");
    assert_eq!(folders["e"]["notUpdated"]["sub2"]["type"], "notFound");
    let drafts = b
        .api(json!([["Email/set", {"create": {"d": {"to": ["a@example.com"], "importance": 1}}}, "d"]]))
        .await;
    assert_eq!(drafts["d"]["notCreated"]["d"]["type"], "invalidProperties");
    assert_eq!(
        drafts["d"]["notCreated"]["d"]["properties"],
        json!(["importance"])
    );
}

/// Issue 16: malformed quoted-printable or base64 showed the part still encoded
/// (`h=C3=B6h=C3=B6`). The reading pane, the HTML frame and downloads decode leniently
/// (message::decode, RFC 2045 §6.7/§6.8).
#[tokio::test]
async fn malformed_transfer_encodings_are_decoded_for_reading_and_download() {
    let site = site().await;
    let mail = b"From: x@example.com\r\nSubject: lenient\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: multipart/alternative; boundary=a\r\n\r\n\
--a\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
h=C3=B6h=C3=B6\r\n1+1==2\r\n--a\r\nContent-Type: text/html; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\r\n<p>h=C3=B6h=C3=B6 1+1==2</p>\r\n--a--\r\n\
--b\r\nContent-Type: application/pdf; name=r.pdf\r\nContent-Disposition: attachment; filename=r.pdf\r\n\
Content-Transfer-Encoding: base64\r\n\r\nJVBERi0x!LjQK\r\n--b--\r\n";
    deliver(&site, "alice@localhost", mail).await;
    let mut b = Browser::new(&site);
    b.login("alice@localhost", PW).await;
    let id = b.inbox_ids().await[0].clone();
    let got = b
        .api(json!([["Email/get", {"ids": [&id], "properties": ["body"]}, "g"]]))
        .await;
    let body = &got["g"]["list"][0]["body"];
    assert_eq!(
        body["text"]
            .as_str()
            .unwrap()
            .replace("\r\n", "\n")
            .trim_end(),
        "höhö\n1+1==2",
        "{body}"
    );
    let html = String::from_utf8(b.get(&format!("/jmap/html/{id}")).await.body).unwrap();
    assert!(html.contains("<p>höhö 1+1==2</p>"), "{html}");
    let file = &body["attachments"][0];
    assert_eq!(file["name"], "r.pdf");
    assert_eq!(file["type"], "application/pdf");
    let account = b.account().await;
    let download = b
        .get(&format!(
            "/jmap/download/{account}/{}/r.pdf",
            file["blobId"].as_str().unwrap()
        ))
        .await;
    assert_eq!(download.status, StatusCode::OK);
    assert_eq!(download.body, b"%PDF-1.4\n");
}
