//! `voxproxy probe URL [--timeout 2s]`: a health probe for images without a shell or curl (the
//! distroless image). One plain-HTTP GET of URL; exit 0 when a 2xx head arrives within the
//! timeout, 1 otherwise with one line on stderr saying why. It reads no settings, no credentials
//! and no environment, so it works wherever the binary does and warns about nothing.

use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;

use crate::cli::ProbeArgs;
use crate::error::{Failure, config_err};

/// Run `probe`: a usage error (exit 2) for a URL that is not `http://HOST[:PORT]/...`, a runtime
/// failure (exit 1) for anything but a 2xx answer in time.
pub fn run(args: &ProbeArgs) -> Result<(), Failure> {
    let uri = parse_url(&args.url).map_err(config_err)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("probe: cannot start the async runtime")?;
    let status = rt
        .block_on(async { tokio::time::timeout(args.timeout, get(&uri)).await })
        .map_err(|_| {
            anyhow::anyhow!(
                "probe {uri}: no answer within {}",
                shown_duration(args.timeout)
            )
        })?
        .with_context(|| format!("probe {uri}"))?;
    if status.is_success() {
        Ok(())
    } else {
        Err(anyhow::anyhow!("probe {uri}: answered {status}, not 2xx").into())
    }
}

/// The URL, which must be plain HTTP with a host: a probe of voxproxy's admin listener (a TLS
/// main listener's admin paths are for HTTPS clients; probes get `admin_listen`).
fn parse_url(text: &str) -> anyhow::Result<Uri> {
    let usage = "probe: URL must be a plain-HTTP URL like http://127.0.0.1:9090/readyz";
    let uri: Uri = text.parse().map_err(|e| anyhow::anyhow!("{usage}: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => anyhow::bail!(
            "{usage} (got {other}://; probe speaks plain HTTP only: point it at admin_listen)"
        ),
        None => anyhow::bail!("{usage} (got {text:?})"),
    }
    if uri.host().is_none_or(str::is_empty) {
        anyhow::bail!("{usage} (no host in {text:?})");
    }
    Ok(uri)
}

/// GET `uri` over a fresh HTTP/1.1 connection; the answer's status.
async fn get(uri: &Uri) -> anyhow::Result<StatusCode> {
    let authority = uri
        .authority()
        .context("the URL has no host")?
        .as_str()
        .to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let host = uri.host().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .context("cannot connect")?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .context("HTTP handshake failed")?;
    // The connection is driven beside the request; it ends when the response has been read.
    tokio::spawn(conn);
    let path = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let req = Request::get(path)
        .header(http::header::HOST, authority)
        .header(
            http::header::USER_AGENT,
            concat!("voxproxy-probe/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::<Bytes>::new())
        .context("building the request")?;
    let resp = sender
        .send_request(req)
        .await
        .context("the server closed the connection without an answer")?;
    Ok(resp.status())
}

/// A timeout as the user wrote it, roughly (`2s`, `500ms`).
fn shown_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_urls_with_a_host() {
        assert!(parse_url("http://127.0.0.1:9090/readyz").is_ok());
        assert!(parse_url("http://localhost/healthz").is_ok());
        for bad in [
            "https://127.0.0.1/readyz",
            "127.0.0.1:9090",
            "/readyz",
            "ftp://x/",
        ] {
            let e = parse_url(bad).unwrap_err().to_string();
            assert!(e.contains("plain-HTTP URL"), "{bad}: {e}");
        }
        assert_eq!(shown_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(shown_duration(Duration::from_secs(2)), "2s");
    }
}
