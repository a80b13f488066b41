//! The README against the binary and the tree: its two commands word for word, the install
//! section first, the gateway example's CA path, every setting, error kind and metric family
//! the binary has; and a `.gitignore` that keeps what the examples write out of commits
//! without hiding a committed file.

use std::path::Path;
use std::process::Command;

use crate::support::Rig;
use crate::support::http::get;
use crate::support::process::run;

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap()
}

#[test]
fn readme_installs_first_and_keeps_its_two_commands_word_for_word() {
    let text = readme();
    let first = text.split("\n## ").nth(1).expect("the README has sections");
    assert!(first.starts_with("Install\n"), "first section: {first}");
    for needle in [
        "    cargo install --locked --path .\n",
        "voxproxy --version",
        "voxproxy check --online",
    ] {
        assert!(first.contains(needle), "install section lacks {needle}");
    }
    // The two commands: run the proxy, run the tests.
    assert!(text.contains("\n    cargo run --release -- serve\n"));
    assert!(text.contains("\n    cargo test --locked\n"));
    // The gateway example trusts what `tls init` writes.
    assert!(text.contains("SSL_CERT_FILE=voxproxy-tls/ca.pem python"));
    assert!(!text.contains("SSL_CERT_FILE=ca.pem") && !text.contains("NODE_EXTRA_CA_CERTS=ca.pem"));
}

#[test]
fn readme_documents_every_setting_the_binary_has() {
    let text = readme();
    let (code, printed, err) = run(&["check", "--print-config"], &[]);
    assert_eq!(code, 0, "{err}");
    let keys: Vec<&str> = printed
        .lines()
        .map(|l| l.trim_start_matches("# "))
        .filter_map(|l| l.split_once(" = ").map(|(k, _)| k))
        .collect();
    assert!(keys.len() >= 25, "{keys:?}");
    let (_, help, _) = run(&["serve", "--help"], &[]);
    for key in keys {
        let flag = format!("--{}", key.replace('_', "-"));
        let in_table = text.lines().any(|l| {
            l.starts_with("| `--")
                && (l.contains(&format!("`{flag} ")) || l.contains(&format!("`{flag}`")))
                && l.contains(&format!("`{key}`"))
        });
        assert!(in_table || key == "config", "no settings row for {key}");
        let env = help
            .split(&format!("{flag} "))
            .nth(1)
            .and_then(|rest| rest.split("[env: ").nth(1))
            .and_then(|rest| rest.split(']').next());
        if let Some(env) = env {
            assert!(text.contains(&format!("`{env}`")), "README lacks {env}");
        }
    }
}

#[tokio::test]
async fn readme_documents_every_error_kind_and_metric_family() {
    let text = readme();
    let rig = Rig::start(&[]).await;
    let metrics = String::from_utf8(get(rig.proxy.addr(), "/metrics").await.body.to_vec()).unwrap();
    let kinds: Vec<&str> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("voxproxy_errors_total{kind=\""))
        .filter_map(|l| l.split('"').next())
        .collect();
    assert_eq!(kinds.len(), 16, "every kind is pre-registered: {kinds:?}");
    for kind in kinds {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("| `{kind}` |"))),
            "the error table lacks {kind}"
        );
    }
    for family in metrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let name = family.split(' ').next().unwrap();
        assert!(
            text.contains(&format!("`{name}`")),
            "the metrics table lacks {name}"
        );
    }
}

#[test]
fn gitignore_keeps_what_the_examples_write_out_of_commits() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let git = |args: &[&str]| Command::new("git").current_dir(root).args(args).output();
    match git(&["rev-parse", "--git-dir"]) {
        Ok(out) if out.status.success() => {}
        // A source tarball: no git, nothing to check.
        _ => return,
    }
    for written in [
        "credentials.json",
        "voxproxy-tls/ca.pem",
        "voxproxy-tls/key.pem",
        "clients.toml",
        "billing.json",
        "crm.json",
        "app.json",
        "apps/billing-app.json",
    ] {
        let out = git(&["check-ignore", "-q", "--no-index", written]).unwrap();
        assert!(out.status.success(), "{written} is not ignored");
    }
    let hidden = git(&["ls-files", "-ci", "--exclude-standard"]).unwrap();
    assert!(
        hidden.stdout.is_empty(),
        "committed files hidden by .gitignore: {}",
        String::from_utf8_lossy(&hidden.stdout)
    );
}
