//! `check --online`: prove each key against the configured upstream the way the proxy uses it.
//! One `GetAccountInfo` per credentials file, with a token minted with that key for its account
//! and sent as the proxy sends it (`Authorization: Bearer`), over the proxy's own upstream client
//! (`upstream_ca`, `connect_timeout`), within `request_timeout`. Each answer is put in words a
//! person can act on: Voximplant's own error code and message with what it usually means, or the
//! proxy's error kind for a connection that failed, with its cause.

use std::time::Duration;

use anyhow::Context as _;
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::BodyExt as _;

use crate::body::{self, Body};
use crate::config::Settings;
use crate::credentials::Credentials;
use crate::token::{Claims, Clock as _, Signer as _, SystemClock};
use crate::upstream::{self, Clients};

/// The API method that proves a key: it takes no parameters and every account may call it.
const PATH: &str = "/platform_api/GetAccountInfo/";
/// Most of an answer read.
const MAX_ANSWER: usize = 64 * 1024;

/// One account's outcome: `Ok` with a note for its `ok` line (the account's name, when the
/// answer has one), or what went wrong.
pub type Outcome = Result<String, String>;

/// Ask the upstream about each account in `creds`, all at once; the outcomes in the same order.
/// An error: the upstream client cannot be built (`upstream_ca`).
pub fn prove(settings: &Settings, creds: &[Credentials]) -> anyhow::Result<Vec<Outcome>> {
    let clients = upstream::client(settings).context("check --online")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("check --online: cannot start the async runtime")?;
    let now = SystemClock.now();
    let asks = creds.iter().map(|c| prove_one(&clients, settings, c, now));
    Ok(rt.block_on(futures_util::future::join_all(asks)))
}

/// One `GetAccountInfo` for `creds`' account, signed with its key.
async fn prove_one(
    clients: &Clients,
    settings: &Settings,
    creds: &Credentials,
    now: i64,
) -> Outcome {
    let claims = Claims::new(creds.account_id, now, settings.token_ttl);
    let jwt = creds
        .mint(&claims)
        .map_err(|e| format!("cannot mint a token: {e}"))?;
    let req = request(settings, &jwt)?;
    let timeout = settings.request_timeout;
    let resp = match tokio::time::timeout(timeout, clients.send(req)).await {
        Err(_) => return Err(timed_out(timeout)),
        Ok(Err(e)) => return Err(connection_failed(e)),
        Ok(Ok(resp)) => resp,
    };
    let status = resp.status();
    let limited = http_body_util::Limited::new(resp.into_body(), MAX_ANSWER);
    let body = match tokio::time::timeout(timeout, limited.collect()).await {
        Err(_) => return Err(timed_out(timeout)),
        Ok(Err(e)) => return Err(format!("upstream_reset: the answer broke off: {e}")),
        Ok(Ok(body)) => body.to_bytes(),
    };
    verdict(status, &body)
}

/// `GET <upstream>/platform_api/GetAccountInfo/` with the token, marked sensitive.
fn request(settings: &Settings, jwt: &str) -> Result<Request<Body>, String> {
    let mut auth = HeaderValue::try_from(format!("Bearer {jwt}"))
        .map_err(|e| format!("cannot build the request: {e}"))?;
    auth.set_sensitive(true);
    Request::get(format!("{}{PATH}", settings.upstream))
        .header(header::AUTHORIZATION, auth)
        .header(
            header::USER_AGENT,
            concat!("voxproxy-check/", env!("CARGO_PKG_VERSION")),
        )
        .body(body::empty())
        .map_err(|e| format!("cannot build the request: {e}"))
}

/// No answer within `request_timeout`.
fn timed_out(timeout: Duration) -> String {
    format!(
        "upstream_timeout: no answer within request_timeout ({} s); check the upstream and the \
         network, or raise request_timeout",
        timeout.as_secs_f64()
    )
}

/// A request that failed before any answer, as the proxy classifies it (`upstream_connect`,
/// `upstream_tls`, `upstream_reset`), with the whole cause chain.
fn connection_failed(e: upstream::pool::SendError) -> String {
    match upstream::classify(e) {
        upstream::Failure::Error(err) => err.chain(),
        // The request has no body: neither can happen, but say something true if it does.
        upstream::Failure::TooLarge(e) => format!("the request was refused: {e}"),
        upstream::Failure::ClientGone => "the request was abandoned".to_owned(),
    }
}

/// What an answer says about the key: a `result` is `ok`; Voximplant's `error` (whatever the
/// HTTP status, often 200) is its code and message with what it usually means.
fn verdict(status: StatusCode, body: &[u8]) -> Outcome {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    if let Some(err) = json.as_ref().and_then(|v| v.get("error")) {
        let code = err.get("code").and_then(serde_json::Value::as_i64);
        let msg = err.get("msg").and_then(serde_json::Value::as_str);
        return Err(voximplant_error(code, msg.unwrap_or("")));
    }
    match json.as_ref().and_then(|v| v.get("result")) {
        Some(result) if status.is_success() => Ok(account_note(result)),
        _ => Err(format!(
            "the upstream answered HTTP {status} with neither a Voximplant result nor an error: \
             is upstream the Voximplant API?"
        )),
    }
}

/// Voximplant's error in words: its code and message, and what it usually means.
fn voximplant_error(code: Option<i64>, msg: &str) -> String {
    let hint = match code {
        Some(100) => {
            "authorization failed: the key was revoked or key_id is wrong; create a key for the \
             service account (control panel, Service accounts) and save its credentials.json"
        }
        Some(433) => {
            "invalid key id: key_id does not name a key of this account; check key_id and \
             account_id in the credentials file"
        }
        Some(455 | 456) => {
            "the token's time was refused: this machine's clock is off; synchronise it (NTP)"
        }
        _ => "",
    };
    let code = code.map_or_else(|| "without a code".to_owned(), |c| c.to_string());
    let msg = printable(msg);
    if hint.is_empty() {
        format!("Voximplant error {code}: \"{msg}\"")
    } else {
        format!("Voximplant error {code} (\"{msg}\"): {hint}")
    }
}

/// ` (account_name NAME)` when the answer names the account; nothing else of it is printed.
fn account_note(result: &serde_json::Value) -> String {
    result
        .get("account_name")
        .and_then(serde_json::Value::as_str)
        .map_or_else(String::new, |name| {
            format!(" (account_name {})", printable(name))
        })
}

/// Text from the upstream, shortened and without control characters, for one line.
fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_in_words() {
        let ok = verdict(
            StatusCode::OK,
            br#"{"result":{"account_id":1,"account_name":"acme","api_key":"x"}}"#,
        );
        assert_eq!(ok, Ok(" (account_name acme)".to_owned()));
        let revoked = verdict(
            StatusCode::OK,
            br#"{"error":{"code":100,"msg":"Authorization failed"}}"#,
        )
        .unwrap_err();
        assert!(
            revoked.starts_with("Voximplant error 100 (\"Authorization failed\")")
                && revoked.contains("revoked or key_id is wrong"),
            "{revoked}"
        );
        let clock = verdict(StatusCode::OK, br#"{"error":{"code":456,"msg":"t\nx"}}"#).unwrap_err();
        assert!(
            clock.contains("clock") && clock.contains("\"tx\""),
            "{clock}"
        );
        let other = verdict(StatusCode::OK, br#"{"error":{"code":7,"msg":"m"}}"#).unwrap_err();
        assert_eq!(other, "Voximplant error 7: \"m\"");
        let html = verdict(StatusCode::BAD_GATEWAY, b"<html>").unwrap_err();
        assert!(html.contains("HTTP 502 Bad Gateway"), "{html}");
    }
}
