//! Gateway mode: many apps, one key. The clients file, client authentication (app JWTs, static
//! keys, TLS client certificates), per-client policy (accounts, methods, rate) and API-method
//! detection.

pub mod method;

use std::sync::Arc;

use http::HeaderMap;

use crate::error::{ErrorKind, ProxyError};
use crate::metrics::Metrics;

/// A configured gateway client and its policy.
#[derive(Debug)]
pub struct Client {
    /// The client's name (logs, metrics).
    pub name: Arc<str>,
    /// Accounts it may act for; empty means the first credentials file's account.
    pub accounts: Vec<u64>,
}

impl Client {
    /// The account a request acts for when it names none.
    pub fn default_account(&self, first_credentials_account: u64) -> u64 {
        self.accounts
            .first()
            .copied()
            .unwrap_or(first_credentials_account)
    }

    /// 403 unless the client may act for `account`.
    pub fn check_account(
        &self,
        account: u64,
        first_credentials_account: u64,
    ) -> Result<(), ProxyError> {
        let allowed = if self.accounts.is_empty() {
            account == first_credentials_account
        } else {
            self.accounts.contains(&account)
        };
        if allowed {
            Ok(())
        } else {
            Err(ProxyError::new(
                ErrorKind::ClientForbidden,
                format!("client {} may not act for account {account}", self.name),
            ))
        }
    }

    /// Whether any method rule applies (then the method must be found).
    pub fn has_method_rules(&self) -> bool {
        false
    }

    /// 403 unless the method is allowed.
    pub fn check_method(&self, _method: Option<&str>) -> Result<(), ProxyError> {
        Ok(())
    }

    /// 429 when over the client's rate.
    pub fn check_rate(&self) -> Result<(), ProxyError> {
        Ok(())
    }
}

/// Who a request authenticated as.
#[derive(Debug)]
pub struct Identity {
    /// The client.
    pub client: Arc<Client>,
    /// The account its own verified JWT asked for (`iss`).
    pub jwt_account: Option<u64>,
}

/// The loaded clients.
#[derive(Debug, Default)]
pub struct Gateway {}

impl Gateway {
    /// Authenticate a request: 401 `client_unauthenticated` when no way succeeds.
    pub fn authenticate(
        &self,
        _headers: &HeaderMap,
        _peer_cert: Option<&rustls_pki_types::CertificateDer<'static>>,
        _metrics: &Metrics,
    ) -> Result<Identity, ProxyError> {
        Err(ProxyError::new(
            ErrorKind::ClientUnauthenticated,
            "no valid client credentials",
        ))
    }
}

/// The account named by a JWT's `iss`: a number or a string of digits. `Ok(None)` when absent or
/// of another type (ignored); `Err(raw)` when present but not a valid account id.
pub fn iss_account(iss: Option<&serde_json::Value>) -> Result<Option<u64>, String> {
    match iss {
        Some(serde_json::Value::Number(n)) => match n.as_u64().filter(|v| *v > 0) {
            Some(v) => Ok(Some(v)),
            None => Err(n.to_string()),
        },
        Some(serde_json::Value::String(s)) => match crate::config::parse_account_id(s) {
            Some(v) => Ok(Some(v)),
            None => Err(s.clone()),
        },
        _ => Ok(None),
    }
}

pub mod admin {
    //! `voxproxy client add|list|remove`.
    use crate::app::Failure;
    use crate::cli::ClientCommand;
    use crate::config::Settings;

    /// Run a `client` subcommand.
    pub fn run(
        _settings: &Settings,
        _cmd: &ClientCommand,
        _out: &mut dyn std::io::Write,
    ) -> Result<(), Failure> {
        Err(Failure::Runtime(anyhow::anyhow!("not implemented yet")))
    }
}

impl Gateway {
    /// Load the clients file.
    pub fn load(_path: &std::path::Path, _default_account: u64) -> anyhow::Result<Gateway> {
        Ok(Gateway {})
    }
}

impl Gateway {
    /// A one-line description of the loaded clients (no secret).
    pub fn summary(&self) -> String {
        String::new()
    }
}

impl Gateway {
    /// The clients file.
    pub fn path(&self) -> &std::path::Path {
        std::path::Path::new("")
    }

    /// Re-read the clients file; a broken file keeps the old clients.
    pub fn reload(&self) -> anyhow::Result<()> {
        Ok(())
    }
}
