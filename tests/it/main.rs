//! Integration tests: the real binary, real sockets, a TLS mock upstream with certificates made at
//! test time. One test binary; one file per area.

#![allow(clippy::unwrap_used)] // A panic is how an integration test fails.

mod support;

mod access_log;
mod check;
mod cli;
mod deploy;
mod docs;
mod failures;
mod forwarding;
mod fuzz_corpus;
mod gateway;
mod hostile;
mod interop;
mod layers;
mod lifecycle;
mod limits;
mod messages;
mod observability;
mod probe;
mod reload;
mod systemd;
mod tls_init;
