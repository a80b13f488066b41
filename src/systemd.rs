//! Telling systemd how the service is doing (`sd_notify`): `READY=1`, `RELOADING=1`, `STOPPING=1`.
//! A no-op when not running under systemd (`NOTIFY_SOCKET` unset).

pub use sd_notify::NotifyState;

/// Tell systemd `state`, when running under it.
pub fn notify(state: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some()
        && let Err(e) = sd_notify::notify(false, state)
    {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}
