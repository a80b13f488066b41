//! Rates: `N/s`, `N/m` or `N/h`, optionally `; burst M` (the burst is N when not given). One
//! type for `account_rate` and for a gateway client's `rate`, so both read the same syntax.

use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use super::value::{Raw, Single, Value};

/// The period of a rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Per {
    /// `N/s`.
    Second,
    /// `N/m`.
    Minute,
    /// `N/h`.
    Hour,
}

impl Per {
    /// The period's length.
    pub fn duration(self) -> Duration {
        Duration::from_secs(match self {
            Per::Second => 1,
            Per::Minute => 60,
            Per::Hour => 3600,
        })
    }

    fn unit(self) -> &'static str {
        match self {
            Per::Second => "s",
            Per::Minute => "m",
            Per::Hour => "h",
        }
    }
}

/// A rate: `n` requests per `per`, with up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests per period.
    pub n: NonZeroU32,
    /// The period.
    pub per: Per,
    /// Requests admitted at once from a full bucket (`n` unless `; burst M` says otherwise).
    pub burst: NonZeroU32,
}

/// A whole number ≥ 1 written with digits only (no sign, no fraction).
fn count(text: &str) -> Option<NonZeroU32> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

impl Rate {
    /// Parse `N/s`, `N/m` or `N/h` (N ≥ 1), optionally followed by `; burst M` (M ≥ 1).
    pub fn parse(raw: &str) -> Result<Rate, String> {
        let bad = || {
            format!(
                "`{raw}` is not a rate: write N/s, N/m or N/h with N ≥ 1, optionally \
                 followed by `; burst M`, like \"20/s\" or \"100/m; burst 20\""
            )
        };
        let (rate, burst) = match raw.split_once(';') {
            Some((rate, burst)) => (rate, Some(burst)),
            None => (raw, None),
        };
        let (n, unit) = rate.trim().split_once('/').ok_or_else(bad)?;
        let per = match unit.trim() {
            "s" => Per::Second,
            "m" => Per::Minute,
            "h" => Per::Hour,
            _ => return Err(bad()),
        };
        let n = count(n).ok_or_else(bad)?;
        let burst = match burst {
            None => n,
            Some(b) => b
                .trim()
                .strip_prefix("burst")
                .filter(|m| m.starts_with(char::is_whitespace))
                .and_then(count)
                .ok_or_else(bad)?,
        };
        Ok(Rate { n, per, burst })
    }

    /// The time between two requests at the steady rate.
    pub fn interval(&self) -> Duration {
        self.per.duration() / self.n.get()
    }
}

/// Round-trips through [`Rate::parse`]: the burst is written only when it differs from N.
impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.n, self.per.unit())?;
        if self.burst != self.n {
            write!(f, "; burst {}", self.burst)?;
        }
        Ok(())
    }
}

impl Value for Rate {
    type Out = Rate;
    type Flag = Single;

    fn parse(raw: &Raw) -> Result<Rate, String> {
        Rate::parse(&raw.text()?)
    }

    fn to_toml(value: &Rate) -> Option<toml::Value> {
        Some(toml::Value::String(value.to_string()))
    }
}
