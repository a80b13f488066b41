//! The official Voximplant clients, unmodified and pinned (`tests/interop/`), through the real
//! binary against the mock upstream: Python over inbound TLS made by `voxproxy tls init`, Node
//! through `https_proxy` (plain HTTP, absolute-form) and over TLS; with and without gateway
//! clients (each app using the file `voxproxy client add --out` wrote), for the default and a
//! child account. The upstream checks that the token it got was minted by voxproxy with the
//! service key, not by the client with its own.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::support::certs::Creds;
use crate::support::process::{Voxproxy, run};
use crate::support::upstream::Upstream;

/// `tests/interop/`: the pinned clients and the Python helpers the tests run.
pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// Install the pinned clients once per test run (idempotent; needs the package registries the
/// first time).
pub fn setup() {
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
    /// `voxproxy tls init` output: (ca.pem, cert.pem, key.pem).
    tls: (PathBuf, PathBuf, PathBuf),
    dir: tempfile::TempDir,
}

const MAIN: u64 = 1_000_001;
const CHILD: u64 = 2_000_002;

async fn setup_rig() -> Setup {
    setup();
    let dir = tempfile::tempdir().unwrap();
    let service = Creds::write(dir.path(), "service.json", MAIN);
    let app = Creds::write(dir.path(), "app.json", MAIN);
    let upstream = Upstream::start(
        vec![(service.key_id.clone(), service.key.decoding_key())],
        Default::default(),
    )
    .await;
    // The local HTTPS endpoint the way a developer makes it: `voxproxy tls init`.
    let tls_dir = dir.path().join("voxproxy-tls");
    let (code, out, err) = run(&["tls", "init", "--dir", tls_dir.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "tls init: {out}{err}");
    let tls = (
        tls_dir.join("ca.pem"),
        tls_dir.join("cert.pem"),
        tls_dir.join("key.pem"),
    );
    Setup {
        upstream,
        service,
        app,
        tls,
        dir,
    }
}

/// Start voxproxy: over TLS with the `tls init` certificate when `tls`, in gateway mode with
/// `clients` when given.
fn proxy(s: &Setup, tls: bool, clients: Option<&Path>) -> Voxproxy {
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
    if tls {
        args.extend([
            "--tls-cert".into(),
            s.tls.1.to_string_lossy().into(),
            "--tls-key".into(),
            s.tls.2.to_string_lossy().into(),
        ]);
    }
    if let Some(clients) = clients {
        args.extend(["--clients".into(), clients.to_string_lossy().into()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Voxproxy::start(&args, &[])
}

/// `voxproxy client add NAME --account MAIN --account CHILD --out DIR/NAME.json`: the app's
/// credentials file, in Voximplant's format, for an unmodified official client.
fn client_add(s: &Setup, clients: &Path, name: &str) -> PathBuf {
    let out = s.dir.path().join(format!("{name}.json"));
    let (code, stdout, stderr) = run(
        &[
            "client",
            "add",
            name,
            "--account",
            &MAIN.to_string(),
            "--account",
            &CHILD.to_string(),
            "--out",
            out.to_str().unwrap(),
            "--clients",
            clients.to_str().unwrap(),
            "--credentials",
            s.service.path.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0, "client add: {stdout}{stderr}");
    out
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

fn assert_minted_by_voxproxy(s: &Setup, account: u64, app_kid: &str) {
    let rec = s.upstream.last();
    let jwt = rec
        .jwt
        .as_ref()
        .expect("the upstream verified the token with the service key");
    assert_eq!(
        jwt.kid, s.service.key_id,
        "signed with the service key, not the app's"
    );
    assert_ne!(jwt.kid, app_kid);
    assert_eq!(jwt.iss, account);
    assert_eq!(rec.method, "POST");
    assert_eq!(rec.target, "/platform_api");
}

/// The Python client, unpatched: `endpoint` is voxproxy's TLS address, `SSL_CERT_FILE` the
/// `ca.pem` from `tls init` (the environment is otherwise clean, so no `REQUESTS_CA_BUNDLE`).
async fn python(
    s: &Setup,
    proxy: &Voxproxy,
    creds: &Path,
    account: Option<u64>,
) -> serde_json::Value {
    let endpoint = proxy.addr().to_string();
    let account = account.map(|a| a.to_string());
    let mut env = vec![
        ("VOXPROXY_ENDPOINT", endpoint.as_str()),
        ("VOXPROXY_CREDENTIALS", creds.to_str().unwrap()),
        ("SSL_CERT_FILE", s.tls.0.to_str().unwrap()),
    ];
    if let Some(a) = &account {
        env.push(("VOXPROXY_ACCOUNT", a));
    }
    drive(
        &interop_dir().join(".venv/bin/python"),
        &interop_dir().join("python/call.py"),
        &env,
    )
    .await
}

/// The Node client, unpatched: through `https_proxy` (plain HTTP to voxproxy) when `proxy_url`,
/// else with its `host` option over TLS and `NODE_EXTRA_CA_CERTS`.
async fn node(
    s: &Setup,
    target: &str,
    via_https_proxy: bool,
    creds: &Path,
    account: Option<u64>,
) -> serde_json::Value {
    let account = account.map(|a| a.to_string());
    let mut env = vec![("VOXPROXY_CREDENTIALS", creds.to_str().unwrap())];
    if via_https_proxy {
        env.extend([("MODE", "proxy"), ("https_proxy", target)]);
    } else {
        env.extend([
            ("MODE", "host"),
            ("VOXPROXY_HOST", target),
            ("NODE_EXTRA_CA_CERTS", s.tls.0.to_str().unwrap()),
        ]);
    }
    if let Some(a) = &account {
        env.push(("VOXPROXY_ACCOUNT", a));
    }
    drive(Path::new("node"), &interop_dir().join("node/call.js"), &env).await
}

#[tokio::test]
async fn python_client_over_tls_from_tls_init() {
    let s = setup_rig().await;
    let proxy = proxy(&s, true, None);
    for account in [None, Some(CHILD)] {
        let out = python(&s, &proxy, &s.app.path, account).await;
        let want = account.unwrap_or(MAIN);
        assert_eq!(out["result"]["iss"], want, "{out}");
        assert_minted_by_voxproxy(&s, want, &s.app.key_id);
        assert_eq!(s.upstream.last().body, b"cmd=GetAccountInfo");
    }
}

#[tokio::test]
async fn node_client_through_https_proxy_and_over_tls() {
    let s = setup_rig().await;
    let plain = proxy(&s, false, None);
    let proxy_url = format!("http://{}", plain.addr());
    for account in [None, Some(CHILD)] {
        let out = node(&s, &proxy_url, true, &s.app.path, account).await;
        let want = account.unwrap_or(MAIN);
        assert_eq!(out["result"]["iss"], want, "{out}");
        assert_eq!(
            out["result"]["cmd"], "GetAccountInfo",
            "multipart cmd arrived intact: {out}"
        );
        assert_minted_by_voxproxy(&s, want, &s.app.key_id);
        let rec = s.upstream.last();
        assert!(
            rec.headers.get("content-length").is_none(),
            "chunked multipart, as Node sends it"
        );
    }
    let tls = proxy(&s, true, None);
    let out = node(&s, &tls.addr().to_string(), false, &s.app.path, None).await;
    assert_eq!(out["result"]["iss"], MAIN, "{out}");
    assert_minted_by_voxproxy(&s, MAIN, &s.app.key_id);
}

#[tokio::test]
async fn official_clients_in_gateway_mode_with_their_client_add_files() {
    let s = setup_rig().await;
    let clients = s.dir.path().join("clients.toml");
    let py_app = client_add(&s, &clients, "py-app");
    let node_app = client_add(&s, &clients, "node-app");
    let py_kid = app_key_id(&py_app);
    let node_kid = app_key_id(&node_app);
    let tls = proxy(&s, true, Some(&clients));
    let plain = proxy(&s, false, Some(&clients));

    for account in [None, Some(CHILD)] {
        let want = account.unwrap_or(MAIN);
        let out = python(&s, &tls, &py_app, account).await;
        assert_eq!(out["result"]["iss"], want, "{out}");
        assert_minted_by_voxproxy(&s, want, &py_kid);

        let out = node(
            &s,
            &format!("http://{}", plain.addr()),
            true,
            &node_app,
            account,
        )
        .await;
        assert_eq!(out["result"]["iss"], want, "{out}");
        assert_minted_by_voxproxy(&s, want, &node_kid);

        let out = node(&s, &tls.addr().to_string(), false, &node_app, account).await;
        assert_eq!(out["result"]["iss"], want, "{out}");
        assert_minted_by_voxproxy(&s, want, &node_kid);
    }
    let access: Vec<String> = tls
        .log
        .all()
        .into_iter()
        .filter(|l| l.contains("voxproxy::access"))
        .collect();
    assert!(
        access.iter().any(|l| l.contains("\"client\":\"py-app\"")),
        "{access:?}"
    );

    // The app's own file, unregistered, gets nowhere in gateway mode.
    let endpoint = tls.addr().to_string();
    let out = std::process::Command::new(interop_dir().join(".venv/bin/python"))
        .arg(interop_dir().join("python/call.py"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("VOXPROXY_ENDPOINT", &endpoint)
        .env("VOXPROXY_CREDENTIALS", &s.app.path)
        .env("SSL_CERT_FILE", &s.tls.0)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("9410"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn app_key_id(path: &Path) -> String {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    v["key_id"].as_str().unwrap().to_owned()
}
