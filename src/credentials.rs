//! Voximplant `credentials.json`: load, validate, and hold the signing key behind a redacting
//! `Debug`; the set of files in force ([`CredentialSet`]). The private key is parsed once here;
//! nothing else ever sees its PEM.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_lc_rs::signature::KeyPair as _;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

use crate::account::AccountId;
use crate::files::{self, FileError};

/// Smallest RSA key accepted, in bits (what Voximplant issues, and the floor for RS256).
pub const MIN_RSA_BITS: usize = 2048;

/// Why a credentials file could not be loaded. Every message names the file; none holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The file does not exist.
    #[error("credentials file {}: not found; name the file with --credentials PATH or VOXIMPLANT_CREDENTIALS (a credentials.json comes from the Voximplant control panel, Settings > Service accounts, or the CreateKey API method)", files::shown(path).display())]
    NotFound { path: PathBuf },
    /// Something other than a small regular file is there.
    #[error("credentials file {}: {problem}", path.display())]
    NotAFile { path: PathBuf, problem: FileError },
    /// The file exists but cannot be read.
    #[error("credentials file {}: cannot read", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not JSON, or not a JSON object.
    #[error("credentials file {}: not a JSON object ({reason})", path.display())]
    NotJson { path: PathBuf, reason: String },
    /// A required field is absent.
    #[error("credentials file {}: missing field `{field}`", path.display())]
    MissingField { path: PathBuf, field: &'static str },
    /// A field has the wrong type or an invalid value.
    #[error("credentials file {}: field `{field}` {reason}", path.display())]
    BadField {
        path: PathBuf,
        field: &'static str,
        reason: &'static str,
    },
    /// `private_key` is not a PEM private key.
    #[error("credentials file {}: field `private_key` is not a PEM private key (expected -----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----)", path.display())]
    NotPem { path: PathBuf },
    /// `private_key` is a key, but not a usable RSA key.
    #[error("credentials file {}: field `private_key` is not an RSA private key ({reason})", path.display())]
    NotRsa { path: PathBuf, reason: String },
    /// The RSA key is too small.
    #[error("credentials file {}: field `private_key` is a {bits}-bit RSA key; at least {MIN_RSA_BITS} bits are required", path.display())]
    TooSmall { path: PathBuf, bits: usize },
}

/// An RSA signing key, parsed once. `Debug` never prints key material.
pub struct SigningKey {
    pair: aws_lc_rs::rsa::KeyPair,
    /// PKCS#1 `RSAPublicKey` DER, for verifying what we mint (`check`, tests).
    public_der: Vec<u8>,
    /// SHA-256 of the public key and key id: tells a rotated key from a reloaded identical one.
    fingerprint: [u8; 32],
}

impl SigningKey {
    /// Parse a PEM private key (PKCS#8 or PKCS#1), requiring RSA of at least 2048 bits.
    pub fn from_pem(path: &Path, pem: &str) -> Result<SigningKey, CredentialsError> {
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| {
            CredentialsError::NotPem {
                path: path.to_owned(),
            }
        })?;
        let pair = match &der {
            PrivateKeyDer::Pkcs8(d) => aws_lc_rs::rsa::KeyPair::from_pkcs8(d.secret_pkcs8_der()),
            PrivateKeyDer::Pkcs1(d) => aws_lc_rs::rsa::KeyPair::from_der(d.secret_pkcs1_der()),
            PrivateKeyDer::Sec1(_) => {
                return Err(CredentialsError::NotRsa {
                    path: path.to_owned(),
                    reason: "it is an EC key".to_owned(),
                });
            }
            _ => {
                return Err(CredentialsError::NotRsa {
                    path: path.to_owned(),
                    reason: "unknown key type".to_owned(),
                });
            }
        };
        let pair = pair.map_err(|e| {
            // aws-lc refuses a modulus under 2048 bits at parse time; report it as too small, with
            // the size read from the DER, rather than as "not RSA".
            if e.description_() == "TooSmall" {
                let bits = match &der {
                    PrivateKeyDer::Pkcs8(d) => pkcs8_rsa_modulus_bits(d.secret_pkcs8_der()),
                    PrivateKeyDer::Pkcs1(d) => pkcs1_modulus_bits(d.secret_pkcs1_der()),
                    _ => None,
                };
                if let Some(bits) = bits {
                    return CredentialsError::TooSmall {
                        path: path.to_owned(),
                        bits,
                    };
                }
            }
            let reason = match e.description_() {
                "WrongAlgorithm" => "it is another kind of key (Voximplant keys are RSA)",
                _ => "rejected by the RSA parser",
            };
            CredentialsError::NotRsa {
                path: path.to_owned(),
                reason: reason.to_owned(),
            }
        })?;
        let bits = pair.public_modulus_len() * 8;
        if bits < MIN_RSA_BITS {
            return Err(CredentialsError::TooSmall {
                path: path.to_owned(),
                bits,
            });
        }
        let public_der = pair.public_key().as_ref().to_vec();
        Ok(SigningKey {
            pair,
            public_der,
            fingerprint: [0; 32],
        })
    }

    /// Key size in bits.
    pub fn bits(&self) -> usize {
        self.pair.public_modulus_len() * 8
    }

    /// PKCS#1 DER of the public key.
    pub fn public_der(&self) -> &[u8] {
        &self.public_der
    }

    /// Sign `msg` with RSASSA-PKCS1-v1_5 SHA-256 (RS256).
    pub fn sign_rs256(&self, msg: &[u8]) -> Result<Vec<u8>, aws_lc_rs::error::Unspecified> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let mut sig = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(&aws_lc_rs::signature::RSA_PKCS1_SHA256, &rng, msg, &mut sig)?;
        Ok(sig)
    }

    /// Identity of this key together with a key id.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey(RSA-{}, ****)", self.bits())
    }
}

/// One loaded credentials file.
#[derive(Clone)]
pub struct Credentials {
    /// Where it was loaded from (reloads read it again).
    pub path: PathBuf,
    /// The service account (`iss` of tokens for it).
    pub account_id: AccountId,
    /// Key id (`kid` of tokens signed with this key).
    pub key_id: Arc<str>,
    /// The key itself.
    pub key: Arc<SigningKey>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("path", &self.path)
            .field("account_id", &self.account_id)
            .field("key_id", &self.key_id)
            .field("key", &self.key)
            .finish()
    }
}

impl Credentials {
    /// Load and validate a credentials file. Returns the credentials and whether the file is
    /// readable by group or others (the caller warns).
    pub fn load(path: &Path) -> Result<(Credentials, bool), CredentialsError> {
        Self::from_read(path, files::read_regular(path, files::MAX_CONFIG_FILE))
    }

    /// Like [`Credentials::load`], from the file's bytes as already read (or why they could not
    /// be): a reload loads exactly the content it saw settle.
    pub fn from_read(
        path: &Path,
        read: Result<Vec<u8>, FileError>,
    ) -> Result<(Credentials, bool), CredentialsError> {
        let bytes = read.map_err(|e| {
            let path = path.to_owned();
            match e {
                FileError::NotFound => CredentialsError::NotFound { path },
                FileError::Io(source) => CredentialsError::Unreadable { path, source },
                problem => CredentialsError::NotAFile { path, problem },
            }
        })?;
        let loose = is_group_or_world_readable(path);
        Ok((Self::parse(path, &bytes)?, loose))
    }

    /// Parse the bytes of a credentials file (`path` only names it in errors).
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Credentials, CredentialsError> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| CredentialsError::NotJson {
                path: path.to_owned(),
                // serde_json's message carries line and column only, never the content.
                reason: e.to_string(),
            })?;
        let obj = create_key_result(&value).ok_or_else(|| CredentialsError::NotJson {
            path: path.to_owned(),
            reason: "the top level is not an object".to_owned(),
        })?;
        let field = |name: &'static str| {
            obj.get(name).ok_or(CredentialsError::MissingField {
                path: path.to_owned(),
                field: name,
            })
        };
        let bad = |name: &'static str, reason: &'static str| CredentialsError::BadField {
            path: path.to_owned(),
            field: name,
            reason,
        };
        let account_id = match AccountId::from_json(Some(field("account_id")?)) {
            Ok(Some(id)) => id,
            Ok(None) => return Err(bad("account_id", "must be a number or a string of digits")),
            Err(_) => return Err(bad("account_id", "must be a positive integer")),
        };
        let key_id = match field("key_id")? {
            serde_json::Value::String(s) if !s.is_empty() => s.clone(),
            serde_json::Value::String(_) => return Err(bad("key_id", "must not be empty")),
            _ => return Err(bad("key_id", "must be a string")),
        };
        if key_id.bytes().any(|b| b.is_ascii_control()) {
            return Err(bad("key_id", "must not contain control characters"));
        }
        let pem = match field("private_key")? {
            serde_json::Value::String(s) => s,
            _ => return Err(bad("private_key", "must be a string holding a PEM key")),
        };
        let mut key = SigningKey::from_pem(path, pem)?;
        key.fingerprint = fingerprint(&key.public_der, &key_id);
        Ok(Credentials {
            path: path.to_owned(),
            account_id,
            key_id: Arc::from(key_id),
            key: Arc::new(key),
        })
    }
}

/// The credentials object of a file: the top-level object, or the `result` of a whole `CreateKey`
/// answer (`{"result": {...}}`, or `{"result": [{...}]}` with one key), since the documentation
/// says to save the `result` value and people save the whole answer.
fn create_key_result(
    value: &serde_json::Value,
) -> Option<&serde_json::Map<String, serde_json::Value>> {
    let obj = value.as_object()?;
    if obj.contains_key("private_key") {
        return Some(obj);
    }
    match obj.get("result") {
        Some(serde_json::Value::Object(result)) => Some(result),
        Some(serde_json::Value::Array(keys)) if keys.len() == 1 => keys[0].as_object(),
        _ => Some(obj),
    }
}

/// The credentials files in force, in settings order; replaced whole on reload. Never empty: the
/// first is the default account and signs for child accounts.
#[derive(Debug)]
pub struct CredentialSet {
    list: Vec<Credentials>,
}

impl CredentialSet {
    /// A set of loaded files; `None` when there are none.
    pub fn new(list: Vec<Credentials>) -> Option<CredentialSet> {
        (!list.is_empty()).then_some(CredentialSet { list })
    }

    /// The loaded files, in settings order.
    pub fn list(&self) -> &[Credentials] {
        &self.list
    }

    /// The first file's account: used when a request names none.
    pub fn default_account(&self) -> AccountId {
        self.list[0].account_id
    }
}

/// Load every credentials file, each error naming its file and where the setting came from
/// (`origin`); warn about loose permissions. Every problem is reported, not only the first.
pub fn load_all(
    paths: &[PathBuf],
    origin: &dyn fmt::Display,
) -> Result<CredentialSet, Vec<anyhow::Error>> {
    load_all_from(paths, origin, |path| {
        files::read_regular(path, files::MAX_CONFIG_FILE)
    })
}

/// Like [`load_all`], each file's bytes coming from `read` (a reload hands over what it read).
pub fn load_all_from(
    paths: &[PathBuf],
    origin: &dyn fmt::Display,
    mut read: impl FnMut(&Path) -> Result<Vec<u8>, FileError>,
) -> Result<CredentialSet, Vec<anyhow::Error>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match Credentials::from_read(path, read(path)) {
            Ok((creds, loose)) => {
                if loose {
                    tracing::warn!(
                        path = %path.display(),
                        "credentials file is readable by group or others; chmod 600 it"
                    );
                }
                out.push(creds);
            }
            Err(e) => {
                errors.push(anyhow::Error::new(e).context(format!("credentials (from {origin})")))
            }
        }
    }
    match CredentialSet::new(out) {
        Some(set) if errors.is_empty() => Ok(set),
        Some(_) => Err(errors),
        None if errors.is_empty() => Err(vec![anyhow::anyhow!(
            "credentials (from {origin}): no credentials file configured"
        )]),
        None => Err(errors),
    }
}

/// PEM text of `der` under `label`, LF line endings (what `credentials.json` files and the
/// clients file hold).
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(label, der.to_vec()), config)
}

fn fingerprint(public_der: &[u8], key_id: &str) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(public_der);
    ctx.update(&[0]);
    ctx.update(key_id.as_bytes());
    let mut out = [0; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// One DER element: `(tag, contents, rest)`. Only what reading a key's modulus size needs.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// Bits of the modulus of a PKCS#1 `RSAPrivateKey` (`SEQUENCE { version, n, ... }`).
fn pkcs1_modulus_bits(der: &[u8]) -> Option<usize> {
    const SEQUENCE: u8 = 0x30;
    const INTEGER: u8 = 0x02;
    let (SEQUENCE, body, _) = der_element(der)? else {
        return None;
    };
    let (INTEGER, _version, body) = der_element(body)? else {
        return None;
    };
    let (INTEGER, n, _) = der_element(body)? else {
        return None;
    };
    let n = &n[n.iter().position(|b| *b != 0)?..];
    Some(n.len() * 8 - n[0].leading_zeros() as usize)
}

/// Bits of the RSA modulus inside a PKCS#8 `PrivateKeyInfo`
/// (`SEQUENCE { version, algorithm, OCTET STRING RSAPrivateKey, ... }`).
fn pkcs8_rsa_modulus_bits(der: &[u8]) -> Option<usize> {
    const SEQUENCE: u8 = 0x30;
    const INTEGER: u8 = 0x02;
    const OCTET_STRING: u8 = 0x04;
    let (SEQUENCE, body, _) = der_element(der)? else {
        return None;
    };
    let (INTEGER, _version, body) = der_element(body)? else {
        return None;
    };
    let (SEQUENCE, _algorithm, body) = der_element(body)? else {
        return None;
    };
    let (OCTET_STRING, key, _) = der_element(body)? else {
        return None;
    };
    pkcs1_modulus_bits(key)
}

fn is_group_or_world_readable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o044 != 0)
}

#[cfg(test)]
mod tests;
