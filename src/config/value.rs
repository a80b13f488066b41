//! A setting's raw value and the value types that parse it. Each value type parses text from a
//! flag or the environment and a typed TOML value from the file by the same rules, and prints a
//! parsed value back as TOML, so every source obeys one set of rules and `--print-config`
//! reproduces what was parsed.

use std::fmt;
use std::marker::PhantomData;
use std::path::PathBuf;

use http::HeaderName;

use crate::account::AccountId;

/// A raw setting value.
#[derive(Debug, Clone)]
pub enum Raw {
    /// Text from a flag or an environment variable.
    Text(String),
    /// Several values of a repeated flag.
    List(Vec<String>),
    /// A value from the TOML file.
    Toml(toml::Value),
}

impl fmt::Display for Raw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Raw::Text(s) => f.write_str(s),
            Raw::List(v) => f.write_str(&v.join(", ")),
            Raw::Toml(v) => write!(f, "{v}"),
        }
    }
}

impl Raw {
    /// A string value.
    pub fn text(&self) -> Result<String, String> {
        match self {
            Raw::Text(s) => Ok(s.clone()),
            Raw::Toml(toml::Value::String(s)) => Ok(s.clone()),
            Raw::Toml(v) => Err(format!("must be a string, not {}", v.type_str())),
            Raw::List(_) => Err("must be given once".to_owned()),
        }
    }

    /// A non-empty path.
    pub fn path(&self) -> Result<PathBuf, String> {
        let s = self.text()?;
        if s.is_empty() {
            return Err("must not be empty".to_owned());
        }
        Ok(PathBuf::from(s))
    }

    /// An integer (TOML integer, or decimal text).
    pub fn integer(&self) -> Result<i64, String> {
        match self {
            Raw::Toml(toml::Value::Integer(i)) => Ok(*i),
            Raw::Toml(v) => Err(format!("must be an integer, not {}", v.type_str())),
            _ => {
                let s = self.text()?;
                s.trim()
                    .parse::<i64>()
                    .map_err(|_| "must be a whole number".to_owned())
            }
        }
    }

    /// A boolean: TOML bool, or `true/false`, `1/0`, `yes/no`, `on/off`.
    pub fn boolean(&self) -> Result<bool, String> {
        match self {
            Raw::Toml(toml::Value::Boolean(b)) => Ok(*b),
            Raw::Toml(v) => Err(format!("must be a boolean, not {}", v.type_str())),
            _ => match self.text()?.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" => Ok(false),
                _ => Err("must be true/false, 1/0, yes/no or on/off".to_owned()),
            },
        }
    }

    /// Text for a value that the file may give as a number or a string (sizes, durations): a
    /// number becomes its decimal text, so one text parser decides for every source. `what`
    /// names the unit for the type error.
    pub fn number_or_text(&self, what: &str) -> Result<String, String> {
        match self {
            Raw::Toml(toml::Value::Integer(i)) => Ok(i.to_string()),
            Raw::Toml(toml::Value::Float(f)) => Ok(f.to_string()),
            Raw::Toml(toml::Value::String(s)) => Ok(s.clone()),
            Raw::Toml(v) => Err(format!("must be a number of {what}, not {}", v.type_str())),
            _ => self.text(),
        }
    }
}

/// How a flag holds a setting before parsing: one value (`Option<String>`) or every occurrence
/// of a repeated flag (`Vec<String>`).
pub trait FlagRaw: Default + Clone + fmt::Debug {
    /// Whether the flag may be repeated.
    const REPEATED: bool;
    /// From the values given on the command line, in order (the last of a single flag wins).
    fn from_values(values: Vec<String>) -> Self;
    /// The raw value, or `None` when the flag was not given.
    fn raw(&self) -> Option<Raw>;
}

impl FlagRaw for Option<String> {
    const REPEATED: bool = false;

    fn from_values(values: Vec<String>) -> Self {
        values.into_iter().last()
    }

    fn raw(&self) -> Option<Raw> {
        self.clone().map(Raw::Text)
    }
}

impl FlagRaw for Vec<String> {
    const REPEATED: bool = true;

    fn from_values(values: Vec<String>) -> Self {
        values
    }

    fn raw(&self) -> Option<Raw> {
        (!self.is_empty()).then(|| Raw::List(self.clone()))
    }
}

/// A single-valued flag.
pub type Single = Option<String>;

/// One kind of setting value: how it parses from every source and how it prints back as TOML.
pub trait Value {
    /// What the setting holds once parsed.
    type Out;
    /// How its flag holds it before parsing.
    type Flag: FlagRaw;
    /// Whether the flag may stand alone, meaning `true` (`--allow-unauthenticated-network`).
    const SWITCH: bool = false;

    /// Parse a raw value from any source. The error is the reason alone; the caller adds the
    /// setting, its (redacted) value and its origin.
    fn parse(raw: &Raw) -> Result<Self::Out, String>;

    /// The value as the config file would hold it; `None` when the setting has no value.
    fn to_toml(value: &Self::Out) -> Option<toml::Value>;

    /// The raw text as an error message may show it: value types that can hold a secret hide it.
    fn redact(text: &str) -> String {
        text.to_owned()
    }
}

/// An optional setting: `None` until a source gives it a value.
pub struct Opt<V>(PhantomData<V>);

impl<V: Value> Value for Opt<V> {
    type Out = Option<V::Out>;
    type Flag = V::Flag;
    const SWITCH: bool = V::SWITCH;

    fn parse(raw: &Raw) -> Result<Self::Out, String> {
        V::parse(raw).map(Some)
    }

    fn to_toml(value: &Self::Out) -> Option<toml::Value> {
        value.as_ref().and_then(V::to_toml)
    }

    fn redact(text: &str) -> String {
        V::redact(text)
    }
}

/// Hide a password in raw text that may be a URL with user information, for messages about a
/// value that may not even parse: between `://` (or the start) and the last `@`, whatever follows
/// the first `:` becomes `***` (`redis://user:***@host`). A bare user name stays.
pub fn redact_userinfo(text: &str) -> String {
    let Some(at) = text.rfind('@') else {
        return text.to_owned();
    };
    let start = match text.find("://") {
        Some(i) if i + 3 <= at => i + 3,
        _ => 0,
    };
    let user = match text[start..at].split_once(':') {
        Some((user, _)) => user,
        None if start > 0 => return text.to_owned(),
        None => "",
    };
    format!("{}{user}:***{}", &text[..start], &text[at..])
}

fn path_to_toml(path: &std::path::Path) -> toml::Value {
    // A path that is not UTF-8 cannot be written in TOML; the lossy form is the closest.
    toml::Value::String(path.to_string_lossy().into_owned())
}

/// A file path (not empty).
pub struct FilePath;

impl Value for FilePath {
    type Out = PathBuf;
    type Flag = Single;

    fn parse(raw: &Raw) -> Result<PathBuf, String> {
        raw.path()
    }

    fn to_toml(value: &PathBuf) -> Option<toml::Value> {
        Some(path_to_toml(value))
    }
}

/// The config file's path; empty means none (`VOXPROXY_CONFIG=` switches the file off).
pub struct ConfigPath;

impl Value for ConfigPath {
    type Out = Option<PathBuf>;
    type Flag = Single;

    fn parse(raw: &Raw) -> Result<Option<PathBuf>, String> {
        let s = raw.text()?;
        Ok((!s.is_empty()).then(|| PathBuf::from(s)))
    }

    fn to_toml(value: &Option<PathBuf>) -> Option<toml::Value> {
        value.as_deref().map(path_to_toml)
    }
}

/// Credentials paths: the repeated flag, one path from the environment (as in the official
/// clients, so a comma or colon is part of it), or a TOML list (a single string is accepted too).
pub struct CredentialPaths;

impl Value for CredentialPaths {
    type Out = Vec<PathBuf>;
    type Flag = Vec<String>;

    fn parse(raw: &Raw) -> Result<Vec<PathBuf>, String> {
        let list: Vec<String> = match raw {
            Raw::List(v) => v.clone(),
            Raw::Text(s) | Raw::Toml(toml::Value::String(s)) => vec![s.clone()],
            Raw::Toml(toml::Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    toml::Value::String(s) => Ok(s.clone()),
                    other => Err(format!("`{other}` is not a path string")),
                })
                .collect::<Result<_, _>>()?,
            Raw::Toml(v) => {
                return Err(format!("must be a list of paths, not {}", v.type_str()));
            }
        };
        if list.is_empty() || list.iter().any(String::is_empty) {
            return Err("must name at least one credentials file, and no empty path".to_owned());
        }
        Ok(list.into_iter().map(PathBuf::from).collect())
    }

    fn to_toml(value: &Vec<PathBuf>) -> Option<toml::Value> {
        Some(toml::Value::Array(
            value.iter().map(|p| path_to_toml(p)).collect(),
        ))
    }
}

/// A boolean: `true/false`, `1/0`, `yes/no`, `on/off`; the flag alone means `true`.
impl Value for bool {
    type Out = bool;
    type Flag = Single;
    const SWITCH: bool = true;

    fn parse(raw: &Raw) -> Result<bool, String> {
        raw.boolean()
    }

    fn to_toml(value: &bool) -> Option<toml::Value> {
        Some(toml::Value::Boolean(*value))
    }
}

/// Account ids: comma-separated text, or a TOML list of integers (the file takes the typed form
/// only).
pub struct AccountIds;

impl Value for AccountIds {
    type Out = Vec<u64>;
    type Flag = Single;

    fn parse(raw: &Raw) -> Result<Vec<u64>, String> {
        let ids: Vec<u64> = match raw {
            Raw::Toml(toml::Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    toml::Value::Integer(i) if *i > 0 => Ok(*i as u64),
                    other => Err(format!("`{other}` is not a positive account id")),
                })
                .collect::<Result<_, _>>()?,
            Raw::Toml(v) => {
                return Err(format!(
                    "must be a list of account ids, not {}",
                    v.type_str()
                ));
            }
            _ => raw
                .text()?
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    AccountId::parse(s)
                        .map(AccountId::get)
                        .ok_or_else(|| format!("`{s}` is not a positive account id"))
                })
                .collect::<Result<_, _>>()?,
        };
        if ids.is_empty() {
            return Err("lists no account id (leave it unset to allow any account)".to_owned());
        }
        Ok(ids)
    }

    fn to_toml(value: &Vec<u64>) -> Option<toml::Value> {
        // An id above i64::MAX cannot be a TOML integer; such an id only comes from text, so it
        // is written back as text, which the file refuses with a message naming it.
        let items = value
            .iter()
            .map(|id| match i64::try_from(*id) {
                Ok(i) => toml::Value::Integer(i),
                Err(_) => toml::Value::String(id.to_string()),
            })
            .collect();
        Some(toml::Value::Array(items))
    }
}

/// Largest and default `token_ttl`: Voximplant refuses tokens that live longer (error 454).
pub const MAX_TOKEN_TTL: u32 = 3600;
const MIN_TOKEN_TTL: u32 = 60;

/// A token lifetime: whole seconds, 60 to 3600 (shared with `voxproxy token --ttl`).
pub struct Ttl;

impl Value for Ttl {
    type Out = u32;
    type Flag = Single;

    fn parse(raw: &Raw) -> Result<u32, String> {
        let v = raw.integer()?;
        if v < i64::from(MIN_TOKEN_TTL) {
            Err(format!("must be at least {MIN_TOKEN_TTL}"))
        } else if v > i64::from(MAX_TOKEN_TTL) {
            Err(format!("must be at most {MAX_TOKEN_TTL}"))
        } else {
            Ok(v as u32)
        }
    }

    fn to_toml(value: &u32) -> Option<toml::Value> {
        whole_seconds(*value)
    }
}

fn whole_seconds(secs: u32) -> Option<toml::Value> {
    Some(toml::Value::Integer(i64::from(secs)))
}

/// The token refresh margin: whole seconds, at least 1 (its upper bound depends on `token_ttl`
/// and is checked with the other combinations).
pub struct RefreshMargin;

impl Value for RefreshMargin {
    type Out = u32;
    type Flag = Single;

    fn parse(raw: &Raw) -> Result<u32, String> {
        u32::try_from(raw.integer()?)
            .ok()
            .filter(|v| *v >= 1)
            .ok_or_else(|| "must be a whole number of seconds, at least 1".to_owned())
    }

    fn to_toml(value: &u32) -> Option<toml::Value> {
        whole_seconds(*value)
    }
}

/// Runtime worker threads: 1 to 1024.
pub struct Workers;

impl Value for Workers {
    type Out = usize;
    type Flag = Single;

    fn parse(raw: &Raw) -> Result<usize, String> {
        let v = raw.integer()?;
        if (1..=1024).contains(&v) {
            Ok(v as usize)
        } else {
            Err("must be 1 to 1024".to_owned())
        }
    }

    fn to_toml(value: &usize) -> Option<toml::Value> {
        i64::try_from(*value).ok().map(toml::Value::Integer)
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

impl Value for LogFormat {
    type Out = LogFormat;
    type Flag = Single;

    fn parse(raw: &Raw) -> Result<LogFormat, String> {
        match raw.text()?.to_ascii_lowercase().as_str() {
            "json" => Ok(LogFormat::Json),
            "text" => Ok(LogFormat::Text),
            _ => Err("must be `json` or `text`".to_owned()),
        }
    }

    fn to_toml(value: &LogFormat) -> Option<toml::Value> {
        let name = match value {
            LogFormat::Json => "json",
            LogFormat::Text => "text",
        };
        Some(toml::Value::String(name.to_owned()))
    }
}

/// A tracing `EnvFilter`, checked here so a typo fails at start rather than logging nothing.
pub struct LogFilter;

impl Value for LogFilter {
    type Out = String;
    type Flag = Single;

    fn parse(raw: &Raw) -> Result<String, String> {
        let s = raw.text()?;
        tracing_subscriber::EnvFilter::builder()
            .parse(&s)
            .map_err(|e| format!("not a tracing filter: {e}"))?;
        Ok(s)
    }

    fn to_toml(value: &String) -> Option<toml::Value> {
        Some(toml::Value::String(value.clone()))
    }
}

/// The header that selects the account: any valid name but the ones voxproxy itself reads or
/// rewrites.
pub struct AccountHeader;

impl Value for AccountHeader {
    type Out = HeaderName;
    type Flag = Single;

    fn parse(raw: &Raw) -> Result<HeaderName, String> {
        let name = HeaderName::from_bytes(raw.text()?.trim().as_bytes())
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

    fn to_toml(value: &HeaderName) -> Option<toml::Value> {
        Some(toml::Value::String(value.as_str().to_owned()))
    }
}
