//! A mock Voximplant API over TLS on 127.0.0.1: verifies every JWT with the public keys it was
//! given (alg, kid, numeric iss, exp - iat <= 3600, not expired, not in the future), records
//! exactly what it received, and answers in Voximplant's shape.
//!
//! Routes: `/platform_api/Download/?bytes=N` streams N pattern bytes; `/platform_api/Slow/?ms=N`
//! answers after N ms; `/platform_api/Reset/` sends a head and part of the body, then breaks the
//! connection; anything else reads the whole body and answers
//! `{"result":{"iss":..,"kid":..,"path":..,"cmd":..,"body_len":..}}`, or, for a key id given to
//! [`Upstream::answer_error`], Voximplant's error shape with HTTP 200 as Voximplant does.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use tokio::net::TcpListener;

use super::certs::Pki;
use super::{BoxError, now};

/// What a verified JWT said.
#[derive(Debug, Clone)]
pub struct Jwt {
    /// Header `kid`.
    pub kid: String,
    /// Claim `iss` (a JSON number, checked).
    pub iss: u64,
    /// Claim `iat`.
    pub iat: i64,
    /// Claim `exp`.
    pub exp: i64,
    /// The header, as JSON.
    pub header: serde_json::Value,
    /// The raw token.
    pub raw: String,
}

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Method.
    pub method: String,
    /// Path and query exactly as received.
    pub target: String,
    /// HTTP version of the upstream connection.
    pub version: Version,
    /// Headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Vec<u8>,
    /// The JWT check: the token, or why it failed.
    pub jwt: Result<Jwt, String>,
    /// When its head arrived (what a limit's bound is about: when requests reach the API).
    pub at: std::time::Instant,
}

/// Voximplant errors to answer, by key id: (code, msg).
type Errors = Arc<Mutex<HashMap<String, (i64, String)>>>;

/// Options for the mock.
#[derive(Clone, Default)]
pub struct Options {
    /// Offer only HTTP/1.1 by ALPN.
    pub http1_only: bool,
}

/// The running mock; stops when dropped.
pub struct Upstream {
    /// Its address.
    pub addr: SocketAddr,
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// The CA that signed its certificate (for `--upstream-ca`).
    pub ca_path: PathBuf,
    /// The PKI, to make more certificates.
    pub pki: Arc<Pki>,
    records: Arc<Mutex<Vec<Recorded>>>,
    keys: Arc<Mutex<HashMap<String, jsonwebtoken::DecodingKey>>>,
    errors: Errors,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    /// Start a mock that trusts tokens signed by `keys` (kid → key).
    pub async fn start(keys: Vec<(String, jsonwebtoken::DecodingKey)>, opts: Options) -> Upstream {
        let pki = Arc::new(Pki::new(&[]));
        let dir = tempfile::tempdir().unwrap();
        let (ca_path, _, _) = pki.write(dir.path());
        let acceptor = tls_acceptor(&pki, opts.http1_only);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let records = Arc::new(Mutex::new(Vec::new()));
        let keys = Arc::new(Mutex::new(keys.into_iter().collect::<HashMap<_, _>>()));
        let errors: Errors = Arc::default();
        let (r, k, e) = (records.clone(), keys.clone(), errors.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let (r, k, e) = (r.clone(), k.clone(), e.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        handle(req, r.clone(), k.clone(), e.clone())
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Upstream {
            addr,
            url: format!("https://{addr}"),
            ca_path,
            pki,
            records,
            keys,
            errors,
            task,
            _dir: dir,
        }
    }

    /// Trust another key.
    pub fn trust(&self, kid: &str, key: jsonwebtoken::DecodingKey) {
        self.keys.lock().unwrap().insert(kid.to_owned(), key);
    }

    /// Answer every request signed with `kid` with Voximplant's error `code` and `msg` (HTTP
    /// 200, as Voximplant answers most errors), like a revoked key.
    pub fn answer_error(&self, kid: &str, code: i64, msg: &str) {
        self.errors
            .lock()
            .unwrap()
            .insert(kid.to_owned(), (code, msg.to_owned()));
    }

    /// Everything received so far.
    pub fn records(&self) -> Vec<Recorded> {
        self.records.lock().unwrap().clone()
    }

    /// The last request received.
    pub fn last(&self) -> Recorded {
        self.records()
            .pop()
            .expect("the upstream received no request")
    }

    /// Forget what was received.
    pub fn clear(&self) {
        self.records.lock().unwrap().clear();
    }
}

/// A TLS acceptor with `pki`'s server certificate, offering `h2` and `http/1.1` by ALPN, or
/// `http/1.1` alone.
pub fn tls_acceptor(pki: &Pki, http1_only: bool) -> tokio_rustls::TlsAcceptor {
    let certs: Vec<rustls_pki_types::CertificateDer<'static>> =
        rustls_pki_types::CertificateDer::pem_slice_iter(pki.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(pki.key_pem.as_bytes()).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    config.alpn_protocols = if http1_only {
        vec![b"http/1.1".to_vec()]
    } else {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    };
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// Verify a bearer token the way Voximplant would.
pub fn verify(
    headers: &HeaderMap,
    keys: &HashMap<String, jsonwebtoken::DecodingKey>,
) -> Result<Jwt, String> {
    let auth = headers
        .get(http::header::AUTHORIZATION)
        .ok_or("no Authorization")?
        .to_str()
        .map_err(|_| "Authorization not ASCII")?;
    let raw = auth
        .strip_prefix("Bearer ")
        .ok_or("not a Bearer token")?
        .to_owned();
    let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header_b64 = raw.split('.').next().ok_or("no header")?;
    let header: serde_json::Value =
        serde_json::from_slice(&enc.decode(header_b64).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    if header["alg"] != "RS256" || header["typ"] != "JWT" {
        return Err(format!("bad header {header}"));
    }
    let kid = header["kid"].as_str().ok_or("no kid")?.to_owned();
    let key = keys.get(&kid).ok_or_else(|| format!("unknown kid {kid}"))?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp"]);
    let data = jsonwebtoken::decode::<serde_json::Value>(&raw, key, &validation)
        .map_err(|e| e.to_string())?;
    let c = data.claims;
    let iss = c["iss"]
        .as_u64()
        .ok_or_else(|| format!("iss is not a JSON number: {}", c["iss"]))?;
    let iat = c["iat"].as_i64().ok_or("no iat")?;
    let exp = c["exp"].as_i64().ok_or("no exp")?;
    if exp - iat > 3600 {
        return Err("exp - iat > 3600".into());
    }
    if iat > now() + 1 {
        return Err("issued in the future".into());
    }
    if exp <= now() {
        return Err("expired".into());
    }
    Ok(Jwt {
        kid,
        iss,
        iat,
        exp,
        header,
        raw,
    })
}

fn query_param(query: &str, name: &str) -> Option<u64> {
    query
        .split('&')
        .find_map(|p| p.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
}

/// The byte at position `i` of a download (a pattern that catches reordering and loss).
pub fn pattern(i: u64) -> u8 {
    (i % 251) as u8
}

/// The size of a download's chunks.
const CHUNK: usize = 65536;

/// The pattern from position 0, one chunk and one period long: every chunk of a download is a
/// slice of it (no per-byte work per chunk, which an unoptimised test build pays dearly for when
/// a test streams many MiB).
fn pattern_block() -> &'static Bytes {
    static BLOCK: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    BLOCK.get_or_init(|| (0..(CHUNK + 251) as u64).map(pattern).collect())
}

async fn handle(
    req: Request<Incoming>,
    records: Arc<Mutex<Vec<Recorded>>>,
    keys: Arc<Mutex<HashMap<String, jsonwebtoken::DecodingKey>>>,
    errors: Errors,
) -> Result<Response<BoxBody<Bytes, BoxError>>, Infallible> {
    let at = std::time::Instant::now();
    let (mut parts, body) = req.into_parts();
    // Over HTTP/2 the authority travels as :authority; record it as Host either way.
    if let (None, Some(authority)) = (parts.headers.get("host"), parts.uri.authority()) {
        let value = authority.as_str().parse().unwrap();
        parts.headers.insert("host", value);
    }
    let target = parts
        .uri
        .path_and_query()
        .map_or("/".to_owned(), |pq| pq.to_string());
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or("").to_owned();
    let jwt = verify(&parts.headers, &keys.lock().unwrap());
    let streaming = path.starts_with("/platform_api/Download");
    let body = if streaming {
        Vec::new()
    } else {
        match body.collect().await {
            Ok(b) => b.to_bytes().to_vec(),
            Err(_) => return Ok(simple(StatusCode::BAD_REQUEST, "body broke")),
        }
    };
    let body_len = body.len();
    let cmd = form_cmd(&body);
    records.lock().unwrap().push(Recorded {
        method: parts.method.to_string(),
        target,
        version: parts.version,
        headers: parts.headers.clone(),
        body,
        jwt: jwt.clone(),
        at,
    });
    let jwt = match jwt {
        Ok(j) => j,
        Err(e) => {
            let body = serde_json::json!({"error": {"code": 100, "msg": format!("Authorization failed: {e}")}});
            let mut r = simple(StatusCode::UNAUTHORIZED, &body.to_string());
            r.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            return Ok(r);
        }
    };
    let error = errors.lock().unwrap().get(&jwt.kid).cloned();
    if let Some((code, msg)) = error {
        let body = serde_json::json!({"error": {"code": code, "msg": msg}});
        let mut r = simple(StatusCode::OK, &body.to_string());
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        return Ok(r);
    }
    if path.starts_with("/platform_api/Slow") {
        tokio::time::sleep(Duration::from_millis(
            query_param(&query, "ms").unwrap_or(1000),
        ))
        .await;
    }
    if streaming {
        let total = query_param(&query, "bytes").unwrap_or(0);
        let chunks = (0..total).step_by(CHUNK).map(move |start| {
            let len = (total - start).min(CHUNK as u64) as usize;
            let from = (start % 251) as usize;
            Ok::<_, BoxError>(Frame::data(pattern_block().slice(from..from + len)))
        });
        let body = StreamBody::new(futures_util::stream::iter(chunks));
        let mut r = Response::new(BodyExt::boxed(body));
        r.headers_mut()
            .insert("content-type", "application/octet-stream".parse().unwrap());
        r.headers_mut()
            .insert("content-length", total.to_string().parse().unwrap());
        return Ok(r);
    }
    if path.starts_with("/platform_api/Reset") {
        // The head and a first chunk go out; a moment later the connection breaks.
        let body = StreamBody::new(futures_util::stream::unfold(0u8, |step| async move {
            match step {
                0 => Some((Ok(Frame::data(Bytes::from(vec![b'x'; 1000]))), 1)),
                1 => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Some((
                        Err::<Frame<Bytes>, BoxError>("upstream breaks the connection".into()),
                        2,
                    ))
                }
                _ => None,
            }
        }));
        let mut r = Response::new(BodyExt::boxed(body));
        r.headers_mut()
            .insert("content-length", "100000".parse().unwrap());
        return Ok(r);
    }
    let result = serde_json::json!({
        "result": {
            "iss": jwt.iss,
            "kid": jwt.kid,
            "path": path,
            "query": query,
            "cmd": cmd,
            "body_len": body_len,
        }
    });
    let mut r = simple(StatusCode::OK, &result.to_string());
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    // voxproxy must overwrite the upstream's own request id with the request's.
    r.headers_mut()
        .insert("x-request-id", "upstream-own-id".parse().unwrap());
    Ok(r)
}

fn form_cmd(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    if let Some(v) = text.split('&').find_map(|p| p.strip_prefix("cmd=")) {
        return Some(v.to_owned());
    }
    // multipart: name="cmd"\r\n\r\nVALUE\r\n
    let i = text.find("name=\"cmd\"")?;
    let rest = &text[i..];
    let start = rest.find("\r\n\r\n")? + 4;
    let end = rest[start..].find("\r\n")?;
    Some(rest[start..start + end].to_owned())
}

fn simple(status: StatusCode, body: &str) -> Response<BoxBody<Bytes, BoxError>> {
    let mut r = Response::new(
        http_body_util::Full::new(Bytes::from(body.to_owned()))
            .map_err(|e| match e {})
            .boxed(),
    );
    *r.status_mut() = status;
    r
}
