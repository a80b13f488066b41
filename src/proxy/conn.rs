//! What a connection tells its requests (who the peer is, its certificate, what it serves) and
//! what they tell it back (their activity, for `client_idle_timeout`).

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

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

/// A connection's activity as its requests see it, for `client_idle_timeout`: a connection is
/// idle when nothing happened on it for the timeout (no request began or ended, no response data
/// was taken by the client) while none of its requests waits on the upstream. That covers a
/// client that sends nothing (before its first request, between requests, an HTTP/2 connection
/// with no open stream, after a TLS handshake) and one that reads nothing of its response
/// (hyper stops asking for response data it cannot write).
#[derive(Debug, Default)]
pub struct Activity {
    /// Events so far; only changes matter.
    events: AtomicU64,
    /// Requests (or response bodies) of this connection waiting on the upstream now.
    upstream_waits: AtomicU32,
}

impl Activity {
    /// Something happened on the connection.
    pub fn touch(&self) {
        self.events.fetch_add(1, Ordering::Relaxed);
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
