//! `voxproxy token` and `voxproxy check` through the real binary.

use crate::support::certs::Creds;
use crate::support::now;
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

/// Every setting of the contract's table: flag and environment variable.
const SETTINGS: &[(&str, &str)] = &[
    ("--config", "VOXPROXY_CONFIG"),
    ("--credentials", "VOXIMPLANT_CREDENTIALS"),
    ("--listen", "VOXPROXY_LISTEN"),
    ("--admin-listen", "VOXPROXY_ADMIN_LISTEN"),
    ("--upstream", "VOXPROXY_UPSTREAM"),
    ("--upstream-ca", "VOXPROXY_UPSTREAM_CA"),
    ("--account-header", "VOXPROXY_ACCOUNT_HEADER"),
    ("--allowed-accounts", "VOXPROXY_ALLOWED_ACCOUNTS"),
    ("--token-ttl", "VOXPROXY_TOKEN_TTL"),
    ("--token-refresh-before", "VOXPROXY_TOKEN_REFRESH_BEFORE"),
    ("--connect-timeout", "VOXPROXY_CONNECT_TIMEOUT"),
    ("--request-timeout", "VOXPROXY_REQUEST_TIMEOUT"),
    ("--max-body-bytes", "VOXPROXY_MAX_BODY_BYTES"),
    ("--shutdown-grace", "VOXPROXY_SHUTDOWN_GRACE"),
    ("--log-format", "VOXPROXY_LOG_FORMAT"),
    ("--log-level", "VOXPROXY_LOG"),
    ("--workers", "VOXPROXY_WORKERS"),
    (
        "--allow-unauthenticated-network",
        "VOXPROXY_ALLOW_UNAUTHENTICATED_NETWORK",
    ),
    ("--clients", "VOXPROXY_CLIENTS"),
    ("--tls-cert", "VOXPROXY_TLS_CERT"),
    ("--tls-key", "VOXPROXY_TLS_KEY"),
    ("--tls-client-ca", "VOXPROXY_TLS_CLIENT_CA"),
    ("--account-rate", "VOXPROXY_ACCOUNT_RATE"),
    ("--account-rate-wait", "VOXPROXY_ACCOUNT_RATE_WAIT"),
    ("--limits-redis", "VOXPROXY_LIMITS_REDIS"),
    ("--client-idle-timeout", "VOXPROXY_CLIENT_IDLE_TIMEOUT"),
];

/// The long flags a `--help` lists, in order.
fn listed_flags(help: &str) -> Vec<String> {
    help.lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| {
            let word = l.split_whitespace().find(|w| w.starts_with("--"))?;
            let end = word.find(['[', '<', ',', '=']).unwrap_or(word.len());
            Some(word[..end].to_owned())
        })
        .collect()
}

/// `--help` of `command`, whitespace collapsed so wrapped lines read as one.
fn help_of(command: &[&str]) -> (Vec<String>, String) {
    let mut args = command.to_vec();
    args.push("--help");
    let (code, out, err) = run(&args, &[]);
    assert_eq!(code, 0, "{command:?}: {err}");
    let flat = out.split_whitespace().collect::<Vec<_>>().join(" ");
    (listed_flags(&out), flat)
}

#[test]
fn each_help_lists_exactly_the_flags_of_its_command_with_default_and_env() {
    let settings_of = |names: &[&str]| -> Vec<&str> {
        SETTINGS
            .iter()
            .map(|(flag, _)| *flag)
            .filter(|f| names.is_empty() || names.contains(&f.trim_start_matches("--")))
            .collect()
    };
    let every = settings_of(&[]);
    let token = settings_of(&["config", "credentials", "log-format", "log-level"]);
    let client = settings_of(&["config", "credentials", "clients"]);
    let cases: &[(&[&str], &[&str], &[&str])] = &[
        (&["serve"], &[], &every),
        (&["check"], &["--online", "--print-config"], &every),
        (&["token"], &["--account", "--ttl", "--raw"], &token),
        (
            &["client", "add"],
            &[
                "--account",
                "--method",
                "--deny-method",
                "--read-only",
                "--rate",
                "--out",
                "--static-key",
                "--tls-name",
            ],
            &client,
        ),
        (&["client", "list"], &[], &client),
        (&["client", "remove"], &[], &client),
        (&["tls", "init"], &["--dir", "--name", "--force"], &[]),
        (&["completions"], &[], &[]),
        (&["probe"], &["--timeout"], &[]),
        (&[], &["--version"], &[]),
    ];
    for (command, own, settings) in cases {
        let (listed, flat) = help_of(command);
        let mut want: Vec<&str> = own.iter().chain(settings.iter()).copied().collect();
        want.push("--help");
        let mut got: Vec<&str> = listed.iter().map(String::as_str).collect();
        want.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, want, "voxproxy {command:?} --help");
        for flag in *settings {
            let env = SETTINGS.iter().find(|(f, _)| f == flag).unwrap().1;
            let at = flat
                .find(&format!("{flag} "))
                .or_else(|| flat.find(&format!("{flag}[")));
            let rest = &flat[at.unwrap_or_else(|| panic!("{flag} in {flat}"))..];
            let env_at = rest
                .find("[env: ")
                .unwrap_or_else(|| panic!("{flag} has no [env: ]"));
            assert!(
                rest[env_at..].starts_with(&format!("[env: {env}]")),
                "{command:?} {flag}: {}",
                &rest[..env_at + 40]
            );
            assert!(
                rest[..env_at].contains("[default: "),
                "{command:?} {flag} shows its default: {}",
                &rest[..env_at]
            );
        }
    }
    // Defaults as the contract states them.
    let (_, serve) = help_of(&["serve"]);
    for shown in [
        "[default: ./credentials.json] [env: VOXIMPLANT_CREDENTIALS]",
        "[default: 127.0.0.1:8080] [env: VOXPROXY_LISTEN]",
        "[default: https://api.voximplant.com] [env: VOXPROXY_UPSTREAM]",
        "[default: 3600] [env: VOXPROXY_TOKEN_TTL]",
        "[default: 64MiB] [env: VOXPROXY_MAX_BODY_BYTES]",
        "[default: info] [env: VOXPROXY_LOG]",
        "[default: 0.5] [env: VOXPROXY_ACCOUNT_RATE_WAIT]",
        "[default: 75] [env: VOXPROXY_CLIENT_IDLE_TIMEOUT]",
    ] {
        assert!(serve.contains(shown), "serve --help lacks {shown}");
    }
    let (_, token) = help_of(&["token"]);
    assert!(
        token.contains("--ttl <SECS>") && token.contains("3600"),
        "{token}"
    );
    assert!(!token.contains("--token-ttl"), "{token}");
    let (_, tls) = help_of(&["tls", "init"]);
    assert!(tls.contains("[default: ./voxproxy-tls]"), "{tls}");
    let (_, probe) = help_of(&["probe"]);
    assert!(probe.contains("[default: 2s]"), "{probe}");
}

#[test]
fn version_names_commit_and_target() {
    let (code, out, _) = run(&["--version"], &[]);
    assert_eq!(code, 0);
    let line = out.strip_suffix('\n').expect("one line");
    let rest = line
        .strip_prefix(&format!("voxproxy {} (", env!("CARGO_PKG_VERSION")))
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{line:?}"));
    let (commit, target) = rest.split_once(' ').unwrap_or_else(|| panic!("{line:?}"));
    assert!(
        commit == "unknown" || (commit.len() == 7 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
        "{line:?}"
    );
    assert!(target.split('-').count() >= 3, "{line:?}");
    assert!(!target.contains(' '), "{line:?}");
}

/// A credentials file and a config file holding `config`, in a temp dir.
fn creds_and_config(config: &str) -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let creds = Creds::write(dir.path(), "credentials.json", 1);
    let path = dir.path().join("voxproxy.toml");
    std::fs::write(&path, config).unwrap();
    let creds = creds.path.to_str().unwrap().to_owned();
    let path = path.to_str().unwrap().to_owned();
    (dir, creds, path)
}

#[test]
fn sizes_and_durations_with_units_are_accepted_everywhere() {
    let (_dir, creds, config) =
        creds_and_config("max_body_bytes = \"64MiB\"\nrequest_timeout = \"2m\"\n");
    let (code, out, err) = run(
        &["check", "--credentials", &creds, "--config", &config],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    for timeout in ["5s", "500ms", "0.5"] {
        let (code, out, err) = run(
            &[
                "check",
                "--credentials",
                &creds,
                "--connect-timeout",
                timeout,
            ],
            &[("VOXPROXY_MAX_BODY_BYTES", "1GiB")],
        );
        assert_eq!(code, 0, "--connect-timeout {timeout}: {out}{err}");
    }
    let (code, out, _) = run(
        &[
            "check",
            "--credentials",
            &creds,
            "--connect-timeout",
            "5 minutes",
        ],
        &[],
    );
    assert_eq!(code, 2);
    assert!(
        out.contains("connect_timeout = 5 minutes (from flag --connect-timeout): must be"),
        "{out}"
    );
    let (_dir, creds, config) = creds_and_config("max_body_bytes = \"64MB\"\n");
    let (code, out, _) = run(
        &["check", "--credentials", &creds, "--config", &config],
        &[],
    );
    assert_eq!(code, 2);
    assert!(
        out.contains("max_body_bytes = \"64MB\" (from config file")
            && out.contains("optionally with KiB, MiB or GiB"),
        "{out}"
    );
}

#[test]
fn a_misspelled_file_key_exits_2_with_the_nearest_key() {
    let (_dir, creds, config) = creds_and_config("listn = \"127.0.0.1:9000\"\n");
    for command in ["serve", "check", "token"] {
        let (code, out, err) = run(
            &[command, "--credentials", &creds, "--config", &config],
            &[],
        );
        assert_eq!(code, 2, "{command}: {out}{err}");
        let all = format!("{out}{err}");
        assert!(
            all.contains(&format!(
                "unknown setting \"listn\" in config file {config}: did you mean \"listen\"?"
            )),
            "{command}: {all}"
        );
    }
}

#[test]
fn settings_flags_before_the_command_name_still_work() {
    let (_dir, creds, _config) = creds_and_config("");
    let (code, out, err) = run(&["--credentials", &creds, "check"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    // The flag before the command is the one used: the listen rule names it.
    let (code, _, err) = run(
        &["--listen", "0.0.0.0:0", "--credentials", &creds, "serve"],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("listen = 0.0.0.0:0 (from flag --listen)"),
        "{err}"
    );
    // After the command name wins over before it.
    let (code, _, err) = run(
        &[
            "--listen",
            "0.0.0.0:0",
            "check",
            "--listen",
            "127.0.0.1:0",
            "--credentials",
            &creds,
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    // A setting the command does not use is a usage error naming the flag.
    for args in [
        &["--listen", "127.0.0.1:1", "token"][..],
        &["--clients", "/c.toml", "tls", "init"][..],
        &["--token-ttl", "60", "client", "list"][..],
    ] {
        let (code, out, err) = run(args, &[]);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(
            err.contains(&format!("{} is not a flag of", args[0])),
            "{err}"
        );
    }
}

#[test]
fn completions_into_a_closed_pipe_exit_0_without_a_panic() {
    // `head -1` closes the pipe after one line; voxproxy must end quietly, every time.
    let script = format!(
        "for i in $(seq 50); do {bin} completions bash | head -1 >/dev/null; \
         echo \"status ${{PIPESTATUS[0]}}\"; done",
        bin = crate::support::process::BIN
    );
    let out = std::process::Command::new("bash")
        .args(["-c", &script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stdout.lines().count(), 50, "{stdout}");
    assert!(
        stdout.lines().all(|l| l == "status 0"),
        "{stdout}\n{stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{stderr}"
    );
}
