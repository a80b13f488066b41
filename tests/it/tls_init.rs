//! `voxproxy tls init`: the files and their modes, certificates that pass strict X.509
//! verification (OpenSSL's `-x509_strict` when installed, rustls/webpki always), what it prints,
//! refusal to overwrite without `--force`, and a TLS listener serving with the result.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Arc;

use http::Request;
use rustls::client::danger::ServerCertVerifier as _;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer as _, X509Certificate};

use crate::support::Rig;
use crate::support::http::body;
use crate::support::process;
use crate::support::tls::try_send_tls;

fn init(dir: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["tls", "init", "--dir", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    process::run(&args, &[])
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn der(path: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).unwrap()
}

#[test]
fn makes_a_strict_ca_and_server_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("voxproxy-tls");
    let (code, out, err) = init(&dir, &["--name", "proxy.internal", "--name", "10.0.0.5"]);
    assert_eq!(code, 0, "{err}");

    // Exactly three files; the only private key is key.pem (the CA's key is gone).
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["ca.pem", "cert.pem", "key.pem"]);
    assert_eq!(mode(&dir.join("ca.pem")), 0o644);
    assert_eq!(mode(&dir.join("cert.pem")), 0o600);
    assert_eq!(mode(&dir.join("key.pem")), 0o600);
    for f in ["ca.pem", "cert.pem"] {
        let text = std::fs::read_to_string(dir.join(f)).unwrap();
        assert!(!text.contains("PRIVATE KEY"), "{f}");
        assert_eq!(text.matches("BEGIN CERTIFICATE").count(), 1, "{f}");
    }
    assert!(
        std::fs::read_to_string(dir.join("key.pem"))
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );

    // What it prints: the settings and how each client trusts ca.pem.
    let (ca, cert, key) = (
        dir.join("ca.pem").display().to_string(),
        dir.join("cert.pem").display().to_string(),
        dir.join("key.pem").display().to_string(),
    );
    for want in [
        format!("--tls-cert {cert} --tls-key {key}"),
        "voxproxy serve --listen 127.0.0.1:8443".to_owned(),
        format!("SSL_CERT_FILE={ca}"),
        "REQUESTS_CA_BUNDLE".to_owned(),
        "CURL_CA_BUNDLE".to_owned(),
        "replaces the system roots".to_owned(),
        format!("NODE_EXTRA_CA_CERTS={ca}"),
        format!("--cacert {ca}"),
    ] {
        assert!(out.contains(&want), "{want:?} in\n{out}");
    }

    // The CA: basicConstraints CA:true (critical), keyCertSign and cRLSign, a subject key id.
    let ca_der = der(&dir.join("ca.pem"));
    let (_, ca_x509) = X509Certificate::from_der(&ca_der).unwrap();
    let bc = ca_x509.basic_constraints().unwrap().unwrap();
    assert!(bc.critical && bc.value.ca);
    let ku = ca_x509.key_usage().unwrap().unwrap();
    assert!(ku.value.key_cert_sign() && ku.value.crl_sign());
    let ski = ca_x509
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        })
        .expect("the CA has a subject key id");
    let days = |c: &X509Certificate| {
        (c.validity().not_after.timestamp() - c.validity().not_before.timestamp()) / 86_400
    };
    assert!((365..=366).contains(&days(&ca_x509)), "{}", days(&ca_x509));

    // The server certificate: authority key id = the CA's, serverAuth, the SANs, not a CA.
    let leaf_der = der(&dir.join("cert.pem"));
    let (_, leaf) = X509Certificate::from_der(&leaf_der).unwrap();
    let aki = leaf
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })
        .expect("the server certificate has an authority key id");
    assert_eq!(aki, ski);
    assert!(
        leaf.extended_key_usage()
            .unwrap()
            .unwrap()
            .value
            .server_auth
    );
    assert!(!leaf.is_ca());
    let sans = leaf.subject_alternative_name().unwrap().unwrap();
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    for n in &sans.value.general_names {
        match n {
            GeneralName::DNSName(d) => dns.push(d.to_string()),
            GeneralName::IPAddress(ip) => ips.push(ip.to_vec()),
            other => panic!("unexpected SAN {other:?}"),
        }
    }
    assert_eq!(dns, ["localhost", "proxy.internal"]);
    let v6_loopback = {
        let mut v = vec![0u8; 16];
        v[15] = 1;
        v
    };
    assert_eq!(ips, [vec![127, 0, 0, 1], v6_loopback, vec![10, 0, 0, 5]]);
    assert!((365..=366).contains(&days(&leaf)));
    assert_eq!(leaf.issuer(), ca_x509.subject());

    // rustls (webpki) verifies the chain and each name; another name fails.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_der.clone()).unwrap();
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
    )
    .build()
    .unwrap();
    for name in [
        "localhost",
        "127.0.0.1",
        "::1",
        "proxy.internal",
        "10.0.0.5",
    ] {
        verifier
            .verify_server_cert(
                &leaf_der,
                &[],
                &ServerName::try_from(name).unwrap(),
                &[],
                UnixTime::now(),
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert!(
        verifier
            .verify_server_cert(
                &leaf_der,
                &[],
                &ServerName::try_from("other.internal").unwrap(),
                &[],
                UnixTime::now(),
            )
            .is_err()
    );

    // OpenSSL's strict mode (what Python 3.13 enables by default), when OpenSSL is installed.
    match std::process::Command::new("openssl")
        .args([
            "verify",
            "-x509_strict",
            "-purpose",
            "sslserver",
            "-CAfile",
            &ca,
            &cert,
        ])
        .output()
    {
        Ok(o) => assert!(
            o.status.success(),
            "openssl verify -x509_strict: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(_) => eprintln!("openssl not installed: strict OpenSSL check skipped"),
    }
}

#[test]
fn refuses_to_overwrite_without_force_and_force_rewrites_all_three() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (code, _, err) = init(dir, &[]);
    assert_eq!(code, 0, "{err}");
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    let before = [read("ca.pem"), read("cert.pem"), read("key.pem")];

    let (code, out, err) = init(dir, &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("--force"), "{err}");
    assert_eq!([read("ca.pem"), read("cert.pem"), read("key.pem")], before);

    // One file is enough to refuse, and nothing else is created.
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("key.pem"), "mine").unwrap();
    let (code, _, err) = init(other.path(), &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("key.pem"), "{err}");
    assert_eq!(
        std::fs::read_to_string(other.path().join("key.pem")).unwrap(),
        "mine"
    );
    assert!(!other.path().join("ca.pem").exists());
    assert!(!other.path().join("cert.pem").exists());

    // --force rewrites all three, with the modes restored.
    std::fs::set_permissions(dir.join("key.pem"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, err) = init(dir, &["--force"]);
    assert_eq!(code, 0, "{err}");
    let after = [read("ca.pem"), read("cert.pem"), read("key.pem")];
    for (b, a) in before.iter().zip(&after) {
        assert_ne!(b, a);
    }
    assert_eq!(mode(&dir.join("key.pem")), 0o600);
    assert_eq!(mode(&dir.join("cert.pem")), 0o600);
    let names = std::fs::read_dir(dir).unwrap().count();
    assert_eq!(names, 3, "no temporary file left behind");

    let (code, _, err) = init(dir, &["--name", "not a name"]);
    assert_eq!(code, 2, "{err}");
}

#[tokio::test]
async fn a_tls_listener_serves_with_what_init_made() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tls");
    let (code, _, err) = init(&dir, &[]);
    assert_eq!(code, 0, "{err}");
    let cert = dir.join("cert.pem").display().to_string();
    let key = dir.join("key.pem").display().to_string();
    let rig = Rig::start(&["--tls-cert", &cert, "--tls-key", &key]).await;
    let ca = std::fs::read_to_string(dir.join("ca.pem")).unwrap();
    let resp = try_send_tls(
        rig.proxy.addr(),
        &ca,
        None,
        Request::get("/platform_api/GetAccountInfo/")
            .header("host", "localhost")
            .body(body(""))
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status, 200, "{:?}", resp.body);
    assert_eq!(rig.upstream.last().jwt.unwrap().iss, rig.creds.account);

    // Plain HTTP to the TLS listener: no answer at all (not even a TLS alert), a closed
    // connection, and the TLS listener keeps serving.
    let out = crate::support::http::raw(
        rig.proxy.addr(),
        b"GET /platform_api/GetAccountInfo/ HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert_eq!(out, "", "plain HTTP got an answer");
    let resp = try_send_tls(
        rig.proxy.addr(),
        &ca,
        None,
        Request::get("/healthz")
            .header("host", "localhost")
            .body(body(""))
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status, 200);
}

#[test]
fn tls_init_certificates_load_and_verify_in_pyca_cryptography() {
    crate::interop::setup();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("voxproxy-tls");
    let (code, _, err) = init(&dir, &["--name", "proxy.internal", "--name", "10.0.0.5"]);
    assert_eq!(code, 0, "{err}");
    let verify = |names: &[&str]| {
        let interop = crate::interop::interop_dir();
        std::process::Command::new(interop.join(".venv/bin/python"))
            .arg(interop.join("python/verify_tls.py"))
            .arg(&dir)
            .args(names)
            .env_clear()
            .output()
            .unwrap()
    };
    // x509.load_pem_x509_certificate refuses DER with a DEFAULT value encoded; the server
    // verifier applies RFC 5280's profile strictly, for every name the certificate claims.
    let names = [
        "localhost",
        "127.0.0.1",
        "::1",
        "proxy.internal",
        "10.0.0.5",
    ];
    let out = verify(&names);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verified"], serde_json::json!(names));
    assert_eq!(v["chain"], 2, "server certificate and CA");
    // The check can fail: a name the certificate does not hold is refused.
    let out = verify(&["elsewhere.example"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("subjectAltName"));
}
