//! The token cache under controlled time: reuse, background refresh ahead of `exp`, single flight,
//! backoff on failure while the old token keeps being served, key rotation, the child-account cap
//! and readiness. A scripted signer stands in for RSA so every mint is counted.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize};
use std::time::Duration;

use super::*;
use crate::token::TokioClock;
use crate::token::mint::IAT_BACKDATE;

/// Unix time the paused clock starts at.
const START: i64 = 1_700_000_000;

/// A signer that counts its mints, can be told to fail, and returns a fake JWT naming what it
/// signed (`<kid>.<iss>.<iat>`), so tests can tell tokens apart by value too.
struct ScriptedSigner {
    kid: String,
    fingerprint: [u8; 32],
    mints: AtomicUsize,
    failing: AtomicBool,
    /// Unix time of every mint attempt (failed ones included), from the claims.
    attempts: Mutex<Vec<i64>>,
    /// Spin this long inside `mint` (multi-thread tests only) while others pile up.
    hold: Option<(Arc<AtomicUsize>, usize)>,
    /// Set when `hold` saw every caller arrive while this mint was still running.
    saw_all_waiting: AtomicBool,
}

impl ScriptedSigner {
    fn new(kid: &str, fp: u8) -> Arc<ScriptedSigner> {
        Arc::new(ScriptedSigner {
            kid: kid.to_owned(),
            fingerprint: [fp; 32],
            mints: AtomicUsize::new(0),
            failing: AtomicBool::new(false),
            attempts: Mutex::new(Vec::new()),
            hold: None,
            saw_all_waiting: AtomicBool::new(false),
        })
    }

    fn mints(&self) -> usize {
        self.mints.load(Ordering::SeqCst)
    }

    fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    fn attempts(&self) -> Vec<i64> {
        self.attempts.lock().expect("attempts lock").clone()
    }
}

impl Signer for ScriptedSigner {
    fn key_id(&self) -> &str {
        &self.kid
    }

    fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    fn mint(&self, claims: &Claims) -> Result<String, MintError> {
        self.mints.fetch_add(1, Ordering::SeqCst);
        self.attempts
            .lock()
            .expect("attempts lock")
            .push(claims.iat + IAT_BACKDATE);
        if let Some((arrived, want)) = &self.hold {
            // Keep the signature "in flight" until every caller has asked for the token.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while arrived.load(Ordering::SeqCst) < *want && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            if arrived.load(Ordering::SeqCst) >= *want {
                // Give the last arrivals time to reach the slot's lock too.
                std::thread::sleep(Duration::from_millis(50));
                self.saw_all_waiting.store(true, Ordering::SeqCst);
            }
        }
        if self.failing.load(Ordering::SeqCst) {
            return Err(MintError {
                key_id: self.kid.clone(),
                reason: "scripted failure".to_owned(),
            });
        }
        Ok(format!("{}.{}.{}", self.kid, claims.iss, claims.iat))
    }
}

/// Records the observer hooks.
#[derive(Default)]
struct Recorder {
    minted: Mutex<Vec<(u64, i64)>>,
    failed: Mutex<Vec<u64>>,
    evicted: Mutex<Vec<u64>>,
}

impl CacheObserver for Recorder {
    fn minted(&self, account: AccountId, exp: i64) {
        self.minted.lock().expect("lock").push((account.get(), exp));
    }
    fn mint_failed(&self, account: AccountId) {
        self.failed.lock().expect("lock").push(account.get());
    }
    fn evicted(&self, account: AccountId) {
        self.evicted.lock().expect("lock").push(account.get());
    }
}

impl Recorder {
    fn evicted(&self) -> Vec<u64> {
        self.evicted.lock().expect("lock").clone()
    }
}

fn cfg(ttl: u32, refresh_before: u32, max_children: usize) -> CacheConfig {
    CacheConfig {
        ttl,
        refresh_before,
        max_children,
    }
}

fn acct(n: u64) -> AccountId {
    AccountId::new(n).expect("a positive id")
}

fn signers(list: &[(u64, &Arc<ScriptedSigner>)]) -> Vec<(AccountId, Arc<dyn Signer>)> {
    list.iter()
        .map(|(a, s)| (acct(*a), Arc::clone(s) as Arc<dyn Signer>))
        .collect()
}

/// A cache on a paused tokio clock reading [`START`] now.
fn paused_cache(
    cfg: CacheConfig,
    list: &[(u64, &Arc<ScriptedSigner>)],
) -> (TokenCache, Arc<Recorder>, TokioClock) {
    let clock = TokioClock::starting_at(START);
    let recorder = Arc::new(Recorder::default());
    let cache = TokenCache::new(
        cfg,
        signers(list),
        Arc::new(clock),
        Some(recorder.clone() as Arc<dyn CacheObserver>),
    );
    (cache, recorder, clock)
}

/// The background refresher, stopped by dropping or firing the returned sender.
struct Refresher {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Refresher {
    fn spawn(cache: &TokenCache) -> Refresher {
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(cache.clone().run_refresher(async move {
            let _ = rx.await;
        }));
        Refresher { stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(1), self.task)
            .await
            .expect("the refresher stops on shutdown")
            .expect("the refresher does not panic");
    }
}

/// Sleep on the paused clock until `START + secs` (auto-advance fires every timer on the way).
async fn sleep_until(clock: &TokioClock, secs: i64) {
    let now = clock.now();
    assert!(now <= START + secs, "already past {secs}: {}", now - START);
    tokio::time::sleep(Duration::from_secs((START + secs - now) as u64)).await;
    assert_eq!(clock.now(), START + secs);
}

async fn get(cache: &TokenCache, account: u64) -> Arc<Token> {
    match cache.get(acct(account)).await {
        Ok(t) => t,
        Err(e) => panic!("expected a token for {account}: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn token_is_reused_while_valid() {
    let signer = ScriptedSigner::new("kid-1", 1);
    let (cache, recorder, clock) = paused_cache(cfg(3600, 300, 10), &[(7, &signer)]);

    let first = get(&cache, 7).await;
    assert_eq!(first.account, 7);
    assert_eq!(&*first.kid, "kid-1");
    assert_eq!(first.iat, START - 5);
    assert_eq!(first.exp, START - 5 + 3600);
    assert_eq!(
        first.authorization(),
        &format!("Bearer kid-1.7.{}", START - 5)
    );
    assert!(first.authorization().is_sensitive());

    for step in 1..=50 {
        sleep_until(&clock, step * 60).await;
        let again = get(&cache, 7).await;
        assert!(Arc::ptr_eq(&first, &again), "a valid token is served as is");
    }
    assert_eq!(signer.mints(), 1);
    assert_eq!(
        *recorder.minted.lock().expect("lock"),
        vec![(7, START - 5 + 3600)]
    );
}

#[tokio::test(start_paused = true)]
async fn token_debug_hides_the_jwt() {
    let signer = ScriptedSigner::new("kid-1", 1);
    let (cache, _, _) = paused_cache(cfg(3600, 300, 10), &[(7, &signer)]);
    let tok = get(&cache, 7).await;
    let text = format!("{tok:?}");
    assert!(!text.contains("kid-1.7."), "{text}");
    assert!(text.contains("****"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn refresher_re_mints_before_expiry_without_a_request() {
    let signer = ScriptedSigner::new("kid-1", 1);
    let (cache, _, clock) = paused_cache(cfg(3600, 300, 10), &[(7, &signer)]);
    assert!(cache.warm().await.is_empty());
    let first = cache.peek(acct(7)).expect("warm token");
    let refresh_at = first.exp - 300;
    let refresher = Refresher::spawn(&cache);

    // Just before the refresh point nothing happens.
    sleep_until(&clock, refresh_at - START - 1).await;
    assert_eq!(signer.mints(), 1);
    assert_eq!(cache.peek(acct(7)).expect("still valid").iat, first.iat);

    // Shortly after it, a new token is in place, long before the old one expires; only `peek`
    // (which never mints) looked at the cache.
    sleep_until(&clock, refresh_at - START + 2).await;
    assert_eq!(signer.mints(), 2);
    let second = cache.peek(acct(7)).expect("refreshed token");
    assert_ne!(second.iat, first.iat);
    assert!(
        second.iat + 5 >= refresh_at && second.iat + 5 <= clock.now(),
        "{second:?}"
    );
    assert!(clock.now() < first.exp - SERVE_MARGIN);
    assert_eq!(second.exp, second.iat + 3600);

    // A request now gets the new token with no signature.
    assert!(Arc::ptr_eq(&get(&cache, 7).await, &second));
    assert_eq!(signer.mints(), 2);

    // And it keeps going: over ten lifetimes the token never lapses and is re-minted once per
    // lifetime, not more.
    for _ in 0..(10 * 3600 / 30) {
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(cache.ready(), "lapsed at +{}", clock.now() - START);
    }
    let mints = signer.mints();
    assert!(
        (11..=13).contains(&mints),
        "{mints} mints over ten lifetimes"
    );
    refresher.stop().await;
}

/// With the shortest TTL the refresh margin is tiny compared to the refresher's idle wait: the
/// token must still be replaced before it expires.
#[tokio::test(start_paused = true)]
async fn refresher_keeps_a_short_ttl_token_fresh() {
    let signer = ScriptedSigner::new("kid-1", 1);
    let (cache, _, clock) = paused_cache(cfg(60, 30, 10), &[(7, &signer)]);
    let refresher = Refresher::spawn(&cache);
    tokio::task::yield_now().await;
    for _ in 0..600 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            cache.peek(acct(7)).is_some(),
            "no valid token at +{}s",
            clock.now() - START
        );
    }
    // Once per ttl - refresh_before - IAT_BACKDATE = 25 s, the first at +0.
    let mints = signer.mints();
    assert!((24..=26).contains(&mints), "{mints} mints in 600 s");
    refresher.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_gets_for_a_cold_account_mint_once() {
    const CALLERS: usize = 100;
    let arrived = Arc::new(AtomicUsize::new(0));
    let signer = Arc::new(ScriptedSigner {
        hold: Some((arrived.clone(), CALLERS)),
        ..Arc::into_inner(ScriptedSigner::new("kid-1", 1)).expect("sole owner")
    });
    let clock = Arc::new(ManualClock(AtomicI64::new(START)));
    let cache = TokenCache::new(
        cfg(3600, 300, 10),
        signers(&[(1, &signer)]),
        clock.clone(),
        None,
    );

    // Account 1 is a primary; 555 is a child account signed by the same key. Both start cold.
    for account in [1, 555] {
        let before = signer.mints();
        arrived.store(0, Ordering::SeqCst);
        signer.saw_all_waiting.store(false, Ordering::SeqCst);
        let tasks: Vec<_> = (0..CALLERS)
            .map(|_| {
                let cache = cache.clone();
                let arrived = arrived.clone();
                tokio::spawn(async move {
                    arrived.fetch_add(1, Ordering::SeqCst);
                    cache.get(acct(account)).await
                })
            })
            .collect();
        let mut tokens = Vec::new();
        for t in tasks {
            tokens.push(t.await.expect("task").expect("token"));
        }
        assert!(
            signer.saw_all_waiting.load(Ordering::SeqCst),
            "all {CALLERS} callers asked while the one mint was in flight"
        );
        assert_eq!(signer.mints() - before, 1, "exactly one mint for {account}");
        assert!(tokens.iter().all(|t| Arc::ptr_eq(t, &tokens[0])));
        assert_eq!(tokens[0].account, account);
    }

    // Expired tokens are re-minted once too, however many callers find them expired at once.
    clock.0.store(START + 3600, Ordering::SeqCst);
    let before = signer.mints();
    arrived.store(0, Ordering::SeqCst);
    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| {
            let cache = cache.clone();
            let arrived = arrived.clone();
            tokio::spawn(async move {
                arrived.fetch_add(1, Ordering::SeqCst);
                cache.get(acct(1)).await
            })
        })
        .collect();
    let mut iats = HashSet::new();
    for t in tasks {
        iats.insert(t.await.expect("task").expect("token").iat);
    }
    assert_eq!(signer.mints() - before, 1);
    assert_eq!(iats, HashSet::from([START + 3600 - 5]));
}

/// A clock the multi-thread test sets by hand.
struct ManualClock(AtomicI64);

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[tokio::test(start_paused = true)]
async fn failed_refresh_backs_off_and_keeps_serving_the_old_token() {
    let signer = ScriptedSigner::new("kid-1", 1);
    let (cache, recorder, clock) = paused_cache(cfg(3600, 300, 10), &[(7, &signer)]);
    assert!(cache.warm().await.is_empty());
    let old = cache.peek(acct(7)).expect("warm");
    let refresh_at = old.exp - 300; // START + 3295
    let refresher = Refresher::spawn(&cache);

    sleep_until(&clock, refresh_at - START - 10).await;
    signer.fail(true);

    // Requests during the outage get the old, still valid token and never wait for a signer.
    for at in [3300, 3350, 3400, 3450, 3500] {
        sleep_until(&clock, at).await;
        let tok = get(&cache, 7).await;
        assert!(Arc::ptr_eq(&tok, &old), "old token served at +{at}");
        assert!(cache.ready());
    }
    // Attempts back off 1, 2, 4, ... seconds, capped at 60.
    let attempts = signer.attempts();
    assert_eq!(attempts[0], START - 5 + 5, "the warm-up mint");
    let gaps: Vec<i64> = attempts[1..].windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(attempts[1], refresh_at, "first refresh attempt on time");
    assert_eq!(
        gaps,
        vec![1, 2, 4, 8, 16, 32, 60, 60],
        "attempts at {attempts:?}"
    );
    assert_eq!(recorder.failed.lock().expect("lock").len(), 9);

    // The signer recovers: the next retry (at +3538) installs a new token, served from then on.
    signer.fail(false);
    sleep_until(&clock, 3537).await;
    assert!(Arc::ptr_eq(&get(&cache, 7).await, &old));
    sleep_until(&clock, 3539).await;
    let new = get(&cache, 7).await;
    assert_eq!(new.iat, START + 3538 - 5);
    assert_eq!(signer.mints(), 11);

    // Backoff was reset by the success: the next refresh is an ordinary one.
    sleep_until(&clock, 3538 + 3295 + 1).await;
    assert_eq!(signer.mints(), 12);
    refresher.stop().await;
}

#[tokio::test(start_paused = true)]
async fn failing_signer_with_no_valid_token_is_an_error() {
    let signer = ScriptedSigner::new("kid-1", 1);
    signer.fail(true);
    let (cache, recorder, _) = paused_cache(cfg(3600, 300, 10), &[(7, &signer)]);
    let err = cache.get(acct(7)).await.expect_err("nothing to serve");
    assert_eq!(err.account, 7);
    assert_eq!(err.to_string(), "no valid token for account 7");
    assert_eq!(
        std::error::Error::source(&err).map(ToString::to_string),
        Some("signing a token with key kid-1 failed: scripted failure".to_owned())
    );
    assert!(!cache.ready());
    let errors = cache.warm().await;
    assert_eq!(errors.len(), 1);
    assert_eq!(*recorder.failed.lock().expect("lock"), vec![7, 7]);

    signer.fail(false);
    assert!(cache.warm().await.is_empty());
    assert!(cache.ready());
}

#[tokio::test(start_paused = true)]
async fn a_jwt_that_is_not_a_header_value_is_refused() {
    struct BadSigner;
    impl Signer for BadSigner {
        fn key_id(&self) -> &str {
            "bad"
        }
        fn fingerprint(&self) -> [u8; 32] {
            [9; 32]
        }
        fn mint(&self, _: &Claims) -> Result<String, MintError> {
            Ok("line\nbreak".to_owned())
        }
    }
    let cache = TokenCache::new(
        cfg(3600, 300, 10),
        vec![(acct(7), Arc::new(BadSigner) as Arc<dyn Signer>)],
        Arc::new(TokioClock::starting_at(START)),
        None,
    );
    let err = cache.get(acct(7)).await.expect_err("invalid header value");
    assert_eq!(
        err.source.to_string(),
        "signing a token with key bad failed: the token is not a valid header value"
    );
}

#[tokio::test(start_paused = true)]
async fn new_key_is_minted_promptly_and_old_token_served_until_then() {
    let old_signer = ScriptedSigner::new("old-kid", 1);
    let new_signer = ScriptedSigner::new("new-kid", 2);
    let (cache, _, clock) = paused_cache(cfg(3600, 300, 10), &[(7, &old_signer)]);
    assert!(cache.warm().await.is_empty());
    // A child account signed by the primary's key is rotated too.
    assert_eq!(&*get(&cache, 900).await.kid, "old-kid");
    let refresher = Refresher::spawn(&cache);
    sleep_until(&clock, 100).await;

    cache.set_keys(signers(&[(7, &new_signer)]));
    // Until the refresher has run, requests keep getting the old, valid token: nobody waits.
    let tok = get(&cache, 7).await;
    assert_eq!(&*tok.kid, "old-kid");
    assert_eq!(new_signer.mints(), 0);

    // Promptly (no time passes on the paused clock) the new key's tokens are in place.
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(new_signer.mints(), 2, "primary and child re-minted");
    for account in [7, 900] {
        let tok = get(&cache, account).await;
        assert_eq!(&*tok.kid, "new-kid");
        assert_eq!(tok.iat, START + 100 - 5);
        assert_eq!(
            tok.authorization(),
            &format!("Bearer new-kid.{account}.{}", START + 95)
        );
    }
    assert_eq!(old_signer.mints(), 2);
    assert_eq!(new_signer.mints(), 2);
    refresher.stop().await;
}

#[tokio::test(start_paused = true)]
async fn reloading_the_same_key_does_not_re_mint() {
    let signer = ScriptedSigner::new("kid-1", 1);
    let (cache, _, clock) = paused_cache(cfg(3600, 300, 10), &[(7, &signer)]);
    assert!(cache.warm().await.is_empty());
    let refresher = Refresher::spawn(&cache);
    sleep_until(&clock, 100).await;
    let same = ScriptedSigner::new("kid-1", 1);
    cache.set_keys(signers(&[(7, &same)]));
    sleep_until(&clock, 200).await;
    assert_eq!(signer.mints() + same.mints(), 1);
    refresher.stop().await;
}

/// A reload that fixes a failing key must not wait out the old key's backoff.
#[tokio::test(start_paused = true)]
async fn new_key_is_tried_at_once_even_during_backoff() {
    let broken = ScriptedSigner::new("broken", 1);
    let fixed = ScriptedSigner::new("fixed", 2);
    let (cache, _, clock) = paused_cache(cfg(3600, 300, 10), &[(7, &broken)]);
    assert!(cache.warm().await.is_empty());
    let refresh_at = cache.peek(acct(7)).expect("warm").exp - 300;
    let refresher = Refresher::spawn(&cache);
    broken.fail(true);
    // Seven failures: the next retry is a minute away.
    sleep_until(&clock, refresh_at - START + 1 + 2 + 4 + 8 + 16 + 32 + 1).await;
    assert_eq!(broken.mints(), 1 + 7);

    cache.set_keys(signers(&[(7, &fixed)]));
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(fixed.mints(), 1, "the new key is used at once");
    assert_eq!(&*get(&cache, 7).await.kid, "fixed");
    refresher.stop().await;
}

#[tokio::test(start_paused = true)]
async fn child_accounts_are_capped_and_the_least_recently_used_is_evicted() {
    let signer = ScriptedSigner::new("kid-1", 1);
    let other = ScriptedSigner::new("kid-2", 2);
    let (cache, recorder, clock) = paused_cache(cfg(3600, 300, 3), &[(1, &signer), (2, &other)]);
    assert!(cache.warm().await.is_empty());
    assert_eq!(cache.len(), 2, "primaries only");

    // Children 101, 102, 103 at +1, +2, +3; 101 is used again at +4.
    for (i, child) in [101, 102, 103].into_iter().enumerate() {
        sleep_until(&clock, i as i64 + 1).await;
        let tok = get(&cache, child).await;
        assert_eq!(&*tok.kid, "kid-1", "children are signed by the first key");
    }
    sleep_until(&clock, 4).await;
    get(&cache, 101).await;
    assert_eq!(cache.len(), 5);

    // Two more children: the two least recently used go (102, then 103), never a primary.
    sleep_until(&clock, 5).await;
    get(&cache, 104).await;
    sleep_until(&clock, 6).await;
    get(&cache, 105).await;
    assert_eq!(cache.len(), 3 + 2);
    assert_eq!(recorder.evicted(), vec![102, 103]);
    for (account, cached) in [
        (1, true),
        (2, true),
        (101, true),
        (102, false),
        (103, false),
        (104, true),
        (105, true),
    ] {
        assert_eq!(
            cache.peek(acct(account)).is_some(),
            cached,
            "account {account}"
        );
    }
    // A primary asked for by id is signed by its own key and does not count as a child.
    assert_eq!(&*get(&cache, 2).await.kid, "kid-2");
    assert_eq!(cache.len(), 5);
    // An evicted child comes back with a fresh mint.
    let before = signer.mints();
    get(&cache, 102).await;
    assert_eq!(signer.mints(), before + 1);
    assert_eq!(cache.len(), 5);
}

#[tokio::test(start_paused = true)]
async fn idle_child_tokens_lapse_but_primaries_stay() {
    let signer = ScriptedSigner::new("kid-1", 1);
    let (cache, recorder, clock) = paused_cache(cfg(600, 60, 10), &[(1, &signer)]);
    assert!(cache.warm().await.is_empty());
    let refresher = Refresher::spawn(&cache);
    get(&cache, 500).await;
    assert_eq!(cache.len(), 2);
    sleep_until(&clock, 3 * 600).await;
    assert_eq!(cache.len(), 1, "the idle child lapsed");
    assert_eq!(recorder.evicted(), vec![500]);
    assert!(cache.ready(), "the primary is kept fresh");
    refresher.stop().await;
}

#[tokio::test(start_paused = true)]
async fn ready_only_when_every_primary_holds_a_valid_token() {
    let a = ScriptedSigner::new("kid-a", 1);
    let b = ScriptedSigner::new("kid-b", 2);
    let (cache, _, clock) = paused_cache(cfg(600, 60, 10), &[(1, &a), (2, &b)]);
    assert!(!cache.ready(), "cold");
    get(&cache, 1).await;
    assert!(!cache.ready(), "one of two primaries");
    assert!(cache.warm().await.is_empty());
    assert!(cache.ready());
    // Without a refresher, tokens run out and readiness goes with them.
    sleep_until(&clock, 600 - 5 - SERVE_MARGIN).await;
    assert!(!cache.ready());
    assert!(cache.warm().await.is_empty());
    assert!(cache.ready());
}

#[tokio::test(start_paused = true)]
async fn token_about_to_expire_is_not_served() {
    let signer = ScriptedSigner::new("kid-1", 1);
    let (cache, _, clock) = paused_cache(cfg(600, 60, 10), &[(7, &signer)]);
    let first = get(&cache, 7).await;
    assert_eq!(first.exp, START + 595);

    // 11 s left: still served.
    sleep_until(&clock, 584).await;
    assert!(Arc::ptr_eq(&get(&cache, 7).await, &first));
    assert_eq!(signer.mints(), 1);

    // 10 s left: not served any more; `peek` refuses it and `get` mints anew.
    sleep_until(&clock, 585).await;
    assert!(cache.peek(acct(7)).is_none());
    let second = get(&cache, 7).await;
    assert_eq!(signer.mints(), 2);
    assert_eq!(second.iat, START + 585 - 5);
    assert!(second.exp - clock.now() > SERVE_MARGIN);
}

#[tokio::test(start_paused = true)]
async fn refresher_stops_on_shutdown() {
    let signer = ScriptedSigner::new("kid-1", 1);
    let (cache, _, _) = paused_cache(cfg(600, 60, 10), &[(7, &signer)]);
    let refresher = Refresher::spawn(&cache);
    tokio::time::sleep(Duration::from_secs(1)).await;
    // A pinned account with no token is minted by the refresher itself (start-up).
    assert_eq!(signer.mints(), 1);
    assert!(cache.ready());
    refresher.stop().await;
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(signer.mints(), 1, "nothing runs after shutdown");
}
