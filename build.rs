//! Build information for `voxproxy --version` and `voxproxy_build_info`: the short commit (when
//! built from a git checkout) and the target triple, passed to the crate as environment variables.
//! Never fails: without git or `.git` (a container build, a source tarball) the commit is
//! `unknown`.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".to_owned());
    println!("cargo:rustc-env=VOXPROXY_BUILD_TARGET={target}");
    let commit = if Path::new(".git").exists() {
        watch_head();
        git(&["rev-parse", "--short=7", "HEAD"])
            .filter(|c| c.len() == 7 && c.bytes().all(|b| b.is_ascii_hexdigit()))
    } else {
        None
    };
    let commit = commit.unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=VOXPROXY_BUILD_COMMIT={commit}");
}

/// Rebuild when HEAD moves: HEAD itself (a checkout) and the ref it points at (a commit). `git
/// rev-parse --git-path` finds both in a worktree too, where `.git` is a file.
fn watch_head() {
    let mut paths = vec!["HEAD".to_owned()];
    if let Some(name) = git(&["symbolic-ref", "-q", "HEAD"]) {
        paths.push(name);
    }
    paths.push("packed-refs".to_owned());
    for p in paths {
        if let Some(path) = git(&["rev-parse", "--git-path", &p]) {
            // A path that does not exist would make cargo rerun this script on every build.
            if Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
}

/// The trimmed output of a successful git command, or `None`.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}
