//! voxproxy: an authenticating reverse proxy for the Voximplant Management API.
//!
//! Tools send plain API requests; voxproxy picks the account, puts a short-lived RS256 JWT minted
//! with the service account's key on the request and forwards it over rustls. The key never leaves
//! the process.
//!
//! # Map
//! Modules in layers; each imports only from the layers above it in this list (a test,
//! `tests/it/layers.rs`, keeps it so).
//!
//! 1. Ground floor, importing nothing of voxproxy's: [`body`] (the body type), [`build_info`]
//!    (version, commit, target), [`files`]
//!    (bounded reads of configuration files), [`headers`] (hop-by-hop and credential stripping,
//!    framing checks, request ids, query scrubbing).
//! 2. [`error`]: voxproxy's own error kinds, the one function that turns them into responses, and
//!    the commands' exit-code type.
//! 3. [`account`]: which account a request acts for, all of the rule, and the `AccountId` type.
//! 4. [`config`]: settings layered flag > environment > file > default, each declared once.
//! 5. [`credentials`] (Voximplant `credentials.json`, the keys in force) and [`token`] (`mint`
//!    one RS256 JWT; `cache` one per account, refreshed in the background, single flight).
//! 6. [`target`]: which targets are forwarded, the API path and method, the upstream URI.
//! 7. [`metrics`]: the registry and its families; [`limits`]: client and account rate limits.
//! 8. [`gateway`]: gateway clients: the clients file, authentication, policy, API-method
//!    detection.
//! 9. [`upstream`] (the pooled rustls client and the classification of its failures), [`tls`]
//!    (inbound TLS), [`admin`] (`/healthz`, `/readyz`, `/metrics`); [`fuzzing`] (hidden: the fuzz
//!    targets' property checks over everything that parses untrusted input, shared by `fuzz/`
//!    and the corpus replay test).
//! 10. [`proxy`]: one request as a pipeline of the contract's checks, the forward, the access log.
//! 11. [`systemd`], [`reload`] (SIGHUP and file watching), [`server`] (listeners, connections,
//!     graceful shutdown).
//! 12. The commands: [`cli`] (the command line, its settings flags built from [`config`]'s
//!     declarations), [`logging`], [`cmd`] (`serve`,
//!     `token`, `check`, `client`, `tls init`, `completions`, `probe`).
//!
//! # A request's path
//! `server` accepts a connection and hands each request to [`proxy::Proxy::handle`], whose stages
//! are the contract's "Checks run in this order": admin paths (`admin`); the target
//! (`target::check`: 405, 403, 404, 400); client authentication (`gateway::Gateway::admit`, 401);
//! the account (`account::Rules::choose`, 400, 403); the client's policy
//! (`gateway::policy::authorize`, 403) and rate (429); the token (`token::TokenCache::get`, no
//! signature in the steady state); then `proxy::forward` rewrites the request and streams it
//! upstream through the body limit (413, 502, 504). A refusal is a [`error::ProxyError`], drained
//! and answered in one place; every request ends in exactly one access line.

pub mod account;
pub mod admin;
pub mod body;
pub mod build_info;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod credentials;
pub mod error;
pub mod files;
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
pub mod headers;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod proxy;
pub mod reload;
pub mod server;
pub mod systemd;
pub mod target;
pub mod tls;
pub mod token;
pub mod upstream;
