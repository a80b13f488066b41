//! `voxproxy check`: load and validate everything, mint a token with each key and verify it with
//! the public key derived from it, and print a summary with no secret in it. Every problem is
//! reported, not only the first. `--online` then proves each key against the upstream
//! ([`online`]); `--print-config` prints the effective settings as a config file instead.
//!
//! [`run`] is the list of sections. Each section writes its lines and records what it finds in
//! the [`Report`]: a problem with the configuration (exit 2), or a service that did not answer
//! as it should (exit 1). A new check is one more section.

mod online;

use std::io::Write;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::out::write_out;
use crate::build_info;
use crate::cli::CheckArgs;
use crate::config::{Cmd, ConfigError, Described, Origin, Settings};
use crate::credentials::Credentials;
use crate::error::{Failure, config_err};
use crate::token::{Claims, Clock as _, Signer as _, SystemClock};

/// Run `check` with `args`, writing the summary (or, with `--print-config`, the settings) to
/// `out`.
pub fn run(
    settings: Result<Settings, ConfigError>,
    args: &CheckArgs,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let mut report = Report::new(out);
    let settings = match settings {
        Ok(s) => s,
        Err(e) => {
            for problem in e.0 {
                report.problem(problem.to_string());
            }
            return report.finish();
        }
    };
    if args.print_config {
        return write_out(report.out, settings.to_config_toml().as_bytes());
    }
    settings_section(&mut report, &settings)?;
    let keys = credentials_section(&mut report, &settings)?;
    upstream_ca_section(&mut report, &settings)?;
    tls_section(&mut report, &settings)?;
    clients_section(&mut report, &settings, &keys)?;
    // Sections that ask a service (Redis always, the upstream with --online) report what did not
    // answer through `Report::unanswered`: exit 1.
    redis_section(&mut report, &settings)?;
    if args.online {
        online_section(&mut report, &settings, &keys)?;
    }
    report.finish()
}

/// What `check` has found so far, and where its summary goes.
pub struct Report<'a> {
    out: &'a mut dyn Write,
    /// Problems with the configuration: exit 2.
    problems: Vec<String>,
    /// Services that did not answer as they should (the upstream, Redis): exit 1.
    unanswered: Vec<String>,
}

impl<'a> Report<'a> {
    /// An empty report writing to `out`.
    pub fn new(out: &'a mut dyn Write) -> Report<'a> {
        Report {
            out,
            problems: Vec::new(),
            unanswered: Vec::new(),
        }
    }

    /// Write one line of the summary; a reader that went away is not a failure.
    pub fn line(&mut self, text: impl AsRef<str>) -> Result<(), Failure> {
        let mut bytes = Vec::with_capacity(text.as_ref().len() + 1);
        bytes.extend_from_slice(text.as_ref().as_bytes());
        bytes.push(b'\n');
        write_out(self.out, &bytes)
    }

    /// A problem with the configuration (exit 2).
    pub fn problem(&mut self, problem: impl Into<String>) {
        self.problems.push(problem.into());
    }

    /// A service that did not answer as it should (exit 1 unless there are problems too); the
    /// section has said so on its own line.
    pub fn unanswered(&mut self, what: impl Into<String>) {
        self.unanswered.push(what.into());
    }

    /// List what was found and turn it into the outcome: `ok` and exit 0 when nothing was.
    pub fn finish(mut self) -> Result<(), Failure> {
        if self.problems.is_empty() && self.unanswered.is_empty() {
            return self.line("ok");
        }
        // What did not answer is on its own line already; problems are listed here.
        let problems: Vec<String> = self
            .problems
            .iter()
            .map(|p| format!("problem: {p}"))
            .collect();
        for line in problems {
            self.line(line)?;
        }
        let mut parts = Vec::new();
        if !self.problems.is_empty() {
            parts.push(format!(
                "check found {} problem(s): {}",
                self.problems.len(),
                self.problems.join("; ")
            ));
        }
        if !self.unanswered.is_empty() {
            parts.push(format!(
                "{} did not answer as they should: {}",
                self.unanswered.len(),
                self.unanswered.join("; ")
            ));
        }
        self.line(format!(
            "not ok: {} problem(s), {} did not answer as they should",
            self.problems.len(),
            self.unanswered.len()
        ))?;
        let e = anyhow::anyhow!(parts.join("; "));
        if self.problems.is_empty() {
            Err(Failure::Runtime(e))
        } else {
            Err(config_err(e))
        }
    }
}

/// Every setting `check` validates, with its value and where it came from (generated from the
/// declarations, so a new setting shows up by itself; secrets are already `***`), and the
/// listen rule.
fn settings_section(report: &mut Report<'_>, settings: &Settings) -> Result<(), Failure> {
    report.line(format!(
        "voxproxy {} configuration (each value with where it came from):",
        build_info::LONG_VERSION
    ))?;
    for d in settings.describe() {
        if d.decl.used_by(Cmd::Check) {
            report.line(format!("  {}: {}", d.decl.key, shown(&d)))?;
        }
    }
    if let Err(e) = settings.check_listen_rule(&settings.listen) {
        report.problem(e.to_string());
    }
    Ok(())
}

/// A setting's value and origin for the summary: `127.0.0.1:8080 (default)`.
fn shown(d: &Described) -> String {
    let value = match &d.value {
        Some(v) => toml_text(v),
        None if d.origin == Origin::Default => d.decl.default_text.to_owned(),
        None => "none".to_owned(),
    };
    match &d.origin {
        Origin::Default => format!("{value} (default)"),
        origin => format!("{value} (from {origin})"),
    }
}

/// A TOML value as plain text: strings unquoted, lists comma-separated.
fn toml_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Array(items) => items.iter().map(toml_text).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

/// A loaded credentials file and whether its key minted a token that verified.
struct Key {
    creds: Credentials,
    minted: bool,
}

/// Load every credentials file, mint a token with each key and verify it with the public key.
fn credentials_section(report: &mut Report<'_>, settings: &Settings) -> Result<Vec<Key>, Failure> {
    let now = SystemClock.now();
    let mut keys = Vec::new();
    for path in &settings.credentials {
        let (creds, loose) = match Credentials::load(path) {
            Ok(loaded) => loaded,
            Err(e) => {
                report.problem(e.to_string());
                continue;
            }
        };
        let minted = mint_and_verify(&creds, now, settings.token_ttl);
        let verdict = match &minted {
            Ok(()) => "minted and verified a token".to_owned(),
            Err(e) => {
                report.problem(format!("credentials file {}: {e}", path.display()));
                "NO valid token".to_owned()
            }
        };
        report.line(format!(
            "  credentials {}: account {}, key_id {}, RSA-{}{}: {verdict}",
            path.display(),
            creds.account_id,
            creds.key_id,
            creds.key.bits(),
            if loose {
                " (WARNING: readable by group or others; chmod 600 it)"
            } else {
                ""
            },
        ))?;
        keys.push(Key {
            creds,
            minted: minted.is_ok(),
        });
    }
    Ok(keys)
}

/// Mint a token with `creds` as the proxy would and verify it with the public key.
fn mint_and_verify(creds: &Credentials, now: i64, ttl: u32) -> Result<(), String> {
    let claims = Claims::new(creds.account_id, now, ttl);
    let jwt = creds.mint(&claims).map_err(|e| e.to_string())?;
    verify_minted(creds, &jwt, &claims).map_err(|e| format!("minted token {e}"))
}

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

/// The extra roots trusted for the upstream.
fn upstream_ca_section(report: &mut Report<'_>, settings: &Settings) -> Result<(), Failure> {
    let Some(ca) = &settings.upstream_ca else {
        return Ok(());
    };
    match crate::upstream::load_ca(ca) {
        Ok(certs) => report.line(format!(
            "  upstream_ca {}: {} certificate(s)",
            ca.display(),
            certs.len()
        )),
        Err(e) => {
            report.problem(e.to_string());
            Ok(())
        }
    }
}

/// The main listener's certificate and key, and the client CA.
fn tls_section(report: &mut Report<'_>, settings: &Settings) -> Result<(), Failure> {
    let (Some(cert), Some(key)) = (&settings.tls_cert, &settings.tls_key) else {
        return Ok(());
    };
    let files = crate::tls::TlsFiles {
        cert: cert.clone(),
        key: key.clone(),
        client_ca: settings.tls_client_ca.clone(),
    };
    if let Err(e) = crate::tls::server_config(&files) {
        report.problem(e.to_string());
        return Ok(());
    }
    let client_certs = match (&settings.tls_client_ca, &settings.clients) {
        (None, _) => "",
        (Some(_), Some(_)) => ", client certificates accepted (gateway)",
        (Some(_), None) => ", client certificates required",
    };
    report.line(format!("  inbound TLS {}{client_certs}", cert.display()))
}

/// The gateway clients file, validated as `serve` would load it.
fn clients_section(
    report: &mut Report<'_>,
    settings: &Settings,
    keys: &[Key],
) -> Result<(), Failure> {
    let Some(path) = &settings.clients else {
        return Ok(());
    };
    // Clients without `accounts` act for the first credentials file's account.
    let default_account = keys
        .first()
        .filter(|k| settings.credentials.first() == Some(&k.creds.path))
        .map(|k| k.creds.account_id);
    let summary = match default_account {
        Some(account) => crate::gateway::Gateway::load(path, account).map(|gw| gw.summary()),
        None => crate::gateway::ClientSet::load(path, None)
            .map(|set| set.summary())
            .map_err(anyhow::Error::new),
    };
    match summary {
        Ok(summary) => report.line(format!("  gateway clients {}: {summary}", path.display())),
        Err(e) => {
            report.problem(format!("{e:#}"));
            Ok(())
        }
    }
}

/// `limits_redis`: a `PING` (TLS verified like the upstream); no answer is exit 1. The URL shows
/// with its password as `***`.
fn redis_section(report: &mut Report<'_>, settings: &Settings) -> Result<(), Failure> {
    let Some(url) = &settings.limits_redis else {
        return Ok(());
    };
    // A broken upstream_ca is reported on its own; the PING then trusts the built-in roots alone.
    let roots = (settings.upstream_ca.as_deref())
        .and_then(|ca| crate::upstream::load_ca(ca).ok())
        .unwrap_or_default();
    match crate::limits::shared::check(url, &roots, settings.connect_timeout) {
        Ok(line) => report.line(format!("  {line}")),
        Err(problem) => {
            report.line(format!("  {problem}"))?;
            report.unanswered(problem);
            Ok(())
        }
    }
}

/// `--online`: one `GetAccountInfo` per credentials file whose key minted, against the
/// configured upstream, with `upstream_ca` and the timeouts.
fn online_section(
    report: &mut Report<'_>,
    settings: &Settings,
    keys: &[Key],
) -> Result<(), Failure> {
    let creds: Vec<Credentials> = keys
        .iter()
        .filter(|k| k.minted)
        .map(|k| k.creds.clone())
        .collect();
    report.line(format!(
        "online: GetAccountInfo at {} for each account",
        settings.upstream
    ))?;
    let outcomes = match online::prove(settings, &creds) {
        Ok(outcomes) => outcomes,
        Err(e) => {
            // The upstream client cannot be built: a configuration problem (upstream_ca).
            report.problem(format!("{e:#}"));
            return Ok(());
        }
    };
    for (creds, outcome) in creds.iter().zip(outcomes) {
        let who = format!("account {} (key_id {})", creds.account_id, creds.key_id);
        match outcome {
            Ok(answer) => report.line(format!("  {who}: ok{answer}"))?,
            Err(why) => {
                report.line(format!("  {who}: {why}"))?;
                report.unanswered(format!("{who}: {why}"));
            }
        }
    }
    Ok(())
}
