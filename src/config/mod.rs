//! Settings: every knob of the contract's table, declared once in `defs.rs` and layered
//! flag > environment > file > default, validated in one pass that reports every problem, each
//! naming the setting, its value and where the value came from. Nothing here binds a socket or
//! reads a credentials file.
//!
//! - `declare.rs`: what a declaration is, and the macro that generates the rest from the table;
//! - `defs.rs`: the table, one entry per setting;
//! - `value.rs`, `units.rs`, `net.rs`, `rate.rs`, `redis.rs`: one value type per kind of value,
//!   each parsing all three sources by the same rules and printing itself back as TOML;
//! - `layers.rs`: the sources and the choice between them; `env.rs`: the environment;
//! - `print.rs`: `--print-config`.

#[macro_use]
mod declare;
mod defs;
mod env;
mod errors;
mod layers;
mod net;
mod print;
mod rate;
mod redis;
mod units;
pub mod value;

pub use declare::{Cmd, Decl};
pub use defs::{SETTINGS, Settings, SettingsArgs, decl, keys};
pub use env::{Env, ProcessEnv};
pub use errors::{ConfigError, Origin, SettingError};
pub use net::{ListenAddr, Upstream, parse_listen, parse_upstream};
pub use print::Described;
pub use rate::{Per, Rate};
pub use redis::RedisUrl;
pub use units::{parse_duration_text, parse_size_text};
pub use value::{LogFormat, MAX_TOKEN_TTL, Raw};

use std::path::PathBuf;

use layers::Layers;
use value::{ConfigPath, FlagRaw as _, Ttl, Value as _};

impl Settings {
    /// Resolve settings from flags, the environment and the config file they name. Called at
    /// start and again on reload, so the environment comes in through `env`.
    pub fn resolve(flags: &SettingsArgs, env: &dyn Env) -> Result<Settings, ConfigError> {
        let mut layers = Layers::new(env, SETTINGS);
        // The config file is named by a flag or the environment only; it is read before the
        // settings it may hold.
        if let Some(path) = layers.get::<ConfigPath>(&decl::config, flags.config.raw(), || None) {
            let origin = layers.origin(decl::config.key);
            layers.load_file(&path, origin);
        }
        let settings = Settings::resolve_each(&mut layers, flags);
        let mut errors = layers.errors;
        errors.extend(settings.check_combinations());
        if errors.is_empty() {
            Ok(settings)
        } else {
            Err(ConfigError(errors))
        }
    }

    /// Where a setting's value came from.
    pub fn origin(&self, key: &str) -> Origin {
        self.origins.get(key).cloned().unwrap_or(Origin::Default)
    }

    /// Rules between settings, each reported on the setting that breaks it.
    fn check_combinations(&self) -> Vec<SettingError> {
        let invalid = |key: &'static str, value: String, reason: &str| SettingError::Invalid {
            key,
            value,
            origin: self.origin(key),
            reason: reason.to_owned(),
        };
        let shown = |p: &Option<PathBuf>| {
            p.as_ref()
                .map_or(String::new(), |p| p.display().to_string())
        };
        let mut errors = Vec::new();
        if self.token_refresh_before > self.token_ttl / 2 {
            errors.push(invalid(
                decl::token_refresh_before.key,
                self.token_refresh_before.to_string(),
                &format!(
                    "must be at most half of token_ttl ({}), so at most {}",
                    self.token_ttl,
                    self.token_ttl / 2
                ),
            ));
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => {
                errors.push(invalid(
                    decl::tls_cert.key,
                    shown(&self.tls_cert),
                    "tls_key must be set too",
                ));
            }
            (None, Some(_)) => {
                errors.push(invalid(
                    decl::tls_key.key,
                    shown(&self.tls_key),
                    "tls_cert must be set too",
                ));
            }
            _ => {}
        }
        if self.tls_client_ca.is_some() && self.tls_cert.is_none() {
            errors.push(invalid(
                decl::tls_client_ca.key,
                shown(&self.tls_client_ca),
                "client certificates need TLS on the main listener: set tls_cert and tls_key",
            ));
        }
        errors.extend(self.check_admin_listen());
        errors
    }

    /// `admin_listen` must be its own socket, and systemd sockets serve the main listener only.
    fn check_admin_listen(&self) -> Option<SettingError> {
        let reason = match &self.admin_listen {
            Some(ListenAddr::Systemd) => "systemd sockets serve the main listener only",
            // Port 0 means "any free port" on each listener, so the two never clash.
            Some(addr)
                if *addr == self.listen && !matches!(addr, ListenAddr::Tcp(a) if a.port() == 0) =>
            {
                "must differ from listen (leave admin_listen unset to serve admin paths on the \
                 main listener)"
            }
            _ => return None,
        };
        Some(SettingError::Invalid {
            key: decl::admin_listen.key,
            value: self
                .admin_listen
                .as_ref()
                .map_or(String::new(), ToString::to_string),
            origin: self.origin(decl::admin_listen.key),
            reason: reason.to_owned(),
        })
    }

    /// The listen rule: a proxy that adds the company's credentials to anyone's request must not be
    /// reachable by accident. Checked before any socket is bound, and again for a systemd socket's
    /// own address.
    pub fn check_listen_rule(&self, addr: &ListenAddr) -> Result<(), SettingError> {
        if addr.is_loopback() || self.clients.is_some() || self.allow_unauthenticated_network {
            return Ok(());
        }
        Err(SettingError::Invalid {
            key: decl::listen.key,
            value: addr.to_string(),
            origin: self.origin(decl::listen.key),
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

/// The settings whose change a reload cannot apply: every setting that differs between `old`
/// and `new` and is not live (today only `config` and `credentials` are).
/// A warning for each `VOXPROXY_*` variable that no setting reads, naming the nearest one (a
/// typo would otherwise be silently ignored).
pub fn unknown_env_warnings(env: &dyn Env) -> Vec<String> {
    env::unknown_vars(env, SETTINGS)
}

pub fn restart_needed(old: &Settings, new: &Settings) -> Vec<&'static str> {
    old.changed(new)
        .into_iter()
        .filter(|d| !d.live)
        .map(|d| d.key)
        .collect()
}

/// The keys a config file may hold, in table order.
pub fn file_keys() -> impl Iterator<Item = &'static str> {
    SETTINGS.iter().filter(|d| d.in_file).map(|d| d.key)
}

/// Parse a token TTL (whole seconds, 60 to 3600); shared with `voxproxy token --ttl`.
pub fn parse_ttl(raw: &Raw) -> Result<u32, String> {
    Ttl::parse(raw)
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
