//! Minimal clients for tests: one HTTP/1.1 or HTTP/2 (prior knowledge) connection per call, so a
//! test controls the exact request target and framing; and raw bytes for what a client library
//! would refuse to send.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// A whole response.
#[derive(Debug)]
pub struct Resp {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Resp {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// voxproxy's error kind, if this is one of its own errors.
    pub fn kind(&self) -> Option<&str> {
        self.header("x-voxproxy-error")
    }
}

/// Send one request over a fresh HTTP/1.1 connection; the URI is written as given (origin-form
/// or absolute-form).
pub async fn send<B>(addr: SocketAddr, req: Request<B>) -> Resp
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    try_send(addr, req).await.expect("request failed")
}

/// Like [`send`], but a broken response is an error instead of a panic.
pub async fn try_send<B>(addr: SocketAddr, req: Request<B>) -> Result<Resp, String>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    send_over(tcp, req).await
}

/// Send one request over an established byte stream (TCP or TLS) as HTTP/1.1 and read the whole
/// response. Like every HTTP/1.1 client, it sends `Host` (the target's authority, else
/// `localhost`) unless the request has one; hyper's connection-level client does not.
pub async fn send_over<IO, B>(io: IO, mut req: Request<B>) -> Result<Resp, String>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if !req.headers().contains_key(http::header::HOST) {
        let host = req
            .uri()
            .authority()
            .map_or_else(|| "localhost".to_owned(), |a| a.to_string());
        req.headers_mut()
            .insert(http::header::HOST, host.parse().unwrap());
    }
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Resp {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// GET a URL path on `addr`.
pub async fn get(addr: SocketAddr, path: &str) -> Resp {
    send(
        addr,
        Request::get(path)
            .header("host", addr.to_string())
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await
}

/// Send one request over a fresh HTTP/2 prior-knowledge connection.
pub async fn send_h2(addr: SocketAddr, req: Request<Full<Bytes>>) -> Resp {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    Resp {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

/// Write raw bytes, read until the server closes (or 10 s pass).
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A body from bytes.
pub fn body(b: impl Into<Bytes>) -> Full<Bytes> {
    Full::new(b.into())
}

/// The value of one sample line in a metrics exposition.
pub fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in\n{metrics}"))
}

/// `/metrics` of the proxy at `addr`, as text.
pub async fn metrics(addr: SocketAddr) -> String {
    let resp = get(addr, "/metrics").await;
    assert_eq!(resp.status, 200);
    String::from_utf8(resp.body.to_vec()).unwrap()
}
