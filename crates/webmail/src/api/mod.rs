//! The JSON API, shaped after JMAP (RFC 8620 core, RFC 8621 mail): `POST /jmap/api` takes
//! `{"using": [...], "methodCalls": [[name, arguments, callId], ...]}` and answers
//! `{"methodResponses": ...}`; an argument `"#ids": {"resultOf": callId, "name": "Email/query",
//! "path": "/ids"}` takes an earlier call's ids.
//!
//! One file per object and method family, as JMAP servers are laid out: [`mailbox`]
//! (`Mailbox/get`, `/set`, `/changes`, `pigeon:Mailbox/empty`), [`email`] (`Email/query`, `/get`,
//! `/set`, `/changes`), [`thread`], [`submission`] (`EmailSubmission/set`, built by
//! [`compose`]), [`blob`] (downloads, `pigeon:Upload/destroy`), [`raw`] (the raw and HTML views),
//! [`address`] (`pigeon:Address/suggest`). This file holds the request envelope, the method
//! table, result references and the errors.
//!
//! Every method takes a `#[derive(Deserialize)]` arguments type that documents its inputs and
//! denies unknown ones, so a malformed call gets `invalidArguments` with serde's message
//! (RFC 8620 §3.6.2). Each type holds every argument RFC 8620 §5 and RFC 8621 define for
//! its method, so a standard client's call parses; the few not implemented are accepted
//! and their fields say so. `accountId`, which every method may carry, is checked here once.
//! A malformed object of a `*/set` is a SetError `invalidProperties` (RFC 8620 §5.3), alone.
//!
//! Ids: a mailbox is its store id; an email is `<mailbox>-<uid>`; a blob is
//! `<mailbox>-<uid>-<part>` (a part of a stored message) or `u<token>` (an upload).

mod address;
mod blob;
mod compose;
mod email;
mod mailbox;
mod raw;
mod state;
mod submission;
mod thread;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};
use store::{AccountId, Change, Mailbox, MailboxId, SpecialUse};

use crate::session::WebSession;
use crate::{Shared, error};

pub use blob::download;
pub use raw::{html, raw};

/// The largest API request body.
const MAX_REQUEST: usize = 2 << 20;
/// Most method calls in one request (the session resource's `maxCallsInRequest`).
const MAX_CALLS: usize = 16;

/// The capabilities a request may name in `using` (and the session resource announces).
const CAPABILITIES: [&str; 3] = [
    "urn:ietf:params:jmap:core",
    "urn:ietf:params:jmap:mail",
    "urn:ietf:params:jmap:submission",
];

/// A method's failure, as JMAP's `["error", {"type", "description"}, callId]`.
struct MethodError {
    kind: &'static str,
    description: String,
    /// The properties at fault, for an `invalidProperties` SetError (RFC 8620 §5.3).
    properties: Vec<String>,
}

impl MethodError {
    fn new(kind: &'static str, description: impl Into<String>) -> MethodError {
        MethodError {
            kind,
            description: description.into(),
            properties: Vec::new(),
        }
    }

    /// Arguments that do not parse into the method's type (RFC 8620 §3.6.2).
    fn invalid_arguments(e: serde_json::Error) -> MethodError {
        MethodError::new("invalidArguments", e.to_string())
    }

    /// An object of a `create` or `update` that does not parse into its type: a SetError
    /// `invalidProperties` (RFC 8620 §5.3), naming the property when serde does.
    fn invalid_properties(e: serde_json::Error) -> MethodError {
        let description = e.to_string();
        let property = ["unknown field `", "missing field `"]
            .iter()
            .find_map(|p| description.strip_prefix(p))
            .and_then(|rest| rest.split_once('`'))
            .map(|(name, _)| name.to_string());
        MethodError {
            kind: "invalidProperties",
            properties: property.into_iter().collect(),
            description,
        }
    }

    /// The error object of a failed method (RFC 8620 §3.6.2) or SetError (§5.3).
    fn to_json(&self) -> Value {
        let mut error = json!({ "type": self.kind, "description": self.description });
        if !self.properties.is_empty() {
            error["properties"] = json!(self.properties);
        }
        error
    }

    /// The SetError of a failed create or update (RFC 8620 §5.3). `invalidArguments` is no
    /// SetError type: an object's bad value (a store refusal, an unparsable field) is
    /// `invalidProperties`.
    fn to_set_error(&self) -> Value {
        let mut error = self.to_json();
        if self.kind == "invalidArguments" {
            error["type"] = json!("invalidProperties");
        }
        error
    }
}

impl From<store::StoreError> for MethodError {
    fn from(e: store::StoreError) -> Self {
        match e {
            store::StoreError::NotFound(what) => MethodError::new("notFound", what),
            store::StoreError::AlreadyExists(what) => {
                MethodError::new("alreadyExists", format!("{what} already exists"))
            }
            store::StoreError::Invalid(what) | store::StoreError::InUse(what) => {
                MethodError::new("invalidArguments", what)
            }
            store::StoreError::Backend(e) => {
                tracing::error!(error = %e, "webmail: store failed");
                MethodError::new("serverFail", "the server failed; try again")
            }
        }
    }
}

type MethodResult = Result<Value, MethodError>;

/// The request's user and what it needs.
struct Call<'a> {
    webmail: &'a Shared,
    session: &'a Arc<WebSession>,
    peer: std::net::IpAddr,
    /// Mailboxes of the account, loaded once per request (and again after a method that
    /// changes them).
    mailboxes: Vec<Mailbox>,
}

impl Call<'_> {
    fn store(&self) -> &dyn store::Store {
        &*self.webmail.store
    }

    fn mailbox(&self, id: MailboxId) -> Result<&Mailbox, MethodError> {
        self.mailboxes
            .iter()
            .find(|m| m.id == id)
            .ok_or_else(|| MethodError::new("notFound", format!("no mailbox {id}")))
    }

    /// A mailbox by the id the page holds (a string); anything unparsable is not found.
    fn mailbox_named(&self, id: &str) -> Result<&Mailbox, MethodError> {
        self.mailbox(id.parse().unwrap_or(-1))
    }

    fn role(&self, role: SpecialUse) -> Result<&Mailbox, MethodError> {
        self.mailboxes
            .iter()
            .find(|m| m.special_use == Some(role))
            .ok_or_else(|| {
                MethodError::new("notFound", format!("no {} mailbox", role.default_name()))
            })
    }

    /// An email id of this account: (mailbox, uid).
    fn email(&self, id: &str) -> Result<(MailboxId, u32), MethodError> {
        let parsed = id
            .split_once('-')
            .and_then(|(m, u)| Some((m.parse().ok()?, u.parse().ok()?)));
        match parsed {
            // Only the canonical spelling: "3-05" would name the same message twice.
            Some((mailbox, uid))
                if self.mailbox(mailbox).is_ok() && email_id(mailbox, uid) == id =>
            {
                Ok((mailbox, uid))
            }
            _ => Err(MethodError::new("notFound", format!("no email {id}"))),
        }
    }

    /// The account id as the page knows it.
    fn account_id(&self) -> String {
        self.session.account.to_string()
    }
}

fn email_id(mailbox: MailboxId, uid: u32) -> String {
    format!("{mailbox}-{uid}")
}

/// The objects of a `*/set` `create` or `update`, by key, each parsed alone: one malformed
/// object fails alone, as a SetError, and the others go on (RFC 8620 §5.3). In the order a
/// JSON object's keys iterate, as the calls always ran.
struct Objects<T>(Vec<(String, Result<T, serde_json::Error>)>);

impl<T> Default for Objects<T> {
    fn default() -> Self {
        Objects(Vec::new())
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Objects<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // `null` is no objects (RFC 8620 §5.3: `Id[Object]|null`).
        let map = Option::<serde_json::Map<String, Value>>::deserialize(deserializer)?
            .unwrap_or_default();
        Ok(Objects(
            map.into_iter()
                .map(|(key, value)| (key, serde_json::from_value(value)))
                .collect(),
        ))
    }
}

/// The reply to a `*/set` call (RFC 8620 §5.3).
#[derive(Default)]
struct SetReply {
    created: serde_json::Map<String, Value>,
    not_created: serde_json::Map<String, Value>,
    updated: serde_json::Map<String, Value>,
    not_updated: serde_json::Map<String, Value>,
    destroyed: Vec<String>,
    not_destroyed: serde_json::Map<String, Value>,
}

impl SetReply {
    /// A create that failed, as its SetError.
    fn not_created(&mut self, key: String, e: &MethodError) {
        self.not_created.insert(key, e.to_set_error());
    }

    /// An update that failed, as its SetError.
    fn not_updated(&mut self, id: String, e: &MethodError) {
        self.not_updated.insert(id, e.to_set_error());
    }

    /// The reply, with the account's state before the call and after it (RFC 8620 §5.3
    /// `oldState`, `newState`): the mailboxes are read again for the latter.
    async fn into_json(self, call: &Call<'_>) -> Value {
        let old_state = state::account_state(&call.mailboxes);
        let new_state = match call.store().list_mailboxes(call.session.account).await {
            Ok(mailboxes) => state::account_state(&mailboxes),
            Err(e) => {
                // The changes are made: do not fail them. The old state is a safe answer:
                // changes since it include this call's.
                tracing::warn!(error = %e, "webmail: mailboxes after a set");
                old_state.clone()
            }
        };
        json!({
            "accountId": call.account_id(),
            "oldState": old_state, "newState": new_state,
            "created": self.created, "notCreated": self.not_created,
            "updated": self.updated, "notUpdated": self.not_updated,
            "destroyed": self.destroyed, "notDestroyed": self.not_destroyed,
        })
    }
}

/// The event a change pushes to the page (RFC 8620 §7.1 StateChange, with what changed).
pub(crate) fn change_event(account: AccountId, change: &Change) -> String {
    let (kind, mailbox, state) = match change {
        Change::MessageAdded {
            mailbox_id, modseq, ..
        } => ("emailAdded", Some(*mailbox_id), *modseq),
        Change::FlagsChanged {
            mailbox_id, modseq, ..
        } => ("emailChanged", Some(*mailbox_id), *modseq),
        Change::Expunged {
            mailbox_id, modseq, ..
        } => ("emailRemoved", Some(*mailbox_id), *modseq),
        Change::MailboxesChanged | Change::Resync => ("mailboxes", None, 0),
    };
    json!({
        "@type": "StateChange",
        "changed": { account.to_string(): { "Email": state.to_string(), "Mailbox": state.to_string() } },
        "pigeon": { "kind": kind, "mailboxId": mailbox.map(|m| m.to_string()) },
    })
    .to_string()
}

/// `GET /jmap/session`: the JMAP session resource (RFC 8620 §2).
pub async fn session_resource(State(webmail): State<Shared>, headers: HeaderMap) -> Response {
    let session = match webmail.for_read(&headers) {
        Ok(session) => session,
        Err(response) => return response,
    };
    let account = session.account.to_string();
    let [core, mail, submission] = CAPABILITIES;
    Json(json!({
        "capabilities": {
            core: {
                "maxSizeUpload": webmail.settings.max_message_size,
                "maxCallsInRequest": MAX_CALLS,
                "maxObjectsInGet": 500,
            },
            mail: {},
            submission: {},
        },
        "accounts": { &account: { "name": session.address, "isPersonal": true, "isReadOnly": false } },
        "primaryAccounts": { mail: &account },
        "username": session.address,
        "apiUrl": "/jmap/api",
        "downloadUrl": "/jmap/download/{accountId}/{blobId}/{name}?type={type}",
        "uploadUrl": "/jmap/upload/{accountId}/",
        "eventSourceUrl": "/jmap/eventsource?csrf={csrf}",
        "state": "0",
        "csrfToken": session.csrf,
    }))
    .into_response()
}

/// The request object (RFC 8620 §3.3). Other members (`createdIds`) are ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    /// The capabilities the client uses; optional here (older pages and tools send none),
    /// but each one named must be one of ours.
    #[serde(default)]
    using: Option<Vec<String>>,
    method_calls: Vec<(String, Value, String)>,
}

/// `POST /jmap/api`.
pub async fn api(
    State(webmail): State<Shared>,
    connect: Option<axum::Extension<ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let session = match webmail.for_change(&headers) {
        Ok(session) => session,
        Err(response) => return response,
    };
    // Read only once the session is known: strangers cannot make the server hold bodies.
    let Ok(body) = axum::body::to_bytes(body, MAX_REQUEST).await else {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "the request is too large");
    };
    let request: Request = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("not a JMAP request: {e}")),
    };
    if let Some(unknown) = request
        .using
        .iter()
        .flatten()
        .find(|c| !CAPABILITIES.contains(&c.as_str()))
    {
        // RFC 8620 §3.6.1 unknownCapability, in this site's error shape.
        return error(
            StatusCode::BAD_REQUEST,
            &format!("unknown capability {unknown}"),
        );
    }
    if request.method_calls.len() > MAX_CALLS {
        return error(
            StatusCode::BAD_REQUEST,
            "at most 16 method calls per request",
        );
    }
    let mailboxes = match webmail.store.list_mailboxes(session.account).await {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "webmail: mailboxes");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server failed; try again",
            );
        }
    };
    let mut call = Call {
        webmail: &webmail,
        session: &session,
        peer: crate::peer(connect),
        mailboxes,
    };
    let mut responses: Vec<Value> = Vec::new();
    for (name, arguments, id) in request.method_calls {
        let method = Method::named(&name);
        let result = match method {
            Some(method) => method.call(&call, arguments, &responses).await,
            None => Err(MethodError::new(
                "unknownMethod",
                format!("no method {name}"),
            )),
        };
        match result {
            Ok(value) => responses.push(json!([name, value, id])),
            Err(e) => responses.push(json!(["error", e.to_json(), id])),
        }
        // Later calls see what earlier ones changed (new folders, counts).
        if method.is_some_and(Method::changes_mailboxes)
            && let Ok(m) = webmail.store.list_mailboxes(session.account).await
        {
            call.mailboxes = m;
        }
    }
    Json(json!({ "methodResponses": responses, "sessionState": "0" })).into_response()
}

/// Every method the API answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    MailboxGet,
    MailboxSet,
    MailboxChanges,
    MailboxEmpty,
    EmailQuery,
    EmailGet,
    EmailSet,
    EmailChanges,
    ThreadGet,
    SubmissionSet,
    AddressSuggest,
    UploadDestroy,
}

/// The method table: each method's JMAP name (ours start with `pigeon:`).
const METHODS: [(&str, Method); 12] = [
    ("Mailbox/get", Method::MailboxGet),
    ("Mailbox/set", Method::MailboxSet),
    ("Mailbox/changes", Method::MailboxChanges),
    ("pigeon:Mailbox/empty", Method::MailboxEmpty),
    ("Email/query", Method::EmailQuery),
    ("Email/get", Method::EmailGet),
    ("Email/set", Method::EmailSet),
    ("Email/changes", Method::EmailChanges),
    ("Thread/get", Method::ThreadGet),
    ("EmailSubmission/set", Method::SubmissionSet),
    ("pigeon:Address/suggest", Method::AddressSuggest),
    ("pigeon:Upload/destroy", Method::UploadDestroy),
];

impl Method {
    fn named(name: &str) -> Option<Method> {
        METHODS.iter().find(|(n, _)| *n == name).map(|&(_, m)| m)
    }

    /// Whether the method may change mailboxes or their counts, so the request's later calls
    /// need them loaded again.
    fn changes_mailboxes(self) -> bool {
        matches!(
            self,
            Method::MailboxSet | Method::MailboxEmpty | Method::EmailSet | Method::SubmissionSet
        )
    }

    /// Resolves the arguments' result references, checks `accountId`, parses the arguments
    /// into the method's type and runs it.
    async fn call(self, call: &Call<'_>, arguments: Value, responses: &[Value]) -> MethodResult {
        let mut arguments = arguments;
        resolve_references(&mut arguments, responses)?;
        check_account(call, &mut arguments)?;
        let args = Arguments(arguments);
        match self {
            Method::MailboxGet => mailbox::get(call, args.parse()?),
            Method::MailboxSet => mailbox::set(call, args.parse()?).await,
            Method::MailboxChanges => mailbox::changes(call, args.parse()?),
            Method::MailboxEmpty => mailbox::empty(call, args.parse()?).await,
            Method::EmailQuery => email::query::query(call, args.parse()?).await,
            Method::EmailGet => email::get::get(call, args.parse()?).await,
            Method::EmailSet => email::set::set(call, args.parse()?).await,
            Method::EmailChanges => email::changes::changes(call, args.parse()?).await,
            Method::ThreadGet => thread::get(call, args.parse()?).await,
            Method::SubmissionSet => submission::set(call, args.parse()?).await,
            Method::AddressSuggest => address::suggest(call, args.parse()?).await,
            Method::UploadDestroy => blob::upload_destroy(call, args.parse()?),
        }
    }
}

/// A call's arguments, resolved, before they are parsed into the method's type.
struct Arguments(Value);

impl Arguments {
    fn parse<A: DeserializeOwned>(self) -> Result<A, MethodError> {
        serde_json::from_value(self.0).map_err(MethodError::invalid_arguments)
    }
}

/// `accountId` may be given to any method; it must be the session's account. Taken out
/// here, so the methods' argument types need not repeat it.
fn check_account(call: &Call<'_>, arguments: &mut Value) -> Result<(), MethodError> {
    let Some(given) = arguments
        .as_object_mut()
        .and_then(|a| a.remove("accountId"))
    else {
        return Ok(());
    };
    match given {
        Value::Null => Ok(()),
        Value::String(id) if id == call.account_id() => Ok(()),
        Value::String(id) => Err(MethodError::new(
            "accountNotFound",
            format!("no account {id}"),
        )),
        _ => Err(MethodError::new(
            "invalidArguments",
            "accountId is a string",
        )),
    }
}

/// A reference to an earlier call's result (RFC 8620 §3.7), the value of a `#name` argument.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ResultReference {
    /// The earlier call's id.
    result_of: String,
    /// The earlier call's method name; checked when given.
    name: Option<String>,
    /// A JSON pointer into that call's result.
    path: String,
}

/// Replaces `"#name": {"resultOf", "name", "path"}` with the value at `path` in that earlier
/// call's result.
fn resolve_references(arguments: &mut Value, responses: &[Value]) -> Result<(), MethodError> {
    let Some(object) = arguments.as_object_mut() else {
        return Ok(());
    };
    let references: Vec<String> = object
        .keys()
        .filter(|k| k.starts_with('#'))
        .cloned()
        .collect();
    for key in references {
        let name = &key[1..];
        if object.contains_key(name) {
            return Err(MethodError::new(
                "invalidArguments",
                format!("both {name} and {key} given"),
            ));
        }
        let reference: ResultReference = object
            .remove(&key)
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| MethodError::new("invalidResultReference", e.to_string()))?
            .ok_or_else(|| MethodError::new("invalidResultReference", "no reference"))?;
        let (of, path) = (&reference.result_of, &reference.path);
        let found = responses
            .iter()
            .find(|r| r[2] == **of && r[0] != "error")
            .filter(|r| reference.name.as_ref().is_none_or(|n| r[0] == **n))
            .and_then(|r| r[1].pointer(path))
            .cloned()
            .ok_or_else(|| {
                MethodError::new("invalidResultReference", format!("no {path} in {of}"))
            })?;
        object.insert(name.to_string(), found);
    }
    Ok(())
}

/// The account's mailboxes, for the GET routes (downloads, raw and HTML views).
async fn call_for_read<'a>(
    webmail: &'a Shared,
    session: &'a Arc<WebSession>,
    connect: Option<axum::Extension<ConnectInfo<std::net::SocketAddr>>>,
) -> Result<Call<'a>, Response> {
    let mailboxes = webmail
        .store
        .list_mailboxes(session.account)
        .await
        .map_err(|_| {
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server failed; try again",
            )
        })?;
    Ok(Call {
        webmail,
        session,
        peer: crate::peer(connect),
        mailboxes,
    })
}
