use std::path::Path;
use std::time::Instant;

use aws_lc_rs::encoding::{AsDer as _, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;
use jsonwebtoken::{EncodingKey, Header};
use rustls_pki_types::pem::PemObject as _;
use serde_json::json;

use super::*;
use crate::credentials::pem_encode as pem;
use crate::gateway::clients::CACHE_CAP;
use crate::gateway::clients::static_key_sha256;

fn acct(n: u64) -> AccountId {
    AccountId::new(n).unwrap()
}

/// An app's key: signs JWTs; its public half goes in the clients file.
struct AppKey {
    enc: EncodingKey,
    spki_pem: String,
}

impl AppKey {
    fn new() -> AppKey {
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let pkcs8: Pkcs8V1Der = pair.as_der().unwrap();
        let spki: PublicKeyX509Der = pair.public_key().as_der().unwrap();
        AppKey {
            enc: EncodingKey::from_rsa_pem(pem("PRIVATE KEY", pkcs8.as_ref()).as_bytes()).unwrap(),
            spki_pem: pem("PUBLIC KEY", spki.as_ref()),
        }
    }

    fn sign(&self, kid: &str, claims: serde_json::Value) -> String {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&h, &claims, &self.enc).unwrap()
    }
}

const NOW: i64 = 1_800_000_000;
const STATIC_KEY: &str = "vxp_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG";

struct Fixture {
    set: ClientSet,
    app: AppKey,
    other: AppKey,
}

fn fixture() -> Fixture {
    let app = AppKey::new();
    let other = AppKey::new();
    let text = format!(
        r#"
[clients.billing]
accounts = [5, 6]
key_id = "kid-billing"
public_key = """{}"""

[clients.crm]
static_key_sha256 = "{}"

[clients.other]
key_id = "kid-other"
public_key = """{}"""

[clients.ops]
tls_name = "ops.apps.internal"
"#,
        app.spki_pem,
        static_key_sha256(STATIC_KEY),
        other.spki_pem
    );
    let set = ClientSet::parse(Path::new("clients.toml"), &text, None).unwrap();
    Fixture { set, app, other }
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn bearer_of(jwt: &str) -> String {
    format!("Bearer {jwt}")
}

fn run(f: &Fixture, h: &HeaderMap) -> Result<Identity, Refusal> {
    authenticate_at(&f.set, h, None, NOW)
}

fn reason(r: Result<Identity, Refusal>) -> &'static str {
    match r {
        Ok(id) => panic!("authenticated as {}", id.client.name),
        Err(r) => {
            assert!(!r.msg.is_empty());
            r.reason
        }
    }
}

fn claims(iss: serde_json::Value, iat: i64, exp: i64) -> serde_json::Value {
    json!({"iss": iss, "iat": iat, "exp": exp})
}

#[test]
fn app_jwt_authenticates_and_names_the_account() {
    let f = fixture();
    for (iss, want) in [(json!(6), Some(acct(6))), (json!("5"), Some(acct(5)))] {
        let jwt = f.app.sign("kid-billing", claims(iss, NOW - 5, NOW + 60));
        let id = run(&f, &headers(&[("authorization", &bearer_of(&jwt))])).unwrap();
        assert_eq!(&*id.client.name, "billing");
        assert_eq!(id.jwt, JwtIss::Verified(want));
    }
    let jwt = f
        .app
        .sign("kid-billing", json!({"iat": NOW, "exp": NOW + 3600}));
    let id = run(&f, &headers(&[("authorization", &bearer_of(&jwt))])).unwrap();
    assert_eq!(
        id.jwt,
        JwtIss::Verified(None),
        "no iss: the client's default account"
    );
    // Node signs with iat = now and a 64 s lifetime; float dates are accepted too.
    let jwt = f.app.sign(
        "kid-billing",
        json!({"iss": 5, "iat": NOW as f64 + 0.5, "exp": NOW + 64}),
    );
    assert!(run(&f, &headers(&[("authorization", &bearer_of(&jwt))])).is_ok());
}

/// Tokens forged rather than merely wrong: tampered, unsigned, algorithm-confused.
fn forged_app_jwts(f: &Fixture) -> Vec<(&'static str, String)> {
    let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let good = f
        .app
        .sign("kid-billing", claims(json!(5), NOW - 5, NOW + 60));
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();

    // Payload swapped for another account: the signature no longer matches.
    parts[1] = enc.encode(claims(json!(6), NOW - 5, NOW + 60).to_string());
    let tampered = parts.join(".");
    // alg none, no signature.
    let none = format!(
        "{}.{}.",
        enc.encode(r#"{"alg":"none","typ":"JWT","kid":"kid-billing"}"#),
        enc.encode(claims(json!(5), NOW, NOW + 60).to_string())
    );
    // HS256 with the public key's PEM bytes as the HMAC secret (the algorithm-confusion attack).
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("kid-billing".to_owned());
    let confused = jsonwebtoken::encode(
        &hs,
        &claims(json!(5), NOW, NOW + 60),
        &EncodingKey::from_secret(f.app.spki_pem.as_bytes()),
    )
    .unwrap();
    vec![
        ("bad_signature", tampered),
        ("bad_jwt", none),
        ("bad_jwt", confused),
    ]
}

#[test]
fn every_bad_app_jwt_is_refused_with_its_reason() {
    let f = fixture();
    let mut cases: Vec<(&str, String)> = vec![
        (
            "unknown_key",
            f.app.sign("kid-nobody", claims(json!(5), NOW, NOW + 60)),
        ),
        (
            "bad_signature",
            f.other.sign("kid-billing", claims(json!(5), NOW, NOW + 60)),
        ),
        (
            "expired",
            f.app
                .sign("kid-billing", claims(json!(5), NOW - 100, NOW - 1)),
        ),
        (
            "expired",
            f.app.sign("kid-billing", claims(json!(5), NOW - 100, NOW)),
        ),
        (
            "lifetime_too_long",
            f.app.sign("kid-billing", claims(json!(5), NOW, NOW + 3601)),
        ),
        (
            "iat_in_future",
            f.app
                .sign("kid-billing", claims(json!(5), NOW + 120, NOW + 600)),
        ),
        (
            "iat_in_future",
            f.app
                .sign("kid-billing", claims(json!(5), NOW + 61, NOW + 600)),
        ),
        (
            "bad_jwt",
            f.app
                .sign("kid-billing", json!({"iss": 5, "exp": NOW + 60})),
        ),
        (
            "bad_iss",
            f.app
                .sign("kid-billing", claims(json!("12x"), NOW, NOW + 60)),
        ),
        (
            "bad_iss",
            f.app.sign("kid-billing", claims(json!(0), NOW, NOW + 60)),
        ),
        // An iat of -1e300 is i64::MIN seconds: the lifetime must not wrap to a short one.
        (
            "lifetime_too_long",
            f.app.sign(
                "kid-billing",
                json!({"iss": 5, "iat": -1e300, "exp": NOW + 60}),
            ),
        ),
        ("bad_jwt", "not-a-jwt".to_owned()),
        ("bad_jwt", "a.b.c".to_owned()),
    ];
    cases.extend(forged_app_jwts(&f));
    for (want, jwt) in cases {
        let got = reason(run(&f, &headers(&[("authorization", &bearer_of(&jwt))])));
        assert_eq!(got, want, "{jwt}");
    }
    assert_eq!(
        reason(run(
            &f,
            &headers(&[("authorization", "Basic dXNlcjpwYXNz")])
        )),
        "bad_jwt"
    );
    // At the edge: iat exactly 60 s ahead passes, as does a lifetime of exactly 3600 s.
    let edge = f
        .app
        .sign("kid-billing", claims(json!(5), NOW + 60, NOW + 3660));
    assert!(run(&f, &headers(&[("authorization", &bearer_of(&edge))])).is_ok());
    assert_eq!(f.set.jwt_cache.len(), 1, "only verified tokens are cached");
}

#[test]
fn a_cached_jwt_still_expires() {
    let f = fixture();
    let jwt = f
        .app
        .sign("kid-billing", claims(json!(6), NOW - 5, NOW + 30));
    let h = headers(&[("authorization", &bearer_of(&jwt))]);
    assert_eq!(run(&f, &h).unwrap().jwt, JwtIss::Verified(Some(acct(6))));
    assert_eq!(f.set.jwt_cache.len(), 1);
    let hit = authenticate_at(&f.set, &h, None, NOW + 29).unwrap();
    assert_eq!(
        (&*hit.client.name, hit.jwt),
        ("billing", JwtIss::Verified(Some(acct(6))))
    );
    assert_eq!(
        reason(authenticate_at(&f.set, &h, None, NOW + 30)),
        "expired"
    );
    assert_eq!(f.set.jwt_cache.len(), 0);
}

#[test]
fn jwt_cache_is_bounded() {
    let f = fixture();
    let client = f.set.clients[0].clone();
    for i in 0..(CACHE_CAP + 10) {
        let key = f.set.jwt_cache.fingerprint(&i.to_string());
        f.set
            .jwt_cache
            .put(key, client.clone(), None, NOW + 60, NOW);
    }
    assert!(f.set.jwt_cache.len() <= CACHE_CAP);
}

#[test]
fn static_key_as_bearer_or_basic_password() {
    let f = fixture();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    for value in [
        format!("Bearer {STATIC_KEY}"),
        format!("bearer  {STATIC_KEY} "),
        format!("Basic {}", b64(&format!("crm:{STATIC_KEY}"))),
        // The user name is not checked; a key holding `:` is not possible, but the password
        // is everything after the first colon.
        format!("Basic {}", b64(&format!("anything:{STATIC_KEY}"))),
        format!("Basic {}", b64(&format!(":{STATIC_KEY}"))),
    ] {
        let id = run(&f, &headers(&[("proxy-authorization", &value)])).unwrap();
        assert_eq!(&*id.client.name, "crm", "{value}");
        assert_eq!(id.jwt, JwtIss::Ignored);
    }
    for (value, want) in [
        ("Bearer vxp_wrong".to_owned(), "bad_static_key"),
        (format!("Basic {}", b64("crm:vxp_wrong")), "bad_static_key"),
        (format!("Basic {}", b64("crm:")), "bad_static_key"),
        (
            format!("Basic {}", b64(STATIC_KEY)),
            "bad_proxy_authorization",
        ),
        ("Basic !!!".to_owned(), "bad_proxy_authorization"),
        (format!("Digest {STATIC_KEY}"), "bad_proxy_authorization"),
        (STATIC_KEY.to_owned(), "bad_proxy_authorization"),
    ] {
        assert_eq!(
            reason(run(&f, &headers(&[("proxy-authorization", &value)]))),
            want,
            "{value}"
        );
    }
}

#[test]
fn the_static_key_decides_over_an_app_jwt() {
    let f = fixture();
    // A valid JWT of another client: the static key still decides who this is...
    let jwt = f.app.sign("kid-billing", claims(json!(6), NOW, NOW + 60));
    let id = run(
        &f,
        &headers(&[
            ("proxy-authorization", &format!("Bearer {STATIC_KEY}")),
            ("authorization", &bearer_of(&jwt)),
        ]),
    )
    .unwrap();
    assert_eq!(&*id.client.name, "crm");
    // ...and the JWT is ignored entirely, its iss included (the contract).
    assert_eq!(id.jwt, JwtIss::Ignored);
    // A wrong static key is not rescued by a valid JWT.
    assert_eq!(
        reason(run(
            &f,
            &headers(&[
                ("proxy-authorization", "Bearer vxp_wrong"),
                ("authorization", &bearer_of(&jwt)),
            ])
        )),
        "bad_static_key"
    );
    // A throwaway JWT (unknown kid, any key) beside the static key is fine.
    let junk = f.other.sign("whatever", claims(json!("7"), NOW, NOW + 60));
    let id = run(
        &f,
        &headers(&[
            ("proxy-authorization", &format!("Bearer {STATIC_KEY}")),
            ("authorization", &bearer_of(&junk)),
        ]),
    )
    .unwrap();
    assert_eq!((&*id.client.name, id.jwt), ("crm", JwtIss::Ignored));
}

fn client_cert(name: &str) -> CertificateDer<'static> {
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let key = rcgen::KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().der().clone()
}

#[test]
fn tls_client_certificate_by_dns_name() {
    let f = fixture();
    let ops = client_cert("ops.apps.internal");
    let id = authenticate_at(&f.set, &HeaderMap::new(), Some(&ops), NOW).unwrap();
    assert_eq!(&*id.client.name, "ops");
    let upper = client_cert("OPS.Apps.Internal");
    assert!(authenticate_at(&f.set, &HeaderMap::new(), Some(&upper), NOW).is_ok());
    let stranger = client_cert("stranger.apps.internal");
    assert_eq!(
        reason(authenticate_at(
            &f.set,
            &HeaderMap::new(),
            Some(&stranger),
            NOW
        )),
        "unknown_tls_name"
    );
    // A certificate with an unknown name does not stop an app JWT on the same connection.
    let jwt = f.app.sign("kid-billing", claims(json!(5), NOW, NOW + 60));
    let id = authenticate_at(
        &f.set,
        &headers(&[("authorization", &bearer_of(&jwt))]),
        Some(&stranger),
        NOW,
    )
    .unwrap();
    assert_eq!(&*id.client.name, "billing");
    // A known certificate decides; the JWT beside it only names the account, read unverified by
    // the account rule.
    let junk = f.other.sign("whatever", claims(json!(9), NOW, NOW + 60));
    let id = authenticate_at(
        &f.set,
        &headers(&[("authorization", &bearer_of(&junk))]),
        Some(&ops),
        NOW,
    )
    .unwrap();
    assert_eq!((&*id.client.name, id.jwt), ("ops", JwtIss::Unverified));
}

#[test]
fn nothing_at_all_is_missing_and_counted() {
    let f = fixture();
    assert_eq!(reason(run(&f, &HeaderMap::new())), "missing");
    let metrics = Metrics::new(false);
    let err = authenticate(&f.set, &HeaderMap::new(), None, &metrics).unwrap_err();
    assert_eq!(err.kind, ErrorKind::ClientUnauthenticated);
    let _ = authenticate(
        &f.set,
        &headers(&[("proxy-authorization", "Bearer nope")]),
        None,
        &metrics,
    );
    let text = metrics.encode();
    assert!(
        text.contains("voxproxy_client_auth_failures_total{reason=\"missing\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("voxproxy_client_auth_failures_total{reason=\"bad_static_key\"} 1"),
        "{text}"
    );
}

#[test]
fn secrets_never_reach_messages() {
    let f = fixture();
    let wrong = "vxp_this-is-a-wrong-key-that-must-not-be-echoed";
    let err = authenticate(
        &f.set,
        &headers(&[("proxy-authorization", &format!("Bearer {wrong}"))]),
        None,
        &Metrics::new(false),
    )
    .unwrap_err();
    assert!(!err.msg.contains(wrong));
    let jwt = f.other.sign("kid-billing", claims(json!(5), NOW, NOW + 60));
    let err = authenticate(
        &f.set,
        &headers(&[("authorization", &bearer_of(&jwt))]),
        None,
        &Metrics::new(false),
    )
    .unwrap_err();
    assert!(!err.msg.contains(&jwt[..20]));
}

/// The cost of authenticating one request, by way. Run with
/// `cargo test --release --lib gateway::auth::tests::bench -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark: run by hand with --release"]
fn bench_authentication_per_request() {
    let f = fixture();
    let now = super::now();
    let n = 20_000;
    let mut report = Vec::new();
    let mut time = |label: &str, h: &HeaderMap, fresh_cache: bool| {
        // Warm up.
        for _ in 0..100 {
            if fresh_cache {
                f.set.jwt_cache.clear();
            }
            authenticate_at(&f.set, h, None, now).ok().unwrap();
        }
        let start = Instant::now();
        for _ in 0..n {
            if fresh_cache {
                f.set.jwt_cache.clear();
            }
            std::hint::black_box(authenticate_at(&f.set, h, None, now).ok().unwrap());
        }
        let per = start.elapsed() / n;
        report.push(format!(
            "{label:<40} {:>8.2} µs",
            per.as_nanos() as f64 / 1000.0
        ));
    };
    let jwt = f
        .app
        .sign("kid-billing", claims(json!(5), now - 5, now + 3595));
    let jwt_headers = headers(&[("authorization", &bearer_of(&jwt))]);
    time("app JWT, RS256 verify (cache cleared)", &jwt_headers, true);
    time("app JWT, cached", &jwt_headers, false);
    time(
        "static key, Proxy-Authorization Bearer",
        &headers(&[("proxy-authorization", &format!("Bearer {STATIC_KEY}"))]),
        false,
    );
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("crm:{STATIC_KEY}"));
    time(
        "static key, Proxy-Authorization Basic",
        &headers(&[("proxy-authorization", &format!("Basic {basic}"))]),
        false,
    );
    // Where the RS256 time goes: the signature check itself, with the key parsed per call (what
    // jsonwebtoken does) and parsed once.
    let (message, sig) = jwt.rsplit_once('.').unwrap();
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sig)
        .unwrap();
    let spki = rustls_pki_types::SubjectPublicKeyInfoDer::from_pem_slice(f.app.spki_pem.as_bytes())
        .unwrap();
    let pkcs1 = aws_lc_rs::rsa::PublicKey::from_der(spki.as_ref()).unwrap();
    let alg = &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256;
    let start = Instant::now();
    for _ in 0..n {
        aws_lc_rs::signature::UnparsedPublicKey::new(alg, pkcs1.as_ref())
            .verify(message.as_bytes(), &sig)
            .unwrap();
    }
    report.push(format!(
        "{:<40} {:>8.2} µs",
        "  raw RSA verify, key parsed per call",
        (start.elapsed() / n).as_nanos() as f64 / 1000.0
    ));
    let parsed = aws_lc_rs::signature::ParsedPublicKey::new(alg, pkcs1.as_ref()).unwrap();
    let start = Instant::now();
    for _ in 0..n {
        parsed.verify_sig(message.as_bytes(), &sig).unwrap();
    }
    report.push(format!(
        "{:<40} {:>8.2} µs",
        "  raw RSA verify, key parsed once",
        (start.elapsed() / n).as_nanos() as f64 / 1000.0
    ));
    for line in report {
        println!("{line}");
    }
}
