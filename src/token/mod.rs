//! Tokens: `mint` builds one RS256 JWT; `cache` keeps one per account and refreshes it in the
//! background so a request never waits for a signature in the steady state.

mod cache;
mod clock;
mod mint;

pub use cache::{CacheConfig, CacheObserver, Token, TokenCache, TokenError};
pub use clock::{Clock, SystemClock, TokioClock};
pub use mint::{Claims, MintError, Signer, mint};

use crate::account::AccountId;
use crate::credentials::Credentials;

/// The signers the token cache uses, from loaded credentials, in settings order.
pub fn signers(creds: &[Credentials]) -> Vec<(AccountId, std::sync::Arc<dyn Signer>)> {
    creds
        .iter()
        .map(|c| {
            (
                c.account_id,
                std::sync::Arc::new(c.clone()) as std::sync::Arc<dyn Signer>,
            )
        })
        .collect()
}
