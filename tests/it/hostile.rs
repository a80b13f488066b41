//! Hostile and broken peers through the real binary (the contract's section of that name), one
//! test per promise: paths that could escape `/platform_api`, framing tricks, clients that read
//! nothing or send nothing, clients whose upload breaks or leaves, upstreams that frame twice,
//! never finish a handshake, or stall mid-body.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Version};
use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::certs::{Creds, Pki};
use crate::support::http::{Resp, body, get, metrics, raw, sample, send};
use crate::support::process::Voxproxy;
use crate::support::raw_upstream::{After, RawUpstream, SilentListener};
use crate::support::upstream::Upstream;
use crate::support::{Rig, add_static_key_client};

/// The account of the rig's credentials file.
const ACCOUNT: u64 = 1_000_001;

/// `client_idle_timeout` in the tests that wait for it.
const IDLE: Duration = Duration::from_secs(1);

/// voxproxy's own 400 `bad_request`, in Voximplant's error shape.
fn assert_bad_request(resp: &Resp, context: &str) {
    assert_eq!(resp.status, 400, "{context}: {:?}", resp.body);
    assert_eq!(resp.kind(), Some("bad_request"), "{context}");
    let json = resp.json();
    assert_eq!(json["error"]["code"], 9400, "{context}");
    let msg = json["error"]["msg"].as_str().unwrap();
    assert!(msg.starts_with("voxproxy: "), "{context}: {msg}");
}

/// A raw HTTP/1.1 answer: (status, head lines lowercased, body).
fn parse_raw(text: &str) -> (u16, String, String) {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    (status, head.to_ascii_lowercase(), body.to_owned())
}

/// A raw request's answer is voxproxy's own 400 `bad_request`.
fn assert_raw_bad_request(text: &str, context: &str) {
    let (status, head, body) = parse_raw(text);
    assert_eq!(status, 400, "{context}: {text}");
    assert!(
        head.contains("\r\nx-voxproxy-error: bad_request"),
        "{context}: {text}"
    );
    assert!(body.contains("\"code\":9400"), "{context}: {text}");
}

#[tokio::test]
async fn paths_that_could_escape_platform_api_are_400_and_never_forwarded() {
    let rig = Rig::start(&[]).await;
    let addr = rig.proxy.addr();
    for path in [
        "/platform_api/..%2fsecret",
        "/platform_api/GetUsers%2F..%2F..%2Fsecret",
        "/platform_api/a%5cb/",
        "/platform_api/a%5Cb/",
        "/platform_api/%2e%2e/secret",
        "/platform_api/GetUsers/%2E%2e/DelUser/",
        "/platform_api/GetUsers/../DelUser/",
        "/platform_api/GetUsers\\..\\DelUser/",
        "/platform_api/a\\b",
        "/accounts/1000001/platform_api/..%2Fsecret",
    ] {
        assert_bad_request(&get(addr, path).await, path);
    }
    assert!(
        rig.upstream.records().is_empty(),
        "the upstream received {:?}",
        rig.upstream.records()
    );
    // What only looks alike (a query, a double-encoded slash) goes upstream as sent.
    for path in [
        "/platform_api/GetUsers/?next=..%2fsecret",
        "/platform_api/Get%252FUsers/",
    ] {
        assert_eq!(get(addr, path).await.status, 200, "{path}");
        assert_eq!(rig.upstream.last().target, path);
    }
}

#[tokio::test]
async fn a_read_only_client_cannot_reach_another_method_through_an_escaping_path() {
    let dir = tempfile::tempdir().unwrap();
    let creds = Creds::write(dir.path(), "credentials.json", ACCOUNT);
    let clients = dir.path().join("clients.toml");
    let key = add_static_key_client(&clients, &creds, "reporting", &["--read-only"]);
    let keys = vec![(creds.key_id.clone(), creds.key.decoding_key())];
    let upstream = Upstream::start(keys, Default::default()).await;
    let proxy = Rig::proxy(
        &upstream,
        &creds,
        &["--clients", clients.to_str().unwrap()],
        &[],
    );
    let as_client = |path: &str| {
        Request::get(path)
            .header("host", "127.0.0.1")
            .header("proxy-authorization", format!("Bearer {key}"))
            .body(body(""))
            .unwrap()
    };
    let allowed = "/platform_api/GetAccountInfo/";
    let resp = send(proxy.addr(), as_client(allowed)).await;
    assert_eq!(resp.status, 200, "{:?}", resp.body);
    for path in [
        "/platform_api/GetAccountInfo/..%2fDelUser/",
        "/platform_api/GetAccountInfo/..%2FDelUser/",
        "/platform_api/GetAccountInfo/%2e%2e/DelUser/",
        "/platform_api/GetAccountInfo\\..\\DelUser/",
    ] {
        assert_bad_request(&send(proxy.addr(), as_client(path)).await, path);
    }
    let targets: Vec<String> = upstream.records().into_iter().map(|r| r.target).collect();
    assert_eq!(targets, [allowed], "only the allowed call was forwarded");
}

/// `n` sequential GETs, each on a fresh connection; each must come back whole. Their latencies.
async fn latencies(addr: SocketAddr, n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let resp = get(addr, "/platform_api/GetAccountInfo/").await;
        out.push(started.elapsed());
        assert_eq!(resp.status, 200, "{:?}", resp.body);
        assert_eq!(
            resp.json()["result"]["path"],
            "/platform_api/GetAccountInfo/"
        );
    }
    out
}

/// The 99th percentile (with few samples, the largest).
fn p99(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let i = (samples.len() * 99).div_ceil(100) - 1;
    samples[i]
}

/// A client that asks for a download of `bytes` and reads none of it, with a small receive
/// buffer so the kernel cannot read it on its behalf.
async fn non_reader(addr: SocketAddr, id: &str, bytes: u64) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut tcp = socket.connect(addr).await.unwrap();
    let req = format!(
        "GET /platform_api/Download/?bytes={bytes} HTTP/1.1\r\nHost: x\r\nX-Request-Id: {id}\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    tcp
}

/// Read until the server closes or resets (at most 10 s): the bytes read, and whether it closed.
async fn read_until_closed(io: &mut (impl AsyncRead + Unpin)) -> (u64, bool) {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => total += n as u64,
            }
        }
    })
    .await;
    (total, ended.is_ok())
}

/// Ten clients ask for a large download over one shared HTTP/2 upstream connection and read
/// nothing. Filling their buffers takes a moment; after that, another client's requests are as
/// fast as without them for as long as they stay stuck (until `client_idle_timeout`: 4 s here,
/// long enough for the filling on a loaded machine). Were their unread data to use up the
/// connection's window, every other response on it would wait until they are cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_read_nothing_slow_no_one_else_over_an_http2_upstream() {
    const SIZE: u64 = 8 << 20;
    // client_idle_timeout here: how long, at least, the non-readers stay stuck.
    const STUCK_FOR: Duration = Duration::from_secs(4);
    let rig = Rig::start(&["--client-idle-timeout", "4"]).await;
    let addr = rig.proxy.addr();
    // The control, with nobody stuck (the first request opens the shared upstream connection).
    latencies(addr, 5).await;
    let control = p99(latencies(addr, 200).await);
    let bound = (control * 5).max(control + Duration::from_millis(200));
    let started = Instant::now();
    let mut stuck = Vec::new();
    for i in 0..10 {
        stuck.push(non_reader(addr, &format!("non-reader-{i}"), SIZE).await);
    }
    // Their buffers fill; then a request is as fast as the control again.
    while p99(latencies(addr, 1).await) > bound {
        assert!(
            started.elapsed() < STUCK_FOR.mul_f64(0.8),
            "no request as fast as {bound:?} while 10 clients read nothing"
        );
    }
    let loaded = p99(latencies(addr, 200).await);
    assert!(
        loaded <= bound,
        "p99 {loaded:?} with 10 clients reading nothing, {control:?} without"
    );
    let ids: Vec<String> = (0..10).map(|i| format!("non-reader-{i}")).collect();
    assert!(
        ids.iter().all(|id| !rig.proxy.has_access_line(id)),
        "measured after the clients that read nothing were cut ({:?})",
        started.elapsed()
    );
    let downloads = rig.upstream.records();
    let downloads = downloads.iter().filter(|r| r.target.contains("Download"));
    assert_eq!(downloads.clone().count(), 10);
    assert!(downloads.clone().all(|r| r.version == Version::HTTP_2));
    // Each is cut after client_idle_timeout, not before, its body unfinished.
    for (id, tcp) in ids.iter().zip(&mut stuck) {
        let line = rig.proxy.access_line(id).await;
        assert_eq!(
            (&line["status"], &line["aborted"]),
            (&200.into(), &true.into()),
            "{line}"
        );
        assert!(line["bytes_out"].as_u64().unwrap() < SIZE, "{line}");
        let took = line["duration_ms"].as_f64().unwrap();
        assert!(
            took >= STUCK_FOR.as_millis() as f64 * 0.9,
            "cut too early: {line}"
        );
        let (read, closed) = read_until_closed(tcp).await;
        assert!(closed && read < SIZE, "read {read} bytes, closed: {closed}");
    }
}

/// Read from a connection that sends nothing until the server closes it; it must close after
/// about `IDLE` (the idle check runs once per timeout: within twice the timeout), not before.
async fn assert_closed_when_idle(io: &mut (impl AsyncRead + Unpin), what: &str) {
    let started = Instant::now();
    let (read, closed) = read_until_closed(io).await;
    let took = started.elapsed();
    assert!(closed, "{what}: still open after {took:?}");
    assert_eq!(read, 0, "{what}: the server sent something");
    assert!(
        took >= IDLE.mul_f64(0.9) && took <= IDLE * 2 + Duration::from_secs(3),
        "{what}: closed after {took:?}"
    );
}

#[tokio::test]
async fn a_plain_connection_that_sends_nothing_is_closed_after_client_idle_timeout() {
    let rig = Rig::start(&["--client-idle-timeout", "1"]).await;
    let mut tcp = TcpStream::connect(rig.proxy.addr()).await.unwrap();
    assert_closed_when_idle(&mut tcp, "plain TCP").await;
    assert_eq!(get(rig.proxy.addr(), "/healthz").await.status, 200);
}

#[tokio::test]
async fn a_tls_connection_that_sends_nothing_after_the_handshake_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&[]);
    let (_, cert, key) = pki.write(dir.path());
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let rig = Rig::start(&[
        "--client-idle-timeout",
        "1",
        "--tls-cert",
        cert,
        "--tls-key",
        key,
    ])
    .await;
    let tcp = TcpStream::connect(rig.proxy.addr()).await.unwrap();
    let config = crate::support::tls::client_config(&pki.ca_pem, None);
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .expect("the handshake completes");
    assert_closed_when_idle(&mut tls, "TLS after the handshake").await;
}

#[tokio::test]
async fn an_http2_connection_with_a_partial_preface_is_closed_after_client_idle_timeout() {
    let rig = Rig::start(&["--client-idle-timeout", "1"]).await;
    let mut tcp = TcpStream::connect(rig.proxy.addr()).await.unwrap();
    // 16 of the preface's 24 bytes.
    tcp.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    assert_closed_when_idle(&mut tcp, "a partial HTTP/2 preface").await;
}

/// A proxy in front of `upstream`, with one credentials file in `dir`.
fn proxy_for(upstream: &RawUpstream, dir: &std::path::Path, extra: &[&str]) -> Voxproxy {
    let creds = Creds::write(dir, "credentials.json", ACCOUNT);
    Rig::proxy_to(&upstream.url, &upstream.ca_path, &creds, extra, &[])
}

#[tokio::test]
async fn broken_chunks_are_400_and_a_client_leaving_mid_upload_is_499_never_upstream_reset() {
    // An upstream that takes the body and never answers: the upload is cut on the client's side.
    let upstream = RawUpstream::start(b"", After::Hold).await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = proxy_for(&upstream, dir.path(), &[]);
    let addr = proxy.addr();
    let before = metrics(addr).await;
    let reset = "voxproxy_errors_total{kind=\"upstream_reset\"}";
    let bad = "voxproxy_errors_total{kind=\"bad_request\"}";

    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"POST /platform_api/SetUserInfo/ HTTP/1.1\r\nHost: x\r\nX-Request-Id: broken-chunks\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n").await.unwrap();
    upstream.wait_heads(1).await;
    tcp.write_all(b"zz\r\nnot a chunk\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer)).await;
    assert_raw_bad_request(&String::from_utf8_lossy(&answer), "broken chunks");
    let line = proxy.access_line("broken-chunks").await;
    assert_eq!(
        (&line["status"], &line["kind"]),
        (&400.into(), &"bad_request".into()),
        "{line}"
    );

    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"POST /platform_api/SetUserInfo/ HTTP/1.1\r\nHost: x\r\nX-Request-Id: leaves-mid-upload\r\nContent-Length: 100000\r\n\r\n").await.unwrap();
    tcp.write_all(&[b'a'; 1000]).await.unwrap();
    upstream.wait_heads(2).await;
    drop(tcp);
    let line = proxy.access_line("leaves-mid-upload").await;
    assert_eq!(line["status"], 499, "{line}");
    assert_eq!(line["aborted"], true, "{line}");
    assert!(line["kind"].is_null(), "{line}");

    let after = metrics(addr).await;
    assert_eq!(sample(&after, reset), sample(&before, reset), "{after}");
    assert_eq!(sample(&after, bad), sample(&before, bad) + 1.0, "{after}");
}

#[tokio::test]
async fn an_upstream_answer_framed_twice_reaches_the_client_by_its_chunks_alone() {
    let upstream = RawUpstream::start(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\na\r\n0123456789\r\nf\r\nabcdefghijklmno\r\n0\r\n\r\n",
        After::Close,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = proxy_for(&upstream, dir.path(), &[]);
    for _ in 0..2 {
        let resp = get(proxy.addr(), "/platform_api/GetUsers/").await;
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body, Bytes::from_static(b"0123456789abcdefghijklmno"));
        assert!(
            resp.header("content-length").is_none(),
            "{:?}",
            resp.headers
        );
        assert_eq!(resp.header("content-type"), Some("text/plain"));
    }
}

#[tokio::test]
async fn a_missing_or_doubled_host_and_a_coding_besides_chunked_are_400() {
    let rig = Rig::start(&[]).await;
    for (what, request) in [
        (
            "no Host",
            "GET /platform_api/GetUsers/ HTTP/1.1\r\nConnection: close\r\n\r\n",
        ),
        (
            "two Hosts",
            "GET /platform_api/GetUsers/ HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
        ),
        (
            "gzip, chunked",
            "POST /platform_api/GetUsers/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
    ] {
        assert_raw_bad_request(&raw(rig.proxy.addr(), request.as_bytes()).await, what);
    }
    assert!(
        rig.upstream.records().is_empty(),
        "{:?}",
        rig.upstream.records()
    );
}

#[tokio::test]
async fn underscore_spellings_of_framing_and_hop_by_hop_headers_never_reach_the_upstream() {
    let upstream = RawUpstream::start(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        After::Close,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = proxy_for(&upstream, dir.path(), &[]);
    let answer = raw(
        proxy.addr(),
        b"GET /platform_api/GetUsers/ HTTP/1.1\r\nHost: x\r\nTransfer_Encoding: chunked\r\nContent_Length: 500\r\nKeep_Alive: timeout=5\r\nProxy_Connection: keep-alive\r\nX-Kept: yes\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(parse_raw(&answer).0, 200, "{answer}");
    let head = String::from_utf8(upstream.heads().pop().unwrap()).unwrap();
    let names: Vec<String> = head
        .lines()
        .skip(1)
        .filter_map(|l| Some(l.split_once(':')?.0.to_ascii_lowercase()))
        .collect();
    assert!(names.contains(&"x-kept".to_owned()), "{head}");
    for gone in [
        "transfer_encoding",
        "content_length",
        "keep_alive",
        "proxy_connection",
        "transfer-encoding",
        "content-length",
    ] {
        assert!(
            !names.contains(&gone.to_owned()),
            "{gone} reached the upstream:\n{head}"
        );
    }
}

#[tokio::test]
async fn connect_timeout_covers_an_upstream_that_never_finishes_the_tls_handshake() {
    let silent = SilentListener::start().await;
    let dir = tempfile::tempdir().unwrap();
    let creds = Creds::write(dir.path(), "credentials.json", ACCOUNT);
    let url = format!("https://{}", silent.addr);
    let proxy = Voxproxy::start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &url,
            "--credentials",
            creds.path.to_str().unwrap(),
            "--connect-timeout",
            "1",
            "--request-timeout",
            "30",
        ],
        &[],
    );
    let started = Instant::now();
    let resp = get(proxy.addr(), "/platform_api/GetUsers/").await;
    let took = started.elapsed();
    assert_eq!(resp.status, 502, "{:?}", resp.body);
    assert_eq!(resp.kind(), Some("upstream_tls"));
    assert_eq!(resp.json()["error"]["code"], 9521);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "answered after {took:?}"
    );
}

#[tokio::test]
async fn an_upstream_body_that_stalls_is_cut_after_request_timeout() {
    let mut answer = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".to_vec();
    answer.extend_from_slice(&[b'x'; 1000]);
    let upstream = RawUpstream::start(&answer, After::Hold).await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = proxy_for(&upstream, dir.path(), &["--request-timeout", "1"]);
    let tcp = TcpStream::connect(proxy.addr()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("/platform_api/Download/")
        .header("host", "x")
        .header("x-request-id", "stalled-body")
        .body(body(""))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let started = Instant::now();
    let mut body = resp.into_body();
    let mut got = 0;
    let broke = loop {
        match tokio::time::timeout(Duration::from_secs(10), body.frame()).await {
            Ok(Some(Ok(frame))) => got += frame.data_ref().map_or(0, Bytes::len),
            Ok(Some(Err(_))) => break true,
            Ok(None) | Err(_) => break false,
        }
    };
    let took = started.elapsed();
    assert!(
        broke,
        "the body did not break off (got {got} bytes in {took:?})"
    );
    assert_eq!(got, 1000);
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(10),
        "cut after {took:?}"
    );
    let line = proxy.access_line("stalled-body").await;
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["aborted"], true, "{line}");
    assert_eq!(line["kind"], "upstream_timeout", "{line}");
    assert_eq!(line["bytes_out"], 1000, "{line}");
}

#[tokio::test]
async fn a_client_that_leaves_before_the_head_is_counted_and_leaves_in_flight() {
    let rig = Rig::start(&[]).await;
    let addr = rig.proxy.addr();
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        b"GET /platform_api/Slow/?ms=3000 HTTP/1.1\r\nHost: x\r\nX-Request-Id: gone-before-head\r\n\r\n",
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while rig.upstream.records().is_empty() {
        assert!(Instant::now() < deadline, "never forwarded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let during = metrics(addr).await;
    assert_eq!(sample(&during, "voxproxy_requests_in_flight"), 1.0);
    drop(tcp);
    let line = rig.proxy.access_line("gone-before-head").await;
    assert_eq!(line["status"], 499, "{line}");
    let after = metrics(addr).await;
    assert_eq!(
        sample(&after, "voxproxy_requests_in_flight"),
        0.0,
        "{after}"
    );
    let series = format!(
        "voxproxy_requests_total{{status=\"499\",account=\"{ACCOUNT}\",api_method=\"Slow\"}}"
    );
    assert_eq!(sample(&after, &series), 1.0, "{after}");
}
