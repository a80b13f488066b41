//! Durations and sizes, the two value types with units.
//!
//! Small parsers rather than crates, because the contract's syntax is narrower than theirs:
//! humantime takes `1h 30m`, `2days` or `5min` and refuses fractions like `0.5` or `1.5s`;
//! bytesize reads `64 KB` as 64000 bytes and takes fractions like `1.5 MiB`. Here a duration is a
//! number of seconds (fractions allowed) or a number with `ms`, `s`, `m` or `h`; a size is a whole
//! number of bytes, optionally with `KiB`, `MiB` or `GiB` (binary; `K`, `M`, `G` mean the same).

use std::time::Duration;

use super::value::{Raw, Single, Value};

/// Longest duration any setting takes: longer is a typo, not a wish.
const MAX_SECS: f64 = 86_400.0;
/// Shortest non-zero duration: below a millisecond, timers do not keep their promise.
const MIN_SECS: f64 = 0.001;

const SECS_SYNTAX: &str = "must be a number of seconds (like 5 or 0.5) or a number with ms, s, m \
                           or h (like 500ms or 2m)";
const SIZE_SYNTAX: &str = "must be a number of bytes, optionally with KiB, MiB or GiB";

/// Parse a duration: seconds with fractions, or a number with `ms`, `s`, `m` or `h`.
/// `allow_zero` admits 0 (a shutdown grace of 0 stops at once).
pub fn parse_duration_text(text: &str, allow_zero: bool) -> Result<Duration, String> {
    let t = text.trim();
    // `ms` before `s` and `m`: "5ms" ends with both.
    let (number, scale) = [("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)]
        .into_iter()
        .find_map(|(unit, scale)| t.strip_suffix(unit).map(|n| (n, scale)))
        .unwrap_or((t, 1.0));
    let n: f64 = number.trim().parse().map_err(|_| SECS_SYNTAX.to_owned())?;
    let secs = n * scale;
    if !secs.is_finite() || secs < 0.0 || (secs == 0.0 && !allow_zero) {
        return Err(if allow_zero {
            "must be zero or more seconds".to_owned()
        } else {
            "must be more than zero seconds".to_owned()
        });
    }
    if secs > 0.0 && secs < MIN_SECS {
        return Err(format!("must be at least {MIN_SECS} seconds"));
    }
    if secs > MAX_SECS {
        return Err(format!("must be at most {MAX_SECS} seconds (a day)"));
    }
    // Rounded to the nanosecond, so printing a duration and parsing it again gives it back.
    Ok(Duration::from_nanos((secs * 1e9).round() as u64))
}

/// A duration; zero is allowed only when `ZERO_OK`.
pub struct Seconds<const ZERO_OK: bool>;

/// A duration of more than zero seconds (timeouts).
pub type Secs = Seconds<false>;

/// A duration of zero or more seconds (a grace or a wait that may be none).
pub type SecsOrZero = Seconds<true>;

impl<const ZERO_OK: bool> Value for Seconds<ZERO_OK> {
    type Out = Duration;
    type Flag = Single;

    fn parse(raw: &Raw) -> Result<Duration, String> {
        parse_duration_text(&raw.number_or_text("seconds")?, ZERO_OK)
    }

    /// Whole seconds as an integer, else fractional seconds.
    fn to_toml(d: &Duration) -> Option<toml::Value> {
        Some(if d.subsec_nanos() == 0 {
            toml::Value::Integer(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        } else {
            toml::Value::Float(d.as_secs_f64())
        })
    }
}

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Parse a size: a whole number of bytes, optionally with `KiB`, `MiB`, `GiB` (or `K`, `M`, `G`,
/// any letter case; a space before the unit is fine). Zero is refused.
pub fn parse_size_text(text: &str) -> Result<u64, String> {
    let s = text.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => KIB,
        "m" | "mib" => MIB,
        "g" | "gib" => GIB,
        _ => return Err(SIZE_SYNTAX.to_owned()),
    };
    let n: u64 = number
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

/// A size in bytes, more than zero.
pub struct Size;

impl Value for Size {
    type Out = u64;
    type Flag = Single;

    fn parse(raw: &Raw) -> Result<u64, String> {
        match raw {
            // A fraction of a byte is never meant; `1.5` in the file is a typo for a unit.
            Raw::Toml(toml::Value::Float(_)) => {
                Err("must be a number of bytes, not float".to_owned())
            }
            Raw::Toml(toml::Value::Integer(i)) if *i < 0 => {
                Err("must be a positive number of bytes".to_owned())
            }
            _ => parse_size_text(&raw.number_or_text("bytes")?),
        }
    }

    /// The largest whole unit, as the contract writes sizes (`"64MiB"`).
    fn to_toml(value: &u64) -> Option<toml::Value> {
        let text = [(GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")]
            .into_iter()
            .find(|(unit, _)| value.is_multiple_of(*unit))
            .map_or_else(
                || value.to_string(),
                |(unit, name)| format!("{}{name}", value / unit),
            );
        Some(toml::Value::String(text))
    }
}
