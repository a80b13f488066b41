//! What reaches the upstream, byte for byte, for each client shape; and what never does.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Version};
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::Frame;

use crate::support::http::{body, get, raw, send, send_h2};
use crate::support::upstream::{Options, pattern};
use crate::support::{BoxError, Rig};

#[tokio::test]
async fn get_with_query_is_forwarded_with_a_minted_token() {
    let rig = Rig::start(&[]).await;
    let addr = rig.proxy.addr();
    let resp = send(
        addr,
        Request::get("/platform_api/GetUsers/?application_id=1&user_name=a+b&x=%20&flag&a=b=c&api_key=SECRET&account_id=9")
            .header("host", "127.0.0.1")
            .header("x-custom", "kept")
            .header("authorization", "Basic dXNlcjpwYXNz")
            .header("proxy-authorization", "Bearer leaked")
            .body(body(""))
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status, 200, "{:?}", resp.body);
    let rec = rig.upstream.last();
    assert_eq!(rec.method, "GET");
    assert_eq!(
        rec.target,
        "/platform_api/GetUsers/?application_id=1&user_name=a+b&x=%20&flag&a=b=c&account_id=9",
        "legacy credentials removed, everything else byte for byte"
    );
    let jwt = rec.jwt.expect("the upstream verified the token");
    assert_eq!(jwt.iss, rig.creds.account);
    assert_eq!(jwt.kid, rig.creds.key_id);
    assert_eq!(jwt.exp - jwt.iat, 3600);
    assert_eq!(rec.headers["x-custom"], "kept");
    assert!(rec.headers.get("proxy-authorization").is_none());
    assert_eq!(rec.headers.get_all("authorization").iter().count(), 1);
    assert_eq!(rec.headers["host"], rig.upstream.addr.to_string());
    assert_eq!(resp.json()["result"]["iss"], rig.creds.account);
    let rid = resp.header("x-request-id").unwrap();
    assert_eq!(
        rid.len(),
        36,
        "a generated UUID replaces the upstream's own id"
    );
    assert_eq!(rec.headers["x-request-id"], rid);
}

#[tokio::test]
async fn python_shape_urlencoded_post_to_platform_api() {
    let rig = Rig::start(&[]).await;
    let form = "user_id=5&user_display_name=a+b%26c&user_active=True&cmd=SetUserInfo";
    let resp = send(
        rig.proxy.addr(),
        Request::post("/platform_api")
            .header("host", "127.0.0.1")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-request-id", "py-req-1")
            .body(body(form))
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("x-request-id"), Some("py-req-1"));
    let rec = rig.upstream.last();
    assert_eq!(rec.target, "/platform_api");
    assert_eq!(rec.body, form.as_bytes());
    assert_eq!(rec.headers["content-length"], form.len().to_string());
    assert_eq!(rec.headers["x-request-id"], "py-req-1");
    assert_eq!(
        rec.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert!(rec.jwt.is_ok());
}

fn multipart(boundary: &str, fields: &[(&str, &str)]) -> Vec<Vec<u8>> {
    let mut parts = Vec::new();
    for (name, value) in fields {
        parts.push(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n")
                .into_bytes(),
        );
        parts.push(value.as_bytes().to_vec());
        parts.push(b"\r\n".to_vec());
    }
    parts.push(format!("--{boundary}--\r\n").into_bytes());
    parts
}

#[tokio::test]
async fn node_shape_chunked_multipart_without_content_length() {
    let rig = Rig::start(&[]).await;
    let boundary = "--------------------------123456789012345678901234";
    let chunks = multipart(boundary, &[("cmd", "GetAccountInfo"), ("extra", "1")]);
    let whole: Vec<u8> = chunks.concat();
    let stream = futures_util::stream::iter(
        chunks
            .into_iter()
            .map(|c| Ok::<_, BoxError>(Frame::data(Bytes::from(c)))),
    );
    let resp = send(
        rig.proxy.addr(),
        Request::post("/platform_api")
            .header("host", "127.0.0.1")
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(StreamBody::new(stream))
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status, 200);
    let rec = rig.upstream.last();
    assert_eq!(rec.body, whole);
    assert!(rec.headers.get("content-length").is_none());
    assert_eq!(resp.json()["result"]["cmd"], "GetAccountInfo");
}

#[tokio::test]
async fn php_shape_put_with_expect_100_continue_and_a_multi_mib_body() {
    let rig = Rig::start(&[]).await;
    let size = 5 * 1024 * 1024 + 17;
    let payload: Vec<u8> = (0..size as u64).map(pattern).collect();
    // Raw HTTP/1.1: send the head, wait for 100 Continue, then the chunked body.
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tcp = tokio::net::TcpStream::connect(rig.proxy.addr())
        .await
        .unwrap();
    tcp.write_all(
        b"PUT /platform_api/UploadFile/?name=f HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(
        std::str::from_utf8(&buf[..n])
            .unwrap()
            .starts_with("HTTP/1.1 100 Continue"),
        "voxproxy answers 100-continue itself"
    );
    for chunk in payload.chunks(300_000) {
        tcp.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await
            .unwrap();
        tcp.write_all(chunk).await.unwrap();
        tcp.write_all(b"\r\n").await.unwrap();
    }
    tcp.write_all(b"0\r\n\r\n").await.unwrap();
    let mut resp = Vec::new();
    tcp.read_to_end(&mut resp).await.unwrap();
    let resp = String::from_utf8_lossy(&resp);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let rec = rig.upstream.last();
    assert_eq!(rec.method, "PUT");
    assert_eq!(rec.body.len(), payload.len());
    assert!(rec.body == payload, "the body arrived byte for byte");
    assert!(rec.headers.get("expect").is_none());
    assert!(rec.headers.get("transfer-encoding").is_none() || rec.version == Version::HTTP_11);
}

#[tokio::test]
async fn large_download_streams_intact() {
    let rig = Rig::start(&[]).await;
    let size: u64 = 40 * 1024 * 1024;
    let tcp = tokio::net::TcpStream::connect(rig.proxy.addr())
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let resp = sender
        .send_request(
            Request::get(format!("/platform_api/Download/?bytes={size}"))
                .header("host", "x")
                .body(body(""))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut at: u64 = 0;
    let mut ok = true;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            ok &= data
                .iter()
                .enumerate()
                .all(|(i, b)| *b == pattern(at + i as u64));
            at += data.len() as u64;
        }
    }
    assert_eq!(at, size);
    assert!(ok, "every byte in order");
    // Bounded memory: the proxy did not hold the download.
    let status = std::fs::read_to_string(format!("/proc/{}/status", rig.proxy.pid())).unwrap();
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(
        rss_kib < 40 * 1024,
        "peak RSS {rss_kib} KiB: the 40 MiB download was buffered"
    );
}

#[tokio::test]
async fn absolute_form_targets_for_the_upstream_and_api_voximplant_com() {
    let rig = Rig::start(&[]).await;
    let addr = rig.proxy.addr();
    for target in [
        format!("http://{}/platform_api/GetUsers/?a=1", rig.upstream.addr),
        "https://api.voximplant.com/platform_api/GetUsers/?a=1".to_owned(),
        "http://api.voximplant.com/platform_api/GetUsers/?a=1".to_owned(),
        "https://api.voximplant.com:443/platform_api/GetUsers/?a=1".to_owned(),
    ] {
        let resp = send(
            addr,
            Request::post(&target)
                .header("host", "api.voximplant.com")
                .body(body("cmd=GetUsers"))
                .unwrap(),
        )
        .await;
        assert_eq!(resp.status, 200, "{target}: {:?}", resp.body);
        let rec = rig.upstream.last();
        assert_eq!(rec.target, "/platform_api/GetUsers/?a=1");
        assert_eq!(
            rec.headers["host"],
            rig.upstream.addr.to_string(),
            "Host becomes the upstream's"
        );
        assert_eq!(rec.body, b"cmd=GetUsers");
    }
    for target in [
        "http://evil.example/platform_api/GetUsers/",
        "http://api.voximplant.com:8443/platform_api/GetUsers/",
        "http://127.0.0.2:1/platform_api/",
    ] {
        let resp = send(
            addr,
            Request::get(target)
                .header("host", "x")
                .body(body(""))
                .unwrap(),
        )
        .await;
        assert_eq!(resp.status, 403, "{target}");
        assert_eq!(resp.kind(), Some("open_proxy"));
        assert_eq!(resp.json()["error"]["code"], 9432);
    }
}

fn client_jwt(iss: serde_json::Value) -> String {
    use base64::Engine as _;
    let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.{}",
        enc.encode(r#"{"alg":"RS256","typ":"JWT","kid":"client-own"}"#),
        enc.encode(serde_json::json!({"iss": iss, "iat": 1, "exp": 2}).to_string()),
        enc.encode("not-a-real-signature")
    )
}

#[tokio::test]
async fn account_selection_prefix_header_client_jwt_default() {
    let rig = Rig::start(&["--allowed-accounts", "1000001,555,666,777"]).await;
    let addr = rig.proxy.addr();
    let cases: Vec<(Request<_>, u64, &str)> = vec![
        (
            Request::get("/accounts/555/platform_api/GetUsers/")
                .header("x-voximplant-account-id", "666")
                .body(body(""))
                .unwrap(),
            555,
            "/platform_api/GetUsers/",
        ),
        (
            Request::get("/platform_api/GetUsers/")
                .header("X_Voximplant_Account_Id", "666")
                .header(
                    "authorization",
                    format!("Bearer {}", client_jwt(777.into())),
                )
                .body(body(""))
                .unwrap(),
            666,
            "/platform_api/GetUsers/",
        ),
        (
            Request::get("/platform_api/GetUsers/")
                .header(
                    "authorization",
                    format!("Bearer {}", client_jwt("777".into())),
                )
                .body(body(""))
                .unwrap(),
            777,
            "/platform_api/GetUsers/",
        ),
        (
            Request::get("/platform_api/GetUsers/")
                .header("authorization", "Bearer not.a-jwt")
                .body(body(""))
                .unwrap(),
            1_000_001,
            "/platform_api/GetUsers/",
        ),
    ];
    for (req, want, path) in cases {
        let resp = send(addr, req).await;
        assert_eq!(resp.status, 200, "{:?}", resp.body);
        let rec = rig.upstream.last();
        let jwt = rec.jwt.as_ref().unwrap();
        assert_eq!(jwt.iss, want);
        assert_eq!(
            jwt.kid, rig.creds.key_id,
            "the first file's key signs for child accounts"
        );
        assert_eq!(rec.target, path);
        assert!(rec.headers.keys().all(|k| {
            !k.as_str()
                .replace('_', "-")
                .eq_ignore_ascii_case("x-voximplant-account-id")
        }));
        assert!(!jwt.raw.contains("not-a-real-signature"));
    }
    for (req, status, kind, code) in [
        (
            Request::get("/accounts/abc/platform_api/X/")
                .body(body(""))
                .unwrap(),
            400,
            "bad_account",
            9401,
        ),
        (
            Request::get("/platform_api/X/")
                .header("x-voximplant-account-id", "-5")
                .body(body(""))
                .unwrap(),
            400,
            "bad_account",
            9401,
        ),
        (
            Request::get("/platform_api/X/")
                .header(
                    "authorization",
                    format!("Bearer {}", client_jwt("12x".into())),
                )
                .body(body(""))
                .unwrap(),
            400,
            "bad_account",
            9401,
        ),
        (
            Request::get("/accounts/999/platform_api/X/")
                .body(body(""))
                .unwrap(),
            403,
            "account_not_allowed",
            9430,
        ),
    ] {
        let resp = send(addr, req).await;
        assert_eq!(resp.status, status);
        assert_eq!(resp.kind(), Some(kind));
        assert_eq!(resp.header("content-type"), Some("application/json"));
        let j = resp.json();
        assert_eq!(j["error"]["code"], code);
        assert!(
            j["error"]["msg"]
                .as_str()
                .unwrap()
                .starts_with("voxproxy: ")
        );
        assert!(resp.header("x-request-id").is_some());
    }
}

#[tokio::test]
async fn hop_by_hop_and_connection_named_headers_are_removed() {
    let rig = Rig::start(&[]).await;
    let out = raw(
        rig.proxy.addr(),
        b"GET /platform_api/GetUsers/ HTTP/1.1\r\nHost: x\r\nConnection: close, X-Hop\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nUpgrade: websocket\r\nProxy-Connection: keep-alive\r\nX-End: 1\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let rec = rig.upstream.last();
    for h in [
        "x-hop",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-connection",
        "connection",
    ] {
        assert!(rec.headers.get(h).is_none(), "{h} reached the upstream");
    }
    assert_eq!(rec.headers["x-end"], "1");
}

#[tokio::test]
async fn content_length_with_transfer_encoding_never_reaches_upstream_as_both() {
    let rig = Rig::start(&[]).await;
    let out = raw(
        rig.proxy.addr(),
        b"POST /platform_api/X/ HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /platform_api/Smuggled/ HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    let recs = rig.upstream.records();
    assert!(
        recs.iter().all(|r| !r.target.contains("Smuggled")),
        "a smuggled request reached the upstream"
    );
    if out.starts_with("HTTP/1.1 200") {
        let rec = rig.upstream.last();
        assert_eq!(rec.body, b"hello");
        assert!(
            rec.headers.get("content-length").is_none()
                || rec.headers.get("transfer-encoding").is_none()
        );
    } else {
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    }
}

#[tokio::test]
async fn target_checks_connect_and_paths() {
    let rig = Rig::start(&[]).await;
    let addr = rig.proxy.addr();
    let out = raw(
        addr,
        b"CONNECT api.voximplant.com:443 HTTP/1.1\r\nHost: api.voximplant.com:443\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 405"), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("x-voxproxy-error: connect_not_supported")
    );
    assert!(out.to_ascii_lowercase().contains("allow: "));
    assert!(out.contains("9450"));
    for path in [
        "/",
        "/v1/platform_api",
        "/platform_apix",
        "/favicon.ico",
        "/accounts/5/other",
    ] {
        let resp = get(addr, path).await;
        assert_eq!(resp.status, 404, "{path}");
        assert_eq!(resp.kind(), Some("not_found"));
        assert_eq!(resp.json()["error"]["code"], 9440);
    }
    assert!(rig.upstream.records().is_empty());
}

#[tokio::test]
async fn http2_prior_knowledge_client_to_http1_upstream() {
    let rig = Rig::start_with(&[], &[], Options { http1_only: true }).await;
    let resp = send_h2(
        rig.proxy.addr(),
        Request::builder()
            .method(Method::POST)
            .uri(format!(
                "http://{}/platform_api/GetUsers/?q=1",
                rig.proxy.addr()
            ))
            .version(Version::HTTP_2)
            .body(body("cmd=GetUsers"))
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status, 200, "{:?}", resp.body);
    let rec = rig.upstream.last();
    assert_eq!(rec.version, Version::HTTP_11);
    assert_eq!(rec.target, "/platform_api/GetUsers/?q=1");
    assert_eq!(rec.headers["host"], rig.upstream.addr.to_string());
    assert_eq!(rec.body, b"cmd=GetUsers");
}

#[tokio::test]
async fn upstream_http2_by_alpn_and_large_uploads_over_http1() {
    let rig = Rig::start(&[]).await;
    let resp = get(rig.proxy.addr(), "/platform_api/GetUsers/").await;
    assert_eq!(resp.status, 200);
    assert_eq!(rig.upstream.last().version, Version::HTTP_2);
    let small = vec![b's'; 16 * 1024];
    let resp = send(
        rig.proxy.addr(),
        Request::post("/platform_api/A/")
            .body(body(small.clone()))
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status, 200);
    let rec = rig.upstream.last();
    assert_eq!(
        (rec.version, rec.body.len()),
        (Version::HTTP_2, small.len())
    );
    // Over 16 KiB the body goes over an HTTP/1.1 connection (cheaper for uploads, measured).
    let large = vec![b'l'; 16 * 1024 + 1];
    let resp = send(
        rig.proxy.addr(),
        Request::post("/platform_api/A/")
            .body(body(large.clone()))
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status, 200);
    let rec = rig.upstream.last();
    assert_eq!(rec.version, Version::HTTP_11);
    assert!(rec.body == large);
    assert!(rec.jwt.is_ok());
}
