//! Upstream failures and limits: each becomes voxproxy's own error, quickly, and the next request
//! still works.

use std::time::{Duration, Instant};

use http::Request;

use crate::support::Rig;
use crate::support::certs::Creds;
use crate::support::http::{body, get, send, try_send};
use crate::support::process::Voxproxy;
use crate::support::upstream::{Options, Upstream};

#[tokio::test]
async fn refused_upstream_is_502_upstream_connect_fast() {
    let dir = tempfile::tempdir().unwrap();
    let creds = Creds::write(dir.path(), "c.json", 5);
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let upstream = format!("https://127.0.0.1:{port}");
    let proxy = Voxproxy::start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream,
            "--credentials",
            creds.path.to_str().unwrap(),
        ],
        &[],
    );
    let started = Instant::now();
    let resp = get(proxy.addr(), "/platform_api/GetUsers/").await;
    assert_eq!(resp.status, 502);
    assert_eq!(resp.kind(), Some("upstream_connect"));
    assert_eq!(resp.json()["error"]["code"], 9520);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn untrusted_upstream_certificate_is_502_upstream_tls() {
    let dir = tempfile::tempdir().unwrap();
    let creds = Creds::write(dir.path(), "c.json", 5);
    let upstream = Upstream::start(vec![], Options::default()).await;
    // No --upstream-ca: the test CA is not trusted.
    let proxy = Voxproxy::start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream.url,
            "--credentials",
            creds.path.to_str().unwrap(),
        ],
        &[],
    );
    let resp = get(proxy.addr(), "/platform_api/GetUsers/").await;
    assert_eq!(resp.status, 502);
    assert_eq!(resp.kind(), Some("upstream_tls"), "{}", proxy.logs());
    assert_eq!(resp.json()["error"]["code"], 9521);
    assert!(upstream.records().is_empty());
}

#[tokio::test]
async fn hung_upstream_is_504_after_the_request_timeout() {
    let rig = Rig::start(&["--request-timeout", "0.5"]).await;
    let started = Instant::now();
    let resp = get(rig.proxy.addr(), "/platform_api/Slow/?ms=5000").await;
    assert_eq!(resp.status, 504);
    assert_eq!(resp.kind(), Some("upstream_timeout"));
    assert_eq!(resp.json()["error"]["code"], 9540);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[tokio::test]
async fn reset_mid_response_reaches_the_client_and_the_next_request_works() {
    let rig = Rig::start(&[]).await;
    let broken = try_send(
        rig.proxy.addr(),
        Request::get("/platform_api/Reset/")
            .header("host", "x")
            .body(body(""))
            .unwrap(),
    )
    .await;
    assert!(
        broken.is_err(),
        "the client must see the broken body, got {broken:?}"
    );
    let resp = get(rig.proxy.addr(), "/platform_api/GetUsers/").await;
    assert_eq!(resp.status, 200);
}

#[tokio::test]
async fn body_over_the_limit_is_413_by_header_and_by_stream() {
    let rig = Rig::start(&["--max-body-bytes", "1000"]).await;
    let addr = rig.proxy.addr();
    let resp = send(
        addr,
        Request::post("/platform_api/X/")
            .header("host", "x")
            .body(body(vec![b'a'; 1001]))
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status, 413);
    assert_eq!(resp.kind(), Some("body_too_large"));
    assert_eq!(resp.json()["error"]["code"], 9470);

    // Chunked, no Content-Length: the limit counts streamed bytes.
    let chunks: Vec<Result<hyper::body::Frame<bytes::Bytes>, std::io::Error>> = (0..10)
        .map(|_| {
            Ok(hyper::body::Frame::data(bytes::Bytes::from(vec![
                b'b';
                200
            ])))
        })
        .collect();
    let resp = send(
        addr,
        Request::post("/platform_api/X/")
            .header("host", "x")
            .body(http_body_util::StreamBody::new(futures_util::stream::iter(
                chunks,
            )))
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status, 413);
    assert_eq!(resp.kind(), Some("body_too_large"));
    assert!(rig.upstream.records().iter().all(|r| r.body.len() <= 1000));

    let resp = send(
        addr,
        Request::post("/platform_api/X/")
            .header("host", "x")
            .body(body(vec![b'a'; 1000]))
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status, 200, "exactly the limit passes");
}
