//! `voxproxy probe URL`: the health probe of images without a shell. Exit 0 on a 2xx within the
//! timeout, 1 otherwise with one line on stderr saying why; 2 for a URL that is not plain HTTP.
//! It needs no credentials or config file and warns about no `VOXPROXY_*` variable.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use crate::support::Rig;
use crate::support::process::run;

/// Run `voxproxy probe ARGS` off the async runtime, in an empty directory (no credentials, no
/// config file) with a `VOXPROXY_*` typo in the environment.
async fn probe(args: &[&str]) -> (i32, String, String, Duration) {
    let args: Vec<String> = std::iter::once("probe")
        .chain(args.iter().copied())
        .map(str::to_owned)
        .collect();
    tokio::task::spawn_blocking(move || {
        let empty = tempfile::tempdir().unwrap();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let started = Instant::now();
        let mut cmd = crate::support::process::command(
            &args,
            &[("VOXPROXY_LISTN", "0.0.0.0:1"), ("VOXPROXY_LOG", "debug")],
        );
        let out = cmd.current_dir(empty.path()).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            started.elapsed(),
        )
    })
    .await
    .unwrap()
}

/// A server that answers every request with `head` after `delay` (or never reads at all).
async fn answering(head: &'static str, delay: Duration) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = tcp.read(&mut buf).await;
                tokio::time::sleep(delay).await;
                let _ = tcp.write_all(head.as_bytes()).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn probe_of_a_ready_voxproxy_exits_0_quietly() {
    let rig = Rig::start(&["--admin-listen", "127.0.0.1:0"]).await;
    let url = format!("http://{}/readyz", rig.proxy.admin.unwrap());
    let (code, out, err, _) = probe(&[&url]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.is_empty() && err.is_empty(), "quiet: {out}{err}");
}

#[tokio::test]
async fn probe_of_a_503_exits_1_saying_so() {
    let addr = answering(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
        Duration::ZERO,
    )
    .await;
    let (code, out, err, _) = probe(&[&format!("http://{addr}/readyz")]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("503") && err.contains("not 2xx"), "{err}");
    assert!(
        !err.contains("VOXPROXY_LISTN"),
        "no settings warning: {err}"
    );
}

#[tokio::test]
async fn probe_of_a_slow_server_gives_up_at_the_timeout() {
    let addr = answering(
        "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    let (code, _, err, took) =
        probe(&[&format!("http://{addr}/healthz"), "--timeout", "300ms"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no answer within 300ms"), "{err}");
    assert!(took < Duration::from_secs(3), "gave up after {took:?}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[tokio::test]
async fn probe_of_a_closed_port_exits_1_and_a_bad_url_exits_2() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let (code, _, err, _) = probe(&[&format!("http://{closed}/healthz")]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot connect"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    for bad in ["https://127.0.0.1:1/readyz", "127.0.0.1:1"] {
        let (code, _, err, _) = probe(&[bad]).await;
        assert_eq!(code, 2, "{bad}: {err}");
        assert!(err.contains("plain-HTTP URL"), "{err}");
    }
    // The probe reads no settings: the environment's typo draws no warning.
    let (_, _, err) = run(
        &["probe", "http://127.0.0.1:1/"],
        &[("VOXPROXY_LISTN", "x")],
    );
    assert!(!err.contains("VOXPROXY_LISTN"), "{err}");
}
