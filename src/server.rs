//! Listeners and connections: TCP, Unix and systemd-passed sockets; optional inbound TLS; HTTP/1.1
//! and HTTP/2 (prior knowledge) on one listener; graceful shutdown that lets in-flight requests
//! finish within the grace period. [`run`] takes its listeners and its stop signal from the caller,
//! so tests bind port 0 and pass their own.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, UnixListener};

use crate::config::ListenAddr;
use crate::proxy::{Activity, ConnInfo, Peer, Proxy, Watched};
use crate::tls::{Inbound, Io};

/// Time a client gets to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most header fields in a request.
const MAX_HEADERS: usize = 128;
/// Largest HTTP/1 read buffer, which bounds the request head.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// A bound listener.
#[derive(Debug)]
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// A Unix socket, removed when dropped if we created it.
    Unix(UnixListener, Option<SocketFile>),
}

/// A Unix socket file we created: removed on drop.
#[derive(Debug)]
pub struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Listener {
    /// The address, for logs and readiness messages.
    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map_or_else(|_| "tcp:?".to_owned(), |a| a.to_string()),
            Listener::Unix(l, _) => l
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| format!("unix:{}", p.display())))
                .unwrap_or_else(|| "unix:?".to_owned()),
        }
    }

    /// The listen-rule view of this listener's own address.
    pub fn addr(&self) -> ListenAddr {
        match self {
            Listener::Tcp(l) => l.local_addr().map_or(ListenAddr::Systemd, ListenAddr::Tcp),
            Listener::Unix(..) => ListenAddr::Unix(PathBuf::new()),
        }
    }

    /// The local TCP address, if TCP.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().ok(),
            Listener::Unix(..) => None,
        }
    }
}

/// Bind a listen address. `systemd` takes every socket passed by socket activation.
pub fn bind(addr: &ListenAddr) -> io::Result<Vec<Listener>> {
    match addr {
        ListenAddr::Tcp(sa) => {
            let std = std::net::TcpListener::bind(sa)?;
            std.set_nonblocking(true)?;
            Ok(vec![Listener::Tcp(TcpListener::from_std(std)?)])
        }
        ListenAddr::Unix(path) => {
            use std::os::unix::fs::{FileTypeExt, PermissionsExt};
            // Replace a stale socket left by a crash, but never another kind of file, and never a
            // socket another process is listening on (it would be orphaned, and its file removed
            // when we stop).
            if let Ok(meta) = std::fs::symlink_metadata(path) {
                if !meta.file_type().is_socket() {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{} exists and is not a socket", path.display()),
                    ));
                }
                if std::os::unix::net::UnixStream::connect(path).is_ok() {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!(
                            "another process is listening on {}; stop it first, or listen elsewhere",
                            path.display()
                        ),
                    ));
                }
                std::fs::remove_file(path)?;
            }
            let listener = UnixListener::bind(path)?;
            let guard = SocketFile(path.clone());
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
            Ok(vec![Listener::Unix(listener, Some(guard))])
        }
        ListenAddr::Systemd => {
            let mut fds = listenfd::ListenFd::from_env();
            if fds.len() == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    "no socket passed by systemd (LISTEN_FDS unset, zero, or LISTEN_PID is not this process)",
                ));
            }
            let mut out = Vec::with_capacity(fds.len());
            for i in 0..fds.len() {
                if let Ok(Some(l)) = fds.take_tcp_listener(i) {
                    l.set_nonblocking(true)?;
                    out.push(Listener::Tcp(TcpListener::from_std(l)?));
                } else if let Ok(Some(l)) = fds.take_unix_listener(i) {
                    l.set_nonblocking(true)?;
                    out.push(Listener::Unix(UnixListener::from_std(l)?, None));
                } else {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "passed fd {} is not a listening TCP or Unix stream socket",
                            3 + i
                        ),
                    ));
                }
            }
            Ok(out)
        }
    }
}

/// One listener and what its connections serve.
#[derive(Debug)]
pub struct Endpoint {
    /// The socket.
    pub listener: Listener,
    /// Its connections serve `/healthz`, `/readyz`, `/metrics`.
    pub admin: bool,
    /// Its connections forward API requests (false on the admin listener).
    pub proxy: bool,
    /// Inbound TLS, when this is a TLS listener.
    pub tls: Option<Arc<Inbound>>,
}

/// How connections are served.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `client_idle_timeout`: a connection on which nothing happens for this long is closed.
    pub client_idle: Duration,
    /// `shutdown_grace`: how long in-flight requests get once shutdown starts.
    pub grace: Duration,
}

fn http_builder(limits: Limits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    // No head timer of hyper's: it would cost a timer per request, and the connection's idle
    // watch (`proxy::Activity`) already closes a connection that sends no complete request head
    // for `client_idle_timeout`, a slow one (slowloris) included: only requests count as
    // activity, not the bytes of a head that never ends.
    let _ = limits;
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_headers(MAX_HEADERS)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEAD_BYTES as u32)
        .max_concurrent_streams(256)
        .keep_alive_interval(Duration::from_secs(60))
        .keep_alive_timeout(Duration::from_secs(20));
    b
}

/// Serve `endpoints` until `shutdown` completes, then stop accepting and give in-flight requests
/// up to `limits.grace` to finish.
pub async fn run(
    proxy: Arc<Proxy>,
    endpoints: Vec<Endpoint>,
    shutdown: impl Future<Output = ()>,
    limits: Limits,
) {
    let graceful = Arc::new(GracefulShutdown::new());
    let builder = Arc::new(http_builder(limits));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut accept_loops = tokio::task::JoinSet::new();
    for ep in endpoints {
        let server = Conns {
            proxy: proxy.clone(),
            builder: builder.clone(),
            limits,
        };
        accept_loops.spawn(server.accept_loop(ep, graceful.clone(), stop_rx.clone()));
    }
    shutdown.await;
    let _ = stop_tx.send(true);
    while accept_loops.join_next().await.is_some() {}
    tracing::info!(
        grace_secs = limits.grace.as_secs_f64(),
        "stopped accepting; waiting for in-flight requests"
    );
    let Ok(graceful) = Arc::try_unwrap(graceful) else {
        return;
    };
    if tokio::time::timeout(limits.grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; closing remaining connections");
    }
}

/// One accepted connection, before it is served.
struct Conn {
    peer: Peer,
    admin: bool,
    proxy: bool,
    tls: Option<Arc<Inbound>>,
    watcher: hyper_util::server::graceful::Watcher,
}

/// What serving a connection takes. (Not the `GracefulShutdown` itself: connections hold only
/// a watcher, so once the accept loops end, shutdown can take it back and wait for them.)
#[derive(Clone)]
struct Conns {
    proxy: Arc<Proxy>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    limits: Limits,
}

impl Conns {
    /// Accept connections on `ep` until `stop` changes, each served by its own task.
    async fn accept_loop(
        self,
        ep: Endpoint,
        graceful: Arc<GracefulShutdown>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            let accepted: io::Result<(Box<dyn Io>, Peer)> = tokio::select! {
                _ = stop.changed() => break,
                r = accept(&ep.listener) => r,
            };
            match accepted {
                Ok((io, peer)) => {
                    let conn = Conn {
                        peer,
                        admin: ep.admin,
                        proxy: ep.proxy,
                        tls: ep.tls.clone(),
                        watcher: graceful.watcher(),
                    };
                    tokio::spawn(self.clone().serve(io, conn));
                }
                Err(e) => {
                    // EMFILE and friends: back off a little instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// One connection: the TLS handshake when the listener has TLS, then HTTP/1.1 or HTTP/2
    /// until the client closes, the connection is idle for `client_idle_timeout`, or shutdown.
    async fn serve(self, io: Box<dyn Io>, conn: Conn) {
        let Conn {
            peer,
            admin,
            proxy,
            tls,
            watcher,
        } = conn;
        let (io, peer_cert): (Box<dyn Io>, _) = match tls {
            None => (io, None),
            Some(tls) => match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(io)).await {
                Ok(Ok((stream, cert))) => (Box::new(stream), cert),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            },
        };
        let info = Arc::new(ConnInfo {
            admin,
            proxy,
            peer,
            peer_cert,
            activity: Activity::default(),
        });
        let for_requests = info.clone();
        let handler = self.proxy;
        // Boxed: hyper keeps a connection's service future inline, so an idle keep-alive
        // connection would carry the whole size of a request's state machine.
        let service =
            service_fn(move |req| Box::pin(handler.clone().handle(req, for_requests.clone())));
        let conn = watcher.watch(
            self.builder
                .serve_connection(TokioIo::new(Watched::new(io, info.clone())), service)
                .into_owned(),
        );
        // The connection first: whatever a wake-up lets it do counts before the idle check.
        tokio::select! {
            biased;
            r = conn => if let Err(e) = r {
                tracing::debug!(error = %e, "connection ended with an error");
            },
            () = info.activity.idle(self.limits.client_idle) => {
                tracing::debug!(peer = %info.peer, "closing an idle connection");
            }
        }
    }
}

async fn accept(listener: &Listener) -> io::Result<(Box<dyn Io>, Peer)> {
    match listener {
        Listener::Tcp(l) => {
            let (stream, addr) = l.accept().await?;
            let _ = stream.set_nodelay(true);
            Ok((Box::new(stream), Peer::Tcp(addr)))
        }
        Listener::Unix(l, _) => {
            let (stream, _) = l.accept().await?;
            Ok((Box::new(stream), Peer::Unix))
        }
    }
}
