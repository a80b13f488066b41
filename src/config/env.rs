//! Where environment variables come from: a trait so tests feed a map instead of mutating the
//! process environment (the linkerd2-proxy `Strings` idea).

use std::collections::HashMap;

/// A source of environment variables.
pub trait Env {
    /// The value of `key`, or `None` when unset. A value that is not valid UTF-8 is reported as
    /// set-but-unreadable by returning `Some` of a lossy copy, so validation names it.
    fn get(&self, key: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var_os(key).map(|v| v.to_string_lossy().into_owned())
    }
}

impl Env for HashMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        HashMap::get(self, key).cloned()
    }
}

impl Env for HashMap<&str, &str> {
    fn get(&self, key: &str) -> Option<String> {
        HashMap::get(self, key).map(|v| (*v).to_owned())
    }
}
