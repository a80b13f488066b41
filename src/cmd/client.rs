//! `voxproxy client add|list|remove`: edit the clients file with toml_edit, so the operator's
//! comments and layout survive; validate the result with the same loader `serve` uses before
//! writing it (atomically: a temporary file renamed over the old one).
//!
//! `add --out PATH` writes a Voximplant-format `credentials.json` for the app (a fresh RSA-2048
//! key, PKCS#8 PEM, mode 0600, never over an existing file) and stores only the public key;
//! `add --static-key` prints the key alone on stdout, once, and stores only its SHA-256.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use aws_lc_rs::encoding::{AsDer as _, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;
use toml_edit::{Array, DocumentMut, Item, Table, value};

use crate::account::AccountId;
use crate::cli::{ClientAddArgs, ClientCommand};
use crate::config::Rate;
use crate::config::Settings;
use crate::credentials::{Credentials, pem_encode as pem};
use crate::error::{Failure, config_err};
use crate::gateway::clients::{self, ClientSet, check_name, parse_tls_name, static_key_sha256};
use crate::gateway::glob::Glob;

/// Run a `client` subcommand; `out` is stdout.
pub fn run(settings: &Settings, cmd: &ClientCommand, out: &mut dyn Write) -> Result<(), Failure> {
    let path = settings.clients.as_deref().ok_or_else(|| {
        config_err(anyhow!(
            "clients: not set; name the clients file with --clients PATH, VOXPROXY_CLIENTS or `clients` in the config file"
        ))
    })?;
    match cmd {
        ClientCommand::Add(args) => add(settings, path, args, out),
        ClientCommand::List => list(path, out),
        ClientCommand::Remove { name } => remove(path, name, out),
    }
}

/// A fresh static key: `vxp_` and 43 base64url characters (256 random bits).
pub fn new_static_key() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| anyhow!("the system random source failed"))?;
    Ok(format!(
        "vxp_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// The file as text, or `None` when it does not exist yet.
fn read_existing(path: &Path) -> Result<Option<String>, Failure> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(config_err(
            anyhow::Error::new(e).context(format!("clients file {}: cannot read", path.display())),
        )),
    }
}

fn parse_doc(path: &Path, text: &str) -> Result<DocumentMut, Failure> {
    text.parse::<DocumentMut>().map_err(|e| {
        let line = e.span().map_or(1, |s| {
            text[..s.start.min(text.len())].matches('\n').count() + 1
        });
        config_err(anyhow!(
            "clients file {}: line {line}: {}",
            path.display(),
            clients::one_line(e.message())
        ))
    })
}

fn add(
    settings: &Settings,
    path: &Path,
    args: &ClientAddArgs,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    // Everything is checked before anything is generated or written.
    let accounts = checked_args(args)?;
    let existing = read_existing(path)?;
    let mut doc = editable(path, existing.as_deref(), &args.name)?;
    let auth = match &args.out {
        Some(out_path) => {
            let out_path = PathBuf::from(out_path);
            if out_path.symlink_metadata().is_ok() {
                return Err(config_err(anyhow!(
                    "--out {}: exists already; voxproxy does not overwrite credentials",
                    out_path.display()
                )));
            }
            let account = match accounts.first() {
                Some(a) => *a,
                None => first_credentials_account(settings)?,
            };
            NewAuth::app(out_path, account)?
        }
        None if args.static_key => NewAuth::StaticKey(new_static_key()?),
        None => NewAuth::TlsName(args.tls_name.clone().unwrap_or_default()),
    };
    let mut table = policy_table(args, &accounts);
    auth.describe(&mut table);
    let text = with_client(&mut doc, path, &args.name, table)?;
    if let NewAuth::App {
        path: out_path,
        json,
        ..
    } = &auth
    {
        write_new_private(out_path, json)?;
    }
    if let Err(e) = write_atomic(path, text.as_bytes(), existing.is_none()) {
        if let NewAuth::App { path: out_path, .. } = &auth {
            let _ = std::fs::remove_file(out_path);
        }
        return Err(e.into());
    }
    auth.report(out, path, &args.name)
}

/// Check every flag of `client add`; the accounts it names.
fn checked_args(args: &ClientAddArgs) -> Result<Vec<AccountId>, Failure> {
    let name = args.name.as_str();
    check_name(name).map_err(|e| config_err(anyhow!("client name `{name}`: {e}")))?;
    let accounts = args
        .accounts
        .iter()
        .map(|raw| {
            AccountId::parse(raw).ok_or_else(|| {
                config_err(anyhow!(
                    "--account {raw}: must be a positive decimal integer"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    for (flag, globs) in [
        ("--method", &args.methods),
        ("--deny-method", &args.deny_methods),
    ] {
        for g in globs {
            Glob::parse(g).map_err(|e| config_err(anyhow!("{flag} {g}: {e}")))?;
        }
    }
    if let Some(rate) = &args.rate {
        Rate::parse(rate).map_err(|e| config_err(anyhow!("--rate: {e}")))?;
    }
    if let Some(tls_name) = &args.tls_name {
        parse_tls_name(tls_name).map_err(|e| config_err(anyhow!("--tls-name: {e}")))?;
    }
    Ok(accounts)
}

/// The clients file as an editable document; only a file that loads may be edited (a broken
/// one is the operator's to fix), and it must not hold a client called `name` already.
fn editable(path: &Path, existing: Option<&str>, name: &str) -> Result<DocumentMut, Failure> {
    let Some(text) = existing else {
        return Ok(DocumentMut::new());
    };
    let set = ClientSet::parse(path, text, None).map_err(config_err)?;
    if let Some(c) = set
        .clients
        .iter()
        .find(|c| c.name.eq_ignore_ascii_case(name))
    {
        return Err(config_err(anyhow!(
            "clients file {}: a client named `{}` exists already; remove it first or pick another name",
            path.display(),
            c.name
        )));
    }
    parse_doc(path, text)
}

/// The new client's policy fields, as `client add` was told.
fn policy_table(args: &ClientAddArgs, accounts: &[AccountId]) -> Table {
    let mut table = Table::new();
    if !accounts.is_empty() {
        let ids: Array = accounts.iter().map(|a| a.get() as i64).collect();
        table.insert("accounts", value(ids));
    }
    for (key, globs) in [
        ("methods", &args.methods),
        ("deny_methods", &args.deny_methods),
    ] {
        if !globs.is_empty() {
            table.insert(key, value(globs.iter().collect::<Array>()));
        }
    }
    if args.read_only {
        table.insert("read_only", value(true));
    }
    if let Some(rate) = &args.rate {
        table.insert("rate", value(rate.trim()));
    }
    table
}

/// Insert the client's table into the document; the resulting text, checked to load as `serve`
/// would load it.
fn with_client(
    doc: &mut DocumentMut,
    path: &Path,
    name: &str,
    table: Table,
) -> Result<String, Failure> {
    let clients = doc
        .entry("clients")
        .or_insert_with(|| {
            let mut t = Table::new();
            t.set_implicit(true);
            Item::Table(t)
        })
        .as_table_mut()
        .ok_or_else(|| {
            config_err(anyhow!(
                "clients file {}: `clients` is not a table",
                path.display()
            ))
        })?;
    clients.insert(name, Item::Table(table));
    let text = doc.to_string();
    ClientSet::parse(path, &text, None)
        .map_err(|e| anyhow!("the edited clients file would not load (a voxproxy bug): {e}"))?;
    Ok(text)
}

/// How a new client authenticates, with the secret it is handed once.
enum NewAuth {
    /// A Voximplant-format credentials file for the app (a fresh RSA key).
    App {
        path: PathBuf,
        account: AccountId,
        key_id: String,
        public_pem: String,
        json: Vec<u8>,
    },
    /// A static key, printed once.
    StaticKey(String),
    /// A TLS client certificate's DNS name.
    TlsName(String),
}

impl NewAuth {
    /// A fresh RSA-2048 key and the app's `credentials.json` for `account`.
    fn app(path: PathBuf, account: AccountId) -> Result<NewAuth, Failure> {
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .map_err(|_| anyhow!("generating an RSA key failed"))?;
        let pkcs8: Pkcs8V1Der = pair
            .as_der()
            .map_err(|_| anyhow!("encoding the RSA key failed"))?;
        let spki: PublicKeyX509Der = pair
            .public_key()
            .as_der()
            .map_err(|_| anyhow!("encoding the public key failed"))?;
        let key_id = uuid::Uuid::new_v4().to_string();
        let json = serde_json::json!({
            "account_id": account,
            "key_id": key_id,
            "private_key": pem("PRIVATE KEY", pkcs8.as_ref()),
        });
        Ok(NewAuth::App {
            path,
            account,
            key_id,
            public_pem: pem("PUBLIC KEY", spki.as_ref()),
            json: serde_json::to_vec_pretty(&json).context("encoding app credentials")?,
        })
    }

    /// The fields the clients file keeps (never a secret: a public key, a hash, a name).
    fn describe(&self, table: &mut Table) {
        match self {
            NewAuth::App {
                key_id, public_pem, ..
            } => {
                table.insert("key_id", value(key_id.as_str()));
                table.insert("public_key", value(public_pem.as_str()));
            }
            NewAuth::StaticKey(key) => {
                table.insert("static_key_sha256", value(static_key_sha256(key)));
            }
            NewAuth::TlsName(name) => {
                table.insert("tls_name", value(name.as_str()));
            }
        }
    }

    /// Tell the operator what was done; a static key goes alone on stdout.
    fn report(&self, out: &mut dyn Write, path: &Path, name: &str) -> Result<(), Failure> {
        match self {
            NewAuth::StaticKey(key) => {
                writeln!(out, "{key}")?;
                eprintln!(
                    "voxproxy: added client `{name}` to {}; its static key is on stdout and is shown only this once",
                    path.display()
                );
            }
            NewAuth::App {
                path: out_path,
                account,
                ..
            } => writeln!(
                out,
                "added client `{name}` to {}; its app credentials (account {account}) are in {} (mode 0600): give that file to the app as its credentials.json and keep it secret",
                path.display(),
                out_path.display()
            )?,
            NewAuth::TlsName(tls_name) => writeln!(
                out,
                "added client `{name}` to {}; it authenticates with a TLS client certificate for {tls_name}",
                path.display(),
            )?,
        }
        out.flush()?;
        Ok(())
    }
}

/// The first credentials file's account (the app's `account_id` when `--account` is not given).
fn first_credentials_account(settings: &Settings) -> Result<AccountId, Failure> {
    let first = settings
        .credentials
        .first()
        .ok_or_else(|| config_err(anyhow!("credentials: none configured; give --account ID")))?;
    Credentials::load(first)
        .map(|(c, _)| c.account_id)
        .map_err(|e| {
            config_err(anyhow::Error::new(e).context(format!(
                "credentials (from {}): needed for the app's account_id; or give --account ID",
                settings.origin("credentials")
            )))
        })
}

/// Create `path` with mode 0600 and `bytes`; refuses an existing file.
fn write_new_private(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                config_err(anyhow!(
                    "--out {}: exists already; voxproxy does not overwrite credentials",
                    path.display()
                ))
            } else {
                Failure::Runtime(
                    anyhow::Error::new(e)
                        .context(format!("--out {}: cannot create", path.display())),
                )
            }
        })?;
    f.write_all(bytes)
        .and_then(|()| f.write_all(b"\n"))
        .and_then(|()| f.sync_all())
        .with_context(|| format!("--out {}: cannot write", path.display()))?;
    Ok(())
}

/// Replace `path` with `bytes`: a temporary file in the same directory, renamed over it (a
/// reader or the watcher never sees half a file). Keeps the old file's mode; a new file is 0600.
/// A symlink (a Kubernetes Secret, say) is followed to its target.
pub fn write_atomic(path: &Path, bytes: &[u8], new: bool) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let target = if new {
        path.to_owned()
    } else {
        std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
    };
    let mode = std::fs::metadata(&target).map_or(0o600, |m| m.permissions().mode() & 0o7777);
    let dir = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "clients.toml".to_owned());
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        std::fs::rename(&tmp, &target)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::Error::new(e).context(format!("clients file {}: cannot write", target.display()))
    })
}

fn list(path: &Path, out: &mut dyn Write) -> Result<(), Failure> {
    let set = ClientSet::load(path, None).map_err(config_err)?;
    if set.clients.is_empty() {
        writeln!(out, "no clients in {}", path.display())?;
    }
    for c in &set.clients {
        writeln!(
            out,
            "{}: auth: {}; {}",
            c.name,
            c.auth.describe().join(", "),
            c.describe_policy()
        )?;
    }
    out.flush()?;
    Ok(())
}

fn remove(path: &Path, name: &str, out: &mut dyn Write) -> Result<(), Failure> {
    let text = read_existing(path)?.ok_or_else(|| {
        config_err(anyhow!(
            "clients file {}: does not exist, so it has no client `{name}`",
            path.display()
        ))
    })?;
    let mut doc = parse_doc(path, &text)?;
    let unknown = || {
        config_err(anyhow!(
            "clients file {}: no client named `{name}` (see `voxproxy client list`)",
            path.display()
        ))
    };
    let removed = doc
        .get_mut("clients")
        .and_then(Item::as_table_like_mut)
        .and_then(|t| t.remove(name))
        .ok_or_else(unknown)?;
    // Comment lines right above the removed table describe it and go with it; anything above a
    // blank line before them (a file header, a section comment) stays, moved to what follows.
    if let Item::Table(t) = &removed {
        let prefix = t
            .decor()
            .prefix()
            .and_then(|p| p.as_str())
            .unwrap_or("")
            .to_owned();
        let keep = detached_part(&prefix);
        if !keep.is_empty() {
            prepend_to_next(&mut doc, t.position(), keep);
        }
    }
    write_atomic(path, doc.to_string().as_bytes(), false)?;
    writeln!(out, "removed client `{name}` from {}", path.display())?;
    out.flush()?;
    Ok(())
}

/// The part of a table's prefix not attached to it: everything up to and including its last
/// blank line.
fn detached_part(prefix: &str) -> &str {
    let lines: Vec<&str> = prefix.split_inclusive('\n').collect();
    match lines
        .iter()
        .rposition(|l| l.trim().is_empty() && l.ends_with('\n'))
    {
        Some(i) => {
            let len: usize = lines[..=i].iter().map(|l| l.len()).sum();
            &prefix[..len]
        }
        None => "",
    }
}

/// Put `text` in front of the table that followed position `after` in the file, or at the end.
fn prepend_to_next(doc: &mut DocumentMut, after: Option<usize>, text: &str) {
    fn collect(t: &Table, path: &mut Vec<String>, out: &mut Vec<(usize, Vec<String>)>) {
        for (k, item) in t.iter() {
            if let Item::Table(sub) = item {
                path.push(k.to_owned());
                if let Some(p) = sub.position()
                    && !sub.is_implicit()
                {
                    out.push((p, path.clone()));
                }
                collect(sub, path, out);
                path.pop();
            }
        }
    }
    let mut tables = Vec::new();
    collect(doc.as_table(), &mut Vec::new(), &mut tables);
    let next = after.and_then(|after| {
        tables
            .into_iter()
            .filter(|(p, _)| *p > after)
            .min_by_key(|(p, _)| *p)
    });
    if let Some((_, path)) = next {
        let mut table = doc.as_table_mut();
        for k in &path {
            match table.get_mut(k).and_then(Item::as_table_mut) {
                Some(t) => table = t,
                None => return,
            }
        }
        let old = table
            .decor()
            .prefix()
            .and_then(|p| p.as_str())
            .unwrap_or("")
            .to_owned();
        // `text` ends with a blank line already: no second one before the next table.
        let old = old.trim_start_matches(['\n', '\r', ' ', '\t']);
        table.decor_mut().set_prefix(format!("{text}{old}"));
    } else {
        let old = doc.trailing().as_str().unwrap_or("").to_owned();
        doc.set_trailing(format!("{text}{old}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_keys_look_right() {
        let k = new_static_key().unwrap();
        assert!(k.starts_with("vxp_"));
        assert_eq!(k.len(), 4 + 43);
        assert!(
            k[4..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_ne!(k, new_static_key().unwrap());
    }

    #[test]
    fn detached_part_is_what_sits_above_a_blank_line() {
        assert_eq!(detached_part(""), "");
        assert_eq!(detached_part("# about crm\n"), "");
        assert_eq!(detached_part("\n# about crm\n"), "\n");
        assert_eq!(detached_part("# header\n\n# about crm\n"), "# header\n\n");
        assert_eq!(detached_part("# a\n\n# b\n\n"), "# a\n\n# b\n\n");
    }
}
