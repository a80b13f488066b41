//! Header and target surgery: hop-by-hop and credential stripping, request ids, and removal of
//! legacy credential parameters from the raw query string (edited in place, never re-serialised).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// The request-id header.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Hop-by-hop headers (RFC 9110 7.6.1, plus the de-facto `Proxy-Connection` and `Keep-Alive`).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Legacy (pre-JWT) credential parameters removed from query strings.
const LEGACY_PARAMS: [&str; 7] = [
    "api_key",
    "account_password",
    "session_id",
    "admin_user_api_key",
    "admin_user_password",
    "parent_account_api_key",
    "parent_account_password",
];

/// Remove hop-by-hop headers and every header named in `Connection` (RFC 9110 7.6.1).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}

/// Strip what must never reach the upstream from a request: hop-by-hop headers, inbound
/// credentials, the account header in any spelling, `Expect` (hyper answers `100-continue`
/// itself) and `Host` (the upstream client sets the upstream's). Returns whether the request came
/// with `Transfer-Encoding`, in which case `Content-Length` is dropped too (RFC 9112 6.3: the
/// body is framed by `Transfer-Encoding` alone, and a forwarded request never carries both).
pub fn strip_request(headers: &mut HeaderMap, account_header: &HeaderName) {
    let had_transfer_encoding = headers.contains_key(header::TRANSFER_ENCODING);
    strip_hop_by_hop(headers);
    if had_transfer_encoding {
        headers.remove(header::CONTENT_LENGTH);
    }
    headers.remove(header::AUTHORIZATION);
    headers.remove(header::HOST);
    headers.remove(header::EXPECT);
    headers.remove(account_header);
    // `X_Voximplant_Account_Id` is the same header to CGI-style servers: strip it too.
    if headers.keys().any(|k| k.as_str().contains('_')) {
        let variants: Vec<HeaderName> = headers
            .keys()
            .filter(|k| is_account_header(k, account_header))
            .cloned()
            .collect();
        for name in variants {
            headers.remove(name);
        }
    }
}

/// Whether `name` is the account header, allowing `_` for `-` (names are already lowercase).
pub fn is_account_header(name: &HeaderName, account_header: &HeaderName) -> bool {
    let (a, b) = (name.as_str().as_bytes(), account_header.as_str().as_bytes());
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x == y || (*x == b'_' && *y == b'-'))
}

/// The value of the account header in any spelling, if exactly one is present.
pub fn account_header_value<'a>(
    headers: &'a HeaderMap,
    account_header: &HeaderName,
) -> Option<&'a HeaderValue> {
    if let Some(v) = headers.get(account_header) {
        return Some(v);
    }
    headers
        .iter()
        .find(|(k, _)| k.as_str().contains('_') && is_account_header(k, account_header))
        .map(|(_, v)| v)
}

/// The token of an `Authorization`-style `Bearer <token>` value, if that is what it holds.
pub fn bearer_token(value: &HeaderValue) -> Option<&str> {
    let (scheme, token) = value.to_str().ok()?.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Keep an inbound request id that is 1 to 128 visible ASCII characters; else make a UUID.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    let mut values = headers.get_all(&REQUEST_ID).iter();
    if let (Some(v), None) = (values.next(), values.next()) {
        let b = v.as_bytes();
        if !b.is_empty() && b.len() <= 128 && b.iter().all(|c| (0x21..=0x7e).contains(c)) {
            return v.clone();
        }
    }
    new_request_id()
}

/// A fresh request id (a v4 UUID). The random bytes come from aws-lc's DRBG (the one crypto
/// library), which unlike `Uuid::new_v4` costs no `getrandom` system call per request.
pub fn new_request_id() -> HeaderValue {
    use aws_lc_rs::rand::SecureRandom as _;
    let mut bytes = [0u8; 16];
    let id = match aws_lc_rs::rand::SystemRandom::new().fill(&mut bytes) {
        Ok(()) => uuid::Builder::from_random_bytes(bytes).into_uuid(),
        Err(_) => uuid::Uuid::new_v4(),
    };
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let s = id.hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(s).expect("a UUID is a valid header value")
}

/// Remove legacy credential parameters from a raw query string, keeping every other parameter
/// byte for byte and in order. Returns `None` when nothing was removed (the query is used as is).
pub fn scrub_query(query: &str) -> Option<String> {
    if !query.split('&').any(is_legacy_param) {
        return None;
    }
    let kept: Vec<&str> = query.split('&').filter(|p| !is_legacy_param(p)).collect();
    Some(kept.join("&"))
}

fn is_legacy_param(pair: &str) -> bool {
    let name = pair.split_once('=').map_or(pair, |(n, _)| n);
    // Decoding never makes a name longer, and the shortest legacy name has 7 characters.
    if name.len() < 7 || name.len() > 64 {
        return false;
    }
    if !name.bytes().any(|b| b == b'%' || b == b'+') {
        return LEGACY_PARAMS.iter().any(|p| p.eq_ignore_ascii_case(name));
    }
    let decoded = percent_decode(name.as_bytes(), true);
    LEGACY_PARAMS
        .iter()
        .any(|p| p.as_bytes().eq_ignore_ascii_case(&decoded))
}

/// Percent-decode (and, for form data, `+` to space). Invalid escapes stay as they are.
pub fn percent_decode(input: &[u8], plus_as_space: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'%' if i + 2 < input.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(input[i + 1]), hex(input[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' if plus_as_space => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_keeps_everything_but_legacy_credentials_byte_for_byte() {
        assert_eq!(scrub_query("a=1&b=2"), None);
        assert_eq!(
            scrub_query("x=a+b&api_key=SECRET&y=%20&a&a=b=c&account_id=5&session_id=1").as_deref(),
            Some("x=a+b&y=%20&a&a=b=c&account_id=5")
        );
        assert_eq!(scrub_query("api%5Fkey=s&k=v").as_deref(), Some("k=v"));
        assert_eq!(scrub_query("api_key").as_deref(), Some(""));
        assert_eq!(scrub_query("a&&b"), None);
        assert_eq!(
            scrub_query("admin_user_password=1&parent_account_api_key=2&parent_account_password=3&admin_user_api_key=4&account_password=5&z=1").as_deref(),
            Some("z=1")
        );
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, X-Secret-Hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("10"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        h.insert(
            header::PROXY_AUTHORIZATION,
            HeaderValue::from_static("Basic x"),
        );
        h.insert("x_voximplant_account_id", HeaderValue::from_static("5"));
        h.insert("X-VOXIMPLANT-ACCOUNT-ID", HeaderValue::from_static("5"));
        h.insert("x-keep", HeaderValue::from_static("kept"));
        strip_request(&mut h, &HeaderName::from_static("x-voximplant-account-id"));
        let names: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["x-keep"]);
    }

    #[test]
    fn request_ids_are_kept_only_when_sane() {
        let mut h = HeaderMap::new();
        h.insert(&REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert(&REQUEST_ID, HeaderValue::from_static("has space"));
        assert_ne!(request_id(&h), "has space");
        h.insert(
            &REQUEST_ID,
            HeaderValue::from_str(&"a".repeat(129)).unwrap(),
        );
        assert_eq!(request_id(&h).len(), 36);
        h.insert(
            &REQUEST_ID,
            HeaderValue::from_str(&"a".repeat(128)).unwrap(),
        );
        assert_eq!(request_id(&h).len(), 128);
        h.append(&REQUEST_ID, HeaderValue::from_static("second"));
        assert_eq!(request_id(&h).len(), 36);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode(b"a%20b+c%zz%4", true), b"a b c%zz%4");
        assert_eq!(percent_decode(b"Get%55sers", false), b"GetUsers");
    }
}
