//! The command line. Commands and their own flags are clap derive definitions; the settings
//! flags are built from the settings table ([`config::SETTINGS`]), each command getting the flags
//! of the settings it uses, with the default and environment variable in its help. Settings flags
//! stay the raw text the user typed, so `config` parses all three sources (flag, environment,
//! file) with one set of rules and names the source in its errors; clap never reads the
//! environment.
//!
//! Settings flags go after the command name. For scripts written before that rule they are also
//! accepted before it (hidden from `--help`), but only for a command that uses the setting.

use std::ffi::OsString;
use std::time::Duration;

use clap::{Arg, ArgAction, ArgGroup, ArgMatches, Args, FromArgMatches as _, Subcommand};

use crate::build_info;
use crate::config::{self, Cmd, Decl, SETTINGS};

/// The settings flags as typed; generated from the settings table in `config`.
pub use crate::config::SettingsArgs;

/// A parsed command line.
#[derive(Debug)]
pub struct Cli {
    /// What to do.
    pub command: Command,
    /// The settings flags given, as typed; `config::Settings::resolve` parses them.
    pub settings: SettingsArgs,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy.
    Serve,
    /// Print `Authorization: Bearer <jwt>` for the configured service account.
    Token(TokenArgs),
    /// Validate the configuration and every credentials file; mint and verify a token with each key.
    Check(CheckArgs),
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
    /// Health probe for images without a shell: exit 0 when a plain-HTTP GET of URL answers 2xx
    /// in time.
    Probe(ProbeArgs),
}

impl Command {
    /// The settings-reading command this is, if any (which settings flags it takes).
    pub fn settings_user(&self) -> Option<Cmd> {
        match self {
            Command::Serve => Some(Cmd::Serve),
            Command::Token(_) => Some(Cmd::Token),
            Command::Check(_) => Some(Cmd::Check),
            Command::Client(_) => Some(Cmd::Client),
            Command::Tls(_) | Command::Completions { .. } | Command::Probe(_) => None,
        }
    }
}

/// `voxproxy token` flags.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Account to mint for (a child account is signed by the first credentials file's key).
    #[arg(long, value_name = "ID")]
    pub account: Option<String>,
    /// Token lifetime, whole seconds, 60 to 3600 [default: the token_ttl setting, 3600 unless
    /// set in the environment or config file]
    #[arg(long, value_name = "SECS")]
    pub ttl: Option<String>,
    /// Print the JWT alone, without `Authorization: Bearer `.
    #[arg(long)]
    pub raw: bool,
}

/// `voxproxy check` flags.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Also prove each key against the upstream (one GetAccountInfo per credentials file) and
    /// ping limits_redis.
    #[arg(long)]
    pub online: bool,
    /// Print the effective settings as a config file, each line naming where its value came
    /// from (secrets as ***), instead of checking.
    #[arg(long, conflicts_with = "online")]
    pub print_config: bool,
}

/// `voxproxy probe` arguments.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The URL to GET over plain HTTP, like http://127.0.0.1:8080/healthz.
    #[arg(value_name = "URL")]
    pub url: String,
    /// How long the answer may take: seconds, or a number with ms, s, m, h.
    #[arg(long, value_name = "SECS", default_value = "2s", value_parser = parse_timeout)]
    pub timeout: Duration,
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    config::parse_duration_text(text, false)
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
    /// Rate limit: N/s, N/m or N/h, optionally followed by `; burst M` (default burst: N).
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

/// The leaf commands that read settings, as paths of subcommand names, and which they are.
const SETTINGS_USERS: &[(&[&str], Cmd)] = &[
    (&["serve"], Cmd::Serve),
    (&["check"], Cmd::Check),
    (&["token"], Cmd::Token),
    (&["client", "add"], Cmd::Client),
    (&["client", "list"], Cmd::Client),
    (&["client", "remove"], Cmd::Client),
];

/// The whole command line definition (also what shell completions are generated from).
pub fn command() -> clap::Command {
    let top = clap::Command::new("voxproxy")
        .version(build_info::LONG_VERSION)
        .subcommand_required(true)
        .arg_required_else_help(true)
        // Settings flags before the command name, for older scripts: hidden, checked after
        // parsing against what the command uses.
        .args(SETTINGS.iter().map(|d| setting_arg(d).hide(true)));
    // `about` after the subcommands: augmenting would take the enum's doc comment instead.
    let mut top = Command::augment_subcommands(top)
        .about("Authenticating reverse proxy for the Voximplant Management API");
    for (path, cmd) in SETTINGS_USERS {
        let args: Vec<Arg> = SETTINGS
            .iter()
            .filter(|d| d.used_by(*cmd))
            .map(|d| setting_arg(d))
            .collect();
        top = with_subcommand(top, path, move |c| c.args(args));
    }
    top
}

/// Apply `f` to the subcommand at `path`.
fn with_subcommand(
    cmd: clap::Command,
    path: &[&str],
    f: impl FnOnce(clap::Command) -> clap::Command,
) -> clap::Command {
    match path {
        [] => f(cmd),
        [name, rest @ ..] => {
            let name = *name;
            cmd.mut_subcommand(name, |sub| with_subcommand(sub, rest, f))
        }
    }
}

/// A setting's flag: raw text, its default and environment variable written into the help (so
/// clap never reads the environment: resolution does, recording where each value came from).
fn setting_arg(d: &'static Decl) -> Arg {
    let arg = Arg::new(d.key)
        .long(d.long())
        .value_name(d.value_name)
        .help(format!(
            "{} [default: {}] [env: {}]",
            d.help, d.default_text, d.env
        ));
    if d.repeated {
        arg.action(ArgAction::Append)
    } else if d.switch {
        // `=` required, so `--allow-unauthenticated-network serve` never reads `serve` as the
        // flag's value.
        arg.action(ArgAction::Set)
            .num_args(0..=1)
            .require_equals(true)
            .default_missing_value("true")
    } else {
        arg.action(ArgAction::Set)
    }
}

/// Parse the process's command line; print the error or help and exit on failure.
pub fn parse() -> Cli {
    try_parse_from(std::env::args_os()).unwrap_or_else(|e| e.exit())
}

/// Parse a command line (the first item is the program name).
pub fn try_parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let mut cmd = command();
    let matches = cmd.try_get_matches_from_mut(args)?;
    let command = Command::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))?;
    let leaf = leaf(&matches);
    if let Some(misplaced) = misplaced_setting(&matches, command.settings_user()) {
        let name = subcommand_path(&matches).join(" ");
        return Err(cmd.error(
            clap::error::ErrorKind::UnknownArgument,
            format!(
                "{} is not a flag of `voxproxy {name}`: it uses no {} setting (see `voxproxy \
                 {name} --help`)",
                misplaced.flag, misplaced.key
            ),
        ));
    }
    let settings = SettingsArgs::from_values(|key| {
        // Before the command name first, so a flag after it wins.
        let mut values = given(&matches, key);
        values.extend(given(leaf, key));
        values
    });
    Ok(Cli { command, settings })
}

/// The matches of the innermost subcommand.
fn leaf(matches: &ArgMatches) -> &ArgMatches {
    match matches.subcommand() {
        Some((_, sub)) => leaf(sub),
        None => matches,
    }
}

/// The names of the subcommands given, outermost first.
fn subcommand_path(matches: &ArgMatches) -> Vec<&str> {
    let mut path = Vec::new();
    let mut m = matches;
    while let Some((name, sub)) = m.subcommand() {
        path.push(name);
        m = sub;
    }
    path
}

/// A settings flag given before the command name that the command does not use.
fn misplaced_setting(top: &ArgMatches, cmd: Option<Cmd>) -> Option<&'static Decl> {
    SETTINGS
        .iter()
        .copied()
        .find(|d| !given(top, d.key).is_empty() && !cmd.is_some_and(|c| d.used_by(c)))
}

/// The values given for the argument `id` in `matches` (none when the command has no such
/// argument).
fn given(matches: &ArgMatches, id: &str) -> Vec<String> {
    matches
        .try_get_many::<String>(id)
        .ok()
        .flatten()
        .map(|values| values.cloned().collect())
        .unwrap_or_default()
}
