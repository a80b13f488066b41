//! voxproxy's own errors: the kinds it answers itself and the one function that turns them into
//! responses (status, `X-Voxproxy-Error: <kind>`, `Content-Type: application/json` and a body in
//! Voximplant's own shape, `{"error":{"code":N,"msg":"voxproxy: ..."}}`, so API clients parse
//! it); and [`Failure`], a command's failure with the exit code it maps to.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::body::{self, Body, BoxError};

/// Header naming the kind of a response voxproxy made itself.
pub const ERROR_HEADER: &str = "x-voxproxy-error";

/// The kinds of error voxproxy answers itself. Names, statuses and codes are a stable contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Malformed request (framing, target) that hyper let through.
    BadRequest,
    /// Account id not a positive decimal integer.
    BadAccount,
    /// Gateway: no or bad client credentials.
    ClientUnauthenticated,
    /// Account outside `allowed_accounts`.
    AccountNotAllowed,
    /// Gateway: account or API method not allowed for this client.
    ClientForbidden,
    /// Absolute-form target for another host.
    OpenProxy,
    /// Path outside `/platform_api`.
    NotFound,
    /// `CONNECT`.
    ConnectNotSupported,
    /// Body over `max_body_bytes`.
    BodyTooLarge,
    /// Gateway: over the client's rate.
    ClientRateLimited,
    /// Over `account_rate` after waiting `account_rate_wait`.
    AccountRateLimited,
    /// Cannot connect to the upstream.
    UpstreamConnect,
    /// TLS handshake with the upstream failed.
    UpstreamTls,
    /// Upstream closed or reset before a complete response head.
    UpstreamReset,
    /// No valid token can be minted.
    TokenUnavailable,
    /// No response head within `request_timeout`.
    UpstreamTimeout,
}

impl ErrorKind {
    /// Every kind, for metrics pre-registration and the README table test.
    pub const ALL: [ErrorKind; 16] = [
        ErrorKind::BadRequest,
        ErrorKind::BadAccount,
        ErrorKind::ClientUnauthenticated,
        ErrorKind::AccountNotAllowed,
        ErrorKind::ClientForbidden,
        ErrorKind::OpenProxy,
        ErrorKind::NotFound,
        ErrorKind::ConnectNotSupported,
        ErrorKind::BodyTooLarge,
        ErrorKind::ClientRateLimited,
        ErrorKind::AccountRateLimited,
        ErrorKind::UpstreamConnect,
        ErrorKind::UpstreamTls,
        ErrorKind::UpstreamReset,
        ErrorKind::TokenUnavailable,
        ErrorKind::UpstreamTimeout,
    ];

    /// The `X-Voxproxy-Error` value and metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::BadAccount => "bad_account",
            ErrorKind::ClientUnauthenticated => "client_unauthenticated",
            ErrorKind::AccountNotAllowed => "account_not_allowed",
            ErrorKind::ClientForbidden => "client_forbidden",
            ErrorKind::OpenProxy => "open_proxy",
            ErrorKind::NotFound => "not_found",
            ErrorKind::ConnectNotSupported => "connect_not_supported",
            ErrorKind::BodyTooLarge => "body_too_large",
            ErrorKind::ClientRateLimited => "client_rate_limited",
            ErrorKind::AccountRateLimited => "account_rate_limited",
            ErrorKind::UpstreamConnect => "upstream_connect",
            ErrorKind::UpstreamTls => "upstream_tls",
            ErrorKind::UpstreamReset => "upstream_reset",
            ErrorKind::TokenUnavailable => "token_unavailable",
            ErrorKind::UpstreamTimeout => "upstream_timeout",
        }
    }

    /// HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::BadRequest | ErrorKind::BadAccount => StatusCode::BAD_REQUEST,
            ErrorKind::ClientUnauthenticated => StatusCode::UNAUTHORIZED,
            ErrorKind::AccountNotAllowed | ErrorKind::ClientForbidden | ErrorKind::OpenProxy => {
                StatusCode::FORBIDDEN
            }
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::ConnectNotSupported => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::ClientRateLimited | ErrorKind::AccountRateLimited => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ErrorKind::UpstreamConnect | ErrorKind::UpstreamTls | ErrorKind::UpstreamReset => {
                StatusCode::BAD_GATEWAY
            }
            ErrorKind::TokenUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The `error.code` in the JSON body: 9400..9599, clear of Voximplant's own codes.
    pub fn code(self) -> u16 {
        match self {
            ErrorKind::BadRequest => 9400,
            ErrorKind::BadAccount => 9401,
            ErrorKind::ClientUnauthenticated => 9410,
            ErrorKind::AccountNotAllowed => 9430,
            ErrorKind::ClientForbidden => 9431,
            ErrorKind::OpenProxy => 9432,
            ErrorKind::NotFound => 9440,
            ErrorKind::ConnectNotSupported => 9450,
            ErrorKind::BodyTooLarge => 9470,
            ErrorKind::ClientRateLimited => 9490,
            ErrorKind::AccountRateLimited => 9491,
            ErrorKind::UpstreamConnect => 9520,
            ErrorKind::UpstreamTls => 9521,
            ErrorKind::UpstreamReset => 9522,
            ErrorKind::TokenUnavailable => 9530,
            ErrorKind::UpstreamTimeout => 9540,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error voxproxy answers itself: a kind, a message for the client, and the cause for the log.
#[derive(Debug)]
pub struct ProxyError {
    /// What kind of error.
    pub kind: ErrorKind,
    /// What happened and what to do, for the client (no secret, ever).
    pub msg: Cow<'static, str>,
    /// `Retry-After` seconds (rate limits).
    pub retry_after: Option<u64>,
    /// The underlying cause, logged once where the response is made.
    pub source: Option<BoxError>,
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.msg)
    }
}

impl std::error::Error for ProxyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}

impl ProxyError {
    /// An error of `kind` with a message for the client.
    pub fn new(kind: ErrorKind, msg: impl Into<Cow<'static, str>>) -> ProxyError {
        ProxyError {
            kind,
            msg: msg.into(),
            retry_after: None,
            source: None,
        }
    }

    /// Attach the underlying cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> ProxyError {
        self.source = Some(source.into());
        self
    }

    /// Attach `Retry-After`.
    pub fn with_retry_after(mut self, secs: u64) -> ProxyError {
        self.retry_after = Some(secs);
        self
    }

    /// The cause chain on one line (`a: b: c`), for the log.
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut cur = self
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static));
        while let Some(e) = cur {
            out.push_str(": ");
            out.push_str(&e.to_string());
            cur = e.source();
        }
        out
    }
}

/// A command's failure and the exit code it maps to (the contract: 0 success, 1 runtime failure,
/// 2 usage or configuration error).
#[derive(Debug)]
pub enum Failure {
    /// Usage or configuration error: exit 2.
    Config(anyhow::Error),
    /// Runtime failure: exit 1.
    Runtime(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure::Runtime(e.into())
    }
}

/// Shorthand for a configuration error (exit 2).
pub fn config_err(e: impl Into<anyhow::Error>) -> Failure {
    Failure::Config(e.into())
}

/// Methods voxproxy forwards (the `Allow` of a 405).
const ALLOW: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// Build the response for `err`: the one place voxproxy's own error responses are made.
pub fn error_response(err: &ProxyError) -> Response<Body> {
    #[derive(serde::Serialize)]
    struct Inner {
        code: u16,
        msg: String,
    }
    #[derive(serde::Serialize)]
    struct Outer {
        error: Inner,
    }
    let body = serde_json::to_vec(&Outer {
        error: Inner {
            code: err.kind.code(),
            msg: format!("voxproxy: {}", err.msg),
        },
    })
    .unwrap_or_else(|_| br#"{"error":{"code":9400,"msg":"voxproxy: error"}}"#.to_vec());
    let mut resp = Response::new(body::full(Bytes::from(body)));
    *resp.status_mut() = err.kind.status();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(ERROR_HEADER, HeaderValue::from_static(err.kind.as_str()));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    match err.kind {
        ErrorKind::ClientUnauthenticated => {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer realm="voxproxy""#),
            );
        }
        ErrorKind::ConnectNotSupported => {
            h.insert(header::ALLOW, HeaderValue::from_static(ALLOW));
        }
        ErrorKind::ClientRateLimited | ErrorKind::AccountRateLimited => {
            h.insert(
                header::RETRY_AFTER,
                HeaderValue::from(err.retry_after.unwrap_or(1).max(1)),
            );
        }
        _ => {}
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins the contract's table: kind, status, code.
    #[test]
    fn kinds_match_the_contract_table() {
        let table = [
            ("bad_request", 400, 9400),
            ("bad_account", 400, 9401),
            ("client_unauthenticated", 401, 9410),
            ("account_not_allowed", 403, 9430),
            ("client_forbidden", 403, 9431),
            ("open_proxy", 403, 9432),
            ("not_found", 404, 9440),
            ("connect_not_supported", 405, 9450),
            ("body_too_large", 413, 9470),
            ("client_rate_limited", 429, 9490),
            ("account_rate_limited", 429, 9491),
            ("upstream_connect", 502, 9520),
            ("upstream_tls", 502, 9521),
            ("upstream_reset", 502, 9522),
            ("token_unavailable", 503, 9530),
            ("upstream_timeout", 504, 9540),
        ];
        assert_eq!(ErrorKind::ALL.len(), table.len());
        for (kind, (name, status, code)) in ErrorKind::ALL.iter().zip(table) {
            assert_eq!(kind.as_str(), name);
            assert_eq!(kind.status().as_u16(), status, "{name}");
            assert_eq!(kind.code(), code, "{name}");
        }
    }

    #[tokio::test]
    async fn response_has_kind_header_and_voximplant_shaped_body() {
        use http_body_util::BodyExt as _;
        let resp = error_response(&ProxyError::new(
            ErrorKind::ConnectNotSupported,
            "use the base URL",
        ));
        assert_eq!(resp.status(), 405);
        assert_eq!(resp.headers()[ERROR_HEADER], "connect_not_supported");
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        assert!(
            resp.headers()[header::ALLOW]
                .to_str()
                .unwrap()
                .contains("POST")
        );
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], 9450);
        assert_eq!(v["error"]["msg"], "voxproxy: use the base URL");
    }
}
