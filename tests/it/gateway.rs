//! Gateway mode through the real binary: the three ways a client authenticates (app JWT, static
//! key, TLS client certificate), each 401, per-client accounts, methods and rate, the
//! `client add|list|remove` commands, and reloading the clients file.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_lc_rs::encoding::{AsDer as _, PublicKeyX509Der};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;
use bytes::Bytes;
use http::Request;
use http_body_util::StreamBody;
use hyper::body::Frame;
use nix::sys::signal::Signal;
use serde_json::json;

use crate::support::certs::{Creds, Pki, RsaKey, pem};
use crate::support::http::{Resp, body, get, send};
use crate::support::process::{self, Voxproxy};
use crate::support::tls::try_send_tls;
use crate::support::upstream::{Options, Upstream};
use crate::support::{BoxError, now};

/// The service account's id (the credentials file's), and two more the tests use.
const MAIN: u64 = 1_000_001;
const CHILD: u64 = 1_000_002;
const OTHER: u64 = 1_000_003;

/// A mock upstream, a credentials file and a clients file, before the proxy starts.
struct Setup {
    upstream: Upstream,
    creds: Creds,
    dir: tempfile::TempDir,
    clients: PathBuf,
}

/// A running gateway.
struct Gw {
    s: Setup,
    proxy: Voxproxy,
}

impl Setup {
    async fn new(clients_toml: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let creds = Creds::write(dir.path(), "credentials.json", MAIN);
        let upstream = Upstream::start(
            vec![(creds.key_id.clone(), creds.key.decoding_key())],
            Options::default(),
        )
        .await;
        let clients = dir.path().join("clients.toml");
        std::fs::write(&clients, clients_toml).unwrap();
        Setup {
            upstream,
            creds,
            dir,
            clients,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Run `voxproxy ARGS --clients FILE --credentials FILE`: (exit code, stdout, stderr).
    fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let clients = self.clients.to_string_lossy().into_owned();
        let creds = self.creds.path.to_string_lossy().into_owned();
        let mut all = args.to_vec();
        all.extend(["--clients", &clients, "--credentials", &creds]);
        process::run(&all, &[])
    }

    fn serve(self, extra: &[&str]) -> Gw {
        let clients = self.clients.to_string_lossy().into_owned();
        let ca = self.upstream.ca_path.to_string_lossy().into_owned();
        let creds = self.creds.path.to_string_lossy().into_owned();
        let mut args = vec![
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &self.upstream.url,
            "--upstream-ca",
            &ca,
            "--credentials",
            &creds,
            "--clients",
            &clients,
        ];
        args.extend_from_slice(extra);
        let proxy = Voxproxy::start(&args, &[]);
        Gw { s: self, proxy }
    }
}

impl Gw {
    async fn start(clients_toml: &str) -> Gw {
        Setup::new(clients_toml).await.serve(&[])
    }

    async fn send<B>(&self, req: Request<B>) -> Resp
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        send(self.proxy.addr(), req).await
    }

    /// The access-log line of the last request that ended with `status`.
    fn access_log(&self, status: u16) -> serde_json::Value {
        let line = self
            .proxy
            .log
            .wait_for(Duration::from_secs(5), |l| {
                l.contains("\"voxproxy::access\"") && l.contains(&format!("\"status\":{status}"))
            })
            .unwrap_or_else(|| panic!("no access log line\n{}", self.proxy.logs()));
        let last = self
            .proxy
            .log
            .all()
            .into_iter()
            .rev()
            .find(|l| {
                l.contains("\"voxproxy::access\"") && l.contains(&format!("\"status\":{status}"))
            })
            .unwrap_or(line);
        serde_json::from_str(&last).unwrap()
    }

    async fn metrics(&self) -> String {
        let resp = get(self.proxy.addr(), "/metrics").await;
        assert_eq!(resp.status, 200, "the admin paths need no client key");
        String::from_utf8(resp.body.to_vec()).unwrap()
    }
}

/// An app that signs its own JWTs (what an official client does with its credentials file).
struct App {
    key_id: String,
    key: RsaKey,
}

impl App {
    fn new(key_id: &str) -> App {
        App {
            key_id: key_id.to_owned(),
            key: RsaKey::generate(),
        }
    }

    /// The app as `client add --out` wrote it (`app.json`).
    fn from_json(path: &Path) -> App {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let pem_text = v["private_key"].as_str().unwrap();
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(pem_text.as_bytes())
            .map(|k: rustls_pki_types::PrivatePkcs8KeyDer<'static>| k.secret_pkcs8_der().to_vec())
            .unwrap();
        let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(&der).unwrap();
        App {
            key_id: v["key_id"].as_str().unwrap().to_owned(),
            key: RsaKey {
                pkcs8: der,
                public_der: pair.public_key().as_ref().to_vec(),
            },
        }
    }

    /// SPKI PEM of the public key (what the clients file holds).
    fn public_pem(&self) -> String {
        let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(&self.key.pkcs8).unwrap();
        let der: PublicKeyX509Der = pair.public_key().as_der().unwrap();
        pem("PUBLIC KEY", der.as_ref())
    }

    /// `key_id` and `public_key` lines for a clients-file table.
    fn toml(&self) -> String {
        format!(
            "key_id = \"{}\"\npublic_key = \"\"\"{}\"\"\"\n",
            self.key_id,
            self.public_pem()
        )
    }

    fn sign_with(&self, kid: &str, claims: &serde_json::Value) -> String {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        h.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&h, claims, &self.key.encoding_key()).unwrap()
    }

    fn jwt(&self, iss: serde_json::Value) -> String {
        self.sign_with(
            &self.key_id,
            &json!({"iss": iss, "iat": now() - 5, "exp": now() + 60}),
        )
    }
}

fn api(method: &str, uri: &str) -> http::request::Builder {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "127.0.0.1")
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn assert_refused(resp: &Resp, status: u16, kind: &str, context: &str) {
    assert_eq!(resp.status, status, "{context}: {:?}", resp.body);
    assert_eq!(resp.kind(), Some(kind), "{context}");
    assert!(
        resp.json()["error"]["msg"]
            .as_str()
            .unwrap()
            .starts_with("voxproxy: "),
        "{context}"
    );
}

#[tokio::test]
async fn app_jwt_from_client_add_out_is_replaced_by_a_minted_token() {
    let setup = Setup::new("").await;
    let app_json = setup.path("app.json");
    let (code, out, err) = setup.cli(&[
        "client",
        "add",
        "billing",
        "--out",
        app_json.to_str().unwrap(),
        "--account",
        &CHILD.to_string(),
        "--account",
        &MAIN.to_string(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let mode = std::fs::metadata(&app_json).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&app_json).unwrap()).unwrap();
    assert_eq!(v["account_id"], CHILD, "the client's first account");
    assert!(uuid::Uuid::parse_str(v["key_id"].as_str().unwrap()).is_ok());
    assert!(
        v["private_key"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----\n")
    );
    let app = App::from_json(&app_json);
    let gw = setup.serve(&[]);

    // Python's shape: iss a string of digits.
    let jwt = app.jwt(json!(MAIN.to_string()));
    let resp = gw
        .send(
            api("GET", "/platform_api/GetAccountInfo/")
                .header("authorization", bearer(&jwt))
                .body(body(""))
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status, 200, "{:?}\n{}", resp.body, gw.proxy.logs());
    let rec = gw.s.upstream.last();
    let minted = rec.jwt.expect("the upstream verified the token");
    assert_eq!(minted.kid, gw.s.creds.key_id, "signed with the real key");
    assert_eq!(minted.iss, MAIN);
    assert_ne!(minted.raw, jwt);
    assert_eq!(rec.headers.get_all("authorization").iter().count(), 1);
    let log = gw.access_log(200);
    assert_eq!(log["client"], "billing");
    assert_eq!(log["account"], MAIN);

    // Node's shape: iss a number; the child account is signed for by the parent's key.
    let resp = gw
        .send(
            api("POST", "/platform_api/GetUsers/")
                .header("authorization", bearer(&app.jwt(json!(CHILD))))
                .body(body("a=1"))
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(gw.s.upstream.last().jwt.unwrap().iss, CHILD);

    // Without iss: the client's first account.
    let no_iss = app.sign_with(&app.key_id, &json!({"iat": now(), "exp": now() + 60}));
    let resp = gw
        .send(
            api("GET", "/platform_api/GetUsers/")
                .header("authorization", bearer(&no_iss))
                .body(body(""))
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(gw.s.upstream.last().jwt.unwrap().iss, CHILD);

    // The same token again (served from the verification cache) still works.
    for _ in 0..3 {
        let resp = gw
            .send(
                api("GET", "/platform_api/GetUsers/")
                    .header("authorization", bearer(&jwt))
                    .body(body(""))
                    .unwrap(),
            )
            .await;
        assert_eq!(resp.status, 200);
    }
    let logs = gw.proxy.logs();
    assert!(!logs.contains(&jwt), "the app's JWT is never logged");
}

#[tokio::test]
async fn every_bad_app_jwt_is_401() {
    let app = App::new("kid-billing");
    let impostor = RsaKey::generate();
    let gw = Gw::start(&format!("[clients.billing]\n{}", app.toml())).await;
    let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let n = now();
    let good = app.jwt(json!(MAIN));
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    parts[1] = enc.encode(json!({"iss": CHILD, "iat": n - 5, "exp": n + 60}).to_string());
    let tampered = parts.join(".");
    let alg_none = format!(
        "{}.{}.",
        enc.encode(json!({"alg": "none", "typ": "JWT", "kid": app.key_id}).to_string()),
        enc.encode(json!({"iss": MAIN, "iat": n, "exp": n + 60}).to_string())
    );
    let mut hs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs.kid = Some(app.key_id.clone());
    let hs256 = jsonwebtoken::encode(
        &hs,
        &json!({"iss": MAIN, "iat": n, "exp": n + 60}),
        &jsonwebtoken::EncodingKey::from_secret(app.public_pem().as_bytes()),
    )
    .unwrap();
    let mut wrong_sig = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    wrong_sig.kid = Some(app.key_id.clone());
    let wrong_sig = jsonwebtoken::encode(
        &wrong_sig,
        &json!({"iss": MAIN, "iat": n, "exp": n + 60}),
        &impostor.encoding_key(),
    )
    .unwrap();
    let cases: Vec<(&str, &str, String)> = vec![
        (
            "unknown kid",
            "unknown_key",
            app.sign_with("kid-nobody", &json!({"iss": MAIN, "iat": n, "exp": n + 60})),
        ),
        ("wrong signature", "bad_signature", wrong_sig),
        ("tampered payload", "bad_signature", tampered),
        (
            "expired",
            "expired",
            app.sign_with(
                &app.key_id,
                &json!({"iss": MAIN, "iat": n - 100, "exp": n - 1}),
            ),
        ),
        (
            "exp - iat > 3600",
            "lifetime_too_long",
            app.sign_with(
                &app.key_id,
                &json!({"iss": MAIN, "iat": n, "exp": n + 3601}),
            ),
        ),
        (
            "iat 2 min in the future",
            "iat_in_future",
            app.sign_with(
                &app.key_id,
                &json!({"iss": MAIN, "iat": n + 120, "exp": n + 600}),
            ),
        ),
        ("alg none", "bad_jwt", alg_none),
        ("HS256 with the public key as secret", "bad_jwt", hs256),
    ];
    for (what, _, jwt) in &cases {
        let resp = gw
            .send(
                api("GET", "/platform_api/GetUsers/")
                    .header("authorization", bearer(jwt))
                    .body(body(""))
                    .unwrap(),
            )
            .await;
        assert_refused(&resp, 401, "client_unauthenticated", what);
        assert_eq!(resp.json()["error"]["code"], 9410);
        assert_eq!(
            resp.header("www-authenticate"),
            Some("Bearer realm=\"voxproxy\""),
            "{what}"
        );
    }
    let resp = gw
        .send(
            api("GET", "/platform_api/GetUsers/")
                .body(body(""))
                .unwrap(),
        )
        .await;
    assert_refused(&resp, 401, "client_unauthenticated", "no credentials");
    assert_eq!(
        resp.header("www-authenticate"),
        Some("Bearer realm=\"voxproxy\"")
    );
    assert!(
        gw.s.upstream.records().is_empty(),
        "nothing reaches the upstream"
    );
    let metrics = gw.metrics().await;
    for (reason, count) in [
        ("unknown_key", 1),
        ("bad_signature", 2),
        ("expired", 1),
        ("lifetime_too_long", 1),
        ("iat_in_future", 1),
        ("bad_jwt", 2),
    ] {
        let client = if matches!(reason, "unknown_key" | "bad_jwt") {
            String::new()
        } else {
            ",client=\"billing\"".to_owned()
        };
        let series =
            format!("voxproxy_client_auth_failures_total{{reason=\"{reason}\"{client}}} {count}");
        assert!(metrics.contains(&series), "{series}\n{metrics}");
    }
    assert!(metrics.contains("voxproxy_client_auth_failures_total{reason=\"missing\"} 1"));
    assert!(
        gw.access_log(401)["client"].is_null(),
        "no client on an unauthenticated request"
    );
}

#[tokio::test]
async fn static_key_as_bearer_and_as_basic_password() {
    let setup = Setup::new("").await;
    let (code, key, err) = setup.cli(&["client", "add", "crm", "--static-key"]);
    assert_eq!(code, 0, "{err}");
    let key = key.trim_end().to_owned();
    assert!(
        key.starts_with("vxp_") && key.len() == 47,
        "stdout is the key alone: {key:?}"
    );
    let file = std::fs::read_to_string(&setup.clients).unwrap();
    assert!(!file.contains(&key), "only its SHA-256 is stored");
    let gw = setup.serve(&[]);

    for (how, value) in [
        ("Bearer", bearer(&key)),
        ("Basic, the client's name as user", basic("crm", &key)),
        ("Basic, any user", basic("whoever", &key)),
    ] {
        let resp = gw
            .send(
                api("GET", "/platform_api/GetUsers/")
                    .header("proxy-authorization", value)
                    .body(body(""))
                    .unwrap(),
            )
            .await;
        assert_eq!(resp.status, 200, "{how}: {:?}", resp.body);
        let rec = gw.s.upstream.last();
        assert!(rec.headers.get("proxy-authorization").is_none());
        assert_eq!(rec.jwt.unwrap().iss, MAIN, "{how}");
    }
    // What `https_proxy=http://crm:KEY@127.0.0.1:PORT` makes Node send: absolute-form, Basic.
    let resp = gw
        .send(
            Request::post("https://api.voximplant.com/platform_api")
                .header("host", "api.voximplant.com")
                .header("proxy-authorization", basic("crm", &key))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body("cmd=GetAccountInfo"))
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status, 200, "{:?}", resp.body);
    assert_eq!(gw.access_log(200)["client"], "crm");

    for (how, value) in [
        (
            "wrong key",
            bearer("vxp_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        ),
        ("wrong Basic password", basic("crm", "nope")),
        ("the key as Basic user", basic(&key, "")),
    ] {
        let resp = gw
            .send(
                api("GET", "/platform_api/GetUsers/")
                    .header("proxy-authorization", value)
                    .body(body(""))
                    .unwrap(),
            )
            .await;
        assert_refused(&resp, 401, "client_unauthenticated", how);
    }
    assert!(!gw.proxy.logs().contains(&key), "the key is never logged");
}

#[tokio::test]
async fn the_static_key_decides_when_an_app_jwt_comes_too() {
    let app = App::new("kid-billing");
    let key = "vxp_crmcrmcrmcrmcrmcrmcrmcrmcrmcrmcrmcrmcrmcr";
    let hash = {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
        d.as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let gw = Gw::start(&format!(
        "[clients.billing]\naccounts = [{MAIN}, {CHILD}]\n{}\n[clients.crm]\naccounts = [{MAIN}, {CHILD}]\nstatic_key_sha256 = \"{hash}\"\n",
        app.toml()
    ))
    .await;
    // A valid JWT of billing beside crm's key: crm it is, and the JWT is ignored entirely (its iss
    // names the child account, but the request acts for crm's first account).
    let resp = gw
        .send(
            api("GET", "/platform_api/GetUsers/")
                .header("proxy-authorization", bearer(key))
                .header("authorization", bearer(&app.jwt(json!(CHILD))))
                .body(body(""))
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status, 200, "{:?}", resp.body);
    assert_eq!(gw.access_log(200)["client"], "crm");
    let rec = gw.s.upstream.last();
    assert_eq!(rec.jwt.unwrap().iss, MAIN);
    assert!(rec.headers.get("proxy-authorization").is_none());
    // A throwaway JWT (what Node signs with any key) is not verified.
    let junk = App::new("any-kid").jwt(json!(MAIN));
    let resp = gw
        .send(
            api("GET", "/platform_api/GetUsers/")
                .header("proxy-authorization", basic("crm", key))
                .header("authorization", bearer(&junk))
                .body(body(""))
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status, 200, "{:?}", resp.body);
    assert_eq!(gw.s.upstream.last().jwt.unwrap().iss, MAIN);
    // A wrong static key is not rescued by a valid JWT.
    let resp = gw
        .send(
            api("GET", "/platform_api/GetUsers/")
                .header("proxy-authorization", bearer("vxp_wrong"))
                .header("authorization", bearer(&app.jwt(json!(MAIN))))
                .body(body(""))
                .unwrap(),
        )
        .await;
    assert_refused(&resp, 401, "client_unauthenticated", "wrong key, valid JWT");
}

#[tokio::test]
async fn tls_client_certificates_name_clients() {
    let pki = Pki::new(&[]);
    let setup = Setup::new(
        "[clients.ops]\ntls_name = \"ops.apps.internal\"\n\n[clients.batch]\ntls_name = \"batch.apps.internal\"\nread_only = true\n",
    )
    .await;
    let (ca, cert, key) = pki.write(setup.dir.path());
    let (ca, cert, key) = (
        ca.to_string_lossy().into_owned(),
        cert.to_string_lossy().into_owned(),
        key.to_string_lossy().into_owned(),
    );
    let gw = setup.serve(&[
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--tls-client-ca",
        &ca,
    ]);
    let addr = gw.proxy.addr();
    let req = || {
        api("GET", "/platform_api/SetUserInfo/")
            .body(body(""))
            .unwrap()
    };
    let (ops_cert, ops_key) = pki.client_cert("ops.apps.internal");
    let resp = try_send_tls(addr, &pki.ca_pem, Some((&ops_cert, &ops_key)), req())
        .await
        .unwrap();
    assert_eq!(resp.status, 200, "{:?}\n{}", resp.body, gw.proxy.logs());
    assert_eq!(gw.access_log(200)["client"], "ops");
    assert_eq!(gw.s.upstream.last().jwt.unwrap().iss, MAIN);

    let (batch_cert, batch_key) = pki.client_cert("batch.apps.internal");
    let resp = try_send_tls(addr, &pki.ca_pem, Some((&batch_cert, &batch_key)), req())
        .await
        .unwrap();
    assert_refused(&resp, 403, "client_forbidden", "batch is read-only");

    let (other_cert, other_key) = pki.client_cert("stranger.apps.internal");
    let resp = try_send_tls(addr, &pki.ca_pem, Some((&other_cert, &other_key)), req())
        .await
        .unwrap();
    assert_refused(&resp, 401, "client_unauthenticated", "a name no client has");

    // No certificate at all: in gateway mode a certificate is one way in of three, so the
    // handshake succeeds and the request, authenticated no other way, is answered 401.
    let resp = try_send_tls(addr, &pki.ca_pem, None, req()).await.unwrap();
    assert_refused(&resp, 401, "client_unauthenticated", "no certificate");
    assert_eq!(gw.s.upstream.records().len(), 1);
}

#[tokio::test]
async fn accounts_outside_the_clients_list_are_403_by_every_route() {
    let app = App::new("kid-billing");
    let gw = Gw::start(&format!(
        "[clients.billing]\naccounts = [{MAIN}, {CHILD}]\n{}",
        app.toml()
    ))
    .await;
    let jwt_main = app.jwt(json!(MAIN));
    let routes: Vec<(&str, Request<_>)> = vec![
        (
            "path prefix",
            api("GET", &format!("/accounts/{OTHER}/platform_api/GetUsers/"))
                .header("authorization", bearer(&jwt_main))
                .body(body(""))
                .unwrap(),
        ),
        (
            "account header",
            api("GET", "/platform_api/GetUsers/")
                .header("authorization", bearer(&jwt_main))
                .header("x-voximplant-account-id", OTHER.to_string())
                .body(body(""))
                .unwrap(),
        ),
        (
            "JWT iss",
            api("GET", "/platform_api/GetUsers/")
                .header("authorization", bearer(&app.jwt(json!(OTHER))))
                .body(body(""))
                .unwrap(),
        ),
    ];
    for (route, req) in routes {
        let resp = gw.send(req).await;
        assert_refused(&resp, 403, "client_forbidden", route);
        let msg = resp.json()["error"]["msg"].as_str().unwrap().to_owned();
        assert!(msg.contains(&OTHER.to_string()), "{route}: {msg}");
    }
    assert!(gw.s.upstream.records().is_empty());
    // The same routes within the list pass, each to its account.
    for (route, req, want) in [
        (
            "path prefix",
            api("GET", &format!("/accounts/{CHILD}/platform_api/GetUsers/"))
                .header("authorization", bearer(&jwt_main))
                .body(body(""))
                .unwrap(),
            CHILD,
        ),
        (
            "account header",
            api("GET", "/platform_api/GetUsers/")
                .header("authorization", bearer(&jwt_main))
                .header("x-voximplant-account-id", CHILD.to_string())
                .body(body(""))
                .unwrap(),
            CHILD,
        ),
        (
            "JWT iss",
            api("GET", "/platform_api/GetUsers/")
                .header("authorization", bearer(&jwt_main))
                .body(body(""))
                .unwrap(),
            MAIN,
        ),
    ] {
        let resp = gw.send(req).await;
        assert_eq!(resp.status, 200, "{route}: {:?}", resp.body);
        assert_eq!(gw.s.upstream.last().jwt.unwrap().iss, want, "{route}");
    }
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains(
            "voxproxy_client_policy_refusals_total{reason=\"account\",client=\"billing\"} 3"
        ),
        "{metrics}"
    );
}

/// Multipart the way Node's form-data writes it: each piece its own chunk.
fn multipart_chunks(boundary: &str, fields: &[(&str, &[u8])]) -> Vec<Vec<u8>> {
    let mut parts = Vec::new();
    for (name, value) in fields {
        parts.push(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n")
                .into_bytes(),
        );
        parts.push(value.to_vec());
        parts.push(b"\r\n".to_vec());
    }
    parts.push(format!("--{boundary}--\r\n").into_bytes());
    parts
}

fn chunked(
    chunks: Vec<Vec<u8>>,
) -> StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, BoxError>>> {
    StreamBody::new(futures_util::stream::iter(
        chunks
            .into_iter()
            .map(|c| Ok::<_, BoxError>(Frame::data(Bytes::from(c)))),
    ))
}

const BOUNDARY: &str = "--------------------------735323031399963166993862";

#[tokio::test]
async fn read_only_clients_call_get_methods_only_wherever_the_method_is() {
    let key = "vxp_readonlyreadonlyreadonlyreadonlyreadonly";
    let hash = {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
        d.as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let gw = Gw::start(&format!(
        "[clients.reporting]\nstatic_key_sha256 = \"{hash}\"\nread_only = true\n"
    ))
    .await;
    let auth = bearer(key);
    let form = "application/x-www-form-urlencoded";
    let multipart = format!("multipart/form-data; boundary={BOUNDARY}");

    let resp = gw
        .send(
            api("GET", "/platform_api/GetUsers/?application_id=1")
                .header("proxy-authorization", &auth)
                .body(body(""))
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status, 200, "{:?}", resp.body);

    let refused: Vec<(&str, Request<http_body_util::Full<Bytes>>)> = vec![
        (
            "path",
            api("POST", "/platform_api/SetUserInfo/")
                .header("proxy-authorization", &auth)
                .body(body(""))
                .unwrap(),
        ),
        (
            "query cmd",
            api("GET", "/platform_api?cmd=Set%55serInfo&user_id=1")
                .header("proxy-authorization", &auth)
                .body(body(""))
                .unwrap(),
        ),
        (
            "urlencoded cmd",
            api("POST", "/platform_api")
                .header("proxy-authorization", &auth)
                .header("content-type", form)
                .body(body("user_id=5&cmd=SetUserInfo"))
                .unwrap(),
        ),
        (
            "path and body disagree",
            api("POST", "/platform_api/GetUsers/")
                .header("proxy-authorization", &auth)
                .header("content-type", form)
                .body(body("cmd=SetUserInfo"))
                .unwrap(),
        ),
        (
            "no method anywhere",
            api("POST", "/platform_api")
                .header("proxy-authorization", &auth)
                .header("content-type", "application/json")
                .body(body("{\"cmd\":\"GetUsers\"}"))
                .unwrap(),
        ),
    ];
    for (place, req) in refused {
        let resp = gw.send(req).await;
        assert_refused(&resp, 403, "client_forbidden", place);
    }
    // Node's shape: chunked multipart, no Content-Length, cmd first, each piece a chunk.
    let resp = gw
        .send(
            api("POST", "/platform_api")
                .header("proxy-authorization", &auth)
                .header("content-type", &multipart)
                .body(chunked(multipart_chunks(
                    BOUNDARY,
                    &[("cmd", b"SetUserInfo"), ("user_id", b"5")],
                )))
                .unwrap(),
        )
        .await;
    assert_refused(&resp, 403, "client_forbidden", "chunked multipart cmd");
    assert!(
        resp.json()["error"]["msg"]
            .as_str()
            .unwrap()
            .contains("SetUserInfo")
    );
    assert!(
        gw.s.upstream.records().len() == 1,
        "only GetUsers went through"
    );

    // The same shape with a Get method goes through byte for byte.
    let chunks = multipart_chunks(BOUNDARY, &[("cmd", b"GetUsers"), ("user_id", b"5")]);
    let whole = chunks.concat();
    let resp = gw
        .send(
            api("POST", "/platform_api")
                .header("proxy-authorization", &auth)
                .header("content-type", &multipart)
                .body(chunked(chunks))
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status, 200, "{:?}", resp.body);
    let rec = gw.s.upstream.last();
    assert_eq!(rec.body, whole);
    assert_eq!(resp.json()["result"]["cmd"], "GetUsers");
    let log = gw.access_log(200);
    assert_eq!(log["api_method"], "GetUsers");
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains(
            "voxproxy_client_policy_refusals_total{reason=\"method\",client=\"reporting\"} 6"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_5_mib_multipart_body_with_cmd_first_arrives_byte_for_byte() {
    let key = "vxp_bigbigbigbigbigbigbigbigbigbigbigbigbigbi";
    let hash = {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
        d.as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let gw = Gw::start(&format!(
        "[clients.uploader]\nstatic_key_sha256 = \"{hash}\"\nmethods = [\"Get*\", \"AddCallList*\"]\n"
    ))
    .await;
    let file: Vec<u8> = (0..5 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let mut chunks = multipart_chunks(
        BOUNDARY,
        &[("cmd", b"AddCallListFromFile"), ("rule_id", b"1")],
    );
    // The file as its own part, in 16 KiB chunks, before the closing delimiter.
    let closing = chunks.pop().unwrap();
    chunks.push(
        format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file_content\"; filename=\"list.csv\"\r\nContent-Type: text/csv\r\n\r\n")
            .into_bytes(),
    );
    chunks.extend(file.chunks(16 * 1024).map(<[u8]>::to_vec));
    chunks.push(b"\r\n".to_vec());
    chunks.push(closing);
    let whole = chunks.concat();
    let resp = gw
        .send(
            api("POST", "/platform_api")
                .header("proxy-authorization", bearer(key))
                .header(
                    "content-type",
                    format!("multipart/form-data; boundary={BOUNDARY}"),
                )
                .body(chunked(chunks))
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status, 200, "{:?}", resp.body);
    let rec = gw.s.upstream.last();
    assert_eq!(rec.body.len(), whole.len());
    assert!(rec.body == whole, "the body arrived byte for byte");
    assert_eq!(gw.access_log(200)["api_method"], "AddCallListFromFile");
}

#[tokio::test]
async fn over_the_rate_is_429_with_retry_after_and_then_recovers() {
    let key = "vxp_ratelimitedratelimitedratelimitedratelim";
    let hash = {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
        d.as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let gw = Gw::start(&format!(
        "[clients.busy]\nstatic_key_sha256 = \"{hash}\"\nrate = \"5/s\"\n"
    ))
    .await;
    let req = || {
        api("GET", "/platform_api/GetUsers/")
            .header("proxy-authorization", bearer(key))
            .body(body(""))
            .unwrap()
    };
    let mut passed = 0;
    let limited = loop {
        let resp = gw.send(req()).await;
        if resp.status == 429 {
            break resp;
        }
        assert_eq!(resp.status, 200, "{:?}", resp.body);
        passed += 1;
        assert!(passed < 50, "never limited");
    };
    assert!(passed >= 5, "the burst is the rate's N: {passed}");
    assert_refused(&limited, 429, "client_rate_limited", "over the rate");
    assert_eq!(limited.json()["error"]["code"], 9490);
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    // The limiter refills with time; waiting is the behaviour under test.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let resp = gw.send(req()).await;
    assert_eq!(resp.status, 200, "recovered after Retry-After");
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("voxproxy_rate_limited_total{scope=\"client\",client=\"busy\"} 1"),
        "{metrics}"
    );
}

const OPERATOR_FILE: &str = "# Gateway clients for the platform team.
# Owner: platform@example.com -- do not edit by hand on Fridays.

[clients.billing]   # the billing service
accounts = [1000001]
tls_name = \"billing.apps.internal\"

# Reports: read-only, slow.
[clients.reports]
tls_name = \"reports.apps.internal\"
read_only = true
rate = \"10/m\"  # keep it gentle
";

#[tokio::test]
async fn client_add_list_remove_keep_the_operators_comments() {
    let setup = Setup::new(OPERATOR_FILE).await;
    let app_json = setup.path("crm-app.json");
    let (code, out, err) = setup.cli(&[
        "client",
        "add",
        "crm",
        "--out",
        app_json.to_str().unwrap(),
        "--method",
        "Get*",
        "--deny-method",
        "GetSecret*",
        "--rate",
        "20/s",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("crm"), "{out}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&app_json).unwrap()).unwrap();
    assert_eq!(
        v["account_id"], MAIN,
        "default: the first credentials file's account"
    );
    let (code, static_key, err) =
        setup.cli(&["client", "add", "ci", "--static-key", "--read-only"]);
    assert_eq!(code, 0, "{err}");
    let static_key = static_key.trim().to_owned();
    let (code, _, err) = setup.cli(&[
        "client",
        "add",
        "edge",
        "--tls-name",
        "edge.apps.internal",
        "--account",
        "1000002",
    ]);
    assert_eq!(code, 0, "{err}");

    let text = std::fs::read_to_string(&setup.clients).unwrap();
    assert!(
        text.starts_with(OPERATOR_FILE),
        "the operator's part is untouched:\n{text}"
    );
    let parsed: toml::Table = text.parse().unwrap();
    let crm = &parsed["clients"]["crm"];
    assert_eq!(crm["key_id"].as_str(), v["key_id"].as_str());
    assert!(
        crm["public_key"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );
    assert_eq!(crm["methods"].as_array().unwrap().len(), 1);
    assert_eq!(crm["rate"].as_str(), Some("20/s"));
    assert_eq!(parsed["clients"]["ci"]["read_only"].as_bool(), Some(true));
    assert_eq!(
        parsed["clients"]["ci"]["static_key_sha256"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    assert_eq!(
        parsed["clients"]["edge"]["accounts"].as_array().unwrap()[0].as_integer(),
        Some(1000002)
    );

    let (code, list, err) = setup.cli(&["client", "list"]);
    assert_eq!(code, 0, "{err}");
    for name in ["billing", "reports", "crm", "ci", "edge"] {
        assert!(
            list.lines().any(|l| l.starts_with(&format!("{name}:"))),
            "{name} in\n{list}"
        );
    }
    assert!(list.contains("read-only"));
    assert!(list.contains("rate: 20/s"));
    assert!(list.contains("static key"));
    assert!(list.contains(&format!("key_id {}", v["key_id"].as_str().unwrap())));
    let hash = parsed["clients"]["ci"]["static_key_sha256"]
        .as_str()
        .unwrap();
    for secret in [static_key.as_str(), hash, "BEGIN", "PRIVATE"] {
        assert!(
            !list.contains(secret),
            "list shows no secret ({secret})\n{list}"
        );
    }

    // Duplicates and unknown names: exit 2, nothing changed.
    for args in [
        &["client", "add", "crm", "--static-key"][..],
        &["client", "add", "CRM", "--static-key"][..],
        &["client", "remove", "nobody"][..],
        &["client", "add", "bad name", "--static-key"][..],
        &["client", "add", "x", "--static-key", "--rate", "5/d"][..],
    ] {
        let (code, out, err) = setup.cli(args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(out.is_empty(), "{args:?}: no key printed: {out}");
        assert_eq!(std::fs::read_to_string(&setup.clients).unwrap(), text);
    }
    // --out never overwrites.
    let before = std::fs::read(&app_json).unwrap();
    let (code, _, err) = setup.cli(&["client", "add", "crm2", "--out", app_json.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("exists"), "{err}");
    assert_eq!(std::fs::read(&app_json).unwrap(), before);

    // Remove: the removed client's own comment goes, everything else stays as written.
    let (code, out, err) = setup.cli(&["client", "remove", "reports"]);
    assert_eq!(code, 0, "{out}{err}");
    let after = std::fs::read_to_string(&setup.clients).unwrap();
    assert!(!after.contains("[clients.reports]"));
    assert!(!after.contains("# Reports: read-only, slow."));
    assert!(after.starts_with(
        "# Gateway clients for the platform team.\n# Owner: platform@example.com -- do not edit by hand on Fridays.\n\n[clients.billing]   # the billing service\naccounts = [1000001]\ntls_name = \"billing.apps.internal\"\n"
    ), "{after}");
    let (code, _, err) = setup.cli(&["client", "remove", "billing"]);
    assert_eq!(code, 0, "{err}");
    let after = std::fs::read_to_string(&setup.clients).unwrap();
    assert!(
        after.starts_with("# Gateway clients for the platform team.\n# Owner: platform@example.com -- do not edit by hand on Fridays.\n\n"),
        "the file's header comment survives removing the first client:\n{after}"
    );
    assert!(after.contains("[clients.crm]") && after.contains("[clients.edge]"));

    // The result serves: crm's app JWT works.
    let app = App::from_json(&app_json);
    let gw = setup.serve(&[]);
    let resp = gw
        .send(
            api("GET", "/platform_api/GetUsers/")
                .header("authorization", bearer(&app.jwt(json!(MAIN))))
                .body(body(""))
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status, 200, "{:?}", resp.body);
    let resp = gw
        .send(
            api("GET", "/platform_api/GetSecretThing/")
                .header("authorization", bearer(&app.jwt(json!(MAIN))))
                .body(body(""))
                .unwrap(),
        )
        .await;
    assert_refused(&resp, 403, "client_forbidden", "deny-method");
}

#[tokio::test]
async fn client_commands_need_the_clients_setting() {
    let (code, out, err) = process::run(&["client", "list"], &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("clients"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.toml");
    let (code, _, err) = process::run(
        &["client", "list", "--clients", missing.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    // A broken file is named with the client and the field.
    let broken = dir.path().join("clients.toml");
    std::fs::write(
        &broken,
        "[clients.a]\nrate = \"fast\"\ntls_name = \"a.b\"\n",
    )
    .unwrap();
    let (code, _, err) = process::run(
        &["client", "list", "--clients", broken.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, 2);
    assert!(err.contains("client `a`: field `rate`"), "{err}");
}

/// Replace a file the way an editor or a deploy tool does: a temporary file renamed over it.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn reload_adds_and_revokes_a_client() {
    let (a, b) = (
        "vxp_clientAclientAclientAclientAclientAclient",
        "vxp_clientBclientBclientBclientBclientBclient",
    );
    let hash = |k: &str| {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, k.as_bytes());
        d.as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let gw = Gw::start(&format!(
        "[clients.a]\nstatic_key_sha256 = \"{}\"\n",
        hash(a)
    ))
    .await;
    let status = |key: &'static str| {
        let addr = gw.proxy.addr();
        async move {
            send(
                addr,
                api("GET", "/platform_api/GetUsers/")
                    .header("proxy-authorization", bearer(key))
                    .body(body(""))
                    .unwrap(),
            )
            .await
            .status
            .as_u16()
        }
    };
    assert_eq!(status(a).await, 200);
    assert_eq!(status(b).await, 401);

    replace(
        &gw.s.clients,
        &format!(
            "# a revoked\n[clients.b]\nstatic_key_sha256 = \"{}\"\n",
            hash(b)
        ),
    );
    gw.proxy.signal(Signal::SIGHUP);
    gw.proxy
        .log
        .wait_for(Duration::from_secs(10), |l| {
            l.contains("gateway clients reloaded")
        })
        .unwrap_or_else(|| panic!("no reload\n{}", gw.proxy.logs()));
    assert_eq!(status(b).await, 200, "added");
    assert_eq!(status(a).await, 401, "revoked");

    // A broken file keeps the clients in force.
    replace(
        &gw.s.clients,
        "[clients.b]\nstatic_key_sha256 = \"not hex\"\n",
    );
    gw.proxy.signal(Signal::SIGHUP);
    let line = gw
        .proxy
        .log
        .wait_for(Duration::from_secs(10), |l| {
            l.contains("clients file not reloaded")
        })
        .unwrap_or_else(|| panic!("no failed reload\n{}", gw.proxy.logs()));
    assert!(line.contains("static_key_sha256"), "{line}");
    assert_eq!(status(b).await, 200, "the old clients stay in force");
}
