//! The metrics registry and its families (prometheus-client; no hand-formatted exposition).
//! Label values are bounded: API method names outside `[A-Za-z][A-Za-z0-9_]{0,63}` or beyond the
//! distinct-name cap become `other`, accounts beyond the cap become `other`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::{EncodeLabel, EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::account::AccountId;
use crate::credentials::Credentials;
use crate::error::ErrorKind;
use crate::target::is_method_name;
use crate::token::CacheObserver;

/// Most distinct account label values; later accounts are counted as `other`.
const MAX_ACCOUNT_LABELS: usize = 256;
/// Most distinct API method label values; later names are counted as `other`.
const MAX_METHOD_LABELS: usize = 512;
/// Most distinct client label values.
const MAX_CLIENT_LABELS: usize = 512;

/// A label value. Shared, so the hot path hands out cached values instead of allocating.
pub type LabelValue = Arc<str>;

/// `voxproxy_requests_total` labels; `client` only in gateway mode.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct RequestLabels {
    /// Numeric status.
    pub status: u16,
    /// Account (bounded).
    pub account: LabelValue,
    /// API method (bounded).
    pub api_method: LabelValue,
    /// Gateway client name, when gateway mode is on.
    pub client: Option<LabelValue>,
}

impl EncodeLabelSet for RequestLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        ("status", self.status).encode(encoder.encode_label())?;
        ("account", &*self.account).encode(encoder.encode_label())?;
        ("api_method", &*self.api_method).encode(encoder.encode_label())?;
        if let Some(client) = &self.client {
            ("client", &**client).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

/// A single-label set, `name="value"`.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct Label<const N: usize>(pub &'static str, pub LabelValue);

impl<const N: usize> EncodeLabelSet for Label<N> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        (self.0, &*self.1).encode(encoder.encode_label())
    }
}

/// `{kind}` with an optional `client`.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct KindLabels {
    /// Error kind.
    pub kind: &'static str,
    /// Gateway client, when known.
    pub client: Option<LabelValue>,
}

impl EncodeLabelSet for KindLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        ("kind", self.kind).encode(encoder.encode_label())?;
        if let Some(client) = &self.client {
            ("client", &**client).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

/// `{scope}` of `voxproxy_rate_limited_total`, with `client` in gateway mode.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct ScopeLabels {
    /// `client` or `account`.
    pub scope: &'static str,
    /// Gateway client, when known.
    pub client: Option<LabelValue>,
}

impl EncodeLabelSet for ScopeLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        ("scope", self.scope).encode(encoder.encode_label())?;
        if let Some(client) = &self.client {
            ("client", &**client).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

/// `{account, key_id}` of `voxproxy_credentials_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct CredentialsLabels {
    /// Account id.
    pub account: String,
    /// Key id (not a secret: it names the key).
    pub key_id: String,
}

impl EncodeLabelSet for CredentialsLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        ("account", self.account.as_str()).encode(encoder.encode_label())?;
        ("key_id", self.key_id.as_str()).encode(encoder.encode_label())
    }
}

/// `{reason}` of authentication failures and `{client, reason}` of policy refusals.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct ReasonLabels {
    /// Why.
    pub reason: &'static str,
    /// Gateway client, when known.
    pub client: Option<LabelValue>,
}

impl EncodeLabelSet for ReasonLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        ("reason", self.reason).encode(encoder.encode_label())?;
        if let Some(client) = &self.client {
            ("client", &**client).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

/// Every metric voxproxy exposes.
pub struct Metrics {
    registry: Registry,
    /// Requests answered, by status, account and API method.
    pub requests: Family<RequestLabels, Counter>,
    /// Whole-request duration.
    pub request_duration: Histogram,
    /// Time to the upstream's response head.
    pub upstream_duration: Histogram,
    /// Requests being handled now.
    pub in_flight: Gauge,
    /// voxproxy's own errors by kind.
    pub errors: Family<KindLabels, Counter>,
    /// Tokens minted, by account.
    pub tokens_minted: Family<Label<0>, Counter>,
    /// Failed mints, by account.
    pub mint_failures: Family<Label<1>, Counter>,
    /// Expiry of each cached token (unix seconds).
    pub token_expiry: Family<Label<2>, Gauge>,
    /// Credentials reloads by result.
    pub reloads: Family<Label<3>, Counter>,
    /// The loaded keys.
    pub credentials_info: Family<CredentialsLabels, Gauge>,
    /// Gateway: authentication failures by reason.
    pub auth_failures: Family<ReasonLabels, Counter>,
    /// Gateway: policy refusals (account, method) by client.
    pub policy_refusals: Family<ReasonLabels, Counter>,
    /// Requests refused over a limit, by scope (and client in gateway mode).
    pub rate_limited: Family<ScopeLabels, Counter>,
    /// Waits under `account_rate`.
    pub rate_limit_wait: Histogram,
    /// Whether limits are shared through Redis right now (only with `limits_redis`).
    pub limits_shared: Option<Gauge>,
    labels: Mutex<LabelCache>,
}

/// Label values handed out so far, bounded per kind; later values fold into `other`.
#[derive(Default)]
struct LabelCache {
    accounts: HashMap<AccountId, LabelValue>,
    methods: HashMap<Box<str>, LabelValue>,
    clients: HashMap<Box<str>, LabelValue>,
}

fn fixed(value: &'static str) -> LabelValue {
    // Tiny and rare (only once the caps are reached): not worth caching.
    Arc::from(value)
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(false)
    }
}

/// A family's name and help text.
type Desc = (&'static str, &'static str);

const REQUESTS: Desc = (
    "voxproxy_requests",
    "Requests answered, by status code, account and API method",
);
const REQUEST_TIME: Desc = (
    "voxproxy_request_duration_seconds",
    "Time from request head to the end of the response",
);
const UPSTREAM_TIME: Desc = (
    "voxproxy_upstream_duration_seconds",
    "Time from sending to the upstream to its response head",
);
const IN_FLIGHT: Desc = ("voxproxy_requests_in_flight", "Requests being handled");
const ERRORS: Desc = ("voxproxy_errors", "voxproxy's own error responses, by kind");
const MINTED: Desc = ("voxproxy_tokens_minted", "Tokens minted, by account");
const MINT_FAILURES: Desc = (
    "voxproxy_token_mint_failures",
    "Failed token mints, by account",
);
const EXPIRY: Desc = (
    "voxproxy_token_expiry_timestamp_seconds",
    "Expiry of the cached token, unix seconds, by account",
);
const RELOADS: Desc = (
    "voxproxy_credentials_reloads",
    "Credentials reloads, by result",
);
const CREDENTIALS: Desc = (
    "voxproxy_credentials_info",
    "The loaded credentials: account and key id",
);
const AUTH_FAILURES: Desc = (
    "voxproxy_client_auth_failures",
    "Gateway: client authentication failures, by reason",
);
const POLICY: Desc = (
    "voxproxy_client_policy_refusals",
    "Gateway: requests refused by a client's policy, by reason and client",
);
const LIMITED: Desc = (
    "voxproxy_rate_limited",
    "Requests refused with 429, by limit scope (client or account)",
);
const WAITS: Desc = (
    "voxproxy_rate_limit_wait_seconds",
    "Time requests waited for their turn under account_rate",
);
const SHARED: Desc = (
    "voxproxy_limits_shared",
    "1 while limits are counted in Redis, 0 while this replica counts alone",
);

/// Register `metric` under `desc` and hand it back (metrics are shared handles).
fn register<M: prometheus_client::registry::Metric + Clone>(
    registry: &mut Registry,
    (name, help): Desc,
    metric: M,
) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// Buckets of the duration histograms, seconds.
const DURATION_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
/// Buckets of `voxproxy_rate_limit_wait_seconds`: waits are bounded by `account_rate_wait`.
const WAIT_BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

impl Metrics {
    /// A registry with every family registered; `voxproxy_limits_shared` only when limits are
    /// counted in Redis (`shared_limits`): where there is no Redis there is no series.
    pub fn new(shared_limits: bool) -> Metrics {
        let mut registry = Registry::default();
        let r = &mut registry;
        r.register(
            "voxproxy_build",
            "Build information",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        r.register_collector(Box::new(process::ProcessCollector::new()));
        let m = Metrics {
            requests: register(r, REQUESTS, Family::default()),
            request_duration: register(r, REQUEST_TIME, Histogram::new(DURATION_BUCKETS)),
            upstream_duration: register(r, UPSTREAM_TIME, Histogram::new(DURATION_BUCKETS)),
            in_flight: register(r, IN_FLIGHT, Gauge::default()),
            errors: register(r, ERRORS, Family::default()),
            tokens_minted: register(r, MINTED, Family::default()),
            mint_failures: register(r, MINT_FAILURES, Family::default()),
            token_expiry: register(r, EXPIRY, Family::default()),
            reloads: register(r, RELOADS, Family::default()),
            credentials_info: register(r, CREDENTIALS, Family::default()),
            auth_failures: register(r, AUTH_FAILURES, Family::default()),
            policy_refusals: register(r, POLICY, Family::default()),
            rate_limited: register(r, LIMITED, Family::default()),
            rate_limit_wait: register(r, WAITS, Histogram::new(WAIT_BUCKETS)),
            limits_shared: shared_limits.then(|| register(r, SHARED, Gauge::default())),
            labels: Mutex::new(LabelCache::default()),
            registry,
        };
        m.start_at_zero();
        m
    }

    /// Series dashboards and alerts expect before the first event.
    fn start_at_zero(&self) {
        for result in ["success", "failure"] {
            let _ = self.reloads.get_or_create(&Label("result", result.into()));
        }
        for kind in ErrorKind::ALL {
            let _ = self.errors.get_or_create(&KindLabels {
                kind: kind.as_str(),
                client: None,
            });
        }
        for scope in ["client", "account"] {
            let _ = self.rate_limited.get_or_create(&ScopeLabels {
                scope,
                client: None,
            });
        }
    }

    /// The exposition, OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8192);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// A bounded account label (`none` when no account was chosen).
    pub fn account_label(&self, account: Option<AccountId>) -> LabelValue {
        let Some(account) = account else {
            return fixed("none");
        };
        let mut cache = self.labels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = cache.accounts.get(&account) {
            return v.clone();
        }
        if cache.accounts.len() >= MAX_ACCOUNT_LABELS {
            return fixed("other");
        }
        let v: LabelValue = account.to_string().into();
        cache.accounts.insert(account, v.clone());
        v
    }

    /// A bounded API method label: `none` when no method is visible, `other` for names that are
    /// not API method names or beyond the cap.
    pub fn method_label(&self, method: Option<&str>) -> LabelValue {
        let Some(method) = method else {
            return fixed("none");
        };
        if !is_method_name(method) {
            return fixed("other");
        }
        let mut cache = self.labels.lock().unwrap_or_else(|p| p.into_inner());
        bounded(&mut cache.methods, method, MAX_METHOD_LABELS)
    }

    /// A bounded client label.
    pub fn client_label(&self, client: &str) -> LabelValue {
        let mut cache = self.labels.lock().unwrap_or_else(|p| p.into_inner());
        bounded(&mut cache.clients, client, MAX_CLIENT_LABELS)
    }

    /// Count a request a client's policy refused (`account` or `method`) in
    /// `voxproxy_client_policy_refusals_total`.
    pub fn policy_refusal(&self, reason: &'static str, client: &str) {
        let client = self.client_label(client);
        self.policy_refusals
            .get_or_create(&ReasonLabels {
                reason,
                client: Some(client),
            })
            .inc();
    }

    /// Count a request refused over a limit (`scope` is `client` or `account`) in
    /// `voxproxy_rate_limited_total`.
    pub fn rate_limited(&self, scope: &'static str, client: Option<&str>) {
        let client = client.map(|c| self.client_label(c));
        self.rate_limited
            .get_or_create(&ScopeLabels { scope, client })
            .inc();
    }

    /// Record the loaded keys in `voxproxy_credentials_info`, and start each account's token
    /// counters at zero so dashboards and alerts see the series before the first event.
    pub fn record_credentials(&self, creds: &[Credentials]) {
        self.credentials_info.clear();
        for c in creds {
            let account = self.account_label(Some(c.account_id));
            let _ = self
                .tokens_minted
                .get_or_create(&Label("account", account.clone()));
            let _ = self.mint_failures.get_or_create(&Label("account", account));
            self.credentials_info
                .get_or_create(&CredentialsLabels {
                    account: c.account_id.to_string(),
                    key_id: c.key_id.to_string(),
                })
                .set(1);
        }
    }

    /// Count one of voxproxy's own errors.
    pub fn error(&self, kind: ErrorKind, client: Option<LabelValue>) {
        self.errors
            .get_or_create(&KindLabels {
                kind: kind.as_str(),
                client,
            })
            .inc();
    }
}

/// The cached label for `value`, adding it while under `cap`.
fn bounded(cache: &mut HashMap<Box<str>, LabelValue>, value: &str, cap: usize) -> LabelValue {
    if let Some(v) = cache.get(value) {
        return v.clone();
    }
    if cache.len() >= cap {
        return fixed("other");
    }
    let v: LabelValue = value.into();
    cache.insert(value.into(), v.clone());
    v
}

impl CacheObserver for Metrics {
    fn minted(&self, account: AccountId, exp: i64) {
        let label = self.account_label(Some(account));
        self.tokens_minted
            .get_or_create(&Label("account", label.clone()))
            .inc();
        if &*label != "other" {
            self.token_expiry
                .get_or_create(&Label("account", label))
                .set(exp);
        }
    }

    fn mint_failed(&self, account: AccountId) {
        let label = self.account_label(Some(account));
        self.mint_failures
            .get_or_create(&Label("account", label))
            .inc();
    }

    fn evicted(&self, account: AccountId) {
        self.token_expiry
            .remove(&Label("account", account.to_string().into()));
    }
}

/// The standard `process_` series (Linux `/proc/self`).
mod process {
    use prometheus_client::collector::Collector;
    use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
    use prometheus_client::metrics::counter::ConstCounter;
    use prometheus_client::metrics::gauge::ConstGauge;

    #[derive(Debug)]
    pub struct ProcessCollector {
        ticks_per_sec: f64,
        page_size: f64,
        /// When the registry was made, moments after the process started. Taken from the clock
        /// rather than `/proc/stat`'s boot time, which systemd's `ProcSubset=pid` hides.
        start_time: f64,
    }

    impl ProcessCollector {
        pub fn new() -> Self {
            let start_time = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            // Linux fixes USER_HZ at 100 and the page size at 4 KiB on the platforms we ship.
            ProcessCollector {
                ticks_per_sec: 100.0,
                page_size: 4096.0,
                start_time,
            }
        }
    }

    impl Collector for ProcessCollector {
        fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
                return Ok(());
            };
            // Fields after the command name, which is in parentheses and may contain spaces.
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
                return Ok(());
            };
            let f: Vec<&str> = rest.split_whitespace().collect();
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            // rest[0] is field 3 (state): utime=14, stime=15, vsize=23, rss=24.
            let cpu = (num(11) + num(12)) / self.ticks_per_sec;
            let counter = ConstCounter::new(cpu);
            counter.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                counter.metric_type(),
            )?)?;
            let gauges = [
                (
                    "process_virtual_memory_bytes",
                    "Virtual memory size in bytes.",
                    num(20),
                ),
                (
                    "process_resident_memory_bytes",
                    "Resident memory size in bytes.",
                    num(21) * self.page_size,
                ),
                (
                    "process_start_time_seconds",
                    "Start time of the process since unix epoch in seconds.",
                    self.start_time,
                ),
                (
                    "process_open_fds",
                    "Number of open file descriptors.",
                    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count()) as f64,
                ),
                (
                    "process_max_fds",
                    "Maximum number of open file descriptors.",
                    max_fds().unwrap_or(0.0),
                ),
            ];
            for (name, help, value) in gauges {
                let g = ConstGauge::new(value);
                g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
            }
            Ok(())
        }
    }

    /// The soft limit on open files (`Max open files` in `/proc/self/limits`), what the
    /// dashboard compares `process_open_fds` with.
    fn max_fds() -> Option<f64> {
        let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
        let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
        let soft = line["Max open files".len()..].split_whitespace().next()?;
        soft.parse().ok()
    }
}
