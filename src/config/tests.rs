//! Settings: layering (flag > env > file > default), every validation message, and the listen rule.
//! The environment is a map and the config file a temp file, so nothing global is touched.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

/// A config file in its own temp directory, named `voxproxy.toml` like the real one.
struct ConfigFile {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl ConfigFile {
    fn new(text: &str) -> ConfigFile {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("voxproxy.toml");
        std::fs::write(&path, text).expect("write config file");
        ConfigFile { _dir: dir, path }
    }

    fn path_str(&self) -> &str {
        self.path.to_str().expect("temp paths are UTF-8")
    }

    /// Flags naming this file with `--config`.
    fn flags(&self) -> SettingsArgs {
        SettingsArgs {
            config: Some(self.path_str().to_owned()),
            ..SettingsArgs::default()
        }
    }
}

fn no_env() -> HashMap<&'static str, &'static str> {
    HashMap::new()
}

fn resolve_ok(flags: &SettingsArgs, env: &HashMap<&str, &str>) -> Settings {
    match Settings::resolve(flags, env) {
        Ok(s) => s,
        Err(e) => panic!("expected valid settings, got: {e}"),
    }
}

/// The error messages, in order.
fn resolve_errors(flags: &SettingsArgs, env: &HashMap<&str, &str>) -> Vec<String> {
    match Settings::resolve(flags, env) {
        Ok(s) => panic!("expected a configuration error, got {s:?}"),
        Err(e) => {
            assert!(!e.0.is_empty(), "a ConfigError is never empty");
            e.0.iter().map(ToString::to_string).collect()
        }
    }
}

/// The single error message, asserting there is exactly one.
fn resolve_error(flags: &SettingsArgs, env: &HashMap<&str, &str>) -> String {
    let errors = resolve_errors(flags, env);
    assert_eq!(
        errors.len(),
        1,
        "expected exactly one error, got {errors:#?}"
    );
    errors.into_iter().next().expect("one error")
}

fn flag(f: impl FnOnce(&mut SettingsArgs)) -> SettingsArgs {
    let mut args = SettingsArgs::default();
    f(&mut args);
    args
}

/// What a duration that does not parse is told.
const SECS_SYNTAX: &str = "must be a number of seconds (like 5 or 0.5) or a number with ms, s, m \
                           or h (like 500ms or 2m)";

fn tcp(s: &str) -> ListenAddr {
    ListenAddr::Tcp(s.parse::<SocketAddr>().expect("test socket address"))
}

// ---------------------------------------------------------------------------------------------
// Defaults and precedence

#[test]
fn defaults_apply_when_nothing_is_set() {
    let s = resolve_ok(&SettingsArgs::default(), &no_env());
    assert_eq!(s.config, None);
    assert_eq!(s.credentials, vec![PathBuf::from("credentials.json")]);
    assert_eq!(s.listen, tcp("127.0.0.1:8080"));
    assert_eq!(s.admin_listen, None);
    assert_eq!(s.upstream.to_string(), "https://api.voximplant.com");
    assert_eq!(s.upstream.host, "api.voximplant.com");
    assert_eq!(s.upstream.port, 443);
    assert!(!s.upstream.explicit_port);
    assert_eq!(s.upstream_ca, None);
    assert_eq!(s.account_header.as_str(), "x-voximplant-account-id");
    assert_eq!(s.allowed_accounts, None);
    assert_eq!(s.token_ttl, 3600);
    assert_eq!(s.token_refresh_before, 300);
    assert_eq!(s.connect_timeout, Duration::from_secs(5));
    assert_eq!(s.request_timeout, Duration::from_secs(120));
    assert_eq!(s.max_body_bytes, 64 * 1024 * 1024);
    assert_eq!(s.shutdown_grace, Duration::from_secs(30));
    assert_eq!(s.log_format, None);
    assert_eq!(s.log_level, "info");
    assert_eq!(s.workers, None);
    assert!(!s.allow_unauthenticated_network);
    assert_eq!(s.clients, None);
    assert_eq!(s.tls_cert, None);
    assert_eq!(s.tls_key, None);
    assert_eq!(s.tls_client_ca, None);
    assert_eq!(s.account_rate, None);
    assert_eq!(s.account_rate_wait, Duration::from_millis(500));
    assert_eq!(s.limits_redis, None);
    assert_eq!(s.client_idle_timeout, Duration::from_secs(75));
    for key in file_keys() {
        assert_eq!(s.origin(key), Origin::Default, "origin of {key}");
    }
}

/// The same setting given in all layers; peeling layers off one at a time must expose the next.
#[test]
fn precedence_is_flag_then_env_then_file_then_default() {
    let file = ConfigFile::new(
        r#"
listen = "127.0.0.1:3000"
token_ttl = 1800
connect_timeout = 7
log_level = "warn"
account_header = "X-From-File"
"#,
    );
    let env: HashMap<&str, &str> = HashMap::from([
        (keys::LISTEN, "127.0.0.1:2000"),
        (keys::TOKEN_TTL, "1200"),
        (keys::CONNECT_TIMEOUT, "8"),
        (keys::LOG, "debug"),
        (keys::ACCOUNT_HEADER, "X-From-Env"),
    ]);
    let all_flags = SettingsArgs {
        listen: Some("127.0.0.1:1000".to_owned()),
        token_ttl: Some("600".to_owned()),
        connect_timeout: Some("9".to_owned()),
        log_level: Some("trace".to_owned()),
        account_header: Some("X-From-Flag".to_owned()),
        ..file.flags()
    };

    // Flag beats everything.
    let s = resolve_ok(&all_flags, &env);
    assert_eq!(s.listen, tcp("127.0.0.1:1000"));
    assert_eq!(s.token_ttl, 600);
    assert_eq!(s.connect_timeout, Duration::from_secs(9));
    assert_eq!(s.log_level, "trace");
    assert_eq!(s.account_header.as_str(), "x-from-flag");
    assert_eq!(s.origin("listen"), Origin::Flag("--listen"));
    assert_eq!(s.origin("token_ttl"), Origin::Flag("--token-ttl"));
    assert_eq!(
        s.origin("connect_timeout"),
        Origin::Flag("--connect-timeout")
    );
    assert_eq!(s.origin("log_level"), Origin::Flag("--log-level"));
    assert_eq!(s.origin("account_header"), Origin::Flag("--account-header"));
    assert_eq!(s.config.as_deref(), Some(file.path.as_path()));

    // No flags: the environment wins over the file.
    let s = resolve_ok(&file.flags(), &env);
    assert_eq!(s.listen, tcp("127.0.0.1:2000"));
    assert_eq!(s.token_ttl, 1200);
    assert_eq!(s.connect_timeout, Duration::from_secs(8));
    assert_eq!(s.log_level, "debug");
    assert_eq!(s.account_header.as_str(), "x-from-env");
    assert_eq!(s.origin("listen"), Origin::Env(keys::LISTEN));
    assert_eq!(s.origin("token_ttl"), Origin::Env(keys::TOKEN_TTL));
    assert_eq!(s.origin("log_level"), Origin::Env(keys::LOG));

    // No flags, no environment: the file.
    let s = resolve_ok(&file.flags(), &no_env());
    assert_eq!(s.listen, tcp("127.0.0.1:3000"));
    assert_eq!(s.token_ttl, 1800);
    assert_eq!(s.connect_timeout, Duration::from_secs(7));
    assert_eq!(s.log_level, "warn");
    assert_eq!(s.account_header.as_str(), "x-from-file");
    assert_eq!(s.origin("listen"), Origin::File(file.path.clone()));
    assert_eq!(s.origin("token_ttl"), Origin::File(file.path.clone()));

    // Nothing: the defaults (the file still names other settings, not these).
    let s = resolve_ok(&SettingsArgs::default(), &no_env());
    assert_eq!(s.listen, tcp("127.0.0.1:8080"));
    assert_eq!(s.token_ttl, 3600);
    assert_eq!(s.connect_timeout, Duration::from_secs(5));
    assert_eq!(s.log_level, "info");
    assert_eq!(s.origin("listen"), Origin::Default);
}

/// Layers are picked per setting: one setting can come from a flag while its neighbour comes from
/// the file and a third keeps its default.
#[test]
fn precedence_is_decided_per_setting() {
    let file = ConfigFile::new("request_timeout = 60\nworkers = 3\nshutdown_grace = 2\n");
    let env = HashMap::from([(keys::WORKERS, "5")]);
    let flags = SettingsArgs {
        shutdown_grace: Some("1".to_owned()),
        ..file.flags()
    };
    let s = resolve_ok(&flags, &env);
    assert_eq!(s.shutdown_grace, Duration::from_secs(1));
    assert_eq!(s.workers, Some(5));
    assert_eq!(s.request_timeout, Duration::from_secs(60));
    assert_eq!(s.max_body_bytes, 64 * 1024 * 1024);
    assert_eq!(s.origin("shutdown_grace"), Origin::Flag("--shutdown-grace"));
    assert_eq!(s.origin("workers"), Origin::Env(keys::WORKERS));
    assert_eq!(s.origin("request_timeout"), Origin::File(file.path.clone()));
    assert_eq!(s.origin("max_body_bytes"), Origin::Default);
}

#[test]
fn config_file_can_be_named_by_the_environment() {
    let file = ConfigFile::new("token_ttl = 900\n");
    let env = HashMap::from([(keys::CONFIG, file.path_str())]);
    let s = resolve_ok(&SettingsArgs::default(), &env);
    assert_eq!(s.token_ttl, 900);
    assert_eq!(s.config.as_deref(), Some(file.path.as_path()));
    assert_eq!(s.origin("token_ttl"), Origin::File(file.path.clone()));
}

#[test]
fn config_flag_beats_config_environment() {
    let flagged = ConfigFile::new("token_ttl = 900\n");
    let envd = ConfigFile::new("token_ttl = 1000\n");
    let env = HashMap::from([(keys::CONFIG, envd.path_str())]);
    let s = resolve_ok(&flagged.flags(), &env);
    assert_eq!(s.token_ttl, 900);
    assert_eq!(s.config.as_deref(), Some(flagged.path.as_path()));
}

#[test]
fn empty_config_environment_means_no_file() {
    let env = HashMap::from([(keys::CONFIG, "")]);
    let s = resolve_ok(&SettingsArgs::default(), &env);
    assert_eq!(s.config, None);
}

#[test]
fn every_file_key_is_accepted_in_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().display();
    let file = ConfigFile::new(&format!(
        r#"
credentials = ["{d}/a.json", "{d}/b.json"]
listen = "127.0.0.1:9999"
admin_listen = "127.0.0.1:9998"
upstream = "https://api.example.test:8443"
upstream_ca = "{d}/ca.pem"
account_header = "X-Account"
allowed_accounts = [1, 22, 333]
token_ttl = 1200
token_refresh_before = 100
connect_timeout = 1.5
request_timeout = 30
max_body_bytes = 1024
shutdown_grace = 0
log_format = "json"
log_level = "voxproxy=debug,info"
workers = 2
allow_unauthenticated_network = true
clients = "{d}/clients.toml"
tls_cert = "{d}/cert.pem"
tls_key = "{d}/key.pem"
tls_client_ca = "{d}/client-ca.pem"
account_rate = "10/s"
account_rate_wait = 0
limits_redis = "redis://redis:6379/2"
client_idle_timeout = 30
"#
    ));
    let s = resolve_ok(&file.flags(), &no_env());
    let p = |name: &str| dir.path().join(name);
    assert_eq!(s.credentials, vec![p("a.json"), p("b.json")]);
    assert_eq!(s.listen, tcp("127.0.0.1:9999"));
    assert_eq!(s.admin_listen, Some(tcp("127.0.0.1:9998")));
    assert_eq!(s.upstream.to_string(), "https://api.example.test:8443");
    assert_eq!(s.upstream.port, 8443);
    assert!(s.upstream.explicit_port);
    assert_eq!(s.upstream_ca, Some(p("ca.pem")));
    assert_eq!(s.account_header.as_str(), "x-account");
    assert_eq!(s.allowed_accounts, Some(vec![1, 22, 333]));
    assert_eq!(s.token_ttl, 1200);
    assert_eq!(s.token_refresh_before, 100);
    assert_eq!(s.connect_timeout, Duration::from_millis(1500));
    assert_eq!(s.request_timeout, Duration::from_secs(30));
    assert_eq!(s.max_body_bytes, 1024);
    assert_eq!(s.shutdown_grace, Duration::ZERO);
    assert_eq!(s.log_format, Some(LogFormat::Json));
    assert_eq!(s.log_level, "voxproxy=debug,info");
    assert_eq!(s.workers, Some(2));
    assert!(s.allow_unauthenticated_network);
    assert_eq!(s.clients, Some(p("clients.toml")));
    assert_eq!(s.tls_cert, Some(p("cert.pem")));
    assert_eq!(s.tls_key, Some(p("key.pem")));
    assert_eq!(s.tls_client_ca, Some(p("client-ca.pem")));
    assert_eq!(
        s.account_rate.map(|r| r.to_string()).as_deref(),
        Some("10/s")
    );
    assert_eq!(s.account_rate_wait, Duration::ZERO);
    assert_eq!(
        s.limits_redis.as_ref().map(ToString::to_string).as_deref(),
        Some("redis://redis:6379/2")
    );
    assert_eq!(s.client_idle_timeout, Duration::from_secs(30));
    for key in file_keys() {
        assert_eq!(
            s.origin(key),
            Origin::File(file.path.clone()),
            "origin of {key}"
        );
    }
}

#[test]
fn every_environment_variable_is_read() {
    let env = HashMap::from([
        (keys::CREDENTIALS, "/etc/voxproxy/creds.json"),
        (keys::LISTEN, "unix:/run/voxproxy.sock"),
        (keys::ADMIN_LISTEN, "127.0.0.1:9090"),
        (keys::UPSTREAM, "http://127.0.0.1:4000"),
        (keys::UPSTREAM_CA, "/ca.pem"),
        (keys::ACCOUNT_HEADER, "X-Acct"),
        (keys::ALLOWED_ACCOUNTS, "5,6"),
        (keys::TOKEN_TTL, "120"),
        (keys::TOKEN_REFRESH_BEFORE, "20"),
        (keys::CONNECT_TIMEOUT, "0.25"),
        (keys::REQUEST_TIMEOUT, "2.5"),
        (keys::MAX_BODY_BYTES, "2MiB"),
        (keys::SHUTDOWN_GRACE, "0.5"),
        (keys::LOG_FORMAT, "text"),
        (keys::LOG, "warn"),
        (keys::WORKERS, "8"),
        (keys::ALLOW_UNAUTHENTICATED_NETWORK, "yes"),
        (keys::CLIENTS, "/clients.toml"),
        (keys::TLS_CERT, "/cert.pem"),
        (keys::TLS_KEY, "/key.pem"),
        (keys::TLS_CLIENT_CA, "/client-ca.pem"),
    ]);
    let s = resolve_ok(&SettingsArgs::default(), &env);
    assert_eq!(
        s.credentials,
        vec![PathBuf::from("/etc/voxproxy/creds.json")]
    );
    assert_eq!(
        s.listen,
        ListenAddr::Unix(PathBuf::from("/run/voxproxy.sock"))
    );
    assert_eq!(s.admin_listen, Some(tcp("127.0.0.1:9090")));
    assert_eq!(s.upstream.to_string(), "http://127.0.0.1:4000");
    assert_eq!(s.upstream_ca, Some(PathBuf::from("/ca.pem")));
    assert_eq!(s.account_header.as_str(), "x-acct");
    assert_eq!(s.allowed_accounts, Some(vec![5, 6]));
    assert_eq!(s.token_ttl, 120);
    assert_eq!(s.token_refresh_before, 20);
    assert_eq!(s.connect_timeout, Duration::from_millis(250));
    assert_eq!(s.request_timeout, Duration::from_millis(2500));
    assert_eq!(s.max_body_bytes, 2 * 1024 * 1024);
    assert_eq!(s.shutdown_grace, Duration::from_millis(500));
    assert_eq!(s.log_format, Some(LogFormat::Text));
    assert_eq!(s.log_level, "warn");
    assert_eq!(s.workers, Some(8));
    assert!(s.allow_unauthenticated_network);
    assert_eq!(s.clients, Some(PathBuf::from("/clients.toml")));
    assert_eq!(s.tls_cert, Some(PathBuf::from("/cert.pem")));
    assert_eq!(s.tls_key, Some(PathBuf::from("/key.pem")));
    assert_eq!(s.tls_client_ca, Some(PathBuf::from("/client-ca.pem")));
    assert_eq!(s.origin("credentials"), Origin::Env(keys::CREDENTIALS));
    assert_eq!(s.origin("tls_client_ca"), Origin::Env(keys::TLS_CLIENT_CA));
}

// ---------------------------------------------------------------------------------------------
// The config file itself

#[test]
fn out_of_range_file_value_names_key_value_and_file() {
    let file = ConfigFile::new("token_ttl = 7200\n");
    let err = resolve_error(&file.flags(), &no_env());
    assert_eq!(
        err,
        format!(
            "token_ttl = 7200 (from config file {}): must be at most 3600",
            file.path.display()
        )
    );
}

#[test]
fn unknown_file_key_is_an_error() {
    let file = ConfigFile::new("lisen = \"127.0.0.1:1\"\ntoken_ttl = 600\n");
    let err = resolve_error(&file.flags(), &no_env());
    assert_eq!(
        err,
        format!(
            "unknown setting \"lisen\" in config file {}: did you mean \"listen\"?",
            file.path.display()
        )
    );
}

#[test]
fn every_unknown_file_key_is_reported() {
    let file = ConfigFile::new("config = \"x\"\nfoo = 1\n[bar]\nbaz = 2\n");
    let mut errors = resolve_errors(&file.flags(), &no_env());
    errors.sort();
    let p = file.path.display();
    assert_eq!(
        errors,
        vec![
            format!("unknown setting \"bar\" in config file {p}"),
            format!(
                "unknown setting \"config\" in config file {p}: config is set by --config or \
                 VOXPROXY_CONFIG, not in a config file"
            ),
            format!("unknown setting \"foo\" in config file {p}"),
        ]
    );
}

#[test]
fn invalid_toml_is_reported_with_the_file() {
    let file = ConfigFile::new("token_ttl = = 5\n");
    let err = resolve_error(&file.flags(), &no_env());
    let prefix = format!(
        "config file {} (from flag --config): not valid TOML: ",
        file.path.display()
    );
    assert!(err.starts_with(&prefix), "{err}");
}

#[test]
fn missing_config_file_is_reported_with_its_origin() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("absent.toml");
    let path_str = path.to_str().expect("UTF-8");

    let flags = flag(|a| a.config = Some(path_str.to_owned()));
    let err = resolve_error(&flags, &no_env());
    assert!(
        err.starts_with(&format!(
            "config file {} (from flag --config): cannot read: ",
            path.display()
        )),
        "{err}"
    );

    let env = HashMap::from([(keys::CONFIG, path_str)]);
    let err = resolve_error(&SettingsArgs::default(), &env);
    assert!(
        err.starts_with(&format!(
            "config file {} (from environment VOXPROXY_CONFIG): cannot read: ",
            path.display()
        )),
        "{err}"
    );
}

#[test]
fn wrong_toml_types_are_named() {
    let file = ConfigFile::new(
        r#"
token_ttl = "600"
listen = 8080
allow_unauthenticated_network = "maybe"
connect_timeout = "soon"
max_body_bytes = 1.5
allowed_accounts = 7
credentials = 3
"#,
    );
    let p = file.path.display();
    let mut errors = resolve_errors(&file.flags(), &no_env());
    errors.sort();
    let mut expected = vec![
        format!("token_ttl = \"600\" (from config file {p}): must be an integer, not string"),
        format!("listen = 8080 (from config file {p}): must be a string, not integer"),
        format!(
            "allow_unauthenticated_network = \"maybe\" (from config file {p}): must be a boolean, not string"
        ),
        format!("connect_timeout = \"soon\" (from config file {p}): {SECS_SYNTAX}"),
        format!(
            "max_body_bytes = 1.5 (from config file {p}): must be a number of bytes, not float"
        ),
        format!(
            "allowed_accounts = 7 (from config file {p}): must be a list of account ids, not integer"
        ),
        format!("credentials = 3 (from config file {p}): must be a list of paths, not integer"),
    ];
    expected.sort();
    assert_eq!(errors, expected);
}

// ---------------------------------------------------------------------------------------------
// Several errors at once

#[test]
fn every_problem_is_reported_at_once_from_every_layer() {
    let file = ConfigFile::new("token_ttl = 7200\n");
    let env = HashMap::from([(keys::LISTEN, "nowhere")]);
    let flags = SettingsArgs {
        workers: Some("0".to_owned()),
        max_body_bytes: Some("lots".to_owned()),
        ..file.flags()
    };
    let err = Settings::resolve(&flags, &env).expect_err("three bad settings");
    let p = file.path.display();
    let messages: Vec<String> = err.0.iter().map(ToString::to_string).collect();
    // Reported in the order of the settings table.
    assert_eq!(
        messages,
        vec![
            "listen = nowhere (from environment VOXPROXY_LISTEN): must be IP:PORT (like \
             127.0.0.1:8080 or [::1]:8080), localhost:PORT, unix:/path or systemd"
                .to_owned(),
            format!("token_ttl = 7200 (from config file {p}): must be at most 3600"),
            "max_body_bytes = lots (from flag --max-body-bytes): must be a number of bytes, \
             optionally with KiB, MiB or GiB"
                .to_owned(),
            "workers = 0 (from flag --workers): must be 1 to 1024".to_owned(),
        ]
    );
    // The whole list on one line, for the binary's one-line error.
    assert_eq!(err.to_string(), messages.join("; "));
}

// ---------------------------------------------------------------------------------------------
// Value syntaxes

#[test]
fn booleans_accept_every_documented_spelling() {
    for (text, want) in [
        ("true", true),
        ("TRUE", true),
        ("1", true),
        ("yes", true),
        ("Yes", true),
        ("on", true),
        (" on ", true),
        ("false", false),
        ("False", false),
        ("0", false),
        ("no", false),
        ("off", false),
        ("OFF", false),
    ] {
        let env = HashMap::from([(keys::ALLOW_UNAUTHENTICATED_NETWORK, text)]);
        let s = resolve_ok(&SettingsArgs::default(), &env);
        assert_eq!(s.allow_unauthenticated_network, want, "env {text:?}");

        let flags = flag(|a| a.allow_unauthenticated_network = Some(text.to_owned()));
        let s = resolve_ok(&flags, &no_env());
        assert_eq!(s.allow_unauthenticated_network, want, "flag {text:?}");
    }
    for (toml, want) in [("true", true), ("false", false)] {
        let file = ConfigFile::new(&format!("allow_unauthenticated_network = {toml}\n"));
        let s = resolve_ok(&file.flags(), &no_env());
        assert_eq!(s.allow_unauthenticated_network, want);
    }
}

#[test]
fn booleans_refuse_anything_else() {
    for text in ["", "2", "y", "enable", "truee", "nope"] {
        let env = HashMap::from([(keys::ALLOW_UNAUTHENTICATED_NETWORK, text)]);
        let err = resolve_error(&SettingsArgs::default(), &env);
        assert_eq!(
            err,
            format!(
                "allow_unauthenticated_network = {text} (from environment \
                 VOXPROXY_ALLOW_UNAUTHENTICATED_NETWORK): must be true/false, 1/0, yes/no or on/off"
            )
        );
    }
}

#[test]
fn timeouts_may_be_fractional() {
    let flags = flag(|a| {
        a.connect_timeout = Some("0.5".to_owned());
        a.request_timeout = Some("1.25".to_owned());
        a.shutdown_grace = Some("0.1".to_owned());
    });
    let s = resolve_ok(&flags, &no_env());
    assert_eq!(s.connect_timeout, Duration::from_millis(500));
    assert_eq!(s.request_timeout, Duration::from_millis(1250));
    assert_eq!(s.shutdown_grace, Duration::from_millis(100));

    let file =
        ConfigFile::new("connect_timeout = 0.75\nrequest_timeout = 90\nshutdown_grace = 2.5\n");
    let s = resolve_ok(&file.flags(), &no_env());
    assert_eq!(s.connect_timeout, Duration::from_millis(750));
    assert_eq!(s.request_timeout, Duration::from_secs(90));
    assert_eq!(s.shutdown_grace, Duration::from_millis(2500));
}

#[test]
fn timeouts_refuse_bad_values() {
    let cases = [
        ("--connect-timeout", "0", "must be more than zero seconds"),
        ("--connect-timeout", "-1", "must be more than zero seconds"),
        ("--connect-timeout", "NaN", "must be more than zero seconds"),
        ("--connect-timeout", "inf", "must be more than zero seconds"),
        (
            "--connect-timeout",
            "86401",
            "must be at most 86400 seconds (a day)",
        ),
        ("--request-timeout", "0.0", "must be more than zero seconds"),
        ("--request-timeout", "", SECS_SYNTAX),
        ("--shutdown-grace", "-0.5", "must be zero or more seconds"),
        ("--shutdown-grace", "forever", SECS_SYNTAX),
    ];
    for (name, value, reason) in cases {
        let flags = flag(|a| {
            let v = Some(value.to_owned());
            match name {
                "--connect-timeout" => a.connect_timeout = v,
                "--request-timeout" => a.request_timeout = v,
                _ => a.shutdown_grace = v,
            }
        });
        let key = name.trim_start_matches("--").replace('-', "_");
        let err = resolve_error(&flags, &no_env());
        assert_eq!(err, format!("{key} = {value} (from flag {name}): {reason}"));
    }
    // A zero shutdown grace is allowed: stop at once.
    let s = resolve_ok(
        &flag(|a| a.shutdown_grace = Some("0".to_owned())),
        &no_env(),
    );
    assert_eq!(s.shutdown_grace, Duration::ZERO);
}

#[test]
fn max_body_bytes_accepts_suffixes() {
    for (text, want) in [
        ("1", 1u64),
        ("512", 512),
        ("100b", 100),
        ("10k", 10 * 1024),
        ("10K", 10 * 1024),
        ("10KiB", 10 * 1024),
        ("3m", 3 << 20),
        ("64MiB", 64 << 20),
        ("64 MiB", 64 << 20),
        ("2g", 2 << 30),
        ("1GiB", 1 << 30),
    ] {
        let s = resolve_ok(
            &flag(|a| a.max_body_bytes = Some(text.to_owned())),
            &no_env(),
        );
        assert_eq!(s.max_body_bytes, want, "{text:?}");
    }
    let file = ConfigFile::new("max_body_bytes = 4096\n");
    assert_eq!(resolve_ok(&file.flags(), &no_env()).max_body_bytes, 4096);
}

#[test]
fn max_body_bytes_refuses_bad_values() {
    let suffix = "must be a number of bytes, optionally with KiB, MiB or GiB";
    for (text, reason) in [
        ("0", "must be more than zero"),
        ("0MiB", "must be more than zero"),
        ("", "must be a positive number of bytes"),
        ("MiB", "must be a positive number of bytes"),
        ("-1", suffix),
        ("1.5M", suffix),
        ("10TB", suffix),
        ("10 kilobytes", suffix),
        ("99999999999999999999", "must be a positive number of bytes"),
        ("99999999999G", "is too large"),
    ] {
        let err = resolve_error(
            &flag(|a| a.max_body_bytes = Some(text.to_owned())),
            &no_env(),
        );
        assert_eq!(
            err,
            format!("max_body_bytes = {text} (from flag --max-body-bytes): {reason}")
        );
    }
    let file = ConfigFile::new("max_body_bytes = -5\n");
    let err = resolve_error(&file.flags(), &no_env());
    assert_eq!(
        err,
        format!(
            "max_body_bytes = -5 (from config file {}): must be a positive number of bytes",
            file.path.display()
        )
    );
}

#[test]
fn allowed_accounts_as_text() {
    let s = resolve_ok(
        &flag(|a| a.allowed_accounts = Some("1, 22 ,333,".to_owned())),
        &no_env(),
    );
    assert_eq!(s.allowed_accounts, Some(vec![1, 22, 333]));

    let env = HashMap::from([(keys::ALLOWED_ACCOUNTS, "42")]);
    let s = resolve_ok(&SettingsArgs::default(), &env);
    assert_eq!(s.allowed_accounts, Some(vec![42]));

    for (text, reason) in [
        (
            "",
            "lists no account id (leave it unset to allow any account)",
        ),
        (
            " , ",
            "lists no account id (leave it unset to allow any account)",
        ),
        ("1,abc", "`abc` is not a positive account id"),
        ("0", "`0` is not a positive account id"),
        ("-3", "`-3` is not a positive account id"),
        ("1 2", "`1 2` is not a positive account id"),
        (
            "99999999999999999999",
            "`99999999999999999999` is not a positive account id",
        ),
    ] {
        let err = resolve_error(
            &flag(|a| a.allowed_accounts = Some(text.to_owned())),
            &no_env(),
        );
        assert_eq!(
            err,
            format!("allowed_accounts = {text} (from flag --allowed-accounts): {reason}")
        );
    }
}

#[test]
fn allowed_accounts_as_toml_list() {
    let file = ConfigFile::new("allowed_accounts = [10, 20]\n");
    let s = resolve_ok(&file.flags(), &no_env());
    assert_eq!(s.allowed_accounts, Some(vec![10, 20]));

    let p = |f: &ConfigFile| f.path.display().to_string();
    // The file takes the typed form only: a list of integers.
    let file = ConfigFile::new("allowed_accounts = \"7,8\"\n");
    assert_eq!(
        resolve_error(&file.flags(), &no_env()),
        format!(
            "allowed_accounts = \"7,8\" (from config file {}): must be a list of account ids, not string",
            p(&file)
        )
    );
    let file = ConfigFile::new("allowed_accounts = [10, 0]\n");
    assert_eq!(
        resolve_error(&file.flags(), &no_env()),
        format!(
            "allowed_accounts = [10, 0] (from config file {}): `0` is not a positive account id",
            p(&file)
        )
    );
    let file = ConfigFile::new("allowed_accounts = [10, \"11\"]\n");
    assert_eq!(
        resolve_error(&file.flags(), &no_env()),
        format!(
            "allowed_accounts = [10, \"11\"] (from config file {}): `\"11\"` is not a positive account id",
            p(&file)
        )
    );
    let file = ConfigFile::new("allowed_accounts = []\n");
    assert_eq!(
        resolve_error(&file.flags(), &no_env()),
        format!(
            "allowed_accounts = [] (from config file {}): lists no account id (leave it unset to \
             allow any account)",
            p(&file)
        )
    );
}

#[test]
fn listen_addresses_parse() {
    for (text, want) in [
        ("127.0.0.1:8080", tcp("127.0.0.1:8080")),
        ("0.0.0.0:80", tcp("0.0.0.0:80")),
        ("10.1.2.3:1", tcp("10.1.2.3:1")),
        ("[::1]:8080", tcp("[::1]:8080")),
        ("[::]:443", tcp("[::]:443")),
        ("localhost:9000", tcp("127.0.0.1:9000")),
        (" localhost:0 ", tcp("127.0.0.1:0")),
        (
            "unix:/run/voxproxy.sock",
            ListenAddr::Unix(PathBuf::from("/run/voxproxy.sock")),
        ),
        (
            "unix:relative.sock",
            ListenAddr::Unix(PathBuf::from("relative.sock")),
        ),
        ("systemd", ListenAddr::Systemd),
    ] {
        assert_eq!(parse_listen(text), Ok(want.clone()), "{text:?}");
        let s = resolve_ok(&flag(|a| a.listen = Some(text.to_owned())), &no_env());
        assert_eq!(s.listen, want, "{text:?}");
    }
}

#[test]
fn bad_listen_addresses_are_refused() {
    let general = "must be IP:PORT (like 127.0.0.1:8080 or [::1]:8080), localhost:PORT, unix:/path \
                   or systemd";
    for (text, reason) in [
        ("", general),
        ("8080", general),
        ("127.0.0.1", general),
        ("::1:8080", general),
        ("example.com:80", general),
        ("127.0.0.1:99999", general),
        ("tcp://127.0.0.1:80", general),
        ("localhost:http", "`http` is not a port number"),
        ("localhost:70000", "`70000` is not a port number"),
        ("unix:", "unix: needs a path, like unix:/run/voxproxy.sock"),
    ] {
        assert_eq!(parse_listen(text), Err(reason.to_owned()), "{text:?}");
        let env = HashMap::from([(keys::LISTEN, text)]);
        let err = resolve_error(&SettingsArgs::default(), &env);
        assert_eq!(
            err,
            format!("listen = {text} (from environment VOXPROXY_LISTEN): {reason}")
        );
    }
}

#[test]
fn admin_listen_must_differ_and_not_be_systemd() {
    let flags = flag(|a| {
        a.listen = Some("127.0.0.1:7000".to_owned());
        a.admin_listen = Some("127.0.0.1:7000".to_owned());
    });
    assert_eq!(
        resolve_error(&flags, &no_env()),
        "admin_listen = 127.0.0.1:7000 (from flag --admin-listen): must differ from listen (leave \
         admin_listen unset to serve admin paths on the main listener)"
    );
    let flags = flag(|a| a.admin_listen = Some("systemd".to_owned()));
    assert_eq!(
        resolve_error(&flags, &no_env()),
        "admin_listen = systemd (from flag --admin-listen): systemd sockets serve the main listener only"
    );
    // Port 0 means "any free port" on each listener, so the two never clash (tests use this).
    let flags = flag(|a| {
        a.listen = Some("127.0.0.1:0".to_owned());
        a.admin_listen = Some("127.0.0.1:0".to_owned());
    });
    let s = resolve_ok(&flags, &no_env());
    assert_eq!(s.admin_listen, Some(tcp("127.0.0.1:0")));
}

#[test]
fn upstream_https_is_accepted() {
    for (text, host, port, explicit, shown) in [
        (
            "https://api.voximplant.com",
            "api.voximplant.com",
            443,
            false,
            "https://api.voximplant.com",
        ),
        (
            "https://api.voximplant.com/",
            "api.voximplant.com",
            443,
            false,
            "https://api.voximplant.com",
        ),
        (
            "https://API.Example.COM:8443",
            "api.example.com",
            8443,
            true,
            "https://API.Example.COM:8443",
        ),
        (
            "https://10.0.0.5",
            "10.0.0.5",
            443,
            false,
            "https://10.0.0.5",
        ),
        (
            "https://[2001:db8::1]:9443",
            "2001:db8::1",
            9443,
            true,
            "https://[2001:db8::1]:9443",
        ),
    ] {
        let s = resolve_ok(&flag(|a| a.upstream = Some(text.to_owned())), &no_env());
        assert_eq!(s.upstream.scheme, http::uri::Scheme::HTTPS, "{text}");
        assert_eq!(s.upstream.host, host, "{text}");
        assert_eq!(s.upstream.port, port, "{text}");
        assert_eq!(s.upstream.explicit_port, explicit, "{text}");
        assert_eq!(s.upstream.to_string(), shown, "{text}");
    }
}

#[test]
fn upstream_plain_http_only_for_loopback() {
    for (text, host, port) in [
        ("http://127.0.0.1:4000", "127.0.0.1", 4000),
        ("http://127.9.9.9", "127.9.9.9", 80),
        ("http://localhost:4000", "localhost", 4000),
        ("http://LOCALHOST:4000", "localhost", 4000),
        ("http://[::1]:4000", "::1", 4000),
    ] {
        let up = parse_upstream(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(up.scheme, http::uri::Scheme::HTTP);
        assert_eq!(up.host, host);
        assert_eq!(up.port, port);
    }
    let reason = "plain http:// is allowed only for a loopback upstream (tests); use https";
    for text in [
        "http://api.voximplant.com",
        "http://10.0.0.1:80",
        "http://[::2]:80",
        "http://localhost.evil.example",
        "http://127.0.0.1.evil.example",
    ] {
        assert_eq!(
            parse_upstream(text).map(|u| u.to_string()),
            Err(reason.to_owned()),
            "{text}"
        );
    }
    let env = HashMap::from([(keys::UPSTREAM, "http://api.voximplant.com")]);
    assert_eq!(
        resolve_error(&SettingsArgs::default(), &env),
        format!(
            "upstream = http://api.voximplant.com (from environment VOXPROXY_UPSTREAM): {reason}"
        )
    );
}

#[test]
fn upstream_with_path_query_userinfo_or_other_scheme_is_refused() {
    let path_reason =
        "must be a base URL without a path or query (voxproxy forwards /platform_api itself)";
    for (text, reason) in [
        (
            "https://api.voximplant.com/platform_api",
            path_reason.to_owned(),
        ),
        ("https://api.voximplant.com/x/", path_reason.to_owned()),
        ("https://api.voximplant.com/?a=b", path_reason.to_owned()),
        ("https://api.voximplant.com?a=b", path_reason.to_owned()),
        (
            "https://user:pw@api.voximplant.com",
            "must not contain user information".to_owned(),
        ),
        (
            "ftp://api.voximplant.com",
            "scheme `ftp` is not supported: use https".to_owned(),
        ),
        (
            "api.voximplant.com",
            "must be an absolute URL like https://api.voximplant.com".to_owned(),
        ),
    ] {
        assert_eq!(
            parse_upstream(text).map(|u| u.to_string()),
            Err(reason),
            "{text}"
        );
    }
    assert!(
        parse_upstream("not a url")
            .map(|u| u.to_string())
            .is_err_and(|e| e.starts_with("not a URL: ")),
    );
    let file = ConfigFile::new("upstream = \"https://api.voximplant.com/platform_api\"\n");
    assert_eq!(
        resolve_error(&file.flags(), &no_env()),
        format!(
            "upstream = \"https://api.voximplant.com/platform_api\" (from config file {}): {path_reason}",
            file.path.display()
        )
    );
}

#[test]
fn account_header_must_be_a_free_header_name() {
    for name in [
        "Authorization",
        "host",
        "X-Request-Id",
        "Connection",
        "Transfer-Encoding",
    ] {
        let err = resolve_error(
            &flag(|a| a.account_header = Some(name.to_owned())),
            &no_env(),
        );
        assert_eq!(
            err,
            format!(
                "account_header = {name} (from flag --account-header): `{}` is reserved; pick a \
                 header of your own",
                name.to_ascii_lowercase()
            )
        );
    }
    let err = resolve_error(
        &flag(|a| a.account_header = Some("bad header".to_owned())),
        &no_env(),
    );
    assert_eq!(
        err,
        "account_header = bad header (from flag --account-header): not a valid HTTP header name"
    );
}

#[test]
fn log_format_and_level_are_checked() {
    let s = resolve_ok(&flag(|a| a.log_format = Some("JSON".to_owned())), &no_env());
    assert_eq!(s.log_format, Some(LogFormat::Json));
    let err = resolve_error(&flag(|a| a.log_format = Some("xml".to_owned())), &no_env());
    assert_eq!(
        err,
        "log_format = xml (from flag --log-format): must be `json` or `text`"
    );

    let env = HashMap::from([(keys::LOG, "voxproxy=notalevel")]);
    let err = resolve_error(&SettingsArgs::default(), &env);
    assert!(
        err.starts_with(
            "log_level = voxproxy=notalevel (from environment VOXPROXY_LOG): not a tracing filter: "
        ),
        "{err}"
    );
}

#[test]
fn workers_range() {
    assert_eq!(
        resolve_ok(&flag(|a| a.workers = Some("1024".to_owned())), &no_env()).workers,
        Some(1024)
    );
    for text in ["0", "1025", "-2"] {
        let err = resolve_error(&flag(|a| a.workers = Some(text.to_owned())), &no_env());
        assert_eq!(
            err,
            format!("workers = {text} (from flag --workers): must be 1 to 1024")
        );
    }
    let err = resolve_error(&flag(|a| a.workers = Some("four".to_owned())), &no_env());
    assert_eq!(
        err,
        "workers = four (from flag --workers): must be a whole number"
    );
}

// ---------------------------------------------------------------------------------------------
// Token lifetimes

#[test]
fn token_ttl_range_is_60_to_3600_whole_seconds() {
    for (text, ok) in [
        ("60", true),
        ("3600", true),
        (" 600 ", true),
        ("59", false),
        ("3601", false),
    ] {
        let res = Settings::resolve(&flag(|a| a.token_ttl = Some(text.to_owned())), &no_env());
        assert_eq!(res.is_ok(), ok, "{text:?}");
    }
    for (text, reason) in [
        ("59", "must be at least 60"),
        ("0", "must be at least 60"),
        ("-100", "must be at least 60"),
        ("3601", "must be at most 3600"),
        ("600.5", "must be a whole number"),
        ("10m", "must be a whole number"),
    ] {
        let err = resolve_error(&flag(|a| a.token_ttl = Some(text.to_owned())), &no_env());
        assert_eq!(
            err,
            format!("token_ttl = {text} (from flag --token-ttl): {reason}")
        );
        // `voxproxy token --ttl` shares the rule.
        assert_eq!(parse_ttl_text(text), Err(reason.to_owned()));
    }
    assert_eq!(parse_ttl_text("120"), Ok(120));
    let file = ConfigFile::new("token_ttl = 600.0\n");
    assert_eq!(
        resolve_error(&file.flags(), &no_env()),
        format!(
            "token_ttl = 600.0 (from config file {}): must be an integer, not float",
            file.path.display()
        )
    );
}

#[test]
fn refresh_margin_may_not_exceed_half_the_ttl() {
    let flags = flag(|a| {
        a.token_ttl = Some("600".to_owned());
        a.token_refresh_before = Some("301".to_owned());
    });
    assert_eq!(
        resolve_error(&flags, &no_env()),
        "token_refresh_before = 301 (from flag --token-refresh-before): must be at most half of \
         token_ttl (600), so at most 300"
    );
    // Exactly half is fine.
    let flags = flag(|a| {
        a.token_ttl = Some("600".to_owned());
        a.token_refresh_before = Some("300".to_owned());
    });
    assert_eq!(resolve_ok(&flags, &no_env()).token_refresh_before, 300);

    // The margin's origin is named even when the TTL came from elsewhere.
    let file = ConfigFile::new("token_refresh_before = 100\n");
    let env = HashMap::from([(keys::TOKEN_TTL, "120")]);
    assert_eq!(
        resolve_error(&file.flags(), &env),
        format!(
            "token_refresh_before = 100 (from config file {}): must be at most half of token_ttl \
             (120), so at most 60",
            file.path.display()
        )
    );
}

#[test]
fn refresh_margin_must_be_a_positive_whole_number() {
    for text in ["0", "-5", "99999999999"] {
        let err = resolve_error(
            &flag(|a| a.token_refresh_before = Some(text.to_owned())),
            &no_env(),
        );
        assert_eq!(
            err,
            format!(
                "token_refresh_before = {text} (from flag --token-refresh-before): must be a whole \
                 number of seconds, at least 1"
            )
        );
    }
}

#[test]
fn default_refresh_margin_shrinks_with_a_short_ttl() {
    for (ttl, margin) in [
        ("60", 30),
        ("120", 60),
        ("500", 250),
        ("600", 300),
        ("601", 300),
        ("3600", 300),
    ] {
        let s = resolve_ok(&flag(|a| a.token_ttl = Some(ttl.to_owned())), &no_env());
        assert_eq!(s.token_refresh_before, margin, "ttl {ttl}");
        assert_eq!(s.origin("token_refresh_before"), Origin::Default);
    }
}

// ---------------------------------------------------------------------------------------------
// TLS

#[test]
fn tls_cert_and_key_come_together() {
    let err = resolve_error(&flag(|a| a.tls_cert = Some("/c.pem".to_owned())), &no_env());
    assert_eq!(
        err,
        "tls_cert = /c.pem (from flag --tls-cert): tls_key must be set too"
    );

    let env = HashMap::from([(keys::TLS_KEY, "/k.pem")]);
    let err = resolve_error(&SettingsArgs::default(), &env);
    assert_eq!(
        err,
        "tls_key = /k.pem (from environment VOXPROXY_TLS_KEY): tls_cert must be set too"
    );

    let flags = flag(|a| {
        a.tls_cert = Some("/c.pem".to_owned());
        a.tls_key = Some("/k.pem".to_owned());
    });
    let s = resolve_ok(&flags, &no_env());
    assert_eq!(s.tls_cert, Some(PathBuf::from("/c.pem")));
    assert_eq!(s.tls_key, Some(PathBuf::from("/k.pem")));
}

#[test]
fn client_ca_needs_tls() {
    let err = resolve_error(
        &flag(|a| a.tls_client_ca = Some("/ca.pem".to_owned())),
        &no_env(),
    );
    assert_eq!(
        err,
        "tls_client_ca = /ca.pem (from flag --tls-client-ca): client certificates need TLS on the \
         main listener: set tls_cert and tls_key"
    );
}

#[test]
fn empty_paths_are_refused() {
    let err = resolve_error(&flag(|a| a.clients = Some(String::new())), &no_env());
    assert_eq!(err, "clients =  (from flag --clients): must not be empty");
}

// ---------------------------------------------------------------------------------------------
// Credentials paths

#[test]
fn credentials_environment_holds_exactly_one_path() {
    // A comma or colon is part of the one path, not a separator.
    for path in [
        "/etc/voximplant/credentials.json",
        "/tmp/a,b.json",
        "/tmp/a:b.json",
    ] {
        let env = HashMap::from([(keys::CREDENTIALS, path)]);
        let s = resolve_ok(&SettingsArgs::default(), &env);
        assert_eq!(s.credentials, vec![PathBuf::from(path)]);
        assert_eq!(s.origin("credentials"), Origin::Env(keys::CREDENTIALS));
    }
    let env = HashMap::from([(keys::CREDENTIALS, "")]);
    assert_eq!(
        resolve_error(&SettingsArgs::default(), &env),
        "credentials =  (from environment VOXIMPLANT_CREDENTIALS): must name at least one \
         credentials file, and no empty path"
    );
}

#[test]
fn repeated_credentials_flag_keeps_order_and_beats_env_and_file() {
    let file = ConfigFile::new("credentials = [\"/file/a.json\", \"/file/b.json\"]\n");
    let env = HashMap::from([(keys::CREDENTIALS, "/env/one.json")]);
    let flags = SettingsArgs {
        credentials: vec![
            "/flag/first.json".to_owned(),
            "/flag/second.json".to_owned(),
        ],
        ..file.flags()
    };
    let s = resolve_ok(&flags, &env);
    assert_eq!(
        s.credentials,
        vec![
            PathBuf::from("/flag/first.json"),
            PathBuf::from("/flag/second.json")
        ]
    );
    assert_eq!(s.origin("credentials"), Origin::Flag("--credentials"));

    let s = resolve_ok(&file.flags(), &env);
    assert_eq!(s.credentials, vec![PathBuf::from("/env/one.json")]);

    let s = resolve_ok(&file.flags(), &no_env());
    assert_eq!(
        s.credentials,
        vec![PathBuf::from("/file/a.json"), PathBuf::from("/file/b.json")]
    );
    assert_eq!(s.origin("credentials"), Origin::File(file.path.clone()));
}

#[test]
fn credentials_in_file_may_be_one_string_but_not_empty() {
    let file = ConfigFile::new("credentials = \"/one.json\"\n");
    assert_eq!(
        resolve_ok(&file.flags(), &no_env()).credentials,
        vec![PathBuf::from("/one.json")]
    );
    let p = |f: &ConfigFile| f.path.display().to_string();
    let file = ConfigFile::new("credentials = []\n");
    assert_eq!(
        resolve_error(&file.flags(), &no_env()),
        format!(
            "credentials = [] (from config file {}): must name at least one credentials file, and \
             no empty path",
            p(&file)
        )
    );
    let file = ConfigFile::new("credentials = [\"/a.json\", 5]\n");
    assert_eq!(
        resolve_error(&file.flags(), &no_env()),
        format!(
            "credentials = [\"/a.json\", 5] (from config file {}): `5` is not a path string",
            p(&file)
        )
    );
    let flags = flag(|a| a.credentials = vec!["/a.json".to_owned(), String::new()]);
    assert_eq!(
        resolve_error(&flags, &no_env()),
        "credentials = /a.json,  (from flag --credentials): must name at least one credentials \
         file, and no empty path"
    );
}

// ---------------------------------------------------------------------------------------------
// The listen rule

fn settings_with(f: impl FnOnce(&mut SettingsArgs)) -> Settings {
    resolve_ok(&flag(f), &no_env())
}

#[test]
fn loopback_and_unix_listeners_pass_the_listen_rule() {
    let s = settings_with(|_| {});
    for addr in [
        "127.0.0.1:8080",
        "127.1.2.3:1",
        "[::1]:8080",
        "localhost:9000",
        "unix:/run/voxproxy.sock",
        "systemd",
    ] {
        let addr = parse_listen(addr).expect("valid address");
        assert!(addr.is_loopback(), "{addr}");
        assert!(s.check_listen_rule(&addr).is_ok(), "{addr}");
        assert!(!s.listen_is_open(&addr), "{addr}");
    }
}

#[test]
fn non_loopback_listener_is_refused_naming_listen_and_both_ways_out() {
    let s = settings_with(|a| a.listen = Some("0.0.0.0:8080".to_owned()));
    let err = s
        .check_listen_rule(&s.listen)
        .expect_err("0.0.0.0 without clients or override");
    match &err {
        SettingError::Invalid {
            key, value, origin, ..
        } => {
            assert_eq!(*key, "listen");
            assert_eq!(value, "0.0.0.0:8080");
            assert_eq!(*origin, Origin::Flag("--listen"));
        }
        other => panic!("unexpected error kind: {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "listen = 0.0.0.0:8080 (from flag --listen): not a loopback address: anyone who can reach \
         it could act with your Voximplant key; configure gateway clients (clients) or set \
         allow_unauthenticated_network = true (--allow-unauthenticated-network) to accept that"
    );

    // The origin follows the layer that set it.
    let file = ConfigFile::new("listen = \"[2001:db8::5]:80\"\n");
    let s = resolve_ok(&file.flags(), &no_env());
    let err = s.check_listen_rule(&s.listen).expect_err("public IPv6");
    assert!(
        err.to_string().starts_with(&format!(
            "listen = [2001:db8::5]:80 (from config file {}): not a loopback address",
            file.path.display()
        )),
        "{err}"
    );
    // A systemd socket is judged by its own address, with `listen`'s origin.
    let s = settings_with(|a| a.listen = Some("systemd".to_owned()));
    let err = s
        .check_listen_rule(&tcp("192.0.2.1:80"))
        .expect_err("passed socket is public");
    assert!(
        err.to_string()
            .starts_with("listen = 192.0.2.1:80 (from flag --listen): "),
        "{err}"
    );
}

#[test]
fn non_loopback_listener_is_allowed_by_override_or_clients() {
    let s = settings_with(|a| {
        a.listen = Some("0.0.0.0:8080".to_owned());
        a.allow_unauthenticated_network = Some("true".to_owned());
    });
    assert!(s.check_listen_rule(&s.listen).is_ok());
    assert!(
        s.listen_is_open(&s.listen),
        "an override-only open listener deserves the warning"
    );

    let env = HashMap::from([(keys::ALLOW_UNAUTHENTICATED_NETWORK, "on")]);
    let s = resolve_ok(&flag(|a| a.listen = Some("10.0.0.1:80".to_owned())), &env);
    assert!(s.check_listen_rule(&s.listen).is_ok());

    let s = settings_with(|a| {
        a.listen = Some("0.0.0.0:8080".to_owned());
        a.clients = Some("/etc/voxproxy/clients.toml".to_owned());
    });
    assert!(s.check_listen_rule(&s.listen).is_ok());
    assert!(
        !s.listen_is_open(&s.listen),
        "gateway clients authenticate every request"
    );

    // An explicit `false` does not open it.
    let s = settings_with(|a| {
        a.listen = Some("0.0.0.0:8080".to_owned());
        a.allow_unauthenticated_network = Some("no".to_owned());
    });
    assert!(s.check_listen_rule(&s.listen).is_err());
}

#[test]
fn admin_listener_is_not_subject_to_the_listen_rule() {
    let s = settings_with(|a| a.admin_listen = Some("0.0.0.0:9090".to_owned()));
    assert!(s.check_listen_rule(&s.listen).is_ok());
}

// ---------------------------------------------------------------------------------------------
// Small parsers

#[test]
fn account_ids_are_positive_decimal_integers() {
    assert_eq!(parse_account_id("1"), Some(1));
    assert_eq!(parse_account_id("4242424"), Some(4_242_424));
    assert_eq!(
        parse_account_id("9999999999999999999"),
        Some(9_999_999_999_999_999_999)
    );
    for bad in [
        "",
        "0",
        "000",
        "-1",
        "+1",
        " 1",
        "1 ",
        "1e3",
        "0x10",
        "12345678901234567890",
    ] {
        assert_eq!(parse_account_id(bad), None, "{bad:?}");
    }
}

#[test]
fn origins_display_for_messages() {
    assert_eq!(Origin::Flag("--listen").to_string(), "flag --listen");
    assert_eq!(
        Origin::Env(keys::LISTEN).to_string(),
        "environment VOXPROXY_LISTEN"
    );
    assert_eq!(
        Origin::File(Path::new("/etc/voxproxy.toml").to_owned()).to_string(),
        "config file /etc/voxproxy.toml"
    );
    assert_eq!(Origin::Default.to_string(), "default");
}

mod declared;
mod syntax;
