//! Shared test support: keys and certificates made at test time, a mock Voximplant upstream over
#![allow(dead_code)] // Shared helpers; not every test file uses every one.
//! TLS, the real binary under control, and small HTTP clients.

pub mod certs;
pub mod http;
pub mod process;
pub mod raw_upstream;
pub mod redis;
pub mod tls;
pub mod upstream;

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use certs::Creds;
use process::Voxproxy;
use upstream::{Options, Upstream};

/// Errors inside bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Now, in whole seconds since the Unix epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Add gateway client `name` with a generated static key to the clients file `clients` (made if
/// missing) through `voxproxy client add`, with `extra` arguments (`--read-only`); the key.
pub fn add_static_key_client(
    clients: &std::path::Path,
    creds: &Creds,
    name: &str,
    extra: &[&str],
) -> String {
    let mut args = vec![
        "client",
        "add",
        name,
        "--static-key",
        "--clients",
        clients.to_str().unwrap(),
        "--credentials",
        creds.path.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let (code, key, err) = process::run(&args, &[]);
    assert_eq!(code, 0, "{err}");
    key.trim().to_owned()
}

/// A proxy in front of a mock upstream, with one credentials file.
pub struct Rig {
    /// The mock upstream.
    pub upstream: Upstream,
    /// The primary credentials.
    pub creds: Creds,
    /// The running proxy.
    pub proxy: Voxproxy,
    /// Scratch directory (credentials, config).
    pub dir: tempfile::TempDir,
}

impl Rig {
    /// Start a mock upstream and a proxy trusting it, with `extra` serve arguments.
    pub async fn start(extra: &[&str]) -> Rig {
        Self::start_with(extra, &[], Options::default()).await
    }

    /// Like [`Rig::start`] with environment variables and upstream options.
    pub async fn start_with(extra: &[&str], env: &[(&str, &str)], opts: Options) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let creds = Creds::write(dir.path(), "credentials.json", 1_000_001);
        let upstream =
            Upstream::start(vec![(creds.key_id.clone(), creds.key.decoding_key())], opts).await;
        let proxy = Self::proxy(&upstream, &creds, extra, env);
        Rig {
            upstream,
            creds,
            proxy,
            dir,
        }
    }

    /// Start a proxy for `upstream` with `creds`.
    pub fn proxy(
        upstream: &Upstream,
        creds: &Creds,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Voxproxy {
        Self::proxy_to(&upstream.url, &upstream.ca_path, creds, extra, env)
    }

    /// Start a proxy for the upstream at `url`, trusting the CA at `ca_path`, with `creds`.
    pub fn proxy_to(
        url: &str,
        ca_path: &std::path::Path,
        creds: &Creds,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Voxproxy {
        let creds_path = creds.path.to_string_lossy().into_owned();
        let ca = ca_path.to_string_lossy().into_owned();
        let mut args = vec![
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            url,
            "--upstream-ca",
            &ca,
            "--credentials",
            &creds_path,
        ];
        args.extend_from_slice(extra);
        Voxproxy::start(&args, env)
    }

    /// A path in the scratch directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}
