//! Rate limits (contract "Limits"): a gateway client's `rate`, refused over it (429
//! `client_rate_limited`), and `account_rate`, where a request over the limit waits for its turn
//! up to `account_rate_wait`, then gets 429 `account_rate_limited`. Both carry `Retry-After` and
//! count in `voxproxy_rate_limited_total{scope}`.
//!
//! Each limit is GCRA ([`gcra`]). A request that no limit applies to costs nothing here (and never
//! touches Redis). A request that waits and whose client leaves gives its turn back. With
//! `limits_redis` ([`shared`]) each decision is made in Redis, so a limit holds for all replicas
//! together; while Redis is away, the same limits are counted here alone.

pub mod gcra;
pub mod shared;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::account::AccountId;
use crate::config::Rate;
use crate::error::{ErrorKind, ProxyError};
use crate::metrics::Metrics;
use gcra::{Params, Verdict};
use shared::Shared;

/// Most accounts whose `account_rate` state is kept; beyond it, idle ones are forgotten.
const MAX_ACCOUNTS: usize = 10_000;

/// One rate limit and its state. A client's is carried over a reload while its rate is
/// unchanged, so a reload refills no one's burst.
pub struct Limit {
    /// What it enforces.
    pub rate: Rate,
    params: Params,
    local: gcra::Local,
}

impl Limit {
    /// A limit for `rate` with a full burst.
    pub fn new(rate: Rate) -> Limit {
        Limit {
            rate,
            params: Params::of(rate),
            local: gcra::Local::default(),
        }
    }

    /// Decide a request (an admitted one takes its turn).
    fn reserve(&self, max_wait: Duration) -> Verdict {
        self.local.reserve(self.params, max_wait)
    }
}

impl fmt::Debug for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Limit({})", self.rate)
    }
}

/// The limits in force.
pub struct Limits {
    /// `account_rate`, if set.
    account_rate: Option<Rate>,
    /// `account_rate_wait`.
    account_wait: Duration,
    /// Each account's limit under `account_rate`.
    accounts: Mutex<HashMap<AccountId, Arc<Limit>>>,
    metrics: Arc<Metrics>,
    /// `limits_redis`: decisions made in Redis while it answers.
    shared: Option<Arc<Shared>>,
}

impl fmt::Debug for Limits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limits")
            .field("account_rate", &self.account_rate)
            .field("account_wait", &self.account_wait)
            .finish_non_exhaustive()
    }
}

/// Whole seconds, rounded up, at least 1: a `Retry-After`.
fn retry_after(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

impl Limits {
    /// Limits with `account_rate` (if any) and its wait.
    pub fn new(
        account_rate: Option<Rate>,
        account_wait: Duration,
        metrics: Arc<Metrics>,
    ) -> Limits {
        Limits {
            account_rate,
            account_wait,
            accounts: Mutex::new(HashMap::new()),
            metrics,
            shared: None,
        }
    }

    /// Decide in Redis through `shared` while it answers (`limits_redis`).
    pub fn with_shared(mut self, shared: Arc<Shared>) -> Limits {
        self.shared = Some(shared);
        self
    }

    /// Decide a request under `limit`: in Redis (under the key `key` makes) while it answers,
    /// else here. An admitted request has its turn reserved where it was decided; the key is
    /// returned when that was Redis.
    async fn reserve(
        &self,
        limit: &Limit,
        key: impl FnOnce() -> String,
        max_wait: Duration,
    ) -> (Verdict, Option<String>) {
        if let Some(shared) = self.shared.as_ref().filter(|s| s.is_up()) {
            let key = key();
            if let Some(verdict) = shared.reserve(&key, limit.params, max_wait).await {
                return (verdict, Some(key));
            }
        }
        (limit.reserve(max_wait), None)
    }

    /// The client-rate stage: 429 `client_rate_limited` with `Retry-After` when `client` is
    /// over its `rate` (`limit`).
    pub async fn client(&self, client: &str, limit: &Limit) -> Result<(), ProxyError> {
        let key = || shared::key("client", client);
        match self.reserve(limit, key, Duration::ZERO).await.0 {
            Verdict::Admit(_) => Ok(()),
            Verdict::Refuse(after) => {
                self.metrics.rate_limited("client", Some(client));
                let secs = retry_after(after);
                Err(ProxyError::new(
                    ErrorKind::ClientRateLimited,
                    format!(
                        "client {client} is over its rate of {}; retry after {secs} s",
                        limit.rate
                    ),
                )
                .with_retry_after(secs))
            }
        }
    }

    /// The account-rate stage: under `account_rate`, wait for the account's turn up to
    /// `account_rate_wait` (a timer, not a loop), else 429 `account_rate_limited` with
    /// `Retry-After`. `client` names the gateway client for the metrics.
    pub async fn account(
        &self,
        account: AccountId,
        client: Option<&str>,
    ) -> Result<(), ProxyError> {
        let Some(rate) = self.account_rate else {
            return Ok(());
        };
        let limit = self.account_limit(account, rate);
        let key = || shared::key("account", &account.get().to_string());
        match self.reserve(&limit, key, self.account_wait).await {
            (Verdict::Admit(wait), key) => {
                self.metrics.rate_limit_wait.observe(wait.as_secs_f64());
                if !wait.is_zero() {
                    let turn = Turn {
                        limit: &limit,
                        taken: Some(match (key, &self.shared) {
                            (Some(key), Some(shared)) => Taken::Shared(key, shared.clone()),
                            _ => Taken::Local,
                        }),
                    };
                    tokio::time::sleep(wait).await;
                    turn.keep();
                }
                Ok(())
            }
            (Verdict::Refuse(after), _) => {
                self.metrics.rate_limited("account", client);
                let secs = retry_after(after.saturating_sub(self.account_wait));
                Err(ProxyError::new(
                    ErrorKind::AccountRateLimited,
                    format!(
                        "account {account} is over account_rate ({rate}): no turn within account_rate_wait ({} s); retry after {secs} s",
                        self.account_wait.as_secs_f64()
                    ),
                )
                .with_retry_after(secs))
            }
        }
    }

    /// The limit of `account`, made on first use.
    fn account_limit(&self, account: AccountId, rate: Rate) -> Arc<Limit> {
        let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(limit) = accounts.get(&account) {
            return limit.clone();
        }
        if accounts.len() >= MAX_ACCOUNTS {
            // Only shared handles are in use; a limit nobody holds has nothing in flight.
            accounts.retain(|_, l| Arc::strong_count(l) > 1);
        }
        let limit = Arc::new(Limit::new(rate));
        accounts.insert(account, limit.clone());
        limit
    }
}

/// A turn taken while its request waits: given back if the request is dropped first (its
/// client left), where it was taken.
struct Turn<'a> {
    limit: &'a Limit,
    taken: Option<Taken>,
}

/// Where a turn was reserved.
enum Taken {
    /// In this process.
    Local,
    /// In Redis, under this key.
    Shared(String, Arc<Shared>),
}

impl Turn<'_> {
    /// The request went: the turn is used.
    fn keep(mut self) {
        self.taken = None;
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        match self.taken.take() {
            None => {}
            Some(Taken::Local) => self.limit.local.release(self.limit.params),
            Some(Taken::Shared(key, shared)) => shared.give_back(key, self.limit.params),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rate: &str, wait_ms: u64) -> Limits {
        Limits::new(
            Some(Rate::parse(rate).unwrap()),
            Duration::from_millis(wait_ms),
            Arc::new(Metrics::new(false)),
        )
    }

    fn id(n: u64) -> AccountId {
        AccountId::new(n).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn an_account_over_its_rate_waits_its_turn_then_is_refused() {
        let l = limits("10/s; burst 1", 250);
        let start = tokio::time::Instant::now();
        // Four requests at once: three get turns 100 ms apart, the fourth's would be 300 ms away.
        let timed = |n: u64| {
            let l = &l;
            async move {
                let r = l.account(id(5), None).await;
                (n, r.map_err(|e| e.kind), start.elapsed().as_millis())
            }
        };
        let mut done = futures_util::future::join_all((0..4).map(timed)).await;
        done.sort_by_key(|(_, r, at)| (r.is_err(), *at));
        let outcomes: Vec<_> = done.iter().map(|(_, r, at)| (*r, *at)).collect();
        assert_eq!(
            outcomes,
            [
                (Ok(()), 0),
                (Ok(()), 100),
                (Ok(()), 200),
                (Err(ErrorKind::AccountRateLimited), 0),
            ]
        );
        // Another account has its own turns.
        l.account(id(6), None).await.unwrap();
        let text = l.metrics.encode();
        assert!(
            text.contains("voxproxy_rate_limited_total{scope=\"account\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("voxproxy_rate_limit_wait_seconds_count 4"),
            "{text}"
        );
        let e = l.account(id(5), None);
        let e = tokio::time::timeout(Duration::from_millis(1), e).await;
        assert!(
            e.is_err(),
            "a fifth request now waits for its turn (at 300 ms)"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_leaves_gives_its_turn_back() {
        let l = limits("1/s; burst 1", 2000);
        l.account(id(5), None).await.unwrap();
        // The next turn is 1 s away; the request is dropped while it waits.
        let waiting = l.account(id(5), None);
        assert!(
            tokio::time::timeout(Duration::from_millis(10), waiting)
                .await
                .is_err()
        );
        // Its turn was given back: the next request waits 1 s, not 2.
        let start = tokio::time::Instant::now();
        l.account(id(5), None).await.unwrap();
        assert_eq!(start.elapsed().as_millis(), 990);
    }

    #[tokio::test]
    async fn no_account_rate_no_limit() {
        let l = Limits::new(None, Duration::ZERO, Arc::new(Metrics::new(false)));
        for _ in 0..1000 {
            l.account(id(1), None).await.unwrap();
        }
    }

    #[tokio::test]
    async fn rate_per_hour_with_a_burst_of_its_own() {
        let l = limits("1/s", 0);
        // 2 an hour with a burst of 5: five at once, then a refusal asking for half an hour.
        let limit = Limit::new(Rate::parse("2/h; burst 5").unwrap());
        for _ in 0..5 {
            assert!(l.client("app", &limit).await.is_ok());
        }
        let e = l.client("app", &limit).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::ClientRateLimited);
        let after = e.retry_after.unwrap();
        assert!((1790..=1800).contains(&after), "{after}");
        assert!(e.msg.contains("2/h; burst 5"), "{}", e.msg);
        // A burst smaller than the rate: only that many at once.
        let limit = Limit::new(Rate::parse("100/s; burst 2").unwrap());
        assert!(l.client("app", &limit).await.is_ok());
        assert!(l.client("app", &limit).await.is_ok());
        assert!(l.client("app", &limit).await.is_err());
    }

    #[tokio::test]
    async fn a_client_over_its_rate_is_refused_with_retry_after() {
        let l = limits("1/s", 0);
        let limit = Limit::new(Rate::parse("3/m").unwrap());
        for _ in 0..3 {
            l.client("app", &limit).await.unwrap();
        }
        let e = l.client("app", &limit).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::ClientRateLimited);
        assert!((1..=20).contains(&e.retry_after.unwrap()));
        assert!(
            l.metrics
                .encode()
                .contains("voxproxy_rate_limited_total{scope=\"client\",client=\"app\"} 1")
        );
    }
}
