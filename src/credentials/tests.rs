//! Credentials files (every way one can be wrong, and that no key material ever prints) and the
//! RS256 tokens minted from them, verified with jsonwebtoken and the public key.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use aws_lc_rs::encoding::{AsDer as _, Pkcs8V1Der};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rustls_pki_types::pem::PemObject as _;

use super::*;

fn acct(n: u64) -> AccountId {
    AccountId::new(n).unwrap()
}
use crate::token::{Claims, Clock as _, Signer, SystemClock, mint};

/// A throwaway 1024-bit RSA key, generated once with `openssl genpkey -algorithm RSA -pkeyopt
/// rsa_keygen_bits:1024` for these tests only (aws-lc-rs cannot generate keys under 2048 bits).
/// It signs nothing anywhere.
const THROWAWAY_RSA_1024_PKCS8_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIICdwIBADANBgkqhkiG9w0BAQEFAASCAmEwggJdAgEAAoGBAKDzQZ9WGh95/41c
b3RCmY4uzDud3e9E74HX6ZmBe9djZzez06pcwiGC4IZOEbHDLR0+PjQMhv4X8nsF
oSAOPajQ3QgSfqD9Dm7m1AD4WpMER0LSuy57xmn6MA0dfpU6tKX0t/ysYbDDhB0Y
iGtmyTT4H8DNlGGQzihOkUDI7Z/zAgMBAAECgYB/wvmJePi9mcNBPGoAuMlZ804N
2PAOegNBZ9o4D2/19yM9NVNFPeKgZVrDYf9rw4nxV7Ja8MLLusix3TMc1hEcyTXP
fPoPmBQEbbFovWbsp46ZWpMQqWZCYaHSGUAIMboWGMs4e6WaO3wsN5SpJp+IVmje
HLo31BTm3Hwji/bNaQJBANQCxdDUAXdlr0bFHq693GATVEZ/AwQL4yjv3QCIPu4q
p8KVN0YAqDGDbvOdSfnHn+e+9v1XRV6bEJHjZe/DxsUCQQDCWFVxs52geuDaQihX
qHbatd5fN3HPRtjg/J2O+9nrY6UuqPy+9bHI7sPEkqEmu3v3uS4N3c8q8o9w4er3
+fdXAkEAiJ3MyNeEpmKxAsKNFf8kXgi2msLHt7jNRZjjaa9iFekIt3ud5Y8Q0u8l
9PfbLoizgwtsby3odqEnmUrWah1XHQJASwf7hPhJhOmr4dfk52Lc8DeC8NPhFptN
pB8jXU6SpbRE06zeV4NX7jFwV3YczW1YwR03UJcwIm6fPn+aTb6t5QJBAI7cmMGO
lCCQkPzOO7Co8Cveo+1BveRrJwAX66GJK2luixzOQ9DXbWw/1fWukr8+v8OkY37z
62ZxeiORBMzYbJE=
-----END PRIVATE KEY-----
";

const KEY_ID: &str = "0b6c3f0e-5c2c-4d1e-9a4b-7f0e2d8c1a11";

/// A fresh 2048-bit RSA key as PKCS#8 DER.
fn generate_rsa_pkcs8() -> Vec<u8> {
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
        .expect("generate an RSA key");
    let der: Pkcs8V1Der<'static> = pair.as_der().expect("PKCS#8 DER");
    der.as_ref().to_vec()
}

/// One generated key shared by the tests (generation is the slow part), and a second one.
fn rsa_pkcs8() -> &'static [u8] {
    static KEY: OnceLock<Vec<u8>> = OnceLock::new();
    KEY.get_or_init(generate_rsa_pkcs8)
}

fn other_rsa_pkcs8() -> &'static [u8] {
    static KEY: OnceLock<Vec<u8>> = OnceLock::new();
    KEY.get_or_init(generate_rsa_pkcs8)
}

fn pem(label: &str, der: &[u8]) -> String {
    pem_encode(label, der)
}

/// One DER element: `(tag, contents, rest)`, for the short and long length forms.
fn der(input: &[u8]) -> (u8, &[u8], &[u8]) {
    let tag = input[0];
    let (len, start) = match input[1] {
        n if n < 0x80 => (usize::from(n), 2),
        n => {
            let count = usize::from(n & 0x7f);
            let len = input[2..2 + count]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (len, 2 + count)
        }
    };
    (tag, &input[start..start + len], &input[start + len..])
}

/// PKCS#8 `PrivateKeyInfo` → the PKCS#1 `RSAPrivateKey` it wraps.
fn pkcs8_to_pkcs1(pkcs8: &[u8]) -> Vec<u8> {
    let (tag, info, _) = der(pkcs8);
    assert_eq!(tag, 0x30, "PrivateKeyInfo is a SEQUENCE");
    let (tag, _version, rest) = der(info);
    assert_eq!(tag, 0x02, "version INTEGER");
    let (tag, _algorithm, rest) = der(rest);
    assert_eq!(tag, 0x30, "AlgorithmIdentifier SEQUENCE");
    let (tag, key, _) = der(rest);
    assert_eq!(tag, 0x04, "privateKey OCTET STRING");
    assert_eq!(key[0], 0x30, "RSAPrivateKey is a SEQUENCE");
    key.to_vec()
}

fn pkcs8_pem() -> String {
    pem("PRIVATE KEY", rsa_pkcs8())
}

fn pkcs1_pem() -> String {
    pem("RSA PRIVATE KEY", &pkcs8_to_pkcs1(rsa_pkcs8()))
}

fn json_with_key(account_id: serde_json::Value, key_id: &str, private_key: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "account_id": account_id,
        "key_id": key_id,
        "private_key": private_key,
        // Voximplant's file carries more; voxproxy ignores it.
        "account_email": "ops@example.test",
        "account_name": "example",
    }))
    .expect("serialise test JSON")
}

fn parse(bytes: &[u8]) -> Result<Credentials, CredentialsError> {
    Credentials::parse(Path::new("/test/credentials.json"), bytes)
}

fn parse_err(bytes: &[u8]) -> String {
    match parse(bytes) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

fn good_creds() -> Credentials {
    parse(&json_with_key(
        serde_json::json!(4242),
        KEY_ID,
        &pkcs8_pem(),
    ))
    .expect("valid credentials")
}

/// The base64 body lines of a PEM: none of them may ever show up in output.
fn pem_body_lines(pem: &str) -> Vec<String> {
    pem.lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        .map(str::to_owned)
        .collect()
}

fn assert_no_key_material(text: &str, pem: &str) {
    assert!(!text.contains("BEGIN"), "PEM armour leaked: {text}");
    for line in pem_body_lines(pem) {
        assert!(!text.contains(&line[..16]), "key material leaked: {text}");
    }
}

// ---------------------------------------------------------------------------------------------
// Loading

#[test]
fn loads_pkcs8_pem_with_numeric_account_id() {
    let creds = good_creds();
    assert_eq!(creds.account_id, 4242);
    assert_eq!(&*creds.key_id, KEY_ID);
    assert_eq!(creds.path, PathBuf::from("/test/credentials.json"));
    assert_eq!(creds.key.bits(), 2048);
    // PKCS#1 RSAPublicKey DER: a SEQUENCE.
    assert_eq!(creds.key.public_der()[0], 0x30);
}

#[test]
fn loads_pkcs1_pem_as_the_same_key() {
    let pkcs1 = parse(&json_with_key(
        serde_json::json!(4242),
        KEY_ID,
        &pkcs1_pem(),
    ))
    .expect("PKCS#1 credentials");
    let pkcs8 = good_creds();
    assert_eq!(pkcs1.key.bits(), 2048);
    assert_eq!(pkcs1.key.public_der(), pkcs8.key.public_der());
    assert_eq!(pkcs1.key.fingerprint(), pkcs8.key.fingerprint());
}

#[test]
fn account_id_may_be_a_string_of_digits() {
    let creds = parse(&json_with_key(
        serde_json::json!("4242"),
        KEY_ID,
        &pkcs8_pem(),
    ))
    .expect("string account id");
    assert_eq!(creds.account_id, 4242);
}

#[test]
fn bad_account_ids_are_refused() {
    let positive =
        "credentials file /test/credentials.json: field `account_id` must be a positive integer";
    let kind = "credentials file /test/credentials.json: field `account_id` must be a number or a string of digits";
    for (value, want) in [
        (serde_json::json!(0), positive),
        (serde_json::json!(-5), positive),
        (serde_json::json!(1.5), positive),
        (serde_json::json!("0"), positive),
        (serde_json::json!(""), positive),
        (serde_json::json!("12a"), positive),
        (serde_json::json!(" 12"), positive),
        (serde_json::json!("-12"), positive),
        (serde_json::json!(true), kind),
        (serde_json::json!(null), kind),
        (serde_json::json!([1]), kind),
    ] {
        assert_eq!(
            parse_err(&json_with_key(value.clone(), KEY_ID, &pkcs8_pem())),
            want,
            "{value}"
        );
    }
}

#[test]
fn missing_file_is_not_found_and_says_where_it_looked_and_where_files_come_from() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("credentials.json");
    let err = Credentials::load(&path).expect_err("no such file");
    assert!(matches!(err, CredentialsError::NotFound { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("credentials file {}: not found", path.display())),
        "{text}"
    );
    for hint in [
        "--credentials",
        "VOXIMPLANT_CREDENTIALS",
        "Service accounts",
    ] {
        assert!(text.contains(hint), "{hint}: {text}");
    }
    // A relative path is shown joined to the working directory voxproxy looked in.
    let err = Credentials::load(Path::new("no-such-credentials.json")).expect_err("missing");
    let cwd = std::env::current_dir().unwrap();
    assert!(
        err.to_string()
            .contains(&cwd.join("no-such-credentials.json").display().to_string()),
        "{err}"
    );
}

#[test]
fn what_is_not_a_small_regular_file_is_refused_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let err = Credentials::load(dir.path()).expect_err("a directory");
    assert!(matches!(err, CredentialsError::NotAFile { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "credentials file {}: is a directory, not a regular file",
            dir.path().display()
        )
    );
    // `/dev/zero` would never end: refused before a byte is read.
    let err = Credentials::load(Path::new("/dev/zero")).expect_err("a device");
    assert_eq!(
        err.to_string(),
        "credentials file /dev/zero: is a device, not a regular file"
    );
    let big = dir.path().join("big.json");
    std::fs::write(&big, vec![b' '; (1 << 20) + 1]).unwrap();
    let err = Credentials::load(&big).expect_err("over 1 MiB");
    assert!(
        err.to_string().ends_with("is larger than 1024 KiB"),
        "{err}"
    );
}

#[test]
fn a_whole_create_key_answer_is_read_as_its_result() {
    let dir = tempfile::tempdir().expect("temp dir");
    let inner = serde_json::json!({
        "account_id": 4242,
        "key_id": "kid-1",
        "private_key": pkcs8_pem(),
        "account_email": "a@example.com",
    });
    for (name, doc) in [
        ("object.json", serde_json::json!({ "result": inner })),
        ("list.json", serde_json::json!({ "result": [inner] })),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, doc.to_string()).unwrap();
        let (creds, _) = Credentials::load(&path).expect(name);
        assert_eq!(creds.account_id, 4242, "{name}");
        assert_eq!(&*creds.key_id, "kid-1", "{name}");
    }
    // Two keys in one answer: which one is meant is not ours to guess.
    let path = dir.path().join("two.json");
    let two = serde_json::json!({ "result": [inner, inner] });
    std::fs::write(&path, two.to_string()).unwrap();
    assert!(Credentials::load(&path).is_err());
}

#[test]
fn not_json_is_reported_without_the_content() {
    let secret_looking = b"private_key: MIIEvQIBADANBgkqhkiG9w0BAQEFAASC";
    let err = parse(secret_looking).expect_err("not JSON");
    assert!(matches!(err, CredentialsError::NotJson { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("credentials file /test/credentials.json: not a JSON object ("),
        "{msg}"
    );
    assert!(!msg.contains("MIIE"), "{msg}");

    let err = parse(b"").expect_err("empty file");
    assert!(matches!(err, CredentialsError::NotJson { .. }), "{err:?}");
}

#[test]
fn top_level_must_be_an_object() {
    for body in [&b"[1,2]"[..], b"\"text\"", b"42", b"null"] {
        assert_eq!(
            parse_err(body),
            "credentials file /test/credentials.json: not a JSON object (the top level is not an object)"
        );
    }
}

#[test]
fn each_missing_field_is_named() {
    let full = serde_json::json!({
        "account_id": 1,
        "key_id": KEY_ID,
        "private_key": pkcs8_pem(),
    });
    for field in ["account_id", "key_id", "private_key"] {
        let mut obj = full.clone();
        obj.as_object_mut().expect("object").remove(field);
        let err = parse(&serde_json::to_vec(&obj).expect("json")).expect_err("missing field");
        assert!(
            matches!(err, CredentialsError::MissingField { field: f, .. } if f == field),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!("credentials file /test/credentials.json: missing field `{field}`")
        );
    }
    assert_eq!(
        parse_err(b"{}"),
        "credentials file /test/credentials.json: missing field `account_id`"
    );
}

#[test]
fn wrong_field_types_are_named() {
    let key = pkcs8_pem();
    let cases = [
        (
            serde_json::json!({"account_id": 1, "key_id": 5, "private_key": key}),
            "field `key_id` must be a string",
        ),
        (
            serde_json::json!({"account_id": 1, "key_id": "", "private_key": key}),
            "field `key_id` must not be empty",
        ),
        (
            serde_json::json!({"account_id": 1, "key_id": "a\nb", "private_key": key}),
            "field `key_id` must not contain control characters",
        ),
        (
            serde_json::json!({"account_id": 1, "key_id": KEY_ID, "private_key": 7}),
            "field `private_key` must be a string holding a PEM key",
        ),
        (
            serde_json::json!({"account_id": 1, "key_id": KEY_ID, "private_key": {"pem": key}}),
            "field `private_key` must be a string holding a PEM key",
        ),
    ];
    for (obj, reason) in cases {
        let err = parse(&serde_json::to_vec(&obj).expect("json")).expect_err("bad field");
        assert!(matches!(err, CredentialsError::BadField { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("credentials file /test/credentials.json: {reason}")
        );
        assert_no_key_material(&err.to_string(), &key);
    }
}

#[test]
fn private_key_that_is_not_pem_is_refused() {
    let not_pem = "credentials file /test/credentials.json: field `private_key` is not a PEM private \
                   key (expected -----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----)";
    let bare_base64 = STANDARD.encode(rsa_pkcs8());
    let certificate = pem("CERTIFICATE", b"\x30\x03\x02\x01\x01");
    for key in ["", "hello", bare_base64.as_str(), certificate.as_str()] {
        let err = parse(&json_with_key(serde_json::json!(1), KEY_ID, key)).expect_err("not PEM");
        assert!(matches!(err, CredentialsError::NotPem { .. }), "{err:?}");
        assert_eq!(err.to_string(), not_pem);
    }
}

#[test]
fn garbage_inside_pem_armour_is_not_rsa() {
    let garbage = pem(
        "PRIVATE KEY",
        b"\x30\x05\x02\x01\x00\x05\x00 not a key at all",
    );
    let err = parse(&json_with_key(serde_json::json!(1), KEY_ID, &garbage)).expect_err("garbage");
    assert!(matches!(err, CredentialsError::NotRsa { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with(
            "credentials file /test/credentials.json: field `private_key` is not an RSA private key ("
        ),
        "{err}"
    );
}

#[test]
fn ec_keys_are_not_rsa() {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let doc = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &rng,
    )
    .expect("generate an EC key");
    let prefix =
        "credentials file /test/credentials.json: field `private_key` is not an RSA private key (";

    // PKCS#8 ("PRIVATE KEY") wrapping an EC key.
    let pkcs8 = pem("PRIVATE KEY", doc.as_ref());
    let err = parse(&json_with_key(serde_json::json!(1), KEY_ID, &pkcs8)).expect_err("EC PKCS#8");
    assert!(matches!(err, CredentialsError::NotRsa { .. }), "{err:?}");
    // Words, not a Rust enum name such as `WrongAlgorithm`.
    assert_eq!(
        err.to_string(),
        format!("{prefix}it is another kind of key (Voximplant keys are RSA))")
    );
    assert_no_key_material(&err.to_string(), &pkcs8);
    assert_no_key_material(&format!("{err:?}"), &pkcs8);

    // SEC1 ("EC PRIVATE KEY").
    let pair = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        doc.as_ref(),
    )
    .expect("parse the EC key");
    let sec1 = pair.private_key().as_der().expect("SEC1 DER");
    let sec1 = pem("EC PRIVATE KEY", sec1.as_ref());
    let err = parse(&json_with_key(serde_json::json!(1), KEY_ID, &sec1)).expect_err("EC SEC1");
    assert!(matches!(err, CredentialsError::NotRsa { .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("{prefix}it is an EC key)"));
}

#[test]
fn small_rsa_keys_are_too_small_in_pkcs8_and_pkcs1() {
    let pkcs8_der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(
        THROWAWAY_RSA_1024_PKCS8_PEM.as_bytes(),
    )
    .expect("the throwaway key is PEM");
    let pkcs1 = pem(
        "RSA PRIVATE KEY",
        &pkcs8_to_pkcs1(pkcs8_der.secret_pkcs8_der()),
    );
    let want = "credentials file /test/credentials.json: field `private_key` is a 1024-bit RSA key; \
                at least 2048 bits are required";
    for key in [THROWAWAY_RSA_1024_PKCS8_PEM, pkcs1.as_str()] {
        let err = parse(&json_with_key(serde_json::json!(1), KEY_ID, key)).expect_err("1024 bits");
        assert!(
            matches!(err, CredentialsError::TooSmall { bits: 1024, .. }),
            "{err:?}"
        );
        assert_eq!(err.to_string(), want);
    }
}

#[test]
fn modulus_size_is_read_from_der() {
    let pkcs8 = rsa_pkcs8();
    assert_eq!(super::pkcs8_rsa_modulus_bits(pkcs8), Some(2048));
    assert_eq!(
        super::pkcs1_modulus_bits(&pkcs8_to_pkcs1(pkcs8)),
        Some(2048)
    );
    // Truncated or mislabelled input yields no size instead of a panic.
    for cut in [0, 1, 2, 10, 30, pkcs8.len() / 2] {
        assert_eq!(
            super::pkcs8_rsa_modulus_bits(&pkcs8[..cut]),
            None,
            "cut at {cut}"
        );
    }
    assert_eq!(
        super::pkcs1_modulus_bits(pkcs8),
        None,
        "PKCS#8 is not PKCS#1"
    );
}

#[test]
fn load_reads_the_file_and_flags_loose_permissions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("credentials.json");
    std::fs::write(
        &path,
        json_with_key(serde_json::json!(77), KEY_ID, &pkcs8_pem()),
    )
    .expect("write credentials");
    for (mode, loose) in [
        (0o600, false),
        (0o400, false),
        (0o644, true),
        (0o640, true),
        (0o604, true),
    ] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let (creds, is_loose) = Credentials::load(&path).expect("load");
        assert_eq!(is_loose, loose, "mode {mode:o}");
        assert_eq!(creds.account_id, 77);
        assert_eq!(creds.path, path);
    }
}

#[test]
fn debug_output_holds_no_key_material() {
    let key_pem = pkcs8_pem();
    let creds = good_creds();
    for text in [
        format!("{creds:?}"),
        format!("{creds:#?}"),
        format!("{:?}", creds.key),
    ] {
        assert_no_key_material(&text, &key_pem);
        assert!(text.contains("****"), "{text}");
        // The public key's DER is no secret, but it has no business in logs either.
        let public_b64 = STANDARD.encode(creds.key.public_der());
        assert!(!text.contains(&public_b64[..24]), "{text}");
    }
    let text = format!("{creds:?}");
    assert!(text.contains("4242"), "{text}");
    assert!(text.contains(KEY_ID), "{text}");
    assert_eq!(format!("{:?}", creds.key), "SigningKey(RSA-2048, ****)");

    let pkcs1 = pkcs1_pem();
    let creds = parse(&json_with_key(serde_json::json!(1), KEY_ID, &pkcs1)).expect("PKCS#1");
    assert_no_key_material(&format!("{creds:#?}"), &pkcs1);
}

#[test]
fn fingerprint_tells_keys_and_key_ids_apart() {
    let a = good_creds();
    let same = good_creds();
    let other_id = parse(&json_with_key(
        serde_json::json!(4242),
        "another-key-id",
        &pkcs8_pem(),
    ))
    .expect("valid");
    let other_key = parse(&json_with_key(
        serde_json::json!(4242),
        KEY_ID,
        &pem("PRIVATE KEY", other_rsa_pkcs8()),
    ))
    .expect("valid");
    assert_eq!(a.key.fingerprint(), same.key.fingerprint());
    assert_ne!(a.key.fingerprint(), other_id.key.fingerprint());
    assert_ne!(a.key.fingerprint(), other_key.key.fingerprint());
    assert_ne!(a.key.fingerprint(), [0; 32]);
}

#[test]
fn signatures_verify_with_the_public_key() {
    let creds = good_creds();
    let sig = creds.key.sign_rs256(b"message").expect("sign");
    assert_eq!(sig.len(), 256);
    let public = aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
        creds.key.public_der(),
    );
    public
        .verify(b"message", &sig)
        .expect("the signature verifies");
    assert!(public.verify(b"massage", &sig).is_err());
}

// ---------------------------------------------------------------------------------------------
// Minting

#[test]
fn claims_are_backdated_and_expire_after_the_ttl() {
    let c = Claims::new(acct(4242), 1_700_000_000, 3600);
    assert_eq!(
        c,
        Claims {
            iat: 1_699_999_995,
            iss: acct(4242),
            exp: 1_700_003_595,
        }
    );
    let c = Claims::new(acct(1), 1_700_000_000, 60);
    assert_eq!((c.iat, c.exp), (1_699_999_995, 1_700_000_055));
}

fn split_jwt(jwt: &str) -> (serde_json::Value, String, serde_json::Value, String) {
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWS compact serialisation: {jwt}");
    let header_raw = String::from_utf8(
        URL_SAFE_NO_PAD
            .decode(parts[0])
            .expect("header is base64url"),
    )
    .expect("header is UTF-8");
    let payload_raw = String::from_utf8(
        URL_SAFE_NO_PAD
            .decode(parts[1])
            .expect("payload is base64url"),
    )
    .expect("payload is UTF-8");
    (
        serde_json::from_str(&header_raw).expect("header JSON"),
        header_raw,
        serde_json::from_str(&payload_raw).expect("payload JSON"),
        payload_raw,
    )
}

fn validation(validate_exp: bool) -> Validation {
    let mut v = Validation::new(Algorithm::RS256);
    v.leeway = 0;
    v.set_required_spec_claims(&["exp"]);
    v.validate_exp = validate_exp;
    v
}

#[test]
fn minted_token_verifies_with_the_public_key_and_carries_exact_claims() {
    let creds = good_creds();
    let now = SystemClock.now();
    let claims = Claims::new(creds.account_id, now, 3600);
    let jwt = mint(&creds, &claims).expect("mint");

    let key = DecodingKey::from_rsa_der(creds.key.public_der());
    let data = jsonwebtoken::decode::<serde_json::Value>(&jwt, &key, &validation(true))
        .expect("the token verifies with the public key");
    assert_eq!(data.header.alg, Algorithm::RS256);
    assert_eq!(data.header.typ.as_deref(), Some("JWT"));
    assert_eq!(data.header.kid.as_deref(), Some(KEY_ID));
    assert_eq!(
        data.claims,
        serde_json::json!({"iat": now - 5, "iss": 4242, "exp": now - 5 + 3600})
    );
    // jsonwebtoken accepts `iss` only as a string; the contract wants a JSON number.
    assert!(data.claims["iss"].is_u64(), "{}", data.claims);

    // The header and payload bytes exactly as sent.
    let (header, header_raw, payload, payload_raw) = split_jwt(&jwt);
    assert_eq!(
        header_raw,
        format!(r#"{{"typ":"JWT","alg":"RS256","kid":"{KEY_ID}"}}"#)
    );
    assert_eq!(header.as_object().expect("header object").len(), 3);
    assert_eq!(
        payload_raw,
        format!(
            r#"{{"iat":{},"iss":4242,"exp":{}}}"#,
            now - 5,
            now - 5 + 3600
        )
    );
    assert!(payload["iss"].is_number());
}

#[test]
fn token_minted_with_a_fixed_clock_in_the_past_verifies_without_exp_check() {
    let creds = good_creds();
    let claims = Claims::new(acct(99), 1_600_000_000, 600);
    let jwt = mint(&creds, &claims).expect("mint");
    let key = DecodingKey::from_rsa_der(creds.key.public_der());

    let data = jsonwebtoken::decode::<serde_json::Value>(&jwt, &key, &validation(false))
        .expect("signature verifies");
    assert_eq!(
        data.claims,
        serde_json::json!({"iat": 1_599_999_995, "iss": 99, "exp": 1_600_000_595})
    );
    // With the expiry check on, an old token is refused: leeway 0 really is in force.
    let err = jsonwebtoken::decode::<serde_json::Value>(&jwt, &key, &validation(true))
        .expect_err("expired");
    assert_eq!(
        *err.kind(),
        jsonwebtoken::errors::ErrorKind::ExpiredSignature
    );
}

#[test]
fn token_does_not_verify_with_another_key_or_when_tampered() {
    let creds = good_creds();
    let other = parse(&json_with_key(
        serde_json::json!(4242),
        KEY_ID,
        &pem("PRIVATE KEY", other_rsa_pkcs8()),
    ))
    .expect("valid");
    let jwt = mint(&creds, &Claims::new(acct(4242), SystemClock.now(), 600)).expect("mint");

    let wrong = DecodingKey::from_rsa_der(other.key.public_der());
    assert!(jsonwebtoken::decode::<serde_json::Value>(&jwt, &wrong, &validation(true)).is_err());

    let right = DecodingKey::from_rsa_der(creds.key.public_der());
    let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
    let forged = serde_json::json!({"iat": 1, "iss": 1, "exp": 9_999_999_999_i64});
    parts[1] = URL_SAFE_NO_PAD.encode(forged.to_string());
    let tampered = parts.join(".");
    assert!(
        jsonwebtoken::decode::<serde_json::Value>(&tampered, &right, &validation(true)).is_err()
    );
}

#[test]
fn key_id_is_json_escaped_in_the_header() {
    let odd_kid = r#"kid "with" quotes \ and / slash"#;
    let creds = parse(&json_with_key(serde_json::json!(5), odd_kid, &pkcs8_pem())).expect("valid");
    let jwt = mint(&creds, &Claims::new(acct(5), SystemClock.now(), 120)).expect("mint");
    let header = jsonwebtoken::decode_header(&jwt).expect("header parses");
    assert_eq!(header.kid.as_deref(), Some(odd_kid));
    let (header, _, _, _) = split_jwt(&jwt);
    assert_eq!(header["kid"], odd_kid);
}

#[test]
fn credentials_are_a_signer() {
    let creds = good_creds();
    assert_eq!(Signer::key_id(&creds), KEY_ID);
    assert_eq!(Signer::fingerprint(&creds), creds.key.fingerprint());
    let claims = Claims::new(acct(4242), SystemClock.now(), 300);
    let via_trait = Signer::mint(&creds, &claims).expect("mint via the trait");
    // RSASSA-PKCS1-v1_5 is deterministic: the trait mints exactly what `mint` does.
    assert_eq!(via_trait, mint(&creds, &claims).expect("mint"));
}
