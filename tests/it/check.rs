//! `voxproxy check --online` against the mock upstream (a key that works, a key Voximplant
//! refuses, an unreachable upstream, an untrusted certificate), `check --print-config` (valid
//! TOML that reproduces the settings, every origin named, no secret), and what `check` says of a
//! credentials path that is a directory.

use std::collections::BTreeSet;

use crate::support::certs::Creds;
use crate::support::process::run;
use crate::support::upstream::Upstream;

/// `voxproxy ARGS` off the async runtime, so the mock upstream keeps serving meanwhile.
async fn run_async(args: Vec<String>, env: Vec<(String, String)>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run(&args, &env)
    })
    .await
    .unwrap()
}

/// `check --online` for `creds` against `upstream_url`, trusting `ca` when given.
async fn check_online(
    creds: &[&Creds],
    upstream_url: &str,
    ca: Option<&std::path::Path>,
) -> (i32, String, String) {
    let mut args: Vec<String> = ["check", "--online", "--upstream", upstream_url]
        .map(str::to_owned)
        .to_vec();
    for c in creds {
        args.extend(["--credentials".to_owned(), c.path.display().to_string()]);
    }
    if let Some(ca) = ca {
        args.extend(["--upstream-ca".to_owned(), ca.display().to_string()]);
    }
    args.extend(["--connect-timeout", "2", "--request-timeout", "5"].map(str::to_owned));
    run_async(args, Vec::new()).await
}

#[tokio::test]
async fn check_online_proves_each_key_with_get_account_info() {
    let dir = tempfile::tempdir().unwrap();
    let a = Creds::write(dir.path(), "a.json", 11);
    let b = Creds::write(dir.path(), "b.json", 22);
    let upstream = Upstream::start(
        vec![
            (a.key_id.clone(), a.key.decoding_key()),
            (b.key_id.clone(), b.key.decoding_key()),
        ],
        Default::default(),
    )
    .await;
    let (code, out, err) = check_online(&[&a, &b], &upstream.url, Some(&upstream.ca_path)).await;
    assert_eq!(code, 0, "{out}{err}");
    for c in [&a, &b] {
        let line = format!("account {} (key_id {}): ok", c.account, c.key_id);
        assert!(out.contains(&line), "no `{line}` in\n{out}");
    }
    assert_eq!(out.lines().last(), Some("ok"), "{out}");
    // One GetAccountInfo per file, each signed with that file's key for its own account, sent
    // as the proxy sends it.
    let records = upstream.records();
    assert_eq!(records.len(), 2, "{records:?}");
    let mut seen = BTreeSet::new();
    for r in records {
        assert_eq!(r.target, "/platform_api/GetAccountInfo/");
        let jwt = r.jwt.expect("the upstream verified the token");
        let creds = if jwt.kid == a.key_id { &a } else { &b };
        assert_eq!(jwt.iss, creds.account);
        assert!(
            r.headers["authorization"]
                .to_str()
                .unwrap()
                .starts_with("Bearer ")
        );
        seen.insert(jwt.kid);
    }
    assert_eq!(seen.len(), 2);
    assert!(
        !out.contains("eyJ") && !err.contains("eyJ"),
        "no token printed"
    );
}

#[tokio::test]
async fn check_online_puts_a_voximplant_error_in_words_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let good = Creds::write(dir.path(), "good.json", 11);
    let revoked = Creds::write(dir.path(), "revoked.json", 22);
    let upstream = Upstream::start(
        vec![
            (good.key_id.clone(), good.key.decoding_key()),
            (revoked.key_id.clone(), revoked.key.decoding_key()),
        ],
        Default::default(),
    )
    .await;
    upstream.answer_error(&revoked.key_id, 100, "Authorization failed");
    let (code, out, err) =
        check_online(&[&good, &revoked], &upstream.url, Some(&upstream.ca_path)).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains(&format!("account 11 (key_id {}): ok", good.key_id)),
        "{out}"
    );
    let line = out
        .lines()
        .find(|l| l.contains("account 22 (key_id"))
        .unwrap_or_else(|| panic!("no line for account 22 in\n{out}"));
    assert!(
        line.contains("Voximplant error 100 (\"Authorization failed\")")
            && line.contains("the key was revoked or key_id is wrong"),
        "{line}"
    );
    assert!(
        err.contains("did not answer") && err.contains("Voximplant error 100"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
}

#[tokio::test]
async fn check_online_with_an_unreachable_upstream_says_upstream_connect() {
    let dir = tempfile::tempdir().unwrap();
    let creds = Creds::write(dir.path(), "credentials.json", 11);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (code, out, err) = check_online(&[&creds], &format!("https://{closed}"), None).await;
    assert_eq!(code, 1, "{out}{err}");
    let line = out
        .lines()
        .find(|l| l.contains("account 11 (key_id"))
        .unwrap();
    assert!(
        line.contains("upstream_connect") && line.contains("refused"),
        "{line}"
    );
}

#[tokio::test]
async fn check_online_with_an_untrusted_certificate_says_upstream_tls() {
    let dir = tempfile::tempdir().unwrap();
    let creds = Creds::write(dir.path(), "credentials.json", 11);
    let upstream = Upstream::start(
        vec![(creds.key_id.clone(), creds.key.decoding_key())],
        Default::default(),
    )
    .await;
    // Without --upstream-ca the mock's test CA is not trusted.
    let (code, out, err) = check_online(&[&creds], &upstream.url, None).await;
    assert_eq!(code, 1, "{out}{err}");
    let line = out
        .lines()
        .find(|l| l.contains("account 11 (key_id"))
        .unwrap();
    assert!(
        line.contains("upstream_tls") && line.contains("upstream_ca") && line.contains("Unknown"),
        "{line}"
    );
    assert!(upstream.records().is_empty(), "nothing was sent");
}

/// The TOML table of a `--print-config` output, and its lines.
fn parse_config(text: &str) -> toml::Table {
    text.parse::<toml::Table>()
        .unwrap_or_else(|e| panic!("--print-config is not TOML ({e}):\n{text}"))
}

#[test]
fn print_config_reproduces_the_settings_and_names_every_origin() {
    let dir = tempfile::tempdir().unwrap();
    let creds = Creds::write(dir.path(), "credentials.json", 11);
    let file = dir.path().join("voxproxy.toml");
    std::fs::write(
        &file,
        "request_timeout = \"2m\"\nallowed_accounts = [11, 42]\naccount_rate = \"10/s; burst 20\"\n",
    )
    .unwrap();
    let (file_arg, creds_arg) = (file.to_str().unwrap(), creds.path.to_str().unwrap());
    let (code, printed, err) = run(
        &[
            "check",
            "--print-config",
            "--config",
            file_arg,
            "--credentials",
            creds_arg,
            "--listen",
            "127.0.0.1:9999",
        ],
        &[
            ("VOXPROXY_MAX_BODY_BYTES", "1MiB"),
            (
                "VOXPROXY_LIMITS_REDIS",
                "redis://voxproxy:s3cret-redis-pw@127.0.0.1:6379/2",
            ),
        ],
    );
    assert_eq!(code, 0, "{printed}{err}");
    assert!(!printed.contains("s3cret-redis-pw") && !err.contains("s3cret-redis-pw"));
    let table = parse_config(&printed);
    assert_eq!(
        table["limits_redis"].as_str(),
        Some("redis://voxproxy:***@127.0.0.1:6379/2")
    );
    for (key, origin) in [
        ("listen", "# flag --listen".to_owned()),
        ("max_body_bytes", "# env VOXPROXY_MAX_BODY_BYTES".to_owned()),
        ("request_timeout", format!("# file {}", file.display())),
        ("token_ttl", "# default".to_owned()),
    ] {
        let line = printed
            .lines()
            .find(|l| l.starts_with(&format!("{key} =")))
            .unwrap_or_else(|| panic!("no {key} in\n{printed}"));
        assert!(line.ends_with(&origin), "{line}");
    }
    assert_eq!(table["listen"].as_str(), Some("127.0.0.1:9999"));
    assert_eq!(table["max_body_bytes"].as_str(), Some("1MiB"));
    assert_eq!(table["request_timeout"].as_integer(), Some(120));
    // Every setting is there, as a key or (no value, or not a file key) as a comment.
    let (_, help, _) = run(&["check", "--help"], &[]);
    let flags = help
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("--"))
        .map(|l| l.split(['[', '=', ' ']).next().unwrap());
    for key in flags {
        if ["online", "print-config", "help"].contains(&key) {
            continue;
        }
        let key = key.replace('-', "_");
        assert!(
            printed
                .lines()
                .any(|l| l.starts_with(&format!("{key} = "))
                    || l.starts_with(&format!("# {key} = "))),
            "{key} missing from\n{printed}"
        );
    }

    // Fed back as the only source, it gives the same settings.
    let reprinted_file = dir.path().join("printed.toml");
    std::fs::write(&reprinted_file, &printed).unwrap();
    let (code, again, err) = run(
        &[
            "check",
            "--print-config",
            "--config",
            reprinted_file.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{again}{err}");
    assert_eq!(parse_config(&again), table, "{printed}\n---\n{again}");
    let from_file = format!("# file {}", reprinted_file.display());
    // Every value now comes from that file (but the log format the test harness sets).
    for line in again
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("log_format"))
    {
        assert!(line.ends_with(&from_file), "{line}");
    }
}

#[test]
fn check_names_a_directory_given_as_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(
        &["check", "--credentials", dir.path().to_str().unwrap()],
        &[],
    );
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("is a directory"), "{out}");
    assert!(err.contains("is a directory"), "{err}");
}

#[test]
fn check_summarises_every_setting_with_its_origin_and_no_redis_password() {
    let dir = tempfile::tempdir().unwrap();
    let creds = Creds::write(dir.path(), "credentials.json", 11);
    // A Redis of the test's own, so check's PING answers.
    let redis = crate::support::redis::Redis::start(Some("s3cret-redis-pw"));
    let url = format!("redis://:s3cret-redis-pw@127.0.0.1:{}/2", redis.port);
    let (code, out, err) = run(
        &[
            "check",
            "--credentials",
            creds.path.to_str().unwrap(),
            "--token-ttl",
            "600",
        ],
        &[("VOXPROXY_LIMITS_REDIS", &url)],
    );
    assert_eq!(code, 0, "{out}{err}");
    let summary = format!(
        "  limits_redis: redis://:***@127.0.0.1:{}/2 (from environment VOXPROXY_LIMITS_REDIS)",
        redis.port
    );
    for line in [
        "  token_ttl: 600 (from flag --token-ttl)",
        summary.as_str(),
        "  listen: 127.0.0.1:8080 (default)",
        "  max_body_bytes: 64MiB (default)",
    ] {
        assert!(out.lines().any(|l| l == line), "no `{line}` in\n{out}");
    }
    assert!(!format!("{out}{err}").contains("s3cret-redis-pw"));
    assert_eq!(out.lines().last(), Some("ok"));
}
