//! The clients file: a TOML table per client (`[clients.NAME]`), validated as a whole. Public keys
//! are parsed into verification keys here, once per load, never per request. Every error names
//! the file, the client and the field.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{DnsName, ServerName, SubjectPublicKeyInfoDer};

use super::glob::Glob;
use crate::account::AccountId;
use crate::config::Rate;
use crate::files;
use crate::limits::Limit;

/// Smallest RSA key accepted for an app's JWTs, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// Why the clients file could not be loaded. Every message names the file; none holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum ClientsError {
    /// Not TOML.
    #[error("clients file {}: line {line}: {reason}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// The parser's message.
        reason: String,
    },
    /// A problem at a line: a client's field that does not read.
    #[error("clients file {}: line {line}: {what}", path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// What is wrong, naming the client and the field.
        what: String,
    },
    /// A problem with the file as a whole.
    #[error("clients file {}: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A problem with one client as a whole.
    #[error("clients file {}: client `{}`: {reason}", path.display(), printable(client))]
    Client {
        /// The file.
        path: PathBuf,
        /// The client's name.
        client: String,
        /// What is wrong.
        reason: String,
    },
    /// A problem with one field of one client.
    #[error("clients file {}: client `{}`: field `{field}`: {reason}", path.display(), printable(client))]
    Field {
        /// The file.
        path: PathBuf,
        /// The client's name.
        client: String,
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// How a client proves who it is; any subset of the three, at least one.
#[derive(Default, Clone)]
pub struct ClientAuth {
    /// `key_id`: the `kid` of the app's own JWTs.
    pub key_id: Option<Arc<str>>,
    /// `public_key`, parsed once: verifies the app's JWTs.
    pub(crate) jwt_key: Option<jsonwebtoken::DecodingKey>,
    /// SHA-256 of the static key.
    pub(crate) static_key_sha256: Option<[u8; 32]>,
    /// The DNS name its TLS client certificate must hold.
    pub tls_name: Option<ServerName<'static>>,
}

impl ClientAuth {
    /// The ways this client may authenticate, for `client list` and logs (no secret).
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(kid) = &self.key_id {
            out.push(format!("app JWT (key_id {kid})"));
        }
        if self.static_key_sha256.is_some() {
            out.push("static key".to_owned());
        }
        if let Some(ServerName::DnsName(name)) = &self.tls_name {
            out.push(format!("TLS client certificate ({})", name.as_ref()));
        }
        out
    }
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe().join(", "))
    }
}

/// A configured gateway client and its policy.
pub struct Client {
    /// The client's name (logs, metrics, messages).
    pub name: Arc<str>,
    /// Accounts it may act for, in the order written; empty means the first credentials file's account
    /// (resolved per request, so a credentials reload moves it).
    pub accounts: Vec<AccountId>,
    /// Allowed API methods; empty means all.
    pub methods: Vec<Glob>,
    /// Refused API methods.
    pub deny_methods: Vec<Glob>,
    /// Only methods whose names start with `Get`.
    pub read_only: bool,
    /// Its rate limit, when it has a `rate`.
    pub(crate) limit: Option<Arc<Limit>>,
    /// How it authenticates.
    pub auth: ClientAuth,
}

impl Client {
    /// The client's rate limit, if it has one (carried over a reload while unchanged).
    pub fn limit(&self) -> Option<&Arc<Limit>> {
        self.limit.as_ref()
    }

    /// The client's rate, if limited.
    pub fn rate(&self) -> Option<Rate> {
        self.limit.as_ref().map(|l| l.rate)
    }

    /// One line of policy for `client list` and `check` (no secret).
    pub fn describe_policy(&self) -> String {
        let mut parts = Vec::new();
        if self.accounts.is_empty() {
            parts.push("accounts: the first credentials file's".to_owned());
        } else {
            let ids: Vec<String> = self.accounts.iter().map(AccountId::to_string).collect();
            parts.push(format!("accounts: {}", ids.join(", ")));
        }
        if self.methods.is_empty() {
            parts.push("methods: all".to_owned());
        } else {
            let m: Vec<&str> = self.methods.iter().map(Glob::as_str).collect();
            parts.push(format!("methods: {}", m.join(", ")));
        }
        if !self.deny_methods.is_empty() {
            let m: Vec<&str> = self.deny_methods.iter().map(Glob::as_str).collect();
            parts.push(format!("deny_methods: {}", m.join(", ")));
        }
        if self.read_only {
            parts.push("read-only".to_owned());
        }
        parts.push(match self.rate() {
            Some(r) => format!("rate: {r}"),
            None => "rate: unlimited".to_owned(),
        });
        parts.join("; ")
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("name", &self.name)
            .field("accounts", &self.accounts)
            .field("methods", &self.methods)
            .field("deny_methods", &self.deny_methods)
            .field("read_only", &self.read_only)
            .field("rate", &self.rate())
            .field("auth", &self.auth)
            .finish()
    }
}

/// The clients in force, with the lookups authentication needs. Replaced whole on reload.
pub struct ClientSet {
    /// Every client, by name.
    pub clients: Vec<Arc<Client>>,
    /// Clients by `key_id`.
    pub(crate) by_kid: HashMap<Arc<str>, Arc<Client>>,
    /// Clients with a static key: (SHA-256, client).
    pub(crate) static_keys: Vec<([u8; 32], Arc<Client>)>,
    /// Clients with a `tls_name`.
    pub(crate) tls_names: Vec<(ServerName<'static>, Arc<Client>)>,
    /// Verified app JWTs, so a repeated token skips the RSA verification until it expires.
    /// Belongs to this set: a reload (a changed key) starts it afresh.
    pub(crate) jwt_cache: JwtCache,
}

impl fmt::Debug for ClientSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.clients).finish()
    }
}

impl ClientSet {
    /// Read and validate the clients file (a regular file of at most 1 MiB). Limits of
    /// clients whose name and rate are unchanged since `previous` are carried over.
    pub fn load(path: &Path, previous: Option<&ClientSet>) -> Result<ClientSet, ClientsError> {
        Self::from_read(
            path,
            files::read_regular(path, files::MAX_CONFIG_FILE),
            previous,
        )
    }

    /// Like [`ClientSet::load`], from the file's bytes as already read (or why they could not
    /// be): a reload loads exactly the content it saw settle.
    pub fn from_read(
        path: &Path,
        read: Result<Vec<u8>, files::FileError>,
        previous: Option<&ClientSet>,
    ) -> Result<ClientSet, ClientsError> {
        let bytes = read.map_err(|e| ClientsError::File {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let text = String::from_utf8(bytes).map_err(|_| ClientsError::File {
            path: path.to_owned(),
            reason: "is not UTF-8 text".to_owned(),
        })?;
        Self::parse(path, &text, previous)
    }

    /// Validate the text of a clients file (`path` names it in errors).
    pub fn parse(
        path: &Path,
        text: &str,
        previous: Option<&ClientSet>,
    ) -> Result<ClientSet, ClientsError> {
        let doc = FileDoc::parse(path, text)?;
        let old: HashMap<&str, &Arc<Client>> = previous
            .map(|p| p.clients.iter().map(|c| (&*c.name, c)).collect())
            .unwrap_or_default();
        let mut set = ClientSet {
            clients: Vec::with_capacity(doc.clients.len()),
            by_kid: HashMap::new(),
            static_keys: Vec::new(),
            tls_names: Vec::new(),
            jwt_cache: JwtCache::default(),
        };
        let mut names = HashSet::new();
        for (name, fields) in doc.clients {
            let client_err = |reason: &str| ClientsError::Client {
                path: path.to_owned(),
                client: name.clone(),
                reason: reason.to_owned(),
            };
            check_name(&name).map_err(|e| client_err(&e))?;
            if !names.insert(name.to_ascii_lowercase()) {
                return Err(client_err(
                    "another client has the same name in another letter case",
                ));
            }
            let mut client = fields.into_client(&name).map_err(|e| e.at(path, &name))?;
            if let Some(rate) = client.rate()
                && let Some(prev) = old.get(name.as_str()).and_then(|c| c.limit())
                && prev.rate == rate
            {
                client.limit = Some(prev.clone());
            }
            set.add(Arc::new(client))
                .map_err(|(field, why)| field_err(path, &name, field, why))?;
        }
        Ok(set)
    }

    /// Index a client for authentication; each way in must belong to one client only.
    fn add(&mut self, client: Arc<Client>) -> Result<(), (&'static str, &'static str)> {
        if let Some(kid) = &client.auth.key_id
            && self.by_kid.insert(kid.clone(), client.clone()).is_some()
        {
            return Err(("key_id", "is the key_id of another client too"));
        }
        if let Some(hash) = client.auth.static_key_sha256 {
            if self.static_keys.iter().any(|(h, _)| *h == hash) {
                return Err((
                    "static_key_sha256",
                    "is the static key of another client too",
                ));
            }
            self.static_keys.push((hash, client.clone()));
        }
        if let Some(tls_name) = &client.auth.tls_name {
            if self.tls_names.iter().any(|(n, _)| same_name(n, tls_name)) {
                return Err(("tls_name", "is the tls_name of another client too"));
            }
            self.tls_names.push((tls_name.clone(), client.clone()));
        }
        self.clients.push(client);
        Ok(())
    }

    /// "3 clients: billing, crm, ops".
    pub fn summary(&self) -> String {
        let names: Vec<&str> = self.clients.iter().map(|c| &*c.name).collect();
        match names.len() {
            0 => "0 clients (every request gets 401)".to_owned(),
            1 => format!("1 client: {}", names[0]),
            n => format!("{n} clients: {}", names.join(", ")),
        }
    }
}

/// A parser message on one line (the contract: errors print as one line): its lines joined, and
/// any control character left (a lone `\r`, one inside a quoted value) escaped.
pub(crate) fn one_line(msg: &str) -> String {
    let joined = msg
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    printable(&joined)
}

/// `s` with control characters escaped (`\n`, `\u{1b}`), so a name or value taken from the file
/// cannot break an error message over lines.
pub fn printable(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn same_name(a: &ServerName<'_>, b: &ServerName<'_>) -> bool {
    match (a, b) {
        (ServerName::DnsName(a), ServerName::DnsName(b)) => {
            a.as_ref().eq_ignore_ascii_case(b.as_ref())
        }
        _ => false,
    }
}

/// A client's name: 1 to 64 letters, digits, `-` and `_`.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err("a name is 1 to 64 characters".to_owned());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err("a name holds only letters, digits, `-` and `_`".to_owned());
    }
    Ok(())
}

fn field_err(path: &Path, client: &str, field: &'static str, reason: &str) -> ClientsError {
    ClientsError::Field {
        path: path.to_owned(),
        client: client.to_owned(),
        field,
        reason: reason.to_owned(),
    }
}

/// The clients file as TOML: `[clients.NAME]` tables and nothing else. serde does the reading,
/// with every field's own validation in its deserializer, so an error names the line, the
/// client and the field.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    clients: std::collections::BTreeMap<String, Fields>,
}

impl FileDoc {
    fn parse(path: &Path, text: &str) -> Result<FileDoc, ClientsError> {
        let de = toml::de::Deserializer::new(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let line = e.inner().span().map_or(1, |s| {
                text[..s.start.min(text.len())].matches('\n').count() + 1
            });
            // A client's name is a TOML key: a quoted one may hold any character.
            let segments: Vec<String> =
                e.path().iter().map(|s| printable(&s.to_string())).collect();
            let reason = one_line(e.inner().message());
            let what = match segments.as_slice() {
                [c, client, field, ..]
                    if c == "clients" && !reason.starts_with("unknown field") =>
                {
                    format!("client `{client}`: field `{field}`: {reason}")
                }
                [c, client, ..] if c == "clients" => format!("client `{client}`: {reason}"),
                [c] if c == "clients" => {
                    format!("`clients` must hold [clients.NAME] tables: {reason}")
                }
                _ => format!("{reason} (the file holds only [clients.NAME] tables)"),
            };
            ClientsError::Line {
                path: path.to_owned(),
                line,
                what,
            }
        })
    }
}

/// One `[clients.NAME]` table, each field validated as it is read.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    #[serde(default, deserialize_with = "accounts")]
    accounts: Vec<AccountId>,
    #[serde(default)]
    methods: Vec<Glob>,
    #[serde(default)]
    deny_methods: Vec<Glob>,
    #[serde(default)]
    read_only: bool,
    #[serde(default, deserialize_with = "rate")]
    rate: Option<Rate>,
    #[serde(default, deserialize_with = "key_id")]
    key_id: Option<Arc<str>>,
    #[serde(default, deserialize_with = "public_key")]
    public_key: Option<jsonwebtoken::DecodingKey>,
    #[serde(default, deserialize_with = "sha256_hex")]
    static_key_sha256: Option<[u8; 32]>,
    #[serde(default, deserialize_with = "tls_name")]
    tls_name: Option<ServerName<'static>>,
}

/// A problem with a client found after its fields were read.
struct Invalid {
    field: Option<&'static str>,
    reason: &'static str,
}

impl Invalid {
    fn at(self, path: &Path, client: &str) -> ClientsError {
        match self.field {
            Some(field) => field_err(path, client, field, self.reason),
            None => ClientsError::Client {
                path: path.to_owned(),
                client: client.to_owned(),
                reason: self.reason.to_owned(),
            },
        }
    }
}

impl Fields {
    /// The client, once the fields agree with each other.
    fn into_client(self, name: &str) -> Result<Client, Invalid> {
        let auth = match (self.key_id, self.public_key) {
            (Some(_), None) => Err(Some("key_id")),
            (None, Some(_)) => Err(Some("public_key")),
            (key_id, jwt_key) => Ok(ClientAuth {
                key_id,
                jwt_key,
                static_key_sha256: self.static_key_sha256,
                tls_name: self.tls_name,
            }),
        }
        .map_err(|field| Invalid {
            field,
            reason: "key_id and public_key go together: the kid of the app's JWTs and the app's SPKI PEM",
        })?;
        if auth.key_id.is_none() && auth.static_key_sha256.is_none() && auth.tls_name.is_none() {
            return Err(Invalid {
                field: None,
                reason: "has no way to authenticate: give it key_id and public_key, static_key_sha256, or tls_name (`voxproxy client add` makes them)",
            });
        }
        Ok(Client {
            name: name.into(),
            accounts: self.accounts,
            methods: self.methods,
            deny_methods: self.deny_methods,
            read_only: self.read_only,
            limit: self.rate.map(|r| Arc::new(Limit::new(r))),
            auth,
        })
    }
}

/// A field's own deserializer: read a `T`, then check it with `check`.
fn checked<'de, D, T, U>(
    d: D,
    check: impl FnOnce(T) -> Result<U, String>,
) -> Result<Option<U>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    let raw = T::deserialize(d)?;
    check(raw).map(Some).map_err(serde::de::Error::custom)
}

fn accounts<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<AccountId>, D::Error> {
    let ids = checked(d, |ids: Vec<AccountId>| {
        if ids.is_empty() {
            Err("is empty: leave it out to use the first credentials file's account".to_owned())
        } else {
            Ok(ids)
        }
    })?;
    Ok(ids.unwrap_or_default())
}

fn rate<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Rate>, D::Error> {
    checked(d, |raw: String| Rate::parse(&raw))
}

fn key_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Arc<str>>, D::Error> {
    checked(d, |kid: String| {
        if kid.is_empty() || kid.len() > 256 || kid.bytes().any(|b| b.is_ascii_control()) {
            Err("must be 1 to 256 characters, no control characters".to_owned())
        } else {
            Ok(kid.into())
        }
    })
}

fn public_key<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<jsonwebtoken::DecodingKey>, D::Error> {
    checked(d, |pem: String| parse_public_key(&pem))
}

fn sha256_hex<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<[u8; 32]>, D::Error> {
    checked(d, |text: String| {
        parse_sha256_hex(&text)
            .ok_or_else(|| "must be 64 hexadecimal characters (the SHA-256 of the key)".to_owned())
    })
}

fn tls_name<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<ServerName<'static>>, D::Error> {
    checked(d, |raw: String| parse_tls_name(&raw))
}

pub fn parse_public_key(pem: &str) -> Result<jsonwebtoken::DecodingKey, String> {
    let spki = SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes()).map_err(|_| {
        "is not a PEM public key (expected -----BEGIN PUBLIC KEY-----, an SPKI RSA key)".to_owned()
    })?;
    let key = aws_lc_rs::rsa::PublicEncryptingKey::from_der(spki.as_ref())
        .map_err(|_| format!("is not an RSA public key of at least {MIN_RSA_BITS} bits"))?;
    let bits = key.key_size_bits();
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "is a {bits}-bit RSA key; at least {MIN_RSA_BITS} bits are required"
        ));
    }
    let public = aws_lc_rs::rsa::PublicKey::from_der(spki.as_ref())
        .map_err(|_| "is not a usable RSA public key".to_owned())?;
    Ok(jsonwebtoken::DecodingKey::from_rsa_der(public.as_ref()))
}

/// 64 hex characters to 32 bytes.
/// The 32 bytes of a SHA-256 written as 64 hexadecimal characters (either case).
pub fn parse_sha256_hex(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// Lowercase hex of bytes.
/// SHA-256 of a static key, lowercase hex (what the clients file keeps).
pub fn static_key_sha256(key: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
    hex::encode(digest.as_ref())
}

/// A DNS name (no wildcard, no IP address) as the reference identity for a client certificate.
pub fn parse_tls_name(raw: &str) -> Result<ServerName<'static>, String> {
    if raw.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!("`{raw}` is an IP address; tls_name is a DNS name"));
    }
    if raw.contains('*') {
        return Err(format!(
            "`{raw}` holds a wildcard; tls_name is the exact DNS name in the client's certificate"
        ));
    }
    let name = DnsName::try_from(raw.to_owned())
        .map_err(|_| format!("`{raw}` is not a valid DNS name"))?;
    Ok(ServerName::DnsName(name))
}

/// Most verified JWTs remembered at once.
pub(crate) const CACHE_CAP: usize = 4096;

/// A verified token, remembered until `exp`.
struct Cached {
    client: Arc<Client>,
    account: Option<AccountId>,
    exp: i64,
}

/// Verified app JWTs by the SHA-256 of the exact token text (so the memory per entry is small
/// whatever the token's size, and a hit means exactly these bytes were verified before).
#[derive(Default)]
pub(crate) struct JwtCache {
    map: Mutex<HashMap<[u8; 32], Cached>>,
}

impl JwtCache {
    pub(crate) fn fingerprint(&self, token: &str) -> [u8; 32] {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        out
    }

    pub(crate) fn get(&self, key: &[u8; 32], now: i64) -> Option<(Arc<Client>, Option<AccountId>)> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(key) {
            Some(c) if c.exp > now => Some((c.client.clone(), c.account)),
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    pub(crate) fn put(
        &self,
        key: [u8; 32],
        client: Arc<Client>,
        account: Option<AccountId>,
        exp: i64,
        now: i64,
    ) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= CACHE_CAP {
            map.retain(|_, c| c.exp > now);
            if map.len() >= CACHE_CAP {
                // Still full of live tokens: forget an eighth of them (they verify again).
                let drop: Vec<[u8; 32]> = map.keys().take(CACHE_CAP / 8).copied().collect();
                for k in drop {
                    map.remove(&k);
                }
            }
        }
        map.insert(
            key,
            Cached {
                client,
                account,
                exp,
            },
        );
    }

    /// Entries held (tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.lock().map_or(0, |m| m.len())
    }

    /// Forget every entry (tests).
    #[cfg(test)]
    pub(crate) fn clear(&self) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public_pem() -> String {
        use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
        use aws_lc_rs::signature::KeyPair as _;
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let der: PublicKeyX509Der = pair.public_key().as_der().unwrap();
        crate::credentials::pem_encode("PUBLIC KEY", der.as_ref())
    }

    fn parse(text: &str) -> Result<ClientSet, String> {
        ClientSet::parse(Path::new("/etc/voxproxy/clients.toml"), text, None)
            .map_err(|e| e.to_string())
    }

    const HASH: &str = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";

    #[test]
    fn a_full_file_loads() {
        let pem = public_pem();
        let text = format!(
            r#"# operator's comment
[clients.billing]                 # name
accounts = [1234567, "7654321"]
methods = ["Get*", "SetUserInfo"]
deny_methods = ["DelUser"]
read_only = false
rate = "20/s"
key_id = "6f1c-uuid"
public_key = """{pem}"""

[clients.crm]
static_key_sha256 = "{HASH}"  # the CRM

[clients.ops]
tls_name = "ops.apps.internal"
read_only = true
"#
        );
        let set = parse(&text).unwrap();
        assert_eq!(set.summary(), "3 clients: billing, crm, ops");
        let billing = &set.clients[0];
        assert_eq!(billing.accounts, vec![1234567, 7654321]);
        assert_eq!(billing.rate().unwrap().to_string(), "20/s");
        assert!(billing.has_method_rules());
        assert!(set.by_kid.contains_key("6f1c-uuid"));
        assert_eq!(set.static_keys.len(), 1);
        assert_eq!(set.static_keys[0].0[31], 0xff);
        assert_eq!(set.tls_names.len(), 1);
        let debug = format!("{set:?}");
        assert!(!debug.contains("BEGIN"), "{debug}");
        assert!(
            !debug.to_lowercase().contains(&HASH.to_lowercase()),
            "{debug}"
        );
        assert_eq!(
            billing.describe_policy(),
            "accounts: 1234567, 7654321; methods: Get*, SetUserInfo; deny_methods: DelUser; rate: 20/s"
        );
    }

    #[test]
    fn empty_file_has_no_clients() {
        assert_eq!(parse("").unwrap().clients.len(), 0);
        assert_eq!(parse("[clients]\n").unwrap().clients.len(), 0);
    }

    /// Broken clients files and what their error must say.
    const BROKEN: &[(&str, &str)] = &[
        ("x = 1", "line 1: unknown field `x`, expected `clients`"),
        ("clients = 1", "`clients` must hold [clients.NAME] tables"),
        (
            "[clients.a]\nfoo = 1\nstatic_key_sha256 = \"{H}\"",
            "line 2: client `a`: unknown field `foo`, expected one of `accounts`",
        ),
        (
            "[clients.\"a b\"]\nstatic_key_sha256 = \"{H}\"",
            "client `a b`: a name holds only",
        ),
        ("[clients.a]\n", "client `a`: has no way to authenticate"),
        (
            "[clients.a]\nstatic_key_sha256 = \"abc\"",
            "line 2: client `a`: field `static_key_sha256`: must be 64 hexadecimal",
        ),
        (
            "[clients.a]\nstatic_key_sha256 = \"{H}\"\nrate = \"0/s\"",
            "line 3: client `a`: field `rate`: `0/s` is not a rate",
        ),
        (
            "[clients.a]\nstatic_key_sha256 = \"{H}\"\nrate = 5",
            "field `rate`: invalid type: integer `5`, expected a string",
        ),
        (
            "[clients.a]\nstatic_key_sha256 = \"{H}\"\nmethods = [\"Get?\"]",
            "client `a`: field `methods`: `Get?` holds",
        ),
        (
            "[clients.a]\nstatic_key_sha256 = \"{H}\"\ndeny_methods = \"Del*\"",
            "field `deny_methods`: invalid type: string \"Del*\", expected a sequence",
        ),
        (
            "[clients.a]\nstatic_key_sha256 = \"{H}\"\naccounts = [0]",
            "field `accounts`: 0 is not a positive account id",
        ),
        (
            "[clients.a]\nstatic_key_sha256 = \"{H}\"\naccounts = []",
            "field `accounts`: is empty",
        ),
        (
            "[clients.a]\nstatic_key_sha256 = \"{H}\"\nread_only = \"yes\"",
            "field `read_only`: invalid type: string \"yes\", expected a boolean",
        ),
        (
            "[clients.a]\nkey_id = \"k\"",
            "field `key_id`: key_id and public_key go together",
        ),
        (
            "[clients.a]\nkey_id = \"k\"\npublic_key = \"nope\"",
            "field `public_key`: is not a PEM public key",
        ),
        (
            "[clients.a]\ntls_name = \"*.x.y\"",
            "field `tls_name`: `*.x.y` holds a wildcard",
        ),
        ("[clients.a]\ntls_name = \"10.0.0.1\"", "is an IP address"),
        (
            "[clients.a]\ntls_name = \"bad name\"",
            "is not a valid DNS name",
        ),
        (
            "[clients.a]\nstatic_key_sha256 = \"{H}\"\n[clients.b]\nstatic_key_sha256 = \"{H}\"",
            "client `b`: field `static_key_sha256`: is the static key of another client",
        ),
        (
            "[clients.a]\ntls_name = \"a.x\"\n[clients.b]\ntls_name = \"A.X\"",
            "client `b`: field `tls_name`: is the tls_name of another client",
        ),
        (
            "[clients.a]\ntls_name = \"a.x\"\n[clients.A]\ntls_name = \"b.x\"",
            "another client has the same name in another letter case",
        ),
        ("[clients.a]\ntls_name = \"a.x\"\n[clients.a]\n", "line 3"),
        // Names and values from the file never break the message over lines.
        (
            "[clients.\"a\\nb\"]\nstatic_key_sha256 = \"{H}\"",
            "client `a\\nb`: a name holds only",
        ),
        (
            "[clients.\"a\\r\\nb\"]\nfoo = 1",
            "client `a\\r\\nb`: unknown field `foo`",
        ),
        (
            "[clients.\"a\\u001b\"]\nrate = 1",
            "client `a\\u{1b}`: field `rate`: invalid type",
        ),
        (
            "[clients.a]\ntls_name = \"a\\rb\"",
            "`a\\rb` is not a valid DNS name",
        ),
    ];

    #[test]
    fn errors_name_file_client_and_field() {
        for (text, want) in BROKEN {
            let text = text.replace("{H}", HASH);
            let err = parse(&text)
                .err()
                .unwrap_or_else(|| panic!("accepted: {text}"));
            assert!(
                err.starts_with("clients file /etc/voxproxy/clients.toml: "),
                "{err}"
            );
            assert!(err.contains(want), "{text}\n→ {err}\nwanted {want}");
            assert!(!err.contains(['\n', '\r']), "one line: {err}");
        }
    }

    #[test]
    fn duplicate_key_ids_are_refused() {
        let pem = public_pem();
        let text = format!(
            "[clients.a]\nkey_id = \"k\"\npublic_key = \"\"\"{pem}\"\"\"\n[clients.b]\nkey_id = \"k\"\npublic_key = \"\"\"{pem}\"\"\"\n"
        );
        let err = parse(&text).err().unwrap();
        assert!(
            err.contains("client `b`: field `key_id`: is the key_id of another client"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn reload_keeps_the_limit_of_an_unchanged_client() {
        let text = |rate: &str| {
            format!(
                "[clients.a]\nstatic_key_sha256 = \"{HASH}\"\nrate = \"{rate}\"\n[clients.b]\ntls_name = \"b.x\"\nrate = \"1/m\"\n"
            )
        };
        let limits = crate::limits::Limits::new(
            None,
            std::time::Duration::ZERO,
            Arc::new(crate::metrics::Metrics::new(false)),
        );
        let admits = |c: &Client| {
            let limit = c.limit().unwrap().clone();
            let name = c.name.clone();
            let limits = &limits;
            async move { limits.client(&name, &limit).await.is_ok() }
        };
        let first = parse(&text("1/m")).unwrap();
        assert!(admits(&first.clients[0]).await);
        assert!(admits(&first.clients[1]).await);
        let p = Path::new("c.toml");
        let second = ClientSet::parse(p, &text("1/m"), Some(&first)).unwrap();
        assert!(
            !admits(&second.clients[0]).await,
            "same rate: the bucket carries over"
        );
        let third = ClientSet::parse(p, &text("2/m"), Some(&second)).unwrap();
        assert!(
            admits(&third.clients[0]).await,
            "a new rate starts a new bucket"
        );
        assert!(!admits(&third.clients[1]).await);
    }

    #[test]
    fn hex() {
        assert_eq!(parse_sha256_hex(HASH).unwrap()[0], 0);
        assert!(parse_sha256_hex(&HASH.replace('0', "g")).is_none());
        assert!(parse_sha256_hex(&HASH[1..]).is_none());
        assert_eq!(
            static_key_sha256("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
