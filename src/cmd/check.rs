//! `voxproxy check`: load and validate everything, mint a token with each key and verify it with
//! the public key derived from it, and print a summary with no secret in it. Every problem is
//! reported, not only the first.

use std::io::Write;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::config::{ConfigError, Settings};
use crate::credentials::Credentials;
use crate::error::{Failure, config_err};
use crate::token::{Claims, Clock as _, Signer as _, SystemClock};

/// Verify a token we minted with `creds`' public key, checking every claim.
pub fn verify_minted(creds: &Credentials, jwt: &str, claims: &Claims) -> Result<(), String> {
    let header = jsonwebtoken::decode_header(jwt).map_err(|e| format!("header: {e}"))?;
    if header.alg != Algorithm::RS256 || header.kid.as_deref() != Some(&*creds.key_id) {
        return Err("header is not RS256 with the file's key_id".to_owned());
    }
    let key = DecodingKey::from_rsa_der(creds.key.public_der());
    let mut validation = Validation::new(Algorithm::RS256);
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp"]);
    let data = jsonwebtoken::decode::<serde_json::Value>(jwt, &key, &validation)
        .map_err(|e| format!("does not verify with the public key: {e}"))?;
    // jsonwebtoken checks `iss` only as a string; the contract wants a JSON number.
    let c = &data.claims;
    if c["iss"].as_u64() != Some(claims.iss.get())
        || c["iat"].as_i64() != Some(claims.iat)
        || c["exp"].as_i64() != Some(claims.exp)
    {
        return Err("claims differ from what was minted".to_owned());
    }
    Ok(())
}

/// Run `check`, writing the summary to `out`.
pub fn run(settings: Result<Settings, ConfigError>, out: &mut dyn Write) -> Result<(), Failure> {
    let settings = match settings {
        Ok(s) => s,
        Err(e) => {
            for problem in &e.0 {
                writeln!(out, "problem: {problem}")?;
            }
            return Err(config_err(anyhow::anyhow!(
                "check found {} problem(s): {e}",
                e.0.len()
            )));
        }
    };
    let mut problems: Vec<String> = Vec::new();
    if let Err(e) = settings.check_listen_rule(&settings.listen) {
        problems.push(e.to_string());
    }
    writeln!(out, "voxproxy {} configuration", env!("CARGO_PKG_VERSION"))?;
    writeln!(
        out,
        "  config file: {}",
        settings
            .config
            .as_ref()
            .map_or("none".to_owned(), |p| p.display().to_string())
    )?;
    writeln!(
        out,
        "  listen: {} (from {})",
        settings.listen,
        settings.origin("listen")
    )?;
    writeln!(
        out,
        "  admin_listen: {}",
        settings
            .admin_listen
            .as_ref()
            .map_or("main listener".to_owned(), ToString::to_string)
    )?;
    writeln!(out, "  upstream: {}", settings.upstream)?;
    writeln!(
        out,
        "  token_ttl: {} s, refreshed {} s before expiry",
        settings.token_ttl, settings.token_refresh_before
    )?;
    match &settings.allowed_accounts {
        None => writeln!(out, "  allowed_accounts: any")?,
        Some(ids) => writeln!(
            out,
            "  allowed_accounts: {}",
            ids.iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )?,
    }

    let now = SystemClock.now();
    for path in &settings.credentials {
        match Credentials::load(path) {
            Err(e) => problems.push(format!("{e}")),
            Ok((creds, loose)) => {
                let claims = Claims::new(creds.account_id, now, settings.token_ttl);
                let verdict = match creds.mint(&claims) {
                    Ok(jwt) => match verify_minted(&creds, &jwt, &claims) {
                        Ok(()) => "minted and verified a token".to_owned(),
                        Err(e) => {
                            problems.push(format!(
                                "credentials file {}: minted token {e}",
                                path.display()
                            ));
                            "token did NOT verify".to_owned()
                        }
                    },
                    Err(e) => {
                        problems.push(format!("credentials file {}: {e}", path.display()));
                        "cannot mint".to_owned()
                    }
                };
                writeln!(
                    out,
                    "  credentials {}: account {}, key_id {}, RSA-{}{}: {verdict}",
                    path.display(),
                    creds.account_id,
                    creds.key_id,
                    creds.key.bits(),
                    if loose {
                        " (WARNING: readable by group or others)"
                    } else {
                        ""
                    },
                )?;
            }
        }
    }
    if let Some(ca) = &settings.upstream_ca {
        match crate::upstream::load_ca(ca) {
            Ok(certs) => writeln!(
                out,
                "  upstream_ca: {} ({} certificate(s))",
                ca.display(),
                certs.len()
            )?,
            Err(e) => problems.push(e.to_string()),
        }
    }
    if let (Some(cert), Some(key)) = (&settings.tls_cert, &settings.tls_key) {
        let files = crate::tls::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: settings.tls_client_ca.clone(),
        };
        match crate::tls::server_config(&files) {
            Ok(_) => writeln!(
                out,
                "  inbound TLS: {}{}",
                cert.display(),
                if settings.tls_client_ca.is_some() {
                    if settings.clients.is_some() {
                        ", client certificates accepted (gateway)"
                    } else {
                        ", client certificates required"
                    }
                } else {
                    ""
                }
            )?,
            Err(e) => problems.push(e.to_string()),
        }
    }
    if let Some(path) = &settings.clients {
        let default_account = settings
            .credentials
            .first()
            .and_then(|p| Credentials::load(p).ok())
            .map(|(c, _)| c.account_id);
        match default_account.map_or_else(
            || {
                crate::gateway::ClientSet::load(path, None)
                    .map(|set| set.summary())
                    .map_err(anyhow::Error::new)
            },
            |account| crate::gateway::Gateway::load(path, account).map(|gw| gw.summary()),
        ) {
            Ok(summary) => writeln!(out, "  gateway clients: {} ({summary})", path.display())?,
            Err(e) => problems.push(format!("{e:#}")),
        }
    }
    let redis_down = limits_redis(&settings, out, &mut problems)?;
    if problems.is_empty() {
        writeln!(out, "ok")?;
        return Ok(());
    }
    for p in &problems {
        writeln!(out, "problem: {p}")?;
    }
    let e = anyhow::anyhow!(
        "check found {} problem(s): {}",
        problems.len(),
        problems.join("; ")
    );
    Err(if redis_down && problems.len() == 1 {
        Failure::Runtime(e)
    } else {
        config_err(e)
    })
}

/// `limits_redis`: PING it and print the answer; no answer is a problem. Returns whether Redis
/// did not answer (exit 1 when that is the only problem: Redis is down, the configuration is fine).
fn limits_redis(
    settings: &Settings,
    out: &mut dyn Write,
    problems: &mut Vec<String>,
) -> std::io::Result<bool> {
    let Some(url) = &settings.limits_redis else {
        return Ok(false);
    };
    // A broken upstream_ca is reported on its own; the PING then trusts the built-in roots alone.
    let roots = (settings.upstream_ca.as_deref())
        .and_then(|ca| crate::upstream::load_ca(ca).ok())
        .unwrap_or_default();
    match crate::limits::shared::check(url, &roots, settings.connect_timeout) {
        Ok(line) => writeln!(out, "  {line}").map(|()| false),
        Err(problem) => {
            problems.push(problem);
            Ok(true)
        }
    }
}
