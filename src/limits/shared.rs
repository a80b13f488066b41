//! Limits shared by replicas (`limits_redis`, contract "Limits"): every client `rate` and every
//! `account_rate` decision is one atomic Lua script in Redis, the GCRA of [`super::gcra`] on
//! Redis's own clock, so over any window all replicas together admit at most rate × T + burst.
//! When Redis is away this replica decides alone (the caller falls back to its local state),
//! warns once per outage, sets `voxproxy_limits_shared` to 0, and a background task tries Redis
//! again once a second.
//!
//! Why it is built this way:
//! - **One script per decision.** Read-then-write from several replicas would race; a script runs
//!   atomically in Redis, and one round trip is the least a shared decision can cost.
//! - **Redis `TIME`, not the replica's clock.** Replicas' clocks disagree by milliseconds; a TAT
//!   compared against one clock (Redis's) is what makes the bound hold for all of them. Redis runs
//!   scripts by effects replication (5.0 and later), so `TIME` inside a writing script is allowed.
//! - **Microseconds.** `TIME`'s resolution, and Lua numbers (doubles) hold epoch microseconds
//!   exactly; nanoseconds would not fit. Intervals are rounded up, so a limit is never looser.
//! - **One key per limit with its own expiry.** A TAT in the past means the same as no key (the
//!   burst is full), so a key may vanish once its TAT has passed: `PX` is the time the TAT needs
//!   to drain plus a second of margin, and idle limits cost Redis nothing.
//! - **Our own connection, the `redis` crate's multiplexed connection over it.** voxproxy connects
//!   the TCP or TLS stream itself (rustls on aws-lc-rs, the built-in roots plus `upstream_ca`,
//!   like the upstream) and hands it to the crate; the crate's own TLS would replace the built-in
//!   roots with `upstream_ca` and take rustls' process-wide provider. Its `ConnectionManager` is not
//!   used either: reconnection is ours, on the schedule below, with the local fallback meanwhile.
//! - **50 ms, then alone; retried once a second.** No request may wait longer than that on a
//!   missing Redis (contract), so one missed answer switches the replica to its local state until
//!   a probe, at most once a second, gets an answer again in the same 50 ms; a Redis that answers
//!   slowly thus costs one 50 ms wait per second at most, not one per request. While shared, the
//!   same task sends a `PING` every second, so the gauge tells the truth even with no traffic.
//!
//! One Redis (a primary, or one behind a Service): each script touches one key, so a Redis Cluster
//! would route it, but voxproxy keeps a single connection and does not follow `MOVED`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use prometheus_client::metrics::gauge::Gauge;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisConnectionInfo, Script};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::gcra::{Params, Verdict};
use crate::config::RedisUrl;

/// How long a request waits for Redis's answer before this replica decides alone (contract).
pub const ANSWER_WITHIN: Duration = Duration::from_millis(50);
/// How often a missing Redis is tried again, and a present one pinged (contract: at most once a
/// second).
pub const RETRY_EVERY: Duration = Duration::from_secs(1);
/// Bound on a background (re)connection: TCP, TLS and `AUTH`/`SELECT`. Off the request path, so
/// more generous than [`ANSWER_WITHIN`]; below [`RETRY_EVERY`], so tries never pile up.
const CONNECT_WITHIN: Duration = Duration::from_millis(900);

/// Every key voxproxy writes starts with this, so an operator can find (or flush) them.
pub const KEY_PREFIX: &str = "voxproxy:";
/// The key a (re)connection proves a decision on.
const PROBE_KEY: &str = "voxproxy:probe";

/// A connection's driver: reads answers and writes requests until the connection ends.
type Driver = Pin<Box<dyn Future<Output = ()> + Send>>;

/// GCRA on Redis's clock, the arithmetic of `gcra::decide` in microseconds. KEYS[1] is the
/// limit; ARGV are the interval, the tolerance and the longest allowed wait. Returns `{1, wait}`
/// (admitted: the turn is reserved, go after `wait` µs) or `{0, after}` (refused; a request could
/// go after `after` µs). `%d` keeps the TAT exact (Lua would print a large number as `1.7e+15`).
const RESERVE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local wait = tat - tonumber(ARGV[2]) - now
if wait < 0 then wait = 0 end
if wait > tonumber(ARGV[3]) then return {0, wait} end
local next = tat + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%d', next), 'PX', math.ceil((next - now) / 1000) + 1000)
return {1, wait}
";

/// Give a reserved turn back (its request was dropped while waiting): the TAT moves back one
/// interval (ARGV[1]), like `gcra::Local::release`. A TAT that falls into the past is the same as
/// no key.
const RELEASE: &str = r"
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local back = tat - tonumber(ARGV[1])
if back <= now then redis.call('DEL', KEYS[1]) return 1 end
redis.call('SET', KEYS[1], string.format('%d', back), 'PX', math.ceil((back - now) / 1000) + 1000)
return 1
";

/// What went wrong talking to Redis. No message holds the URL or the password: the crate's own
/// errors are kept as text with the password scrubbed, never as the error itself (its text is all
/// that is needed, and nothing of it may print unscrubbed).
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    /// TCP connection (or name resolution) failed.
    #[error("cannot connect")]
    Connect(#[source] io::Error),
    /// The TLS handshake failed (`rediss://`).
    #[error("tls handshake failed")]
    Tls(#[source] io::Error),
    /// The host of a `rediss://` URL cannot be a TLS server name.
    #[error("the host is not a valid tls server name")]
    TlsName,
    /// The user or password is not UTF-8 once percent-decoded.
    #[error("the user or password is not valid utf-8 once percent-decoded")]
    Credentials,
    /// rustls refused the configuration.
    #[error("tls configuration")]
    TlsConfig(#[source] rustls::Error),
    /// No answer in time.
    #[error("no answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// Redis (or the client) reported an error; the text, password scrubbed.
    #[error("redis: {0}")]
    Redis(String),
    /// The connection closed.
    #[error("the connection closed")]
    Closed,
}

/// The whole cause chain on one line, for logs and `check`.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(cause) = cur {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        cur = cause.source();
    }
    text
}

/// How to reach Redis: where, with what credentials, and over TLS or not.
pub struct Connector {
    /// For logs (its `Display` shows the password as `***`).
    url: RedisUrl,
    host: String,
    port: u16,
    /// Database, user and password for the connection's set-up (`AUTH`, `SELECT`).
    info: RedisConnectionInfo,
    /// `rediss://`: the connector and the name the certificate must carry.
    tls: Option<(TlsConnector, ServerName<'static>)>,
    /// The password as sent, to scrub from any error text.
    secret: Option<String>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Connector({}:{})", self.host, self.port)
    }
}

fn decode(text: &str) -> Result<String, SharedError> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| SharedError::Credentials)
}

impl Connector {
    /// A connector for `url`; a `rediss://` one trusts the built-in roots plus `extra_roots`
    /// (`upstream_ca`), like the upstream. Fails only on a bad configuration.
    pub fn new(
        url: &RedisUrl,
        extra_roots: &[CertificateDer<'static>],
    ) -> Result<Self, SharedError> {
        let mut info = RedisConnectionInfo::default()
            .set_db(i64::from(url.db))
            .set_skip_set_lib_name();
        if let Some(user) = &url.user {
            info = info.set_username(decode(user)?);
        }
        let secret = url.password().map(decode).transpose()?;
        if let Some(password) = &secret {
            info = info.set_password(password);
        }
        let tls = if url.tls {
            let name = ServerName::try_from(url.host.clone()).map_err(|_| SharedError::TlsName)?;
            Some((TlsConnector::from(Arc::new(tls_config(extra_roots)?)), name))
        } else {
            None
        };
        Ok(Connector {
            url: url.clone(),
            host: url.host.clone(),
            port: url.port,
            info,
            tls,
            secret,
        })
    }

    /// Connect and set the connection up, within `within`. The connection's driver runs as its
    /// own task and calls `closed` when the connection ends.
    async fn connect(
        &self,
        within: Duration,
        closed: impl FnOnce() + Send + 'static,
    ) -> Result<MultiplexedConnection, SharedError> {
        let connecting = async {
            let tcp = TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(SharedError::Connect)?;
            // Each decision is one small request waiting for its answer: never delay it.
            tcp.set_nodelay(true).map_err(SharedError::Connect)?;
            // The crate's own response timeout stays as an outer bound; ours is ANSWER_WITHIN.
            let config = AsyncConnectionConfig::new();
            let (conn, driver) = match &self.tls {
                None => self.setup(tcp, config).await?,
                Some((connector, name)) => {
                    let tls = connector
                        .connect(name.clone(), tcp)
                        .await
                        .map_err(SharedError::Tls)?;
                    self.setup(tls, config).await?
                }
            };
            tokio::spawn(async move {
                driver.await;
                closed();
            });
            Ok(conn)
        };
        tokio::time::timeout(within, connecting)
            .await
            .map_err(|_| SharedError::Timeout(within))?
    }

    async fn setup<S>(
        &self,
        stream: S,
        config: AsyncConnectionConfig,
    ) -> Result<(MultiplexedConnection, Driver), SharedError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (conn, driver) = MultiplexedConnection::new_with_config(&self.info, stream, config)
            .await
            .map_err(|e| self.error(&e))?;
        Ok((conn, Box::pin(driver)))
    }

    /// The crate's error as text, the password scrubbed (belt and braces: Redis does not echo
    /// it, but nothing may ever print it).
    fn error(&self, e: &redis::RedisError) -> SharedError {
        if e.is_connection_dropped() {
            return SharedError::Closed;
        }
        let mut text = e.to_string();
        if let Some(secret) = self.secret.as_deref().filter(|s| !s.is_empty()) {
            text = text.replace(secret, "***");
        }
        SharedError::Redis(text)
    }
}

/// rustls on aws-lc-rs (voxproxy's one crypto library) trusting the built-in roots plus
/// `extra_roots`, as the upstream client does.
fn tls_config(
    extra_roots: &[CertificateDer<'static>],
) -> Result<rustls::ClientConfig, SharedError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in extra_roots {
        roots.add(cert.clone()).map_err(SharedError::TlsConfig)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(SharedError::TlsConfig)?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Connect to `url` and time one `PING` (`voxproxy check`): the round trip, or why not. The
/// connection is bounded by `within`, the `PING` too.
pub async fn ping(
    url: &RedisUrl,
    extra_roots: &[CertificateDer<'static>],
    within: Duration,
) -> Result<Duration, SharedError> {
    let connector = Connector::new(url, extra_roots)?;
    let mut conn = connector.connect(within, || {}).await?;
    let start = Instant::now();
    let pong = tokio::time::timeout(within, redis::cmd("PING").query_async::<String>(&mut conn))
        .await
        .map_err(|_| SharedError::Timeout(within))?
        .map_err(|e| connector.error(&e))?;
    let took = start.elapsed();
    if pong != "PONG" {
        return Err(SharedError::Redis(format!("answered {pong:?} to PING")));
    }
    Ok(took)
}

/// [`ping`] for a synchronous caller (`check`), on a runtime of its own.
pub fn ping_blocking(
    url: &RedisUrl,
    extra_roots: &[CertificateDer<'static>],
    within: Duration,
) -> Result<Duration, SharedError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(SharedError::Connect)?;
    rt.block_on(ping(url, extra_roots, within))
}

/// `check`'s line for `limits_redis`: `limits_redis URL: PONG in 0.4 ms`, or the problem. The
/// URL shows its password as `***`.
pub fn check(
    url: &RedisUrl,
    extra_roots: &[CertificateDer<'static>],
    within: Duration,
) -> Result<String, String> {
    match ping_blocking(url, extra_roots, within) {
        Ok(took) => Ok(format!(
            "limits_redis {url}: PONG in {:.1} ms",
            took.as_secs_f64() * 1e3
        )),
        Err(e) => Err(format!("limits_redis {url}: no PONG: {}", chain(&e))),
    }
}

/// A live connection and its number, so the end of an old connection's driver cannot take down
/// a newer one.
struct Live {
    id: u64,
    conn: MultiplexedConnection,
}

/// The shared limits' link to Redis: the connection while Redis answers, none while this replica
/// counts alone.
pub struct Shared {
    connector: Connector,
    /// `Some` while limits are shared; `None` while Redis is away (requests then decide locally
    /// without touching Redis).
    live: ArcSwapOption<Live>,
    next_id: AtomicU64,
    /// Why the current outage began, for the one warning the background task logs.
    cause: Mutex<Option<SharedError>>,
    /// Wakes the background task when a request or a driver found Redis gone.
    lost: tokio::sync::Notify,
    /// `voxproxy_limits_shared`.
    gauge: Gauge,
    reserve: Script,
    release: Script,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Shared({})", self.connector.url)
    }
}

/// Microseconds, rounded up (at least 1): intervals never get shorter, limits never looser.
fn micros_up(d: Duration) -> u64 {
    u64::try_from(d.as_nanos().div_ceil(1000))
        .unwrap_or(u64::MAX)
        .max(1)
}

/// The script's arguments for `p`: interval and tolerance in µs, the tolerance a whole number of
/// intervals as in `Params::of`.
fn script_params(p: Params) -> (u64, u64) {
    let interval = micros_up(p.interval);
    let intervals = p.tolerance.as_nanos() / p.interval.as_nanos().max(1);
    let intervals = u64::try_from(intervals).unwrap_or(u64::MAX);
    (interval, interval.saturating_mul(intervals))
}

/// The Redis key of a limit: `voxproxy:<scope>:<name>`, bytes outside `[A-Za-z0-9_-]`
/// percent-encoded so no name can reach into another key.
pub fn key(scope: &str, name: &str) -> String {
    const SAFE: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_');
    format!(
        "{KEY_PREFIX}{scope}:{}",
        percent_encoding::utf8_percent_encode(name, SAFE)
    )
}

impl Shared {
    /// The link to Redis through `connector`, not yet connected ([`Shared::run`] connects);
    /// `gauge` is `voxproxy_limits_shared`.
    pub fn new(connector: Connector, gauge: Gauge) -> Arc<Shared> {
        gauge.set(0);
        Arc::new(Shared {
            connector,
            live: ArcSwapOption::empty(),
            next_id: AtomicU64::new(0),
            cause: Mutex::new(None),
            lost: tokio::sync::Notify::new(),
            gauge,
            reserve: Script::new(RESERVE),
            release: Script::new(RELEASE),
        })
    }

    /// Whether limits are shared right now.
    pub fn is_up(&self) -> bool {
        self.live.load().is_some()
    }

    /// Decide a request under `p` in Redis, reserving its turn when admitted. `None` when Redis is
    /// away or does not answer within [`ANSWER_WITHIN`]: the caller decides locally.
    pub async fn reserve(&self, key: &str, p: Params, max_wait: Duration) -> Option<Verdict> {
        let live = self.live.load_full()?;
        let (interval, tolerance) = script_params(p);
        let max_wait = u64::try_from(max_wait.as_micros()).unwrap_or(u64::MAX);
        let mut conn = live.conn.clone();
        let mut call = self.reserve.key(key);
        call.arg(interval).arg(tolerance).arg(max_wait);
        let answer = tokio::time::timeout(ANSWER_WITHIN, call.invoke_async::<(u8, u64)>(&mut conn));
        match answer.await {
            Ok(Ok((1, wait))) => Some(Verdict::Admit(Duration::from_micros(wait))),
            Ok(Ok((_, after))) => Some(Verdict::Refuse(Duration::from_micros(after))),
            Ok(Err(e)) => {
                self.lose(&live, self.connector.error(&e));
                None
            }
            Err(_) => {
                self.lose(&live, SharedError::Timeout(ANSWER_WITHIN));
                None
            }
        }
    }

    /// Give back a turn reserved in Redis (its request was dropped while waiting), in the
    /// background: a drop cannot wait.
    pub fn give_back(self: &Arc<Self>, key: String, p: Params) {
        let Some(live) = self.live.load_full() else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let shared = self.clone();
        rt.spawn(async move {
            let mut conn = live.conn.clone();
            let mut call = shared.release.key(key);
            call.arg(script_params(p).0);
            let answer = tokio::time::timeout(ANSWER_WITHIN, call.invoke_async::<u8>(&mut conn));
            match answer.await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => shared.lose(&live, shared.connector.error(&e)),
                Err(_) => shared.lose(&live, SharedError::Timeout(ANSWER_WITHIN)),
            }
        });
    }

    /// `live` failed: count alone from now on. Only the first to see a connection fail ends it,
    /// so an outage is reported once however many requests saw it.
    fn lose(&self, live: &Arc<Live>, cause: SharedError) {
        let prev = self.live.compare_and_swap(live, None::<Arc<Live>>);
        if prev.as_ref().is_some_and(|p| Arc::ptr_eq(p, live)) {
            self.gauge.set(0);
            *self.cause.lock().unwrap_or_else(|p| p.into_inner()) = Some(cause);
            self.lost.notify_one();
        }
    }

    /// The connection numbered `id` ended (its driver returned).
    fn closed(&self, id: u64) {
        let live = self.live.load_full();
        if let Some(live) = live.filter(|l| l.id == id) {
            self.lose(&live, SharedError::Closed);
        }
    }

    /// Connect and prove a decision works (the reserve script on a key of its own, within
    /// [`ANSWER_WITHIN`]: the same test a request would put it to, writes included).
    async fn connect(self: &Arc<Self>) -> Result<Arc<Live>, SharedError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let weak: Weak<Shared> = Arc::downgrade(self);
        let on_close = move || {
            if let Some(shared) = weak.upgrade() {
                shared.closed(id);
            }
        };
        let mut conn = self.connector.connect(CONNECT_WITHIN, on_close).await?;
        let mut call = self.reserve.key(PROBE_KEY);
        call.arg(1).arg(0).arg(0);
        tokio::time::timeout(ANSWER_WITHIN, call.invoke_async::<(u8, u64)>(&mut conn))
            .await
            .map_err(|_| SharedError::Timeout(ANSWER_WITHIN))?
            .map_err(|e| self.connector.error(&e))?;
        Ok(Arc::new(Live { id, conn }))
    }

    /// While shared: wait for a request or a driver to find Redis gone, and `PING` every
    /// [`RETRY_EVERY`] meanwhile. Returns why sharing ended.
    async fn watch(&self, live: Arc<Live>) -> SharedError {
        loop {
            tokio::select! {
                () = self.lost.notified() => break,
                () = tokio::time::sleep(RETRY_EVERY) => {
                    let mut conn = live.conn.clone();
                    let cmd = redis::cmd("PING");
                    let ping = cmd.query_async::<()>(&mut conn);
                    match tokio::time::timeout(ANSWER_WITHIN, ping).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => self.lose(&live, self.connector.error(&e)),
                        Err(_) => self.lose(&live, SharedError::Timeout(ANSWER_WITHIN)),
                    }
                }
            }
        }
        let cause = self.cause.lock().unwrap_or_else(|p| p.into_inner()).take();
        cause.unwrap_or(SharedError::Closed)
    }

    /// The background task: connect, share while Redis answers, count alone while it does not,
    /// and try again once a second. One warning per outage, one line when sharing resumes.
    pub async fn run(self: Arc<Self>) {
        let mut outage = false;
        loop {
            let next_try = tokio::time::Instant::now() + RETRY_EVERY;
            match self.connect().await {
                Ok(live) => {
                    self.live.store(Some(live.clone()));
                    self.gauge.set(1);
                    if outage {
                        tracing::info!(limits_redis = %self.connector.url, "limits_redis answers again; limits are shared by the replicas again");
                    } else {
                        tracing::info!(limits_redis = %self.connector.url, "limits are shared by the replicas through limits_redis");
                    }
                    let cause = self.watch(live).await;
                    self.warn(&cause);
                    outage = true;
                    // The next try a whole interval after the loss, not at once.
                    tokio::time::sleep(RETRY_EVERY).await;
                }
                Err(cause) => {
                    if !outage {
                        self.warn(&cause);
                        outage = true;
                    }
                    tokio::time::sleep_until(next_try).await;
                }
            }
        }
    }

    fn warn(&self, cause: &SharedError) {
        tracing::warn!(
            limits_redis = %self.connector.url,
            error = %chain(cause),
            "limits_redis does not answer; this replica counts limits alone until it does (tried once a second)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_reach_into_other_keys() {
        assert_eq!(
            key("client", "billing-app_2"),
            "voxproxy:client:billing-app_2"
        );
        assert_eq!(key("account", "1234"), "voxproxy:account:1234");
        assert_eq!(key("client", "a:b c"), "voxproxy:client:a%3Ab%20c");
    }

    #[test]
    fn script_params_round_up_and_keep_whole_intervals() {
        let p = Params::of(crate::config::Rate::parse("20/s").unwrap());
        assert_eq!(script_params(p), (50_000, 19 * 50_000));
        let p = Params::of(crate::config::Rate::parse("7/s; burst 1").unwrap());
        assert_eq!(script_params(p), (142_858, 0));
        let p = Params::of(crate::config::Rate::parse("3/m; burst 2").unwrap());
        assert_eq!(script_params(p), (20_000_000, 20_000_000));
    }

    #[test]
    fn errors_never_hold_the_password() {
        let url = RedisUrl::parse("redis://app:s%40cret@127.0.0.1:1/2").unwrap();
        let c = Connector::new(&url, &[]).unwrap();
        let e = redis::RedisError::from((
            redis::ErrorKind::AuthenticationFailed,
            "boom",
            "echo s@cret back".to_owned(),
        ));
        let text = chain(&c.error(&e));
        assert!(!text.contains("s@cret"), "{text}");
        assert!(text.contains("***"), "{text}");
        assert_eq!(format!("{c:?}"), "Connector(127.0.0.1:1)");
    }

    #[tokio::test]
    async fn an_unreachable_redis_is_reported_without_the_password() {
        // A port nobody listens on: bind, learn it, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = RedisUrl::parse(&format!("redis://:hunter2@127.0.0.1:{port}")).unwrap();
        let e = ping(&url, &[], Duration::from_secs(2)).await.unwrap_err();
        assert!(matches!(e, SharedError::Connect(_)), "{e:?}");
        let text = chain(&e);
        assert!(text.starts_with("cannot connect: "), "{text}");
        assert!(!text.contains("hunter2"));
    }
}
