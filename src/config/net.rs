//! Network addresses among the settings: listen addresses and the upstream base URL.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use super::value::{Raw, Single, Value, redact_userinfo};

/// A listen address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A TCP address; `localhost:PORT` resolves to `127.0.0.1:PORT`.
    Tcp(SocketAddr),
    /// A Unix socket path.
    Unix(PathBuf),
    /// Sockets passed by systemd socket activation.
    Systemd,
}

impl ListenAddr {
    /// Loopback in the sense of the listen rule (Unix sockets count; systemd sockets are judged
    /// by their own address once received).
    pub fn is_loopback(&self) -> bool {
        match self {
            ListenAddr::Tcp(addr) => addr.ip().is_loopback(),
            ListenAddr::Unix(_) | ListenAddr::Systemd => true,
        }
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "{a}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
            ListenAddr::Systemd => f.write_str("systemd"),
        }
    }
}

impl Value for ListenAddr {
    type Out = ListenAddr;
    type Flag = Single;

    fn parse(raw: &Raw) -> Result<ListenAddr, String> {
        parse_listen(&raw.text()?)
    }

    fn to_toml(value: &ListenAddr) -> Option<toml::Value> {
        Some(toml::Value::String(value.to_string()))
    }
}

/// Parse a listen address.
pub fn parse_listen(s: &str) -> Result<ListenAddr, String> {
    let s = s.trim();
    if s == "systemd" {
        return Ok(ListenAddr::Systemd);
    }
    if let Some(path) = s.strip_prefix("unix:") {
        if path.is_empty() {
            return Err("unix: needs a path, like unix:/run/voxproxy.sock".to_owned());
        }
        return Ok(ListenAddr::Unix(PathBuf::from(path)));
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(ListenAddr::Tcp(addr));
    }
    if let Some(port) = s.strip_prefix("localhost:") {
        let port: u16 = port
            .parse()
            .map_err(|_| format!("`{port}` is not a port number"))?;
        return Ok(ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], port))));
    }
    Err("must be IP:PORT (like 127.0.0.1:8080 or [::1]:8080), localhost:PORT, unix:/path or systemd".to_owned())
}

/// The upstream base URL, split once at start-up so the hot path only copies parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// `https`, or `http` for a loopback test upstream.
    pub scheme: http::uri::Scheme,
    /// Host and port as written in the URL (what `Host` becomes).
    pub authority: http::uri::Authority,
    /// Host, lowercase, without brackets.
    pub host: String,
    /// Port, explicit or the scheme's default.
    pub port: u16,
    /// Whether the URL named the port explicitly.
    pub explicit_port: bool,
}

/// Voximplant's Management API.
const DEFAULT_UPSTREAM: &str = "https://api.voximplant.com";

impl Default for Upstream {
    fn default() -> Upstream {
        parse_upstream(DEFAULT_UPSTREAM).expect("the default upstream URL is valid")
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.authority)
    }
}

impl Value for Upstream {
    type Out = Upstream;
    type Flag = Single;

    fn parse(raw: &Raw) -> Result<Upstream, String> {
        parse_upstream(&raw.text()?)
    }

    fn to_toml(value: &Upstream) -> Option<toml::Value> {
        Some(toml::Value::String(value.to_string()))
    }

    /// The URL is refused with user information in it, but the message must not repeat it.
    fn redact(text: &str) -> String {
        redact_userinfo(text)
    }
}

/// Parse and check the upstream URL.
pub fn parse_upstream(s: &str) -> Result<Upstream, String> {
    let uri: http::Uri = s.parse().map_err(|e| format!("not a URL: {e}"))?;
    let scheme = uri
        .scheme()
        .cloned()
        .ok_or_else(|| "must be an absolute URL like https://api.voximplant.com".to_owned())?;
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| "must name a host".to_owned())?;
    if authority.as_str().contains('@') {
        return Err("must not contain user information".to_owned());
    }
    if let Some(pq) = uri.path_and_query()
        && pq.as_str() != "/"
        && !pq.as_str().is_empty()
    {
        return Err(
            "must be a base URL without a path or query (voxproxy forwards /platform_api itself)"
                .to_owned(),
        );
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => 443,
        "http" => 80,
        other => return Err(format!("scheme `{other}` is not supported: use https")),
    };
    if scheme.as_str() == "http" && !is_loopback_host(&host) {
        return Err(
            "plain http:// is allowed only for a loopback upstream (tests); use https".to_owned(),
        );
    }
    Ok(Upstream {
        port: authority.port_u16().unwrap_or(default_port),
        explicit_port: authority.port_u16().is_some(),
        scheme,
        authority,
        host,
    })
}

fn is_loopback_host(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}
