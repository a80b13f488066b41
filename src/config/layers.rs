//! The three sources of a setting (flag, environment, config file) and the choice between them:
//! the highest-precedence one that holds a value, parsed by the setting's value type. Every
//! problem is collected, each naming the setting, its value (redacted) and its origin.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::declare::{Decl, nearest};
use super::env::Env;
use super::errors::{Origin, SettingError};
use super::value::{Raw, Value};

/// The sources while settings are being resolved.
pub(super) struct Layers<'a> {
    env: &'a dyn Env,
    /// Every setting's declaration (which keys the file may hold).
    decls: &'static [&'static Decl],
    /// The config file's path and table, once read.
    file: Option<(PathBuf, toml::Table)>,
    /// Every problem so far.
    pub(super) errors: Vec<SettingError>,
    /// Where each setting resolved so far came from.
    origins: BTreeMap<&'static str, Origin>,
}

impl<'a> Layers<'a> {
    /// Flags come with each setting; the environment is read through `env`.
    pub(super) fn new(env: &'a dyn Env, decls: &'static [&'static Decl]) -> Layers<'a> {
        Layers {
            env,
            decls,
            file: None,
            errors: Vec::new(),
            origins: BTreeMap::new(),
        }
    }

    /// Read the config file named by `origin`; a problem with it is recorded, and the settings
    /// are then resolved without it.
    pub(super) fn load_file(&mut self, path: &Path, origin: Origin) {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => {
                self.errors.push(SettingError::File {
                    path: path.to_owned(),
                    origin,
                    reason: format!("cannot read: {e}"),
                });
                return;
            }
        };
        match parse_file(path, &origin, &text, self.decls) {
            Ok(table) => self.file = Some((path.to_owned(), table)),
            Err(mut errors) => self.errors.append(&mut errors),
        }
    }

    /// The highest-precedence raw value of a setting, or `None` for its default; records the
    /// origin either way.
    fn pick(&mut self, decl: &'static Decl, flag: Option<Raw>) -> Option<(Raw, Origin)> {
        let found = if let Some(raw) = flag {
            Some((raw, Origin::Flag(decl.flag)))
        } else if let Some(text) = self.env.get(decl.env) {
            Some((Raw::Text(text), Origin::Env(decl.env)))
        } else {
            self.file
                .as_ref()
                .filter(|_| decl.in_file)
                .and_then(|(path, table)| {
                    let value = table.get(decl.key)?;
                    Some((Raw::Toml(value.clone()), Origin::File(path.clone())))
                })
        };
        let origin = found.as_ref().map_or(Origin::Default, |(_, o)| o.clone());
        self.origins.insert(decl.key, origin);
        found
    }

    /// Resolve one setting with its value type `V`; on a parse error, record it and use the
    /// default so the other settings are still checked.
    pub(super) fn get<V: Value>(
        &mut self,
        decl: &'static Decl,
        flag: Option<Raw>,
        default: impl FnOnce() -> V::Out,
    ) -> V::Out {
        let Some((raw, origin)) = self.pick(decl, flag) else {
            return default();
        };
        V::parse(&raw).unwrap_or_else(|reason| {
            self.errors.push(SettingError::Invalid {
                key: decl.key,
                value: V::redact(&raw.to_string()),
                origin,
                reason,
            });
            default()
        })
    }

    /// Where a setting resolved so far came from.
    pub(super) fn origin(&self, key: &str) -> Origin {
        self.origins.get(key).cloned().unwrap_or(Origin::Default)
    }

    /// The origins recorded, leaving none behind.
    pub(super) fn take_origins(&mut self) -> BTreeMap<&'static str, Origin> {
        std::mem::take(&mut self.origins)
    }
}

/// Parse the config file's text: unknown keys are errors, each with the nearest known key.
/// `origin` says what named the file.
pub(super) fn parse_file(
    path: &Path,
    origin: &Origin,
    text: &str,
    decls: &[&'static Decl],
) -> Result<toml::Table, Vec<SettingError>> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        vec![SettingError::File {
            path: path.to_owned(),
            origin: origin.clone(),
            reason: format!("not valid TOML: {}", e.message()),
        }]
    })?;
    let unknown: Vec<SettingError> = table
        .keys()
        .filter(|k| !decls.iter().any(|d| d.in_file && d.key == k.as_str()))
        .map(|k| SettingError::UnknownKey {
            key: k.clone(),
            path: path.to_owned(),
            hint: unknown_key_hint(k, decls),
        })
        .collect();
    if unknown.is_empty() {
        Ok(table)
    } else {
        Err(unknown)
    }
}

/// What to say about an unknown file key: where a setting the file may not hold goes, or the
/// nearest key it may hold.
fn unknown_key_hint(key: &str, decls: &[&'static Decl]) -> Option<String> {
    if let Some(d) = decls.iter().find(|d| !d.in_file && d.key == key) {
        return Some(format!(
            "{key} is set by {} or {}, not in a config file",
            d.flag, d.env
        ));
    }
    let file_keys = decls.iter().filter(|d| d.in_file).map(|d| (d.key, d.key));
    nearest(key, file_keys).map(|near| format!("did you mean \"{near}\"?"))
}
