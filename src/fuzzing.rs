//! The fuzz targets' property checks (`fuzz/`), one function per target, over everything that
//! parses untrusted input: the request target, the account rule and the JWTs it reads, API-method
//! detection in bodies, the credentials file and the clients file. Each takes the fuzzer's bytes,
//! runs them through the real code and panics when a promise of the contract breaks; an input
//! that does not make sense for a target is skipped, never an error. The corpus replay test
//! (`tests/it/fuzz_corpus.rs`) calls the same functions, so CI checks every saved input without
//! libFuzzer. Not part of voxproxy's API.

use std::borrow::Cow;
use std::collections::{HashSet, VecDeque};
use std::path::Path;
use std::pin::{Pin, pin};
use std::sync::LazyLock;
use std::task::{Context, Poll, Waker};

use aws_lc_rs::encoding::{AsDer as _, PublicKeyX509Der};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version, header};
use http_body::{Body as HttpBody, Frame};
use http_body_util::BodyExt as _;
use percent_encoding::percent_decode_str;

use crate::account::{self, AccountId, JwtIss, Requester, Rules};
use crate::body::{Body, BoxError};
use crate::config::{self, Upstream};
use crate::credentials::{self, Credentials};
use crate::error::ErrorKind;
use crate::gateway::auth;
use crate::gateway::clients::{self, ClientSet};
use crate::gateway::method::{self, BODY_WINDOW};
use crate::target::{self, API_ROOT};

/// The fuzzer's bytes, read front to back; past the end every read is zero or empty, so any
/// input is a valid one.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// The next `n` bytes (fewer at the end).
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }

    fn rest(self) -> &'a [u8] {
        self.0
    }
}

/// Whether a message holds a control character (it must print as one line).
fn has_control(msg: &str) -> bool {
    msg.chars().any(char::is_control)
}

// ---------------------------------------------------------------------------------------------
// target: the request target and the path checks

/// The upstream every check runs against.
static UPSTREAM: LazyLock<Upstream> = LazyLock::new(|| {
    config::parse_upstream("https://127.0.0.1:8443").expect("a valid upstream URL")
});

/// The contract's legacy credential parameters, written out again on purpose: the oracle must not
/// read `headers`' own list, or dropping a name there would go unnoticed.
const LEGACY: [&str; 7] = [
    "api_key",
    "account_password",
    "session_id",
    "admin_user_api_key",
    "admin_user_password",
    "parent_account_api_key",
    "parent_account_password",
];

/// What the contract says makes an API path 400, found another way than [`target::escape`]: a
/// `\`, a percent-encoded `/` or `\`, or a segment that decodes to `.` or `..`.
fn escapes(api_path: &str) -> Option<&'static str> {
    if api_path.contains('\\') {
        return Some("a `\\`");
    }
    let lower = api_path.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") {
        return Some("a percent-encoded separator");
    }
    api_path
        .split('/')
        .map(|seg| percent_decode_str(seg).collect::<Vec<u8>>())
        .any(|seg| seg == b"." || seg == b"..")
        .then_some("a dot segment")
}

/// Whether a query parameter is a legacy credential: its name, `+` as space and
/// percent-decoded, is one of [`LEGACY`] in any letter case.
fn is_legacy(pair: &str) -> bool {
    let name = pair.split('=').next().unwrap_or_default().replace('+', " ");
    let name: Vec<u8> = percent_decode_str(&name).collect();
    LEGACY
        .iter()
        .any(|l| l.as_bytes().eq_ignore_ascii_case(&name))
}

/// The query the upstream must get: every parameter but the legacy credentials, byte for byte
/// and in order; no `?` at all when every one was removed.
fn expected_query(query: Option<&str>) -> Option<String> {
    let query = query?;
    if !query.split('&').any(is_legacy) {
        return Some(query.to_owned());
    }
    let kept: Vec<&str> = query.split('&').filter(|p| !is_legacy(p)).collect();
    let kept = kept.join("&");
    (!kept.is_empty()).then_some(kept)
}

/// A refused target has the contract's cause for its refusal, and a message without controls.
fn refused_for_its_cause(
    e: &crate::error::ProxyError,
    parts: &http::request::Parts,
    split: Option<(Option<&str>, &str)>,
) {
    let path = parts.uri.path();
    match e.kind {
        ErrorKind::ConnectNotSupported => assert_eq!(parts.method, Method::CONNECT),
        ErrorKind::OpenProxy => {
            assert!(parts.version != Version::HTTP_2 && parts.uri.authority().is_some());
        }
        ErrorKind::NotFound => assert_eq!(split, None, "404 for {path:?}"),
        ErrorKind::BadRequest => {
            let (_, api_path) = split.expect("400 only for a path under /platform_api");
            assert!(escapes(api_path).is_some(), "400 for a sound path {path:?}");
        }
        other => panic!("the target check answered {other:?} for {path:?}"),
    }
    assert!(!has_control(&e.msg), "{:?}", e.msg);
}

/// The request target check, the API method from the path and the upstream URI.
///
/// Input: one byte of flags (bits 0-1 the method: GET, POST, CONNECT, DELETE; bit 2 HTTP/2),
/// then the request target. Asserts that a target is forwarded exactly when the contract says
/// (never a path with a `\`, an encoded separator or a dot segment, never for a foreign host,
/// never `CONNECT`), that each refusal has its reason, that the method read from the path is its
/// decoded segment, and that the upstream URI keeps the API path and drops exactly the legacy
/// credential parameters.
pub fn target(data: &[u8]) {
    let mut input = Input(data);
    let flags = input.byte();
    let Ok(uri) = Uri::try_from(input.rest()) else {
        return;
    };
    let method = match flags & 3 {
        0 => Method::GET,
        1 => Method::POST,
        2 => Method::CONNECT,
        _ => Method::DELETE,
    };
    let version = if flags & 4 != 0 {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    };
    let Ok(request) = Request::builder()
        .method(method.clone())
        .uri(uri)
        .version(version)
        .body(())
    else {
        return;
    };
    let (parts, ()) = request.into_parts();
    let upstream = &*UPSTREAM;
    let path = parts.uri.path();
    let split = target::split_account_prefix(path);
    let checked = match target::check(&parts, upstream) {
        Ok(checked) => checked,
        Err(e) => return refused_for_its_cause(&e, &parts, split),
    };
    assert_ne!(method, Method::CONNECT);
    if version != Version::HTTP_2
        && let Some(authority) = parts.uri.authority()
    {
        let host = authority.host().to_ascii_lowercase();
        assert!(
            host == "api.voximplant.com" || host == upstream.host,
            "an open proxy for {authority}"
        );
    }
    let api_path = &path[checked.api_start..];
    assert_eq!(split, Some((checked.prefix_account, api_path)));
    assert!(api_path == API_ROOT || api_path.starts_with("/platform_api/"));
    match checked.prefix_account {
        Some(id) => assert_eq!(path[..checked.api_start], format!("/accounts/{id}")),
        None => assert_eq!(checked.api_start, 0),
    }
    if let Some(why) = escapes(api_path) {
        panic!("{path:?} is forwarded, but it holds {why}");
    }
    let segment = api_path
        .strip_prefix("/platform_api/")
        .and_then(|rest| rest.split('/').next())
        .filter(|seg| !seg.is_empty());
    let want = segment.and_then(|s| percent_decode_str(s).decode_utf8().ok());
    assert_eq!(checked.method.as_deref(), want.as_deref(), "{path:?}");
    let out = target::upstream_uri(&parts.uri, checked.api_start, upstream)
        .unwrap_or_else(|e| panic!("no upstream URI for the checked {path:?}: {}", e.msg));
    assert_eq!(out.scheme(), Some(&upstream.scheme));
    assert_eq!(out.authority(), Some(&upstream.authority));
    assert_eq!(out.path(), api_path);
    assert_eq!(
        out.query(),
        expected_query(parts.uri.query()).as_deref(),
        "the query of {}",
        parts.uri
    );
}

// ---------------------------------------------------------------------------------------------
// account: the account rule, the unverified iss, the app JWT's claims and client authentication

/// The time the claims are checked at.
const NOW: i64 = 1_800_000_000;
/// The static key of the `keyed` client.
const STATIC_KEY: &str = "vxp_fuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzzfuz";

/// A client set with an app JWT client (`kid` `app`; its private key is thrown away, so no
/// fuzzer input can sign for it) and a static-key client.
static CLIENTS: LazyLock<ClientSet> = LazyLock::new(|| {
    let pair =
        aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("an RSA key");
    let spki: PublicKeyX509Der = pair.public_key().as_der().expect("its SPKI");
    let text = format!(
        "[clients.app]\nkey_id = \"app\"\npublic_key = \"\"\"{}\"\"\"\n\n[clients.keyed]\nstatic_key_sha256 = \"{}\"\n",
        credentials::pem_encode("PUBLIC KEY", spki.as_ref()),
        clients::static_key_sha256(STATIC_KEY),
    );
    ClientSet::parse(Path::new("clients.toml"), &text, None).expect("the fuzz clients file")
});

fn id(n: u64) -> AccountId {
    AccountId::new(n).expect("a positive id")
}

/// The contract's account id: 1 to 19 ASCII digits naming a positive number.
fn parse_id(raw: &str) -> Option<AccountId> {
    let digits = !raw.is_empty() && raw.len() <= 19 && raw.bytes().all(|b| b.is_ascii_digit());
    digits
        .then(|| raw.parse::<u64>().ok())
        .flatten()
        .and_then(AccountId::new)
}

/// The account a JWT claim names: `Ok(None)` when absent or neither a number nor a string,
/// `Err` when it is one but not an account id.
fn claim_id(claim: Option<&serde_json::Value>) -> Result<Option<AccountId>, ()> {
    match claim {
        Some(serde_json::Value::Number(n)) => {
            n.as_u64().and_then(AccountId::new).map(Some).ok_or(())
        }
        Some(serde_json::Value::String(s)) => parse_id(s).map(Some).ok_or(()),
        _ => Ok(None),
    }
}

/// The `iss` of an unsigned JWT whose payload is `payload`, as the contract reads it.
fn payload_iss(payload: &[u8]) -> Result<Option<AccountId>, ()> {
    match serde_json::from_slice::<serde_json::Value>(payload) {
        Ok(serde_json::Value::Object(claims)) => claim_id(claims.get("iss")),
        _ => Ok(None),
    }
}

/// A header value if the bytes make one.
fn value(bytes: &[u8]) -> Option<HeaderValue> {
    HeaderValue::from_bytes(bytes).ok()
}

/// The account rule ([`Rules::choose`], [`Rules::check_allowed`]), the unverified `iss`
/// ([`account::iss_of`]), the app JWT's claim checks and client authentication.
///
/// Input: one byte of flags, then up to four fields separated by `\n`: the path prefix's id,
/// the account header, the `Authorization` value (or, with flag bit 3, the JSON payload of a JWT
/// built around it) and `Proxy-Authorization`. Flags: bit 0 a prefix, bit 1 the account
/// header, bit 2 spell it with `_`, bits 4-5 how the JWT counts (unverified, verified without
/// and with an `iss`, ignored), bit 6 a client default account, bit 7 `Proxy-Authorization`.
/// Asserts the contract's order of sources and its id syntax, that refusals are 400
/// `bad_account` on one line, that `allowed_accounts` is applied, that the claims pass exactly
/// when not expired, at most 60 s ahead and living at most 3600 s, and that no input
/// authenticates but the static key.
pub fn account(data: &[u8]) {
    let mut input = Input(data);
    let flags = input.byte();
    let mut fields = input.rest().split(|b| *b == b'\n');
    let prefix_raw = fields.next().unwrap_or_default();
    let header_raw = fields.next().unwrap_or_default();
    let auth_raw = fields.next().unwrap_or_default();
    let proxy_raw = fields.next().unwrap_or_default();

    let rules = Rules {
        header: HeaderName::from_static("x-voximplant-account-id"),
        allowed: Some([1, 5, 7].into_iter().map(id).collect()),
    };
    let prefix = (flags & 1 != 0).then(|| String::from_utf8_lossy(prefix_raw).into_owned());
    let mut headers = HeaderMap::new();
    let account_header = (flags & 2 != 0).then(|| value(header_raw)).flatten();
    if let Some(v) = &account_header {
        let name = if flags & 4 != 0 {
            "x_voximplant_account_id"
        } else {
            "x-voximplant-account-id"
        };
        headers.insert(HeaderName::from_static(name), v.clone());
    }
    let built_jwt = flags & 8 != 0;
    let authorization = if built_jwt {
        let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        value(format!("Bearer e30.{}.sig", enc.encode(auth_raw)).as_bytes())
    } else {
        value(auth_raw)
    };
    if let Some(v) = &authorization {
        headers.insert(header::AUTHORIZATION, v.clone());
    }
    let who = requester(flags);
    let fallback = id(1);

    let iss = unverified_iss(authorization.as_ref(), auth_raw, built_jwt);

    let want = expected_account(
        prefix.as_deref(),
        account_header.as_ref(),
        &iss,
        who,
        fallback,
    );
    match rules.choose(prefix.as_deref(), &headers, who, fallback) {
        Ok(account) => {
            assert_eq!(Ok(account), want);
            assert_eq!(AccountId::parse(&account.to_string()), Some(account));
            let allowed = [1, 5, 7].contains(&account.get());
            assert_eq!(rules.check_allowed(account).is_ok(), allowed, "{account}");
        }
        Err(e) => {
            assert_eq!(want, Err(()), "refused: {}", e.msg);
            assert_eq!(e.kind, ErrorKind::BadAccount);
            assert!(!has_control(&e.msg), "{:?}", e.msg);
        }
    }

    claims(auth_raw);
    if flags & 128 != 0
        && let Some(v) = value(proxy_raw)
    {
        headers.insert(header::PROXY_AUTHORIZATION, v);
    }
    let token = built_jwt
        .then(|| {
            authorization
                .as_ref()
                .and_then(crate::headers::bearer_token)
        })
        .flatten();
    only_the_static_key_authenticates(&headers, token);
}

/// Client authentication: only the static key gets in (nobody holds the app's key), and a
/// refusal never echoes the key or `built_token`.
fn only_the_static_key_authenticates(headers: &HeaderMap, built_token: Option<&str>) {
    let proxy = headers.get(header::PROXY_AUTHORIZATION).cloned();
    match auth::authenticate_at(&CLIENTS, headers, None, NOW) {
        Ok(identity) => {
            assert!(proxy.is_some(), "authenticated without the static key");
            assert_eq!(&*identity.client.name, "keyed");
            assert_eq!(identity.jwt, JwtIss::Ignored);
        }
        Err(refusal) => {
            assert!(
                proxy
                    .as_ref()
                    .is_none_or(|v| v.as_bytes() != format!("Bearer {STATIC_KEY}").as_bytes()),
                "the static key was refused"
            );
            assert!(!refusal.msg.is_empty() && !has_control(&refusal.msg));
            assert!(!refusal.msg.contains(STATIC_KEY));
            // A built JWT (`e30.<payload>.sig`) cannot appear in a message by chance; a raw
            // value might spell out words of one.
            if let Some(token) = built_token {
                assert!(!refusal.msg.contains(token), "{}", refusal.msg);
            }
        }
    }
}

/// Who asks, by flags bits 4-5 (how the JWT counts: unverified, verified without and with an
/// `iss`, ignored) and bit 6 (a client default account).
fn requester(flags: u8) -> Requester {
    let jwt = match (flags >> 4) & 3 {
        0 => JwtIss::Unverified,
        1 => JwtIss::Verified(None),
        2 => JwtIss::Verified(Some(id(7))),
        _ => JwtIss::Ignored,
    };
    Requester {
        jwt,
        default: (flags & 64 != 0).then(|| id(9)),
    }
}

/// The account the contract's order of sources gives: the first one that names one.
fn expected_account(
    prefix: Option<&str>,
    account_header: Option<&HeaderValue>,
    iss: &Result<Option<AccountId>, String>,
    who: Requester,
    fallback: AccountId,
) -> Result<AccountId, ()> {
    // The account: the first source that names one, in the contract's order.
    let named: Option<Result<AccountId, ()>> = match (prefix, account_header) {
        (Some(p), _) => Some(parse_id(p.trim()).ok_or(())),
        (None, Some(v)) => Some(v.to_str().ok().and_then(|s| parse_id(s.trim())).ok_or(())),
        (None, None) => None,
    };
    match named {
        Some(named) => named,
        None => match who.jwt {
            JwtIss::Unverified => iss.clone().map_err(drop),
            JwtIss::Verified(iss) => Ok(iss),
            JwtIss::Ignored => Ok(None),
        }
        .map(|iss| iss.or(who.default).unwrap_or(fallback)),
    }
}

/// The unverified iss: what the contract reads of a JWT built around the payload `auth_raw`.
fn unverified_iss(
    authorization: Option<&HeaderValue>,
    auth_raw: &[u8],
    built_jwt: bool,
) -> Result<Option<AccountId>, String> {
    let iss = account::iss_of(authorization);
    if built_jwt && authorization.is_some() && auth_raw.len() <= 12 * 1024 {
        assert_eq!(
            iss.clone().map_err(drop),
            payload_iss(auth_raw),
            "iss of {auth_raw:?}"
        );
    }
    if matches!(iss, Ok(Some(_))) {
        let token = authorization
            .and_then(crate::headers::bearer_token)
            .expect("an iss comes from a Bearer token");
        assert_eq!(token.matches('.').count(), 2, "{token:?}");
    }
    iss
}

/// A NumericDate as the contract reads it, widened so the checks below cannot overflow.
fn date(v: Option<&serde_json::Value>) -> Option<i128> {
    let v = v?;
    v.as_i64()
        .or_else(|| {
            v.as_f64()
                .filter(|f| f.is_finite())
                .map(|f| f.floor() as i64)
        })
        .map(i128::from)
}

/// The app JWT's claim checks ([`auth::check_claims`]) on `payload`, if it is a JSON object.
fn claims(payload: &[u8]) {
    let Ok(serde_json::Value::Object(claims)) = serde_json::from_slice(payload) else {
        return;
    };
    let now = i128::from(NOW);
    let want: Result<Option<AccountId>, &str> =
        match (date(claims.get("iat")), date(claims.get("exp"))) {
            (Some(iat), Some(exp)) => {
                if exp <= now {
                    Err("expired")
                } else if iat > now + 60 {
                    Err("iat_in_future")
                } else if exp - iat > 3600 {
                    Err("lifetime_too_long")
                } else {
                    claim_id(claims.get("iss")).map_err(|()| "bad_iss")
                }
            }
            _ => Err("bad_jwt"),
        };
    match auth::check_claims(&claims, NOW) {
        Ok((account, exp)) => {
            assert_eq!(Ok(account), want, "{claims:?}");
            assert_eq!(Some(i128::from(exp)), date(claims.get("exp")));
        }
        Err((reason, msg)) => {
            assert_eq!(Err(reason), want, "{claims:?}");
            assert!(!has_control(&msg), "{msg:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// method: API-method detection in bodies

/// A body of ready chunks that, like hyper's, knows it has ended once the last is taken.
struct Chunks(VecDeque<Bytes>);

impl HttpBody for Chunks {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
}

/// The output of a future that never waits (its body's chunks are all there).
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("detection waited on a body whose chunks are all there"),
    }
}

/// What detection says (the method, or the refusal's kind) and the bytes it forwards.
fn detect(
    parts: &http::request::Parts,
    chunks: Vec<Bytes>,
    window: usize,
) -> (Result<Option<String>, ErrorKind>, Vec<u8>) {
    let body: Body = Chunks(chunks.into()).boxed_unsync();
    let detected = ready(method::detect_within(parts, None, body, window));
    let bytes = ready(detected.body.collect())
        .expect("ready chunks do not fail")
        .to_bytes();
    (detected.method.map_err(|e| e.kind), bytes.to_vec())
}

/// What detection must say of a body read whole: the one method its `cmd`s name (ignoring
/// case), or 403 when they differ.
fn agreed(cmds: &[String]) -> Result<Option<String>, ErrorKind> {
    match cmds.first() {
        None => Ok(None),
        Some(first) if cmds.iter().all(|c| c.eq_ignore_ascii_case(first)) => {
            Ok(Some(first.clone()))
        }
        Some(_) => Err(ErrorKind::ClientForbidden),
    }
}

/// The body's content type, by flags bits 0-1: urlencoded, multipart with boundary `b`, with a
/// fuzzed boundary, or fuzzed whole. `None` when it is not a header value.
fn content_type(flags: u8, input: &mut Input<'_>) -> Option<HeaderValue> {
    let content_type: Cow<'_, str> = match flags & 3 {
        0 => "application/x-www-form-urlencoded".into(),
        1 => "multipart/form-data; boundary=b".into(),
        2 => {
            let n = input.byte();
            let boundary = String::from_utf8_lossy(input.take(n.into()));
            format!("multipart/form-data; boundary={boundary}").into()
        }
        _ => {
            let n = input.byte();
            String::from_utf8_lossy(input.take(n.into()))
                .into_owned()
                .into()
        }
    };
    HeaderValue::from_str(&content_type).ok()
}

/// `whole` cut at the fuzzed offsets (each taken modulo its length + 1, sorted): the offsets and
/// the chunks.
fn split(whole: &Bytes, cuts: &[u16]) -> (Vec<usize>, Vec<Bytes>) {
    let mut offsets: Vec<usize> = cuts
        .iter()
        .map(|c| usize::from(*c) % (whole.len() + 1))
        .collect();
    offsets.sort_unstable();
    let mut chunks = Vec::with_capacity(offsets.len() + 1);
    let mut start = 0;
    for &cut in &offsets {
        chunks.push(whole.slice(start..cut));
        start = cut;
    }
    chunks.push(whole.slice(start..));
    (offsets, chunks)
}

/// API-method detection ([`method::detect`]) over urlencoded and multipart bodies.
///
/// Input: one byte of flags (bits 0-1 the content type: urlencoded, multipart with boundary
/// `b`, multipart with a boundary from the input, any content type from the input; bit 2 a
/// window as long as the first cut's offset instead of 64 KiB, so its edge falls inside the
/// body), a count of cuts (0 to 8) and that many 16-bit offsets, the boundary or content type
/// as a length byte and bytes when the flags want one, then the body. Asserts that the body is forwarded byte for byte; that the method found does
/// not depend on where the body was split into chunks; that a body read whole names exactly the
/// method its `cmd`s agree on; and that data cut anywhere (as by the window's edge) never yields
/// a `cmd` the whole body does not have in the same place: a method name cut short is never read
/// as a complete, shorter one.
pub fn method(data: &[u8]) {
    let mut input = Input(data);
    let flags = input.byte();
    let count = input.byte() % 9;
    let cuts: Vec<u16> = (0..count).map(|_| input.u16()).collect();
    let Some(content_type) = content_type(flags, &mut input) else {
        return;
    };
    let whole = Bytes::copy_from_slice(input.rest());
    // The real window is 64 KiB; a small one puts its edge anywhere in a small body, at the
    // same code.
    let window = if flags & 4 != 0 {
        cuts.first()
            .map_or(0, |c| usize::from(*c) % (whole.len() + 2))
    } else {
        BODY_WINDOW
    };
    let (mut parts, ()) = Request::post("/platform_api")
        .body(())
        .expect("a valid request")
        .into_parts();
    parts.headers.insert(header::CONTENT_TYPE, content_type);
    let form = method::form_kind(&parts.headers);
    let (offsets, chunks) = split(&whole, &cuts);

    let (one, forwarded) = detect(&parts, vec![whole.clone()], window);
    assert!(forwarded == whole, "the body changed on its way");
    let (split, forwarded) = detect(&parts, chunks, window);
    assert!(forwarded == whole, "the split body changed on its way");

    let Some(form) = form else {
        assert_eq!(one, Ok(None));
        assert_eq!(split, Ok(None));
        return;
    };
    let full = method::cmds_of(&form, &whole, true);
    if whole.len() < window {
        // Read whole: exactly what the cmds agree on, however the body came.
        assert_eq!(one, agreed(&full), "one chunk");
        assert_eq!(split, agreed(&full), "split at {offsets:?}");
    } else {
        // Cut by the window: never a method the whole body does not name first, never a 403
        // the whole body would not get.
        for got in [&one, &split] {
            match got {
                Ok(None) => {}
                Ok(Some(m)) => assert_eq!(full.first(), Some(m), "window read {m:?}"),
                Err(kind) => assert_eq!(Err(*kind), agreed(&full)),
            }
        }
    }
    // Cut anywhere, the cmds read are the whole body's first ones.
    let cut_at: Vec<usize> = if whole.len() <= 64 {
        (0..=whole.len()).collect()
    } else {
        offsets
            .iter()
            .copied()
            .chain([window.min(whole.len())])
            .collect()
    };
    for cut in cut_at {
        let partial = method::cmds_of(&form, &whole[..cut], false);
        assert!(
            full.starts_with(&partial),
            "cut at {cut}: {partial:?}, whole: {full:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// credentials and clients files

/// The lines of `private_key` strings anywhere in a JSON document that look like key material
/// (16 or more base64 characters): what must never be printed.
fn key_lines(v: &serde_json::Value) -> Vec<&str> {
    let mut keys = Vec::new();
    private_keys(v, &mut keys);
    keys.iter()
        .flat_map(|k| k.lines())
        .map(str::trim)
        .filter(|l| {
            l.len() >= 16
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
        })
        .collect()
}

/// The `private_key` strings anywhere in a JSON document.
fn private_keys<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match v {
                    serde_json::Value::String(s) if k == "private_key" => out.push(s),
                    v => private_keys(v, out),
                }
            }
        }
        serde_json::Value::Array(list) => list.iter().for_each(|v| private_keys(v, out)),
        _ => {}
    }
}

/// The credentials file ([`Credentials::parse`]).
///
/// Input: the file's bytes. Asserts that an error is one line naming the file and never holds
/// the private key; that loaded credentials have an RSA key of at least 2048 bits, a key id
/// without control characters, and the account id the file gives (at the top level or in a
/// `CreateKey` answer's `result`); and that their `Debug` shows no key.
pub fn credentials(data: &[u8]) {
    let path = Path::new("/etc/voxproxy/credentials.json");
    let json = serde_json::from_slice::<serde_json::Value>(data).ok();
    match Credentials::parse(path, data) {
        Ok(c) => {
            let json = json.expect("loaded, so JSON");
            assert!(c.key.bits() >= credentials::MIN_RSA_BITS);
            assert!(!c.key_id.is_empty() && !c.key_id.chars().any(|c| c.is_ascii_control()));
            let places = [
                json.get("account_id"),
                json.get("result").and_then(|r| r.get("account_id")),
                json.pointer("/result/0/account_id"),
            ];
            assert!(
                places
                    .iter()
                    .any(|p| AccountId::from_json(*p) == Ok(Some(c.account_id))),
                "account {} is not the file's",
                c.account_id
            );
            // The key id is the file's to choose (it may copy a line of the key): leave it out.
            let shown = format!("{c:?}").replace(&*c.key_id, "");
            assert!(!shown.contains("PRIVATE KEY"), "{shown}");
            for line in key_lines(&json) {
                assert!(!shown.contains(line), "Debug shows the key: {shown}");
            }
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.starts_with("credentials file /etc/voxproxy/credentials.json"),
                "{msg}"
            );
            assert!(!has_control(&msg), "{msg:?}");
            for line in json.as_ref().map(key_lines).unwrap_or_default() {
                assert!(!msg.contains(line), "the error shows the key: {msg}");
            }
        }
    }
}

/// The clients file ([`ClientSet::from_read`], [`ClientSet::parse`]).
///
/// Input: the file's bytes. Asserts that an error is exactly one line naming the file; that a
/// loaded set holds only valid, distinct (ignoring case) names, each client with a way to
/// authenticate; and that loading the same text again with the loaded set as the previous one
/// gives the same clients and carries their rate limits over.
pub fn clients(data: &[u8]) {
    let path = Path::new("/etc/voxproxy/clients.toml");
    let set = match ClientSet::from_read(path, Ok(data.to_vec()), None) {
        Ok(set) => set,
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.starts_with("clients file /etc/voxproxy/clients.toml: "),
                "{msg}"
            );
            assert!(!has_control(&msg), "not one line: {msg:?}");
            return;
        }
    };
    let mut names = HashSet::new();
    for client in &set.clients {
        assert_eq!(clients::check_name(&client.name), Ok(()));
        assert!(
            names.insert(client.name.to_ascii_lowercase()),
            "{}",
            client.name
        );
        let auth = &client.auth;
        assert!(
            auth.key_id.is_some() || auth.static_key_sha256.is_some() || auth.tls_name.is_some()
        );
        assert_eq!(auth.key_id.is_some(), auth.jwt_key.is_some());
        assert!(!has_control(&client.describe_policy()));
    }
    assert!(!has_control(&set.summary()));
    let text = std::str::from_utf8(data).expect("loaded, so UTF-8");
    let again = ClientSet::parse(path, text, Some(&set)).expect("the same text loads again");
    assert_eq!(again.clients.len(), set.clients.len());
    for (a, b) in set.clients.iter().zip(&again.clients) {
        assert_eq!(a.name, b.name);
        match (a.limit(), b.limit()) {
            (Some(a), Some(b)) => assert!(std::sync::Arc::ptr_eq(a, b), "the limit was not kept"),
            (None, None) => {}
            _ => panic!("a rate appeared or vanished"),
        }
    }
}
