//! The access log through the real binary: exactly one line per request (counted by request id)
//! for completed requests over HTTP/1.1, keep-alive, HTTP/2 and Python's `http.client`, all
//! `aborted: false`; `aborted: true` for a client that leaves before the head (499) or in the
//! middle of a download; every field of the contract present, `null` where unknown,
//! milliseconds with at most 3 decimals.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::support::Rig;
use crate::support::http::{body, send_h2};
use crate::support::process::Voxproxy;

/// Every field of the contract's access line.
const FIELDS: [&str; 16] = [
    "request_id",
    "peer",
    "protocol",
    "method",
    "path",
    "user_agent",
    "api_method",
    "account",
    "client",
    "status",
    "kind",
    "duration_ms",
    "upstream_ms",
    "bytes_in",
    "bytes_out",
    "aborted",
];

/// The access lines of request `id`: (raw line, parsed).
fn access_lines(proxy: &Voxproxy, id: &str) -> Vec<(String, Value)> {
    proxy
        .log
        .all()
        .into_iter()
        .filter_map(|l| {
            let v: Value = serde_json::from_str(&l).ok()?;
            (v["target"] == "voxproxy::access"
                && v["message"] == "request"
                && v["request_id"] == id)
                .then_some((l, v))
        })
        .collect()
}

/// Wait for request `id`'s access line, then for a later request's (a barrier: a second line
/// for `id` would have come by then), and return `id`'s one line.
async fn the_line(rig: &Rig, id: &str) -> (String, Value) {
    rig.proxy.access_line(id).await;
    let barrier = format!("barrier-after-{id}");
    let _ = crate::support::http::send(
        rig.proxy.addr(),
        Request::get("/healthz")
            .header("x-request-id", &barrier)
            .body(body(""))
            .unwrap(),
    )
    .await;
    rig.proxy.access_line(&barrier).await;
    let mut lines = access_lines(&rig.proxy, id);
    assert_eq!(
        lines.len(),
        1,
        "exactly one access line for {id}: {lines:?}"
    );
    lines.pop().unwrap()
}

/// Every field is there; milliseconds have at most 3 decimals.
fn assert_complete(raw: &str, v: &Value) {
    let obj = v.as_object().unwrap();
    for f in FIELDS {
        assert!(obj.contains_key(f), "no {f} in {raw}");
    }
    for f in ["duration_ms", "upstream_ms"] {
        let Some(n) = v[f].as_f64() else { continue };
        let text = raw
            .split(&format!("\"{f}\":"))
            .nth(1)
            .unwrap()
            .split([',', '}'])
            .next()
            .unwrap();
        let decimals = text.split('.').nth(1).map_or(0, str::len);
        assert!(decimals <= 3 && n >= 0.0, "{f} = {text} in {raw}");
    }
}

/// A completed, forwarded 200 as this test client sent it.
fn assert_completed_200(raw: &str, v: &Value, protocol: &str, peer: Option<SocketAddr>) {
    assert_complete(raw, v);
    assert_eq!(v["status"], 200, "{raw}");
    assert_eq!(v["aborted"], false, "{raw}");
    assert_eq!(v["protocol"], protocol, "{raw}");
    assert_eq!(v["method"], "GET", "{raw}");
    assert_eq!(v["path"], "/platform_api/GetAccountInfo/", "{raw}");
    assert_eq!(v["api_method"], "GetAccountInfo", "{raw}");
    assert_eq!(v["account"], 1_000_001, "{raw}");
    assert!(v["kind"].is_null() && v["client"].is_null(), "{raw}");
    assert!(v["upstream_ms"].is_number(), "{raw}");
    assert!(v["bytes_out"].as_u64().unwrap() > 0, "{raw}");
    if let Some(peer) = peer {
        assert_eq!(v["peer"], peer.to_string(), "{raw}");
    } else {
        assert!(
            v["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
            "{raw}"
        );
    }
}

fn get(id: &str, agent: &str) -> Request<Empty<Bytes>> {
    Request::get("/platform_api/GetAccountInfo/?api_key=SECRET")
        .header("host", "localhost")
        .header("x-request-id", id)
        .header("user-agent", agent)
        .body(Empty::new())
        .unwrap()
}

#[tokio::test]
async fn one_line_per_request_over_http1_keep_alive() {
    let rig = Rig::start(&[]).await;
    let tcp = TcpStream::connect(rig.proxy.addr()).await.unwrap();
    let me = tcp.local_addr().unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    // Three requests, one connection.
    for i in 0..3 {
        let resp = sender
            .send_request(get(&format!("keep-alive-{i}"), "test-agent/1.0"))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.into_body().collect().await.unwrap();
    }
    for i in 0..3 {
        let (raw, v) = the_line(&rig, &format!("keep-alive-{i}")).await;
        assert_completed_200(&raw, &v, "HTTP/1.1", Some(me));
        assert_eq!(v["user_agent"], "test-agent/1.0");
        assert!(!raw.contains("SECRET"), "the query is never logged: {raw}");
    }
}

#[tokio::test]
async fn one_line_per_request_over_http2() {
    let rig = Rig::start(&[]).await;
    let resp = send_h2(
        rig.proxy.addr(),
        Request::get(format!(
            "http://{}/platform_api/GetAccountInfo/",
            rig.proxy.addr()
        ))
        .header("x-request-id", "over-h2")
        .body(body(""))
        .unwrap(),
    )
    .await;
    assert_eq!(resp.status, 200);
    let (raw, v) = the_line(&rig, "over-h2").await;
    assert_completed_200(&raw, &v, "HTTP/2", None);
    assert!(v["user_agent"].is_null(), "no User-Agent sent: {raw}");
}

#[tokio::test]
async fn one_line_per_request_from_pythons_http_client() {
    let rig = Rig::start(&[]).await;
    let addr = rig.proxy.addr();
    let script = format!(
        "import http.client\n\
         c = http.client.HTTPConnection('127.0.0.1', {port})\n\
         for i in range(2):\n    \
             c.request('GET', '/platform_api/GetAccountInfo/', headers={{'X-Request-Id': f'python-{{i}}', 'User-Agent': 'python-http.client'}})\n    \
             r = c.getresponse(); r.read(); assert r.status == 200, r.status\n\
         c.close()\n",
        port = addr.port()
    );
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .args(["-c", &script])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for i in 0..2 {
        let (raw, v) = the_line(&rig, &format!("python-{i}")).await;
        assert_completed_200(&raw, &v, "HTTP/1.1", None);
        assert_eq!(v["user_agent"], "python-http.client", "{raw}");
    }
}

#[tokio::test]
async fn a_client_that_leaves_before_the_head_is_a_499_aborted() {
    let rig = Rig::start(&[]).await;
    let mut tcp = TcpStream::connect(rig.proxy.addr()).await.unwrap();
    tcp.write_all(
        b"GET /platform_api/Slow/?ms=3000 HTTP/1.1\r\nhost: x\r\nx-request-id: leaves-early\r\n\r\n",
    )
    .await
    .unwrap();
    // The upstream has it (the request was forwarded), then the client goes.
    let started = std::time::Instant::now();
    while rig.upstream.records().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "never forwarded"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(tcp);
    let (raw, v) = the_line(&rig, "leaves-early").await;
    assert_complete(&raw, &v);
    assert_eq!(v["status"], 499, "{raw}");
    assert_eq!(v["aborted"], true, "{raw}");
    assert!(v["upstream_ms"].is_null(), "no upstream head: {raw}");
    assert_eq!(v["account"], 1_000_001, "{raw}");
}

#[tokio::test]
async fn a_client_that_leaves_mid_download_is_aborted() {
    let rig = Rig::start(&[]).await;
    let mut tcp = TcpStream::connect(rig.proxy.addr()).await.unwrap();
    tcp.write_all(
        b"GET /platform_api/Download/?bytes=200000000 HTTP/1.1\r\nhost: x\r\nx-request-id: leaves-mid-body\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0;
    while got < 1 << 20 {
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(n > 0, "the download ended early");
        got += n;
    }
    drop(tcp);
    let (raw, v) = the_line(&rig, "leaves-mid-body").await;
    assert_complete(&raw, &v);
    assert_eq!(v["status"], 200, "{raw}");
    assert_eq!(v["aborted"], true, "{raw}");
    let out = v["bytes_out"].as_u64().unwrap();
    assert!(out > 0 && out < 200_000_000, "{raw}");
}
