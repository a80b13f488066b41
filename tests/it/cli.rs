//! `voxproxy token` and `voxproxy check` through the real binary.

use crate::support::certs::Creds;
use crate::support::process::run;
use crate::support::upstream::verify;

fn decode(jwt: &str, creds: &Creds) -> crate::support::upstream::Jwt {
    let mut h = http::HeaderMap::new();
    h.insert("authorization", format!("Bearer {jwt}").parse().unwrap());
    let keys = [(creds.key_id.clone(), creds.key.decoding_key())]
        .into_iter()
        .collect();
    verify(&h, &keys).unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn token_prints_the_authorization_line_token_sh_prints() {
    let dir = tempfile::tempdir().unwrap();
    let creds = Creds::write(dir.path(), "credentials.json", 4242);
    let path = creds.path.to_str().unwrap();
    let (code, out, _) = run(&["token", "--credentials", path], &[]);
    assert_eq!(code, 0);
    let jwt = out
        .strip_prefix("Authorization: Bearer ")
        .and_then(|s| s.strip_suffix('\n'))
        .expect("exactly `Authorization: Bearer <jwt>\\n`");
    assert!(!jwt.contains('\n'));
    let t = decode(jwt, &creds);
    assert_eq!(t.iss, 4242);
    assert_eq!(t.kid, creds.key_id);
    assert_eq!(t.exp - t.iat, 3600);
    assert!((now() - 5 - t.iat).abs() <= 2, "iat is back-dated by 5 s");
    assert_eq!(
        t.header,
        serde_json::json!({"typ": "JWT", "alg": "RS256", "kid": creds.key_id})
    );
}

#[test]
fn token_raw_account_ttl_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let creds = Creds::write(dir.path(), "credentials.json", 4242);
    let path = creds.path.to_str().unwrap();
    let (code, out, _) = run(
        &["token", "--raw", "--account", "777", "--ttl", "60"],
        &[("VOXIMPLANT_CREDENTIALS", path)],
    );
    assert_eq!(code, 0);
    let t = decode(out.trim_end(), &creds);
    assert_eq!(
        t.iss, 777,
        "a child account is signed by the first file's key"
    );
    assert_eq!(t.exp - t.iat, 60);

    for bad in [
        ["--ttl", "59"],
        ["--ttl", "3601"],
        ["--account", "0"],
        ["--account", "12a"],
    ] {
        let (code, out, err) = run(&["token", "--credentials", path, bad[0], bad[1]], &[]);
        assert_eq!(code, 2, "{bad:?}: {err}");
        assert!(out.is_empty());
        assert!(err.contains(bad[0]), "error names the flag: {err}");
    }
}

#[test]
fn token_with_missing_credentials_exits_2_naming_the_file() {
    let (code, out, err) = run(&["token", "--credentials", "/nonexistent/creds.json"], &[]);
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert!(
        err.contains("/nonexistent/creds.json") && err.contains("not found"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
}

#[test]
fn check_summarises_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let a = Creds::write(dir.path(), "a.json", 11);
    let b = Creds::write(dir.path(), "b.json", 22);
    let (code, out, err) = run(
        &[
            "check",
            "--credentials",
            a.path.to_str().unwrap(),
            "--credentials",
            b.path.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    for needle in [
        "account 11",
        "account 22",
        &a.key_id,
        &b.key_id,
        "RSA-2048",
        "127.0.0.1:8080",
        "https://api.voximplant.com",
    ] {
        assert!(out.contains(needle), "summary lacks {needle}: {out}");
    }
    let all = format!("{out}{err}");
    assert!(
        !all.contains("PRIVATE KEY") && !all.contains("eyJ"),
        "check printed a secret: {all}"
    );
    let key_b64 = a.key.pkcs8_pem();
    for line in key_b64.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!all.contains(line), "a private-key line was printed");
    }
}

#[test]
fn check_reports_every_problem_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let good = Creds::write(dir.path(), "good.json", 11);
    let not_json = dir.path().join("notjson.json");
    std::fs::write(&not_json, "{ not json").unwrap();
    let no_key = dir.path().join("nokey.json");
    std::fs::write(&no_key, r#"{"account_id": 5, "key_id": "k"}"#).unwrap();
    let (code, out, err) = run(
        &[
            "check",
            "--credentials",
            good.path.to_str().unwrap(),
            "--credentials",
            not_json.to_str().unwrap(),
            "--credentials",
            no_key.to_str().unwrap(),
            "--listen",
            "0.0.0.0:8080",
        ],
        &[],
    );
    assert_eq!(code, 2);
    assert!(
        out.contains("notjson.json") && out.contains("not a JSON object"),
        "{out}"
    );
    assert!(
        out.contains("nokey.json") && out.contains("missing field `private_key`"),
        "{out}"
    );
    assert!(
        out.contains("listen = 0.0.0.0:8080"),
        "the listen rule is reported: {out}"
    );
    assert!(err.contains("3 problem"), "{err}");

    let (code, out, _) = run(&["check", "--token-ttl", "7200", "--workers", "x"], &[]);
    assert_eq!(code, 2);
    assert!(
        out.contains("token_ttl = 7200 (from flag --token-ttl): must be at most 3600"),
        "{out}"
    );
    assert!(out.contains("workers = x (from flag --workers)"), "{out}");
}

#[test]
fn settings_errors_name_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let creds = Creds::write(dir.path(), "credentials.json", 1);
    let config = dir.path().join("voxproxy.toml");
    std::fs::write(&config, "token_ttl = 7200\nbogus = 1\n").unwrap();
    let (code, _, err) = run(
        &["token", "--credentials", creds.path.to_str().unwrap()],
        &[("VOXPROXY_CONFIG", config.to_str().unwrap())],
    );
    assert_eq!(code, 2);
    assert!(err.contains("unknown setting \"bogus\""), "{err}");
    std::fs::write(&config, "token_ttl = 7200\n").unwrap();
    let (code, _, err) = run(
        &[
            "token",
            "--credentials",
            creds.path.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!(
            "token_ttl = 7200 (from config file {}): must be at most 3600",
            config.display()
        )),
        "{err}"
    );
    let (code, _, err) = run(
        &[
            "token",
            "--credentials",
            creds.path.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
        &[("VOXPROXY_TOKEN_TTL", "120")],
    );
    assert_eq!(code, 0, "environment beats the file: {err}");
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    assert_eq!(run(&["frobnicate"], &[]).0, 2);
    assert_eq!(run(&["serve", "--no-such-flag"], &[]).0, 2);
    let (code, out, _) = run(&["--help"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("serve"));
    let (code, out, _) = run(&["completions", "bash"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("voxproxy"));
}

#[test]
fn serve_refuses_a_non_loopback_listener_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    let creds = Creds::write(dir.path(), "credentials.json", 1);
    let (code, _, err) = run(
        &[
            "serve",
            "--credentials",
            creds.path.to_str().unwrap(),
            "--listen",
            "0.0.0.0:0",
        ],
        &[],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("listen = 0.0.0.0:0 (from flag --listen)"),
        "{err}"
    );
    assert!(
        err.contains("allow_unauthenticated_network") && err.contains("clients"),
        "{err}"
    );
}
