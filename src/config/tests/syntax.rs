//! Value syntax: every kind of value parses the same from a flag, the environment and the file;
//! sizes, durations, rates and Redis URLs accepted and refused; a Redis password never shown;
//! typos in file keys and environment variables answered with the nearest name.

use super::*;

/// Resolve one setting given as `text` from a flag and from the environment, and as `toml` (a
/// TOML value) from the file; every source must give the same settings (the file adds only
/// `config`). Returns the flag's result.
fn same_from_every_source_as(key: &str, text: &str, toml: &str) -> Settings {
    let d = *SETTINGS
        .iter()
        .find(|d| d.key == key)
        .expect("a declared setting");
    let from_flag = resolve_ok(
        &SettingsArgs::from_values(|k| {
            if k == key {
                vec![text.to_owned()]
            } else {
                vec![]
            }
        }),
        &no_env(),
    );
    let from_env = resolve_ok(&SettingsArgs::default(), &HashMap::from([(d.env, text)]));
    let file = ConfigFile::new(&format!("{key} = {toml}\n"));
    let from_file = resolve_ok(&file.flags(), &no_env());
    assert_eq!(from_flag.origin(key), Origin::Flag(d.flag));
    assert_eq!(from_env.origin(key), Origin::Env(d.env));
    assert_eq!(from_file.origin(key), Origin::File(file.path.clone()));
    let names = |v: Vec<&Decl>| v.into_iter().map(|d| d.key).collect::<Vec<_>>();
    assert_eq!(
        names(from_flag.changed(&from_env)),
        Vec::<&str>::new(),
        "{key} = {text}"
    );
    assert_eq!(
        names(from_flag.changed(&from_file)),
        ["config"],
        "{key} = {toml}"
    );
    from_flag
}

/// [`same_from_every_source_as`] with the file holding the same text as a TOML string (how sizes,
/// durations, rates, paths and addresses may be written there).
fn same_from_every_source(key: &str, text: &str) -> Settings {
    same_from_every_source_as(key, text, &toml::Value::String(text.to_owned()).to_string())
}

/// The one error for `key = text` from each source (flag, environment, file), after checking
/// that each names the setting, the value and its origin, and that all give the same reason.
fn same_error_from_every_source(key: &str, text: &str) -> [String; 3] {
    let d = *SETTINGS
        .iter()
        .find(|d| d.key == key)
        .expect("a declared setting");
    let flags = SettingsArgs::from_values(|k| {
        if k == key {
            vec![text.to_owned()]
        } else {
            vec![]
        }
    });
    let quoted = toml::Value::String(text.to_owned());
    let file = ConfigFile::new(&format!("{key} = {quoted}\n"));
    let errors = [
        resolve_error(&flags, &no_env()),
        resolve_error(&SettingsArgs::default(), &HashMap::from([(d.env, text)])),
        resolve_error(&file.flags(), &no_env()),
    ];
    let origins = [
        format!("flag {}", d.flag),
        format!("environment {}", d.env),
        format!("config file {}", file.path.display()),
    ];
    let reasons = errors.iter().zip(&origins).map(|(err, origin)| {
        let (_, reason) = err
            .split_once(&format!(" (from {origin}): "))
            .unwrap_or_else(|| panic!("{err} names {origin}"));
        assert!(err.starts_with(&format!("{key} = ")), "{err}");
        reason.to_owned()
    });
    let reasons: Vec<String> = reasons.collect();
    assert!(reasons.iter().all(|r| *r == reasons[0]), "{errors:#?}");
    errors
}

/// The reason an error gives, after its origin.
fn reason_in(err: &str) -> &str {
    err.split_once("): ").map_or(err, |(_, r)| r)
}

#[test]
fn every_kind_of_value_parses_the_same_from_flag_env_and_file() {
    for (key, text) in [
        ("credentials", "/etc/voximplant/a.json"),
        ("listen", "localhost:9000"),
        ("admin_listen", "unix:/run/admin.sock"),
        ("upstream", "https://api.example.test:8443"),
        ("upstream_ca", "/ca.pem"),
        ("account_header", "X-Tenant"),
        ("connect_timeout", "500ms"),
        ("connect_timeout", "5s"),
        ("connect_timeout", "2m"),
        ("connect_timeout", "1h"),
        ("connect_timeout", "0.25"),
        ("connect_timeout", "1.5s"),
        ("request_timeout", "90 s"),
        ("max_body_bytes", "64MiB"),
        ("max_body_bytes", "512KiB"),
        ("max_body_bytes", "1GiB"),
        ("max_body_bytes", "1000"),
        ("shutdown_grace", "0"),
        ("log_format", "json"),
        ("log_level", "voxproxy=debug,info"),
        ("clients", "/clients.toml"),
        ("account_rate", "10/s"),
        ("account_rate", "600/m; burst 50"),
        ("account_rate", "5/h"),
        ("account_rate_wait", "0"),
        ("account_rate_wait", "250ms"),
        ("limits_redis", "redis://redis:6379/1"),
        ("limits_redis", "rediss://user@[::1]:6380"),
        ("client_idle_timeout", "2m"),
    ] {
        same_from_every_source(key, text);
    }
    // Whole numbers, booleans and lists take their TOML type in the file.
    for (key, text, toml) in [
        ("token_ttl", "600", "600"),
        ("token_refresh_before", "60", "60"),
        ("workers", "3", "3"),
        ("allow_unauthenticated_network", "on", "true"),
        ("allowed_accounts", "5, 6", "[5, 6]"),
        ("connect_timeout", "1.5", "1.5"),
        ("max_body_bytes", "4096", "4096"),
    ] {
        same_from_every_source_as(key, text, toml);
    }
}

#[test]
fn values_with_units_mean_what_they_say() {
    let get = |key, text| same_from_every_source(key, text);
    assert_eq!(
        get("connect_timeout", "500ms").connect_timeout,
        Duration::from_millis(500)
    );
    assert_eq!(
        get("connect_timeout", "5s").connect_timeout,
        Duration::from_secs(5)
    );
    assert_eq!(
        get("connect_timeout", "2m").connect_timeout,
        Duration::from_secs(120)
    );
    assert_eq!(
        get("connect_timeout", "1h").connect_timeout,
        Duration::from_secs(3600)
    );
    assert_eq!(
        get("connect_timeout", "1.5s").connect_timeout,
        Duration::from_millis(1500)
    );
    assert_eq!(
        get("connect_timeout", "0.3").connect_timeout,
        Duration::from_millis(300)
    );
    assert_eq!(
        get("request_timeout", "90 s").request_timeout,
        Duration::from_secs(90)
    );
    assert_eq!(
        get("account_rate_wait", "0").account_rate_wait,
        Duration::ZERO
    );
    assert_eq!(
        get("client_idle_timeout", "2m").client_idle_timeout,
        Duration::from_secs(120)
    );
    assert_eq!(get("max_body_bytes", "64MiB").max_body_bytes, 64 << 20);
    assert_eq!(get("max_body_bytes", "512KiB").max_body_bytes, 512 << 10);
    assert_eq!(get("max_body_bytes", "1GiB").max_body_bytes, 1 << 30);
    let rate = get("account_rate", "600/m; burst 50")
        .account_rate
        .expect("a rate");
    assert_eq!(
        (rate.n.get(), rate.per, rate.burst.get()),
        (600, Per::Minute, 50)
    );
    let rate = get("account_rate", "5/h").account_rate.expect("a rate");
    assert_eq!(
        (rate.n.get(), rate.per, rate.burst.get()),
        (5, Per::Hour, 5)
    );
    assert_eq!(rate.interval(), Duration::from_secs(720));
}

#[test]
fn sizes_and_durations_may_be_numbers_or_strings_in_the_file() {
    let file = ConfigFile::new(
        "max_body_bytes = \"64MiB\"\nconnect_timeout = \"500ms\"\nrequest_timeout = 2.5\n\
         shutdown_grace = \"2m\"\naccount_rate_wait = 1\nclient_idle_timeout = \"1h\"\n",
    );
    let s = resolve_ok(&file.flags(), &no_env());
    assert_eq!(s.max_body_bytes, 64 << 20);
    assert_eq!(s.connect_timeout, Duration::from_millis(500));
    assert_eq!(s.request_timeout, Duration::from_millis(2500));
    assert_eq!(s.shutdown_grace, Duration::from_secs(120));
    assert_eq!(s.account_rate_wait, Duration::from_secs(1));
    assert_eq!(s.client_idle_timeout, Duration::from_secs(3600));
    let file = ConfigFile::new("max_body_bytes = 1048576\n");
    assert_eq!(resolve_ok(&file.flags(), &no_env()).max_body_bytes, 1 << 20);
}

#[test]
fn bad_durations_are_refused_the_same_from_every_source() {
    for (key, text, reason) in [
        ("connect_timeout", "0ms", "must be more than zero seconds"),
        ("connect_timeout", "5 min", SECS_SYNTAX),
        ("connect_timeout", "5sec", SECS_SYNTAX),
        ("connect_timeout", "1h30m", SECS_SYNTAX),
        ("connect_timeout", "5S", SECS_SYNTAX),
        ("connect_timeout", "2d", SECS_SYNTAX),
        ("connect_timeout", "ms", SECS_SYNTAX),
        ("connect_timeout", "-5s", "must be more than zero seconds"),
        ("connect_timeout", "0.5ms", "must be at least 0.001 seconds"),
        (
            "connect_timeout",
            "25h",
            "must be at most 86400 seconds (a day)",
        ),
        ("account_rate_wait", "-1ms", "must be zero or more seconds"),
        ("client_idle_timeout", "0", "must be more than zero seconds"),
    ] {
        let [flag, env, file] = same_error_from_every_source(key, text);
        assert_eq!(reason_in(&flag), reason, "{flag}");
        assert!(flag.starts_with(&format!("{key} = {text} (")), "{flag}");
        assert!(env.starts_with(&format!("{key} = {text} (")), "{env}");
        assert!(file.starts_with(&format!("{key} = \"{text}\" (")), "{file}");
    }
}

#[test]
fn bad_sizes_are_refused_the_same_from_every_source() {
    let syntax = "must be a number of bytes, optionally with KiB, MiB or GiB";
    for (text, reason) in [
        ("64MB", syntax),
        ("1.5MiB", syntax),
        ("1TiB", syntax),
        ("64 mebibytes", syntax),
        ("0KiB", "must be more than zero"),
        ("18446744073709551615GiB", "is too large"),
    ] {
        let [flag, _, _] = same_error_from_every_source("max_body_bytes", text);
        assert_eq!(reason_in(&flag), reason, "{flag}");
    }
}

#[test]
fn rates_accept_the_contract_syntax_and_refuse_the_rest() {
    for (text, shown) in [
        ("20/s", "20/s"),
        ("100/m", "100/m"),
        ("3/h", "3/h"),
        (" 5 / s ", "5/s"),
        ("10/s; burst 30", "10/s; burst 30"),
        ("10/s;burst 30", "10/s; burst 30"),
        ("10/s ;  burst   1", "10/s; burst 1"),
        ("10/s; burst 10", "10/s"),
    ] {
        let rate = Rate::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(rate.to_string(), shown);
        // Display round-trips.
        assert_eq!(Rate::parse(&rate.to_string()), Ok(rate));
    }
    for text in [
        "",
        "20",
        "20/d",
        "20/sec",
        "20/S",
        "0/s",
        "1.5/s",
        "+2/s",
        "20/s; burst 0",
        "20/s; burst",
        "20/s; burst x",
        "20/s; burst 5; burst 6",
        "20/s burst 5",
        "20/s;",
        "20/s; max 5",
        "99999999999/s",
    ] {
        let err = Rate::parse(text).expect_err(text);
        assert!(
            err.starts_with(&format!("`{text}` is not a rate: write N/s, N/m or N/h")),
            "{err}"
        );
    }
    let [flag, _, _] = same_error_from_every_source("account_rate", "5/d");
    assert!(
        reason_in(&flag).starts_with("`5/d` is not a rate"),
        "{flag}"
    );
}

/// A Redis URL's parts, on one line: `tls user password host port db`.
fn redis_parts(url: &RedisUrl) -> String {
    let (user, password) = (url.user.as_deref(), url.password());
    let (host, port, db) = (&url.host, url.port, url.db);
    format!("{} {user:?} {password:?} {host} {port} {db}", url.tls)
}

#[test]
fn redis_urls_accept_the_contract_syntax() {
    for (text, parts, shown) in [
        (
            "redis://redis:6379",
            "false None None redis 6379 0",
            "redis://redis:6379/0",
        ),
        (
            "redis://10.0.0.5:7000/3",
            "false None None 10.0.0.5 7000 3",
            "redis://10.0.0.5:7000/3",
        ),
        (
            "rediss://cache:6380/",
            "true None None cache 6380 0",
            "rediss://cache:6380/0",
        ),
        (
            "redis://:s3cret@redis:6379/1",
            "false None Some(\"s3cret\") redis 6379 1",
            "redis://:***@redis:6379/1",
        ),
        (
            "redis://app:p@ss:w0rd@Redis:6379",
            "false Some(\"app\") Some(\"p@ss:w0rd\") redis 6379 0",
            "redis://app:***@redis:6379/0",
        ),
        (
            "redis://app@redis:6379",
            "false Some(\"app\") None redis 6379 0",
            "redis://app@redis:6379/0",
        ),
        (
            "redis://[::1]:6379",
            "false None None ::1 6379 0",
            "redis://[::1]:6379/0",
        ),
        // No port: Redis's own, as its clients assume.
        (
            "redis://redis",
            "false None None redis 6379 0",
            "redis://redis:6379/0",
        ),
    ] {
        let url = RedisUrl::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(redis_parts(&url), parts, "{text}");
        assert_eq!(url.to_string(), shown);
        assert_eq!(format!("{url:?}"), format!("RedisUrl({shown})"));
    }
}

#[test]
fn redis_urls_refuse_the_rest_without_repeating_them() {
    for text in [
        "http://redis:6379",
        "redis:6379",
        "redis://",
        "redis://:s3cr3t@",
        "redis://bob:s3cr3t@redis:0",
        "redis://bob:s3cr3t@redis:99999",
        "redis://bob:s3cr3t@redis:port",
        "redis://bob:s3cr3t@redis:6379/db",
        "redis://bob:s3cr3t@redis:6379/0?timeout=1",
        "redis://bob:s3cr3t@[::1:6379",
    ] {
        let err = RedisUrl::parse(text).expect_err(text);
        assert!(!err.contains("s3cr3t") && !err.contains("bob"), "{err}");
    }
}

#[test]
fn a_redis_password_never_shows_in_errors() {
    let secret = "hunter2-secret";
    for text in [
        format!("redis://user:{secret}@redis:0"),
        format!("redis://:{secret}@redis:6379/x"),
        format!("redis://user:{secret}@redis:6379?x=1"),
        format!("redis://u:{secret}@with@at:port"),
        format!("user:{secret}@redis:6379"),
        format!("{secret}@redis:6379"),
        format!("http://user:{secret}@redis:6379"),
    ] {
        for err in same_error_from_every_source("limits_redis", &text) {
            assert!(!err.contains(secret), "the password leaked: {err}");
            assert!(err.contains("***"), "{err}");
        }
    }
    // The upstream refuses user information, and does not repeat it either.
    let env = HashMap::from([(keys::UPSTREAM, "https://me:hunter2@api.voximplant.com")]);
    let err = resolve_error(&SettingsArgs::default(), &env);
    assert_eq!(
        err,
        "upstream = https://me:***@api.voximplant.com (from environment VOXPROXY_UPSTREAM): must \
         not contain user information"
    );
}

#[test]
fn a_redis_password_never_shows_in_settings() {
    let env = HashMap::from([(keys::LIMITS_REDIS, "redis://app:hunter2@redis:6379/0")]);
    let s = resolve_ok(&SettingsArgs::default(), &env);
    let url = s.limits_redis.as_ref().expect("set");
    assert_eq!(url.password(), Some("hunter2"), "the client still gets it");
    assert!(!format!("{s:?}").contains("hunter2"));
    let printed = s.to_config_toml();
    assert!(!printed.contains("hunter2"), "{printed}");
    assert!(
        printed.contains(
            "limits_redis = \"redis://app:***@redis:6379/0\"  # env VOXPROXY_LIMITS_REDIS"
        ),
        "{printed}"
    );
}

#[test]
fn unknown_file_keys_suggest_the_nearest_key() {
    let file = ConfigFile::new(
        "listn = \"127.0.0.1:1\"\nmax_body_size = 5\ntoken_tll = 60\nlog-level = \"info\"\n\
         accountrate = \"1/s\"\nzzz = 1\n",
    );
    let mut errors = resolve_errors(&file.flags(), &no_env());
    errors.sort();
    let p = file.path.display();
    assert_eq!(
        errors,
        [
            format!(
                "unknown setting \"accountrate\" in config file {p}: did you mean \"account_rate\"?"
            ),
            format!("unknown setting \"listn\" in config file {p}: did you mean \"listen\"?"),
            format!(
                "unknown setting \"log-level\" in config file {p}: did you mean \"log_level\"?"
            ),
            format!(
                "unknown setting \"max_body_size\" in config file {p}: did you mean \"max_body_bytes\"?"
            ),
            format!(
                "unknown setting \"token_tll\" in config file {p}: did you mean \"token_ttl\"?"
            ),
            format!("unknown setting \"zzz\" in config file {p}"),
        ]
    );
}

#[test]
fn unknown_voxproxy_variables_draw_a_warning_with_the_nearest_name() {
    let env = HashMap::from([
        ("VOXPROXY_LISTN", "127.0.0.1:1"),
        ("VOXPROXY_LOG_LEVEL", "debug"),
        ("VOXPROXY_CREDENTIALS", "/c.json"),
        ("VOXPROXY_MAX_BODY_SIZE", "1"),
        ("VOXPROXY_QQQQ", "1"),
        // Known, or not voxproxy's: no warning.
        ("VOXPROXY_LISTEN", "127.0.0.1:2"),
        ("VOXPROXY_LOG", "info"),
        ("VOXIMPLANT_CREDENTIALS", "/c.json"),
        ("VOXIMPLANT_SOMETHING", "x"),
        ("PATH", "/bin"),
    ]);
    assert_eq!(
        unknown_env_warnings(&env),
        [
            "unknown environment variable VOXPROXY_CREDENTIALS is ignored: did you mean \
             VOXIMPLANT_CREDENTIALS?",
            "unknown environment variable VOXPROXY_LISTN is ignored: did you mean VOXPROXY_LISTEN?",
            "unknown environment variable VOXPROXY_LOG_LEVEL is ignored: did you mean VOXPROXY_LOG?",
            "unknown environment variable VOXPROXY_MAX_BODY_SIZE is ignored: did you mean \
             VOXPROXY_MAX_BODY_BYTES?",
            "unknown environment variable VOXPROXY_QQQQ is ignored: no setting reads it",
        ]
    );
    assert!(unknown_env_warnings(&no_env()).is_empty());
    // Every declared variable is known.
    let all: HashMap<String, String> = SETTINGS
        .iter()
        .map(|d| (d.env.to_owned(), String::new()))
        .collect();
    assert!(unknown_env_warnings(&all).is_empty());
}
