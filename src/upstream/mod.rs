//! The upstream client: pooled connections over rustls (ALPN `h2` and `http/1.1`, [`pool`],
//! [`connect`]), and the classification of its failures into voxproxy's error kinds.
//!
//! Trusted roots: the Mozilla set compiled in (webpki-roots) plus `upstream_ca`. Compiled-in roots
//! behave the same on every host and in a distroless or scratch image that has no CA bundle; the
//! operator adds a private root with `upstream_ca`.

pub mod connect;
pub mod pool;

use std::path::Path;
use std::sync::Arc;

use http::{HeaderValue, Request, Response};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::body::{Body, BoxError};
use crate::config::Settings;
use crate::error::{ErrorKind, ProxyError};
use connect::{ConnectError, Connector, Offer};
use pool::{Pool, PoolBody, SendError};

/// Building the upstream client failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// `upstream_ca` cannot be read or holds no certificate.
    #[error("upstream_ca {path}: {reason}")]
    Ca { path: String, reason: String },
    /// rustls refused the configuration.
    #[error("upstream TLS configuration")]
    Tls(#[source] rustls::Error),
    /// The upstream's host is no name a certificate can hold.
    #[error("upstream host `{0}` is not a valid DNS name or IP address")]
    Host(String),
}

/// Load extra trusted roots from a PEM file.
pub fn load_ca(path: &Path) -> Result<Vec<CertificateDer<'static>>, UpstreamError> {
    let err = |reason: String| UpstreamError::Ca {
        path: path.display().to_string(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(format!("cannot read: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(err("holds no certificate".to_owned()));
    }
    Ok(certs)
}

/// Request bodies up to this size go over connections that may speak HTTP/2; larger ones, and
/// bodies of unknown length, over HTTP/1.1. Measured (bench/README.md): a 64 KiB POST costs less
/// CPU over HTTP/1.1 (no HTTP/2 framing and flow-control round trips).
pub const LARGE_BODY: u64 = 16 * 1024;

/// The upstream's connection pools: one whose connections offer HTTP/2 (or HTTP/1.1, whatever
/// ALPN gives) for ordinary requests, one offering HTTP/1.1 only for large uploads. They share
/// one rustls configuration, so TLS sessions resume across both.
pub struct Clients {
    small: Arc<Pool>,
    large: Arc<Pool>,
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("upstream::Clients")
    }
}

impl Clients {
    /// Send `req` (its URI absolute, its body with this size hint) on the pool it belongs to.
    pub async fn send(&self, req: Request<Body>) -> Result<Response<PoolBody>, SendError> {
        use http_body::Body as _;
        let pool = match req.body().size_hint().exact() {
            Some(n) if n <= LARGE_BODY => &self.small,
            _ => &self.large,
        };
        pool.send(req).await
    }
}

/// The TLS configuration for the upstream: compiled-in roots plus `upstream_ca`, aws-lc-rs,
/// session resumption.
pub fn tls_config(settings: &Settings) -> Result<rustls::ClientConfig, UpstreamError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &settings.upstream_ca {
        for cert in load_ca(path)? {
            roots.add(cert).map_err(UpstreamError::Tls)?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(UpstreamError::Tls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Session resumption is on by default (an in-memory cache); keep it explicit.
    tls.resumption = rustls::client::Resumption::in_memory_sessions(256);
    Ok(tls)
}

/// Build the upstream's connection pools.
pub fn client(settings: &Settings) -> Result<Clients, UpstreamError> {
    let upstream = &settings.upstream;
    let connector = Connector::new(upstream, tls_config(settings)?, settings.connect_timeout)
        .map_err(|_| UpstreamError::Host(upstream.host.clone()))?;
    let connector = Arc::new(connector);
    let host = HeaderValue::from_str(upstream.authority.as_str())
        .map_err(|_| UpstreamError::Host(upstream.host.clone()))?;
    Ok(Clients {
        small: Arc::new(Pool::new(connector.clone(), Offer::Both, host.clone())),
        large: Arc::new(Pool::new(connector, Offer::Http1, host)),
    })
}

/// Walk an error's source chain.
fn chain<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(err), |e| e.source())
}

/// A request body over `max_body_bytes` (the body layer's typed 413).
#[derive(Debug, thiserror::Error)]
#[error("request body over max_body_bytes")]
pub struct BodyTooLarge;

/// A failure of the client's own request body (broken framing, or the client went away while
/// uploading): never the upstream's fault.
#[derive(Debug, thiserror::Error)]
#[error("the client's request body broke off")]
pub struct ClientBodyError(#[source] pub BoxError);

/// What went wrong sending a request upstream.
#[derive(Debug)]
pub enum Failure {
    /// One of voxproxy's own errors.
    Error(ProxyError),
    /// The body went over `max_body_bytes` while streaming.
    TooLarge(BoxError),
    /// The client went away while uploading: nobody is left to answer.
    ClientGone,
}

/// Whether an error of the client's body stream is broken framing (hyper reports a bad chunk as
/// `InvalidData` or `InvalidInput`), rather than the client going away (`UnexpectedEof`, a
/// reset).
fn is_broken_framing(e: &ClientBodyError) -> bool {
    chain(&*e.0).any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput
            )
        }) || c
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_parse)
    })
}

/// Turn a send failure into what happened. The request body's own failures come first (they
/// are the client's, not the upstream's); a connection that could not be opened is a connect or
/// TLS failure as the connector says; anything after that is the upstream closing or resetting.
pub fn classify(err: SendError) -> Failure {
    if chain(&err).any(|e| e.is::<BodyTooLarge>()) {
        return Failure::TooLarge(Box::new(err));
    }
    let client_body = chain(&err).find_map(|e| e.downcast_ref::<ClientBodyError>());
    if let Some(framing) = client_body.map(is_broken_framing) {
        if !framing {
            return Failure::ClientGone;
        }
        return Failure::Error(
            ProxyError::new(
                ErrorKind::BadRequest,
                "the request body's framing is broken (chunked encoding); the request was not completed upstream",
            )
            .with_source(err),
        );
    }
    let (kind, msg) = match &err {
        SendError::Connect(ConnectError::Connect { .. }) => (
            ErrorKind::UpstreamConnect,
            "cannot connect to the upstream; check the upstream setting and the network",
        ),
        SendError::Connect(ConnectError::Tls { .. }) => (
            ErrorKind::UpstreamTls,
            "TLS handshake with the upstream failed (certificate, protocol, or no answer within connect_timeout); check upstream and upstream_ca",
        ),
        _ => (
            ErrorKind::UpstreamReset,
            "the upstream closed the connection before a complete response; the request was not retried",
        ),
    };
    Failure::Error(ProxyError::new(kind, msg).with_source(err))
}
