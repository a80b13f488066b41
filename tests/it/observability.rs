//! Metrics with exact counts, request ids both ways, and the redaction proof: no token, no key
//! material and no inbound credential in any log line or in /metrics.

use std::time::Duration;

use base64::Engine as _;
use http::Request;
use nix::sys::signal::Signal;

use crate::support::Rig;
use crate::support::certs::Creds;
use crate::support::http::{body, get, send};
use crate::support::process::run;

#[tokio::test]
async fn metrics_count_a_known_mix_exactly() {
    let rig = Rig::start(&["--allowed-accounts", "1000001,42"]).await;
    let addr = rig.proxy.addr();
    for _ in 0..3 {
        assert_eq!(get(addr, "/platform_api/GetUsers/?x=1").await.status, 200);
    }
    assert_eq!(
        get(addr, "/accounts/42/platform_api/SetUserInfo/")
            .await
            .status,
        200
    );
    assert_eq!(
        get(addr, "/platform_api?cmd=GetAccountInfo").await.status,
        200
    );
    assert_eq!(get(addr, "/platform_api/Weird-Name!/").await.status, 200);
    assert_eq!(get(addr, "/nope").await.status, 404);
    assert_eq!(
        get(addr, "/accounts/7/platform_api/GetUsers/").await.status,
        403
    );
    let text = String::from_utf8_lossy(&get(addr, "/metrics").await.body).into_owned();
    for line in [
        "voxproxy_requests_total{status=\"200\",account=\"1000001\",api_method=\"GetUsers\"} 3",
        "voxproxy_requests_total{status=\"200\",account=\"42\",api_method=\"SetUserInfo\"} 1",
        "voxproxy_requests_total{status=\"200\",account=\"1000001\",api_method=\"GetAccountInfo\"} 1",
        "voxproxy_requests_total{status=\"200\",account=\"1000001\",api_method=\"other\"} 1",
        "voxproxy_requests_total{status=\"404\",account=\"none\",api_method=\"none\"} 1",
        "voxproxy_requests_total{status=\"403\",account=\"7\",api_method=\"GetUsers\"} 1",
        "voxproxy_errors_total{kind=\"not_found\"} 1",
        "voxproxy_errors_total{kind=\"account_not_allowed\"} 1",
        "voxproxy_errors_total{kind=\"upstream_tls\"} 0",
        "voxproxy_request_duration_seconds_count 8",
        "voxproxy_upstream_duration_seconds_count 6",
        "voxproxy_requests_in_flight 0",
        "voxproxy_tokens_minted_total{account=\"1000001\"} 1",
        "voxproxy_tokens_minted_total{account=\"42\"} 1",
        "voxproxy_token_mint_failures_total{account=\"1000001\"} 0",
        "voxproxy_credentials_reloads_total{result=\"success\"} 0",
        "voxproxy_credentials_reloads_total{result=\"failure\"} 0",
        &format!(
            "voxproxy_credentials_info{{account=\"1000001\",key_id=\"{}\"}} 1",
            rig.creds.key_id
        ),
        &build_info_line(),
    ] {
        assert!(text.contains(line), "missing `{line}` in\n{text}");
    }
    assert!(text.contains("voxproxy_token_expiry_timestamp_seconds{account=\"1000001\"} "));
    assert!(text.contains("process_resident_memory_bytes "));
    assert!(text.contains("process_cpu_seconds_total "));
    for series in [
        "process_open_fds ",
        "process_max_fds ",
        "process_start_time_seconds ",
    ] {
        assert!(text.contains(series), "missing {series}in\n{text}");
    }
}

/// `voxproxy_build_info` with what `voxproxy --version` prints: `voxproxy VERSION (COMMIT
/// TARGET)`.
fn build_info_line() -> String {
    let (code, out, _) = run(&["--version"], &[]);
    assert_eq!(code, 0);
    let rest = out.trim().strip_prefix("voxproxy ").unwrap();
    let (version, rest) = rest.split_once(" (").unwrap();
    let (commit, target) = rest.trim_end_matches(')').split_once(' ').unwrap();
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    format!(
        "voxproxy_build_info{{version=\"{version}\",commit=\"{commit}\",target=\"{target}\"}} 1"
    )
}

#[tokio::test]
async fn request_ids_are_kept_generated_and_propagated() {
    let rig = Rig::start(&[]).await;
    let addr = rig.proxy.addr();
    let kept = send(
        addr,
        Request::get("/platform_api/GetUsers/")
            .header("x-request-id", "trace-abc.123")
            .body(body(""))
            .unwrap(),
    )
    .await;
    assert_eq!(kept.header("x-request-id"), Some("trace-abc.123"));
    assert_eq!(rig.upstream.last().headers["x-request-id"], "trace-abc.123");
    let generated = send(
        addr,
        Request::get("/platform_api/GetUsers/")
            .header("x-request-id", "bad id with spaces")
            .body(body(""))
            .unwrap(),
    )
    .await;
    let id = generated.header("x-request-id").unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    assert_eq!(rig.upstream.last().headers["x-request-id"], id.as_str());
    // voxproxy's own errors carry it too, and every log line of the request names it.
    let err = send(
        addr,
        Request::get("/nope")
            .header("x-request-id", "err-id-1")
            .body(body(""))
            .unwrap(),
    )
    .await;
    assert_eq!(err.header("x-request-id"), Some("err-id-1"));
    let access = rig
        .proxy
        .log
        .wait_for(Duration::from_secs(5), |l| {
            l.contains("err-id-1") && l.contains("\"status\":404")
        })
        .expect("the access line names the request id");
    let v: serde_json::Value = serde_json::from_str(&access).unwrap();
    assert_eq!(v["span"]["request_id"], "err-id-1");
    assert!(v["timestamp"].is_string() && v["level"] == "INFO");
    assert_eq!(v["request_id"], "err-id-1");
    // Every field of the contract is there; a refusal before any account was chosen has `null`
    // for what it does not know, never 0 or "-".
    for field in [
        "peer",
        "protocol",
        "method",
        "path",
        "status",
        "kind",
        "error",
        "duration_ms",
        "bytes_in",
        "bytes_out",
        "aborted",
    ] {
        assert!(!v[field].is_null(), "access log lacks {field}: {access}");
    }
    for field in ["api_method", "account", "client", "upstream_ms"] {
        let obj = v.as_object().unwrap();
        assert!(
            obj.contains_key(field),
            "access log lacks {field}: {access}"
        );
        assert!(obj[field].is_null(), "{field} should be null: {access}");
    }
    assert_eq!(v["kind"], "not_found");
    assert_eq!(v["aborted"], false);
    assert_eq!(v["protocol"], "HTTP/1.1");
}

#[tokio::test]
async fn no_secret_in_logs_metrics_or_check_output() {
    let rig = Rig::start_with(&["--log-level", "trace"], &[], Default::default()).await;
    let addr = rig.proxy.addr();
    let inbound_bearer = "Bearer inbound-secret-token-0123456789";
    let inbound_basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("user:inbound-basic-password-xyz")
    );
    for (path, auth) in [
        (
            "/platform_api/GetUsers/?api_key=LEGACYSECRET1",
            inbound_bearer.to_owned(),
        ),
        ("/platform_api/GetUsers/", inbound_basic.clone()),
        ("/nope?session_id=LEGACYSECRET2", inbound_bearer.to_owned()),
        ("/platform_api/Slow/?ms=1", inbound_bearer.to_owned()),
    ] {
        let _ = send(
            addr,
            Request::get(path)
                .header("authorization", &auth)
                .header("proxy-authorization", &inbound_basic)
                .body(body("account_password=LEGACYSECRET3"))
                .unwrap(),
        )
        .await;
    }
    // A reload with a new key, and a broken one.
    let key = crate::support::certs::RsaKey::generate();
    rig.upstream.trust("redaction-rotated", key.decoding_key());
    Creds::write_json(
        &rig.creds.path,
        rig.creds.account,
        "redaction-rotated",
        &key,
    );
    rig.proxy.signal(Signal::SIGHUP);
    rig.proxy
        .log
        .wait_for(Duration::from_secs(5), |l| {
            l.contains("credentials reloaded")
        })
        .unwrap();
    let _ = get(addr, "/platform_api/GetUsers/").await;
    let metrics = String::from_utf8_lossy(&get(addr, "/metrics").await.body).into_owned();
    let (_, check_out, check_err) = run(
        &[
            "check",
            "--credentials",
            rig.creds.path.to_str().unwrap(),
            "--log-level",
            "trace",
        ],
        &[],
    );
    let (_, token_out, _) = run(
        &["token", "--credentials", rig.creds.path.to_str().unwrap()],
        &[],
    );

    let everything = format!("{}\n{metrics}\n{check_out}\n{check_err}", rig.proxy.logs());
    let mut secrets: Vec<String> = rig
        .upstream
        .records()
        .iter()
        .filter_map(|r| r.jwt.as_ref().ok().map(|j| j.raw.clone()))
        .collect();
    assert!(secrets.len() >= 3, "tokens were minted");
    for s in secrets.clone() {
        // Any of the three parts of a token (the signature above all) must not appear.
        secrets.extend(s.split('.').map(str::to_owned));
    }
    secrets.push(
        token_out
            .trim()
            .trim_start_matches("Authorization: Bearer ")
            .to_owned(),
    );
    for pem in [rig.creds.key.pkcs8_pem(), key.pkcs8_pem()] {
        secrets.extend(
            pem.lines()
                .filter(|l| !l.starts_with("-----"))
                .map(str::to_owned),
        );
    }
    secrets.extend(
        [
            "inbound-secret-token-0123456789",
            inbound_basic.trim_start_matches("Basic "),
            "LEGACYSECRET1",
            "LEGACYSECRET2",
        ]
        .map(str::to_owned),
    );
    for s in &secrets {
        assert!(s.len() >= 8);
        assert!(!everything.contains(s.as_str()), "a secret leaked: {s}");
    }
    assert!(
        everything.contains("credentials reloaded"),
        "the captured output is real"
    );
    assert!(everything.lines().count() > 10);
}

/// `python parse_metrics.py FORMAT` on `text` (the pinned `prometheus-client` parsers): the
/// families, or the parser's error.
async fn parse_strictly(format: &'static str, text: String) -> Result<serde_json::Value, String> {
    tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        crate::interop::setup();
        let interop = crate::interop::interop_dir();
        let mut child = std::process::Command::new(interop.join(".venv/bin/python"))
            .arg(interop.join("python/parse_metrics.py"))
            .arg(format)
            .env_clear()
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        if out.status.success() {
            Ok(serde_json::from_slice(&out.stdout).unwrap())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    })
    .await
    .unwrap()
}

/// The type the parser gave family `name`.
fn family_type(families: &serde_json::Value, name: &str) -> String {
    families
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no family {name} in {families}"))["type"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn metrics_are_text_0_0_4_or_openmetrics_as_asked_and_parse_strictly() {
    let rig = Rig::start(&[]).await;
    let addr = rig.proxy.addr();
    assert_eq!(get(addr, "/platform_api/GetUsers/").await.status, 200);
    assert_eq!(get(addr, "/nope").await.status, 404);
    let scrape = |accept: &'static str| {
        send(
            addr,
            Request::get("/metrics")
                .header("accept", accept)
                .body(body(""))
                .unwrap(),
        )
    };

    let text = scrape("text/plain;version=0.0.4;q=0.9,*/*;q=0.1").await;
    assert!(
        text.header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "{:?}",
        text.headers
    );
    let body_text = String::from_utf8(text.body.to_vec()).unwrap();
    assert!(!body_text.contains("# EOF") && !body_text.contains("# UNIT"));
    for line in body_text.lines().filter(|l| l.ends_with(" counter")) {
        let name = line
            .trim_start_matches("# TYPE ")
            .trim_end_matches(" counter");
        assert!(name.ends_with("_total"), "{line}");
    }
    assert!(body_text.contains("# TYPE voxproxy_build_info gauge"));
    let families = parse_strictly("text", body_text)
        .await
        .unwrap_or_else(|e| panic!("text 0.0.4 does not parse: {e}"));
    assert_eq!(family_type(&families, "voxproxy_requests"), "counter");
    assert_eq!(family_type(&families, "voxproxy_build_info"), "gauge");
    assert_eq!(family_type(&families, "process_max_fds"), "gauge");
    assert_eq!(
        family_type(&families, "voxproxy_request_duration_seconds"),
        "histogram"
    );

    let om = scrape(
        "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    )
    .await;
    assert!(
        om.header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text; version=1.0.0"),
        "{:?}",
        om.headers
    );
    let om_text = String::from_utf8(om.body.to_vec()).unwrap();
    assert!(om_text.ends_with("# EOF\n"));
    let families = parse_strictly("openmetrics", om_text)
        .await
        .unwrap_or_else(|e| panic!("OpenMetrics does not parse: {e}"));
    assert_eq!(family_type(&families, "voxproxy_requests"), "counter");
    assert_eq!(family_type(&families, "voxproxy_build"), "info");
    assert_eq!(family_type(&families, "process_cpu_seconds"), "counter");

    // The parsers are strict: a broken exposition fails.
    assert!(
        parse_strictly("openmetrics", "# TYPE x counter\nx_total 1\n".to_owned())
            .await
            .is_err(),
        "no # EOF"
    );
}
