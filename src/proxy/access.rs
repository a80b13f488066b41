//! The access record of one request: what its access-log line (target `voxproxy::access`) and
//! its request metrics say. Every request ends in exactly one record, written once: when its
//! response body ends, breaks off or is dropped, or, when the client leaves before any response
//! head, when the request's future is dropped (status 499). `aborted` is true only when the
//! response did not reach its end.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Method, StatusCode, Uri, Version};
use http_body::{Body as HttpBody, Frame, SizeHint};
use std::future::Future as _;

use super::conn::ConnInfo;
use crate::account::AccountId;
use crate::body::{Body, BoxError};
use crate::error::ErrorKind;
use crate::headers::{REQUEST_ID, Seen};
use crate::metrics::{Metrics, RequestQuery};

/// The status logged for a request whose client left before a response head was sent (nginx's
/// convention).
pub const CLIENT_CLOSED: u16 = 499;

/// What is known of one request; logged and counted exactly once.
pub struct Record {
    metrics: Arc<Metrics>,
    /// Whether gateway mode is on (requests are then counted by client).
    gateway: bool,
    /// Whether the request counts in the request metrics (admin requests are logged only).
    counted: bool,
    start: Instant,
    /// The request's span: its `request_id` field ties every log line of the request together.
    pub span: tracing::Span,
    /// The request id (kept or generated), sent upstream and on the response.
    pub request_id: HeaderValue,
    conn: Arc<ConnInfo>,
    method: Method,
    /// The target as it came (the path is logged, never the query).
    uri: Uri,
    version: Version,
    user_agent: Option<HeaderValue>,
    /// The API method, once known (inline: method names are short).
    pub api_method: Option<compact_str::CompactString>,
    /// The account, once chosen.
    pub account: Option<AccountId>,
    /// The gateway client, once authenticated.
    pub client: Option<Arc<str>>,
    /// voxproxy's own error kind, when it answered itself.
    error: Option<ErrorKind>,
    /// Why, for the log: the error's whole cause chain.
    reason: Option<String>,
    /// Time to the upstream's response head, when it was asked.
    pub upstream: Option<Duration>,
    /// Request body bytes read, shared with the body on its way upstream.
    pub bytes_in: Option<Arc<AtomicU64>>,
    /// How long the response body may send nothing (an upstream's body: `request_timeout`).
    pub body_timeout: Option<Duration>,
    /// The response status, once a head exists.
    status: Option<StatusCode>,
    bytes_out: u64,
    written: bool,
}

impl Record {
    /// Start the record of a request that just arrived; `counted`: whether it counts in the
    /// request metrics (admin requests do not).
    pub fn start(
        metrics: &Arc<Metrics>,
        gateway: bool,
        counted: bool,
        (parts, seen): (&Parts, &Seen),
        conn: &Arc<ConnInfo>,
    ) -> Record {
        let request_id = seen.request_id();
        let span = tracing::info_span!("request", request_id = request_id.to_str().unwrap_or("-"));
        if counted {
            metrics.in_flight.inc();
        }
        conn.activity.request_begins();
        Record {
            metrics: metrics.clone(),
            gateway,
            counted,
            start: Instant::now(),
            span,
            request_id,
            conn: conn.clone(),
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            version: parts.version,
            user_agent: seen.user_agent.clone(),
            api_method: None,
            account: None,
            client: None,
            error: None,
            reason: None,
            upstream: None,
            bytes_in: None,
            body_timeout: None,
            status: None,
            bytes_out: 0,
            written: false,
        }
    }

    /// The connection the request came on.
    pub fn conn(&self) -> &Arc<ConnInfo> {
        &self.conn
    }

    /// voxproxy answers with `err`: the access line carries its kind and reason; a failure on
    /// voxproxy's or the upstream's side (5xx) adds one `warn` line with the whole cause chain.
    pub fn refused(&mut self, err: &crate::error::ProxyError) {
        let chain = err.chain();
        if err.kind.status().is_server_error() {
            let _enter = self.span.enter();
            tracing::warn!(kind = err.kind.as_str(), error = %chain, "request failed");
        }
        self.error = Some(err.kind);
        self.reason = Some(chain);
    }

    /// The client went away while uploading: the record says 499, aborted, at once; the response
    /// is for nobody.
    pub fn client_gone(mut self) -> http::Response<Tracked> {
        self.write(true);
        let mut resp = http::Response::new(Tracked {
            inner: crate::body::empty(),
            record: None,
            waiting: false,
            deadline: None,
        });
        *resp.status_mut() = StatusCode::from_u16(CLIENT_CLOSED).unwrap_or(StatusCode::BAD_REQUEST);
        resp
    }

    /// The upstream failed after its response head (its body stalled): the record says so, as
    /// `upstream_timeout`, with one `warn` line.
    fn refused_upstream(&mut self, cause: &dyn std::error::Error) {
        let _enter = self.span.enter();
        tracing::warn!(kind = ErrorKind::UpstreamTimeout.as_str(), error = %cause, "response cut");
        self.error = Some(ErrorKind::UpstreamTimeout);
        self.reason = Some(cause.to_string());
    }

    /// The response is ready: stamp the request id on it, and let its body write the record when
    /// it ends.
    pub fn respond(mut self, mut resp: http::Response<Body>) -> http::Response<Tracked> {
        resp.headers_mut()
            .insert(REQUEST_ID, self.request_id.clone());
        self.status = Some(resp.status());
        resp.map(|inner| Tracked {
            inner,
            record: Some(self),
            waiting: false,
            deadline: None,
        })
    }

    /// Log and count the request. `aborted`: the response did not reach its end.
    fn write(&mut self, aborted: bool) {
        if std::mem::replace(&mut self.written, true) {
            return;
        }
        self.conn.activity.request_ends();
        let status = self.status.map_or(CLIENT_CLOSED, |s| s.as_u16());
        let elapsed = self.start.elapsed();
        if self.counted {
            self.count(status, elapsed);
        }
        let _enter = self.span.enter();
        let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
        tracing::info!(
            target: "voxproxy::access",
            request_id = self.request_id.to_str().unwrap_or("-"),
            peer = %self.conn.peer,
            protocol = protocol(self.version),
            method = %self.method,
            path = self.uri.path(),
            user_agent = self.user_agent.as_ref().and_then(|v| v.to_str().ok()),
            api_method = self.api_method.as_deref(),
            account = self.account.map(AccountId::get),
            client = self.client.as_deref(),
            status,
            kind = self.error.map(ErrorKind::as_str),
            error = self.reason.as_deref(),
            duration_ms = ms(elapsed),
            upstream_ms = self.upstream.map(ms),
            bytes_in = self.bytes_in.as_ref().map_or(0, |b| b.load(Ordering::Relaxed)),
            bytes_out = self.bytes_out,
            aborted = aborted || self.status.is_none(),
            "request"
        );
    }

    /// `voxproxy_requests_total`, the duration histogram, the error count, in-flight.
    fn count(&self, status: u16, elapsed: Duration) {
        let m = &self.metrics;
        m.in_flight.dec();
        m.request_duration.observe(elapsed.as_secs_f64());
        let client = match (self.gateway, self.client.as_deref()) {
            (false, _) => None,
            (true, Some(c)) => Some(c),
            (true, None) => Some("none"),
        };
        if let Some(kind) = self.error {
            let known = client.filter(|c| *c != "none").map(|c| m.client_label(c));
            m.error(kind, known);
        }
        m.count_request(RequestQuery {
            status,
            account: self.account,
            method: self.api_method.as_deref(),
            client,
        });
    }
}

impl Drop for Record {
    /// A record dropped unwritten belongs to a request whose client left before its response
    /// head (status 499) or before its body ended.
    fn drop(&mut self) {
        self.write(true);
    }
}

/// `protocol` as the access log spells it.
fn protocol(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

pin_project_lite::pin_project! {
    /// A response body that writes its request's record when it ends, breaks off or is dropped;
    /// tells the connection when it waits on the upstream; and cuts an upstream body that sends
    /// nothing for its `body_timeout`.
    pub struct Tracked {
        #[pin]
        inner: Body,
        record: Option<Record>,
        // Waiting on the upstream for more of the body (the connection knows).
        waiting: bool,
        // When a waiting body is cut; armed the first time it waits.
        deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    }

    impl PinnedDrop for Tracked {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // hyper stops polling once `is_end_stream` says the body is done: that is an end too.
            let ended = this.inner.is_end_stream();
            if let Some(mut record) = this.record.take() {
                if *this.waiting {
                    record.conn.activity.upstream_wait_ends();
                }
                record.write(!ended);
            }
        }
    }
}

/// The upstream's response body sent nothing for `request_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("the upstream's response body sent nothing for request_timeout; cut")]
pub struct BodyStalled;

impl Tracked {
    /// The body waits on the upstream: tell the connection, and cut it once it has waited for
    /// its whole `body_timeout`.
    fn wait(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let Some(record) = this.record.as_mut() else {
            return Poll::Pending;
        };
        if !*this.waiting {
            *this.waiting = true;
            record.conn.activity.upstream_wait_begins();
            if let Some(timeout) = record.body_timeout {
                let at = tokio::time::Instant::now() + timeout;
                match this.deadline.as_mut() {
                    Some(d) => d.as_mut().reset(at),
                    None => *this.deadline = Some(Box::pin(tokio::time::sleep_until(at))),
                }
            }
        }
        match this.deadline.as_mut().map(|d| d.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => {
                *this.waiting = false;
                record.conn.activity.upstream_wait_ends();
                record.refused_upstream(&BodyStalled);
                if let Some(mut r) = this.record.take() {
                    r.write(true);
                }
                Poll::Ready(Some(Err(Box::new(BodyStalled))))
            }
            _ => Poll::Pending,
        }
    }
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = self.as_mut().project().inner.poll_frame(cx);
        let Poll::Ready(item) = &polled else {
            // A wait that goes on keeps its deadline: hyper polls again on every wake-up (the
            // deadline's own included), and re-arming then would never cut a stalled body.
            return self.wait(cx);
        };
        let this = self.as_mut().project();
        if let Some(r) = this.record.as_ref()
            && std::mem::take(this.waiting)
        {
            r.conn.activity.upstream_wait_ends();
        }
        match item {
            Some(Ok(frame)) => {
                if let (Some(data), Some(r)) = (frame.data_ref(), this.record.as_mut()) {
                    r.bytes_out += data.len() as u64;
                }
                if this.inner.is_end_stream()
                    && let Some(mut r) = this.record.take()
                {
                    r.write(false);
                }
            }
            None => {
                if let Some(mut r) = this.record.take() {
                    r.write(false);
                }
            }
            Some(Err(_)) => {
                if let Some(mut r) = this.record.take() {
                    r.write(true);
                }
            }
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
    use http_body_util::BodyExt as _;

    /// A response whose upstream body sends nothing, as `respond` makes it, with `body_timeout`.
    fn stalled(timeout: Duration) -> Tracked {
        let (parts, ()) = http::Request::get("/platform_api/X/")
            .body(())
            .unwrap()
            .into_parts();
        let seen = crate::headers::scan(&parts.headers, &crate::headers::REQUEST_ID);
        let conn = ConnInfo::plain();
        let metrics = Arc::new(Metrics::new(false));
        let mut record = Record::start(&metrics, false, true, (&parts, &seen), &conn);
        record.body_timeout = Some(timeout);
        let never = http_body_util::StreamBody::new(futures_util::stream::pending::<
            Result<Frame<Bytes>, BoxError>,
        >());
        record
            .respond(http::Response::new(never.boxed_unsync()))
            .into_body()
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_is_cut_once_its_timeout_passes_though_polled_again_meanwhile() {
        let mut body = stalled(Duration::from_secs(1));
        let started = tokio::time::Instant::now();
        // hyper polls on every wake-up: the deadline's own wake-up must not re-arm it.
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("the stalled body was never cut");
        let err = frame.expect("an error, not the end").unwrap_err();
        assert!(err.is::<BodyStalled>(), "{err}");
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }
}
