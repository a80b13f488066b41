//! What can be wrong with a setting, and where its value came from.

use std::fmt;
use std::path::PathBuf;

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
    /// A key in the config file that voxproxy does not know; `hint` names the nearest known key
    /// or where the setting goes instead.
    #[error(
        "unknown setting \"{key}\" in config file {}{}",
        path.display(),
        hint.as_deref().map(|h| format!(": {h}")).unwrap_or_default()
    )]
    UnknownKey {
        key: String,
        path: PathBuf,
        hint: Option<String>,
    },
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
