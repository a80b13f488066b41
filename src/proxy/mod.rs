//! One request, end to end, as the contract's "Checks run in this order": [`Proxy::handle`] is the
//! list of stages, each a named function in the module that owns its rule; the first refusal
//! answers. Every refusal is a [`ProxyError`], drained and turned into a response in one place;
//! every request ends in exactly one access record ([`access`]).
//!
//! - [`forward`]: the last stage, the rewrite and the streamed send with the body limit.
//! - [`access`]: the access-log line and the request metrics.
//! - [`conn`]: what a connection and its requests tell each other (peer, idle activity).

pub mod access;
pub mod conn;
pub mod forward;

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use compact_str::CompactString;
use http::request::Parts;
use http::{Request, Response, Version, header};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use tracing::Instrument as _;

use crate::account::{self, AccountId, Requester};
use crate::body::{Body, BoxError};
use crate::credentials::CredentialSet;
use crate::error::{ErrorKind, ProxyError, error_response};
use crate::gateway::{Gateway, Identity, policy};
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::token::{Token, TokenCache};
use crate::{admin, headers, target};
use access::{Record, Tracked};
pub use conn::{Activity, ConnInfo, Peer, Watched};
use forward::{Forwarder, Stop};

/// How much of a refused upload is read so the client sees the answer instead of a reset.
const DRAIN_LIMIT: u64 = 1 << 20;
/// How long draining a refused upload may take.
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// Everything a request needs, shared by all connections.
pub struct Proxy {
    /// The last stage.
    pub forwarder: Forwarder,
    /// Which account a request acts for.
    pub accounts: account::Rules,
    /// Client and account rate limits.
    pub limits: Limits,
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

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("upstream", &self.forwarder.upstream)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// Whether `/readyz` says ready: every credentials file has minted and we are not stopping.
    pub fn ready(&self) -> bool {
        !self.shutting_down.load(Ordering::Relaxed) && self.tokens.ready()
    }

    /// Handle one request. Never fails: every error is a response, and every request ends in
    /// exactly one access record.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        conn: Arc<ConnInfo>,
    ) -> Result<Response<Tracked>, Infallible> {
        let (mut parts, body) = req.into_parts();
        let admin = conn.admin && admin::is_admin_path(parts.uri.path());
        let seen = headers::scan(&parts.headers, &self.accounts.header);
        let gateway = self.gateway.is_some();
        let mut record = Record::start(&self.metrics, gateway, !admin, (&parts, &seen), &conn);
        if admin {
            let resp = admin::answer(&parts, self.ready(), &self.metrics);
            return Ok(record.respond(resp));
        }
        // An empty body (every GET) needs no box: `body::empty()` is zero-sized.
        let mut body: Body = if http_body::Body::is_end_stream(&body) {
            crate::body::empty()
        } else {
            body.map_err(|e| Box::new(e) as BoxError).boxed_unsync()
        };
        let span = record.span.clone();
        let outcome = self
            .stages(&mut parts, &seen, &mut body, &conn, &mut record)
            .instrument(span)
            .await;
        let mut resp = match outcome {
            Ok(resp) => resp,
            Err(Stop::Refused(err)) => {
                record.refused(&err);
                drain(&parts, body).await;
                error_response(&err)
            }
            Err(Stop::ClientGone) => return Ok(record.client_gone()),
        };
        headers::strip_response(resp.headers_mut());
        Ok(record.respond(resp))
    }

    /// The contract's checks, in its order; the first refusal answers.
    async fn stages(
        &self,
        parts: &mut Parts,
        seen: &headers::Seen,
        body: &mut Body,
        conn: &ConnInfo,
        record: &mut Record,
    ) -> Result<Response<Body>, Stop> {
        listener_forwards(conn, parts)?;
        seen.framing(parts.version).map_err(bad_request)?;
        let target = target::check(parts, &self.forwarder.upstream)?;
        record.api_method = method_named(&target, parts);
        let identity = self.admit(parts, conn, record)?;
        let who = identity
            .as_ref()
            .map_or(Requester::ANONYMOUS, Identity::requester);
        let fallback = self.credentials.load().default_account();
        let account = self
            .accounts
            .choose_seen(target.prefix_account, seen, who, fallback)?;
        record.account = Some(account);
        self.accounts.check_allowed(account)?;
        let api_start = target.api_start;
        if let Some(id) = &identity {
            let path_method = target.method.as_deref();
            let found = policy::authorize(
                id,
                account,
                fallback,
                path_method,
                parts,
                body,
                &self.metrics,
            );
            record.api_method = record.api_method.take().or(found.await?.map(Into::into));
            if let Some(limit) = id.client.limit() {
                self.limits.client(&id.client.name, limit).await?;
            }
        }
        let client = identity.as_ref().map(|id| &*id.client.name);
        self.limits.account(account, client).await?;
        let token = self.token(account).await?;
        self.forwarder
            .send(parts, body, api_start, &token, record, &self.metrics)
            .await
    }

    /// Gateway mode: who the client is (401 when nobody), noted in the record.
    fn admit(
        &self,
        parts: &Parts,
        conn: &ConnInfo,
        record: &mut Record,
    ) -> Result<Option<Identity>, ProxyError> {
        let Some(gw) = &self.gateway else {
            return Ok(None);
        };
        let id = gw.admit(parts, conn.peer_cert.as_deref(), &self.metrics)?;
        record.client = Some(id.client.name.clone());
        Ok(Some(id))
    }

    /// The account's token from the cache (a signature only for a cold or expired one).
    async fn token(&self, account: AccountId) -> Result<Arc<Token>, ProxyError> {
        self.tokens.get(account).await.map_err(|e| {
            ProxyError::new(
                ErrorKind::TokenUnavailable,
                format!("no valid token can be minted for account {account}; check the credentials and the logs"),
            )
            .with_source(e)
        })
    }
}

/// The API method a target names: in its path, else in its query's `cmd` (a body's `cmd` is
/// read only when a gateway client's method rules need it).
fn method_named(target: &target::ApiTarget<'_>, parts: &Parts) -> Option<CompactString> {
    match &target.method {
        Some(m) => Some(m.as_ref().into()),
        None => parts
            .uri
            .query()
            .and_then(target::cmd_from_query)
            .map(Into::into),
    }
}

/// The admin listener serves admin paths only; a main listener that does not serve them says
/// where they are.
fn listener_forwards(conn: &ConnInfo, parts: &Parts) -> Result<(), ProxyError> {
    let path = parts.uri.path();
    if !conn.proxy {
        return Err(ProxyError::new(
            ErrorKind::NotFound,
            "this listener serves only /healthz, /readyz and /metrics",
        ));
    }
    if admin::is_admin_path(path) {
        return Err(ProxyError::new(
            ErrorKind::NotFound,
            format!(
                "{path} is not served on this listener: a non-loopback listener with gateway clients keeps admin paths to admin_listen (set --admin-listen for probes and scrapes)"
            ),
        ));
    }
    Ok(())
}

fn bad_request(why: &'static str) -> ProxyError {
    ProxyError::new(ErrorKind::BadRequest, why)
}

/// Read and discard up to 1 MiB of a refused request's body, so an HTTP/1.1 client still
/// uploading reads the answer instead of a connection reset. A client waiting on
/// `Expect: 100-continue` is not asked for its body at all.
async fn drain(parts: &Parts, mut body: Body) {
    use http_body::Body as _;
    if parts.version == Version::HTTP_2
        || parts.headers.contains_key(header::EXPECT)
        || body.is_end_stream()
    {
        return;
    }
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
