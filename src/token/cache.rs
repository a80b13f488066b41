//! The token cache: one token per account (child accounts included), refreshed in the background
//! before `exp - refresh_before`, at most one mint per account at a time.
//!
//! The hot path ([`TokenCache::get`] on a hit) takes a read lock on a map, loads an `Arc` and
//! compares two integers: no signature, no allocation. Misses and expired tokens mint under the
//! slot's own async mutex and re-check after taking it (single flight), so 100 concurrent callers
//! for a cold account cause exactly one signature. A background task ([`TokenCache::run_refresher`])
//! re-mints tokens that are due, retries failed mints with capped exponential backoff while the
//! still-valid token keeps being served, re-mints tokens of a replaced key as soon as the new key
//! is installed, and lets idle child-account tokens lapse.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use http::HeaderValue;

use super::clock::Clock;
use super::mint::{Claims, MintError, Signer};
use crate::account::AccountId;

/// Tokens with less than this many seconds left are not handed out: a request must not carry a
/// token that expires while it is in flight.
const SERVE_MARGIN: i64 = 10;
/// Longest wait between retries of a failing mint.
const MAX_BACKOFF_SECS: i64 = 60;
/// Longest the refresher sleeps without looking (also bounds the cost of a missed wake-up).
const MAX_IDLE_SECS: i64 = 60;

/// Cache settings.
#[derive(Debug, Clone, Copy)]
pub struct CacheConfig {
    /// Token lifetime, seconds.
    pub ttl: u32,
    /// Refresh this many seconds before `exp`.
    pub refresh_before: u32,
    /// Most child-account tokens kept at once; the least recently used is evicted beyond it.
    pub max_children: usize,
}

/// Hooks for metrics; every method has a no-op default.
pub trait CacheObserver: Send + Sync + 'static {
    /// A token for `account` was minted, expiring at `exp`.
    fn minted(&self, _account: AccountId, _exp: i64) {}
    /// Minting for `account` failed.
    fn mint_failed(&self, _account: AccountId) {}
    /// `account`'s token was dropped from the cache.
    fn evicted(&self, _account: AccountId) {}
}

struct NoObserver;
impl CacheObserver for NoObserver {}

/// A minted token, ready to be put on a request.
pub struct Token {
    /// `Bearer <jwt>`, marked sensitive.
    authorization: HeaderValue,
    /// Key id it was signed with.
    pub kid: Arc<str>,
    /// The account it acts for (`iss`).
    pub account: AccountId,
    /// Issued at (unix seconds).
    pub iat: i64,
    /// Expiry (unix seconds).
    pub exp: i64,
    /// When the background refresher re-mints it.
    refresh_at: i64,
    /// Which key signed it.
    fingerprint: [u8; 32],
}

impl Token {
    /// The `Authorization` header value (`Bearer <jwt>`), marked sensitive.
    pub fn authorization(&self) -> &HeaderValue {
        &self.authorization
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("kid", &self.kid)
            .field("account", &self.account)
            .field("iat", &self.iat)
            .field("exp", &self.exp)
            .field("jwt", &"****")
            .finish()
    }
}

/// No valid token can be had for an account.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no valid token for account {account}")]
pub struct TokenError {
    /// The account.
    pub account: AccountId,
    /// Why the mint failed.
    #[source]
    pub source: MintError,
}

/// The keys in force: which signer signs for which account.
struct KeySet {
    /// `(account_id, signer)` in credentials order; the first signs for child accounts.
    signers: Vec<(AccountId, Arc<dyn Signer>)>,
}

impl KeySet {
    fn signer_for(&self, account: AccountId) -> &Arc<dyn Signer> {
        self.signers
            .iter()
            .find(|(a, _)| *a == account)
            .or(self.signers.first())
            .map(|(_, s)| s)
            .expect("a key set is never empty")
    }

    fn is_primary(&self, account: AccountId) -> bool {
        self.signers.iter().any(|(a, _)| *a == account)
    }
}

struct Slot {
    account: AccountId,
    token: ArcSwapOption<Token>,
    /// Single flight: one mint per account at a time.
    lock: tokio::sync::Mutex<()>,
    /// Accounts of loaded credentials files are always kept fresh and never evicted.
    pinned: AtomicBool,
    /// Last time a request asked for this token (unix seconds): idle child tokens lapse.
    last_used: AtomicI64,
    /// Consecutive failed mints, for backoff.
    failures: AtomicU32,
    /// No background retry before this time (unix seconds).
    retry_at: AtomicI64,
}

struct Inner {
    cfg: CacheConfig,
    clock: Arc<dyn Clock>,
    observer: Arc<dyn CacheObserver>,
    keys: ArcSwap<KeySet>,
    slots: RwLock<HashMap<AccountId, Arc<Slot>>>,
    wake: tokio::sync::Notify,
}

/// The per-account token cache. Cheap to clone (shared).
#[derive(Clone)]
pub struct TokenCache {
    inner: Arc<Inner>,
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("cfg", &self.inner.cfg)
            .field("slots", &self.len())
            .finish()
    }
}

impl TokenCache {
    /// A cache signing with `signers` (`(account_id, signer)`, the first signs for children).
    ///
    /// # Panics
    /// If `signers` is empty: configuration guarantees at least one credentials file.
    pub fn new(
        cfg: CacheConfig,
        signers: Vec<(AccountId, Arc<dyn Signer>)>,
        clock: Arc<dyn Clock>,
        observer: Option<Arc<dyn CacheObserver>>,
    ) -> TokenCache {
        assert!(
            !signers.is_empty(),
            "the token cache needs at least one key"
        );
        let cache = TokenCache {
            inner: Arc::new(Inner {
                cfg,
                clock,
                observer: observer.unwrap_or_else(|| Arc::new(NoObserver)),
                keys: ArcSwap::from_pointee(KeySet { signers }),
                slots: RwLock::new(HashMap::new()),
                wake: tokio::sync::Notify::new(),
            }),
        };
        cache.pin_primaries();
        cache
    }

    /// A token for `account`: from the cache when valid (the steady state), else minted now.
    pub async fn get(&self, account: AccountId) -> Result<Arc<Token>, TokenError> {
        let now = self.inner.clock.now();
        let slot = match self.lookup(account) {
            Some(slot) => slot,
            None => self.insert(account, now),
        };
        slot.last_used.store(now, Ordering::Relaxed);
        if let Some(tok) = slot.token.load_full()
            && now < tok.exp - SERVE_MARGIN
        {
            if now >= tok.refresh_at {
                // The refresher normally gets here first; a nudge costs nothing.
                self.inner.wake.notify_one();
            }
            return Ok(tok);
        }
        self.mint_slot(&slot, MintReason::Needed).await
    }

    /// The cached token for `account` if one is valid now, without minting.
    pub fn peek(&self, account: AccountId) -> Option<Arc<Token>> {
        let now = self.inner.clock.now();
        self.lookup(account)?
            .token
            .load_full()
            .filter(|t| now < t.exp - SERVE_MARGIN)
    }

    /// Mint tokens for every loaded credentials file's account now (start-up, readiness).
    pub async fn warm(&self) -> Vec<TokenError> {
        let accounts: Vec<AccountId> = self
            .inner
            .keys
            .load()
            .signers
            .iter()
            .map(|(a, _)| *a)
            .collect();
        let mut errors = Vec::new();
        for account in accounts {
            if let Err(e) = self.get(account).await {
                errors.push(e);
            }
        }
        errors
    }

    /// Whether every loaded credentials file's account holds a valid token (`/readyz`).
    pub fn ready(&self) -> bool {
        self.inner
            .keys
            .load()
            .signers
            .iter()
            .all(|(a, _)| self.peek(*a).is_some())
    }

    /// Install new keys (a reload). Tokens keep being served; the refresher re-mints those whose
    /// key changed at once and swaps them in as each new token is ready.
    ///
    /// # Panics
    /// If `signers` is empty.
    pub fn set_keys(&self, signers: Vec<(AccountId, Arc<dyn Signer>)>) {
        assert!(
            !signers.is_empty(),
            "the token cache needs at least one key"
        );
        self.inner.keys.store(Arc::new(KeySet { signers }));
        self.pin_primaries();
        // A new key deserves a try at once, not after the old key's backoff.
        if let Ok(slots) = self.inner.slots.read() {
            for slot in slots.values() {
                slot.failures.store(0, Ordering::Relaxed);
                slot.retry_at.store(0, Ordering::Relaxed);
            }
        }
        self.inner.wake.notify_one();
    }

    /// Number of accounts cached.
    pub fn len(&self) -> usize {
        self.inner.slots.read().map_or(0, |s| s.len())
    }

    /// Whether the cache holds no account.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The background refresher; runs until `shutdown` completes.
    pub async fn run_refresher(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let next = self.refresh_due().await;
            let wait = (next - self.inner.clock.now()).clamp(0, MAX_IDLE_SECS);
            tokio::select! {
                () = &mut shutdown => return,
                () = self.inner.wake.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(wait as u64)) => {}
            }
        }
    }

    /// Re-mint every due token; returns when the next one falls due (unix seconds).
    async fn refresh_due(&self) -> i64 {
        let now = self.inner.clock.now();
        let mut next = now + MAX_IDLE_SECS;
        let keys = self.inner.keys.load_full();
        let slots: Vec<Arc<Slot>> = match self.inner.slots.read() {
            Ok(s) => s.values().cloned().collect(),
            Err(_) => return next,
        };
        for slot in slots {
            let pinned = slot.pinned.load(Ordering::Relaxed);
            let retry_at = slot.retry_at.load(Ordering::Relaxed);
            let due = match slot.token.load_full() {
                None => pinned,
                Some(tok) => {
                    let stale_key = tok.fingerprint != keys.signer_for(slot.account).fingerprint();
                    // `iat` is back-dated: the request that caused the mint is not a later use.
                    let used_since_mint = slot.last_used.load(Ordering::Relaxed)
                        > tok.iat + super::mint::IAT_BACKDATE;
                    if !pinned && !used_since_mint && now >= tok.exp - SERVE_MARGIN {
                        self.remove(slot.account, &slot);
                        continue;
                    }
                    if stale_key || (now >= tok.refresh_at && (pinned || used_since_mint)) {
                        true
                    } else {
                        let at = if now >= tok.refresh_at {
                            tok.exp - SERVE_MARGIN
                        } else {
                            tok.refresh_at
                        };
                        next = next.min(at);
                        false
                    }
                }
            };
            if !due {
                continue;
            }
            if now < retry_at {
                next = next.min(retry_at);
                continue;
            }
            match self.mint_slot(&slot, MintReason::Refresh).await {
                // The new token's own refresh point may come before the idle wake-up (short TTLs).
                Ok(tok) => next = next.min(tok.refresh_at),
                Err(_) => next = next.min(slot.retry_at.load(Ordering::Relaxed)),
            }
        }
        next
    }

    fn lookup(&self, account: AccountId) -> Option<Arc<Slot>> {
        self.inner.slots.read().ok()?.get(&account).cloned()
    }

    fn insert(&self, account: AccountId, now: i64) -> Arc<Slot> {
        let pinned = self.inner.keys.load().is_primary(account);
        let mut slots = match self.inner.slots.write() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(slot) = slots.get(&account) {
            return slot.clone();
        }
        if !pinned {
            let children = slots
                .values()
                .filter(|s| !s.pinned.load(Ordering::Relaxed))
                .count();
            if children >= self.inner.cfg.max_children {
                let lru = slots
                    .values()
                    .filter(|s| !s.pinned.load(Ordering::Relaxed))
                    .min_by_key(|s| s.last_used.load(Ordering::Relaxed))
                    .map(|s| s.account);
                if let Some(victim) = lru {
                    slots.remove(&victim);
                    self.inner.observer.evicted(victim);
                }
            }
        }
        let slot = Arc::new(Slot {
            account,
            token: ArcSwapOption::empty(),
            lock: tokio::sync::Mutex::new(()),
            pinned: AtomicBool::new(pinned),
            last_used: AtomicI64::new(now),
            failures: AtomicU32::new(0),
            retry_at: AtomicI64::new(0),
        });
        slots.insert(account, slot.clone());
        slot
    }

    fn remove(&self, account: AccountId, slot: &Arc<Slot>) {
        let mut slots = match self.inner.slots.write() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        if slots.get(&account).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            slots.remove(&account);
            self.inner.observer.evicted(account);
        }
    }

    fn pin_primaries(&self) {
        let keys = self.inner.keys.load_full();
        let now = self.inner.clock.now();
        for (account, _) in &keys.signers {
            self.insert(*account, now);
        }
        if let Ok(slots) = self.inner.slots.read() {
            for slot in slots.values() {
                slot.pinned
                    .store(keys.is_primary(slot.account), Ordering::Relaxed);
            }
        }
    }

    /// Mint for `slot` under its lock, unless another caller did while we waited.
    async fn mint_slot(&self, slot: &Slot, reason: MintReason) -> Result<Arc<Token>, TokenError> {
        let _guard = slot.lock.lock().await;
        let now = self.inner.clock.now();
        let keys = self.inner.keys.load_full();
        let signer = keys.signer_for(slot.account);
        if let Some(tok) = slot.token.load_full() {
            let fresh_enough = match reason {
                MintReason::Needed => now < tok.exp - SERVE_MARGIN,
                MintReason::Refresh => {
                    now < tok.refresh_at && tok.fingerprint == signer.fingerprint()
                }
            };
            if fresh_enough {
                return Ok(tok);
            }
        }
        let claims = Claims::new(slot.account, now, self.inner.cfg.ttl);
        let minted = signer.mint(&claims).and_then(|jwt| {
            let mut value =
                HeaderValue::try_from(format!("Bearer {jwt}")).map_err(|_| MintError {
                    key_id: signer.key_id().to_owned(),
                    reason: "the token is not a valid header value".to_owned(),
                })?;
            value.set_sensitive(true);
            Ok(value)
        });
        match minted {
            Ok(authorization) => {
                let tok = Arc::new(Token {
                    authorization,
                    kid: Arc::from(signer.key_id()),
                    account: slot.account,
                    iat: claims.iat,
                    exp: claims.exp,
                    refresh_at: claims.exp - i64::from(self.inner.cfg.refresh_before),
                    fingerprint: signer.fingerprint(),
                });
                slot.token.store(Some(tok.clone()));
                slot.failures.store(0, Ordering::Relaxed);
                slot.retry_at.store(0, Ordering::Relaxed);
                self.inner.observer.minted(slot.account, tok.exp);
                Ok(tok)
            }
            Err(source) => {
                let failures = slot
                    .failures
                    .fetch_add(1, Ordering::Relaxed)
                    .saturating_add(1);
                // 1, 2, 4, ... 32, 64 s, capped at MAX_BACKOFF_SECS below.
                let backoff = 1i64 << failures.min(7).saturating_sub(1);
                slot.retry_at
                    .store(now + backoff.min(MAX_BACKOFF_SECS), Ordering::Relaxed);
                self.inner.observer.mint_failed(slot.account);
                tracing::warn!(
                    account = slot.account.get(),
                    key_id = %source.key_id,
                    failures,
                    retry_in_secs = backoff.min(MAX_BACKOFF_SECS),
                    failure = %source.reason,
                    "token mint failed"
                );
                // A failed refresh keeps serving the still-valid token.
                if let Some(tok) = slot
                    .token
                    .load_full()
                    .filter(|t| now < t.exp - SERVE_MARGIN)
                    && matches!(reason, MintReason::Needed)
                {
                    return Ok(tok);
                }
                Err(TokenError {
                    account: slot.account,
                    source,
                })
            }
        }
    }
}

#[derive(Clone, Copy)]
enum MintReason {
    /// A request has no valid token.
    Needed,
    /// The background refresher found the token due.
    Refresh,
}

#[cfg(test)]
mod tests;
