//! The forwarding stage: the request rewritten for the upstream (target, headers, the minted
//! token, the request id) and sent, its body streaming through the `max_body_bytes` limit
//! ([`Limited`]); at most `request_timeout` for the response head. Failures are classified by
//! [`crate::upstream::classify`]: the client's own body failures never count as the upstream's.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::request::Parts;
use http::{Request, Response, Version};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt as _;

use super::access::Record;
use super::conn::ConnInfo;
use crate::body::{self, Body, BoxError};
use crate::config::Upstream;
use crate::error::{ErrorKind, ProxyError};
use crate::headers::{self, REQUEST_ID};
use crate::metrics::Metrics;
use crate::token::Token;
use crate::upstream::{self, BodyTooLarge, ClientBodyError, Clients, Failure};

/// Why a request stopped short of a forwarded response.
#[derive(Debug)]
pub enum Stop {
    /// voxproxy answers itself.
    Refused(ProxyError),
    /// The client went away (while uploading): nobody is left to answer.
    ClientGone,
}

impl From<ProxyError> for Stop {
    fn from(e: ProxyError) -> Stop {
        Stop::Refused(e)
    }
}

/// What the forwarding stage needs, fixed at start-up.
pub struct Forwarder {
    /// The pooled upstream clients.
    pub clients: Clients,
    /// Where requests go.
    pub upstream: Upstream,
    /// The account header, stripped before forwarding.
    pub account_header: HeaderName,
    /// Largest request body forwarded.
    pub max_body_bytes: u64,
    /// Time allowed for the upstream's response head.
    pub request_timeout: Duration,
}

impl Forwarder {
    /// Rewrite the request and send it. `body` is taken (left empty); `api_start` is where the
    /// API path starts in the inbound path (after an `/accounts/<id>` prefix).
    pub async fn send(
        &self,
        parts: &mut Parts,
        body: &mut Body,
        api_start: usize,
        token: &Token,
        record: &mut Record,
        metrics: &Metrics,
    ) -> Result<Response<Body>, Stop> {
        if let Some(len) = content_length(&parts.headers)
            && len > self.max_body_bytes
            && !parts.headers.contains_key(header::TRANSFER_ENCODING)
        {
            return Err(too_large(self.max_body_bytes).into());
        }
        let uri = crate::target::upstream_uri(&parts.uri, api_start, &self.upstream)?;
        let mut outbound =
            Request::new(self.limited(std::mem::replace(body, body::empty()), record));
        *outbound.method_mut() = parts.method.clone();
        *outbound.uri_mut() = uri;
        // The upstream connection decides its own version (ALPN); asking hyper-util for HTTP/2
        // on an HTTP/1.1 connection would fail.
        *outbound.version_mut() = Version::HTTP_11;
        let h = outbound.headers_mut();
        *h = std::mem::take(&mut parts.headers);
        headers::strip_request(h, &self.account_header);
        h.insert(header::AUTHORIZATION, token.authorization().clone());
        h.insert(REQUEST_ID, record.request_id.clone());

        let sent = Instant::now();
        let waiting = UpstreamWait::begin(record);
        let result = tokio::time::timeout(self.request_timeout, self.clients.send(outbound)).await;
        drop(waiting);
        let took = sent.elapsed();
        record.upstream = Some(took);
        metrics.upstream_duration.observe(took.as_secs_f64());
        let resp = match result {
            Err(_elapsed) => return Err(self.timed_out().into()),
            Ok(Err(e)) => {
                return Err(match upstream::classify(e) {
                    Failure::ClientGone => Stop::ClientGone,
                    Failure::TooLarge(e) => too_large(self.max_body_bytes).with_source(e).into(),
                    Failure::Error(e) => e.into(),
                });
            }
            Ok(Ok(resp)) => resp,
        };
        tracing::debug!(status = resp.status().as_u16(), kid = %token.kid, "upstream answered");
        record.body_timeout = Some(self.request_timeout);
        Ok(resp.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed_unsync()))
    }

    /// The request body on its way upstream, counted into the record and limited.
    fn limited(&self, body: Body, record: &mut Record) -> Body {
        if body.is_end_stream() {
            return body;
        }
        let bytes = Arc::new(AtomicU64::new(0));
        record.bytes_in = Some(bytes.clone());
        Limited {
            inner: body,
            seen: 0,
            limit: self.max_body_bytes,
            bytes,
        }
        .boxed_unsync()
    }

    fn timed_out(&self) -> ProxyError {
        ProxyError::new(
            ErrorKind::UpstreamTimeout,
            format!(
                "the upstream sent no response within request_timeout ({} s); the request was not retried",
                self.request_timeout.as_secs_f64()
            ),
        )
    }
}

/// The connection knows a request waits on the upstream for as long as this lives (also when
/// the request's future is dropped: the client left).
struct UpstreamWait(Arc<ConnInfo>);

impl UpstreamWait {
    fn begin(record: &Record) -> UpstreamWait {
        let conn = record.conn().clone();
        conn.activity.upstream_wait_begins();
        UpstreamWait(conn)
    }
}

impl Drop for UpstreamWait {
    fn drop(&mut self) {
        self.0.activity.upstream_wait_ends();
    }
}

fn too_large(limit: u64) -> ProxyError {
    ProxyError::new(
        ErrorKind::BodyTooLarge,
        format!("the request body is larger than max_body_bytes ({limit} bytes)"),
    )
}

fn content_length(h: &http::HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

pin_project_lite::pin_project! {
    /// The request body on its way upstream: counts bytes, stops with [`BodyTooLarge`] past the
    /// limit, and marks every failure of the client's own stream as a [`ClientBodyError`], so it
    /// is never taken for the upstream's.
    pub struct Limited<B> {
        #[pin]
        inner: B,
        seen: u64,
        limit: u64,
        bytes: Arc<AtomicU64>,
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
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                Poll::Ready(Some(Err(Box::new(ClientBodyError(e.into())))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
