//! What a connection tells its requests (who the peer is, its certificate, what it serves) and
//! what they tell it back (their activity, for `client_idle_timeout`).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Who is at the other end of a connection, for the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// A TCP client.
    Tcp(SocketAddr),
    /// A Unix-socket client.
    Unix,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Tcp(addr) => addr.fmt(f),
            Peer::Unix => f.write_str("unix"),
        }
    }
}

/// What a connection tells its requests, and what they tell it back.
#[derive(Debug)]
pub struct ConnInfo {
    /// Serve `/healthz`, `/readyz`, `/metrics` here.
    pub admin: bool,
    /// Forward API requests from here (false on the admin listener).
    pub proxy: bool,
    /// The client's address.
    pub peer: Peer,
    /// The verified TLS client certificate, when the client sent one.
    pub peer_cert: Option<Arc<rustls_pki_types::CertificateDer<'static>>>,
    /// What the connection's requests are doing, for the idle timeout.
    pub activity: Activity,
}

#[cfg(test)]
impl ConnInfo {
    /// A proxy connection from a Unix socket, without a certificate, as tests need one.
    pub(crate) fn plain() -> Arc<ConnInfo> {
        Arc::new(ConnInfo {
            admin: false,
            proxy: true,
            peer: Peer::Unix,
            peer_cert: None,
            activity: Activity::default(),
        })
    }
}

/// A connection's activity as its requests see it, for `client_idle_timeout`: a connection is
/// idle when nothing happened on it for the timeout (no request began or ended, the client's
/// socket took no response bytes: see [`Watched`]) while none of its requests waits on the
/// upstream. That covers a client that sends nothing (before its first request, between
/// requests, an HTTP/2 connection with no open stream, after a TLS handshake; bytes that do not
/// complete a request head do not count, so a slowloris client is idle too) and one that reads
/// nothing of its response.
#[derive(Debug, Default)]
pub struct Activity {
    /// Events so far; only changes matter.
    events: AtomicU64,
    /// Requests (or response bodies) of this connection waiting on the upstream now.
    upstream_waits: AtomicU32,
    /// Requests of this connection not yet ended (whose access line is not yet written).
    requests: AtomicU32,
}

impl Activity {
    /// Something happened on the connection.
    pub fn touch(&self) {
        self.events.fetch_add(1, Ordering::Relaxed);
    }

    /// A request begins.
    pub fn request_begins(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.touch();
    }

    /// A request ends.
    pub fn request_ends(&self) {
        self.requests.fetch_sub(1, Ordering::Relaxed);
        self.touch();
    }

    /// The client's socket took response bytes. Only while a request is open: an HTTP/2
    /// connection with no stream writes too (PING answers, hyper's keep-alive pings) and must
    /// still be idle.
    fn client_read(&self) {
        if self.requests.load(Ordering::Relaxed) > 0 {
            self.touch();
        }
    }

    /// A request starts waiting on the upstream (its head, or more of its body).
    pub fn upstream_wait_begins(&self) {
        self.upstream_waits.fetch_add(1, Ordering::Relaxed);
        self.touch();
    }

    /// A wait on the upstream is over.
    pub fn upstream_wait_ends(&self) {
        self.upstream_waits.fetch_sub(1, Ordering::Relaxed);
        self.touch();
    }

    /// Resolves once the connection has been idle for at least `timeout` (at most twice that
    /// after its last event: the check runs once per `timeout`, not on every event).
    pub async fn idle(&self, timeout: Duration) {
        let mut seen = self.events.load(Ordering::Relaxed);
        let sleep = tokio::time::sleep(timeout);
        tokio::pin!(sleep);
        loop {
            sleep.as_mut().await;
            let now = self.events.load(Ordering::Relaxed);
            if now == seen && self.upstream_waits.load(Ordering::Relaxed) == 0 {
                return;
            }
            seen = now;
            sleep.as_mut().reset(tokio::time::Instant::now() + timeout);
        }
    }
}

/// A client connection's socket, counting every write it accepts while a request is open as
/// activity: the client reads.
/// Counted here rather than where hyper pulls response data from the body, because hyper pulls
/// more whenever its write buffer has room, also on a wake-up that wrote nothing (the idle
/// check's own), so a client that reads nothing would look active once more and be cut only
/// after three timeouts instead of at most two.
pub struct Watched<I> {
    io: I,
    conn: Arc<ConnInfo>,
}

impl<I> Watched<I> {
    /// `io` as the socket of the connection `conn` describes.
    pub fn new(io: I, conn: Arc<ConnInfo>) -> Self {
        Watched { io, conn }
    }

    fn wrote(&self, r: &Poll<io::Result<usize>>) {
        if matches!(r, Poll::Ready(Ok(n)) if *n > 0) {
            self.conn.activity.client_read();
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        self.wrote(&r);
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.wrote(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn events(c: &ConnInfo) -> u64 {
        c.activity.events.load(Ordering::Relaxed)
    }

    #[tokio::test]
    async fn bytes_the_client_takes_count_only_while_a_request_is_open() {
        let info = ConnInfo::plain();
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut io = Watched::new(ours, info.clone());

        // No request open (an HTTP/2 PING answer, say): not activity.
        io.write_all(b"ping").await.unwrap();
        assert_eq!(events(&info), 0);

        info.activity.request_begins();
        let begun = events(&info);
        io.write_all(b"body").await.unwrap();
        assert_eq!(events(&info), begun + 1, "a write the socket took counts");

        // Bytes the client sends are not activity: a slowloris head is idle.
        theirs.write_all(b"GET / HT").await.unwrap();
        let mut buf = [0u8; 8];
        io.read_exact(&mut buf).await.unwrap();
        assert_eq!(events(&info), begun + 1);

        info.activity.request_ends();
        io.write_all(b"tail").await.unwrap();
        assert_eq!(events(&info), begun + 2, "only the end counted after it");
        let mut got = [0u8; 12];
        theirs.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"pingbodytail");
    }

    #[tokio::test(start_paused = true)]
    async fn idle_resolves_between_one_and_two_timeouts_after_the_last_event() {
        let info = ConnInfo::plain();
        let t = Duration::from_secs(10);
        let start = tokio::time::Instant::now();
        info.activity.request_begins();
        info.activity.request_ends();
        info.activity.idle(t).await;
        let waited = start.elapsed();
        assert!(waited >= t && waited <= 2 * t, "{waited:?}");

        // A request waiting on the upstream keeps the connection busy, however long.
        let info = ConnInfo::plain();
        info.activity.upstream_wait_begins();
        let idle = info.activity.idle(t);
        tokio::pin!(idle);
        assert!(
            tokio::time::timeout(10 * t, idle.as_mut()).await.is_err(),
            "idle while waiting on the upstream"
        );
        info.activity.upstream_wait_ends();
        tokio::time::timeout(3 * t, idle).await.unwrap();
    }
}
