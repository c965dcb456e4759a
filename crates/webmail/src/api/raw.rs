//! The views of one stored email outside the API: `GET /jmap/raw/{email}` (as stored) and
//! `GET /jmap/html/{email}` (its sanitised HTML for a sandboxed frame).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::call_for_read;
use crate::{EmailParam, Shared, error, mail};

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
    /// `1` loads remote images.
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
    let csp = if allow_remote {
        HTML_CSP_REMOTE
    } else {
        HTML_CSP
    };
    let mut response = (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        document,
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    headers.insert(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("SAMEORIGIN"),
    );
    response
}

/// The HTML view's policy: no scripts, inline styles only, images only inline (`data:`).
const HTML_CSP: &str = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:; \
     sandbox allow-popups allow-popups-to-escape-sandbox; frame-ancestors 'self'";
/// The same once the user allowed remote images for the message.
const HTML_CSP_REMOTE: &str = "default-src 'none'; img-src data: https: http:; style-src 'unsafe-inline'; font-src data:; \
     sandbox allow-popups allow-popups-to-escape-sandbox; frame-ancestors 'self'";

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

#[cfg(test)]
mod tests {
    /// The constant policies are the ones the page's frame was built against.
    #[test]
    fn html_policies_differ_only_in_images() {
        let images = |remote| {
            format!(
                "default-src 'none'; img-src {}; style-src 'unsafe-inline'; font-src data:; \
                 sandbox allow-popups allow-popups-to-escape-sandbox; frame-ancestors 'self'",
                if remote {
                    "data: https: http:"
                } else {
                    "data:"
                }
            )
        };
        assert_eq!(super::HTML_CSP, images(false));
        assert_eq!(super::HTML_CSP_REMOTE, images(true));
    }
}
