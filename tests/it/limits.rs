//! Limits shared by replicas (contract "Limits") through the real binary and a real Redis: three
//! replicas together hold a client's `rate` and an `account_rate` (requests waiting for their
//! turn) to rate × T + burst over every window of T ≥ 1 s, where a control run without Redis
//! admits about three times that; Redis killed or frozen mid-load fails no request and is
//! reported once; the Redis password shows nowhere; `check` pings Redis.
//!
//! Admissions are counted where they matter, at the upstream (the time each request's head
//! arrived), with [`JITTER`] allowed between a decision and that arrival.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use http::Request;

use crate::support::Rig;
use crate::support::certs::{Creds, Pki};
use crate::support::http::{body, get, try_send};
use crate::support::process::{self, Voxproxy};
use crate::support::redis::{Redis, free_port};
use crate::support::upstream::{Options, Upstream};

/// The service account.
const ACCOUNT: u64 = 1_000_001;
/// The gateway client's static key.
const KEY: &str = "vxp_sharedlimitssharedlimitssharedlimitsshared1";
/// Allowed between a limit's decision (in Redis) and the request's arrival at the upstream: the
/// answer's way back, the timer of a wait, the forward. At 20/s it allows one request more per
/// window, at 10/s none.
const JITTER: Duration = Duration::from_millis(50);
/// How long each load runs.
const RUN: Duration = Duration::from_secs(3);

/// A mock upstream, credentials and an optional clients file; replicas are started from it.
struct Fleet {
    upstream: Upstream,
    creds: Creds,
    clients: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

/// The clients file: one client, `app`, with the static key [`KEY`] and `rate`.
fn clients_toml(rate: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, KEY.as_bytes());
    let hash: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("[clients.app]\nstatic_key_sha256 = \"{hash}\"\nrate = \"{rate}\"\n")
}

impl Fleet {
    async fn new(clients: Option<&str>) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let creds = Creds::write(dir.path(), "credentials.json", ACCOUNT);
        let upstream = Upstream::start(
            vec![(creds.key_id.clone(), creds.key.decoding_key())],
            Options::default(),
        )
        .await;
        let clients = clients.map(|text| {
            let path = dir.path().join("clients.toml");
            std::fs::write(&path, text).unwrap();
            path
        });
        Fleet {
            upstream,
            creds,
            clients,
            _dir: dir,
        }
    }

    /// One replica with `extra` settings.
    fn replica(&self, extra: &[&str]) -> Voxproxy {
        let clients = self
            .clients
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned());
        let mut args: Vec<&str> = extra.to_vec();
        if let Some(c) = &clients {
            args.extend(["--clients", c]);
        }
        Rig::proxy(&self.upstream, &self.creds, &args, &[])
    }

    fn replicas(&self, n: usize, extra: &[&str]) -> Vec<Voxproxy> {
        (0..n).map(|_| self.replica(extra)).collect()
    }

    /// When each request so far reached the upstream, in order.
    fn arrivals(&self) -> Vec<Instant> {
        let mut at: Vec<Instant> = self.upstream.records().iter().map(|r| r.at).collect();
        at.sort();
        at
    }
}

/// One request's outcome.
#[derive(Debug)]
struct Shot {
    took: Duration,
    /// 0 when no response came.
    status: u16,
    kind: Option<String>,
    retry_after: Option<String>,
}

async fn shot(addr: SocketAddr, key: Option<&'static str>) -> Shot {
    let mut req = Request::get("/platform_api/GetUsers/").header("host", addr.to_string());
    if let Some(key) = key {
        req = req.header("proxy-authorization", format!("Bearer {key}"));
    }
    let start = Instant::now();
    let resp = try_send(addr, req.body(body("")).unwrap()).await;
    let took = start.elapsed();
    match resp {
        Ok(r) => Shot {
            took,
            status: r.status.as_u16(),
            kind: r.kind().map(str::to_owned),
            retry_after: r.header("retry-after").map(str::to_owned),
        },
        Err(_) => Shot {
            took,
            status: 0,
            kind: None,
            retry_after: None,
        },
    }
}

/// Send `per_second` requests a second for `run_for`, spread round-robin over `addrs`, each on
/// its own connection without waiting for the previous ones (an open loop, as many tools send).
async fn load(
    addrs: Vec<SocketAddr>,
    per_second: u32,
    run_for: Duration,
    key: Option<&'static str>,
) -> Vec<Shot> {
    let mut tick = tokio::time::interval(Duration::from_secs(1) / per_second);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let end = Instant::now() + run_for;
    let mut sent = Vec::new();
    for i in 0.. {
        tick.tick().await;
        if Instant::now() >= end {
            break;
        }
        sent.push(tokio::spawn(shot(addrs[i % addrs.len()], key)));
    }
    let mut shots = Vec::new();
    for s in sent {
        shots.push(s.await.unwrap());
    }
    shots
}

/// `n` requests at each of `addrs`, all at once.
async fn burst(addrs: &[SocketAddr], n: usize) -> Vec<Shot> {
    let sent: Vec<_> = (0..n)
        .flat_map(|_| addrs.iter().map(|a| tokio::spawn(shot(*a, None))))
        .collect();
    let mut shots = Vec::new();
    for s in sent {
        shots.push(s.await.unwrap());
    }
    shots
}

/// The most arrivals in any window `[t, t + len]` (sorted `times`).
fn busiest(times: &[Instant], len: Duration) -> usize {
    let mut most = 0;
    let mut end = 0;
    for (start, t) in times.iter().enumerate() {
        while end < times.len() && times[end] <= *t + len {
            end += 1;
        }
        most = most.max(end - start);
    }
    most
}

/// Every window of whole seconds up to `longest` where more than rate × T + burst arrived (with
/// [`JITTER`]), described; empty when the bound holds.
fn over_bound(times: &[Instant], per_second: f64, burst: usize, longest: Duration) -> Vec<String> {
    let mut over = Vec::new();
    for secs in 1..=longest.as_secs() {
        let len = Duration::from_secs(secs);
        let most = busiest(times, len);
        let allowed = burst + (per_second * (len + JITTER).as_secs_f64()).floor() as usize;
        eprintln!("  busiest {secs} s window: {most} (bound {allowed})");
        if most > allowed {
            over.push(format!("{most} in a window of {secs} s, bound {allowed}"));
        }
    }
    over
}

/// `voxproxy_limits_shared` as scraped, if present.
async fn shared_gauge(addr: SocketAddr) -> Option<String> {
    let resp = get(addr, "/metrics").await;
    let text = String::from_utf8(resp.body.to_vec()).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("voxproxy_limits_shared "))
        .map(str::to_owned)
}

/// Poll the gauge until it reads `want`; how long that took.
async fn wait_gauge(v: &Voxproxy, want: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if shared_gauge(v.addr()).await.as_deref() == Some(want) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "voxproxy_limits_shared never read {want} within {within:?}\n{}",
            v.logs()
        );
        // A state change has no notification outside the process; a short, bounded poll.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Lines of `v`'s log holding `text`.
fn count_logged(v: &Voxproxy, text: &str) -> usize {
    v.log.all().iter().filter(|l| l.contains(text)).count()
}

const OUTAGE: &str = "limits_redis does not answer";
const RESUMED: &str = "limits_redis answers again";

fn statuses(shots: &[Shot]) -> std::collections::BTreeMap<u16, usize> {
    let mut by = std::collections::BTreeMap::new();
    for s in shots {
        *by.entry(s.status).or_default() += 1;
    }
    by
}

/// Every answer is a 200 or the 429 of `kind` with a `Retry-After`.
fn only_admitted_or_limited(shots: &[Shot], kind: &str) {
    for s in shots {
        match s.status {
            200 => {}
            429 => {
                assert_eq!(s.kind.as_deref(), Some(kind), "{s:?}");
                let after: u64 = s.retry_after.as_deref().unwrap().parse().unwrap();
                assert!(after >= 1, "{s:?}");
            }
            _ => panic!("a request failed: {s:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_hold_a_client_rate_together_and_alone_they_would_not() {
    let redis = Redis::start(None);
    let url = redis.url();
    let fleet = Fleet::new(Some(&clients_toml("20/s"))).await;
    let replicas = fleet.replicas(3, &["--limits-redis", &url]);
    for r in &replicas {
        wait_gauge(r, "1", Duration::from_secs(5)).await;
    }
    let addrs: Vec<_> = replicas.iter().map(Voxproxy::addr).collect();
    // 120/s offered, 40/s at each replica: twice the rate at each, six times in all.
    let shots = load(addrs, 120, RUN, Some(KEY)).await;
    only_admitted_or_limited(&shots, "client_rate_limited");
    let shared = fleet.arrivals();
    eprintln!("shared: {} admitted of {}", shared.len(), shots.len());
    // The bound is a promise while Redis answers in time; say so if it did not.
    for r in &replicas {
        assert_eq!(
            count_logged(r, OUTAGE),
            0,
            "Redis missed its 50 ms\n{}",
            r.logs()
        );
    }
    let over = over_bound(&shared, 20.0, 20, RUN);
    assert!(over.is_empty(), "the bound broke with Redis: {over:?}");
    // The limit was reached, not merely not exceeded: burst + rate × (RUN - 1 s) at least.
    assert!(shared.len() >= 20 + 40, "{:?}", statuses(&shots));
    // Its key is in Redis and expires by itself: at most the TAT's drain (1 s) + 1 s margin.
    let pttl: i64 = redis.cmd(&["PTTL", "voxproxy:client:app"])[1..]
        .parse()
        .unwrap();
    assert!((1..=2000).contains(&pttl), "PTTL {pttl}");
    drop(replicas);

    // Control: the same load and the same check against replicas counting alone.
    fleet.upstream.clear();
    let alone = fleet.replicas(3, &[]);
    let addrs: Vec<_> = alone.iter().map(Voxproxy::addr).collect();
    let shots = load(addrs, 120, RUN, Some(KEY)).await;
    only_admitted_or_limited(&shots, "client_rate_limited");
    let apart = fleet.arrivals();
    eprintln!("alone: {} admitted of {}", apart.len(), shots.len());
    let over = over_bound(&apart, 20.0, 20, RUN);
    assert!(
        !over.is_empty(),
        "the check would not catch per-replica counting"
    );
    assert!(
        apart.len() * 2 > shared.len() * 5,
        "three replicas alone admit about three times as many: {} vs {}",
        apart.len(),
        shared.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_rate_is_shared_and_requests_wait_for_their_turn() {
    let redis = Redis::start(None);
    let url = redis.url();
    let fleet = Fleet::new(None).await;
    let rate = [
        "--account-rate",
        "10/s; burst 2",
        "--account-rate-wait",
        "0.5",
    ];
    let mut args = rate.to_vec();
    args.extend(["--limits-redis", &url]);
    let replicas = fleet.replicas(3, &args);
    for r in &replicas {
        wait_gauge(r, "1", Duration::from_secs(5)).await;
    }
    let addrs: Vec<_> = replicas.iter().map(Voxproxy::addr).collect();

    // Six at each replica at once: two go, then one per 100 ms for the 0.5 s a request may
    // wait (seven in all); the rest get 429 at once.
    let shots = burst(&addrs, 6).await;
    only_admitted_or_limited(&shots, "account_rate_limited");
    let admitted: Vec<_> = shots.iter().filter(|s| s.status == 200).collect();
    assert!((7..=8).contains(&admitted.len()), "{:?}", statuses(&shots));
    let longest = admitted.iter().map(|s| s.took).max().unwrap();
    assert!(
        longest >= Duration::from_millis(400),
        "they waited: {longest:?}"
    );
    for s in shots.iter().filter(|s| s.status == 429) {
        assert!(
            s.took < Duration::from_millis(400),
            "refused at once: {s:?}"
        );
        assert_eq!(s.retry_after.as_deref(), Some("1"), "{s:?}");
    }
    let arrivals = fleet.arrivals();
    let spread = *arrivals.last().unwrap() - arrivals[0];
    let paced = Duration::from_millis(100) * (arrivals.len() as u32 - 2);
    assert!(
        spread + JITTER >= paced,
        "{spread:?} for {}",
        arrivals.len()
    );

    // Sustained: 25/s offered for 10/s: requests wait their turn, the surplus is refused.
    fleet.upstream.clear();
    let shots = load(addrs.clone(), 25, RUN, None).await;
    only_admitted_or_limited(&shots, "account_rate_limited");
    let waited = shots
        .iter()
        .filter(|s| s.status == 200 && s.took >= Duration::from_millis(50))
        .count();
    assert!(waited > 5, "requests waited instead of failing: {waited}");
    let shared = fleet.arrivals();
    eprintln!(
        "account shared: {} admitted of {}",
        shared.len(),
        shots.len()
    );
    for r in &replicas {
        assert_eq!(
            count_logged(r, OUTAGE),
            0,
            "Redis missed its 50 ms\n{}",
            r.logs()
        );
    }
    let over = over_bound(&shared, 10.0, 2, RUN);
    assert!(over.is_empty(), "the bound broke with Redis: {over:?}");
    assert!(shared.len() >= 2 + 20, "{:?}", statuses(&shots));
    drop(replicas);

    // Control: the same burst at replicas counting alone: each lets its six through.
    fleet.upstream.clear();
    let alone = fleet.replicas(3, &rate);
    let addrs: Vec<_> = alone.iter().map(Voxproxy::addr).collect();
    let shots = burst(&addrs, 6).await;
    assert_eq!(
        statuses(&shots).get(&200),
        Some(&18),
        "{:?}",
        statuses(&shots)
    );
}

/// Load on one replica while `during` happens to Redis; the shots.
async fn under_load(v: &Voxproxy, during: impl AsyncFnOnce()) -> Vec<Shot> {
    let running = tokio::spawn(load(vec![v.addr()], 50, RUN, Some(KEY)));
    during().await;
    running.await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_away_fails_no_request_and_sharing_comes_back() {
    let mut redis = Redis::start(None);
    let url = redis.url();
    let fleet = Fleet::new(Some(&clients_toml("1000/s"))).await;
    let v = fleet.replica(&["--limits-redis", &url, "--account-rate", "1000/s"]);
    wait_gauge(&v, "1", Duration::from_secs(5)).await;
    // The same load with Redis healthy: what this (busy, shared) machine adds to any request,
    // so the bounds below measure what Redis going away adds, not the machine's noise.
    let control = under_load(&v, async || {}).await;
    let control_slowest = control.iter().map(|s| s.took).max().unwrap();
    let control_over_50 = control
        .iter()
        .filter(|s| s.took > Duration::from_millis(50))
        .count();
    let bound = control_slowest.max(Duration::from_millis(100)) + Duration::from_millis(50);
    eprintln!("control: slowest {control_slowest:?}, {control_over_50} over 50 ms");

    // Killed mid-load: the connection breaks, the replica counts alone at once.
    let shots = under_load(&v, async || {
        tokio::time::sleep(Duration::from_millis(700)).await;
        redis.kill();
        let alone = wait_gauge(&v, "0", Duration::from_secs(2)).await;
        eprintln!("killed: counting alone after {alone:?}");
        tokio::time::sleep(Duration::from_millis(700)).await;
        redis.restart();
        let back = wait_gauge(&v, "1", Duration::from_secs(3)).await;
        eprintln!("restarted: shared again after {back:?}");
    })
    .await;
    let slowest = shots.iter().map(|s| s.took).max().unwrap();
    eprintln!("killed: {:?}, slowest {slowest:?}", statuses(&shots));
    assert_eq!(
        statuses(&shots).keys().collect::<Vec<_>>(),
        [&200],
        "no request failed"
    );
    // A broken connection is noticed at once: no request takes longer than the machine's own
    // slowest plus Redis's 50 ms.
    assert!(slowest < bound, "{slowest:?} (bound {bound:?})");
    assert_eq!(count_logged(&v, OUTAGE), 1, "one warning\n{}", v.logs());
    assert_eq!(count_logged(&v, RESUMED), 1, "{}", v.logs());

    // Frozen mid-load: nothing answers; requests in flight wait 50 ms at most, then go.
    let shots = under_load(&v, async || {
        tokio::time::sleep(Duration::from_millis(700)).await;
        redis.pause();
        let alone = wait_gauge(&v, "0", Duration::from_secs(2)).await;
        eprintln!("frozen: counting alone after {alone:?}");
        tokio::time::sleep(Duration::from_millis(700)).await;
        redis.resume();
        let back = wait_gauge(&v, "1", Duration::from_secs(3)).await;
        eprintln!("resumed: shared again after {back:?}");
    })
    .await;
    let slowest = shots.iter().map(|s| s.took).max().unwrap();
    let over_50 = shots
        .iter()
        .filter(|s| s.took > Duration::from_millis(50))
        .count();
    eprintln!(
        "frozen: {:?}, slowest {slowest:?}, {over_50} over 50 ms",
        statuses(&shots)
    );
    assert_eq!(
        statuses(&shots).keys().collect::<Vec<_>>(),
        [&200],
        "no request failed"
    );
    // 50 ms for Redis plus what this machine adds to any request.
    assert!(slowest < bound, "{slowest:?} (bound {bound:?})");
    assert!(
        over_50 <= 5 + control_over_50,
        "only requests in flight at the freeze waited: {over_50} (control {control_over_50})"
    );
    assert_eq!(
        count_logged(&v, OUTAGE),
        2,
        "one warning per outage\n{}",
        v.logs()
    );
    assert_eq!(count_logged(&v, RESUMED), 2, "{}", v.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_password_shows_nowhere() {
    const PASSWORD: &str = "secret-pass";
    let redis = Redis::start(Some(PASSWORD));
    let fleet = Fleet::new(Some(&clients_toml("20/s"))).await;
    let good_url = redis.url();
    let wrong_url = format!("redis://:wrong-{PASSWORD}@127.0.0.1:{}", redis.port);
    let good = fleet.replica(&["--limits-redis", &good_url]);
    let wrong = fleet.replica(&["--limits-redis", &wrong_url]);
    wait_gauge(&good, "1", Duration::from_secs(5)).await;
    wait_gauge(&wrong, "0", Duration::from_secs(5)).await;
    for v in [&good, &wrong] {
        let s = shot(v.addr(), Some(KEY)).await;
        assert_eq!(s.status, 200, "{s:?}");
    }
    assert_eq!(redis.cmd(&["EXISTS", "voxproxy:client:app"]), ":1");
    let warned = wrong
        .log
        .wait_for(Duration::from_secs(5), |l| l.contains(OUTAGE))
        .unwrap();
    assert!(
        warned.to_lowercase().contains("authentication failed"),
        "{warned}"
    );
    assert!(warned.contains(":***@127.0.0.1"), "{warned}");

    let creds = fleet.creds.path.to_string_lossy().into_owned();
    let check = |url: &str| {
        process::run(
            &["check", "--credentials", &creds, "--limits-redis", url],
            &[],
        )
    };
    let (code, out, err) = check(&good_url);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!(
            "limits_redis redis://:***@127.0.0.1:{}/0: PONG in ",
            redis.port
        )),
        "{out}"
    );
    let (wrong_code, wrong_out, wrong_err) = check(&wrong_url);
    assert_eq!(wrong_code, 1, "{wrong_out}{wrong_err}");
    assert!(
        wrong_out.to_lowercase().contains("authentication failed"),
        "{wrong_out}"
    );

    let mut seen = vec![out, err, wrong_out, wrong_err, good.logs(), wrong.logs()];
    for v in [&good, &wrong] {
        let resp = get(v.addr(), "/metrics").await;
        seen.push(String::from_utf8(resp.body.to_vec()).unwrap());
    }
    for text in &seen {
        assert!(!text.contains(PASSWORD), "the password leaked:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_is_verified_like_the_upstream() {
    let fleet = Fleet::new(Some(&clients_toml("20/s"))).await;
    // A certificate from the CA the replicas trust for the upstream (upstream_ca): shared.
    let trusted = Redis::start_tls(&fleet.upstream.pki);
    let v = fleet.replica(&["--limits-redis", &trusted.url()]);
    wait_gauge(&v, "1", Duration::from_secs(5)).await;
    assert_eq!(shot(v.addr(), Some(KEY)).await.status, 200);
    // From a CA nobody configured: refused; the replica counts alone and says why.
    let stranger = Redis::start_tls(&Pki::new(&[]));
    let w = fleet.replica(&["--limits-redis", &stranger.url()]);
    let warned = w
        .log
        .wait_for(Duration::from_secs(5), |l| l.contains(OUTAGE))
        .unwrap();
    assert!(warned.contains("tls handshake failed"), "{warned}");
    assert_eq!(shared_gauge(w.addr()).await.as_deref(), Some("0"));
    assert_eq!(shot(w.addr(), Some(KEY)).await.status, 200);
}

#[tokio::test]
async fn check_pings_redis_and_fails_when_it_does_not_answer() {
    let redis = Redis::start(None);
    let dir = tempfile::tempdir().unwrap();
    let creds = Creds::write(dir.path(), "credentials.json", ACCOUNT);
    let creds = creds.path.to_string_lossy().into_owned();
    let check = |url: &str| {
        process::run(
            &["check", "--credentials", &creds, "--limits-redis", url],
            &[],
        )
    };

    let (code, out, err) = check(&redis.url());
    assert_eq!(code, 0, "{out}{err}");
    // The PING's line, not the settings summary's `limits_redis: ...`.
    let line = out
        .lines()
        .find(|l| l.starts_with("  limits_redis redis://"))
        .unwrap();
    let expected = format!(
        "  limits_redis redis://127.0.0.1:{}/0: PONG in ",
        redis.port
    );
    assert!(
        line.starts_with(&expected) && line.ends_with(" ms"),
        "{line}"
    );
    assert_eq!(out.lines().last(), Some("ok"));

    let nobody = format!("redis://127.0.0.1:{}", free_port());
    let (code, out, err) = check(&nobody);
    assert_eq!(
        code, 1,
        "Redis not answering is a runtime problem\n{out}{err}"
    );
    assert!(
        out.contains("  limits_redis redis://127.0.0.1:") && out.contains("cannot connect"),
        "{out}"
    );
}
