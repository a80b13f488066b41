//! Live key rotation: SIGHUP and file changes (rename over the file, a Kubernetes `..data`
//! symlink swap) under load, with zero failed requests; broken files keep the old key.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::support::certs::{Creds, RsaKey};
use crate::support::http::{get, sample};
use crate::support::process::Voxproxy;
use crate::support::upstream::Upstream;
use crate::support::{Rig, add_static_key_client};

/// Requests in a bounded loop from `workers` tasks until `stop` (or `max` requests); returns
/// (ok, failed).
fn load(
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    workers: usize,
    max: usize,
) -> tokio::task::JoinHandle<(usize, usize)> {
    tokio::spawn(async move {
        let sent = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..workers {
            let (stop, sent) = (stop.clone(), sent.clone());
            tasks.push(tokio::spawn(async move {
                let (mut ok, mut failed) = (0, 0);
                while !stop.load(Ordering::Relaxed) && sent.fetch_add(1, Ordering::Relaxed) < max {
                    let resp = get(addr, "/platform_api/GetAccountInfo/").await;
                    if resp.status == 200 {
                        ok += 1
                    } else {
                        failed += 1
                    }
                }
                (ok, failed)
            }));
        }
        let mut total = (0, 0);
        for t in tasks {
            let (o, f) = t.await.unwrap();
            total.0 += o;
            total.1 += f;
        }
        total
    })
}

/// Wait until the upstream has seen `kid`; returns how long it took.
async fn wait_for_kid(upstream: &Upstream, kid: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if upstream
            .records()
            .iter()
            .any(|r| r.jwt.as_ref().is_ok_and(|j| j.kid == kid))
        {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "the upstream did not see kid {kid} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn rotate(signal: bool) {
    // SIGHUP rotation on one worker (current-thread runtime), file-change rotation on several.
    let rig = Rig::start(if signal { &["--workers", "1"] } else { &[] }).await;
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = load(rig.proxy.addr(), stop.clone(), 4, 20_000);
    // Let traffic flow on the old key first.
    wait_for_kid(&rig.upstream, &rig.creds.key_id, Duration::from_secs(5)).await;
    let new_key = RsaKey::generate();
    let new_kid = "rotated-kid";
    rig.upstream.trust(new_kid, new_key.decoding_key());
    Creds::write_json(&rig.creds.path, rig.creds.account, new_kid, &new_key);
    if signal {
        rig.proxy.signal(Signal::SIGHUP);
    }
    let took = wait_for_kid(&rig.upstream, new_kid, Duration::from_secs(5)).await;
    // Keep the load going a little past the switch, then stop it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = traffic.await.unwrap();
    assert_eq!(failed, 0, "requests failed during the rotation");
    assert!(ok > 10, "the load ran ({ok} requests)");
    assert!(took < Duration::from_secs(1), "new kid after {took:?}");
    // After the switch, only the new key signs.
    let last = rig.upstream.last();
    assert_eq!(last.jwt.unwrap().kid, new_kid);
    let metrics =
        String::from_utf8_lossy(&get(rig.proxy.addr(), "/metrics").await.body).into_owned();
    // The file watch and SIGHUP may each reload: at least one success, no failure.
    assert!(
        sample(
            &metrics,
            "voxproxy_credentials_reloads_total{result=\"success\"}"
        ) >= 1.0,
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "voxproxy_credentials_reloads_total{result=\"failure\"}"
        ),
        0.0
    );
    assert!(metrics.contains(&format!(
        "voxproxy_credentials_info{{account=\"{}\",key_id=\"{new_kid}\"}} 1",
        rig.creds.account
    )));
    assert!(
        !metrics.contains(&rig.creds.key_id),
        "the old key id left the info metric"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_with_sighup_under_load() {
    rotate(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_by_file_change_alone_under_load() {
    rotate(false).await;
}

#[tokio::test]
async fn corrupted_file_and_sighup_keep_the_old_key() {
    let rig = Rig::start(&[]).await;
    std::fs::write(&rig.creds.path, "{ this is not json").unwrap();
    rig.proxy.signal(Signal::SIGHUP);
    rig.proxy
        .log
        .wait_for(Duration::from_secs(5), |l| {
            l.contains("credentials not reloaded")
        })
        .expect("the failure is logged");
    let resp = get(rig.proxy.addr(), "/platform_api/GetUsers/").await;
    assert_eq!(resp.status, 200);
    assert_eq!(rig.upstream.last().jwt.unwrap().kid, rig.creds.key_id);
    let metrics =
        String::from_utf8_lossy(&get(rig.proxy.addr(), "/metrics").await.body).into_owned();
    assert!(
        sample(
            &metrics,
            "voxproxy_credentials_reloads_total{result=\"failure\"}"
        ) >= 1.0,
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "voxproxy_credentials_reloads_total{result=\"success\"}"
        ),
        0.0,
        "{metrics}"
    );
    assert!(
        !rig.proxy.logs().contains("this is not json"),
        "file content is not logged"
    );
}

#[tokio::test]
async fn kubernetes_secret_symlink_swap_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::create_dir(&secret).unwrap();
    let v1 = secret.join("..2026_11_28_v1");
    std::fs::create_dir(&v1).unwrap();
    let creds = Creds::write(&v1, "credentials.json", 31337);
    std::os::unix::fs::symlink("..2026_11_28_v1", secret.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/credentials.json", secret.join("credentials.json")).unwrap();
    let upstream = Upstream::start(
        vec![(creds.key_id.clone(), creds.key.decoding_key())],
        Default::default(),
    )
    .await;
    let mounted = secret.join("credentials.json");
    let proxy = Voxproxy::start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream.url,
            "--upstream-ca",
            upstream.ca_path.to_str().unwrap(),
            "--credentials",
            mounted.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(get(proxy.addr(), "/platform_api/A/").await.status, 200);
    // What the kubelet does: write a new timestamped dir, point a temp link at it, rename over ..data.
    let v2 = secret.join("..2026_11_28_v2");
    std::fs::create_dir(&v2).unwrap();
    let key = RsaKey::generate();
    upstream.trust("k8s-rotated", key.decoding_key());
    Creds::write_json(&v2.join("credentials.json"), 31337, "k8s-rotated", &key);
    std::os::unix::fs::symlink("..2026_11_28_v2", secret.join("..data_tmp")).unwrap();
    std::fs::rename(secret.join("..data_tmp"), secret.join("..data")).unwrap();
    std::fs::remove_dir_all(&v1).unwrap();
    let started = Instant::now();
    loop {
        let resp = get(proxy.addr(), "/platform_api/A/").await;
        assert_eq!(resp.status, 200);
        if upstream.last().jwt.unwrap().kid == "k8s-rotated" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the swap was not picked up within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A gateway rig: credentials, a clients file with one static-key client `app`, and a second
/// version of that file that adds a client `late`. Returns (rig, app's key, late's key, the
/// clients file, the text of its second version).
async fn gateway_rig() -> (Rig, String, String, std::path::PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let creds = Creds::write(dir.path(), "credentials.json", 1_000_001);
    let clients = dir.path().join("clients.toml");
    let add = |file: &std::path::Path, name: &str| add_static_key_client(file, &creds, name, &[]);
    let app_key = add(&clients, "app");
    let second = dir.path().join("second.toml");
    std::fs::copy(&clients, &second).unwrap();
    let late_key = add(&second, "late");
    let second_text = std::fs::read_to_string(&second).unwrap();
    let upstream = Upstream::start(
        vec![(creds.key_id.clone(), creds.key.decoding_key())],
        Default::default(),
    )
    .await;
    let proxy = Rig::proxy(
        &upstream,
        &creds,
        &["--clients", clients.to_str().unwrap()],
        &[],
    );
    let rig = Rig {
        upstream,
        creds,
        proxy,
        dir,
    };
    (rig, app_key, late_key, clients, second_text)
}

/// GET with a static key.
async fn get_as(addr: std::net::SocketAddr, key: &str) -> http::StatusCode {
    crate::support::http::send(
        addr,
        http::Request::get("/platform_api/GetAccountInfo/")
            .header("proxy-authorization", format!("Bearer {key}"))
            .body(crate::support::http::body(""))
            .unwrap(),
    )
    .await
    .status
}

/// What `cp new clients.toml` does, slowly: truncate, write half, wait 50 ms, write the rest.
fn slow_truncating_write(path: &std::path::Path, text: &str) {
    use std::io::Write as _;
    let mut f = std::fs::File::create(path).unwrap();
    let half = text.len() / 2;
    f.write_all(&text.as_bytes()[..half]).unwrap();
    f.flush().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    f.write_all(&text.as_bytes()[half..]).unwrap();
    f.flush().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cp_style_rewrites_of_the_clients_file_under_load_refuse_nobody() {
    let (rig, key, _, clients, _) = gateway_rig().await;
    let addr = rig.proxy.addr();
    assert_eq!(get_as(addr, &key).await, 200);
    // The operator's header comes first, so the first half of the file alone is comments:
    // valid TOML with no clients, which must never be loaded.
    let header =
        "# Gateway clients of the billing platform; edit with `voxproxy client` or by hand.\n"
            .repeat(8);
    let original = format!("{header}{}", std::fs::read_to_string(&clients).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicUsize::new(0));
    let ok = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (stop, refused, ok, key) = (stop.clone(), refused.clone(), ok.clone(), key.clone());
        workers.push(tokio::spawn(async move {
            // Bounded: at most 100,000 requests per worker, and it stops with the edits.
            for _ in 0..100_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match get_as(addr, &key).await.as_u16() {
                    200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => refused.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    // 40 edits, each a real change (a new comment), each written the way `cp` writes, at
    // uneven intervals: some come while the previous edit is being looked at.
    let path = clients.clone();
    tokio::task::spawn_blocking(move || {
        for i in 0..40 {
            slow_truncating_write(&path, &format!("{original}# edit {i}\n"));
            std::thread::sleep(Duration::from_millis([70, 110, 130, 400][i % 4]));
        }
    })
    .await
    .unwrap();
    // The last edit loads too before the load stops.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let reloads = rig
        .proxy
        .log
        .all()
        .iter()
        .filter(|l| l.contains("gateway clients reloaded"))
        .count();
    let (ok, refused) = (ok.load(Ordering::Relaxed), refused.load(Ordering::Relaxed));
    assert_eq!(
        refused, 0,
        "{refused} requests refused during the edits ({ok} ok)"
    );
    assert!(ok > 100, "the load ran ({ok} requests)");
    assert!(reloads >= 5, "the edits were loaded ({reloads} reloads)");
    assert!(
        !rig.proxy.logs().contains("0 clients"),
        "an empty clients file was never loaded"
    );
}

#[tokio::test]
async fn a_broken_clients_file_then_a_good_one_ends_with_the_good_one() {
    let (rig, app_key, late_key, clients, second) = gateway_rig().await;
    let addr = rig.proxy.addr();
    assert_eq!(
        get_as(addr, &late_key).await,
        401,
        "late is not a client yet"
    );
    std::fs::write(&clients, "[clients.app]\nbogus = 1\n").unwrap();
    rig.proxy
        .log
        .wait_for(Duration::from_secs(5), |l| {
            l.contains("clients file not reloaded")
        })
        .expect("the broken file is refused");
    assert_eq!(get_as(addr, &app_key).await, 200, "the old clients stay");
    slow_truncating_write(&clients, &second);
    rig.proxy
        .log
        .wait_for(Duration::from_secs(5), |l| {
            l.contains("gateway clients reloaded") && l.contains("2 clients: app, late")
        })
        .expect("the good file is loaded within 5 s");
    assert_eq!(get_as(addr, &late_key).await, 200);
    assert_eq!(get_as(addr, &app_key).await, 200);
}

#[tokio::test]
async fn an_idle_reloader_reads_its_files_only_at_the_poll() {
    use notify::Watcher as _;
    use notify::event::{AccessKind, EventKind};
    let rig = Rig::start(&[]).await;
    // The test's own inotify watch counts every open of the credentials file.
    let (tx, rx) = std::sync::mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(e) = res {
            let _ = tx.send(e);
        }
    })
    .unwrap();
    watcher
        .watch(rig.dir.path(), notify::RecursiveMode::NonRecursive)
        .unwrap();
    // A window of time is what is measured here: nothing changes during it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(watcher);
    let opens = rx
        .try_iter()
        .filter(|e| {
            matches!(e.kind, EventKind::Access(AccessKind::Open(_)))
                && e.paths.iter().any(|p| p.ends_with("credentials.json"))
        })
        .count();
    // The 2 s poll reads it once or twice in 3 s; reacting to its own reads' open events, the
    // reloader would read it every few hundred milliseconds.
    assert!(opens <= 3, "{opens} opens of an unchanged file in 3 s");
}
