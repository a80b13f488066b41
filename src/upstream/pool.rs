//! Pooled upstream connections over hyper's connection-level client: HTTP/2 connections shared
//! by concurrent requests (another one is opened when every one is at its peer's stream limit),
//! and idle HTTP/1.1 connections taken one request at a time and given back when the response
//! body ends. A request is sent at most once: only a request that a pooled connection could not
//! take at all (it had closed meanwhile) goes to a new connection.
//!
//! HTTP/2 windows: each stream may buffer up to 1 MiB its client has not read yet, and the
//! connection's window is as large as HTTP/2 allows, so responses nobody reads never use up what
//! the other streams on the connection need (one client cannot stall another). The memory this
//! can hold is bounded by the streams the peer allows times the stream window, and a client that
//! reads nothing is cut after `client_idle_timeout`.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, Uri};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::time::Instant;

use super::connect::{ConnectError, Connector, Offer};
use crate::body::Body;
use crate::tls::Io;

/// An idle HTTP/1.1 connection unused for this long is closed rather than reused: the upstream
/// may close it any moment.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Most idle HTTP/1.1 connections kept.
const MAX_IDLE: usize = 256;
/// Streams voxproxy opens on one HTTP/2 connection before it opens another: the smallest limit
/// RFC 9113 advises servers to allow (nginx allows 128), so a request rarely queues behind a
/// stream nobody reads.
const MAX_STREAMS: usize = 100;
/// Per-stream HTTP/2 receive window: what one response may hold unread.
const STREAM_WINDOW: u32 = 1 << 20;
/// The connection's receive window: HTTP/2's largest, so no stream's unread data limits another.
const CONNECTION_WINDOW: u32 = (1 << 31) - 1;

/// Sending a request upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection could be opened.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The connection failed before a complete response head.
    #[error("the upstream connection failed")]
    Http(#[source] hyper::Error),
    /// A new connection closed before it took the request.
    #[error("the new upstream connection closed before taking the request")]
    Closed,
}

/// An HTTP/2 connection and the streams open on it.
#[derive(Clone)]
struct Shared {
    sender: http2::SendRequest<Body>,
    open: Arc<AtomicUsize>,
}

/// An idle HTTP/1.1 connection.
struct Idle {
    sender: http1::SendRequest<Body>,
    since: Instant,
}

/// One pool: the connections made with one ALPN offer.
pub struct Pool {
    connector: Arc<Connector>,
    offer: Offer,
    /// `Host` for HTTP/1.1 requests: the upstream's authority.
    host: HeaderValue,
    h2: http2::Builder<TokioExecutor>,
    shared: Mutex<Vec<Shared>>,
    idle: Mutex<Vec<Idle>>,
}

/// A connection taken for one request.
enum Taken {
    H2(Shared),
    H1(http1::SendRequest<Body>),
}

impl Pool {
    /// A pool opening connections with `connector`, offering `offer` by ALPN.
    pub fn new(connector: Arc<Connector>, offer: Offer, host: HeaderValue) -> Pool {
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            // Fixed windows rather than the adaptive one: its bandwidth-delay probes are PING
            // frames on every response, work for nothing on a low-latency path.
            .adaptive_window(false)
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10));
        Pool {
            connector,
            offer,
            host,
            h2,
            shared: Mutex::new(Vec::new()),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Send `req` (its URI absolute) on a pooled or new connection; the response head.
    pub async fn send(
        self: &Arc<Self>,
        req: Request<Body>,
    ) -> Result<Response<PoolBody>, SendError> {
        let req = match self.take_pooled().await {
            Some(taken) => match self.try_send(taken, req).await {
                Ok(resp) => return Ok(resp),
                Err(Retry::No(e)) => return Err(SendError::Http(e)),
                // The pooled connection closed before it took the request: a new one may.
                Err(Retry::Yes(req)) => *req,
            },
            None => req,
        };
        let taken = self.open().await?;
        match self.try_send(taken, req).await {
            Ok(resp) => Ok(resp),
            Err(Retry::No(e)) => Err(SendError::Http(e)),
            Err(Retry::Yes(_)) => Err(SendError::Closed),
        }
    }

    /// An HTTP/2 connection with room for a stream, else a ready idle HTTP/1.1 connection.
    async fn take_pooled(&self) -> Option<Taken> {
        {
            let mut shared = lock(&self.shared);
            shared.retain(|s| !s.sender.is_closed());
            let room = shared
                .iter()
                .find(|s| s.open.load(Ordering::Relaxed) < MAX_STREAMS);
            if let Some(s) = room {
                return Some(Taken::H2(s.clone()));
            }
        }
        loop {
            let idle = lock(&self.idle).pop()?;
            if idle.sender.is_closed() || idle.since.elapsed() > IDLE_TIMEOUT {
                continue;
            }
            let mut sender = idle.sender;
            if sender.ready().await.is_ok() {
                return Some(Taken::H1(sender));
            }
        }
    }

    /// A new connection; an HTTP/2 one joins the shared ones at once.
    async fn open(&self) -> Result<Taken, SendError> {
        let conn = self.connector.connect(self.offer).await?;
        let io = TokioIo::new(conn.io);
        if conn.h2 {
            let (sender, connection) = self.h2.handshake(io).await.map_err(SendError::Http)?;
            spawn_connection(connection);
            let shared = Shared {
                sender,
                open: Arc::new(AtomicUsize::new(0)),
            };
            lock(&self.shared).push(shared.clone());
            return Ok(Taken::H2(shared));
        }
        let (sender, connection) = http1::handshake::<TokioIo<Box<dyn Io>>, Body>(io)
            .await
            .map_err(SendError::Http)?;
        spawn_connection(connection);
        Ok(Taken::H1(sender))
    }

    /// Send on a taken connection. `Retry::Yes` hands the request back when the connection
    /// closed before taking it.
    async fn try_send(
        self: &Arc<Self>,
        taken: Taken,
        mut req: Request<Body>,
    ) -> Result<Response<PoolBody>, Retry> {
        match taken {
            Taken::H2(shared) => {
                let mut sender = shared.sender.clone();
                shared.open.fetch_add(1, Ordering::Relaxed);
                let back = GiveBack::Stream(shared.open);
                let resp = sender.try_send_request(req).await.map_err(retry)?;
                Ok(PoolBody::wrap(resp, back))
            }
            Taken::H1(mut sender) => {
                origin_form(req.uri_mut());
                req.headers_mut().insert(header::HOST, self.host.clone());
                let resp = sender.try_send_request(req).await.map_err(retry)?;
                Ok(PoolBody::wrap(resp, GiveBack::Idle(self.clone(), sender)))
            }
        }
    }

    /// An HTTP/1.1 connection whose response ended is idle again.
    fn give_back(&self, sender: http1::SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = lock(&self.idle);
        if idle.len() < MAX_IDLE {
            idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }
}

/// What to do when a send failed.
enum Retry {
    /// The request was never sent: here it is (boxed: the rare case pays for its size).
    Yes(Box<Request<Body>>),
    /// It was (or may have been) sent: the failure stands.
    No(hyper::Error),
}

fn retry(mut e: hyper::client::conn::TrySendError<Request<Body>>) -> Retry {
    match e.take_message() {
        Some(req) => Retry::Yes(Box::new(req)),
        None => Retry::No(e.into_error()),
    }
}

fn spawn_connection<F>(connection: F)
where
    F: std::future::Future<Output = hyper::Result<()>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
}

/// The target as HTTP/1.1 sends it: the path and query alone (the authority goes in `Host`).
fn origin_form(uri: &mut Uri) {
    let path = uri.path_and_query().cloned();
    *uri = path.map_or_else(|| Uri::from_static("/"), Uri::from);
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What to do with the connection once a response body ends.
enum GiveBack {
    /// An HTTP/2 stream closes.
    Stream(Arc<AtomicUsize>),
    /// An HTTP/1.1 connection goes back to its pool (only after a complete body).
    Idle(Arc<Pool>, http1::SendRequest<Body>),
}

pin_project_lite::pin_project! {
    /// A response body from the upstream: when it ends, its connection is free again.
    pub struct PoolBody {
        #[pin]
        inner: Incoming,
        back: Option<GiveBack>,
    }

    impl PinnedDrop for PoolBody {
        fn drop(this: Pin<&mut Self>) {
            // An HTTP/2 stream ends however the body does; an HTTP/1.1 connection whose body was
            // not read to its end cannot be reused and is dropped.
            if let Some(GiveBack::Stream(open)) = this.project().back.take() {
                open.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

impl PoolBody {
    fn wrap(resp: Response<Incoming>, back: GiveBack) -> Response<PoolBody> {
        resp.map(|inner| {
            let mut body = PoolBody {
                inner,
                back: Some(back),
            };
            if body.inner.is_end_stream() {
                free(body.back.take());
            }
            body
        })
    }
}

/// A response body reached its end: its connection is free.
fn free(back: Option<GiveBack>) {
    match back {
        Some(GiveBack::Stream(open)) => {
            open.fetch_sub(1, Ordering::Relaxed);
        }
        Some(GiveBack::Idle(pool, sender)) => pool.give_back(sender),
        None => {}
    }
}

impl HttpBody for PoolBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = self.as_mut().project().inner.poll_frame(cx);
        let done = match &polled {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => self.inner.is_end_stream(),
            _ => false,
        };
        if done {
            free(self.as_mut().project().back.take());
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
