//! A fast TLS stand-in for the Voximplant API, for `bench/run.sh`: HTTP/1.1 and HTTP/2 by ALPN on
//! 127.0.0.1, a multi-threaded tokio runtime, and nothing on the request path but what a real API
//! server must do at least: read the whole request body and look at `Authorization`.
//!
//! - `/platform_api/...` without `Authorization`: 401 in Voximplant's error shape;
//! - `/platform_api/...` with it: the body is read to its end, then a small JSON answer shaped like
//!   `GetAccountInfo`'s (`body_len` echoes how many body bytes arrived);
//! - anything else: 404.
//!
//! It does not verify the JWT: the benchmark measures the proxies, not RSA verification.
//!
//! ```text
//! cargo build --release --example bench_upstream
//! target/release/examples/bench_upstream --cert cert.pem --key key.pem \
//!     [--listen 127.0.0.1:0] [--threads 1] [--http1-only]
//! ```
//! `--http1-only` offers only `http/1.1` by ALPN (by default `h2` and `http/1.1`, like the real
//! API). Without ALPN (wrk) the protocol is read from the connection's first bytes.
//! It prints `listening 127.0.0.1:PORT` on stdout once it accepts connections, and runs until
//! killed.

use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    cert: PathBuf,
    key: PathBuf,
    listen: SocketAddr,
    threads: usize,
    http1_only: bool,
}

fn parse_args() -> Result<Args, BoxError> {
    let mut cert = None;
    let mut key = None;
    let mut listen: SocketAddr = "127.0.0.1:0".parse()?;
    let mut threads = 1;
    let mut http1_only = false;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--cert" => cert = Some(PathBuf::from(value()?)),
            "--key" => key = Some(PathBuf::from(value()?)),
            "--listen" => listen = value()?.parse()?,
            "--threads" => threads = value()?.parse()?,
            "--http1-only" => http1_only = true,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if !listen.ip().is_loopback() {
        return Err("--listen must be a loopback address".into());
    }
    Ok(Args {
        cert: cert.ok_or("--cert PATH is required")?,
        key: key.ok_or("--key PATH is required")?,
        listen,
        threads,
        http1_only,
    })
}

fn main() -> Result<(), BoxError> {
    let args = parse_args()?;
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(&args.cert)?.collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&args.key)?;
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    tls.alpn_protocols = if args.http1_only {
        vec![b"http/1.1".to_vec()]
    } else {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening {}", listener.local_addr()?)?;
        out.flush()?;
        drop(out);
        let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
        loop {
            let (tcp, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    eprintln!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let builder = builder.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(handle);
                let _ = builder.serve_connection(TokioIo::new(tls), service).await;
            });
        }
    })
}

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if !req.uri().path().starts_with("/platform_api/") {
        return Ok(answer(
            StatusCode::NOT_FOUND,
            r#"{"error":{"code":404,"msg":"not found"}}"#.to_owned(),
        ));
    }
    let authorized = req.headers().contains_key(header::AUTHORIZATION);
    // Read the whole body even when refusing, like a real server behind a load balancer.
    let body_len = match req.into_body().collect().await {
        Ok(body) => body.to_bytes().len(),
        Err(_) => {
            return Ok(answer(
                StatusCode::BAD_REQUEST,
                r#"{"error":{"code":400,"msg":"body"}}"#.to_owned(),
            ));
        }
    };
    if !authorized {
        return Ok(answer(
            StatusCode::UNAUTHORIZED,
            r#"{"error":{"code":100,"msg":"Authorization required"}}"#.to_owned(),
        ));
    }
    Ok(answer(
        StatusCode::OK,
        format!(
            r#"{{"result":{{"account_id":1,"account_name":"bench","account_email":"bench@example.com","active":true,"frozen":false,"balance":100.5,"currency":"USD","language_code":"en","location":"Etc/GMT","created":"2024-01-01 00:00:00","body_len":{body_len}}},"api_address":"api.voximplant.com"}}"#
        ),
    ))
}

fn answer(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}
