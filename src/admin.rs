//! Admin endpoints: `/healthz` (the process serves), `/readyz` (every credentials file has minted
//! a token and shutdown has not begun), `/metrics` (Prometheus/OpenMetrics text). Never forwarded,
//! never behind a client key.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};

use crate::proxy::{Body, Proxy, full_body};

/// Whether `path` is one of the admin paths.
pub fn is_admin_path(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// Answer an admin path.
pub fn handle<B>(proxy: &Proxy, req: &Request<B>) -> Response<Body> {
    let (status, content_type, body) = match req.uri().path() {
        "/healthz" => (
            StatusCode::OK,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"ok\n"),
        ),
        "/readyz" if proxy.ready() => (
            StatusCode::OK,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"ready\n"),
        ),
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            Bytes::from_static(
                b"not ready: credentials have not all minted a token, or shutting down\n",
            ),
        ),
        _ => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Bytes::from(proxy.metrics.encode()),
        ),
    };
    let body = if req.method() == http::Method::HEAD {
        Bytes::new()
    } else {
        body
    };
    let mut resp = Response::new(full_body(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
