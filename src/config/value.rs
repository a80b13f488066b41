//! A setting's raw value before parsing: text from a flag or the environment, or a typed TOML value
//! from the file. One set of parsers serves all sources, so every source obeys the same rules.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::{Origin, parse_account_id};

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

    /// Seconds, possibly fractional; zero allowed only when `allow_zero`.
    pub fn seconds(&self, allow_zero: bool) -> Result<Duration, String> {
        let v = match self {
            Raw::Toml(toml::Value::Integer(i)) => *i as f64,
            Raw::Toml(toml::Value::Float(f)) => *f,
            Raw::Toml(v) => {
                return Err(format!("must be a number of seconds, not {}", v.type_str()));
            }
            _ => self
                .text()?
                .trim()
                .parse::<f64>()
                .map_err(|_| "must be a number of seconds, like 5 or 0.5".to_owned())?,
        };
        if !v.is_finite() || v < 0.0 || (v == 0.0 && !allow_zero) {
            return Err(if allow_zero {
                "must be zero or more seconds".to_owned()
            } else {
                "must be more than zero seconds".to_owned()
            });
        }
        if v > 0.0 && v < 0.001 {
            return Err("must be at least 0.001 seconds".to_owned());
        }
        if v > 86_400.0 {
            return Err("must be at most 86400 seconds (a day)".to_owned());
        }
        Ok(Duration::from_secs_f64(v))
    }

    /// A byte count: an integer, optionally with a KiB/MiB/GiB (or K/M/G) suffix.
    pub fn byte_size(&self) -> Result<u64, String> {
        let (num, mult) = match self {
            Raw::Toml(toml::Value::Integer(i)) => (i.to_string(), 1u64),
            Raw::Toml(v) => return Err(format!("must be a number of bytes, not {}", v.type_str())),
            _ => {
                let s = self.text()?;
                let s = s.trim();
                let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
                let (n, unit) = s.split_at(split);
                let mult = match unit.trim().to_ascii_lowercase().as_str() {
                    "" | "b" => 1,
                    "k" | "kib" => 1 << 10,
                    "m" | "mib" => 1 << 20,
                    "g" | "gib" => 1 << 30,
                    _ => {
                        return Err(
                            "must be a number of bytes, optionally with KiB, MiB or GiB".to_owned()
                        );
                    }
                };
                (n.to_owned(), mult)
            }
        };
        let n: u64 = num
            .parse()
            .map_err(|_| "must be a positive number of bytes".to_owned())?;
        let v = n
            .checked_mul(mult)
            .ok_or_else(|| "is too large".to_owned())?;
        if v == 0 {
            return Err("must be more than zero".to_owned());
        }
        Ok(v)
    }

    /// Account ids: comma-separated text, or a TOML list of integers.
    pub fn account_list(&self) -> Result<Vec<u64>, String> {
        let ids: Vec<u64> = match self {
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
            _ => self
                .text()?
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    parse_account_id(s).ok_or_else(|| format!("`{s}` is not a positive account id"))
                })
                .collect::<Result<_, _>>()?,
        };
        if ids.is_empty() {
            return Err("lists no account id (leave it unset to allow any account)".to_owned());
        }
        Ok(ids)
    }
}

/// Credentials paths: the repeated flag, one path from the environment, or a TOML list (a single
/// string is accepted too).
pub fn paths(raw: &Raw, origin: Origin) -> Result<Vec<PathBuf>, String> {
    let list: Vec<String> = match (raw, origin) {
        (Raw::List(v), _) => v.clone(),
        (Raw::Text(s), _) => vec![s.clone()],
        (Raw::Toml(toml::Value::String(s)), _) => vec![s.clone()],
        (Raw::Toml(toml::Value::Array(items)), _) => items
            .iter()
            .map(|v| match v {
                toml::Value::String(s) => Ok(s.clone()),
                other => Err(format!("`{other}` is not a path string")),
            })
            .collect::<Result<_, _>>()?,
        (Raw::Toml(v), _) => return Err(format!("must be a list of paths, not {}", v.type_str())),
    };
    if list.is_empty() || list.iter().any(String::is_empty) {
        return Err("must name at least one credentials file, and no empty path".to_owned());
    }
    Ok(list.into_iter().map(PathBuf::from).collect())
}
