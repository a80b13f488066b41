//! The official Voximplant clients, unmodified and pinned (`tests/interop/`), through the real
//! binary against the mock upstream: Python over inbound TLS, Node through `https_proxy` (plain
//! HTTP, absolute-form) and over TLS. The upstream checks that the token it got was minted by
//! voxproxy with the service key, not by the client with its own.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::support::certs::{Creds, Pki};
use crate::support::process::Voxproxy;
use crate::support::upstream::Upstream;

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// Install the pinned clients once per test run (idempotent; needs the package registries the
/// first time).
fn setup() {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    let result = DONE.get_or_init(|| {
        let out = Command::new("bash")
            .arg(interop_dir().join("setup.sh"))
            .output()
            .map_err(|e| format!("cannot run setup.sh: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "tests/interop/setup.sh failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

struct Setup {
    upstream: Upstream,
    service: Creds,
    /// The app's own credentials file: any RSA key, never trusted by the upstream.
    app: Creds,
    dir: tempfile::TempDir,
}

async fn setup_rig() -> Setup {
    setup();
    let dir = tempfile::tempdir().unwrap();
    let service = Creds::write(dir.path(), "service.json", 1_000_001);
    let app = Creds::write(dir.path(), "app.json", 1_000_001);
    let upstream = Upstream::start(
        vec![(service.key_id.clone(), service.key.decoding_key())],
        Default::default(),
    )
    .await;
    Setup {
        upstream,
        service,
        app,
        dir,
    }
}

fn proxy(s: &Setup, tls: Option<(&Path, &Path)>) -> Voxproxy {
    let mut args: Vec<String> = vec![
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--upstream".into(),
        s.upstream.url.clone(),
        "--upstream-ca".into(),
        s.upstream.ca_path.to_string_lossy().into(),
        "--credentials".into(),
        s.service.path.to_string_lossy().into(),
    ];
    if let Some((cert, key)) = tls {
        args.extend([
            "--tls-cert".into(),
            cert.to_string_lossy().into(),
            "--tls-key".into(),
            key.to_string_lossy().into(),
        ]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Voxproxy::start(&args, &[])
}

/// Run a driver with a clean environment plus `env` (off the async runtime); returns its stdout
/// as JSON.
async fn drive(program: &Path, script: &Path, env: &[(&str, &str)]) -> serde_json::Value {
    let (program, script) = (program.to_owned(), script.to_owned());
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || drive_blocking(&program, &script, &env))
        .await
        .unwrap()
}

fn drive_blocking(program: &Path, script: &Path, env: &[(String, String)]) -> serde_json::Value {
    let mut cmd = Command::new(program);
    cmd.arg(script)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{} failed ({}):\n{}{}",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn assert_minted_by_voxproxy(s: &Setup, account: u64) {
    let rec = s.upstream.last();
    let jwt = rec
        .jwt
        .as_ref()
        .expect("the upstream verified the token with the service key");
    assert_eq!(
        jwt.kid, s.service.key_id,
        "signed with the service key, not the app's"
    );
    assert_ne!(jwt.kid, s.app.key_id);
    assert_eq!(jwt.iss, account);
    assert_eq!(rec.method, "POST");
    assert_eq!(rec.target, "/platform_api");
}

#[tokio::test]
async fn python_client_over_inbound_tls() {
    let s = setup_rig().await;
    let pki = Pki::new(&[]);
    let (ca, cert, key) = pki.write(s.dir.path());
    let proxy = proxy(&s, Some((&cert, &key)));
    let endpoint = proxy.addr().to_string();
    let python = interop_dir().join(".venv/bin/python");
    let script = interop_dir().join("python/call.py");
    let creds = s.app.path.to_str().unwrap();
    let env = [
        ("VOXPROXY_ENDPOINT", endpoint.as_str()),
        ("VOXPROXY_CREDENTIALS", creds),
        ("VOXPROXY_CA", ca.to_str().unwrap()),
    ];
    let out = drive(&python, &script, &env).await;
    assert_eq!(out["result"]["iss"], 1_000_001, "{out}");
    assert_minted_by_voxproxy(&s, 1_000_001);
    assert_eq!(s.upstream.last().body, b"cmd=GetAccountInfo");

    // A child account, chosen the client's way (its JWT's iss, a string).
    let mut env = env.to_vec();
    env.push(("VOXPROXY_ACCOUNT", "2000002"));
    let out = drive(&python, &script, &env).await;
    assert_eq!(out["result"]["iss"], 2_000_002, "{out}");
    assert_minted_by_voxproxy(&s, 2_000_002);
}

#[tokio::test]
async fn node_client_through_https_proxy_and_over_tls() {
    let s = setup_rig().await;
    let node = PathBuf::from("node");
    let script = interop_dir().join("node/call.js");
    let creds = s.app.path.to_string_lossy().into_owned();

    // https_proxy: plain HTTP to voxproxy, absolute-form target for api.voximplant.com.
    let plain = proxy(&s, None);
    let proxy_url = format!("http://{}", plain.addr());
    for (account, want) in [(None, 1_000_001u64), (Some("2000002"), 2_000_002)] {
        let mut env = vec![
            ("MODE", "proxy"),
            ("https_proxy", proxy_url.as_str()),
            ("VOXPROXY_CREDENTIALS", creds.as_str()),
        ];
        if let Some(a) = account {
            env.push(("VOXPROXY_ACCOUNT", a));
        }
        let out = drive(&node, &script, &env).await;
        assert_eq!(out["result"]["iss"], want, "{out}");
        assert_eq!(
            out["result"]["cmd"], "GetAccountInfo",
            "multipart cmd arrived intact: {out}"
        );
        assert_minted_by_voxproxy(&s, want);
        let rec = s.upstream.last();
        assert!(
            rec.headers.get("content-length").is_none(),
            "chunked multipart, as Node sends it"
        );
    }

    // The client's `host` option with inbound TLS and NODE_EXTRA_CA_CERTS.
    let pki = Pki::new(&[]);
    let (ca, cert, key) = pki.write(s.dir.path());
    let tls = proxy(&s, Some((&cert, &key)));
    let host = tls.addr().to_string();
    let env = [
        ("MODE", "host"),
        ("VOXPROXY_HOST", host.as_str()),
        ("VOXPROXY_CREDENTIALS", creds.as_str()),
        ("NODE_EXTRA_CA_CERTS", ca.to_str().unwrap()),
    ];
    let out = drive(&node, &script, &env).await;
    assert_eq!(out["result"]["iss"], 1_000_001, "{out}");
    assert_minted_by_voxproxy(&s, 1_000_001);
}
