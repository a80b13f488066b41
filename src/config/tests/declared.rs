//! What the declarations generate: the table's consistency, reload's restart list, and
//! `--print-config`, which must reproduce the settings it prints.

use super::*;

#[test]
fn declarations_are_consistent() {
    let mut keys: Vec<&str> = SETTINGS.iter().map(|d| d.key).collect();
    assert_eq!(keys.len(), 26, "the contract's table has 26 settings");
    for d in SETTINGS {
        assert_eq!(
            d.flag,
            format!("--{}", d.key.replace('_', "-")),
            "{}",
            d.key
        );
        assert!(
            d.env.starts_with("VOXPROXY_") || d.env == keys::CREDENTIALS,
            "{}",
            d.env
        );
        assert!(
            !d.help.is_empty() && !d.default_text.is_empty(),
            "{}",
            d.key
        );
        assert!(d.used_by(Cmd::Serve) && d.used_by(Cmd::Check), "{}", d.key);
    }
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), SETTINGS.len(), "setting names are unique");
    assert_eq!(keys::LOG, "VOXPROXY_LOG");
    assert_eq!(keys::CREDENTIALS, "VOXIMPLANT_CREDENTIALS");
    let repeated: Vec<&str> = SETTINGS
        .iter()
        .filter(|d| d.repeated)
        .map(|d| d.key)
        .collect();
    assert_eq!(repeated, ["credentials"]);
    let switches: Vec<&str> = SETTINGS
        .iter()
        .filter(|d| d.switch)
        .map(|d| d.key)
        .collect();
    assert_eq!(switches, ["allow_unauthenticated_network"]);
    assert_eq!(file_keys().count(), 25, "every setting but config");
    let token: Vec<&str> = SETTINGS
        .iter()
        .filter(|d| d.used_by(Cmd::Token))
        .map(|d| d.key)
        .collect();
    assert_eq!(token, ["config", "credentials", "log_format", "log_level"]);
    let client: Vec<&str> = SETTINGS
        .iter()
        .filter(|d| d.used_by(Cmd::Client))
        .map(|d| d.key)
        .collect();
    assert_eq!(client, ["config", "credentials", "clients"]);
}

#[test]
fn only_config_and_credentials_are_live() {
    let live: Vec<&str> = SETTINGS.iter().filter(|d| d.live).map(|d| d.key).collect();
    assert_eq!(live, ["config", "credentials"]);
}

#[test]
fn a_reload_names_the_settings_that_need_a_restart() {
    let old = resolve_ok(&SettingsArgs::default(), &no_env());
    let env = HashMap::from([
        (keys::LISTEN, "127.0.0.1:9999"),
        (keys::CREDENTIALS, "/new/credentials.json"),
        (keys::ACCOUNT_RATE, "5/s"),
        (keys::UPSTREAM, "https://api.voximplant.com:443"),
    ]);
    let new = resolve_ok(&SettingsArgs::default(), &env);
    assert_eq!(
        restart_needed(&old, &new),
        ["listen", "upstream", "account_rate"]
    );
    assert!(restart_needed(&old, &old.clone()).is_empty());
    // Letter case of the upstream's host is not a change.
    let same = resolve_ok(
        &flag(|a| a.upstream = Some("https://API.voximplant.com".to_owned())),
        &no_env(),
    );
    assert!(restart_needed(&old, &same).is_empty());

    // The live settings are applied, with their origins; the rest keep what the process runs.
    let mut running = old.clone();
    running.apply_live(new);
    assert_eq!(
        running.credentials,
        vec![PathBuf::from("/new/credentials.json")]
    );
    assert_eq!(
        running.origin("credentials"),
        Origin::Env(keys::CREDENTIALS)
    );
    assert_eq!(running.listen, old.listen);
    assert_eq!(running.origin("listen"), Origin::Default);
    assert_eq!(running.account_rate, None);
}

/// Settings from all three sources, most of them away from their defaults.
fn varied_settings(dir: &Path) -> (Settings, ConfigFile) {
    let d = dir.display();
    let file = ConfigFile::new(&format!(
        "credentials = [\"{d}/a.json\", \"{d}/b.json\"]\nallowed_accounts = [1, 22]\n\
         max_body_bytes = \"3MiB\"\nshutdown_grace = 0\nlog_level = \"voxproxy=debug,info\"\n\
         account_rate = \"100/m; burst 20\"\nclients = \"{d}/clients.toml\"\n"
    ));
    let env = HashMap::from([
        (keys::UPSTREAM, "https://api.example.test:8443"),
        (keys::CONNECT_TIMEOUT, "250ms"),
        (keys::ACCOUNT_RATE_WAIT, "1.5"),
        (keys::LIMITS_REDIS, "rediss://cache:6380/2"),
        (keys::TOKEN_TTL, "900"),
    ]);
    let flags = SettingsArgs {
        listen: Some("0.0.0.0:8443".to_owned()),
        admin_listen: Some("unix:/run/voxproxy-admin.sock".to_owned()),
        account_header: Some("X-Tenant".to_owned()),
        max_body_bytes: None,
        request_timeout: Some("0.3".to_owned()),
        log_format: Some("json".to_owned()),
        workers: Some("2".to_owned()),
        allow_unauthenticated_network: Some("yes".to_owned()),
        tls_cert: Some(format!("{d}/cert.pem")),
        tls_key: Some(format!("{d}/key.pem")),
        tls_client_ca: Some(format!("{d}/ca.pem")),
        client_idle_timeout: Some("2m".to_owned()),
        ..file.flags()
    };
    (resolve_ok(&flags, &env), file)
}

#[test]
fn print_config_reproduces_the_settings() {
    let dir = tempfile::tempdir().expect("temp dir");
    for original in [
        varied_settings(dir.path()).0,
        resolve_ok(&SettingsArgs::default(), &no_env()),
    ] {
        let text = original.to_config_toml();
        let table: toml::Table = text.parse().unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(!table.contains_key("config"), "a file may not name a file");
        let printed = ConfigFile::new(&text);
        let again = resolve_ok(&printed.flags(), &no_env());
        let changed: Vec<&str> = original.changed(&again).iter().map(|d| d.key).collect();
        assert_eq!(changed, ["config"], "{text}");
        for key in file_keys() {
            let origin = again.origin(key);
            if table.contains_key(key) {
                assert_eq!(origin, Origin::File(printed.path.clone()), "{key}");
            } else {
                assert_eq!(origin, Origin::Default, "{key} has no value");
            }
        }
    }
}

#[test]
fn print_config_names_every_origin() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (s, file) = varied_settings(dir.path());
    let text = s.to_config_toml();
    let f = file.path.display();
    for line in [
        format!(
            "# config = \"{f}\"  # flag --config (set by --config or VOXPROXY_CONFIG, not in a file)"
        ),
        format!("allowed_accounts = [1, 22]  # file {f}"),
        format!("max_body_bytes = \"3MiB\"  # file {f}"),
        "listen = \"0.0.0.0:8443\"  # flag --listen".to_owned(),
        "connect_timeout = 0.25  # env VOXPROXY_CONNECT_TIMEOUT".to_owned(),
        "request_timeout = 0.3  # flag --request-timeout".to_owned(),
        format!("shutdown_grace = 0  # file {f}"),
        "account_rate_wait = 1.5  # env VOXPROXY_ACCOUNT_RATE_WAIT".to_owned(),
        format!("account_rate = \"100/m; burst 20\"  # file {f}"),
        "limits_redis = \"rediss://cache:6380/2\"  # env VOXPROXY_LIMITS_REDIS".to_owned(),
        "client_idle_timeout = 120  # flag --client-idle-timeout".to_owned(),
        "token_refresh_before = 300  # default".to_owned(),
        "allow_unauthenticated_network = true  # flag --allow-unauthenticated-network".to_owned(),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "no line {line:?} in\n{text}"
        );
    }
    let defaults = resolve_ok(&SettingsArgs::default(), &no_env()).to_config_toml();
    for line in [
        "# config = ...  # default: none",
        "credentials = [\"credentials.json\"]  # default",
        "# admin_listen = ...  # default: none",
        "# log_format = ...  # default: text on a terminal, json otherwise",
        "# workers = ...  # default: number of CPUs the process may use",
        "max_body_bytes = \"64MiB\"  # default",
        "connect_timeout = 5  # default",
        "account_rate_wait = 0.5  # default",
        "# limits_redis = ...  # default: none",
    ] {
        assert!(
            defaults.lines().any(|l| l == line),
            "no line {line:?} in\n{defaults}"
        );
    }
    // Every setting has exactly one line.
    for d in SETTINGS {
        let lines = defaults.lines().filter(|l| {
            let l = l.trim_start_matches("# ");
            l.strip_prefix(d.key)
                .is_some_and(|rest| rest.starts_with(" = "))
        });
        assert_eq!(lines.count(), 1, "{}", d.key);
    }
}
