//! Where environment variables come from: a trait so tests feed a map instead of mutating the
//! process environment (the linkerd2-proxy `Strings` idea), and the warnings for `VOXPROXY_*`
//! variables that no setting reads (a typo would otherwise be silently ignored).

use std::collections::HashMap;

use super::declare::{Decl, nearest};

/// A source of environment variables. `Send + Sync` so a reload task can keep one.
pub trait Env: Send + Sync {
    /// The value of `key`, or `None` when unset. A value that is not valid UTF-8 is reported as
    /// set-but-unreadable by returning `Some` of a lossy copy, so validation names it.
    fn get(&self, key: &str) -> Option<String>;

    /// The names of every variable set, for typo warnings.
    fn names(&self) -> Vec<String>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var_os(key).map(|v| v.to_string_lossy().into_owned())
    }

    fn names(&self) -> Vec<String> {
        std::env::vars_os()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect()
    }
}

impl Env for HashMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        HashMap::get(self, key).cloned()
    }

    fn names(&self) -> Vec<String> {
        self.keys().cloned().collect()
    }
}

impl Env for HashMap<&str, &str> {
    fn get(&self, key: &str) -> Option<String> {
        HashMap::get(self, key).map(|v| (*v).to_owned())
    }

    fn names(&self) -> Vec<String> {
        self.keys().map(|k| (*k).to_owned()).collect()
    }
}

/// The prefix of voxproxy's own variables; only these draw a warning (`VOXIMPLANT_*` belongs to
/// Voximplant's tools too).
const PREFIX: &str = "VOXPROXY_";

/// One warning per `VOXPROXY_*` variable that no setting reads, naming it and the nearest
/// variable that does, sorted by name.
pub(super) fn unknown_vars(env: &dyn Env, decls: &'static [&'static Decl]) -> Vec<String> {
    let mut names: Vec<String> = env
        .names()
        .into_iter()
        .filter(|n| n.starts_with(PREFIX) && !decls.iter().any(|d| d.env == n))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| match nearest_env(&name, decls) {
            Some(near) => {
                format!("unknown environment variable {name} is ignored: did you mean {near}?")
            }
            None => format!("unknown environment variable {name} is ignored: no setting reads it"),
        })
        .collect()
}

/// The variable most like `name`, comparing what follows each prefix, and the setting names
/// too (`VOXPROXY_LOG_LEVEL` means `VOXPROXY_LOG`; `VOXPROXY_CREDENTIALS` means
/// `VOXIMPLANT_CREDENTIALS`).
fn nearest_env(name: &str, decls: &'static [&'static Decl]) -> Option<&'static str> {
    let word = name.trim_start_matches(PREFIX);
    let candidates = decls.iter().flat_map(|d| {
        let suffix = d.env.split_once('_').map_or(d.env, |(_, rest)| rest);
        [(suffix, d.env), (d.key, d.env)]
    });
    nearest(word, candidates)
}
