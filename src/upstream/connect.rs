//! Opening a connection to the upstream: TCP, then TLS with ALPN, both within one
//! `connect_timeout` (a handshake that does not finish in time is a TLS failure, a TCP connect
//! that does not is a connect failure). ALPN decides HTTP/2 or HTTP/1.1.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::config::Upstream;
use crate::tls::Io;

/// TCP keep-alive on upstream connections: a pooled connection to a peer that vanished is found
/// out even while idle.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// Opening a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The TCP connection (or the name lookup) failed or timed out.
    #[error("cannot connect to {target}")]
    Connect {
        target: String,
        #[source]
        source: io::Error,
    },
    /// The TLS handshake failed or did not finish within `connect_timeout`.
    #[error("TLS handshake with {target} failed")]
    Tls {
        target: String,
        #[source]
        source: io::Error,
    },
}

/// Which protocols a connection offers by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// `h2` and `http/1.1`: the upstream decides.
    Both,
    /// `http/1.1` only.
    Http1,
}

/// A new connection and what ALPN chose.
pub struct Connected {
    /// The byte stream.
    pub io: Box<dyn Io>,
    /// Whether the connection speaks HTTP/2.
    pub h2: bool,
}

/// Opens upstream connections.
pub struct Connector {
    /// `host:port`, for the connect and for messages.
    target: String,
    /// TLS, with the name the certificate must hold; `None` for a plain-HTTP loopback upstream.
    tls: Option<(ServerName<'static>, Tls)>,
    timeout: Duration,
}

/// The two TLS configurations: one offering both protocols, one HTTP/1.1 only. They share one
/// session cache, so TLS sessions resume across both.
struct Tls {
    both: tokio_rustls::TlsConnector,
    http1: tokio_rustls::TlsConnector,
}

impl Connector {
    /// A connector for `upstream`, verifying its certificate with `tls` (ALPN is set here).
    pub fn new(
        upstream: &Upstream,
        tls: rustls::ClientConfig,
        timeout: Duration,
    ) -> Result<Connector, rustls_pki_types::InvalidDnsNameError> {
        let target = format!("{}:{}", upstream.host, upstream.port);
        let tls = if upstream.scheme == http::uri::Scheme::HTTPS {
            let name = ServerName::try_from(upstream.host.clone())?;
            let mut both = tls.clone();
            both.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            let mut http1 = tls;
            http1.alpn_protocols = vec![b"http/1.1".to_vec()];
            Some((
                name,
                Tls {
                    both: tokio_rustls::TlsConnector::from(Arc::new(both)),
                    http1: tokio_rustls::TlsConnector::from(Arc::new(http1)),
                },
            ))
        } else {
            None
        };
        Ok(Connector {
            target,
            tls,
            timeout,
        })
    }

    /// Open a connection offering `offer`, within `connect_timeout` for TCP and TLS together.
    pub async fn connect(&self, offer: Offer) -> Result<Connected, ConnectError> {
        let deadline = Instant::now() + self.timeout;
        let connect_err = |source| ConnectError::Connect {
            target: self.target.clone(),
            source,
        };
        let tcp = tokio::time::timeout_at(deadline, TcpStream::connect(&self.target))
            .await
            .map_err(|_| connect_err(timed_out("connect", self.timeout)))?
            .map_err(connect_err)?;
        let _ = tcp.set_nodelay(true);
        let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE);
        let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive);
        let Some((name, tls)) = &self.tls else {
            return Ok(Connected {
                io: Box::new(tcp),
                h2: false,
            });
        };
        let connector = match offer {
            Offer::Both => &tls.both,
            Offer::Http1 => &tls.http1,
        };
        let tls_err = |source| ConnectError::Tls {
            target: self.target.clone(),
            source,
        };
        let stream = tokio::time::timeout_at(deadline, connector.connect(name.clone(), tcp))
            .await
            .map_err(|_| tls_err(timed_out("TLS handshake", self.timeout)))?
            .map_err(tls_err)?;
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        Ok(Connected {
            io: Box::new(stream),
            h2,
        })
    }
}

fn timed_out(what: &str, timeout: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!(
            "the {what} did not finish within connect_timeout ({} s)",
            timeout.as_secs_f64()
        ),
    )
}
