//! The settings table: every setting declared once, in the contract's order. Adding a setting is
//! adding an entry here (and using the new field); flags, environment, file key, `--help`,
//! `--print-config`, typo suggestions and reload's restart list follow from it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::HeaderName;

use super::declare::{Cmd, Decl};
use super::errors::Origin;
use super::layers::Layers;
use super::net::{ListenAddr, Upstream};
use super::rate::Rate;
use super::redis::RedisUrl;
use super::units::{Secs, SecsOrZero, Size};
use super::value::{
    AccountHeader, AccountIds, ConfigPath, CredentialPaths, FilePath, FlagRaw, LogFilter,
    LogFormat, MAX_TOKEN_TTL, Opt, RefreshMargin, Ttl, Value, Workers,
};

/// Settings every command that reads settings uses.
const ALL: &[Cmd] = &[Cmd::Serve, Cmd::Check, Cmd::Token, Cmd::Client];
/// Settings of the proxy itself (`check` validates what `serve` would run with).
const SERVE_CHECK: &[Cmd] = &[Cmd::Serve, Cmd::Check];
/// Logging: every command that logs.
const LOGGING: &[Cmd] = &[Cmd::Serve, Cmd::Check, Cmd::Token];
/// The clients file: the proxy and the `client` commands that edit it.
const CLIENTS_FILE: &[Cmd] = &[Cmd::Serve, Cmd::Check, Cmd::Client];

settings! {
    /// The config file, if any (read again on SIGHUP).
    config: Option<PathBuf> {
        value: ConfigPath,
        default: None,
        default_text: "none",
        flag: "--config",
        env: CONFIG = "VOXPROXY_CONFIG",
        value_name: "PATH",
        help: "TOML config file; its keys are the settings' names",
        in_file: false,
        live: true,
        used_by: ALL,
    }

    /// Credentials files; the first is the default account and signs for child accounts.
    credentials: Vec<PathBuf> {
        value: CredentialPaths,
        default: vec![PathBuf::from("credentials.json")],
        default_text: "./credentials.json",
        flag: "--credentials",
        env: CREDENTIALS = "VOXIMPLANT_CREDENTIALS",
        value_name: "PATH",
        help: "Voximplant credentials.json (repeatable; the first file's account is the default; \
               the environment variable holds one path)",
        in_file: true,
        live: true,
        used_by: ALL,
    }

    /// Main listener.
    listen: ListenAddr {
        value: ListenAddr,
        default: ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], 8080))),
        default_text: "127.0.0.1:8080",
        flag: "--listen",
        env: LISTEN = "VOXPROXY_LISTEN",
        value_name: "ADDR",
        help: "Listen address: IP:PORT, localhost:PORT, unix:/path, or systemd",
        in_file: true,
        live: false,
        used_by: SERVE_CHECK,
    }

    /// Admin listener; `None` serves admin paths on the main listener.
    admin_listen: Option<ListenAddr> {
        value: Opt<ListenAddr>,
        default: None,
        default_text: "none",
        flag: "--admin-listen",
        env: ADMIN_LISTEN = "VOXPROXY_ADMIN_LISTEN",
        value_name: "ADDR",
        help: "Separate listener for /healthz, /readyz and /metrics (unset: the main listener \
               serves them)",
        in_file: true,
        live: false,
        used_by: SERVE_CHECK,
    }

    /// Where requests go.
    upstream: Upstream {
        value: Upstream,
        default: Upstream::default(),
        default_text: "https://api.voximplant.com",
        flag: "--upstream",
        env: UPSTREAM = "VOXPROXY_UPSTREAM",
        value_name: "URL",
        help: "Upstream base URL",
        in_file: true,
        live: false,
        used_by: SERVE_CHECK,
    }

    /// Extra trusted roots for the upstream.
    upstream_ca: Option<PathBuf> {
        value: Opt<FilePath>,
        default: None,
        default_text: "none",
        flag: "--upstream-ca",
        env: UPSTREAM_CA = "VOXPROXY_UPSTREAM_CA",
        value_name: "PATH",
        help: "Extra trusted roots (PEM) for the upstream, added to the built-in ones",
        in_file: true,
        live: false,
        used_by: SERVE_CHECK,
    }

    /// Header that selects the account.
    account_header: HeaderName {
        value: AccountHeader,
        default: HeaderName::from_static("x-voximplant-account-id"),
        default_text: "X-Voximplant-Account-Id",
        flag: "--account-header",
        env: ACCOUNT_HEADER = "VOXPROXY_ACCOUNT_HEADER",
        value_name: "NAME",
        help: "Request header that selects the account",
        in_file: true,
        live: false,
        used_by: SERVE_CHECK,
    }

    /// Accounts requests may act for; `None` means any.
    allowed_accounts: Option<Vec<u64>> {
        value: Opt<AccountIds>,
        default: None,
        default_text: "any account",
        flag: "--allowed-accounts",
        env: ALLOWED_ACCOUNTS = "VOXPROXY_ALLOWED_ACCOUNTS",
        value_name: "IDS",
        help: "Comma-separated account ids requests may act for (in the file: a list of integers)",
        in_file: true,
        live: false,
        used_by: SERVE_CHECK,
    }

    /// Lifetime of minted tokens, seconds.
    token_ttl: u32 {
        value: Ttl,
        default: MAX_TOKEN_TTL,
        default_text: "3600",
        flag: "--token-ttl",
        env: TOKEN_TTL = "VOXPROXY_TOKEN_TTL",
        value_name: "SECS",
        help: "Lifetime of minted tokens, whole seconds (60 to 3600)",
        in_file: true,
        live: false,
        used_by: SERVE_CHECK,
    }

    /// Refresh margin before `exp`, seconds. The default shrinks with a short TTL instead of
    /// failing: the user asked only for a short TTL.
    token_refresh_before: u32 {
        value: RefreshMargin,
        default: 300.min(token_ttl / 2),
        default_text: "300, at most half of token_ttl",
        flag: "--token-refresh-before",
        env: TOKEN_REFRESH_BEFORE = "VOXPROXY_TOKEN_REFRESH_BEFORE",
        value_name: "SECS",
        help: "Re-mint a token this many whole seconds before it expires (at most half of \
               token_ttl)",
        in_file: true,
        live: false,
        used_by: SERVE_CHECK,
    }

    /// Upstream TCP connect and TLS handshake timeout.
    connect_timeout: Duration {
        value: Secs,
        default: Duration::from_secs(5),
        default_text: "5",
        flag: "--connect-timeout",
        env: CONNECT_TIMEOUT = "VOXPROXY_CONNECT_TIMEOUT",
        value_name: "SECS",
        help: "Upstream connect and TLS handshake timeout: seconds, or a number with ms, s, m, h",
        in_file: true,
        live: false,
        used_by: SERVE_CHECK,
    }

    /// Time allowed for the upstream's response head (and for each silence in its body).
    request_timeout: Duration {
        value: Secs,
        default: Duration::from_secs(120),
        default_text: "120",
        flag: "--request-timeout",
        env: REQUEST_TIMEOUT = "VOXPROXY_REQUEST_TIMEOUT",
        value_name: "SECS",
        help: "Time the upstream has for its response head, and for each silence in its body",
        in_file: true,
        live: false,
        used_by: SERVE_CHECK,
    }

    /// Largest request body forwarded, bytes.
    max_body_bytes: u64 {
        value: Size,
        default: 64 * 1024 * 1024,
        default_text: "64MiB",
        flag: "--max-body-bytes",
        env: MAX_BODY_BYTES = "VOXPROXY_MAX_BODY_BYTES",
        value_name: "N",
        help: "Largest request body forwarded: bytes, or a number with KiB, MiB, GiB",
        in_file: true,
        live: false,
        used_by: SERVE_CHECK,
    }

    /// Time in-flight requests get on shutdown.
    shutdown_grace: Duration {
        value: SecsOrZero,
        default: Duration::from_secs(30),
        default_text: "30",
        flag: "--shutdown-grace",
        env: SHUTDOWN_GRACE = "VOXPROXY_SHUTDOWN_GRACE",
        value_name: "SECS",
        help: "Time in-flight requests get to finish on shutdown (0: stop at once)",
        in_file: true,
        live: false,
        used_by: SERVE_CHECK,
    }

    /// `None`: text on a terminal, JSON otherwise.
    log_format: Option<LogFormat> {
        value: Opt<LogFormat>,
        default: None,
        default_text: "text on a terminal, json otherwise",
        flag: "--log-format",
        env: LOG_FORMAT = "VOXPROXY_LOG_FORMAT",
        value_name: "FORMAT",
        help: "Log format: json or text",
        in_file: true,
        live: false,
        used_by: LOGGING,
    }

    /// tracing EnvFilter directives.
    log_level: String {
        value: LogFilter,
        default: "info".to_owned(),
        default_text: "info",
        flag: "--log-level",
        env: LOG = "VOXPROXY_LOG",
        value_name: "FILTER",
        help: "Log filter in tracing EnvFilter syntax, like info or voxproxy=debug,warn",
        in_file: true,
        live: false,
        used_by: LOGGING,
    }

    /// Runtime worker threads; `None`: available parallelism.
    workers: Option<usize> {
        value: Opt<Workers>,
        default: None,
        default_text: "number of CPUs the process may use",
        flag: "--workers",
        env: WORKERS = "VOXPROXY_WORKERS",
        value_name: "N",
        help: "Runtime worker threads (1 to 1024)",
        in_file: true,
        live: false,
        used_by: SERVE_CHECK,
    }

    /// Permit a non-loopback listener without gateway clients.
    allow_unauthenticated_network: bool {
        value: bool,
        default: false,
        default_text: "false",
        flag: "--allow-unauthenticated-network",
        env: ALLOW_UNAUTHENTICATED_NETWORK = "VOXPROXY_ALLOW_UNAUTHENTICATED_NETWORK",
        value_name: "BOOL",
        help: "Serve a non-loopback address without gateway clients: anyone who reaches it acts \
               with your key",
        in_file: true,
        live: false,
        used_by: SERVE_CHECK,
    }

    /// Gateway clients file.
    clients: Option<PathBuf> {
        value: Opt<FilePath>,
        default: None,
        default_text: "none",
        flag: "--clients",
        env: CLIENTS = "VOXPROXY_CLIENTS",
        value_name: "PATH",
        help: "Gateway clients file (TOML): every request must then authenticate as a client",
        in_file: true,
        live: false,
        used_by: CLIENTS_FILE,
    }

    /// TLS certificate chain for the main listener.
    tls_cert: Option<PathBuf> {
        value: Opt<FilePath>,
        default: None,
        default_text: "none",
        flag: "--tls-cert",
        env: TLS_CERT = "VOXPROXY_TLS_CERT",
        value_name: "PATH",
        help: "Certificate chain (PEM) for TLS on the main listener (unset: plain HTTP)",
        in_file: true,
        live: false,
        used_by: SERVE_CHECK,
    }

    /// TLS private key for the main listener.
    tls_key: Option<PathBuf> {
        value: Opt<FilePath>,
        default: None,
        default_text: "none",
        flag: "--tls-key",
        env: TLS_KEY = "VOXPROXY_TLS_KEY",
        value_name: "PATH",
        help: "Private key (PEM) for TLS on the main listener",
        in_file: true,
        live: false,
        used_by: SERVE_CHECK,
    }

    /// CA for client certificates.
    tls_client_ca: Option<PathBuf> {
        value: Opt<FilePath>,
        default: None,
        default_text: "none",
        flag: "--tls-client-ca",
        env: TLS_CLIENT_CA = "VOXPROXY_TLS_CLIENT_CA",
        value_name: "PATH",
        help: "CA (PEM) that client certificates must chain to (needs tls_cert and tls_key)",
        in_file: true,
        live: false,
        used_by: SERVE_CHECK,
    }

    /// A limit on each account's traffic, all clients together; `None`: no limit.
    account_rate: Option<Rate> {
        value: Opt<Rate>,
        default: None,
        default_text: "none",
        flag: "--account-rate",
        env: ACCOUNT_RATE = "VOXPROXY_ACCOUNT_RATE",
        value_name: "RATE",
        help: "Limit on each account's traffic, all clients together: N/s, N/m or N/h, \
               optionally followed by '; burst M'",
        in_file: true,
        live: false,
        used_by: SERVE_CHECK,
    }

    /// How long a request over `account_rate` may wait for its turn before a 429.
    account_rate_wait: Duration {
        value: SecsOrZero,
        default: Duration::from_millis(500),
        default_text: "0.5",
        flag: "--account-rate-wait",
        env: ACCOUNT_RATE_WAIT = "VOXPROXY_ACCOUNT_RATE_WAIT",
        value_name: "SECS",
        help: "How long a request over account_rate may wait for its turn (0: refuse at once)",
        in_file: true,
        live: false,
        used_by: SERVE_CHECK,
    }

    /// Where replicas count limits together; `None`: each replica counts alone.
    limits_redis: Option<RedisUrl> {
        value: Opt<RedisUrl>,
        default: None,
        default_text: "none",
        flag: "--limits-redis",
        env: LIMITS_REDIS = "VOXPROXY_LIMITS_REDIS",
        value_name: "URL",
        help: "Redis that counts rate limits for every replica: \
               redis://[user:password@]host:port[/db], or rediss:// for TLS",
        in_file: true,
        live: false,
        used_by: SERVE_CHECK,
    }

    /// How long a client connection may send nothing, or read nothing of its response, before
    /// it is closed.
    client_idle_timeout: Duration {
        value: Secs,
        default: Duration::from_secs(75),
        default_text: "75",
        flag: "--client-idle-timeout",
        env: CLIENT_IDLE_TIMEOUT = "VOXPROXY_CLIENT_IDLE_TIMEOUT",
        value_name: "SECS",
        help: "How long a client connection may send nothing, or read nothing of its response, \
               before it is closed",
        in_file: true,
        live: false,
        used_by: SERVE_CHECK,
    }
}
