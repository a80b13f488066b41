//! The upstream client: hyper-util's pooled client over hyper-rustls (ALPN h2 and http/1.1), and
//! the classification of its failures into voxproxy's error kinds.
//!
//! Trusted roots: the Mozilla set compiled in (webpki-roots) plus `upstream_ca`. Compiled-in roots
//! behave the same on every host and in a distroless or scratch image that has no CA bundle; the
//! operator adds a private root with `upstream_ca`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::body::{Body, BoxError};
use crate::config::Settings;
use crate::error::{ErrorKind, ProxyError};

/// The pooled client type.
pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, Body>;

/// Building the upstream client failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// `upstream_ca` cannot be read or holds no certificate.
    #[error("upstream_ca {path}: {reason}")]
    Ca { path: String, reason: String },
    /// rustls refused the configuration.
    #[error("upstream TLS configuration")]
    Tls(#[source] rustls::Error),
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

/// Request bodies up to this size go over the HTTP/2 pool; larger ones, and bodies of unknown
/// length, over HTTP/1.1. Measured (bench/README.md): a 64 KiB POST costs less CPU over HTTP/1.1
/// (no HTTP/2 framing and flow-control round trips), a GET less over HTTP/2.
pub const LARGE_BODY: u64 = 16 * 1024;

/// The pooled upstream clients: HTTP/2 (or HTTP/1.1, whatever ALPN gives) for ordinary requests,
/// HTTP/1.1 only for large uploads. They share one rustls configuration, so TLS sessions resume
/// across both.
pub struct Clients {
    small: UpstreamClient,
    large: UpstreamClient,
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("upstream::Clients")
    }
}

impl Clients {
    /// The client for a request whose body has this size hint.
    pub fn for_body(&self, size: &http_body::SizeHint) -> &UpstreamClient {
        match size.exact() {
            Some(n) if n <= LARGE_BODY => &self.small,
            _ => &self.large,
        }
    }
}

/// Build the pooled upstream clients.
pub fn client(settings: &Settings) -> Result<Clients, UpstreamError> {
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

    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(settings.connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));

    let builder = || {
        let mut b = Client::builder(TokioExecutor::new());
        b.timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .http2_keep_alive_timeout(Duration::from_secs(10))
            // Fixed, generous windows rather than the adaptive one: its bandwidth-delay probes
            // are PING frames sent while responses arrive, work on every request for nothing on
            // a low-latency path.
            .http2_initial_stream_window_size(1 << 20)
            .http2_initial_connection_window_size(4 << 20);
        b
    };
    let small = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls.clone())
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(http.clone());
    let large = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Clients {
        small: builder().build(small),
        large: builder().build(large),
    })
}

/// Walk an error's source chain.
fn chain<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(err), |e| e.source())
}

/// Whether `e` is a rustls error, possibly inside (nested) `io::Error`s: hyper-rustls wraps the
/// handshake failure as `io::Error(Other, io::Error(InvalidData, rustls::Error))`, and
/// `io::Error::source` skips the wrapped error itself.
fn is_rustls_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: &(dyn std::error::Error + 'static) = e;
    for _ in 0..8 {
        if cur.is::<rustls::Error>() {
            return true;
        }
        match cur
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => cur = inner,
            None => return false,
        }
    }
    false
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

/// Turn a client failure into what happened. The request body's own failures come first (they
/// are the client's, not the upstream's); TLS failures are told apart from connect failures by
/// finding a `rustls::Error` in the chain.
pub fn classify(err: hyper_util::client::legacy::Error) -> Failure {
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
    let is_tls = chain(&err).any(is_rustls_error);
    if is_tls {
        return Failure::Error(
            ProxyError::new(
                ErrorKind::UpstreamTls,
                "TLS handshake with the upstream failed (certificate or protocol); check upstream and upstream_ca",
            )
            .with_source(err),
        );
    }
    if err.is_connect() {
        return Failure::Error(
            ProxyError::new(
                ErrorKind::UpstreamConnect,
                "cannot connect to the upstream; check the upstream setting and the network",
            )
            .with_source(err),
        );
    }
    Failure::Error(
        ProxyError::new(
            ErrorKind::UpstreamReset,
            "the upstream closed the connection before a complete response; the request was not retried",
        )
        .with_source(err),
    )
}
