//! The JSON API, shaped after JMAP (RFC 8620 core, RFC 8621 mail): `POST /jmap/api` takes
//! `{"methodCalls": [[name, arguments, callId], ...]}` and answers `{"methodResponses": ...}`;
//! an argument `"#ids": {"resultOf": callId, "path": "/ids"}` takes an earlier call's ids.
//!
//! Ids: a mailbox is its store id; an email is `<mailbox>-<uid>`; a blob is
//! `<mailbox>-<uid>-<part>` (a part of a stored message) or `u<token>` (an upload).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use store::{AccountId, Change, FlagMode, Mailbox, MailboxId, SpecialUse, TextScope, flags};

use crate::mail::{self, Addr};
use crate::session::WebSession;
use crate::{EmailParam, Shared, error};

/// The largest API request body.
const MAX_REQUEST: usize = 2 << 20;
/// Messages a thread search looks back over in each of INBOX, Sent and the email's mailbox.
const THREAD_WINDOW: usize = 5000;
/// Messages an address suggestion looks back over.
const SUGGEST_WINDOW: usize = 500;

/// A method's failure, as JMAP's `["error", {"type", "description"}, callId]`.
struct MethodError {
    kind: &'static str,
    description: String,
}

impl MethodError {
    fn new(kind: &'static str, description: impl Into<String>) -> MethodError {
        MethodError {
            kind,
            description: description.into(),
        }
    }

    /// The SetError object (RFC 8620 §5.3) of a failed create, update or destroy.
    fn to_json(&self) -> Value {
        json!({ "type": self.kind, "description": self.description })
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
    /// Mailboxes of the account, loaded once per request.
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
}

fn email_id(mailbox: MailboxId, uid: u32) -> String {
    format!("{mailbox}-{uid}")
}

fn role_name(role: Option<SpecialUse>, name: &str) -> Option<&'static str> {
    if name == "INBOX" {
        return Some("inbox");
    }
    role.map(|r| match r {
        SpecialUse::Sent => "sent",
        SpecialUse::Drafts => "drafts",
        SpecialUse::Trash => "trash",
        SpecialUse::Junk => "junk",
        SpecialUse::Archive => "archive",
    })
}

fn iso(unix: i64) -> String {
    message::date::format_rfc3339(unix)
}

fn keywords(flag_bits: u32, extra: &[String]) -> Value {
    let mut map = serde_json::Map::new();
    for (bit, name) in [
        (flags::SEEN, "$seen"),
        (flags::FLAGGED, "$flagged"),
        (flags::ANSWERED, "$answered"),
        (flags::DRAFT, "$draft"),
    ] {
        if flag_bits & bit != 0 {
            map.insert(name.into(), Value::Bool(true));
        }
    }
    for k in extra {
        map.insert(k.clone(), Value::Bool(true));
    }
    Value::Object(map)
}

/// RFC 8621 §4.1.1: 1-255 characters of %x21-7E, none of `( ) { ] % * " \`.
fn valid_keyword(keyword: &str) -> bool {
    !keyword.is_empty()
        && keyword.len() <= 255
        && keyword
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && !b"(){]%*\"\\".contains(&b))
}

fn keyword_bit(keyword: &str) -> Option<u32> {
    Some(match keyword.to_ascii_lowercase().as_str() {
        "$seen" => flags::SEEN,
        "$flagged" => flags::FLAGGED,
        "$answered" => flags::ANSWERED,
        "$draft" => flags::DRAFT,
        "$deleted" => flags::DELETED,
        _ => return None,
    })
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
    Json(json!({
        "capabilities": {
            "urn:ietf:params:jmap:core": {
                "maxSizeUpload": webmail.settings.max_message_size,
                "maxCallsInRequest": 16,
                "maxObjectsInGet": 500,
            },
            "urn:ietf:params:jmap:mail": {},
            "urn:ietf:params:jmap:submission": {},
        },
        "accounts": { &account: { "name": session.address, "isPersonal": true, "isReadOnly": false } },
        "primaryAccounts": { "urn:ietf:params:jmap:mail": &account },
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

#[derive(Deserialize)]
pub struct Request {
    #[serde(rename = "methodCalls")]
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
    if request.method_calls.len() > 16 {
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
    for (name, mut arguments, id) in request.method_calls {
        if let Err(e) = resolve_references(&mut arguments, &responses) {
            responses.push(json!(["error", e.to_json(), id]));
            continue;
        }
        let result = match name.as_str() {
            "Mailbox/get" => mailbox_get(&call).await,
            "Mailbox/set" => mailbox_set(&call, &arguments).await,
            "Email/query" => email_query(&call, &arguments).await,
            "Email/get" => email_get(&call, &arguments).await,
            "Email/set" => email_set(&call, &arguments).await,
            "Thread/get" => thread_get(&call, &arguments).await,
            "EmailSubmission/set" => submission_set(&call, &arguments).await,
            "Mailbox/changes" => mailbox_changes(&call, &arguments).await,
            "Email/changes" => email_changes(&call, &arguments).await,
            "pigeon:Mailbox/empty" => mailbox_empty(&call, &arguments).await,
            "pigeon:Address/suggest" => address_suggest(&call, &arguments).await,
            "pigeon:Upload/destroy" => upload_destroy(&call, &arguments),
            _ => Err(MethodError::new(
                "unknownMethod",
                format!("no method {name}"),
            )),
        };
        match result {
            Ok(value) => responses.push(json!([name, value, id])),
            Err(e) => responses.push(json!(["error", e.to_json(), id])),
        }
        // Later calls see what earlier ones changed (new folders, counts).
        if !name.ends_with("/get")
            && !name.ends_with("/query")
            && let Ok(m) = webmail.store.list_mailboxes(session.account).await
        {
            call.mailboxes = m;
        }
    }
    Json(json!({ "methodResponses": responses, "sessionState": "0" })).into_response()
}

/// Replaces `"#name": {"resultOf", "path": "/ids"}` with that earlier result's ids.
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
        let reference = object.remove(&key).unwrap_or_default();
        let of = reference["resultOf"].as_str().unwrap_or("");
        let path = reference["path"].as_str().unwrap_or("");
        let found = responses
            .iter()
            .find(|r| r[2] == of && r[0] != "error")
            .and_then(|r| r[1].pointer(path))
            .cloned()
            .ok_or_else(|| {
                MethodError::new("invalidResultReference", format!("no {path} in {of}"))
            })?;
        object.insert(key[1..].to_string(), found);
    }
    Ok(())
}

async fn mailbox_get(call: &Call<'_>) -> MethodResult {
    let list: Vec<Value> = call
        .mailboxes
        .iter()
        .map(|m| {
            json!({
                "id": m.id.to_string(),
                "name": m.name,
                "role": role_name(m.special_use, &m.name),
                "totalEmails": m.messages,
                "unreadEmails": m.unseen,
                "isSubscribed": m.subscribed,
                "sortOrder": if m.name == "INBOX" { 0 } else if m.special_use.is_some() { 1 } else { 2 },
            })
        })
        .collect();
    Ok(json!({
        "accountId": call.session.account.to_string(), "list": list, "notFound": [],
        "state": account_state(&call.mailboxes),
    }))
}

async fn mailbox_set(call: &Call<'_>, args: &Value) -> MethodResult {
    let mut reply = SetReply::default();
    let store = call.store();
    if let Some(create) = args["create"].as_object() {
        for (key, value) in create {
            let name = value["name"].as_str().unwrap_or("").trim();
            match store.create_mailbox(call.session.account, name, None).await {
                Ok(id) => {
                    reply
                        .created
                        .insert(key.clone(), json!({ "id": id.to_string() }));
                }
                Err(e) => {
                    let e = MethodError::from(e);
                    reply.not_created.insert(key.clone(), e.to_json());
                }
            }
        }
    }
    if let Some(update) = args["update"].as_object() {
        for (id, value) in update {
            let result = async {
                let mailbox = call.mailbox(id.parse().unwrap_or(-1))?;
                if mailbox.name == "INBOX" {
                    return Err(MethodError::new("forbidden", "INBOX keeps its name"));
                }
                let name = value["name"].as_str().unwrap_or("").trim();
                store.rename_mailbox(mailbox.id, name).await?;
                Ok::<_, MethodError>(())
            }
            .await;
            match result {
                Ok(()) => {
                    reply.updated.insert(id.clone(), Value::Null);
                }
                Err(e) => {
                    reply.not_updated.insert(id.clone(), e.to_json());
                }
            }
        }
    }
    if let Some(destroy) = args["destroy"].as_array() {
        for id in destroy.iter().filter_map(Value::as_str) {
            let result = async {
                let mailbox = call.mailbox(id.parse().unwrap_or(-1))?;
                if mailbox.name == "INBOX" || mailbox.special_use.is_some() {
                    return Err(MethodError::new(
                        "forbidden",
                        format!("{} is a standard folder and stays", mailbox.name),
                    ));
                }
                store.delete_mailbox(mailbox.id).await?;
                Ok(())
            }
            .await;
            match result {
                Ok(()) => reply.destroyed.push(id.to_string()),
                Err(e) => {
                    reply.not_destroyed.insert(id.to_string(), e.to_json());
                }
            }
        }
    }
    Ok(reply.into_json(call))
}

async fn mailbox_empty(call: &Call<'_>, args: &Value) -> MethodResult {
    let mailbox = call.mailbox(
        args["mailboxId"]
            .as_str()
            .unwrap_or("")
            .parse()
            .unwrap_or(-1),
    )?;
    if !matches!(
        mailbox.special_use,
        Some(SpecialUse::Trash | SpecialUse::Junk)
    ) {
        return Err(MethodError::new(
            "forbidden",
            "only Trash and Junk are emptied",
        ));
    }
    let uids: Vec<u32> = call
        .store()
        .message_flags(mailbox.id, 0)
        .await?
        .iter()
        .map(|m| m.uid)
        .collect();
    let removed = call.store().expunge(mailbox.id, &uids).await?;
    Ok(json!({ "removed": removed.len() }))
}

/// The account's state string (RFC 8620 §1.6.3): each mailbox's id, HIGHESTMODSEQ and UIDNEXT,
/// so `*/changes` can tell what happened since.
fn account_state(mailboxes: &[Mailbox]) -> String {
    let mut parts: Vec<String> = mailboxes
        .iter()
        .map(|m| {
            format!(
                "{}.{}.{}.{}",
                m.id, m.uid_validity, m.highest_modseq, m.uid_next
            )
        })
        .collect();
    parts.sort();
    parts.join("-")
}

/// Each mailbox's (id, HIGHESTMODSEQ, UIDNEXT) in a state string.
type MailboxStates = Vec<(MailboxId, u64, u32)>;

/// A state string back into its mailboxes' counters.
/// A mailbox whose UIDVALIDITY differs from the state's (a new mailbox that reused the id)
/// is left out: it counts as new.
fn parse_state(state: &str, mailboxes: &[Mailbox]) -> Option<MailboxStates> {
    if state.is_empty() {
        return Some(Vec::new());
    }
    let all = state
        .split('-')
        .map(|part| {
            let mut fields = part.split('.');
            Some((
                fields.next()?.parse::<MailboxId>().ok()?,
                fields.next()?.parse::<u32>().ok()?,
                fields.next()?.parse::<u64>().ok()?,
                fields.next()?.parse::<u32>().ok()?,
            ))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(
        all.into_iter()
            .filter(|(id, validity, _, _)| {
                mailboxes
                    .iter()
                    .all(|m| m.id != *id || m.uid_validity == *validity)
            })
            .map(|(id, _, modseq, next)| (id, modseq, next))
            .collect(),
    )
}

fn since_state(
    args: &Value,
    mailboxes: &[Mailbox],
) -> Result<(String, MailboxStates), MethodError> {
    let since = args["sinceState"].as_str().unwrap_or("").to_string();
    let parsed = parse_state(&since, mailboxes)
        .ok_or_else(|| MethodError::new("cannotCalculateChanges", "unknown sinceState"))?;
    Ok((since, parsed))
}

async fn mailbox_changes(call: &Call<'_>, args: &Value) -> MethodResult {
    let (since, old) = since_state(args, &call.mailboxes)?;
    let mut created = Vec::new();
    let mut updated = Vec::new();
    for m in &call.mailboxes {
        match old.iter().find(|(id, _, _)| *id == m.id) {
            None => created.push(m.id.to_string()),
            Some(&(_, modseq, uid_next))
                if modseq != m.highest_modseq || uid_next != m.uid_next =>
            {
                updated.push(m.id.to_string())
            }
            Some(_) => {}
        }
    }
    let destroyed: Vec<String> = old
        .iter()
        .filter(|(id, _, _)| !call.mailboxes.iter().any(|m| m.id == *id))
        .map(|(id, _, _)| id.to_string())
        .collect();
    Ok(json!({
        "accountId": call.session.account.to_string(),
        "oldState": since, "newState": account_state(&call.mailboxes), "hasMoreChanges": false,
        "created": created, "updated": updated, "destroyed": destroyed,
    }))
}

/// Emails created, changed and destroyed since a state, from MODSEQs, UIDNEXTs and the
/// expunge history every mailbox keeps for QRESYNC.
async fn email_changes(call: &Call<'_>, args: &Value) -> MethodResult {
    let (since, old) = since_state(args, &call.mailboxes)?;
    if old
        .iter()
        .any(|(id, _, _)| !call.mailboxes.iter().any(|m| m.id == *id))
    {
        return Err(MethodError::new(
            "cannotCalculateChanges",
            "a mailbox was deleted since; fetch everything again",
        ));
    }
    let store = call.store();
    let (mut created, mut updated, mut destroyed) = (Vec::new(), Vec::new(), Vec::new());
    for m in &call.mailboxes {
        let (modseq, uid_next) = match old.iter().find(|(id, _, _)| *id == m.id) {
            Some(&(_, modseq, uid_next)) => (modseq, uid_next),
            None => (0, 1),
        };
        if modseq == m.highest_modseq && uid_next == m.uid_next {
            continue;
        }
        for message in store.message_flags(m.id, 0).await? {
            if message.uid >= uid_next {
                created.push(email_id(m.id, message.uid));
            } else if message.modseq > modseq {
                updated.push(email_id(m.id, message.uid));
            }
        }
        for uid in store.expunged_since(m.id, modseq).await? {
            if uid < uid_next {
                destroyed.push(email_id(m.id, uid));
            }
        }
    }
    Ok(json!({
        "accountId": call.session.account.to_string(),
        "oldState": since, "newState": account_state(&call.mailboxes), "hasMoreChanges": false,
        "created": created, "updated": updated, "destroyed": destroyed,
    }))
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
    fn into_json(self, call: &Call<'_>) -> Value {
        json!({
            "accountId": call.session.account.to_string(),
            "created": self.created, "notCreated": self.not_created,
            "updated": self.updated, "notUpdated": self.not_updated,
            "destroyed": self.destroyed, "notDestroyed": self.not_destroyed,
        })
    }
}

/// Parses an RFC 3339 date (`2026-11-28` or `2026-11-28T10:00:00Z`) to Unix seconds.
fn parse_date(value: &Value) -> Result<Option<i64>, MethodError> {
    let Some(text) = value.as_str().filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let full = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.to_string()
    };
    message::date::parse_rfc3339(&full)
        .map(Some)
        .ok_or_else(|| MethodError::new("invalidArguments", format!("bad date {text:?}")))
}

async fn email_query(call: &Call<'_>, args: &Value) -> MethodResult {
    let filter = &args["filter"];
    let mailbox = match filter["inMailbox"].as_str() {
        Some(id) => call.mailbox(id.parse().unwrap_or(-1))?.id,
        None => call
            .mailboxes
            .iter()
            .find(|m| m.name == "INBOX")
            .map(|m| m.id)
            .unwrap_or(-1),
    };
    let store = call.store();
    let all = store.message_flags(mailbox, 0).await?;
    let after = parse_date(&filter["after"])?;
    let before = parse_date(&filter["before"])?;
    // Newest first.
    // Newest first by arrival (a message moved here keeps its date), then by UID.
    let mut dated: Vec<(i64, u32)> = all
        .iter()
        .filter(|m| after.is_none_or(|a| m.internal_date >= a))
        .filter(|m| before.is_none_or(|b| m.internal_date < b))
        .map(|m| (m.internal_date, m.uid))
        .collect();
    dated.sort_unstable_by(|a, b| b.cmp(a));
    let mut candidates: Vec<u32> = dated.into_iter().map(|(_, uid)| uid).collect();
    let mut keep = |found: Vec<u32>| {
        let found: HashSet<u32> = found.into_iter().collect();
        candidates.retain(|u| found.contains(u));
    };
    for (key, scope) in [("text", TextScope::All), ("body", TextScope::Body)] {
        if let Some(needle) = filter[key].as_str().filter(|n| !n.trim().is_empty()) {
            keep(store.search_text(mailbox, needle.trim(), scope).await?);
        }
    }
    // Header fields: the index narrows, the parsed header decides.
    let fields: Vec<(&str, String)> = ["from", "to", "subject"]
        .into_iter()
        .filter_map(|k| {
            let v = filter[k].as_str()?.trim().to_lowercase();
            (!v.is_empty()).then_some((k, v))
        })
        .collect();
    for (_, needle) in &fields {
        keep(
            store
                .search_text(mailbox, needle, TextScope::Headers)
                .await?,
        );
    }
    let want_attachment = filter["hasAttachment"].as_bool();
    if !fields.is_empty() || want_attachment.is_some() {
        let summaries: HashMap<u32, store::MessageSummary> = store
            .summaries(mailbox, &candidates)
            .await?
            .into_iter()
            .collect();
        candidates.retain(|uid| {
            let Some(summary) = summaries.get(uid) else {
                return false;
            };
            if let Some(want) = want_attachment
                && mail::has_attachment(&summary.body_structure) != want
            {
                return false;
            }
            if fields.is_empty() {
                return true;
            }
            let h = mail::headers(&summary.header);
            let addresses = |list: &[Addr]| {
                list.iter()
                    .map(|a| format!("{} {}", a.name.as_deref().unwrap_or(""), a.email))
                    .collect::<Vec<_>>()
                    .join(" ")
                    .to_lowercase()
            };
            fields.iter().all(|(key, needle)| match *key {
                "from" => addresses(&h.from).contains(needle),
                "to" => addresses(&[h.to.clone(), h.cc.clone()].concat()).contains(needle),
                _ => h.subject.to_lowercase().contains(needle),
            })
        });
    }
    let total = candidates.len();
    let position = args["position"].as_u64().unwrap_or(0) as usize;
    let limit = args["limit"].as_u64().unwrap_or(50).min(500) as usize;
    let ids: Vec<String> = candidates
        .iter()
        .skip(position)
        .take(limit)
        .map(|&uid| email_id(mailbox, uid))
        .collect();
    Ok(json!({
        "accountId": call.session.account.to_string(),
        "ids": ids, "total": total, "position": position,
        "queryState": all.last().map(|m| m.modseq).unwrap_or(0).to_string(),
    }))
}

async fn email_get(call: &Call<'_>, args: &Value) -> MethodResult {
    let ids: Vec<String> = args["ids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let with_body = args["properties"]
        .as_array()
        .is_some_and(|p| p.iter().any(|v| v == "body"));
    // Bodies are parsed and sanitised one by one: fewer of them per call.
    let most = if with_body { 50 } else { 500 };
    if ids.len() > most {
        return Err(MethodError::new(
            "requestTooLarge",
            format!("at most {most} ids"),
        ));
    }
    let store = call.store();
    let mut by_mailbox: HashMap<MailboxId, Vec<u32>> = HashMap::new();
    let mut not_found = Vec::new();
    for id in &ids {
        match call.email(id) {
            Ok((mailbox, uid)) => by_mailbox.entry(mailbox).or_default().push(uid),
            Err(_) => not_found.push(id.clone()),
        }
    }
    let mut found: HashMap<String, Value> = HashMap::new();
    for (mailbox, uids) in by_mailbox {
        let metas: HashMap<u32, store::MessageFlags> = store
            .message_meta(mailbox, &uids)
            .await?
            .into_iter()
            .map(|m| (m.uid, m))
            .collect();
        let summaries: HashMap<u32, store::MessageSummary> =
            store.summaries(mailbox, &uids).await?.into_iter().collect();
        for uid in uids {
            let Some(meta) = metas.get(&uid) else {
                not_found.push(email_id(mailbox, uid));
                continue;
            };
            let raw = if with_body || !summaries.contains_key(&uid) {
                Some(store.read_message(mailbox, uid).await?)
            } else {
                None
            };
            let (h, has_attachment) = match (summaries.get(&uid), &raw) {
                (Some(s), _) => (
                    mail::headers(&s.header),
                    mail::has_attachment(&s.body_structure),
                ),
                (None, Some(raw)) => (mail::headers(raw), !mail::body(raw).attachments.is_empty()),
                (None, None) => Default::default(),
            };
            let id = email_id(mailbox, uid);
            let mut email = json!({
                "id": id,
                "threadId": thread_key(&h),
                "mailboxIds": { mailbox.to_string(): true },
                "keywords": keywords(meta.flags, &meta.keywords),
                "size": meta.size,
                "receivedAt": iso(meta.internal_date),
                "sentAt": h.sent_at.map(iso),
                "from": h.from, "to": h.to, "cc": h.cc, "replyTo": h.reply_to,
                "subject": h.subject,
                "messageId": h.message_id.iter().collect::<Vec<_>>(),
                "inReplyTo": h.in_reply_to, "references": h.references,
                "hasAttachment": has_attachment,
            });
            if let (true, Some(raw)) = (with_body, &raw) {
                let body = mail::body(raw);
                let attachments: Vec<Value> = body
                    .attachments
                    .iter()
                    .map(|a| {
                        json!({
                            "blobId": format!("{id}-{}", a.part),
                            "name": a.name, "type": a.content_type, "size": a.size, "cid": a.cid,
                        })
                    })
                    .collect();
                let remote =
                    body.has_html && mail::safe_html(raw, false).is_some_and(|(_, remote)| remote);
                email["body"] = json!({
                    "text": body.text, "hasHtml": body.has_html, "attachments": attachments,
                    "hasRemoteImages": remote,
                });
            }
            found.insert(id, email);
        }
    }
    let list: Vec<Value> = ids.iter().filter_map(|id| found.remove(id)).collect();
    Ok(json!({
        "accountId": call.session.account.to_string(),
        "list": list, "notFound": not_found,
    }))
}

/// A thread's key: the first message of the chain its references name, else its own id.
fn thread_key(h: &mail::Headers) -> String {
    h.references
        .first()
        .or(h.in_reply_to.first())
        .or(h.message_id.as_ref())
        .cloned()
        .unwrap_or_default()
}

async fn email_set(call: &Call<'_>, args: &Value) -> MethodResult {
    let mut reply = SetReply::default();
    let store = call.store();
    if let Some(update) = args["update"].as_object() {
        for (id, patch) in update {
            match update_email(call, id, patch).await {
                Ok(new_id) => {
                    reply.updated.insert(
                        id.clone(),
                        new_id.map(|n| json!({"id": n})).unwrap_or(Value::Null),
                    );
                }
                Err(e) => {
                    reply.not_updated.insert(id.clone(), e.to_json());
                }
            }
        }
    }
    if let Some(destroy) = args["destroy"].as_array() {
        let mut by_mailbox: HashMap<MailboxId, Vec<(u32, String)>> = HashMap::new();
        for id in destroy.iter().filter_map(Value::as_str) {
            match call.email(id) {
                Ok((mailbox, uid)) => by_mailbox
                    .entry(mailbox)
                    .or_default()
                    .push((uid, id.into())),
                Err(e) => {
                    reply.not_destroyed.insert(id.into(), e.to_json());
                }
            }
        }
        for (mailbox, items) in by_mailbox {
            let uids: Vec<u32> = items.iter().map(|i| i.0).collect();
            let removed = store.expunge(mailbox, &uids).await?;
            for (uid, id) in items {
                if removed.contains(&uid) {
                    reply.destroyed.push(id);
                } else {
                    reply.not_destroyed.insert(id, json!({"type": "notFound"}));
                }
            }
        }
    }
    if let Some(create) = args["create"].as_object() {
        for (key, draft) in create {
            match save_draft(call, draft).await {
                Ok(id) => {
                    reply.created.insert(key.clone(), json!({ "id": id }));
                }
                Err(e) => {
                    reply.not_created.insert(key.clone(), e.to_json());
                }
            }
        }
    }
    Ok(reply.into_json(call))
}

/// Applies `keywords/<k>` patches and a `mailboxIds` move; returns the new id after a move.
async fn update_email(
    call: &Call<'_>,
    id: &str,
    patch: &Value,
) -> Result<Option<String>, MethodError> {
    let (mailbox, uid) = call.email(id)?;
    let store = call.store();
    let Some(patch) = patch.as_object() else {
        return Err(MethodError::new("invalidPatch", "a patch is an object"));
    };
    let (mut add, mut remove) = (0u32, 0u32);
    let (mut add_kw, mut remove_kw) = (Vec::new(), Vec::new());
    let mut move_to = None;
    for (path, value) in patch {
        if let Some(keyword) = path.strip_prefix("keywords/") {
            if !valid_keyword(keyword) {
                return Err(MethodError::new(
                    "invalidPatch",
                    format!("{keyword:?} is not a keyword"),
                ));
            }
            let keyword = &keyword.to_ascii_lowercase();
            let on = value.as_bool() == Some(true);
            match (keyword_bit(keyword), on) {
                (Some(bit), true) => add |= bit,
                (Some(bit), false) => remove |= bit,
                (None, true) => add_kw.push(keyword.to_string()),
                (None, false) => remove_kw.push(keyword.to_string()),
            }
        } else if path == "mailboxIds" {
            let target = value
                .as_object()
                .filter(|m| m.len() == 1)
                .and_then(|m| m.iter().next())
                .filter(|(_, on)| **on == Value::Bool(true))
                .and_then(|(k, _)| k.parse().ok())
                .ok_or_else(|| {
                    MethodError::new("invalidPatch", "mailboxIds names one mailbox, set to true")
                })?;
            move_to = Some(call.mailbox(target)?.id);
        } else {
            return Err(MethodError::new(
                "invalidPatch",
                format!("cannot change {path}"),
            ));
        }
    }
    if add != 0 || !add_kw.is_empty() {
        store
            .store_flags(mailbox, &[uid], FlagMode::Add, add, &add_kw, None)
            .await?;
    }
    if remove != 0 || !remove_kw.is_empty() {
        store
            .store_flags(mailbox, &[uid], FlagMode::Remove, remove, &remove_kw, None)
            .await?;
    }
    match move_to {
        Some(target) if target != mailbox => {
            let moved = store.copy(mailbox, &[uid], target, true).await?;
            let (_, new_uid) = moved
                .first()
                .ok_or_else(|| MethodError::new("notFound", format!("no email {id}")))?;
            Ok(Some(email_id(target, *new_uid)))
        }
        _ => Ok(None),
    }
}

/// What a message being written consists of.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Composition {
    from: Option<String>,
    to: Vec<String>,
    cc: Vec<String>,
    bcc: Vec<String>,
    subject: String,
    text: String,
    html: Option<String>,
    attachments: Vec<AttachmentRef>,
    in_reply_to: Option<String>,
    references: Vec<String>,
    /// The email this replies to, marked answered once sent.
    replying_to: Option<String>,
    /// A saved draft this replaces.
    draft_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AttachmentRef {
    blob_id: String,
    name: Option<String>,
    #[serde(rename = "type")]
    content_type: Option<String>,
}

/// The addresses of a field; with `lenient` (drafts) ones that do not parse yet are left out
/// rather than refused, since the user may be half-way through typing them.
fn mailboxes_of(
    list: &[String],
    lenient: bool,
) -> Result<Vec<message::compose::Mailbox>, MethodError> {
    let mut out = Vec::new();
    for text in list.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        match message::compose::Mailbox::parse(text) {
            Ok(mailbox) => out.push(mailbox),
            Err(_) if lenient => {}
            Err(e) => return Err(MethodError::new("invalidRecipients", e)),
        }
    }
    Ok(out)
}

/// An uploaded file, or a part of a stored message (forwarding), by blob id.
async fn blob(call: &Call<'_>, id: &str) -> Result<(String, String, Vec<u8>), MethodError> {
    if let Some(token) = id.strip_prefix('u') {
        return crate::uploads::read(call.session, token)
            .await?
            .ok_or_else(|| MethodError::new("blobNotFound", format!("no upload {id}")));
    }
    let (email, part) = id
        .rsplit_once('-')
        .and_then(|(e, p)| Some((e, p.parse::<u32>().ok()?)))
        .ok_or_else(|| MethodError::new("blobNotFound", format!("no blob {id}")))?;
    let (mailbox, uid) = call
        .email(email)
        .map_err(|_| MethodError::new("blobNotFound", format!("no blob {id}")))?;
    let raw = call.store().read_message(mailbox, uid).await?;
    mail::part(&raw, part).ok_or_else(|| MethodError::new("blobNotFound", format!("no blob {id}")))
}

/// Builds the message; returns it and its envelope recipients.
async fn compose(
    call: &Call<'_>,
    c: &Composition,
    lenient: bool,
) -> Result<(Vec<u8>, Vec<String>), MethodError> {
    let from = message::compose::Mailbox::parse(c.from.as_deref().unwrap_or(&call.session.address))
        .map_err(|e| MethodError::new("invalidArguments", e))?;
    let (to, cc, bcc) = (
        mailboxes_of(&c.to, lenient)?,
        mailboxes_of(&c.cc, lenient)?,
        mailboxes_of(&c.bcc, lenient)?,
    );
    let mut attachments = Vec::new();
    for a in &c.attachments {
        let (name, stored_type, data) = blob(call, &a.blob_id).await?;
        let name = a.name.clone().unwrap_or(name);
        let kind = a
            .content_type
            .clone()
            .filter(|t| !t.is_empty())
            .or(Some(stored_type).filter(|t| t != "application/octet-stream"))
            .unwrap_or_else(|| message::compose::guess_type(&name, &data).to_string());
        attachments.push(message::compose::Attachment {
            filename: name,
            content_type: kind,
            data,
            content_id: None,
        });
    }
    let now = store::rules::now();
    let draft = message::compose::Draft {
        from,
        to: to.clone(),
        cc: cc.clone(),
        subject: c.subject.clone(),
        text: Some(c.text.clone()),
        html: c.html.clone(),
        attachments,
        in_reply_to: c
            .in_reply_to
            .clone()
            .map(|i| i.trim_matches(['<', '>']).to_string()),
        references: c
            .references
            .iter()
            .map(|r| r.trim_matches(['<', '>']).to_string())
            .collect(),
        message_id: format!(
            "{}@{}",
            &crate::session::random_token()[..24],
            call.webmail.settings.hostname
        ),
        date: now,
    };
    let data = message::compose::build(&draft);
    if data.len() > call.webmail.settings.max_message_size {
        return Err(MethodError::new(
            "tooLarge",
            format!(
                "the message is {} KB; the limit is {} KB",
                data.len() / 1024,
                call.webmail.settings.max_message_size / 1024
            ),
        ));
    }
    let recipients = to
        .iter()
        .chain(&cc)
        .chain(&bcc)
        .map(|m| m.address.clone())
        .collect();
    Ok((data, recipients))
}

/// Saves a draft into Drafts (replacing `draftId`); returns its id.
async fn save_draft(call: &Call<'_>, draft: &Value) -> Result<String, MethodError> {
    let c: Composition = serde_json::from_value(draft.clone())
        .map_err(|e| MethodError::new("invalidArguments", e.to_string()))?;
    let _composing = call.session.quota.composing().await;
    let (data, _) = compose(call, &c, true).await?;
    let drafts = call.role(SpecialUse::Drafts)?.id;
    let summary = message::summary::summarize(&data);
    let uid = call
        .store()
        .append(
            drafts,
            data,
            flags::DRAFT | flags::SEEN,
            Vec::new(),
            store::rules::now(),
            Some(summary),
        )
        .await?;
    if let Some(old) = &c.draft_id
        && let Ok((mailbox, old_uid)) = call.email(old)
        && mailbox == drafts
    {
        call.store().expunge(drafts, &[old_uid]).await?;
    }
    Ok(email_id(drafts, uid))
}

async fn submission_set(call: &Call<'_>, args: &Value) -> MethodResult {
    let mut reply = SetReply::default();
    if let Some(create) = args["create"].as_object() {
        for (key, value) in create {
            match send(call, value).await {
                Ok(id) => {
                    reply
                        .created
                        .insert(key.clone(), json!({ "id": key, "emailId": id }));
                }
                Err(e) => {
                    reply.not_created.insert(key.clone(), e.to_json());
                }
            }
        }
    }
    Ok(reply.into_json(call))
}

/// Sends through the submission path, keeps a copy in Sent, marks the original answered and
/// drops the draft; returns the Sent copy's id.
async fn send(call: &Call<'_>, value: &Value) -> Result<String, MethodError> {
    let c: Composition = serde_json::from_value(value.clone())
        .map_err(|e| MethodError::new("invalidArguments", e.to_string()))?;
    let _composing = call.session.quota.composing().await;
    let (data, recipients) = compose(call, &c, false).await?;
    if recipients.is_empty() {
        return Err(MethodError::new(
            "invalidRecipients",
            "add at least one recipient",
        ));
    }
    let sent_box = call.role(SpecialUse::Sent)?.id;
    let user = auth::Authenticated {
        account_id: call.session.account,
        address: call.session.address.clone(),
    };
    let sent = call
        .webmail
        .submitter
        .submit(&user, &recipients, data, call.peer)
        .await
        .map_err(|e| match e {
            smtp_server::SubmitError::NotOwned(_) => {
                MethodError::new("forbiddenFrom", e.to_string())
            }
            smtp_server::SubmitError::Limit(_) => MethodError::new("overQuota", e.to_string()),
            smtp_server::SubmitError::Recipient(_) => {
                MethodError::new("invalidRecipients", e.to_string())
            }
            smtp_server::SubmitError::Temporary => MethodError::new("serverFail", e.to_string()),
        })?;
    // The message is on its way: nothing after this may make the user send it again.
    let store = call.store();
    let summary = message::summary::summarize(&sent);
    let copied = store
        .append(
            sent_box,
            sent,
            flags::SEEN,
            Vec::new(),
            store::rules::now(),
            Some(summary),
        )
        .await;
    if let Some(original) = &c.replying_to
        && let Ok((mailbox, original_uid)) = call.email(original)
        && let Err(e) = store
            .store_flags(
                mailbox,
                &[original_uid],
                FlagMode::Add,
                flags::ANSWERED,
                &[],
                None,
            )
            .await
    {
        tracing::warn!(error = %e, "webmail: marking the original answered failed");
    }
    if let Some(draft) = &c.draft_id
        && let Ok((mailbox, draft_uid)) = call.email(draft)
        && call
            .mailbox(mailbox)
            .is_ok_and(|m| m.special_use == Some(SpecialUse::Drafts))
        && let Err(e) = store.expunge(mailbox, &[draft_uid]).await
    {
        tracing::warn!(error = %e, "webmail: dropping the sent draft failed");
    }
    // The uploads went out with the message.
    call.session
        .uploads
        .lock()
        .expect("uploads lock")
        .retain(|token, _| {
            !c.attachments
                .iter()
                .any(|a| a.blob_id.strip_prefix('u') == Some(token.as_str()))
        });
    match copied {
        Ok(uid) => Ok(email_id(sent_box, uid)),
        Err(e) => {
            tracing::error!(error = %e, "webmail: the Sent copy failed after sending");
            Ok(String::new())
        }
    }
}

/// The conversation of an email: messages in INBOX, Sent and its own mailbox linked to it by
/// Message-ID, In-Reply-To and References, oldest first.
async fn thread_get(call: &Call<'_>, args: &Value) -> MethodResult {
    let mut list = Vec::new();
    let mut not_found = Vec::new();
    if args["ids"].as_array().is_some_and(|ids| ids.len() > 20) {
        return Err(MethodError::new(
            "requestTooLarge",
            "at most 20 threads at once",
        ));
    }
    for id in args["ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let Ok((mailbox, uid)) = call.email(id) else {
            not_found.push(id.to_string());
            continue;
        };
        let mut boxes: Vec<MailboxId> = vec![mailbox];
        for m in &call.mailboxes {
            if (m.name == "INBOX" || m.special_use == Some(SpecialUse::Sent)) && m.id != mailbox {
                boxes.push(m.id);
            }
        }
        let mut all: Vec<(MailboxId, u32, mail::Headers)> = Vec::new();
        for b in boxes {
            let metas = call.store().message_flags(b, 0).await?;
            let uids: Vec<u32> = metas
                .iter()
                .rev()
                .take(THREAD_WINDOW)
                .map(|m| m.uid)
                .collect();
            for (u, s) in call.store().summaries(b, &uids).await? {
                all.push((b, u, mail::headers(&s.header)));
            }
        }
        let Some(start) = all.iter().find(|(b, u, _)| *b == mailbox && *u == uid) else {
            not_found.push(id.to_string());
            continue;
        };
        let mut known: BTreeSet<String> = start.2.message_id.iter().cloned().collect();
        known.extend(start.2.references.iter().cloned());
        known.extend(start.2.in_reply_to.iter().cloned());
        let mut members: BTreeSet<(MailboxId, u32)> = BTreeSet::new();
        // Two rounds catch replies to replies that name only their parent.
        for _ in 0..3 {
            for (b, u, h) in &all {
                let linked = h.message_id.as_ref().is_some_and(|m| known.contains(m))
                    || h.references
                        .iter()
                        .chain(&h.in_reply_to)
                        .any(|r| known.contains(r));
                if linked && members.insert((*b, *u)) {
                    known.extend(h.message_id.iter().cloned());
                    known.extend(h.references.iter().cloned());
                }
            }
        }
        members.insert((mailbox, uid));
        // Oldest first; within one second a reply (which names more ancestors) comes after
        // what it answers.
        let mut ordered: Vec<(i64, usize, String)> = all
            .iter()
            .filter(|(b, u, _)| members.contains(&(*b, *u)))
            .map(|(b, u, h)| {
                let depth = h.references.len().max(h.in_reply_to.len());
                (h.sent_at.unwrap_or(0), depth, email_id(*b, *u))
            })
            .collect();
        ordered.sort();
        list.push(json!({
            "id": thread_key(&start.2),
            "emailIds": ordered.into_iter().map(|o| o.2).collect::<Vec<_>>(),
        }));
    }
    Ok(
        json!({ "accountId": call.session.account.to_string(), "list": list, "notFound": not_found }),
    )
}

/// Frees uploads the user removed from a message before sending it.
fn upload_destroy(call: &Call<'_>, args: &Value) -> MethodResult {
    let ids = args["blobIds"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str);
    Ok(json!({ "destroyed": crate::uploads::destroy(call.session, ids) }))
}

/// Addresses seen in recent mail (INBOX and Sent) that start with `prefix`, for autocomplete.
async fn address_suggest(call: &Call<'_>, args: &Value) -> MethodResult {
    let prefix = args["prefix"].as_str().unwrap_or("").trim().to_lowercase();
    let mut seen: Vec<Addr> = Vec::new();
    for m in &call.mailboxes {
        if m.name != "INBOX" && m.special_use != Some(SpecialUse::Sent) {
            continue;
        }
        let metas = call.store().message_flags(m.id, 0).await?;
        let uids: Vec<u32> = metas
            .iter()
            .rev()
            .take(SUGGEST_WINDOW)
            .map(|m| m.uid)
            .collect();
        for (_, s) in call.store().summaries(m.id, &uids).await? {
            let h = mail::headers(&s.header);
            for a in h.from.into_iter().chain(h.to).chain(h.cc) {
                if !seen.iter().any(|s| s.email.eq_ignore_ascii_case(&a.email)) {
                    seen.push(a);
                }
            }
        }
    }
    let matches: Vec<Value> = seen
        .into_iter()
        .filter(|a| {
            prefix.is_empty()
                || a.email.to_lowercase().starts_with(&prefix)
                || a.name.as_deref().is_some_and(|n| {
                    n.to_lowercase()
                        .split_whitespace()
                        .any(|w| w.starts_with(&prefix))
                        || n.to_lowercase().starts_with(&prefix)
                })
        })
        .take(10)
        .map(|a| json!({ "name": a.name, "email": a.email }))
        .collect();
    Ok(json!({ "list": matches }))
}

#[derive(Deserialize)]
pub struct DownloadPath {
    account: String,
    blob: String,
    name: String,
}

/// `GET /jmap/download/{account}/{blob}/{name}`: an attachment, always as a download (never
/// rendered by the browser), with its name and type.
pub async fn download(
    State(webmail): State<Shared>,
    Path(path): Path<DownloadPath>,
    headers: HeaderMap,
    connect: Option<axum::Extension<ConnectInfo<std::net::SocketAddr>>>,
) -> Response {
    let session = match webmail.for_read(&headers) {
        Ok(session) => session,
        Err(response) => return response,
    };
    if path.account != session.account.to_string() {
        return error(StatusCode::NOT_FOUND, "no such blob");
    }
    let call = match call_for_read(&webmail, &session, connect).await {
        Ok(call) => call,
        Err(response) => return response,
    };
    let (name, kind, data) = match blob(&call, &path.blob).await {
        Ok(found) => found,
        Err(e) if e.kind == "serverFail" => {
            return error(StatusCode::SERVICE_UNAVAILABLE, &e.description);
        }
        Err(_) => return error(StatusCode::NOT_FOUND, "no such blob"),
    };
    let name = if path.name.is_empty() {
        name
    } else {
        path.name
    };
    let mut response = data.into_response();
    let headers = response.headers_mut();
    let kind = if kind.bytes().all(|b| b.is_ascii_graphic()) && kind.contains('/') {
        kind
    } else {
        "application/octet-stream".into()
    };
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&kind)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&content_disposition(&name))
            .unwrap_or(HeaderValue::from_static("attachment")),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    response
}

/// `attachment; filename="ascii"; filename*=UTF-8''percent-encoded` (RFC 6266).
fn content_disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || " .-_()".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

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

/// The stored bytes of one of the logged-in user's emails, for the GET routes: 401 without a
/// session, 404 for anything that is not theirs.
#[allow(clippy::result_large_err)]
async fn stored_email(
    webmail: &Shared,
    headers: &HeaderMap,
    email: &str,
) -> Result<Vec<u8>, Response> {
    let session = webmail.for_read(headers)?;
    let call = call_for_read(webmail, &session, None).await?;
    let (mailbox, uid) = call
        .email(email)
        .map_err(|_| error(StatusCode::NOT_FOUND, "no such email"))?;
    webmail
        .store
        .read_message(mailbox, uid)
        .await
        .map_err(|_| error(StatusCode::NOT_FOUND, "no such email"))
}

#[derive(Deserialize)]
pub struct HtmlQuery {
    remote: Option<String>,
}

/// `GET /jmap/html/{email}?remote=1`: the message's sanitised HTML as a document for a
/// sandboxed frame; its own CSP forbids scripts and (unless `remote`) every remote load.
pub async fn html(
    State(webmail): State<Shared>,
    Path(path): EmailParam,
    Query(query): Query<HtmlQuery>,
    headers: HeaderMap,
) -> Response {
    let raw = match stored_email(&webmail, &headers, &path.email).await {
        Ok(raw) => raw,
        Err(response) => return response,
    };
    let allow_remote = query.remote.as_deref() == Some("1");
    let (body, _) = mail::safe_html(&raw, allow_remote).unwrap_or_default();
    let document = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><style>body{{font-family:system-ui,sans-serif;\
         margin:8px;overflow-wrap:anywhere}}img{{max-width:100%;height:auto}}</style></head><body>{body}</body></html>"
    );
    let images = if allow_remote {
        "data: https: http:"
    } else {
        "data:"
    };
    let csp = format!(
        "default-src 'none'; img-src {images}; style-src 'unsafe-inline'; font-src data:; \
         sandbox allow-popups allow-popups-to-escape-sandbox; frame-ancestors 'self'"
    );
    let mut response = (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        document,
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_str(&csp).expect("ASCII policy"),
    );
    headers.insert(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("SAMEORIGIN"),
    );
    response
}

/// `GET /jmap/raw/{email}`: the message exactly as stored ("show original").
pub async fn raw(
    State(webmail): State<Shared>,
    Path(path): EmailParam,
    headers: HeaderMap,
) -> Response {
    match stored_email(&webmail, &headers, &path.email).await {
        Ok(raw) => {
            let mut response = raw.into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            response.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; sandbox"),
            );
            response
        }
        Err(response) => response,
    }
}
