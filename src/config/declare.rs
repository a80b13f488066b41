//! How a setting is declared: the [`Decl`] record and the `settings!` macro that turns the one
//! table in `defs.rs` into everything that used to be written beside it (ripgrep's `flags/defs.rs`
//! idea: one definition per flag carries its name, help, parser and default).
//!
//! From each entry the macro generates:
//! - a `const` in `keys` for its environment variable;
//! - a field of [`SettingsArgs`](super::SettingsArgs) (the flag's raw text) and of
//!   [`Settings`](super::Settings) (the parsed value);
//! - its [`Decl`] in `decl` and in [`SETTINGS`](super::SETTINGS), which the CLI, the file and
//!   environment readers and the typo suggestions read;
//! - its line in resolution (flag > environment > file > default, parsed by its value type), in
//!   the comparison behind `restart_needed`, in `apply_live` and in `--print-config`.

/// A command that reads settings: its `--help` lists, and it accepts, the flags of the settings it
/// uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    /// `voxproxy serve`.
    Serve,
    /// `voxproxy check`.
    Check,
    /// `voxproxy token`.
    Token,
    /// `voxproxy client add|list|remove`.
    Client,
}

/// Everything about one setting but its Rust types.
#[derive(Debug)]
pub struct Decl {
    /// The file key, and the setting's name in every message.
    pub key: &'static str,
    /// The flag, with its dashes (`--listen`).
    pub flag: &'static str,
    /// The environment variable.
    pub env: &'static str,
    /// What the flag's value is called in `--help` (`ADDR`).
    pub value_name: &'static str,
    /// The default as `--help` and `--print-config` show it.
    pub default_text: &'static str,
    /// One line for `--help`.
    pub help: &'static str,
    /// Whether the config file may set it (`config` itself may not).
    pub in_file: bool,
    /// Whether a reload applies a change at once; any other change needs a restart.
    pub live: bool,
    /// The commands that use it.
    pub used_by: &'static [Cmd],
    /// Whether the flag may be repeated (every occurrence is kept, in order).
    pub repeated: bool,
    /// Whether the flag may stand alone, meaning `true`.
    pub switch: bool,
}

impl Decl {
    /// The flag without its dashes, as clap names a long flag.
    pub fn long(&self) -> &'static str {
        self.flag.trim_start_matches("--")
    }

    /// Whether `cmd` uses this setting.
    pub fn used_by(&self, cmd: Cmd) -> bool {
        self.used_by.contains(&cmd)
    }
}

/// The nearest of `candidates` to a misspelled `word`, if one is close enough to be what was
/// meant (Jaro-Winkler similarity, as clap uses for its own suggestions).
pub fn nearest<'a, T: Copy>(
    word: &str,
    candidates: impl IntoIterator<Item = (&'a str, T)>,
) -> Option<T> {
    const CLOSE_ENOUGH: f64 = 0.8;
    let word = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|(c, t)| (strsim::jaro_winkler(&word, &c.to_ascii_lowercase()), t))
        .filter(|(score, _)| *score >= CLOSE_ENOUGH)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, t)| t)
}

/// Declare every setting; see the module documentation for what it generates.
macro_rules! settings {
    ($(
        $(#[doc = $doc:literal])*
        $key:ident: $ty:ty {
            value: $value:ty,
            default: $default:expr,
            default_text: $default_text:literal,
            flag: $flag:literal,
            env: $env_const:ident = $env:literal,
            value_name: $value_name:literal,
            help: $help:literal,
            in_file: $in_file:literal,
            live: $live:literal,
            used_by: $used_by:expr $(,)?
        }
    )*) => {
        /// Environment variable names, one `const` each so a typo cannot hide.
        pub mod keys {
            $(
                #[doc = concat!("The environment variable of `", stringify!($key), "`.")]
                pub const $env_const: &str = $env;
            )*
        }

        /// One [`Decl`] per setting, named like the setting.
        #[allow(non_upper_case_globals)]
        pub mod decl {
            use super::*;
            $(
                #[doc = concat!("The declaration of `", stringify!($key), "`.")]
                pub const $key: Decl = Decl {
                    key: stringify!($key),
                    flag: $flag,
                    env: $env,
                    value_name: $value_name,
                    default_text: $default_text,
                    help: $help,
                    in_file: $in_file,
                    live: $live,
                    used_by: $used_by,
                    repeated: <<$value as Value>::Flag as FlagRaw>::REPEATED,
                    switch: <$value as Value>::SWITCH,
                };
            )*
        }

        /// Every setting, in the order of the contract's table.
        pub const SETTINGS: &[&Decl] = &[$(&decl::$key),*];

        /// Settings flags as typed, before parsing: [`Settings::resolve`] parses every source
        /// with one set of rules and names the source in its errors.
        #[derive(Debug, Default, Clone)]
        pub struct SettingsArgs {
            $(
                #[doc = concat!("`", $flag, "` as typed (its help: see [`decl::", stringify!($key), "`]).")]
                pub $key: <$value as Value>::Flag,
            )*
        }

        impl SettingsArgs {
            /// From the values given for each setting's flag (asked for by setting name), in
            /// command-line order.
            pub fn from_values(mut values: impl FnMut(&'static str) -> Vec<String>) -> Self {
                SettingsArgs {
                    $($key: FlagRaw::from_values(values(stringify!($key))),)*
                }
            }
        }

        /// Validated settings.
        #[derive(Debug, Clone)]
        pub struct Settings {
            $(
                $(#[doc = $doc])*
                pub $key: $ty,
            )*
            /// Where each setting's value came from, keyed by setting name.
            pub origins: BTreeMap<&'static str, Origin>,
        }

        impl Settings {
            /// Resolve each setting in table order; a later default may use an earlier value.
            pub(super) fn resolve_each(layers: &mut Layers<'_>, flags: &SettingsArgs) -> Settings {
                $(
                    let $key: $ty =
                        layers.get::<$value>(&decl::$key, flags.$key.raw(), || $default);
                )*
                Settings {
                    $($key,)*
                    origins: layers.take_origins(),
                }
            }

            /// The settings whose values differ between `self` and `other`, in table order.
            pub fn changed(&self, other: &Settings) -> Vec<&'static Decl> {
                let mut changed = Vec::new();
                $(
                    if self.$key != other.$key {
                        changed.push(&decl::$key);
                    }
                )*
                changed
            }

            /// Take the values (and origins) of the live settings from `new`; the others keep
            /// what the process started with.
            pub fn apply_live(&mut self, mut new: Settings) {
                $(
                    if decl::$key.live {
                        self.$key = new.$key;
                    }
                )*
                for d in SETTINGS.iter().filter(|d| d.live) {
                    if let Some(origin) = new.origins.remove(d.key) {
                        self.origins.insert(d.key, origin);
                    }
                }
            }

            /// Each setting's value as the config file would hold it (`None`: no value).
            pub(super) fn toml_values(&self) -> Vec<(&'static Decl, Option<toml::Value>)> {
                vec![$((&decl::$key, <$value as Value>::to_toml(&self.$key)),)*]
            }
        }
    };
}
