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

/// Whether `name` is hop-by-hop (RFC 9110 7.6.1, plus `Keep-Alive`, `Proxy-Connection` and
/// `Upgrade`).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name) || name == header::UPGRADE
}

/// Names whose `_`-for-`-` spelling is stripped too: CGI-style servers read `Content_Length` as
/// `Content-Length`, so the upstream must never see one.
const DASHED: [&str; 7] = [
    "content-length",
    "transfer-encoding",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "x-request-id",
];

/// Whether `name` (lowercase, holding `_`) is `dashed` spelled with `_` for some `-`.
fn is_underscore_spelling(name: &str, dashed: &str) -> bool {
    name.len() == dashed.len()
        && name
            .bytes()
            .zip(dashed.bytes())
            .all(|(x, y)| x == y || (x == b'_' && y == b'-'))
}

/// The names a response or request must lose: hop-by-hop headers, every header named in
/// `Connection`, and whatever `also` selects. Collected in one pass over the names, comparing
/// with `Connection`'s tokens as text (no name is parsed or allocated).
fn doomed(
    headers: &HeaderMap,
    also: impl Fn(&HeaderName) -> bool,
) -> smallvec::SmallVec<[HeaderName; 4]> {
    let named: smallvec::SmallVec<[&str; 4]> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    headers
        .keys()
        .filter(|name| {
            is_hop_by_hop(name)
                || also(name)
                || named.iter().any(|t| t.eq_ignore_ascii_case(name.as_str()))
        })
        .cloned()
        .collect()
}

/// Strip a response on its way to the client: hop-by-hop headers and every header named in
/// `Connection` (RFC 9110 7.6.1); and when the upstream framed it with `Transfer-Encoding`, its
/// `Content-Length` too (RFC 9112 6.3: it is wrong, and hyper would frame the body by it).
pub fn strip_response(headers: &mut HeaderMap) {
    let chunked = headers.contains_key(header::TRANSFER_ENCODING);
    for name in doomed(headers, |name| chunked && name == header::CONTENT_LENGTH) {
        headers.remove(name);
    }
}

/// Strip what must never reach the upstream from a request: hop-by-hop headers, inbound
/// credentials, the account header in any spelling, underscore spellings of framing and
/// hop-by-hop headers, `Expect` (hyper answers `100-continue` itself) and `Host` (the upstream
/// client sets the upstream's). When the request came with `Transfer-Encoding`, `Content-Length`
/// goes too (RFC 9112 6.3: the body is framed by `Transfer-Encoding` alone, and a forwarded
/// request never carries both).
pub fn strip_request(headers: &mut HeaderMap, account_header: &HeaderName) {
    let chunked = headers.contains_key(header::TRANSFER_ENCODING);
    let doomed = doomed(headers, |name| {
        name == header::AUTHORIZATION
            || name == header::HOST
            || name == header::EXPECT
            || name == account_header
            || (chunked && name == header::CONTENT_LENGTH)
            || (name.as_str().contains('_')
                && (is_account_header(name, account_header)
                    || DASHED
                        .iter()
                        .any(|d| is_underscore_spelling(name.as_str(), d))))
    });
    for name in doomed {
        headers.remove(name);
    }
}

/// Whether `name` is the account header, allowing `_` for `-` (names are already lowercase).
pub fn is_account_header(name: &HeaderName, account_header: &HeaderName) -> bool {
    is_underscore_spelling(name.as_str(), account_header.as_str())
}

/// The token of an `Authorization`-style `Bearer <token>` value, if that is what it holds.
pub fn bearer_token(value: &HeaderValue) -> Option<&str> {
    let (scheme, token) = value.to_str().ok()?.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// What the pipeline reads of a request's headers, found in one pass over them: a lookup per
/// header would hash the names again and again. Values are shared handles (no copy).
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// `Host` fields.
    pub hosts: u8,
    /// `Transfer-Encoding` fields, and the first.
    pub codings: u8,
    /// The first `Transfer-Encoding`.
    pub coding: Option<HeaderValue>,
    /// `X-Request-Id` fields, and the first.
    pub request_ids: u8,
    /// The first `X-Request-Id`.
    pub request_id: Option<HeaderValue>,
    /// The account header: the exact name, else an underscore spelling.
    pub account: Option<HeaderValue>,
    /// `Authorization`.
    pub authorization: Option<HeaderValue>,
    /// `User-Agent`.
    pub user_agent: Option<HeaderValue>,
}

/// One pass over a request's headers: what [`Seen`] holds.
pub fn scan(headers: &HeaderMap, account_header: &HeaderName) -> Seen {
    let mut seen = Seen::default();
    let mut underscore_account = None;
    for (name, value) in headers {
        if name == header::HOST {
            seen.hosts = seen.hosts.saturating_add(1);
        } else if name == header::TRANSFER_ENCODING {
            seen.codings = seen.codings.saturating_add(1);
            seen.coding.get_or_insert_with(|| value.clone());
        } else if name == REQUEST_ID {
            seen.request_ids = seen.request_ids.saturating_add(1);
            seen.request_id.get_or_insert_with(|| value.clone());
        } else if name == header::AUTHORIZATION {
            seen.authorization.get_or_insert_with(|| value.clone());
        } else if name == header::USER_AGENT {
            seen.user_agent.get_or_insert_with(|| value.clone());
        } else if name == account_header {
            seen.account.get_or_insert_with(|| value.clone());
        } else if name.as_str().contains('_') && is_account_header(name, account_header) {
            underscore_account.get_or_insert_with(|| value.clone());
        }
    }
    if seen.account.is_none() {
        seen.account = underscore_account;
    }
    seen
}

impl Seen {
    /// RFC 9112 framing checks hyper leaves to us: an HTTP/1.1 request needs exactly one `Host`
    /// (3.2), and the only transfer coding voxproxy forwards is `chunked` (a `gzip, chunked`
    /// body re-sent as plain chunked would change its meaning). `Err` says what is wrong.
    pub fn framing(&self, version: http::Version) -> Result<(), &'static str> {
        if version == http::Version::HTTP_11 {
            match self.hosts {
                1 => {}
                0 => return Err("an HTTP/1.1 request needs a Host header"),
                _ => return Err("the request has more than one Host header"),
            }
        }
        match (self.codings, &self.coding) {
            (0, _) => Ok(()),
            (1, Some(v)) if v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"chunked") => Ok(()),
            _ => Err("the only transfer coding voxproxy forwards is `chunked`"),
        }
    }

    /// The request id: the inbound one when there is exactly one of 1 to 128 visible ASCII
    /// characters; else a new UUID.
    pub fn request_id(&self) -> HeaderValue {
        if let (1, Some(v)) = (self.request_ids, &self.request_id) {
            let b = v.as_bytes();
            if !b.is_empty() && b.len() <= 128 && b.iter().all(|c| (0x21..=0x7e).contains(c)) {
                return v.clone();
            }
        }
        new_request_id()
    }
}

/// [`Seen::framing`] of a header map.
pub fn check_framing(version: http::Version, headers: &HeaderMap) -> Result<(), &'static str> {
    scan(headers, &REQUEST_ID).framing(version)
}

/// [`Seen::request_id`] of a header map.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    scan(headers, &REQUEST_ID).request_id()
}

/// A fresh request id: a v4 UUID from a per-thread userspace generator (fastrand, seeded once
/// per thread). Request ids only need to be unique, not secret: a CSPRNG call per request cost
/// more than the rest of the request-id path together (bench/README.md).
pub fn new_request_id() -> HeaderValue {
    let id = uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes()).into_uuid();
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
    // Decoding never makes a name longer, nor more than three times shorter (`%5F` is `_`): the
    // shortest legacy name has 7 characters, the longest 23, so 69 when every byte is escaped.
    if name.len() < 7 || name.len() > 3 * 23 {
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
        // Every byte of the longest names escaped (69 characters) is still a legacy name.
        for name in ["parent_account_password", "parent_account_api_key"] {
            let escaped: String = name.bytes().map(|b| format!("%{b:02X}")).collect();
            let query = format!("{escaped}=s&k=v");
            assert_eq!(scrub_query(&query).as_deref(), Some("k=v"), "{query}");
        }
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
    fn underscore_spellings_of_framing_and_hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        for name in [
            "transfer_encoding",
            "content_length",
            "keep_alive",
            "proxy_connection",
            "proxy_authorization",
            "x_request_id",
        ] {
            h.insert(HeaderName::from_static(name), HeaderValue::from_static("1"));
        }
        h.insert("x_keep_me", HeaderValue::from_static("kept"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        strip_request(&mut h, &HeaderName::from_static("x-voximplant-account-id"));
        let mut names: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["content-length", "x_keep_me"]);
    }

    #[test]
    fn framing() {
        use http::Version;
        let mut h = HeaderMap::new();
        assert!(check_framing(Version::HTTP_11, &h).is_err(), "no Host");
        assert!(check_framing(Version::HTTP_10, &h).is_ok());
        assert!(check_framing(Version::HTTP_2, &h).is_ok());
        h.insert(header::HOST, HeaderValue::from_static("a"));
        assert!(check_framing(Version::HTTP_11, &h).is_ok());
        h.append(header::HOST, HeaderValue::from_static("b"));
        assert!(check_framing(Version::HTTP_11, &h).is_err(), "two Hosts");
        let mut h = HeaderMap::new();
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static(" Chunked "),
        );
        assert!(check_framing(Version::HTTP_2, &h).is_ok());
        for bad in ["gzip, chunked", "gzip", "chunked, chunked", "identity"] {
            h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static(bad));
            assert!(check_framing(Version::HTTP_2, &h).is_err(), "{bad}");
        }
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
