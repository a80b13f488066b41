//! Start-up, admin endpoints, listeners and shutdown.

use std::time::Duration;

use http::Request;
use nix::sys::signal::Signal;

use crate::support::Rig;
use crate::support::certs::Creds;
use crate::support::http::{body, get, send, send_over};
use crate::support::process::Voxproxy;

#[tokio::test]
async fn admin_endpoints_on_the_main_listener() {
    let rig = Rig::start(&[]).await;
    let addr = rig.proxy.addr();
    assert_eq!(get(addr, "/healthz").await.status, 200);
    let ready = get(addr, "/readyz").await;
    assert_eq!(ready.status, 200);
    assert!(ready.header("x-request-id").is_some());
    let resp = get(addr, "/platform_api/GetUsers/").await;
    assert_eq!(resp.status, 200);
    let metrics = get(addr, "/metrics").await;
    assert_eq!(metrics.status, 200);
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains(&format!(
            "voxproxy_requests_total{{status=\"200\",account=\"{}\",api_method=\"GetUsers\"}} 1",
            rig.creds.account
        )),
        "{text}"
    );
    assert!(text.contains("voxproxy_request_duration_seconds_bucket"));
    assert!(
        rig.upstream
            .records()
            .iter()
            .all(|r| !r.target.contains("healthz"))
    );
}

#[tokio::test]
async fn admin_listen_serves_admin_paths_there_only() {
    let dir = tempfile::tempdir().unwrap();
    let _ = dir;
    let rig = Rig::start(&["--admin-listen", "127.0.0.1:0"]).await;
    let admin = rig.proxy.admin.expect("admin listener");
    assert_eq!(get(admin, "/healthz").await.status, 200);
    assert_eq!(get(admin, "/readyz").await.status, 200);
    assert_eq!(get(admin, "/metrics").await.status, 200);
    let on_admin = get(admin, "/platform_api/GetUsers/").await;
    assert_eq!(on_admin.status, 404);
    let on_main = get(rig.proxy.addr(), "/healthz").await;
    assert_eq!(
        on_main.status, 404,
        "admin paths are served on admin_listen only"
    );
    assert!(rig.upstream.records().is_empty());
}

#[tokio::test]
async fn non_loopback_listen_is_allowed_with_the_override() {
    let dir = tempfile::tempdir().unwrap();
    let creds = Creds::write(dir.path(), "c.json", 5);
    let proxy = Voxproxy::start(
        &[
            "--listen",
            "0.0.0.0:0",
            "--credentials",
            creds.path.to_str().unwrap(),
        ],
        &[("VOXPROXY_ALLOW_UNAUTHENTICATED_NETWORK", "yes")],
    );
    assert!(proxy.logs().contains("non-loopback"), "a warning is logged");
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_request_finish_then_exits_0() {
    // One worker: the current-thread runtime serves, shuts down and exits like the threaded one.
    let mut rig = Rig::start(&["--workers", "1"]).await;
    let addr = rig.proxy.addr();
    let slow = tokio::spawn(async move {
        send(
            addr,
            Request::get("/platform_api/Slow/?ms=1500")
                .header("host", "x")
                .body(body(""))
                .unwrap(),
        )
        .await
    });
    // Wait until the upstream has the request, then signal.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while rig.upstream.records().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the slow request never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    rig.proxy.signal(Signal::SIGTERM);
    let resp = slow.await.unwrap();
    assert_eq!(resp.status, 200, "the in-flight request completed");
    let status = tokio::task::spawn_blocking(move || {
        let s = rig.proxy.wait_exit(Duration::from_secs(10));
        (s, rig)
    })
    .await
    .unwrap();
    assert_eq!(status.0.expect("exited").code(), Some(0));
}

#[tokio::test]
async fn unix_socket_listener() {
    let dir = tempfile::tempdir().unwrap();
    let creds = Creds::write(dir.path(), "c.json", 5);
    let upstream = crate::support::upstream::Upstream::start(
        vec![(creds.key_id.clone(), creds.key.decoding_key())],
        Default::default(),
    )
    .await;
    let sock = dir.path().join("vox.sock");
    // A stale socket file from a crash is replaced.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let listen = format!("unix:{}", sock.display());
    let mut proxy = Voxproxy::start(
        &[
            "--listen",
            &listen,
            "--upstream",
            &upstream.url,
            "--upstream-ca",
            upstream.ca_path.to_str().unwrap(),
            "--credentials",
            creds.path.to_str().unwrap(),
        ],
        &[],
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o660
    );
    let get_users = || async {
        let stream = tokio::net::UnixStream::connect(&sock).await.unwrap();
        let req = Request::get("/platform_api/GetUsers/")
            .header("host", "x")
            .body(body(""))
            .unwrap();
        send_over(stream, req).await.unwrap().status
    };
    assert_eq!(get_users().await, 200);
    assert_eq!(upstream.last().jwt.unwrap().iss, 5);
    // A second instance on the same path does not take the live socket over: exit 1 naming
    // listen, and the first still answers.
    let second = crate::support::process::run(
        &[
            "serve",
            "--listen",
            &listen,
            "--credentials",
            creds.path.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(second.0, 1, "{}", second.2);
    assert!(
        second.2.contains("listen") && second.2.contains("another process is listening"),
        "{}",
        second.2
    );
    assert_eq!(get_users().await, 200, "the first instance still serves");
    proxy.signal(Signal::SIGTERM);
    let status = tokio::task::spawn_blocking(move || proxy.wait_exit(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(status.unwrap().code(), Some(0));
    assert!(!sock.exists(), "the socket file is removed on exit");
}

#[tokio::test]
async fn a_misspelled_environment_variable_draws_a_warning_naming_the_right_one() {
    let rig = Rig::start_with(&[], &[("VOXPROXY_LISTN", "0.0.0.0:9")], Default::default()).await;
    let line = rig
        .proxy
        .log
        .all()
        .into_iter()
        .find(|l| l.contains("VOXPROXY_LISTN"))
        .unwrap_or_else(|| panic!("no warning:\n{}", rig.proxy.logs()));
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["level"], "WARN", "{line}");
    assert!(
        v["message"].as_str().unwrap().contains("VOXPROXY_LISTEN"),
        "names the nearest variable: {line}"
    );
    // Ignored, not applied: the proxy listens where the flag said.
    assert_eq!(get(rig.proxy.addr(), "/healthz").await.status, 200);
}
