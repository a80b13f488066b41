//! voxproxy: an authenticating reverse proxy for the Voximplant Management API.
//!
//! Tools send plain API requests; voxproxy picks the account, puts a short-lived RS256 JWT minted
//! with the service account's key on the request and forwards it over rustls. The key never leaves
//! the process.
//!
//! # Map
//! - [`app`]: the binary's body: commands (`serve`, `token`, `check`, `client`, `tls init`,
//!   `completions`), logging set-up, exit codes.
//! - [`cli`]: clap definitions; the settings flags are built from [`config`]'s table and stay raw
//!   text for it. [`build_info`]: version, commit and target.
//! - [`config`]: every setting declared once; layered flag > environment > file > default,
//!   validated in one pass; `--print-config`.
//! - [`credentials`]: Voximplant `credentials.json`, the parsed key behind a redacting `Debug`.
//! - [`token`]: `mint` (one RS256 JWT) and `cache` (per account, refreshed in the background,
//!   single flight).
//! - [`server`]: listeners (TCP, Unix, systemd), inbound TLS, HTTP/1.1 + HTTP/2, graceful shutdown.
//! - [`proxy`]: one request end to end (below).
//! - [`headers`]: hop-by-hop and credential stripping, request ids, query-string scrubbing.
//! - [`upstream`]: the pooled rustls client and the classification of its failures.
//! - [`error`]: voxproxy's own error kinds and the one function that turns them into responses.
//! - [`admin`]: `/healthz`, `/readyz`, `/metrics`; [`metrics`]: the registry and its families.
//! - [`gateway`]: gateway clients: the clients file, authentication, policy, API-method detection.
//! - [`reload`]: SIGHUP and file watching for credentials, clients and TLS files.
//! - [`tls`]: inbound TLS configuration and `tls init`.
//!
//! # A request's path
//! `server` accepts a connection and hands each request to [`proxy::Proxy::handle`], which:
//! 1. assigns the request id (`headers::request_id`) and answers admin paths (`admin`);
//! 2. checks the target form (CONNECT 405, foreign absolute-form 403, outside `/platform_api` 404);
//! 3. in gateway mode authenticates the client and applies its policy (`gateway`);
//! 4. picks the account (path prefix, header, the client's JWT `iss`, default) and checks it;
//! 5. takes the account's token from the cache (no signature in the steady state);
//! 6. rewrites the request (`headers`), streams it through `upstream` with the body limit, and
//!    streams the answer back; any failure becomes an `error::ProxyError` response.

pub mod admin;
pub mod app;
pub mod build_info;
pub mod check;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod error;
pub mod gateway;
pub mod headers;
pub mod metrics;
pub mod proxy;
pub mod reload;
pub mod server;
pub mod tls;
pub mod token;
pub mod upstream;
