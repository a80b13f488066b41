//! Admin endpoints: `/healthz` (the process serves), `/readyz` (every credentials file has minted
//! a token and shutdown has not begun), `/metrics` (Prometheus text 0.0.4, or OpenMetrics when the
//! scraper's `Accept` asks for it). Never forwarded, never behind a client key.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Method, Response, StatusCode};

use crate::body::{self, Body};
use crate::metrics::Metrics;

/// Whether `path` is one of the admin paths.
pub fn is_admin_path(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

const TEXT: &str = "text/plain; charset=utf-8";
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Answer an admin path; `ready` is what `/readyz` reports.
pub fn answer(parts: &Parts, ready: bool, metrics: &Metrics) -> Response<Body> {
    let (status, content_type, text) = match parts.uri.path() {
        "/healthz" => (StatusCode::OK, TEXT, Bytes::from_static(b"ok\n")),
        "/readyz" if ready => (StatusCode::OK, TEXT, Bytes::from_static(b"ready\n")),
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            TEXT,
            Bytes::from_static(
                b"not ready: credentials have not all minted a token, or shutting down\n",
            ),
        ),
        _ if wants_openmetrics(&parts.headers) => {
            (StatusCode::OK, OPENMETRICS, Bytes::from(metrics.encode()))
        }
        _ => (
            StatusCode::OK,
            PROMETHEUS,
            Bytes::from(to_prometheus_text(&metrics.encode())),
        ),
    };
    let text = if parts.method == Method::HEAD {
        Bytes::new()
    } else {
        text
    };
    let mut resp = Response::new(body::full(text));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Whether the scraper's `Accept` names `application/openmetrics-text` (with any parameters and a
/// non-zero quality).
fn wants_openmetrics(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            let mut params = range.split(';');
            let media = params.next().unwrap_or("").trim();
            let zero_q = params.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            media.eq_ignore_ascii_case("application/openmetrics-text") && !zero_q
        })
}

/// OpenMetrics text (what prometheus-client writes) as Prometheus text format 0.0.4: a counter's
/// family is named with its `_total` suffix, an info metric becomes a gauge named `<name>_info`,
/// and `# UNIT` and `# EOF` lines go. prometheus-client writes each family's `# HELP` right before
/// its `# TYPE`.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let lines: Vec<&str> = openmetrics.lines().collect();
    let mut out = String::with_capacity(openmetrics.len());
    for (i, line) in lines.iter().enumerate() {
        if *line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some((name, kind)) = type_line(line) {
            out.push_str(&format!(
                "# TYPE {} {}\n",
                family(name, kind),
                prometheus_kind(kind)
            ));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            let kind = lines
                .get(i + 1)
                .and_then(|l| type_line(l))
                .filter(|(n, _)| *n == name)
                .map_or("", |(_, k)| k);
            out.push_str(&format!("# HELP {} {help}\n", family(name, kind)));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// `(name, kind)` of a `# TYPE name kind` line.
fn type_line(line: &str) -> Option<(&str, &str)> {
    line.strip_prefix("# TYPE ")?.rsplit_once(' ')
}

/// A family's name in text format 0.0.4: counters carry `_total`, info metrics `_info`.
fn family(name: &str, kind: &str) -> String {
    match kind {
        "counter" if !name.ends_with("_total") => format!("{name}_total"),
        "info" => format!("{name}_info"),
        _ => name.to_owned(),
    }
}

/// Text format 0.0.4 has no info type: an info metric is a gauge of 1.
fn prometheus_kind(kind: &str) -> &str {
    if kind == "info" { "gauge" } else { kind }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_only_when_asked_for() {
        let mut h = http::HeaderMap::new();
        assert!(!wants_openmetrics(&h));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/plain;version=0.0.4;q=0.9,*/*;q=0.1"),
        );
        assert!(!wants_openmetrics(&h));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static(
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
            ),
        );
        assert!(wants_openmetrics(&h));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/openmetrics-text;q=0"),
        );
        assert!(!wants_openmetrics(&h));
    }

    #[test]
    fn openmetrics_becomes_prometheus_text() {
        let om = "# HELP voxproxy_requests Requests.\n# TYPE voxproxy_requests counter\nvoxproxy_requests_total{status=\"200\"} 1\n# HELP voxproxy_build Build information.\n# TYPE voxproxy_build info\nvoxproxy_build_info{version=\"0.2.0\"} 1\n# HELP g A gauge.\n# TYPE g gauge\n# UNIT g seconds\ng 2\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP voxproxy_requests_total Requests.\n# TYPE voxproxy_requests_total counter\nvoxproxy_requests_total{status=\"200\"} 1\n# HELP voxproxy_build_info Build information.\n# TYPE voxproxy_build_info gauge\nvoxproxy_build_info{version=\"0.2.0\"} 1\n# HELP g A gauge.\n# TYPE g gauge\ng 2\n"
        );
    }
}
