//! A raw HTTP/1.1 upstream over TLS on 127.0.0.1, for what a well-behaved server library would
//! never do: it records each request head byte for byte as soon as it arrives, then writes a
//! fixed answer (framing errors included) and closes or holds the connection open, sending
//! nothing more. And a listener that accepts TCP and never speaks at all.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use super::certs::Pki;
use super::upstream::tls_acceptor;

/// What the upstream does once it has sent its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Close the connection.
    Close,
    /// Keep it open and send nothing more (a stalled body).
    Hold,
}

/// The running upstream; stops when dropped.
pub struct RawUpstream {
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// The CA that signed its certificate (for `--upstream-ca`).
    pub ca_path: PathBuf,
    heads: Arc<Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawUpstream {
    /// Answer every request with `answer` (written as is, after the request head), then `after`.
    /// Only `http/1.1` is offered by ALPN.
    pub async fn start(answer: &[u8], after: After) -> RawUpstream {
        let pki = Pki::new(&[]);
        let dir = tempfile::tempdir().unwrap();
        let (ca_path, _, _) = pki.write(dir.path());
        let acceptor = tls_acceptor(&pki, true);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let (answer, recorded) = (Arc::new(answer.to_vec()), heads.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, answer, heads) =
                    (acceptor.clone(), answer.clone(), recorded.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Some(head) = read_head(&mut tls).await else {
                        return;
                    };
                    heads.lock().unwrap().push(head);
                    if tls.write_all(&answer).await.is_err() || tls.flush().await.is_err() {
                        return;
                    }
                    if after == After::Hold {
                        // Read (and ignore) whatever comes until the peer goes: the connection
                        // stays open, and nothing more is sent.
                        let mut sink = vec![0u8; 64 * 1024];
                        while matches!(tls.read(&mut sink).await, Ok(n) if n > 0) {}
                    }
                    let _ = tls.shutdown().await;
                });
            }
        });
        RawUpstream {
            url: format!("https://{addr}"),
            ca_path,
            heads,
            task,
            _dir: dir,
        }
    }

    /// The request heads received so far, byte for byte.
    pub fn heads(&self) -> Vec<Vec<u8>> {
        self.heads.lock().unwrap().clone()
    }

    /// Wait (up to 10 s) until `n` request heads have arrived.
    pub async fn wait_heads(&self, n: usize) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let heads = self.heads();
            if heads.len() >= n {
                return heads;
            }
            assert!(Instant::now() < deadline, "{} of {n} heads", heads.len());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Read a request head, up to and including its blank line (at most 64 KiB).
async fn read_head(io: &mut (impl tokio::io::AsyncRead + Unpin)) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 64 * 1024 || io.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(head)
}

/// A TCP listener that accepts connections, holds them open and never sends a byte (a TLS
/// handshake with it never finishes); stops when dropped.
pub struct SilentListener {
    /// Its address.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SilentListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SilentListener {
    /// Bind on 127.0.0.1 and start accepting.
    pub async fn start() -> SilentListener {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((tcp, _)) = listener.accept().await {
                held.push(tcp);
            }
        });
        SilentListener { addr, task }
    }
}
