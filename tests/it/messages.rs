//! Messages a person acts on, through the real binary: a missing credentials file (where voxproxy
//! looked, how to name the file, where it comes from), files that are not small regular files
//! (refused at once, named), an EC key in words, a static key sent in `Authorization`, admin
//! paths on a gateway's public listener (naming `admin_listen`), and the reload log line.

use std::time::{Duration, Instant};

use http::Request;
use nix::sys::signal::Signal;

use crate::support::certs::Creds;
use crate::support::http::{body, get, send};
use crate::support::process::{Voxproxy, command, run};
use crate::support::upstream::Upstream;
use crate::support::{Rig, add_static_key_client};

#[test]
fn a_missing_credentials_file_says_where_voxproxy_looked_and_what_to_do() {
    let empty = tempfile::tempdir().unwrap();
    let out = command(&["token"], &[])
        .current_dir(empty.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let looked = empty
        .path()
        .canonicalize()
        .unwrap()
        .join("credentials.json");
    let looked = looked.display().to_string();
    for needle in [
        looked.as_str(),
        "not found",
        "--credentials",
        "VOXIMPLANT_CREDENTIALS",
        "Service accounts",
    ] {
        assert!(err.contains(needle), "lacks {needle}: {err}");
    }
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
}

#[test]
fn files_that_are_not_small_regular_files_are_refused_at_once_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.json");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let big = dir.path().join("big.json");
    std::fs::write(&big, vec![b' '; 2 << 20]).unwrap();
    let good = Creds::write(dir.path(), "good.json", 11);
    for (args, name, why) in [
        (
            vec!["--credentials", fifo.to_str().unwrap()],
            "fifo.json",
            "is a FIFO",
        ),
        (
            vec!["--credentials", "/dev/zero"],
            "/dev/zero",
            "is a device",
        ),
        (
            vec!["--credentials", big.to_str().unwrap()],
            "big.json",
            "larger than 1024 KiB",
        ),
        (
            vec![
                "--credentials",
                good.path.to_str().unwrap(),
                "--clients",
                fifo.to_str().unwrap(),
            ],
            "clients file",
            "is a FIFO",
        ),
    ] {
        let mut all = vec!["check"];
        all.extend(args);
        let started = Instant::now();
        let (code, out, err) = run(&all, &[]);
        assert!(started.elapsed() < Duration::from_secs(5), "{all:?} hung");
        assert_eq!(code, 2, "{all:?}: {out}{err}");
        assert!(err.contains(name) && err.contains(why), "{all:?}: {err}");
    }
}

#[test]
fn an_ec_key_is_refused_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let ec = rcgen::KeyPair::generate().unwrap().serialize_pem();
    let path = dir.path().join("ec.json");
    let json = serde_json::json!({"account_id": 1, "key_id": "k", "private_key": ec});
    std::fs::write(&path, json.to_string()).unwrap();
    let (code, _, err) = run(&["check", "--credentials", path.to_str().unwrap()], &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("private_key") && err.contains("not an RSA private key"),
        "{err}"
    );
    assert!(
        !err.contains("WrongAlgorithm") && !err.contains("Error {"),
        "{err}"
    );
}

/// A gateway with one static-key client: (upstream, proxy, the key, its scratch directory).
async fn static_key_gateway(listen: &str) -> (Upstream, Voxproxy, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let creds = Creds::write(dir.path(), "credentials.json", 1_000_001);
    let clients = dir.path().join("clients.toml");
    let key = add_static_key_client(&clients, &creds, "ci", &[]);
    let (clients_arg, creds_arg) = (clients.to_str().unwrap(), creds.path.to_str().unwrap());
    let upstream = Upstream::start(
        vec![(creds.key_id.clone(), creds.key.decoding_key())],
        Default::default(),
    )
    .await;
    let ca = upstream.ca_path.to_str().unwrap().to_owned();
    let proxy = Voxproxy::start(
        &[
            "--listen",
            listen,
            "--upstream",
            &upstream.url,
            "--upstream-ca",
            &ca,
            "--credentials",
            creds_arg,
            "--clients",
            clients_arg,
        ],
        &[],
    );
    (upstream, proxy, key, dir)
}

#[tokio::test]
async fn a_static_key_sent_in_authorization_is_explained() {
    let (_upstream, proxy, key, _dir) = static_key_gateway("127.0.0.1:0").await;
    let resp = send(
        proxy.addr(),
        Request::get("/platform_api/GetAccountInfo/")
            .header("authorization", format!("Bearer {key}"))
            .body(body(""))
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status, 401);
    let msg = resp.json()["error"]["msg"].as_str().unwrap().to_owned();
    assert!(
        msg.contains("static keys go in Proxy-Authorization"),
        "{msg}"
    );
    assert!(
        !msg.contains(&key) && !proxy.logs().contains(&key),
        "the key is never repeated"
    );
}

#[tokio::test]
async fn admin_paths_on_a_public_gateway_listener_name_admin_listen() {
    let (_upstream, proxy, _key, _dir) = static_key_gateway("0.0.0.0:0").await;
    let port = proxy.addr().port();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    for path in ["/healthz", "/metrics"] {
        let resp = get(addr, path).await;
        assert_eq!(resp.status, 404, "{path}");
        assert_eq!(resp.kind(), Some("not_found"));
        let msg = resp.json()["error"]["msg"].as_str().unwrap().to_owned();
        assert!(msg.contains("admin_listen"), "{msg}");
    }
}

#[tokio::test]
async fn the_reload_log_line_names_what_in_plain_words() {
    let rig = Rig::start(&[]).await;
    rig.proxy.signal(Signal::SIGHUP);
    let line = tokio::task::spawn_blocking({
        let log = rig.proxy.log.clone();
        move || log.wait_for(Duration::from_secs(5), |l| l.contains("\"reloading\""))
    })
    .await
    .unwrap()
    .expect("a reload line");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["what"], "credentials", "{line}");
    assert_eq!(v["reason"], "SIGHUP", "{line}");
    assert!(!line.contains("{Credentials}"), "no Debug output: {line}");
}
