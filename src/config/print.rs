//! `--print-config`: the effective settings as a TOML config file that reproduces them (like
//! `nginx -T`), every setting on its own line with where its value came from. Paths are printed,
//! secrets never (a Redis password is `***`).

use super::declare::Decl;
use super::defs::Settings;
use super::errors::Origin;

/// One setting as `check` and `--print-config` show it.
#[derive(Debug)]
pub struct Described {
    /// Its declaration.
    pub decl: &'static Decl,
    /// Its value as the config file would hold it (a Redis password already `***`); `None`:
    /// no value.
    pub value: Option<toml::Value>,
    /// Where the value came from.
    pub origin: Origin,
}

impl Settings {
    /// Every setting in table order, with its value and where it came from.
    pub fn describe(&self) -> Vec<Described> {
        self.toml_values()
            .into_iter()
            .map(|(decl, value)| Described {
                decl,
                value,
                origin: self.origin(decl.key),
            })
            .collect()
    }

    /// A config file that reproduces these settings: every setting, defaults included, each
    /// with a trailing comment naming its origin (`# flag --listen`, `# env VOXPROXY_LISTEN`,
    /// `# file PATH`, `# default`). A setting with no value, or one a file may not hold
    /// (`config`), is a comment line, so the text stays a valid config file.
    pub fn to_config_toml(&self) -> String {
        let mut out = format!(
            "# voxproxy {} effective settings: a valid config file (--config FILE); the comment\n\
             # on each line says where the value came from.\n",
            crate::build_info::VERSION
        );
        for d in self.describe() {
            out.push_str(&line(d.decl, d.value.as_ref(), &d.origin));
            out.push('\n');
        }
        out
    }
}

/// One setting's line.
fn line(decl: &Decl, value: Option<&toml::Value>, origin: &Origin) -> String {
    let key = decl.key;
    let source = origin_comment(origin);
    match value {
        Some(value) if decl.in_file => format!("{key} = {value}  # {source}"),
        Some(value) => format!(
            "# {key} = {value}  # {source} (set by {} or {}, not in a file)",
            decl.flag, decl.env
        ),
        None if *origin == Origin::Default => {
            format!("# {key} = ...  # default: {}", decl.default_text)
        }
        None => format!("# {key} = ...  # {source}: none"),
    }
}

/// The origin as a short comment; a path's line breaks become spaces so it stays one comment.
fn origin_comment(origin: &Origin) -> String {
    let text = match origin {
        Origin::Flag(flag) => format!("flag {flag}"),
        Origin::Env(var) => format!("env {var}"),
        Origin::File(path) => format!("file {}", path.display()),
        Origin::Default => "default".to_owned(),
    };
    text.replace(['\n', '\r'], " ")
}
