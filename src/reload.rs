//! Reloading: SIGHUP and file watching for the credentials, config, clients and TLS files.
//!
//! A broken file keeps the old one in force and logs why. A changed key takes effect as soon as it
//! has minted (the token cache re-mints stale-key tokens at once and swaps each in when ready), so
//! no request fails or waits because of a reload.
//!
//! Watching: the *directory* of each file is watched (inotify through `notify-debouncer-full`),
//! not the file's inode, so a rename over the file and a Kubernetes Secret's `..data` symlink swap
//! are seen. Any event in a watched directory, and a poll every two seconds (a backstop where
//! inotify is unavailable), compares each file's content digest with the one last loaded; touching
//! a file without changing it does nothing.
//!
//! Settling: a writer that truncates and then writes (`cp new clients.toml`) leaves the file
//! empty or half-written for a moment, and an empty clients file is valid (no clients: every app
//! refused). So a file is loaded only once two reads [`SETTLE`] apart agree, with no write
//! between them (the file's modification time and inode unchanged), read again until they do
//! (at most [`MAX_SETTLE_ROUNDS`] times), and what is loaded is exactly the bytes that settled (credentials and clients; the TLS and config files are read again by their loaders
//! right after settling).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{self, Env, Settings, SettingsArgs};
use crate::credentials;
use crate::files::{self, FileError};
use crate::metrics::Label;
use crate::proxy::Proxy;
use crate::systemd::{self, NotifyState};
use crate::tls::Inbound;

/// How long file events are collected before they are acted on (an editor or `kubectl` writes
/// in several steps).
const DEBOUNCE: Duration = Duration::from_millis(200);
/// How long a file's content must stay the same, between two reads that agree, before it is
/// loaded.
pub const SETTLE: Duration = Duration::from_millis(200);
/// Most reads spent waiting for a file to settle (about 2 s); a file still changing then is left
/// for the next event or poll.
pub const MAX_SETTLE_ROUNDS: usize = 10;
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

/// A SHA-256 digest.
type Digest = [u8; 32];

/// One read of a file: what was read, a digest that tells two contents apart, and the file's
/// stamp.
struct Sample {
    /// SHA-256 of the content, or of why it could not be read: equal digests, equal reads.
    digest: Digest,
    /// The file's identity, size and change times when it was read: two reads with the same
    /// stamp had no write between them, even one that left the same bytes at both reads (two
    /// `cp` edits whose first halves match).
    stamp: Option<Stamp>,
    /// The content, or why it could not be read.
    read: Result<Vec<u8>, FileError>,
}

/// What tells that a file was written: its inode (a rename over it, a symlink swap), size and
/// modification and change times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Sample {
    /// Read `path` now (a regular file of at most 1 MiB, so a FIFO never blocks the reloader).
    fn take(path: &Path) -> Sample {
        use std::os::unix::fs::MetadataExt as _;
        let read = files::read_regular(path, files::MAX_CONFIG_FILE);
        // Taken after reading: a write after this changes it.
        let stamp = std::fs::metadata(path).ok().map(|m| Stamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        });
        let digest = match &read {
            Ok(bytes) => sha256(bytes),
            Err(e) => sha256(format!("unreadable: {e}").as_bytes()),
        };
        Sample {
            digest,
            stamp,
            read,
        }
    }

    /// Whether the file stayed as it was between `earlier` and this read: the same content, and
    /// no write in between.
    fn agrees_with(&self, earlier: &Sample) -> bool {
        self.digest == earlier.digest && self.stamp == earlier.stamp
    }
}

fn sha256(bytes: &[u8]) -> Digest {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Read each of `paths` until two reads [`SETTLE`] apart agree for all of them (same content, no
/// write in between); the last reads, or `None` when they were still changing after
/// [`MAX_SETTLE_ROUNDS`].
async fn settle(paths: &BTreeSet<PathBuf>) -> Option<BTreeMap<PathBuf, Sample>> {
    let read_all = || -> BTreeMap<PathBuf, Sample> {
        paths.iter().map(|p| (p.clone(), Sample::take(p))).collect()
    };
    let mut last = read_all();
    for _ in 0..MAX_SETTLE_ROUNDS {
        tokio::time::sleep(SETTLE).await;
        let now = read_all();
        if now
            .iter()
            .all(|(p, s)| last.get(p).is_some_and(|l| s.agrees_with(l)))
        {
            return Some(now);
        }
        last = now;
    }
    None
}

/// The reloader's state.
struct Reloader {
    proxy: Arc<Proxy>,
    settings: Settings,
    flags: SettingsArgs,
    /// Where the environment is read on reload (as at start).
    env: Arc<dyn Env>,
    tls: Option<Arc<Inbound>>,
    /// Each watched file and the digest of its content when last loaded.
    files: Vec<(Kind, PathBuf, Digest)>,
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

    /// Record what is loaded now: the settled digest of a file that was read while settling,
    /// a fresh read of any other (a file named by a reloaded config, or at start).
    fn snapshot(&mut self, settled: &BTreeMap<PathBuf, Digest>) {
        self.files = self
            .watched_paths()
            .into_iter()
            .map(|(k, p)| {
                let d = settled
                    .get(&p)
                    .copied()
                    .unwrap_or_else(|| Sample::take(&p).digest);
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

    fn paths(&self) -> BTreeSet<PathBuf> {
        self.files.iter().map(|(_, p, _)| p.clone()).collect()
    }

    /// The kinds whose file in `samples` differs from what was loaded.
    fn changed(&self, samples: &BTreeMap<PathBuf, Sample>) -> BTreeSet<Kind> {
        self.files
            .iter()
            .filter(|(_, p, d)| samples.get(p).is_some_and(|s| s.digest != *d))
            .map(|(k, _, _)| *k)
            .collect()
    }

    /// A file event or the poll: when a file's content differs from what was loaded, wait for
    /// it to settle and load what changed.
    async fn on_change(&mut self) {
        let quick: BTreeMap<PathBuf, Sample> = self
            .paths()
            .into_iter()
            .map(|p| {
                let s = Sample::take(&p);
                (p, s)
            })
            .collect();
        if self.changed(&quick).is_empty() {
            return;
        }
        drop(quick);
        let Some(settled) = settle(&self.paths()).await else {
            tracing::warn!(
                "a watched file kept changing for {} s; not reloaded yet, tried again at the next change or poll",
                (SETTLE * MAX_SETTLE_ROUNDS as u32).as_secs_f64()
            );
            return;
        };
        let changed = self.changed(&settled);
        self.reload(changed, settled, "file change");
    }

    /// SIGHUP: reload every file once its content has settled.
    async fn on_hangup(&mut self) {
        let all: BTreeSet<Kind> = self.files.iter().map(|(k, _, _)| *k).collect();
        match settle(&self.paths()).await {
            Some(settled) => self.reload(all, settled, "SIGHUP"),
            None => tracing::warn!(
                "SIGHUP: a watched file kept changing; not reloaded yet, tried again at the next change or poll"
            ),
        }
    }

    /// Load the files of `kinds` from `settled`, then record what is loaded.
    fn reload(&mut self, kinds: BTreeSet<Kind>, settled: BTreeMap<PathBuf, Sample>, reason: &str) {
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
        let digests: BTreeMap<PathBuf, Digest> =
            settled.iter().map(|(p, s)| (p.clone(), s.digest)).collect();
        let mut settled = settled;
        if kinds.contains(&Kind::Credentials) {
            self.reload_credentials(&mut settled);
        }
        if kinds.contains(&Kind::Clients) {
            self.reload_clients(&mut settled);
        }
        if kinds.contains(&Kind::Tls) {
            self.reload_tls();
        }
        self.snapshot(&digests);
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

    /// The clients file, from its settled bytes.
    fn reload_clients(&self, settled: &mut BTreeMap<PathBuf, Sample>) {
        let Some(gw) = &self.proxy.gateway else {
            return;
        };
        let read = settled
            .remove(gw.path())
            .map_or_else(|| Sample::take(gw.path()).read, |s| s.read);
        match gw.reload_from(read) {
            Ok(()) => tracing::info!(clients = %gw.summary(), "gateway clients reloaded"),
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "clients file not reloaded; the previous clients stay in force")
            }
        }
    }

    fn reload_tls(&self) {
        let Some(tls) = &self.tls else {
            return;
        };
        match tls.reload() {
            Ok(()) => tracing::info!("TLS certificate reloaded"),
            Err(e) => {
                tracing::error!(error = %e, "TLS files not reloaded; the previous certificate stays in force")
            }
        }
    }

    /// The credentials files, from their settled bytes (a file a reloaded config newly names is
    /// read now).
    fn reload_credentials(&mut self, settled: &mut BTreeMap<PathBuf, Sample>) {
        let origin = self.settings.origin("credentials");
        let loaded = credentials::load_all_from(&self.settings.credentials, &origin, |path| {
            settled
                .remove(path)
                .map_or_else(|| Sample::take(path).read, |s| s.read)
        });
        let metrics = &self.proxy.metrics;
        let set = match loaded {
            Ok(set) => set,
            Err(errors) => {
                for e in errors {
                    tracing::error!(error = %format!("{e:#}"), "credentials not reloaded; the previous keys stay in force");
                }
                metrics
                    .reloads
                    .get_or_create(&Label("result", "failure".into()))
                    .inc();
                return;
            }
        };
        let keys = |list: &[credentials::Credentials]| -> Vec<(Digest, _)> {
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
}

/// The watcher over `dirs`, whose debounced events each send `()` on `tx`; `None` (polling
/// only) when inotify is unavailable.
fn watch(dirs: &BTreeSet<PathBuf>, tx: tokio::sync::mpsc::UnboundedSender<()>) -> Option<Watcher> {
    let handler = move |res: notify_debouncer_full::DebounceEventResult| {
        if res.is_ok_and(|events| events.iter().any(|e| is_write(&e.event.kind))) {
            let _ = tx.send(());
        }
    };
    // The debouncer looks at its queue on its own thread every tick: one tick per DEBOUNCE
    // (five short wakeups a second) rather than its default of four per DEBOUNCE; an event is
    // then acted on 200 to 400 ms after it happened.
    let mut watcher = match notify_debouncer_full::new_debouncer(DEBOUNCE, Some(DEBOUNCE), handler)
    {
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

/// Whether an event can change a file's content. inotify also reports every open and every
/// read-only close, the reloader's own reads included: acting on those would read the files
/// again and again, for ever.
fn is_write(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// The debounced directory watcher.
type Watcher = notify_debouncer_full::Debouncer<
    notify::RecommendedWatcher,
    notify_debouncer_full::RecommendedCache,
>;

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

/// What woke the reloader.
enum Wake {
    Hangup,
    Change,
}

/// Reload on SIGHUP and on file changes until `stop` completes. Work in progress (waiting for a
/// file to settle) is abandoned when `stop` completes; loading itself never waits.
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
    r.snapshot(&BTreeMap::new());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut dirs = r.dirs();
    let mut watcher = watch(&dirs, tx.clone());
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        let hangup = async {
            match hup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        let wake = tokio::select! {
            () = &mut stop => break,
            Some(()) = hangup => Wake::Hangup,
            Some(()) = rx.recv() => Wake::Change,
            _ = poll.tick() => Wake::Change,
        };
        // Events already waiting are covered by this round's reads; any that arrive while it
        // runs wake the next round.
        while rx.try_recv().is_ok() {}
        let work = async {
            match wake {
                Wake::Hangup => r.on_hangup().await,
                Wake::Change => r.on_change().await,
            }
        };
        tokio::select! {
            () = &mut stop => break,
            () = work => {}
        }
        let now = r.dirs();
        if now != dirs {
            dirs = now;
            watcher = watch(&dirs, tx.clone());
        }
    }
    drop(watcher);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewrite_with_the_same_bytes_is_not_agreement() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clients.toml");
        std::fs::write(&path, "# half of a file\n").unwrap();
        let first = Sample::take(&path);
        assert!(Sample::take(&path).agrees_with(&first));
        // Past the file system's timestamp granularity (a few ms), then the same bytes again.
        std::thread::sleep(Duration::from_millis(30));
        std::fs::write(&path, "# half of a file\n").unwrap();
        let again = Sample::take(&path);
        assert_eq!(again.digest, first.digest);
        assert!(!again.agrees_with(&first), "a write came between the reads");
        std::fs::remove_file(&path).unwrap();
        let gone = Sample::take(&path);
        assert!(matches!(gone.read, Err(FileError::NotFound)) && gone.stamp.is_none());
    }
}
