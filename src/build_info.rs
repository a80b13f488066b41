//! What this binary is: version, commit and target, for `--version` and `voxproxy_build_info`.
//! `build.rs` supplies the commit and the target.

/// The crate version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The short (7-character) commit the binary was built from, or `unknown`.
pub const COMMIT: &str = env!("VOXPROXY_BUILD_COMMIT");

/// The target triple, like `x86_64-unknown-linux-gnu`.
pub const TARGET: &str = env!("VOXPROXY_BUILD_TARGET");

/// What `voxproxy --version` prints after the name: `0.2.0 (3f2a9c1 x86_64-unknown-linux-gnu)`.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("VOXPROXY_BUILD_COMMIT"),
    " ",
    env!("VOXPROXY_BUILD_TARGET"),
    ")"
);
