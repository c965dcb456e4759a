//! Blobs: downloads (`GET /jmap/download/...`), the blobs a message being written attaches,
//! and `pigeon:Upload/destroy`. Uploads themselves are `crate::uploads`.

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{Call, MethodError, MethodResult, call_for_read};
use crate::{Shared, error, mail};

/// An uploaded file, or a part of a stored message (forwarding), by blob id: its name, media
/// type and bytes.
pub(super) async fn blob(
    call: &Call<'_>,
    id: &str,
) -> Result<(String, String, Vec<u8>), MethodError> {
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

/// `pigeon:Upload/destroy`'s arguments.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct UploadDestroyArgs {
    /// Upload blob ids (`u<token>`) of this session; others are ignored.
    #[serde(default)]
    blob_ids: Vec<String>,
}

/// Frees uploads the user removed from a message before sending it.
pub(super) fn upload_destroy(call: &Call<'_>, args: UploadDestroyArgs) -> MethodResult {
    let ids = args.blob_ids.iter().map(String::as_str);
    Ok(json!({ "destroyed": crate::uploads::destroy(call.session, ids) }))
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

#[cfg(test)]
mod tests {
    #[test]
    fn content_disposition_keeps_ascii_and_encodes_the_rest() {
        assert_eq!(
            super::content_disposition("报告 v1.pdf"),
            "attachment; filename=\"__ v1.pdf\"; filename*=UTF-8''%E6%8A%A5%E5%91%8A%20v1.pdf"
        );
    }
}
