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
use crate::proxy::{ConnInfo, Peer, Proxy};
use crate::tls::{Inbound, Io};

/// Time a client gets to send a complete request head (slow-loris guard).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
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
            // Replace a stale socket left by a crash, but never another kind of file.
            if let Ok(meta) = std::fs::symlink_metadata(path) {
                if meta.file_type().is_socket() {
                    std::fs::remove_file(path)?;
                } else {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{} exists and is not a socket", path.display()),
                    ));
                }
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
    /// What connections from it serve (`peer` is filled in per connection).
    pub info: ConnInfo,
    /// Inbound TLS, when this is a TLS listener.
    pub tls: Option<Arc<Inbound>>,
}

fn http_builder() -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
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
/// up to `grace` to finish.
pub async fn run(
    proxy: Arc<Proxy>,
    endpoints: Vec<Endpoint>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let graceful = Arc::new(GracefulShutdown::new());
    let builder = Arc::new(http_builder());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut accept_loops = tokio::task::JoinSet::new();
    for ep in endpoints {
        let proxy = proxy.clone();
        let builder = builder.clone();
        let graceful = graceful.clone();
        let mut stop = stop_rx.clone();
        let info = Arc::new(ep.info);
        let tls = ep.tls;
        accept_loops.spawn(async move {
            loop {
                let accepted: io::Result<(Box<dyn Io>, Peer)> = tokio::select! {
                    _ = stop.changed() => break,
                    r = accept(&ep.listener) => r,
                };
                let (io, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // EMFILE and friends: back off a little instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let proxy = proxy.clone();
                let builder = builder.clone();
                let info = info.clone();
                let tls = tls.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let (io, peer_cert): (Box<dyn Io>, _) = match tls {
                        None => (io, None),
                        Some(tls) => {
                            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(io)).await
                            {
                                Ok(Ok((stream, cert))) => (Box::new(stream), cert),
                                Ok(Err(e)) => {
                                    tracing::debug!(error = %e, "TLS handshake failed");
                                    return;
                                }
                                Err(_) => return,
                            }
                        }
                    };
                    let info = Arc::new(ConnInfo {
                        peer,
                        peer_cert,
                        ..(*info).clone()
                    });
                    let service = service_fn(move |req| proxy.clone().handle(req, info.clone()));
                    let conn = builder.serve_connection(TokioIo::new(io), service);
                    if let Err(e) = watcher.watch(conn.into_owned()).await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
        });
    }
    shutdown.await;
    let _ = stop_tx.send(true);
    while accept_loops.join_next().await.is_some() {}
    tracing::info!(
        grace_secs = grace.as_secs_f64(),
        "stopped accepting; waiting for in-flight requests"
    );
    let Ok(graceful) = Arc::try_unwrap(graceful) else {
        return;
    };
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; closing remaining connections");
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
