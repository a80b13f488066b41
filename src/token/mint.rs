//! One RS256 JWT: header `{"typ":"JWT","alg":"RS256","kid":...}`, claims `iat = now - 5`,
//! `iss` = the account id as a JSON number, `exp = iat + ttl`. Signed with aws-lc-rs directly
//! (the key is already parsed there; jsonwebtoken verifies what we mint, in `check` and tests).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

use crate::account::AccountId;
use crate::credentials::Credentials;

/// Seconds `iat` is back-dated, as the official Python and Java clients do, so a server clock a
/// little behind ours does not reject the token as issued in the future (Voximplant error 455).
pub const IAT_BACKDATE: i64 = 5;

/// The claims of a minted token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Claims {
    /// Issued at (unix seconds), back-dated by [`IAT_BACKDATE`].
    pub iat: i64,
    /// The account the token acts for, a JSON number.
    pub iss: AccountId,
    /// Expiry (unix seconds).
    pub exp: i64,
}

impl Claims {
    /// Claims for `account` at `now` with lifetime `ttl`.
    pub fn new(account: AccountId, now: i64, ttl: u32) -> Claims {
        let iat = now - IAT_BACKDATE;
        Claims {
            iat,
            iss: account,
            exp: iat + i64::from(ttl),
        }
    }
}

#[derive(Serialize)]
struct Header<'a> {
    typ: &'static str,
    alg: &'static str,
    kid: &'a str,
}

/// Minting failed (the signer refused; never carries key material).
#[derive(Debug, Clone, thiserror::Error)]
#[error("signing a token with key {key_id} failed: {reason}")]
pub struct MintError {
    /// The key id that failed.
    pub key_id: String,
    /// What went wrong.
    pub reason: String,
}

/// Something that signs tokens: the credentials in production, a scripted signer in tests.
pub trait Signer: Send + Sync + 'static {
    /// The `kid` tokens carry.
    fn key_id(&self) -> &str;
    /// Identity of the key (a changed key re-mints cached tokens; an identical reload does not).
    fn fingerprint(&self) -> [u8; 32];
    /// Mint a JWT with these claims.
    fn mint(&self, claims: &Claims) -> Result<String, MintError>;
}

impl Signer for Credentials {
    fn key_id(&self) -> &str {
        &self.key_id
    }

    fn fingerprint(&self) -> [u8; 32] {
        self.key.fingerprint()
    }

    fn mint(&self, claims: &Claims) -> Result<String, MintError> {
        mint(self, claims)
    }
}

/// Mint a JWT for `claims` with `creds`' key.
pub fn mint(creds: &Credentials, claims: &Claims) -> Result<String, MintError> {
    let fail = |reason: String| MintError {
        key_id: creds.key_id.to_string(),
        reason,
    };
    let header = serde_json::to_vec(&Header {
        typ: "JWT",
        alg: "RS256",
        kid: &creds.key_id,
    })
    .map_err(|e| fail(e.to_string()))?;
    let payload = serde_json::to_vec(claims).map_err(|e| fail(e.to_string()))?;
    let mut jwt = String::with_capacity(600);
    URL_SAFE_NO_PAD.encode_string(&header, &mut jwt);
    jwt.push('.');
    URL_SAFE_NO_PAD.encode_string(&payload, &mut jwt);
    let sig = creds
        .key
        .sign_rs256(jwt.as_bytes())
        .map_err(|_| fail("the RSA signer refused".to_owned()))?;
    jwt.push('.');
    URL_SAFE_NO_PAD.encode_string(&sig, &mut jwt);
    Ok(jwt)
}
