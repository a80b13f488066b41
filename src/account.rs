//! Which account a request acts for: the [`AccountId`] type and the contract's rule, all of it,
//! in one place ([`Rules::choose`]):
//!
//! 1. the path prefix `/accounts/<id>/`;
//! 2. else the account header (in any letter case, `_` for `-` accepted);
//! 3. else the `iss` of the client's own `Authorization: Bearer` JWT: read without verification
//!    outside gateway mode and when a TLS certificate authenticated the client, verified when the
//!    JWT itself authenticated it, ignored when a static key did ([`JwtIss`]);
//! 4. else the client's first account (gateway), else the first credentials file's account.
//!
//! The id must be a positive decimal integer (400 `bad_account`) and pass `allowed_accounts`
//! (403 `account_not_allowed`). Which key signs for it is the token cache's business.

use std::collections::HashSet;
use std::fmt;
use std::num::NonZeroU64;

use base64::Engine as _;
use http::header::{self, HeaderMap, HeaderName};

use crate::error::{ErrorKind, ProxyError};
use crate::headers::{self, Seen};

/// A Voximplant account id: a positive integer. "No account" is `None`, never 0.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(NonZeroU64);

impl AccountId {
    /// Parse a positive decimal integer (digits only, at most 19 of them).
    pub fn parse(s: &str) -> Option<AccountId> {
        if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse::<u64>().ok().and_then(AccountId::new)
    }

    /// The id `n`, if positive.
    pub fn new(n: u64) -> Option<AccountId> {
        NonZeroU64::new(n).map(AccountId)
    }

    /// The number.
    pub fn get(self) -> u64 {
        self.0.get()
    }

    /// The account a JSON value names (a JWT's `iss`, a credentials file's `account_id`): a
    /// positive number or a string of digits. `Ok(None)` when absent or of another type;
    /// `Err(raw)` when present but not a valid account id.
    pub fn from_json(value: Option<&serde_json::Value>) -> Result<Option<AccountId>, String> {
        match value {
            Some(serde_json::Value::Number(n)) => match n.as_u64().and_then(AccountId::new) {
                Some(id) => Ok(Some(id)),
                None => Err(n.to_string()),
            },
            Some(serde_json::Value::String(s)) => match AccountId::parse(s) {
                Some(id) => Ok(Some(id)),
                None => Err(s.clone()),
            },
            _ => Ok(None),
        }
    }
}

/// An id compares equal to its number (convenient in tests and summaries).
impl PartialEq<u64> for AccountId {
    fn eq(&self, other: &u64) -> bool {
        self.get() == *other
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl serde::Serialize for AccountId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.get())
    }
}

/// In configuration files an account id is a positive integer or a string of digits.
impl<'de> serde::Deserialize<'de> for AccountId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = AccountId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a positive account id (a number or a string of digits)")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<AccountId, E> {
                AccountId::new(v)
                    .ok_or_else(|| E::custom(format!("{v} is not a positive account id")))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<AccountId, E> {
                u64::try_from(v)
                    .ok()
                    .and_then(AccountId::new)
                    .ok_or_else(|| E::custom(format!("{v} is not a positive account id")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<AccountId, E> {
                AccountId::parse(v)
                    .ok_or_else(|| E::custom(format!("`{v}` is not a positive account id")))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// How the `iss` of the client's own `Authorization: Bearer` JWT counts (source 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtIss {
    /// Read it from the header without verification (outside gateway mode; a TLS certificate
    /// authenticated the client).
    Unverified,
    /// The JWT authenticated the client: its verified `iss`, if it had one.
    Verified(Option<AccountId>),
    /// A static key authenticated the client: the JWT is ignored entirely.
    Ignored,
}

/// Who sent the request, as far as the account rule cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requester {
    /// How its JWT's `iss` counts.
    pub jwt: JwtIss,
    /// Its own default account (a gateway client's first `accounts` entry), if any.
    pub default: Option<AccountId>,
}

impl Requester {
    /// A request outside gateway mode.
    pub const ANONYMOUS: Requester = Requester {
        jwt: JwtIss::Unverified,
        default: None,
    };
}

/// The account settings: the header that selects an account and `allowed_accounts`.
#[derive(Debug, Clone)]
pub struct Rules {
    /// The account header (lowercase).
    pub header: HeaderName,
    /// Accounts requests may act for; `None`: any.
    pub allowed: Option<HashSet<AccountId>>,
}

impl Rules {
    /// The account a request acts for, from its sources in the contract's order (400
    /// `bad_account` for a malformed id; [`Rules::check_allowed`] comes next). `prefix` is the
    /// raw `<id>` of an `/accounts/<id>/` path prefix; `fallback` is the first credentials file's
    /// account.
    pub fn choose(
        &self,
        prefix: Option<&str>,
        headers: &HeaderMap,
        who: Requester,
        fallback: AccountId,
    ) -> Result<AccountId, ProxyError> {
        self.choose_seen(prefix, &headers::scan(headers, &self.header), who, fallback)
    }

    /// [`Rules::choose`] with the request's headers already scanned.
    pub fn choose_seen(
        &self,
        prefix: Option<&str>,
        seen: &Seen,
        who: Requester,
        fallback: AccountId,
    ) -> Result<AccountId, ProxyError> {
        let named = match prefix {
            Some(raw) => Some(raw),
            // A header value that is not visible ASCII cannot be an id: refuse it as one.
            None => seen
                .account
                .as_ref()
                .map(|v| v.to_str().unwrap_or("\u{fffd}")),
        };
        let account = match named {
            Some(raw) => AccountId::parse(raw.trim()).ok_or_else(|| bad_account(raw))?,
            None => {
                let iss = match who.jwt {
                    JwtIss::Unverified => {
                        iss_of(seen.authorization.as_ref()).map_err(|raw| bad_account(&raw))?
                    }
                    JwtIss::Verified(iss) => iss,
                    JwtIss::Ignored => None,
                };
                iss.or(who.default).unwrap_or(fallback)
            }
        };
        Ok(account)
    }

    /// 403 `account_not_allowed` unless `allowed_accounts` admits `account`.
    pub fn check_allowed(&self, account: AccountId) -> Result<(), ProxyError> {
        match &self.allowed {
            Some(allowed) if !allowed.contains(&account) => Err(ProxyError::new(
                ErrorKind::AccountNotAllowed,
                format!("account {account} is not in allowed_accounts"),
            )),
            _ => Ok(()),
        }
    }
}

fn bad_account(raw: &str) -> ProxyError {
    let shown: String = raw.chars().filter(|c| !c.is_control()).take(40).collect();
    ProxyError::new(
        ErrorKind::BadAccount,
        format!("account id `{shown}` is not a positive decimal integer"),
    )
}

/// Longest JWT payload read for its `iss`.
const MAX_PAYLOAD: usize = 16 * 1024;

/// The `iss` of the client's own `Authorization: Bearer` JWT, read without verification.
/// `Ok(None)`: no readable JWT (three base64url parts whose payload is a JSON object) or no usable
/// `iss`, which is ignored; `Err(raw)`: an `iss` that is not a valid account id, refused like any
/// id.
pub fn bearer_iss(h: &HeaderMap) -> Result<Option<AccountId>, String> {
    iss_of(h.get(header::AUTHORIZATION))
}

/// [`bearer_iss`] of an `Authorization` value.
pub fn iss_of(authorization: Option<&http::HeaderValue>) -> Result<Option<AccountId>, String> {
    let Some(jwt) = authorization.and_then(headers::bearer_token) else {
        return Ok(None);
    };
    let mut parts = jwt.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Ok(None);
    };
    if payload.len() > MAX_PAYLOAD {
        return Ok(None);
    }
    let Ok(bytes) =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('='))
    else {
        return Ok(None);
    };
    let Ok(serde_json::Value::Object(claims)) = serde_json::from_slice::<serde_json::Value>(&bytes)
    else {
        return Ok(None);
    };
    AccountId::from_json(claims.get("iss"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn id(n: u64) -> AccountId {
        AccountId::new(n).unwrap()
    }

    fn jwt(claims: &str) -> HeaderValue {
        let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let v = format!("Bearer {}.{}.sig", enc.encode("{}"), enc.encode(claims));
        HeaderValue::from_str(&v).unwrap()
    }

    fn rules(allowed: Option<&[u64]>) -> Rules {
        Rules {
            header: HeaderName::from_static("x-voximplant-account-id"),
            allowed: allowed.map(|a| a.iter().map(|n| id(*n)).collect()),
        }
    }

    #[test]
    fn ids_are_positive_decimal_integers() {
        assert_eq!(AccountId::parse("42"), Some(id(42)));
        for bad in [
            "",
            "0",
            "-1",
            "+1",
            "1.0",
            " 1",
            "abc",
            "12345678901234567890",
        ] {
            assert_eq!(AccountId::parse(bad), None, "{bad:?}");
        }
        assert_eq!(id(7).to_string(), "7");
        assert_eq!(serde_json::to_string(&id(7)).unwrap(), "7");
    }

    #[test]
    fn bearer_iss_reads_numbers_and_strings() {
        let mut h = HeaderMap::new();
        for (claims, want) in [
            (r#"{"iss":123}"#, Ok(Some(id(123)))),
            (r#"{"iss":"456"}"#, Ok(Some(id(456)))),
            (r#"{"sub":1}"#, Ok(None)),
            (r#"{"iss":"abc"}"#, Err("abc".to_owned())),
            (r#"{"iss":-1}"#, Err("-1".to_owned())),
            (r#"{"iss":0}"#, Err("0".to_owned())),
            (r#"[1]"#, Ok(None)),
        ] {
            h.insert(header::AUTHORIZATION, jwt(claims));
            assert_eq!(bearer_iss(&h), want, "{claims}");
        }
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer not-a-jwt"),
        );
        assert_eq!(bearer_iss(&h), Ok(None));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic dXNlcjpwYXNz"),
        );
        assert_eq!(bearer_iss(&h), Ok(None));
    }

    #[test]
    fn sources_in_the_contracts_order() {
        let r = rules(None);
        let fallback = id(1);
        let mut h = HeaderMap::new();
        let anon = Requester::ANONYMOUS;
        // 4. nothing named: the first credentials file's account, or the client's own default.
        assert_eq!(r.choose(None, &h, anon, fallback).unwrap(), id(1));
        let client = Requester {
            jwt: JwtIss::Ignored,
            default: Some(id(9)),
        };
        assert_eq!(r.choose(None, &h, client, fallback).unwrap(), id(9));
        // 3. the JWT's iss beats the defaults...
        h.insert(header::AUTHORIZATION, jwt(r#"{"iss":"33"}"#));
        assert_eq!(r.choose(None, &h, anon, fallback).unwrap(), id(33));
        // ...unless a static key authenticated the client, or the verified iss says otherwise.
        assert_eq!(r.choose(None, &h, client, fallback).unwrap(), id(9));
        let verified = Requester {
            jwt: JwtIss::Verified(Some(id(44))),
            default: Some(id(9)),
        };
        assert_eq!(r.choose(None, &h, verified, fallback).unwrap(), id(44));
        // 2. the header beats the JWT, in any spelling.
        h.insert("x_voximplant_account_id", HeaderValue::from_static("22"));
        assert_eq!(r.choose(None, &h, anon, fallback).unwrap(), id(22));
        // 1. the path prefix beats everything.
        assert_eq!(r.choose(Some("11"), &h, anon, fallback).unwrap(), id(11));
    }

    #[test]
    fn malformed_and_disallowed_ids_are_refused() {
        let r = rules(Some(&[1, 5]));
        let h = HeaderMap::new();
        let anon = Requester::ANONYMOUS;
        let e = r.choose(Some("abc"), &h, anon, id(1)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadAccount);
        assert!(e.msg.contains("`abc`"), "{}", e.msg);
        let e = r.choose(Some("0"), &h, anon, id(1)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadAccount);
        let six = r.choose(Some("6"), &h, anon, id(1)).unwrap();
        let e = r.check_allowed(six).unwrap_err();
        assert_eq!(e.kind, ErrorKind::AccountNotAllowed);
        assert!(e.msg.contains("account 6"), "{}", e.msg);
        assert!(r.check_allowed(id(5)).is_ok());
        assert!(rules(None).check_allowed(six).is_ok());
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, jwt(r#"{"iss":"x1"}"#));
        let e = r.choose(None, &h, anon, id(1)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadAccount);
        let mut h = HeaderMap::new();
        h.insert(
            "x-voximplant-account-id",
            HeaderValue::from_bytes(b"\xff1").unwrap(),
        );
        let e = r.choose(None, &h, anon, id(1)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadAccount);
    }
}
