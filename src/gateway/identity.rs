//! Who a request authenticated as, and what that says about the account it acts for.

use std::sync::Arc;

use super::clients::Client;
use crate::account::{JwtIss, Requester};

/// Who a request authenticated as.
#[derive(Debug)]
pub struct Identity {
    /// The client.
    pub client: Arc<Client>,
    /// How the `iss` of the client's own JWT counts toward the account: verified when the JWT
    /// authenticated the client, read unverified when a certificate did, ignored when a static
    /// key did.
    pub jwt: JwtIss,
}

impl Identity {
    /// What the account rule needs to know of this client.
    pub fn requester(&self) -> Requester {
        Requester {
            jwt: self.jwt,
            default: self.client.accounts.first().copied(),
        }
    }
}
