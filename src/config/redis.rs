//! The Redis URL of `limits_redis`: `redis://[user:password@]host:port[/db]`, or `rediss://` for
//! TLS. The password is a secret: `Display` and `Debug` show it as `***`, and no parse error
//! repeats any part of the URL.

use std::fmt;

use super::value::{Raw, Single, Value, redact_userinfo};

/// Redis's own default port, used when the URL names none (as the Redis clients do).
const DEFAULT_PORT: u16 = 6379;

/// A parsed Redis URL.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// `rediss://`: TLS to Redis, verified like the upstream.
    pub tls: bool,
    /// The user name, if any (Redis 6 ACL users).
    pub user: Option<String>,
    /// The password, if any, as written (percent-encoding kept). Never print it.
    password: Option<String>,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Database number.
    pub db: u32,
}

const SYNTAX: &str = "must be redis://[user:password@]host:port[/db] or rediss://...";

impl RedisUrl {
    /// Parse a Redis URL. Errors describe the problem without repeating the URL.
    pub fn parse(text: &str) -> Result<RedisUrl, String> {
        let text = text.trim();
        let (tls, rest) = if let Some(rest) = text.strip_prefix("rediss://") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("redis://") {
            (false, rest)
        } else {
            return Err(SYNTAX.to_owned());
        };
        if rest.contains(['?', '#']) {
            return Err("must not have a query or fragment".to_owned());
        }
        // The last `@` ends the user information: a password may itself hold `@`.
        let (userinfo, hostpart) = match rest.rfind('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let (user, password) = split_userinfo(userinfo);
        let (authority, db) = match hostpart.split_once('/') {
            Some((authority, db)) => (authority, parse_db(db)?),
            None => (hostpart, 0),
        };
        let (host, port) = split_host_port(authority)?;
        Ok(RedisUrl {
            tls,
            user,
            password,
            host,
            port,
            db,
        })
    }

    /// The password, for the Redis client alone: never log or print it.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    fn scheme(&self) -> &'static str {
        if self.tls { "rediss" } else { "redis" }
    }
}

fn split_userinfo(userinfo: Option<&str>) -> (Option<String>, Option<String>) {
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    match userinfo {
        None => (None, None),
        Some(info) => match info.split_once(':') {
            Some((user, password)) => (non_empty(user), non_empty(password)),
            None => (non_empty(info), None),
        },
    }
}

fn parse_db(text: &str) -> Result<u32, String> {
    if text.is_empty() {
        return Ok(0);
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err("the database after `/` must be a number, like /0".to_owned());
    }
    text.parse()
        .map_err(|_| "the database number is too large".to_owned())
}

fn split_host_port(authority: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| "an IPv6 host needs its closing `]`".to_owned())?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("must name a host, like redis://redis:6379".to_owned());
    }
    if host.contains(|c: char| c.is_whitespace() || c == '/' || c == '@') {
        return Err("the host is not a valid host name".to_owned());
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| "the port must be a number from 1 to 65535".to_owned())?,
    };
    Ok((host.to_ascii_lowercase(), port))
}

/// The URL with the password as `***`.
impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme())?;
        match (&self.user, &self.password) {
            (Some(user), Some(_)) => write!(f, "{user}:***@")?,
            (None, Some(_)) => f.write_str(":***@")?,
            (Some(user), None) => write!(f, "{user}@")?,
            (None, None) => {}
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        write!(f, ":{}/{}", self.port, self.db)
    }
}

/// Same as `Display`: the password never shows.
impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({self})")
    }
}

impl Value for RedisUrl {
    type Out = RedisUrl;
    type Flag = Single;

    fn parse(raw: &Raw) -> Result<RedisUrl, String> {
        RedisUrl::parse(&raw.text()?)
    }

    /// Redacted: `--print-config` prints no secret, so a printed password is `***`.
    fn to_toml(value: &RedisUrl) -> Option<toml::Value> {
        Some(toml::Value::String(value.to_string()))
    }

    fn redact(text: &str) -> String {
        redact_userinfo(text)
    }
}
