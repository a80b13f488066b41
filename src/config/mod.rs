//! Settings: every knob of the contract's table, layered flag > environment > file > default,
//! validated in one pass that reports every problem, each naming the setting, its value and where
//! the value came from. Nothing here binds a socket or reads a credentials file.

mod env;
pub mod value;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::HeaderName;

pub use env::{Env, ProcessEnv};
pub use value::Raw;

use crate::cli::SettingsArgs;

/// Environment variable names, one `const` each so a typo cannot hide.
pub mod keys {
    pub const CONFIG: &str = "VOXPROXY_CONFIG";
    pub const CREDENTIALS: &str = "VOXIMPLANT_CREDENTIALS";
    pub const LISTEN: &str = "VOXPROXY_LISTEN";
    pub const ADMIN_LISTEN: &str = "VOXPROXY_ADMIN_LISTEN";
    pub const UPSTREAM: &str = "VOXPROXY_UPSTREAM";
    pub const UPSTREAM_CA: &str = "VOXPROXY_UPSTREAM_CA";
    pub const ACCOUNT_HEADER: &str = "VOXPROXY_ACCOUNT_HEADER";
    pub const ALLOWED_ACCOUNTS: &str = "VOXPROXY_ALLOWED_ACCOUNTS";
    pub const TOKEN_TTL: &str = "VOXPROXY_TOKEN_TTL";
    pub const TOKEN_REFRESH_BEFORE: &str = "VOXPROXY_TOKEN_REFRESH_BEFORE";
    pub const CONNECT_TIMEOUT: &str = "VOXPROXY_CONNECT_TIMEOUT";
    pub const REQUEST_TIMEOUT: &str = "VOXPROXY_REQUEST_TIMEOUT";
    pub const MAX_BODY_BYTES: &str = "VOXPROXY_MAX_BODY_BYTES";
    pub const SHUTDOWN_GRACE: &str = "VOXPROXY_SHUTDOWN_GRACE";
    pub const LOG_FORMAT: &str = "VOXPROXY_LOG_FORMAT";
    pub const LOG: &str = "VOXPROXY_LOG";
    pub const WORKERS: &str = "VOXPROXY_WORKERS";
    pub const ALLOW_UNAUTHENTICATED_NETWORK: &str = "VOXPROXY_ALLOW_UNAUTHENTICATED_NETWORK";
    pub const CLIENTS: &str = "VOXPROXY_CLIENTS";
    pub const TLS_CERT: &str = "VOXPROXY_TLS_CERT";
    pub const TLS_KEY: &str = "VOXPROXY_TLS_KEY";
    pub const TLS_CLIENT_CA: &str = "VOXPROXY_TLS_CLIENT_CA";
}

/// Largest and default `token_ttl`: Voximplant refuses tokens that live longer (error 454).
pub const MAX_TOKEN_TTL: u32 = 3600;
const MIN_TOKEN_TTL: u32 = 60;

/// Where a setting's value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A command-line flag, like `--token-ttl`.
    Flag(&'static str),
    /// An environment variable.
    Env(&'static str),
    /// The TOML config file.
    File(PathBuf),
    /// voxproxy's default.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag(flag) => write!(f, "flag {flag}"),
            Origin::Env(var) => write!(f, "environment {var}"),
            Origin::File(path) => write!(f, "config file {}", path.display()),
            Origin::Default => f.write_str("default"),
        }
    }
}

/// One problem with one setting.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SettingError {
    /// A value that does not parse or is out of range.
    #[error("{key} = {value} (from {origin}): {reason}")]
    Invalid {
        key: &'static str,
        value: String,
        origin: Origin,
        reason: String,
    },
    /// A key in the config file that voxproxy does not know.
    #[error("unknown setting `{key}` in config file {}", path.display())]
    UnknownKey { key: String, path: PathBuf },
    /// The config file itself cannot be read or parsed.
    #[error("config file {} (from {origin}): {reason}", path.display())]
    File {
        path: PathBuf,
        origin: Origin,
        reason: String,
    },
}

/// Every problem found while resolving settings (never empty).
#[derive(Debug, Clone)]
pub struct ConfigError(pub Vec<SettingError>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// A listen address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A TCP address; `localhost:PORT` resolves to `127.0.0.1:PORT`.
    Tcp(SocketAddr),
    /// A Unix socket path.
    Unix(PathBuf),
    /// Sockets passed by systemd socket activation.
    Systemd,
}

impl ListenAddr {
    /// Loopback in the sense of the listen rule (Unix sockets count; systemd sockets are judged
    /// by their own address once received).
    pub fn is_loopback(&self) -> bool {
        match self {
            ListenAddr::Tcp(addr) => addr.ip().is_loopback(),
            ListenAddr::Unix(_) | ListenAddr::Systemd => true,
        }
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "{a}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
            ListenAddr::Systemd => f.write_str("systemd"),
        }
    }
}

/// The upstream base URL, split once at start-up so the hot path only copies parts.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// `https`, or `http` for a loopback test upstream.
    pub scheme: http::uri::Scheme,
    /// Host and port as written in the URL (what `Host` becomes).
    pub authority: http::uri::Authority,
    /// Host, lowercase, without brackets.
    pub host: String,
    /// Port, explicit or the scheme's default.
    pub port: u16,
    /// Whether the URL named the port explicitly.
    pub explicit_port: bool,
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.authority)
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The config file, if any (reloaded on SIGHUP).
    pub config: Option<PathBuf>,
    /// Credentials files; the first is the default account and signs for child accounts.
    pub credentials: Vec<PathBuf>,
    /// Main listener.
    pub listen: ListenAddr,
    /// Admin listener; `None` serves admin paths on the main listener.
    pub admin_listen: Option<ListenAddr>,
    /// Where requests go.
    pub upstream: Upstream,
    /// Extra trusted roots for the upstream.
    pub upstream_ca: Option<PathBuf>,
    /// Header that selects the account.
    pub account_header: HeaderName,
    /// Accounts requests may act for; `None` means any.
    pub allowed_accounts: Option<Vec<u64>>,
    /// Lifetime of minted tokens.
    pub token_ttl: u32,
    /// Refresh margin before `exp`.
    pub token_refresh_before: u32,
    /// Upstream TCP connect timeout.
    pub connect_timeout: Duration,
    /// Time allowed for the upstream's response head.
    pub request_timeout: Duration,
    /// Largest request body forwarded.
    pub max_body_bytes: u64,
    /// Time in-flight requests get on shutdown.
    pub shutdown_grace: Duration,
    /// `None`: text on a terminal, JSON otherwise.
    pub log_format: Option<LogFormat>,
    /// tracing EnvFilter directives.
    pub log_level: String,
    /// Runtime worker threads; `None`: available parallelism.
    pub workers: Option<usize>,
    /// Permit a non-loopback listener without gateway clients.
    pub allow_unauthenticated_network: bool,
    /// Gateway clients file.
    pub clients: Option<PathBuf>,
    /// TLS certificate chain for the main listener.
    pub tls_cert: Option<PathBuf>,
    /// TLS private key for the main listener.
    pub tls_key: Option<PathBuf>,
    /// CA for client certificates.
    pub tls_client_ca: Option<PathBuf>,
    /// Where each setting's value came from, keyed by file key.
    pub origins: BTreeMap<&'static str, Origin>,
}

/// The file keys voxproxy knows (the TOML file may hold nothing else).
const FILE_KEYS: &[&str] = &[
    "credentials",
    "listen",
    "admin_listen",
    "upstream",
    "upstream_ca",
    "account_header",
    "allowed_accounts",
    "token_ttl",
    "token_refresh_before",
    "connect_timeout",
    "request_timeout",
    "max_body_bytes",
    "shutdown_grace",
    "log_format",
    "log_level",
    "workers",
    "allow_unauthenticated_network",
    "clients",
    "tls_cert",
    "tls_key",
    "tls_client_ca",
];

/// The three sources, before any parsing.
struct Layers<'a> {
    flags: &'a SettingsArgs,
    env: &'a dyn Env,
    file: Option<(PathBuf, toml::Table)>,
    errors: Vec<SettingError>,
    origins: BTreeMap<&'static str, Origin>,
}

impl Layers<'_> {
    /// The highest-precedence raw value of a setting, or `None` for the default.
    fn pick(
        &mut self,
        key: &'static str,
        flag: (&'static str, Option<&String>),
        env: &'static str,
    ) -> Option<(Raw, Origin)> {
        let found = if let Some(v) = flag.1 {
            Some((Raw::Text(v.clone()), Origin::Flag(flag.0)))
        } else if let Some(v) = self.env.get(env) {
            Some((Raw::Text(v), Origin::Env(env)))
        } else if let Some((path, table)) = &self.file {
            table
                .get(key)
                .map(|v| (Raw::Toml(v.clone()), Origin::File(path.clone())))
        } else {
            None
        };
        self.origins.insert(
            key,
            found.as_ref().map_or(Origin::Default, |(_, o)| o.clone()),
        );
        found
    }

    /// Parse a setting with `parse`, recording an error and returning `default` on failure.
    fn get<T>(
        &mut self,
        key: &'static str,
        flag: (&'static str, Option<&String>),
        env: &'static str,
        default: T,
        parse: impl FnOnce(&Raw) -> Result<T, String>,
    ) -> T {
        match self.pick(key, flag, env) {
            None => default,
            Some((raw, origin)) => match parse(&raw) {
                Ok(v) => v,
                Err(reason) => {
                    self.errors.push(SettingError::Invalid {
                        key,
                        value: redact_userinfo(&raw.to_string()),
                        origin,
                        reason,
                    });
                    default
                }
            },
        }
    }

    fn invalid(&mut self, key: &'static str, value: impl fmt::Display, reason: impl Into<String>) {
        let origin = self.origins.get(key).cloned().unwrap_or(Origin::Default);
        self.errors.push(SettingError::Invalid {
            key,
            value: value.to_string(),
            origin,
            reason: reason.into(),
        });
    }
}

impl Settings {
    /// Resolve settings from flags, the environment and the config file they name.
    pub fn resolve(flags: &SettingsArgs, env: &dyn Env) -> Result<Settings, ConfigError> {
        let mut errors = Vec::new();
        let config = match (&flags.config, env.get(keys::CONFIG)) {
            (Some(p), _) => Some((PathBuf::from(p), Origin::Flag("--config"))),
            (None, Some(p)) if !p.is_empty() => Some((PathBuf::from(p), Origin::Env(keys::CONFIG))),
            _ => None,
        };
        let file = match &config {
            None => None,
            Some((path, origin)) => match std::fs::read_to_string(path) {
                Ok(text) => match parse_file(path, origin, &text) {
                    Ok(table) => Some((path.clone(), table)),
                    Err(mut e) => {
                        errors.append(&mut e);
                        None
                    }
                },
                Err(e) => {
                    errors.push(SettingError::File {
                        path: path.clone(),
                        origin: origin.clone(),
                        reason: format!("cannot read: {e}"),
                    });
                    None
                }
            },
        };
        let mut l = Layers {
            flags,
            env,
            file,
            errors,
            origins: BTreeMap::new(),
        };
        let f = l.flags;

        let credentials = {
            let flag_vals = (!f.credentials.is_empty()).then_some(&f.credentials);
            let found = if let Some(v) = flag_vals {
                Some((Raw::List(v.clone()), Origin::Flag("--credentials")))
            } else if let Some(v) = l.env.get(keys::CREDENTIALS) {
                Some((Raw::Text(v), Origin::Env(keys::CREDENTIALS)))
            } else if let Some((path, table)) = &l.file {
                table
                    .get("credentials")
                    .map(|v| (Raw::Toml(v.clone()), Origin::File(path.clone())))
            } else {
                None
            };
            l.origins.insert(
                "credentials",
                found.as_ref().map_or(Origin::Default, |(_, o)| o.clone()),
            );
            match found {
                None => vec![PathBuf::from("credentials.json")],
                Some((raw, origin)) => match value::paths(&raw, origin.clone()) {
                    Ok(v) => v,
                    Err(reason) => {
                        l.errors.push(SettingError::Invalid {
                            key: "credentials",
                            value: raw.to_string(),
                            origin,
                            reason,
                        });
                        vec![PathBuf::from("credentials.json")]
                    }
                },
            }
        };

        let listen = l.get(
            "listen",
            ("--listen", f.listen.as_ref()),
            keys::LISTEN,
            ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], 8080))),
            |r| parse_listen(&r.text()?),
        );
        let admin_listen = l.get(
            "admin_listen",
            ("--admin-listen", f.admin_listen.as_ref()),
            keys::ADMIN_LISTEN,
            None,
            |r| parse_listen(&r.text()?).map(Some),
        );
        let upstream = l.get(
            "upstream",
            ("--upstream", f.upstream.as_ref()),
            keys::UPSTREAM,
            None,
            |r| parse_upstream(&r.text()?).map(Some),
        );
        let upstream = upstream.unwrap_or_else(|| {
            parse_upstream("https://api.voximplant.com").expect("the default upstream URL is valid")
        });
        let upstream_ca = l.get(
            "upstream_ca",
            ("--upstream-ca", f.upstream_ca.as_ref()),
            keys::UPSTREAM_CA,
            None,
            |r| r.path().map(Some),
        );
        let account_header = l.get(
            "account_header",
            ("--account-header", f.account_header.as_ref()),
            keys::ACCOUNT_HEADER,
            HeaderName::from_static("x-voximplant-account-id"),
            |r| parse_header_name(&r.text()?),
        );
        let allowed_accounts = l.get(
            "allowed_accounts",
            ("--allowed-accounts", f.allowed_accounts.as_ref()),
            keys::ALLOWED_ACCOUNTS,
            None,
            |r| r.account_list().map(Some),
        );
        let token_ttl = l.get(
            "token_ttl",
            ("--token-ttl", f.token_ttl.as_ref()),
            keys::TOKEN_TTL,
            MAX_TOKEN_TTL,
            parse_ttl,
        );
        let refresh_explicit = l.get(
            "token_refresh_before",
            ("--token-refresh-before", f.token_refresh_before.as_ref()),
            keys::TOKEN_REFRESH_BEFORE,
            None,
            |r| {
                let v = r.integer()?;
                u32::try_from(v)
                    .ok()
                    .filter(|v| *v >= 1)
                    .map(Some)
                    .ok_or_else(|| "must be a whole number of seconds, at least 1".to_owned())
            },
        );
        let token_refresh_before = match refresh_explicit {
            Some(v) if v > token_ttl / 2 => {
                l.invalid(
                    "token_refresh_before",
                    v,
                    format!(
                        "must be at most half of token_ttl ({token_ttl}), so at most {}",
                        token_ttl / 2
                    ),
                );
                token_ttl / 2
            }
            Some(v) => v,
            // The default margin shrinks with a short TTL instead of failing: the user asked only
            // for a short TTL.
            None => 300.min(token_ttl / 2),
        };
        let connect_timeout = l.get(
            "connect_timeout",
            ("--connect-timeout", f.connect_timeout.as_ref()),
            keys::CONNECT_TIMEOUT,
            Duration::from_secs(5),
            |r| r.seconds(false),
        );
        let request_timeout = l.get(
            "request_timeout",
            ("--request-timeout", f.request_timeout.as_ref()),
            keys::REQUEST_TIMEOUT,
            Duration::from_secs(120),
            |r| r.seconds(false),
        );
        let max_body_bytes = l.get(
            "max_body_bytes",
            ("--max-body-bytes", f.max_body_bytes.as_ref()),
            keys::MAX_BODY_BYTES,
            64 * 1024 * 1024,
            |r| r.byte_size(),
        );
        let shutdown_grace = l.get(
            "shutdown_grace",
            ("--shutdown-grace", f.shutdown_grace.as_ref()),
            keys::SHUTDOWN_GRACE,
            Duration::from_secs(30),
            |r| r.seconds(true),
        );
        let log_format = l.get(
            "log_format",
            ("--log-format", f.log_format.as_ref()),
            keys::LOG_FORMAT,
            None,
            |r| match r.text()?.to_ascii_lowercase().as_str() {
                "json" => Ok(Some(LogFormat::Json)),
                "text" => Ok(Some(LogFormat::Text)),
                _ => Err("must be `json` or `text`".to_owned()),
            },
        );
        let log_level = l.get(
            "log_level",
            ("--log-level", f.log_level.as_ref()),
            keys::LOG,
            "info".to_owned(),
            |r| {
                let s = r.text()?;
                tracing_subscriber::EnvFilter::builder()
                    .parse(&s)
                    .map_err(|e| format!("not a tracing filter: {e}"))?;
                Ok(s)
            },
        );
        let workers = l.get(
            "workers",
            ("--workers", f.workers.as_ref()),
            keys::WORKERS,
            None,
            |r| {
                let v = r.integer()?;
                if (1..=1024).contains(&v) {
                    Ok(Some(v as usize))
                } else {
                    Err("must be 1 to 1024".to_owned())
                }
            },
        );
        let allow_unauthenticated_network = l.get(
            "allow_unauthenticated_network",
            (
                "--allow-unauthenticated-network",
                f.allow_unauthenticated_network.as_ref(),
            ),
            keys::ALLOW_UNAUTHENTICATED_NETWORK,
            false,
            |r| r.boolean(),
        );
        let clients = l.get(
            "clients",
            ("--clients", f.clients.as_ref()),
            keys::CLIENTS,
            None,
            |r| r.path().map(Some),
        );
        let tls_cert = l.get(
            "tls_cert",
            ("--tls-cert", f.tls_cert.as_ref()),
            keys::TLS_CERT,
            None,
            |r| r.path().map(Some),
        );
        let tls_key = l.get(
            "tls_key",
            ("--tls-key", f.tls_key.as_ref()),
            keys::TLS_KEY,
            None,
            |r| r.path().map(Some),
        );
        let tls_client_ca = l.get(
            "tls_client_ca",
            ("--tls-client-ca", f.tls_client_ca.as_ref()),
            keys::TLS_CLIENT_CA,
            None,
            |r| r.path().map(Some),
        );

        match (&tls_cert, &tls_key) {
            (Some(_), None) => l.invalid(
                "tls_cert",
                tls_cert
                    .as_ref()
                    .map_or(String::new(), |p| p.display().to_string()),
                "tls_key must be set too",
            ),
            (None, Some(_)) => l.invalid(
                "tls_key",
                tls_key
                    .as_ref()
                    .map_or(String::new(), |p| p.display().to_string()),
                "tls_cert must be set too",
            ),
            _ => {}
        }
        if let (Some(ca), None) = (&tls_client_ca, &tls_cert) {
            l.invalid(
                "tls_client_ca",
                ca.display(),
                "client certificates need TLS on the main listener: set tls_cert and tls_key",
            );
        }
        if admin_listen.as_ref() == Some(&listen)
            && listen != ListenAddr::Systemd
            && !matches!(&listen, ListenAddr::Tcp(a) if a.port() == 0)
        {
            l.invalid(
                "admin_listen",
                &listen,
                "must differ from listen (leave admin_listen unset to serve admin paths on the main listener)",
            );
        }
        if admin_listen == Some(ListenAddr::Systemd) {
            l.invalid(
                "admin_listen",
                "systemd",
                "systemd sockets serve the main listener only",
            );
        }

        if !l.errors.is_empty() {
            return Err(ConfigError(l.errors));
        }
        Ok(Settings {
            config: config.map(|(p, _)| p),
            credentials,
            listen,
            admin_listen,
            upstream,
            upstream_ca,
            account_header,
            allowed_accounts,
            token_ttl,
            token_refresh_before,
            connect_timeout,
            request_timeout,
            max_body_bytes,
            shutdown_grace,
            log_format,
            log_level,
            workers,
            allow_unauthenticated_network,
            clients,
            tls_cert,
            tls_key,
            tls_client_ca,
            origins: l.origins,
        })
    }

    /// Where a setting's value came from.
    pub fn origin(&self, key: &str) -> Origin {
        self.origins.get(key).cloned().unwrap_or(Origin::Default)
    }

    /// The listen rule: a proxy that adds the company's credentials to anyone's request must not be
    /// reachable by accident. Checked before any socket is bound, and again for a systemd socket's
    /// own address.
    pub fn check_listen_rule(&self, addr: &ListenAddr) -> Result<(), SettingError> {
        if addr.is_loopback() || self.clients.is_some() || self.allow_unauthenticated_network {
            return Ok(());
        }
        Err(SettingError::Invalid {
            key: "listen",
            value: addr.to_string(),
            origin: self.origin("listen"),
            reason:
                "not a loopback address: anyone who can reach it could act with your Voximplant \
                     key; configure gateway clients (clients) or set allow_unauthenticated_network \
                     = true (--allow-unauthenticated-network) to accept that"
                    .to_owned(),
        })
    }

    /// Whether the listen address is non-loopback but allowed only by the override (worth a
    /// warning at start).
    pub fn listen_is_open(&self, addr: &ListenAddr) -> bool {
        !addr.is_loopback() && self.clients.is_none()
    }
}

/// Hide a password in a URL-like value (`https://user:pw@host` → `https://****@host`) so an
/// error message never repeats it.
fn redact_userinfo(value: &str) -> String {
    match (value.find("://"), value.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}****{}", &value[..s + 3], &value[at..]),
        _ => value.to_owned(),
    }
}

/// Parse the config file's text: unknown keys are errors. `origin` says what named the file.
fn parse_file(path: &Path, origin: &Origin, text: &str) -> Result<toml::Table, Vec<SettingError>> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        vec![SettingError::File {
            path: path.to_owned(),
            origin: origin.clone(),
            reason: format!("not valid TOML: {}", e.message()),
        }]
    })?;
    let unknown: Vec<SettingError> = table
        .keys()
        .filter(|k| !FILE_KEYS.contains(&k.as_str()))
        .map(|k| SettingError::UnknownKey {
            key: k.clone(),
            path: path.to_owned(),
        })
        .collect();
    if unknown.is_empty() {
        Ok(table)
    } else {
        Err(unknown)
    }
}

/// Parse a listen address.
pub fn parse_listen(s: &str) -> Result<ListenAddr, String> {
    let s = s.trim();
    if s == "systemd" {
        return Ok(ListenAddr::Systemd);
    }
    if let Some(path) = s.strip_prefix("unix:") {
        if path.is_empty() {
            return Err("unix: needs a path, like unix:/run/voxproxy.sock".to_owned());
        }
        return Ok(ListenAddr::Unix(PathBuf::from(path)));
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(ListenAddr::Tcp(addr));
    }
    if let Some(port) = s.strip_prefix("localhost:") {
        let port: u16 = port
            .parse()
            .map_err(|_| format!("`{port}` is not a port number"))?;
        return Ok(ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], port))));
    }
    Err("must be IP:PORT (like 127.0.0.1:8080 or [::1]:8080), localhost:PORT, unix:/path or systemd".to_owned())
}

/// Parse and check the upstream URL.
pub fn parse_upstream(s: &str) -> Result<Upstream, String> {
    let uri: http::Uri = s.parse().map_err(|e| format!("not a URL: {e}"))?;
    let scheme = uri
        .scheme()
        .cloned()
        .ok_or_else(|| "must be an absolute URL like https://api.voximplant.com".to_owned())?;
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| "must name a host".to_owned())?;
    if authority.as_str().contains('@') {
        return Err("must not contain user information".to_owned());
    }
    if let Some(pq) = uri.path_and_query()
        && pq.as_str() != "/"
        && !pq.as_str().is_empty()
    {
        return Err(
            "must be a base URL without a path or query (voxproxy forwards /platform_api itself)"
                .to_owned(),
        );
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => 443,
        "http" => 80,
        other => return Err(format!("scheme `{other}` is not supported: use https")),
    };
    if scheme.as_str() == "http" && !is_loopback_host(&host) {
        return Err(
            "plain http:// is allowed only for a loopback upstream (tests); use https".to_owned(),
        );
    }
    Ok(Upstream {
        port: authority.port_u16().unwrap_or(default_port),
        explicit_port: authority.port_u16().is_some(),
        scheme,
        authority,
        host,
    })
}

fn is_loopback_host(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn parse_header_name(s: &str) -> Result<HeaderName, String> {
    let name = HeaderName::from_bytes(s.trim().as_bytes())
        .map_err(|_| "not a valid HTTP header name".to_owned())?;
    if matches!(
        name.as_str(),
        "authorization"
            | "proxy-authorization"
            | "host"
            | "connection"
            | "content-length"
            | "transfer-encoding"
            | "x-request-id"
    ) {
        return Err(format!("`{name}` is reserved; pick a header of your own"));
    }
    Ok(name)
}

/// Parse a token TTL (whole seconds, 60 to 3600); shared with `voxproxy token --ttl`.
pub fn parse_ttl(raw: &Raw) -> Result<u32, String> {
    let v = raw.integer()?;
    if v < i64::from(MIN_TOKEN_TTL) {
        Err(format!("must be at least {MIN_TOKEN_TTL}"))
    } else if v > i64::from(MAX_TOKEN_TTL) {
        Err(format!("must be at most {MAX_TOKEN_TTL}"))
    } else {
        Ok(v as u32)
    }
}

/// Parse a TTL given as text (the `token --ttl` flag).
pub fn parse_ttl_text(s: &str) -> Result<u32, String> {
    parse_ttl(&Raw::Text(s.to_owned()))
}

/// Parse an account id: a positive decimal integer.
pub fn parse_account_id(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u64>().ok().filter(|v| *v > 0)
}

#[cfg(test)]
mod tests;
