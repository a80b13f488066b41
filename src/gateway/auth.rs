//! Client authentication, the three ways of the contract, in this order:
//!
//! 1. `Proxy-Authorization` present: it alone decides. `Bearer <key>` or `Basic
//!    base64(user:key)`; the key's SHA-256 is compared in constant time with every client's
//!    `static_key_sha256`. The Basic user name is not checked: the key (256 random bits) names
//!    its client by itself, and tools put all sorts of things there (`https_proxy=http://x:KEY@…`).
//! 2. A verified TLS client certificate whose DNS name is some client's `tls_name`.
//! 3. `Authorization: Bearer <app JWT>`: RS256 only, `kid` = a client's `key_id`, signature by
//!    that client's key, `exp` not passed (no leeway), `iat` at most 60 s ahead,
//!    `exp - iat` ≤ 3600; its `iss` (a number or a string of digits) is the wanted account.
//!
//! When the static key decides, an `Authorization: Bearer` JWT the app also sent (Node through
//! `https_proxy=http://NAME:KEY@…` always signs one) is ignored entirely, as the contract says:
//! the account comes from the path prefix or the account header, else the client's first account.
//! When a certificate decides, the JWT is not verified, but its `iss`, when readable, still names
//! the account (the official clients put the account they were configured for there, and acting
//! for another one silently would be the dangerous choice); the client's `accounts` still apply.
//!
//! Verified app JWTs are cached by their SHA-256 until they expire, so a client that reuses its
//! token pays for one RSA verification, not one per request. Only verified tokens enter the cache
//! (an attacker cannot fill it), it is bounded, and it belongs to one loaded client set.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use http::{HeaderMap, HeaderValue, header};
use jsonwebtoken::{Algorithm, Validation};
use rustls_pki_types::CertificateDer;
use subtle::ConstantTimeEq as _;

use super::clients::{Client, ClientSet};
use super::identity::Identity;
use crate::account::{AccountId, JwtIss};
use crate::error::{ErrorKind, ProxyError};
use crate::metrics::{Metrics, ReasonLabels};

/// How far in the future an app JWT's `iat` may be (clock skew between hosts).
pub const MAX_IAT_AHEAD: i64 = 60;
/// Longest app JWT lifetime accepted (`exp - iat`), as Voximplant's own limit.
pub const MAX_LIFETIME: i64 = 3600;
/// Longest token or key looked at.
const MAX_CREDENTIAL_LEN: usize = 8 * 1024;

/// A refusal: the metric reason, the client when known, and the message for the client.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) reason: &'static str,
    client: Option<Arc<str>>,
    pub(crate) msg: String,
}

fn refusal(reason: &'static str, msg: impl Into<String>) -> Refusal {
    Refusal {
        reason,
        client: None,
        msg: msg.into(),
    }
}

/// Authenticate a request against `set`; counts failures in `auth_failures` by reason.
pub(crate) fn authenticate(
    set: &ClientSet,
    headers: &HeaderMap,
    peer_cert: Option<&CertificateDer<'static>>,
    metrics: &Metrics,
) -> Result<Identity, ProxyError> {
    authenticate_at(set, headers, peer_cert, now()).map_err(|r| {
        metrics
            .auth_failures
            .get_or_create(&ReasonLabels {
                reason: r.reason,
                client: r.client.as_deref().map(|c| metrics.client_label(c)),
            })
            .inc();
        ProxyError::new(ErrorKind::ClientUnauthenticated, r.msg)
    })
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub(crate) fn authenticate_at(
    set: &ClientSet,
    headers: &HeaderMap,
    peer_cert: Option<&CertificateDer<'static>>,
    now: i64,
) -> Result<Identity, Refusal> {
    if let Some(value) = headers.get(header::PROXY_AUTHORIZATION) {
        let client = static_key_client(set, value)?;
        // The contract: the static key decides and the JWT is ignored, account included.
        return Ok(Identity {
            client,
            jwt: JwtIss::Ignored,
        });
    }
    if let Some(cert) = peer_cert
        && let Some(client) = certificate_client(set, cert)
    {
        return Ok(Identity {
            client,
            jwt: JwtIss::Unverified,
        });
    }
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let token = crate::headers::bearer_token(value).ok_or_else(|| {
            refusal(
                "bad_jwt",
                "Authorization is not `Bearer <JWT>`: sign an RS256 JWT with the key from the client's app.json, or use its static key in Proxy-Authorization",
            )
        })?;
        let (client, iss) = verify_app_jwt(set, token, now)?;
        return Ok(Identity {
            client,
            jwt: JwtIss::Verified(iss),
        });
    }
    if peer_cert.is_some() {
        return Err(refusal(
            "unknown_tls_name",
            "the TLS client certificate names no client (no client has its DNS name as tls_name)",
        ));
    }
    Err(refusal(
        "missing",
        "no client credentials: send the client's app JWT in Authorization, its static key in Proxy-Authorization (Bearer, or Basic with the key as password), or a TLS client certificate",
    ))
}

/// The client whose static key is in `Proxy-Authorization`.
fn static_key_client(set: &ClientSet, value: &HeaderValue) -> Result<Arc<Client>, Refusal> {
    let unreadable = || {
        refusal(
            "bad_proxy_authorization",
            "Proxy-Authorization is neither `Bearer <static key>` nor `Basic base64(name:static key)`",
        )
    };
    let text = value.to_str().map_err(|_| unreadable())?.trim();
    if text.len() > MAX_CREDENTIAL_LEN {
        return Err(unreadable());
    }
    let (scheme, rest) = text.split_once(' ').ok_or_else(unreadable)?;
    let rest = rest.trim();
    let decoded;
    let key: &[u8] = if scheme.eq_ignore_ascii_case("bearer") {
        rest.as_bytes()
    } else if scheme.eq_ignore_ascii_case("basic") {
        decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(rest))
            .map_err(|_| unreadable())?;
        // user:key; the user name is deliberately not checked (module docs).
        let colon = decoded
            .iter()
            .position(|b| *b == b':')
            .ok_or_else(unreadable)?;
        &decoded[colon + 1..]
    } else {
        return Err(unreadable());
    };
    if key.is_empty() {
        return Err(refusal(
            "bad_static_key",
            "Proxy-Authorization holds an empty key",
        ));
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key);
    // Compare with every client, without stopping early: the time taken says nothing about
    // how close a guess came.
    let mut found = None;
    for (hash, client) in &set.static_keys {
        if bool::from(digest.as_ref().ct_eq(hash)) {
            found = Some(client);
        }
    }
    found.cloned().ok_or_else(|| {
        refusal(
            "bad_static_key",
            "the static key in Proxy-Authorization belongs to no client",
        )
    })
}

/// The client whose `tls_name` the certificate is valid for.
fn certificate_client(set: &ClientSet, cert: &CertificateDer<'static>) -> Option<Arc<Client>> {
    if set.tls_names.is_empty() {
        return None;
    }
    let cert = webpki::EndEntityCert::try_from(cert).ok()?;
    set.tls_names
        .iter()
        .find(|(name, _)| cert.verify_is_valid_for_subject_name(name).is_ok())
        .map(|(_, client)| client.clone())
}

/// A JWT NumericDate as whole seconds.
fn numeric_date(v: Option<&serde_json::Value>) -> Option<i64> {
    let v = v?;
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite())
            .map(|f| f.floor() as i64)
    })
}

/// Verify an app JWT (or find it in the cache): the client and the account its `iss` names.
fn verify_app_jwt(
    set: &ClientSet,
    token: &str,
    now: i64,
) -> Result<(Arc<Client>, Option<AccountId>), Refusal> {
    if token.len() > MAX_CREDENTIAL_LEN {
        return Err(refusal("bad_jwt", "the app JWT is too long"));
    }
    if token.starts_with("vxp_") {
        return Err(refusal(
            "bad_jwt",
            "Authorization holds a static key: static keys go in Proxy-Authorization (`Bearer <key>`, or Basic with the key as the password)",
        ));
    }
    let fingerprint = set.jwt_cache.fingerprint(token);
    if let Some(hit) = set.jwt_cache.get(&fingerprint, now) {
        return Ok(hit);
    }
    let (client, key) = signer_of(set, token)?;
    let with_client = |reason: &'static str, msg: String| Refusal {
        reason,
        client: Some(client.name.clone()),
        msg,
    };
    let claims = decode(token, key, &client.name).map_err(|(r, m)| with_client(r, m))?;
    let (account, exp) = check_claims(&claims, now).map_err(|(r, m)| with_client(r, m))?;
    set.jwt_cache
        .put(fingerprint, client.clone(), account, exp, now);
    Ok((client.clone(), account))
}

/// The client whose `key_id` is the JWT's `kid`, and its key; the header must say RS256.
fn signer_of<'a>(
    set: &'a ClientSet,
    token: &str,
) -> Result<(&'a Arc<Client>, &'a jsonwebtoken::DecodingKey), Refusal> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| {
        refusal(
            "bad_jwt",
            "Authorization holds no readable RS256 JWT (header.payload.signature, base64url)",
        )
    })?;
    if header.alg != Algorithm::RS256 {
        return Err(refusal(
            "bad_jwt",
            format!(
                "the app JWT is signed with {:?}; only RS256 is accepted",
                header.alg
            ),
        ));
    }
    let kid = header
        .kid
        .ok_or_else(|| refusal("bad_jwt", "the app JWT has no kid in its header"))?;
    let client = set.by_kid.get(kid.as_str()).ok_or_else(|| {
        refusal(
            "unknown_key",
            "the app JWT's kid is the key_id of no client",
        )
    })?;
    match &client.auth.jwt_key {
        Some(key) => Ok((client, key)),
        None => Err(refusal("unknown_key", "the app JWT's kid has no key")),
    }
}

/// A refusal's metric reason and message, before the client is attached.
pub(crate) type Why = (&'static str, String);

/// The claims of a JWT whose signature verifies with `key` and whose `exp` has not passed.
fn decode(
    token: &str,
    key: &jsonwebtoken::DecodingKey,
    client: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, Why> {
    let mut validation = Validation::new(Algorithm::RS256);
    // jsonwebtoken's default leeway (60 s) would accept just-expired tokens.
    validation.leeway = 0;
    validation.validate_exp = true;
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp"]);
    jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, key, &validation)
        .map(|data| data.claims)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => (
                "bad_signature",
                format!(
                    "the app JWT's signature does not verify with the public key of client {client}"
                ),
            ),
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                ("expired", "the app JWT has expired".to_owned())
            }
            _ => (
                "bad_jwt",
                "the app JWT is malformed (claims must be a JSON object with numeric iat and exp)"
                    .to_owned(),
            ),
        })
}

/// `iat` and `exp` as the contract wants them (not expired, `iat` at most 60 s ahead, a lifetime
/// of at most 3600 s) and `iss` an account id: the account it names and the expiry.
pub(crate) fn check_claims(
    claims: &serde_json::Map<String, serde_json::Value>,
    now: i64,
) -> Result<(Option<AccountId>, i64), Why> {
    let (Some(iat), Some(exp)) = (
        numeric_date(claims.get("iat")),
        numeric_date(claims.get("exp")),
    ) else {
        return Err((
            "bad_jwt",
            "the app JWT needs numeric iat and exp claims".to_owned(),
        ));
    };
    if exp <= now {
        return Err(("expired", "the app JWT has expired".to_owned()));
    }
    if iat > now + MAX_IAT_AHEAD {
        return Err((
            "iat_in_future",
            format!(
                "the app JWT is issued {} s in the future (at most {MAX_IAT_AHEAD} s allowed); check the app host's clock",
                iat.saturating_sub(now)
            ),
        ));
    }
    // Saturating: a NumericDate such as -1e300 reads as i64::MIN, and a wrapped difference
    // would pass for a short lifetime.
    let lifetime = exp.saturating_sub(iat);
    if lifetime > MAX_LIFETIME {
        return Err((
            "lifetime_too_long",
            format!("the app JWT lives {lifetime} s (exp - iat); at most {MAX_LIFETIME} s allowed"),
        ));
    }
    let account = AccountId::from_json(claims.get("iss")).map_err(|_| {
        (
            "bad_iss",
            "the app JWT's iss is not an account id (a positive number or a string of digits)"
                .to_owned(),
        )
    })?;
    Ok((account, exp))
}

#[cfg(test)]
mod tests;
