//! One request, end to end: admin paths, target checks, client authentication (gateway mode), the
//! account, the token, the rewrite, the streamed forward, and the answer. Every refusal is a
//! [`ProxyError`] turned into a response by [`error_response`]; every request ends in exactly one
//! access-log line and one count, written when its response body finishes.

use std::collections::HashSet;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use base64::Engine as _;
use bytes::Bytes;
use http::header::{self, HeaderName};
use http::uri::{PathAndQuery, Uri};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt as _;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use tracing::Instrument as _;

use crate::config::{Settings, Upstream, parse_account_id};
use crate::credentials::Credentials;
use crate::error::{ErrorKind, ProxyError, error_response};
use crate::gateway::{self, Gateway};
use crate::headers::{self, REQUEST_ID};
use crate::metrics::{Metrics, RequestLabels};
use crate::token::TokenCache;
use crate::upstream;

/// Errors inside bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of every request and response voxproxy makes.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A body holding `bytes`.
pub fn full_body(bytes: Bytes) -> Body {
    http_body_util::Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// The base path every forwarded request lives under.
const API_ROOT: &str = "/platform_api";
/// How much of a refused upload is read so the client sees the answer instead of a reset.
const DRAIN_LIMIT: u64 = 1 << 20;
/// How long draining a refused upload may take.
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// The credentials in force; replaced whole on reload.
#[derive(Debug)]
pub struct CredentialSet {
    /// In settings order; the first is the default account and signs for child accounts.
    pub list: Vec<Credentials>,
}

impl CredentialSet {
    /// The default account (the first file's).
    pub fn default_account(&self) -> u64 {
        self.list.first().map_or(0, |c| c.account_id)
    }
}

/// What a connection tells its requests.
#[derive(Debug, Clone, Default)]
pub struct ConnInfo {
    /// Serve `/healthz`, `/readyz`, `/metrics` here.
    pub admin: bool,
    /// Forward API requests from here (false on the admin listener).
    pub proxy: bool,
    /// The verified TLS client certificate, when the client sent one.
    pub peer_cert: Option<Arc<rustls_pki_types::CertificateDer<'static>>>,
}

/// Everything a request needs, shared by all connections.
pub struct Proxy {
    upstream: Upstream,
    account_header: HeaderName,
    allowed_accounts: Option<HashSet<u64>>,
    max_body_bytes: u64,
    request_timeout: Duration,
    client: upstream::Clients,
    /// The credentials in force (reload swaps them).
    pub credentials: Arc<ArcSwap<CredentialSet>>,
    /// Per-account tokens.
    pub tokens: TokenCache,
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
    /// Gateway clients, when configured (reload swaps them).
    pub gateway: Option<Arc<Gateway>>,
    /// Set once shutdown starts (`/readyz` turns 503).
    pub shutting_down: AtomicBool,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}

/// Per-request facts for the access log and metrics.
#[derive(Default)]
struct Facts {
    account: Option<u64>,
    api_method: Option<String>,
    client: Option<Arc<str>>,
    error: Option<ErrorKind>,
    upstream: Option<Duration>,
    bytes_in: Arc<AtomicU64>,
}

impl Proxy {
    /// Assemble the proxy from validated parts.
    pub fn new(
        settings: &Settings,
        client: upstream::Clients,
        credentials: Arc<ArcSwap<CredentialSet>>,
        tokens: TokenCache,
        metrics: Arc<Metrics>,
        gateway: Option<Arc<Gateway>>,
    ) -> Proxy {
        Proxy {
            upstream: settings.upstream.clone(),
            account_header: settings.account_header.clone(),
            allowed_accounts: settings
                .allowed_accounts
                .as_ref()
                .map(|v| v.iter().copied().collect()),
            max_body_bytes: settings.max_body_bytes,
            request_timeout: settings.request_timeout,
            client,
            credentials,
            tokens,
            metrics,
            gateway,
            shutting_down: AtomicBool::new(false),
        }
    }

    /// Whether `/readyz` says ready: every credentials file has minted and we are not stopping.
    pub fn ready(&self) -> bool {
        !self.shutting_down.load(Ordering::Relaxed) && self.tokens.ready()
    }

    /// Handle one request. Never fails: every error is a response.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        conn: Arc<ConnInfo>,
    ) -> Result<Response<Body>, Infallible> {
        let start = Instant::now();
        let request_id = headers::request_id(req.headers());
        let span = tracing::info_span!("request", request_id = request_id.to_str().unwrap_or("-"),);
        let method = req.method().clone();
        // The query may hold legacy credentials: logs get the path alone.
        let path: Box<str> = req.uri().path().into();

        if conn.admin && crate::admin::is_admin_path(req.uri().path()) {
            let mut resp = crate::admin::handle(&self, &req);
            resp.headers_mut().insert(REQUEST_ID, request_id);
            return Ok(resp);
        }

        self.metrics.in_flight.inc();
        let mut facts = Facts::default();
        let req = req.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed_unsync());
        let result = if conn.proxy {
            self.forward(req, &conn, &request_id, &mut facts)
                .instrument(span.clone())
                .await
        } else {
            Err((
                ProxyError::new(
                    ErrorKind::NotFound,
                    "this listener serves only /healthz, /readyz and /metrics",
                ),
                Some(req),
            ))
        };
        let mut resp = match result {
            Ok(resp) => resp,
            Err((err, req)) => {
                facts.error = Some(err.kind);
                let _enter = span.enter();
                if err.kind.status().is_server_error() {
                    tracing::warn!(kind = err.kind.as_str(), error = %err.chain(), "request failed");
                } else {
                    tracing::info!(kind = err.kind.as_str(), error = %err.chain(), "request refused");
                }
                if let Some(req) = req {
                    drain(req).await;
                }
                error_response(&err)
            }
        };
        headers::strip_hop_by_hop(resp.headers_mut());
        resp.headers_mut().insert(REQUEST_ID, request_id);
        let status = resp.status();
        let finish = Finish {
            proxy: self.clone(),
            span,
            start,
            method,
            path,
            status,
            facts,
            bytes_out: 0,
        };
        Ok(resp.map(|body| {
            Tracked {
                inner: body,
                finish: Some(finish),
            }
            .boxed_unsync()
        }))
    }

    /// Check, rewrite and forward. On refusal, hands the request back so its body can be drained.
    async fn forward(
        &self,
        mut req: Request<Body>,
        conn: &ConnInfo,
        request_id: &http::HeaderValue,
        facts: &mut Facts,
    ) -> Result<Response<Body>, (ProxyError, Option<Request<Body>>)> {
        macro_rules! refuse {
            ($err:expr) => {
                return Err(($err, Some(req)))
            };
        }

        // 1. Target form.
        if req.method() == Method::CONNECT {
            refuse!(ProxyError::new(
                ErrorKind::ConnectNotSupported,
                "CONNECT is not supported: voxproxy is a reverse proxy; use http://<voxproxy>/platform_api as the API base URL instead of an HTTPS proxy"
            ));
        }
        // HTTP/2's :scheme and :authority play the part of Host, not of an absolute-form target.
        if req.version() != Version::HTTP_2
            && req.uri().authority().is_some()
            && !self.target_allowed(req.uri())
        {
            refuse!(ProxyError::new(
                ErrorKind::OpenProxy,
                format!(
                    "absolute-form target for another host: voxproxy forwards only to {}",
                    self.upstream
                )
            ));
        }
        let (prefix_account, api_start) = match split_account_prefix(req.uri().path()) {
            Some((account, rest)) => (
                account.map(str::to_owned),
                req.uri().path().len() - rest.len(),
            ),
            None => refuse!(not_found(req.uri().path())),
        };
        let api_path = &req.uri().path()[api_start..];
        if has_dot_segment(api_path) {
            refuse!(ProxyError::new(
                ErrorKind::BadRequest,
                "the path holds `.` or `..` segments"
            ));
        }
        facts.api_method = api_method_from_path(api_path)
            .or_else(|| req.uri().query().and_then(gateway::method::cmd_from_query));

        // 2. Client authentication (gateway mode).
        let identity = match &self.gateway {
            None => None,
            Some(gw) => {
                match gw.authenticate(req.headers(), conn.peer_cert.as_deref(), &self.metrics) {
                    Ok(id) => {
                        facts.client = Some(id.client.name.clone());
                        Some(id)
                    }
                    Err(e) => refuse!(e),
                }
            }
        };

        // 3. The account.
        let account = {
            let wanted = match prefix_account.as_deref() {
                Some(raw) => Some(raw),
                None => headers::account_header_value(req.headers(), &self.account_header)
                    .map(|v| v.to_str().unwrap_or("\u{0}")),
            };
            let parsed = match wanted {
                Some(raw) => match parse_account_id(raw.trim()) {
                    Some(id) => id,
                    None => refuse!(bad_account(raw)),
                },
                None => {
                    let from_jwt = match &identity {
                        Some(id) => Ok(id.jwt_account),
                        None => bearer_iss(req.headers()),
                    };
                    match from_jwt {
                        Ok(Some(id)) => id,
                        Ok(None) => match &identity {
                            Some(id) => id
                                .client
                                .default_account(self.credentials.load().default_account()),
                            None => self.credentials.load().default_account(),
                        },
                        Err(raw) => refuse!(bad_account(&raw)),
                    }
                }
            };
            facts.account = Some(parsed);
            if let Some(allowed) = &self.allowed_accounts
                && !allowed.contains(&parsed)
            {
                refuse!(ProxyError::new(
                    ErrorKind::AccountNotAllowed,
                    format!("account {parsed} is not in allowed_accounts")
                ));
            }
            parsed
        };

        // 4. Client policy: account, method, rate.
        if let Some(id) = &identity {
            let default_account = self.credentials.load().default_account();
            if let Err(e) = id.client.check_account(account, default_account) {
                self.metrics.policy_refusal("account", &id.client.name);
                refuse!(e);
            }
            if id.client.has_method_rules() {
                let (parts, body) = req.into_parts();
                let found = gateway::method::detect(&parts, body).await;
                req = Request::from_parts(parts, found.body);
                // Two places naming different methods is a method refusal too.
                let checked = found
                    .method
                    .and_then(|m| id.client.check_method(m.as_deref()).map(|()| m));
                let method = match checked {
                    Ok(m) => m,
                    Err(e) => {
                        self.metrics.policy_refusal("method", &id.client.name);
                        refuse!(e);
                    }
                };
                if facts.api_method.is_none() {
                    facts.api_method = method;
                }
            }
            if let Err(e) = id.client.check_rate() {
                self.metrics.policy_refusal("rate", &id.client.name);
                refuse!(e);
            }
        }

        // 5. Body size known up front.
        if let Some(len) = content_length(req.headers())
            && len > self.max_body_bytes
            && !req.headers().contains_key(header::TRANSFER_ENCODING)
        {
            refuse!(too_large(self.max_body_bytes));
        }

        // 6. The token (from the cache; a signature only on a cold or expired account).
        let token = match self.tokens.get(account).await {
            Ok(t) => t,
            Err(e) => refuse!(ProxyError::new(
                ErrorKind::TokenUnavailable,
                format!("no valid token can be minted for account {account}; check the credentials and the logs")
            )
            .with_source(e)),
        };

        // 7. Rewrite.
        let uri = match self.upstream_uri(req.uri(), api_start) {
            Ok(uri) => uri,
            Err(e) => refuse!(e),
        };
        let (mut parts, body) = req.into_parts();
        headers::strip_request(&mut parts.headers, &self.account_header);
        parts
            .headers
            .insert(header::AUTHORIZATION, token.authorization().clone());
        parts.headers.insert(REQUEST_ID, request_id.clone());
        parts.uri = uri;
        // The upstream connection decides its own version (ALPN); asking hyper-util for HTTP/2 on
        // an HTTP/1.1 connection would fail.
        parts.version = Version::HTTP_11;
        let too_large_flag = Arc::new(AtomicBool::new(false));
        let body = Limited {
            inner: body,
            seen: 0,
            limit: self.max_body_bytes,
            bytes: facts.bytes_in.clone(),
            too_large: too_large_flag.clone(),
        }
        .boxed_unsync();
        let client = self.client.for_body(&body.size_hint());
        let outbound = Request::from_parts(parts, body);

        // 8. Forward.
        let sent = Instant::now();
        let result = tokio::time::timeout(self.request_timeout, client.request(outbound)).await;
        facts.upstream = Some(sent.elapsed());
        self.metrics
            .upstream_duration
            .observe(sent.elapsed().as_secs_f64());
        let resp = match result {
            Err(_elapsed) => {
                return Err((
                    ProxyError::new(
                        ErrorKind::UpstreamTimeout,
                        format!(
                            "the upstream sent no response within request_timeout ({} s); the request was not retried",
                            self.request_timeout.as_secs_f64()
                        ),
                    ),
                    None,
                ));
            }
            Ok(Err(e)) if too_large_flag.load(Ordering::Relaxed) => {
                return Err((too_large(self.max_body_bytes).with_source(e), None));
            }
            Ok(Err(e)) => return Err((upstream::classify(e), None)),
            Ok(Ok(resp)) => resp,
        };
        tracing::debug!(status = resp.status().as_u16(), kid = %token.kid, "upstream answered");
        Ok(resp.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed_unsync()))
    }

    /// Whether an absolute-form target names the upstream (its authority) or
    /// `api.voximplant.com` with no port or its scheme's default port.
    fn target_allowed(&self, uri: &Uri) -> bool {
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
        if host.eq_ignore_ascii_case(&self.upstream.host)
            && port == self.upstream.authority.port_u16()
        {
            return true;
        }
        host.eq_ignore_ascii_case("api.voximplant.com") && port.is_none_or(|p| p == default_port)
    }

    /// The upstream URI for an inbound target whose API path starts at byte `api_start` of its
    /// path (after an `/accounts/<id>` prefix), with legacy credentials scrubbed from the query.
    /// In the common case (no prefix, nothing to scrub) the inbound path and query go upstream as
    /// they came, without being copied or parsed again. `pub` for the micro-benchmarks.
    pub fn upstream_uri(&self, inbound: &Uri, api_start: usize) -> Result<Uri, ProxyError> {
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
        parts.scheme = Some(self.upstream.scheme.clone());
        parts.authority = Some(self.upstream.authority.clone());
        parts.path_and_query = Some(pq);
        Uri::from_parts(parts).map_err(|e| invalid(e.into()))
    }
}

fn not_found(path: &str) -> ProxyError {
    let shown: String = path.chars().take(100).collect();
    ProxyError::new(
        ErrorKind::NotFound,
        format!(
            "{shown} is not forwarded: only /platform_api and paths below it are (optionally behind /accounts/<id>/)"
        ),
    )
}

fn bad_account(raw: &str) -> ProxyError {
    let shown: String = raw.chars().filter(|c| !c.is_control()).take(40).collect();
    ProxyError::new(
        ErrorKind::BadAccount,
        format!("account id `{shown}` is not a positive decimal integer"),
    )
}

fn too_large(limit: u64) -> ProxyError {
    ProxyError::new(
        ErrorKind::BodyTooLarge,
        format!("the request body is larger than max_body_bytes ({limit} bytes)"),
    )
}

/// Split `/accounts/<id>/rest` into (`Some(id)`, `/rest`); `None` when the remaining path is not
/// `/platform_api` or below it. `pub` for the micro-benchmarks.
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

fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|seg| {
        let decoded = headers::percent_decode(seg.as_bytes(), false);
        decoded == b"." || decoded == b".."
    })
}

/// The API method named in the path (`/platform_api/<Method>/...`), percent-decoded.
pub fn api_method_from_path(path: &str) -> Option<String> {
    let seg = path
        .strip_prefix(API_ROOT)?
        .strip_prefix('/')?
        .split('/')
        .next()?;
    if seg.is_empty() {
        return None;
    }
    String::from_utf8(headers::percent_decode(seg.as_bytes(), false)).ok()
}

fn content_length(h: &http::HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The `iss` of the client's own `Authorization: Bearer` JWT, read without verification.
/// `Ok(None)`: no readable JWT or no usable `iss` (ignored); `Err(raw)`: an `iss` that is not a
/// valid account id (refused like any id). `pub` for the micro-benchmarks.
pub fn bearer_iss(h: &http::HeaderMap) -> Result<Option<u64>, String> {
    let Some(jwt) = h.get(header::AUTHORIZATION).and_then(headers::bearer_token) else {
        return Ok(None);
    };
    let mut parts = jwt.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Ok(None);
    };
    if payload.len() > 16 * 1024 {
        return Ok(None);
    }
    let Ok(bytes) =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('='))
    else {
        return Ok(None);
    };
    let Ok(serde_json::Value::Object(claims)) = serde_json::from_slice::<serde_json::Value>(&bytes)
    else {
        return Ok(None);
    };
    gateway::iss_account(claims.get("iss"))
}

/// Read and discard up to 1 MiB of a refused request's body, so an HTTP/1.1 client still
/// uploading reads the answer instead of a connection reset. A client waiting on
/// `Expect: 100-continue` is not asked for its body at all.
async fn drain(req: Request<Body>) {
    if req.version() == Version::HTTP_2
        || req.headers().contains_key(header::EXPECT)
        || req.body().is_end_stream()
    {
        return;
    }
    let mut body = req.into_body();
    let mut read = 0u64;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while read < DRAIN_LIMIT {
            match body.frame().await {
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len() as u64),
                _ => break,
            }
        }
    })
    .await;
}

/// A body over `max_body_bytes`.
#[derive(Debug, thiserror::Error)]
#[error("request body over max_body_bytes")]
pub struct BodyTooLarge;

pin_project_lite::pin_project! {
    /// The request body on its way upstream: counts bytes and stops at the limit.
    struct Limited<B> {
        #[pin]
        inner: B,
        seen: u64,
        limit: u64,
        bytes: Arc<AtomicU64>,
        too_large: Arc<AtomicBool>,
    }
}

impl<B> HttpBody for Limited<B>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *this.seen += data.len() as u64;
                    this.bytes.store(*this.seen, Ordering::Relaxed);
                    if *this.seen > *this.limit {
                        this.too_large.store(true, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            other => other.map(|_| None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What is logged and counted when a response body ends.
struct Finish {
    proxy: Arc<Proxy>,
    span: tracing::Span,
    start: Instant,
    method: Method,
    path: Box<str>,
    status: StatusCode,
    facts: Facts,
    bytes_out: u64,
}

impl Finish {
    fn complete(self, aborted: bool) {
        let m = &self.proxy.metrics;
        let elapsed = self.start.elapsed();
        m.in_flight.dec();
        m.request_duration.observe(elapsed.as_secs_f64());
        let client = self.facts.client.as_deref().map(|c| m.client_label(c));
        let gateway = self.proxy.gateway.is_some();
        if let Some(kind) = self.facts.error {
            m.error(kind, if gateway { client.clone() } else { None });
        }
        m.requests
            .get_or_create(&RequestLabels {
                status: self.status.as_u16(),
                account: m.account_label(self.facts.account),
                api_method: m.method_label(self.facts.api_method.as_deref()),
                client: if gateway {
                    Some(client.unwrap_or_else(|| "none".into()))
                } else {
                    None
                },
            })
            .inc();
        let _enter = self.span.enter();
        tracing::info!(
            target: "voxproxy::access",
            method = %self.method,
            path = %self.path,
            api_method = self.facts.api_method.as_deref().unwrap_or("-"),
            account = self.facts.account.unwrap_or(0),
            client = self.facts.client.as_deref().unwrap_or("-"),
            status = self.status.as_u16(),
            kind = self.facts.error.map_or("-", ErrorKind::as_str),
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            upstream_ms = self.facts.upstream.map_or(0.0, |d| d.as_secs_f64() * 1000.0),
            bytes_in = self.facts.bytes_in.load(Ordering::Relaxed),
            bytes_out = self.bytes_out,
            aborted,
            "request"
        );
    }
}

pin_project_lite::pin_project! {
    /// A response body that logs and counts the request when it ends (or is dropped).
    struct Tracked {
        #[pin]
        inner: Body,
        finish: Option<Finish>,
    }

    impl PinnedDrop for Tracked {
        fn drop(this: Pin<&mut Self>) {
            if let Some(finish) = this.project().finish.take() {
                finish.complete(true);
            }
        }
    }
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(f)) = (frame.data_ref(), this.finish.as_mut()) {
                    f.bytes_out += data.len() as u64;
                }
            }
            Poll::Ready(None) => {
                if let Some(f) = this.finish.take() {
                    f.complete(false);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(f) = this.finish.take() {
                    f.complete(true);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn account_prefix_and_root() {
        assert_eq!(
            split_account_prefix("/platform_api"),
            Some((None, "/platform_api"))
        );
        assert_eq!(
            split_account_prefix("/platform_api/GetUsers/"),
            Some((None, "/platform_api/GetUsers/"))
        );
        assert_eq!(
            split_account_prefix("/accounts/42/platform_api/X"),
            Some((Some("42"), "/platform_api/X"))
        );
        assert_eq!(
            split_account_prefix("/accounts/abc/platform_api"),
            Some((Some("abc"), "/platform_api"))
        );
        assert_eq!(split_account_prefix("/platform_apix"), None);
        assert_eq!(split_account_prefix("/accounts/42"), None);
        assert_eq!(split_account_prefix("/accounts/42/other"), None);
        assert_eq!(split_account_prefix("/"), None);
    }

    #[test]
    fn method_from_path_is_decoded() {
        assert_eq!(
            api_method_from_path("/platform_api/Get%55sers/").as_deref(),
            Some("GetUsers")
        );
        assert_eq!(api_method_from_path("/platform_api"), None);
        assert_eq!(api_method_from_path("/platform_api/"), None);
    }

    #[test]
    fn dot_segments() {
        assert!(has_dot_segment("/platform_api/../x"));
        assert!(has_dot_segment("/platform_api/%2e%2E/x"));
        assert!(!has_dot_segment("/platform_api/a.b/"));
    }

    #[test]
    fn bearer_iss_reads_numbers_and_strings() {
        let jwt = |claims: &str| {
            let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            format!("Bearer {}.{}.sig", enc.encode("{}"), enc.encode(claims))
        };
        let mut h = http::HeaderMap::new();
        for (claims, want) in [
            (r#"{"iss":123}"#, Ok(Some(123))),
            (r#"{"iss":"456"}"#, Ok(Some(456))),
            (r#"{"sub":1}"#, Ok(None)),
            (r#"{"iss":"abc"}"#, Err("abc".to_owned())),
            (r#"{"iss":-1}"#, Err("-1".to_owned())),
            (r#"[1]"#, Ok(None)),
        ] {
            h.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(&jwt(claims)).unwrap(),
            );
            assert_eq!(bearer_iss(&h), want, "{claims}");
        }
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer not-a-jwt"),
        );
        assert_eq!(bearer_iss(&h), Ok(None));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic dXNlcjpwYXNz"),
        );
        assert_eq!(bearer_iss(&h), Ok(None));
    }
}
