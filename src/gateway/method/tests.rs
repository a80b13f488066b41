use http::Request;
use http_body_util::StreamBody;

use super::*;
use crate::target::cmd_from_query;

fn body_of(chunks: Vec<Vec<u8>>) -> Body {
    let stream = futures_util::stream::iter(
        chunks
            .into_iter()
            .map(|c| Ok::<_, BoxError>(Frame::data(Bytes::from(c)))),
    );
    StreamBody::new(stream).boxed_unsync()
}

/// Split `whole` into chunks at every offset in `cuts`.
fn split_at(whole: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut start = 0;
    for &c in cuts {
        out.push(whole[start..c].to_vec());
        start = c;
    }
    out.push(whole[start..].to_vec());
    out
}

async fn run(
    uri: &str,
    content_type: Option<&str>,
    chunks: Vec<Vec<u8>>,
) -> (Result<Option<String>, ProxyError>, Vec<u8>, SizeHint) {
    let mut b = Request::post(uri);
    if let Some(ct) = content_type {
        b = b.header("content-type", ct);
    }
    let (parts, ()) = b.body(()).unwrap().into_parts();
    let detected = detect(&parts, path_method(&parts).as_deref(), body_of(chunks)).await;
    let hint = detected.body.size_hint();
    let bytes = detected.body.collect().await.unwrap().to_bytes().to_vec();
    (detected.method, bytes, hint)
}

/// The method the target names, as the pipeline's target stage finds it.
fn path_method(parts: &http::request::Parts) -> Option<String> {
    let (_, api_path) = crate::target::split_account_prefix(parts.uri.path())?;
    crate::target::method_from_path(api_path).map(std::borrow::Cow::into_owned)
}

fn ok(m: Result<Option<String>, ProxyError>) -> Option<String> {
    m.unwrap_or_else(|e| panic!("refused: {e}"))
}

const FORM: &str = "application/x-www-form-urlencoded";

#[tokio::test]
async fn path_query_and_account_prefix() {
    assert_eq!(
        ok(run("/platform_api/GetUsers/", None, vec![]).await.0).as_deref(),
        Some("GetUsers")
    );
    assert_eq!(
        ok(
            run("/accounts/42/platform_api/Get%55sers/?x=1", None, vec![])
                .await
                .0
        )
        .as_deref(),
        Some("GetUsers")
    );
    assert_eq!(
        ok(run("/platform_api?cmd=Set%55ser+Info", None, vec![])
            .await
            .0)
        .as_deref(),
        Some("SetUser Info")
    );
    assert_eq!(
        ok(run("/platform_api?c%6dd=GetX", None, vec![]).await.0).as_deref(),
        Some("GetX")
    );
    assert_eq!(ok(run("/platform_api/", None, vec![]).await.0), None);
    assert_eq!(
        ok(run("/platform_api/GetUsers/?cmd=getusers", None, vec![])
            .await
            .0)
        .as_deref(),
        Some("GetUsers"),
        "the same method in another letter case agrees"
    );
}

#[tokio::test]
async fn disagreeing_places_are_403() {
    for (uri, ct, body) in [
        ("/platform_api/GetUsers/?cmd=SetUserInfo", None, ""),
        ("/platform_api?cmd=GetUsers&cmd=DelUser", None, ""),
        ("/platform_api/GetUsers/", Some(FORM), "cmd=SetUserInfo"),
        (
            "/platform_api?cmd=GetUsers",
            Some(FORM),
            "a=1&cmd=SetUserInfo",
        ),
        (
            "/platform_api",
            Some(FORM),
            "cmd=GetUsers&x=1&cmd=SetUserInfo",
        ),
    ] {
        let (m, bytes, _) = run(uri, ct, vec![body.as_bytes().to_vec()]).await;
        let e = m.err().unwrap_or_else(|| panic!("accepted {uri} {body}"));
        assert_eq!(e.kind, ErrorKind::ClientForbidden);
        assert!(e.msg.contains("two API methods"), "{}", e.msg);
        assert_eq!(bytes, body.as_bytes(), "the body is intact either way");
    }
}

#[tokio::test]
async fn urlencoded_cmd_split_at_every_byte() {
    let body = b"user_id=5&user_display_name=a+b%26c&c%6Dd=Set%55serInfo&z=1".to_vec();
    for cut in 1..body.len() {
        let (m, bytes, _) = run("/platform_api", Some(FORM), split_at(&body, &[cut])).await;
        assert_eq!(ok(m).as_deref(), Some("SetUserInfo"), "cut at {cut}");
        assert_eq!(bytes, body);
    }
    // One byte per chunk.
    let cuts: Vec<usize> = (1..body.len()).collect();
    let (m, bytes, _) = run("/platform_api", Some(FORM), split_at(&body, &cuts)).await;
    assert_eq!(ok(m).as_deref(), Some("SetUserInfo"));
    assert_eq!(bytes, body);
    // `+` is a space in form data.
    let (m, _, _) = run(
        "/platform_api",
        Some("Application/X-WWW-Form-Urlencoded; charset=utf-8"),
        vec![b"cmd=Get+Users".to_vec()],
    )
    .await;
    assert_eq!(ok(m).as_deref(), Some("Get Users"));
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
async fn multipart_node_shape_each_piece_its_own_chunk() {
    let boundary = "--------------------------123456789012345678901234";
    let ct = format!("multipart/form-data; boundary={boundary}");
    let chunks = multipart(boundary, &[("cmd", "SetUserInfo"), ("user_id", "5")]);
    let whole = chunks.concat();
    let (m, bytes, _) = run("/platform_api", Some(&ct), chunks).await;
    assert_eq!(ok(m).as_deref(), Some("SetUserInfo"));
    assert_eq!(bytes, whole);
    // cmd last, and split at every byte.
    let whole = multipart(
        boundary,
        &[
            ("user_id", "5"),
            ("file", "a\r\n--not-the-boundary\r\nb"),
            ("cmd", "GetUsers"),
        ],
    )
    .concat();
    for cut in 1..whole.len() {
        let (m, bytes, _) = run("/platform_api", Some(&ct), split_at(&whole, &[cut])).await;
        assert_eq!(ok(m).as_deref(), Some("GetUsers"), "cut at {cut}");
        assert_eq!(bytes, whole);
    }
}

#[tokio::test]
async fn multipart_variants() {
    // A quoted boundary, a preamble, headers in other cases, a filename, name unquoted.
    let body = "preamble\r\n--b1\r\ncontent-disposition: Form-Data; name=cmd\r\nContent-Type: text/plain\r\n\r\nGetUsers\r\n--b1\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x.csv\"\r\n\r\n1,2\r\n--b1--\r\n";
    let (m, _, _) = run(
        "/platform_api",
        Some("multipart/form-data; boundary=\"b1\""),
        vec![body.as_bytes().to_vec()],
    )
    .await;
    assert_eq!(ok(m).as_deref(), Some("GetUsers"));
    // Two cmd fields that disagree.
    let whole = multipart("zz", &[("cmd", "GetUsers"), ("cmd", "DelUser")]).concat();
    let (m, _, _) = run(
        "/platform_api",
        Some("multipart/form-data; boundary=zz"),
        vec![whole],
    )
    .await;
    assert!(m.is_err());
    // No cmd at all; a field merely named like it.
    let whole = multipart("zz", &[("cmdx", "DelUser"), ("xcmd", "DelUser")]).concat();
    let (m, _, _) = run(
        "/platform_api",
        Some("multipart/form-data; boundary=zz"),
        vec![whole],
    )
    .await;
    assert_eq!(ok(m), None);
    // Bare LF line ends, as a lenient server would read them.
    let body = "--zz\nContent-Disposition: form-data; name=\"cmd\"\n\nDelUser\n--zz--\n";
    let (m, _, _) = run(
        "/platform_api",
        Some("multipart/form-data; boundary=zz"),
        vec![body.as_bytes().to_vec()],
    )
    .await;
    assert_eq!(ok(m).as_deref(), Some("DelUser"));
    // No boundary: not searched.
    let (m, _, _) = run(
        "/platform_api",
        Some("multipart/form-data"),
        vec![b"--zz\r\n".to_vec()],
    )
    .await;
    assert_eq!(ok(m), None);
}

#[tokio::test]
async fn only_the_first_64_kib_are_searched_and_the_rest_streams_on() {
    // cmd after the window: not seen.
    let mut body = format!("pad={}", "x".repeat(BODY_WINDOW)).into_bytes();
    body.extend_from_slice(b"&cmd=DelUser");
    let chunks: Vec<Vec<u8>> = body.chunks(1000).map(<[u8]>::to_vec).collect();
    let (m, bytes, _) = run("/platform_api", Some(FORM), chunks).await;
    assert_eq!(ok(m), None);
    assert_eq!(bytes, body);
    // A pair cut by the window's end is not read as a (shortened) method.
    let mut body = format!("pad={}&cmd=Get", "x".repeat(BODY_WINDOW - 12)).into_bytes();
    assert_eq!(body.len(), BODY_WINDOW);
    body.extend_from_slice(b"UsersButLonger&more=1");
    let (m, bytes, _) = run("/platform_api", Some(FORM), vec![body.clone()]).await;
    assert_eq!(ok(m), None);
    assert_eq!(bytes, body);
    // 5 MiB multipart with cmd first: found, and every byte arrives.
    let boundary = "bnd";
    let big: String = (0..5 * 1024 * 1024)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let chunks = multipart(boundary, &[("cmd", "GetUsers"), ("file", &big)]);
    let whole = chunks.concat();
    let (m, bytes, _) = run(
        "/platform_api",
        Some("multipart/form-data; boundary=bnd"),
        chunks,
    )
    .await;
    assert_eq!(ok(m).as_deref(), Some("GetUsers"));
    assert_eq!(bytes.len(), whole.len());
    assert!(bytes == whole);
}

#[tokio::test]
async fn a_body_in_one_frame_past_the_window_is_not_read_as_complete() {
    // hyper hands a body that came in one read as one frame, and knows it ended: the window cuts
    // that frame, so the pair it cuts is not complete, even though the body ended.
    for (form, body) in [
        (
            FORM,
            format!("pad={}&cmd=DelUser", "x".repeat(BODY_WINDOW - 12)),
        ),
        (
            "multipart/form-data; boundary=b",
            format!(
                "{}\r\n--b\r\nContent-Disposition: form-data; name=\"cmd\"\r\n\r\nDelUser",
                "x".repeat(BODY_WINDOW - 56)
            ),
        ),
    ] {
        let body = body.into_bytes();
        assert_eq!(body.len(), BODY_WINDOW + 4);
        let (parts, ()) = Request::post("/platform_api")
            .header("content-type", form)
            .body(())
            .unwrap()
            .into_parts();
        let detected = detect(&parts, None, crate::body::full(body.clone())).await;
        let cut = &body[..BODY_WINDOW];
        assert!(cut.ends_with(b"Del"), "{form}");
        assert_eq!(ok(detected.method), None, "{form}");
        let bytes = detected.body.collect().await.unwrap().to_bytes();
        assert_eq!(bytes, body);
    }
}

#[tokio::test]
async fn replayed_body_keeps_an_exact_size_hint() {
    let body = "cmd=GetUsers&a=1";
    let (mut parts, ()) = Request::post("/platform_api")
        .header("content-type", FORM)
        .body(())
        .unwrap()
        .into_parts();
    parts.headers.insert("content-length", body.len().into());
    let full = http_body_util::Full::new(Bytes::from(body))
        .map_err(|never| match never {})
        .boxed_unsync();
    let detected = detect(&parts, None, full).await;
    assert_eq!(detected.body.size_hint().exact(), Some(body.len() as u64));
    assert!(!detected.body.is_end_stream());
    let bytes = detected.body.collect().await.unwrap().to_bytes();
    assert_eq!(bytes, body.as_bytes());
    // Read to its end while searching: the length is known now.
    let (_, _, hint) = run(
        "/platform_api",
        Some(FORM),
        vec![b"cmd=GetUsers".to_vec(), b"&x=1".to_vec()],
    )
    .await;
    assert_eq!(hint.exact(), Some(16));
    // A streamed body longer than the window keeps its unknown length, plus what was read.
    let (_, _, hint) = run(
        "/platform_api",
        Some(FORM),
        vec![vec![b'x'; BODY_WINDOW], b"&x=1".to_vec()],
    )
    .await;
    assert_eq!(hint.exact(), None);
    assert_eq!(hint.lower(), BODY_WINDOW as u64);
}

#[tokio::test]
async fn a_broken_body_is_passed_on_broken() {
    let (parts, ()) = Request::post("/platform_api")
        .header("content-type", FORM)
        .body(())
        .unwrap()
        .into_parts();
    let stream = futures_util::stream::iter(vec![
        Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"cmd=GetUsers"))),
        Err::<Frame<Bytes>, BoxError>("client went away".into()),
    ]);
    let detected = detect(&parts, None, StreamBody::new(stream).boxed_unsync()).await;
    assert_eq!(
        ok(detected.method),
        None,
        "the last pair of a broken body is not trusted"
    );
    let mut body = detected.body;
    assert_eq!(
        body.frame().await.unwrap().unwrap().into_data().unwrap(),
        "cmd=GetUsers"
    );
    assert!(body.frame().await.unwrap().is_err());
}

#[test]
fn query_cmd() {
    assert_eq!(
        cmd_from_query("a=1&cmd=GetUsers").as_deref(),
        Some("GetUsers")
    );
    assert_eq!(cmd_from_query("cmd").as_deref(), Some(""));
    assert_eq!(cmd_from_query("xcmd=1"), None);
}
