//! The monitoring artefacts match the binary: every metric name the Grafana dashboard and the
//! Prometheus rules use is one a real `/metrics` scrape exposes, with samples.
//! `voxproxy_limits_shared` exists only with `limits_redis`: the rig names a Redis on a port
//! nobody listens on, so the gauge is there and reads 0.

use std::path::Path;

use crate::support::Rig;
use crate::support::http::get;
use crate::support::redis::free_port;

#[tokio::test]
async fn dashboard_and_alert_metric_names_exist_in_a_real_scrape() {
    let redis = format!("redis://127.0.0.1:{}", free_port());
    let rig = Rig::start(&["--limits-redis", &redis]).await;
    let addr = rig.proxy.addr();
    assert_eq!(get(addr, "/platform_api/GetUsers/").await.status, 200);
    assert_eq!(get(addr, "/nope").await.status, 404);
    let scrape = get(addr, "/metrics").await;
    let file = rig.path("metrics.txt");
    std::fs::write(&file, &scrape.body).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/monitoring/metric_names.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg("--samples-only")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = std::process::Command::new("python3")
        .arg(&script)
        .arg("--list")
        .arg(&file)
        .output()
        .unwrap();
    let names = String::from_utf8_lossy(&listed.stdout);
    assert!(
        names.lines().count() >= 8,
        "the dashboard and rules use metrics: {names}"
    );
}
