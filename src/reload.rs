//! Reloading: SIGHUP and file watching for the credentials, config, clients and TLS files.
//!
//! A broken file keeps the old one in force and logs why. A changed key takes effect as soon as it
//! has minted (the token cache re-mints stale-key tokens at once and swaps each in when ready), so
//! no request fails or waits because of a reload.
//!
//! Watching: the *directory* of each file is watched (inotify via `notify`), not the file's inode,
//! so a rename over the file and a Kubernetes Secret's `..data` symlink swap are seen. Any event in
//! a watched directory schedules a content check (debounced); a content digest decides what
//! changed, so touching a file without changing it does nothing. The same check also runs every
//! two seconds, which bounds the delay at a few seconds even where inotify is unavailable.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{self, Env, Settings, SettingsArgs};
use crate::credentials;
use crate::metrics::Label;
use crate::proxy::Proxy;
use crate::systemd::{self, NotifyState};
use crate::tls::Inbound;

/// How long file events are collected before acting on them (an editor or `kubectl` writes in
/// several steps).
const DEBOUNCE: Duration = Duration::from_millis(200);
/// How often file contents are compared even without an event.
const POLL: Duration = Duration::from_secs(2);

/// What a watched file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Config,
    Credentials,
    Clients,
    Tls,
}

impl Kind {
    /// The file's role, for the reload log line.
    fn as_str(self) -> &'static str {
        match self {
            Kind::Config => "config",
            Kind::Credentials => "credentials",
            Kind::Clients => "clients",
            Kind::Tls => "tls",
        }
    }
}

/// The reloader's state.
struct Reloader {
    proxy: Arc<Proxy>,
    settings: Settings,
    flags: SettingsArgs,
    /// Where the environment is read on reload (as at start).
    env: Arc<dyn Env>,
    tls: Option<Arc<Inbound>>,
    /// Each watched file and the digest of its content when last loaded (`None`: unreadable).
    files: Vec<(Kind, PathBuf, Option<[u8; 32]>)>,
}

fn digest(path: &Path) -> Option<[u8; 32]> {
    let bytes = std::fs::read(path).ok()?;
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
    let mut out = [0; 32];
    out.copy_from_slice(d.as_ref());
    Some(out)
}

impl Reloader {
    fn watched_paths(&self) -> Vec<(Kind, PathBuf)> {
        let s = &self.settings;
        let mut v: Vec<(Kind, PathBuf)> = s
            .credentials
            .iter()
            .map(|p| (Kind::Credentials, p.clone()))
            .collect();
        if let Some(p) = &s.config {
            v.push((Kind::Config, p.clone()));
        }
        if let Some(gw) = &self.proxy.gateway {
            v.push((Kind::Clients, gw.path().to_owned()));
        }
        if let Some(tls) = &self.tls {
            v.push((Kind::Tls, tls.files.cert.clone()));
            v.push((Kind::Tls, tls.files.key.clone()));
            if let Some(ca) = &tls.files.client_ca {
                v.push((Kind::Tls, ca.clone()));
            }
        }
        v
    }

    /// Record current digests as loaded.
    fn snapshot(&mut self) {
        self.files = self
            .watched_paths()
            .into_iter()
            .map(|(k, p)| {
                let d = digest(&p);
                (k, p, d)
            })
            .collect();
    }

    /// Directories to watch.
    fn dirs(&self) -> BTreeSet<PathBuf> {
        self.files
            .iter()
            .map(|(_, p, _)| match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
                _ => PathBuf::from("."),
            })
            .collect()
    }

    /// Kinds whose file content changed since the last snapshot.
    fn changed(&self) -> BTreeSet<Kind> {
        self.files
            .iter()
            .filter(|(_, p, d)| digest(p) != *d)
            .map(|(k, _, _)| *k)
            .collect()
    }

    async fn reload(&mut self, kinds: BTreeSet<Kind>, reason: &str) {
        if kinds.is_empty() {
            return;
        }
        systemd::notify(&[NotifyState::Reloading]);
        let what: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        tracing::info!(reason, what = %what.join(", "), "reloading");
        let mut kinds = kinds;
        if kinds.contains(&Kind::Config) {
            self.reload_config();
            // New settings may name other credentials files.
            kinds.insert(Kind::Credentials);
        }
        if kinds.contains(&Kind::Credentials) {
            self.reload_credentials();
        }
        if kinds.contains(&Kind::Clients)
            && let Some(gw) = &self.proxy.gateway
        {
            match gw.reload() {
                Ok(()) => tracing::info!(clients = %gw.summary(), "gateway clients reloaded"),
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "clients file not reloaded; the previous clients stay in force")
                }
            }
        }
        if kinds.contains(&Kind::Tls)
            && let Some(tls) = &self.tls
        {
            match tls.reload() {
                Ok(()) => tracing::info!("TLS certificate reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "TLS files not reloaded; the previous certificate stays in force")
                }
            }
        }
        self.snapshot();
        systemd::notify(&[NotifyState::Ready]);
    }

    fn reload_config(&mut self) {
        let new = match Settings::resolve(&self.flags, &*self.env) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "config not reloaded; the previous settings stay in force");
                return;
            }
        };
        let restart = config::restart_needed(&self.settings, &new);
        if !restart.is_empty() {
            tracing::warn!(settings = %restart.join(", "), "these settings changed but take effect only after a restart");
        }
        self.settings.apply_live(new);
    }

    fn reload_credentials(&mut self) {
        let metrics = &self.proxy.metrics;
        let origin = self.settings.origin("credentials");
        match credentials::load_all(&self.settings.credentials, &origin) {
            Ok(set) => {
                let keys = |list: &[credentials::Credentials]| -> Vec<([u8; 32], _)> {
                    list.iter()
                        .map(|c| (c.key.fingerprint(), c.account_id))
                        .collect()
                };
                if keys(self.proxy.credentials.load().list()) != keys(set.list()) {
                    self.proxy
                        .tokens
                        .set_keys(crate::token::signers(set.list()));
                    let ids: Vec<String> = set
                        .list()
                        .iter()
                        .map(|c| format!("{}:{}", c.account_id, c.key_id))
                        .collect();
                    tracing::info!(keys = %ids.join(", "), "credentials reloaded; new tokens are minted with the new keys");
                } else {
                    tracing::info!("credentials reloaded; keys unchanged");
                }
                metrics.record_credentials(set.list());
                self.proxy.credentials.store(Arc::new(set));
                metrics
                    .reloads
                    .get_or_create(&Label("result", "success".into()))
                    .inc();
            }
            Err(errors) => {
                for e in errors {
                    tracing::error!(error = %format!("{e:#}"), "credentials not reloaded; the previous keys stay in force");
                }
                metrics
                    .reloads
                    .get_or_create(&Label("result", "failure".into()))
                    .inc();
            }
        }
    }
}

fn watch(
    dirs: &BTreeSet<PathBuf>,
    tx: tokio::sync::mpsc::UnboundedSender<()>,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher as _;
    let mut watcher = match notify::recommended_watcher(
        move |res: notify::Result<notify::Event>| {
            if res.is_ok() {
                let _ = tx.send(());
            }
        },
    ) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch files; changes are picked up by polling every 2 s");
            return None;
        }
    };
    for dir in dirs {
        if let Err(e) = watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch directory; polling it instead");
        }
    }
    Some(watcher)
}

/// Install the SIGHUP handler. Done before start-up finishes, so a SIGHUP that arrives early
/// reloads instead of killing the process (the default action).
pub fn hangup_signal() -> Option<tokio::signal::unix::Signal> {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot handle SIGHUP; reload by file change only");
            None
        }
    }
}

/// Reload on SIGHUP and on file changes until `stop` completes.
pub async fn run(
    proxy: Arc<Proxy>,
    settings: Settings,
    flags: SettingsArgs,
    env: Arc<dyn Env>,
    tls: Option<Arc<Inbound>>,
    hup: Option<tokio::signal::unix::Signal>,
    stop: impl Future<Output = ()>,
) {
    let mut hup = hup;
    let mut r = Reloader {
        proxy,
        settings,
        flags,
        env,
        tls,
        files: Vec::new(),
    };
    r.snapshot();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut dirs = r.dirs();
    let mut watcher = watch(&dirs, tx.clone());
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                let all = r.files.iter().map(|(k, _, _)| *k).collect();
                r.reload(all, "SIGHUP").await;
            }
            Some(()) = rx.recv() => {
                tokio::time::sleep(DEBOUNCE).await;
                while rx.try_recv().is_ok() {}
                let changed = r.changed();
                r.reload(changed, "file change").await;
            }
            _ = poll.tick() => {
                let changed = r.changed();
                r.reload(changed, "file change").await;
            }
        }
        let now = r.dirs();
        if now != dirs {
            dirs = now;
            watcher = watch(&dirs, tx.clone());
        }
    }
    drop(watcher);
}
