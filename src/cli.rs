//! The command line: clap definitions of commands and flags, nothing else. Every settings flag is
//! kept as the raw text the user typed, so `config` can parse all three sources (flag, environment,
//! file) with one set of rules and name the source in its errors.

use clap::{ArgGroup, Args, Parser, Subcommand};

/// voxproxy: an authenticating reverse proxy for the Voximplant Management API.
#[derive(Debug, Parser)]
#[command(name = "voxproxy", version = crate::build_info::LONG_VERSION, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Settings shared by every command (accepted before or after the command name).
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy.
    Serve,
    /// Print `Authorization: Bearer <jwt>` for the configured service account.
    Token(TokenArgs),
    /// Validate the configuration and every credentials file; mint and verify a token with each key.
    Check,
    /// Manage gateway clients (the `clients` file).
    #[command(subcommand)]
    Client(ClientCommand),
    /// Local TLS for the proxy's own listener.
    #[command(subcommand)]
    Tls(TlsCommand),
    /// Print shell completions.
    Completions {
        /// The shell to print completions for.
        shell: clap_complete::Shell,
    },
}

/// `voxproxy token` flags.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Account to mint for (a child account is signed by the first credentials file's key).
    #[arg(long, value_name = "ID")]
    pub account: Option<String>,
    /// Token lifetime in seconds (60 to 3600).
    #[arg(long, value_name = "SECS")]
    pub ttl: Option<String>,
    /// Print the JWT alone, without `Authorization: Bearer `.
    #[arg(long)]
    pub raw: bool,
}

/// `voxproxy client ...`.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Add a gateway client.
    Add(ClientAddArgs),
    /// List gateway clients (no secrets).
    List,
    /// Remove a gateway client.
    Remove {
        /// The client's name.
        name: String,
    },
}

/// `voxproxy client add` flags.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("auth").required(true).args(["out", "static_key", "tls_name"])))]
pub struct ClientAddArgs {
    /// The client's name: letters, digits, `-`, `_`.
    pub name: String,
    /// Account the client may act for (repeatable; default: the first credentials file's account).
    #[arg(long = "account", value_name = "ID")]
    pub accounts: Vec<String>,
    /// Allowed API method glob, like `Get*` (repeatable; default: all).
    #[arg(long = "method", value_name = "GLOB")]
    pub methods: Vec<String>,
    /// Denied API method glob (repeatable).
    #[arg(long = "deny-method", value_name = "GLOB")]
    pub deny_methods: Vec<String>,
    /// Allow only methods whose names start with `Get`.
    #[arg(long)]
    pub read_only: bool,
    /// Rate limit like `20/s` or `100/m` (burst of the same size).
    #[arg(long, value_name = "RATE")]
    pub rate: Option<String>,
    /// Write a Voximplant-format credentials file for the app here (a fresh RSA key).
    #[arg(long, value_name = "PATH")]
    pub out: Option<String>,
    /// Generate a static key and print it once on stdout.
    #[arg(long)]
    pub static_key: bool,
    /// Authenticate the client by the DNS name in its TLS client certificate.
    #[arg(long, value_name = "DNS")]
    pub tls_name: Option<String>,
}

/// `voxproxy tls ...`.
#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Make a local CA and a server certificate for voxproxy's own listener.
    Init {
        /// Where to write `ca.pem`, `cert.pem`, `key.pem`.
        #[arg(long, value_name = "DIR", default_value = "./voxproxy-tls")]
        dir: String,
        /// Extra DNS name or IP address for the server certificate (repeatable).
        #[arg(long = "name", value_name = "DNS")]
        names: Vec<String>,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
}

/// Settings flags, kept as typed text; `config::Settings::resolve` parses them.
#[derive(Debug, Default, Clone, Args)]
pub struct SettingsArgs {
    /// TOML config file.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<String>,
    /// Voximplant credentials.json (repeatable; the first is the default account).
    #[arg(long, global = true, value_name = "PATH")]
    pub credentials: Vec<String>,
    /// Listen address: IP:PORT, localhost:PORT, unix:/path, or systemd.
    #[arg(long, global = true, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Separate listener for /healthz, /readyz, /metrics.
    #[arg(long, global = true, value_name = "ADDR")]
    pub admin_listen: Option<String>,
    /// Upstream base URL.
    #[arg(long, global = true, value_name = "URL")]
    pub upstream: Option<String>,
    /// Extra trusted roots for the upstream (PEM).
    #[arg(long, global = true, value_name = "PATH")]
    pub upstream_ca: Option<String>,
    /// Header that selects the account.
    #[arg(long, global = true, value_name = "NAME")]
    pub account_header: Option<String>,
    /// Comma-separated account ids requests may act for.
    #[arg(long, global = true, value_name = "IDS")]
    pub allowed_accounts: Option<String>,
    /// Lifetime of minted tokens, seconds (60 to 3600).
    #[arg(long, global = true, value_name = "SECS")]
    pub token_ttl: Option<String>,
    /// Re-mint this many seconds before a token expires.
    #[arg(long, global = true, value_name = "SECS")]
    pub token_refresh_before: Option<String>,
    /// Upstream connect timeout, seconds.
    #[arg(long, global = true, value_name = "SECS")]
    pub connect_timeout: Option<String>,
    /// Time allowed for the upstream's response head, seconds.
    #[arg(long, global = true, value_name = "SECS")]
    pub request_timeout: Option<String>,
    /// Largest request body forwarded, bytes (KiB/MiB/GiB suffixes accepted).
    #[arg(long, global = true, value_name = "N")]
    pub max_body_bytes: Option<String>,
    /// Time in-flight requests get to finish on shutdown, seconds.
    #[arg(long, global = true, value_name = "SECS")]
    pub shutdown_grace: Option<String>,
    /// Log format: json or text.
    #[arg(long, global = true, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Runtime worker threads.
    #[arg(long, global = true, value_name = "N")]
    pub workers: Option<String>,
    /// Allow a non-loopback listener without gateway clients.
    #[arg(long, global = true, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub allow_unauthenticated_network: Option<String>,
    /// Gateway clients file (TOML).
    #[arg(long, global = true, value_name = "PATH")]
    pub clients: Option<String>,
    /// Certificate chain (PEM) for TLS on the main listener.
    #[arg(long, global = true, value_name = "PATH")]
    pub tls_cert: Option<String>,
    /// Private key (PEM) for TLS on the main listener.
    #[arg(long, global = true, value_name = "PATH")]
    pub tls_key: Option<String>,
    /// CA (PEM) that client certificates must chain to.
    #[arg(long, global = true, value_name = "PATH")]
    pub tls_client_ca: Option<String>,
}
