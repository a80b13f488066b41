//! Integration tests: the real binary, real sockets, a TLS mock upstream with certificates made at
//! test time. One test binary; one file per area.

mod support;

mod cli;
mod failures;
mod forwarding;
mod lifecycle;
mod observability;
mod reload;
mod interop;
