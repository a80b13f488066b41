//! Gateway mode: many apps, one key. With a clients file, every forwarded request must
//! authenticate as a client, and each client is held to its own accounts, API methods and rate.
//!
//! - [`clients`]: the clients file, validated whole into a [`ClientSet`] (keys parsed once).
//! - [`auth`]: the three ways a client authenticates (app JWT, static key, TLS certificate).
//! - [`policy`]: accounts and method rules (`read_only`, `*` patterns from [`glob`]).
//! - [`method`]: finding a request's API method (path, query, urlencoded or multipart body).
//!
//! [`Gateway`] holds the client set behind an `ArcSwap`: a request loads it once, a reload
//! swaps it whole, and a broken file leaves the old set in force.

pub mod auth;
pub mod clients;
pub mod glob;
pub mod identity;
pub mod method;
pub mod policy;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use http::request::Parts;

pub use clients::{Client, ClientAuth, ClientSet, ClientsError};
pub use identity::Identity;

use crate::account::AccountId;
use crate::error::ProxyError;
use crate::metrics::Metrics;

/// The loaded clients file; reloadable in place.
pub struct Gateway {
    /// The clients file (reload reads it again; the watcher watches its directory).
    path: PathBuf,
    /// The first credentials file's account at load time, for summaries.
    default_account: AccountId,
    /// The clients in force.
    set: ArcSwap<ClientSet>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("path", &self.path)
            .field("clients", &self.set.load().summary())
            .finish()
    }
}

impl Gateway {
    /// Load and validate the clients file. Errors name the file, the client and the field.
    pub fn load(path: &Path, default_account: AccountId) -> anyhow::Result<Gateway> {
        let set = ClientSet::load(path, None).context("clients")?;
        Ok(Gateway {
            path: path.to_owned(),
            default_account,
            set: ArcSwap::from_pointee(set),
        })
    }

    /// Re-read the file and swap the clients in at once. On error the old clients stay in force
    /// (the caller logs the error). Rate limiters of clients whose name and rate are unchanged
    /// carry over; verified-JWT cache entries do not (a key may have changed).
    pub fn reload(&self) -> anyhow::Result<()> {
        self.reload_from(crate::files::read_regular(
            &self.path,
            crate::files::MAX_CONFIG_FILE,
        ))
    }

    /// Like [`Gateway::reload`], from the file's bytes as already read (or why they could not
    /// be): the reloader hands over the content it saw settle, so a file caught half-written is
    /// never what is loaded.
    pub fn reload_from(
        &self,
        read: Result<Vec<u8>, crate::files::FileError>,
    ) -> anyhow::Result<()> {
        let old = self.set.load();
        let set = ClientSet::from_read(&self.path, read, Some(&old)).context("clients")?;
        self.set.store(Arc::new(set));
        Ok(())
    }

    /// The clients file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The clients in force now.
    pub fn clients(&self) -> Arc<ClientSet> {
        self.set.load_full()
    }

    /// A one-line description of the loaded clients (no secret): "3 clients: billing, crm, ops".
    pub fn summary(&self) -> String {
        let set = self.set.load();
        let mut s = set.summary();
        if set.clients.iter().any(|c| c.accounts.is_empty()) {
            s.push_str(&format!(
                " (default account {} for clients without accounts)",
                self.default_account
            ));
        }
        s
    }

    /// Authenticate a request: 401 `client_unauthenticated` when no way succeeds; failures are
    /// counted in `voxproxy_client_auth_failures_total{reason}`.
    pub fn admit(
        &self,
        parts: &Parts,
        peer_cert: Option<&rustls_pki_types::CertificateDer<'static>>,
        metrics: &Metrics,
    ) -> Result<Identity, ProxyError> {
        auth::authenticate(&self.set.load(), &parts.headers, peer_cert, metrics)
    }
}
