//! The request target: which targets voxproxy forwards (contract "Forwarding" and "Hostile and
//! broken peers"), the API path and the API method it names, and the upstream URI it becomes.
//!
//! Only `/platform_api` and paths below it are forwarded, optionally behind `/accounts/<id>/`;
//! `CONNECT` is 405, an absolute-form target for another host 403 `open_proxy`, anything else
//! 404. A path the upstream could read differently than voxproxy (a dot segment, a `\`, a
//! percent-encoded `/` or `\`) is 400, so API method detection and policy read the same path the
//! upstream will.

use std::borrow::Cow;

use http::request::Parts;
use http::uri::{PathAndQuery, Uri};
use http::{Method, Version};

use crate::config::Upstream;
use crate::error::{ErrorKind, ProxyError};
use crate::headers::{self, percent_decode};

/// The base path every forwarded request lives under.
pub const API_ROOT: &str = "/platform_api";

/// A request target that may be forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTarget<'a> {
    /// The raw `<id>` of an `/accounts/<id>/` prefix (parsed by the account rule).
    pub prefix_account: Option<&'a str>,
    /// Where the API path (`/platform_api...`) starts in the inbound path.
    pub api_start: usize,
    /// The API method the path names (`/platform_api/<Method>/`), percent-decoded.
    pub method: Option<Cow<'a, str>>,
}

/// Check a request's target: 405 for `CONNECT`, 403 for a foreign absolute-form target, 404
/// outside `/platform_api`, 400 for a path that could escape it.
pub fn check<'a>(parts: &'a Parts, upstream: &Upstream) -> Result<ApiTarget<'a>, ProxyError> {
    if parts.method == Method::CONNECT {
        return Err(ProxyError::new(
            ErrorKind::ConnectNotSupported,
            "CONNECT is not supported: voxproxy is a reverse proxy; use http://<voxproxy>/platform_api as the API base URL instead of an HTTPS proxy",
        ));
    }
    // HTTP/2's :scheme and :authority play the part of Host, not of an absolute-form target.
    if parts.version != Version::HTTP_2 && !is_own_authority(&parts.uri, upstream) {
        return Err(ProxyError::new(
            ErrorKind::OpenProxy,
            format!("absolute-form target for another host: voxproxy forwards only to {upstream}"),
        ));
    }
    let path = parts.uri.path();
    let (prefix_account, api_path) = split_account_prefix(path).ok_or_else(|| not_found(path))?;
    if let Some(why) = escape(api_path) {
        return Err(ProxyError::new(
            ErrorKind::BadRequest,
            format!("the path holds {why}, which the upstream could read as another path"),
        ));
    }
    Ok(ApiTarget {
        prefix_account,
        api_start: path.len() - api_path.len(),
        method: method_from_path(api_path),
    })
}

/// 404 for a path voxproxy does not forward. The path is shown without control characters: a
/// path may hold any UTF-8, C1 controls (a terminal's CSI) included.
pub fn not_found(path: &str) -> ProxyError {
    let shown: String = path.chars().filter(|c| !c.is_control()).take(100).collect();
    ProxyError::new(
        ErrorKind::NotFound,
        format!(
            "{shown} is not forwarded: only /platform_api and paths below it are (optionally behind /accounts/<id>/)"
        ),
    )
}

/// Whether an absolute-form target names the upstream (its authority) or `api.voximplant.com`
/// with no port or its scheme's default port. An origin-form target is always fine.
fn is_own_authority(uri: &Uri, upstream: &Upstream) -> bool {
    let Some(authority) = uri.authority() else {
        return true;
    };
    let default_port = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
        Some("http") => 80,
        Some("https") => 443,
        _ => return false,
    };
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16();
    if host.eq_ignore_ascii_case(&upstream.host) && port == upstream.authority.port_u16() {
        return true;
    }
    host.eq_ignore_ascii_case("api.voximplant.com") && port.is_none_or(|p| p == default_port)
}

/// Split `/accounts/<id>/rest` into (`Some(id)`, `/rest`); `None` when the remaining path is not
/// `/platform_api` or below it.
pub fn split_account_prefix(path: &str) -> Option<(Option<&str>, &str)> {
    let (account, rest) = match path.strip_prefix("/accounts/") {
        Some(tail) => {
            let slash = tail.find('/')?;
            (Some(&tail[..slash]), &tail[slash..])
        }
        None => (None, path),
    };
    let under_root = rest == API_ROOT
        || rest
            .strip_prefix(API_ROOT)
            .is_some_and(|r| r.starts_with('/'));
    under_root.then_some((account, rest))
}

/// What in an API path could make the upstream see another path than voxproxy checked: a dot
/// segment (spelled plainly or with `%2E`), a percent-encoded `/` or `\` (which a decoding
/// upstream turns into a separator), or a plain `\` (which WHATWG URL parsers, and so many
/// HTTP stacks, read as `/`). `None` when there is nothing.
pub fn escape(api_path: &str) -> Option<&'static str> {
    let bytes = api_path.as_bytes();
    // Most paths hold none of these: nothing to look at.
    if !bytes.iter().any(|b| matches!(b, b'%' | b'.' | b'\\')) {
        return None;
    }
    if bytes.contains(&b'\\') {
        return Some("a `\\`");
    }
    let encoded_separator = bytes.windows(3).any(|w| {
        w[0] == b'%' && w[1] == b'2' && w[2].eq_ignore_ascii_case(&b'f')
            || w[0] == b'%' && w[1] == b'5' && w[2].eq_ignore_ascii_case(&b'c')
    });
    if encoded_separator {
        return Some("a percent-encoded `/` or `\\`");
    }
    let dot_segment = api_path.split('/').any(|seg| {
        let decoded = percent_decode(seg.as_bytes(), false);
        decoded == b"." || decoded == b".."
    });
    dot_segment.then_some("a `.` or `..` segment")
}

/// The API method named in an API path (`/platform_api/<Method>/...`), percent-decoded (borrowed
/// from the path when there is nothing to decode).
pub fn method_from_path(api_path: &str) -> Option<Cow<'_, str>> {
    let rest = api_path.strip_prefix(API_ROOT)?.strip_prefix('/')?;
    let seg = rest.split_once('/').map_or(rest, |(seg, _)| seg);
    if seg.is_empty() {
        return None;
    }
    if !seg.contains('%') {
        return Some(Cow::Borrowed(seg));
    }
    String::from_utf8(percent_decode(seg.as_bytes(), false))
        .ok()
        .map(Cow::Owned)
}

/// The first `cmd` parameter of a raw query string, decoded.
pub fn cmd_from_query(query: &str) -> Option<String> {
    cmds_from_form(query.as_bytes(), true).into_iter().next()
}

/// Every `cmd` parameter of urlencoded data, decoded (`+` is a space). With `complete` false the
/// last pair may be cut short, so it is left out.
pub fn cmds_from_form(data: &[u8], complete: bool) -> Vec<String> {
    let mut pairs: Vec<&[u8]> = data.split(|b| *b == b'&').collect();
    if !complete {
        pairs.pop();
    }
    pairs
        .into_iter()
        .filter_map(|pair| {
            let (name, value) = match pair.iter().position(|b| *b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &[][..]),
            };
            (name.len() < 64 && percent_decode(name, true) == b"cmd")
                .then(|| String::from_utf8_lossy(&percent_decode(value, true)).into_owned())
        })
        .collect()
}

/// Whether `s` looks like a Voximplant API method name: `[A-Za-z][A-Za-z0-9_]{0,63}`.
pub fn is_method_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphabetic()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// The upstream URI for an inbound target whose API path starts at byte `api_start` of its path,
/// with legacy credentials scrubbed from the query. In the common case (no prefix, nothing to
/// scrub) the inbound path and query go upstream as they came, without being copied or parsed
/// again.
pub fn upstream_uri(
    inbound: &Uri,
    api_start: usize,
    upstream: &Upstream,
) -> Result<Uri, ProxyError> {
    let invalid = |e: http::Error| {
        ProxyError::new(ErrorKind::BadRequest, "the request target is not valid").with_source(e)
    };
    let query = inbound.query();
    let scrubbed = query.and_then(headers::scrub_query);
    let pq = match (api_start, scrubbed, inbound.path_and_query()) {
        (0, None, Some(pq)) => pq.clone(),
        (_, scrubbed, _) => {
            let path = &inbound.path()[api_start..];
            let pq = match scrubbed.as_deref().or(query) {
                // Every parameter was a legacy credential: no `?` at all.
                Some("") if scrubbed.is_some() => path.to_owned(),
                Some(q) => format!("{path}?{q}"),
                None => path.to_owned(),
            };
            PathAndQuery::try_from(pq).map_err(|e| invalid(e.into()))?
        }
    };
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(upstream.scheme.clone());
    parts.authority = Some(upstream.authority.clone());
    parts.path_and_query = Some(pq);
    Uri::from_parts(parts).map_err(|e| invalid(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream() -> Upstream {
        crate::config::parse_upstream("https://127.0.0.1:8443").unwrap()
    }

    fn parts(method: &str, target: &str, version: Version) -> Parts {
        let (parts, ()) = http::Request::builder()
            .method(method)
            .uri(target)
            .version(version)
            .body(())
            .unwrap()
            .into_parts();
        parts
    }

    /// What `check` says of an HTTP/1.1 request: (prefix account, API start, method) or the kind.
    type Checked = (Option<String>, usize, Option<String>);

    fn kind(method: &str, target: &str) -> Result<Checked, ErrorKind> {
        let p = parts(method, target, Version::HTTP_11);
        check(&p, &upstream())
            .map(|t| {
                let method = t.method.map(Cow::into_owned);
                (t.prefix_account.map(str::to_owned), t.api_start, method)
            })
            .map_err(|e| e.kind)
    }

    #[test]
    fn account_prefix_and_root() {
        assert_eq!(
            split_account_prefix("/platform_api"),
            Some((None, "/platform_api"))
        );
        assert_eq!(
            split_account_prefix("/accounts/42/platform_api/X"),
            Some((Some("42"), "/platform_api/X"))
        );
        assert_eq!(
            split_account_prefix("/accounts/abc/platform_api"),
            Some((Some("abc"), "/platform_api"))
        );
        for outside in ["/platform_apix", "/accounts/42", "/accounts/42/other", "/"] {
            assert_eq!(split_account_prefix(outside), None, "{outside}");
        }
    }

    #[test]
    fn forms_and_places() {
        let (prefix, start, method) =
            kind("GET", "/accounts/7/platform_api/Get%55sers/?x=1").unwrap();
        assert_eq!(prefix.as_deref(), Some("7"));
        assert_eq!(start, "/accounts/7".len());
        assert_eq!(method.as_deref(), Some("GetUsers"));
        assert_eq!(kind("GET", "/platform_api").unwrap().2, None);
        assert_eq!(kind("GET", "/platform_api/").unwrap().2, None);
        assert_eq!(kind("GET", "/other"), Err(ErrorKind::NotFound));
        let p = parts("GET", "/other%C2%9B/\u{9b}31m", Version::HTTP_11);
        let e = check(&p, &upstream()).unwrap_err();
        assert_eq!(
            e.msg,
            "/other%C2%9B/31m is not forwarded: only /platform_api and paths below it are (optionally behind /accounts/<id>/)"
        );
        assert_eq!(
            kind("CONNECT", "api.voximplant.com:443"),
            Err(ErrorKind::ConnectNotSupported)
        );
        assert!(kind("POST", "https://api.voximplant.com/platform_api").is_ok());
        assert!(kind("POST", "http://API.voximplant.com:80/platform_api").is_ok());
        assert!(kind("POST", "https://127.0.0.1:8443/platform_api").is_ok());
        for foreign in [
            "https://evil.example/platform_api",
            "https://api.voximplant.com:8443/platform_api",
            "ftp://api.voximplant.com/platform_api",
        ] {
            assert_eq!(kind("GET", foreign), Err(ErrorKind::OpenProxy), "{foreign}");
        }
        // HTTP/2's :authority is not an absolute-form target.
        let p = parts(
            "GET",
            "https://evil.example/platform_api/X/",
            Version::HTTP_2,
        );
        assert!(check(&p, &upstream()).is_ok());
    }

    #[test]
    fn paths_that_could_escape_are_bad_requests() {
        for bad in [
            "/platform_api/../secret",
            "/platform_api/%2e%2E/secret",
            "/platform_api/..%2fsecret",
            "/platform_api/GetAccountInfo/..%2FDelUser/",
            "/platform_api/a%5cb",
            "/platform_api/a%5Cb/",
            "/platform_api/.",
            "/accounts/5/platform_api/x/%2E/",
            "/platform_api/GetAccountInfo\\..\\DelUser/",
            "/platform_api/a\\b",
            "/platform_api/GetAccountInfo/..\\DelUser/",
            "/platform_api/GetAccountInfo\\",
        ] {
            assert_eq!(kind("GET", bad), Err(ErrorKind::BadRequest), "{bad}");
        }
        for good in [
            "/platform_api/a.b/",
            "/platform_api/x?path=..%2f",
            "/platform_api/%252F",
        ] {
            assert!(kind("GET", good).is_ok(), "{good}");
        }
    }

    #[test]
    fn method_names() {
        assert!(is_method_name("GetUsers"));
        assert!(is_method_name("Set_User2"));
        for bad in ["", " GetUsers", "1Get", "Get-Users", "DelUser\0"] {
            assert!(!is_method_name(bad), "{bad:?}");
        }
        assert!(!is_method_name(&"a".repeat(65)));
    }

    #[test]
    fn upstream_uri_keeps_the_raw_query_and_drops_legacy_credentials() {
        let u = upstream();
        let uri: Uri = "/accounts/5/platform_api/X/?a=1&api_key=s&b=%20"
            .parse()
            .unwrap();
        assert_eq!(
            upstream_uri(&uri, "/accounts/5".len(), &u)
                .unwrap()
                .to_string(),
            "https://127.0.0.1:8443/platform_api/X/?a=1&b=%20"
        );
        let uri: Uri = "/platform_api/X/?session_id=1".parse().unwrap();
        assert_eq!(
            upstream_uri(&uri, 0, &u).unwrap().to_string(),
            "https://127.0.0.1:8443/platform_api/X/"
        );
        let uri: Uri = "https://api.voximplant.com/platform_api?x=a+b"
            .parse()
            .unwrap();
        assert_eq!(
            upstream_uri(&uri, 0, &u).unwrap().to_string(),
            "https://127.0.0.1:8443/platform_api?x=a+b"
        );
    }
}
